// A small thread pool for the CPU kernels. parallel_for splits [begin, end) into at most
// num_threads chunks of at least `grain` iterations; the calling thread runs one chunk. Nested
// calls run serially. Results must not depend on the split (kernels write disjoint outputs).
#pragma once
#include <cstdint>
#include <type_traits>

#include "ember/runtime/api.h"

namespace ember {

// Default: EMBER_NUM_THREADS if set, else the number of hardware threads.
EMBER_API void set_num_threads(int n);
EMBER_API int get_num_threads();

// A non-owning reference to a callable `void(int64_t begin, int64_t end)`: no allocation, unlike
// std::function, whose small-buffer limit most capturing lambdas exceed.
class ChunkFnRef {
 public:
  template <typename Fn>
  explicit ChunkFnRef(Fn& fn)
      : obj_(const_cast<void*>(static_cast<const void*>(&fn))), call_([](void* o, int64_t b, int64_t e) { (*static_cast<Fn*>(o))(b, e); }) {}
  void operator()(int64_t b, int64_t e) const { call_(obj_, b, e); }

 private:
  void* obj_;
  void (*call_)(void*, int64_t, int64_t);
};

EMBER_API void parallel_for_impl(int64_t begin, int64_t end, int64_t grain, ChunkFnRef fn);

template <typename Fn>
void parallel_for(int64_t begin, int64_t end, int64_t grain, Fn&& fn) {
  if (end <= begin) return;
  if (end - begin <= grain || get_num_threads() == 1) {
    fn(begin, end);
    return;
  }
  parallel_for_impl(begin, end, grain, ChunkFnRef(fn));
}

}  // namespace ember
