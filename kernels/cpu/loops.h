// Strided iteration for CPU elementwise kernels: NT tensors of one shape, each with its own
// strides, coalesced by kernels/common/geometry.h (as on CUDA); rows of the innermost dim are
// handed to a row function (offsets in elements, inner strides), rows split across threads.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>

#include "kernels/common/geometry.h"
#include "ember/runtime/parallel.h"

namespace ember::kernels {

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

}  // namespace ember::kernels
