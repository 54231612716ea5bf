// ReduceLROnPlateau: torch 1.13's is_better / cooldown / reduction rules and its state dict.
#include "ember/train/lr_scheduler/plateau.h"

#include <algorithm>
#include <limits>

#include "train/lr_scheduler/detail.h"

namespace ember::optim {
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
  m["min_lrs"] = Value(detail::to_list(min_lrs_));
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
  m["_last_lr"] = Value(detail::to_list(last_lr_));
  return Value(std::move(m));
}

void ReduceLROnPlateau::load_state_dict(const Value& sd) {
  const char* who = "ReduceLROnPlateau";
  const ValueMap& m = detail::check_keys(sd, state_dict(), who, {"_last_lr"});
  detail::Reader r{m, who};
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
