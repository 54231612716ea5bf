// The numerics of data-parallel training on the process group (process_group.h), as PyTorch's
// DistributedDataParallel does them: every rank starts from rank 0's parameters and buffers, and
// the gradients are averaged across ranks, flattened into buckets (the first about 1 MB, the
// others about 25 MB) in reverse parameter order, the order backward produces them, with one
// all-reduce per bucket. A bucket's all-reduce starts from a gradient hook as soon as backward has
// accumulated the last of its gradients, so communication overlaps the rest of backward; the
// small first bucket gets the exchange going early. With the same data split, N ranks of batch B
// step like one process of batch N*B (the mean loss's gradient is the mean of the ranks').
//
//   dist::broadcast_module(model);
//   dist::GradReducer reducer(model.parameters());
//   ... reducer.prepare_for_backward(); loss.backward(); reducer.finish(); optimizer.step();
//
// Without prepare_for_backward() the hooks do nothing (accumulating micro-batches without
// communicating, as DDP's no_sync()); reduce() averages after a backward in one go.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ember/nn/module.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/tensor.h"
#include "ember/train/distributed/process_group.h"

namespace ember::dist {

// Makes every rank's parameters and buffers (in named order) those of `root`.
void broadcast_module(const nn::Module& module, int root = 0);

// When buckets start: during backward from the gradient hooks (On), after it (Off), or by device
// (Auto): CUDA buckets during backward (NCCL queues them on the stream behind the backward
// kernels), CPU buckets after it. On the CPU, MPI moves a non-blocking all-reduce forward only
// inside its own calls, on the same cores backward keeps busy, and its non-blocking algorithms are
// slower than the blocking ones: measured on 2 vCPUs (docs/distributed.md), mlp's 2 ranks train at
// 1.71x one process with the buckets after backward and 1.65x with them during it.
enum class Overlap { Auto, On, Off };

struct GradReducerOptions {
  size_t bucket_bytes = size_t{25} << 20;       // PyTorch's bucket_cap_mb default
  size_t first_bucket_bytes = size_t{1} << 20;  // PyTorch's first bucket (starts early)
  Overlap overlap = Overlap::Auto;
};

class GradReducer {
 public:
  // The parameters, in model order (buckets run in reverse). Every rank must pass the same list
  // (the same shapes and dtypes in the same order).
  explicit GradReducer(std::vector<Tensor> params, GradReducerOptions options = {});
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // Arms the hooks for the next backward pass: each overlapped bucket's all-reduce starts once
  // backward has produced all its gradients (buckets start in order, so every rank starts the
  // same collectives in the same order; the first bucket that does not overlap stops the rest).
  void prepare_for_backward();
  // After that backward: reduces the buckets not started yet (blocking; a parameter backward did
  // not reach takes part as zeros), waits for the others and writes the averages into the
  // gradients. A world of one changes nothing.
  void finish();
  // Averages every parameter's gradient across ranks after a backward pass that ran without
  // prepare_for_backward(), in place: finish() by its other name.
  void reduce();
  // The buckets: indices into the parameter list, the first bucket holding the last parameters.
  const std::vector<std::vector<size_t>>& buckets() const { return buckets_; }
  // Of the last finish(): seconds spent waiting for all-reduces after backward, the bytes
  // reduced, and how many buckets had started during backward.
  double last_allreduce_seconds() const { return last_seconds_; }
  int64_t last_bytes() const { return last_bytes_; }
  int last_buckets_started_in_backward() const { return last_started_in_backward_; }

 private:
  void on_grad_ready(size_t param);
  void fill_bucket(size_t b);   // the gradients into the bucket's flat buffer
  void start_bucket(size_t b);  // fill_bucket and its non-blocking all-reduce

  std::vector<Tensor> params_;
  std::vector<std::vector<size_t>> buckets_;
  std::vector<size_t> bucket_of_;            // parameter -> bucket
  std::vector<Tensor> flat_;                 // one buffer per bucket, reused
  std::vector<autograd::GradHookHandle> hooks_;
  std::vector<uint8_t> overlapped_;          // per bucket: starts during backward
  // this backward pass
  bool armed_ = false;
  std::vector<size_t> missing_;              // per bucket: gradients not produced yet
  std::vector<uint8_t> ready_;               // per parameter
  size_t next_bucket_ = 0;                   // buckets start in order
  std::vector<Work> work_;                   // per bucket
  double last_seconds_ = 0;
  int64_t last_bytes_ = 0;
  int last_started_in_backward_ = 0;
};

}  // namespace ember::dist
