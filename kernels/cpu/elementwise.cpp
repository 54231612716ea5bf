// CPU elementwise kernels: unary, binary (incl. comparisons), where, copy/convert, fill, axpby.
// The op is a template parameter (kernels/common/dispatch.h), so the switch in functors.h folds
// away inside the loops.
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kernels/common/convert.h"
#include "kernels/common/dispatch.h"
#include "kernels/common/functors.h"
#include "kernels/cpu/half_rows.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/loops.h"
#include "kernels/kernels.h"

namespace ember::kernels {
namespace {

// exp for f32 written with IEEE arithmetic and bit operations only (Cephes' expf: x = n ln2 + r,
// a degree-6 polynomial for e^r, scaled by 2^n in two halves so that results down to the
// subnormals stay exact in the exponent), so that loops over it vectorise -- glibc's expf is a
// call per element. Within 1-2 ulp of the exact value; the same bits in every ISA variant and for
// contiguous and strided inputs. NaN stays NaN, exp(+inf) = inf, exp(-inf) = 0.
[[gnu::always_inline]] inline float exp_f32(float x) {
  constexpr float kHi = 88.72283935546875f, kLo = -103.97207641601562f;
  float xc = x > kHi ? kHi : x;
  xc = xc < kLo ? kLo : xc;
  float fx = xc * 1.44269504088896341f;
  fx = (fx + 12582912.0f) - 12582912.0f;  // round to nearest (|fx| < 2^22)
  float r = xc - fx * 0.693359375f;
  r = r - fx * -2.12194440e-4f;
  const float z = r * r;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  const int32_t n = static_cast<int32_t>(fx);
  const int32_t h = n / 2;
  const float s1 = std::bit_cast<float>(static_cast<uint32_t>(h + 127) << 23);
  const float s2 = std::bit_cast<float>(static_cast<uint32_t>(n - h + 127) << 23);
  float res = (y * s1) * s2;
  res = x > kHi ? std::numeric_limits<float>::infinity() : res;
  res = x < kLo ? 0.0f : res;
  return res;
}

// The CPU's f32 exp and sigmoid take exp_f32; everything else unary_apply (shared with CUDA).
template <UnaryOp OP, typename T>
[[gnu::always_inline]] inline T unary_cpu(T x, T a, T b) {
  if constexpr (std::is_same_v<T, float> && OP == UnaryOp::Exp) {
    return exp_f32(x);
  } else if constexpr (std::is_same_v<T, float> && OP == UnaryOp::Sigmoid) {
    return 1.0f / (1.0f + exp_f32(-x));
  } else {
    return unary_apply<T>(OP, x, a, b);
  }
}

// Contiguous rows of the ops whose loops only vectorise with exp_f32 and a wide ISA.
template <UnaryOp OP>
[[gnu::always_inline]] inline void exp_like_row(const float* __restrict x, float* __restrict o, int64_t n) {
  for (int64_t k = 0; k < n; ++k) o[k] = unary_cpu<OP, float>(x[k], 0.0f, 0.0f);
}
template <UnaryOp OP>
void exp_like_row_any(const float* x, float* o, int64_t n) {
  run_best_isa([&] EMBER_INLINE_LAMBDA { exp_like_row<OP>(x, o, n); });
}

template <UnaryOp OP, typename T>
void unary_loop(const Tensor& x, const Tensor& out, T a, T b) {
  const T* xp = static_cast<const T*>(x.data_ptr());
  T* op = static_cast<T*>(out.data_ptr());
  auto g = make_geometry<2>(out.shape(), {&out, &x});
  for_each_row<2>(g, out.numel(), [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& s) {
    T* o = op + off[0];
    const T* xi = xp + off[1];
    if constexpr (std::is_same_v<T, float> && (OP == UnaryOp::Exp || OP == UnaryOp::Sigmoid)) {
      if (s[0] == 1 && s[1] == 1) {
        exp_like_row_any<OP>(xi, o, n);
        return;
      }
    }
    if (s[0] == 1 && s[1] == 1) {
      for (int64_t k = 0; k < n; ++k) o[k] = unary_cpu<OP, T>(xi[k], a, b);
    } else {
      for (int64_t k = 0; k < n; ++k) o[k * s[0]] = unary_cpu<OP, T>(xi[k * s[1]], a, b);
    }
  });
}

template <BinaryOp OP, typename T, typename O>
void binary_loop(const Tensor& x, const Tensor& y, const Tensor& out) {
  const T* xp = static_cast<const T*>(x.data_ptr());
  const T* yp = static_cast<const T*>(y.data_ptr());
  O* op = static_cast<O*>(out.data_ptr());
  auto g = make_geometry<3>(out.shape(), {&out, &x, &y});
  for_each_row<3>(g, out.numel(), [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& s) {
    O* o = op + off[0];
    const T* xi = xp + off[1];
    const T* yi = yp + off[2];
    if (s[0] == 1 && s[1] == 1 && s[2] == 1) {
      for (int64_t k = 0; k < n; ++k) o[k] = static_cast<O>(binary_apply<T>(OP, xi[k], yi[k]));
    } else if (s[0] == 1 && s[1] == 1 && s[2] == 0) {
      const T yv = yi[0];
      for (int64_t k = 0; k < n; ++k) o[k] = static_cast<O>(binary_apply<T>(OP, xi[k], yv));
    } else if (std::is_floating_point_v<T> && std::is_same_v<T, O> && s[0] == 1 && s[1] == 0 && s[2] == 1) {
      // e.g. an activation's backward from the expanded gradient of a sum (floating arithmetic only:
      // the size of the code)
      const T xv = xi[0];
      for (int64_t k = 0; k < n; ++k) o[k] = static_cast<O>(binary_apply<T>(OP, xv, yi[k]));
    } else {
      for (int64_t k = 0; k < n; ++k) o[k * s[0]] = static_cast<O>(binary_apply<T>(OP, xi[k * s[1]], yi[k * s[2]]));
    }
  });
}

// f16/bf16 tensors, contiguous: chunks that stay in L1 are widened exactly to float32, run through
// the float32 loop and rounded back once, in one pass over the half-size data; the same bits as
// widening the whole tensor, the float32 op and one rounding, without the two float32 tensors.
constexpr int64_t kHalfChunk = 512;

template <UnaryOp OP>
void unary_half_rows(bool bf16, const uint16_t* x, uint16_t* o, int64_t n, float a, float b) {
  parallel_for(0, (n + kHalfChunk - 1) / kHalfChunk, 32, [&](int64_t c0, int64_t c1) {
    alignas(64) float buf[kHalfChunk];
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t i0 = c * kHalfChunk, m = std::min(kHalfChunk, n - i0);
      half_to_f32_row(bf16, x + i0, buf, m);
      if constexpr (OP == UnaryOp::Exp || OP == UnaryOp::Sigmoid) {
        exp_like_row_any<OP>(buf, buf, m);
      } else {
        for (int64_t k = 0; k < m; ++k) buf[k] = unary_cpu<OP, float>(buf[k], a, b);
      }
      half_from_f32_row(bf16, buf, o + i0, m);
    }
  });
}

template <BinaryOp OP>
void binary_half_rows(bool bf16, const uint16_t* x, const uint16_t* y, uint16_t* o, int64_t n) {
  parallel_for(0, (n + kHalfChunk - 1) / kHalfChunk, 32, [&](int64_t c0, int64_t c1) {
    alignas(64) float bx[kHalfChunk], by[kHalfChunk];
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t i0 = c * kHalfChunk, m = std::min(kHalfChunk, n - i0);
      half_to_f32_row(bf16, x + i0, bx, m);
      half_to_f32_row(bf16, y + i0, by, m);
      for (int64_t k = 0; k < m; ++k) bx[k] = binary_apply<float>(OP, bx[k], by[k]);
      half_from_f32_row(bf16, bx, o + i0, m);
    }
  });
}

bool is_half_dtype(DType t) { return t == DType::f16 || t == DType::bf16; }

// Integer tensors take only the exact ops (is_integer_unary_op): one loop each, not one per op.
template <typename T>
void unary_integer(UnaryOp op, const Tensor& x, const Tensor& out, T a, T b) {
  switch (op) {
    case UnaryOp::AddScalar: return unary_loop<UnaryOp::AddScalar, T>(x, out, a, b);
    case UnaryOp::MulScalar: return unary_loop<UnaryOp::MulScalar, T>(x, out, a, b);
    case UnaryOp::Neg: return unary_loop<UnaryOp::Neg, T>(x, out, a, b);
    case UnaryOp::Abs: return unary_loop<UnaryOp::Abs, T>(x, out, a, b);
    case UnaryOp::Sign: return unary_loop<UnaryOp::Sign, T>(x, out, a, b);
    default: EMBER_THROW("[unary] this op is not supported for integer dtypes");
  }
}

template <typename T>
void unary_typed(UnaryOp op, const Tensor& x, const Tensor& out, T a, T b) {
  dispatch_unary_op(op, [&](auto k) { unary_loop<decltype(k)::value, T>(x, out, a, b); });
}

// Boolean outputs come from the comparisons only: one loop each, not one per op.
template <typename T>
void binary_compare(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out) {
  switch (op) {
    case BinaryOp::Eq: return binary_loop<BinaryOp::Eq, T, bool>(x, y, out);
    case BinaryOp::Gt: return binary_loop<BinaryOp::Gt, T, bool>(x, y, out);
    case BinaryOp::Lt: return binary_loop<BinaryOp::Lt, T, bool>(x, y, out);
    case BinaryOp::Ge: return binary_loop<BinaryOp::Ge, T, bool>(x, y, out);
    case BinaryOp::Le: return binary_loop<BinaryOp::Le, T, bool>(x, y, out);
    default: EMBER_THROW("[binary] a bool output is for the comparisons (eq, gt, lt, ge, le) only");
  }
}

template <typename T, typename O>
void binary_typed(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out) {
  dispatch_binary_op(op, [&](auto k) { binary_loop<decltype(k)::value, T, O>(x, y, out); });
}

// dst = src for contiguous f32 <-> f16/bf16, the casts of mixed precision (half_rows.h); false
// for other dtype pairs.
bool half_float_copy(const Tensor& src, const Tensor& dst) {
  const DType s = src.dtype(), d = dst.dtype();
  const bool to_half = s == DType::f32 && (d == DType::f16 || d == DType::bf16);
  const bool from_half = d == DType::f32 && (s == DType::f16 || s == DType::bf16);
  if (!to_half && !from_half) return false;
  const bool bf16 = s == DType::bf16 || d == DType::bf16;
  const void* sp = src.data_ptr();
  void* dp = dst.data_ptr();
  parallel_for(0, dst.numel(), 32768, [&](int64_t i0, int64_t i1) {
    if (to_half) half_from_f32_row(bf16, static_cast<const float*>(sp) + i0, static_cast<uint16_t*>(dp) + i0, i1 - i0);
    else half_to_f32_row(bf16, static_cast<const uint16_t*>(sp) + i0, static_cast<float*>(dp) + i0, i1 - i0);
  });
  return true;
}

// dst = src elementwise for one pair of element types (any strides).
template <typename D, typename S>
void copy_typed(const Tensor& src, const Tensor& dst) {
  const S* sp = static_cast<const S*>(src.data_ptr());
  D* dp = static_cast<D*>(dst.data_ptr());
  auto g = make_geometry<2>(dst.shape(), {&dst, &src});
  for_each_row<2>(g, dst.numel(), [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& s) {
    D* o = dp + off[0];
    const S* i = sp + off[1];
    if (s[0] == 1 && s[1] == 1) {
      for (int64_t k = 0; k < n; ++k) o[k] = convert<D>(i[k]);
    } else {
      for (int64_t k = 0; k < n; ++k) o[k * s[0]] = convert<D>(i[k * s[1]]);
    }
  });
}

// Casts between a half type and any type but f32 go through an f32 copy: convert<> defines them
// through float, so the bits are the same, and 22 of the 64 type pairs need no loops of their own.
bool through_f32(DType s, DType d) {
  auto half = [](DType t) { return t == DType::f16 || t == DType::bf16; };
  return (half(s) || half(d)) && s != d && s != DType::f32 && d != DType::f32;
}

}  // namespace

// The activations and scalar arithmetic of mixed-precision models take this path; other ops go
// through float32 tensors (fewer instantiations: the deploy tool's size).
Tensor unary_half_cpu(UnaryOp op, const Tensor& x, double a, double b) {
  if (!is_half_dtype(x.dtype()) || !x.is_contiguous()) return Tensor();
  void (*rows)(bool, const uint16_t*, uint16_t*, int64_t, float, float) = nullptr;
  switch (op) {
    case UnaryOp::Relu: rows = &unary_half_rows<UnaryOp::Relu>; break;
    case UnaryOp::LeakyRelu: rows = &unary_half_rows<UnaryOp::LeakyRelu>; break;
    case UnaryOp::Sigmoid: rows = &unary_half_rows<UnaryOp::Sigmoid>; break;
    case UnaryOp::Tanh: rows = &unary_half_rows<UnaryOp::Tanh>; break;
    case UnaryOp::Gelu: rows = &unary_half_rows<UnaryOp::Gelu>; break;
    case UnaryOp::Neg: rows = &unary_half_rows<UnaryOp::Neg>; break;
    case UnaryOp::AddScalar: rows = &unary_half_rows<UnaryOp::AddScalar>; break;
    case UnaryOp::MulScalar: rows = &unary_half_rows<UnaryOp::MulScalar>; break;
    default: return Tensor();
  }
  Tensor out = empty(x.shape(), TensorOptions(x.dtype()));
  rows(x.dtype() == DType::bf16, static_cast<const uint16_t*>(x.data_ptr()), static_cast<uint16_t*>(out.data_ptr()),
       x.numel(), static_cast<float>(a), static_cast<float>(b));
  return out;
}

Tensor binary_half_cpu(BinaryOp op, const Tensor& x, const Tensor& y) {
  if (!is_half_dtype(x.dtype()) || y.dtype() != x.dtype() || x.shape() != y.shape() || !x.is_contiguous() ||
      !y.is_contiguous())
    return Tensor();
  void (*rows)(bool, const uint16_t*, const uint16_t*, uint16_t*, int64_t) = nullptr;
  switch (op) {
    case BinaryOp::Add: rows = &binary_half_rows<BinaryOp::Add>; break;
    case BinaryOp::Sub: rows = &binary_half_rows<BinaryOp::Sub>; break;
    case BinaryOp::Mul: rows = &binary_half_rows<BinaryOp::Mul>; break;
    case BinaryOp::ReluBackward: rows = &binary_half_rows<BinaryOp::ReluBackward>; break;
    case BinaryOp::SigmoidBackward: rows = &binary_half_rows<BinaryOp::SigmoidBackward>; break;
    case BinaryOp::TanhBackward: rows = &binary_half_rows<BinaryOp::TanhBackward>; break;
    default: return Tensor();
  }
  Tensor out = empty(x.shape(), TensorOptions(x.dtype()));
  rows(x.dtype() == DType::bf16, static_cast<const uint16_t*>(x.data_ptr()), static_cast<const uint16_t*>(y.data_ptr()),
       static_cast<uint16_t*>(out.data_ptr()), x.numel());
  return out;
}

void unary_cpu(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b) {
  if (out.dtype() == DType::i64 || out.dtype() == DType::i32) {
    // integer tensors (counters, indices): the exact integer ops only
    EMBER_CHECK(is_integer_unary_op(op), "[unary] this op is not supported for integer dtype ",
                dtype_name(out.dtype()));
    if (out.dtype() == DType::i64) unary_integer<int64_t>(op, x, out, static_cast<int64_t>(a), static_cast<int64_t>(b));
    else unary_integer<int32_t>(op, x, out, static_cast<int32_t>(a), static_cast<int32_t>(b));
    return;
  }
  dispatch_floating(out.dtype(), "unary", [&](auto tag) {
    using T = decltype(tag);
    unary_typed<T>(op, x, out, static_cast<T>(a), static_cast<T>(b));
  });
}

void binary_cpu(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out) {
  dispatch_arith(x.dtype(), "binary", [&](auto tag) {
    using T = decltype(tag);
    if (out.dtype() == DType::b8) binary_compare<T>(op, x, y, out);
    else binary_typed<T, T>(op, x, y, out);
  });
}

void where_cpu(const Tensor& cond, const Tensor& x, const Tensor& y, const Tensor& out) {
  dispatch_all(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const bool* cp = static_cast<const bool*>(cond.data_ptr());
    const T* xp = static_cast<const T*>(x.data_ptr());
    const T* yp = static_cast<const T*>(y.data_ptr());
    T* op = static_cast<T*>(out.data_ptr());
    auto g = make_geometry<4>(out.shape(), {&out, &cond, &x, &y});
    for_each_row<4>(g, out.numel(), [&](const std::array<int64_t, 4>& off, int64_t n, const std::array<int64_t, 4>& s) {
      for (int64_t k = 0; k < n; ++k)
        op[off[0] + k * s[0]] = cp[off[1] + k * s[1]] ? xp[off[2] + k * s[2]] : yp[off[3] + k * s[3]];
    });
  });
}

void copy_cpu(const Tensor& src, const Tensor& dst) {
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    if (src.data_ptr() != dst.data_ptr() && dst.nbytes() > 0) std::memcpy(dst.data_ptr(), src.data_ptr(), dst.nbytes());
    return;
  }
  if (src.is_contiguous() && dst.is_contiguous() && half_float_copy(src, dst)) return;
  if (through_f32(src.dtype(), dst.dtype())) {
    Tensor f = empty(dst.shape(), TensorOptions(DType::f32));
    copy_cpu(src, f);
    copy_cpu(f, dst);
    return;
  }
  dispatch_all(dst.dtype(), [&](auto dtag) {
    using D = decltype(dtag);
    dispatch_all(src.dtype(), [&](auto stag) {
      using S = decltype(stag);
      constexpr bool kThroughF32 = (is_half_v<D> || is_half_v<S>) && !std::is_same_v<D, S> &&
                                   !std::is_same_v<D, float> && !std::is_same_v<S, float>;
      if constexpr (!kThroughF32) copy_typed<D, S>(src, dst);
    });
  });
}

void fill_cpu(const Tensor& dst, double value) {
  dispatch_all(dst.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T v = convert<T>(value);
    T* dp = static_cast<T*>(dst.data_ptr());
    auto g = make_geometry<1>(dst.shape(), {&dst});
    for_each_row<1>(g, dst.numel(), [&](const std::array<int64_t, 1>& off, int64_t n, const std::array<int64_t, 1>& s) {
      for (int64_t k = 0; k < n; ++k) dp[off[0] + k * s[0]] = v;
    });
  });
}

void axpby_cpu(const Tensor& dst, const Tensor& x, const Tensor& y, double alpha, bool divide) {
  dispatch_floating(dst.dtype(), "axpby", [&](auto tag) {
    using T = decltype(tag);
    const T a = static_cast<T>(alpha);
    T* dp = static_cast<T*>(dst.data_ptr());
    const T* xp = static_cast<const T*>(x.data_ptr());
    if (!y.defined()) {
      auto g = make_geometry<2>(dst.shape(), {&dst, &x});
      for_each_row<2>(g, dst.numel(), [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& s) {
        for (int64_t k = 0; k < n; ++k) dp[off[0] + k * s[0]] += a * xp[off[1] + k * s[1]];
      });
      return;
    }
    const T* yp = static_cast<const T*>(y.data_ptr());
    auto g = make_geometry<3>(dst.shape(), {&dst, &x, &y});
    for_each_row<3>(g, dst.numel(), [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& s) {
      if (divide) {
        for (int64_t k = 0; k < n; ++k) dp[off[0] + k * s[0]] += a * xp[off[1] + k * s[1]] / yp[off[2] + k * s[2]];
      } else {
        for (int64_t k = 0; k < n; ++k) dp[off[0] + k * s[0]] += a * xp[off[1] + k * s[1]] * yp[off[2] + k * s[2]];
      }
    });
  });
}

}  // namespace ember::kernels
