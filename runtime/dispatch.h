// Private helpers for op front ends: device dispatch to <kernel>_cpu / <kernel>_cuda, and input checks.
#pragma once
#include "kernels/kernels.h"
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

}  // namespace ember::detail
