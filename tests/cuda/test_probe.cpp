// The GPU check's first step (scripts/gpu-check.sh runs this test alone, with a time limit): one
// kernel runs on cuda:0 and its value comes back, or the test skips naming why no device is usable
// (the CUDA runtime's error for the device query), which the check prints and stops on.
#include <gtest/gtest.h>

#include <cstdio>

#include "ember/runtime/device.h"
#include "ember/runtime/ops.h"

namespace ember {
namespace {

TEST(CudaProbe, AKernelRunsOnTheFirstDevice) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  Tensor t = full({1000}, 0.5, TensorOptions(DType::f32).with_device(cuda_device(0)));
  EXPECT_EQ(sum(t).item(), 500.0);
  std::printf("cuda probe: %d device(s) visible; cuda:0 ran a kernel\n", cuda_device_count());
}

}  // namespace
}  // namespace ember
