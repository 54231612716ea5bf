// CUDA 2-D max and average pooling (NCHW, contiguous, f32/f64) and their backward passes, with
// PyTorch's windows from kernels/common/pool.h, as on the CPU. Forward: one thread per output,
// scanning its window in the CPU's order. Backward gathers instead of scattering: one thread per
// input element adds the gradients of the outputs whose window covers it, in increasing output
// order, so there are no atomics and the sums equal the CPU's bit for bit.
#include "kernels/common/pool.h"
#include "kernels/cuda/launch.h"
#include "kernels/kernels.h"

namespace ember::kernels {
namespace {

__device__ inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
__device__ inline int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// Outputs o in [lo, hi] whose window (start o*s - p, taps every d, k taps) can reach position i.
__device__ inline void covering(int64_t i, int64_t k, int64_t s, int64_t p, int64_t d, int64_t out, int64_t& lo,
                                int64_t& hi) {
  lo = pool_max(0, ceil_div(i + p - (k - 1) * d, s));
  hi = pool_min(out - 1, floor_div(i + p, s));
}

template <typename T>
__global__ void max_pool_kernel(PoolGeom g, const T* x, T* y, int64_t* indices) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t P = g.OH * g.OW;
  if (idx >= g.N * g.C * P) return;
  const int64_t p = idx / P, oh = idx % P / g.OW, ow = idx % g.OW;
  const Taps h = window_taps(oh * g.sh - g.ph, g.kh, g.dh, g.H);
  const Taps w = window_taps(ow * g.sw - g.pw, g.kw, g.dw, g.W);
  const WindowMax<T> m = window_max(x + p * g.H * g.W, g.W, h, w, g.dh, g.dw);
  y[idx] = m.value;
  indices[idx] = m.index;
}

template <typename T>
__global__ void max_pool_backward_kernel(PoolGeom g, const T* dy, const int64_t* indices, T* dx) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t HW = g.H * g.W, P = g.OH * g.OW;
  if (idx >= g.N * g.C * HW) return;
  const int64_t p = idx / HW, pos = idx % HW, ih = pos / g.W, iw = pos % g.W;
  int64_t oh0, oh1, ow0, ow1;
  covering(ih, g.kh, g.sh, g.ph, g.dh, g.OH, oh0, oh1);
  covering(iw, g.kw, g.sw, g.pw, g.dw, g.OW, ow0, ow1);
  const int64_t* ip = indices + p * P;
  const T* dyp = dy + p * P;
  T acc = 0;
  for (int64_t oh = oh0; oh <= oh1; ++oh)
    for (int64_t ow = ow0; ow <= ow1; ++ow)
      if (ip[oh * g.OW + ow] == pos) acc += dyp[oh * g.OW + ow];
  dx[idx] = acc;
}

template <typename T>
__global__ void avg_pool_kernel(PoolGeom g, const T* x, T* y) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t P = g.OH * g.OW;
  if (idx >= g.N * g.C * P) return;
  const int64_t p = idx / P, oh = idx % P / g.OW, ow = idx % g.OW;
  y[idx] = window_average(x + p * g.H * g.W, g.W, avg_window(g, oh, ow));
}

template <typename T>
__global__ void avg_pool_backward_kernel(PoolGeom g, const T* dy, T* dx) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t HW = g.H * g.W, P = g.OH * g.OW;
  if (idx >= g.N * g.C * HW) return;
  const int64_t p = idx / HW, ih = idx % HW / g.W, iw = idx % g.W;
  int64_t oh0, oh1, ow0, ow1;
  covering(ih, g.kh, g.sh, g.ph, 1, g.OH, oh0, oh1);
  covering(iw, g.kw, g.sw, g.pw, 1, g.OW, ow0, ow1);
  const T* dyp = dy + p * P;
  T acc = 0;
  for (int64_t oh = oh0; oh <= oh1; ++oh) {
    for (int64_t ow = ow0; ow <= ow1; ++ow) {
      const AvgWindow win = avg_window(g, oh, ow);
      if (win.divisor <= 0) continue;
      acc += dyp[oh * g.OW + ow] / static_cast<T>(win.divisor);
    }
  }
  dx[idx] = acc;
}

template <typename T>
const T* cptr(const Tensor& t) {
  return static_cast<const T*>(t.data_ptr());
}
template <typename T>
T* mptr(const Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

}  // namespace

void max_pool2d_cuda(const PoolGeom& g, const Tensor& x, const Tensor& y, const Tensor& indices) {
  if (y.numel() == 0) return;
  cu::DeviceGuard guard(y);
  dispatch_floating(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    max_pool_kernel<T><<<cu::blocks_for(y.numel(), cu::kThreads), cu::kThreads, 0, cu::current_stream()>>>(
        g, cptr<T>(x), mptr<T>(y), mptr<int64_t>(indices));
    cu::check_launch("max_pool_kernel");
  });
}

void max_pool2d_backward_cuda(const PoolGeom& g, const Tensor& dy, const Tensor& indices, const Tensor& dx) {
  if (dx.numel() == 0) return;
  cu::DeviceGuard guard(dx);
  dispatch_floating(dy.dtype(), "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    max_pool_backward_kernel<T><<<cu::blocks_for(dx.numel(), cu::kThreads), cu::kThreads, 0, cu::current_stream()>>>(
        g, cptr<T>(dy), cptr<int64_t>(indices), mptr<T>(dx));
    cu::check_launch("max_pool_backward_kernel");
  });
}

void avg_pool2d_cuda(const PoolGeom& g, const Tensor& x, const Tensor& y) {
  if (y.numel() == 0) return;
  cu::DeviceGuard guard(y);
  dispatch_floating(x.dtype(), "avg_pool2d", [&](auto tag) {
    using T = decltype(tag);
    avg_pool_kernel<T><<<cu::blocks_for(y.numel(), cu::kThreads), cu::kThreads, 0, cu::current_stream()>>>(
        g, cptr<T>(x), mptr<T>(y));
    cu::check_launch("avg_pool_kernel");
  });
}

void avg_pool2d_backward_cuda(const PoolGeom& g, const Tensor& dy, const Tensor& dx) {
  if (dx.numel() == 0) return;
  cu::DeviceGuard guard(dx);
  dispatch_floating(dy.dtype(), "avg_pool2d", [&](auto tag) {
    using T = decltype(tag);
    avg_pool_backward_kernel<T><<<cu::blocks_for(dx.numel(), cu::kThreads), cu::kThreads, 0, cu::current_stream()>>>(
        g, cptr<T>(dy), mptr<T>(dx));
    cu::check_launch("avg_pool_backward_kernel");
  });
}

}  // namespace ember::kernels
