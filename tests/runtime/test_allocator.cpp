// The caching CPU allocator: 64-byte alignment, reuse of freed blocks, and no system allocation for
// tensor storage once a training step has reached its steady state; the block cache behind every
// caching allocator; and small_alloc's free lists.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "ember/runtime/allocator.h"
#include "runtime/block_cache.h"
#include "ember/runtime/error.h"
#include "ember/runtime/small_alloc.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"

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

// The block cache behind every caching allocator (CPU, CUDA devices, pinned host), over a counting
// raw allocator: size classes for both granules, reuse, the cap on cached bytes, a retry after
// a failed raw allocation, and empty().
namespace {
int g_raw_allocs = 0, g_raw_frees = 0, g_raw_failures_left = 0;
void* counting_alloc(int, size_t n) {
  if (g_raw_failures_left > 0) {
    --g_raw_failures_left;
    EMBER_THROW("[test] raw allocation refused");
  }
  ++g_raw_allocs;
  return std::malloc(n);
}
void counting_free(int, void* p) {
  ++g_raw_frees;
  std::free(p);
}
}  // namespace

TEST(BlockCache, SizeClassesReuseCapAndRetry) {
  BlockCache bytes(counting_alloc, counting_free, 0, 64, 1 << 20);
  EXPECT_EQ(bytes.round(0), 64u);
  EXPECT_EQ(bytes.round(65), 128u);
  EXPECT_EQ(bytes.round(4096), 4096u);
  EXPECT_EQ(bytes.round(4097), 5120u);  // eighths of 8192
  EXPECT_EQ(bytes.round(100000), 114688u);
  BlockCache pages(counting_alloc, counting_free, 0, 4096, 16384);
  EXPECT_EQ(pages.round(1), 4096u);
  EXPECT_EQ(pages.round(4097), 8192u);  // no finer than a page
  EXPECT_EQ(pages.round(10000), 12288u);
  EXPECT_EQ(pages.round(9000), 12288u);

  void* a = pages.alloc(10000);
  pages.free(a, 10000);
  EXPECT_EQ(pages.alloc(9000), a) << "a freed block of the same class is reused";
  EXPECT_EQ(pages.stats().cache_hits, 1u);
  EXPECT_EQ(pages.stats().system_allocs, 1u);
  EXPECT_EQ(pages.stats().allocated_bytes, 12288u);
  void* b = pages.alloc(10240);
  const int frees_before = g_raw_frees;
  pages.free(a, 9000);
  pages.free(b, 10240);  // over the 16 KiB cap: back to the raw allocator at once
  EXPECT_EQ(g_raw_frees, frees_before + 1);
  EXPECT_EQ(pages.stats().reserved_bytes, 12288u);
  EXPECT_EQ(pages.stats().allocated_bytes, 0u);

  g_raw_failures_left = 1;  // the first raw try fails: the cached block goes back, then it succeeds
  void* c = pages.alloc(20000);
  EXPECT_EQ(g_raw_frees, frees_before + 2);
  EXPECT_EQ(pages.stats().reserved_bytes, 20480u);
  pages.free(c, 20000);  // over the cap again
  EXPECT_EQ(pages.stats().reserved_bytes, 0u);
  void* d = bytes.alloc(100);
  bytes.free(d, 100);
  bytes.empty();
  EXPECT_EQ(bytes.stats().reserved_bytes, 0u);
  EXPECT_EQ(bytes.stats().peak_allocated_bytes, 128u);
}

// Blocks read by queued device work (a pinned batch being copied to a GPU) carry events: a freed
// block is handed out again only once every event recorded for it completed, polled on alloc and
// free, never waited for; a block without recorded uses, or whose work is done, returns at once;
// record_use refuses pointers the cache did not hand out. Fake events stand in for CUDA's.
namespace {
struct FakeEvent {
  bool done = false;
};
std::vector<FakeEvent*> g_events;
int g_events_destroyed = 0, g_event_device = -1;
void* fake_record(int device) {
  g_event_device = device;
  g_events.push_back(new FakeEvent);
  return g_events.back();
}
bool fake_query(void* e) { return static_cast<FakeEvent*>(e)->done; }
void fake_destroy(void* e) {
  ++g_events_destroyed;
  std::erase(g_events, static_cast<FakeEvent*>(e));
  delete static_cast<FakeEvent*>(e);
}
}  // namespace

TEST(BlockCache, BlocksInUseByTheDeviceWaitForTheirEvents) {
  g_events.clear();
  g_events_destroyed = 0;
  {
    BlockCache pinned(counting_alloc, counting_free, 0, 4096, 1 << 20);
    void* outside = std::malloc(64);
    EXPECT_FALSE(pinned.record_use(outside, 0)) << "no event ops yet";
    pinned.set_event_ops({fake_record, fake_query, fake_destroy});

    void* a = pinned.alloc(5000);
    EXPECT_TRUE(pinned.owns(a));
    EXPECT_FALSE(pinned.owns(outside));
    EXPECT_FALSE(pinned.record_use(outside, 0)) << "not a block of this cache";
    EXPECT_TRUE(g_events.empty());
    EXPECT_TRUE(pinned.record_use(a, 3));
    EXPECT_EQ(g_event_device, 3);
    ASSERT_EQ(g_events.size(), 1u);
    FakeEvent* copy = g_events[0];
    pinned.free(a, 5000);
    EXPECT_FALSE(pinned.owns(a));
    EXPECT_EQ(pinned.pending_blocks(), 1u);
    void* b = pinned.alloc(5000);
    EXPECT_NE(b, a) << "a block whose copy is still queued must not be refilled";
    EXPECT_EQ(pinned.pending_blocks(), 1u);

    copy->done = true;  // the copy ran: the next alloc finds the block back in the cache
    void* c = pinned.alloc(5000);
    EXPECT_EQ(c, a);
    EXPECT_EQ(pinned.pending_blocks(), 0u);
    EXPECT_EQ(g_events_destroyed, 1);

    // two uses: the block waits for both
    EXPECT_TRUE(pinned.record_use(c, 0));
    EXPECT_TRUE(pinned.record_use(c, 0));
    ASSERT_EQ(g_events.size(), 2u);
    g_events[1]->done = true;
    pinned.free(c, 5000);
    EXPECT_EQ(pinned.pending_blocks(), 1u);
    g_events[0]->done = true;
    pinned.free(b, 5000);  // a free polls too; b had no uses and is cached at once
    EXPECT_EQ(pinned.pending_blocks(), 0u);
    EXPECT_EQ(g_events_destroyed, 3);
    void* d = pinned.alloc(5000);
    void* e = pinned.alloc(5000);
    EXPECT_TRUE((d == a && e == b) || (d == b && e == a)) << "both blocks are back in the cache";

    // a use whose work completed before the free: back at once
    EXPECT_TRUE(pinned.record_use(d, 0));
    g_events.back()->done = true;
    pinned.free(d, 5000);
    EXPECT_EQ(pinned.pending_blocks(), 0u);
    EXPECT_EQ(pinned.alloc(5000), d);

    // empty() keeps a block the device still reads; it goes once its event completed
    EXPECT_TRUE(pinned.record_use(e, 0));
    pinned.free(e, 5000);
    pinned.free(d, 5000);
    pinned.empty();
    EXPECT_EQ(pinned.pending_blocks(), 1u);
    EXPECT_EQ(pinned.stats().reserved_bytes, 8192u);
    g_events.back()->done = true;
    pinned.empty();
    EXPECT_EQ(pinned.pending_blocks(), 0u);
    EXPECT_EQ(pinned.stats().reserved_bytes, 0u);
    std::free(outside);
  }
  EXPECT_TRUE(g_events.empty()) << "every event recorded was destroyed";
}

// small_alloc recycles a freed block for the next request of its size class, hands out 16-byte
// aligned blocks of every size (large ones straight from the heap), and takes back blocks freed
// on another thread than the one that allocated them.
TEST(SmallAlloc, RecyclesAlignedBlocksAcrossSizesAndThreads) {
  for (size_t n : {size_t{1}, size_t{16}, size_t{17}, size_t{512}, size_t{513}, size_t{8192}, size_t{8193},
                   size_t{100000}}) {
    void* p = small_alloc(n);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u) << n;
    std::memset(p, 0xab, n);  // the whole block is usable
    small_free(p, n);
    if (n <= kSmallAllocMax) {
      void* q = small_alloc(n);
      EXPECT_EQ(q, p) << "a freed block of " << n << " bytes is handed out again";
      small_free(q, n);
    }
  }
  // Allocated here, freed on another thread (which keeps them), then reused there.
  std::vector<void*> blocks;
  for (int i = 0; i < 100; ++i) blocks.push_back(small_alloc(48));
  std::thread other([&] {
    for (void* b : blocks) small_free(b, 48);
    void* again = small_alloc(48);
    EXPECT_EQ(again, blocks.back());
    small_free(again, 48);
  });
  other.join();
  // PoolAllocator in a container, and make_pooled objects, go through the same lists.
  PoolVector<int> v(1000, 7);
  EXPECT_EQ(v[999], 7);
  auto sp = make_pooled<std::vector<int>>(3, 5);
  EXPECT_EQ((*sp)[2], 5);
}
