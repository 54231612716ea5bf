// CUDA random fills from Philox4x32-10 with exactly the CPU's scheme (kernels/cpu/random.cpp):
// element i uses counter block (offset + i/4), lane i%4; uniform and Bernoulli values take the top
// 24 bits (f32) or all 32 bits (f64) of the lane; normals use Box-Muller on lane pairs in double.
// One thread per counter block. Uniform and Bernoulli draws equal the CPU's bit for bit; normal
// draws go through the device's double log/sin/cos and may differ from the CPU's in the last bit
// of an f64 value.
#include <cmath>

#include "kernels/cuda/device/numeric.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/kernels.h"

namespace ember::kernels {
namespace {

constexpr double kTwoPi = 2.0 * 3.14159265358979323846;  // 2.0 * M_PI, as the CPU computes it

template <typename T>
__global__ void random_kernel(RandomDist dist, uint64_t seed, uint64_t offset, double a, double b, int64_t n, T* out) {
  const int64_t blk = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (blk * 4 >= n) return;
  uint32_t r[4];
  cu::philox4x32(offset + static_cast<uint64_t>(blk), seed, r);
  T vals[4];
  if (dist == RandomDist::Normal) {
#pragma unroll
    for (int pair = 0; pair < 2; ++pair) {
      const double u1 = (static_cast<double>(r[2 * pair]) + 1.0) * 0x1p-32;  // (0, 1]
      const double u2 = static_cast<double>(r[2 * pair + 1]) * 0x1p-32;       // [0, 1)
      const double rad = std::sqrt(-2.0 * std::log(u1));
      vals[2 * pair] = static_cast<T>(a + b * rad * std::cos(kTwoPi * u2));
      vals[2 * pair + 1] = static_cast<T>(a + b * rad * std::sin(kTwoPi * u2));
    }
  } else {
#pragma unroll
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
  const int64_t base = blk * 4;
#pragma unroll
  for (int l = 0; l < 4; ++l)
    if (base + l < n) out[base + l] = vals[l];
}

}  // namespace

void random_cuda(RandomDist dist, uint64_t seed, uint64_t offset, double a, double b, const Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  cu::DeviceGuard g(out);
  const int64_t blocks = (n + 3) / 4;
  dispatch_floating(out.dtype(), "random", [&](auto tag) {
    using T = decltype(tag);
    random_kernel<T><<<cu::blocks_for(blocks, cu::kThreads), cu::kThreads, 0, cu::current_stream()>>>(
        dist, seed, offset, a, b, n, static_cast<T*>(out.data_ptr()));
    cu::check_launch("random_kernel");
  });
}

}  // namespace ember::kernels
