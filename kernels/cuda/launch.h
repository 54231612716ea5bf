// Host-side helpers shared by the CUDA kernel files: error checks that name the failing call, the
// device guard, the current stream, launch sizing, scratch buffers from the caching allocator, and
// offset calculators built from tensors. Included only by kernels/cuda/*.cu.
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

#include "kernels/cuda/device/offset.cuh"
#include "runtime/allocator.h"
#include "runtime/error.h"
#include "runtime/tensor.h"

namespace ember::cu {

// Throws ember::Error "[cuda] <call> failed: <name> (<description>)" unless st is cudaSuccess.
void check(cudaError_t st, const char* call);
#define EMBER_CUDA_CHECK(expr) ::ember::cu::check((expr), #expr)
// Checks the launch of `kernel` (bad configuration, missing image for this GPU).
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

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

inline constexpr int kThreads = 256;
// Blocks for n work items of `per_block` each, at least 1.
inline unsigned blocks_for(int64_t n, int64_t per_block) {
  return static_cast<unsigned>(std::max<int64_t>(1, (n + per_block - 1) / per_block));
}
// Whether every index below n fits the 32-bit fast path.
inline bool fits_u32(int64_t n) { return n < (int64_t{1} << 31); }

// Dims of NT tensors of one shape with size-1 dims dropped and mergeable neighbours coalesced
// (the same rules as the CPU loops), innermost first.
template <int NT>
struct Dims {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims][NT] = {};
  // True when every tensor walks memory contiguously (ndim <= 1 with unit strides).
  bool contiguous() const {
    if (ndim == 0) return true;
    if (ndim > 1) return false;
    for (int t = 0; t < NT; ++t)
      if (strides[0][t] != 1) return false;
    return true;
  }
};

template <int NT>
Dims<NT> coalesce(const Shape& shape, const std::array<const Strides*, NT>& st) {
  // outermost-first pass as kernels/cpu/loops.h make_geometry, then reversed
  int n = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims][NT] = {};
  for (int d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (n > 0) {
      bool merge = true;
      for (int t = 0; t < NT; ++t)
        if (strides[n - 1][t] != (*st[t])[d] * shape[d]) merge = false;
      if (merge) {
        sizes[n - 1] *= shape[d];
        for (int t = 0; t < NT; ++t) strides[n - 1][t] = (*st[t])[d];
        continue;
      }
    }
    sizes[n] = shape[d];
    for (int t = 0; t < NT; ++t) strides[n][t] = (*st[t])[d];
    ++n;
  }
  Dims<NT> out;
  out.ndim = n;
  for (int d = 0; d < n; ++d) {
    out.sizes[d] = sizes[n - 1 - d];
    for (int t = 0; t < NT; ++t) out.strides[d][t] = strides[n - 1 - d][t];
  }
  return out;
}

template <int NT>
Dims<NT> coalesce(const Shape& shape, const std::array<const Tensor*, NT>& ts) {
  std::array<const Strides*, NT> st;
  for (int t = 0; t < NT; ++t) st[t] = &ts[t]->strides();
  return coalesce<NT>(shape, st);
}

template <int NT, typename Index>
OffsetCalc<NT, Index> make_offset_calc(const Dims<NT>& d) {
  OffsetCalc<NT, Index> oc;
  oc.ndim = d.ndim;
  for (int i = 0; i < d.ndim; ++i) {
    oc.sizes[i] = IntDivider<Index>(static_cast<Index>(d.sizes[i]));
    for (int t = 0; t < NT; ++t) oc.strides[i][t] = d.strides[i][t];
  }
  return oc;
}

}  // namespace ember::cu
