// CUDA tensors through NCCL (train/distributed/nccl.h): on every rank's own GPU (cuda:local_rank),
// all-reduce (sum, mean, max) and broadcast give the CPU path's values. Skips, saying why, where
// there is no GPU for the rank or the build has no NCCL.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ember/runtime/device.h"
#include "ember/runtime/ops.h"
#include "tests/support/check.h"
#include "train/distributed/nccl.h"
#include "ember/train/distributed/process_group.h"

namespace ember {
namespace {

TEST(Nccl, CollectivesOnTheRanksGpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  const std::string why = dist::nccl::unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << why;
  if (dist::local_rank() >= cuda_device_count())
    GTEST_SKIP() << "rank " << dist::rank() << " has no GPU of its own (" << cuda_device_count() << " visible)";
  const Device gpu = cuda_device(dist::local_rank());
  const int n = dist::world_size(), r = dist::rank();
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64}) {
    SCOPED_TRACE(dtype_name(dt));
    std::vector<double> v;
    for (int i = 0; i < 1000; ++i) v.push_back((r + 1) * static_cast<double>(i % 5));
    const Tensor host = from_vector(v, {1000}).to(dt);
    Tensor sum = host.to(gpu), mx = host.to(gpu);
    dist::all_reduce(sum, dist::ReduceOp::Sum);
    dist::all_reduce(mx, dist::ReduceOp::Max);
    std::vector<double> es, em;
    for (int i = 0; i < 1000; ++i) {
      es.push_back(static_cast<double>(i % 5) * n * (n + 1) / 2);
      em.push_back(static_cast<double>(i % 5) * n);
    }
    EXPECT_TRUE(test::allclose(sum.to(kCPU).to(DType::f64), from_vector(es, {1000}), 0, 0));
    EXPECT_TRUE(test::allclose(mx.to(kCPU).to(DType::f64), from_vector(em, {1000}), 0, 0));
    if (is_floating(dt)) {
      Tensor mean = host.to(gpu);
      dist::all_reduce(mean, dist::ReduceOp::Mean);
      std::vector<double> ea;
      for (int i = 0; i < 1000; ++i) ea.push_back(static_cast<double>(i % 5) * (n + 1) / 2);
      EXPECT_TRUE(test::allclose(mean.to(kCPU).to(DType::f64), from_vector(ea, {1000}), 0, 0));
    }
    Tensor b = host.to(gpu);
    dist::broadcast(b, 0);
    std::vector<double> eb;
    for (int i = 0; i < 1000; ++i) eb.push_back(static_cast<double>(i % 5));
    EXPECT_TRUE(test::allclose(b.to(kCPU).to(DType::f64), from_vector(eb, {1000}), 0, 0));
  }
}

TEST(Nccl, WithoutItTheReasonIsClear) {
  const std::string why = dist::nccl::unavailable_reason();
  if (why.empty()) GTEST_SKIP() << "NCCL is available here";
  EXPECT_NE(why.find("NCCL"), std::string::npos) << why;
}

}  // namespace
}  // namespace ember
