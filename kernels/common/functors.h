// Scalar math shared by the CPU loops and the CUDA launchers ("math once"). Half types compute
// in float; f64 in double.
#pragma once
#include <cmath>

#include "ember/runtime/host_device.h"

namespace ember::kernels {

// Every op, listed once: the enums below and kernels/common/dispatch.h's switches (which turn the
// runtime op into a template argument) expand these lists.
#define EMBER_FOR_EACH_UNARY_OP(X)                                                                   \
  X(Neg) X(Exp) X(Log) X(Sqrt) X(Abs) X(Sign) X(Relu) X(LeakyRelu) X(Sigmoid) X(Tanh) X(Gelu) X(GeluTanh) \
  X(Clamp)         /* a = min, b = max (either may be +-inf) */                                     \
  X(AddScalar)     /* x + a */                                                                      \
  X(MulScalar)     /* x * a */                                                                      \
  X(RSubScalar)    /* a - x */                                                                      \
  X(RDivScalar)    /* a / x */                                                                      \
  X(PowScalar)     /* x ^ a */                                                                      \
  X(Square) X(Reciprocal)                                                                           \
  /* derivatives used by backward formulas (take x, not the output) */                              \
  X(ReluGrad)      /* x > 0 ? 1 : 0 */                                                              \
  X(LeakyReluGrad) /* x > 0 ? 1 : a */                                                              \
  X(GeluGrad)      /* d gelu(x)/dx (erf form) */                                                    \
  X(GeluTanhGrad)  /* d gelu_tanh(x)/dx */                                                          \
  X(ClampMask)     /* a <= x <= b ? 1 : 0 */
#define EMBER_FOR_EACH_BINARY_OP(X)                                                                  \
  X(Add) X(Sub) X(Mul) X(Div) X(Pow) X(Max) X(Min) X(Eq) X(Gt) X(Lt) X(Ge) X(Le)                     \
  /* backward of an activation from its output y, one pass (x = the output's gradient g) */          \
  X(ReluBackward)    /* y <= 0 ? 0 : g (torch's threshold_backward) */                                \
  X(SigmoidBackward) /* g * (1 - y) * y (torch's sigmoid_backward) */                                \
  X(TanhBackward)    /* g * (1 - y * y) (torch's tanh_backward) */

#define EMBER_ENUM_ENTRY(name) name,
enum class UnaryOp : int { EMBER_FOR_EACH_UNARY_OP(EMBER_ENUM_ENTRY) };
enum class BinaryOp : int { EMBER_FOR_EACH_BINARY_OP(EMBER_ENUM_ENTRY) };
#undef EMBER_ENUM_ENTRY

// The unary ops integer tensors (counters, indices) take: the exact ones.
EMBER_HOST_DEVICE constexpr bool is_integer_unary_op(UnaryOp op) {
  return op == UnaryOp::AddScalar || op == UnaryOp::MulScalar || op == UnaryOp::Neg || op == UnaryOp::Abs ||
         op == UnaryOp::Sign;
}

template <typename T>
EMBER_HOST_DEVICE inline T unary_apply(UnaryOp op, T x, T a, T b) {
  constexpr T kSqrt1_2 = T(0.70710678118654752440);
  constexpr T kSqrt2OverPi = T(0.79788456080286535588);
  constexpr T kInvSqrt2Pi = T(0.39894228040143267794);
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Log: return std::log(x);
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Abs: return std::fabs(x);
    case UnaryOp::Sign: return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
    case UnaryOp::Relu: return x < T(0) ? T(0) : x;  // NaN propagates, as torch
    case UnaryOp::LeakyRelu: return x < T(0) ? x * a : x;
    case UnaryOp::Sigmoid: return T(1) / (T(1) + std::exp(-x));
    case UnaryOp::Tanh: return std::tanh(x);
    case UnaryOp::Gelu: return T(0.5) * x * (T(1) + std::erf(x * kSqrt1_2));
    case UnaryOp::GeluTanh: {
      T inner = kSqrt2OverPi * (x + T(0.044715) * x * x * x);
      return T(0.5) * x * (T(1) + std::tanh(inner));
    }
    case UnaryOp::Clamp: return x < a ? a : (x > b ? b : x);
    case UnaryOp::AddScalar: return x + a;
    case UnaryOp::MulScalar: return x * a;
    case UnaryOp::RSubScalar: return a - x;
    case UnaryOp::RDivScalar: return a / x;
    case UnaryOp::PowScalar: return a == T(2) ? x * x : std::pow(x, a);
    case UnaryOp::Square: return x * x;
    case UnaryOp::Reciprocal: return T(1) / x;
    case UnaryOp::ReluGrad: return x > T(0) ? T(1) : T(0);
    case UnaryOp::LeakyReluGrad: return x > T(0) ? T(1) : a;
    case UnaryOp::GeluGrad: {
      T cdf = T(0.5) * (T(1) + std::erf(x * kSqrt1_2));
      T pdf = kInvSqrt2Pi * std::exp(T(-0.5) * x * x);
      return cdf + x * pdf;
    }
    case UnaryOp::GeluTanhGrad: {
      T x3 = x * x * x;
      T inner = kSqrt2OverPi * (x + T(0.044715) * x3);
      T th = std::tanh(inner);
      T dinner = kSqrt2OverPi * (T(1) + T(3) * T(0.044715) * x * x);
      return T(0.5) * (T(1) + th) + T(0.5) * x * (T(1) - th * th) * dinner;
    }
    case UnaryOp::ClampMask: return (x >= a && x <= b) ? T(1) : T(0);
  }
  return x;
}

template <typename T>
EMBER_HOST_DEVICE inline T binary_apply(BinaryOp op, T x, T y) {
  switch (op) {
    case BinaryOp::Add: return x + y;
    case BinaryOp::Sub: return x - y;
    case BinaryOp::Mul: return x * y;
    case BinaryOp::Div: return x / y;
    case BinaryOp::Pow: return std::pow(x, y);
    case BinaryOp::Max: return (x != x) ? x : (x > y || y != y ? (y != y ? y : x) : y);
    case BinaryOp::Min: return (x != x) ? x : (x < y || y != y ? (y != y ? y : x) : y);
    case BinaryOp::Eq: return x == y ? T(1) : T(0);
    case BinaryOp::Gt: return x > y ? T(1) : T(0);
    case BinaryOp::Lt: return x < y ? T(1) : T(0);
    case BinaryOp::Ge: return x >= y ? T(1) : T(0);
    case BinaryOp::Le: return x <= y ? T(1) : T(0);
    case BinaryOp::ReluBackward: return y <= T(0) ? T(0) : x;
    case BinaryOp::SigmoidBackward: return x * (T(1) - y) * y;
    case BinaryOp::TanhBackward: return x * (T(1) - y * y);
  }
  return x;
}

}  // namespace ember::kernels
