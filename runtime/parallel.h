// A small thread pool for the CPU kernels. parallel_for splits [begin, end) into at most
// num_threads chunks of at least `grain` iterations; the calling thread runs one chunk. Nested
// calls run serially. Results must not depend on the split (kernels write disjoint outputs).
#pragma once
#include <cstdint>
#include <functional>

#include "runtime/api.h"

namespace ember {

// Default: EMBER_NUM_THREADS if set, else the number of hardware threads.
EMBER_API void set_num_threads(int n);
EMBER_API int get_num_threads();

EMBER_API void parallel_for_impl(int64_t begin, int64_t end, int64_t grain,
                                 const std::function<void(int64_t, int64_t)>& fn);

template <typename Fn>
void parallel_for(int64_t begin, int64_t end, int64_t grain, Fn&& fn) {
  if (end <= begin) return;
  if (end - begin <= grain || get_num_threads() == 1) {
    fn(begin, end);
    return;
  }
  parallel_for_impl(begin, end, grain, std::function<void(int64_t, int64_t)>(fn));
}

}  // namespace ember
