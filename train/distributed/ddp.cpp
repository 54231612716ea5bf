// Module broadcast and bucketed gradient averaging (train/distributed/ddp.h).
#include "train/distributed/ddp.h"

#include <chrono>

#include "ember/runtime/autograd.h"
#include "ember/runtime/error.h"
#include "ember/runtime/ops.h"
#include "train/distributed/process_group.h"

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
  EMBER_CHECK(options.bucket_bytes > 0, "[dist] GradReducer: bucket_bytes must be > 0");
  // Reverse order, a new bucket whenever the dtype changes or the cap would be passed (a
  // parameter larger than the cap gets a bucket of its own).
  std::vector<size_t> bucket;
  size_t bytes = 0;
  for (size_t k = params_.size(); k-- > 0;) {
    const Tensor& p = params_[k];
    EMBER_CHECK(p.defined(), "[dist] GradReducer: parameter ", k, " is undefined");
    EMBER_CHECK(is_floating(p.dtype()), "[dist] GradReducer: parameter ", k, " has dtype ", dtype_name(p.dtype()),
                " (expected a floating type)");
    const size_t nb = p.nbytes();
    const bool other_dtype = !bucket.empty() && params_[bucket.front()].dtype() != p.dtype();
    if (!bucket.empty() && (other_dtype || bytes + nb > options.bucket_bytes)) {
      buckets_.push_back(std::move(bucket));
      bucket.clear();
      bytes = 0;
    }
    bucket.push_back(k);
    bytes += nb;
  }
  if (!bucket.empty()) buckets_.push_back(std::move(bucket));
  for (const auto& b : buckets_) {
    int64_t n = 0;
    for (size_t k : b) n += params_[k].numel();
    const Tensor& first = params_[b.front()];
    flat_.push_back(empty({n}, TensorOptions(first.dtype()).with_device(first.device())));
  }
}

void GradReducer::reduce() {
  last_seconds_ = 0;
  last_bytes_ = 0;
  if (world_size() == 1) return;
  NoGradGuard ng;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    Tensor& flat = flat_[b];
    int64_t at = 0;
    for (size_t k : buckets_[b]) {
      const Tensor& p = params_[k];
      const Tensor g = p.grad();
      Tensor slot = flat.narrow(0, at, p.numel());
      if (g.defined()) slot.copy_(g.reshape({-1}));
      else slot.zero_();
      at += p.numel();
    }
    const auto t0 = std::chrono::steady_clock::now();
    all_reduce(flat, ReduceOp::Mean);
    last_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    last_bytes_ += static_cast<int64_t>(flat.nbytes());
    at = 0;
    for (size_t k : buckets_[b]) {
      const Tensor& p = params_[k];
      Tensor avg = flat.narrow(0, at, p.numel()).reshape(p.shape());
      Tensor g = p.grad();
      if (g.defined() && g.is_contiguous()) g.copy_(avg);
      else p.set_grad(avg.clone());
      at += p.numel();
    }
  }
}

}  // namespace ember::dist
