// The Trainer: fit/validate/test/predict loops, logging, checkpoint dump/restore and signals.
// Loop order per training batch: training_step -> backward -> (every accumulate_grad_batches)
// clip, optimizer step, zero_grad, step-interval schedulers -> on_train_batch_end hooks (step
// checkpoints) -> logging -> signal check -> mid-epoch validation. At epoch end: epoch-interval
// schedulers -> validation -> ReduceLROnPlateau -> on_train_epoch_end hooks (epoch checkpoints)
// -> epoch counted complete. ReduceLROnPlateau steps before the epoch-end checkpoints (Lightning
// steps it after them and loses that update on resume).
#include "ember/train/trainer.h"

#include <atomic>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <map>
#include <sstream>

#include "ember/checkpoint/async_saver.h"
#include "ember/checkpoint/checkpoint.h"
#include "ember/nn/normalization.h"
#include "ember/runtime/autocast.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/cuda_graph.h"
#include "ember/runtime/device_checks.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "ember/train/callbacks.h"
#include "ember/train/grad_scaler.h"
#include "ember/train/logger.h"
#include "ember/train/module_io.h"
#include "ember/train/progress.h"

namespace ember {

namespace fs = std::filesystem;

namespace {

// Lightning's precision names, its short names mapped to them.
std::string canonical_precision(const std::string& p) {
  if (p == "32-true" || p == "32") return "32-true";
  if (p == "bf16-mixed" || p == "bf16") return "bf16-mixed";
  if (p == "16-mixed" || p == "16") return "16-mixed";
  if (p == "64-true" || p == "64") return "64-true";
  EMBER_THROW("[Trainer] precision='", p, "' is not supported: expected '32-true', 'bf16-mixed', '16-mixed' or "
              "'64-true' (or 32, bf16, 16, 64)");
}

// The autocast scope of a step's forward pass and loss under the mixed precisions (nothing in
// the others).
class PrecisionScope {
 public:
  explicit PrecisionScope(const std::string& precision) {
    if (precision == "bf16-mixed") guard_.emplace(DType::bf16);
    else if (precision == "16-mixed") guard_.emplace(DType::f16);
  }

 private:
  std::optional<AutocastGuard> guard_;
};

// The model on the Trainer's device, in float64 under "64-true".
void place_model(LightningModule& model, const TrainerOptions& o) {
  model.to(o.device);
  if (o.precision == "64-true") model.to(DType::f64);
}

// Checkpoint keys of the precision: the name it was written in, and the gradient scaler's state
// under Lightning's key for its mixed-precision plugin.
constexpr const char* kPrecisionKey = "precision";
constexpr const char* kMixedPrecisionKey = "MixedPrecision";

// The floating tensors of `v` of dtype `from`, converted to `to` (a checkpoint written in
// "64-true" restored in another precision, or the other way round).
void cast_tensors(Value& v, DType from, DType to) {
  if (v.is_tensor()) {
    if (v.as_tensor().dtype() == from) v = Value(v.as_tensor().to(to));
  } else if (v.is_map()) {
    for (auto& [k, child] : v.as_map()) cast_tensors(child, from, to);
  } else if (v.is_list()) {
    for (auto& child : v.as_list()) cast_tensors(child, from, to);
  }
}

}  // namespace

// --- small pieces ---------------------------------------------------------------------------------

TrainingInterrupted::TrainingInterrupted(int sig)
    : Error(str_cat("[Trainer] interrupted by ", sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "a signal",
                    " (signal ", sig, ")")),
      signal_(sig) {}

int64_t BatchLimit::resolve(int64_t available, const char* option) const {
  if (is_count) {
    EMBER_CHECK(count >= 0, "[Trainer] ", option, "=", count, " must be >= 0");
    return std::min(count, available);
  }
  EMBER_CHECK(fraction >= 0.0 && fraction <= 1.0, "[Trainer] ", option, "=", fraction,
              " must be a fraction in [0.0, 1.0] (or an int count of batches)");
  return static_cast<int64_t>(std::floor(static_cast<double>(available) * fraction));
}

Value FitProgress::to_value() const {
  ValueMap m;
  m["epochs_started"] = epochs_started;
  m["epochs_processed"] = epochs_processed;
  m["epochs_completed"] = epochs_completed;
  m["batches_completed"] = batches_completed;
  m["total_batches"] = total_batches;
  m["global_step"] = global_step;
  m["accumulated"] = accumulated;
  return Value(std::move(m));
}

FitProgress FitProgress::from_value(const Value& v, const std::string& path) {
  FitProgress p;
  auto get = [&](const char* key) -> int64_t {
    EMBER_CHECK(v.is_map() && v.contains(key), "[Trainer] ", path, ": loops.fit_loop has no '", key, "'");
    const Value& x = v.at(key);
    EMBER_CHECK(x.is_int() && x.as_int() >= 0, "[Trainer] ", path, ": loops.fit_loop.", key,
                " must be a non-negative int, got ", x.repr());
    return x.as_int();
  };
  p.epochs_started = get("epochs_started");
  p.epochs_processed = get("epochs_processed");
  p.epochs_completed = get("epochs_completed");
  p.batches_completed = get("batches_completed");
  p.total_batches = get("total_batches");
  p.global_step = get("global_step");
  p.accumulated = get("accumulated");
  return p;
}

namespace {

std::atomic<int> g_signal{0};

extern "C" void ember_trainer_signal_handler(int sig) { g_signal.store(sig); }

// Installs SIGTERM/SIGINT handlers for the duration of fit(); restores the previous ones.
class SignalScope {
 public:
  SignalScope() {
    g_signal.store(0);
    struct sigaction sa {};
    sa.sa_handler = ember_trainer_signal_handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, &old_term_);
    sigaction(SIGINT, &sa, &old_int_);
  }
  ~SignalScope() {
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGINT, &old_int_, nullptr);
  }

 private:
  struct sigaction old_term_ {}, old_int_ {};
};

bool is_step_hook(const std::string& hook) {
  return hook == "training_step" || hook == "on_train_batch_start" || hook == "on_train_batch_end";
}

std::string fmt_metric(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

int64_t batch_size_of(const Batch& b) {
  if (b.empty() || !b[0].defined() || b[0].dim() == 0) return 1;
  return b[0].size(0);
}

}  // namespace

// --- construction ---------------------------------------------------------------------------------

Trainer::Trainer(TrainerOptions options) : opts_(std::move(options)) {
  EMBER_CHECK(!opts_.max_epochs || *opts_.max_epochs >= -1, "[Trainer] max_epochs=", opts_.max_epochs.value_or(0),
              " must be >= -1");
  EMBER_CHECK(opts_.max_steps >= -1, "[Trainer] max_steps=", opts_.max_steps, " must be >= -1");
  EMBER_CHECK(opts_.accumulate_grad_batches >= 1, "[Trainer] accumulate_grad_batches=", opts_.accumulate_grad_batches,
              " must be >= 1");
  EMBER_CHECK(opts_.check_val_every_n_epoch >= 0, "[Trainer] check_val_every_n_epoch=", opts_.check_val_every_n_epoch,
              " must be >= 0");
  EMBER_CHECK(opts_.num_sanity_val_steps >= -1, "[Trainer] num_sanity_val_steps=", opts_.num_sanity_val_steps,
              " must be >= -1");
  EMBER_CHECK(opts_.log_every_n_steps >= 0, "[Trainer] log_every_n_steps=", opts_.log_every_n_steps, " must be >= 0");
  EMBER_CHECK(opts_.gradient_clip_algorithm == "norm" || opts_.gradient_clip_algorithm == "value",
              "[Trainer] gradient_clip_algorithm='", opts_.gradient_clip_algorithm, "' must be 'norm' or 'value'");
  EMBER_CHECK(!opts_.gradient_clip_val || *opts_.gradient_clip_val >= 0.0, "[Trainer] gradient_clip_val must be >= 0");
  opts_.precision = canonical_precision(opts_.precision);
  EMBER_CHECK(opts_.val_check_interval.is_count ? opts_.val_check_interval.count >= 1
                                                 : opts_.val_check_interval.fraction > 0.0 &&
                                                       opts_.val_check_interval.fraction <= 1.0,
              "[Trainer] val_check_interval must be an int >= 1 or a fraction in (0.0, 1.0]");
  callbacks_ = opts_.callbacks;
  bool has_model_checkpoint = false;
  for (auto& cb : callbacks_) {
    EMBER_CHECK(cb != nullptr, "[Trainer] callbacks contains a null pointer");
    if (dynamic_cast<ModelCheckpoint*>(cb.get())) has_model_checkpoint = true;
  }
  if (!opts_.enable_checkpointing) {
    EMBER_CHECK(!has_model_checkpoint, "[Trainer] Trainer was configured with enable_checkpointing=false but found a "
                                       "ModelCheckpoint in the callbacks list");
  } else if (!has_model_checkpoint) {
    // Unlike Lightning, an OnExceptionCheckpoint does not switch the automatic checkpoint off.
    callbacks_.push_back(std::make_shared<ModelCheckpoint>());
  }
  if (opts_.strategy && !opts_.strategy->is_global_zero()) {
    // Only rank 0 logs and draws progress (Lightning's rank-zero-only output).
    opts_.logger = false;
    opts_.enable_progress_bar = false;
  }
  bar_ = std::make_shared<ProgressBar>(opts_.enable_progress_bar);
}

// The CUDA graph of the training step, its private stream and what its replays need: the static
// batch it reads, the loss it writes, the gradients it writes (the optimizer's step() sees them
// during an update), and what training_step logged and checked during the capture.
struct Trainer::GraphMode {
  std::unique_ptr<CudaStream> stream;
  std::unique_ptr<CudaStreamGuard> on_stream;
  int64_t warm_steps = 0;
  bool enabled = true;
  CudaGraph graph;
  Batch static_batch;
  Tensor static_loss;
  std::vector<std::pair<Tensor, Tensor>> grads;
  std::vector<QueuedLog> logs;
  CapturedDeviceChecks checks;
};

Trainer::~Trainer() {
  // A write still in flight (a save_checkpoint() outside fit never waited for) is finished here;
  // its failure can only be printed.
  try {
    finish_checkpoint(false);
  } catch (const std::exception& e) {
    print(std::string("[Trainer] ") + e.what());
  }
}

int64_t Trainer::current_epoch() const { return progress_.epochs_completed; }

Batch Trainer::to_device(const Batch& batch) const {
  const bool f64 = opts_.precision == "64-true";
  if (opts_.device.is_cpu() && !f64) return batch;
  Batch out;
  out.reserve(batch.size());
  for (const Tensor& t : batch) {
    Tensor m = t.defined() && !opts_.device.is_cpu() ? t.to(opts_.device, /*non_blocking=*/true) : t;
    // "64-true": floating inputs in float64, as Lightning's precision plugin converts them
    if (f64 && m.defined() && is_floating(m.dtype()) && m.dtype() != DType::f64) m = m.to(DType::f64);
    out.push_back(std::move(m));
  }
  return out;
}

void Trainer::print(const std::string& line) const {
  if (global_zero()) bar_->message(line);
}

// --- logging --------------------------------------------------------------------------------------

const Metrics& Trainer::callback_metrics() const {
  // Reading queued tensor logs changes no observable state but the metrics they feed.
  if (!queued_logs_.empty()) const_cast<Trainer*>(this)->resolve_logs();
  return callback_metrics_;
}

const Metrics& Trainer::logged_metrics() const {
  if (!queued_logs_.empty()) const_cast<Trainer*>(this)->resolve_logs();
  return logged_metrics_;
}

namespace {
// More queued logs than this are read at once: a bound on the memory a long stretch without a
// reader (no logger, no progress bar) holds, at one read per this many logs.
constexpr size_t kMaxQueuedLogs = 1024;
}  // namespace

void Trainer::record_tensor_log(const std::string& name, const Tensor& value, const LogOptions& opts) {
  if (opts.sync_dist && distributed() && !sanity_checking_) {
    // The mean over ranks is a collective: read now, logged as a number.
    const bool is_int = !is_floating(value.dtype());
    double v = value.detach().item_double();
    if (value.dtype() != DType::f64 && !is_int) v = static_cast<double>(static_cast<float>(v));
    return record_log(name, Metric{v, is_int}, opts);
  }
  Tensor copy;  // made first: an entry is queued only with its value
  {
    NoGradGuard ng;
    const Tensor v = value.detach().reshape({1});
    // a copy, so that changing the tensor after log() does not change what was logged
    copy = v.dtype() == DType::f64 ? v.clone() : v.to(DType::f64);
  }
  QueuedLog* q = queue_log(QueuedLog::kTensor, name, opts);
  if (!q) return;
  q->value = std::move(copy);
  q->is_int = !is_floating(value.dtype());
  q->is_f64 = value.dtype() == DType::f64;
  if (queued_logs_.size() >= kMaxQueuedLogs) resolve_logs();
}

void Trainer::record_log(const std::string& name, const Metric& value, const LogOptions& opts) {
  Metric m = value;
  if (opts.sync_dist && distributed() && !sanity_checking_) {
    m.value = opts_.strategy->mean(m.value);
    if (!m.is_int) m.value = static_cast<double>(static_cast<float>(m.value));
  }
  if (queued_logs_.empty()) return apply_log(name, m, opts);
  if (QueuedLog* q = queue_log(QueuedLog::kNumber, name, opts)) q->number = m;
}

// Checks the options as apply_log will, and queues an entry with the context it is logged in
// (nullptr during the sanity check, which logs nothing).
Trainer::QueuedLog* Trainer::queue_log(QueuedLog::Kind kind, const std::string& name, const LogOptions& opts) {
  const bool step_hook = is_step_hook(hook_);
  EMBER_CHECK(opts.on_step.value_or(step_hook) || opts.on_epoch.value_or(!step_hook), "[log] '", name,
              "' has on_step=false and on_epoch=false: it would never be logged");
  if (sanity_checking_) return nullptr;
  QueuedLog& q = queued_logs_.emplace_back();
  q.kind = kind;
  q.name = name;
  q.opts = opts;
  q.hook = hook_;
  q.group = hook_group_;
  q.batch_size = current_batch_size_;
  return &q;
}

void Trainer::resolve_logs() {
  if (queued_logs_.empty()) return;
  std::vector<QueuedLog> queue;
  queue.swap(queued_logs_);
  // Every queued tensor of one device is read with one copy to the host.
  std::vector<double> values(queue.size(), 0.0);
  std::map<std::pair<int, int>, std::vector<size_t>> by_device;
  for (size_t i = 0; i < queue.size(); ++i)
    if (queue[i].kind == QueuedLog::kTensor) {
      const Device d = queue[i].value.device();
      by_device[{static_cast<int>(d.type), d.index}].push_back(i);
    }
  for (auto& [dev, idx] : by_device) {
    Tensor host;
    if (idx.size() == 1) {
      host = queue[idx[0]].value.to(kCPU);
    } else {
      std::vector<Tensor> parts;
      parts.reserve(idx.size());
      for (size_t i : idx) parts.push_back(queue[i].value);
      host = cat(parts, 0).to(kCPU);
    }
    const double* p = host.data_ptr<double>();
    for (size_t j = 0; j < idx.size(); ++j) values[idx[j]] = p[j];
  }
  const std::string saved_hook = hook_, saved_group = hook_group_;
  const int64_t saved_batch = current_batch_size_;
  const bool saved_sanity = sanity_checking_;
  sanity_checking_ = false;  // what the sanity check logged was never queued
  for (size_t i = 0; i < queue.size(); ++i) {
    const QueuedLog& q = queue[i];
    if (q.kind == QueuedLog::kStepFlush) {
      for (auto& [k, v] : pending_step_logs_) logged_metrics_[k] = Metric{v, false};
      pending_step_logs_.clear();
      continue;
    }
    Metric m = q.number;
    if (q.kind == QueuedLog::kTensor) {
      double v = values[i];
      if (!q.is_f64 && !q.is_int) v = static_cast<double>(static_cast<float>(v));  // Lightning's float32
      m = Metric{v, q.is_int};
    }
    hook_ = q.hook;
    hook_group_ = q.group;
    current_batch_size_ = q.batch_size;
    apply_log(q.name, m, q.opts);
  }
  hook_ = saved_hook;
  hook_group_ = saved_group;
  current_batch_size_ = saved_batch;
  sanity_checking_ = saved_sanity;
}

void Trainer::apply_log(const std::string& name, const Metric& m, const LogOptions& opts) {
  bool step_hook = is_step_hook(hook_);
  bool on_step = opts.on_step.value_or(step_hook);
  bool on_epoch = opts.on_epoch.value_or(!step_hook);
  EMBER_CHECK(on_step || on_epoch, "[log] '", name, "' has on_step=false and on_epoch=false: it would never be logged");
  if (sanity_checking_) return;
  if (opts.prog_bar) prog_bar_names_.insert(name);
  bool both = on_step && on_epoch;
  if (on_step) {
    callback_metrics_[name] = m;
    if (both) callback_metrics_[name + "_step"] = m;
    if (opts.logger && step_hook) pending_step_logs_[both ? name + "_step" : name] = m.value;
  }
  if (on_epoch) {
    auto& acc = epoch_sums_[name];
    double w = static_cast<double>(current_batch_size_);
    acc.first += m.value * w;
    acc.second += w;
    epoch_meta_[name] = EpochMeta{both, opts.logger, m.is_int, hook_group_};
    if (!step_hook && !on_step) {
      // logged outside training batches (validation, epoch hooks): visible at once as the running mean
      callback_metrics_[name] = Metric{static_cast<double>(static_cast<float>(acc.first / acc.second)), m.is_int};
    }
  }
}

// Turns epoch accumulators of one hook group ("train" or "val") into metrics.
void Trainer::update_epoch_metrics(const std::string& group) {
  resolve_logs();
  std::map<std::string, double> to_log;
  for (auto it = epoch_sums_.begin(); it != epoch_sums_.end();) {
    auto meta = epoch_meta_.find(it->first);
    if (meta == epoch_meta_.end() || meta->second.group != group) {
      ++it;
      continue;
    }
    double v = it->second.second > 0 ? it->second.first / it->second.second : 0.0;
    Metric m{meta->second.is_int ? v : static_cast<double>(static_cast<float>(v)), false};
    callback_metrics_[it->first] = m;
    std::string key = meta->second.both ? it->first + "_epoch" : it->first;
    if (meta->second.both) callback_metrics_[key] = m;
    logged_metrics_[key] = m;
    if (meta->second.logger) to_log[key] = m.value;
    epoch_meta_.erase(meta);
    it = epoch_sums_.erase(it);
  }
  if (!to_log.empty() && logger_ && !sanity_checking_) {
    to_log["epoch"] = static_cast<double>(current_epoch());
    logger_->log_metrics(to_log, progress_.global_step);
  }
}

void Trainer::flush_step_logs(bool force) {
  const bool due = force || (opts_.log_every_n_steps > 0 && progress_.global_step % opts_.log_every_n_steps == 0);
  if (!queued_logs_.empty()) {
    if (!due || !logger_) {
      // Nothing is written now: this flush only moves the step's values into logged_metrics, so
      // it waits in the queue, in order, for the next reader.
      QueuedLog q;
      q.kind = QueuedLog::kStepFlush;
      queued_logs_.push_back(std::move(q));
      if (queued_logs_.size() >= kMaxQueuedLogs) resolve_logs();
      return;
    }
    resolve_logs();
  }
  if (pending_step_logs_.empty()) return;
  for (auto& [k, v] : pending_step_logs_) logged_metrics_[k] = Metric{v, false};
  if (logger_ && due) {
    auto row = pending_step_logs_;
    row["epoch"] = static_cast<double>(current_epoch());
    logger_->log_metrics(row, progress_.global_step);
  }
  pending_step_logs_.clear();
}

// --- setup / teardown -----------------------------------------------------------------------------

void Trainer::setup(LightningModule& model, const std::string& stage) {
  model_ = &model;
  model.attach(this);
  stage_ = stage;
  should_stop = false;
  callback_metrics_.clear();
  logged_metrics_.clear();
  epoch_sums_.clear();
  epoch_meta_.clear();
  pending_step_logs_.clear();
  queued_logs_.clear();
  validation_ran_ = false;
  if (stage == "fit") {
    if (opts_.logger) {
      // its directory appears with the hyperparameters, once fit() has restored its checkpoint
      logger_ = std::make_shared<CSVLogger>(opts_.default_root_dir);
      log_dir_ = logger_->log_dir();
    } else {
      logger_.reset();
      log_dir_.clear();
    }
  }
  for (auto& cb : callbacks_) cb->setup(*this, model, stage);
}

void Trainer::teardown(const std::string& stage) {
  resolve_logs();
  for (auto& cb : callbacks_) cb->teardown(*this, *model_, stage);
  if (logger_) logger_->flush();
  stage_.clear();
}

// --- checkpoints ----------------------------------------------------------------------------------

namespace {

// The module_tree section for a LightningModule: the tree of its inference_module() when it has
// one (checked to hold exactly the module's own state_dict tensors, so the file's weights fit the
// tree), else its own tree (usually an unregistered root with registered children, which
// nn::load_module(path, "<child>") rebuilds from the file alone).
Value module_tree_of(const LightningModule& model) {
  std::shared_ptr<const nn::Module> inference = model.inference_module();
  if (!inference) return nn::module_tree_section(model);
  const nn::StateDict own = model.state_dict(), other = inference->state_dict();
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : other) by_name.emplace(name, &t);
  auto fail = [&](const std::string& why) {
    EMBER_THROW("[Trainer.save_checkpoint] ", model.type_name(), "::inference_module() returned a ",
                inference->type_name(), " whose state_dict ", why,
                ": it must hold exactly the module's own parameters and buffers under the same names");
  };
  if (own.size() != other.size())
    fail(str_cat("has ", other.size(), " entries where the module has ", own.size()));
  for (const auto& [name, t] : own) {
    auto it = by_name.find(name);
    if (it == by_name.end()) fail("lacks '" + name + "'");
    if (it->second->data_ptr() != t.data_ptr() || it->second->shape() != t.shape())
      fail("holds another tensor under '" + name + "'");
  }
  return nn::module_tree_section(*inference);
}

}  // namespace

Value Trainer::dump_checkpoint(bool weights_only) {
  EMBER_CHECK(model_ != nullptr, "[Trainer.save_checkpoint] saving a checkpoint is only possible if a model is attached "
                                 "to the Trainer (call fit/validate/test first)");
  resolve_logs();
  ValueMap root;
  root[checkpoint::kEpoch] = current_epoch();
  root[checkpoint::kGlobalStep] = progress_.global_step;
  root[checkpoint::kStateDict] = model_->state_dict_value();
  root[checkpoint::kHyperParameters] = Value(model_->hparams().values());
  root[checkpoint::kModuleTree] = module_tree_of(*model_);
  ValueMap loops;
  loops["fit_loop"] = progress_.to_value();
  if (train_loader_) loops["train_dataloader"] = train_loader_->state_dict();
  ValueMap sums;
  for (auto& [k, v] : epoch_sums_) {
    const EpochMeta& m = epoch_meta_.at(k);
    sums[k] = Value(ValueMap{{"sum", v.first}, {"weight", v.second}, {"both", m.both}, {"logger", m.logger},
                             {"is_int", m.is_int}, {"group", m.group}});
  }
  loops["epoch_accumulators"] = Value(std::move(sums));
  ValueMap cm;
  for (auto& [k, m] : callback_metrics_) cm[k] = Value(ValueMap{{"value", m.value}, {"is_int", m.is_int}});
  loops["callback_metrics"] = Value(std::move(cm));
  root[checkpoint::kLoops] = Value(std::move(loops));
  ValueMap rng;
  rng["default"] = Bytes{default_generator().get_state()};
  root[checkpoint::kRngStates] = Value(std::move(rng));
  root[kPrecisionKey] = opts_.precision;
  if (scaler_ && !weights_only) root[kMixedPrecisionKey] = scaler_->state_dict();
  if (!weights_only) {
    ValueList opt_states, sched_states;
    for (auto& o : optim_.optimizers) opt_states.push_back(o->state_dict());
    for (auto& s : optim_.schedulers) sched_states.push_back(s.plateau ? s.plateau->state_dict() : s.scheduler->state_dict());
    root[checkpoint::kOptimizerStates] = Value(std::move(opt_states));
    root[checkpoint::kLrSchedulers] = Value(std::move(sched_states));
    ValueMap cbs;
    for (auto& cb : callbacks_) {
      Value st = cb->state_dict();
      if (!st.is_null()) cbs[cb->state_key()] = st;
    }
    root[checkpoint::kCallbacks] = Value(std::move(cbs));
  }
  Value extras;
  model_->on_save_checkpoint(extras);
  if (!extras.is_null()) root[checkpoint::kExtras] = extras;
  Value out(std::move(root));
  if (!weights_only)
    for (auto& cb : callbacks_) cb->on_save_checkpoint(*this, *model_, out);
  return out;
}

namespace {

void collect_tensor_data(const Value& v, std::vector<const void*>& out) {
  if (v.is_tensor()) {
    if (v.as_tensor().defined()) out.push_back(v.as_tensor().data_ptr());
  } else if (v.is_list()) {
    for (const Value& item : v.as_list()) collect_tensor_data(item, out);
  } else if (v.is_map()) {
    for (const auto& [k, item] : v.as_map()) collect_tensor_data(item, out);
  }
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void Trainer::save_checkpoint(const std::string& path, bool weights_only, std::optional<bool> async) {
  // Only rank 0 writes (every rank holds the same weights, optimizer state, loop position and
  // generator state); the others meet it at the next gradient all-reduce or the end of fit.
  if (!global_zero()) return;
  const auto t0 = std::chrono::steady_clock::now();
  const bool use_async = async.value_or(opts_.async_checkpointing) && !handling_exception_;
  // One write in flight: the previous one is committed (and its deferred deletions and links done)
  // before this one starts, in the order a synchronous save would have them.
  finish_checkpoint(true);
  const double waited = seconds_since(t0);
  if (waited > 1.0 && !warned_slow_writes_) {
    warned_slow_writes_ = true;
    print(str_cat("[Trainer] waited ", static_cast<int64_t>(waited * 1000),
                  " ms for the previous checkpoint to be written before saving ", path,
                  ": checkpoints come faster than the disk writes them (save less often, or to a faster disk)"));
  }
  Value root = dump_checkpoint(weights_only);
  fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    EMBER_CHECK(!ec, "[Trainer.save_checkpoint] cannot create directory '", parent.string(), "': ", ec.message());
  }
  checkpoint::SaveOptions so;
  so.weights_only = weights_only;
  if (use_async) {
    if (!saver_) saver_ = std::make_unique<checkpoint::AsyncSaver>();
    // Inside fit, the parameters and optimizer moments change only at the optimizer step, which
    // waits for the snapshot: the background thread may copy them. Elsewhere everything is copied
    // before this returns.
    std::vector<const void*> later;
    if (stage_ == "fit") {
      for (const Tensor& p : model_->parameters())
        if (p.defined()) later.push_back(p.data_ptr());
      if (root.contains(checkpoint::kOptimizerStates)) collect_tensor_data(root.at(checkpoint::kOptimizerStates), later);
    }
    saver_->save(path, root, so, later);
    save_in_flight_ = true;
    ckpt_times_.async_saves++;
  } else {
    checkpoint::save(path, root, so);
  }
  double blocked = seconds_since(t0);
  ckpt_times_.saves++;
  ckpt_times_.last_wait_s = waited;
  ckpt_times_.total_wait_s += waited;
  ckpt_times_.last_blocked_s = blocked;
  ckpt_times_.max_blocked_s = std::max(ckpt_times_.max_blocked_s, blocked);
  ckpt_times_.total_blocked_s += blocked;
  saved_this_epoch_.push_back(path);
}

void Trainer::wait_for_checkpoint_snapshot() {
  if (!save_in_flight_) return;
  const auto t0 = std::chrono::steady_clock::now();
  saver_->wait_for_snapshot();
  double waited = seconds_since(t0);
  ckpt_times_.last_blocked_s += waited;
  ckpt_times_.total_blocked_s += waited;
  ckpt_times_.max_blocked_s = std::max(ckpt_times_.max_blocked_s, ckpt_times_.last_blocked_s);
}

void Trainer::wait_for_checkpoint() { finish_checkpoint(true); }

void Trainer::after_checkpoint_commit(std::function<void()> fn) {
  if (save_in_flight_) after_commit_.push_back(std::move(fn));
  else fn();
}

void Trainer::remove_checkpoint_file(const std::string& path) {
  if (!global_zero()) return;
  if (save_in_flight_) {
    saver_->remove_after_commit(path);
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::error_code ec;
  fs::remove(path, ec);
  if (ec) print("[ModelCheckpoint] warning: cannot remove " + path + ": " + ec.message());
  // Dropping a large file's cached pages takes a while: the loop is blocked for it.
  double t = seconds_since(t0);
  ckpt_times_.last_blocked_s += t;
  ckpt_times_.total_blocked_s += t;
  ckpt_times_.max_blocked_s = std::max(ckpt_times_.max_blocked_s, ckpt_times_.last_blocked_s);
}

void Trainer::poll_checkpoint() {
  if (save_in_flight_ && !saver_->busy()) finish_checkpoint(true);
}

void Trainer::finish_checkpoint(bool throw_failure) {
  if (!save_in_flight_) return;
  wait_for_checkpoint_snapshot();
  save_in_flight_ = false;
  std::vector<std::function<void()>> actions = std::move(after_commit_);
  after_commit_.clear();
  try {
    saver_->wait();
  } catch (const std::exception& e) {
    // The file it was to replace, and the files the deferred actions would have deleted, stay.
    std::string msg = str_cat("[Trainer] the asynchronous checkpoint save to '", saver_->current_path(),
                              "' failed: ", e.what());
    if (throw_failure) throw Error(msg);
    print(msg);
    return;
  }
  ckpt_times_.last_write_s = saver_->stats().last_write_s;
  for (const std::string& w : saver_->take_warnings()) print("[ModelCheckpoint] warning: " + w);
  const auto t0 = std::chrono::steady_clock::now();
  for (auto& fn : actions) fn();
  double t = seconds_since(t0);  // links made now that the file exists
  ckpt_times_.last_blocked_s += t;
  ckpt_times_.total_blocked_s += t;
}

std::string Trainer::resolve_ckpt_path(const std::string& ckpt_path) const {
  auto exception_files = [&] {
    std::vector<std::string> out;
    for (auto& cb : callbacks_)
      if (auto* oe = dynamic_cast<OnExceptionCheckpoint*>(cb.get()))
        if (fs::exists(oe->ckpt_path())) out.push_back(oe->ckpt_path());
    return out;
  };
  if (ckpt_path.empty()) {
    // As Lightning: with an OnExceptionCheckpoint, a file it left behind is resumed automatically.
    auto files = exception_files();
    return files.empty() ? std::string() : files.front();
  }
  if (ckpt_path == "best") {
    for (auto& cb : callbacks_)
      if (auto* mc = dynamic_cast<ModelCheckpoint*>(cb.get())) {
        EMBER_CHECK(!mc->best_model_path().empty(), "[Trainer.fit] ckpt_path=\"best\" is set but the ModelCheckpoint has "
                                                    "no best checkpoint yet");
        return mc->best_model_path();
      }
    EMBER_THROW("[Trainer.fit] ckpt_path=\"best\" is set but no ModelCheckpoint is configured");
  }
  if (ckpt_path == "last") {
    std::vector<std::string> candidates = exception_files();
    for (auto& cb : callbacks_)
      if (auto* mc = dynamic_cast<ModelCheckpoint*>(cb.get())) {
        for (auto& c : mc->last_checkpoint_candidates(*this)) candidates.push_back(c);
      }
    std::string best;
    fs::file_time_type best_t{};
    for (auto& c : candidates) {
      std::error_code ec;
      auto t = fs::last_write_time(c, ec);
      if (ec) continue;
      if (best.empty() || t > best_t) {
        best = c;
        best_t = t;
      }
    }
    if (best.empty())
      print("[Trainer.fit] ckpt_path=\"last\" is set, but there is no last checkpoint available; training from scratch. "
            "HINT: use ModelCheckpoint(save_last=true) or the same default_root_dir and ckpt dir");
    return best;
  }
  EMBER_CHECK(fs::exists(ckpt_path), "[Trainer.fit] checkpoint file not found: ", ckpt_path);
  return ckpt_path;
}

void Trainer::restore(const std::string& path, data::DataLoader& train_loader) {
  checkpoint::Reader reader(path);
  EMBER_CHECK(!reader.weights_only(), "[Trainer.fit] ", path,
              " is a weights-only checkpoint: it holds no optimizer, scheduler or callback state and cannot resume "
              "training (load it with load_from_checkpoint for inference, or resume from a full checkpoint)");
  Value ck = checkpoint::load(path);
  for (const char* key : {checkpoint::kStateDict, checkpoint::kLoops, checkpoint::kOptimizerStates,
                          checkpoint::kLrSchedulers})
    EMBER_CHECK(ck.contains(key), "[Trainer.fit] ", path, " has no '", key, "' section; it cannot resume training");
  // Precision: resuming in another one than the file's works and says so in one line. Between
  // "64-true" and the others the weights and optimizer moments change dtype; a gradient scaler
  // starts from its defaults when the file has no state for it (written without "16-mixed").
  std::string saved_precision = "32-true";
  if (ck.contains(kPrecisionKey)) {
    const Value& p = ck.at(kPrecisionKey);
    EMBER_CHECK(p.is_string(), "[Trainer.fit] ", path, ": '", kPrecisionKey, "' is ", Value::kind_name(p.kind()),
                ", expected string");
    try {
      saved_precision = canonical_precision(p.as_string());
    } catch (const Error&) {
      EMBER_THROW("[Trainer.fit] ", path, ": '", kPrecisionKey, "' is '", p.as_string(),
                  "', expected '32-true', 'bf16-mixed', '16-mixed' or '64-true'");
    }
  }
  const bool scaler_state = ck.contains(kMixedPrecisionKey);
  if (saved_precision != opts_.precision) {
    const bool f64_then = saved_precision == "64-true", f64_now = opts_.precision == "64-true";
    if (f64_then != f64_now) {
      const DType from = f64_then ? DType::f64 : DType::f32, to = f64_then ? DType::f32 : DType::f64;
      cast_tensors(ck[checkpoint::kStateDict], from, to);
      cast_tensors(ck[checkpoint::kOptimizerStates], from, to);
    }
    print(str_cat("[Trainer] ", path, " was written in precision '", saved_precision, "'; resuming in '",
                  opts_.precision, "'", scaler_ && !scaler_state ? " (the gradient scaler starts from its defaults)" : ""));
  } else if (scaler_ && !scaler_state) {
    print(str_cat("[Trainer] ", path, " holds no gradient scaler state; the scaler starts from its defaults"));
  }
  if (scaler_ && scaler_state) scaler_->load_state_dict(ck.at(kMixedPrecisionKey));
  model_->on_load_checkpoint(ck.contains(checkpoint::kExtras) ? ck.at(checkpoint::kExtras) : Value());
  model_->load_state_dict(ck.at(checkpoint::kStateDict), true);
  // callbacks
  const Value cbs = ck.contains(checkpoint::kCallbacks) ? ck.at(checkpoint::kCallbacks) : Value(ValueMap{});
  for (auto& cb : callbacks_) {
    cb->on_load_checkpoint(*this, *model_, ck);
    if (cbs.is_map() && cbs.contains(cb->state_key())) cb->load_state_dict(cbs.at(cb->state_key()));
  }
  // optimizers and schedulers, by position (as Lightning), counts checked
  const ValueList& os = ck.at(checkpoint::kOptimizerStates).as_list();
  EMBER_CHECK(os.size() == optim_.optimizers.size(), "[Trainer.fit] ", path, " holds ", os.size(),
              " optimizer states but configure_optimizers() returned ", optim_.optimizers.size(), " optimizers");
  for (size_t i = 0; i < os.size(); ++i) optim_.optimizers[i]->load_state_dict(os[i]);
  const ValueList& ss = ck.at(checkpoint::kLrSchedulers).as_list();
  EMBER_CHECK(ss.size() == optim_.schedulers.size(), "[Trainer.fit] ", path, " holds ", ss.size(),
              " LR scheduler states but configure_optimizers() returned ", optim_.schedulers.size(), " schedulers");
  for (size_t i = 0; i < ss.size(); ++i) {
    if (optim_.schedulers[i].plateau) optim_.schedulers[i].plateau->load_state_dict(ss[i]);
    else optim_.schedulers[i].scheduler->load_state_dict(ss[i]);
  }
  // loops
  const Value& loops = ck.at(checkpoint::kLoops);
  EMBER_CHECK(loops.contains("fit_loop"), "[Trainer.fit] ", path, ": 'loops' has no 'fit_loop'");
  progress_ = FitProgress::from_value(loops.at("fit_loop"), path);
  if (loops.contains("train_dataloader")) {
    train_loader.load_state_dict(loops.at("train_dataloader"));
    if (!train_loader.load_notice().empty()) print(train_loader.load_notice());
  }
  epoch_sums_.clear();
  epoch_meta_.clear();
  if (loops.contains("epoch_accumulators"))
    for (auto& [k, v] : loops.at("epoch_accumulators").as_map()) {
      epoch_sums_[k] = {v.at("sum").as_double(), v.at("weight").as_double()};
      epoch_meta_[k] = EpochMeta{v.at("both").as_bool(), v.at("logger").as_bool(), v.at("is_int").as_bool(),
                                 v.at("group").as_string()};
    }
  if (loops.contains("callback_metrics"))
    for (auto& [k, v] : loops.at("callback_metrics").as_map())
      callback_metrics_[k] = Metric{v.at("value").as_double(), v.at("is_int").as_bool()};
  if (ck.contains(checkpoint::kRngStates)) {
    const Value& rng = ck.at(checkpoint::kRngStates);
    if (rng.contains("default")) default_generator().set_state(rng.at("default").as_bytes().data);
  }
  // A file written after the epoch's batches (epoch-end checkpoint) resumes at the next epoch.
  if (progress_.epochs_processed > progress_.epochs_completed) {
    progress_.epochs_completed = progress_.epochs_processed;
    progress_.batches_completed = 0;
    progress_.accumulated = 0;
  }
  ckpt_path_ = path;
}

// --- fit ------------------------------------------------------------------------------------------

// With a strategy the train loader reads only this rank's DistributedSampler share: a loader
// built without `distributed` is rebuilt with it (its shuffle becomes the sampler's, by the seed
// rank 0's loader drew, so every rank agrees), as Lightning replaces the sampler. A world of one
// gets a sampler of one replica too, as in Lightning, so that its checkpoints and those of
// larger worlds resume each other at epoch boundaries.
data::DataLoader& Trainer::distribute_loader(data::DataLoader& loader) {
  distributed_loader_.reset();
  if (!opts_.strategy || loader.options().distributed) return loader;
  Strategy& st = *opts_.strategy;
  data::DataLoaderOptions o = loader.options();
  const uint64_t seed = st.broadcast_u64(static_cast<uint64_t>(loader.state_dict().at("seed").as_int()));
  o.distributed = data::DistributedSamplerOptions{.num_replicas = st.world_size(), .rank = st.rank(), .shuffle = o.shuffle,
                                                  .seed = seed, .drop_last = false};
  o.shuffle = false;
  o.seed = seed;
  distributed_loader_ = std::make_unique<data::DataLoader>(loader.shared_dataset(), o);
  return *distributed_loader_;
}

void Trainer::fit(LightningModule& model, data::DataLoader& user_train_loader, data::DataLoader* val_loader,
                  const std::string& ckpt_path) {
  wait_for_checkpoint();  // a save queued before fit is committed before anything is resolved
  if (opts_.seed) manual_seed(*opts_.seed);
  progress_ = FitProgress{};
  ckpt_path_.clear();
  data::DataLoader& train_loader = distribute_loader(user_train_loader);
  train_loader_ = &train_loader;
  place_model(model, opts_);
  if (distributed()) {
    // Every rank starts from rank 0's weights and generator (its draws then follow rank 0's: same
    // seed, same shapes), so rank 0's checkpoints hold every rank's state.
    opts_.strategy->setup_model(model);
    std::vector<uint8_t> rng = default_generator().get_state();
    opts_.strategy->broadcast_bytes(rng);
    default_generator().set_state(rng);
  }
  setup(model, "fit");
  SignalScope signals;
  // on_exception runs only for failures once training is under way: an error while setting up or
  // restoring must not make an OnExceptionCheckpoint overwrite a good file with half-restored state.
  bool loop_started = false;
  try {
    std::string resolved = resolve_ckpt_path(ckpt_path);
    optim_ = model.configure_optimizers();
    EMBER_CHECK(!optim_.optimizers.empty(), "[Trainer.fit] configure_optimizers() returned no optimizer");
    for (auto& s : optim_.schedulers) {
      EMBER_CHECK((s.scheduler != nullptr) != (s.plateau != nullptr),
                  "[Trainer.fit] a SchedulerConfig needs exactly one of scheduler or plateau");
      EMBER_CHECK(s.interval == "epoch" || s.interval == "step", "[Trainer.fit] scheduler interval '", s.interval,
                  "' must be 'epoch' or 'step'");
      EMBER_CHECK(s.frequency >= 1, "[Trainer.fit] scheduler frequency must be >= 1, got ", s.frequency);
      EMBER_CHECK(!s.plateau || !s.monitor.empty(), "[Trainer.fit] ReduceLROnPlateau needs SchedulerConfig::monitor");
    }
    num_train_batches_ = opts_.limit_train_batches.resolve(train_loader.len(), "limit_train_batches");
    num_val_batches_ = val_loader ? opts_.limit_val_batches.resolve(val_loader->len(), "limit_val_batches") : 0;
    max_epochs_ = opts_.max_epochs ? *opts_.max_epochs : (opts_.max_steps == -1 ? 1000 : -1);
    scaler_ = opts_.precision == "16-mixed" ? std::make_unique<amp::GradScaler>() : nullptr;
    // Under the mixed precisions the optimizers keep the weights' half copies up to date as they
    // update them; each step's forward pass then uses them instead of casting every weight.
    std::optional<DType> lowp;
    if (opts_.precision == "bf16-mixed") lowp = DType::bf16;
    else if (opts_.precision == "16-mixed") lowp = DType::f16;
    for (auto& o : optim_.optimizers) o->keep_lowp_copies(lowp);
    step_skipped_ = false;
    if (!resolved.empty()) {
      restore(resolved, train_loader);
      EMBER_CHECK(max_epochs_ < 0 || progress_.epochs_completed <= max_epochs_, "[Trainer.fit] you restored a checkpoint with ",
                  progress_.epochs_completed, " completed epochs (current_epoch=", progress_.epochs_completed,
                  "), but Trainer(max_epochs=", max_epochs_, ") is lower");
      print("Restored training state from " + resolved + " (epoch " + std::to_string(progress_.epochs_completed) +
            ", global step " + std::to_string(progress_.global_step) + ")");
    }
    // Only now: a checkpoint that cannot be restored leaves no run directory behind.
    if (logger_) logger_->log_hyperparams(model.hparams());
    model.on_fit_start();
    for (auto& cb : callbacks_) cb->on_fit_start(*this, model);
    loop_started = true;
    run_fit(train_loader, val_loader);
    model.on_fit_end();
    for (auto& cb : callbacks_) cb->on_fit_end(*this, model);
    wait_for_checkpoint();  // fit returns with every checkpoint committed, or throws the failure
    if (distributed()) opts_.strategy->barrier();  // ... on every rank
  } catch (const std::exception& e) {
    // The write in flight completes first (its failure is reported, not thrown over e); then the
    // on_exception callbacks save synchronously.
    handling_exception_ = true;
    struct Reset {
      bool& flag;
      ~Reset() { flag = false; }
    } reset{handling_exception_};
    try {
      finish_checkpoint(false);
    } catch (const std::exception& inner) {
      print(std::string("[Trainer] ") + inner.what());
    }
    for (auto& cb : callbacks_) {
      if (!loop_started) break;
      try {
        cb->on_exception(*this, model, e);
      } catch (const std::exception& inner) {
        print(std::string("[Trainer] a callback failed while handling an exception: ") + inner.what());
      }
    }
    if (logger_) logger_->flush();
    train_loader_ = nullptr;
    stage_.clear();
    // A signal stops every rank at the same step; any other failure of one rank would leave the
    // others waiting in a collective: end the whole job, naming this rank.
    if (distributed() && !dynamic_cast<const TrainingInterrupted*>(&e))
      opts_.strategy->abort_job(str_cat("[Trainer] rank ", global_rank(), " of ", world_size(), " failed: ", e.what()));
    throw;
  }
  teardown("fit");
  train_loader_ = nullptr;
}

void Trainer::run_fit(data::DataLoader& train_loader, data::DataLoader* val_loader) {
  LightningModule& model = *model_;
  if (val_loader && num_val_batches_ > 0 && opts_.num_sanity_val_steps != 0 && ckpt_path_.empty()) {
    int64_t n = opts_.num_sanity_val_steps < 0 ? num_val_batches_ : std::min(opts_.num_sanity_val_steps, num_val_batches_);
    run_validation(*val_loader, n, true);
  }
  auto steps_done = [&] { return opts_.max_steps >= 0 && progress_.global_step >= opts_.max_steps; };
  auto epochs_done = [&] { return max_epochs_ >= 0 && progress_.epochs_completed >= max_epochs_; };
  // The loop can be done before it starts (a checkpoint that already reached max_epochs or
  // max_steps): as Lightning's fit loop, training is then skipped, its hooks included, and fit
  // returns normally.
  if (steps_done() || epochs_done()) {
    print(steps_done() ? str_cat("[Trainer.fit] nothing left to train: max_steps=", opts_.max_steps,
                                 " reached (global step ", progress_.global_step, ")")
                       : str_cat("[Trainer.fit] nothing left to train: max_epochs=", max_epochs_, " reached (",
                                 progress_.epochs_completed, " epochs completed)"));
    return;
  }
  model.train();
  start_cuda_graphs();
  struct StopGraphs {
    Trainer* t;
    ~StopGraphs() { t->stop_cuda_graphs(); }
  } stop_graphs{this};
  model.on_train_start();
  for (auto& cb : callbacks_) cb->on_train_start(*this, model);
  for (;;) {
    if (epochs_done()) break;
    if (steps_done()) break;
    if (should_stop && progress_.epochs_completed >= opts_.min_epochs.value_or(0)) break;
    should_stop = false;
    run_train_epoch(train_loader, val_loader);
  }
  flush_step_logs(true);
  model.on_train_end();
  for (auto& cb : callbacks_) cb->on_train_end(*this, model);
}

bool Trainer::should_validate_at_batch(int64_t batch_idx, bool last_batch) const {
  if (num_val_batches_ == 0) return false;
  int64_t n = opts_.check_val_every_n_epoch;
  if (n > 0 && (current_epoch() + 1) % n != 0) return false;
  const BatchLimit& v = opts_.val_check_interval;
  if (!v.is_count && v.fraction == 1.0) return last_batch;
  int64_t interval = v.is_count ? v.count : std::max<int64_t>(1, static_cast<int64_t>(num_train_batches_ * v.fraction));
  return (batch_idx + 1) % interval == 0;
}

void Trainer::optimizer_step() {
  if (opts_.gradient_clip_val && *opts_.gradient_clip_val > 0) {
    // Clipping sees the true gradients: a scaled loss's are unscaled first.
    if (scaler_)
      for (auto& o : optim_.optimizers) scaler_->unscale_(*o);
    // only when clipping: collecting the parameters costs a vector of names per step
    auto params = model_->named_parameters();
    if (opts_.gradient_clip_algorithm == "norm") optim::clip_grad_norm_(params, *opts_.gradient_clip_val);
    else optim::clip_grad_value_(params, *opts_.gradient_clip_val);
  }
  wait_for_checkpoint_snapshot();  // an asynchronous save may still be copying what step() changes
  step_skipped_ = false;
  for (auto& o : optim_.optimizers) {
    if (scaler_) step_skipped_ = !scaler_->step(*o) || step_skipped_;  // skipped on an inf or NaN gradient
    else o->step();
    o->zero_grad(true);
  }
  if (scaler_) scaler_->update();
  progress_.global_step++;
}

void Trainer::step_schedulers(const std::string& interval, bool plateau) {
  for (auto& s : optim_.schedulers) {
    if (s.interval != interval || (s.plateau != nullptr) != plateau) continue;
    int64_t count = interval == "step" ? progress_.global_step : progress_.epochs_processed;
    if (count % s.frequency != 0) continue;
    if (!s.plateau) {
      s.scheduler->step();
      continue;
    }
    resolve_logs();
    auto it = callback_metrics_.find(s.monitor);
    if (it == callback_metrics_.end()) {
      std::string keys;
      for (auto& [k, m] : callback_metrics_) keys += (keys.empty() ? "" : ", ") + k;
      EMBER_CHECK(!s.strict, "[Trainer] ReduceLROnPlateau conditioned on metric '", s.monitor,
                  "' which is not available. Available metrics are: [", keys, "]");
      continue;
    }
    s.plateau->step(it->second.value);
  }
}

void Trainer::check_signals() {
  int sig = g_signal.load();
  // With several ranks every rank stops at the same step: a signal to any (the launcher forwards
  // it to all, not necessarily within the same step) stops all.
  if (distributed() && opts_.strategy->any(sig != 0) && sig == 0) sig = SIGTERM;
  if (sig != 0) {
    g_signal.store(0);
    throw TrainingInterrupted(sig);
  }
}

// --- the training step, eager or as a CUDA graph -----------------------------------------------

namespace {

void check_loss(const Tensor& loss) {
  EMBER_CHECK(loss.defined() && loss.numel() == 1, "[Trainer] training_step must return a one-element loss tensor, got ",
              loss.defined() ? loss.shape().str() : std::string("an undefined tensor"));
  EMBER_CHECK(loss.requires_grad(), "[Trainer] the loss returned by training_step does not require grad (was it "
                                    "computed under NoGradGuard or from detached tensors?)");
}

// Eager steps before the capture: the first ones select algorithms, create optimizer state and
// fill the caches; the last one shows whether the step is capturable.
constexpr int64_t kGraphWarmupSteps = 3;

bool same_layout(const Batch& a, const Batch& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].defined() != b[i].defined()) return false;
    if (a[i].defined() && (a[i].shape() != b[i].shape() || a[i].dtype() != b[i].dtype() || a[i].device() != b[i].device()))
      return false;
  }
  return true;
}

}  // namespace

void Trainer::start_cuda_graphs() {
  graphs_.reset();
  if (!opts_.cuda_graphs) return;
  std::string why;
  if (!opts_.device.is_cuda()) {
    why = "the device is " + opts_.device.str();
  } else if (opts_.accumulate_grad_batches != 1) {
    why = str_cat("accumulate_grad_batches is ", opts_.accumulate_grad_batches, " (a graph holds one whole step)");
  } else if (opts_.gradient_clip_val && *opts_.gradient_clip_val > 0) {
    why = "gradient clipping reads the gradients' norm back";
  } else if (distributed()) {
    why = "the gradients are averaged across ranks between backward and the optimizer step";
  } else if (scaler_) {
    why = "16-mixed's gradient scaler reads back whether a gradient is inf or NaN";
  } else {
    for (const auto& [name, m] : model_->named_modules()) {
      const auto* bn = dynamic_cast<const nn::BatchNormBase*>(m.get());
      if (bn && bn->track_running_stats) {
        why = str_cat("BatchNorm layer '", name, "' counts its batches on the host");
        break;
      }
    }
  }
  if (!why.empty()) {
    print("[Trainer] cuda_graphs: " + why + "; training runs eagerly");
    return;
  }
  graphs_ = std::make_unique<GraphMode>();
  graphs_->stream = std::make_unique<CudaStream>(opts_.device);
  graphs_->on_stream = std::make_unique<CudaStreamGuard>(*graphs_->stream);
}

void Trainer::stop_cuda_graphs() {
  if (!graphs_) return;
  try {
    graphs_->graph = CudaGraph();  // waits for a replay in flight, then frees the graph's memory
    graphs_->on_stream.reset();    // back to the legacy default stream, which orders after this one
  } catch (const std::exception& e) {
    print(std::string("[Trainer] cuda_graphs: ") + e.what());
  }
  graphs_.reset();
}

Tensor Trainer::run_training_step(LightningModule& model, const Batch& batch, int64_t batch_idx) {
  GraphMode* gm = graphs_.get();
  if (!gm || !gm->enabled) return eager_training_step(model, batch, batch_idx);
  if (gm->graph.valid())
    return same_layout(batch, gm->static_batch) ? replay_training_step(batch)
                                                : eager_training_step(model, batch, batch_idx);
  if (gm->warm_steps >= kGraphWarmupSteps) return capture_training_step(model, batch, batch_idx);
  const CudaRoundTrips before = cuda_round_trips();
  const std::vector<uint8_t> rng = default_generator().get_state();
  Tensor loss = eager_training_step(model, batch, batch_idx);
  if (++gm->warm_steps == kGraphWarmupSteps) {
    const CudaRoundTrips after = cuda_round_trips();
    std::string why;
    if (after.synchronizations != before.synchronizations)
      why = str_cat("the training step waits for the device ", after.synchronizations - before.synchronizations,
                    " time(s) (a value read back with item(), a copy to the CPU)");
    else if (default_generator().get_state() != rng)
      why = "the training step draws random numbers (replays would repeat the same ones)";
    if (!why.empty()) {
      print("[Trainer] cuda_graphs: " + why + "; training runs eagerly");
      gm->enabled = false;
    }
  }
  return loss;
}

Tensor Trainer::eager_training_step(LightningModule& model, const Batch& batch, int64_t batch_idx) {
  hook_ = "training_step";
  Tensor loss;
  {
    PrecisionScope precision(opts_.precision);
    for (auto& o : optim_.optimizers) o->use_lowp_copies();
    loss = model.training_step(batch, batch_idx);
  }
  check_loss(loss);
  Tensor scaled = opts_.accumulate_grad_batches > 1 ? div(loss, static_cast<double>(opts_.accumulate_grad_batches)) : loss;
  if (scaler_) scaled = scaler_->scale(scaled);
  const bool steps = progress_.accumulated + 1 == opts_.accumulate_grad_batches || is_last_batch_;
  if (steps && distributed()) opts_.strategy->before_backward(model);
  scaled.backward();
  progress_.accumulated++;
  if (steps) {
    if (distributed()) opts_.strategy->reduce_gradients(model);
    optimizer_step();
    after_optimizer_step();
  }
  return loss;
}

void Trainer::after_optimizer_step() {
  progress_.accumulated = 0;
  if (step_skipped_) return;  // the schedulers follow the optimizer steps that happened
  step_schedulers("step", false);
  step_schedulers("step", true);
}

// Queues, after a replay, what training_step logged in the capture (copies of the values this
// replay wrote) and the device checks it made.
namespace {
Tensor replay_copy(const Tensor& t) {
  NoGradGuard ng;
  return t.clone();
}
}  // namespace

Tensor Trainer::capture_training_step(LightningModule& model, const Batch& batch, int64_t batch_idx) {
  GraphMode& gm = *graphs_;
  const Device dev = opts_.device;
  // Nothing may wait for the device inside the capture: what is queued is read first.
  resolve_logs();
  run_device_checks();
  wait_for_checkpoint_snapshot();
  {
    NoGradGuard ng;
    gm.static_batch.clear();
    for (const Tensor& t : batch) gm.static_batch.push_back(t.defined() ? t.clone() : t);
  }
  const size_t checks_mark = queued_device_checks();
  std::vector<std::pair<Tensor, Tensor>> grads;
  Tensor loss;
  CudaGraph::begin_capture(dev);
  try {
    hook_ = "training_step";
    {
      PrecisionScope precision(opts_.precision);
      loss = model.training_step(gm.static_batch, batch_idx);
    }
    check_loss(loss);
    loss.backward();
    for (auto& o : optim_.optimizers)
      for (auto& g : o->param_groups())
        for (auto& [name, p] : g.params)
          if (p.grad().defined()) grads.emplace_back(p, p.grad());
    for (auto& o : optim_.optimizers) {
      o->step();
      o->zero_grad(true);
    }
    {
      NoGradGuard ng;
      gm.static_loss = loss.detach();
    }
    gm.graph = CudaGraph::end_capture(dev);
  } catch (const std::exception& e) {
    CudaGraph::abort_capture(dev);
    queued_logs_.clear();
    CapturedDeviceChecks::take_since(checks_mark);
    graphs_.reset();
    EMBER_THROW("[Trainer] cuda_graphs: capturing the training step failed: ", e.what(),
                " (the step's state is now undefined; train without cuda_graphs)");
  }
  gm.grads = std::move(grads);
  gm.logs = std::move(queued_logs_);
  queued_logs_.clear();
  gm.checks = CapturedDeviceChecks::take_since(checks_mark);
  progress_.global_step++;
  // The capture ran nothing: the first replay is this step.
  gm.graph.replay();
  after_optimizer_step();
  for (const QueuedLog& q : gm.logs) {
    QueuedLog c = q;
    if (c.kind == QueuedLog::kTensor) c.value = replay_copy(q.value);
    queued_logs_.push_back(std::move(c));
  }
  gm.checks.requeue();
  return replay_copy(gm.static_loss);
}

Tensor Trainer::replay_training_step(const Batch& batch) {
  GraphMode& gm = *graphs_;
  {
    NoGradGuard ng;
    for (size_t i = 0; i < batch.size(); ++i)
      if (batch[i].defined()) gm.static_batch[i].copy_(batch[i]);
  }
  wait_for_checkpoint_snapshot();
  {
    // The optimizers' bookkeeping (step counts, learning rates) runs on the host as in an eager
    // step; their updates set the scalars of the captured update kernels instead of running.
    for (auto& [p, g] : gm.grads) p.set_grad(g);
    CudaGraph::UpdateScope update(gm.graph);
    for (auto& o : optim_.optimizers) {
      o->step();
      o->zero_grad(true);
    }
  }
  gm.graph.replay();
  progress_.global_step++;
  after_optimizer_step();
  for (const QueuedLog& q : gm.logs) {
    QueuedLog c = q;
    c.batch_size = current_batch_size_;
    if (c.kind == QueuedLog::kTensor) c.value = replay_copy(q.value);
    queued_logs_.push_back(std::move(c));
  }
  gm.checks.requeue();
  return replay_copy(gm.static_loss);
}

void Trainer::run_train_epoch(data::DataLoader& train_loader, data::DataLoader* val_loader) {
  LightningModule& model = *model_;
  model.train();
  saved_this_epoch_.clear();
  epoch_start_ = std::chrono::steady_clock::now();
  epoch_samples_ = 0;
  if (progress_.batches_completed == 0) {
    progress_.epochs_started++;
    hook_ = "on_train_epoch_start";
    hook_group_ = "train";
    model.on_train_epoch_start();
    for (auto& cb : callbacks_) cb->on_train_epoch_start(*this, model);
  }
  bar_->start_epoch(current_epoch(), max_epochs_, num_train_batches_);
  int64_t batch_idx = progress_.batches_completed;
  bool stopped_by_steps = false;
  if (batch_idx < num_train_batches_) {
    for (auto it = train_loader.begin(); it != train_loader.end(); ++it) {
      if (batch_idx >= num_train_batches_) break;
      const Batch batch = to_device(*it);
      is_last_batch_ = batch_idx + 1 == num_train_batches_;
      current_batch_size_ = batch_size_of(batch);
      hook_group_ = "train";
      hook_ = "on_train_batch_start";
      model.on_train_batch_start(batch, batch_idx);
      for (auto& cb : callbacks_) cb->on_train_batch_start(*this, model, batch, batch_idx);
      Tensor loss = run_training_step(model, batch, batch_idx);
      progress_.batches_completed = batch_idx + 1;
      progress_.total_batches++;
      epoch_samples_ += current_batch_size_;
      Tensor loss_d = loss.detach();
      hook_ = "on_train_batch_end";
      model.on_train_batch_end(loss_d, batch, batch_idx);
      for (auto& cb : callbacks_) cb->on_train_batch_end(*this, model, loss_d, batch, batch_idx);
      flush_step_logs(false);
      if (bar_->wants_draw(batch_idx + 1)) {  // reading values syncs a CUDA device: only when drawing
        resolve_logs();
        std::string shown = "loss=" + fmt_metric(loss_d.item_double());
        for (const std::string& name : prog_bar_names_)
          if (auto m = callback_metrics_.find(name); m != callback_metrics_.end())
            shown += " " + name + "=" + fmt_metric(m->second.value);
        bar_->update(batch_idx + 1, shown);
      }
      hook_.clear();
      check_signals();
      poll_checkpoint();
      if (!is_last_batch_ && val_loader && should_validate_at_batch(batch_idx, false)) run_validation(*val_loader, num_val_batches_, false);
      ++batch_idx;
      if (opts_.max_steps >= 0 && progress_.global_step >= opts_.max_steps) {
        stopped_by_steps = true;
        break;
      }
    }
  }
  if (!stopped_by_steps && progress_.batches_completed < num_train_batches_) {
    EMBER_THROW("[Trainer] the training loader ended after ", progress_.batches_completed, " batches but ",
                num_train_batches_, " were expected");
  }
  // --- epoch end ---
  progress_.epochs_processed++;
  step_schedulers("epoch", false);
  hook_group_ = "train";
  update_epoch_metrics("train");
  if (val_loader && should_validate_at_batch(num_train_batches_ - 1, true)) run_validation(*val_loader, num_val_batches_, false);
  step_schedulers("epoch", true);
  hook_ = "on_train_epoch_end";
  hook_group_ = "train";
  model.on_train_epoch_end();
  update_epoch_metrics("train");
  for (auto& cb : callbacks_) cb->on_train_epoch_end(*this, model);
  hook_.clear();
  // epoch summary
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start_).count();
  std::ostringstream os;
  os << "epoch " << current_epoch();
  for (auto& [k, m] : callback_metrics_)
    if (k.size() < 6 || k.substr(k.size() - 5) != "_step") os << "  " << k << "=" << fmt_metric(m.value);
  if (secs > 0) os << "  samples/s=" << static_cast<int64_t>(static_cast<double>(epoch_samples_) / secs);
  for (auto& p : saved_this_epoch_) os << "  saved " << p;
  bar_->end_epoch(os.str());
  progress_.epochs_completed++;
  progress_.batches_completed = 0;
  progress_.accumulated = 0;
}

void Trainer::run_validation(data::DataLoader& loader, int64_t max_batches, bool sanity) {
  LightningModule& model = *model_;
  bool was_training = model.is_training();
  sanity_checking_ = sanity;
  validating_ = true;
  model.eval();
  for (auto& cb : callbacks_) cb->on_validation_start(*this, model);
  {
    NoGradGuard ng;
    hook_group_ = "val";
    hook_ = "on_validation_epoch_start";
    model.on_validation_epoch_start();
    int64_t i = 0;
    for (auto it = loader.begin(); it != loader.end(); ++it) {
      if (i >= max_batches) break;
      Batch batch = to_device(*it);
      current_batch_size_ = batch_size_of(batch);
      hook_ = "validation_step";
      PrecisionScope precision(opts_.precision);
      model.validation_step(batch, i);
      ++i;
    }
    hook_ = "on_validation_epoch_end";
    model.on_validation_epoch_end();
  }
  resolve_logs();
  if (sanity) {
    // Lightning discards what the sanity check logged.
    for (auto it = epoch_meta_.begin(); it != epoch_meta_.end();) {
      if (it->second.group == "val") {
        epoch_sums_.erase(it->first);
        it = epoch_meta_.erase(it);
      } else {
        ++it;
      }
    }
  } else {
    update_epoch_metrics("val");
  }
  if (!sanity) validation_ran_ = true;  // already true in on_validation_end, as Lightning
  for (auto& cb : callbacks_) cb->on_validation_epoch_end(*this, model);
  for (auto& cb : callbacks_) cb->on_validation_end(*this, model);
  hook_.clear();
  hook_group_ = "train";
  sanity_checking_ = false;
  validating_ = false;
  if (was_training) model.train();
}

// --- validate / test / predict ----------------------------------------------------------------------

Metrics Trainer::run_eval_loop(LightningModule& model, data::DataLoader& loader, const std::string& stage,
                               const std::string& ckpt_path) {
  wait_for_checkpoint();
  place_model(model, opts_);
  setup(model, stage);
  if (!ckpt_path.empty()) {
    std::string path = ckpt_path;
    if (ckpt_path == "best" || ckpt_path == "last") path = resolve_ckpt_path(ckpt_path);
    EMBER_CHECK(!path.empty() && fs::exists(path), "[Trainer.", stage, "] checkpoint file not found: ", ckpt_path);
    Value ck = LightningModule::read_weights_checkpoint(path);
    model.restore_weights(ck, path, LoadOptions{opts_.device, {}, true});
  }
  BatchLimit lim = stage == "test" ? opts_.limit_test_batches : opts_.limit_val_batches;
  int64_t n = lim.resolve(loader.len(), stage == "test" ? "limit_test_batches" : "limit_val_batches");
  bool was_training = model.is_training();
  model.eval();
  {
    NoGradGuard ng;
    hook_group_ = "val";
    int64_t i = 0;
    for (auto it = loader.begin(); it != loader.end(); ++it) {
      if (i >= n) break;
      Batch batch = to_device(*it);
      current_batch_size_ = batch_size_of(batch);
      hook_ = stage == "test" ? "test_step" : "validation_step";
      PrecisionScope precision(opts_.precision);
      if (stage == "test") model.test_step(batch, i);
      else model.validation_step(batch, i);
      ++i;
    }
    hook_ = stage == "test" ? "on_test_epoch_end" : "on_validation_epoch_end";
    if (stage == "test") model.on_test_epoch_end();
    else model.on_validation_epoch_end();
  }
  update_epoch_metrics("val");
  hook_.clear();
  if (was_training) model.train();
  teardown(stage);
  Metrics out;
  for (auto& [k, m] : callback_metrics_) out[k] = m;
  return out;
}

Metrics Trainer::validate(LightningModule& model, data::DataLoader& loader, const std::string& ckpt_path) {
  return run_eval_loop(model, loader, "validate", ckpt_path);
}

Metrics Trainer::test(LightningModule& model, data::DataLoader& loader, const std::string& ckpt_path) {
  return run_eval_loop(model, loader, "test", ckpt_path);
}

std::vector<Tensor> Trainer::predict(LightningModule& model, data::DataLoader& loader, const std::string& ckpt_path) {
  wait_for_checkpoint();
  place_model(model, opts_);
  setup(model, "predict");
  if (!ckpt_path.empty()) {
    Value ck = LightningModule::read_weights_checkpoint(ckpt_path);
    model.restore_weights(ck, ckpt_path, LoadOptions{opts_.device, {}, true});
  }
  int64_t n = opts_.limit_predict_batches.resolve(loader.len(), "limit_predict_batches");
  bool was_training = model.is_training();
  model.eval();
  std::vector<Tensor> out;
  {
    NoGradGuard ng;
    int64_t i = 0;
    for (auto it = loader.begin(); it != loader.end(); ++it) {
      if (i >= n) break;
      const Batch batch = to_device(*it);
      PrecisionScope precision(opts_.precision);
      out.push_back(model.predict_step(batch, i));
      ++i;
    }
  }
  if (was_training) model.train();
  teardown("predict");
  return out;
}

}  // namespace ember
