// LRScheduler: the initial step, stepping by the chainable formula or jumping by the closed form,
// and the state dict fields every scheduler has (base_lrs, last_epoch, _step_count, _last_lr).
#include "ember/train/lr_scheduler/scheduler.h"

#include <cmath>
#include <set>

#include "train/lr_scheduler/detail.h"

namespace ember::optim {

namespace detail {

const ValueMap& check_keys(const Value& sd, const Value& reference, const std::string& who,
                           const std::set<std::string>& optional) {
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

}  // namespace detail

using detail::Reader;

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

void LRScheduler::check_num_groups() const {
  EMBER_CHECK(num_groups() == base_lrs_.size(), "[", type_name_, "] the optimizer has ", num_groups(),
              " parameter groups but the scheduler was built for ", base_lrs_.size());
}

void LRScheduler::step() {
  check_num_groups();
  step_count_ += 1;
  last_epoch_ += 1;
  apply(get_lr());
}

void LRScheduler::step_to(double epoch) {
  EMBER_CHECK(std::isfinite(epoch) && epoch == std::floor(epoch), "[", type_name_,
              "] step_to expects a whole epoch number, got ", epoch);
  check_num_groups();
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
  m["base_lrs"] = Value(detail::to_list(base_lrs_));
  m["last_epoch"] = Value(last_epoch_);
  m["_step_count"] = Value(step_count_);
  m["_last_lr"] = Value(detail::to_list(last_lr_));
  save_fields(m);
  return Value(std::move(m));
}

void LRScheduler::load_state_dict(const Value& sd) {
  // Keys a state dict may lack: LambdaLR's note (torch's dicts have none) and OneCycleLR's use_beta1.
  std::set<std::string> optional{"lr_lambdas_note", "use_beta1"};
  const ValueMap& m = detail::check_keys(sd, state_dict(), type_name_, optional);
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

}  // namespace ember::optim
