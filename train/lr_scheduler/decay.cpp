// The decay and warm-up schedulers: torch 1.13's closed and chainable formulas transcribed
// operation for operation (same association, same libm calls), so the doubles equal Python's.
#include "ember/train/lr_scheduler/decay.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "train/lr_scheduler/detail.h"

namespace ember::optim {

using detail::Reader;

// --- closed forms ----------------------------------------------------------------------------

double step_lr(double base_lr, double gamma, int64_t t, int64_t step_size) {
  return base_lr * std::pow(gamma, static_cast<double>(detail::pyfloordiv(t, step_size)));
}

double multistep_lr(double base_lr, double gamma, int64_t t, const std::map<int64_t, int64_t>& milestones) {
  int64_t passed = 0;  // bisect_right over the sorted milestones (with repeats)
  for (const auto& [ms, count] : milestones) {
    if (ms <= t) passed += count;
  }
  return base_lr * std::pow(gamma, static_cast<double>(passed));
}

double constant_lr(double base_lr, double factor, int64_t t, int64_t total_iters) {
  const double reached = t >= total_iters ? 1.0 : 0.0;
  return base_lr * (factor + reached * (1 - factor));
}

double linear_lr(double base_lr, double start_factor, double end_factor, int64_t t, int64_t total_iters) {
  const double done = static_cast<double>(std::min(total_iters, t));
  return base_lr * (start_factor + (end_factor - start_factor) * done / static_cast<double>(total_iters));
}

double exponential_lr(double base_lr, double gamma, int64_t t) {
  return base_lr * std::pow(gamma, static_cast<double>(t));
}

double polynomial_lr(double base_lr, double power, int64_t t, int64_t total_iters) {
  const double done = static_cast<double>(std::min(total_iters, t));
  return base_lr * std::pow(1.0 - done / static_cast<double>(total_iters), power);
}

// --- LambdaLR --------------------------------------------------------------------------------

LambdaLR::LambdaLR(Optimizer& optimizer, Fn lr_lambda, int64_t last_epoch)
    : LambdaLR(optimizer, std::vector<Fn>(optimizer.param_groups().size(), lr_lambda), last_epoch) {}

LambdaLR::LambdaLR(Optimizer& optimizer, std::vector<Fn> lr_lambdas, int64_t last_epoch)
    : LRScheduler("LambdaLR", optimizer), lambdas_(std::move(lr_lambdas)) {
  EMBER_CHECK(lambdas_.size() == num_groups(), "[LambdaLR] expected ", num_groups(), " lr_lambdas, but got ",
              lambdas_.size());
  for (size_t i = 0; i < lambdas_.size(); ++i) {
    EMBER_CHECK(static_cast<bool>(lambdas_[i]), "[LambdaLR] lr_lambda ", i, " is empty");
  }
  init(last_epoch);
}

std::vector<double> LambdaLR::get_lr() {
  std::vector<double> out;
  for (size_t i = 0; i < base_lrs_.size(); ++i) out.push_back(base_lrs_[i] * lambdas_[i](last_epoch_));
  return out;
}

void LambdaLR::save_fields(ValueMap& m) const {
  m["lr_lambdas"] = Value(ValueList(lambdas_.size()));
  m["lr_lambdas_note"] = Value(
      "LambdaLR's lr functions are code and are not saved; load_state_dict keeps the functions of the "
      "LambdaLR it loads into");
}

void LambdaLR::load_fields(const ValueMap& m) {
  Reader r{m, type_name_};
  const Value& l = r.at("lr_lambdas");
  EMBER_CHECK(l.is_null() || (l.is_list() && l.as_list().size() == lambdas_.size()), "[LambdaLR] load_state_dict: ",
              "'lr_lambdas' must be null or a list of ", lambdas_.size(), " entries, got ", l.repr());
}

// --- StepLR ----------------------------------------------------------------------------------

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma, int64_t last_epoch)
    : LRScheduler("StepLR", optimizer), step_size_(step_size), gamma_(gamma) {
  EMBER_CHECK(step_size > 0, "[StepLR] step_size must be positive, got ", step_size);
  init(last_epoch);
}

std::vector<double> StepLR::get_lr() {
  std::vector<double> lrs = group_lrs();
  if (last_epoch_ == 0 || detail::pymod(last_epoch_, step_size_) != 0) return lrs;
  for (double& lr : lrs) lr = lr * gamma_;
  return lrs;
}

std::optional<std::vector<double>> StepLR::closed_form_lr() const {
  return per_base_lr([&](double b) { return step_lr(b, gamma_, last_epoch_, step_size_); });
}

void StepLR::save_fields(ValueMap& m) const {
  m["step_size"] = Value(step_size_);
  m["gamma"] = Value(gamma_);
}

void StepLR::load_fields(const ValueMap& m) {
  Reader r{m, type_name_};
  int64_t step_size = r.integer("step_size");
  double gamma = r.num("gamma");
  EMBER_CHECK(step_size > 0, "[StepLR] load_state_dict: step_size must be positive, got ", step_size);
  step_size_ = step_size;
  gamma_ = gamma;
}

// --- MultiStepLR -----------------------------------------------------------------------------

MultiStepLR::MultiStepLR(Optimizer& optimizer, const std::vector<int64_t>& milestones, double gamma,
                         int64_t last_epoch)
    : LRScheduler("MultiStepLR", optimizer), gamma_(gamma) {
  for (int64_t ms : milestones) milestones_[ms] += 1;
  init(last_epoch);
}

std::vector<double> MultiStepLR::get_lr() {
  std::vector<double> lrs = group_lrs();
  auto it = milestones_.find(last_epoch_);
  if (it == milestones_.end()) return lrs;
  for (double& lr : lrs) lr = lr * std::pow(gamma_, static_cast<double>(it->second));
  return lrs;
}

std::optional<std::vector<double>> MultiStepLR::closed_form_lr() const {
  return per_base_lr([&](double b) { return multistep_lr(b, gamma_, last_epoch_, milestones_); });
}

void MultiStepLR::save_fields(ValueMap& m) const {
  ValueMap counter;
  for (const auto& [ms, count] : milestones_) counter[std::to_string(ms)] = Value(count);
  m["milestones"] = Value(std::move(counter));
  m["gamma"] = Value(gamma_);
}

void MultiStepLR::load_fields(const ValueMap& m) {
  Reader r{m, type_name_};
  const Value& c = r.at("milestones");
  std::map<int64_t, int64_t> milestones;
  if (c.is_map()) {
    for (const auto& [k, v] : c.as_map()) {
      char* end = nullptr;
      long long ms = std::strtoll(k.c_str(), &end, 10);
      EMBER_CHECK(!k.empty() && *end == '\0' && v.is_int() && v.as_int() > 0, "[MultiStepLR] load_state_dict: ",
                  "'milestones' must map epoch numbers to positive counts, got ", c.repr());
      milestones[ms] = v.as_int();
    }
  } else if (c.is_list()) {  // also accept a plain list of milestones
    for (const Value& v : c.as_list()) {
      EMBER_CHECK(v.is_int(), "[MultiStepLR] load_state_dict: 'milestones' must hold integers, got ", c.repr());
      milestones[v.as_int()] += 1;
    }
  } else {
    EMBER_THROW("[MultiStepLR] load_state_dict: 'milestones' must be a map or a list, got ", c.repr());
  }
  double gamma = r.num("gamma");
  milestones_ = std::move(milestones);
  gamma_ = gamma;
}

// --- ConstantLR ------------------------------------------------------------------------------

ConstantLR::ConstantLR(Optimizer& optimizer, double factor, int64_t total_iters, int64_t last_epoch)
    : LRScheduler("ConstantLR", optimizer), factor_(factor), total_iters_(total_iters) {
  EMBER_CHECK(factor >= 0.0 && factor <= 1.0,
              "[ConstantLR] constant multiplicative factor expected to be between 0 and 1, got ", factor);
  init(last_epoch);
}

std::vector<double> ConstantLR::get_lr() {
  std::vector<double> lrs = group_lrs();
  if (last_epoch_ == 0) {
    for (double& lr : lrs) lr = lr * factor_;
  } else if (last_epoch_ == total_iters_) {
    for (double& lr : lrs) lr = lr * (1.0 / factor_);
  }
  return lrs;
}

std::optional<std::vector<double>> ConstantLR::closed_form_lr() const {
  return per_base_lr([&](double b) { return constant_lr(b, factor_, last_epoch_, total_iters_); });
}

void ConstantLR::save_fields(ValueMap& m) const {
  m["factor"] = Value(factor_);
  m["total_iters"] = Value(total_iters_);
}

void ConstantLR::load_fields(const ValueMap& m) {
  Reader r{m, type_name_};
  double factor = r.num("factor");
  int64_t total_iters = r.integer("total_iters");
  factor_ = factor;
  total_iters_ = total_iters;
}

// --- LinearLR --------------------------------------------------------------------------------

LinearLR::LinearLR(Optimizer& optimizer, double start_factor, double end_factor, int64_t total_iters,
                   int64_t last_epoch)
    : LRScheduler("LinearLR", optimizer), start_factor_(start_factor), end_factor_(end_factor),
      total_iters_(total_iters) {
  EMBER_CHECK(start_factor >= 0.0 && start_factor <= 1.0,
              "[LinearLR] starting multiplicative factor expected to be between 0 and 1, got ", start_factor);
  EMBER_CHECK(end_factor >= 0.0 && end_factor <= 1.0,
              "[LinearLR] ending multiplicative factor expected to be between 0 and 1, got ", end_factor);
  init(last_epoch);
}

std::vector<double> LinearLR::get_lr() {
  std::vector<double> lrs = group_lrs();
  if (last_epoch_ == 0) {
    for (double& lr : lrs) lr = lr * start_factor_;
    return lrs;
  }
  if (last_epoch_ > total_iters_) return lrs;
  const double diff = end_factor_ - start_factor_;
  for (double& lr : lrs) {
    lr = lr * (1. + diff / (static_cast<double>(total_iters_) * start_factor_ +
                            static_cast<double>(last_epoch_ - 1) * diff));
  }
  return lrs;
}

std::optional<std::vector<double>> LinearLR::closed_form_lr() const {
  return per_base_lr([&](double b) { return linear_lr(b, start_factor_, end_factor_, last_epoch_, total_iters_); });
}

void LinearLR::save_fields(ValueMap& m) const {
  m["start_factor"] = Value(start_factor_);
  m["end_factor"] = Value(end_factor_);
  m["total_iters"] = Value(total_iters_);
}

void LinearLR::load_fields(const ValueMap& m) {
  Reader r{m, type_name_};
  double start = r.num("start_factor"), end = r.num("end_factor");
  int64_t total = r.integer("total_iters");
  start_factor_ = start;
  end_factor_ = end;
  total_iters_ = total;
}

// --- ExponentialLR ---------------------------------------------------------------------------

ExponentialLR::ExponentialLR(Optimizer& optimizer, double gamma, int64_t last_epoch)
    : LRScheduler("ExponentialLR", optimizer), gamma_(gamma) {
  init(last_epoch);
}

std::vector<double> ExponentialLR::get_lr() {
  std::vector<double> lrs = group_lrs();
  if (last_epoch_ == 0) return lrs;
  for (double& lr : lrs) lr = lr * gamma_;
  return lrs;
}

std::optional<std::vector<double>> ExponentialLR::closed_form_lr() const {
  return per_base_lr([&](double b) { return exponential_lr(b, gamma_, last_epoch_); });
}

void ExponentialLR::save_fields(ValueMap& m) const { m["gamma"] = Value(gamma_); }

void ExponentialLR::load_fields(const ValueMap& m) { gamma_ = Reader{m, type_name_}.num("gamma"); }

// --- PolynomialLR ----------------------------------------------------------------------------

PolynomialLR::PolynomialLR(Optimizer& optimizer, int64_t total_iters, double power, int64_t last_epoch)
    : LRScheduler("PolynomialLR", optimizer), total_iters_(total_iters), power_(power) {
  init(last_epoch);
}

std::vector<double> PolynomialLR::get_lr() {
  std::vector<double> lrs = group_lrs();
  if (last_epoch_ == 0 || last_epoch_ > total_iters_) return lrs;
  const double total = static_cast<double>(total_iters_);
  const double decay = std::pow((1.0 - static_cast<double>(last_epoch_) / total) /
                                    (1.0 - static_cast<double>(last_epoch_ - 1) / total),
                                power_);
  for (double& lr : lrs) lr = lr * decay;
  return lrs;
}

std::optional<std::vector<double>> PolynomialLR::closed_form_lr() const {
  return per_base_lr([&](double b) { return polynomial_lr(b, power_, last_epoch_, total_iters_); });
}

void PolynomialLR::save_fields(ValueMap& m) const {
  m["total_iters"] = Value(total_iters_);
  m["power"] = Value(power_);
}

void PolynomialLR::load_fields(const ValueMap& m) {
  Reader r{m, type_name_};
  int64_t total = r.integer("total_iters");
  double power = r.num("power");
  total_iters_ = total;
  power_ = power;
}

}  // namespace ember::optim
