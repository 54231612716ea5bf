// CUDA 2-D max and average pooling (NCHW, contiguous, f32/f64) and their backward passes, with
// PyTorch's window rules as in kernels/cpu/pool.cpp. Forward: one thread per output, scanning its
// window in the CPU's order. Backward gathers instead of scattering: one thread per input element
// adds the gradients of the outputs whose window covers it, in increasing output order, so there
// are no atomics and the sums equal the CPU's bit for bit.
#include <cmath>
#include <limits>

#include "kernels/cuda/launch.h"
#include "kernels/kernels.h"

namespace ember::kernels {
namespace {

__device__ inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
__device__ inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
__device__ inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
__device__ inline int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// The first tap of a dilated window starting at `start` that is >= 0, and its (exclusive) end.
__device__ inline void window(int64_t start, int64_t k, int64_t d, int64_t size, int64_t& lo, int64_t& hi) {
  hi = imin(start + (k - 1) * d + 1, size);
  lo = start;
  if (lo < 0) lo += ((-lo + d - 1) / d) * d;
}

// Outputs o in [lo, hi] whose window (start o*s - p, taps every d, k taps) can reach position i.
__device__ inline void covering(int64_t i, int64_t k, int64_t s, int64_t p, int64_t d, int64_t out, int64_t& lo,
                                int64_t& hi) {
  lo = imax(0, ceil_div(i + p - (k - 1) * d, s));
  hi = imin(out - 1, floor_div(i + p, s));
}

template <typename T>
__global__ void max_pool_kernel(PoolGeom g, const T* x, T* y, int64_t* indices) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t P = g.OH * g.OW;
  if (idx >= g.N * g.C * P) return;
  const int64_t p = idx / P, oh = idx % P / g.OW, ow = idx % g.OW;
  const T* xp = x + p * g.H * g.W;
  int64_t h0, h1, w0, w1;
  window(oh * g.sh - g.ph, g.kh, g.dh, g.H, h0, h1);
  window(ow * g.sw - g.pw, g.kw, g.dw, g.W, w0, w1);
  T best = -std::numeric_limits<T>::infinity();
  int64_t arg = h0 < h1 && w0 < w1 ? h0 * g.W + w0 : -1;
  for (int64_t ih = h0; ih < h1; ih += g.dh) {
    for (int64_t iw = w0; iw < w1; iw += g.dw) {
      const T v = xp[ih * g.W + iw];
      if (v > best || v != v) {
        best = v;
        arg = ih * g.W + iw;
      }
    }
  }
  y[idx] = best;
  indices[idx] = arg;
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

// Average-pool window, clipped to the input, and its divisor (kernels/cpu/pool.cpp avg_window).
struct AvgWindow {
  int64_t h0, h1, w0, w1, divisor;
};

__device__ inline AvgWindow avg_window(const PoolGeom& g, int64_t oh, int64_t ow) {
  int64_t h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
  int64_t h1 = imin(h0 + g.kh, g.H + g.ph), w1 = imin(w0 + g.kw, g.W + g.pw);
  const int64_t padded = (h1 - h0) * (w1 - w0);
  h0 = imax(h0, 0);
  w0 = imax(w0, 0);
  h1 = imin(h1, g.H);
  w1 = imin(w1, g.W);
  const int64_t inside = imax(h1 - h0, 0) * imax(w1 - w0, 0);
  return {h0, h1, w0, w1, g.count_include_pad ? padded : inside};
}

template <typename T>
__global__ void avg_pool_kernel(PoolGeom g, const T* x, T* y) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t P = g.OH * g.OW;
  if (idx >= g.N * g.C * P) return;
  const int64_t p = idx / P, oh = idx % P / g.OW, ow = idx % g.OW;
  const T* xp = x + p * g.H * g.W;
  const AvgWindow win = avg_window(g, oh, ow);
  T s = 0;
  for (int64_t ih = win.h0; ih < win.h1; ++ih)
    for (int64_t iw = win.w0; iw < win.w1; ++iw) s += xp[ih * g.W + iw];
  y[idx] = win.divisor > 0 ? s / static_cast<T>(win.divisor) : T(0);
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
