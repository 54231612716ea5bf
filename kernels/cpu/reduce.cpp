// CPU reductions (sum with a double accumulator for f32, max with argmax) and (log_)softmax.
// Each output element is reduced serially, so results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/loops.h"
#include "kernels/kernels.h"

namespace ember::kernels {

namespace {

// Sum of a contiguous tensor viewed as (A, K, B) over A and B (the reduced dims are a leading and
// a trailing block around the kept ones). Each output is summed in the general loop's order (row
// major over the reduced index: a, then b) in a double, so results are bit-identical to it and do
// not depend on the thread count; threads split the K outputs only.
template <typename T>
void sum_outer_inner(const T* xp, T* op, int64_t A, int64_t K, int64_t B) {
  if (B == 1 && K > 1) {
    // Rows of K: add whole rows into a block of accumulators (vectorises over the outputs).
    constexpr int64_t kBlock = 256;
    int64_t grain = std::max<int64_t>(kBlock / 4, 16384 / std::max<int64_t>(A, 1));
    parallel_for(0, K, grain, [&](int64_t ob, int64_t oe) {
      double acc[kBlock];
      for (int64_t cb = ob; cb < oe; cb += kBlock) {
        const int64_t w = std::min(kBlock, oe - cb);
        for (int64_t j = 0; j < w; ++j) acc[j] = 0;
        for (int64_t k = 0; k < A; ++k) {
          const T* row = xp + k * K + cb;
          for (int64_t j = 0; j < w; ++j) acc[j] += static_cast<double>(row[j]);
        }
        for (int64_t j = 0; j < w; ++j) op[cb + j] = static_cast<T>(acc[j]);
      }
    });
    return;
  }
  int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(A * B, 1));
  parallel_for(0, K, grain, [&](int64_t ob, int64_t oe) {
    for (int64_t o = ob; o < oe; ++o) {
      double acc = 0;
      for (int64_t a = 0; a < A; ++a) {
        const T* p = xp + (a * K + o) * B;
        for (int64_t b = 0; b < B; ++b) acc += static_cast<double>(p[b]);
      }
      op[o] = static_cast<T>(acc);
    }
  });
}

}  // namespace

void reduce_cpu(ReduceOp op, const Tensor& x, const std::vector<int>& dims, const Tensor& out, const Tensor& indices) {
  // Split x's dims into kept (outer) and reduced (inner) groups.
  bool reduced[kMaxRank] = {};
  for (int d : dims) reduced[d] = true;
  int64_t kshape[kMaxRank], kstride[kMaxRank], rshape[kMaxRank], rstride[kMaxRank];
  int nk = 0, nr = 0;
  for (int d = 0; d < x.dim(); ++d) {
    if (reduced[d]) {
      rshape[nr] = x.shape()[d];
      rstride[nr++] = x.strides()[d];
    } else {
      kshape[nk] = x.shape()[d];
      kstride[nk++] = x.strides()[d];
    }
  }
  int64_t n_out = 1, n_red = 1;
  for (int i = 0; i < nk; ++i) n_out *= kshape[i];
  for (int i = 0; i < nr; ++i) n_red *= rshape[i];
  // Fast path: a sum of a contiguous tensor over a leading and/or trailing block of dims (a bias
  // gradient over the batch, or over batch and pixels; a full sum), read in memory order instead
  // of with an index walk per element.
  if (op == ReduceOp::Sum && nr > 0 && x.is_contiguous()) {
    int d = 0, rank = x.dim();
    int64_t A = 1, K = 1, B = 1;
    for (; d < rank && reduced[d]; ++d) A *= x.shape()[d];
    for (; d < rank && !reduced[d]; ++d) K *= x.shape()[d];
    for (; d < rank && reduced[d]; ++d) B *= x.shape()[d];
    if (d == rank) {
      dispatch_floating(x.dtype(), "reduce", [&](auto tag) {
        using T = decltype(tag);
        sum_outer_inner(static_cast<const T*>(x.data_ptr()), static_cast<T*>(out.data_ptr()), A, K, B);
      });
      return;
    }
  }
  dispatch_floating(x.dtype(), "reduce", [&](auto tag) {
    using T = decltype(tag);
    using Acc = double;
    const T* xp = static_cast<const T*>(x.data_ptr());
    T* op_ = static_cast<T*>(out.data_ptr());
    int64_t* ip = indices.defined() ? static_cast<int64_t*>(indices.data_ptr()) : nullptr;
    int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(n_red, 1));
    parallel_for(0, n_out, grain, [&](int64_t ob, int64_t oe) {
      for (int64_t o = ob; o < oe; ++o) {
        int64_t base = 0, r = o;
        for (int i = nk - 1; i >= 0; --i) {
          base += (r % kshape[i]) * kstride[i];
          r /= kshape[i];
        }
        if (op == ReduceOp::Sum) {
          Acc acc = 0;
          if (nr == 1) {
            const T* p = xp + base;
            int64_t s = rstride[0];
            for (int64_t k = 0; k < n_red; ++k) acc += static_cast<Acc>(p[k * s]);
          } else {
            for (int64_t k = 0; k < n_red; ++k) {
              int64_t off = base, q = k;
              for (int i = nr - 1; i >= 0; --i) {
                off += (q % rshape[i]) * rstride[i];
                q /= rshape[i];
              }
              acc += static_cast<Acc>(xp[off]);
            }
          }
          op_[o] = static_cast<T>(acc);
        } else {
          T best = -std::numeric_limits<T>::infinity();
          int64_t best_k = 0;
          for (int64_t k = 0; k < n_red; ++k) {
            int64_t off = base, q = k;
            for (int i = nr - 1; i >= 0; --i) {
              off += (q % rshape[i]) * rstride[i];
              q /= rshape[i];
            }
            T v = xp[off];
            if (std::isnan(v)) {
              best = v;
              best_k = k;
              break;
            }
            if (v > best || k == 0) {
              best = v;
              best_k = k;
            }
          }
          op_[o] = best;
          if (ip) ip[o] = best_k;
        }
      }
    });
  });
}

void softmax_cpu(const Tensor& x, int dim, bool log, const Tensor& out) {
  int64_t outer = 1, inner = 1, n = x.shape()[dim];
  for (int d = 0; d < dim; ++d) outer *= x.shape()[d];
  for (int d = dim + 1; d < x.dim(); ++d) inner *= x.shape()[d];
  dispatch_floating(x.dtype(), "softmax", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.data_ptr());
    T* op = static_cast<T*>(out.data_ptr());
    int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(n, 1));
    parallel_for(0, outer * inner, grain, [&](int64_t b, int64_t e) {
      for (int64_t idx = b; idx < e; ++idx) {
        int64_t o = idx / inner, i = idx % inner;
        const T* xi = xp + o * n * inner + i;
        T* yi = op + o * n * inner + i;
        T m = -std::numeric_limits<T>::infinity();
        for (int64_t k = 0; k < n; ++k) m = std::max(m, xi[k * inner]);
        if (std::isinf(m) && m < 0) m = 0;
        double s = 0;
        for (int64_t k = 0; k < n; ++k) s += std::exp(static_cast<double>(xi[k * inner] - m));
        if (log) {
          T ls = static_cast<T>(std::log(s));
          for (int64_t k = 0; k < n; ++k) yi[k * inner] = xi[k * inner] - m - ls;
        } else {
          T inv = static_cast<T>(1.0 / s);
          for (int64_t k = 0; k < n; ++k) yi[k * inner] = std::exp(xi[k * inner] - m) * inv;
        }
      }
    });
  });
}

}  // namespace ember::kernels
