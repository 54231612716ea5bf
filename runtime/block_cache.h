// One caching allocator, in front of a raw one (aligned malloc, cudaMalloc, cudaHostAlloc): sizes
// are rounded to classes and a freed block waits, up to a byte cap, for the next request of its
// class, so a training step in steady state makes no raw allocation. runtime/allocator.cpp keeps
// one per memory kind (CPU, each CUDA device, pinned host). Thread-safe.
//
// Blocks read by asynchronous device work (pinned host memory a copy to a CUDA device reads after
// the host moved on) carry events: record_use() marks the point of the device's stream after
// which the block is no longer read, and a freed block with events waits in a pending list until
// every event has completed, polled (never waited for) on the next alloc or free, so a batch
// buffer is not refilled while its copy to the device is still running.
#pragma once
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "ember/runtime/allocator.h"

namespace ember {

class BlockCache {
 public:
  // The raw allocator: alloc returns a block of nbytes (never null; throws ember::Error on
  // failure), free releases one; `device` is passed through to both.
  using RawAlloc = void* (*)(int device, size_t nbytes);
  using RawFree = void (*)(int device, void* p);

  // Sizes round up to multiples of `granule` (a power of two) up to 4 KiB, at least one granule,
  // and above that to eighths of the next power of two (no finer than the granule).
  BlockCache(RawAlloc raw_alloc, RawFree raw_free, int device, size_t granule, uint64_t max_cached_bytes);
  ~BlockCache();

  // Events for record_use(): record one on a device's current stream (returns its handle), query
  // whether it completed (no wait), destroy it. The CUDA ones for pinned memory; tests use fakes.
  struct EventOps {
    void* (*record)(int device) = nullptr;
    bool (*query)(void* event) = nullptr;
    void (*destroy)(void* event) = nullptr;
  };
  void set_event_ops(EventOps ops);
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  // A block of at least nbytes: a cached one of its class, else a raw one (after a failed raw
  // allocation the cached blocks go back to the raw allocator and it is tried once more).
  void* alloc(size_t nbytes);
  // Takes back a block of alloc(nbytes); kept for reuse while the cache is under its cap.
  void free(void* p, size_t nbytes);
  // Marks live block p (a pointer alloc returned) as read by work queued on `device`'s current
  // stream: once freed, it is reused only after that work completed. False, and nothing recorded,
  // when p is not a live block of this cache or no event ops are set.
  bool record_use(void* p, int device);
  // Whether p is a live block of this cache (known only with event ops set).
  bool owns(void* p);
  // Freed blocks still waiting for their events.
  size_t pending_blocks();
  AllocatorStats stats();
  // Returns the cached blocks to the raw allocator.
  void empty();
  size_t round(size_t nbytes) const;

 private:
  RawAlloc raw_alloc_;
  RawFree raw_free_;
  int device_;
  size_t granule_;
  uint64_t max_cached_bytes_;
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_blocks_;  // rounded size -> cached blocks
  // With event ops: the live blocks that have recorded uses (pointer -> events), and freed blocks
  // waiting for theirs.
  struct Pending {
    void* p;
    size_t n;
    std::vector<void*> events;
  };
  void cache_or_release(void* p, size_t n);  // mu_ held
  void poll_pending();                        // mu_ held
  EventOps events_;
  std::unordered_map<void*, std::vector<void*>> uses_;
  std::vector<Pending> pending_;
  AllocatorStats stats_;
  uint64_t cached_bytes_ = 0;
};

}  // namespace ember
