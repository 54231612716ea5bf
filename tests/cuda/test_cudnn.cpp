// The cuDNN path's strict mode: EMBER_CUDNN_STRICT=1 turns a convolution that cuDNN should serve
// but cannot into an error instead of a silent run on the direct kernels. This binary sets it for
// all its tests (unless the environment already says otherwise), so every CUDA test of a
// convolution also checks that cuDNN served it; the counter of served passes checks it directly.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "ember/config.h"

#if EMBER_WITH_CUDA  // the cuDNN path's functions exist only in a CUDA build
#include "ember/runtime/autograd.h"
#include "ember/runtime/device.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "kernels/cuda/conv_cudnn.h"
#include "tests/support/env.h"

namespace ember {
namespace {

// Before main: strict unless the caller chose (EMBER_CUDNN_STRICT=0 turns it off).
[[maybe_unused]] const bool strict_by_default = ::setenv("EMBER_CUDNN_STRICT", "1", /*overwrite=*/0) == 0;

using test::ScopedEnv;

std::string fallback_error(const std::string& why) {
  try {
    cu::cudnn_fallback(why);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CudnnStrict, FallbackIsAnErrorOnlyInStrictMode) {
  {
    ScopedEnv env("EMBER_CUDNN_STRICT", "1");
    EXPECT_TRUE(cu::cudnn_strict());
    EXPECT_EQ(fallback_error("no cuDNN algorithm for the forward pass of this geometry"),
              "[cudnn] no cuDNN algorithm for the forward pass of this geometry (EMBER_CUDNN_STRICT=1 refuses the "
              "direct kernels)");
  }
  for (const char* off : {"0", "", static_cast<const char*>(nullptr)}) {
    ScopedEnv env("EMBER_CUDNN_STRICT", off);
    EXPECT_FALSE(cu::cudnn_strict());
    EXPECT_EQ(fallback_error("anything"), "");
  }
}

// Forward, input gradient and weight gradient of an f32 and an f64 convolution: six passes, each
// run by cuDNN (strict mode would have thrown otherwise); EMBER_DISABLE_CUDNN=1 runs none there.
TEST(CudnnStrict, CudnnServesEveryPassOfAConvolution) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  if (!EMBER_WITH_CUDNN) GTEST_SKIP() << "this build has no cuDNN (cudnn.h was not found at configure time)";
  ScopedEnv strict("EMBER_CUDNN_STRICT", "1");
  const Device gpu = cuda_device(0);
  auto run = [&](DType dt) {
    Generator g(3);
    Tensor x = rand({2, 3, 9, 8}, TensorOptions(dt), &g).to(gpu).requires_grad_(true);
    Tensor w = rand({4, 3, 3, 3}, TensorOptions(dt), &g).to(gpu).requires_grad_(true);
    Conv2dOptions o;
    o.padding = {1, 1};
    sum(conv2d(x, w, Tensor(), o)).backward();
  };
  const uint64_t before = cu::cudnn_convolutions_served();
  run(DType::f32);
  run(DType::f64);
  EXPECT_EQ(cu::cudnn_convolutions_served() - before, 6u);
  ScopedEnv off("EMBER_DISABLE_CUDNN", "1");
  const uint64_t disabled = cu::cudnn_convolutions_served();
  run(DType::f32);
  EXPECT_EQ(cu::cudnn_convolutions_served(), disabled);
}

}  // namespace
}  // namespace ember
#endif
