// The cosine schedulers: torch 1.13's closed and chainable formulas transcribed operation for
// operation (same association, same libm calls), so the doubles equal Python's.
#include "ember/train/lr_scheduler/cosine.h"

#include <cmath>
#include <numbers>

#include "train/lr_scheduler/detail.h"

namespace ember::optim {
namespace {

constexpr double kPi = std::numbers::pi;  // == Python's math.pi

int64_t ipow(int64_t base, int64_t exp) {
  int64_t r = 1;
  for (int64_t i = 0; i < exp; ++i) r *= base;
  return r;
}

// torch's _format_param: one value for every group, or exactly one per group.
std::vector<double> per_group(const std::vector<double>& v, size_t groups, const char* what, const std::string& who) {
  EMBER_CHECK(!v.empty(), "[", who, "] ", what, " needs at least one value");
  if (v.size() == 1) return std::vector<double>(groups, v[0]);
  EMBER_CHECK(v.size() == groups, "[", who, "] expected ", groups, " values for ", what, ", got ", v.size());
  return v;
}

}  // namespace

using detail::Reader;

// --- closed forms ----------------------------------------------------------------------------

double cosine_annealing_lr(double base_lr, double eta_min, double t, double T_max) {
  return eta_min + (base_lr - eta_min) * (1 + std::cos(kPi * t / T_max)) / 2;
}

WarmRestartPosition warm_restart_position(double epoch, int64_t T_0, int64_t T_mult) {
  const double T0 = static_cast<double>(T_0);
  if (epoch < T0) return {epoch, T_0};
  if (T_mult == 1) return {std::fmod(epoch, T0), T_0};
  // Cycle n starts at T_0 * (T_mult^n - 1) / (T_mult - 1); solve for the n the epoch is in.
  const double mult = static_cast<double>(T_mult);
  const auto n = static_cast<int64_t>(std::log(epoch / T0 * (mult - 1) + 1) / std::log(mult));
  return {epoch - static_cast<double>(T_0 * (ipow(T_mult, n) - 1)) / static_cast<double>(T_mult - 1),
          T_0 * ipow(T_mult, n)};
}

double cosine_warm_restarts_lr(double base_lr, double eta_min, double epoch, int64_t T_0, int64_t T_mult) {
  const WarmRestartPosition p = warm_restart_position(epoch, T_0, T_mult);
  return cosine_annealing_lr(base_lr, eta_min, p.T_cur, static_cast<double>(p.T_i));
}

double annealing_cos(double start, double end, double pct) {
  const double cos_out = std::cos(kPi * pct) + 1;
  return end + (start - end) / 2.0 * cos_out;
}

double annealing_linear(double start, double end, double pct) { return (end - start) * pct + start; }

OneCyclePoint one_cycle_point(int64_t t, std::span<const double> end_steps) {
  EMBER_CHECK(!end_steps.empty(), "[one_cycle_point] needs at least one phase");
  const double step = static_cast<double>(t);
  double start_step = 0.0;
  for (size_t i = 0; i < end_steps.size(); ++i) {
    if (step <= end_steps[i] || i == end_steps.size() - 1) {
      return {i, (step - start_step) / (end_steps[i] - start_step)};
    }
    start_step = end_steps[i];
  }
  return {};  // not reached: the last phase takes every step past it
}

// --- CosineAnnealingLR -----------------------------------------------------------------------

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min, int64_t last_epoch)
    : LRScheduler("CosineAnnealingLR", optimizer), T_max_(T_max), eta_min_(eta_min) {
  EMBER_CHECK(T_max > 0, "[CosineAnnealingLR] T_max must be positive, got ", T_max);
  init(last_epoch);
}

// torch's chainable form: the first step of a resumed scheduler uses the closed form, the step
// after each minimum adds the rise of one step, every other step scales (lr - eta_min) by the
// ratio of consecutive cosine terms.
std::vector<double> CosineAnnealingLR::get_lr() {
  std::vector<double> lrs = group_lrs();
  const double le = static_cast<double>(last_epoch_), T = static_cast<double>(T_max_);
  if (last_epoch_ == 0) return lrs;
  if (step_count_ == 1 && last_epoch_ > 0) {
    for (size_t i = 0; i < lrs.size(); ++i) lrs[i] = cosine_annealing_lr(base_lrs_[i], eta_min_, le, T);
  } else if (detail::pymod(last_epoch_ - 1 - T_max_, 2 * T_max_) == 0) {
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
  const double le = static_cast<double>(last_epoch_), T = static_cast<double>(T_max_);
  return per_base_lr([&](double b) { return cosine_annealing_lr(b, eta_min_, le, T); });
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
  const double T_i = static_cast<double>(T_i_);
  return per_base_lr([&](double b) { return cosine_annealing_lr(b, eta_min_, T_cur_, T_i); });
}

// As torch, this scheduler's step does not count _step_count.
void CosineAnnealingWarmRestarts::step() {
  if (last_epoch_ < 0) {
    step_to(0.0);
    return;
  }
  check_num_groups();
  const int64_t epoch = last_epoch_ + 1;
  T_cur_ = T_cur_ + 1;
  if (T_cur_ >= static_cast<double>(T_i_)) {
    T_cur_ = T_cur_ - static_cast<double>(T_i_);
    T_i_ = T_i_ * T_mult_;
  }
  last_epoch_ = epoch;
  apply(get_lr());
}

void CosineAnnealingWarmRestarts::step_to(double epoch) {
  EMBER_CHECK(epoch >= 0.0, "[CosineAnnealingWarmRestarts] expected non-negative epoch, but got ", epoch);
  check_num_groups();
  const WarmRestartPosition p = warm_restart_position(epoch, T_0_, T_mult_);
  T_cur_ = p.T_cur;
  // As torch, T_i is left alone when T_mult is 1 past the first cycle (it is T_0 then, unless a
  // loaded state dict said otherwise).
  if (T_mult_ != 1 || epoch < static_cast<double>(T_0_)) T_i_ = p.T_i;
  last_epoch_ = static_cast<int64_t>(std::floor(epoch));
  apply(get_lr());
}

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
  return anneal_strategy_ == "cos" ? annealing_cos(start, end, pct) : annealing_linear(start, end, pct);
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
  std::vector<double> end_steps;
  for (const Phase& ph : phases_) end_steps.push_back(ph.end_step);
  const OneCyclePoint at = one_cycle_point(step_num, end_steps);
  const Phase& ph = phases_[at.phase];
  std::vector<double> lrs;
  for (auto& group : optimizer_->param_groups()) {
    lrs.push_back(anneal(group.number(ph.start_lr), group.number(ph.end_lr), at.pct));
    if (cycle_momentum_) {
      const double momentum = anneal(group.number(ph.start_momentum), group.number(ph.end_momentum), at.pct);
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

}  // namespace ember::optim
