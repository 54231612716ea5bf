// SequentialLR and ChainedScheduler: they delegate every lr to the schedulers they hold, and save
// and load those schedulers' state dicts as one (a failed load restores the ones already loaded).
#include "ember/train/lr_scheduler/composite.h"

#include <algorithm>

#include "train/lr_scheduler/detail.h"

namespace ember::optim {
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

Optimizer& first_optimizer(const std::vector<std::shared_ptr<LRScheduler>>& schedulers) {
  EMBER_CHECK(!schedulers.empty() && schedulers[0] != nullptr, "[ChainedScheduler] needs at least one scheduler");
  return schedulers[0]->optimizer();
}

}  // namespace

using detail::Reader;
using detail::check_keys;
using detail::to_list;

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

}  // namespace ember::optim
