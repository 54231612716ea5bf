// EarlyStopping: Lightning's checks (finite, stopping / divergence thresholds, improvement by more
// than min_delta, patience) run at train epoch end or validation end, with its checkpointed state.
// Metrics are float32 values (as Lightning's tensors), so the arithmetic is done in float32 for them.
#include <cmath>
#include <limits>

#include "ember/runtime/error.h"
#include "ember/train/callbacks.h"
#include "train/callbacks_pyformat.h"
#include "ember/train/trainer.h"

namespace ember {
namespace {

bool is_float32(double v) { return std::isnan(v) || static_cast<double>(static_cast<float>(v)) == v; }

std::string value_str(double v) { return py::float_repr(v); }

}  // namespace

EarlyStopping::EarlyStopping(const char* monitor) : EarlyStopping(EarlyStoppingOptions{.monitor = monitor}) {}

EarlyStopping::EarlyStopping(EarlyStoppingOptions options) : opts_(std::move(options)) {
  EMBER_CHECK(!opts_.monitor.empty(), "[EarlyStopping] monitor must name a logged metric");
  EMBER_CHECK(opts_.mode == "min" || opts_.mode == "max", "[EarlyStopping] `mode` can be min, max, got ", opts_.mode);
  min_delta_ = opts_.min_delta * (opts_.mode == "max" ? 1.0 : -1.0);
  best_score_ = opts_.mode == "min" ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();
  patience_ = opts_.patience;
}

std::string EarlyStopping::state_key() const {
  return "EarlyStopping{'monitor': " + py::str_repr(opts_.monitor) + ", 'mode': " + py::str_repr(opts_.mode) + "}";
}

Value EarlyStopping::state_dict() const {
  ValueMap s;
  s["wait_count"] = wait_count_;
  s["stopped_epoch"] = stopped_epoch_;
  s["best_score"] = best_score_;
  s["patience"] = patience_;
  return Value(std::move(s));
}

void EarlyStopping::load_state_dict(const Value& state) {
  wait_count_ = state.at("wait_count").as_int();
  stopped_epoch_ = state.at("stopped_epoch").as_int();
  best_score_ = state.at("best_score").as_double();
  patience_ = state.at("patience").as_int();
}

void EarlyStopping::setup(Trainer& trainer, LightningModule&, const std::string&) {
  if (opts_.check_on_train_epoch_end) {
    check_on_train_epoch_end_ = *opts_.check_on_train_epoch_end;
  } else {
    const TrainerOptions& o = trainer.options();
    const BatchLimit& v = o.val_check_interval;
    bool once_per_epoch = v.is_count ? v.count == 1 : v.fraction == 1.0;
    check_on_train_epoch_end_ = once_per_epoch && o.check_val_every_n_epoch == 1;
  }
}

void EarlyStopping::on_train_epoch_end(Trainer& trainer, LightningModule&) {
  if (!check_on_train_epoch_end_ || trainer.stage() != "fit" || trainer.sanity_checking()) return;
  run_check(trainer);
}

void EarlyStopping::on_validation_end(Trainer& trainer, LightningModule&) {
  if (check_on_train_epoch_end_ || trainer.stage() != "fit" || trainer.sanity_checking()) return;
  run_check(trainer);
}

void EarlyStopping::run_check(Trainer& trainer) {
  const Metrics& logs = trainer.callback_metrics();
  auto it = logs.find(opts_.monitor);
  if (it == logs.end()) {
    std::string keys;
    for (const auto& [k, v] : logs) keys += (keys.empty() ? "`" : "`, `") + k;
    if (!keys.empty()) keys += "`";
    std::string msg = "Early stopping conditioned on metric `" + opts_.monitor +
                      "` which is not available. Pass in or modify your `EarlyStopping` callback to use any of the "
                      "following: " + keys;
    if (opts_.strict) throw Error("[EarlyStopping] " + msg);
    if (opts_.verbose) trainer.print("[EarlyStopping] warning: " + msg);
    return;
  }
  auto [stop, reason] = evaluate(it->second.value);
  trainer.should_stop = trainer.should_stop || stop;
  if (stop) stopped_epoch_ = trainer.current_epoch();
  last_reason_ = reason;
  if (!reason.empty() && opts_.verbose) trainer.print("[EarlyStopping] " + reason);
}

// torch.lt / torch.gt of `current` against `reference` in the metric's precision.
bool EarlyStopping::improved(double current, double reference) const {
  if (is_float32(current)) {
    float c = static_cast<float>(current), r = static_cast<float>(reference);
    return opts_.mode == "min" ? c < r : c > r;
  }
  return opts_.mode == "min" ? current < reference : current > reference;
}

std::pair<bool, std::string> EarlyStopping::evaluate(double current) {
  const char* order = opts_.mode == "min" ? "<" : ">";
  if (opts_.check_finite && !std::isfinite(current)) {
    return {true, "Monitored metric " + opts_.monitor + " = " + value_str(current) +
                      " is not finite. Previous best value was " +
                      py::format_number(py::Number::of_float(best_score_), ".3f") + ". Signaling Trainer to stop."};
  }
  if (opts_.stopping_threshold && improved(current, *opts_.stopping_threshold)) {
    return {true, "Stopping threshold reached: " + opts_.monitor + " = " + value_str(current) + " " + order + " " +
                      py::float_repr(*opts_.stopping_threshold) + ". Signaling Trainer to stop."};
  }
  if (opts_.divergence_threshold && improved(-current, -*opts_.divergence_threshold)) {
    return {true, "Divergence threshold reached: " + opts_.monitor + " = " + value_str(current) + " " + order + " " +
                      py::float_repr(*opts_.divergence_threshold) + ". Signaling Trainer to stop."};
  }
  // current - min_delta in the metric's precision (float32 tensor minus a Python float in torch)
  double shifted = is_float32(current) ? static_cast<double>(static_cast<float>(current) - static_cast<float>(min_delta_))
                                       : current - min_delta_;
  if (improved(shifted, best_score_)) {
    std::string msg;
    if (std::isfinite(best_score_)) {
      msg = "Metric " + opts_.monitor + " improved by " +
            py::format_number(py::Number::of_float(std::fabs(best_score_ - current)), ".3f") +
            " >= min_delta = " + py::float_repr(std::fabs(min_delta_)) +
            ". New best score: " + py::format_number(py::Number::of_float(current), ".3f");
    } else {
      msg = "Metric " + opts_.monitor + " improved. New best score: " +
            py::format_number(py::Number::of_float(current), ".3f");
    }
    best_score_ = current;
    wait_count_ = 0;
    return {false, msg};
  }
  ++wait_count_;
  if (wait_count_ >= patience_) {
    return {true, "Monitored metric " + opts_.monitor + " did not improve in the last " + std::to_string(wait_count_) +
                      " records. Best score: " + py::format_number(py::Number::of_float(best_score_), ".3f") +
                      ". Signaling Trainer to stop."};
  }
  return {false, ""};
}

}  // namespace ember
