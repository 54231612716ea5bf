// The caching allocators, one BlockCache (runtime/block_cache.h) each: the CPU's (64-byte aligned
// blocks, 64-byte classes up to 4 KiB), one per CUDA device over kernels::cuda_malloc, and pinned
// host memory over kernels::cuda_host_alloc (4 KiB pages).
#include "ember/runtime/allocator.h"

#include <cstdlib>
#include <mutex>
#include <unordered_set>

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

struct PinnedHost {
  BlockCache cache{pinned_raw_alloc, pinned_raw_free, 0, kPageBytes, kMaxCachedPinnedBytes};
  std::mutex mu;
  std::unordered_set<void*> unpinned;  // ordinary blocks handed out when the driver refused
};

PinnedHost& pinned_host() {
  static PinnedHost* p = new PinnedHost;  // never destroyed, as the caches above
  return *p;
}

}  // namespace

void* device_alloc(Device d, size_t nbytes) { return cache_for(d).alloc(nbytes); }

void device_free(Device d, void* p, size_t nbytes) { cache_for(d).free(p, nbytes); }

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

}  // namespace ember
