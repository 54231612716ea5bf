// Bulk u8 -> f32 conversion with a divisor: how image datasets turn stored pixels into [0, 1]
// floats. One loop compiled per ISA variant; IEEE division gives the same bits in every variant.
// Also the f16/bf16 <-> f32 runs of half_rows.h.
#include "kernels/cpu/half_rows.h"
#include "kernels/cpu/isa.h"
#include "kernels/kernels.h"
#include "ember/runtime/half.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define EMBER_F16C_X86 1
#else
#define EMBER_F16C_X86 0
#endif

namespace ember::kernels {
namespace {

[[gnu::always_inline]] inline void u8_to_f32_divided_loop(const uint8_t* __restrict src, float* __restrict dst,
                                                          int64_t n, float divisor) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]) / divisor;
}

}  // namespace

void u8_to_f32_divided_cpu(const uint8_t* src, float* dst, int64_t n, float divisor) {
  run_best_isa([&] EMBER_INLINE_LAMBDA { u8_to_f32_divided_loop(src, dst, n, divisor); });
}

}  // namespace ember::kernels

// --- f16/bf16 <-> f32 runs (half_rows.h) ------------------------------------------------------

namespace ember::kernels {
namespace {

#if EMBER_F16C_X86
// GCC 12 reports the intrinsics' own _mm512_undefined_* placeholders as maybe-uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
// 16 values per step; the tail goes through the scalar functions.
EMBER_TARGET_AVX512 void f16_from_f32_avx512(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  const __m512i sign_mask = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    if (nan) {
      // sign | 0x7e00, as f16_from_float: the sign bit moved down to bit 15.
      const __m512i s = _mm512_srli_epi32(_mm512_and_si512(_mm512_castps_si512(v), sign_mask), 16);
      const __m256i q = _mm512_cvtepi32_epi16(_mm512_or_si512(s, _mm512_set1_epi32(0x7e00)));
      h = _mm256_mask_blend_epi16(nan, h, q);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), h);
  }
  for (; i < n; ++i) y[i] = f16_from_float(x[i]);
}

EMBER_TARGET_AVX512 void f16_to_f32_avx512(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    __m512 v = _mm512_cvtph_ps(h);
    // A NaN keeps its payload as given (the instruction would quiet a signalling one).
    const __m512i w = _mm512_cvtepu16_epi32(h);
    const __m512i mant = _mm512_and_si512(w, _mm512_set1_epi32(0x3ff));
    const __mmask16 nan = _mm512_cmpeq_epi32_mask(_mm512_and_si512(w, _mm512_set1_epi32(0x7c00)),
                                                  _mm512_set1_epi32(0x7c00)) &
                          _mm512_cmpneq_epi32_mask(mant, _mm512_setzero_si512());
    if (nan) {
      const __m512i bits = _mm512_or_si512(
          _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(w, _mm512_set1_epi32(0x8000)), 16),
                          _mm512_set1_epi32(0x7f800000)),
          _mm512_slli_epi32(mant, 13));
      v = _mm512_mask_blend_ps(nan, v, _mm512_castsi512_ps(bits));
    }
    _mm512_storeu_ps(y + i, v);
  }
  for (; i < n; ++i) y[i] = f16_to_float(x[i]);
}

EMBER_TARGET_AVX512 void bf16_from_f32_avx512(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i v = _mm512_loadu_si512(x + i);
    // Round to nearest even on the bits: v + 0x7fff + (bit 16 of v), the upper half kept.
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(v, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(v, _mm512_set1_epi32(0x7fff)), odd), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(v, _mm512_set1_epi32(0x7fffffff)),
                                                  _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(v, 16), _mm512_set1_epi32(0x40)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), _mm512_cvtepi32_epi16(r));
  }
  for (; i < n; ++i) y[i] = bf16_from_float(x[i]);
}

// With AVX512-BF16: vcvtne2ps2bf16 rounds 32 values to nearest even and quiets NaNs keeping their
// top bits, exactly as bf16_from_float, but flushes subnormal inputs to signed zero; a block of 32
// holding a subnormal goes through the bit operations above instead.
EMBER_TARGET_AVX512_BF16 void bf16_from_f32_avx512_bf16(const float* x, uint16_t* y, int64_t n) {
  const __m512i exponent = _mm512_set1_epi32(0x7f800000), mantissa = _mm512_set1_epi32(0x007fffff);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512i a = _mm512_loadu_si512(x + i), b = _mm512_loadu_si512(x + i + 16);
    const __mmask16 sub_a = _mm512_testn_epi32_mask(a, exponent) & _mm512_test_epi32_mask(a, mantissa);
    const __mmask16 sub_b = _mm512_testn_epi32_mask(b, exponent) & _mm512_test_epi32_mask(b, mantissa);
    if (sub_a | sub_b) {
      bf16_from_f32_avx512(x + i, y + i, 32);
      continue;
    }
    // b's values go to the upper half of the result, a's to the lower.
    const __m512bh r = _mm512_cvtne2ps_pbh(_mm512_castsi512_ps(b), _mm512_castsi512_ps(a));
    _mm512_storeu_si512(y + i, reinterpret_cast<const __m512i&>(r));
  }
  bf16_from_f32_avx512(x + i, y + i, n - i);
}

EMBER_TARGET_AVX512 void bf16_to_f32_avx512(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    _mm512_storeu_si512(y + i, _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  for (; i < n; ++i) y[i] = bf16_to_float(x[i]);
}
#pragma GCC diagnostic pop
#endif

}  // namespace

void half_from_f32_row(bool bf16, const float* x, uint16_t* y, int64_t n) {
#if EMBER_F16C_X86
  if (cpu_isa() == CpuIsa::Avx512) {
    if (!bf16) return f16_from_f32_avx512(x, y, n);
    return cpu_has_avx512_bf16() ? bf16_from_f32_avx512_bf16(x, y, n) : bf16_from_f32_avx512(x, y, n);
  }
#endif
  if (bf16) {
    for (int64_t i = 0; i < n; ++i) y[i] = bf16_from_float(x[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = f16_from_float(x[i]);
  }
}

void half_to_f32_row(bool bf16, const uint16_t* x, float* y, int64_t n) {
#if EMBER_F16C_X86
  if (cpu_isa() == CpuIsa::Avx512) return bf16 ? bf16_to_f32_avx512(x, y, n) : f16_to_f32_avx512(x, y, n);
#endif
  if (bf16) {
    for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_float(x[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = f16_to_float(x[i]);
  }
}

}  // namespace ember::kernels
