// Cosine-shaped schedules: CosineAnnealingLR, SGDR's CosineAnnealingWarmRestarts and the 1cycle
// policy (OneCycleLR, cosine or linear). The formulas are free functions of the step below; the
// classes hold the parameters and the position, and step with torch's chainable forms.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/train/lr_scheduler/scheduler.h"

namespace ember::optim {

// Cosine annealing from base_lr at t = 0 to eta_min at t = T_max (and back up past it): torch's
// closed form, eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2. t may be fractional.
EMBER_API double cosine_annealing_lr(double base_lr, double eta_min, double t, double T_max);

// Where SGDR's epoch falls: T_cur epochs into the current cycle, of length T_i (cycles of T_0,
// T_0 * T_mult, T_0 * T_mult^2, ...). epoch >= 0 and may be fractional.
struct WarmRestartPosition {
  double T_cur;
  int64_t T_i;
};
EMBER_API WarmRestartPosition warm_restart_position(double epoch, int64_t T_0, int64_t T_mult);
// CosineAnnealingWarmRestarts' closed form: cosine annealing within the cycle the epoch is in.
EMBER_API double cosine_warm_restarts_lr(double base_lr, double eta_min, double epoch, int64_t T_0, int64_t T_mult);

// OneCycleLR's anneals from start (pct = 0) to end (pct = 1): torch's _annealing_cos and
// _annealing_linear.
EMBER_API double annealing_cos(double start, double end, double pct);
EMBER_API double annealing_linear(double start, double end, double pct);
// Which OneCycleLR phase step t is in and how far through it (pct 0 at the previous phase's end
// step, 1 at this one's). end_steps: each phase's last step; steps past the last one extrapolate it.
struct OneCyclePoint {
  size_t phase;
  double pct;
};
EMBER_API OneCyclePoint one_cycle_point(int64_t t, std::span<const double> end_steps);

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
  // A phase anneals from the group option named start_* to the one named end_* by end_step.
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

}  // namespace ember::optim
