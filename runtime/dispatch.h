// Private helpers for op front ends: device dispatch to <kernel>_cpu / <kernel>_cuda, and input checks.
#pragma once
#include <initializer_list>

#include "kernels/kernels.h"
#include "ember/runtime/autocast.h"
#include "ember/runtime/error.h"
#include "ember/runtime/tensor.h"

// EMBER_DISPATCH(device, kernel, args...) calls kernels::kernel_cpu(args) or kernels::kernel_cuda(args).
#define EMBER_DISPATCH(device, kernel, ...)                                                 \
  do {                                                                                      \
    if ((device).is_cpu()) ::ember::kernels::kernel##_cpu(__VA_ARGS__);                     \
    else ::ember::kernels::kernel##_cuda(__VA_ARGS__);                                      \
  } while (0)

namespace ember::detail {

inline void check_defined(const Tensor& t, const char* op, const char* what) {
  EMBER_CHECK(t.defined(), "[", op, "] ", what, " is an undefined tensor");
}

inline void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  EMBER_CHECK(a.device() == b.device(), "[", op, "] tensors are on different devices: ", a.device().str(), " and ",
              b.device().str());
}

inline void check_floating(const Tensor& t, const char* op, const char* what = "input") {
  EMBER_CHECK(is_compute_floating(t.dtype()), "[", op, "] ", what, " has dtype ", dtype_name(t.dtype()),
              " (expected f32 or f64)");
}

inline bool is_half(DType t) { return t == DType::f16 || t == DType::bf16; }

// For ops with f16/bf16 kernels (matmul, linear, convolutions): any floating dtype.
inline void check_floating_or_half(const Tensor& t, const char* op, const char* what = "input") {
  EMBER_CHECK(is_floating(t.dtype()), "[", op, "] ", what, " has dtype ", dtype_name(t.dtype()),
              " (expected f32, f64, f16 or bf16)");
}

// --- half inputs of ops without half kernels ----------------------------------------------------
// Such an op runs on f32 casts of its f16/bf16 inputs (differentiable casts, so autograd sees one
// f32 op between them). Its result goes back to the input's half dtype, as the op would give in
// PyTorch, except for the ops that autocast runs in f32 (reductions, softmax, losses, exp/log/pow):
// inside an autocast scope these return the f32 result.
inline bool any_half(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (t->defined() && is_half(t->dtype())) return true;
  return false;
}
inline Tensor f32_if_half(const Tensor& t) { return t.defined() && is_half(t.dtype()) ? t.to(DType::f32) : t; }
// The result of an op computed in f32 for inputs of dtype `half`: rounded back unless autocast
// keeps this op (fp32_op) in f32.
inline Tensor from_f32(const Tensor& y, DType half, bool fp32_op) {
  return (fp32_op && autocast_enabled()) || !is_half(half) ? y : y.to(half);
}
template <typename Fn>
Tensor via_f32(const Tensor& x, bool fp32_op, Fn&& fn) {
  return from_f32(fn(x.to(DType::f32)), x.dtype(), fp32_op);
}

// Whether autocast casts the inputs of a low-precision op (matmul, linear, convolutions): then
// `cast` holds autocast_lowp of each, and the op reruns on them.
template <size_t N>
bool autocast_lowp_inputs(const Tensor* const (&in)[N], Tensor (&cast)[N]) {
  if (!autocast_enabled()) return false;
  bool changed = false;
  for (size_t i = 0; i < N; ++i) {
    cast[i] = autocast_lowp(*in[i]);
    changed |= cast[i].defined() && cast[i].impl_ptr() != in[i]->impl_ptr();
  }
  return changed;
}

}  // namespace ember::detail
