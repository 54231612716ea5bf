// The numerics of data-parallel training on the process group (process_group.h), as PyTorch's
// DistributedDataParallel does them: every rank starts from rank 0's parameters and buffers, and
// the gradients are averaged across ranks, flattened into buckets (the first about 1 MB, the
// others about 25 MB) in reverse parameter order, the order backward produces them, with one
// all-reduce per bucket. A bucket's all-reduce starts from a gradient hook as soon as backward has
// accumulated the last of its gradients, so communication overlaps the rest of backward; the
// small first bucket gets the exchange going early. As PyTorch's gradient_as_bucket_view, each
// gradient is moved into its bucket as soon as backward has produced it (still in the caches) and
// then is a view of the bucket, which the all-reduce averages in place: no copy back, and a
// gradient kept across zero_grad(false) is accumulated into the bucket directly. (So a gradient
// tensor held past the next backward pass sees that pass's values.) With the same data split, N
// ranks of batch B step like one process of batch N*B (the mean loss's gradient is the mean of
// the ranks').
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
#include <memory>
#include <vector>

#include "ember/nn/module.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/tensor.h"
#include "ember/train/distributed/process_group.h"

namespace ember::dist {

namespace detail {
class HostBuffers;
}

// Makes every rank's parameters and buffers (in named order) those of `root`.
void broadcast_module(const nn::Module& module, int root = 0);

// When buckets start: during backward from the gradient hooks (On), after it (Off), or by device
// (Auto): CUDA buckets during backward (NCCL queues them on the stream behind the backward
// kernels), CPU buckets after it. On the CPU, MPI moves a non-blocking all-reduce forward only
// inside its own calls, on the same cores backward keeps busy, and its non-blocking algorithms are
// slower than the blocking ones: measured on 2 vCPUs (docs/distributed.md), mlp's 2 ranks train at
// 1.74x one process with the buckets through MPI after backward, 1.66x with them during it (and
// 1.83x after it in host-shared memory).
enum class Overlap { Auto, On, Off };

struct GradReducerOptions {
  size_t bucket_bytes = size_t{25} << 20;       // PyTorch's bucket_cap_mb default
  size_t first_bucket_bytes = size_t{1} << 20;  // PyTorch's first bucket (starts early)
  Overlap overlap = Overlap::Auto;
  // Where every rank is on one host, CPU buckets of f32/f64 reduced after backward are kept in
  // memory all the ranks map, and reduced there with loads and stores instead of MPI's copies
  // (train/distributed/host_buffers.h); false keeps them private and goes through MPI_Allreduce.
  bool host_shared_memory = true;
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
  // After that backward: reduces the buckets not started yet (blocking, consecutive ones as one
  // all-reduce; a parameter backward did not reach takes part as zeros), waits for the others;
  // every gradient is then its bucket's slot, holding the average. A world of one changes nothing.
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
  // Whether some bucket is reduced in host-shared memory (GradReducerOptions::host_shared_memory).
  bool uses_host_shared_memory() const;

 private:
  void on_grad_ready(size_t param);
  bool grad_is_slot(size_t param) const;
  void move_grad_to_slot(size_t param);  // the gradient (zeros if none) into its slot, which becomes the gradient
  void fill_bucket(size_t b);   // move_grad_to_slot for the bucket's gradients the hooks did not move
  void start_bucket(size_t b);  // fill_bucket and its non-blocking all-reduce

  std::vector<Tensor> params_;
  std::vector<std::vector<size_t>> buckets_;
  std::vector<size_t> bucket_of_;            // parameter -> bucket
  std::vector<Tensor> group_flat_;           // one buffer per run of buckets of one dtype and device
  std::vector<size_t> group_of_;             // bucket -> group
  std::vector<int64_t> bucket_at_;           // bucket -> its first element in the group's buffer
  std::vector<Tensor> flat_;                 // per bucket: its range of the group's buffer
  std::vector<Tensor> slot_;                 // per parameter: its range of the bucket, in its shape
  std::vector<std::unique_ptr<detail::HostBuffers>> host_;  // per group: its shared memory, or null
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
