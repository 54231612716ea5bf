// Collectives of CUDA tensors through NCCL (process_group.cpp calls these for CUDA tensors), in a
// CUDA build where nccl.h was found. libnccl is opened with dlopen on first use (libnccl.so.2,
// then libnccl.so, or EMBER_NCCL_LIBRARY), so programs start where it is missing. One
// communicator per device, made on the first collective on it: rank 0's unique id goes to every
// rank over MPI. Work is queued on the device's current stream (no host wait).
#pragma once
#include <string>

#include "ember/runtime/tensor.h"
#include "ember/train/distributed/process_group.h"

namespace ember::dist::nccl {

// Whether this build has NCCL support ("" if so, else why not).
std::string unavailable_reason();
void all_reduce(const Tensor& t, ReduceOp op);
void broadcast(const Tensor& t, int root);

}  // namespace ember::dist::nccl
