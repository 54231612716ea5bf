// Callback: hooks the Trainer calls during fit/validate/test, plus state that goes into checkpoints
// under "callbacks"[state_key()] and comes back on resume.
#pragma once
#include <exception>
#include <string>

#include "ember/runtime/api.h"
#include "ember/runtime/value.h"
#include "ember/train/lightning_module.h"

namespace ember {

class Trainer;

class EMBER_API Callback {
 public:
  virtual ~Callback() = default;

  // Key of this callback's state in a checkpoint; callbacks of one type with different settings
  // must differ here (as Lightning's ModelCheckpoint{'monitor': ..., 'mode': ...}).
  virtual std::string state_key() const = 0;
  // State to checkpoint; null means nothing to save.
  virtual Value state_dict() const { return Value(); }
  virtual void load_state_dict(const Value& /*state*/) {}
  // True for ModelCheckpoint and OnExceptionCheckpoint. (Only a ModelCheckpoint replaces the
  // automatic checkpoint; unlike Lightning, an OnExceptionCheckpoint does not.)
  virtual bool is_checkpoint_callback() const { return false; }

  // stage: "fit", "validate", "test" or "predict". Called before any restore.
  virtual void setup(Trainer&, LightningModule&, const std::string& /*stage*/) {}
  virtual void teardown(Trainer&, LightningModule&, const std::string& /*stage*/) {}
  virtual void on_fit_start(Trainer&, LightningModule&) {}
  virtual void on_fit_end(Trainer&, LightningModule&) {}
  virtual void on_train_start(Trainer&, LightningModule&) {}
  virtual void on_train_end(Trainer&, LightningModule&) {}
  virtual void on_train_epoch_start(Trainer&, LightningModule&) {}
  // After the module's on_train_epoch_end (metrics it logged are visible).
  virtual void on_train_epoch_end(Trainer&, LightningModule&) {}
  virtual void on_train_batch_start(Trainer&, LightningModule&, const Batch&, int64_t /*batch_idx*/) {}
  // After the optimizer step of this batch (global_step already counts it).
  virtual void on_train_batch_end(Trainer&, LightningModule&, const Tensor& /*loss*/, const Batch&,
                                  int64_t /*batch_idx*/) {}
  virtual void on_validation_start(Trainer&, LightningModule&) {}
  virtual void on_validation_epoch_end(Trainer&, LightningModule&) {}
  // After validation metrics are aggregated (also during the sanity check: see Trainer::sanity_checking()).
  virtual void on_validation_end(Trainer&, LightningModule&) {}
  // An exception (or SIGTERM/SIGINT turned into one) is leaving fit().
  virtual void on_exception(Trainer&, LightningModule&, const std::exception&) {}
  // Extra data for a checkpoint being written (full checkpoints only).
  virtual void on_save_checkpoint(Trainer&, LightningModule&, Value& /*checkpoint*/) {}
  virtual void on_load_checkpoint(Trainer&, LightningModule&, const Value& /*checkpoint*/) {}
};

}  // namespace ember
