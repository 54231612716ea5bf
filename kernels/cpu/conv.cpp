// CPU 2-D convolution (NCHW, contiguous, f32/f64) as im2col + GEMM, one image at a time, images
// spread over threads. 1x1 convolutions with stride 1 and no padding skip im2col. Each thread
// allocates one column buffer per call; the weight gradient sums per-slice partials in a fixed
// order, so results do not depend on the thread count.
#include <algorithm>
#include <cstring>
#include <memory>

#include "kernels/cpu/gemm.h"
#include "kernels/kernels.h"
#include "runtime/parallel.h"

namespace ember::kernels {
namespace {

// Whether the column matrix of an image/group equals its input plane block (no im2col needed).
bool is_pointwise(const ConvGeom& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
}

// Output columns [lo, hi) for which iw = ow*s - p + off lies inside [0, size).
void valid_range(int64_t size, int64_t out, int64_t s, int64_t p, int64_t off, int64_t& lo, int64_t& hi) {
  int64_t shift = p - off;  // need ow*s >= shift and ow*s < size + shift
  lo = shift <= 0 ? 0 : (shift + s - 1) / s;
  hi = size + shift <= 0 ? 0 : (size + shift - 1) / s + 1;
  lo = std::min(lo, out);
  hi = std::clamp(hi, lo, out);
}

// x: (Cg, H, W) -> col: (Cg*kh*kw, OH*OW); out-of-bounds taps are 0.
template <typename T>
void im2col(const ConvGeom& g, int64_t Cg, const T* x, T* col) {
  const int64_t P = g.OH * g.OW;
  for (int64_t c = 0; c < Cg; ++c) {
    const T* xc = x + c * g.H * g.W;
    for (int64_t i = 0; i < g.kh; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        T* row = col + ((c * g.kh + i) * g.kw + j) * P;
        int64_t lo, hi;
        valid_range(g.W, g.OW, g.sw, g.pw, j * g.dw, lo, hi);
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          T* r = row + oh * g.OW;
          const int64_t ih = oh * g.sh - g.ph + i * g.dh;
          if (ih < 0 || ih >= g.H) {
            std::fill(r, r + g.OW, T(0));
            continue;
          }
          const T* xr = xc + ih * g.W;
          const int64_t off = j * g.dw - g.pw;  // r[ow] = xr[ow*sw + off], in bounds for ow in [lo, hi)
          std::fill(r, r + lo, T(0));
          if (g.sw == 1) {
            if (hi > lo) std::memcpy(r + lo, xr + lo + off, static_cast<size_t>(hi - lo) * sizeof(T));
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) r[ow] = xr[ow * g.sw + off];
          }
          std::fill(r + hi, r + g.OW, T(0));
        }
      }
    }
  }
}

// x: (Cg, H, W) = sum of col: (Cg*kh*kw, OH*OW) scattered back (the adjoint of im2col); x is zeroed first.
template <typename T>
void col2im(const ConvGeom& g, int64_t Cg, const T* col, T* x) {
  const int64_t P = g.OH * g.OW;
  std::fill(x, x + Cg * g.H * g.W, T(0));
  for (int64_t c = 0; c < Cg; ++c) {
    T* xc = x + c * g.H * g.W;
    for (int64_t i = 0; i < g.kh; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        const T* row = col + ((c * g.kh + i) * g.kw + j) * P;
        int64_t lo, hi;
        valid_range(g.W, g.OW, g.sw, g.pw, j * g.dw, lo, hi);
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const int64_t ih = oh * g.sh - g.ph + i * g.dh;
          if (ih < 0 || ih >= g.H) continue;
          const T* r = row + oh * g.OW;
          T* xr = xc + ih * g.W;
          const int64_t off = j * g.dw - g.pw;
          for (int64_t ow = lo; ow < hi; ++ow) xr[ow * g.sw + off] += r[ow];
        }
      }
    }
  }
}

template <typename T>
std::unique_ptr<T[]> scratch(int64_t n) {
  return std::unique_ptr<T[]>(new T[static_cast<size_t>(n)]);
}

template <typename T>
void conv2d_impl(const ConvGeom& g, const Tensor& xt, const Tensor& wt, const Tensor& yt) {
  const int64_t G = g.groups, Cg = g.C / G, Kg = g.K / G, P = g.OH * g.OW, R = Cg * g.kh * g.kw;
  const T* x = xt.data_ptr<T>();
  const T* w = wt.data_ptr<T>();
  T* y = yt.data_ptr<T>();
  const bool pointwise = is_pointwise(g);
  parallel_for(0, g.N, 1, [&](int64_t n0, int64_t n1) {
    auto col = pointwise ? nullptr : scratch<T>(R * P);
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t gi = 0; gi < G; ++gi) {
        const T* xg = x + (n * g.C + gi * Cg) * g.H * g.W;
        if (!pointwise) im2col(g, Cg, xg, col.get());
        // y[n, group] (Kg, P) = w[group] (Kg, R) @ col (R, P)
        gemm_cpu(false, false, Kg, P, R, T(1), w + gi * Kg * R, R, pointwise ? xg : col.get(), P, T(0),
                 y + (n * g.K + gi * Kg) * P, P);
      }
    }
  });
}

template <typename T>
void conv2d_backward_input_impl(const ConvGeom& g, const Tensor& dyt, const Tensor& wt, const Tensor& dxt) {
  const int64_t G = g.groups, Cg = g.C / G, Kg = g.K / G, P = g.OH * g.OW, R = Cg * g.kh * g.kw;
  const T* dy = dyt.data_ptr<T>();
  const T* w = wt.data_ptr<T>();
  T* dx = dxt.data_ptr<T>();
  const bool pointwise = is_pointwise(g);
  parallel_for(0, g.N, 1, [&](int64_t n0, int64_t n1) {
    auto col = pointwise ? nullptr : scratch<T>(R * P);
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t gi = 0; gi < G; ++gi) {
        T* dxg = dx + (n * g.C + gi * Cg) * g.H * g.W;
        // col (R, P) = w[group]^T (R, Kg) @ dy[n, group] (Kg, P)
        gemm_cpu(true, false, R, P, Kg, T(1), w + gi * Kg * R, R, dy + (n * g.K + gi * Kg) * P, P, T(0),
                 pointwise ? dxg : col.get(), P);
        if (!pointwise) col2im(g, Cg, col.get(), dxg);
      }
    }
  });
}

// Upper bound on the elements of per-slice weight-gradient partials (beyond dw itself).
constexpr int64_t kPartialBudget = int64_t(1) << 22;
constexpr int64_t kMaxSlices = 16;

template <typename T>
void conv2d_backward_weight_impl(const ConvGeom& g, const Tensor& xt, const Tensor& dyt, const Tensor& dwt) {
  const int64_t G = g.groups, Cg = g.C / G, Kg = g.K / G, P = g.OH * g.OW, R = Cg * g.kh * g.kw;
  const int64_t wsize = g.K * R;
  const T* x = xt.data_ptr<T>();
  const T* dy = dyt.data_ptr<T>();
  T* dw = dwt.data_ptr<T>();
  if (g.N == 0) {
    std::fill(dw, dw + wsize, T(0));
    return;
  }
  // The batch is cut into S slices fixed by the shapes alone; slice s accumulates into its own
  // buffer (slice 0 into dw), and the buffers are summed in slice order.
  const int64_t S = std::clamp<int64_t>(std::min(g.N, kPartialBudget / std::max<int64_t>(wsize, 1)), 1, kMaxSlices);
  auto partials = S > 1 ? scratch<T>((S - 1) * wsize) : nullptr;
  const bool pointwise = is_pointwise(g);
  parallel_for(0, S, 1, [&](int64_t s0, int64_t s1) {
    auto col = pointwise ? nullptr : scratch<T>(R * P);
    for (int64_t s = s0; s < s1; ++s) {
      T* acc = s == 0 ? dw : partials.get() + (s - 1) * wsize;
      const int64_t n0 = g.N * s / S, n1 = g.N * (s + 1) / S;
      for (int64_t n = n0; n < n1; ++n) {
        for (int64_t gi = 0; gi < G; ++gi) {
          const T* xg = x + (n * g.C + gi * Cg) * g.H * g.W;
          if (!pointwise) im2col(g, Cg, xg, col.get());
          // dw[group] (Kg, R) (+)= dy[n, group] (Kg, P) @ col^T (P, R)
          gemm_cpu(false, true, Kg, R, P, T(1), dy + (n * g.K + gi * Kg) * P, P, pointwise ? xg : col.get(), P,
                   n == n0 ? T(0) : T(1), acc + gi * Kg * R, R);
        }
      }
    }
  });
  for (int64_t s = 1; s < S; ++s) {
    const T* p = partials.get() + (s - 1) * wsize;
    for (int64_t i = 0; i < wsize; ++i) dw[i] += p[i];
  }
}

}  // namespace

void conv2d_cpu(const ConvGeom& g, const Tensor& x, const Tensor& w, const Tensor& y) {
  dispatch_floating(x.dtype(), "conv2d", [&](auto t) { conv2d_impl<decltype(t)>(g, x, w, y); });
}

void conv2d_backward_input_cpu(const ConvGeom& g, const Tensor& dy, const Tensor& w, const Tensor& dx) {
  dispatch_floating(dy.dtype(), "conv2d", [&](auto t) { conv2d_backward_input_impl<decltype(t)>(g, dy, w, dx); });
}

void conv2d_backward_weight_cpu(const ConvGeom& g, const Tensor& x, const Tensor& dy, const Tensor& dw) {
  dispatch_floating(x.dtype(), "conv2d", [&](auto t) { conv2d_backward_weight_impl<decltype(t)>(g, x, dy, dw); });
}

}  // namespace ember::kernels
