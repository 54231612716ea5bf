// The fused optimizer updates on the CPU: one pass per parameter over contiguous f32/f64 tensors,
// split over the thread pool, with each chunk's loop compiled per option set (no branches per
// element) and per ISA (run_best_isa). The per-element math is kernels/common/optim.h's.
#include "kernels/common/optim.h"
#include "kernels/cpu/isa.h"
#include "kernels/kernels.h"
#include "ember/runtime/parallel.h"

namespace ember::kernels {
namespace {

constexpr int64_t kGrain = 1 << 14;  // elements per parallel chunk

// Calls element(i) for every i in [0, n): chunks of kGrain over the thread pool, each a loop
// compiled for the widest ISA this CPU has. Elements are independent, so the split never shows.
template <typename Element>
void for_each_element(int64_t n, const Element& element) {
  parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
    run_best_isa([&] EMBER_INLINE_LAMBDA {
      for (int64_t i = b; i < e; ++i) element(i);
    });
  });
}

// The data of t, or nullptr for state an option leaves out.
template <typename T>
T* ptr(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

}  // namespace

void sgd_update_cpu(const Tensor& p, const Tensor& g, const Tensor& buf, const SgdUpdate& u) {
  dispatch_floating(p.dtype(), "SGD", [&](auto tag) {
    using T = decltype(tag);
    const SgdScalars<T> s(u);
    T *P = ptr<T>(p), *B = ptr<T>(buf);
    const T* G = ptr<T>(g);
    with_sgd_flags(u, [&](auto... flag) {
      for_each_element(p.numel(), [=](int64_t i) EMBER_INLINE_LAMBDA {
        sgd_element<T, decltype(flag)::value...>(i, P, G, B, s);
      });
    });
  });
}

void adam_update_cpu(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, const Tensor& vmax,
                     const AdamUpdate& u) {
  dispatch_floating(p.dtype(), u.decoupled ? "AdamW" : "Adam", [&](auto tag) {
    using T = decltype(tag);
    const AdamScalars<T> s(u);
    T *P = ptr<T>(p), *M = ptr<T>(m), *V = ptr<T>(v), *VM = ptr<T>(vmax);
    const T* G = ptr<T>(g);
    with_adam_flags(u, [&](auto... flag) {
      for_each_element(p.numel(), [=](int64_t i) EMBER_INLINE_LAMBDA {
        adam_element<T, decltype(flag)::value...>(i, P, G, M, V, VM, s);
      });
    });
  });
}

void rmsprop_update_cpu(const Tensor& p, const Tensor& g, const Tensor& square_avg, const Tensor& buf,
                        const Tensor& grad_avg, const RmspropUpdate& u) {
  dispatch_floating(p.dtype(), "RMSprop", [&](auto tag) {
    using T = decltype(tag);
    const RmspropScalars<T> s(u);
    T *P = ptr<T>(p), *S = ptr<T>(square_avg), *B = ptr<T>(buf), *A = ptr<T>(grad_avg);
    const T* G = ptr<T>(g);
    with_rmsprop_flags(u, [&](auto... flag) {
      for_each_element(p.numel(), [=](int64_t i) EMBER_INLINE_LAMBDA {
        rmsprop_element<T, decltype(flag)::value...>(i, P, G, S, B, A, s);
      });
    });
  });
}

void adagrad_update_cpu(const Tensor& p, const Tensor& g, const Tensor& sum, const AdagradUpdate& u) {
  dispatch_floating(p.dtype(), "Adagrad", [&](auto tag) {
    using T = decltype(tag);
    const AdagradScalars<T> s(u);
    T *P = ptr<T>(p), *S = ptr<T>(sum);
    const T* G = ptr<T>(g);
    with_adagrad_flags(u, [&](auto... flag) {
      for_each_element(p.numel(), [=](int64_t i) EMBER_INLINE_LAMBDA {
        adagrad_element<T, decltype(flag)::value...>(i, P, G, S, s);
      });
    });
  });
}

}  // namespace ember::kernels
