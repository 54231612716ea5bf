// The block cache behind every caching allocator (runtime/block_cache.h).
#include "runtime/block_cache.h"

#include <algorithm>

#include "ember/runtime/error.h"

namespace ember {

BlockCache::BlockCache(RawAlloc raw_alloc, RawFree raw_free, int device, size_t granule, uint64_t max_cached_bytes)
    : raw_alloc_(raw_alloc), raw_free_(raw_free), device_(device), granule_(granule),
      max_cached_bytes_(max_cached_bytes) {
  EMBER_CHECK(granule > 0 && (granule & (granule - 1)) == 0, "[allocator] block granule ", granule,
              " is not a power of two");
}

size_t BlockCache::round(size_t n) const {
  if (n == 0) n = 1;
  if (n <= 4096) return (n + granule_ - 1) & ~(granule_ - 1);
  size_t p = 1;
  while (p < n) p <<= 1;
  const size_t step = std::max(granule_, p / 8);  // eighths of the next power of two
  return (n + step - 1) & ~(step - 1);
}

void* BlockCache::alloc(size_t nbytes) {
  const size_t n = round(nbytes);
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = free_blocks_.find(n);
    if (it != free_blocks_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      cached_bytes_ -= n;
      stats_.cache_hits++;
      stats_.allocated_bytes += n;
      stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
      return p;
    }
  }
  void* p = nullptr;
  try {
    p = raw_alloc_(device_, n);
  } catch (const Error&) {
    empty();  // give cached blocks back and try once more
    p = raw_alloc_(device_, n);
  }
  std::lock_guard<std::mutex> lk(mu_);
  stats_.system_allocs++;
  stats_.allocated_bytes += n;
  stats_.reserved_bytes += n;
  stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  return p;
}

void BlockCache::free(void* p, size_t nbytes) {
  if (!p) return;
  const size_t n = round(nbytes);
  std::lock_guard<std::mutex> lk(mu_);
  stats_.allocated_bytes -= n;
  if (cached_bytes_ + n <= max_cached_bytes_) {
    free_blocks_[n].push_back(p);
    cached_bytes_ += n;
  } else {
    stats_.reserved_bytes -= n;
    raw_free_(device_, p);
  }
}

AllocatorStats BlockCache::stats() {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

void BlockCache::empty() {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& [n, blocks] : free_blocks_) {
    for (void* p : blocks) raw_free_(device_, p);
    stats_.reserved_bytes -= n * blocks.size();
    blocks.clear();
  }
  cached_bytes_ = 0;
}

}  // namespace ember
