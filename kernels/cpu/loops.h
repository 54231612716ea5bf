// Strided iteration for CPU elementwise kernels: NT tensors of one shape, each with its own
// strides. Size-1 dims are dropped and mergeable dims coalesced; rows of the innermost dim are
// handed to a row function (offsets in elements, inner strides), rows split across threads.
#pragma once
#include <array>
#include <cstdint>

#include "runtime/parallel.h"
#include "runtime/tensor.h"

namespace ember::kernels {

template <int NT>
struct Geometry {
  int ndim = 0;
  int64_t shape[kMaxRank] = {};
  int64_t strides[NT][kMaxRank] = {};
};

template <int NT>
Geometry<NT> make_geometry(const Shape& shape, const std::array<const Tensor*, NT>& ts) {
  Geometry<NT> g;
  for (int d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (g.ndim > 0) {
      // merge with the previous kept dim when every tensor is contiguous across the pair
      bool merge = true;
      for (int t = 0; t < NT; ++t)
        if (g.strides[t][g.ndim - 1] != ts[t]->strides()[d] * shape[d]) merge = false;
      if (merge) {
        g.shape[g.ndim - 1] *= shape[d];
        for (int t = 0; t < NT; ++t) g.strides[t][g.ndim - 1] = ts[t]->strides()[d];
        continue;
      }
    }
    g.shape[g.ndim] = shape[d];
    for (int t = 0; t < NT; ++t) g.strides[t][g.ndim] = ts[t]->strides()[d];
    ++g.ndim;
  }
  return g;
}

// row(off[NT], n, inner_stride[NT]) for every row; off are element offsets from each base.
template <int NT, typename RowFn>
void for_each_row(const Geometry<NT>& g, int64_t numel, RowFn&& row, int64_t grain_elems = 32768) {
  if (numel == 0) return;
  int64_t inner = g.ndim ? g.shape[g.ndim - 1] : 1;
  int64_t rows = numel / inner;
  std::array<int64_t, NT> inner_stride{};
  for (int t = 0; t < NT; ++t) inner_stride[t] = g.ndim ? g.strides[t][g.ndim - 1] : 0;
  int64_t grain = std::max<int64_t>(1, grain_elems / std::max<int64_t>(inner, 1));
  parallel_for(0, rows, grain, [&](int64_t rb, int64_t re) {
    int outer = g.ndim - 1;
    int64_t idx[kMaxRank] = {};
    std::array<int64_t, NT> off{};
    int64_t r = rb;
    for (int d = outer - 1; d >= 0; --d) {
      idx[d] = r % g.shape[d];
      r /= g.shape[d];
      for (int t = 0; t < NT; ++t) off[t] += idx[d] * g.strides[t][d];
    }
    for (int64_t row_i = rb; row_i < re; ++row_i) {
      row(off, inner, inner_stride);
      for (int d = outer - 1; d >= 0; --d) {
        ++idx[d];
        for (int t = 0; t < NT; ++t) off[t] += g.strides[t][d];
        if (idx[d] < g.shape[d]) break;
        for (int t = 0; t < NT; ++t) off[t] -= idx[d] * g.strides[t][d];
        idx[d] = 0;
      }
    }
  });
}

// Converts between element types (half types through float, bool as != 0).
template <typename D, typename S>
inline D convert(S v) {
  if constexpr (std::is_same_v<D, S>) {
    return v;
  } else if constexpr (std::is_same_v<D, bool>) {
    return static_cast<float>(v) != 0.0f;
  } else if constexpr (std::is_same_v<S, Half> || std::is_same_v<S, BFloat16>) {
    return convert<D>(static_cast<float>(v));
  } else if constexpr (std::is_same_v<D, Half> || std::is_same_v<D, BFloat16>) {
    return D(static_cast<float>(v));
  } else {
    return static_cast<D>(v);
  }
}

}  // namespace ember::kernels
