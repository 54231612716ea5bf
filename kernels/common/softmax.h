// (log_)softmax of one line of values, serially in element order, as the CPU kernel computes
// every line and the CUDA kernel computes lines that are strided in memory: the max (a NaN never
// replaces it), then the sum of exp in double, then the outputs.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

#include "ember/runtime/host_device.h"

namespace ember::kernels {

// y[k * stride] = (log_)softmax(x[k * stride] for k < n).
template <typename T>
EMBER_HOST_DEVICE inline void softmax_line(const T* x, T* y, int64_t n, int64_t stride, bool log) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t k = 0; k < n; ++k) {
    const T v = x[k * stride];
    m = m < v ? v : m;
  }
  if (m == -std::numeric_limits<T>::infinity()) m = 0;  // a line of only -inf: subtract 0, not -inf
  double s = 0;
  for (int64_t k = 0; k < n; ++k) s += std::exp(static_cast<double>(x[k * stride] - m));
  if (log) {
    const T ls = static_cast<T>(std::log(s));
    for (int64_t k = 0; k < n; ++k) y[k * stride] = x[k * stride] - m - ls;
  } else {
    const T inv = static_cast<T>(1.0 / s);
    for (int64_t k = 0; k < n; ++k) y[k * stride] = std::exp(x[k * stride] - m) * inv;
  }
}

}  // namespace ember::kernels
