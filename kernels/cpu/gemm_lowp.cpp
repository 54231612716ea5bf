// bfloat16 GEMM with float32 accumulation (see gemm_lowp.h).
//
// The AVX512-BF16 path: B is packed once per call into panels of 32 columns, each k-pair of a
// column as one 32-bit word (B[k][j], B[k+1][j]), so that one 512-bit load holds 16 columns of a
// k-pair; A is packed per block of 8 rows into k-pairs likewise, unless it is stored row-major with
// an even K (its pairs are adjacent words already: the kernel reads them from the rows). The
// micro-kernel keeps an 8 x 32 float32 tile in 16 registers and, per k-pair, broadcasts each row's
// pair and issues vdpbf16ps against the two column vectors; it writes the tile in float32 or
// rounds it to bfloat16 itself. An odd K is padded with a zero k. Threads split the packing of B
// by k-pairs and the row blocks.
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
#define EMBER_BF16_TARGET EMBER_TARGET_AVX512_BF16

// GCC 12's intrinsics headers start some conversions and extracts from an undefined register,
// which -Wmaybe-uninitialized reports (a false positive).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
// Where a GEMM's result goes: float32 rows (f32), or bfloat16 rows (bf16) rounded once from the
// float32 sum, plus the old bfloat16 value of C first when accumulate (bmm's beta = 1), or plus
// bias[j] (bfloat16, the same bits as copying it into C and accumulating).
struct Dest {
  float* f32 = nullptr;
  uint16_t* bf16 = nullptr;
  bool accumulate = false;
  int64_t ldc = 0;
  const uint16_t* bias = nullptr;
};

// bfloat16 bits of v rounded to nearest even, a NaN made quiet with its top bits kept: the same
// bits as bf16_from_float and half_from_f32_row.
EMBER_BF16_TARGET inline __m256i round_to_bf16(__m512 f) {
  const __m512i v = _mm512_castps_si512(f);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(v, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(v, _mm512_set1_epi32(0x7fff)), odd), 16);
  const __mmask16 nan =
      _mm512_cmpgt_epu32_mask(_mm512_and_si512(v, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(v, 16), _mm512_set1_epi32(0x40)));
  return _mm512_cvtepi32_epi16(r);
}

// The 16 columns of one accumulator row (mask m of them valid) into C at offset off (row * ldc +
// column j).
EMBER_BF16_TARGET inline void store_row(const Dest& d, int64_t off, int64_t j, __mmask16 m, __m512 acc) {
  if (d.f32) {
    _mm512_mask_storeu_ps(d.f32 + off, m, acc);
    return;
  }
  uint16_t* c = d.bf16 + off;
  const uint16_t* add = d.bias ? d.bias + j : d.accumulate ? c : nullptr;
  if (add) {
    const __m256i old = _mm256_maskz_loadu_epi16(m, add);
    acc = _mm512_add_ps(acc, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(old), 16)));
  }
  _mm256_mask_storeu_epi16(c, m, round_to_bf16(acc));
}

// Loads the pair (x[0], x[1]) of adjacent bfloat16 values as one word.
inline uint32_t load_pair(const uint16_t* x) {
  uint32_t w;
  std::memcpy(&w, x, 4);
  return w;
}

// Where the micro-kernel reads A's k-pairs: packed (word p * kMR + r), or, for A stored row-major
// with an even K, straight from the 8 rows (pair p of row r at rows[r] + 2p), which saves packing
// A: the pairs of a row are adjacent already.
struct APanel {
  const uint32_t* packed = nullptr;
  const uint16_t* rows[kMR] = {};
};

// C tile at (i0, j0) (mr x nr valid of an 8 x 32 tile) = sum over kp k-pairs of a (x) b, written
// as d says: the epilogue of the float32 accumulators happens here, while the tile is in registers.
template <bool kPacked>
EMBER_BF16_TARGET void micro_kernel(int64_t kp, const APanel& ap, const uint32_t* __restrict b, const Dest& d,
                                    int64_t i0, int64_t j0, int64_t mr, int64_t nr) {
  __m512 acc[kMR][2];
#pragma GCC unroll 8
  for (int64_t r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  const uint32_t* a = ap.packed;
  const uint16_t* rows[kMR];
#pragma GCC unroll 8
  for (int64_t r = 0; r < kMR; ++r) rows[r] = ap.rows[r];
  for (int64_t p = 0; p < kp; ++p) {
    __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 16);
#pragma GCC unroll 8
    for (int64_t r = 0; r < kMR; ++r) {
      const uint32_t w = kPacked ? a[r] : load_pair(rows[r] + 2 * p);
      __m512bh ar = (__m512bh)_mm512_set1_epi32(static_cast<int>(w));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], ar, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], ar, b1);
    }
    if (kPacked) a += kMR;
    b += kNR;
  }
  if (d.f32 && mr == kMR && nr == kNR) {
    float* c = d.f32 + i0 * d.ldc + j0;
#pragma GCC unroll 8
    for (int64_t r = 0; r < kMR; ++r) {
      _mm512_storeu_ps(c + r * d.ldc, acc[r][0]);
      _mm512_storeu_ps(c + r * d.ldc + 16, acc[r][1]);
    }
    return;
  }
  const __mmask16 m0 = static_cast<__mmask16>(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
  const __mmask16 m1 = static_cast<__mmask16>(nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (1u << (nr - 16)) - 1);
  for (int64_t r = 0; r < mr; ++r) {
    const int64_t off = (i0 + r) * d.ldc + j0;
    store_row(d, off, j0, m0, acc[r][0]);
    if (m1) store_row(d, off + 16, j0 + 16, m1, acc[r][1]);
  }
}

// 16 words (the pairs of 16 columns) from two rows of bfloat16 values: word j = (r0[j], r1[j]).
EMBER_BF16_TARGET inline __m512i interleave_rows(const uint16_t* r0, const uint16_t* r1, __mmask16 m) {
  const __m512i lo = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, r0));
  const __m512i hi = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, r1));
  return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

// dst[c * ldd + r] = word c of source row r, for a 16 x 16 block of 32-bit words: source row r
// starts at src + r * lds (in bfloat16 values, so any row stride works).
EMBER_BF16_TARGET void transpose_16x16(const uint16_t* src, int64_t lds, uint32_t* dst, int64_t ldd) {
  __m512i r[16], t[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_si512(src + i * lds);
  // t: pairs of rows interleaved by words, then by word pairs: u[4g + s] lane l holds column
  // 4l + s of rows 4g .. 4g + 3.
#pragma GCC unroll 8
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {
    const __m512i* q = t + 4 * g;
    r[4 * g + 0] = _mm512_unpacklo_epi64(q[0], q[2]);
    r[4 * g + 1] = _mm512_unpackhi_epi64(q[0], q[2]);
    r[4 * g + 2] = _mm512_unpacklo_epi64(q[1], q[3]);
    r[4 * g + 3] = _mm512_unpackhi_epi64(q[1], q[3]);
  }
  // Column 4l + s gathers lane l of r[s], r[4 + s], r[8 + s], r[12 + s].
#pragma GCC unroll 4
  for (int s = 0; s < 4; ++s) {
    const __m512i v0 = _mm512_shuffle_i32x4(r[s], r[4 + s], 0x88), w0 = _mm512_shuffle_i32x4(r[s], r[4 + s], 0xDD);
    const __m512i v1 = _mm512_shuffle_i32x4(r[8 + s], r[12 + s], 0x88);
    const __m512i w1 = _mm512_shuffle_i32x4(r[8 + s], r[12 + s], 0xDD);
    _mm512_storeu_si512(dst + (0 + s) * ldd, _mm512_shuffle_i32x4(v0, v1, 0x88));
    _mm512_storeu_si512(dst + (8 + s) * ldd, _mm512_shuffle_i32x4(v0, v1, 0xDD));
    _mm512_storeu_si512(dst + (4 + s) * ldd, _mm512_shuffle_i32x4(w0, w1, 0x88));
    _mm512_storeu_si512(dst + (12 + s) * ldd, _mm512_shuffle_i32x4(w0, w1, 0xDD));
  }
}

// Packs k-pairs [p0, p1) of op(B) (K x N) into panels of kNR columns: word (q * kp + p) * kNR + j
// holds (B[2p][q * kNR + j], B[2p + 1][...]), zero past N and past K. When B is stored transposed
// the pairs of a column are adjacent words, and blocks of 16 x 16 words are transposed in
// registers; otherwise two rows are interleaved 16 columns at a time.
EMBER_BF16_TARGET void pack_b(bool tb, int64_t N, int64_t K, const uint16_t* __restrict B, int64_t ldb, int64_t kp,
                              int64_t p0, int64_t p1, uint32_t* __restrict bp) {
  const int64_t full = std::max(p0, std::min(p1, K / 2));  // pairs [p0, full) have both k
  const int64_t panels = (N + kNR - 1) / kNR;
  for (int64_t q = 0; q < panels; ++q) {
    const int64_t j0 = q * kNR, nr = std::min(kNR, N - j0);
    uint32_t* panel = bp + q * kp * kNR;
    if (tb) {
      int64_t p = p0;
      for (; p + 16 <= full; p += 16)
        for (int64_t j = 0; j + 16 <= nr; j += 16)
          transpose_16x16(B + (j0 + j) * ldb + 2 * p, ldb, panel + p * kNR + j, kNR);
      const int64_t jv = nr / 16 * 16;  // columns done above for pairs [p0, p)
      for (int64_t j = 0; j < nr; ++j) {
        const uint16_t* col = B + (j0 + j) * ldb;
        for (int64_t pp = j < jv ? p : p0; pp < full; ++pp) panel[pp * kNR + j] = load_pair(col + 2 * pp);
      }
    } else {
      const __mmask16 m0 = static_cast<__mmask16>(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
      const __mmask16 m1 = static_cast<__mmask16>(nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (1u << (nr - 16)) - 1);
      for (int64_t p = p0; p < full; ++p) {
        const uint16_t* r0 = B + 2 * p * ldb + j0;
        uint32_t* dst = panel + p * kNR;
        _mm512_store_si512(dst, interleave_rows(r0, r0 + ldb, m0));
        _mm512_store_si512(dst + 16, interleave_rows(r0 + 16, r0 + 16 + ldb, m1));
      }
    }
    for (int64_t p = p0; p < p1; ++p) {
      uint32_t* dst = panel + p * kNR;
      if (p >= full)  // the last pair of an odd K: k + 1 is zero
        for (int64_t j = 0; j < nr; ++j) dst[j] = pair(at_b(B, ldb, tb, 2 * p, j0 + j), 0);
      for (int64_t j = nr; j < kNR; ++j) dst[j] = 0;
    }
  }
}

// Packs rows [i0, i0 + kMR) of op(A) (M x K) by k-pairs: word p * kMR + r holds
// (A[i0 + r][2p], A[i0 + r][2p + 1]), zero past M and past K. Stored transposed, two rows of A
// give the 8 words of a pair at once; stored as is, 8 x 16 blocks of words are transposed.
EMBER_BF16_TARGET void pack_a(bool ta, int64_t M, int64_t K, const uint16_t* __restrict A, int64_t lda, int64_t i0,
                              int64_t kp, uint32_t* __restrict abuf) {
  const int64_t mr = std::min(kMR, M - i0), full = K / 2;
  if (ta) {
    const __mmask8 m = static_cast<__mmask8>((1u << mr) - 1);
    for (int64_t p = 0; p < full; ++p) {
      const uint16_t* r0 = A + 2 * p * lda + i0;
      const __m256i lo = _mm256_cvtepu16_epi32(_mm_maskz_loadu_epi16(m, r0));
      const __m256i hi = _mm256_cvtepu16_epi32(_mm_maskz_loadu_epi16(m, r0 + lda));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(abuf + p * kMR), _mm256_or_si256(lo, _mm256_slli_epi32(hi, 16)));
    }
  } else {
    int64_t p = 0;
    if (mr == kMR) {
      for (; p + 16 <= full; p += 16) {
        // Rows r (16 words each) -> u[4h + s] lane l = word 4l + s of rows 4h .. 4h + 3.
        __m512i x[8], t[8], u[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; ++r) x[r] = _mm512_loadu_si512(A + (i0 + r) * lda + 2 * p);
#pragma GCC unroll 4
        for (int r = 0; r < 8; r += 2) {
          t[r] = _mm512_unpacklo_epi32(x[r], x[r + 1]);
          t[r + 1] = _mm512_unpackhi_epi32(x[r], x[r + 1]);
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          const __m512i* q = t + 4 * h;
          u[4 * h + 0] = _mm512_unpacklo_epi64(q[0], q[2]);
          u[4 * h + 1] = _mm512_unpackhi_epi64(q[0], q[2]);
          u[4 * h + 2] = _mm512_unpacklo_epi64(q[1], q[3]);
          u[4 * h + 3] = _mm512_unpackhi_epi64(q[1], q[3]);
        }
        uint32_t* dst = abuf + p * kMR;
#pragma GCC unroll 4
        for (int s = 0; s < 4; ++s) {
          // Pair 4l + s: rows 0-3 from lane l of u[s], rows 4-7 from lane l of u[4 + s].
          _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (0 + s) * kMR), _mm512_extracti32x4_epi32(u[s], 0));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (0 + s) * kMR + 4), _mm512_extracti32x4_epi32(u[4 + s], 0));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (4 + s) * kMR), _mm512_extracti32x4_epi32(u[s], 1));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (4 + s) * kMR + 4), _mm512_extracti32x4_epi32(u[4 + s], 1));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (8 + s) * kMR), _mm512_extracti32x4_epi32(u[s], 2));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (8 + s) * kMR + 4), _mm512_extracti32x4_epi32(u[4 + s], 2));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (12 + s) * kMR), _mm512_extracti32x4_epi32(u[s], 3));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (12 + s) * kMR + 4), _mm512_extracti32x4_epi32(u[4 + s], 3));
        }
      }
    }
    for (int64_t r = 0; r < mr; ++r) {
      const uint16_t* row = A + (i0 + r) * lda;
      for (int64_t pp = p; pp < full; ++pp) abuf[pp * kMR + r] = load_pair(row + 2 * pp);
    }
  }
  for (int64_t p = 0; p < kp; ++p) {
    if (p >= full)
      for (int64_t r = 0; r < mr; ++r) abuf[p * kMR + r] = pair(at_a(A, lda, ta, i0 + r, 2 * p), 0);
    for (int64_t r = mr; r < kMR; ++r) abuf[p * kMR + r] = 0;
  }
}

void gemm_bf16_dpbf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda,
                      const uint16_t* B, int64_t ldb, const Dest& d) {
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
  const bool direct_a = !ta && K % 2 == 0;
  parallel_for(0, blocks, grain, [&](int64_t b0, int64_t b1) {
    // Grow-only per thread: a steady training step packs A without allocating.
    static thread_local std::vector<uint32_t> abuf;
    if (!direct_a && abuf.size() < static_cast<size_t>(kp * kMR)) abuf.resize(static_cast<size_t>(kp * kMR));
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t i0 = blk * kMR, mr = std::min(kMR, M - i0);
      APanel ap;
      if (direct_a) {
        // Rows past M read row i0 again; their sums are not stored.
        for (int64_t r = 0; r < kMR; ++r) ap.rows[r] = A + (i0 + (r < mr ? r : 0)) * lda;
      } else {
        pack_a(ta, M, K, A, lda, i0, kp, abuf.data());
        ap.packed = abuf.data();
      }
      for (int64_t q = 0; q < panels; ++q) {
        const int64_t j0 = q * kNR, nr = std::min(kNR, N - j0);
        if (direct_a) micro_kernel<false>(kp, ap, bp + q * kp * kNR, d, i0, j0, mr, nr);
        else micro_kernel<true>(kp, ap, bp + q * kp * kNR, d, i0, j0, mr, nr);
      }
    }
  });
}
#pragma GCC diagnostic pop
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
  if (gemm_bf16_native()) return gemm_bf16_dpbf16(trans_a, trans_b, M, N, K, A, lda, B, ldb, Dest{C, nullptr, false, ldc});
#endif
  gemm_widened(true, trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
}

void gemm_half_cpu(bool bf16, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const uint16_t* A,
                   int64_t lda, const uint16_t* B, int64_t ldb, float beta, uint16_t* C, int64_t ldc,
                   const uint16_t* bias) {
  if (M <= 0 || N <= 0) return;
#if EMBER_LOWP_X86
  if (bf16 && K > 0 && gemm_bf16_native())  // rounded to bf16 in the micro-kernel's epilogue
    return gemm_bf16_dpbf16(trans_a, trans_b, M, N, K, A, lda, B, ldb,
                            Dest{nullptr, C, !bias && beta != 0.0f, ldc, bias});
#endif
  float* acc = scratch(2, M * N);
  if (bf16) gemm_bf16_cpu(trans_a, trans_b, M, N, K, A, lda, B, ldb, acc, N);
  else if (K <= 0) std::fill(acc, acc + M * N, 0.0f);
  else gemm_widened(false, trans_a, trans_b, M, N, K, A, lda, B, ldb, acc, N);
  // The epilogue: one rounding of the float32 result (plus C when accumulating); the rows of acc
  // are this thread's to change.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / N);
  parallel_for(0, M, grain, [&](int64_t i0, int64_t i1) {
    thread_local std::vector<float> old;
    const bool add = bias || beta != 0.0f;
    if (add && old.size() < static_cast<size_t>(N)) old.resize(static_cast<size_t>(N));
    for (int64_t i = i0; i < i1; ++i) {
      float* a = acc + i * N;
      uint16_t* c = C + i * ldc;
      if (add) {
        half_to_f32_row(bf16, bias ? bias : c, old.data(), N);
        for (int64_t j = 0; j < N; ++j) a[j] += old[static_cast<size_t>(j)];
      }
      half_from_f32_row(bf16, a, c, N);
    }
  });
}

}  // namespace ember::kernels
