// Buffers that every rank of a world on one host maps, and the all-reduce over them as plain
// loads and stores (process_group.cpp implements them over the MPI world).
//
// MPI's shared-memory transport reduces a message by copying it through the kernel (cross-memory
// attach, which also pins every page) or through shared fragments, into buffers of its own; here
// every rank's buffer already lies in memory the others see, so an all-reduce is two passes of
// user-space loops: each rank sums its share of the range from every rank's buffer into its own,
// then copies the others' shares from theirs. Measured on 2 vCPUs (docs/distributed.md), mlp's
// 3.8 MB gradients take ~0.4 ms this way against ~1 ms through MPI_Allreduce in the training loop.
//
// The memory is a POSIX shared-memory object that local rank 0 makes and names, sized and reserved
// up front (posix_fallocate: a full /dev/shm is refused here, not a SIGBUS later), sent to the
// others over MPI and unlinked once all have mapped it; it is unmapped when the last tensor over
// it is gone. A request larger than /dev/shm's free space is refused before anything is reserved.
// Synchronisation is MPI_Barrier on the host's communicator.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ember/runtime/tensor.h"

namespace ember::dist::detail {

class HostBuffers {
 public:
  // Every rank's buffer of `numel` elements of `dtype` (f32 or f64), all ranks calling together.
  // Null (with `why_not` set) where the world is not on one host, has one rank, or the memory
  // cannot be had (then `no_memory` is set too); every rank gets the same answer.
  static std::unique_ptr<HostBuffers> create(int64_t numel, DType dtype, std::string* why_not,
                                             bool* no_memory = nullptr);
  ~HostBuffers();
  HostBuffers(const HostBuffers&) = delete;
  HostBuffers& operator=(const HostBuffers&) = delete;

  // This rank's buffer, 1-D; its storage keeps the mapping alive.
  Tensor mine() const;
  // Every rank's [offset, offset + n) becomes the sum over ranks times `scale` (blocking, all
  // ranks together). Each share is summed and scaled by one rank, so every rank gets its bits.
  void all_reduce_sum(int64_t offset, int64_t n, double scale = 1.0);

 private:
  HostBuffers() = default;
  std::vector<Tensor> segments_;  // every rank's buffer, in rank order; each holds the mapping
};

}  // namespace ember::dist::detail
