// Recycled memory for the small objects every op creates and drops again (tensor handles and
// storages, autograd nodes, backward closures, gradient lists, the backward pass's bookkeeping):
// per-thread free lists by size class, so that a training step in steady state does not call
// malloc. Blocks come from ::operator new and go back to it when a list is full or its thread
// ends; a block may be freed on another thread than the one that allocated it.
#pragma once
#include <cstddef>
#include <memory>
#include <new>
#include <vector>

#include "ember/runtime/api.h"

namespace ember {

// A block of at least n bytes, aligned to 16 (sizes above kSmallAllocMax go to ::operator new).
EMBER_API void* small_alloc(std::size_t n);
// Returns a block from small_alloc(n); n must be the size it was allocated with.
EMBER_API void small_free(void* p, std::size_t n) noexcept;
inline constexpr std::size_t kSmallAllocMax = 8192;

// A standard allocator over small_alloc, for std::allocate_shared and containers.
template <typename T>
struct PoolAllocator {
  using value_type = T;
  static_assert(alignof(T) <= 16, "PoolAllocator hands out 16-byte aligned blocks");
  PoolAllocator() noexcept = default;
  template <typename U>
  PoolAllocator(const PoolAllocator<U>&) noexcept {}  // NOLINT: rebinding is implicit
  T* allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(small_alloc(n * sizeof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept { small_free(p, n * sizeof(T)); }
  template <typename U>
  bool operator==(const PoolAllocator<U>&) const noexcept {
    return true;
  }
};

template <typename T>
using PoolVector = std::vector<T, PoolAllocator<T>>;

// std::make_shared with the object and its control block in one recycled block.
template <typename T, typename... Args>
std::shared_ptr<T> make_pooled(Args&&... args) {
  return std::allocate_shared<T>(PoolAllocator<T>(), std::forward<Args>(args)...);
}

}  // namespace ember
