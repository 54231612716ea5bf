// Memory for tensor storage. The CPU allocator caches freed blocks by size class so that a
// training step in steady state reuses blocks instead of calling malloc; blocks are 64-byte aligned.
// Each CUDA device has its own cache, and so has pinned host memory (runtime/block_cache.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

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

// CUDA graph capture (runtime/cuda_graph.h uses these): from begin_capture_pool(d) until
// end_capture_pool(d), allocations on device d come from a private pool whose blocks serve nothing
// else while the returned handle lives (a graph replays into them), and blocks of the general
// cache freed meanwhile are held back (the graph may read them). Destroy the graph, then drop the
// handle: the pool's blocks go back, those still in use when they are freed.
EMBER_API void begin_capture_pool(Device d);
EMBER_API std::shared_ptr<void> end_capture_pool(Device d);

// Page-locked ("pinned") host memory, for buffers bound for a CUDA device (fast, asynchronous
// copies), e.g. the DataLoader's batches. In a CUDA build with a device: cached page-locked blocks
// (ordinary ones should the driver refuse); otherwise ordinary blocks of the CPU allocator. Safe to
// call from any thread; free with the nbytes given to alloc.
EMBER_API void* pinned_host_alloc(size_t nbytes);
EMBER_API void pinned_host_free(void* p, size_t nbytes);
// Whether pinned_host_alloc hands out page-locked memory (a CUDA build with a device).
EMBER_API bool pinned_host_memory_available();
// Marks pinned block p (as pinned_host_alloc returned it) as read by work queued on the CUDA
// device's current stream, such as an asynchronous copy to the device: after pinned_host_free the
// block is handed out again only once that work completed (an event, polled, never waited for).
// False when p is not a live page-locked block (ordinary memory, no device): the caller must then
// not leave work reading it in flight.
EMBER_API bool pinned_host_record_use(void* p, Device device);
// Whether p is a live page-locked block of pinned_host_alloc (false without a device).
EMBER_API bool pinned_host_owns(void* p);
// The page-locked block cache's counters (all zero without a device).
EMBER_API AllocatorStats pinned_host_stats();

}  // namespace ember
