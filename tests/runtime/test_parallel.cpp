// The thread pool behind parallel_for: every index is visited once, whatever the thread count
// and grain; worker exceptions reach the caller; many back-to-back tiny calls (the pattern of a
// training step) neither lose a wake-up nor deadlock; nested calls run serially.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/parallel.h"
#include "ember/runtime/rng.h"
#include "runtime/parallel_detail.h"
#include "tests/support/check.h"

namespace ember {
namespace {

class ThreadsGuard {
 public:
  ThreadsGuard() : prev_(get_num_threads()) {}
  ~ThreadsGuard() { set_num_threads(prev_); }

 private:
  int prev_;
};

TEST(Parallel, EveryIndexOnceForAnyThreadCountAndGrain) {
  ThreadsGuard guard;
  for (int threads : {1, 2, 3, 5}) {
    set_num_threads(threads);
    for (int64_t n : {0, 1, 7, 64, 1000}) {
      for (int64_t grain : {1, 3, 100}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        parallel_for(0, n, grain, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "threads " << threads << " n " << n << " grain " << grain;
        }
      }
    }
  }
}

TEST(Parallel, ManyTinyCallsBackToBack) {
  ThreadsGuard guard;
  for (int threads : {2, 3}) {
    set_num_threads(threads);
    int64_t total = 0;
    for (int call = 0; call < 8000; ++call) {
      std::atomic<int64_t> sum{0};
      parallel_for(0, 8, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) sum.fetch_add(i);
      });
      total += sum.load();
      // Every few calls, leave the pool idle long enough for its workers to fall asleep.
      if (call % 2000 == 1999) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_EQ(total, 8000 * 28);
  }
}

TEST(Parallel, ExceptionFromAWorkerReachesTheCaller) {
  ThreadsGuard guard;
  set_num_threads(2);
  for (int rep = 0; rep < 100; ++rep) {
    EXPECT_THROW(parallel_for(0, 100, 1,
                              [&](int64_t b, int64_t) {
                                if (b > 0) throw std::runtime_error("chunk failed");
                              }),
                 std::runtime_error);
    // The pool still works afterwards.
    std::atomic<int> n{0};
    parallel_for(0, 100, 1, [&](int64_t b, int64_t e) { n.fetch_add(static_cast<int>(e - b)); });
    ASSERT_EQ(n.load(), 100);
  }
}

TEST(Parallel, NestedCallsRunSeriallyInsideTheChunk) {
  ThreadsGuard guard;
  set_num_threads(2);
  std::atomic<int64_t> inner{0};
  parallel_for(0, 4, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      parallel_for(0, 10, 1, [&](int64_t ib, int64_t ie) { inner.fetch_add(ie - ib); });
    }
  });
  EXPECT_EQ(inner.load(), 40);
}

TEST(Parallel, CallsFromSeveralUserThreadsAreSerialised) {
  ThreadsGuard guard;
  set_num_threads(2);
  std::atomic<int64_t> total{0};
  std::vector<std::thread> users;
  for (int u = 0; u < 3; ++u) {
    users.emplace_back([&] {
      for (int call = 0; call < 2000; ++call) {
        parallel_for(0, 16, 1, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
      }
    });
  }
  for (auto& t : users) t.join();
  EXPECT_EQ(total.load(), 3 * 2000 * 16);
}

// Resizing the pool from several threads while others run parallel_for: every call still covers
// its range exactly once (the ThreadSanitizer job checks that the pool's size is never raced on).
TEST(Parallel, ResizingWhileOtherThreadsRunIsSafe) {
  ThreadsGuard guard;
  std::atomic<int64_t> total{0};
  std::vector<std::thread> users;
  for (int u = 0; u < 2; ++u) {
    users.emplace_back([&, u] {
      for (int call = 0; call < 200; ++call) set_num_threads(1 + (call + u) % 3);
    });
    users.emplace_back([&] {
      for (int call = 0; call < 500; ++call) {
        parallel_for(0, 64, 1, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
      }
    });
  }
  for (auto& t : users) t.join();
  EXPECT_EQ(total.load(), 2 * 500 * 64);
  set_num_threads(2);
  EXPECT_EQ(get_num_threads(), 2);
}

// Long sums run in 8 lanes and in blocks; the order depends on the shape only, so every thread
// count gives the same bits, and the result stays within double rounding of the exact sum.
// Grad mode, and the backward pass (grad mode off under FixedChunksGuard), run chunk 0 on the
// caller and chunk 1 on the worker every call, even when the worker is late (asleep: without the
// guard, the caller would claim its chunk); so each thread's
// scratch sees the same chunks every step. Also checked inside a real backward pass.
TEST(Parallel, GradModeAndTheBackwardPassKeepChunksOnTheirThreads) {
  ThreadsGuard tg;
  set_num_threads(2);
  const std::thread::id caller = std::this_thread::get_id();
  auto check = [&](int calls) {
    for (int c = 0; c < calls; ++c) {
      std::thread::id ran[2];
      // A pause lets the worker fall asleep, so it is late for the next call's chunks.
      if (c % 2 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(3));
      parallel_for(0, 2, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) ran[i] = std::this_thread::get_id();
      });
      ASSERT_EQ(ran[0], caller) << "call " << c;
      ASSERT_NE(ran[1], caller) << "call " << c;
    }
  };
  check(30);  // grad mode
  {
    NoGradGuard ng;
    detail::FixedChunksGuard fixed;
    check(30);
  }
  EXPECT_FALSE(detail::fixed_chunks());
  bool fixed_in_backward = false;
  Tensor x = ones({4}).requires_grad_();
  autograd::register_post_accumulate_grad_hook(
      x, [&](const Tensor&) { fixed_in_backward = detail::fixed_chunks() && !grad_enabled(); });
  sum(mul(x, 2.0)).backward();
  EXPECT_TRUE(fixed_in_backward);
}

TEST(Parallel, SumsDoNotDependOnTheThreadCount) {
  ThreadsGuard guard;
  Generator g(11);
  Tensor x = randn({3, 70001}, {}, &g);  // a full sum spans 13 blocks
  Tensor conv_like = randn({16, 8, 100}, {}, &g);  // bias gradient: over dims 0 and 2, runs of 100
  set_num_threads(1);
  Tensor full1 = sum(x), rows1 = sum(x, {1}), bias1 = sum(conv_like, {0, 2}), mean1 = mean(x);
  for (int threads : {2, 3}) {
    set_num_threads(threads);
    EXPECT_TRUE(test::bit_equal(sum(x), full1)) << threads;
    EXPECT_TRUE(test::bit_equal(sum(x, {1}), rows1)) << threads;
    EXPECT_TRUE(test::bit_equal(sum(conv_like, {0, 2}), bias1)) << threads;
    EXPECT_TRUE(test::bit_equal(mean(x), mean1)) << threads;
  }
  std::vector<float> v = x.to_vector<float>();
  long double exact = 0;
  for (float f : v) exact += f;
  EXPECT_EQ(full1.item<float>(), static_cast<float>(exact));
  std::vector<float> b = conv_like.to_vector<float>();
  for (int64_t c = 0; c < 8; ++c) {
    long double e = 0;
    for (int64_t n = 0; n < 16; ++n)
      for (int64_t i = 0; i < 100; ++i) e += b[static_cast<size_t>((n * 8 + c) * 100 + i)];
    EXPECT_EQ(bias1.to_vector<float>()[static_cast<size_t>(c)], static_cast<float>(e)) << c;
  }
}

// mse_loss on contiguous CPU tensors takes a one-pass kernel; on strided inputs it composes sub,
// mul and mean. Both sum in the same order, so loss and gradient agree bit for bit, for any
// thread count.
TEST(Parallel, FusedMseLossEqualsTheComposedOps) {
  ThreadsGuard guard;
  Generator g(12);
  for (int64_t n : {5, 100, 70001}) {
    Tensor wide = randn({n, 2}, {}, &g), target = randn({n}, {}, &g);
    Tensor strided = wide.select(1, 0);  // non-contiguous: the composed path
    Tensor dense = strided.contiguous();
    for (Reduction r : {Reduction::Mean, Reduction::Sum}) {
      set_num_threads(1);
      Tensor x1 = dense.detach().requires_grad_();
      Tensor l1 = mse_loss(x1, target, r);
      l1.backward();
      for (int threads : {1, 2}) {
        set_num_threads(threads);
        Tensor x2 = strided.detach().requires_grad_(), x3 = dense.detach().requires_grad_();
        Tensor l2 = mse_loss(x2, target, r), l3 = mse_loss(x3, target, r);
        l2.backward();
        l3.backward();
        EXPECT_TRUE(test::bit_equal(l1, l2)) << n << " " << threads;
        EXPECT_TRUE(test::bit_equal(l1, l3)) << n << " " << threads;
        EXPECT_TRUE(test::bit_equal(x1.grad(), x2.grad())) << n << " " << threads;
        EXPECT_TRUE(test::bit_equal(x1.grad(), x3.grad())) << n << " " << threads;
      }
      NoGradGuard ng;
      EXPECT_TRUE(test::bit_equal(mse_loss(dense, target, r), l1.detach()));
    }
  }
}

}  // namespace
}  // namespace ember
