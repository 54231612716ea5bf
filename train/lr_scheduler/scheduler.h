// The base of the epoch-driven LR schedulers (torch's _LRScheduler): the step counts, base_lrs,
// writing each group's lr, and the state dict every scheduler shares. The families derive from it
// and hold only their parameters; their formulas are free functions of the step.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/runtime/value.h"
#include "ember/train/optim.h"

namespace ember::optim {

// Derived constructors set their fields, then call init(), which performs torch's initial step
// (last_epoch -1 -> 0).
class EMBER_API LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  // "StepLR", "OneCycleLR", ...: the torch class name, used in error messages.
  const std::string& type_name() const { return type_name_; }
  // The optimizer whose groups this scheduler sets.
  Optimizer& optimizer() const { return *optimizer_; }
  // Advances one epoch (or iteration) with the chainable formula and sets each group's lr.
  virtual void step();
  // Jumps to `epoch` using the closed form where torch has one (torch's deprecated step(epoch)).
  virtual void step_to(double epoch);
  // The lr of each group after the latest step.
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  // Index of the latest step (0 right after construction).
  int64_t last_epoch() const { return last_epoch_; }
  // Each group's "initial_lr" when the scheduler was built.
  const std::vector<double>& base_lrs() const { return base_lrs_; }

  // torch's state_dict(): every field except the optimizer.
  virtual Value state_dict() const;
  // Restores a state_dict() of the same scheduler type; throws naming missing, unexpected or
  // mistyped keys, and leaves the scheduler unchanged when it throws.
  virtual void load_state_dict(const Value& state_dict);

 protected:
  LRScheduler(std::string type_name, Optimizer& optimizer);
  // torch's _LRScheduler.__init__: sets/reads "initial_lr", base_lrs, then the initial step.
  void init(int64_t last_epoch);
  // Resets the step counts and steps once (torch's _initial_step).
  void initial_step();
  // The chainable lr formula for last_epoch_ (reads the groups' current lr).
  virtual std::vector<double> get_lr() = 0;
  // The closed form for last_epoch_, where torch defines one.
  virtual std::optional<std::vector<double>> closed_form_lr() const { return std::nullopt; }
  // Writes the scheduler-specific fields into a state dict.
  virtual void save_fields(ValueMap&) const {}
  // Reads them back: parse everything first, then assign (keeps load atomic).
  virtual void load_fields(const ValueMap&) {}
  // Sets each group's lr and records last_lr.
  void apply(const std::vector<double>& lrs);
  std::vector<double> group_lrs() const;
  // f(base_lr) for each group: how the closed forms fill their lr lists.
  template <typename F>
  std::vector<double> per_base_lr(F f) const {
    std::vector<double> out;
    for (double b : base_lrs_) out.push_back(f(b));
    return out;
  }
  size_t num_groups() const { return optimizer_->param_groups().size(); }
  // Throws unless the optimizer still has the number of groups the scheduler was built for.
  void check_num_groups() const;

  Optimizer* optimizer_;
  std::string type_name_;
  std::vector<double> base_lrs_;
  int64_t last_epoch_ = -1;
  int64_t step_count_ = 0;
  std::vector<double> last_lr_;

  friend class SequentialLR;
  friend class ChainedScheduler;
};

}  // namespace ember::optim
