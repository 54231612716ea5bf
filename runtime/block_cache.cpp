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

BlockCache::~BlockCache() {
  if (!events_.destroy) return;
  for (auto& [p, evs] : uses_)
    for (void* e : evs) events_.destroy(e);
  for (Pending& q : pending_)
    for (void* e : q.events) events_.destroy(e);
}

void BlockCache::set_event_ops(EventOps ops) {
  std::lock_guard<std::mutex> lk(mu_);
  events_ = ops;
}

bool BlockCache::record_use(void* p, int device) {
  if (!p) return false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!events_.record || uses_.count(p) == 0) return false;
  }
  // Recording is a driver call: outside the lock. The block's owner, the caller, does not free
  // it meanwhile; should it be gone anyway, the event is dropped.
  void* e = events_.record(device);
  std::lock_guard<std::mutex> lk(mu_);
  auto it = uses_.find(p);
  if (it == uses_.end()) {
    events_.destroy(e);
    return false;
  }
  it->second.push_back(e);
  return true;
}

bool BlockCache::owns(void* p) {
  std::lock_guard<std::mutex> lk(mu_);
  return uses_.count(p) > 0;
}

size_t BlockCache::pending_blocks() {
  std::lock_guard<std::mutex> lk(mu_);
  return pending_.size();
}

void BlockCache::poll_pending() {
  for (size_t i = 0; i < pending_.size();) {
    Pending& q = pending_[i];
    while (!q.events.empty() && events_.query(q.events.back())) {
      events_.destroy(q.events.back());
      q.events.pop_back();
    }
    if (!q.events.empty()) {
      ++i;
      continue;
    }
    const Pending done = q;
    pending_[i] = pending_.back();
    pending_.pop_back();
    cache_or_release(done.p, done.n);
  }
}

void BlockCache::cache_or_release(void* p, size_t n) {
  if (cached_bytes_ + n <= max_cached_bytes_) {
    free_blocks_[n].push_back(p);
    cached_bytes_ += n;
  } else {
    stats_.reserved_bytes -= n;
    raw_free_(device_, p);
  }
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
    if (!pending_.empty()) poll_pending();
    auto it = free_blocks_.find(n);
    if (it != free_blocks_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      cached_bytes_ -= n;
      stats_.cache_hits++;
      stats_.allocated_bytes += n;
      stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
      if (events_.record) uses_.emplace(p, std::vector<void*>{});
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
  if (events_.record) uses_.emplace(p, std::vector<void*>{});
  return p;
}

void BlockCache::free(void* p, size_t nbytes) {
  if (!p) return;
  const size_t n = round(nbytes);
  std::lock_guard<std::mutex> lk(mu_);
  stats_.allocated_bytes -= n;
  if (events_.record) {
    auto it = uses_.find(p);
    if (it != uses_.end()) {
      std::vector<void*> evs = std::move(it->second);
      uses_.erase(it);
      if (!evs.empty()) {
        // Still read by queued device work: reused once that completed. A block whose work is
        // already done goes back at once.
        pending_.push_back(Pending{p, n, std::move(evs)});
        poll_pending();
        return;
      }
    }
    if (!pending_.empty()) poll_pending();
  }
  cache_or_release(p, n);
}

AllocatorStats BlockCache::stats() {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

void BlockCache::empty() {
  std::lock_guard<std::mutex> lk(mu_);
  if (!pending_.empty()) poll_pending();  // blocks still in use by the device stay pending
  for (auto& [n, blocks] : free_blocks_) {
    for (void* p : blocks) raw_free_(device_, p);
    stats_.reserved_bytes -= n * blocks.size();
    blocks.clear();
  }
  cached_bytes_ = 0;
}

}  // namespace ember
