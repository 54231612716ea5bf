// ReduceLROnPlateau: the metric-driven scheduler. It is not an LRScheduler (torch's is not an
// _LRScheduler either): it steps on a metric, not an epoch, and has no formula of the step.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/runtime/value.h"
#include "ember/train/optim.h"

namespace ember::optim {

struct ReduceLROnPlateauOptions {
  std::string mode = "min";            // "min": lower metrics are better; "max": higher
  double factor = 0.1;                 // new_lr = lr * factor (must be < 1)
  int64_t patience = 10;               // bad epochs tolerated before reducing
  double threshold = 1e-4;
  std::string threshold_mode = "rel";  // "rel" or "abs"
  int64_t cooldown = 0;                // epochs to wait after a reduction
  std::vector<double> min_lr{0.0};     // one value, or one per group
  double eps = 1e-8;                   // reductions smaller than eps are skipped
};

// Reduces the lr when a metric stops improving (torch.optim.lr_scheduler.ReduceLROnPlateau).
class EMBER_API ReduceLROnPlateau {
 public:
  ReduceLROnPlateau(Optimizer& optimizer, ReduceLROnPlateauOptions options = {});
  // Records one epoch's metric and reduces the lr if it has plateaued.
  void step(double metric);
  // As step(metric), with an explicit epoch number (torch's deprecated form).
  void step(double metric, int64_t epoch);
  std::vector<double> get_last_lr() const { return last_lr_; }
  Optimizer& optimizer() const { return *optimizer_; }
  bool in_cooldown() const { return cooldown_counter_ > 0; }
  double best() const { return best_; }
  int64_t num_bad_epochs() const { return num_bad_epochs_; }
  int64_t cooldown_counter() const { return cooldown_counter_; }
  int64_t last_epoch() const { return last_epoch_; }

  // All fields: factor, min_lrs, patience, cooldown, cooldown_counter, mode, threshold,
  // threshold_mode, best, num_bad_epochs, mode_worse, eps, last_epoch, _last_lr.
  Value state_dict() const;
  // Restores a state_dict(); throws naming missing, unexpected or mistyped keys.
  void load_state_dict(const Value& state_dict);

 private:
  bool is_better(double a, double best) const;
  void reduce_lr();
  Optimizer* optimizer_;
  double factor_;
  std::vector<double> min_lrs_;
  int64_t patience_;
  int64_t cooldown_;
  int64_t cooldown_counter_ = 0;
  std::string mode_;
  double threshold_;
  std::string threshold_mode_;
  double best_;
  int64_t num_bad_epochs_ = 0;
  double mode_worse_;
  double eps_;
  int64_t last_epoch_ = 0;
  std::vector<double> last_lr_;
};

}  // namespace ember::optim
