// DataLoader: order (sequential, seeded shuffle, per-epoch permutations), batch contents, drop_last,
// mid-epoch state save/restore, epoch bookkeeping on break and on exceptions, prefetch workers
// (identical batches, exceptions, shutdown), pinned batches, and the error messages.
#include <algorithm>
#include <memory>
#include <numeric>
#include <set>
#include <stdexcept>

#include <gtest/gtest.h>

#include "ember/runtime/allocator.h"
#include "ember/runtime/rng.h"
#include "tests/data/helpers.h"
#include "tests/support/check.h"
#include "ember/train/data/dataloader.h"

namespace ember {
namespace {

using data::Batch;
using data::DataLoader;
using data::DataLoaderOptions;
using data::TensorDataset;
using test::throws_with;
using test::values_f64;

// n examples: x row i = (i, i + 0.25, i + 0.5) as f32 (n, 3), y = 1000 + i as i64 (n).
std::shared_ptr<TensorDataset> indexed_dataset(int64_t n) {
  std::vector<float> x;
  std::vector<int64_t> y;
  for (int64_t i = 0; i < n; ++i) {
    x.insert(x.end(), {static_cast<float>(i), i + 0.25f, i + 0.5f});
    y.push_back(1000 + i);
  }
  return std::make_shared<TensorDataset>(
      std::vector<Tensor>{from_vector(x, Shape{n, 3}), from_vector(y, Shape{n})});
}

// The example indices of a batch (from its labels), checking that x agrees with y.
std::vector<int64_t> batch_indices(const Batch& b) {
  EXPECT_EQ(b.size(), 2u);
  std::vector<int64_t> idx;
  const std::vector<double> x = values_f64(b[0]), y = values_f64(b[1]);
  for (size_t k = 0; k < y.size(); ++k) {
    const int64_t i = static_cast<int64_t>(y[k]) - 1000;
    EXPECT_EQ(x[3 * k], static_cast<double>(i));
    EXPECT_EQ(x[3 * k + 2], i + 0.5);
    idx.push_back(i);
  }
  return idx;
}

// One epoch as a list of batches of indices.
std::vector<std::vector<int64_t>> run_epoch(DataLoader& loader) {
  std::vector<std::vector<int64_t>> out;
  for (auto& batch : loader) out.push_back(batch_indices(batch));
  return out;
}

std::vector<int64_t> flatten(const std::vector<std::vector<int64_t>>& batches) {
  std::vector<int64_t> all;
  for (const auto& b : batches) all.insert(all.end(), b.begin(), b.end());
  return all;
}

DataLoaderOptions shuffled(int64_t batch_size, uint64_t seed, int workers = 0, bool drop_last = false) {
  DataLoaderOptions o;
  o.batch_size = batch_size;
  o.shuffle = true;
  o.seed = seed;
  o.num_workers = workers;
  o.drop_last = drop_last;
  return o;
}

TEST(DataLoader, SequentialBatchesAndShapes) {
  DataLoaderOptions o;
  o.batch_size = 4;
  DataLoader loader(indexed_dataset(10), o);
  EXPECT_EQ(loader.len(), 3);
  std::vector<Shape> shapes;
  int64_t expected_index = 0;
  std::vector<std::vector<int64_t>> seen;
  for (auto it = loader.begin(); it != loader.end(); ++it) {
    EXPECT_EQ(it.batch_index(), expected_index++);
    shapes.push_back((*it)[0].shape());
    EXPECT_EQ((*it)[1].dtype(), DType::i64);
    seen.push_back(batch_indices(*it));
  }
  EXPECT_EQ(seen, (std::vector<std::vector<int64_t>>{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9}}));
  EXPECT_EQ(shapes, (std::vector<Shape>{{4, 3}, {4, 3}, {2, 3}}));
  EXPECT_EQ(loader.epoch(), 1);
  EXPECT_EQ(run_epoch(loader), seen);  // sequential: every epoch the same
}

TEST(DataLoader, DropLast) {
  DataLoaderOptions o;
  o.batch_size = 4;
  o.drop_last = true;
  DataLoader seq(indexed_dataset(10), o);
  EXPECT_EQ(seq.len(), 2);
  EXPECT_EQ(run_epoch(seq), (std::vector<std::vector<int64_t>>{{0, 1, 2, 3}, {4, 5, 6, 7}}));

  DataLoader shuf(indexed_dataset(10), shuffled(4, 5, 0, true));
  for (int e = 0; e < 3; ++e) {
    auto batches = run_epoch(shuf);
    ASSERT_EQ(batches.size(), 2u);
    for (const auto& b : batches) EXPECT_EQ(b.size(), 4u);
    auto all = flatten(batches);
    EXPECT_EQ(std::set<int64_t>(all.begin(), all.end()).size(), 8u);  // distinct examples
  }
  DataLoader tiny(indexed_dataset(3), o);  // fewer examples than one batch: empty epochs
  EXPECT_EQ(tiny.len(), 0);
  EXPECT_TRUE(run_epoch(tiny).empty());
  EXPECT_EQ(tiny.epoch(), 1);
}

TEST(DataLoader, ShuffleIsSeededAndCoversEveryIndexOncePerEpoch) {
  const int64_t n = 103;
  DataLoader a(indexed_dataset(n), shuffled(8, 42));
  DataLoader b(indexed_dataset(n), shuffled(8, 42));
  DataLoader c(indexed_dataset(n), shuffled(8, 43));
  Generator g(42);  // the documented order: one randperm per epoch from the loader's generator
  std::vector<int64_t> previous;
  for (int e = 0; e < 3; ++e) {
    auto ea = flatten(run_epoch(a));
    EXPECT_EQ(ea, flatten(run_epoch(b))) << "epoch " << e;
    EXPECT_NE(ea, flatten(run_epoch(c))) << "epoch " << e;
    EXPECT_EQ(ea, randperm(n, &g).to_vector<int64_t>()) << "epoch " << e;
    EXPECT_NE(ea, previous);
    auto sorted = ea;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> all(n);
    std::iota(all.begin(), all.end(), int64_t{0});
    EXPECT_EQ(sorted, all) << "epoch " << e;
    previous = ea;
  }
  EXPECT_EQ(a.len(), 13);
}

TEST(DataLoader, DefaultSeedComesFromTheGlobalGenerator) {
  manual_seed(7);
  DataLoaderOptions o;
  o.shuffle = true;
  o.batch_size = 5;
  DataLoader a(indexed_dataset(20), o);
  manual_seed(7);
  DataLoader b(indexed_dataset(20), o);
  EXPECT_EQ(run_epoch(a), run_epoch(b));
  EXPECT_EQ(a.state_dict().at("seed"), b.state_dict().at("seed"));
}

// Runs `epochs` full epochs, then `k` batches of the next, snapshotting the state inside the
// body of the k-th batch; returns {state, the rest of that epoch, the epoch after}.
struct Interrupted {
  Value state;
  std::vector<std::vector<int64_t>> rest, next_epoch;
};
Interrupted interrupt(DataLoader& loader, int epochs, int64_t k) {
  for (int e = 0; e < epochs; ++e) run_epoch(loader);
  Interrupted r;
  int64_t count = 0;
  for (auto& batch : loader) {
    if (count++ < k) {
      if (count == k) r.state = loader.state_dict();
    } else {
      r.rest.push_back(batch_indices(batch));
    }
  }
  r.next_epoch = run_epoch(loader);
  return r;
}

TEST(DataLoader, MidEpochStateResumesWithExactlyTheRemainingBatches) {
  for (int workers : {0, 2}) {
    DataLoader a(indexed_dataset(50), shuffled(6, 11, workers));
    Interrupted ref = interrupt(a, 2, 3);
    EXPECT_EQ(ref.state.at("epoch").as_int(), 2);
    EXPECT_EQ(ref.state.at("batches_seen").as_int(), 3);
    ASSERT_EQ(ref.rest.size(), 6u);  // 9 batches, 3 handed out

    DataLoader b(indexed_dataset(50), shuffled(6, 999, workers));  // the state overrides the seed
    b.load_state_dict(ref.state);
    EXPECT_EQ(b.epoch(), 2);
    EXPECT_EQ(run_epoch(b), ref.rest) << "workers " << workers;
    EXPECT_EQ(run_epoch(b), ref.next_epoch) << "workers " << workers;
    EXPECT_EQ(b.state_dict(), a.state_dict());
  }
}

TEST(DataLoader, StateRoundTripsAtEveryPosition) {
  DataLoader a(indexed_dataset(23), shuffled(5, 3));
  const auto epoch0 = run_epoch(a);
  const auto epoch1 = run_epoch(a);
  for (int64_t k = 0; k <= a.len(); ++k) {
    DataLoader src(indexed_dataset(23), shuffled(5, 3));
    std::vector<std::vector<int64_t>> got;
    Value state;
    int64_t count = 0;
    if (k == 0) state = src.state_dict();
    for (auto& batch : src) {
      got.push_back(batch_indices(batch));
      if (++count == k) break;
    }
    if (k > 0) state = src.state_dict();  // after a break: the epoch is over
    DataLoader dst(indexed_dataset(23), shuffled(5, 77));
    dst.load_state_dict(state);
    if (k == 0) EXPECT_EQ(run_epoch(dst), epoch0);
    else EXPECT_EQ(run_epoch(dst), epoch1) << "after breaking at batch " << k;
  }
}

TEST(DataLoader, StateTakenInTheLastBatchStartsTheNextEpoch) {
  DataLoader a(indexed_dataset(12), shuffled(4, 8));
  Value state;
  for (auto& batch : a) {
    (void)batch;
    state = a.state_dict();
  }
  EXPECT_EQ(state.at("epoch").as_int(), 1);
  EXPECT_EQ(state.at("batches_seen").as_int(), 0);
  const auto next = run_epoch(a);
  DataLoader b(indexed_dataset(12), shuffled(4, 0));
  b.load_state_dict(state);
  EXPECT_EQ(run_epoch(b), next);
}

TEST(DataLoader, ExceptionInTheLoopBodyKeepsTheEpochOpen) {
  DataLoader ref(indexed_dataset(30), shuffled(4, 21));
  const auto epoch0 = run_epoch(ref);
  const auto epoch1 = run_epoch(ref);

  DataLoader a(indexed_dataset(30), shuffled(4, 21, 1));
  std::vector<std::vector<int64_t>> got;
  try {
    for (auto& batch : a) {
      got.push_back(batch_indices(batch));
      if (got.size() == 3) throw std::runtime_error("stop");
    }
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(a.state_dict().at("batches_seen").as_int(), 3);
  for (auto& b : run_epoch(a)) got.push_back(b);  // continues the same epoch
  EXPECT_EQ(got, epoch0);
  EXPECT_EQ(run_epoch(a), epoch1);
}

// A dataset whose example `bad` throws; exercises Dataset's default get_batch.
class FlakyDataset : public data::Dataset {
 public:
  FlakyDataset(int64_t n, int64_t bad) : n_(n), bad_(bad) {}
  int64_t size() const override { return n_; }
  data::Example get(int64_t i) const override {
    if (i == bad_) throw Error(str_cat("[FlakyDataset] example ", i, " is unreadable"));
    return {from_vector(std::vector<float>{static_cast<float>(i), i + 0.25f, i + 0.5f}, Shape{3}),
            scalar_tensor(static_cast<double>(1000 + i), DType::i64)};
  }

 private:
  int64_t n_, bad_;
};

TEST(DataLoader, GenericDatasetBatchesMatchTensorDataset) {
  DataLoader a(std::make_shared<FlakyDataset>(17, -1), shuffled(4, 9, 2));
  DataLoader b(indexed_dataset(17), shuffled(4, 9));
  auto ia = a.begin();
  auto ib = b.begin();
  for (; ib != b.end(); ++ia, ++ib) {
    ASSERT_FALSE(ia == a.end());
    EXPECT_TRUE(test::bit_equal((*ia)[0], (*ib)[0]));
    EXPECT_TRUE(test::bit_equal((*ia)[1], (*ib)[1]));
  }
  EXPECT_TRUE(ia == a.end());
}

TEST(DataLoader, WorkerExceptionReachesTheConsumerAtItsBatch) {
  for (int workers : {0, 1, 3}) {
    DataLoaderOptions o;
    o.batch_size = 4;
    o.num_workers = workers;
    DataLoader loader(std::make_shared<FlakyDataset>(20, 9), o);  // example 9 is in batch 2
    int64_t delivered = 0;
    EXPECT_TRUE(throws_with(
        [&] {
          for (auto& batch : loader) {
            (void)batch;
            ++delivered;
          }
        },
        {"[FlakyDataset] example 9 is unreadable"}))
        << "workers " << workers;
    EXPECT_EQ(delivered, 2) << "workers " << workers;
    EXPECT_EQ(loader.state_dict().at("batches_seen").as_int(), 2);
    // The loader is usable again and retries the failed batch.
    EXPECT_TRUE(throws_with([&] { loader.begin(); }, {"example 9 is unreadable"}));
  }
}

TEST(DataLoader, PrefetchGivesIdenticalBatches) {
  auto ds = indexed_dataset(257);
  DataLoader ref(ds, shuffled(16, 123));
  std::vector<Batch> expected;
  for (int e = 0; e < 2; ++e)
    for (auto& b : ref) expected.push_back(b);
  for (int workers : {1, 2, 4}) {
    for (int factor : {1, 3}) {
      DataLoaderOptions o = shuffled(16, 123, workers);
      o.prefetch_factor = factor;
      DataLoader loader(ds, o);
      size_t k = 0;
      for (int e = 0; e < 2; ++e)
        for (auto& b : loader) {
          ASSERT_LT(k, expected.size());
          EXPECT_TRUE(test::bit_equal(b[0], expected[k][0])) << "workers " << workers << " batch " << k;
          EXPECT_TRUE(test::bit_equal(b[1], expected[k][1])) << "workers " << workers << " batch " << k;
          ++k;
        }
      EXPECT_EQ(k, expected.size());
      EXPECT_EQ(loader.state_dict(), ref.state_dict());
    }
  }
}

TEST(DataLoader, ShutsDownCleanlyMidEpoch) {
  auto ds = indexed_dataset(400);
  {
    DataLoader loader(ds, shuffled(2, 1, 3));
    int k = 0;
    for (auto& b : loader) {
      (void)b;
      if (++k == 2) break;  // workers are stopped and joined by the iterator
    }
    EXPECT_EQ(loader.epoch(), 1);
  }
  auto loader = std::make_unique<DataLoader>(ds, shuffled(2, 1, 3));
  auto it = loader->begin();
  ++it;
  loader.reset();  // destroyed while its iterator lives: workers joined here
  EXPECT_TRUE(throws_with([&] { ++it; }, {"[DataLoader] the loader was destroyed during iteration"}));
}

TEST(DataLoader, PinnedBatchesMatchPlainOnes) {
  // Pinned batches come from the runtime's pinned host allocator: page-locked blocks with a CUDA
  // device, ordinary CPU memory without one. Either way they hold the plain batches' values.
  const AllocatorStats before = pinned_host_stats();
  {
    DataLoaderOptions o = shuffled(4, 2, 1);
    o.device = cuda_device(0);  // pin_memory defaults to true for CUDA-bound batches
    DataLoader pinned(indexed_dataset(10), o);
    EXPECT_TRUE(pinned.pin_memory());
    DataLoader plain(indexed_dataset(10), shuffled(4, 2));
    EXPECT_FALSE(plain.pin_memory());
    EXPECT_EQ(run_epoch(pinned), run_epoch(plain));
    o.pin_memory = false;
    EXPECT_FALSE(DataLoader(indexed_dataset(10), o).pin_memory());
    o.pin_memory = true;
    o.device = kCPU;
    EXPECT_TRUE(DataLoader(indexed_dataset(10), o).pin_memory());
  }
  const AllocatorStats after = pinned_host_stats();
  const uint64_t blocks = (after.system_allocs + after.cache_hits) - (before.system_allocs + before.cache_hits);
  EXPECT_EQ(blocks, pinned_host_memory_available() ? 6u : 0u);  // 3 batches x 2 tensors
  EXPECT_EQ(after.allocated_bytes, before.allocated_bytes) << "every pinned batch gave its block back";
}

TEST(DataLoaderErrors, Options) {
  auto ds = indexed_dataset(4);
  DataLoaderOptions o;
  o.batch_size = 0;
  EXPECT_TRUE(throws_with([&] { DataLoader(ds, o); }, {"[DataLoader] batch_size must be >= 1, got 0"}));
  o.batch_size = 1;
  o.num_workers = -1;
  EXPECT_TRUE(throws_with([&] { DataLoader(ds, o); }, {"[DataLoader] num_workers must be >= 0, got -1"}));
  EXPECT_TRUE(throws_with([&] { DataLoader(nullptr); }, {"[DataLoader] dataset is null"}));
  EXPECT_TRUE(throws_with([&] { DataLoader(std::make_shared<FlakyDataset>(0, -1)); }, {"[DataLoader] the dataset is empty"}));
}

TEST(DataLoaderErrors, OneIteratorAtATime) {
  DataLoader loader(indexed_dataset(8), shuffled(2, 1));
  auto it = loader.begin();
  EXPECT_TRUE(throws_with([&] { loader.begin(); }, {"[DataLoader] begin() while another iterator of this loader is live"}));
  EXPECT_TRUE(throws_with([&] { loader.load_state_dict(loader.state_dict()); },
                          {"[DataLoader] load_state_dict() while an iterator of this loader is live"}));
}

TEST(DataLoaderErrors, LoadStateDict) {
  DataLoader a(indexed_dataset(20), shuffled(4, 1));
  const Value good = a.state_dict();
  DataLoader b(indexed_dataset(20), shuffled(5, 1));
  EXPECT_TRUE(throws_with([&] { b.load_state_dict(good); },
                          {"[DataLoader] load_state_dict: the state was saved with batch_size = 4 but this loader has "
                           "batch_size = 5; the remaining batches would differ"}));
  DataLoader c(indexed_dataset(21), shuffled(4, 1));
  EXPECT_TRUE(throws_with([&] { c.load_state_dict(good); }, {"saved with dataset_size = 20 but this loader has dataset_size = 21"}));

  Value missing = good.deep_copy();
  missing.as_map().erase("generator");
  EXPECT_TRUE(throws_with([&] { a.load_state_dict(missing); }, {"[DataLoader] load_state_dict: the state has no 'generator'"}));
  Value mistyped = good.deep_copy();
  mistyped["epoch"] = "two";
  EXPECT_TRUE(throws_with([&] { a.load_state_dict(mistyped); }, {"'epoch' is string, expected int"}));
  Value too_far = good.deep_copy();
  too_far["batches_seen"] = int64_t{6};
  EXPECT_TRUE(throws_with([&] { a.load_state_dict(too_far); }, {"'batches_seen' is 6, but an epoch has 5 batches"}));
  Value bad_gen = good.deep_copy();
  bad_gen["generator"] = Bytes{{1, 2, 3}};
  EXPECT_TRUE(throws_with([&] { a.load_state_dict(bad_gen); }, {"'generator' is not a generator state"}));
  EXPECT_TRUE(throws_with([&] { a.load_state_dict(Value(int64_t{3})); }, {"the state is int, expected map"}));
  // A failed load changes nothing.
  EXPECT_EQ(a.state_dict(), good);
}

}  // namespace
}  // namespace ember
