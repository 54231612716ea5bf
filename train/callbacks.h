// The built-in callbacks, with PyTorch Lightning's options, defaults, messages and state layout:
// ModelCheckpoint (top-k / last / periodic checkpoints), EarlyStopping, LearningRateMonitor and
// OnExceptionCheckpoint. One deliberate difference from Lightning 2.6: ModelCheckpoint refreshes
// last.ckpt at every save trigger (Lightning 2.5 behaviour), so it always holds the newest state.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/train/callback.h"

namespace ember {

// ModelCheckpoint's save_last: false, true (a full copy named last.ckpt) or "link" (a relative
// symlink to the file this callback saved most recently).
struct EMBER_API SaveLast {
  enum class Kind { Off, Copy, Link };
  SaveLast() = default;
  SaveLast(bool on) : kind(on ? Kind::Copy : Kind::Off) {}  // NOLINT
  // Only "link" is accepted (throws otherwise).
  SaveLast(const char* mode);                                // NOLINT
  SaveLast(const std::string& mode) : SaveLast(mode.c_str()) {}  // NOLINT
  explicit operator bool() const { return kind != Kind::Off; }
  Kind kind = Kind::Off;
};

// Lightning's ModelCheckpoint arguments; an unset optional is Python's None.
struct ModelCheckpointOptions {
  std::optional<std::string> dirpath;           // none or "": resolved at setup (see dirpath())
  std::optional<std::string> filename;          // none or "": "{epoch}-{step}"
  std::optional<std::string> monitor;           // none: no ranking, the latest save wins
  bool verbose = false;
  SaveLast save_last;
  int64_t save_top_k = 1;                       // -1: keep all, 0: no ranked files
  bool save_weights_only = false;
  std::string mode = "min";                     // "min" or "max"
  bool auto_insert_metric_name = true;
  std::optional<int64_t> every_n_train_steps;
  std::optional<std::chrono::duration<double>> train_time_interval;
  std::optional<int64_t> every_n_epochs;
  std::optional<bool> save_on_train_epoch_end;  // none: decided at each epoch end (Lightning's rule)
  bool enable_version_counter = true;
  // Lightning's class constants, overridable per instance.
  std::string checkpoint_name_last = "last";
  int64_t starting_version = 1;
};

// Metrics a checkpoint name is formatted with: int and float Values (float32 values widened to
// double); any other kind is an error.
using NameMetrics = std::map<std::string, Value>;

class EMBER_API ModelCheckpoint : public Callback {
 public:
  // Validates the options with Lightning's messages (mode, save_top_k, triggers, monitor).
  explicit ModelCheckpoint(ModelCheckpointOptions options = {});

  // "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_train_steps': 0,
  // 'every_n_epochs': 1, 'train_time_interval': None}"
  std::string state_key() const override;
  // {monitor, best_model_score, best_model_path, current_score, dirpath, best_k_models {path: score},
  // best_k_models_order [paths] (Ember: the dict's insertion order), kth_best_model_path, kth_value,
  // last_model_path}
  Value state_dict() const override;
  // Restores the ranking when the saved dirpath equals the current one; best_model_path always.
  void load_state_dict(const Value& state) override;
  bool is_checkpoint_callback() const override { return true; }

  // Resolves dirpath; for "fit", warns when it is not empty and resets the per-run bookkeeping.
  void setup(Trainer& trainer, LightningModule& module, const std::string& stage) override;
  // Starts the train_time_interval clock.
  void on_train_start(Trainer& trainer, LightningModule& module) override;
  // every_n_train_steps / train_time_interval saves (deferred to validation end while the monitor is
  // missing, or when validation follows this last batch and saves happen at validation end).
  void on_train_batch_end(Trainer& trainer, LightningModule& module, const Tensor& loss, const Batch& batch,
                          int64_t batch_idx) override;
  // every_n_epochs saves and `last`, when saves happen at train epoch end (Lightning's rule: no
  // validation, or validation exactly once per epoch, unless save_on_train_epoch_end says otherwise).
  void on_train_epoch_end(Trainer& trainer, LightningModule& module) override;
  // Deferred step saves, else every_n_epochs saves and `last`, when saves happen at validation end.
  void on_validation_end(Trainer& trainer, LightningModule& module) override;
  // Writes `last` when save_last is set and this run saved nothing.
  void on_train_end(Trainer& trainer, LightningModule& module) override;

  // --- results and state -------------------------------------------------------------------------
  // The directory checkpoints go to: the given dirpath (made absolute), else set at setup to
  // <log_dir>/checkpoints, or <default_root_dir>/checkpoints when the logger is off.
  const std::string& dirpath() const { return dirpath_; }
  // Best ranked file (monitor set) or the latest save (no monitor); "" before any save.
  const std::string& best_model_path() const { return best_model_path_; }
  std::optional<double> best_model_score() const { return best_model_score_; }
  // Score of the latest ranked save (not restored on resume, as Lightning).
  std::optional<double> current_score() const { return current_score_; }
  // Ranked files and their scores, in insertion order (NaN scores stored as the worst value).
  const std::vector<std::pair<std::string, double>>& best_k_models() const { return best_k_models_; }
  // The ranked file evicted next, and its score (+inf / -inf until k files are ranked).
  const std::string& kth_best_model_path() const { return kth_best_model_path_; }
  double kth_value() const { return kth_value_; }
  // The file `last` was written to most recently ("" if none).
  const std::string& last_model_path() const { return last_model_path_; }
  const ModelCheckpointOptions& options() const { return opts_; }
  const std::optional<std::string>& monitor() const { return opts_.monitor; }
  // Resolved triggers (Lightning: every_n_epochs=1 when no trigger is given, else unset ones are 0).
  int64_t every_n_epochs() const { return every_n_epochs_; }
  int64_t every_n_train_steps() const { return every_n_train_steps_; }

  // --- naming ------------------------------------------------------------------------------------
  // <dirpath>/<filename formatted with metrics>[-v<ver>].ckpt; filename defaults to the option.
  std::string format_checkpoint_name(const NameMetrics& metrics, const std::string& filename = "",
                                     std::optional<int64_t> ver = std::nullopt) const;
  // Lightning's template formatting: every "{name" gains "name=" (auto_insert), missing names are
  // the int 0, then Python str.format. Throws "[ModelCheckpoint] filename template '...': <error>".
  static std::string format_filename(const std::string& templ, const NameMetrics& metrics,
                                     bool auto_insert_metric_name);
  // trainer.callback_metrics() plus "epoch" (logged value cast to int, else current_epoch) and
  // "step" (likewise, else global_step).
  static NameMetrics monitor_candidates(const Trainer& trainer);

  // --- for the trainer's ckpt_path="last" ----------------------------------------------------------
  // Where this callback saves for `trainer` (as setup resolves it), absolute and normalized.
  std::string resolve_dirpath(const Trainer& trainer) const;
  // Files "<checkpoint_name_last>*.ckpt" in resolve_dirpath(trainer) (sorted; none if no directory).
  std::vector<std::string> last_checkpoint_candidates(const Trainer& trainer) const;
  // Files whose name starts with `name_last` and ends in ".ckpt" directly in `dir` (sorted).
  static std::vector<std::string> find_last_checkpoints(const std::string& dir, const std::string& name_last = "last");

 private:
  bool should_skip_saving(const Trainer& trainer) const;
  bool should_save_on_train_epoch_end(const Trainer& trainer) const;
  bool validation_follows_this_batch(const Trainer& trainer) const;
  void save_epoch_end(Trainer& trainer);
  void save_topk(Trainer& trainer, const NameMetrics& metrics);
  void save_monitor(Trainer& trainer, const NameMetrics& metrics);
  void save_none_monitor(Trainer& trainer, const NameMetrics& metrics);
  void update_best_and_save(double current, Trainer& trainer, const NameMetrics& metrics);
  void save_last(Trainer& trainer, const NameMetrics& metrics);
  void save_file(Trainer& trainer, const std::string& path);
  void link_file(Trainer& trainer, const std::string& target, const std::string& link);
  static void make_link(Trainer& trainer, const std::string& target, const std::string& link);
  std::string unique_name(const NameMetrics& metrics, const std::string& filename, const std::string& replaceable) const;
  bool should_remove(const Trainer& trainer, const std::string& previous, const std::string& current) const;
  void remove_file(Trainer& trainer, const std::string& path) const;

  ModelCheckpointOptions opts_;
  int64_t every_n_train_steps_ = 0;
  int64_t every_n_epochs_ = 0;
  std::string dirpath_;

  // checkpointed state (Lightning's names)
  std::optional<double> current_score_, best_model_score_;
  std::vector<std::pair<std::string, double>> best_k_models_;
  std::string kth_best_model_path_, best_model_path_, last_model_path_;
  double kth_value_ = 0.0;

  // per-run bookkeeping
  std::string last_checkpoint_saved_;
  int64_t last_global_step_saved_ = 0;
  std::optional<std::chrono::steady_clock::time_point> last_time_checked_;
  bool defer_save_until_validation_ = false;
  bool saved_this_run_ = false;
  bool warned_missing_monitor_ = false;
  std::string warning_;  // from load_state_dict, printed at on_train_start
};

struct EarlyStoppingOptions {
  std::string monitor;
  double min_delta = 0.0;        // improvements of at most |min_delta| do not count
  int64_t patience = 3;          // checks without improvement before stopping
  bool verbose = false;
  std::string mode = "min";
  bool strict = true;            // a monitor missing from the metrics is an error
  bool check_finite = true;      // stop on NaN / inf
  std::optional<double> stopping_threshold;    // stop once the value is better than this
  std::optional<double> divergence_threshold;  // stop once the value is worse than this
  std::optional<bool> check_on_train_epoch_end;  // none: at train epoch end when validation runs
                                                 // once per epoch, else at validation end
};

// Stops training (trainer.should_stop) when the monitored metric stops improving.
class EMBER_API EarlyStopping : public Callback {
 public:
  // Throws on an empty monitor or a mode other than "min" / "max" (Lightning's message).
  explicit EarlyStopping(EarlyStoppingOptions options);
  // EarlyStopping("val_loss") with the other options at their defaults.
  explicit EarlyStopping(const char* monitor);

  // "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}"
  std::string state_key() const override;
  // {wait_count, stopped_epoch, best_score, patience}
  Value state_dict() const override;
  // Restores all four (patience too, as Lightning).
  void load_state_dict(const Value& state) override;

  // Resolves check_on_train_epoch_end: validation every epoch, once per epoch.
  void setup(Trainer& trainer, LightningModule& module, const std::string& stage) override;
  // The check, when it runs at train epoch end (never during the sanity check or outside fit).
  void on_train_epoch_end(Trainer& trainer, LightningModule& module) override;
  // The check, when it runs at validation end.
  void on_validation_end(Trainer& trainer, LightningModule& module) override;

  // Checks in a row without improvement.
  int64_t wait_count() const { return wait_count_; }
  // current_epoch when a check stopped training (0 if none did).
  int64_t stopped_epoch() const { return stopped_epoch_; }
  // Best value so far (+inf / -inf before the first check).
  double best_score() const { return best_score_; }
  int64_t patience() const { return patience_; }
  // Why the last check stopped training or improved ("" when neither).
  const std::string& last_reason() const { return last_reason_; }
  const EarlyStoppingOptions& options() const { return opts_; }

 private:
  void run_check(Trainer& trainer);
  bool improved(double current, double reference) const;
  std::pair<bool, std::string> evaluate(double current);

  EarlyStoppingOptions opts_;
  double min_delta_ = 0.0;  // signed as Lightning: negative in "min" mode
  int64_t wait_count_ = 0;
  int64_t stopped_epoch_ = 0;
  double best_score_ = 0.0;
  int64_t patience_ = 3;
  bool check_on_train_epoch_end_ = true;
  std::string last_reason_;
};

struct LearningRateMonitorOptions {
  std::optional<std::string> logging_interval;  // "step", "epoch" or none (each scheduler's interval)
  bool log_momentum = false;                    // also "<name>-momentum" (betas[0] or momentum, else 0)
  bool log_weight_decay = false;                // also "<name>-weight_decay"
};

// Logs every optimizer's learning rate as "lr-<Optimizer>" (a scheduler's `name` if set; "-1", "-2"
// for further optimizers of one type; "/pg1", "/pg2" or the group's "name" for several parameter
// groups): at the start of every epoch ("epoch" schedulers: a logger row of its own, labelled with
// the epoch's first step, and a float32 epoch metric in callback_metrics) and of every training
// batch whose logs reach the logger ("step" schedulers: a float64 step metric, through the module's
// log()). Optimizers without a scheduler are logged at both.
class EMBER_API LearningRateMonitor : public Callback {
 public:
  explicit LearningRateMonitor(LearningRateMonitorOptions options = {});

  std::string state_key() const override { return "LearningRateMonitor"; }
  // Throws when the trainer has no logger (as Lightning).
  void on_train_start(Trainer& trainer, LightningModule& module) override;
  void on_train_batch_start(Trainer& trainer, LightningModule& module, const Batch& batch, int64_t batch_idx) override;
  void on_train_epoch_start(Trainer& trainer, LightningModule& module) override;

  // Every learning rate logged so far, by name (step values only every log_every_n_steps steps).
  const std::map<std::string, std::vector<double>>& lrs() const { return lrs_; }
  // The names logged for `trainer`'s optimizers (in Lightning's order).
  std::vector<std::string> names(const Trainer& trainer) const;

 private:
  struct Entry {
    std::string name;
    const optim::Optimizer* optimizer;
    size_t group;
    std::string interval;  // "step", "epoch", or "any" for optimizers without a scheduler
  };
  std::vector<Entry> entries(const Trainer& trainer) const;
  void log_stats(Trainer& trainer, LightningModule& module, const std::string& interval, bool on_step);

  LearningRateMonitorOptions opts_;
  std::map<std::string, std::vector<double>> lrs_;
};

// Writes a full, resumable checkpoint <dirpath>/<filename>.ckpt when an exception (or SIGTERM /
// SIGINT turned into one) leaves fit(); deleted again at the teardown of the next successful fit.
class EMBER_API OnExceptionCheckpoint : public Callback {
 public:
  // Throws on an empty filename ("The filename cannot be empty").
  explicit OnExceptionCheckpoint(std::string dirpath, std::string filename = "on_exception");

  std::string state_key() const override { return "OnExceptionCheckpoint"; }
  bool is_checkpoint_callback() const override { return true; }
  void on_exception(Trainer& trainer, LightningModule& module, const std::exception& error) override;
  void teardown(Trainer& trainer, LightningModule& module, const std::string& stage) override;

  // <dirpath>/<filename>.ckpt (dirpath made absolute at construction).
  const std::string& ckpt_path() const { return ckpt_path_; }
  const std::string& dirpath() const { return dirpath_; }

 private:
  std::string dirpath_, filename_, ckpt_path_;
};

namespace detail {
// Python's repr / str of datetime.timedelta(seconds=s) ("datetime.timedelta(seconds=1800)", "0:30:00").
EMBER_API std::string timedelta_repr(std::chrono::duration<double> d);
EMBER_API std::string timedelta_str(std::chrono::duration<double> d);
}  // namespace detail

}  // namespace ember
