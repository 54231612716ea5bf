// GradScaler (see grad_scaler.h), following torch/amp/grad_scaler.py and ATen's
// _amp_foreach_non_finite_check_and_unscale_ / _amp_update_scale_ CPU kernels.
#include "ember/train/grad_scaler.h"

#include <cmath>

#include "ember/runtime/autograd.h"
#include "ember/runtime/error.h"
#include "ember/runtime/ops.h"

namespace ember::amp {

namespace {

double number(const Value& state, const char* key) {
  EMBER_CHECK(state.contains(key), "[GradScaler.load_state_dict] the state has no '", key, "'");
  const Value& v = state.at(key);
  EMBER_CHECK(v.is_int() || v.is_float(), "[GradScaler.load_state_dict] '", key, "' must be a number, got a ",
              Value::kind_name(v.kind()));
  return v.is_int() ? static_cast<double>(v.as_int()) : v.as_double();
}

void check_options(const GradScalerOptions& o, const char* where) {
  EMBER_CHECK(std::isfinite(o.init_scale) && o.init_scale > 0, "[", where, "] the scale must be finite and > 0, got ",
              o.init_scale);
  EMBER_CHECK(o.growth_factor > 1.0, "[", where, "] growth_factor must be > 1, got ", o.growth_factor);
  EMBER_CHECK(o.backoff_factor > 0.0 && o.backoff_factor < 1.0, "[", where, "] backoff_factor must be in (0, 1), got ",
              o.backoff_factor);
  EMBER_CHECK(o.growth_interval > 0, "[", where, "] growth_interval must be > 0, got ", o.growth_interval);
}

}  // namespace

GradScaler::GradScaler(GradScalerOptions options) : opts_(options), scale_(static_cast<float>(options.init_scale)) {
  if (opts_.enabled) check_options(opts_, "GradScaler");
}

Tensor GradScaler::scale(const Tensor& loss) const {
  if (!opts_.enabled) return loss;
  return mul(loss, static_cast<double>(scale_));
}

void GradScaler::unscale_(optim::Optimizer& optimizer) {
  if (!opts_.enabled) return;
  PerOptimizer& st = per_opt_[&optimizer];
  EMBER_CHECK(st.stage != Stage::unscaled,
              "[GradScaler] unscale_() has already been called on this optimizer since the last update()");
  EMBER_CHECK(st.stage != Stage::stepped, "[GradScaler] unscale_() is being called after step()");
  // torch: inv_scale = scale.double().reciprocal().float()
  const float inv_scale = static_cast<float>(1.0 / static_cast<double>(scale_));
  NoGradGuard ng;
  bool found = false;
  for (auto& group : optimizer.param_groups())
    for (auto& [name, p] : group.params) {
      Tensor g = p.grad();
      if (!g.defined()) continue;
      EMBER_CHECK(g.dtype() != DType::f16, "[GradScaler] attempting to unscale the float16 gradient of '", name,
                  "' (parameters and their gradients stay float32 in mixed precision)");
      if (g.numel() == 0) continue;
      // Every element is multiplied; any inf or NaN marks the step (max propagates NaN).
      if (!found) found = !std::isfinite(max(abs(g)).item_double());
      g.mul_(static_cast<double>(inv_scale));
    }
  st.found_inf = found;
  st.stage = Stage::unscaled;
}

bool GradScaler::step(optim::Optimizer& optimizer) {
  if (!opts_.enabled) {
    optimizer.step();
    return true;
  }
  PerOptimizer& st = per_opt_[&optimizer];
  EMBER_CHECK(st.stage != Stage::stepped, "[GradScaler] step() has already been called since the last update()");
  if (st.stage == Stage::ready) unscale_(optimizer);
  PerOptimizer& after = per_opt_[&optimizer];
  bool stepped = !after.found_inf;
  if (stepped) optimizer.step();
  after.stage = Stage::stepped;
  return stepped;
}

void GradScaler::update() {
  if (!opts_.enabled) return;
  bool any_checked = false, found = false;
  for (const auto& [opt, st] : per_opt_) {
    any_checked |= st.stage != Stage::ready;
    found |= st.found_inf;
  }
  EMBER_CHECK(any_checked, "[GradScaler] update(): no inf checks were recorded (call unscale_() or step() first)");
  // _amp_update_scale_: float32 scale, the factors applied in double and rounded back.
  if (found) {
    scale_ = static_cast<float>(static_cast<double>(scale_) * opts_.backoff_factor);
    growth_tracker_ = 0;
  } else {
    int64_t successful = growth_tracker_ + 1;
    if (successful == opts_.growth_interval) {
      float grown = static_cast<float>(static_cast<double>(scale_) * opts_.growth_factor);
      if (std::isfinite(grown)) scale_ = grown;
      growth_tracker_ = 0;
    } else {
      growth_tracker_ = successful;
    }
  }
  per_opt_.clear();
}

void GradScaler::update(double new_scale) {
  if (!opts_.enabled) return;
  EMBER_CHECK(std::isfinite(new_scale) && new_scale > 0, "[GradScaler] update(new_scale): the scale must be finite and > 0, got ",
              new_scale);
  scale_ = static_cast<float>(new_scale);
  per_opt_.clear();
}

double GradScaler::get_scale() const { return opts_.enabled ? static_cast<double>(scale_) : 1.0; }

bool GradScaler::found_inf(const optim::Optimizer& optimizer) const {
  auto it = per_opt_.find(&optimizer);
  return it != per_opt_.end() && it->second.found_inf;
}

Value GradScaler::state_dict() const {
  if (!opts_.enabled) return Value(ValueMap{});
  return Value(ValueMap{{"scale", Value(static_cast<double>(scale_))},
                        {"growth_factor", Value(opts_.growth_factor)},
                        {"backoff_factor", Value(opts_.backoff_factor)},
                        {"growth_interval", Value(opts_.growth_interval)},
                        {"_growth_tracker", Value(growth_tracker_)}});
}

void GradScaler::load_state_dict(const Value& state) {
  if (!opts_.enabled) return;
  EMBER_CHECK(state.is_map(), "[GradScaler.load_state_dict] the state must be a map, got a ", Value::kind_name(state.kind()));
  EMBER_CHECK(!state.as_map().empty(),
              "[GradScaler.load_state_dict] the state is empty, possibly because it was saved by a disabled GradScaler");
  GradScalerOptions o = opts_;
  o.init_scale = number(state, "scale");
  o.growth_factor = number(state, "growth_factor");
  o.backoff_factor = number(state, "backoff_factor");
  const double interval = number(state, "growth_interval"), tracker = number(state, "_growth_tracker");
  EMBER_CHECK(interval == std::floor(interval) && interval >= 1 && interval < 9.2e18,
              "[GradScaler.load_state_dict] 'growth_interval' must be a positive integer, got ", interval);
  o.growth_interval = static_cast<int64_t>(interval);
  EMBER_CHECK(tracker == std::floor(tracker) && tracker >= 0 && tracker < interval,
              "[GradScaler.load_state_dict] '_growth_tracker' must be an integer in [0, growth_interval), got ", tracker);
  check_options(o, "GradScaler.load_state_dict");
  opts_ = o;
  scale_ = static_cast<float>(o.init_scale);
  growth_tracker_ = static_cast<int64_t>(tracker);
  per_opt_.clear();
}

}  // namespace ember::amp
