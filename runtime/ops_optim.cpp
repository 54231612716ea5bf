// Front ends of the fused optimizer updates (fused_sgd_, fused_adam_, ...): check the parameter,
// gradient and state tensors, run the device's kernel in place and bump the versions of what it
// wrote. Tensors that are not contiguous go through contiguous copies, so every layout and device
// runs the one per-element math of kernels/common/optim.h.
#include <array>
#include <cmath>

#include "ember/runtime/autograd.h"
#include "runtime/dispatch.h"
#include "ember/runtime/ops.h"

namespace ember {
namespace {

// One tensor of an update: its name in errors, whether the options use it (state an option leaves
// out may be undefined and is ignored), and whether the update writes it.
struct Operand {
  const Tensor* tensor;
  const char* name;
  bool used;
  bool written;
};
Operand read(const Tensor& t, const char* name) { return {&t, name, true, false}; }
Operand written(const Tensor& t, const char* name, bool used = true) { return {&t, name, used, true}; }

// The tensors of one update, the parameter first and its gradient second, as the kernels take
// them: checked (f32/f64, the parameter's dtype, device and shape), and contiguous. One that is not
// (a transposed or strided view) is replaced by a contiguous copy, which finish() copies back.
template <size_t N>
class Operands {
 public:
  Operands(const char* who, const std::array<Operand, N>& ops) : ops_(ops) {
    const Tensor& p = *ops_[0].tensor;
    for (const Operand& o : ops_) {
      if (o.used) detail::check_defined(*o.tensor, who, o.name);
    }
    detail::check_floating(p, who, "param");
    EMBER_CHECK(!(grad_enabled() && p.requires_grad()), "[", who,
                "] updates the parameter in place, which autograd does not record; run it under NoGradGuard");
    for (const Operand& o : ops_) {
      const Tensor& t = *o.tensor;
      if (!o.used || &o == &ops_[0]) continue;
      EMBER_CHECK(t.dtype() == p.dtype() && t.device() == p.device() && t.shape() == p.shape(), "[", who, "] ",
                  o.name, " is ", dtype_name(t.dtype()), t.shape().str(), " on ", t.device().str(),
                  " but param is ", dtype_name(p.dtype()), p.shape().str(), " on ", p.device().str());
    }
    for (size_t i = 0; i < N; ++i) {
      const Tensor& t = *ops_[i].tensor;
      if (!ops_[i].used) continue;
      copied_[i] = !t.is_contiguous();
      // A CUDA graph update sets the captured kernel's scalars and runs nothing, so no copy
      // could carry the results back.
      EMBER_CHECK(!copied_[i] || !kernels::cuda_graph_updating(), "[", who, "] ", ops_[i].name,
                  " is not contiguous, which a CUDA graph's optimizer update cannot handle");
      if (copied_[i]) {
        dense_[i] = empty(t.shape(), TensorOptions(t.dtype()).with_device(t.device()));
        EMBER_DISPATCH(t.device(), copy, t, dense_[i]);
      } else {
        dense_[i] = t;
      }
    }
  }
  // What the kernel takes for operand i: the tensor or its contiguous copy (undefined when unused).
  const Tensor& operator[](size_t i) const { return dense_[i]; }
  // After the kernel: copies the results back into the tensors that had copies and bumps the
  // version of every tensor written.
  void finish() {
    for (size_t i = 0; i < N; ++i) {
      const Operand& o = ops_[i];
      if (!o.used || !o.written) continue;
      if (copied_[i]) EMBER_DISPATCH(o.tensor->device(), copy, dense_[i], *o.tensor);
      o.tensor->bump_version();
    }
  }

 private:
  std::array<Operand, N> ops_;
  std::array<Tensor, N> dense_;
  std::array<bool, N> copied_{};
};

void adam_update(const char* who, bool decoupled, const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                 const Tensor& exp_avg_sq, const Tensor& max_exp_avg_sq, double step, double lr, double beta1,
                 double beta2, double eps, double weight_decay, bool amsgrad, bool maximize, const Tensor& lowp) {
  if (lowp.defined()) {
    EMBER_CHECK(param.defined() && param.dtype() == DType::f32 && detail::is_half(lowp.dtype()) &&
                    lowp.shape() == param.shape() && lowp.device() == param.device(),
                "[", who, "] lowp_copy must be a bf16/f16 tensor of a float32 param's shape and device, got ",
                dtype_name(lowp.dtype()), lowp.shape().str(), " on ", lowp.device().str(), " for param ",
                param.defined() ? dtype_name(param.dtype()) : "undefined",
                param.defined() ? param.shape().str() : std::string());
  }
  Operands<5> t(who, {written(param, "param"), read(grad, "grad"), written(exp_avg, "exp_avg"),
                      written(exp_avg_sq, "exp_avg_sq"), written(max_exp_avg_sq, "max_exp_avg_sq", amsgrad)});
  const double bias_correction1 = 1.0 - std::pow(beta1, step);
  const double bias_correction2 = 1.0 - std::pow(beta2, step);
  const double step_size = lr / bias_correction1, bias_correction2_sqrt = std::sqrt(bias_correction2);
  const kernels::AdamUpdate u{lr, beta1, beta2, eps, weight_decay, step_size, bias_correction2_sqrt,
                              amsgrad, maximize, decoupled};
  const bool fused_copy = lowp.defined() && param.device().is_cpu() && param.is_contiguous() && lowp.is_contiguous();
  if (fused_copy) kernels::adam_update_cpu(t[0], t[1], t[2], t[3], t[4], u, lowp);
  else EMBER_DISPATCH(param.device(), adam_update, t[0], t[1], t[2], t[3], t[4], u);
  t.finish();
  if (lowp.defined()) {
    if (!fused_copy) EMBER_DISPATCH(param.device(), copy, param, lowp);
    lowp.bump_version();
  }
}

}  // namespace

void fused_sgd_(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, double lr, double momentum,
                double dampening, double weight_decay, bool nesterov, bool maximize, bool first_step) {
  Operands<3> t("SGD", {written(param, "param"), read(grad, "grad"),
                        written(momentum_buffer, "momentum_buffer", momentum != 0.0)});
  const kernels::SgdUpdate u{lr, momentum, dampening, weight_decay, nesterov, maximize, first_step};
  EMBER_DISPATCH(param.device(), sgd_update, t[0], t[1], t[2], u);
  t.finish();
}

void fused_adam_(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                 const Tensor& max_exp_avg_sq, double step, double lr, double beta1, double beta2, double eps,
                 double weight_decay, bool amsgrad, bool maximize, const Tensor& lowp_copy) {
  adam_update("Adam", false, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, beta1, beta2, eps,
              weight_decay, amsgrad, maximize, lowp_copy);
}

void fused_adamw_(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                  const Tensor& max_exp_avg_sq, double step, double lr, double beta1, double beta2, double eps,
                  double weight_decay, bool amsgrad, bool maximize, const Tensor& lowp_copy) {
  adam_update("AdamW", true, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, beta1, beta2, eps,
              weight_decay, amsgrad, maximize, lowp_copy);
}

void fused_rmsprop_(const Tensor& param, const Tensor& grad, const Tensor& square_avg, const Tensor& momentum_buffer,
                    const Tensor& grad_avg, double lr, double alpha, double eps, double weight_decay, double momentum,
                    bool centered, bool maximize) {
  Operands<5> t("RMSprop", {written(param, "param"), read(grad, "grad"), written(square_avg, "square_avg"),
                            written(momentum_buffer, "momentum_buffer", momentum > 0.0),
                            written(grad_avg, "grad_avg", centered)});
  const kernels::RmspropUpdate u{lr, alpha, eps, weight_decay, momentum, centered, maximize};
  EMBER_DISPATCH(param.device(), rmsprop_update, t[0], t[1], t[2], t[3], t[4], u);
  t.finish();
}

void fused_adagrad_(const Tensor& param, const Tensor& grad, const Tensor& state_sum, double step, double lr,
                    double lr_decay, double weight_decay, double eps, bool maximize) {
  Operands<3> t("Adagrad", {written(param, "param"), read(grad, "grad"), written(state_sum, "state_sum")});
  const kernels::AdagradUpdate u{lr / (1.0 + (step - 1.0) * lr_decay), eps, weight_decay, maximize};
  EMBER_DISPATCH(param.device(), adagrad_update, t[0], t[1], t[2], u);
  t.finish();
}

}  // namespace ember
