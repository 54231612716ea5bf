// CPU indexing kernels: index_select / index_add along a dim, and the nll_loss gather/scatter.
#include <cstring>

#include "kernels/cpu/loops.h"
#include "kernels/kernels.h"

namespace ember::kernels {

void index_select_cpu(const Tensor& x, int dim, const Tensor& index, const Tensor& out) {
  const AroundDim a = around_dim(x.shape(), dim);
  const int64_t outer = a.outer, inner = a.inner, n_in = a.size, n_idx = index.numel();
  size_t es = x.element_size();
  const char* xp = static_cast<const char*>(x.data_ptr());
  char* op = static_cast<char*>(out.data_ptr());
  const int64_t* ip = static_cast<const int64_t*>(index.data_ptr());
  size_t block = static_cast<size_t>(inner) * es;
  parallel_for(0, outer * n_idx, std::max<int64_t>(1, 65536 / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      int64_t o = t / n_idx, i = t % n_idx;
      std::memcpy(op + (o * n_idx + i) * block, xp + (o * n_in + ip[i]) * block, block);
    }
  });
}

void index_add_cpu(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  const AroundDim a = around_dim(out.shape(), dim);
  const int64_t outer = a.outer, inner = a.inner, n_out = a.size, n_idx = index.numel();
  const int64_t* ip = static_cast<const int64_t*>(index.data_ptr());
  dispatch_floating(out.dtype(), "index_add", [&](auto tag) {
    using T = decltype(tag);
    T* op = static_cast<T*>(out.data_ptr());
    const T* sp = static_cast<const T*>(src.data_ptr());
    // Parallel over outer and inner positions; indices are walked in order, so repeated indices
    // accumulate deterministically.
    parallel_for(0, outer, 1, [&](int64_t ob, int64_t oe) {
      for (int64_t o = ob; o < oe; ++o)
        for (int64_t i = 0; i < n_idx; ++i) {
          T* dst = op + (o * n_out + ip[i]) * inner;
          const T* s = sp + (o * n_idx + i) * inner;
          for (int64_t k = 0; k < inner; ++k) dst[k] += s[k];
        }
    });
  });
}

void nll_loss_cpu(const Tensor& logp, const Tensor& target, const Tensor& weight, int64_t ignore_index,
                  const Tensor& out_losses, const Tensor& out_weights) {
  int64_t M = logp.shape()[0], C = logp.shape()[1];
  const int64_t* tp = static_cast<const int64_t*>(target.data_ptr());
  for (int64_t i = 0; i < M; ++i)
    EMBER_CHECK(tp[i] == ignore_index || (tp[i] >= 0 && tp[i] < C), "[nll_loss] target ", tp[i],
                " is out of bounds for ", C, " classes");
  dispatch_floating(logp.dtype(), "nll_loss", [&](auto tag) {
    using T = decltype(tag);
    const T* lp = static_cast<const T*>(logp.data_ptr());
    const T* wp = weight.defined() ? static_cast<const T*>(weight.data_ptr()) : nullptr;
    T* ol = static_cast<T*>(out_losses.data_ptr());
    T* ow = static_cast<T*>(out_weights.data_ptr());
    for (int64_t i = 0; i < M; ++i) {
      int64_t t = tp[i];
      if (t == ignore_index) {
        ol[i] = 0;
        ow[i] = 0;
        continue;
      }
      T w = wp ? wp[t] : T(1);
      ol[i] = -w * lp[i * C + t];
      ow[i] = w;
    }
  });
}

void nll_loss_backward_cpu(const Tensor& g, const Tensor& target, const Tensor& weight, int64_t ignore_index,
                           const Tensor& dlogp) {
  int64_t M = dlogp.shape()[0], C = dlogp.shape()[1];
  const int64_t* tp = static_cast<const int64_t*>(target.data_ptr());
  dispatch_floating(dlogp.dtype(), "nll_loss_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* gp = static_cast<const T*>(g.data_ptr());
    const T* wp = weight.defined() ? static_cast<const T*>(weight.data_ptr()) : nullptr;
    T* dp = static_cast<T*>(dlogp.data_ptr());
    for (int64_t i = 0; i < M; ++i) {
      int64_t t = tp[i];
      if (t == ignore_index) continue;
      dp[i * C + t] = -(wp ? wp[t] : T(1)) * gp[i];
    }
  });
}

}  // namespace ember::kernels
