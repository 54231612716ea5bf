// CPU GEMM and batched matmul. On CPUs with AVX2+FMA a BLIS-style blocked kernel of our own runs
// (A and B packed into aligned panels, a 6x16 (float) / 6x8 (double) register-blocked FMA
// micro-kernel, MC/KC/NC cache blocking); elsewhere Eigen does. Threads split M or N only, never
// K, and K is always blocked from 0, so each element's arithmetic is the same for any thread count.
#include "kernels/cpu/gemm.h"

#include <immintrin.h>

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>

#include "kernels/cpu/gemm_backend.h"
#include "kernels/kernels.h"
#include "runtime/error.h"
#include "runtime/parallel.h"

namespace ember::kernels {
namespace {

// A parallel chunk should carry at least this many multiply-adds, so that waking the pool pays.
constexpr int64_t kMinChunkWork = int64_t{1} << 20;

// --- backend selection ------------------------------------------------------------------------

std::atomic<GemmBackend> g_backend{GemmBackend::Auto};

bool cpu_has_avx2_fma() {
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return ok;
}

// --- aligned, grow-only packing buffers (one pair per thread) ---------------------------------

class PackBuffer {
 public:
  PackBuffer() = default;
  PackBuffer(const PackBuffer&) = delete;
  PackBuffer& operator=(const PackBuffer&) = delete;
  ~PackBuffer() { std::free(data_); }

  // At least `bytes` bytes, 64-byte aligned; reallocates only to grow.
  void* get(size_t bytes) {
    if (bytes > capacity_) {
      size_t cap = (bytes + 63) / 64 * 64;
      void* p = std::aligned_alloc(64, cap);
      if (!p) throw std::bad_alloc();
      std::free(data_);
      data_ = p;
      capacity_ = cap;
    }
    return data_;
  }

 private:
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

thread_local PackBuffer t_pack_a;
thread_local PackBuffer t_pack_b;

// --- blocked kernel ---------------------------------------------------------------------------

// AVX2 vector operations for T; NR = 2 vectors.
template <typename T>
struct Simd;

#define EMBER_AVX2 __attribute__((always_inline, target("avx2,fma"))) static inline

template <>
struct Simd<float> {
  using V = __m256;
  static constexpr int64_t W = 8;
  EMBER_AVX2 V zero() { return _mm256_setzero_ps(); }
  EMBER_AVX2 V set1(float x) { return _mm256_set1_ps(x); }
  EMBER_AVX2 V load(const float* p) { return _mm256_load_ps(p); }
  EMBER_AVX2 V loadu(const float* p) { return _mm256_loadu_ps(p); }
  EMBER_AVX2 void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
  EMBER_AVX2 V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  EMBER_AVX2 V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
};

template <>
struct Simd<double> {
  using V = __m256d;
  static constexpr int64_t W = 4;
  EMBER_AVX2 V zero() { return _mm256_setzero_pd(); }
  EMBER_AVX2 V set1(double x) { return _mm256_set1_pd(x); }
  EMBER_AVX2 V load(const double* p) { return _mm256_load_pd(p); }
  EMBER_AVX2 V loadu(const double* p) { return _mm256_loadu_pd(p); }
  EMBER_AVX2 void storeu(double* p, V v) { _mm256_storeu_pd(p, v); }
  EMBER_AVX2 V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  EMBER_AVX2 V fmadd(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
};

#undef EMBER_AVX2

// Cache blocking. MR x NR is the register tile (12 accumulators of 16 ymm registers); a KC x NR
// panel of B stays in L1, an MC x KC block of A in L2, a KC x NC block of B in L3.
template <typename T>
struct Blocking {
  static constexpr int64_t MR = 6;
  static constexpr int64_t NR = 2 * Simd<T>::W;
  static constexpr int64_t KC = 256;
  static constexpr int64_t MC = sizeof(T) == 4 ? 144 : 96;
  static constexpr int64_t NC = sizeof(T) == 4 ? 4080 : 2040;
  static_assert(MC % MR == 0 && NC % NR == 0, "blocks must hold whole tiles");
};

// c (MR x NR, row stride ldc) = alpha * acc + beta * c, acc = sum_k a[k] (x) b[k] over the packed
// panels. beta == 0 overwrites c without reading it.
template <typename T>
__attribute__((target("avx2,fma"))) void micro_kernel(int64_t kc, const T* __restrict a, const T* __restrict b,
                                                       T* __restrict c, int64_t ldc, T alpha, T beta) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int64_t MR = Blocking<T>::MR, W = S::W;
  V acc[MR][2];
#pragma GCC unroll 6
  for (int64_t r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = S::zero();
  for (int64_t k = 0; k < kc; ++k) {
    V b0 = S::load(b), b1 = S::load(b + W);
#pragma GCC unroll 6
    for (int64_t r = 0; r < MR; ++r) {
      V ar = S::set1(a[r]);
      acc[r][0] = S::fmadd(ar, b0, acc[r][0]);
      acc[r][1] = S::fmadd(ar, b1, acc[r][1]);
    }
    a += MR;
    b += 2 * W;
  }
  V va = S::set1(alpha);
  if (beta == T(0)) {
#pragma GCC unroll 6
    for (int64_t r = 0; r < MR; ++r) {
      S::storeu(c + r * ldc, S::mul(va, acc[r][0]));
      S::storeu(c + r * ldc + W, S::mul(va, acc[r][1]));
    }
  } else {
    V vb = S::set1(beta);
#pragma GCC unroll 6
    for (int64_t r = 0; r < MR; ++r) {
      T* cr = c + r * ldc;
      S::storeu(cr, S::fmadd(va, acc[r][0], S::mul(vb, S::loadu(cr))));
      S::storeu(cr + W, S::fmadd(va, acc[r][1], S::mul(vb, S::loadu(cr + W))));
    }
  }
}

// Packs rows [0, mc) x cols [0, kc) of op(A) (A already offset to the block) into MR-row panels:
// panel p holds element (p*MR + r, k) at p*MR*kc + k*MR + r, rows past mc zero.
template <typename T>
void pack_a(bool trans, const T* A, int64_t lda, int64_t mc, int64_t kc, T* out) {
  constexpr int64_t MR = Blocking<T>::MR;
  for (int64_t i = 0; i < mc; i += MR) {
    const int64_t mr = std::min(MR, mc - i);
    T* dst = out + i * kc;
    if (!trans) {
      for (int64_t r = 0; r < mr; ++r) {
        const T* src = A + (i + r) * lda;
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + r] = src[k];
      }
      for (int64_t r = mr; r < MR; ++r)
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + r] = T(0);
    } else {  // op(A)(i, k) = A[k * lda + i]
      for (int64_t k = 0; k < kc; ++k) {
        const T* src = A + k * lda + i;
        T* d = dst + k * MR;
        for (int64_t r = 0; r < mr; ++r) d[r] = src[r];
        for (int64_t r = mr; r < MR; ++r) d[r] = T(0);
      }
    }
  }
}

// Packs rows [0, kc) x cols [0, nc) of op(B) (B already offset to the block) into NR-column
// panels: panel p holds element (k, p*NR + c) at p*NR*kc + k*NR + c, columns past nc zero.
template <typename T>
void pack_b(bool trans, const T* B, int64_t ldb, int64_t kc, int64_t nc, T* out) {
  constexpr int64_t NR = Blocking<T>::NR;
  for (int64_t j = 0; j < nc; j += NR) {
    const int64_t nr = std::min(NR, nc - j);
    T* dst = out + j * kc;
    if (!trans) {
      for (int64_t k = 0; k < kc; ++k) {
        const T* src = B + k * ldb + j;
        T* d = dst + k * NR;
        for (int64_t c = 0; c < nr; ++c) d[c] = src[c];
        for (int64_t c = nr; c < NR; ++c) d[c] = T(0);
      }
    } else {  // op(B)(k, j) = B[j * ldb + k]
      for (int64_t c = 0; c < nr; ++c) {
        const T* src = B + (j + c) * ldb;
        for (int64_t k = 0; k < kc; ++k) dst[k * NR + c] = src[k];
      }
      for (int64_t c = nr; c < NR; ++c)
        for (int64_t k = 0; k < kc; ++k) dst[k * NR + c] = T(0);
    }
  }
}

// Partial tiles: the micro-kernel writes acc into a scratch tile, then the same update as the
// vector path (alpha * acc, or fma(alpha, acc, beta * c)) runs on the valid part, so an element
// gets bitwise the same value whether it falls in a full or a partial tile.
template <typename T>
__attribute__((target("avx2,fma"))) void edge_tile(int64_t kc, const T* a, const T* b, T* c, int64_t ldc,
                                                    int64_t mr, int64_t nr, T alpha, T beta) {
  constexpr int64_t MR = Blocking<T>::MR, NR = Blocking<T>::NR;
  alignas(64) T tile[MR * NR];
  micro_kernel<T>(kc, a, b, tile, NR, T(1), T(0));
  for (int64_t r = 0; r < mr; ++r) {
    T* cr = c + r * ldc;
    const T* tr = tile + r * NR;
    if (beta == T(0)) {
      for (int64_t j = 0; j < nr; ++j) cr[j] = alpha * tr[j];
    } else {
      for (int64_t j = 0; j < nr; ++j) cr[j] = std::fma(alpha, tr[j], beta * cr[j]);
    }
  }
}

// One thread's GEMM on a block of C (pointers already offset to the block).
template <typename T>
void gemm_blocked_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                         const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  using Bk = Blocking<T>;
  constexpr int64_t MR = Bk::MR, NR = Bk::NR;
  const int64_t kc_max = std::min(K, Bk::KC);
  const int64_t mc_max = (std::min(M, Bk::MC) + MR - 1) / MR * MR;
  const int64_t nc_max = (std::min(N, Bk::NC) + NR - 1) / NR * NR;
  T* ap = static_cast<T*>(t_pack_a.get(sizeof(T) * static_cast<size_t>(mc_max * kc_max)));
  T* bp = static_cast<T*>(t_pack_b.get(sizeof(T) * static_cast<size_t>(nc_max * kc_max)));

  for (int64_t jc = 0; jc < N; jc += Bk::NC) {
    const int64_t nc = std::min(Bk::NC, N - jc);
    for (int64_t pc = 0; pc < K; pc += Bk::KC) {
      const int64_t kc = std::min(Bk::KC, K - pc);
      const T beta_k = pc == 0 ? beta : T(1);  // later K blocks accumulate
      pack_b(tb, tb ? B + jc * ldb + pc : B + pc * ldb + jc, ldb, kc, nc, bp);
      for (int64_t ic = 0; ic < M; ic += Bk::MC) {
        const int64_t mc = std::min(Bk::MC, M - ic);
        pack_a(ta, ta ? A + pc * lda + ic : A + ic * lda + pc, lda, mc, kc, ap);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int64_t nr = std::min(NR, nc - jr);
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int64_t mr = std::min(MR, mc - ir);
            T* c = C + (ic + ir) * ldc + jc + jr;
            if (mr == MR && nr == NR) {
              micro_kernel<T>(kc, ap + ir * kc, bp + jr * kc, c, ldc, alpha, beta_k);
            } else {
              edge_tile<T>(kc, ap + ir * kc, bp + jr * kc, c, ldc, mr, nr, alpha, beta_k);
            }
          }
        }
      }
    }
  }
}

// Splits the larger of M and N across threads at tile boundaries.
template <typename T>
void gemm_blocked(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
                  int64_t ldb, T beta, T* C, int64_t ldc) {
  constexpr int64_t MR = Blocking<T>::MR, NR = Blocking<T>::NR;
  if (N >= M) {
    const int64_t tiles = (N + NR - 1) / NR;
    const int64_t grain = std::max<int64_t>(1, kMinChunkWork / (M * K * NR));
    parallel_for(0, tiles, grain, [&](int64_t t0, int64_t t1) {
      const int64_t j0 = t0 * NR, j1 = std::min(N, t1 * NR);
      gemm_blocked_serial<T>(ta, tb, M, j1 - j0, K, alpha, A, lda, tb ? B + j0 * ldb : B + j0, ldb, beta, C + j0,
                             ldc);
    });
  } else {
    const int64_t tiles = (M + MR - 1) / MR;
    const int64_t grain = std::max<int64_t>(1, kMinChunkWork / (N * K * MR));
    parallel_for(0, tiles, grain, [&](int64_t t0, int64_t t1) {
      const int64_t i0 = t0 * MR, i1 = std::min(M, t1 * MR);
      gemm_blocked_serial<T>(ta, tb, i1 - i0, N, K, alpha, ta ? A + i0 : A + i0 * lda, lda, B, ldb, beta,
                             C + i0 * ldc, ldc);
    });
  }
}

// --- Eigen path -------------------------------------------------------------------------------

template <typename T>
void gemm_eigen_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                       const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using CMap = Eigen::Map<const Mat, Eigen::Unaligned, Eigen::OuterStride<>>;
  Eigen::Map<Mat, Eigen::Unaligned, Eigen::OuterStride<>> c(C, M, N, Eigen::OuterStride<>(ldc));
  CMap a(A, ta ? K : M, ta ? M : K, Eigen::OuterStride<>(lda));
  CMap b(B, tb ? N : K, tb ? K : N, Eigen::OuterStride<>(ldb));
  auto run = [&](const auto& opa, const auto& opb) {
    if (beta == T(0)) {
      c.noalias() = alpha * opa * opb;  // assigns: NaN in C does not survive
    } else {
      if (beta != T(1)) c *= beta;
      c.noalias() += alpha * opa * opb;
    }
  };
  if (!ta && !tb) run(a, b);
  if (!ta && tb) run(a, b.transpose());
  if (ta && !tb) run(a.transpose(), b);
  if (ta && tb) run(a.transpose(), b.transpose());
}

// Eigen's own blocking depends on the problem size, so the split into chunks is fixed (not per
// thread count) to keep results independent of the number of threads.
template <typename T>
void gemm_eigen(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
                int64_t ldb, T beta, T* C, int64_t ldc) {
  constexpr int64_t kChunk = 128;
  if (N >= M) {
    const int64_t chunks = (N + kChunk - 1) / kChunk;
    const int64_t grain = std::max<int64_t>(1, kMinChunkWork / (M * K * kChunk));
    parallel_for(0, chunks, grain, [&](int64_t c0, int64_t c1) {
      for (int64_t ch = c0; ch < c1; ++ch) {
        const int64_t j0 = ch * kChunk, n = std::min(kChunk, N - j0);
        gemm_eigen_serial<T>(ta, tb, M, n, K, alpha, A, lda, tb ? B + j0 * ldb : B + j0, ldb, beta, C + j0, ldc);
      }
    });
  } else {
    const int64_t chunks = (M + kChunk - 1) / kChunk;
    const int64_t grain = std::max<int64_t>(1, kMinChunkWork / (N * K * kChunk));
    parallel_for(0, chunks, grain, [&](int64_t c0, int64_t c1) {
      for (int64_t ch = c0; ch < c1; ++ch) {
        const int64_t i0 = ch * kChunk, m = std::min(kChunk, M - i0);
        gemm_eigen_serial<T>(ta, tb, m, N, K, alpha, ta ? A + i0 : A + i0 * lda, lda, B, ldb, beta, C + i0 * ldc,
                             ldc);
      }
    });
  }
}

// --- dispatch ---------------------------------------------------------------------------------

template <typename T>
GemmBackend resolve_backend() {
  GemmBackend b = g_backend.load(std::memory_order_relaxed);
  if (b != GemmBackend::Auto) return b;
  // Measured with bench/runtime (ember-bench-runtime): the blocked kernel beats Eigen (built
  // without -march=native, so SSE2 only) for both dtypes on AVX2 machines.
  return cpu_has_avx2_fma() ? GemmBackend::Blocked : GemmBackend::Eigen;
}

template <typename T>
void gemm_impl(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
               int64_t ldb, T beta, T* C, int64_t ldc) {
  EMBER_CHECK(M >= 0 && N >= 0 && K >= 0, "[gemm] sizes must be non-negative, got M=", M, " N=", N, " K=", K);
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == T(0)) {  // C = beta * C; A and B are not read
    for (int64_t i = 0; i < M; ++i) {
      T* c = C + i * ldc;
      for (int64_t j = 0; j < N; ++j) c[j] = beta == T(0) ? T(0) : beta * c[j];
    }
    return;
  }
  if (resolve_backend<T>() == GemmBackend::Blocked) {
    gemm_blocked<T>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  } else {
    gemm_eigen<T>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
}

// How a (B, R, Cc) tensor's per-batch matrix is stored: row-major (trans=false, ld = row stride)
// or column-major (trans=true: the stored matrix is the transpose, ld = column stride).
struct MatLayout {
  bool trans;
  int64_t ld;
};

MatLayout matrix_layout(const Tensor& t, const char* name) {
  const int64_t rows = t.size(1), cols = t.size(2), rs = t.stride(1), cs = t.stride(2);
  if (cs == 1 || cols <= 1) return {false, rows <= 1 ? std::max<int64_t>(cols, 1) : rs};
  if (rs == 1 || rows <= 1) return {true, cs};
  EMBER_THROW("[bmm] ", name, " needs stride 1 along one of its last two dims, got strides (", t.stride(0), ", ",
              rs, ", ", cs, ")");
}

}  // namespace

void set_gemm_backend(GemmBackend backend) {
  EMBER_CHECK(backend != GemmBackend::Blocked || cpu_has_avx2_fma(),
              "[gemm] the blocked backend needs a CPU with AVX2 and FMA");
  g_backend.store(backend, std::memory_order_relaxed);
}

bool gemm_blocked_available() { return cpu_has_avx2_fma(); }

GemmBackend gemm_backend_in_use(bool is_double) {
  return is_double ? resolve_backend<double>() : resolve_backend<float>();
}

const char* gemm_backend_name(GemmBackend backend) {
  switch (backend) {
    case GemmBackend::Auto: return "auto";
    case GemmBackend::Blocked: return "blocked-avx2";
    case GemmBackend::Eigen: return "eigen";
  }
  return "unknown";
}

void gemm_cpu(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
              int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_impl<float>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_cpu(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
              int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  gemm_impl<double>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// a: (B, M, K), w: (B, K, N) -> out: (B, M, N) contiguous
void bmm_cpu(const Tensor& a, const Tensor& w, const Tensor& out, double beta) {
  EMBER_CHECK(a.dim() == 3 && w.dim() == 3 && out.dim() == 3, "[bmm] expects 3-D tensors, got ranks ", a.dim(),
              ", ", w.dim(), " and ", out.dim());
  const int64_t batch = out.size(0), M = out.size(1), N = out.size(2), K = a.size(2);
  EMBER_CHECK(a.size(0) == batch && a.size(1) == M && w.size(0) == batch && w.size(1) == K && w.size(2) == N,
              "[bmm] shapes (", a.size(0), ", ", M, ", ", K, ") @ (", w.size(0), ", ", w.size(1), ", ", w.size(2),
              ") do not give (", batch, ", ", M, ", ", N, ")");
  EMBER_CHECK(out.is_contiguous(), "[bmm] out must be contiguous");
  EMBER_CHECK(a.dtype() == out.dtype() && w.dtype() == out.dtype(), "[bmm] dtypes differ: ", dtype_name(a.dtype()),
              ", ", dtype_name(w.dtype()), " and ", dtype_name(out.dtype()));
  if (batch == 0 || M == 0 || N == 0) return;
  const MatLayout la = matrix_layout(a, "a"), lw = matrix_layout(w, "w");
  const int64_t sa = a.stride(0), sw = w.stride(0);
  dispatch_floating(out.dtype(), "bmm", [&](auto tag) {
    using T = decltype(tag);
    const T* ap = a.data_ptr<T>();
    const T* wp = w.data_ptr<T>();
    T* op = out.data_ptr<T>();
    auto one = [&](int64_t b) {
      gemm_cpu(la.trans, lw.trans, M, N, K, T(1), ap + b * sa, la.ld, wp + b * sw, lw.ld, static_cast<T>(beta),
               op + b * M * N, N);
    };
    const int64_t work = std::max<int64_t>(1, M * N * std::max<int64_t>(K, 1));
    if (batch > 1 && work < 8 * kMinChunkWork) {
      // Many small products: one thread per group of batches (the gemm inside runs serially).
      parallel_for(0, batch, std::max<int64_t>(1, kMinChunkWork / work), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) one(b);
      });
    } else {
      for (int64_t b = 0; b < batch; ++b) one(b);
    }
  });
}

}  // namespace ember::kernels
