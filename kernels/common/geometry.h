// How the kernels of both devices see strided tensors: the dims of NT tensors that share one
// shape, coalesced (size-1 dims dropped, a dim merged into the previous one when every tensor is
// contiguous across the pair), and a shape split around one dim. Computed on the host; the CPU
// loops (kernels/cpu/loops.h) walk a Geometry, the CUDA launchers turn it into offset calculators.
#pragma once
#include <array>
#include <cstdint>

#include "ember/runtime/shape.h"
#include "ember/runtime/tensor.h"

namespace ember::kernels {

// Coalesced dims, outermost first; strides[t][d] is tensor t's stride (in elements) along dim d.
template <int NT>
struct Geometry {
  int ndim = 0;
  int64_t shape[kMaxRank] = {};
  int64_t strides[NT][kMaxRank] = {};
  // True when every tensor walks memory contiguously (at most one dim, unit strides).
  bool contiguous() const {
    if (ndim == 0) return true;
    if (ndim > 1) return false;
    for (int t = 0; t < NT; ++t)
      if (strides[t][0] != 1) return false;
    return true;
  }
};

template <int NT>
Geometry<NT> make_geometry(const Shape& shape, const std::array<const Strides*, NT>& st) {
  Geometry<NT> g;
  for (int d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (g.ndim > 0) {
      // merge with the previous kept dim when every tensor is contiguous across the pair
      bool merge = true;
      for (int t = 0; t < NT; ++t)
        if (g.strides[t][g.ndim - 1] != (*st[t])[d] * shape[d]) merge = false;
      if (merge) {
        g.shape[g.ndim - 1] *= shape[d];
        for (int t = 0; t < NT; ++t) g.strides[t][g.ndim - 1] = (*st[t])[d];
        continue;
      }
    }
    g.shape[g.ndim] = shape[d];
    for (int t = 0; t < NT; ++t) g.strides[t][g.ndim] = (*st[t])[d];
    ++g.ndim;
  }
  return g;
}

template <int NT>
Geometry<NT> make_geometry(const Shape& shape, const std::array<const Tensor*, NT>& ts) {
  std::array<const Strides*, NT> st;
  for (int t = 0; t < NT; ++t) st[t] = &ts[t]->strides();
  return make_geometry<NT>(shape, st);
}

// A contiguous shape seen as (outer, size, inner) around dim.
struct AroundDim {
  int64_t outer, size, inner;
};
inline AroundDim around_dim(const Shape& shape, int dim) {
  AroundDim a{1, shape[dim], 1};
  for (int d = 0; d < dim; ++d) a.outer *= shape[d];
  for (int d = dim + 1; d < shape.size(); ++d) a.inner *= shape[d];
  return a;
}

// x's dims split into the kept and the reduced ones (each group in x's order), with x's strides.
struct ReduceDims {
  Shape kept_shape, red_shape;
  Strides kept_strides, red_strides;
};
inline ReduceDims split_reduce_dims(const Tensor& x, const bool (&reduced)[kMaxRank]) {
  ReduceDims r;
  for (int d = 0; d < x.dim(); ++d) {
    if (reduced[d]) {
      r.red_shape.push_back(x.shape()[d]);
      r.red_strides.push_back(x.strides()[d]);
    } else {
      r.kept_shape.push_back(x.shape()[d]);
      r.kept_strides.push_back(x.strides()[d]);
    }
  }
  return r;
}

}  // namespace ember::kernels
