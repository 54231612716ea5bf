// CUDA indexing kernels: index_select / index_add along a dim, and the nll_loss gather/scatter.
// index_add has no atomics: the indices are sorted stably (cub radix sort) and each run of equal
// indices is summed by one thread in the original order, starting from the existing value, which
// is the CPU loop's order, so results are identical to the CPU and from run to run. Indices and
// targets are validated on the device without stopping the host (the front ends queue the checks,
// runtime/device_checks.h), so every kernel here skips an out-of-range one instead of reading or
// writing out of bounds: index_select writes 0, index_add and nll_loss ignore it and nll_loss
// records the first bad target in its status.
#include <cub/device/device_radix_sort.cuh>

#include "kernels/common/dispatch.h"
#include "kernels/common/geometry.h"
#include "kernels/cuda/launch.h"
#include "kernels/kernels.h"

namespace ember::kernels {
namespace {

template <typename W>
__global__ void index_select_kernel(int64_t total, int64_t n_in, int64_t n_idx, int64_t inner, const W* x,
                                    const int64_t* index, W* out) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= total) return;
  const int64_t k = t % inner, row = t / inner, i = row % n_idx, o = row / n_idx;
  const int64_t j = index[i];
  out[t] = j >= 0 && j < n_in ? x[(o * n_in + j) * inner + k] : W{};
}

__global__ void iota_kernel(int64_t n, int64_t* p) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) p[i] = i;
}

// Thread (o, p, k): when sorted position p starts a run of equal indices, adds that run's source
// rows to out in their original order.
template <typename T>
__global__ void index_add_runs_kernel(int64_t total, int64_t n_out, int64_t n_idx, int64_t inner,
                                      const int64_t* keys, const int64_t* perm, const T* src, T* out) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= total) return;
  const int64_t k = t % inner, row = t / inner, p = row % n_idx, o = row / n_idx;
  const int64_t key = keys[p];
  if (p > 0 && keys[p - 1] == key) return;
  if (key < 0 || key >= n_out) return;  // rejected by the front end's check
  T* dst = out + (o * n_out + key) * inner + k;
  T acc = *dst;
  for (int64_t q = p; q < n_idx && keys[q] == key; ++q) acc += src[(o * n_idx + perm[q]) * inner + k];
  *dst = acc;
}

// status[0]: 0 while every target is valid; status[1]: a bad target (skipped: loss and weight 0).
template <typename T>
__global__ void nll_loss_kernel(int64_t M, int64_t C, const T* logp, const int64_t* target, const T* weight,
                                int64_t ignore_index, T* losses, T* weights, unsigned long long* status) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= M) return;
  const int64_t t = target[i];
  if (t == ignore_index) {
    losses[i] = 0;
    weights[i] = 0;
    return;
  }
  if (t < 0 || t >= C) {
    if (atomicCAS(&status[0], 0ull, 1ull) == 0ull) status[1] = static_cast<unsigned long long>(t);
    losses[i] = 0;
    weights[i] = 0;
    return;
  }
  const T w = weight ? weight[t] : T(1);
  losses[i] = -w * logp[i * C + t];
  weights[i] = w;
}

template <typename T>
__global__ void nll_loss_backward_kernel(int64_t M, int64_t C, const T* g, const int64_t* target, const T* weight,
                                         int64_t ignore_index, T* dlogp) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= M) return;
  const int64_t t = target[i];
  if (t == ignore_index || t < 0 || t >= C) return;
  dlogp[i * C + t] = -(weight ? weight[t] : T(1)) * g[i];
}

int bits_for(int64_t max_value) {
  int b = 1;
  while (b < 63 && (int64_t{1} << b) <= max_value) ++b;
  return b;
}

}  // namespace

void index_select_cuda(const Tensor& x, int dim, const Tensor& index, const Tensor& out) {
  const int64_t total = out.numel();
  if (total == 0) return;
  cu::DeviceGuard g(out);
  const AroundDim a = around_dim(x.shape(), dim);
  const int64_t inner = a.inner, n_in = a.size, n_idx = index.numel();
  dispatch_by_size(x.dtype(), [&](auto tag) {
    using W = decltype(tag);
    index_select_kernel<W><<<cu::blocks_for(total, cu::kThreads), cu::kThreads, 0, cu::current_stream()>>>(
        total, n_in, n_idx, inner, static_cast<const W*>(x.data_ptr()), static_cast<const int64_t*>(index.data_ptr()),
        static_cast<W*>(out.data_ptr()));
    cu::check_launch("index_select_kernel");
  });
}

void index_add_cuda(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  const int64_t n_idx = index.numel();
  const AroundDim a = around_dim(out.shape(), dim);
  const int64_t inner = a.inner, total = a.outer * n_idx * inner;
  if (total == 0) return;
  cu::DeviceGuard g(out);
  const int dev = out.device().index;
  const int64_t n_out = a.size;
  cudaStream_t s = cu::current_stream(dev);
  // Stable sort of (index, position) pairs.
  cu::Scratch sorted(dev, static_cast<size_t>(n_idx) * 3 * sizeof(int64_t));
  int64_t* keys_out = sorted.as<int64_t>();
  int64_t* perm_in = keys_out + n_idx;
  int64_t* perm_out = perm_in + n_idx;
  iota_kernel<<<cu::blocks_for(n_idx, cu::kThreads), cu::kThreads, 0, s>>>(n_idx, perm_in);
  cu::check_launch("iota_kernel");
  const int64_t* keys_in = static_cast<const int64_t*>(index.data_ptr());
  const int end_bit = bits_for(std::max<int64_t>(n_out - 1, 1));
  EMBER_CHECK(n_idx < (int64_t{1} << 31), "[index_add] ", n_idx, " indices exceed one sort");
  const int n = static_cast<int>(n_idx);
  size_t temp_bytes = 0;
  EMBER_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, keys_out, perm_in, perm_out, n, 0,
                                                   end_bit, s));
  cu::Scratch temp(dev, temp_bytes);
  EMBER_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.get(), temp_bytes, keys_in, keys_out, perm_in, perm_out, n, 0,
                                                   end_bit, s));
  dispatch_floating(out.dtype(), "index_add", [&](auto tag) {
    using T = decltype(tag);
    index_add_runs_kernel<T><<<cu::blocks_for(total, cu::kThreads), cu::kThreads, 0, s>>>(
        total, n_out, n_idx, inner, keys_out, perm_out, static_cast<const T*>(src.data_ptr()),
        static_cast<T*>(out.data_ptr()));
    cu::check_launch("index_add_runs_kernel");
  });
}

void nll_loss_cuda(const Tensor& logp, const Tensor& target, const Tensor& weight, int64_t ignore_index,
                   const Tensor& out_losses, const Tensor& out_weights, const Tensor& status) {
  const int64_t M = logp.shape()[0], C = logp.shape()[1];
  if (M == 0) return;
  cu::DeviceGuard g(logp);
  const int dev = logp.device().index;
  cudaStream_t s = cu::current_stream(dev);
  EMBER_CHECK(status.dtype() == DType::i64 && status.numel() == 2 && status.device() == logp.device(),
              "[nll_loss] status must be an i64 [2] tensor on the input's device");
  dispatch_floating(logp.dtype(), "nll_loss", [&](auto tag) {
    using T = decltype(tag);
    nll_loss_kernel<T><<<cu::blocks_for(M, cu::kThreads), cu::kThreads, 0, s>>>(
        M, C, static_cast<const T*>(logp.data_ptr()), static_cast<const int64_t*>(target.data_ptr()),
        weight.defined() ? static_cast<const T*>(weight.data_ptr()) : nullptr, ignore_index,
        static_cast<T*>(out_losses.data_ptr()), static_cast<T*>(out_weights.data_ptr()),
        static_cast<unsigned long long*>(status.data_ptr()));
    cu::check_launch("nll_loss_kernel");
  });
}

void nll_loss_backward_cuda(const Tensor& g, const Tensor& target, const Tensor& weight, int64_t ignore_index,
                            const Tensor& dlogp) {
  const int64_t M = dlogp.shape()[0], C = dlogp.shape()[1];
  if (M == 0) return;
  cu::DeviceGuard guard(dlogp);
  dispatch_floating(dlogp.dtype(), "nll_loss_backward", [&](auto tag) {
    using T = decltype(tag);
    nll_loss_backward_kernel<T><<<cu::blocks_for(M, cu::kThreads), cu::kThreads, 0, cu::current_stream()>>>(
        M, C, static_cast<const T*>(g.data_ptr()), static_cast<const int64_t*>(target.data_ptr()),
        weight.defined() ? static_cast<const T*>(weight.data_ptr()) : nullptr, ignore_index,
        static_cast<T*>(dlogp.data_ptr()));
    cu::check_launch("nll_loss_backward_kernel");
  });
}

}  // namespace ember::kernels
