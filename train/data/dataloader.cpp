// DataLoader: the sampler (per-epoch order from randperm on the loader's own Generator), the
// epoch bookkeeping behind state_dict(), and the prefetcher, whose workers claim batch numbers in
// order, gather them off the consumer's thread and hand them back in order through a bounded window.
#include "ember/train/data/dataloader.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <numeric>
#include <thread>

#include "ember/runtime/allocator.h"
#include "ember/runtime/error.h"
#include "ember/runtime/rng.h"

namespace ember::data {

// --- pinned host memory ------------------------------------------------------------------------

namespace {

// A batch tensor in the runtime's pinned host memory (ordinary memory without a CUDA device).
Tensor pinned_batch_alloc(const Shape& shape, DType dtype) {
  const size_t nbytes = static_cast<size_t>(shape.numel()) * dtype_size(dtype);
  if (nbytes == 0) return empty(shape, dtype);
  void* p = pinned_host_alloc(nbytes);
  return from_blob(p, shape, dtype, kCPU, [nbytes](void* q) { pinned_host_free(q, nbytes); });
}

}  // namespace

// --- state shared by the loader and its iterator -----------------------------------------------

namespace {
class Prefetcher;
}

struct DataLoader::Impl {
  std::shared_ptr<const Dataset> dataset;
  DataLoaderOptions opts;
  BatchAllocator alloc;
  bool pin = false;
  int64_t n = 0;            // examples in the dataset
  int64_t count = 0;        // examples this loader reads per epoch (its rank's slice when distributed)
  int64_t num_batches = 0;  // per epoch
  uint64_t seed = 0;

  // Sampler state. Only the consumer's thread changes it; workers read `order` while iterating.
  Generator gen;
  std::vector<uint8_t> epoch_start_state;  // gen before this epoch's permutation
  std::vector<int64_t> order;              // the open epoch's example order
  int64_t epoch = 0;
  int64_t seen = 0;        // batches of the open epoch handed out
  bool open = false;       // an epoch's order is drawn and the epoch has not ended
  bool iterating = false;  // an iterator is live
  bool destroyed = false;  // the DataLoader is gone (its iterator may outlive it)
  std::unique_ptr<Prefetcher> prefetcher;
  std::optional<DistributedSampler> sampler;
  std::string load_notice;

  Batch make_batch(int64_t b) const {
    const int64_t start = b * opts.batch_size;
    const int64_t len = std::min(opts.batch_size, count - start);
    return dataset->get_batch(std::span<const int64_t>(order.data() + start, static_cast<size_t>(len)), alloc);
  }
  void open_epoch() {
    epoch_start_state = gen.get_state();
    if (sampler) {
      sampler->set_epoch(epoch);
      order = sampler->indices();
    } else if (opts.shuffle) {
      Tensor perm = randperm(n, &gen);
      const int64_t* p = perm.data_ptr<int64_t>();
      order.assign(p, p + n);
    } else {
      order.resize(static_cast<size_t>(n));
      std::iota(order.begin(), order.end(), int64_t{0});
    }
    seen = 0;
    open = true;
  }
  void close_epoch() {
    ++epoch;
    seen = 0;
    open = false;
  }
  ~Impl();
};

// --- prefetch ----------------------------------------------------------------------------------

namespace {

// Gathers batches [first, last) of the open epoch on worker threads, at most `window` ahead of
// the consumer, and hands them out in order. The destructor stops and joins the workers.
class Prefetcher {
 public:
  Prefetcher(const DataLoader::Impl& impl, int64_t first, int64_t last, int workers, int64_t window)
      : impl_(impl), claim_(first), next_(first), last_(last), window_(window) {
    try {
      for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
    } catch (...) {
      shutdown();
      throw;
    }
  }
  ~Prefetcher() { shutdown(); }

  // Blocks until the next batch is ready; rethrows the exception its gathering raised.
  Batch next() {
    Slot s;
    {
      std::unique_lock<std::mutex> lk(mu_);
      produced_.wait(lk, [&] { return ready_.count(next_) > 0; });
      auto it = ready_.find(next_);
      s = std::move(it->second);
      ready_.erase(it);
      ++next_;
    }
    consumed_.notify_all();
    if (s.error) std::rethrow_exception(s.error);
    return std::move(s.batch);
  }

 private:
  struct Slot {
    Batch batch;
    std::exception_ptr error;
  };

  void work() {
    for (;;) {
      int64_t b;
      {
        std::unique_lock<std::mutex> lk(mu_);
        consumed_.wait(lk, [&] { return stop_ || claim_ >= last_ || claim_ < next_ + window_; });
        if (stop_ || claim_ >= last_) return;
        b = claim_++;
      }
      Slot s;
      try {
        s.batch = impl_.make_batch(b);
      } catch (...) {
        s.error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lk(mu_);
        ready_[b] = std::move(s);
      }
      produced_.notify_all();
    }
  }

  void shutdown() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    consumed_.notify_all();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

  const DataLoader::Impl& impl_;
  std::mutex mu_;
  std::condition_variable produced_, consumed_;
  std::map<int64_t, Slot> ready_;
  int64_t claim_, next_, last_, window_;  // next batch to claim, next to hand out, end, max ahead
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace

DataLoader::Impl::~Impl() = default;

// --- iterator ----------------------------------------------------------------------------------

DataLoader::Iterator::Iterator(std::shared_ptr<Impl> impl)
    : impl_(std::move(impl)), uncaught_(std::uncaught_exceptions()) {}

DataLoader::Iterator::Iterator(Iterator&& o) noexcept
    : impl_(std::move(o.impl_)), batch_(std::move(o.batch_)), index_(o.index_), done_(o.done_),
      uncaught_(o.uncaught_) {
  o.done_ = true;
}

DataLoader::Iterator::~Iterator() {
  // Leaving early ends the epoch, unless the loop is being left by an exception.
  release(std::uncaught_exceptions() <= uncaught_);
}

void DataLoader::Iterator::release(bool end_epoch) {
  if (!impl_) return;
  if (!impl_->destroyed) {
    impl_->prefetcher.reset();
    impl_->iterating = false;
    if (end_epoch) impl_->close_epoch();
  }
  impl_.reset();
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  EMBER_CHECK(impl_ != nullptr, "[DataLoader] ++ on an iterator that has finished its epoch");
  fetch();
  return *this;
}

void DataLoader::Iterator::fetch() {
  Impl& s = *impl_;
  if (s.destroyed) {
    impl_.reset();
    done_ = true;
    EMBER_THROW("[DataLoader] the loader was destroyed during iteration");
  }
  if (s.seen >= s.num_batches) {
    batch_.clear();
    done_ = true;
    release(true);
    return;
  }
  try {
    batch_ = s.prefetcher ? s.prefetcher->next() : s.make_batch(s.seen);
  } catch (...) {
    done_ = true;
    release(false);  // the epoch stays open at this batch
    throw;
  }
  index_ = s.seen++;
}

// --- loader ------------------------------------------------------------------------------------

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options)
    : impl_(std::make_shared<Impl>()) {
  EMBER_CHECK(dataset != nullptr, "[DataLoader] dataset is null");
  EMBER_CHECK(options.batch_size >= 1, "[DataLoader] batch_size must be >= 1, got ", options.batch_size);
  EMBER_CHECK(options.num_workers >= 0, "[DataLoader] num_workers must be >= 0, got ", options.num_workers);
  EMBER_CHECK(options.prefetch_factor >= 1, "[DataLoader] prefetch_factor must be >= 1, got ",
              options.prefetch_factor);
  Impl& s = *impl_;
  s.n = dataset->size();
  EMBER_CHECK(s.n >= 1, "[DataLoader] the dataset is empty");
  s.dataset = std::move(dataset);
  s.opts = options;
  s.count = s.n;
  if (options.distributed) {
    EMBER_CHECK(!options.shuffle, "[DataLoader] shuffle must be false with a distributed sampler (its own shuffle, "
                                  "by seed + epoch, orders the data)");
    s.sampler.emplace(s.n, *options.distributed);
    s.count = s.sampler->num_samples();
    EMBER_CHECK(s.count >= 1, "[DataLoader] the dataset's ", s.n, " examples leave no example per rank for ",
                options.distributed->num_replicas, " ranks with drop_last");
  }
  s.num_batches = options.drop_last ? s.count / options.batch_size : (s.count + options.batch_size - 1) / options.batch_size;
  s.pin = options.pin_memory.value_or(options.device.is_cuda());
  s.alloc = s.pin ? BatchAllocator(pinned_batch_alloc) : BatchAllocator(default_batch_alloc);
  s.seed = options.seed ? *options.seed : default_generator().next_u64();
  s.gen.manual_seed(s.seed);
}

DataLoader::~DataLoader() {
  impl_->prefetcher.reset();
  impl_->destroyed = true;
}

DataLoader::Iterator DataLoader::begin() {
  Impl& s = *impl_;
  EMBER_CHECK(!s.iterating, "[DataLoader] begin() while another iterator of this loader is live (finish its epoch "
              "or destroy it first)");
  if (!s.open) s.open_epoch();
  if (s.opts.num_workers > 0 && s.seen < s.num_batches)
    s.prefetcher = std::make_unique<Prefetcher>(s, s.seen, s.num_batches, s.opts.num_workers,
                                                int64_t{s.opts.num_workers} * s.opts.prefetch_factor);
  s.iterating = true;
  Iterator it(impl_);
  it.fetch();  // on an exception `it` releases the loader and keeps the epoch open
  return it;
}

int64_t DataLoader::len() const { return impl_->num_batches; }
int64_t DataLoader::epoch() const { return impl_->epoch; }
bool DataLoader::pin_memory() const { return impl_->pin; }
const DataLoaderOptions& DataLoader::options() const { return impl_->opts; }
const Dataset& DataLoader::dataset() const { return *impl_->dataset; }
std::shared_ptr<const Dataset> DataLoader::shared_dataset() const { return impl_->dataset; }

Value DataLoader::state_dict() const {
  const Impl& s = *impl_;
  const bool mid_epoch = s.open && s.seen < s.num_batches;
  ValueMap m;
  // An open epoch whose batches have all been handed out saves as the start of the next one.
  m["epoch"] = mid_epoch || !s.open ? s.epoch : s.epoch + 1;
  m["batches_seen"] = mid_epoch ? s.seen : int64_t{0};
  m["generator"] = Bytes{mid_epoch ? s.epoch_start_state : s.gen.get_state()};
  m["seed"] = s.seed;
  m["dataset_size"] = s.n;
  m["batch_size"] = s.opts.batch_size;
  m["shuffle"] = s.opts.shuffle;
  m["drop_last"] = s.opts.drop_last;
  if (s.sampler) {
    const DistributedSamplerOptions& d = s.sampler->options();
    m["distributed"] = Value(ValueMap{{"num_replicas", d.num_replicas},
                                      {"rank", d.rank},
                                      {"seed", static_cast<int64_t>(d.seed)},
                                      {"shuffle", d.shuffle},
                                      {"drop_last", d.drop_last}});
  }
  return Value(std::move(m));
}

const std::string& DataLoader::load_notice() const { return impl_->load_notice; }

namespace {

const Value& state_field(const Value& state, const char* key, Value::Kind kind) {
  EMBER_CHECK(state.contains(key), "[DataLoader] load_state_dict: the state has no '", key, "'");
  const Value& v = state.at(key);
  EMBER_CHECK(v.kind() == kind, "[DataLoader] load_state_dict: '", key, "' is ", Value::kind_name(v.kind()),
              ", expected ", Value::kind_name(kind));
  return v;
}

template <typename T>
void check_setting(const char* key, const T& saved, const T& mine) {
  EMBER_CHECK(saved == mine, "[DataLoader] load_state_dict: the state was saved with ", key, " = ", saved,
              " but this loader has ", key, " = ", mine, "; the remaining batches would differ");
}

}  // namespace

void DataLoader::load_state_dict(const Value& state) {
  Impl& s = *impl_;
  EMBER_CHECK(!s.iterating, "[DataLoader] load_state_dict() while an iterator of this loader is live");
  EMBER_CHECK(state.is_map(), "[DataLoader] load_state_dict: the state is ", Value::kind_name(state.kind()),
              ", expected map");
  const int64_t epoch = state_field(state, "epoch", Value::Kind::Int).as_int();
  const int64_t seen = state_field(state, "batches_seen", Value::Kind::Int).as_int();
  const Bytes& gen_state = state_field(state, "generator", Value::Kind::Bytes).as_bytes();
  const int64_t seed = state_field(state, "seed", Value::Kind::Int).as_int();
  check_setting("dataset_size", state_field(state, "dataset_size", Value::Kind::Int).as_int(), s.n);
  check_setting("batch_size", state_field(state, "batch_size", Value::Kind::Int).as_int(), s.opts.batch_size);
  check_setting("drop_last", state_field(state, "drop_last", Value::Kind::Bool).as_bool(), s.opts.drop_last);
  // Data-parallel settings: the same sampler (seed, shuffle, drop_last); any rank's state (ranks
  // advance together). Another world size, or a loader that was distributed resumed by one that
  // is not (or the other way round: their orders differ), only at an epoch boundary, where
  // nothing of the old order is left.
  std::string notice;
  const bool saved_distributed = state.contains("distributed") && !state.at("distributed").is_null();
  const bool saved_shuffle = state_field(state, "shuffle", Value::Kind::Bool).as_bool();
  int64_t saved_world = 1;
  bool saved_effective_shuffle = saved_shuffle;
  if (saved_distributed) {
    const Value& d = state.at("distributed");
    EMBER_CHECK(d.is_map(), "[DataLoader] load_state_dict: 'distributed' is ", Value::kind_name(d.kind()),
                ", expected map");
    saved_world = state_field(d, "num_replicas", Value::Kind::Int).as_int();
    state_field(d, "rank", Value::Kind::Int);
    saved_effective_shuffle = state_field(d, "shuffle", Value::Kind::Bool).as_bool();
    if (s.sampler) {
      const DistributedSamplerOptions& mine = s.sampler->options();
      check_setting("distributed seed", state_field(d, "seed", Value::Kind::Int).as_int(), static_cast<int64_t>(mine.seed));
      check_setting("distributed drop_last", state_field(d, "drop_last", Value::Kind::Bool).as_bool(), mine.drop_last);
    }
  }
  const int64_t my_world = s.sampler ? s.sampler->options().num_replicas : 1;
  check_setting("shuffle", saved_effective_shuffle, s.sampler ? s.sampler->options().shuffle : s.opts.shuffle);
  if (saved_distributed != s.sampler.has_value() || saved_world != my_world) {
    const std::string saved_by = saved_distributed ? str_cat("a run of ", saved_world, saved_world == 1 ? " rank" : " ranks")
                                                   : std::string("a loader that was not distributed");
    EMBER_CHECK(seen == 0, "[DataLoader] load_state_dict: the state was saved mid-epoch (", seen, " batches in) by ",
                saved_by, ", but this loader is ", s.sampler ? str_cat("one of ", my_world, my_world == 1 ? " rank" : " ranks") : "not distributed",
                ": the remaining batches cannot be recovered; resume from an epoch-end checkpoint or as the run that "
                "saved it");
    notice = str_cat("[DataLoader] resuming at the start of epoch ", epoch, " with ", my_world,
                     my_world == 1 ? " process" : " ranks", "; the state was saved by ", saved_by);
  }
  EMBER_CHECK(epoch >= 0, "[DataLoader] load_state_dict: 'epoch' is ", epoch, ", expected >= 0");
  EMBER_CHECK(seen >= 0 && seen <= s.num_batches, "[DataLoader] load_state_dict: 'batches_seen' is ", seen,
              ", but an epoch has ", s.num_batches, " batches");
  Generator gen;
  try {
    gen.set_state(gen_state.data);
  } catch (const Error& e) {
    EMBER_THROW("[DataLoader] load_state_dict: 'generator' is not a generator state: ", e.what());
  }

  s.gen = gen;
  s.load_notice = notice;
  s.seed = static_cast<uint64_t>(seed);
  s.epoch = epoch;
  s.open = false;
  s.seen = 0;
  if (seen > 0) {
    s.open_epoch();  // redraws the saved epoch's order from its starting state
    s.seen = seen;
    if (seen == s.num_batches) s.close_epoch();
  }
}

}  // namespace ember::data
