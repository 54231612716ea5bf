// Element conversion between dtypes, the rule every copy and fill follows on both devices: half
// types go through float, bool is float(v) != 0, everything else is a static_cast. A 16-bit float
// storage type (runtime's Half/BFloat16, the CUDA kernels' cu::f16/cu::bf16) holds `uint16_t bits`
// and names its format in `static constexpr HalfFormat kFormat`.
#pragma once
#include <cstdint>
#include <type_traits>

#include "ember/runtime/half.h"
#include "ember/runtime/host_device.h"

namespace ember::kernels {

template <typename T, typename = void>
struct IsHalf : std::false_type {};
template <typename T>
struct IsHalf<T, std::void_t<decltype(T::kFormat)>> : std::true_type {};
template <typename T>
inline constexpr bool is_half_v = IsHalf<T>::value;

template <typename H>
EMBER_HOST_DEVICE inline float half_to_float(H v) {
  if constexpr (H::kFormat == HalfFormat::f16) return f16_to_float(v.bits);
  else return bf16_to_float(v.bits);
}

template <typename H>
EMBER_HOST_DEVICE inline H half_from_float(float f) {
  H h{};
  if constexpr (H::kFormat == HalfFormat::f16) h.bits = f16_from_float(f);
  else h.bits = bf16_from_float(f);
  return h;
}

// D from S.
template <typename D, typename S>
EMBER_HOST_DEVICE inline D convert(S v) {
  if constexpr (std::is_same_v<D, S>) {
    return v;
  } else if constexpr (is_half_v<S>) {
    return convert<D>(half_to_float(v));
  } else if constexpr (std::is_same_v<D, bool>) {
    return static_cast<float>(v) != 0.0f;
  } else if constexpr (is_half_v<D>) {
    return half_from_float<D>(static_cast<float>(v));
  } else {
    return static_cast<D>(v);
  }
}

}  // namespace ember::kernels
