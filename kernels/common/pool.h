// 2-D pooling windows as PyTorch defines them, for the CPU and CUDA pooling kernels: which taps
// of a (dilated) window fall inside the input, the max over them (first maximum, NaN wins), and
// the average with count_include_pad's divisor.
#pragma once
#include <cstdint>
#include <limits>

#include "ember/runtime/host_device.h"

namespace ember::kernels {

// NCHW pooling geometry: input (N, C, H, W), output (OH, OW), kernel, stride, padding, dilation.
struct PoolGeom {
  int64_t N, C, H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw;
  bool count_include_pad;
};

EMBER_HOST_DEVICE inline int64_t pool_min(int64_t a, int64_t b) { return a < b ? a : b; }
EMBER_HOST_DEVICE inline int64_t pool_max(int64_t a, int64_t b) { return a > b ? a : b; }

// The taps of a dilated window along one dim: positions lo, lo + d, ... below hi, where lo is the
// first tap >= 0 and hi the window's end clipped to the input.
struct Taps {
  int64_t lo, hi;
};
EMBER_HOST_DEVICE inline Taps window_taps(int64_t start, int64_t k, int64_t d, int64_t size) {
  int64_t lo = start;
  if (lo < 0) lo += ((-lo + d - 1) / d) * d;
  return {lo, pool_min(start + (k - 1) * d + 1, size)};
}

// The max over the taps h x w of a plane of width W and its flat index h*W + w (the first
// maximum; a NaN wins). A window with no tap inside the input gives -inf and index -1, which
// backward skips.
template <typename T>
struct WindowMax {
  T value;
  int64_t index;
};
template <typename T>
EMBER_HOST_DEVICE inline WindowMax<T> window_max(const T* plane, int64_t W, Taps h, Taps w, int64_t dh, int64_t dw) {
  WindowMax<T> m{-std::numeric_limits<T>::infinity(), h.lo < h.hi && w.lo < w.hi ? h.lo * W + w.lo : -1};
  for (int64_t ih = h.lo; ih < h.hi; ih += dh) {
    for (int64_t iw = w.lo; iw < w.hi; iw += dw) {
      const T v = plane[ih * W + iw];
      if (v > m.value || v != v) {
        m.value = v;
        m.index = ih * W + iw;
      }
    }
  }
  return m;
}

// Average-pool window [h0, h1) x [w0, w1), clipped to the input, and its divisor: the window
// clipped to the padded input when count_include_pad, else to the input.
struct AvgWindow {
  int64_t h0, h1, w0, w1, divisor;
};
EMBER_HOST_DEVICE inline AvgWindow avg_window(const PoolGeom& g, int64_t oh, int64_t ow) {
  int64_t h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
  int64_t h1 = pool_min(h0 + g.kh, g.H + g.ph), w1 = pool_min(w0 + g.kw, g.W + g.pw);
  const int64_t padded = (h1 - h0) * (w1 - w0);
  h0 = pool_max(h0, 0);
  w0 = pool_max(w0, 0);
  h1 = pool_min(h1, g.H);
  w1 = pool_min(w1, g.W);
  const int64_t inside = pool_max(h1 - h0, 0) * pool_max(w1 - w0, 0);
  return {h0, h1, w0, w1, g.count_include_pad ? padded : inside};
}

// The average over a window of a plane of width W. An empty window (only possible entirely
// inside padding) gives 0, as PyTorch.
template <typename T>
EMBER_HOST_DEVICE inline T window_average(const T* plane, int64_t W, const AvgWindow& win) {
  T s = 0;
  for (int64_t ih = win.h0; ih < win.h1; ++ih)
    for (int64_t iw = win.w0; iw < win.w1; ++iw) s += plane[ih * W + iw];
  return win.divisor > 0 ? s / static_cast<T>(win.divisor) : T(0);
}

}  // namespace ember::kernels
