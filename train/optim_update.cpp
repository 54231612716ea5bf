// The steps of SGD, Adam/AdamW, RMSprop and Adagrad: per parameter, the optimizer's bookkeeping
// (torch's state keys, step counters, state created on the first step) around one call of the
// runtime's fused in-place update (fused_sgd_, fused_adam_, ... in runtime/ops.h), which holds
// torch 1.13's single-tensor math for every device and tensor layout.
#include <string>

#include "ember/runtime/ops.h"
#include "ember/train/optim.h"

namespace ember::optim {
namespace {

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
    // The first step with momentum sets the buffer to the update direction (torch clones it).
    const bool first_step = momentum != 0.0 && !buf.defined();
    if (first_step) buf = empty(p.shape(), TensorOptions(p.dtype()).with_device(p.device()));
    fused_sgd_(p, g, buf, lr, momentum, dampening, wd, nesterov, maximize, first_step);
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
    LowpCopy* copy = lowp_copy_for(name, p);
    const Tensor lowp = copy ? copy->copy : Tensor();
    if (decoupled_) {
      fused_adamw_(p, g, m, v, vmax, step, lr, beta1, beta2, eps, wd, amsgrad, maximize, lowp);
    } else {
      fused_adam_(p, g, m, v, vmax, step, lr, beta1, beta2, eps, wd, amsgrad, maximize, lowp);
    }
    if (copy) copy->version = p.version();
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
    fused_rmsprop_(p, g, sq, buf, ga, lr, alpha, eps, wd, momentum, centered, maximize);
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
    fused_adagrad_(p, g, sum, step, lr, lr_decay, wd, eps, maximize);
  }
}

}  // namespace ember::optim
