// CPU 2-D max and average pooling (NCHW, contiguous, f32/f64) and their backward passes, one
// (n, c) plane per task. Window rules match PyTorch: max pooling skips padded taps, propagates
// NaN and records the first maximum; average pooling's divisor follows count_include_pad.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/kernels.h"
#include "runtime/parallel.h"

namespace ember::kernels {
namespace {

// Planes per task: enough work per chunk to amortise the thread hand-off.
int64_t plane_grain(const PoolGeom& g) {
  const int64_t work = std::max<int64_t>(1, g.OH * g.OW * g.kh * g.kw);
  return std::max<int64_t>(1, 32768 / work);
}

// The first tap of a dilated window starting at `start` that is >= 0, and its (exclusive) end.
void window(int64_t start, int64_t k, int64_t d, int64_t size, int64_t& lo, int64_t& hi) {
  hi = std::min(start + (k - 1) * d + 1, size);
  lo = start;
  if (lo < 0) lo += ((-lo + d - 1) / d) * d;
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
        int64_t h0, h1;
        window(oh * g.sh - g.ph, g.kh, g.dh, g.H, h0, h1);
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          int64_t w0, w1;
          window(ow * g.sw - g.pw, g.kw, g.dw, g.W, w0, w1);
          // A window with no tap inside the input (possible with large dilation) gives -inf and
          // index -1, which backward skips.
          T best = -std::numeric_limits<T>::infinity();
          int64_t arg = h0 < h1 && w0 < w1 ? h0 * g.W + w0 : -1;
          for (int64_t ih = h0; ih < h1; ih += g.dh) {
            for (int64_t iw = w0; iw < w1; iw += g.dw) {
              const T v = xp[ih * g.W + iw];
              if (v > best || std::isnan(v)) {
                best = v;
                arg = ih * g.W + iw;
              }
            }
          }
          y[p * P + oh * g.OW + ow] = best;
          idx[p * P + oh * g.OW + ow] = arg;
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

// Average-pool window [h0, h1) x [w0, w1), clipped to the input, and its divisor (as PyTorch:
// the window clipped to the padded input when count_include_pad, else to the input).
struct AvgWindow {
  int64_t h0, h1, w0, w1, divisor;
};
AvgWindow avg_window(const PoolGeom& g, int64_t oh, int64_t ow) {
  int64_t h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
  int64_t h1 = std::min(h0 + g.kh, g.H + g.ph), w1 = std::min(w0 + g.kw, g.W + g.pw);
  const int64_t padded = (h1 - h0) * (w1 - w0);
  h0 = std::max<int64_t>(h0, 0);
  w0 = std::max<int64_t>(w0, 0);
  h1 = std::min(h1, g.H);
  w1 = std::min(w1, g.W);
  const int64_t inside = std::max<int64_t>(h1 - h0, 0) * std::max<int64_t>(w1 - w0, 0);
  return {h0, h1, w0, w1, g.count_include_pad ? padded : inside};
}

template <typename T>
void avg_pool_impl(const PoolGeom& g, const Tensor& xt, const Tensor& yt) {
  const T* x = xt.data_ptr<T>();
  T* y = yt.data_ptr<T>();
  const int64_t HW = g.H * g.W, P = g.OH * g.OW;
  parallel_for(0, g.N * g.C, plane_grain(g), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const T* xp = x + p * HW;
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const AvgWindow win = avg_window(g, oh, ow);
          T s = 0;
          for (int64_t ih = win.h0; ih < win.h1; ++ih)
            for (int64_t iw = win.w0; iw < win.w1; ++iw) s += xp[ih * g.W + iw];
          // An empty window (only possible entirely inside padding) yields 0, as PyTorch.
          y[p * P + oh * g.OW + ow] = win.divisor > 0 ? s / static_cast<T>(win.divisor) : T(0);
        }
      }
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
