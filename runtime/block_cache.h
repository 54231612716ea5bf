// One caching allocator, in front of a raw one (aligned malloc, cudaMalloc, cudaHostAlloc): sizes
// are rounded to classes and a freed block waits, up to a byte cap, for the next request of its
// class, so a training step in steady state makes no raw allocation. runtime/allocator.cpp keeps
// one per memory kind (CPU, each CUDA device, pinned host). Thread-safe.
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
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  // A block of at least nbytes: a cached one of its class, else a raw one (after a failed raw
  // allocation the cached blocks go back to the raw allocator and it is tried once more).
  void* alloc(size_t nbytes);
  // Takes back a block of alloc(nbytes); kept for reuse while the cache is under its cap.
  void free(void* p, size_t nbytes);
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
  AllocatorStats stats_;
  uint64_t cached_bytes_ = 0;
};

}  // namespace ember
