// Caching allocators. CPU: 64-byte aligned blocks, sizes rounded to size classes (64 B steps up
// to 4 KiB, then quarter powers of two), freed blocks kept per class for reuse, up to a cache cap.
// CUDA blocks come from kernels::cuda_malloc and are cached the same way.
#include "runtime/allocator.h"

#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "kernels/kernels.h"
#include "runtime/error.h"

namespace ember {
namespace {

constexpr size_t kAlign = 64;
constexpr uint64_t kMaxCachedBytes = 4ull << 30;

size_t round_size(size_t n) {
  if (n == 0) n = 1;
  if (n <= 4096) return (n + kAlign - 1) / kAlign * kAlign;
  size_t p = 1;
  while (p < n) p <<= 1;
  size_t step = p / 8;  // eighths of the next power of two
  return (n + step - 1) / step * step;
}

struct Cache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;
  AllocatorStats stats;
  uint64_t cached_bytes = 0;
};

// Never destroyed: tensors held in statics are freed during exit, after function-local statics die.
Cache& cache_for(Device d) {
  static Cache* cpu = new Cache;
  static Cache* cuda = new Cache[16];
  if (d.is_cpu()) return *cpu;
  EMBER_CHECK(d.index >= 0 && d.index < 16, "[allocator] CUDA device index ", d.index, " out of range");
  return cuda[d.index];
}

void* system_alloc(Device d, size_t n) {
  if (d.is_cpu()) {
    void* p = std::aligned_alloc(kAlign, n);
    EMBER_CHECK(p != nullptr, "[allocator] out of CPU memory allocating ", n, " bytes");
    return p;
  }
  return kernels::cuda_malloc(d.index, n);
}

void system_free(Device d, void* p) {
  if (d.is_cpu()) std::free(p);
  else kernels::cuda_free(d.index, p);
}

}  // namespace

void* device_alloc(Device d, size_t nbytes) {
  size_t n = round_size(nbytes);
  Cache& c = cache_for(d);
  {
    std::lock_guard<std::mutex> lk(c.mu);
    auto it = c.free_blocks.find(n);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.cached_bytes -= n;
      c.stats.cache_hits++;
      c.stats.allocated_bytes += n;
      c.stats.peak_allocated_bytes = std::max(c.stats.peak_allocated_bytes, c.stats.allocated_bytes);
      return p;
    }
  }
  void* p = nullptr;
  try {
    p = system_alloc(d, n);
  } catch (const Error&) {
    empty_cache(d);  // give cached blocks back and try once more
    p = system_alloc(d, n);
  }
  std::lock_guard<std::mutex> lk(c.mu);
  c.stats.system_allocs++;
  c.stats.allocated_bytes += n;
  c.stats.reserved_bytes += n;
  c.stats.peak_allocated_bytes = std::max(c.stats.peak_allocated_bytes, c.stats.allocated_bytes);
  return p;
}

void device_free(Device d, void* p, size_t nbytes) {
  if (!p) return;
  size_t n = round_size(nbytes);
  Cache& c = cache_for(d);
  std::lock_guard<std::mutex> lk(c.mu);
  c.stats.allocated_bytes -= n;
  if (c.cached_bytes + n <= kMaxCachedBytes) {
    c.free_blocks[n].push_back(p);
    c.cached_bytes += n;
  } else {
    c.stats.reserved_bytes -= n;
    system_free(d, p);
  }
}

AllocatorStats allocator_stats(Device d) {
  Cache& c = cache_for(d);
  std::lock_guard<std::mutex> lk(c.mu);
  return c.stats;
}

void empty_cache(Device d) {
  Cache& c = cache_for(d);
  std::lock_guard<std::mutex> lk(c.mu);
  for (auto& [n, blocks] : c.free_blocks) {
    for (void* p : blocks) system_free(d, p);
    c.stats.reserved_bytes -= n * blocks.size();
    blocks.clear();
  }
  c.cached_bytes = 0;
}

}  // namespace ember
