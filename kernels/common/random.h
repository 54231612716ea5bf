// The values of one Philox block for the random kernels of both devices: element i of a draw
// takes counter block (offset + i/4), lane i%4, so a draw depends on (seed, offset) only, never on
// the thread split or the device. Uniform and Bernoulli draws are bit-identical on both devices.
#pragma once
#include <cmath>
#include <cstdint>

#include "ember/runtime/host_device.h"
#include "kernels/common/philox.h"

namespace ember::kernels {

enum class RandomDist { Uniform, Normal, Bernoulli };

// The four values of counter block `block` under `seed` for dist(a, b): Uniform in [a, b) (24
// random bits for f32, which never round up to b, 32 for f64), Normal(mean a, std b) by
// Box-Muller on lane pairs in double, Bernoulli(p a) as 0/1.
template <typename T>
EMBER_HOST_DEVICE inline void random_block(RandomDist dist, uint64_t seed, uint64_t block, double a, double b,
                                           T vals[4]) {
  constexpr double kTwoPi = 2.0 * 3.14159265358979323846;
  uint32_t r[4];
  philox4x32(block, seed, r);
  if (dist == RandomDist::Normal) {
    EMBER_UNROLL
    for (int pair = 0; pair < 2; ++pair) {
      const double u1 = (static_cast<double>(r[2 * pair]) + 1.0) * 0x1p-32;  // (0, 1]
      const double u2 = static_cast<double>(r[2 * pair + 1]) * 0x1p-32;       // [0, 1)
      const double rad = std::sqrt(-2.0 * std::log(u1));
      vals[2 * pair] = static_cast<T>(a + b * rad * std::cos(kTwoPi * u2));
      vals[2 * pair + 1] = static_cast<T>(a + b * rad * std::sin(kTwoPi * u2));
    }
  } else {
    EMBER_UNROLL
    for (int l = 0; l < 4; ++l) {
      const double u = sizeof(T) == 4 ? static_cast<double>(r[l] >> 8) * 0x1p-24 : static_cast<double>(r[l]) * 0x1p-32;
      if (dist == RandomDist::Uniform) {
        const T v = static_cast<T>(a + (b - a) * u);
        vals[l] = v < static_cast<T>(b) ? v : static_cast<T>(a);
      } else {
        vals[l] = u < a ? T(1) : T(0);
      }
    }
  }
}

}  // namespace ember::kernels
