// The numerics of data-parallel training on the process group (process_group.h), as PyTorch's
// DistributedDataParallel does them: every rank starts from rank 0's parameters and buffers, and
// after each backward pass the gradients are averaged across ranks, flattened into buckets of
// about 25 MB in reverse parameter order (the order backward produces them) with one all-reduce
// per bucket. With the same data split, N ranks of batch B then step like one process of batch
// N*B (the mean loss's gradient is the mean of the ranks' gradients).
//
//   dist::broadcast_module(model);
//   dist::GradReducer reducer(model.parameters());
//   ... loss.backward(); reducer.reduce(); optimizer.step();
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ember/nn/module.h"
#include "ember/runtime/tensor.h"

namespace ember::dist {

// Makes every rank's parameters and buffers (in named order) those of `root`.
void broadcast_module(const nn::Module& module, int root = 0);

struct GradReducerOptions {
  size_t bucket_bytes = size_t{25} << 20;  // PyTorch's bucket_cap_mb default
};

class GradReducer {
 public:
  // The parameters, in model order (buckets run in reverse). Every rank must pass the same list
  // (the same shapes and dtypes in the same order).
  explicit GradReducer(std::vector<Tensor> params, GradReducerOptions options = {});
  // Averages every parameter's gradient across ranks, in place. A parameter without a gradient on
  // this rank takes part as zeros and gets the average as its gradient (ranks must agree on the
  // buckets). A world of one changes nothing.
  void reduce();
  // The buckets: indices into the parameter list, the first bucket holding the last parameters.
  const std::vector<std::vector<size_t>>& buckets() const { return buckets_; }
  // Seconds the last reduce() spent in all-reduce calls, and the bytes it reduced.
  double last_allreduce_seconds() const { return last_seconds_; }
  int64_t last_bytes() const { return last_bytes_; }

 private:
  std::vector<Tensor> params_;
  std::vector<std::vector<size_t>> buckets_;
  std::vector<Tensor> flat_;  // one buffer per bucket, reused
  double last_seconds_ = 0;
  int64_t last_bytes_ = 0;
};

}  // namespace ember::dist
