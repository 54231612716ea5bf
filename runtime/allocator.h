// Memory for tensor storage. The CPU allocator caches freed blocks by size class so that a
// training step in steady state reuses blocks instead of calling malloc; blocks are 64-byte aligned.
// Each CUDA device has its own cache, and so has pinned host memory (runtime/block_cache.h).
#pragma once
#include <cstddef>
#include <cstdint>

#include "ember/runtime/api.h"
#include "ember/runtime/device.h"

namespace ember {

struct AllocatorStats {
  uint64_t allocated_bytes = 0;   // bytes in live blocks (rounded sizes)
  uint64_t reserved_bytes = 0;    // live + cached
  uint64_t peak_allocated_bytes = 0;
  uint64_t system_allocs = 0;     // calls that went to the system (malloc / cudaMalloc / cudaHostAlloc)
  uint64_t cache_hits = 0;
};

// Returns a block of at least nbytes on the device (never null; throws ember::Error on failure).
EMBER_API void* device_alloc(Device d, size_t nbytes);
EMBER_API void device_free(Device d, void* p, size_t nbytes);
EMBER_API AllocatorStats allocator_stats(Device d);
// Returns cached blocks to the system.
EMBER_API void empty_cache(Device d);

// Page-locked ("pinned") host memory, for buffers bound for a CUDA device (fast, asynchronous
// copies), e.g. the DataLoader's batches. In a CUDA build with a device: cached page-locked blocks
// (ordinary ones should the driver refuse); otherwise ordinary blocks of the CPU allocator. Safe to
// call from any thread; free with the nbytes given to alloc.
EMBER_API void* pinned_host_alloc(size_t nbytes);
EMBER_API void pinned_host_free(void* p, size_t nbytes);
// Whether pinned_host_alloc hands out page-locked memory (a CUDA build with a device).
EMBER_API bool pinned_host_memory_available();
// The page-locked block cache's counters (all zero without a device).
EMBER_API AllocatorStats pinned_host_stats();

}  // namespace ember
