// Schedulers built from other schedulers on the same optimizer: SequentialLR hands over from one
// to the next at milestones, ChainedScheduler steps them all together. Their state dicts nest the
// state dicts of the schedulers they hold.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/train/lr_scheduler/scheduler.h"

namespace ember::optim {

// Runs schedulers one after another: scheduler i+1 takes over at milestones[i] (restarting at
// its epoch 0 through its closed form, as torch).
class EMBER_API SequentialLR : public LRScheduler {
 public:
  SequentialLR(Optimizer& optimizer, std::vector<std::shared_ptr<LRScheduler>> schedulers,
               std::vector<int64_t> milestones, int64_t last_epoch = -1);
  void step() override;
  void step_to(double epoch) override;  // throws: torch's SequentialLR has no step(epoch)
  Value state_dict() const override;    // {"_milestones", "last_epoch", "_last_lr", "_schedulers": [...]}
  void load_state_dict(const Value& state_dict) override;

 protected:
  std::vector<double> get_lr() override;

 private:
  std::vector<std::shared_ptr<LRScheduler>> schedulers_;
  std::vector<int64_t> milestones_;
};

// Steps every scheduler at each step (their factors multiply). As torch's, it keeps no epoch
// count of its own (last_epoch() stays -1); its schedulers keep theirs.
class EMBER_API ChainedScheduler : public LRScheduler {
 public:
  explicit ChainedScheduler(std::vector<std::shared_ptr<LRScheduler>> schedulers);
  void step() override;
  void step_to(double epoch) override;  // throws: torch's ChainedScheduler has no step(epoch)
  Value state_dict() const override;    // {"_last_lr", "_schedulers": [...]}
  void load_state_dict(const Value& state_dict) override;

 protected:
  std::vector<double> get_lr() override;

 private:
  std::vector<std::shared_ptr<LRScheduler>> schedulers_;
};

}  // namespace ember::optim
