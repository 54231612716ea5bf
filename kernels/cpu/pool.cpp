// CPU 2-D max and average pooling (NCHW, contiguous, f32/f64) and their backward passes, one
// (n, c) plane per task. The windows are PyTorch's, from kernels/common/pool.h (shared with CUDA):
// max pooling skips padded taps, propagates NaN and records the first maximum; average pooling's
// divisor follows count_include_pad.
#include <algorithm>

#include "kernels/common/pool.h"
#include "kernels/kernels.h"
#include "ember/runtime/parallel.h"

namespace ember::kernels {
namespace {

// Planes per task: enough work per chunk to amortise the thread hand-off.
int64_t plane_grain(const PoolGeom& g) {
  const int64_t work = std::max<int64_t>(1, g.OH * g.OW * g.kh * g.kw);
  return std::max<int64_t>(1, 32768 / work);
}

template <typename T>
void max_pool_impl(const PoolGeom& g, const Tensor& xt, const Tensor& yt, const Tensor& it) {
  const T* x = xt.data_ptr<T>();
  T* y = yt.data_ptr<T>();
  int64_t* idx = it.data_ptr<int64_t>();
  const int64_t HW = g.H * g.W, P = g.OH * g.OW;
  parallel_for(0, g.N * g.C, plane_grain(g), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const T* xp = x + p * HW;
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        const Taps h = window_taps(oh * g.sh - g.ph, g.kh, g.dh, g.H);
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const Taps w = window_taps(ow * g.sw - g.pw, g.kw, g.dw, g.W);
          const WindowMax<T> m = window_max(xp, g.W, h, w, g.dh, g.dw);
          y[p * P + oh * g.OW + ow] = m.value;
          idx[p * P + oh * g.OW + ow] = m.index;
        }
      }
    }
  });
}

template <typename T>
void max_pool_backward_impl(const PoolGeom& g, const Tensor& dyt, const Tensor& it, const Tensor& dxt) {
  const T* dy = dyt.data_ptr<T>();
  const int64_t* idx = it.data_ptr<int64_t>();
  T* dx = dxt.data_ptr<T>();
  const int64_t HW = g.H * g.W, P = g.OH * g.OW;
  parallel_for(0, g.N * g.C, plane_grain(g), [&](int64_t p0, int64_t p1) {
    std::fill(dx + p0 * HW, dx + p1 * HW, T(0));
    for (int64_t p = p0; p < p1; ++p) {
      T* dxp = dx + p * HW;
      for (int64_t o = 0; o < P; ++o) {
        const int64_t i = idx[p * P + o];
        if (i >= 0 && i < HW) dxp[i] += dy[p * P + o];
      }
    }
  });
}

template <typename T>
void avg_pool_impl(const PoolGeom& g, const Tensor& xt, const Tensor& yt) {
  const T* x = xt.data_ptr<T>();
  T* y = yt.data_ptr<T>();
  const int64_t HW = g.H * g.W, P = g.OH * g.OW;
  parallel_for(0, g.N * g.C, plane_grain(g), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const T* xp = x + p * HW;
      for (int64_t oh = 0; oh < g.OH; ++oh)
        for (int64_t ow = 0; ow < g.OW; ++ow)
          y[p * P + oh * g.OW + ow] = window_average(xp, g.W, avg_window(g, oh, ow));
    }
  });
}

template <typename T>
void avg_pool_backward_impl(const PoolGeom& g, const Tensor& dyt, const Tensor& dxt) {
  const T* dy = dyt.data_ptr<T>();
  T* dx = dxt.data_ptr<T>();
  const int64_t HW = g.H * g.W, P = g.OH * g.OW;
  parallel_for(0, g.N * g.C, plane_grain(g), [&](int64_t p0, int64_t p1) {
    std::fill(dx + p0 * HW, dx + p1 * HW, T(0));
    for (int64_t p = p0; p < p1; ++p) {
      T* dxp = dx + p * HW;
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const AvgWindow win = avg_window(g, oh, ow);
          if (win.divisor <= 0) continue;
          const T v = dy[p * P + oh * g.OW + ow] / static_cast<T>(win.divisor);
          for (int64_t ih = win.h0; ih < win.h1; ++ih)
            for (int64_t iw = win.w0; iw < win.w1; ++iw) dxp[ih * g.W + iw] += v;
        }
      }
    }
  });
}

}  // namespace

void max_pool2d_cpu(const PoolGeom& g, const Tensor& x, const Tensor& y, const Tensor& indices) {
  dispatch_floating(x.dtype(), "max_pool2d", [&](auto t) { max_pool_impl<decltype(t)>(g, x, y, indices); });
}

void max_pool2d_backward_cpu(const PoolGeom& g, const Tensor& dy, const Tensor& indices, const Tensor& dx) {
  dispatch_floating(dy.dtype(), "max_pool2d",
                    [&](auto t) { max_pool_backward_impl<decltype(t)>(g, dy, indices, dx); });
}

void avg_pool2d_cpu(const PoolGeom& g, const Tensor& x, const Tensor& y) {
  dispatch_floating(x.dtype(), "avg_pool2d", [&](auto t) { avg_pool_impl<decltype(t)>(g, x, y); });
}

void avg_pool2d_backward_cpu(const PoolGeom& g, const Tensor& dy, const Tensor& dx) {
  dispatch_floating(dy.dtype(), "avg_pool2d", [&](auto t) { avg_pool_backward_impl<decltype(t)>(g, dy, dx); });
}

}  // namespace ember::kernels
