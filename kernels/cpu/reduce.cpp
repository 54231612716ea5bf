// CPU reductions (sum with a double accumulator for f32, max with argmax) and (log_)softmax.
// Each output element is reduced in an order fixed by the shapes (serially, or in 8 interleaved
// lanes for long contiguous runs), so results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/common/softmax.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/loops.h"
#include "kernels/cpu/half_rows.h"
#include "kernels/kernels.h"

namespace ember::kernels {

namespace {

// Sum of n contiguous values in a double, as 8 interleaved partial sums (element i goes to lane
// i % 8) combined in a fixed tree: the order depends only on n, never on the thread count or the
// ISA, and the 8 independent chains run ~8x faster than one serial chain of dependent adds.
template <typename T>
[[gnu::always_inline]] inline double sum_run_impl(const T* p, int64_t n) {
  double l[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) l[j] += static_cast<double>(p[i + j]);
  }
  for (int j = 0; i + j < n; ++j) l[j] += static_cast<double>(p[i + j]);
  return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

template <typename T>
double sum_run(const T* p, int64_t n) {
  return run_best_isa([&] EMBER_INLINE_LAMBDA { return sum_run_impl(p, n); });
}

// sum((a - b)^2) of n contiguous values, in sum_run's lanes and order: d = a - b and d * d round in
// T, exactly as sum(mul(d, d)) of a materialised d. Writes d to `diff` when kWrite.
template <typename T, bool kWrite>
[[gnu::always_inline]] inline double sq_diff_run_impl(const T* __restrict a, const T* __restrict b, T* __restrict diff,
                                                      int64_t n) {
  double l[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) {
      const T d = a[i + j] - b[i + j];
      if constexpr (kWrite) diff[i + j] = d;
      l[j] += static_cast<double>(d * d);
    }
  }
  for (int j = 0; i + j < n; ++j) {
    const T d = a[i + j] - b[i + j];
    if constexpr (kWrite) diff[i + j] = d;
    l[j] += static_cast<double>(d * d);
  }
  return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

template <typename T, bool kWrite>
double sq_diff_run(const T* a, const T* b, T* diff, int64_t n) {
  return run_best_isa([&] EMBER_INLINE_LAMBDA { return sq_diff_run_impl<T, kWrite>(a, b, diff, n); });
}

// Runs shorter than this are added serially (one chain, element order), like the general loop
// and like the CUDA kernels' one-thread-per-output path.
constexpr int64_t kMinLaneRun = 64;
// A single long sum is cut into blocks of this many elements (summed in parallel, then the block
// sums in order): the split depends only on the length.
constexpr int64_t kSumBlock = 16384;

// The sum of n elements as block_sum(start, length) over fixed kSumBlock blocks, computed in
// parallel and added in block order.
template <typename BlockSum>
double blocked_sum(int64_t n, BlockSum&& block_sum) {
  const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
  if (blocks <= 1) return block_sum(int64_t{0}, n);
  constexpr int64_t kMaxStackBlocks = 256;
  double stack_parts[kMaxStackBlocks];
  std::vector<double> heap_parts(blocks > kMaxStackBlocks ? static_cast<size_t>(blocks) : 0);
  double* parts = blocks > kMaxStackBlocks ? heap_parts.data() : stack_parts;
  parallel_for(0, blocks, 1, [&](int64_t bb, int64_t be) {
    for (int64_t blk = bb; blk < be; ++blk) {
      const int64_t start = blk * kSumBlock;
      parts[blk] = block_sum(start, std::min(kSumBlock, n - start));
    }
  });
  double acc = 0;
  for (int64_t blk = 0; blk < blocks; ++blk) acc += parts[blk];
  return acc;
}

// Sum of a contiguous tensor viewed as (A, K, B) over A and B (the reduced dims are a leading and
// a trailing block around the kept ones). Each output's order depends only on the shape (runs of
// B in a order; a run of at least kMinLaneRun elements via sum_run, a shorter one serially), so
// results do not depend on the thread count; threads split the K outputs, or the blocks of a
// single sum.
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
  if (K == 1) {
    // One output over A * B contiguous elements.
    const int64_t n = A * B;
    if (n < kMinLaneRun) {
      double acc = 0;
      for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(xp[i]);
      op[0] = static_cast<T>(acc);
      return;
    }
    op[0] = static_cast<T>(blocked_sum(n, [&](int64_t start, int64_t len) { return sum_run(xp + start, len); }));
    return;
  }
  int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(A * B, 1));
  parallel_for(0, K, grain, [&](int64_t ob, int64_t oe) {
    for (int64_t o = ob; o < oe; ++o) {
      double acc = 0;
      for (int64_t a = 0; a < A; ++a) {
        const T* p = xp + (a * K + o) * B;
        if (B >= kMinLaneRun) {
          acc += sum_run(p, B);
        } else {
          for (int64_t b = 0; b < B; ++b) acc += static_cast<double>(p[b]);
        }
      }
      op[o] = static_cast<T>(acc);
    }
  });
}

}  // namespace

void sum_rows_half_cpu(const Tensor& x, const Tensor& out) {
  EMBER_CHECK(x.dim() == 2 && x.is_contiguous() && (x.dtype() == DType::bf16 || x.dtype() == DType::f16) &&
                  out.dtype() == DType::f32 && out.numel() == x.size(1),
              "[sum] sum_rows_half_cpu takes a contiguous (rows, columns) f16/bf16 matrix and columns float32 outputs");
  const bool bf16 = x.dtype() == DType::bf16;
  const int64_t A = x.size(0), K = x.size(1);
  const uint16_t* xp = static_cast<const uint16_t*>(x.data_ptr());
  float* op = static_cast<float*>(out.data_ptr());
  // sum_outer_inner's row path (double accumulators per column, rows in order), each row's block
  // widened exactly on the way: the bits of widening x first.
  constexpr int64_t kBlock = 256;
  const int64_t grain = std::max<int64_t>(kBlock / 4, 16384 / std::max<int64_t>(A, 1));
  parallel_for(0, K, grain, [&](int64_t ob, int64_t oe) {
    double acc[kBlock];
    float row[kBlock];
    for (int64_t cb = ob; cb < oe; cb += kBlock) {
      const int64_t w = std::min(kBlock, oe - cb);
      for (int64_t j = 0; j < w; ++j) acc[j] = 0;
      for (int64_t k = 0; k < A; ++k) {
        half_to_f32_row(bf16, xp + k * K + cb, row, w);
        for (int64_t j = 0; j < w; ++j) acc[j] += static_cast<double>(row[j]);
      }
      for (int64_t j = 0; j < w; ++j) op[cb + j] = static_cast<float>(acc[j]);
    }
  });
}

void reduce_cpu(ReduceOp op, const Tensor& x, const DimList& dims, const Tensor& out, const Tensor& indices) {
  // Split x's dims into kept (outer) and reduced (inner) groups.
  bool reduced[kMaxRank] = {};
  for (int d : dims) reduced[d] = true;
  const ReduceDims split = split_reduce_dims(x, reduced);
  const Shape& kshape = split.kept_shape;
  const Shape& rshape = split.red_shape;
  const Strides& kstride = split.kept_strides;
  const Strides& rstride = split.red_strides;
  const int nk = kshape.size(), nr = rshape.size();
  const int64_t n_out = kshape.numel(), n_red = rshape.numel();
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
  const AroundDim a = around_dim(x.shape(), dim);
  const int64_t n = a.size, inner = a.inner;
  dispatch_floating(x.dtype(), "softmax", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.data_ptr());
    T* op = static_cast<T*>(out.data_ptr());
    int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(n, 1));
    parallel_for(0, a.outer * inner, grain, [&](int64_t b, int64_t e) {
      for (int64_t idx = b; idx < e; ++idx) {
        int64_t o = idx / inner, i = idx % inner;
        softmax_line(xp + o * n * inner + i, op + o * n * inner + i, n, inner, log);
      }
    });
  });
}

namespace {

template <typename T, bool kWrite>
double squared_error_sum(const T* a, const T* b, T* diff, int64_t n) {
  if (n < kMinLaneRun) {  // serially, as sum_outer_inner's short sum
    double acc = 0;
    for (int64_t i = 0; i < n; ++i) {
      const T d = a[i] - b[i];
      if constexpr (kWrite) diff[i] = d;
      acc += static_cast<double>(d * d);
    }
    return acc;
  }
  return blocked_sum(n, [&](int64_t start, int64_t len) {
    return sq_diff_run<T, kWrite>(a + start, b + start, kWrite ? diff + start : nullptr, len);
  });
}

}  // namespace

void squared_error_sum_cpu(const Tensor& a, const Tensor& b, const Tensor& diff, const Tensor& out) {
  dispatch_floating(a.dtype(), "mse_loss", [&](auto tag) {
    using T = decltype(tag);
    const T* ap = a.data_ptr<T>();
    const T* bp = b.data_ptr<T>();
    const double s = diff.defined() ? squared_error_sum<T, true>(ap, bp, diff.data_ptr<T>(), a.numel())
                                    : squared_error_sum<T, false>(ap, bp, nullptr, a.numel());
    *out.data_ptr<T>() = static_cast<T>(s);
  });
}

}  // namespace ember::kernels
