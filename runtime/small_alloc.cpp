// Per-thread free lists behind small_alloc: 32 classes of 16..512 bytes (16-byte steps) and 4 of
// 1, 2, 4 and 8 KiB. A list keeps at most kMaxCached blocks; the rest go back to ::operator new's
// heap. At thread exit the lists are returned; frees after that (static destructors) bypass them.
// A thread registers its exit drain when it first caches a block, so a thread that only frees
// (blocks allocated on other threads) returns them too.
#include "ember/runtime/small_alloc.h"

#include <cstdint>

namespace ember {
namespace {

constexpr int kFineClasses = 32;  // 16, 32, ..., 512
constexpr int kCoarseClasses = 4;  // 1024, 2048, 4096, 8192
constexpr int kClasses = kFineClasses + kCoarseClasses;
constexpr uint32_t kMaxCachedFine = 4096, kMaxCachedCoarse = 64;

int size_class(std::size_t n) {
  if (n <= 512) return n == 0 ? 0 : static_cast<int>((n + 15) / 16) - 1;
  if (n <= 1024) return kFineClasses;
  if (n <= 2048) return kFineClasses + 1;
  if (n <= 4096) return kFineClasses + 2;
  return kFineClasses + 3;
}

std::size_t class_bytes(int c) {
  return c < kFineClasses ? static_cast<std::size_t>(c + 1) * 16 : std::size_t{1024} << (c - kFineClasses);
}

struct FreeBlock {
  FreeBlock* next;
};

// A thread's lists are kFresh (empty, no exit drain yet) until it first caches a block, then kLive
// until the drain has run, then kDead (empty for good: later frees go to ::operator delete).
enum class State : uint8_t { kFresh, kLive, kDead };

// Trivially destructible, so it can still be read after the thread's destructors have run.
struct Lists {
  FreeBlock* head[kClasses];
  uint32_t count[kClasses];
  State state;
};
thread_local Lists t_lists{};

void release_all(Lists& l) noexcept {
  for (int c = 0; c < kClasses; ++c) {
    while (FreeBlock* b = l.head[c]) {
      l.head[c] = b->next;
      ::operator delete(static_cast<void*>(b));
    }
    l.count[c] = 0;
  }
}

// Returns the lists' blocks when the thread ends.
struct Drain {
  ~Drain() {
    release_all(t_lists);
    t_lists.state = State::kDead;
  }
};
thread_local Drain t_drain;

void push(Lists& l, void* p, int c) noexcept {
  auto* b = static_cast<FreeBlock*>(p);
  b->next = l.head[c];
  l.head[c] = b;
  ++l.count[c];
}

// A thread's first cached block, off the hot path: registers the drain, then caches the block.
[[gnu::noinline]] void first_free(Lists& l, void* p, int c) noexcept {
  (void)&t_drain;  // the first odr-use registers its destructor for this thread's exit
  l.state = State::kLive;
  push(l, p, c);
}

}  // namespace

void* small_alloc(std::size_t n) {
  if (n > kSmallAllocMax) return ::operator new(n);
  const int c = size_class(n);
  Lists& l = t_lists;
  if (FreeBlock* b = l.head[c]) {
    l.head[c] = b->next;
    --l.count[c];
    return b;
  }
  return ::operator new(class_bytes(c));
}

void small_free(void* p, std::size_t n) noexcept {
  if (!p) return;
  if (n > kSmallAllocMax) {
    ::operator delete(p);
    return;
  }
  const int c = size_class(n);
  Lists& l = t_lists;
  const uint32_t cap = c < kFineClasses ? kMaxCachedFine : kMaxCachedCoarse;
  if (l.state != State::kLive || l.count[c] >= cap) [[unlikely]] {
    if (l.state == State::kFresh) {
      first_free(l, p, c);
    } else {
      ::operator delete(p);  // the list is full, or the thread's drain has run
    }
    return;
  }
  push(l, p, c);
}

}  // namespace ember
