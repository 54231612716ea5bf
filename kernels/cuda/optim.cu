// Fused optimizer updates on CUDA: one elementwise pass per parameter for SGD and Adam/AdamW,
// performing exactly the rounded operations, in the same order, of the CPU loops in
// train/optim_update.cpp (torch 1.13's single-tensor math with the scalars converted to the
// parameter dtype first). With contraction off (--fmad=false) the results equal the CPU's bit for bit.
#include <cmath>

#include "kernels/cuda/launch.h"
#include "kernels/kernels.h"

namespace ember::kernels {
namespace {

template <typename T>
struct SgdScalars {
  T wd, mom, damp, nlr;
  bool use_wd, use_momentum, nesterov, maximize, init;
};

template <typename T>
__global__ void sgd_kernel(int64_t n, T* P, const T* G, T* B, SgdScalars<T> s) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  T d = s.maximize ? -G[i] : G[i];
  if (s.use_wd) d = d + s.wd * P[i];
  if (s.use_momentum) {
    B[i] = s.init ? d : B[i] * s.mom + s.damp * d;
    d = s.nesterov ? d + s.mom * B[i] : B[i];
  }
  P[i] = P[i] + s.nlr * d;
}

template <typename T>
struct AdamScalars {
  T wd, decay, b1, omb1, b2, omb2, bc2s, eps, nstep;
  bool use_wd, decoupled, amsgrad, maximize;
};

template <typename T>
__device__ inline T nan_max(T a, T b) {
  if (a != a) return a;
  if (b != b) return b;
  return a > b ? a : b;
}

template <typename T>
__global__ void adam_kernel(int64_t n, T* P, const T* G, T* M, T* V, T* VM, AdamScalars<T> s) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  T d = s.maximize ? -G[i] : G[i];
  if (s.decoupled) {
    P[i] = P[i] * s.decay;
  } else if (s.use_wd) {
    d = d + s.wd * P[i];
  }
  M[i] = M[i] * s.b1 + s.omb1 * d;
  V[i] = V[i] * s.b2 + (s.omb2 * d) * d;
  T second = V[i];
  if (s.amsgrad) second = VM[i] = nan_max(VM[i], V[i]);
  const T denom = std::sqrt(second) / s.bc2s + s.eps;
  P[i] = P[i] + (s.nstep * M[i]) / denom;
}

void check_fusable(const Tensor& p, std::initializer_list<const Tensor*> others, const char* op) {
  EMBER_CHECK(p.device().is_cuda() && is_compute_floating(p.dtype()) && p.is_contiguous(), "[", op,
              "] the parameter must be a contiguous f32/f64 CUDA tensor, got ", dtype_name(p.dtype()), " on ",
              p.device().str());
  for (const Tensor* t : others) {
    if (!t->defined()) continue;
    EMBER_CHECK(t->device() == p.device() && t->dtype() == p.dtype() && t->is_contiguous() && t->numel() == p.numel(),
                "[", op, "] state and gradient tensors must be contiguous ", dtype_name(p.dtype()), " tensors of ",
                p.numel(), " elements on ", p.device().str());
  }
}

template <typename T>
T* mptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr;
}

}  // namespace

void sgd_update_cuda(const Tensor& p, const Tensor& g, const Tensor& buf, const SgdUpdate& u) {
  check_fusable(p, {&g, &buf}, "SGD");
  EMBER_CHECK(u.momentum == 0.0 || buf.defined(), "[SGD] momentum needs a momentum buffer");
  const int64_t n = p.numel();
  if (n == 0) return;
  cu::DeviceGuard guard(p);
  dispatch_floating(p.dtype(), "SGD", [&](auto tag) {
    using T = decltype(tag);
    const SgdScalars<T> s{static_cast<T>(u.weight_decay), static_cast<T>(u.momentum), static_cast<T>(1.0 - u.dampening),
                          static_cast<T>(-u.lr), u.weight_decay != 0.0, u.momentum != 0.0, u.nesterov, u.maximize,
                          u.init};
    sgd_kernel<T><<<cu::blocks_for(n, cu::kThreads), cu::kThreads, 0, cu::current_stream()>>>(
        n, mptr<T>(p), mptr<T>(g), mptr<T>(buf), s);
    cu::check_launch("sgd_kernel");
  });
}

void adam_update_cuda(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, const Tensor& vmax,
                      const AdamUpdate& u) {
  check_fusable(p, {&g, &m, &v, &vmax}, u.decoupled ? "AdamW" : "Adam");
  EMBER_CHECK(m.defined() && v.defined() && (!u.amsgrad || vmax.defined()),
              "[Adam] exp_avg, exp_avg_sq (and max_exp_avg_sq with amsgrad) must be defined");
  const int64_t n = p.numel();
  if (n == 0) return;
  cu::DeviceGuard guard(p);
  dispatch_floating(p.dtype(), "Adam", [&](auto tag) {
    using T = decltype(tag);
    const AdamScalars<T> s{static_cast<T>(u.weight_decay), static_cast<T>(1.0 - u.lr * u.weight_decay),
                           static_cast<T>(u.beta1), static_cast<T>(1.0 - u.beta1), static_cast<T>(u.beta2),
                           static_cast<T>(1.0 - u.beta2), static_cast<T>(u.bias_correction2_sqrt),
                           static_cast<T>(u.eps), static_cast<T>(-u.step_size), u.weight_decay != 0.0, u.decoupled,
                           u.amsgrad, u.maximize};
    adam_kernel<T><<<cu::blocks_for(n, cu::kThreads), cu::kThreads, 0, cu::current_stream()>>>(
        n, mptr<T>(p), mptr<T>(g), mptr<T>(m), mptr<T>(v), mptr<T>(vmax), s);
    cu::check_launch("adam_kernel");
  });
}

}  // namespace ember::kernels
