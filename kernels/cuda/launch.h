// Host-side helpers shared by the CUDA kernel files: error checks that name the failing call, the
// device guard, the current stream, launch sizing, scratch buffers from the caching allocator, and
// offset calculators built from coalesced dims. Included only by kernels/cuda/*.cu.
//
// Streams: every kernel, cuBLAS and cuDNN call and copy of a device runs on that device's current
// stream for the calling thread, the legacy default stream unless a StreamGuard says otherwise. The
// caching allocator hands a freed block to the next request at once, which is safe because work
// is ordered on that one stream; code that switches streams must synchronise before it frees.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "kernels/common/geometry.h"
#include "kernels/cuda/device/offset.cuh"
#include "ember/runtime/allocator.h"
#include "ember/runtime/error.h"
#include "ember/runtime/tensor.h"

namespace ember::cu {

// Throws ember::Error "[cuda] <call> failed: <name> (<description>)" unless st is cudaSuccess.
void check(cudaError_t st, const char* call);
#define EMBER_CUDA_CHECK(expr) ::ember::cu::check((expr), #expr)
// Checks the launch of `kernel` (bad configuration, missing image for this GPU).
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

// Counts a host wait for the device (a stream, device or event synchronisation), and with
// device_to_host a copy into host memory, for cuda_round_trips() (runtime/device.h).
void count_round_trip(bool device_to_host);

// Makes `device` current for the scope (restores the previous device after).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  explicit DeviceGuard(const Tensor& t) : DeviceGuard(t.device().index) {}
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
};

// The calling thread's current stream on `device` (the legacy default stream unless set).
cudaStream_t current_stream(int device);
// The current stream of the current device.
cudaStream_t current_stream();
// Sets the calling thread's current stream on `device` (nullptr: the legacy default stream).
void set_current_stream(int device, cudaStream_t stream);

// Sets the calling thread's current stream on a device for the scope.
class StreamGuard {
 public:
  StreamGuard(int device, cudaStream_t stream);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  int device_;
  cudaStream_t prev_;
};

// A CUDA event: record on a stream, wait for it, time between two.
class Event {
 public:
  explicit Event(bool timing = false);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(cudaStream_t stream);
  void synchronize() const;
  bool done() const;  // true once the recorded work has finished
  float elapsed_ms(const Event& end) const;  // this (earlier) to end; both recorded with timing
  cudaEvent_t get() const { return ev_; }

 private:
  cudaEvent_t ev_ = nullptr;
};

// Scratch device memory from the caching allocator for the duration of a scope. Safe to free as
// soon as the work using it is enqueued (see the stream rule at the top of this file).
class Scratch {
 public:
  Scratch(int device, size_t nbytes);
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* get() const { return p_; }
  template <typename T>
  T* as() const { return static_cast<T*>(p_); }

 private:
  Device dev_;
  size_t n_;
  void* p_ = nullptr;
};

// CUDA graphs (device.cu): the capture in progress on the calling thread, in which the fused
// optimizer kernels record their nodes (record_optimizer_node, right after their launch), and the
// graph an update is setting, whose recorded nodes take the optimizer's new scalars in capture
// order (set_next_optimizer_node, instead of a launch).
struct GraphNodeRecord {
  cudaGraphNode_t node;
  const void* func;
};
struct GraphImpl {
  int device = 0;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  std::vector<GraphNodeRecord> optimizer_nodes;
  size_t cursor = 0;
};
GraphImpl* capturing_graph();
GraphImpl* updating_graph();
void record_optimizer_node(GraphImpl& g, const void* func, const char* name);
void set_next_optimizer_node(GraphImpl& g, const void* func, dim3 grid, dim3 block, void** params, const char* name);

inline constexpr int kThreads = 256;
// Blocks for n work items of `per_block` each, at least 1.
inline unsigned blocks_for(int64_t n, int64_t per_block) {
  return static_cast<unsigned>(std::max<int64_t>(1, (n + per_block - 1) / per_block));
}
// Whether every index below n fits the 32-bit fast path.
inline bool fits_u32(int64_t n) { return n < (int64_t{1} << 31); }

// The offset calculator of coalesced dims (kernels/common/geometry.h), innermost dim first.
template <int NT, typename Index>
OffsetCalc<NT, Index> make_offset_calc(const kernels::Geometry<NT>& g) {
  static_assert(kMaxRank <= kMaxDims, "an offset calculator holds every dim of a tensor");
  OffsetCalc<NT, Index> oc;
  oc.ndim = g.ndim;
  for (int i = 0; i < g.ndim; ++i) {
    const int d = g.ndim - 1 - i;
    oc.sizes[i] = IntDivider<Index>(static_cast<Index>(g.shape[d]));
    for (int t = 0; t < NT; ++t) oc.strides[i][t] = g.strides[t][d];
  }
  return oc;
}

}  // namespace ember::cu
