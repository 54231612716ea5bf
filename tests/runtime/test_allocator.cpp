// The caching CPU allocator: 64-byte alignment, reuse of freed blocks, and no system allocation for
// tensor storage once a training step has reached its steady state.
#include <gtest/gtest.h>

#include <cstdint>

#include "runtime/allocator.h"
#include "runtime/autograd.h"
#include "runtime/ops.h"
#include "runtime/rng.h"

using namespace ember;

TEST(Allocator, BlocksAre64ByteAligned) {
  for (int64_t n : {1, 3, 17, 1000, 4097, 100000}) {
    Tensor t = empty({n});
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data_ptr()) % 64, 0u) << n;
  }
}

TEST(Allocator, FreedBlocksAreReused) {
  void* first;
  {
    Tensor t = empty({12345});
    first = t.data_ptr();
  }
  Tensor again = empty({12345});
  EXPECT_EQ(again.data_ptr(), first);
}

TEST(Allocator, SteadyStateTrainingStepDoesNotCallMalloc) {
  Generator g(5);
  Tensor w1 = randn({64, 32}, {}, &g).requires_grad_(), b1 = zeros({64}).requires_grad_();
  Tensor w2 = randn({10, 64}, {}, &g).requires_grad_(), b2 = zeros({10}).requires_grad_();
  Tensor x = randn({128, 32}, {}, &g), y = randn({128, 10}, {}, &g);
  auto step = [&] {
    Tensor loss = mse_loss(linear(relu(linear(x, w1, b1)), w2, b2), y);
    loss.backward();
    NoGradGuard ng;
    for (Tensor* p : {&w1, &b1, &w2, &b2}) {
      p->add_(p->grad(), -0.01);
      p->set_grad(Tensor());
    }
  };
  for (int i = 0; i < 3; ++i) step();
  uint64_t before = allocator_stats(kCPU).system_allocs;
  uint64_t hits_before = allocator_stats(kCPU).cache_hits;
  for (int i = 0; i < 5; ++i) step();
  EXPECT_EQ(allocator_stats(kCPU).system_allocs, before);
  EXPECT_GT(allocator_stats(kCPU).cache_hits, hits_before);
}

TEST(Allocator, EmptyCacheReturnsBlocks) {
  { Tensor t = empty({1 << 20}); }
  EXPECT_GT(allocator_stats(kCPU).reserved_bytes, allocator_stats(kCPU).allocated_bytes);
  empty_cache(kCPU);
  EXPECT_EQ(allocator_stats(kCPU).reserved_bytes, allocator_stats(kCPU).allocated_bytes);
}
