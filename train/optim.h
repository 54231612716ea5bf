// Optimizers (SGD, Adam, AdamW, RMSprop, Adagrad) with PyTorch 1.13's single-tensor
// (foreach=False) update math, parameter groups with per-group options, PyTorch-layout state dicts,
// and gradient clipping. Parameters are named; per-parameter state is keyed by that name.
//
// Updates: each parameter's step is one call of the runtime's fused in-place update (fused_sgd_,
// fused_adam_, ... in runtime/ops.h), one pass over the data on the CPU or CUDA that performs torch's
// float operations in torch's order (scalars rounded to the parameter dtype as ATen does); strided
// views go through contiguous copies with the same bits. It runs under NoGradGuard.
//
// State dict layout (an ember::Value map), PyTorch's plus parameter names:
//   {"state": {"<index>": {"step": 3.0, "exp_avg": Tensor, ...}, ...},
//    "param_groups": [{"lr": 0.001, "betas": [0.9, 0.999], ..., "params": [0, 1],
//                      "param_names": ["fc.weight", "fc.bias"]}, ...]}
// Indices number the parameters across groups in order (0, 1, ...), as torch does; maps have string
// keys, so index 3 is the key "3". Only parameters that have state appear under "state". "param_names"
// lists each group's parameter names in the order of "params"; load_state_dict matches parameters by
// these names (and falls back to position, as torch, when a dict has no "param_names").
// Per-optimizer state keys are torch's: SGD {momentum_buffer (tensor, or null when momentum == 0)},
// Adam/AdamW {step, exp_avg, exp_avg_sq, max_exp_avg_sq (amsgrad)}, RMSprop {step, square_avg,
// momentum_buffer (momentum > 0), grad_avg (centered)}, Adagrad {step, sum}.
// `step` differs from torch in kind only: torch 1.13 keeps Adam/AdamW/Adagrad's step as a float32
// 0-dim tensor and RMSprop's as a Python int; Ember stores a Value float (Adam, AdamW, Adagrad) or
// int (RMSprop). load_state_dict also accepts a one-element tensor there. The float never saturates
// at 2^24 steps as torch's float32 tensor does; below that the numbers are identical.
// Group options carry torch's implementation switches (foreach, capturable, differentiable, fused)
// with torch's defaults for layout fidelity; Ember records and ignores them (one implementation).
// state_dict() tensors alias the live state (as torch); deep_copy() the Value to snapshot it.
#pragma once
#include <array>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/runtime/tensor.h"
#include "ember/runtime/value.h"

namespace ember::optim {

// Parameters with their dotted names, as Module::named_parameters() returns them.
using NamedParams = std::vector<std::pair<std::string, Tensor>>;

// A parameter group: parameters and their options by torch's names ("lr", "betas", "momentum", ...).
// Options missing here are filled from the optimizer's defaults when the group is added. Extra keys
// (a scheduler's "initial_lr", "max_lr", ...) are kept. The optimizer reads the options at every
// step, so changing them (as schedulers do) takes effect at the next step.
struct EMBER_API ParamGroup {
  NamedParams params;
  ValueMap options;

  // The learning rate ("lr").
  double lr() const;
  // Sets the learning rate ("lr").
  void set_lr(double lr);
  // A numeric option; throws naming the key when it is missing or not a number.
  double number(const std::string& key) const;
};

class EMBER_API Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // "SGD", "Adam", ...: the torch class name, used in error messages.
  const std::string& type_name() const { return type_name_; }
  // The groups, in order; options may be edited in place (names and tensors must not change).
  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  // The defaults every group starts from (torch's optimizer.defaults).
  const ValueMap& defaults() const { return defaults_; }

  // Adds a group; its parameters must be new to this optimizer (by name and by tensor).
  void add_param_group(ParamGroup group);
  // Clears gradients: sets them to none (default, as torch 2.x) or fills them with zeros.
  void zero_grad(bool set_to_none = true);
  // One update of every parameter that has a gradient (parameters without one are skipped).
  void step();
  // Re-evaluates the loss with grad mode on, then steps; returns the closure's loss.
  Tensor step(const std::function<Tensor()>& closure);

  // The state of one parameter, or nullptr while it has none (before its first update).
  const ValueMap* state(const std::string& param_name) const;
  // {"state": ..., "param_groups": ...} in the layout described at the top of this file.
  Value state_dict() const;
  // Restores a state_dict(). Validates group count, parameter counts and names per group, option
  // types, and each state entry's keys, tensor shapes and dtypes against the parameters; reports
  // every difference in one ember::Error and changes nothing when it throws. Tensors are copied (to
  // the parameter's device); group options are replaced by the saved ones (as torch).
  void load_state_dict(const Value& state_dict);

  // Low-precision copies of the parameters, for mixed precision: after keep_lowp_copies(bf16 or
  // f16), every step() also leaves each float32 CPU parameter's values rounded to that dtype (the
  // bits of param.to(dtype)) in a copy the optimizer keeps. Adam and AdamW write it in their
  // update's own pass, while each chunk is in the cache; the others cast after the update. The
  // Trainer hands the copies to autocast (autocast_use_lowp_copy) at each mixed-precision step,
  // so the forward pass does not cast the weights again. std::nullopt (the default) keeps none.
  // Copies are not part of state_dict(); load_state_dict() and a change of dtype drop them.
  void keep_lowp_copies(std::optional<DType> dtype);
  struct LowpCopy {
    Tensor param, copy;
    uint32_t version;  // param.version() when copy was written: the copy is valid while they are equal
  };
  // The copies by parameter name (parameters updated at least once since copies were turned on).
  const std::map<std::string, LowpCopy>& lowp_copies() const { return lowp_; }
  // Inside an enabled autocast scope: hands the valid copies to autocast (autocast_use_lowp_copy),
  // so that the scope's casts of those parameters reuse them. Outside one, does nothing.
  void use_lowp_copies() const;

 protected:
  Optimizer(std::string type_name, ValueMap defaults);
  // Adds the constructor's groups (call from the derived constructor, where virtuals dispatch).
  void init_groups(std::vector<ParamGroup> groups);

  // Validates a group's merged options and writes them back in canonical kinds (floats as Float).
  virtual void check_options(ValueMap& options, const std::string& where) const = 0;
  // Updates every parameter of one group that has a gradient.
  virtual void step_group(ParamGroup& group) = 0;
  // What a valid state entry holds for a parameter of a group with these options.
  enum class Field { ParamTensor, NullableParamTensor, FloatStep, IntStep };
  struct StateField {
    std::string key;
    Field kind;
    bool required;
  };
  virtual std::vector<StateField> state_fields(const ValueMap& options) const = 0;
  // Called for each newly added group (Adagrad creates its state eagerly, as torch).
  virtual void group_added(ParamGroup&) {}

  // Per-parameter state by parameter name.
  std::map<std::string, ValueMap> state_;
  // For step_group: the low-precision copy of parameter `name` to write during its update, or
  // nullptr when copies are off or p is not a float32 CPU tensor. After writing entry->copy, set
  // entry->version = p.version(); step() casts the copies left stale after step_group.
  LowpCopy* lowp_copy_for(const std::string& name, const Tensor& p);

 private:
  std::string type_name_;
  ValueMap defaults_;
  std::vector<ParamGroup> groups_;
  std::optional<DType> lowp_dtype_;
  std::map<std::string, LowpCopy> lowp_;
};

// --- SGD -------------------------------------------------------------------------------------
struct SGDOptions {
  std::optional<double> lr{};  // required: here or in every group (torch has no default)
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool maximize = false;
};

// torch.optim.SGD: momentum with dampening, Nesterov, L2 weight decay, maximize.
class EMBER_API SGD : public Optimizer {
 public:
  // One group holding `params`, with these options.
  SGD(NamedParams params, SGDOptions options);
  // Several groups; options a group does not set come from `options`.
  SGD(std::vector<ParamGroup> groups, SGDOptions options);

 protected:
  void check_options(ValueMap& options, const std::string& where) const override;
  void step_group(ParamGroup& group) override;
  std::vector<StateField> state_fields(const ValueMap& options) const override;
};

// --- Adam / AdamW ----------------------------------------------------------------------------
struct AdamOptions {
  double lr = 1e-3;
  std::array<double, 2> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0.0;  // L2 penalty added to the gradient
  bool amsgrad = false;
  bool maximize = false;
};
struct AdamWOptions {
  double lr = 1e-3;
  std::array<double, 2> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 1e-2;  // decoupled: param *= 1 - lr * weight_decay
  bool amsgrad = false;
  bool maximize = false;
};

// torch.optim.Adam (AMSGrad, L2 weight decay, maximize).
class EMBER_API Adam : public Optimizer {
 public:
  // One group holding `params`, with these options.
  Adam(NamedParams params, AdamOptions options = {});
  // Several groups; options a group does not set come from `options`.
  Adam(std::vector<ParamGroup> groups, AdamOptions options = {});

 protected:
  Adam(std::string type_name, ValueMap defaults, bool decoupled);
  void check_options(ValueMap& options, const std::string& where) const override;
  void step_group(ParamGroup& group) override;
  std::vector<StateField> state_fields(const ValueMap& options) const override;

 private:
  bool decoupled_;  // AdamW
};

// torch.optim.AdamW: Adam with decoupled weight decay.
class EMBER_API AdamW : public Adam {
 public:
  // One group holding `params`, with these options.
  AdamW(NamedParams params, AdamWOptions options = {});
  // Several groups; options a group does not set come from `options`.
  AdamW(std::vector<ParamGroup> groups, AdamWOptions options = {});
};

// --- RMSprop ---------------------------------------------------------------------------------
struct RMSpropOptions {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0;
  bool centered = false;
  bool maximize = false;
};

// torch.optim.RMSprop (centered, momentum, L2 weight decay, maximize).
class EMBER_API RMSprop : public Optimizer {
 public:
  // One group holding `params`, with these options.
  RMSprop(NamedParams params, RMSpropOptions options = {});
  // Several groups; options a group does not set come from `options`.
  RMSprop(std::vector<ParamGroup> groups, RMSpropOptions options = {});

 protected:
  void check_options(ValueMap& options, const std::string& where) const override;
  void step_group(ParamGroup& group) override;
  std::vector<StateField> state_fields(const ValueMap& options) const override;
};

// --- Adagrad ---------------------------------------------------------------------------------
struct AdagradOptions {
  double lr = 1e-2;
  double lr_decay = 0.0;
  double weight_decay = 0.0;
  double initial_accumulator_value = 0.0;
  double eps = 1e-10;
  bool maximize = false;
};

// torch.optim.Adagrad (lr decay, L2 weight decay, initial accumulator, maximize). As torch, its
// state ("step" 0 and "sum" filled with initial_accumulator_value) exists from construction.
class EMBER_API Adagrad : public Optimizer {
 public:
  // One group holding `params`, with these options.
  Adagrad(NamedParams params, AdagradOptions options = {});
  // Several groups; options a group does not set come from `options`.
  Adagrad(std::vector<ParamGroup> groups, AdagradOptions options = {});

 protected:
  void check_options(ValueMap& options, const std::string& where) const override;
  void step_group(ParamGroup& group) override;
  std::vector<StateField> state_fields(const ValueMap& options) const override;
  void group_added(ParamGroup& group) override;

 private:
  void init_state(const std::string& name, const Tensor& param, double initial_value);
};

// --- gradient clipping -----------------------------------------------------------------------
// Scales all gradients together so that their joint norm is at most max_norm, as
// torch.nn.utils.clip_grad_norm_: coef = min(1, max_norm / (total_norm + 1e-6)) in the gradients'
// dtype. norm_type: a finite p > 0, or INFINITY for the max-abs norm. Returns the total norm before
// clipping (0 when no parameter has a gradient). With error_if_nonfinite, a NaN/inf total norm
// throws and leaves the gradients unchanged.
EMBER_API double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                                 bool error_if_nonfinite = false);
// clip_grad_norm_ over named parameters (names are not used).
EMBER_API double clip_grad_norm_(const NamedParams& params, double max_norm, double norm_type = 2.0,
                                 bool error_if_nonfinite = false);
// Clamps every gradient element into [-clip_value, clip_value] (torch.nn.utils.clip_grad_value_).
EMBER_API void clip_grad_value_(const std::vector<Tensor>& params, double clip_value);
// clip_grad_value_ over named parameters.
EMBER_API void clip_grad_value_(const NamedParams& params, double clip_value);

}  // namespace ember::optim
