// Device-side element types and conversions that match the CPU bit for bit: f16/bf16 as raw bits
// with the same round-to-nearest-even code as runtime/dtype.h, conversions with the CPU kernels'
// rules (kernels/cpu/loops.h: half types through float, bool as float(v) != 0), and the Philox4x32-10
// block of runtime/rng.cpp. Includes nothing from Ember.
#pragma once
#include <cstdint>
#include <type_traits>

namespace ember::cu {

// Storage of an IEEE binary16 / bfloat16 value (bits only; arithmetic goes through float).
struct f16 {
  uint16_t bits;
};
struct bf16 {
  uint16_t bits;
};

__device__ inline uint16_t f16_from_float(float f) {
  uint32_t x = __float_as_uint(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return static_cast<uint16_t>(sign | (absx > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (absx < 0x38800000u) {  // subnormal or zero
    float scaled = __fmul_rn(__uint_as_float(absx), 16777216.0f);
    uint32_t m = static_cast<uint32_t>(scaled);
    float rem = __fsub_rn(scaled, static_cast<float>(m));
    if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
    return static_cast<uint16_t>(sign | m);
  }
  uint32_t mant = absx & 0x7fffffu;
  uint32_t exp = (absx >> 23) - 127 + 15;
  uint32_t h = (exp << 10) | (mant >> 13);
  uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

__device__ inline float f16_to_float(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) return __uint_as_float(__float_as_uint(__fdiv_rn(static_cast<float>(mant), 16777216.0f)) | sign);
  if (exp == 31) return __uint_as_float(sign | 0x7f800000u | (mant << 13));
  return __uint_as_float(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

__device__ inline uint16_t bf16_from_float(float f) {
  uint32_t x = __float_as_uint(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

__device__ inline float bf16_to_float(uint16_t b) { return __uint_as_float(static_cast<uint32_t>(b) << 16); }

template <typename T>
inline constexpr bool is_half_v = std::is_same_v<T, f16> || std::is_same_v<T, bf16>;

template <typename T>
__device__ inline float half_to_float(T v) {
  if constexpr (std::is_same_v<T, f16>) return f16_to_float(v.bits);
  else return bf16_to_float(v.bits);
}

// D from S with the CPU's conversion rules (kernels/cpu/loops.h convert<D>(S)).
template <typename D, typename S>
__device__ inline D convert(S v) {
  if constexpr (std::is_same_v<D, S>) {
    return v;
  } else if constexpr (is_half_v<S>) {
    return convert<D>(half_to_float(v));
  } else if constexpr (std::is_same_v<D, bool>) {
    return static_cast<float>(v) != 0.0f;
  } else if constexpr (std::is_same_v<D, f16>) {
    return D{f16_from_float(static_cast<float>(v))};
  } else if constexpr (std::is_same_v<D, bf16>) {
    return D{bf16_from_float(static_cast<float>(v))};
  } else {
    return static_cast<D>(v);
  }
}

// One Philox4x32-10 block for a 64-bit counter under a 64-bit key (runtime/rng.cpp's philox4x32).
__device__ inline void philox4x32(uint64_t counter, uint64_t key, uint32_t out[4]) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0 = __umulhi(kM0, c0), lo0 = kM0 * c0;
    uint32_t hi1 = __umulhi(kM1, c2), lo1 = kM1 * c2;
    uint32_t n0 = hi1 ^ c1 ^ k0;
    uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kW0;
    k1 += kW1;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

}  // namespace ember::cu
