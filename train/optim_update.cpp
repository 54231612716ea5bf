// The update rules of SGD, Adam/AdamW, RMSprop and Adagrad: torch 1.13's _single_tensor_* math.
// Contiguous f32/f64 CPU tensors take one fused elementwise loop per parameter that performs the
// same rounded operations in the same order as torch's chain of in-place ops (scalars converted to
// the parameter dtype first, as ATen does); contiguous CUDA tensors take the same loop as one CUDA
// kernel (SGD, Adam/AdamW); everything else takes the generic tensor-op path.
#include <cmath>
#include <initializer_list>

#include "kernels/cpu/isa.h"
#include "kernels/kernels.h"
#include "runtime/autograd.h"
#include "runtime/ops.h"
#include "runtime/parallel.h"
#include "train/optim.h"

namespace ember::optim {
namespace {

constexpr int64_t kGrain = 1 << 14;  // elements per parallel chunk

// True when p and every defined tensor in `others` are contiguous CPU tensors of p's f32/f64 dtype.
bool fusable(const Tensor& p, std::initializer_list<Tensor> others) {
  if (!p.device().is_cpu() || !is_compute_floating(p.dtype()) || !p.is_contiguous()) return false;
  for (const Tensor& t : others) {
    if (t.defined() && (!t.device().is_cpu() || t.dtype() != p.dtype() || !t.is_contiguous())) return false;
  }
  return true;
}

// True when p and every defined tensor in `others` are contiguous tensors of p's f32/f64 dtype on
// p's CUDA device (the fused CUDA update kernels' contract).
bool cuda_fusable(const Tensor& p, std::initializer_list<Tensor> others) {
  if (!p.device().is_cuda() || !is_compute_floating(p.dtype()) || !p.is_contiguous()) return false;
  for (const Tensor& t : others) {
    if (t.defined() && (t.device() != p.device() || t.dtype() != p.dtype() || !t.is_contiguous())) return false;
  }
  return true;
}

template <typename T>
T* ptr(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

Tensor zeros_for(const Tensor& p) { return zeros(p.shape(), TensorOptions(p.dtype()).with_device(p.device())); }

Tensor state_tensor(const ValueMap& s, const char* key, const std::string& name, const std::string& who) {
  auto it = s.find(key);
  EMBER_CHECK(it != s.end() && it->second.is_tensor(), "[", who, "] the state of '", name, "' has no tensor '", key,
              "' (was an option like amsgrad/momentum/centered switched on after the first step?)");
  return it->second.as_tensor();
}

void check_grad(const Tensor& p, const Tensor& g, const std::string& name, const std::string& who) {
  EMBER_CHECK(g.shape() == p.shape() && g.dtype() == p.dtype() && g.device() == p.device(), "[", who,
              "] the gradient of '", name, "' is ", dtype_name(g.dtype()), g.shape().str(), " on ", g.device().str(),
              " but the parameter is ", dtype_name(p.dtype()), p.shape().str(), " on ", p.device().str());
}

bool flag(const ParamGroup& g, const char* key) { return g.options.at(key).as_bool(); }

// torch.maximum: NaN if either side is NaN.
template <typename T>
T nan_max(T a, T b) {
  if (std::isnan(a)) return a;
  if (std::isnan(b)) return b;
  return a > b ? a : b;
}

// The fused Adam/AdamW update of elements [b, e): torch 1.13's chain of in-place ops, element by
// element, with the options fixed at compile time so the loop has no branches and vectorises.
enum class WeightDecay { None, L2, Decoupled };

template <typename T>
struct AdamArgs {
  T* p;
  const T* g;
  T* m;
  T* v;
  T* vmax;
  T wd, decay, b1, omb1, b2, omb2, bc2s, eps, nstep;
};

template <typename T, bool kMaximize, WeightDecay kWd, bool kAmsgrad>
[[gnu::always_inline]] inline void adam_loop(const AdamArgs<T>& a, int64_t b, int64_t e) {
  T* __restrict P = a.p;
  const T* __restrict G = a.g;
  T* __restrict M = a.m;
  T* __restrict V = a.v;
  T* __restrict VM = a.vmax;
  for (int64_t i = b; i < e; ++i) {
    T d = kMaximize ? -G[i] : G[i];
    T pi = P[i];
    if constexpr (kWd == WeightDecay::Decoupled) pi = pi * a.decay;
    if constexpr (kWd == WeightDecay::L2) d = d + a.wd * pi;
    const T mi = M[i] * a.b1 + a.omb1 * d;
    const T vi = V[i] * a.b2 + (a.omb2 * d) * d;
    M[i] = mi;
    V[i] = vi;
    T second = vi;
    if constexpr (kAmsgrad) second = VM[i] = nan_max(VM[i], vi);
    const T denom = std::sqrt(second) / a.bc2s + a.eps;
    P[i] = pi + (a.nstep * mi) / denom;
  }
}

// adam_loop compiled for the widest ISA this CPU has.
template <typename T, bool kMaximize, WeightDecay kWd, bool kAmsgrad>
void adam_chunk(const AdamArgs<T>& a, int64_t b, int64_t e) {
  kernels::run_best_isa([&] EMBER_INLINE_LAMBDA { adam_loop<T, kMaximize, kWd, kAmsgrad>(a, b, e); });
}

template <typename T>
using AdamKernel = void (*)(const AdamArgs<T>&, int64_t, int64_t);

template <typename T, bool kMaximize, WeightDecay kWd>
AdamKernel<T> adam_kernel(bool amsgrad) {
  return amsgrad ? &adam_chunk<T, kMaximize, kWd, true> : &adam_chunk<T, kMaximize, kWd, false>;
}

template <typename T, bool kMaximize>
AdamKernel<T> adam_kernel(WeightDecay wd, bool amsgrad) {
  switch (wd) {
    case WeightDecay::L2: return adam_kernel<T, kMaximize, WeightDecay::L2>(amsgrad);
    case WeightDecay::Decoupled: return adam_kernel<T, kMaximize, WeightDecay::Decoupled>(amsgrad);
    case WeightDecay::None: break;
  }
  return adam_kernel<T, kMaximize, WeightDecay::None>(amsgrad);
}

template <typename T>
AdamKernel<T> adam_kernel(bool maximize, WeightDecay wd, bool amsgrad) {
  return maximize ? adam_kernel<T, true>(wd, amsgrad) : adam_kernel<T, false>(wd, amsgrad);
}

}  // namespace

// --- SGD -------------------------------------------------------------------------------------
void SGD::step_group(ParamGroup& group) {
  const double lr = group.number("lr"), momentum = group.number("momentum");
  const double dampening = group.number("dampening"), wd = group.number("weight_decay");
  const bool nesterov = flag(group, "nesterov"), maximize = flag(group, "maximize");
  for (auto& [name, p] : group.params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    check_grad(p, g, name, "SGD");
    ValueMap& st = state_[name];
    Value& slot = st["momentum_buffer"];  // stays null while momentum == 0, as torch's None
    Tensor buf = slot.is_tensor() ? slot.as_tensor() : Tensor();
    if (fusable(p, {g, buf})) {
      const bool init = momentum != 0.0 && !buf.defined();
      if (init) buf = empty(p.shape(), TensorOptions(p.dtype()));
      dispatch_floating(p.dtype(), "SGD", [&](auto tag) {
        using T = decltype(tag);
        T* P = p.data_ptr<T>();
        const T* G = g.data_ptr<T>();
        T* B = ptr<T>(buf);
        const T wd_t = static_cast<T>(wd), mom_t = static_cast<T>(momentum);
        const T damp_t = static_cast<T>(1.0 - dampening), nlr_t = static_cast<T>(-lr);
        parallel_for(0, p.numel(), kGrain, [=](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) {
            T d = maximize ? -G[i] : G[i];
            if (wd != 0.0) d = d + wd_t * P[i];
            if (momentum != 0.0) {
              B[i] = init ? d : B[i] * mom_t + damp_t * d;
              d = nesterov ? d + mom_t * B[i] : B[i];
            }
            P[i] = P[i] + nlr_t * d;
          }
        });
      });
      p.bump_version();
      if (buf.defined()) buf.bump_version();
    } else if (cuda_fusable(p, {g, buf})) {
      const bool init = momentum != 0.0 && !buf.defined();
      if (init) buf = empty(p.shape(), TensorOptions(p.dtype()).with_device(p.device()));
      kernels::sgd_update_cuda(p, g, buf, {lr, momentum, dampening, wd, nesterov, maximize, init});
      p.bump_version();
      if (buf.defined()) buf.bump_version();
    } else {
      Tensor d = maximize ? neg(g) : g;
      if (wd != 0.0) d = add(d, p, wd);
      if (momentum != 0.0) {
        if (!buf.defined()) {
          buf = d.detach().clone();
        } else {
          buf.mul_(momentum);
          buf.add_(d, 1.0 - dampening);
        }
        d = nesterov ? add(d, buf, momentum) : buf;
      }
      p.add_(d, -lr);
    }
    slot = buf.defined() ? Value(buf) : Value();
  }
}

// --- Adam / AdamW ----------------------------------------------------------------------------
void Adam::step_group(ParamGroup& group) {
  const std::string& who = type_name();
  const double lr = group.number("lr"), eps = group.number("eps"), wd = group.number("weight_decay");
  const ValueList& betas = group.options.at("betas").as_list();
  const double beta1 = betas[0].as_double(), beta2 = betas[1].as_double();
  const bool amsgrad = flag(group, "amsgrad"), maximize = flag(group, "maximize");
  const bool decoupled = decoupled_;
  for (auto& [name, p] : group.params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    check_grad(p, g, name, who);
    ValueMap& st = state_[name];
    if (st.empty()) {
      st["step"] = Value(0.0);
      st["exp_avg"] = Value(zeros_for(p));
      st["exp_avg_sq"] = Value(zeros_for(p));
      if (amsgrad) st["max_exp_avg_sq"] = Value(zeros_for(p));
    }
    Tensor m = state_tensor(st, "exp_avg", name, who), v = state_tensor(st, "exp_avg_sq", name, who);
    Tensor vmax = amsgrad ? state_tensor(st, "max_exp_avg_sq", name, who) : Tensor();
    const double step = st.at("step").as_double() + 1.0;
    st["step"] = Value(step);
    const double bias_correction1 = 1.0 - std::pow(beta1, step);
    const double bias_correction2 = 1.0 - std::pow(beta2, step);
    const double step_size = lr / bias_correction1;
    const double bias_correction2_sqrt = std::sqrt(bias_correction2);
    if (fusable(p, {g, m, v, vmax})) {
      dispatch_floating(p.dtype(), who.c_str(), [&](auto tag) {
        using T = decltype(tag);
        AdamArgs<T> args{p.data_ptr<T>(), g.data_ptr<T>(), m.data_ptr<T>(), v.data_ptr<T>(), ptr<T>(vmax),
                         static_cast<T>(wd), static_cast<T>(1.0 - lr * wd), static_cast<T>(beta1),
                         static_cast<T>(1.0 - beta1), static_cast<T>(beta2), static_cast<T>(1.0 - beta2),
                         static_cast<T>(bias_correction2_sqrt), static_cast<T>(eps), static_cast<T>(-step_size)};
        const WeightDecay mode = decoupled ? WeightDecay::Decoupled : wd != 0.0 ? WeightDecay::L2 : WeightDecay::None;
        AdamKernel<T> kernel = adam_kernel<T>(maximize, mode, amsgrad);
        parallel_for(0, p.numel(), kGrain, [&](int64_t b, int64_t e) { kernel(args, b, e); });
      });
      for (Tensor* t : {&p, &m, &v, &vmax}) {
        if (t->defined()) t->bump_version();
      }
    } else if (cuda_fusable(p, {g, m, v, vmax})) {
      kernels::adam_update_cuda(p, g, m, v, vmax,
                                {lr, beta1, beta2, eps, wd, step_size, bias_correction2_sqrt, amsgrad, maximize, decoupled});
      for (Tensor* t : {&p, &m, &v, &vmax}) {
        if (t->defined()) t->bump_version();
      }
    } else {
      Tensor d = maximize ? neg(g) : g;
      if (decoupled) {
        p.mul_(1.0 - lr * wd);
      } else if (wd != 0.0) {
        d = add(d, p, wd);
      }
      m.mul_(beta1);
      m.add_(d, 1.0 - beta1);
      v.mul_(beta2);
      v.addcmul_(d, d, 1.0 - beta2);
      Tensor second = v;
      if (amsgrad) {
        vmax.copy_(maximum(vmax, v));
        second = vmax;
      }
      Tensor denom = div(sqrt(second), bias_correction2_sqrt);
      denom.add_(eps);
      p.addcdiv_(m, denom, -step_size);
    }
  }
}

// --- RMSprop ---------------------------------------------------------------------------------
void RMSprop::step_group(ParamGroup& group) {
  const double lr = group.number("lr"), alpha = group.number("alpha"), eps = group.number("eps");
  const double wd = group.number("weight_decay"), momentum = group.number("momentum");
  const bool centered = flag(group, "centered"), maximize = flag(group, "maximize");
  for (auto& [name, p] : group.params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    check_grad(p, g, name, "RMSprop");
    ValueMap& st = state_[name];
    if (st.empty()) {
      st["step"] = Value(int64_t{0});
      st["square_avg"] = Value(zeros_for(p));
      if (momentum > 0.0) st["momentum_buffer"] = Value(zeros_for(p));
      if (centered) st["grad_avg"] = Value(zeros_for(p));
    }
    Tensor sq = state_tensor(st, "square_avg", name, "RMSprop");
    Tensor buf = momentum > 0.0 ? state_tensor(st, "momentum_buffer", name, "RMSprop") : Tensor();
    Tensor ga = centered ? state_tensor(st, "grad_avg", name, "RMSprop") : Tensor();
    st["step"] = Value(st.at("step").as_int() + 1);
    if (fusable(p, {g, sq, buf, ga})) {
      dispatch_floating(p.dtype(), "RMSprop", [&](auto tag) {
        using T = decltype(tag);
        T* P = p.data_ptr<T>();
        const T* G = g.data_ptr<T>();
        T* S = sq.data_ptr<T>();
        T* B = ptr<T>(buf);
        T* A = ptr<T>(ga);
        const T wd_t = static_cast<T>(wd), alpha_t = static_cast<T>(alpha), oma_t = static_cast<T>(1.0 - alpha);
        const T eps_t = static_cast<T>(eps), mom_t = static_cast<T>(momentum), nlr_t = static_cast<T>(-lr);
        const T one = static_cast<T>(1.0), minus_one = static_cast<T>(-1.0);
        parallel_for(0, p.numel(), kGrain, [=](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) {
            T d = maximize ? -G[i] : G[i];
            if (wd != 0.0) d = d + wd_t * P[i];
            S[i] = S[i] * alpha_t + (oma_t * d) * d;
            T avg;
            if (centered) {
              A[i] = A[i] * alpha_t + oma_t * d;
              avg = std::sqrt(S[i] + (minus_one * A[i]) * A[i]);
            } else {
              avg = std::sqrt(S[i]);
            }
            avg = avg + eps_t;
            if (momentum > 0.0) {
              B[i] = B[i] * mom_t + (one * d) / avg;
              P[i] = P[i] + nlr_t * B[i];
            } else {
              P[i] = P[i] + (nlr_t * d) / avg;
            }
          }
        });
      });
      for (Tensor* t : {&p, &sq, &buf, &ga}) {
        if (t->defined()) t->bump_version();
      }
    } else {
      Tensor d = maximize ? neg(g) : g;
      if (wd != 0.0) d = add(d, p, wd);
      sq.mul_(alpha);
      sq.addcmul_(d, d, 1.0 - alpha);
      Tensor avg;
      if (centered) {
        ga.mul_(alpha);
        ga.add_(d, 1.0 - alpha);
        Tensor centered_sq = sq.clone();
        centered_sq.addcmul_(ga, ga, -1.0);
        avg = sqrt(centered_sq);
      } else {
        avg = sqrt(sq);
      }
      avg.add_(eps);
      if (momentum > 0.0) {
        buf.mul_(momentum);
        buf.addcdiv_(d, avg, 1.0);
        p.add_(buf, -lr);
      } else {
        p.addcdiv_(d, avg, -lr);
      }
    }
  }
}

// --- Adagrad ---------------------------------------------------------------------------------
void Adagrad::step_group(ParamGroup& group) {
  const double lr = group.number("lr"), lr_decay = group.number("lr_decay"), eps = group.number("eps");
  const double wd = group.number("weight_decay");
  const bool maximize = flag(group, "maximize");
  for (auto& [name, p] : group.params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    check_grad(p, g, name, "Adagrad");
    if (!state_.count(name)) init_state(name, p, group.number("initial_accumulator_value"));
    ValueMap& st = state_[name];
    Tensor sum = state_tensor(st, "sum", name, "Adagrad");
    const double step = st.at("step").as_double() + 1.0;
    st["step"] = Value(step);
    const double clr = lr / (1.0 + (step - 1.0) * lr_decay);
    if (fusable(p, {g, sum})) {
      dispatch_floating(p.dtype(), "Adagrad", [&](auto tag) {
        using T = decltype(tag);
        T* P = p.data_ptr<T>();
        const T* G = g.data_ptr<T>();
        T* S = sum.data_ptr<T>();
        const T wd_t = static_cast<T>(wd), eps_t = static_cast<T>(eps), nclr_t = static_cast<T>(-clr);
        const T one = static_cast<T>(1.0);
        parallel_for(0, p.numel(), kGrain, [=](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) {
            T d = maximize ? -G[i] : G[i];
            if (wd != 0.0) d = d + wd_t * P[i];
            S[i] = S[i] + (one * d) * d;
            const T std_dev = std::sqrt(S[i]) + eps_t;
            P[i] = P[i] + (nclr_t * d) / std_dev;
          }
        });
      });
      p.bump_version();
      sum.bump_version();
    } else {
      Tensor d = maximize ? neg(g) : g;
      if (wd != 0.0) d = add(d, p, wd);
      sum.addcmul_(d, d, 1.0);
      Tensor std_dev = sqrt(sum);
      std_dev.add_(eps);
      p.addcdiv_(d, std_dev, -clr);
    }
  }
}

}  // namespace ember::optim
