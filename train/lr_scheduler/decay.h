// Schedulers whose lr is the group's base_lr times a factor of the epoch: the decays (StepLR,
// MultiStepLR, ExponentialLR, PolynomialLR), the warm-ups (ConstantLR, LinearLR) and LambdaLR.
// Each closed form is a free function below; the classes step with torch's chainable forms.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/train/lr_scheduler/scheduler.h"

namespace ember::optim {

// Closed forms (torch's _get_closed_form_lr): the lr at epoch t. step_to() uses them; step()
// multiplies the current lr by torch's chainable factor, whose doubles can differ in the last bits.

// StepLR: base_lr * gamma^floor(t / step_size).
EMBER_API double step_lr(double base_lr, double gamma, int64_t t, int64_t step_size);
// MultiStepLR: base_lr * gamma^(milestones reached by t); `milestones` maps an epoch to the number
// of times it is listed.
EMBER_API double multistep_lr(double base_lr, double gamma, int64_t t, const std::map<int64_t, int64_t>& milestones);
// ConstantLR: base_lr * factor before total_iters, base_lr from then on.
EMBER_API double constant_lr(double base_lr, double factor, int64_t t, int64_t total_iters);
// LinearLR: base_lr * a factor going linearly from start_factor to end_factor at total_iters.
EMBER_API double linear_lr(double base_lr, double start_factor, double end_factor, int64_t t, int64_t total_iters);
// ExponentialLR: base_lr * gamma^t.
EMBER_API double exponential_lr(double base_lr, double gamma, int64_t t);
// PolynomialLR: base_lr * (1 - min(t, total_iters) / total_iters)^power.
EMBER_API double polynomial_lr(double base_lr, double power, int64_t t, int64_t total_iters);

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

}  // namespace ember::optim
