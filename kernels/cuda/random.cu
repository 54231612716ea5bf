// CUDA random fills: one thread per Philox counter block, whose values come from
// kernels/common/random.h as on the CPU. Uniform and Bernoulli draws equal the CPU's bit for bit;
// normal draws go through the device's double log/sin/cos and may differ from the CPU's in the
// last bit of an f64 value.
#include "kernels/common/random.h"
#include "kernels/cuda/launch.h"
#include "kernels/kernels.h"

namespace ember::kernels {
namespace {

template <typename T>
__global__ void random_kernel(RandomDist dist, uint64_t seed, uint64_t offset, double a, double b, int64_t n, T* out) {
  const int64_t blk = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (blk * 4 >= n) return;
  T vals[4];
  random_block<T>(dist, seed, offset + static_cast<uint64_t>(blk), a, b, vals);
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
