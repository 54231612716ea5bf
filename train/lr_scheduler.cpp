// LR schedulers: torch 1.13's formulas transcribed operation for operation (same association and
// the same libm calls), so that the double results equal Python's. Python's % and // floor toward
// negative infinity; pymod/pyfloordiv reproduce that for the negative epochs SequentialLR creates.
#include "train/lr_scheduler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <set>

namespace ember::optim {
namespace {

constexpr double kPi = std::numbers::pi;  // == Python's math.pi

int64_t pymod(int64_t a, int64_t b) {
  int64_t r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}

int64_t pyfloordiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

int64_t ipow(int64_t base, int64_t exp) {
  int64_t r = 1;
  for (int64_t i = 0; i < exp; ++i) r *= base;
  return r;
}

ValueList to_list(const std::vector<double>& v) { return ValueList(v.begin(), v.end()); }

// torch's _format_param: one value for every group, or exactly one per group.
std::vector<double> per_group(const std::vector<double>& v, size_t groups, const char* what, const std::string& who) {
  EMBER_CHECK(!v.empty(), "[", who, "] ", what, " needs at least one value");
  if (v.size() == 1) return std::vector<double>(groups, v[0]);
  EMBER_CHECK(v.size() == groups, "[", who, "] expected ", groups, " values for ", what, ", got ", v.size());
  return v;
}

// Typed reads from a state dict, with errors naming the scheduler and the key.
struct Reader {
  const ValueMap& m;
  std::string who;

  const Value& at(const std::string& key) const {
    auto it = m.find(key);
    EMBER_CHECK(it != m.end(), "[", who, "] load_state_dict: missing key '", key, "'");
    return it->second;
  }
  double num(const std::string& key) const {
    const Value& v = at(key);
    EMBER_CHECK(v.is_number(), "[", who, "] load_state_dict: '", key, "' must be a number, got ", v.repr());
    return v.as_double();
  }
  int64_t integer(const std::string& key) const {
    const Value& v = at(key);
    if (v.is_int()) return v.as_int();
    EMBER_CHECK(v.is_float() && std::isfinite(v.as_double()) && v.as_double() == std::floor(v.as_double()), "[", who,
                "] load_state_dict: '", key, "' must be an integer, got ", v.repr());
    return static_cast<int64_t>(v.as_double());
  }
  bool boolean(const std::string& key) const {
    const Value& v = at(key);
    EMBER_CHECK(v.is_bool(), "[", who, "] load_state_dict: '", key, "' must be a bool, got ", v.repr());
    return v.as_bool();
  }
  std::string str(const std::string& key) const {
    const Value& v = at(key);
    EMBER_CHECK(v.is_string(), "[", who, "] load_state_dict: '", key, "' must be a string, got ", v.repr());
    return v.as_string();
  }
  std::vector<double> nums(const std::string& key, size_t expected) const {
    const Value& v = at(key);
    EMBER_CHECK(v.is_list(), "[", who, "] load_state_dict: '", key, "' must be a list of numbers, got ", v.repr());
    std::vector<double> out;
    for (const Value& x : v.as_list()) {
      EMBER_CHECK(x.is_number(), "[", who, "] load_state_dict: '", key, "' must be a list of numbers, got ", v.repr());
      out.push_back(x.as_double());
    }
    EMBER_CHECK(out.size() == expected, "[", who, "] load_state_dict: '", key, "' has ", out.size(),
                " values but the optimizer has ", expected, " parameter groups");
    return out;
  }
};

// Checks that `sd` is a map with exactly the keys of `reference` (minus `optional`, plus torch's
// `verbose`/`_get_lr_called_within_step`, which are ignored).
const ValueMap& check_keys(const Value& sd, const Value& reference, const std::string& who,
                           const std::set<std::string>& optional = {}) {
  EMBER_CHECK(sd.is_map(), "[", who, "] load_state_dict: expected a map, got ", sd.repr());
  const ValueMap& m = sd.as_map();
  const std::set<std::string> ignored{"verbose", "_get_lr_called_within_step"};
  std::string missing, extra;
  for (const auto& [k, v] : reference.as_map()) {
    if (!m.count(k) && !optional.count(k)) missing += (missing.empty() ? "'" : ", '") + k + "'";
  }
  for (const auto& [k, v] : m) {
    if (!reference.as_map().count(k) && !ignored.count(k) && !optional.count(k)) {
      extra += (extra.empty() ? "'" : ", '") + k + "'";
    }
  }
  EMBER_CHECK(missing.empty() && extra.empty(), "[", who, "] load_state_dict: the state dict's keys do not match ", who, "'s",
              missing.empty() ? "" : "; missing keys: ", missing, extra.empty() ? "" : "; unexpected keys: ", extra);
  return m;
}

}  // namespace

// --- LRScheduler -----------------------------------------------------------------------------

LRScheduler::LRScheduler(std::string type_name, Optimizer& optimizer)
    : optimizer_(&optimizer), type_name_(std::move(type_name)) {}

void LRScheduler::init(int64_t last_epoch) {
  auto& groups = optimizer_->param_groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    ValueMap& o = groups[i].options;
    if (last_epoch == -1) {
      if (!o.count("initial_lr")) o["initial_lr"] = Value(groups[i].lr());
    } else {
      EMBER_CHECK(o.count("initial_lr"), "[", type_name_, "] param 'initial_lr' is not specified in param_groups[", i,
                  "] when resuming an optimizer (last_epoch = ", last_epoch, ")");
    }
  }
  base_lrs_.clear();
  for (const auto& g : groups) base_lrs_.push_back(g.number("initial_lr"));
  last_epoch_ = last_epoch;
  initial_step();
}

void LRScheduler::initial_step() {
  step_count_ = 0;
  step();
}

void LRScheduler::step() {
  EMBER_CHECK(num_groups() == base_lrs_.size(), "[", type_name_, "] the optimizer has ", num_groups(),
              " parameter groups but the scheduler was built for ", base_lrs_.size());
  step_count_ += 1;
  last_epoch_ += 1;
  apply(get_lr());
}

void LRScheduler::step_to(double epoch) {
  EMBER_CHECK(std::isfinite(epoch) && epoch == std::floor(epoch), "[", type_name_,
              "] step_to expects a whole epoch number, got ", epoch);
  EMBER_CHECK(num_groups() == base_lrs_.size(), "[", type_name_, "] the optimizer has ", num_groups(),
              " parameter groups but the scheduler was built for ", base_lrs_.size());
  step_count_ += 1;
  last_epoch_ = static_cast<int64_t>(epoch);
  auto closed = closed_form_lr();
  apply(closed ? *closed : get_lr());
}

void LRScheduler::apply(const std::vector<double>& lrs) {
  auto& groups = optimizer_->param_groups();
  for (size_t i = 0; i < groups.size() && i < lrs.size(); ++i) groups[i].set_lr(lrs[i]);
  last_lr_ = group_lrs();
}

std::vector<double> LRScheduler::group_lrs() const {
  std::vector<double> lrs;
  for (const auto& g : optimizer_->param_groups()) lrs.push_back(g.lr());
  return lrs;
}

Value LRScheduler::state_dict() const {
  ValueMap m;
  m["base_lrs"] = Value(to_list(base_lrs_));
  m["last_epoch"] = Value(last_epoch_);
  m["_step_count"] = Value(step_count_);
  m["_last_lr"] = Value(to_list(last_lr_));
  save_fields(m);
  return Value(std::move(m));
}

void LRScheduler::load_state_dict(const Value& sd) {
  std::set<std::string> optional{"lr_lambdas_note", "use_beta1"};
  const ValueMap& m = check_keys(sd, state_dict(), type_name_, optional);
  Reader r{m, type_name_};
  std::vector<double> base_lrs = r.nums("base_lrs", num_groups());
  int64_t last_epoch = r.integer("last_epoch");
  int64_t step_count = r.integer("_step_count");
  std::vector<double> last_lr = r.nums("_last_lr", num_groups());
  load_fields(m);
  base_lrs_ = std::move(base_lrs);
  last_epoch_ = last_epoch;
  step_count_ = step_count;
  last_lr_ = std::move(last_lr);
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
  if (last_epoch_ == 0 || pymod(last_epoch_, step_size_) != 0) return lrs;
  for (double& lr : lrs) lr = lr * gamma_;
  return lrs;
}

std::optional<std::vector<double>> StepLR::closed_form_lr() const {
  std::vector<double> out;
  for (double b : base_lrs_) {
    out.push_back(b * std::pow(gamma_, static_cast<double>(pyfloordiv(last_epoch_, step_size_))));
  }
  return out;
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
  int64_t passed = 0;  // bisect_right over the sorted milestones (with repeats)
  for (const auto& [ms, count] : milestones_) {
    if (ms <= last_epoch_) passed += count;
  }
  std::vector<double> out;
  for (double b : base_lrs_) out.push_back(b * std::pow(gamma_, static_cast<double>(passed)));
  return out;
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
  std::vector<double> out;
  const double reached = last_epoch_ >= total_iters_ ? 1.0 : 0.0;
  for (double b : base_lrs_) out.push_back(b * (factor_ + reached * (1 - factor_)));
  return out;
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
  std::vector<double> out;
  const double done = static_cast<double>(std::min(total_iters_, last_epoch_));
  for (double b : base_lrs_) {
    out.push_back(b * (start_factor_ + (end_factor_ - start_factor_) * done / static_cast<double>(total_iters_)));
  }
  return out;
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
  std::vector<double> out;
  for (double b : base_lrs_) out.push_back(b * std::pow(gamma_, static_cast<double>(last_epoch_)));
  return out;
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
  std::vector<double> out;
  const double done = static_cast<double>(std::min(total_iters_, last_epoch_));
  for (double b : base_lrs_) {
    out.push_back(b * std::pow(1.0 - done / static_cast<double>(total_iters_), power_));
  }
  return out;
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

// --- CosineAnnealingLR -----------------------------------------------------------------------

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min, int64_t last_epoch)
    : LRScheduler("CosineAnnealingLR", optimizer), T_max_(T_max), eta_min_(eta_min) {
  EMBER_CHECK(T_max > 0, "[CosineAnnealingLR] T_max must be positive, got ", T_max);
  init(last_epoch);
}

std::vector<double> CosineAnnealingLR::get_lr() {
  std::vector<double> lrs = group_lrs();
  const double le = static_cast<double>(last_epoch_), T = static_cast<double>(T_max_);
  if (last_epoch_ == 0) return lrs;
  if (step_count_ == 1 && last_epoch_ > 0) {
    for (size_t i = 0; i < lrs.size(); ++i) {
      lrs[i] = eta_min_ + (base_lrs_[i] - eta_min_) * (1 + std::cos(le * kPi / T)) / 2;
    }
  } else if (pymod(last_epoch_ - 1 - T_max_, 2 * T_max_) == 0) {
    for (size_t i = 0; i < lrs.size(); ++i) {
      lrs[i] = lrs[i] + (base_lrs_[i] - eta_min_) * (1 - std::cos(kPi / T)) / 2;
    }
  } else {
    for (double& lr : lrs) {
      lr = (1 + std::cos(kPi * le / T)) / (1 + std::cos(kPi * (le - 1) / T)) * (lr - eta_min_) + eta_min_;
    }
  }
  return lrs;
}

std::optional<std::vector<double>> CosineAnnealingLR::closed_form_lr() const {
  std::vector<double> out;
  const double le = static_cast<double>(last_epoch_), T = static_cast<double>(T_max_);
  for (double b : base_lrs_) out.push_back(eta_min_ + (b - eta_min_) * (1 + std::cos(kPi * le / T)) / 2);
  return out;
}

void CosineAnnealingLR::save_fields(ValueMap& m) const {
  m["T_max"] = Value(T_max_);
  m["eta_min"] = Value(eta_min_);
}

void CosineAnnealingLR::load_fields(const ValueMap& m) {
  Reader r{m, type_name_};
  int64_t T_max = r.integer("T_max");
  double eta_min = r.num("eta_min");
  EMBER_CHECK(T_max > 0, "[CosineAnnealingLR] load_state_dict: T_max must be positive, got ", T_max);
  T_max_ = T_max;
  eta_min_ = eta_min;
}

// --- CosineAnnealingWarmRestarts -------------------------------------------------------------

CosineAnnealingWarmRestarts::CosineAnnealingWarmRestarts(Optimizer& optimizer, int64_t T_0, int64_t T_mult,
                                                         double eta_min, int64_t last_epoch)
    : LRScheduler("CosineAnnealingWarmRestarts", optimizer), T_0_(T_0), T_i_(T_0), T_mult_(T_mult),
      eta_min_(eta_min), T_cur_(static_cast<double>(last_epoch)) {
  EMBER_CHECK(T_0 > 0, "[CosineAnnealingWarmRestarts] expected positive integer T_0, but got ", T_0);
  EMBER_CHECK(T_mult >= 1, "[CosineAnnealingWarmRestarts] expected integer T_mult >= 1, but got ", T_mult);
  init(last_epoch);
}

std::vector<double> CosineAnnealingWarmRestarts::get_lr() {
  std::vector<double> out;
  for (double b : base_lrs_) {
    out.push_back(eta_min_ + (b - eta_min_) * (1 + std::cos(kPi * T_cur_ / static_cast<double>(T_i_))) / 2);
  }
  return out;
}

// As torch, this scheduler's step does not count _step_count.
void CosineAnnealingWarmRestarts::step() {
  if (last_epoch_ < 0) {
    step_to(0.0);
    return;
  }
  EMBER_CHECK(num_groups() == base_lrs_.size(), "[", type_name_, "] the optimizer has ", num_groups(),
              " parameter groups but the scheduler was built for ", base_lrs_.size());
  const int64_t epoch = last_epoch_ + 1;
  T_cur_ = T_cur_ + 1;
  if (T_cur_ >= static_cast<double>(T_i_)) {
    T_cur_ = T_cur_ - static_cast<double>(T_i_);
    T_i_ = T_i_ * T_mult_;
  }
  last_epoch_ = epoch;
  set_lrs();
}

void CosineAnnealingWarmRestarts::step_to(double epoch) {
  EMBER_CHECK(epoch >= 0.0, "[CosineAnnealingWarmRestarts] expected non-negative epoch, but got ", epoch);
  EMBER_CHECK(num_groups() == base_lrs_.size(), "[", type_name_, "] the optimizer has ", num_groups(),
              " parameter groups but the scheduler was built for ", base_lrs_.size());
  const double T0 = static_cast<double>(T_0_);
  if (epoch >= T0) {
    if (T_mult_ == 1) {
      T_cur_ = std::fmod(epoch, T0);
    } else {
      const double mult = static_cast<double>(T_mult_);
      const auto n = static_cast<int64_t>(std::log(epoch / T0 * (mult - 1) + 1) / std::log(mult));
      T_cur_ = epoch - static_cast<double>(T_0_ * (ipow(T_mult_, n) - 1)) / static_cast<double>(T_mult_ - 1);
      T_i_ = T_0_ * ipow(T_mult_, n);
    }
  } else {
    T_i_ = T_0_;
    T_cur_ = epoch;
  }
  last_epoch_ = static_cast<int64_t>(std::floor(epoch));
  set_lrs();
}

void CosineAnnealingWarmRestarts::set_lrs() { apply(get_lr()); }

void CosineAnnealingWarmRestarts::save_fields(ValueMap& m) const {
  m["T_0"] = Value(T_0_);
  m["T_i"] = Value(T_i_);
  m["T_mult"] = Value(T_mult_);
  m["eta_min"] = Value(eta_min_);
  m["T_cur"] = Value(T_cur_);
}

void CosineAnnealingWarmRestarts::load_fields(const ValueMap& m) {
  Reader r{m, type_name_};
  int64_t T_0 = r.integer("T_0"), T_i = r.integer("T_i"), T_mult = r.integer("T_mult");
  double eta_min = r.num("eta_min"), T_cur = r.num("T_cur");
  EMBER_CHECK(T_0 > 0 && T_i > 0 && T_mult >= 1, "[CosineAnnealingWarmRestarts] load_state_dict: invalid T_0 ", T_0,
              ", T_i ", T_i, " or T_mult ", T_mult);
  T_0_ = T_0;
  T_i_ = T_i;
  T_mult_ = T_mult;
  eta_min_ = eta_min;
  T_cur_ = T_cur;
}

// --- OneCycleLR ------------------------------------------------------------------------------

OneCycleLR::OneCycleLR(Optimizer& optimizer, const OneCycleLROptions& o)
    : LRScheduler("OneCycleLR", optimizer), anneal_strategy_(o.anneal_strategy), cycle_momentum_(o.cycle_momentum) {
  if (o.total_steps) {
    EMBER_CHECK(*o.total_steps > 0, "[OneCycleLR] expected positive integer total_steps, but got ", *o.total_steps);
    total_steps_ = *o.total_steps;
  } else {
    EMBER_CHECK(o.epochs || o.steps_per_epoch, "[OneCycleLR] you must define either total_steps OR (epochs AND ",
                "steps_per_epoch)");
    EMBER_CHECK(o.epochs && *o.epochs > 0, "[OneCycleLR] expected positive integer epochs, but got ",
                o.epochs ? str_cat(*o.epochs) : std::string("none"));
    EMBER_CHECK(o.steps_per_epoch && *o.steps_per_epoch > 0,
                "[OneCycleLR] expected positive integer steps_per_epoch, but got ",
                o.steps_per_epoch ? str_cat(*o.steps_per_epoch) : std::string("none"));
    total_steps_ = *o.epochs * *o.steps_per_epoch;
  }
  const double total = static_cast<double>(total_steps_);
  if (o.three_phase) {
    phases_ = {{o.pct_start * total - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"},
               {2 * o.pct_start * total - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"},
               {total - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"}};
  } else {
    phases_ = {{o.pct_start * total - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"},
               {total - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"}};
  }
  EMBER_CHECK(o.pct_start >= 0.0 && o.pct_start <= 1.0, "[OneCycleLR] expected float between 0 and 1 pct_start, but got ",
              o.pct_start);
  EMBER_CHECK(anneal_strategy_ == "cos" || anneal_strategy_ == "linear",
              "[OneCycleLR] anneal_strategy must be one of 'cos' or 'linear', instead got '", anneal_strategy_, "'");
  auto& groups = optimizer.param_groups();
  const std::vector<double> max_lrs = per_group(o.max_lr, groups.size(), "max_lr", type_name_);
  std::vector<double> max_m, base_m;
  if (cycle_momentum_) {  // validated before any group changes
    const ValueMap& d = optimizer.defaults();
    EMBER_CHECK(d.count("momentum") || d.count("betas"), "[OneCycleLR] optimizer ", optimizer.type_name(),
                " must support momentum (a 'momentum' or 'betas' option) with cycle_momentum enabled");
    use_beta1_ = d.count("betas") > 0;
    max_m = per_group(o.max_momentum, groups.size(), "max_momentum", type_name_);
    base_m = per_group(o.base_momentum, groups.size(), "base_momentum", type_name_);
  }
  if (o.last_epoch == -1) {
    for (size_t i = 0; i < groups.size(); ++i) {
      ValueMap& g = groups[i].options;
      const double initial = max_lrs[i] / o.div_factor;
      g["initial_lr"] = Value(initial);
      g["max_lr"] = Value(max_lrs[i]);
      g["min_lr"] = Value(initial / o.final_div_factor);
    }
  }
  if (cycle_momentum_) {
    if (o.last_epoch == -1) {
      for (size_t i = 0; i < groups.size(); ++i) {
        ValueMap& g = groups[i].options;
        if (use_beta1_) {
          g["betas"] = Value(ValueList{max_m[i], g.at("betas").as_list().at(1)});
        } else {
          g["momentum"] = Value(max_m[i]);
        }
        g["max_momentum"] = Value(max_m[i]);
        g["base_momentum"] = Value(base_m[i]);
      }
    }
  }
  init(o.last_epoch);
}

double OneCycleLR::anneal(double start, double end, double pct) const {
  if (anneal_strategy_ == "cos") {
    const double cos_out = std::cos(kPi * pct) + 1;
    return end + (start - end) / 2.0 * cos_out;
  }
  return (end - start) * pct + start;
}

void OneCycleLR::step() {
  // Checked before anything changes (torch raises from get_lr, after counting the step).
  EMBER_CHECK(last_epoch_ + 1 <= total_steps_, "[OneCycleLR] tried to step ", last_epoch_ + 2,
              " times. The specified number of total steps is ", total_steps_);
  LRScheduler::step();
}

std::vector<double> OneCycleLR::get_lr() {
  const int64_t step_num = last_epoch_;
  EMBER_CHECK(step_num <= total_steps_, "[OneCycleLR] tried to step ", step_num + 1,
              " times. The specified number of total steps is ", total_steps_);
  std::vector<double> lrs;
  for (auto& group : optimizer_->param_groups()) {
    double start_step = 0.0, lr = 0.0, momentum = 0.0;
    for (size_t i = 0; i < phases_.size(); ++i) {
      const Phase& ph = phases_[i];
      if (static_cast<double>(step_num) <= ph.end_step || i == phases_.size() - 1) {
        const double pct = (static_cast<double>(step_num) - start_step) / (ph.end_step - start_step);
        lr = anneal(group.number(ph.start_lr), group.number(ph.end_lr), pct);
        if (cycle_momentum_) momentum = anneal(group.number(ph.start_momentum), group.number(ph.end_momentum), pct);
        break;
      }
      start_step = ph.end_step;
    }
    lrs.push_back(lr);
    if (cycle_momentum_) {
      if (use_beta1_) {
        group.options["betas"] = Value(ValueList{momentum, group.options.at("betas").as_list().at(1)});
      } else {
        group.options["momentum"] = Value(momentum);
      }
    }
  }
  return lrs;
}

void OneCycleLR::save_fields(ValueMap& m) const {
  m["total_steps"] = Value(total_steps_);
  ValueList phases;
  for (const Phase& p : phases_) {
    phases.emplace_back(ValueMap{{"end_step", p.end_step},
                                 {"start_lr", p.start_lr},
                                 {"end_lr", p.end_lr},
                                 {"start_momentum", p.start_momentum},
                                 {"end_momentum", p.end_momentum}});
  }
  m["_schedule_phases"] = Value(std::move(phases));
  m["anneal_strategy"] = Value(anneal_strategy_);
  m["cycle_momentum"] = Value(cycle_momentum_);
  if (cycle_momentum_) m["use_beta1"] = Value(use_beta1_);
}

void OneCycleLR::load_fields(const ValueMap& m) {
  Reader r{m, type_name_};
  int64_t total = r.integer("total_steps");
  std::string strategy = r.str("anneal_strategy");
  EMBER_CHECK(strategy == "cos" || strategy == "linear",
              "[OneCycleLR] load_state_dict: anneal_strategy must be 'cos' or 'linear', got '", strategy, "'");
  bool cycle = r.boolean("cycle_momentum");
  bool beta1 = cycle ? r.boolean("use_beta1") : false;
  const Value& ph = r.at("_schedule_phases");
  EMBER_CHECK(ph.is_list() && !ph.as_list().empty(), "[OneCycleLR] load_state_dict: '_schedule_phases' must be a ",
              "non-empty list, got ", ph.repr());
  std::vector<Phase> phases;
  for (const Value& p : ph.as_list()) {
    EMBER_CHECK(p.is_map(), "[OneCycleLR] load_state_dict: a schedule phase is not a map: ", p.repr());
    Reader pr{p.as_map(), "OneCycleLR"};
    phases.push_back(
        {pr.num("end_step"), pr.str("start_lr"), pr.str("end_lr"), pr.str("start_momentum"), pr.str("end_momentum")});
  }
  total_steps_ = total;
  anneal_strategy_ = std::move(strategy);
  cycle_momentum_ = cycle;
  use_beta1_ = beta1;
  phases_ = std::move(phases);
}

// --- SequentialLR ----------------------------------------------------------------------------

SequentialLR::SequentialLR(Optimizer& optimizer, std::vector<std::shared_ptr<LRScheduler>> schedulers,
                           std::vector<int64_t> milestones, int64_t last_epoch)
    : LRScheduler("SequentialLR", optimizer), schedulers_(std::move(schedulers)), milestones_(std::move(milestones)) {
  EMBER_CHECK(!schedulers_.empty(), "[SequentialLR] needs at least one scheduler");
  for (size_t i = 0; i < schedulers_.size(); ++i) {
    EMBER_CHECK(schedulers_[i] != nullptr, "[SequentialLR] scheduler ", i, " is null");
    EMBER_CHECK(schedulers_[i]->optimizer_ == &optimizer, "[SequentialLR] expects all schedulers to belong to the ",
                "same optimizer, but the scheduler at index ", i, " belongs to a different one");
  }
  EMBER_CHECK(milestones_.size() + 1 == schedulers_.size(), "[SequentialLR] expects one more scheduler than ",
              "milestones, but got ", schedulers_.size(), " schedulers and ", milestones_.size(), " milestones");
  last_epoch_ = last_epoch + 1;
  auto& groups = optimizer.param_groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    EMBER_CHECK(groups[i].options.count("initial_lr"), "[SequentialLR] param group ", i, " has no 'initial_lr'");
    groups[i].set_lr(groups[i].number("initial_lr"));
  }
  for (auto& s : schedulers_) s->last_epoch_ -= 1;  // undo the initial steps of the schedulers
  schedulers_[0]->initial_step();
  last_lr_ = schedulers_[0]->get_last_lr();
}

void SequentialLR::step() {
  last_epoch_ += 1;
  const size_t idx = static_cast<size_t>(std::upper_bound(milestones_.begin(), milestones_.end(), last_epoch_) -
                                         milestones_.begin());
  LRScheduler& s = *schedulers_[idx];
  if (idx > 0 && milestones_[idx - 1] == last_epoch_) {
    s.step_to(0.0);
  } else {
    s.step();
  }
  last_lr_ = s.get_last_lr();
}

void SequentialLR::step_to(double) { EMBER_THROW("[SequentialLR] step_to(epoch) is not supported; call step()"); }

std::vector<double> SequentialLR::get_lr() { return group_lrs(); }

Value SequentialLR::state_dict() const {
  ValueMap m;
  ValueList ms(milestones_.begin(), milestones_.end()), subs;
  for (const auto& s : schedulers_) subs.push_back(s->state_dict());
  m["_milestones"] = Value(std::move(ms));
  m["last_epoch"] = Value(last_epoch_);
  m["_last_lr"] = Value(to_list(last_lr_));
  m["_schedulers"] = Value(std::move(subs));
  return Value(std::move(m));
}

namespace {
// Loads each sub-scheduler; on a failure restores the ones already loaded and rethrows.
void load_all(const std::vector<std::shared_ptr<LRScheduler>>& schedulers, const Value& subs, const std::string& who) {
  EMBER_CHECK(subs.is_list() && subs.as_list().size() == schedulers.size(), "[", who, "] load_state_dict: '",
              "_schedulers' must be a list of ", schedulers.size(), " state dicts, got ", subs.repr());
  std::vector<Value> backup;
  for (const auto& s : schedulers) backup.push_back(s->state_dict());
  size_t i = 0;
  try {
    for (; i < schedulers.size(); ++i) schedulers[i]->load_state_dict(subs.as_list()[i]);
  } catch (const Error& e) {
    for (size_t j = 0; j < i; ++j) schedulers[j]->load_state_dict(backup[j]);
    EMBER_THROW("[", who, "] load_state_dict: scheduler ", i, ": ", e.what());
  }
}
}  // namespace

void SequentialLR::load_state_dict(const Value& sd) {
  const ValueMap& m = check_keys(sd, state_dict(), type_name_);
  Reader r{m, type_name_};
  const Value& ms = r.at("_milestones");
  EMBER_CHECK(ms.is_list() && ms.as_list().size() == milestones_.size(), "[SequentialLR] load_state_dict: ",
              "'_milestones' must be a list of ", milestones_.size(), " integers, got ", ms.repr());
  std::vector<int64_t> milestones;
  for (const Value& v : ms.as_list()) {
    EMBER_CHECK(v.is_int(), "[SequentialLR] load_state_dict: '_milestones' must hold integers, got ", ms.repr());
    milestones.push_back(v.as_int());
  }
  int64_t last_epoch = r.integer("last_epoch");
  std::vector<double> last_lr = r.nums("_last_lr", num_groups());
  load_all(schedulers_, r.at("_schedulers"), type_name_);
  milestones_ = std::move(milestones);
  last_epoch_ = last_epoch;
  last_lr_ = std::move(last_lr);
}

// --- ChainedScheduler ------------------------------------------------------------------------

namespace {
Optimizer& first_optimizer(const std::vector<std::shared_ptr<LRScheduler>>& schedulers) {
  EMBER_CHECK(!schedulers.empty() && schedulers[0] != nullptr, "[ChainedScheduler] needs at least one scheduler");
  return schedulers[0]->optimizer();
}
}  // namespace

ChainedScheduler::ChainedScheduler(std::vector<std::shared_ptr<LRScheduler>> schedulers)
    : LRScheduler("ChainedScheduler", first_optimizer(schedulers)), schedulers_(std::move(schedulers)) {
  for (size_t i = 1; i < schedulers_.size(); ++i) {
    EMBER_CHECK(schedulers_[i] != nullptr, "[ChainedScheduler] scheduler ", i, " is null");
    EMBER_CHECK(schedulers_[i]->optimizer_ == optimizer_, "[ChainedScheduler] expects all schedulers to belong to ",
                "the same optimizer, but got schedulers at index 0 and ", i, " to be different");
  }
  last_lr_ = group_lrs();
}

void ChainedScheduler::step() {
  for (auto& s : schedulers_) s->step();
  last_lr_ = group_lrs();
}

void ChainedScheduler::step_to(double) {
  EMBER_THROW("[ChainedScheduler] step_to(epoch) is not supported; call step()");
}

std::vector<double> ChainedScheduler::get_lr() { return group_lrs(); }

Value ChainedScheduler::state_dict() const {
  ValueMap m;
  ValueList subs;
  for (const auto& s : schedulers_) subs.push_back(s->state_dict());
  m["_last_lr"] = Value(to_list(last_lr_));
  m["_schedulers"] = Value(std::move(subs));
  return Value(std::move(m));
}

void ChainedScheduler::load_state_dict(const Value& sd) {
  const ValueMap& m = check_keys(sd, state_dict(), type_name_);
  Reader r{m, type_name_};
  std::vector<double> last_lr = r.nums("_last_lr", num_groups());
  load_all(schedulers_, r.at("_schedulers"), type_name_);
  last_lr_ = std::move(last_lr);
}

// --- ReduceLROnPlateau -----------------------------------------------------------------------

namespace {
void check_plateau_modes(const std::string& mode, const std::string& threshold_mode, const char* pre) {
  EMBER_CHECK(mode == "min" || mode == "max", pre, "mode '", mode, "' is unknown (expected 'min' or 'max')");
  EMBER_CHECK(threshold_mode == "rel" || threshold_mode == "abs", pre, "threshold mode '", threshold_mode,
              "' is unknown (expected 'rel' or 'abs')");
}
double worse_for(const std::string& mode) {
  return mode == "min" ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();
}
}  // namespace

ReduceLROnPlateau::ReduceLROnPlateau(Optimizer& optimizer, ReduceLROnPlateauOptions o)
    : optimizer_(&optimizer), factor_(o.factor), patience_(o.patience), cooldown_(o.cooldown), mode_(o.mode),
      threshold_(o.threshold), threshold_mode_(o.threshold_mode), eps_(o.eps) {
  EMBER_CHECK(o.factor < 1.0, "[ReduceLROnPlateau] factor should be < 1.0, got ", o.factor);
  const size_t n = optimizer.param_groups().size();
  EMBER_CHECK(o.min_lr.size() == 1 || o.min_lr.size() == n, "[ReduceLROnPlateau] expected ", n, " min_lrs, got ",
              o.min_lr.size());
  min_lrs_ = o.min_lr.size() == 1 ? std::vector<double>(n, o.min_lr[0]) : o.min_lr;
  check_plateau_modes(mode_, threshold_mode_, "[ReduceLROnPlateau] ");
  mode_worse_ = worse_for(mode_);
  best_ = mode_worse_;
  for (const auto& g : optimizer.param_groups()) last_lr_.push_back(g.lr());
}

bool ReduceLROnPlateau::is_better(double a, double best) const {
  if (mode_ == "min" && threshold_mode_ == "rel") return a < best * (1. - threshold_);
  if (mode_ == "min") return a < best - threshold_;
  if (threshold_mode_ == "rel") return a > best * (threshold_ + 1.);
  return a > best + threshold_;
}

void ReduceLROnPlateau::step(double metric) { step(metric, last_epoch_ + 1); }

void ReduceLROnPlateau::step(double metric, int64_t epoch) {
  auto& groups = optimizer_->param_groups();
  EMBER_CHECK(groups.size() == min_lrs_.size(), "[ReduceLROnPlateau] the optimizer has ", groups.size(),
              " parameter groups but the scheduler was built for ", min_lrs_.size());
  last_epoch_ = epoch;
  if (is_better(metric, best_)) {
    best_ = metric;
    num_bad_epochs_ = 0;
  } else {
    num_bad_epochs_ += 1;
  }
  if (in_cooldown()) {
    cooldown_counter_ -= 1;
    num_bad_epochs_ = 0;  // bad epochs in cooldown do not count
  }
  if (num_bad_epochs_ > patience_) {
    reduce_lr();
    cooldown_counter_ = cooldown_;
    num_bad_epochs_ = 0;
  }
  last_lr_.clear();
  for (const auto& g : groups) last_lr_.push_back(g.lr());
}

void ReduceLROnPlateau::reduce_lr() {
  auto& groups = optimizer_->param_groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    const double old_lr = groups[i].lr();
    const double new_lr = std::max(old_lr * factor_, min_lrs_[i]);
    if (old_lr - new_lr > eps_) groups[i].set_lr(new_lr);
  }
}

Value ReduceLROnPlateau::state_dict() const {
  ValueMap m;
  m["factor"] = Value(factor_);
  m["min_lrs"] = Value(to_list(min_lrs_));
  m["patience"] = Value(patience_);
  m["cooldown"] = Value(cooldown_);
  m["cooldown_counter"] = Value(cooldown_counter_);
  m["mode"] = Value(mode_);
  m["threshold"] = Value(threshold_);
  m["threshold_mode"] = Value(threshold_mode_);
  m["best"] = Value(best_);
  m["num_bad_epochs"] = Value(num_bad_epochs_);
  m["mode_worse"] = Value(mode_worse_);
  m["eps"] = Value(eps_);
  m["last_epoch"] = Value(last_epoch_);
  m["_last_lr"] = Value(to_list(last_lr_));
  return Value(std::move(m));
}

void ReduceLROnPlateau::load_state_dict(const Value& sd) {
  const char* who = "ReduceLROnPlateau";
  const ValueMap& m = check_keys(sd, state_dict(), who, {"_last_lr"});
  Reader r{m, who};
  const size_t n = optimizer_->param_groups().size();
  double factor = r.num("factor");
  std::vector<double> min_lrs = r.nums("min_lrs", n);
  int64_t patience = r.integer("patience"), cooldown = r.integer("cooldown");
  int64_t cooldown_counter = r.integer("cooldown_counter"), num_bad = r.integer("num_bad_epochs");
  int64_t last_epoch = r.integer("last_epoch");
  std::string mode = r.str("mode"), threshold_mode = r.str("threshold_mode");
  double threshold = r.num("threshold"), best = r.num("best"), eps = r.num("eps");
  std::vector<double> last_lr = m.count("_last_lr") ? r.nums("_last_lr", n) : last_lr_;
  check_plateau_modes(mode, threshold_mode, "[ReduceLROnPlateau] load_state_dict: ");
  factor_ = factor;
  min_lrs_ = std::move(min_lrs);
  patience_ = patience;
  cooldown_ = cooldown;
  cooldown_counter_ = cooldown_counter;
  num_bad_epochs_ = num_bad;
  last_epoch_ = last_epoch;
  mode_ = mode;
  threshold_mode_ = threshold_mode;
  threshold_ = threshold;
  best_ = best;
  eps_ = eps;
  mode_worse_ = worse_for(mode_);  // as torch's _init_is_better on load
  last_lr_ = std::move(last_lr);
}

}  // namespace ember::optim
