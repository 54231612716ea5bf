// The fused optimizer updates on CUDA: one elementwise kernel per parameter for SGD, Adam/AdamW,
// RMSprop and Adagrad, compiled per option set, calling the per-element math of
// kernels/common/optim.h that the CPU loops call. With contraction off (--fmad=false) the results
// equal the CPU's bit for bit.
#include "kernels/common/optim.h"
#include "kernels/cuda/launch.h"
#include "kernels/kernels.h"

namespace ember::kernels {
namespace {

template <typename T, bool... kFlags>
__global__ void sgd_kernel(int64_t n, T* p, const T* g, T* buf, SgdScalars<T> s) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) sgd_element<T, kFlags...>(i, p, g, buf, s);
}

template <typename T, bool... kFlags>
__global__ void adam_kernel(int64_t n, T* p, const T* g, T* m, T* v, T* vmax, AdamScalars<T> s) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) adam_element<T, kFlags...>(i, p, g, m, v, vmax, s);
}

template <typename T, bool... kFlags>
__global__ void rmsprop_kernel(int64_t n, T* p, const T* g, T* sq, T* buf, T* ga, RmspropScalars<T> s) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) rmsprop_element<T, kFlags...>(i, p, g, sq, buf, ga, s);
}

template <typename T, bool... kFlags>
__global__ void adagrad_kernel(int64_t n, T* p, const T* g, T* sum, AdagradScalars<T> s) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) adagrad_element<T, kFlags...>(i, p, g, sum, s);
}

// The data of t, or nullptr for state an option leaves out.
template <typename T>
T* ptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr;
}

// Launches kernel over the n elements of p on p's device and current stream. In a CUDA graph
// capture the launch's node is recorded; during a graph update the recorded node takes these
// arguments (the new step's scalars) instead of a launch.
template <typename Kernel, typename... Args>
void launch(const char* name, Kernel kernel, const Tensor& p, Args... args) {
  int64_t n = p.numel();
  if (n == 0) return;
  cu::DeviceGuard guard(p);
  const unsigned blocks = cu::blocks_for(n, cu::kThreads);
  if (cu::GraphImpl* g = cu::updating_graph()) {
    void* params[] = {&n, &args...};
    cu::set_next_optimizer_node(*g, reinterpret_cast<const void*>(kernel), dim3(blocks), dim3(cu::kThreads), params,
                                name);
    return;
  }
  kernel<<<blocks, cu::kThreads, 0, cu::current_stream()>>>(n, args...);
  cu::check_launch(name);
  if (cu::GraphImpl* g = cu::capturing_graph()) cu::record_optimizer_node(*g, reinterpret_cast<const void*>(kernel), name);
}

}  // namespace

void sgd_update_cuda(const Tensor& p, const Tensor& g, const Tensor& buf, const SgdUpdate& u) {
  dispatch_floating(p.dtype(), "SGD", [&](auto tag) {
    using T = decltype(tag);
    with_sgd_flags(u, [&](auto... flag) {
      launch("sgd_kernel", sgd_kernel<T, decltype(flag)::value...>, p, ptr<T>(p), ptr<T>(g), ptr<T>(buf),
             SgdScalars<T>(u));
    });
  });
}

void adam_update_cuda(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, const Tensor& vmax,
                      const AdamUpdate& u) {
  dispatch_floating(p.dtype(), u.decoupled ? "AdamW" : "Adam", [&](auto tag) {
    using T = decltype(tag);
    with_adam_flags(u, [&](auto... flag) {
      launch("adam_kernel", adam_kernel<T, decltype(flag)::value...>, p, ptr<T>(p), ptr<T>(g), ptr<T>(m), ptr<T>(v),
             ptr<T>(vmax), AdamScalars<T>(u));
    });
  });
}

void rmsprop_update_cuda(const Tensor& p, const Tensor& g, const Tensor& square_avg, const Tensor& buf,
                         const Tensor& grad_avg, const RmspropUpdate& u) {
  dispatch_floating(p.dtype(), "RMSprop", [&](auto tag) {
    using T = decltype(tag);
    with_rmsprop_flags(u, [&](auto... flag) {
      launch("rmsprop_kernel", rmsprop_kernel<T, decltype(flag)::value...>, p, ptr<T>(p), ptr<T>(g),
             ptr<T>(square_avg), ptr<T>(buf), ptr<T>(grad_avg), RmspropScalars<T>(u));
    });
  });
}

void adagrad_update_cuda(const Tensor& p, const Tensor& g, const Tensor& sum, const AdagradUpdate& u) {
  dispatch_floating(p.dtype(), "Adagrad", [&](auto tag) {
    using T = decltype(tag);
    with_adagrad_flags(u, [&](auto... flag) {
      launch("adagrad_kernel", adagrad_kernel<T, decltype(flag)::value...>, p, ptr<T>(p), ptr<T>(g), ptr<T>(sum),
             AdagradScalars<T>(u));
    });
  });
}

}  // namespace ember::kernels
