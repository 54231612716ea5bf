// bfloat16 GEMM with float32 accumulation (see gemm_lowp.h).
//
// The AVX512-BF16 path: B is packed once per call into panels of 32 columns, each k-pair of a
// column as one 32-bit word (B[k][j], B[k+1][j]), so that one 512-bit load holds 16 columns of a
// k-pair; A is packed per block of 8 rows into k-pairs likewise. The micro-kernel keeps an 8 x 32
// float32 tile in 16 registers and, per k-pair, broadcasts each row's pair and issues vdpbf16ps
// against the two column vectors. An odd K is padded with a zero k. Threads split the packing of
// B by k-pairs and the row blocks.
#include "kernels/cpu/gemm_lowp.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/half_rows.h"
#include "kernels/cpu/isa.h"
#include "ember/runtime/half.h"
#include "ember/runtime/parallel.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define EMBER_LOWP_X86 1
#else
#define EMBER_LOWP_X86 0
#endif

namespace ember::kernels {
namespace {

constexpr int64_t kMR = 8, kNR = 32;

// The pair (lo = x[k], hi = x[k + 1]) as vdpbf16ps reads it; a missing k + 1 is zero.
inline uint32_t pair(uint16_t lo, uint16_t hi) { return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16); }

// Element (i, k) of op(A) and (k, j) of op(B).
inline uint16_t at_a(const uint16_t* A, int64_t lda, bool trans, int64_t i, int64_t k) {
  return trans ? A[k * lda + i] : A[i * lda + k];
}
inline uint16_t at_b(const uint16_t* B, int64_t ldb, bool trans, int64_t k, int64_t j) {
  return trans ? B[j * ldb + k] : B[k * ldb + j];
}

// A grow-only per-thread float buffer; `slot` tells apart the buffers used at the same time. A
// steady training step reuses them without allocating.
float* scratch(int slot, int64_t n) {
  thread_local std::vector<float> buffers[3];
  std::vector<float>& b = buffers[slot];
  if (b.size() < static_cast<size_t>(n)) b.resize(static_cast<size_t>(n));
  return b.data();
}

// X as stored (rows x cols of half bits, row stride ld), widened exactly into a dense float matrix.
void widen_matrix(bool bf16, const uint16_t* X, int64_t ld, int64_t rows, int64_t cols, float* dst) {
  parallel_for(0, rows, std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) half_to_f32_row(bf16, X + r * ld, dst + r * cols, cols);
  });
}

// op(A) @ op(B) into C from float32 copies of A and B in their stored layouts.
void gemm_widened(bool bf16, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda,
                  const uint16_t* B, int64_t ldb, float* C, int64_t ldc) {
  float* a = scratch(0, M * K);
  float* b = scratch(1, K * N);
  widen_matrix(bf16, A, lda, ta ? K : M, ta ? M : K, a);
  widen_matrix(bf16, B, ldb, tb ? N : K, tb ? K : N, b);
  gemm_cpu(ta, tb, M, N, K, 1.0f, a, ta ? M : K, b, tb ? K : N, 0.0f, C, ldc);
}

#if EMBER_LOWP_X86
#define EMBER_BF16_TARGET __attribute__((target("avx512f,avx512bf16,avx512vl,avx512bw")))

bool cpu_has_avx512_bf16() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
  }();
  return has;
}

// c (mr x nr valid of an 8 x 32 tile, row stride ldc) = sum over kp k-pairs of a (x) b.
EMBER_BF16_TARGET void micro_kernel(int64_t kp, const uint32_t* __restrict a, const uint32_t* __restrict b, float* c,
                                    int64_t ldc, int64_t mr, int64_t nr) {
  __m512 acc[kMR][2];
#pragma GCC unroll 8
  for (int64_t r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kp; ++p) {
    __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 16);
#pragma GCC unroll 8
    for (int64_t r = 0; r < kMR; ++r) {
      __m512bh ar = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[r]));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], ar, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], ar, b1);
    }
    a += kMR;
    b += kNR;
  }
  if (mr == kMR && nr == kNR) {
#pragma GCC unroll 8
    for (int64_t r = 0; r < kMR; ++r) {
      _mm512_storeu_ps(c + r * ldc, acc[r][0]);
      _mm512_storeu_ps(c + r * ldc + 16, acc[r][1]);
    }
    return;
  }
  const __mmask16 m0 = static_cast<__mmask16>(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
  const __mmask16 m1 = static_cast<__mmask16>(nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (1u << (nr - 16)) - 1);
  for (int64_t r = 0; r < mr; ++r) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, acc[r][0]);
    _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc[r][1]);
  }
}

// Loads the pair (x[0], x[1]) of adjacent bfloat16 values as one word.
inline uint32_t load_pair(const uint16_t* x) {
  uint32_t w;
  std::memcpy(&w, x, 4);
  return w;
}

// Packs k-pairs [p0, p1) of op(B) (K x N) into panels of kNR columns: word (q * kp + p) * kNR + j
// holds (B[2p][q * kNR + j], B[2p + 1][...]), zero past N and past K. The full pairs take loops
// without element-wise branches (k adjacent in memory when tb, else two rows interleaved).
EMBER_BF16_TARGET void pack_b(bool tb, int64_t N, int64_t K, const uint16_t* __restrict B, int64_t ldb, int64_t kp,
                              int64_t p0, int64_t p1, uint32_t* __restrict bp) {
  const int64_t full = std::min(p1, K / 2);  // pairs [p0, full) have both k
  const int64_t panels = (N + kNR - 1) / kNR;
  for (int64_t q = 0; q < panels; ++q) {
    const int64_t j0 = q * kNR, nr = std::min(kNR, N - j0);
    if (tb) {
      for (int64_t j = 0; j < nr; ++j) {
        const uint16_t* col = B + (j0 + j) * ldb;
        for (int64_t p = p0; p < full; ++p) bp[(q * kp + p) * kNR + j] = load_pair(col + 2 * p);
      }
    } else {
      for (int64_t p = p0; p < full; ++p) {
        const uint16_t* r0 = B + 2 * p * ldb + j0;
        const uint16_t* r1 = r0 + ldb;
        uint32_t* dst = bp + (q * kp + p) * kNR;
        for (int64_t j = 0; j < nr; ++j) dst[j] = pair(r0[j], r1[j]);
      }
    }
    for (int64_t p = p0; p < p1; ++p) {
      uint32_t* dst = bp + (q * kp + p) * kNR;
      if (p >= full)  // the last pair of an odd K: k + 1 is zero
        for (int64_t j = 0; j < nr; ++j) dst[j] = pair(at_b(B, ldb, tb, 2 * p, j0 + j), 0);
      for (int64_t j = nr; j < kNR; ++j) dst[j] = 0;
    }
  }
}

// Packs rows [i0, i0 + kMR) of op(A) (M x K) by k-pairs: word p * kMR + r holds
// (A[i0 + r][2p], A[i0 + r][2p + 1]), zero past M and past K.
EMBER_BF16_TARGET void pack_a(bool ta, int64_t M, int64_t K, const uint16_t* __restrict A, int64_t lda, int64_t i0,
                              int64_t kp, uint32_t* __restrict abuf) {
  const int64_t mr = std::min(kMR, M - i0), full = K / 2;
  if (ta) {
    for (int64_t p = 0; p < full; ++p) {
      const uint16_t* r0 = A + 2 * p * lda + i0;
      const uint16_t* r1 = r0 + lda;
      for (int64_t r = 0; r < mr; ++r) abuf[p * kMR + r] = pair(r0[r], r1[r]);
    }
  } else {
    for (int64_t r = 0; r < mr; ++r) {
      const uint16_t* row = A + (i0 + r) * lda;
      for (int64_t p = 0; p < full; ++p) abuf[p * kMR + r] = load_pair(row + 2 * p);
    }
  }
  for (int64_t p = 0; p < kp; ++p) {
    if (p >= full)
      for (int64_t r = 0; r < mr; ++r) abuf[p * kMR + r] = pair(at_a(A, lda, ta, i0 + r, 2 * p), 0);
    for (int64_t r = mr; r < kMR; ++r) abuf[p * kMR + r] = 0;
  }
}

void gemm_bf16_dpbf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda,
                      const uint16_t* B, int64_t ldb, float* C, int64_t ldc) {
  const int64_t kp = (K + 1) / 2, panels = (N + kNR - 1) / kNR;
  // Packed B: [panel][k-pair][32 columns], 64-byte aligned rows of 16 words.
  static thread_local std::vector<uint32_t> bbuf;
  const size_t bwords = static_cast<size_t>(panels * kp * kNR) + 16;
  if (bbuf.size() < bwords) bbuf.resize(bwords);
  uint32_t* bp = bbuf.data();
  bp += (16 - (reinterpret_cast<uintptr_t>(bp) / 4) % 16) % 16;  // align to 64 bytes
  // Packing B is a pass over K x N values: split over the threads too (by k-pairs).
  const int64_t pack_grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, N));
  parallel_for(0, kp, pack_grain, [&](int64_t p0, int64_t p1) { pack_b(tb, N, K, B, ldb, kp, p0, p1, bp); });
  const int64_t blocks = (M + kMR - 1) / kMR;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(1, N * K * kMR));
  parallel_for(0, blocks, grain, [&](int64_t b0, int64_t b1) {
    // Grow-only per thread: a steady training step packs A without allocating.
    static thread_local std::vector<uint32_t> abuf;
    if (abuf.size() < static_cast<size_t>(kp * kMR)) abuf.resize(static_cast<size_t>(kp * kMR));
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t i0 = blk * kMR, mr = std::min(kMR, M - i0);
      pack_a(ta, M, K, A, lda, i0, kp, abuf.data());
      for (int64_t q = 0; q < panels; ++q) {
        const int64_t j0 = q * kNR;
        micro_kernel(kp, abuf.data(), bp + q * kp * kNR, C + i0 * ldc + j0, ldc, mr, std::min(kNR, N - j0));
      }
    }
  });
}
#endif

}  // namespace

bool gemm_bf16_native() {
#if EMBER_LOWP_X86
  return cpu_has_avx512_bf16() && cpu_isa_cap().load(std::memory_order_relaxed) >= static_cast<int>(CpuIsa::Avx512);
#else
  return false;
#endif
}

void gemm_bf16_cpu(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda,
                   const uint16_t* B, int64_t ldb, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int64_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, 0.0f);
    return;
  }
#if EMBER_LOWP_X86
  if (gemm_bf16_native()) return gemm_bf16_dpbf16(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
#endif
  gemm_widened(true, trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
}

void gemm_half_cpu(bool bf16, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const uint16_t* A,
                   int64_t lda, const uint16_t* B, int64_t ldb, float beta, uint16_t* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  float* acc = scratch(2, M * N);
  if (bf16) gemm_bf16_cpu(trans_a, trans_b, M, N, K, A, lda, B, ldb, acc, N);
  else if (K <= 0) std::fill(acc, acc + M * N, 0.0f);
  else gemm_widened(false, trans_a, trans_b, M, N, K, A, lda, B, ldb, acc, N);
  // The epilogue: one rounding of the float32 result (plus C when accumulating); the rows of acc
  // are this thread's to change.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / N);
  parallel_for(0, M, grain, [&](int64_t i0, int64_t i1) {
    thread_local std::vector<float> old;
    if (beta != 0.0f && old.size() < static_cast<size_t>(N)) old.resize(static_cast<size_t>(N));
    for (int64_t i = i0; i < i1; ++i) {
      float* a = acc + i * N;
      uint16_t* c = C + i * ldc;
      if (beta != 0.0f) {
        half_to_f32_row(bf16, c, old.data(), N);
        for (int64_t j = 0; j < N; ++j) a[j] += old[static_cast<size_t>(j)];
      }
      half_from_f32_row(bf16, a, c, N);
    }
  });
}

}  // namespace ember::kernels
