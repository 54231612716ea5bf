// The fused optimizer updates on the CPU: one pass per parameter over contiguous f32/f64 tensors,
// split over the thread pool, with each chunk's loop compiled per option set (no branches per
// element) and per ISA (run_best_isa). The per-element math is kernels/common/optim.h's.
#include <type_traits>

#include "kernels/common/optim.h"
#include "kernels/cpu/half_rows.h"
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

// for_each_element, then after_chunk(b, e) on each chunk while its data is still in the cache.
template <typename Element, typename AfterChunk>
void for_each_element(int64_t n, const Element& element, const AfterChunk& after_chunk) {
  parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
    run_best_isa([&] EMBER_INLINE_LAMBDA {
      for (int64_t i = b; i < e; ++i) element(i);
    });
    after_chunk(b, e);
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
                     const AdamUpdate& u, const Tensor& lowp) {
  if (lowp.defined())
    EMBER_CHECK(p.dtype() == DType::f32 && (lowp.dtype() == DType::bf16 || lowp.dtype() == DType::f16) &&
                    lowp.is_contiguous() && lowp.numel() == p.numel(),
                "[Adam] a low-precision copy needs a float32 parameter and ", p.numel(),
                " contiguous bf16/f16 values, got ", dtype_name(lowp.dtype()), lowp.shape().str(), " for ",
                dtype_name(p.dtype()), p.shape().str());
  dispatch_floating(p.dtype(), u.decoupled ? "AdamW" : "Adam", [&](auto tag) {
    using T = decltype(tag);
    const AdamScalars<T> s(u);
    T *P = ptr<T>(p), *M = ptr<T>(m), *V = ptr<T>(v), *VM = ptr<T>(vmax);
    const T* G = ptr<T>(g);
    with_adam_flags(u, [&](auto... flag) {
      auto element = [=](int64_t i) EMBER_INLINE_LAMBDA { adam_element<T, decltype(flag)::value...>(i, P, G, M, V, VM, s); };
      if constexpr (std::is_same_v<T, float>) {
        if (lowp.defined()) {
          // The copy's chunk is rounded right after the chunk's update, from the cache.
          const bool bf16 = lowp.dtype() == DType::bf16;
          uint16_t* L = static_cast<uint16_t*>(lowp.data_ptr());
          return for_each_element(p.numel(), element,
                                  [&](int64_t b, int64_t e) { half_from_f32_row(bf16, P + b, L + b, e - b); });
        }
      }
      for_each_element(p.numel(), element);
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
