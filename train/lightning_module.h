// LightningModule: an nn::Module that also says how to train itself (training_step, validation_step,
// configure_optimizers, ...), logs metrics with Lightning's log() defaults, keeps hyperparameters,
// and can rebuild itself from a checkpoint with load_from_checkpoint<Model>(path).
#pragma once
#include <concepts>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ember/checkpoint/checkpoint.h"
#include "ember/nn/module.h"
#include "ember/runtime/api.h"
#include "ember/runtime/value.h"
#include "ember/train/hparams.h"
#include "ember/train/lr_scheduler.h"
#include "ember/train/optim.h"

namespace ember {

class Trainer;
using Batch = PoolVector<Tensor>;  // the loader's batches (data::Batch): recycled storage

// One LR scheduler and when the trainer steps it (Lightning's lr_scheduler_config).
struct SchedulerConfig {
  std::shared_ptr<optim::LRScheduler> scheduler;        // either this ...
  std::shared_ptr<optim::ReduceLROnPlateau> plateau;    // ... or this (needs `monitor`)
  std::string interval = "epoch";                        // "epoch" or "step"
  int64_t frequency = 1;                                 // step every `frequency` intervals
  std::string monitor;                                   // metric for ReduceLROnPlateau
  bool strict = true;                                    // a missing monitor is an error (else a warning)
  std::string name;                                      // LearningRateMonitor's key ("lr-Adam" by default)
};

// What configure_optimizers() returns: optimizers and schedulers (a scheduler steps the optimizer
// it was built on).
struct OptimizerConfig {
  std::vector<std::shared_ptr<optim::Optimizer>> optimizers;
  std::vector<SchedulerConfig> schedulers;
  OptimizerConfig() = default;
  // One optimizer (so `return std::make_shared<optim::Adam>(...);` works), optionally with a scheduler.
  template <typename O>
    requires std::derived_from<O, optim::Optimizer>
  OptimizerConfig(std::shared_ptr<O> opt) : optimizers{std::move(opt)} {}  // NOLINT
  template <typename O>
    requires std::derived_from<O, optim::Optimizer>
  OptimizerConfig(std::shared_ptr<O> opt, SchedulerConfig sched) : optimizers{std::move(opt)}, schedulers{std::move(sched)} {}
};

// log() flags; unset ones take Lightning's default for the hook that logs: on_step=true,
// on_epoch=false in training_step and training batch hooks; on_step=false, on_epoch=true elsewhere.
struct LogOptions {
  std::optional<bool> on_step;
  std::optional<bool> on_epoch;
  bool prog_bar = false;
  bool logger = true;
  bool sync_dist = false;  // with several ranks: log the mean over ranks (a collective: every rank logs it)
};

struct LoadOptions {
  Device device = kCPU;   // where the weights go
  HParams hparams;        // overrides of the stored hyperparameters
  bool strict = true;     // load_state_dict strictness
};

class EMBER_API LightningModule : public nn::Module {
 public:
  explicit LightningModule(std::string type_name = "");

  // --- what the user implements ----------------------------------------------------------------
  // Returns the loss to backpropagate (a 0-d tensor).
  virtual Tensor training_step(const Batch& batch, int64_t batch_idx) = 0;
  virtual void validation_step(const Batch& batch, int64_t batch_idx);
  virtual void test_step(const Batch& batch, int64_t batch_idx);
  virtual Tensor predict_step(const Batch& batch, int64_t batch_idx);
  virtual OptimizerConfig configure_optimizers() = 0;

  // --- hooks (all optional) --------------------------------------------------------------------
  virtual void on_fit_start() {}
  virtual void on_fit_end() {}
  virtual void on_train_start() {}
  virtual void on_train_end() {}
  virtual void on_train_epoch_start() {}
  virtual void on_train_epoch_end() {}
  virtual void on_validation_epoch_start() {}
  virtual void on_validation_epoch_end() {}
  virtual void on_test_epoch_end() {}
  virtual void on_train_batch_start(const Batch&, int64_t /*batch_idx*/) {}
  virtual void on_train_batch_end(const Tensor& /*loss*/, const Batch&, int64_t /*batch_idx*/) {}
  // Adds user data to a checkpoint being written (stored under "extras").
  virtual void on_save_checkpoint(Value& /*extras*/) {}
  // Receives the "extras" of a checkpoint being loaded (before the weights are loaded).
  virtual void on_load_checkpoint(const Value& /*extras*/) {}

  // --- deployment ------------------------------------------------------------------------------
  // The module whose tree checkpoints record in their module_tree section, so that
  // nn::load_module(path) and ember-run rebuild it from the file alone. Null (the default) records
  // this module's own tree: a LightningModule is rarely a registered type, so then only its
  // registered children are rebuildable (nn::load_module(path, "child")). Override it to return a
  // module made of registered types that computes this module's inference forward from exactly
  // this module's parameters and buffers, under the same state_dict names: for forward(x) =
  // decoder(encoder(x)), a Sequential of the named children {"encoder", "decoder"}. The Trainer
  // checks the names and the tensors before it writes the tree.
  virtual std::shared_ptr<const nn::Module> inference_module() const { return nullptr; }

  // --- logging ---------------------------------------------------------------------------------
  // Logs a scalar metric (a float is rounded to float32, as Lightning's tensors are).
  void log(const std::string& name, double value, LogOptions opts = {});
  // Logs a one-element tensor (f64 keeps its precision; f32/f16/bf16 are widened from their value).
  void log(const std::string& name, const Tensor& value, LogOptions opts = {});

  // --- hyperparameters -------------------------------------------------------------------------
  // Records hyperparameters; they are saved in every checkpoint and hparams.yaml.
  void save_hyperparameters(HParams hp) { hparams_ = std::move(hp); }
  const HParams& hparams() const { return hparams_; }
  HParams& hparams() { return hparams_; }

  // The trainer running this module (null outside fit/validate/test/predict).
  Trainer* trainer() const { return trainer_; }

  // Rebuilds a Model from a checkpoint: Model(const HParams&) with the stored hyperparameters
  // (updated by opts.hparams), then loads the weights (strict per opts), moves it to opts.device
  // and calls on_load_checkpoint(extras). Works for weights-only files; never reads optimizer data.
  template <typename Model>
  static std::shared_ptr<Model> load_from_checkpoint(const std::string& path, const LoadOptions& opts = {}) {
    Value ckpt = read_weights_checkpoint(path);
    HParams hp = stored_hparams(ckpt, path);
    hp.update(opts.hparams);
    auto model = std::make_shared<Model>(hp);
    model->restore_weights(ckpt, path, opts);
    return model;
  }

  // internals used by the Trainer and load_from_checkpoint
  static Value read_weights_checkpoint(const std::string& path);
  static HParams stored_hparams(const Value& ckpt, const std::string& path);
  void restore_weights(const Value& ckpt, const std::string& path, const LoadOptions& opts);
  void attach(Trainer* t) { trainer_ = t; }

 private:
  HParams hparams_;
  Trainer* trainer_ = nullptr;
};

}  // namespace ember
