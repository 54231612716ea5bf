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

// How many equal pieces to cut a row of `inner` elements into so that each holds at most `grain`:
// the fewest count from ceil(inner / grain) up to four times that which divides inner, or 1 (no
// cut) when none does.
inline int64_t row_pieces(int64_t inner, int64_t grain) {
  if (grain <= 0 || inner <= grain) return 1;
  const int64_t least = (inner + grain - 1) / grain;
  for (int64_t k = least; k <= 4 * least; ++k)
    if (inner % k == 0) return k;
  return 1;
}

// row(off[NT], n, inner_stride[NT]) for every row; off are element offsets from each base. A row
// longer than grain_elems is first cut into equal pieces (row_pieces: its dim split in two), so
// that a contiguous tensor, one row once coalesced, spreads over the threads too; the callers'
// row functions are elementwise, so where a row is cut changes no bits. (The cut is a change of
// geometry, not a second call site of row(), which would double these loops' code.)
// g with its innermost dim split in two (row_pieces of it, then the rest) where that dim is
// longer than grain. One function per NT, not per row function: the binaries' size.
template <int NT>
[[gnu::noinline]] Geometry<NT> split_long_rows(const Geometry<NT>& geometry, int64_t grain) {
  Geometry<NT> g = geometry;
  if (g.ndim >= 1 && g.ndim < kMaxRank) {
    const int d = g.ndim - 1;
    if (const int64_t k = row_pieces(g.shape[d], grain); k > 1) {
      g.shape[d + 1] = g.shape[d] / k;
      g.shape[d] = k;
      for (int t = 0; t < NT; ++t) {
        g.strides[t][d + 1] = g.strides[t][d];
        g.strides[t][d] *= g.shape[d + 1];
      }
      ++g.ndim;
    }
  }
  return g;
}

template <int NT, typename RowFn>
void for_each_row(const Geometry<NT>& geometry, int64_t numel, RowFn&& row, int64_t grain_elems = 32768) {
  if (numel == 0) return;
  const Geometry<NT> g = split_long_rows<NT>(geometry, grain_elems);
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
