// Learning-rate schedulers with torch 1.13's behaviour: they act on an Optimizer's group options
// ("lr", and "momentum"/"betas" for OneCycleLR), use torch's recursive (chainable) get_lr formulas
// step to step and its closed forms for step_to(epoch), so the lr sequences match torch's to the bit.
// state_dict() holds torch's __dict__ fields (last_epoch, _step_count, base_lrs, _last_lr and every
// scheduler-specific field) as an ember::Value map; load_state_dict() checks the keys and types.
//
// Differences from torch, on purpose: no `verbose` printing and no step-order warnings (the
// `verbose` and `_get_lr_called_within_step` keys are not saved and are ignored on load);
// OneCycleLR saves "anneal_strategy" ("cos"/"linear") instead of torch's unpicklable bound method;
// LambdaLR cannot save its functions (see LambdaLR); ReduceLROnPlateau always has "_last_lr".
// A scheduler keeps a reference to its optimizer: the optimizer must outlive it.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/api.h"
#include "runtime/value.h"
#include "train/optim.h"

namespace ember::optim {

// Base of the epoch-driven schedulers (torch's _LRScheduler). Derived constructors set their
// fields, then call init(), which performs torch's initial step (last_epoch -1 -> 0).
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
  size_t num_groups() const { return optimizer_->param_groups().size(); }

  Optimizer* optimizer_;
  std::string type_name_;
  std::vector<double> base_lrs_;
  int64_t last_epoch_ = -1;
  int64_t step_count_ = 0;
  std::vector<double> last_lr_;

  friend class SequentialLR;
  friend class ChainedScheduler;
};

// lr = base_lr * lambda(epoch). The functions cannot be saved: state_dict() stores "lr_lambdas" as
// a list of nulls (one per group, as torch does for plain functions) plus "lr_lambdas_note" saying
// so; load_state_dict() restores everything else and keeps this scheduler's own functions.
class EMBER_API LambdaLR : public LRScheduler {
 public:
  using Fn = std::function<double(int64_t epoch)>;
  LambdaLR(Optimizer& optimizer, Fn lr_lambda, int64_t last_epoch = -1);
  // One function per parameter group.
  LambdaLR(Optimizer& optimizer, std::vector<Fn> lr_lambdas, int64_t last_epoch = -1);

 protected:
  std::vector<double> get_lr() override;
  void save_fields(ValueMap& m) const override;
  void load_fields(const ValueMap& m) override;

 private:
  std::vector<Fn> lambdas_;
};

// lr *= gamma every step_size epochs.
class EMBER_API StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1, int64_t last_epoch = -1);

 protected:
  std::vector<double> get_lr() override;
  std::optional<std::vector<double>> closed_form_lr() const override;
  void save_fields(ValueMap& m) const override;
  void load_fields(const ValueMap& m) override;

 private:
  int64_t step_size_;
  double gamma_;
};

// lr *= gamma at each milestone (a milestone listed k times multiplies by gamma^k).
class EMBER_API MultiStepLR : public LRScheduler {
 public:
  MultiStepLR(Optimizer& optimizer, const std::vector<int64_t>& milestones, double gamma = 0.1,
              int64_t last_epoch = -1);

 protected:
  std::vector<double> get_lr() override;
  std::optional<std::vector<double>> closed_form_lr() const override;
  void save_fields(ValueMap& m) const override;  // "milestones": {"<epoch>": count} as torch's Counter
  void load_fields(const ValueMap& m) override;

 private:
  std::map<int64_t, int64_t> milestones_;  // epoch -> count
  double gamma_;
};

// lr = base_lr * factor until total_iters, then base_lr.
class EMBER_API ConstantLR : public LRScheduler {
 public:
  ConstantLR(Optimizer& optimizer, double factor = 1.0 / 3, int64_t total_iters = 5, int64_t last_epoch = -1);

 protected:
  std::vector<double> get_lr() override;
  std::optional<std::vector<double>> closed_form_lr() const override;
  void save_fields(ValueMap& m) const override;
  void load_fields(const ValueMap& m) override;

 private:
  double factor_;
  int64_t total_iters_;
};

// lr factor moves linearly from start_factor to end_factor over total_iters.
class EMBER_API LinearLR : public LRScheduler {
 public:
  LinearLR(Optimizer& optimizer, double start_factor = 1.0 / 3, double end_factor = 1.0, int64_t total_iters = 5,
           int64_t last_epoch = -1);

 protected:
  std::vector<double> get_lr() override;
  std::optional<std::vector<double>> closed_form_lr() const override;
  void save_fields(ValueMap& m) const override;
  void load_fields(const ValueMap& m) override;

 private:
  double start_factor_, end_factor_;
  int64_t total_iters_;
};

// lr *= gamma every epoch.
class EMBER_API ExponentialLR : public LRScheduler {
 public:
  ExponentialLR(Optimizer& optimizer, double gamma, int64_t last_epoch = -1);

 protected:
  std::vector<double> get_lr() override;
  std::optional<std::vector<double>> closed_form_lr() const override;
  void save_fields(ValueMap& m) const override;
  void load_fields(const ValueMap& m) override;

 private:
  double gamma_;
};

// lr = base_lr * (1 - epoch/total_iters)^power, then constant.
class EMBER_API PolynomialLR : public LRScheduler {
 public:
  PolynomialLR(Optimizer& optimizer, int64_t total_iters = 5, double power = 1.0, int64_t last_epoch = -1);

 protected:
  std::vector<double> get_lr() override;
  std::optional<std::vector<double>> closed_form_lr() const override;
  void save_fields(ValueMap& m) const override;
  void load_fields(const ValueMap& m) override;

 private:
  int64_t total_iters_;
  double power_;
};

// Cosine annealing from base_lr to eta_min over T_max epochs (torch's recursive form, which keeps
// following the cosine past T_max).
class EMBER_API CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min = 0.0, int64_t last_epoch = -1);

 protected:
  std::vector<double> get_lr() override;
  std::optional<std::vector<double>> closed_form_lr() const override;
  void save_fields(ValueMap& m) const override;
  void load_fields(const ValueMap& m) override;

 private:
  int64_t T_max_;
  double eta_min_;
};

// SGDR: cosine annealing restarted every T_i epochs, T_i growing by T_mult. step_to() accepts
// fractional epochs (epoch + batch / batches_per_epoch), as torch.
class EMBER_API CosineAnnealingWarmRestarts : public LRScheduler {
 public:
  CosineAnnealingWarmRestarts(Optimizer& optimizer, int64_t T_0, int64_t T_mult = 1, double eta_min = 0.0,
                              int64_t last_epoch = -1);
  void step() override;
  void step_to(double epoch) override;
  double T_cur() const { return T_cur_; }

 protected:
  std::vector<double> get_lr() override;
  void save_fields(ValueMap& m) const override;
  void load_fields(const ValueMap& m) override;

 private:
  void set_lrs();
  int64_t T_0_, T_i_, T_mult_;
  double eta_min_;
  double T_cur_;
};

struct OneCycleLROptions {
  std::vector<double> max_lr{};             // one value, or one per group (required)
  std::optional<int64_t> total_steps{};     // or epochs * steps_per_epoch
  std::optional<int64_t> epochs{};
  std::optional<int64_t> steps_per_epoch{};
  double pct_start = 0.3;
  std::string anneal_strategy = "cos";      // "cos" or "linear"
  bool cycle_momentum = true;               // cycles "momentum", or betas[0] for Adam-like optimizers
  std::vector<double> base_momentum{0.85};  // one value, or one per group
  std::vector<double> max_momentum{0.95};
  double div_factor = 25.0;                 // initial_lr = max_lr / div_factor
  double final_div_factor = 1e4;            // min_lr = initial_lr / final_div_factor
  bool three_phase = false;
  int64_t last_epoch = -1;
};

// The 1cycle policy (Smith & Topin). Stores initial_lr, max_lr, min_lr (and max_momentum,
// base_momentum) in the optimizer's groups, as torch; stepping past total_steps throws.
class EMBER_API OneCycleLR : public LRScheduler {
 public:
  OneCycleLR(Optimizer& optimizer, const OneCycleLROptions& options);
  void step() override;

 protected:
  std::vector<double> get_lr() override;
  void save_fields(ValueMap& m) const override;
  void load_fields(const ValueMap& m) override;

 private:
  struct Phase {
    double end_step;
    std::string start_lr, end_lr, start_momentum, end_momentum;
  };
  double anneal(double start, double end, double pct) const;
  int64_t total_steps_;
  std::vector<Phase> phases_;
  std::string anneal_strategy_;
  bool cycle_momentum_;
  bool use_beta1_ = false;
};

// Runs schedulers one after another: scheduler i+1 takes over at milestones[i] (restarting at
// its epoch 0 through its closed form, as torch).
class EMBER_API SequentialLR : public LRScheduler {
 public:
  SequentialLR(Optimizer& optimizer, std::vector<std::shared_ptr<LRScheduler>> schedulers,
               std::vector<int64_t> milestones, int64_t last_epoch = -1);
  void step() override;
  void step_to(double epoch) override;  // throws: torch's SequentialLR has no step(epoch)
  Value state_dict() const override;    // {"_milestones", "last_epoch", "_last_lr", "_schedulers": [...]}
  void load_state_dict(const Value& state_dict) override;

 protected:
  std::vector<double> get_lr() override;

 private:
  std::vector<std::shared_ptr<LRScheduler>> schedulers_;
  std::vector<int64_t> milestones_;
};

// Steps every scheduler at each step (their factors multiply). As torch's, it keeps no epoch
// count of its own (last_epoch() stays -1); its schedulers keep theirs.
class EMBER_API ChainedScheduler : public LRScheduler {
 public:
  explicit ChainedScheduler(std::vector<std::shared_ptr<LRScheduler>> schedulers);
  void step() override;
  void step_to(double epoch) override;  // throws: torch's ChainedScheduler has no step(epoch)
  Value state_dict() const override;    // {"_last_lr", "_schedulers": [...]}
  void load_state_dict(const Value& state_dict) override;

 protected:
  std::vector<double> get_lr() override;

 private:
  std::vector<std::shared_ptr<LRScheduler>> schedulers_;
};

struct ReduceLROnPlateauOptions {
  std::string mode = "min";            // "min": lower metrics are better; "max": higher
  double factor = 0.1;                 // new_lr = lr * factor (must be < 1)
  int64_t patience = 10;               // bad epochs tolerated before reducing
  double threshold = 1e-4;
  std::string threshold_mode = "rel";  // "rel" or "abs"
  int64_t cooldown = 0;                // epochs to wait after a reduction
  std::vector<double> min_lr{0.0};     // one value, or one per group
  double eps = 1e-8;                   // reductions smaller than eps are skipped
};

// Reduces the lr when a metric stops improving (torch.optim.lr_scheduler.ReduceLROnPlateau).
class EMBER_API ReduceLROnPlateau {
 public:
  ReduceLROnPlateau(Optimizer& optimizer, ReduceLROnPlateauOptions options = {});
  // Records one epoch's metric and reduces the lr if it has plateaued.
  void step(double metric);
  // As step(metric), with an explicit epoch number (torch's deprecated form).
  void step(double metric, int64_t epoch);
  std::vector<double> get_last_lr() const { return last_lr_; }
  Optimizer& optimizer() const { return *optimizer_; }
  bool in_cooldown() const { return cooldown_counter_ > 0; }
  double best() const { return best_; }
  int64_t num_bad_epochs() const { return num_bad_epochs_; }
  int64_t cooldown_counter() const { return cooldown_counter_; }
  int64_t last_epoch() const { return last_epoch_; }

  // All fields: factor, min_lrs, patience, cooldown, cooldown_counter, mode, threshold,
  // threshold_mode, best, num_bad_epochs, mode_worse, eps, last_epoch, _last_lr.
  Value state_dict() const;
  // Restores a state_dict(); throws naming missing, unexpected or mistyped keys.
  void load_state_dict(const Value& state_dict);

 private:
  bool is_better(double a, double best) const;
  void reduce_lr();
  Optimizer* optimizer_;
  double factor_;
  std::vector<double> min_lrs_;
  int64_t patience_;
  int64_t cooldown_;
  int64_t cooldown_counter_ = 0;
  std::string mode_;
  double threshold_;
  std::string threshold_mode_;
  double best_;
  int64_t num_bad_epochs_ = 0;
  double mode_worse_;
  double eps_;
  int64_t last_epoch_ = 0;
  std::vector<double> last_lr_;
};

}  // namespace ember::optim
