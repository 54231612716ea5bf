// Module broadcast and bucketed gradient averaging (train/distributed/ddp.h).
#include "ember/train/distributed/ddp.h"

#include <chrono>
#include <cstdio>
#include <string>

#include "ember/runtime/autograd.h"
#include "ember/runtime/error.h"
#include "ember/runtime/ops.h"
#include "ember/train/distributed/process_group.h"
#include "train/distributed/host_buffers.h"

namespace ember::dist {

void broadcast_module(const nn::Module& module, int root) {
  NoGradGuard ng;
  for (const auto& [name, t] : module.named_parameters()) {
    EMBER_CHECK(t.is_contiguous(), "[dist] broadcast_module: parameter '", name, "' is not contiguous");
    broadcast(t, root);
  }
  for (const auto& [name, t] : module.named_buffers()) {
    EMBER_CHECK(t.is_contiguous(), "[dist] broadcast_module: buffer '", name, "' is not contiguous");
    broadcast(t, root);
  }
}

GradReducer::GradReducer(std::vector<Tensor> params, GradReducerOptions options) : params_(std::move(params)) {
  EMBER_CHECK(options.bucket_bytes > 0 && options.first_bucket_bytes > 0,
              "[dist] GradReducer: bucket_bytes and first_bucket_bytes must be > 0");
  // Reverse order; as PyTorch's DDP, a bucket is closed once it holds at least its cap (so a large
  // parameter may exceed it) or when the dtype or device changes.
  std::vector<size_t> bucket;
  size_t bytes = 0;
  auto cap = [&] { return buckets_.empty() ? options.first_bucket_bytes : options.bucket_bytes; };
  auto close = [&] {
    buckets_.push_back(std::move(bucket));
    bucket.clear();
    bytes = 0;
  };
  for (size_t k = params_.size(); k-- > 0;) {
    const Tensor& p = params_[k];
    EMBER_CHECK(p.defined(), "[dist] GradReducer: parameter ", k, " is undefined");
    EMBER_CHECK(is_floating(p.dtype()), "[dist] GradReducer: parameter ", k, " has dtype ", dtype_name(p.dtype()),
                " (expected a floating type)");
    const Tensor* first = bucket.empty() ? nullptr : &params_[bucket.front()];
    if (first && (first->dtype() != p.dtype() || first->device() != p.device())) close();
    bucket.push_back(k);
    bytes += p.nbytes();
    if (bytes >= cap()) close();
  }
  if (!bucket.empty()) buckets_.push_back(std::move(bucket));
  // Consecutive buckets of one dtype and device share one buffer (a group), each bucket a range of
  // it in order, so buckets that run one after another can go as a single all-reduce.
  bucket_of_.assign(params_.size(), 0);
  std::vector<int64_t> bucket_numel(buckets_.size(), 0);
  std::vector<size_t> group_start;  // group -> its first bucket (one past the last at the end)
  for (size_t b = 0; b < buckets_.size(); ++b) {
    for (size_t k : buckets_[b]) {
      bucket_numel[b] += params_[k].numel();
      bucket_of_[k] = b;
    }
    const Tensor& first = params_[buckets_[b].front()];
    const Tensor* prev = b == 0 ? nullptr : &params_[buckets_[b - 1].front()];
    if (!prev || prev->dtype() != first.dtype() || prev->device() != first.device()) group_start.push_back(b);
    group_of_.push_back(group_start.size() - 1);
  }
  group_start.push_back(buckets_.size());
  bucket_at_.assign(buckets_.size(), 0);
  for (size_t gi = 0; gi + 1 < group_start.size(); ++gi) {
    int64_t n = 0;
    for (size_t b = group_start[gi]; b < group_start[gi + 1]; ++b) {
      bucket_at_[b] = n;
      n += bucket_numel[b];
    }
    const Tensor& first = params_[buckets_[group_start[gi]].front()];
    // CPU buckets reduced after backward live where every rank on the host can read them, when
    // the whole world is on this host (host_buffers.h); else in this process's memory, for MPI.
    std::unique_ptr<detail::HostBuffers> host;
    if (options.host_shared_memory && options.overlap != Overlap::On && !first.device().is_cuda()) {
      std::string why;
      bool no_memory = false;
      host = detail::HostBuffers::create(n, first.dtype(), &why, &no_memory);
      if (no_memory && rank() == 0)  // the ranks share a host, yet could not share the memory
        std::fprintf(stderr,
                     "[dist] GradReducer: %lld gradient bytes go through MPI instead of host-shared memory: %s "
                     "(a container's /dev/shm may be too small: docker run --shm-size)\n",
                     static_cast<long long>(n * static_cast<int64_t>(dtype_size(first.dtype()))), why.c_str());
    }
    group_flat_.push_back(host ? host->mine() : empty({n}, TensorOptions(first.dtype()).with_device(first.device())));
    host_.push_back(std::move(host));
  }
  slot_.resize(params_.size());
  for (size_t b = 0; b < buckets_.size(); ++b) {
    flat_.push_back(group_flat_[group_of_[b]].narrow(0, bucket_at_[b], bucket_numel[b]));
    int64_t at = 0;
    for (size_t k : buckets_[b]) {
      slot_[k] = flat_[b].narrow(0, at, params_[k].numel()).reshape(params_[k].shape());
      at += params_[k].numel();
    }
  }
  for (const Tensor& flat : flat_)
    overlapped_.push_back(options.overlap == Overlap::On ||
                          (options.overlap == Overlap::Auto && flat.device().is_cuda()));
  missing_.assign(buckets_.size(), 0);
  ready_.assign(params_.size(), 0);
  work_.resize(buckets_.size());
  if (world_size() == 1) return;
  for (size_t k = 0; k < params_.size(); ++k)
    if (params_[k].requires_grad() && !params_[k].grad_fn())
      hooks_.push_back(autograd::register_post_accumulate_grad_hook(params_[k], [this, k](const Tensor&) {
        on_grad_ready(k);
      }));
}

bool GradReducer::uses_host_shared_memory() const {
  for (const auto& h : host_)
    if (h) return true;
  return false;
}

GradReducer::~GradReducer() {
  for (auto& h : hooks_) h.remove();
  for (auto& w : work_) {  // nothing may write into flat_ after it is gone
    try {
      w.wait();
    } catch (...) {
    }
  }
}

void GradReducer::prepare_for_backward() {
  EMBER_CHECK(!armed_, "[dist] GradReducer: prepare_for_backward() twice without finish() between");
  armed_ = true;
  next_bucket_ = 0;
  std::fill(ready_.begin(), ready_.end(), 0);
  for (size_t b = 0; b < buckets_.size(); ++b) missing_[b] = buckets_[b].size();
  last_started_in_backward_ = 0;
}

bool GradReducer::grad_is_slot(size_t param) const {
  const Tensor g = params_[param].grad();
  const Tensor& slot = slot_[param];
  return g.defined() && g.is_alias_of(slot) && g.offset() == slot.offset() && g.dtype() == slot.dtype() &&
         g.shape() == slot.shape() && g.is_contiguous();
}

void GradReducer::move_grad_to_slot(size_t param) {
  NoGradGuard ng;
  const Tensor& p = params_[param];
  Tensor& slot = slot_[param];
  if (!grad_is_slot(param)) {  // else backward accumulated into the slot itself
    const Tensor g = p.grad();
    if (g.defined()) slot.copy_(g);
    else slot.zero_();
    p.set_grad(slot);
  }
  // Divided by the world size before the sum, as PyTorch's DDP: while the values are in the
  // caches, instead of a pass over the whole bucket after MPI's all-reduce (exact for a power of
  // two). Host-shared buckets divide each share right after summing it instead.
  if (world_size() > 1 && !host_[group_of_[bucket_of_[param]]]) slot.div_(static_cast<double>(world_size()));
}

void GradReducer::on_grad_ready(size_t param) {
  if (!armed_ || ready_[param]) return;
  ready_[param] = 1;
  // Into the bucket now, while backward's fresh gradient is still in the caches; from here on the
  // parameter's gradient is its slot of the bucket, which the all-reduce averages in place.
  move_grad_to_slot(param);
  --missing_[bucket_of_[param]];
  while (next_bucket_ < buckets_.size() && missing_[next_bucket_] == 0 && overlapped_[next_bucket_]) {
    start_bucket(next_bucket_++);
    ++last_started_in_backward_;
  }
  for (size_t b = 0; b < next_bucket_; ++b) work_[b].test();  // MPI moves collectives on inside its calls
}

void GradReducer::fill_bucket(size_t b) {
  for (size_t k : buckets_[b])
    if (!ready_[k]) move_grad_to_slot(k);
}

void GradReducer::start_bucket(size_t b) {
  fill_bucket(b);
  work_[b] = all_reduce_async(flat_[b], ReduceOp::Sum);  // of gradients already divided
}

void GradReducer::finish() {
  last_seconds_ = 0;
  last_bytes_ = 0;
  if (!armed_) {
    prepare_for_backward();
    last_started_in_backward_ = 0;
  }
  armed_ = false;
  if (world_size() == 1) return;
  NoGradGuard ng;
  const auto t0 = std::chrono::steady_clock::now();
  // Buckets backward did not complete go as blocking all-reduces, in order after those under way:
  // nothing is left to overlap them with, and MPI's blocking algorithms are the faster ones (a
  // 3.8 MB all-reduce of 2 ranks here: 0.6 ms blocking, several times that non-blocking).
  // Consecutive buckets of one buffer go as one all-reduce of their joint range: after backward
  // the split into buckets buys nothing, and each collective costs the ranks a meeting.
  const size_t started = next_bucket_;
  while (next_bucket_ < buckets_.size()) {
    const size_t first = next_bucket_, gi = group_of_[first];
    int64_t n = 0;
    for (; next_bucket_ < buckets_.size() && group_of_[next_bucket_] == gi; ++next_bucket_) {
      fill_bucket(next_bucket_);
      n += flat_[next_bucket_].numel();
    }
    if (host_[gi]) host_[gi]->all_reduce_sum(bucket_at_[first], n, 1.0 / world_size());
    else all_reduce(group_flat_[gi].narrow(0, bucket_at_[first], n), ReduceOp::Sum);
  }
  // Every gradient is now its slot of a bucket (fill_bucket and the hooks made it so): the
  // averages are in place once the started all-reduces are done.
  for (size_t b = 0; b < buckets_.size(); ++b) {
    if (b < started) work_[b].wait();
    work_[b] = Work();
    last_bytes_ += static_cast<int64_t>(flat_[b].nbytes());
  }
  last_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void GradReducer::reduce() { finish(); }

}  // namespace ember::dist
