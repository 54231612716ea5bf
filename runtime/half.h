// IEEE binary16 and bfloat16 <-> float32, on raw 16-bit patterns, written once for the host
// (runtime/dtype.h's Half and BFloat16) and the CUDA kernels: round to nearest even, overflow to
// inf, NaN kept quiet. Every operation here is exact, so both devices give the same bits.
#pragma once
#include <cstdint>
#include <cstring>

#include "ember/runtime/host_device.h"

namespace ember::kernels {

// The two 16-bit formats; a storage type names its own as `kFormat` (kernels/common/convert.h).
enum class HalfFormat { f16, bf16 };

EMBER_HOST_DEVICE inline uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t x;
  std::memcpy(&x, &f, 4);
  return x;
#endif
}

EMBER_HOST_DEVICE inline float float_from_bits(uint32_t x) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(x);
#else
  float f;
  std::memcpy(&f, &x, 4);
  return f;
#endif
}

EMBER_HOST_DEVICE inline uint16_t f16_from_float(float f) {
  const uint32_t x = float_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return static_cast<uint16_t>(sign | (absx > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (absx < 0x38800000u) {                                              // subnormal or zero
    // In units of the smallest subnormal half (2^-24); the scaling and the remainder are exact.
    const float scaled = float_from_bits(absx) * 16777216.0f;
    uint32_t m = static_cast<uint32_t>(scaled);
    const float rem = scaled - static_cast<float>(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
    return static_cast<uint16_t>(sign | m);
  }
  const uint32_t mant = absx & 0x7fffffu;
  const uint32_t exp = (absx >> 23) - 127 + 15;
  uint32_t h = (exp << 10) | (mant >> 13);
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

EMBER_HOST_DEVICE inline float f16_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) return float_from_bits(float_bits(static_cast<float>(mant) / 16777216.0f) | sign);  // exact
  if (exp == 31) return float_from_bits(sign | 0x7f800000u | (mant << 13));
  return float_from_bits(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

// bfloat16 is the upper half of a float32; a NaN keeps its payload's top bits and is made quiet.
EMBER_HOST_DEVICE inline uint16_t bf16_from_float(float f) {
  uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

EMBER_HOST_DEVICE inline float bf16_to_float(uint16_t b) { return float_from_bits(static_cast<uint32_t>(b) << 16); }

}  // namespace ember::kernels
