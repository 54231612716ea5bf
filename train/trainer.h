// Trainer: runs a LightningModule's fit / validate / test / predict loops with Lightning's
// semantics (option names in snake_case), writes logs and checkpoints under
// <default_root_dir>/ember_logs/version_N/, and saves/restores the complete training state:
// weights, optimizers, schedulers, loop progress, RNG states, data-loader position and callbacks.
// README.md ("Resume arithmetic") says which epoch a resumed run continues at.
#pragma once
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/runtime/device.h"
#include "ember/runtime/value.h"
#include "ember/train/callback.h"
#include "ember/train/data/dataloader.h"
#include "ember/train/lightning_module.h"
#include "ember/train/strategy.h"

namespace ember {

class Logger;
struct ProgressBar;
namespace amp {
class GradScaler;
}
namespace checkpoint {
class AsyncSaver;
}

// An int is a count of batches, a double a fraction of the loader (Lightning's int|float options).
struct BatchLimit {
  BatchLimit(int n) : count(n), is_count(true) {}              // NOLINT
  BatchLimit(int64_t n) : count(n), is_count(true) {}          // NOLINT
  BatchLimit(double f) : fraction(f), is_count(false) {}       // NOLINT
  int64_t count = 0;
  double fraction = 1.0;
  bool is_count = false;
  // Batches to use out of `available` (validates the value, naming `option`).
  int64_t resolve(int64_t available, const char* option) const;
};

struct TrainerOptions {
  std::string default_root_dir = ".";
  std::optional<int64_t> max_epochs;        // none: 1000 when max_steps == -1, else unbounded
  std::optional<int64_t> min_epochs;
  int64_t max_steps = -1;
  BatchLimit limit_train_batches = 1.0;
  BatchLimit limit_val_batches = 1.0;
  BatchLimit limit_test_batches = 1.0;
  BatchLimit limit_predict_batches = 1.0;
  int64_t check_val_every_n_epoch = 1;      // 0: only val_check_interval decides
  BatchLimit val_check_interval = 1.0;      // fraction of an epoch, or every N training batches
  int64_t num_sanity_val_steps = 2;         // -1: the whole validation loader
  int64_t accumulate_grad_batches = 1;
  std::optional<double> gradient_clip_val;
  std::string gradient_clip_algorithm = "norm";  // "norm" or "value"
  int64_t log_every_n_steps = 50;
  bool enable_checkpointing = true;
  bool enable_progress_bar = true;
  std::vector<std::shared_ptr<Callback>> callbacks;
  bool logger = true;                       // CSV logger in ember_logs/version_N
  std::optional<uint64_t> seed;             // seeds the default generator and loader samplers
  bool deterministic = true;                // Ember's CPU kernels are deterministic already
  Device device = kCPU;
  // Checkpoints are written by a background thread: a save blocks the loop only for copying the
  // state into host buffers kept from one save to the next (parameters and optimizer moments are
  // copied during the next batch's forward and backward pass, before the optimizer step changes
  // them). The files are byte for byte what a synchronous save writes, with the same atomic
  // protocol; at most one write is in flight (the next save waits for it). ModelCheckpoint links
  // and deletes files only once the new file is committed. A failed write is thrown at the next
  // save, the next batch, or the end of fit; exceptions and signals wait for the write in flight
  // before on_exception callbacks run. Code that changes parameters in place outside the
  // optimizer step must call wait_for_checkpoint_snapshot() first.
  bool async_checkpointing = false;
  // On a CUDA device: after a few eager warm-up steps, the training step (training_step's forward
  // and loss, backward, optimizer step) is captured into a CUDA graph and replayed for every
  // later batch of the same shapes (others run eagerly), with the bits of the eager step. The
  // step must not read values back (item(), a CPU copy), draw random numbers, clip gradients or
  // accumulate them over batches; when it does, or the device is not CUDA, training runs eagerly
  // and one line says why. In a replay, training_step does not run on the host: it is captured
  // once, with what it logs (tensors are logged with each replay's values, plain numbers as at
  // the capture).
  bool cuda_graphs = false;
  // How the fit spreads over processes (train/strategy.h): none runs here alone; dist::ddp() from
  // Ember::distributed trains data-parallel under an MPI launcher, as Lightning's strategy="ddp":
  // every rank starts from rank 0's weights and reads its DistributedSampler share of each epoch
  // (the train loader is rebuilt with `distributed` unless it has it, in a world of one too),
  // gradients are averaged in buckets after each step's backward pass (CUDA buckets start during
  // it, see dist::Overlap), every rank runs the whole validation, only rank 0 logs, prints and
  // writes checkpoints (holding every rank's RNG state), and a signal stops every rank at the
  // same step. An epoch-end checkpoint resumes with another number of ranks (a one-line notice
  // says so); a mid-epoch one only with the same number.
  std::shared_ptr<Strategy> strategy;
  // Lightning's precision: "32-true" (float32, the default), "bf16-mixed" and "16-mixed" (the
  // forward pass and the loss of training, validation, test and predict steps under
  // AutocastGuard(bf16 / f16): matmul, linear and convolutions in half precision with float32
  // accumulation, parameters, gradients and optimizer state in float32), "64-true" (model and
  // floating inputs in float64). "16-mixed" scales the loss with an amp::GradScaler (PyTorch's
  // algorithm and defaults): gradients are unscaled before clipping, a step whose gradients hold
  // an inf or NaN is skipped (its optimizer steps and the step-interval schedulers with them; the
  // global step still counts, as in Lightning) and the scale adapts. Checkpoints hold the
  // precision and the scaler's state ("MixedPrecision", as Lightning's plugin state); resuming
  // in another precision works and says so in one line. "32", "bf16", "16" and "64" are accepted
  // as Lightning's short names.
  std::string precision = "32-true";
};

// Time the training loop spent blocked by checkpoint saves (seconds).
struct CheckpointTimes {
  int64_t saves = 0;           // save_checkpoint() calls that wrote or queued a file
  int64_t async_saves = 0;     // of those, queued for the background writer
  double last_blocked_s = 0;   // the last save: dump + write (sync) or dump + wait + copy (async)
  double max_blocked_s = 0;
  double total_blocked_s = 0;
  double last_wait_s = 0;      // of last_blocked_s: the wait for the previous asynchronous write
  double total_wait_s = 0;
  double last_write_s = 0;     // the background write of the last finished asynchronous save
};

// A logged value as Lightning keeps it: floats are float32 unless logged from an f64 tensor.
struct Metric {
  double value = 0.0;
  bool is_int = false;
};
using Metrics = std::map<std::string, Metric>;

// Loop progress, saved under "loops" (Lightning's fit_loop counters, simplified).
struct FitProgress {
  int64_t epochs_started = 0;     // epochs begun (ready/started)
  int64_t epochs_processed = 0;   // epochs whose batches all ran
  int64_t epochs_completed = 0;   // epochs whose end hooks all ran
  int64_t batches_completed = 0;  // batches done in the current epoch
  int64_t total_batches = 0;      // batches done in all epochs
  int64_t global_step = 0;        // optimizer steps
  int64_t accumulated = 0;        // batches accumulated towards the next step
  Value to_value() const;
  static FitProgress from_value(const Value& v, const std::string& path);
};

class EMBER_API Trainer {
 public:
  explicit Trainer(TrainerOptions options = {});
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Trains. ckpt_path: "" (start fresh; or resume from an OnExceptionCheckpoint file if one
  // exists), a file path, "last" or "best".
  void fit(LightningModule& model, data::DataLoader& train_loader, data::DataLoader* val_loader = nullptr,
           const std::string& ckpt_path = "");
  // Runs validation once; returns the aggregated metrics. ckpt_path loads weights only.
  Metrics validate(LightningModule& model, data::DataLoader& loader, const std::string& ckpt_path = "");
  Metrics test(LightningModule& model, data::DataLoader& loader, const std::string& ckpt_path = "");
  std::vector<Tensor> predict(LightningModule& model, data::DataLoader& loader, const std::string& ckpt_path = "");

  // Writes a checkpoint of the attached model's state (atomic). weights_only leaves out optimizer,
  // scheduler and callback state (such a file loads for inference but cannot resume training).
  // async: queue the write to the background writer (see TrainerOptions::async_checkpointing,
  // the default when not given); the file exists once wait_for_checkpoint() returns. Saves made
  // while an exception is being handled are synchronous.
  void save_checkpoint(const std::string& path, bool weights_only = false, std::optional<bool> async = std::nullopt);
  // Waits for the asynchronous write in flight, runs the actions deferred to its commit
  // (after_checkpoint_commit) and throws its failure. Returns at once when none is in flight.
  void wait_for_checkpoint();
  // Waits until the in-flight save's copy of the parameters and optimizer moments is taken.
  void wait_for_checkpoint_snapshot();
  // Runs fn once the file being written asynchronously is committed (at once when none is in
  // flight); dropped if that write fails. ModelCheckpoint deletes and links files this way.
  void after_checkpoint_commit(std::function<void()> fn);
  // Deletes a checkpoint file that a newer one replaces (ModelCheckpoint's top-k and last): once
  // the asynchronous write in flight is committed, on the background writer (not at all if that
  // write fails), else now. A file that cannot be deleted is a warning, not an error.
  void remove_checkpoint_file(const std::string& path);
  const CheckpointTimes& checkpoint_times() const { return ckpt_times_; }
  // The checkpoint contents save_checkpoint() writes.
  Value dump_checkpoint(bool weights_only = false);

  // --- state for callbacks and loggers ---------------------------------------------------------
  const TrainerOptions& options() const { return opts_; }
  int64_t current_epoch() const;       // Lightning's trainer.current_epoch
  int64_t global_step() const { return progress_.global_step; }
  const FitProgress& progress() const { return progress_; }
  // Both take in the values logged as tensors that are not read yet (see record_tensor_log).
  const Metrics& callback_metrics() const;
  const Metrics& logged_metrics() const;
  const std::string& default_root_dir() const { return opts_.default_root_dir; }
  // This process's rank and the number of ranks (0 and 1 without a strategy).
  int global_rank() const { return opts_.strategy ? opts_.strategy->rank() : 0; }
  int world_size() const { return opts_.strategy ? opts_.strategy->world_size() : 1; }
  bool is_global_zero() const { return global_rank() == 0; }
  // ember_logs/version_N under default_root_dir ("" when the logger is disabled); set at setup.
  const std::string& log_dir() const { return log_dir_; }
  // The fit's logger (nullptr with logger=false): callbacks may write rows of their own through it.
  Logger* logger() const { return logger_.get(); }
  // The checkpoint this fit resumed from ("" if none).
  const std::string& ckpt_path() const { return ckpt_path_; }
  const std::string& stage() const { return stage_; }  // "fit", "validate", "test", "predict", ""
  bool sanity_checking() const { return sanity_checking_; }
  bool validating() const { return validating_; }
  // True once a (non-sanity) validation ran in this fit.
  bool validation_ran() const { return validation_ran_; }
  bool should_stop = false;  // set by callbacks (EarlyStopping) to end fit after this epoch
  int64_t num_training_batches() const { return num_train_batches_; }
  int64_t num_val_batches() const { return num_val_batches_; }
  bool is_last_batch() const { return is_last_batch_; }
  LightningModule* model() const { return model_; }
  const std::vector<std::shared_ptr<Callback>>& callbacks() const { return callbacks_; }
  const OptimizerConfig& optimizer_config() const { return optim_; }
  // precision = "16-mixed": the loss scaler of the last fit (its state is in every checkpoint);
  // nullptr otherwise.
  const amp::GradScaler* grad_scaler() const { return scaler_.get(); }
  // A message line for the user on stderr (warnings, restore notices); printed even with
  // enable_progress_bar=false, without breaking a bar being drawn.
  void print(const std::string& line) const;

 private:
  void setup(LightningModule& model, const std::string& stage);
  void teardown(const std::string& stage);
  std::string resolve_ckpt_path(const std::string& ckpt_path) const;
  void restore(const std::string& path, data::DataLoader& train_loader);
  void run_fit(data::DataLoader& train_loader, data::DataLoader* val_loader);
  void run_train_epoch(data::DataLoader& train_loader, data::DataLoader* val_loader);
  void run_validation(data::DataLoader& loader, int64_t max_batches, bool sanity);
  void optimizer_step();
  void step_schedulers(const std::string& interval, bool plateau);
  void update_epoch_metrics(const std::string& hook_group);
  bool should_validate_at_batch(int64_t batch_idx, bool last_batch) const;
  Metrics run_eval_loop(LightningModule& model, data::DataLoader& loader, const std::string& stage,
                        const std::string& ckpt_path);
  void record_log(const std::string& name, const Metric& value, const LogOptions& opts);
  void apply_log(const std::string& name, const Metric& value, const LogOptions& opts);
  void record_tensor_log(const std::string& name, const Tensor& value, const LogOptions& opts);
  void resolve_logs();
  void flush_step_logs(bool force);
  void check_signals();
  void poll_checkpoint();
  void finish_checkpoint(bool throw_failure);
  Batch to_device(const Batch& batch) const;
  data::DataLoader& distribute_loader(data::DataLoader& loader);
  Tensor run_training_step(LightningModule& model, const Batch& batch, int64_t batch_idx);
  Tensor eager_training_step(LightningModule& model, const Batch& batch, int64_t batch_idx);
  Tensor capture_training_step(LightningModule& model, const Batch& batch, int64_t batch_idx);
  Tensor replay_training_step(const Batch& batch);
  void after_optimizer_step();
  void start_cuda_graphs();
  void stop_cuda_graphs();
  friend class LightningModule;

  TrainerOptions opts_;
  std::vector<std::shared_ptr<Callback>> callbacks_;
  std::shared_ptr<Logger> logger_;
  LightningModule* model_ = nullptr;
  data::DataLoader* train_loader_ = nullptr;
  OptimizerConfig optim_;
  FitProgress progress_;
  Metrics callback_metrics_, logged_metrics_;
  // epoch aggregation: name -> (sum of value * batch size, sum of batch sizes), and how to report it
  struct EpochMeta {
    bool both = false;    // logged with on_step and on_epoch: reported as <name>_epoch
    bool logger = true;
    bool is_int = false;
    std::string group;    // "train" or "val": which epoch end reports it
  };
  std::map<std::string, std::pair<double, double>> epoch_sums_;
  std::map<std::string, EpochMeta> epoch_meta_;
  std::map<std::string, double> pending_step_logs_;
  // Values logged as tensors are not read when logged (on a GPU that would stop the host every
  // step): each is copied (widened to f64, in stream order) and queued with the context it was
  // logged in, and the queue is read in one go and replayed in order when a reader needs the
  // values: the logger's flush, the progress bar, an epoch end, a checkpoint, callback_metrics().
  // Plain-number logs and non-due step flushes made while the queue is not empty are queued too,
  // so that the replay applies everything in the order it happened.
  struct QueuedLog {
    enum Kind : uint8_t { kTensor, kNumber, kStepFlush } kind = kTensor;
    std::string name;
    Tensor value;   // kTensor: the f64 copy
    Metric number;  // kNumber
    bool is_int = false, is_f64 = false;
    LogOptions opts;
    std::string hook, group;
    int64_t batch_size = 1;
  };
  std::vector<QueuedLog> queued_logs_;
  QueuedLog* queue_log(QueuedLog::Kind kind, const std::string& name, const LogOptions& opts);
  std::vector<std::string> saved_this_epoch_;
  std::set<std::string> prog_bar_names_;
  std::string log_dir_, ckpt_path_, stage_, hook_, hook_group_ = "train";
  int64_t current_batch_size_ = 1;
  bool sanity_checking_ = false, validating_ = false, validation_ran_ = false, is_last_batch_ = false;
  int64_t num_train_batches_ = 0, num_val_batches_ = 0;
  int64_t max_epochs_ = 0;
  std::shared_ptr<ProgressBar> bar_;
  std::chrono::steady_clock::time_point epoch_start_;
  int64_t epoch_samples_ = 0;
  // Asynchronous checkpointing: the writer (made on first use), the actions waiting for its
  // in-flight file, and whether an exception is being handled (saves are synchronous then).
  std::unique_ptr<checkpoint::AsyncSaver> saver_;
  std::vector<std::function<void()>> after_commit_;
  bool save_in_flight_ = false;
  bool handling_exception_ = false;
  bool warned_slow_writes_ = false;
  CheckpointTimes ckpt_times_;
  // CUDA graph mode (cuda_graphs), alive during fit on a CUDA device.
  struct GraphMode;
  std::unique_ptr<GraphMode> graphs_;
  // With a strategy: the train loader rebuilt with its DistributedSampler share.
  std::unique_ptr<data::DataLoader> distributed_loader_;
  // precision: "16-mixed"'s loss scaler (during fit), and whether the last optimizer step was
  // skipped for an inf or NaN gradient.
  std::unique_ptr<amp::GradScaler> scaler_;
  bool step_skipped_ = false;
  bool distributed() const { return opts_.strategy && opts_.strategy->world_size() > 1; }
  bool global_zero() const { return !opts_.strategy || opts_.strategy->is_global_zero(); }
};

}  // namespace ember

namespace ember {

// Thrown out of fit() after SIGTERM/SIGINT arrived (checked after each training batch), once the
// callbacks' on_exception ran (OnExceptionCheckpoint saves there). exit_code(): 143 for SIGTERM,
// 130 for SIGINT, as a shell reports them.
class EMBER_API TrainingInterrupted : public Error {
 public:
  explicit TrainingInterrupted(int signal);
  int signal() const { return signal_; }
  int exit_code() const { return 128 + signal_; }

 private:
  int signal_;
};

}  // namespace ember
