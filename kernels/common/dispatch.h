// Host-side dispatch that the CPU loops and the CUDA launchers share: a runtime dtype to a C++
// element type, and a runtime op to a template argument (so the functors' switch folds away in
// the kernels). Each helper throws the kernels' usual error for a dtype it does not take.
#pragma once
#include <cstdint>
#include <type_traits>

#include "kernels/common/functors.h"
#include "ember/runtime/dtype.h"
#include "ember/runtime/error.h"

namespace ember::kernels {

// Calls fn(T{}) with T the C++ type of an arithmetic dtype (f32, f64, i32, i64).
template <typename Fn>
decltype(auto) dispatch_arith(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn(float{});
    case DType::f64: return fn(double{});
    case DType::i32: return fn(int32_t{});
    case DType::i64: return fn(int64_t{});
    default: EMBER_THROW("[", op, "] dtype ", dtype_name(t), " is not supported (expected f32, f64, i32 or i64)");
  }
}

// Calls fn(W{}) with W an unsigned word of the dtype's size (kernels that only move bits).
template <typename Fn>
decltype(auto) dispatch_by_size(DType t, Fn&& fn) {
  switch (dtype_size(t)) {
    case 1: return fn(uint8_t{});
    case 2: return fn(uint16_t{});
    case 4: return fn(uint32_t{});
    case 8: return fn(uint64_t{});
  }
  EMBER_THROW("[dtype] unexpected element size ", dtype_size(t));
}

// Calls fn(std::integral_constant<UnaryOp, op>{}); the kernel reads the op as decltype(k)::value.
template <typename Fn>
decltype(auto) dispatch_unary_op(UnaryOp op, Fn&& fn) {
  switch (op) {
#define EMBER_UNARY_CASE(name) \
  case UnaryOp::name: return fn(std::integral_constant<UnaryOp, UnaryOp::name>{});
    EMBER_FOR_EACH_UNARY_OP(EMBER_UNARY_CASE)
#undef EMBER_UNARY_CASE
  }
  EMBER_THROW("[unary] invalid op code ", static_cast<int>(op));
}

template <typename Fn>
decltype(auto) dispatch_binary_op(BinaryOp op, Fn&& fn) {
  switch (op) {
#define EMBER_BINARY_CASE(name) \
  case BinaryOp::name: return fn(std::integral_constant<BinaryOp, BinaryOp::name>{});
    EMBER_FOR_EACH_BINARY_OP(EMBER_BINARY_CASE)
#undef EMBER_BINARY_CASE
  }
  EMBER_THROW("[binary] invalid op code ", static_cast<int>(op));
}

}  // namespace ember::kernels
