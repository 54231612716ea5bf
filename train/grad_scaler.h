// GradScaler: loss scaling for training with float16 activations ("16-mixed"), with PyTorch's
// algorithm, defaults and state dict (torch.amp.GradScaler). Small float16 gradients underflow to
// zero; multiplying the loss by a large scale before backward keeps them representable, and the
// gradients are divided by the same scale before the optimizer sees them. When any gradient is
// inf or NaN (the scale was too large) the optimizer step is skipped and the scale shrinks; after
// growth_interval steps without one it grows again.
//
//   amp::GradScaler scaler;
//   scaler.scale(loss).backward();
//   scaler.unscale_(opt);           // optional: before clipping, so that clipping sees true values
//   clip_grad_norm_(params, 1.0);
//   bool stepped = scaler.step(opt);  // unscales if not done yet; skips the step on inf/NaN
//   scaler.update();
//
// The scale is a float32 value and is updated in float32, as torch's _amp_update_scale_ does, so
// a run and its resumed copy follow the same scales bit for bit. Gradients are multiplied by the
// float32 reciprocal of the scale (torch's inv_scale). Checking them costs one reduction per
// gradient (and a device-to-host read per gradient on CUDA).
#pragma once
#include <cstdint>
#include <map>

#include "ember/runtime/api.h"
#include "ember/runtime/tensor.h"
#include "ember/runtime/value.h"
#include "ember/train/optim.h"

namespace ember::amp {

struct GradScalerOptions {
  double init_scale = 65536.0;  // 2^16
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  bool enabled = true;  // false: scale() returns the loss, step() just steps, the state is empty
};

class EMBER_API GradScaler {
 public:
  // Checks the options as torch does (growth_factor > 1, 0 < backoff_factor < 1,
  // growth_interval > 0, a finite positive init_scale).
  explicit GradScaler(GradScalerOptions options = {});

  bool is_enabled() const { return opts_.enabled; }
  // loss * scale (the loss itself when disabled).
  Tensor scale(const Tensor& loss) const;
  // Divides the gradients of the optimizer's parameters by the scale, in place, and records
  // whether any is inf or NaN. At most once per optimizer between update() calls, and not after
  // step(): both are errors, as in torch.
  void unscale_(optim::Optimizer& optimizer);
  // Unscales (unless unscale_ was called) and steps the optimizer unless a gradient was inf or
  // NaN. Returns whether it stepped. Once per optimizer between update() calls.
  bool step(optim::Optimizer& optimizer);
  // The new scale from this iteration's steps: backoff_factor times the scale if any optimizer
  // found an inf or NaN (the growth count restarts), else growth_factor times it after
  // growth_interval clean iterations in a row. Clears the per-optimizer records.
  void update();
  // Sets the scale to new_scale (a finite positive value) and clears the per-optimizer records.
  void update(double new_scale);

  double get_scale() const;  // 1 when disabled
  int64_t growth_tracker() const { return growth_tracker_; }
  // Whether the last unscale_ of optimizer found an inf or NaN (false before one).
  bool found_inf(const optim::Optimizer& optimizer) const;
  const GradScalerOptions& options() const { return opts_; }

  // torch's keys: {"scale", "growth_factor", "backoff_factor", "growth_interval",
  // "_growth_tracker"}; empty when disabled.
  Value state_dict() const;
  // Restores a state_dict(); errors name the missing or mistyped key. An empty map (a disabled
  // scaler's) is refused, as torch does.
  void load_state_dict(const Value& state);

 private:
  enum class Stage { ready, unscaled, stepped };
  struct PerOptimizer {
    Stage stage = Stage::ready;
    bool found_inf = false;
  };
  GradScalerOptions opts_;
  float scale_;
  int64_t growth_tracker_ = 0;
  std::map<const optim::Optimizer*, PerOptimizer> per_opt_;
};

}  // namespace ember::amp
