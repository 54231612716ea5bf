// CPU GEMM and batched matmul. On CPUs with AVX-512 or AVX2+FMA a BLIS-style blocked kernel of
// our own runs (A and B packed into aligned panels, a register-blocked FMA micro-kernel, MC/KC/NC
// cache blocking; kernels/cpu/gemm_blocked.inc), chosen at run time; elsewhere Eigen does. Threads
// split M or N only, never K, so each element's arithmetic is the same for any thread count.
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa.h"

#if defined(__x86_64__) || defined(__i386__)
#define EMBER_GEMM_X86 1
#include <immintrin.h>
#else
#define EMBER_GEMM_X86 0  // other architectures use Eigen
#endif

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <type_traits>
#include <vector>

#include "kernels/cpu/gemm_backend.h"
#include "kernels/cpu/gemm_lowp.h"
#include "kernels/kernels.h"
#include "ember/runtime/error.h"
#include "ember/runtime/parallel.h"

namespace ember::kernels {
namespace {

// A parallel chunk should carry at least this many multiply-adds, so that waking the pool pays.
constexpr int64_t kMinChunkWork = int64_t{1} << 20;

// --- backend selection ------------------------------------------------------------------------

std::atomic<GemmBackend> g_backend{GemmBackend::Auto};

bool cpu_supports(GemmBackend b) {
  const bool avx512 = EMBER_GEMM_X86 && detected_cpu_isa() == CpuIsa::Avx512;
  const bool avx2 = avx512 || (EMBER_GEMM_X86 && detected_cpu_isa() == CpuIsa::Avx2);
  switch (b) {
    case GemmBackend::Avx512: return avx512;
    case GemmBackend::Avx2: return avx2;
    default: return true;
  }
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

// op(X) as the packing routines read it: a GemmOperand moved to a block of op(X).
template <typename T>
struct Operand {
  const T* data;
  int64_t ld;
  bool trans;
  const T* const* rows;  // row table, or null for a strided matrix
  int64_t col;           // column offset into each row of a row table, or into packed panels
  const T* panels;       // op(B) packed by gemm_pack_b_cpu, or null
  int64_t npad;          // the packed matrix's columns, whole panels

  explicit Operand(const GemmOperand<T>& o)
      : data(o.data), ld(o.ld), trans(o.trans), rows(o.rows), col(0), panels(o.panels), npad(o.npad) {}
  // Row r of op(X); not for a transposed strided matrix.
  const T* row(int64_t r) const { return rows ? rows[r] + col : data + r * ld; }
  // Element (r, c) of op(X).
  T at(int64_t r, int64_t c) const { return trans && !rows ? data[c * ld + r] : row(r)[c]; }
  // The operand whose (0, 0) is (r0, c0) of this one.
  Operand block(int64_t r0, int64_t c0) const {
    Operand o = *this;
    if (panels) {  // whole K blocks and panels only (the threads split N at tile boundaries)
      o.col = col + c0;
    } else if (rows) {
      o.rows = rows + r0;
      o.col = col + c0;
    } else {
      o.data = trans ? data + c0 * ld + r0 : data + r0 * ld + c0;
    }
    return o;
  }
};

// ReLU over an M x N block of C (row stride ldc), as the elementwise op computes it (c < 0 ? 0 : c,
// NaN kept): the GEMM's epilogue for the paths that store C element by element.
template <typename T>
void relu_rows(int64_t M, int64_t N, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    T* c = C + i * ldc;
    for (int64_t j = 0; j < N; ++j) c[j] = c[j] < T(0) ? T(0) : c[j];
  }
}

// --- blocked kernels ------------------------------------------------------------------------
#if EMBER_GEMM_X86

// Vector traits: element type T, vector V of W lanes, register tile MR x 2W, cache blocks MC
// (A block in L2) and NC (B block in L3). The tile uses 2*MR of the 16 (AVX2) or 32 (AVX-512)
// vector registers for accumulators.
#define EMBER_AVX2_OP __attribute__((always_inline, target("avx2,fma"))) static inline
struct Avx2F32 {
  using T = float;
  using V = __m256;
  static constexpr int64_t W = 8, MR = 6, MC = 144, NC = 4096;
  EMBER_AVX2_OP V zero() { return _mm256_setzero_ps(); }
  EMBER_AVX2_OP V set1(T x) { return _mm256_set1_ps(x); }
  EMBER_AVX2_OP V load(const T* p) { return _mm256_load_ps(p); }
  EMBER_AVX2_OP V loadu(const T* p) { return _mm256_loadu_ps(p); }
  EMBER_AVX2_OP void storeu(T* p, V v) { _mm256_storeu_ps(p, v); }
  EMBER_AVX2_OP V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  EMBER_AVX2_OP V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  EMBER_AVX2_OP V max(V a, V b) { return _mm256_max_ps(a, b); }
};
struct Avx2F64 {
  using T = double;
  using V = __m256d;
  static constexpr int64_t W = 4, MR = 6, MC = 96, NC = 2048;
  EMBER_AVX2_OP V zero() { return _mm256_setzero_pd(); }
  EMBER_AVX2_OP V set1(T x) { return _mm256_set1_pd(x); }
  EMBER_AVX2_OP V load(const T* p) { return _mm256_load_pd(p); }
  EMBER_AVX2_OP V loadu(const T* p) { return _mm256_loadu_pd(p); }
  EMBER_AVX2_OP void storeu(T* p, V v) { _mm256_storeu_pd(p, v); }
  EMBER_AVX2_OP V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  EMBER_AVX2_OP V fmadd(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  EMBER_AVX2_OP V max(V a, V b) { return _mm256_max_pd(a, b); }
};
#undef EMBER_AVX2_OP

#define EMBER_AVX512_OP __attribute__((always_inline, target("avx512f,avx2,fma"))) static inline
struct Avx512F32 {
  using T = float;
  using V = __m512;
  static constexpr int64_t W = 16, MR = 12, MC = 288, NC = 4096;
  EMBER_AVX512_OP V zero() { return _mm512_setzero_ps(); }
  EMBER_AVX512_OP V set1(T x) { return _mm512_set1_ps(x); }
  EMBER_AVX512_OP V load(const T* p) { return _mm512_load_ps(p); }
  EMBER_AVX512_OP V loadu(const T* p) { return _mm512_loadu_ps(p); }
  EMBER_AVX512_OP void storeu(T* p, V v) { _mm512_storeu_ps(p, v); }
  EMBER_AVX512_OP V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  EMBER_AVX512_OP V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  // The maskz form (all lanes): _mm512_max_ps trips GCC 12's -Wmaybe-uninitialized.
  EMBER_AVX512_OP V max(V a, V b) { return _mm512_maskz_max_ps(0xffff, a, b); }
  // Transposes W columns [k, k + W) of `rows` <= W rows (src[r] + k; rows past them are zero)
  // into d[kk * ld + r] for r < lanes, with a 16 x 16 in-register transpose. The packers use it
  // where they would gather one value per row.
  static constexpr bool kTransposePack = true;
  EMBER_AVX512_OP void transpose_pack(const T* const* src, int64_t rows, int64_t k, T* d, int64_t ld,
                                      int64_t lanes) {
    // The maskz forms (mask all ones) avoid _mm512_undefined_ps, which trips GCC 12's
    // -Wmaybe-uninitialized.
    constexpr __mmask16 kAll = 0xffff;
    V r[16], t[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) r[i] = i < rows ? _mm512_loadu_ps(src[i] + k) : zero();
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_maskz_unpacklo_ps(kAll, r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_maskz_unpackhi_ps(kAll, r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      const __m512d a0 = _mm512_castps_pd(t[4 * i]), a1 = _mm512_castps_pd(t[4 * i + 1]);
      const __m512d a2 = _mm512_castps_pd(t[4 * i + 2]), a3 = _mm512_castps_pd(t[4 * i + 3]);
      r[4 * i] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(0xff, a0, a2));
      r[4 * i + 1] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(0xff, a0, a2));
      r[4 * i + 2] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(0xff, a1, a3));
      r[4 * i + 3] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(0xff, a1, a3));
    }
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      const int lo = (i / 4) * 8 + i % 4;
      t[lo] = _mm512_maskz_shuffle_f32x4(kAll, r[lo], r[lo + 4], 0x88);
      t[lo + 4] = _mm512_maskz_shuffle_f32x4(kAll, r[lo], r[lo + 4], 0xdd);
    }
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      r[j] = _mm512_maskz_shuffle_f32x4(kAll, t[j], t[8 + j], 0x88);
      r[8 + j] = _mm512_maskz_shuffle_f32x4(kAll, t[j], t[8 + j], 0xdd);
    }
    const __mmask16 mask = static_cast<__mmask16>((1u << lanes) - 1);
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) _mm512_mask_storeu_ps(d + j * ld, mask, r[j]);
  }
};
struct Avx512F64 {
  using T = double;
  using V = __m512d;
  static constexpr int64_t W = 8, MR = 12, MC = 144, NC = 2048;
  EMBER_AVX512_OP V zero() { return _mm512_setzero_pd(); }
  EMBER_AVX512_OP V set1(T x) { return _mm512_set1_pd(x); }
  EMBER_AVX512_OP V load(const T* p) { return _mm512_load_pd(p); }
  EMBER_AVX512_OP V loadu(const T* p) { return _mm512_loadu_pd(p); }
  EMBER_AVX512_OP void storeu(T* p, V v) { _mm512_storeu_pd(p, v); }
  EMBER_AVX512_OP V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  EMBER_AVX512_OP V fmadd(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  EMBER_AVX512_OP V max(V a, V b) { return _mm512_maskz_max_pd(0xff, a, b); }
};
#undef EMBER_AVX512_OP

namespace avx2 {
#define EMBER_GEMM_TARGET "avx2,fma"
#include "kernels/cpu/gemm_blocked.inc"
#undef EMBER_GEMM_TARGET
}  // namespace avx2

namespace avx512 {
#define EMBER_GEMM_TARGET "avx512f,avx2,fma"
#include "kernels/cpu/gemm_blocked.inc"
#undef EMBER_GEMM_TARGET
}  // namespace avx512
#endif  // EMBER_GEMM_X86

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

// Measured with ember-bench-runtime (bench/runtime), GFLOP per CPU second for 512^3 on an AMD
// EPYC with AVX-512: sgemm 240 (AVX-512 kernel), 125 (AVX2 kernel), 49 (Eigen, which without
// -march is SSE2; with -march=native ~185); dgemm 115 / 61 / 24. So: our kernels wherever they run.
GemmBackend resolve_backend() {
  const GemmBackend b = g_backend.load(std::memory_order_relaxed);
  if (b != GemmBackend::Auto) return b;
  if (cpu_supports(GemmBackend::Avx512)) return GemmBackend::Avx512;
  if (cpu_supports(GemmBackend::Avx2)) return GemmBackend::Avx2;
  return GemmBackend::Eigen;
}

// A row-table operand copied into a dense (rows x cols) matrix, for Eigen.
template <typename T>
std::vector<T> densify(const GemmOperand<T>& o, int64_t rows, int64_t cols) {
  std::vector<T> d(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) std::copy(o.rows[r], o.rows[r] + cols, d.begin() + r * cols);
  return d;
}

// C = alpha * op(A) @ op(B) + beta * C, then ReLU over C when relu is set.
template <typename T>
void gemm_impl(int64_t M, int64_t N, int64_t K, T alpha, const GemmOperand<T>& A, const GemmOperand<T>& B, T beta,
               T* C, int64_t ldc, const T* bias, bool relu);

// bias (N values, or null): added to every row of C in the first K block in place of beta * C.
// relu: the blocked kernels apply it as they store the last K block; the other paths after.
template <typename T>
void gemm_impl(int64_t M, int64_t N, int64_t K, T alpha, const GemmOperand<T>& A, const GemmOperand<T>& B, T beta,
               T* C, int64_t ldc, const T* bias, bool relu) {
  EMBER_CHECK(M >= 0 && N >= 0 && K >= 0, "[gemm] sizes must be non-negative, got M=", M, " N=", N, " K=", K);
  if (M == 0 || N == 0) return;
  // The blocked kernels take the bias and the ReLU in their epilogue; elsewhere they are passes.
  const bool epilogue = K > 0 && alpha != T(0) && resolve_backend() != GemmBackend::Eigen;
  if (relu && !epilogue) {
    gemm_impl<T>(M, N, K, alpha, A, B, beta, C, ldc, bias, false);
    relu_rows(M, N, C, ldc);
    return;
  }
  if (bias && !epilogue) {
    // The bias copied into C, then C += alpha * op(A) @ op(B).
    for (int64_t i = 0; i < M; ++i) std::copy(bias, bias + N, C + i * ldc);
    beta = T(1);
    bias = nullptr;
  }
  if (K == 0 || alpha == T(0)) {  // C = beta * C; A and B are not read
    for (int64_t i = 0; i < M; ++i) {
      T* c = C + i * ldc;
      for (int64_t j = 0; j < N; ++j) c[j] = beta == T(0) ? T(0) : beta * c[j];
    }
    return;
  }
  EMBER_CHECK(!B.panels || resolve_backend() != GemmBackend::Eigen,
              "[gemm] a packed operand needs a blocked kernel, but the backend in use is eigen");
  switch (resolve_backend()) {
#if EMBER_GEMM_X86
    case GemmBackend::Avx512:
      using S512 = std::conditional_t<std::is_same_v<T, float>, Avx512F32, Avx512F64>;
      avx512::gemm<S512>(M, N, K, alpha, Operand<T>(A), Operand<T>(B), beta, C, ldc, bias, relu);
      return;
    case GemmBackend::Avx2:
      using S2 = std::conditional_t<std::is_same_v<T, float>, Avx2F32, Avx2F64>;
      avx2::gemm<S2>(M, N, K, alpha, Operand<T>(A), Operand<T>(B), beta, C, ldc, bias, relu);
      return;
#endif
    default: {
      std::vector<T> a, b;
      if (A.rows) a = densify(A, M, K);
      if (B.rows) b = densify(B, K, N);
      gemm_eigen<T>(A.rows ? false : A.trans, B.rows ? false : B.trans, M, N, K, alpha, A.rows ? a.data() : A.data,
                    A.rows ? K : A.ld, B.rows ? b.data() : B.data, B.rows ? N : B.ld, beta, C, ldc);
    }
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

int64_t gemm_packed_b_size(bool f64, int64_t K, int64_t N, int64_t* npad) {
  int64_t nr = 0;
#if EMBER_GEMM_X86
  switch (resolve_backend()) {
    case GemmBackend::Avx512: nr = f64 ? 2 * Avx512F64::W : 2 * Avx512F32::W; break;
    case GemmBackend::Avx2: nr = f64 ? 2 * Avx2F64::W : 2 * Avx2F32::W; break;
    default: break;
  }
#endif
  (void)f64;
  *npad = nr ? (N + nr - 1) / nr * nr : 0;
  return K * *npad;
}

namespace {
template <typename T>
int pack_b_impl(int64_t K, int64_t N, const GemmOperand<T>& B, T* out) {
  const GemmBackend b = resolve_backend();
  switch (b) {
#if EMBER_GEMM_X86
    case GemmBackend::Avx512:
      avx512::pack_b_whole<std::conditional_t<std::is_same_v<T, float>, Avx512F32, Avx512F64>>(K, N, Operand<T>(B), out);
      break;
    case GemmBackend::Avx2:
      avx2::pack_b_whole<std::conditional_t<std::is_same_v<T, float>, Avx2F32, Avx2F64>>(K, N, Operand<T>(B), out);
      break;
#endif
    default: EMBER_THROW("[gemm] the backend in use (", gemm_backend_name(b), ") packs no operand");
  }
  return static_cast<int>(b);
}
}  // namespace

int gemm_pack_b_cpu(int64_t K, int64_t N, const GemmOperand<float>& B, float* out) { return pack_b_impl(K, N, B, out); }
int gemm_pack_b_cpu(int64_t K, int64_t N, const GemmOperand<double>& B, double* out) {
  return pack_b_impl(K, N, B, out);
}

int gemm_packing_backend() { return static_cast<int>(resolve_backend()); }

void set_gemm_backend(GemmBackend backend) {
  EMBER_CHECK(cpu_supports(backend), "[gemm] backend ", gemm_backend_name(backend), " needs CPU features this CPU lacks");
  g_backend.store(backend, std::memory_order_relaxed);
}

bool gemm_backend_available(GemmBackend backend) { return cpu_supports(backend); }

GemmBackend gemm_backend_in_use() { return resolve_backend(); }

const char* gemm_backend_name(GemmBackend backend) {
  switch (backend) {
    case GemmBackend::Auto: return "auto";
    case GemmBackend::Avx512: return "blocked-avx512";
    case GemmBackend::Avx2: return "blocked-avx2";
    case GemmBackend::Eigen: return "eigen";
  }
  return "unknown";
}

void gemm_cpu(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
              int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_impl<float>(M, N, K, alpha, GemmOperand<float>::strided(A, lda, trans_a),
                   GemmOperand<float>::strided(B, ldb, trans_b), beta, C, ldc, nullptr, false);
}

void gemm_cpu(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
              int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  gemm_impl<double>(M, N, K, alpha, GemmOperand<double>::strided(A, lda, trans_a),
                    GemmOperand<double>::strided(B, ldb, trans_b), beta, C, ldc, nullptr, false);
}

void gemm_bias_cpu(int64_t M, int64_t N, int64_t K, float alpha, const GemmOperand<float>& A,
                   const GemmOperand<float>& B, const float* bias, float* C, int64_t ldc, bool relu) {
  gemm_impl<float>(M, N, K, alpha, A, B, bias ? 1.0f : 0.0f, C, ldc, bias, relu);
}

void gemm_bias_cpu(int64_t M, int64_t N, int64_t K, double alpha, const GemmOperand<double>& A,
                   const GemmOperand<double>& B, const double* bias, double* C, int64_t ldc, bool relu) {
  gemm_impl<double>(M, N, K, alpha, A, B, bias ? 1.0 : 0.0, C, ldc, bias, relu);
}

void gemm_cpu(int64_t M, int64_t N, int64_t K, float alpha, const GemmOperand<float>& A, const GemmOperand<float>& B,
              float beta, float* C, int64_t ldc) {
  gemm_impl<float>(M, N, K, alpha, A, B, beta, C, ldc, nullptr, false);
}

void gemm_cpu(int64_t M, int64_t N, int64_t K, double alpha, const GemmOperand<double>& A,
              const GemmOperand<double>& B, double beta, double* C, int64_t ldc) {
  gemm_impl<double>(M, N, K, alpha, A, B, beta, C, ldc, nullptr, false);
}

namespace {

// a: (B, M, K), w: (B, K, N) -> out: (B, M, N) contiguous; bias: undefined, or N values added to
// every row (in place of beta * out); relu: ReLU applied as the output is stored (float32/64).
void bmm_impl(const Tensor& a, const Tensor& w, const Tensor& out, double beta, const Tensor& bias, bool relu) {
  EMBER_CHECK(a.dim() == 3 && w.dim() == 3 && out.dim() == 3, "[bmm] expects 3-D tensors, got ranks ", a.dim(),
              ", ", w.dim(), " and ", out.dim());
  const int64_t batch = out.size(0), M = out.size(1), N = out.size(2), K = a.size(2);
  EMBER_CHECK(a.size(0) == batch && a.size(1) == M && w.size(0) == batch && w.size(1) == K && w.size(2) == N,
              "[bmm] shapes (", a.size(0), ", ", M, ", ", K, ") @ (", w.size(0), ", ", w.size(1), ", ", w.size(2),
              ") do not give (", batch, ", ", M, ", ", N, ")");
  EMBER_CHECK(out.is_contiguous(), "[bmm] out must be contiguous");
  EMBER_CHECK(a.dtype() == out.dtype() && w.dtype() == out.dtype(), "[bmm] dtypes differ: ", dtype_name(a.dtype()),
              ", ", dtype_name(w.dtype()), " and ", dtype_name(out.dtype()));
  if (bias.defined())
    EMBER_CHECK(bias.dtype() == out.dtype() && bias.numel() == N && bias.is_contiguous(), "[bmm] bias must be ", N,
                " contiguous values of dtype ", dtype_name(out.dtype()), ", got shape ", bias.shape().str(), " of dtype ",
                dtype_name(bias.dtype()));
  if (batch == 0 || M == 0 || N == 0) return;
  const MatLayout la = matrix_layout(a, "a"), lw = matrix_layout(w, "w");
  const int64_t sa = a.stride(0), sw = w.stride(0);
  if (out.dtype() == DType::bf16 || out.dtype() == DType::f16) {
    // Half operands: float32 accumulation, one rounding per element (kernels/cpu/gemm_lowp.h).
    EMBER_CHECK(beta == 0.0 || beta == 1.0, "[bmm] beta must be 0 or 1 for dtype ", dtype_name(out.dtype()), ", got ",
                beta);
    EMBER_CHECK(!relu, "[bmm] the ReLU epilogue is for float32 and float64, got dtype ", dtype_name(out.dtype()));
    const bool bf16 = out.dtype() == DType::bf16;
    const uint16_t* ap = static_cast<const uint16_t*>(a.data_ptr());
    const uint16_t* wp = static_cast<const uint16_t*>(w.data_ptr());
    uint16_t* op = static_cast<uint16_t*>(out.data_ptr());
    const uint16_t* bp = bias.defined() ? static_cast<const uint16_t*>(bias.data_ptr()) : nullptr;
    for (int64_t b = 0; b < batch; ++b)
      gemm_half_cpu(bf16, la.trans, lw.trans, M, N, K, ap + b * sa, la.ld, wp + b * sw, lw.ld,
                    static_cast<float>(beta), op + b * M * N, N, bp);
    return;
  }
  dispatch_floating(out.dtype(), "bmm", [&](auto tag) {
    using T = decltype(tag);
    const T* ap = a.data_ptr<T>();
    const T* wp = w.data_ptr<T>();
    T* op = out.data_ptr<T>();
    const T* bp = bias.defined() ? bias.data_ptr<T>() : nullptr;
    auto one = [&](int64_t b) {
      if (bp || relu) {  // relu comes from bmm_bias_cpu only, with beta 0
        gemm_bias_cpu(M, N, K, T(1), GemmOperand<T>::strided(ap + b * sa, la.ld, la.trans),
                      GemmOperand<T>::strided(wp + b * sw, lw.ld, lw.trans), bp, op + b * M * N, N, relu);
      } else {
        gemm_cpu(la.trans, lw.trans, M, N, K, T(1), ap + b * sa, la.ld, wp + b * sw, lw.ld, static_cast<T>(beta),
                 op + b * M * N, N);
      }
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

}  // namespace

void bmm_cpu(const Tensor& a, const Tensor& w, const Tensor& out, double beta) {
  bmm_impl(a, w, out, beta, Tensor(), false);
}

void bmm_bias_cpu(const Tensor& a, const Tensor& w, const Tensor& bias, const Tensor& out, bool relu) {
  bmm_impl(a, w, out, 0.0, bias, relu);
}

Tensor pack_linear_weight_cpu(const Tensor& w, int* kernel) {
  *kernel = -1;
  EMBER_CHECK(w.dim() == 2 && (w.dtype() == DType::f32 || w.dtype() == DType::f64) && w.device().is_cpu(),
              "[linear] a packed weight is a 2-D float32 or float64 CPU tensor, got shape ", w.shape().str(), " of dtype ",
              dtype_name(w.dtype()));
  const int64_t N = w.size(0), K = w.size(1);
  int64_t npad = 0;
  const int64_t size = gemm_packed_b_size(w.dtype() == DType::f64, K, N, &npad);
  if (npad == 0 || K == 0 || N == 0) return Tensor();
  const Tensor wc = w.contiguous();
  Tensor panels = empty({size}, TensorOptions(w.dtype()));
  dispatch_floating(w.dtype(), "pack_linear_weight", [&](auto tag) {
    using T = decltype(tag);
    *kernel = gemm_pack_b_cpu(K, N, GemmOperand<T>::strided(wc.data_ptr<T>(), K, true), panels.data_ptr<T>());
  });
  return panels;
}

void linear_packed_cpu(const Tensor& x, const Tensor& panels, int kernel, int64_t N, const Tensor& bias,
                       const Tensor& out, bool relu) {
  EMBER_CHECK(x.dim() == 2 && x.is_contiguous() && out.is_contiguous() && x.dtype() == panels.dtype() &&
                  out.dtype() == x.dtype() && out.numel() == x.size(0) * N,
              "[linear] a packed product takes a contiguous (M, K) input of the weight's dtype and an (M, ", N,
              ") output, got ", x.shape().str(), " (", dtype_name(x.dtype()), ") and ", out.shape().str());
  EMBER_CHECK(kernel == gemm_packing_backend(), "[linear] the packed weight is for GEMM kernel ",
              gemm_backend_name(static_cast<GemmBackend>(kernel)), ", but ",
              gemm_backend_name(static_cast<GemmBackend>(gemm_packing_backend())), " is in use: pack it again");
  const int64_t M = x.size(0), K = x.size(1);
  int64_t npad = 0;
  EMBER_CHECK(gemm_packed_b_size(x.dtype() == DType::f64, K, N, &npad) == panels.numel(),
              "[linear] the packed weight holds ", panels.numel(), " values, not those of a ", N, " x ", K, " weight");
  if (bias.defined())
    EMBER_CHECK(bias.dtype() == out.dtype() && bias.numel() == N && bias.is_contiguous(), "[linear] bias must be ", N,
                " contiguous values of dtype ", dtype_name(out.dtype()), ", got shape ", bias.shape().str());
  if (M == 0 || N == 0) return;
  dispatch_floating(x.dtype(), "linear_packed", [&](auto tag) {
    using T = decltype(tag);
    gemm_bias_cpu(M, N, K, T(1), GemmOperand<T>::strided(x.data_ptr<T>(), K, false),
                  GemmOperand<T>::packed(panels.data_ptr<T>(), npad), bias.defined() ? bias.data_ptr<T>() : nullptr,
                  out.data_ptr<T>(), N, relu);
  });
}

void bmm_bf16_f32_cpu(const Tensor& a, const Tensor& w, const Tensor& out) {
  EMBER_CHECK(a.dim() == 3 && w.dim() == 3 && a.size(0) == 1 && w.size(0) == 1 && a.dtype() == DType::bf16 &&
                  w.dtype() == DType::bf16 && out.dtype() == DType::f32 && out.is_contiguous() &&
                  a.size(2) == w.size(1) && out.numel() == a.size(1) * w.size(2),
              "[bmm] bmm_bf16_f32_cpu takes bf16 (1, M, K) and (1, K, N) operands and M * N contiguous float32 "
              "outputs, got shapes ",
              a.shape().str(), " and ", w.shape().str(), " (", dtype_name(a.dtype()), ", ", dtype_name(w.dtype()),
              ") into ", out.shape().str(), " (", dtype_name(out.dtype()), ")");
  const int64_t M = a.size(1), K = a.size(2), N = w.size(2);
  if (M == 0 || N == 0) return;
  const MatLayout la = matrix_layout(a, "a"), lw = matrix_layout(w, "w");
  gemm_bf16_cpu(la.trans, lw.trans, M, N, K, static_cast<const uint16_t*>(a.data_ptr()), la.ld,
                static_cast<const uint16_t*>(w.data_ptr()), lw.ld, out.data_ptr<float>(), N);
}

}  // namespace ember::kernels
