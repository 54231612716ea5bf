// CPU random fills from Philox4x32-10 (kernels/common/random.h): element i of a draw uses counter
// block (offset + i/4), lane i%4, so results are independent of the thread split.
#include "kernels/common/random.h"
#include "kernels/kernels.h"
#include "ember/runtime/parallel.h"

namespace ember::kernels {

void random_cpu(RandomDist dist, uint64_t seed, uint64_t offset, double a, double b, const Tensor& out) {
  int64_t n = out.numel();
  int64_t blocks = (n + 3) / 4;
  dispatch_floating(out.dtype(), "random", [&](auto tag) {
    using T = decltype(tag);
    T* p = static_cast<T*>(out.data_ptr());
    parallel_for(0, blocks, 4096, [&](int64_t bb, int64_t be) {
      for (int64_t blk = bb; blk < be; ++blk) {
        T vals[4];
        random_block<T>(dist, seed, offset + static_cast<uint64_t>(blk), a, b, vals);
        int64_t base = blk * 4;
        for (int l = 0; l < 4 && base + l < n; ++l) p[base + l] = vals[l];
      }
    });
  });
}

}  // namespace ember::kernels
