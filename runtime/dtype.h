// Element types. f32 is the compute type, f64 serves gradient checks; f16/bf16/ints/bool are
// storage types that convert with to(dtype). Half types convert through float (round to nearest even).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "ember/runtime/half.h"
#include "ember/runtime/api.h"
#include "ember/runtime/error.h"

namespace ember {

enum class DType : uint8_t { f32 = 0, f64 = 1, f16 = 2, bf16 = 3, i32 = 4, i64 = 5, u8 = 6, b8 = 7 };
inline constexpr int kNumDTypes = 8;

EMBER_API size_t dtype_size(DType t);
EMBER_API const char* dtype_name(DType t);  // "f32", "f64", ... as printed in errors
EMBER_API DType dtype_from_name(std::string_view name);  // throws on unknown names
inline bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::f16 || t == DType::bf16;
}
// Types the CPU/CUDA compute kernels run on directly.
inline bool is_compute_floating(DType t) { return t == DType::f32 || t == DType::f64; }
// The dtype that binary ops on a and b compute in (PyTorch promotion for the types we have).
EMBER_API DType promote_types(DType a, DType b);

// IEEE binary16, stored as bits; converts with runtime/half.h (the CUDA kernels' code too).
struct Half {
  static constexpr kernels::HalfFormat kFormat = kernels::HalfFormat::f16;
  uint16_t bits = 0;
  Half() = default;
  Half(float f) : bits(kernels::f16_from_float(f)) {}  // NOLINT: implicit like PyTorch's c10::Half
  operator float() const { return kernels::f16_to_float(bits); }
};

// bfloat16: the upper half of a float32, rounded to nearest even.
struct BFloat16 {
  static constexpr kernels::HalfFormat kFormat = kernels::HalfFormat::bf16;
  uint16_t bits = 0;
  BFloat16() = default;
  BFloat16(float f) : bits(kernels::bf16_from_float(f)) {}  // NOLINT
  operator float() const { return kernels::bf16_to_float(bits); }
};

template <typename T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::f32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::f64; };
template <> struct DTypeOf<Half> { static constexpr DType value = DType::f16; };
template <> struct DTypeOf<BFloat16> { static constexpr DType value = DType::bf16; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::i32; };
template <> struct DTypeOf<int64_t> { static constexpr DType value = DType::i64; };
template <> struct DTypeOf<uint8_t> { static constexpr DType value = DType::u8; };
template <> struct DTypeOf<bool> { static constexpr DType value = DType::b8; };

// Calls fn(T{}) with T the C++ type of a compute dtype (f32, f64); throws for others.
template <typename Fn>
decltype(auto) dispatch_floating(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn(float{});
    case DType::f64: return fn(double{});
    default: EMBER_THROW("[", op, "] dtype ", dtype_name(t), " is not supported (expected f32 or f64)");
  }
}

// Calls fn(T{}) for every dtype.
template <typename Fn>
decltype(auto) dispatch_all(DType t, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn(float{});
    case DType::f64: return fn(double{});
    case DType::f16: return fn(Half{});
    case DType::bf16: return fn(BFloat16{});
    case DType::i32: return fn(int32_t{});
    case DType::i64: return fn(int64_t{});
    case DType::u8: return fn(uint8_t{});
    case DType::b8: return fn(bool{});
  }
  EMBER_THROW("[dtype] invalid dtype code ", static_cast<int>(t));
}

}  // namespace ember
