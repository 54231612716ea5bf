// The caching allocators, one BlockCache (runtime/block_cache.h) each: the CPU's (64-byte aligned
// blocks, 64-byte classes up to 4 KiB), one per CUDA device over kernels::cuda_malloc, and pinned
// host memory over kernels::cuda_host_alloc (4 KiB pages).
#include "ember/runtime/allocator.h"

#include <atomic>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "ember/config.h"
#include "kernels/kernels.h"
#include "runtime/block_cache.h"
#include "ember/runtime/error.h"

namespace ember {
namespace {

constexpr size_t kAlign = 64;
constexpr uint64_t kMaxCachedBytes = 4ull << 30;
constexpr int kMaxCudaDevices = 16;
constexpr size_t kPageBytes = 4096;
constexpr uint64_t kMaxCachedPinnedBytes = 256ull << 20;

void* cpu_raw_alloc(int, size_t n) {
  void* p = std::aligned_alloc(kAlign, n);
  EMBER_CHECK(p != nullptr, "[allocator] out of CPU memory allocating ", n, " bytes");
  return p;
}
void cpu_raw_free(int, void* p) { std::free(p); }
void* cuda_raw_alloc(int device, size_t n) { return kernels::cuda_malloc(device, n); }
void cuda_raw_free(int device, void* p) { kernels::cuda_free(device, p); }
void* pinned_raw_alloc(int, size_t n) { return kernels::cuda_host_alloc(n); }
void pinned_raw_free(int, void* p) { kernels::cuda_host_free(p); }

// Never destroyed: tensors held in statics are freed during exit, after function-local statics die.
BlockCache& cache_for(Device d) {
  if (d.is_cpu()) {
    static BlockCache* cpu = new BlockCache(cpu_raw_alloc, cpu_raw_free, 0, kAlign, kMaxCachedBytes);
    return *cpu;
  }
  EMBER_CHECK(d.index >= 0 && d.index < kMaxCudaDevices, "[allocator] CUDA device index ", d.index, " out of range");
  static BlockCache** cuda = [] {
    auto** caches = new BlockCache*[kMaxCudaDevices];
    for (int i = 0; i < kMaxCudaDevices; ++i)
      caches[i] = new BlockCache(cuda_raw_alloc, cuda_raw_free, i, kAlign, kMaxCachedBytes);
    return caches;
  }();
  return *cuda[d.index];
}

#if EMBER_WITH_CUDA
// A pinned block read by a queued copy to a device is reused only once the copy ran: CUDA events.
BlockCache::EventOps cuda_event_ops() {
  BlockCache::EventOps ops;
  ops.record = [](int device) { return kernels::cuda_event_record(device); };
  ops.query = [](void* e) { return kernels::cuda_event_query(e); };
  ops.destroy = [](void* e) { kernels::cuda_event_destroy(e); };
  return ops;
}
#endif

struct PinnedHost {
#if EMBER_WITH_CUDA
  PinnedHost() { cache.set_event_ops(cuda_event_ops()); }
#endif
  BlockCache cache{pinned_raw_alloc, pinned_raw_free, 0, kPageBytes, kMaxCachedPinnedBytes};
  std::mutex mu;
  std::unordered_set<void*> unpinned;  // ordinary blocks handed out when the driver refused
};

PinnedHost& pinned_host() {
  static PinnedHost* p = new PinnedHost;  // never destroyed, as the caches above
  return *p;
}

#if EMBER_WITH_CUDA
// --- CUDA graph capture pools -------------------------------------------------------------------
//
// While a graph is captured on a device, its allocations come from a private pool: the graph
// writes those blocks at every replay, so they serve nothing else while the graph lives, and a
// block freed during the capture is reused only by later allocations of the same capture (which
// the graph orders after). Blocks of the general cache freed during the capture may still be read
// by the graph: they are held until the pool is released. A released pool gives its free blocks
// back to the raw allocator, and the blocks still in use as they are freed.
struct CapturePool {
  explicit CapturePool(int dev) : device(dev), cache(cuda_raw_alloc, cuda_raw_free, dev, kAlign, ~uint64_t{0}) {}
  int device;
  BlockCache cache;
  std::vector<std::pair<void*, size_t>> held;  // general blocks freed during the capture
  size_t live = 0;                             // blocks handed out and not freed
  bool released = false;
};

struct CaptureRouting {
  std::mutex mu;
  std::atomic<int> pools{0};  // pools capturing, alive, or released with blocks still in use
  std::shared_ptr<CapturePool> capturing[kMaxCudaDevices];
  std::unordered_map<void*, std::shared_ptr<CapturePool>> owner;  // pool blocks in use
};

CaptureRouting& routing() {
  static auto* r = new CaptureRouting;  // never destroyed, as the caches above
  return *r;
}

bool capture_routing_active() { return routing().pools.load(std::memory_order_acquire) > 0; }
#endif

}  // namespace

void* device_alloc(Device d, size_t nbytes) {
#if EMBER_WITH_CUDA
  if (d.is_cuda() && capture_routing_active() && d.index >= 0 && d.index < kMaxCudaDevices) {
    CaptureRouting& r = routing();
    std::shared_ptr<CapturePool> pool;
    {
      std::lock_guard<std::mutex> lk(r.mu);
      pool = r.capturing[d.index];
    }
    if (pool) {
      void* p = pool->cache.alloc(nbytes);
      std::lock_guard<std::mutex> lk(r.mu);
      r.owner[p] = pool;
      pool->live++;
      return p;
    }
  }
#endif
  return cache_for(d).alloc(nbytes);
}

void device_free(Device d, void* p, size_t nbytes) {
#if EMBER_WITH_CUDA
  if (p && d.is_cuda() && capture_routing_active()) {
    CaptureRouting& r = routing();
    std::unique_lock<std::mutex> lk(r.mu);
    auto it = r.owner.find(p);
    if (it != r.owner.end()) {
      std::shared_ptr<CapturePool> pool = std::move(it->second);
      r.owner.erase(it);
      pool->live--;
      const bool released = pool->released, last = released && pool->live == 0;
      lk.unlock();
      pool->cache.free(p, nbytes);  // kept for the graph and this capture's later allocations
      if (released) pool->cache.empty();
      if (last) r.pools.fetch_sub(1, std::memory_order_acq_rel);
      return;
    }
    if (d.index >= 0 && d.index < kMaxCudaDevices && r.capturing[d.index]) {
      r.capturing[d.index]->held.emplace_back(p, nbytes);
      return;
    }
  }
#endif
  cache_for(d).free(p, nbytes);
}

#if EMBER_WITH_CUDA
void begin_capture_pool(Device d) {
  EMBER_CHECK(d.is_cuda() && d.index >= 0 && d.index < kMaxCudaDevices,
              "[allocator] a capture pool needs a CUDA device, got ", d.str());
  CaptureRouting& r = routing();
  std::lock_guard<std::mutex> lk(r.mu);
  EMBER_CHECK(!r.capturing[d.index], "[allocator] a capture is already in progress on ", d.str());
  r.capturing[d.index] = std::make_shared<CapturePool>(d.index);
  r.pools.fetch_add(1, std::memory_order_acq_rel);
}

std::shared_ptr<void> end_capture_pool(Device d) {
  CaptureRouting& r = routing();
  std::shared_ptr<CapturePool> pool;
  {
    std::lock_guard<std::mutex> lk(r.mu);
    EMBER_CHECK(d.is_cuda() && d.index >= 0 && d.index < kMaxCudaDevices && r.capturing[d.index],
                "[allocator] no capture is in progress on ", d.str());
    pool = std::move(r.capturing[d.index]);
  }
  // The handle's deleter releases the pool: the caller destroys the graph first.
  CapturePool* raw = pool.get();
  return std::shared_ptr<void>(raw, [pool](void*) mutable {
    CaptureRouting& rr = routing();
    std::vector<std::pair<void*, size_t>> held;
    bool last = false;
    {
      std::lock_guard<std::mutex> lk(rr.mu);
      pool->released = true;
      held.swap(pool->held);
      last = pool->live == 0;
    }
    pool->cache.empty();
    for (auto& [p, n] : held) cache_for(cuda_device(pool->device)).free(p, n);
    if (last) rr.pools.fetch_sub(1, std::memory_order_acq_rel);
  });
}
#else
void begin_capture_pool(Device d) { kernels::cuda_graph_begin_capture(d.index); }  // throws: no CUDA backend
std::shared_ptr<void> end_capture_pool(Device d) {
  kernels::cuda_graph_end_capture(d.index);  // throws: no CUDA backend
  return nullptr;
}
#endif

AllocatorStats allocator_stats(Device d) { return cache_for(d).stats(); }

void empty_cache(Device d) { cache_for(d).empty(); }

bool pinned_host_memory_available() { return kernels::cuda_device_count() > 0; }

void* pinned_host_alloc(size_t nbytes) {
  if (!pinned_host_memory_available()) return device_alloc(kCPU, nbytes);
  PinnedHost& h = pinned_host();
  try {
    return h.cache.alloc(nbytes);
  } catch (const Error&) {
    // Page-locked memory is a nicety: fall back to ordinary memory, remembered so that
    // pinned_host_free returns it to the CPU allocator.
    void* p = device_alloc(kCPU, nbytes);
    std::lock_guard<std::mutex> lk(h.mu);
    h.unpinned.insert(p);
    return p;
  }
}

void pinned_host_free(void* p, size_t nbytes) {
  if (!p) return;
  if (!pinned_host_memory_available()) return device_free(kCPU, p, nbytes);
  PinnedHost& h = pinned_host();
  bool unpinned = false;
  {
    std::lock_guard<std::mutex> lk(h.mu);
    unpinned = h.unpinned.erase(p) > 0;
  }
  if (unpinned) device_free(kCPU, p, nbytes);
  else h.cache.free(p, nbytes);
}

AllocatorStats pinned_host_stats() { return pinned_host().cache.stats(); }

#if EMBER_WITH_CUDA
bool pinned_host_record_use(void* p, Device device) {
  if (!p || !device.is_cuda() || !pinned_host_memory_available()) return false;
  return pinned_host().cache.record_use(p, device.index);
}

bool pinned_host_owns(void* p) { return p && pinned_host_memory_available() && pinned_host().cache.owns(p); }
#else
// Without a CUDA backend no memory is page-locked.
bool pinned_host_record_use(void*, Device) { return false; }
bool pinned_host_owns(void*) { return false; }
#endif

}  // namespace ember
