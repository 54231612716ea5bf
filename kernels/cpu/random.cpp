// CPU random fills from Philox4x32-10. Element i of a draw uses counter block (offset + i/4),
// lane i%4, so results are independent of the thread split.
#include <cmath>

#include "kernels/cpu/loops.h"
#include "kernels/kernels.h"
#include "runtime/rng.h"

namespace ember::kernels {

void random_cpu(RandomDist dist, uint64_t seed, uint64_t offset, double a, double b, const Tensor& out) {
  int64_t n = out.numel();
  int64_t blocks = (n + 3) / 4;
  dispatch_floating(out.dtype(), "random", [&](auto tag) {
    using T = decltype(tag);
    T* p = static_cast<T*>(out.data_ptr());
    parallel_for(0, blocks, 4096, [&](int64_t bb, int64_t be) {
      for (int64_t blk = bb; blk < be; ++blk) {
        std::array<uint32_t, 4> r = philox4x32(offset + static_cast<uint64_t>(blk), seed);
        T vals[4];
        if (dist == RandomDist::Normal) {
          for (int pair = 0; pair < 2; ++pair) {
            double u1 = (static_cast<double>(r[2 * pair]) + 1.0) * 0x1p-32;  // (0, 1]
            double u2 = static_cast<double>(r[2 * pair + 1]) * 0x1p-32;       // [0, 1)
            double rad = std::sqrt(-2.0 * std::log(u1));
            vals[2 * pair] = static_cast<T>(a + b * rad * std::cos(2.0 * M_PI * u2));
            vals[2 * pair + 1] = static_cast<T>(a + b * rad * std::sin(2.0 * M_PI * u2));
          }
        } else {
          for (int l = 0; l < 4; ++l) {
            // 24 random bits for f32 (never rounds up to 1), 32 for f64.
            double u = std::is_same_v<T, float> ? static_cast<double>(r[l] >> 8) * 0x1p-24
                                                : static_cast<double>(r[l]) * 0x1p-32;
            if (dist == RandomDist::Uniform) {
              T v = static_cast<T>(a + (b - a) * u);
              vals[l] = v < static_cast<T>(b) ? v : static_cast<T>(a);
            } else {
              vals[l] = u < a ? T(1) : T(0);
            }
          }
        }
        int64_t base = blk * 4;
        for (int l = 0; l < 4 && base + l < n; ++l) p[base + l] = vals[l];
      }
    });
  });
}

}  // namespace ember::kernels
