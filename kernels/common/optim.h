// The update rules of SGD, Adam/AdamW, RMSprop and Adagrad for one element, written once for the
// CPU loops (kernels/cpu/optim.cpp) and the CUDA kernels (kernels/cuda/optim.cu): torch 1.13's
// single-tensor math as one chain of rounded operations, scalars converted to the parameter dtype
// first (as ATen does), so with contraction off every device and ISA gives the same bits.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/common/functors.h"

// Always inlined into the CPU loop, so that each ISA variant of the loop (run_best_isa) vectorises it.
#if defined(__CUDACC__)
#define EMBER_OPTIM_INLINE EMBER_HOST_DEVICE __forceinline__
#else
#define EMBER_OPTIM_INLINE [[gnu::always_inline]] inline
#endif

namespace ember::kernels {

// --- the scalars of one update, as the optimizer computes them ----------------------------------
struct SgdUpdate {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, maximize;
  bool init;  // first step with momentum: buf = d (buf allocated, uninitialised)
};
struct AdamUpdate {
  double lr, beta1, beta2, eps, weight_decay;
  double step_size;              // lr / (1 - beta1^step)
  double bias_correction2_sqrt;  // sqrt(1 - beta2^step)
  bool amsgrad, maximize;
  bool decoupled;  // AdamW: p *= 1 - lr * weight_decay instead of the L2 term
};
struct RmspropUpdate {
  double lr, alpha, eps, weight_decay, momentum;
  bool centered, maximize;
};
struct AdagradUpdate {
  double clr;  // the decayed rate lr / (1 + (step - 1) * lr_decay)
  double eps, weight_decay;
  bool maximize;
};

// --- the same scalars in the parameter dtype T, each rounded once ------------------------------
template <typename T>
struct SgdScalars {
  T wd, mom, damp, nlr;  // weight_decay, momentum, 1 - dampening, -lr
  explicit SgdScalars(const SgdUpdate& u)
      : wd(static_cast<T>(u.weight_decay)), mom(static_cast<T>(u.momentum)),
        damp(static_cast<T>(1.0 - u.dampening)), nlr(static_cast<T>(-u.lr)) {}
};
template <typename T>
struct AdamScalars {
  T wd, decay, b1, omb1, b2, omb2, bc2s, eps, nstep;  // decay = 1 - lr * wd, omb = 1 - beta, nstep = -step_size
  explicit AdamScalars(const AdamUpdate& u)
      : wd(static_cast<T>(u.weight_decay)), decay(static_cast<T>(1.0 - u.lr * u.weight_decay)),
        b1(static_cast<T>(u.beta1)), omb1(static_cast<T>(1.0 - u.beta1)), b2(static_cast<T>(u.beta2)),
        omb2(static_cast<T>(1.0 - u.beta2)), bc2s(static_cast<T>(u.bias_correction2_sqrt)), eps(static_cast<T>(u.eps)),
        nstep(static_cast<T>(-u.step_size)) {}
};
template <typename T>
struct RmspropScalars {
  T wd, alpha, oma, eps, mom, nlr, one, minus_one;  // oma = 1 - alpha, nlr = -lr
  explicit RmspropScalars(const RmspropUpdate& u)
      : wd(static_cast<T>(u.weight_decay)), alpha(static_cast<T>(u.alpha)), oma(static_cast<T>(1.0 - u.alpha)),
        eps(static_cast<T>(u.eps)), mom(static_cast<T>(u.momentum)), nlr(static_cast<T>(-u.lr)),
        one(static_cast<T>(1.0)), minus_one(static_cast<T>(-1.0)) {}
};
template <typename T>
struct AdagradScalars {
  T wd, eps, nclr, one;  // nclr = -clr
  explicit AdagradScalars(const AdagradUpdate& u)
      : wd(static_cast<T>(u.weight_decay)), eps(static_cast<T>(u.eps)), nclr(static_cast<T>(-u.clr)),
        one(static_cast<T>(1.0)) {}
};

// --- runtime options -> compile-time flags ----------------------------------------------------
// Calls fn(std::bool_constant<flag>...) for the runtime flags, so that an update is compiled once
// per option set with its branches resolved: the CPU loops vectorise, the CUDA kernels test nothing.
template <typename Fn>
void with_flags(Fn&& fn) {
  fn();
}
template <typename Fn, typename... Flags>
void with_flags(Fn&& fn, bool first, Flags... rest) {
  if (first) {
    with_flags([&](auto... f) { fn(std::true_type{}, f...); }, rest...);
  } else {
    with_flags([&](auto... f) { fn(std::false_type{}, f...); }, rest...);
  }
}

// The flags of sgd_element: maximize, weight decay, momentum, Nesterov, first step.
template <typename Fn>
void with_sgd_flags(const SgdUpdate& u, Fn&& fn) {
  const bool momentum = u.momentum != 0.0;
  with_flags(fn, u.maximize, u.weight_decay != 0.0, momentum, momentum && u.nesterov, momentum && u.init);
}
// The flags of adam_element: maximize, decoupled weight decay (AdamW), L2 weight decay (Adam), amsgrad.
template <typename Fn>
void with_adam_flags(const AdamUpdate& u, Fn&& fn) {
  with_flags(fn, u.maximize, u.decoupled, !u.decoupled && u.weight_decay != 0.0, u.amsgrad);
}
// The flags of rmsprop_element: maximize, weight decay, centered, momentum.
template <typename Fn>
void with_rmsprop_flags(const RmspropUpdate& u, Fn&& fn) {
  with_flags(fn, u.maximize, u.weight_decay != 0.0, u.centered, u.momentum > 0.0);
}
// The flags of adagrad_element: maximize, weight decay.
template <typename Fn>
void with_adagrad_flags(const AdagradUpdate& u, Fn&& fn) {
  with_flags(fn, u.maximize, u.weight_decay != 0.0);
}

// --- the updates of element i -----------------------------------------------------------------
// Each performs torch's chain of in-place tensor ops for one element, in torch's order. State an
// option leaves out is a null pointer and never touched.

// torch.maximum: NaN if either side is NaN.
template <typename T>
EMBER_OPTIM_INLINE T nan_max(T a, T b) {
  if (a != a) return a;
  if (b != b) return b;
  return a > b ? a : b;
}

// SGD: d = g (+ wd p); with momentum buf = mom buf + (1 - dampening) d (buf = d on the first step)
// and d = buf, or d + mom buf with Nesterov; p += -lr d.
template <typename T, bool kMaximize, bool kWeightDecay, bool kMomentum, bool kNesterov, bool kInit>
EMBER_OPTIM_INLINE void sgd_element(int64_t i, T* p, const T* g, T* buf, const SgdScalars<T>& s) {
  T d = kMaximize ? -g[i] : g[i];
  if constexpr (kWeightDecay) d = d + s.wd * p[i];
  if constexpr (kMomentum) {
    buf[i] = kInit ? d : buf[i] * s.mom + s.damp * d;
    d = kNesterov ? d + s.mom * buf[i] : buf[i];
  }
  p[i] = p[i] + s.nlr * d;
}

// Adam/AdamW: d = g (+ wd p with L2; AdamW scales p by 1 - lr wd instead), the moments m, v of d
// (and the running maximum vmax of v with amsgrad), then p += -step_size m / (sqrt(v) / sqrt(1 - beta2^step) + eps).
template <typename T, bool kMaximize, bool kDecoupled, bool kL2, bool kAmsgrad>
EMBER_OPTIM_INLINE void adam_element(int64_t i, T* p, const T* g, T* m, T* v, T* vmax, const AdamScalars<T>& s) {
  T d = kMaximize ? -g[i] : g[i];
  T pi = p[i];
  if constexpr (kDecoupled) pi = pi * s.decay;
  if constexpr (kL2) d = d + s.wd * pi;
  const T mi = m[i] * s.b1 + s.omb1 * d;
  const T vi = v[i] * s.b2 + (s.omb2 * d) * d;
  m[i] = mi;
  v[i] = vi;
  T second = vi;
  if constexpr (kAmsgrad) second = vmax[i] = nan_max(vmax[i], vi);
  const T denom = std::sqrt(second) / s.bc2s + s.eps;
  p[i] = pi + (s.nstep * mi) / denom;
}

// RMSprop: sq = alpha sq + (1 - alpha) d^2; avg = sqrt(sq) (centered: sqrt(sq - ga^2) with the
// running mean ga of d) + eps; p += -lr d / avg, or through the momentum buffer buf.
template <typename T, bool kMaximize, bool kWeightDecay, bool kCentered, bool kMomentum>
EMBER_OPTIM_INLINE void rmsprop_element(int64_t i, T* p, const T* g, T* sq, T* buf, T* ga, const RmspropScalars<T>& s) {
  T d = kMaximize ? -g[i] : g[i];
  if constexpr (kWeightDecay) d = d + s.wd * p[i];
  sq[i] = sq[i] * s.alpha + (s.oma * d) * d;
  T avg;
  if constexpr (kCentered) {
    ga[i] = ga[i] * s.alpha + s.oma * d;
    avg = std::sqrt(sq[i] + (s.minus_one * ga[i]) * ga[i]);
  } else {
    avg = std::sqrt(sq[i]);
  }
  avg = avg + s.eps;
  if constexpr (kMomentum) {
    buf[i] = buf[i] * s.mom + (s.one * d) / avg;
    p[i] = p[i] + s.nlr * buf[i];
  } else {
    p[i] = p[i] + (s.nlr * d) / avg;
  }
}

// Adagrad: sum += d^2; p += -clr d / (sqrt(sum) + eps).
template <typename T, bool kMaximize, bool kWeightDecay>
EMBER_OPTIM_INLINE void adagrad_element(int64_t i, T* p, const T* g, T* sum, const AdagradScalars<T>& s) {
  T d = kMaximize ? -g[i] : g[i];
  if constexpr (kWeightDecay) d = d + s.wd * p[i];
  sum[i] = sum[i] + (s.one * d) * d;
  const T std_dev = std::sqrt(sum[i]) + s.eps;
  p[i] = p[i] + (s.nclr * d) / std_dev;
}

}  // namespace ember::kernels
