// Test harness for the callback tests: a one-parameter LightningModule whose validation logs a
// scripted metric per epoch, tiny in-memory loaders, per-test scratch directories, and a callback
// that records which checkpoint files exist after every epoch and at every checkpoint write.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ember/checkpoint/checkpoint.h"
#include "ember/runtime/ops.h"
#include "ember/train/callbacks.h"
#include "ember/train/data/dataloader.h"
#include "ember/train/data/dataset.h"
#include "ember/train/lightning_module.h"
#include "ember/train/lr_scheduler.h"
#include "ember/train/optim.h"
#include "ember/train/trainer.h"

namespace ember::cbtest {

namespace fs = std::filesystem;

inline double nan_v() { return std::nan(""); }

// Minimizes sum(w * x); validation logs `metric` = script[current_epoch] (float32, as Lightning).
class ScriptedModel : public LightningModule {
 public:
  explicit ScriptedModel(std::vector<double> script = {}, std::string metric = "val_loss")
      : LightningModule("ScriptedModel"), script_(std::move(script)), metric_(std::move(metric)) {
    w_ = register_parameter("w", full({1}, 0.5));
  }
  Tensor training_step(const Batch& batch, int64_t batch_idx) override {
    if (fail_at_step && trainer()->global_step() == *fail_at_step && batch_idx >= 0)
      throw Error("[test] scripted failure at global step " + std::to_string(*fail_at_step));
    if (train_metric) log(*train_metric, script_.at(static_cast<size_t>(trainer()->current_epoch())), {.on_step = false, .on_epoch = true});
    return sum(mul(w_, batch[0]));
  }
  void validation_step(const Batch&, int64_t) override {
    if (script_.empty()) return;
    size_t e = static_cast<size_t>(trainer()->current_epoch());
    log(metric_, script_.at(std::min(e, script_.size() - 1)));
  }
  OptimizerConfig configure_optimizers() override {
    auto opt = std::make_shared<optim::SGD>(named_parameters(), optim::SGDOptions{.lr = 0.1});
    if (step_lr) {
      SchedulerConfig s;
      s.scheduler = std::make_shared<optim::StepLR>(*opt, 1, 0.5);
      s.interval = *step_lr;
      return OptimizerConfig(opt, s);
    }
    return OptimizerConfig(opt);
  }

  std::optional<int64_t> fail_at_step;      // throw in training_step when global_step equals this
  std::optional<std::string> train_metric;  // also log script[epoch] under this name in training
  std::optional<std::string> step_lr;       // add StepLR(step_size=1, gamma=0.5) with this interval

 private:
  Tensor w_;
  std::vector<double> script_;
  std::string metric_;
};

// n_batches batches of 2 rows each (x = 1, 2, ...).
inline std::shared_ptr<data::DataLoader> make_loader(int64_t n_batches) {
  std::vector<double> xs;
  for (int64_t i = 0; i < 2 * n_batches; ++i) xs.push_back(static_cast<double>(i + 1));
  auto ds = std::make_shared<data::TensorDataset>(std::vector<Tensor>{from_vector(xs, {2 * n_batches, 1})});
  return std::make_shared<data::DataLoader>(ds, data::DataLoaderOptions{.batch_size = 2});
}

// A fresh, empty directory for the current test (removed first if left over).
inline std::string scratch_dir(const std::string& suffix = "") {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path p = fs::temp_directory_path() / ("ember_cb_" + std::to_string(::getpid())) /
               (std::string(info->test_suite_name()) + "." + info->name() + suffix);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

// Relative paths of all files and symlinks under dir (sorted).
inline std::set<std::string> files_in(const std::string& dir) {
  std::set<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (auto& e : fs::recursive_directory_iterator(dir, ec))
    if (e.is_symlink() || e.is_regular_file()) out.insert(e.path().lexically_relative(dir).string());
  return out;
}

// Records files_in(dir) after each training epoch (place it after the ModelCheckpoint) and at each
// full checkpoint write (before the file is written).
class FileSnapshots : public Callback {
 public:
  explicit FileSnapshots(std::string dir) : dir_(std::move(dir)) {}
  std::string state_key() const override { return "FileSnapshots"; }
  void on_train_epoch_end(Trainer&, LightningModule&) override { per_epoch.push_back(files_in(dir_)); }
  void on_save_checkpoint(Trainer&, LightningModule&, Value&) override { at_write.push_back(files_in(dir_)); }
  std::vector<std::set<std::string>> per_epoch;
  std::vector<std::set<std::string>> at_write;

 private:
  std::string dir_;
};

struct RunOptions {
  int64_t max_epochs = 3;
  int64_t batches = 2;  // per epoch
  bool logger = false;
  bool with_val = true;
  int64_t num_sanity_val_steps = 0;
  int64_t check_val_every_n_epoch = 1;
  std::string ckpt_path;
  BatchLimit val_check_interval = 1.0;
};

// Runs fit with the given callbacks; returns the trainer (for inspection).
inline std::unique_ptr<Trainer> run_fit(ScriptedModel& model, const std::string& root,
                                        std::vector<std::shared_ptr<Callback>> callbacks, const RunOptions& ro = {}) {
  TrainerOptions o;
  o.default_root_dir = root;
  o.max_epochs = ro.max_epochs;
  o.logger = ro.logger;
  o.enable_progress_bar = false;
  o.num_sanity_val_steps = ro.num_sanity_val_steps;
  o.check_val_every_n_epoch = ro.check_val_every_n_epoch;
  o.val_check_interval = ro.val_check_interval;
  o.callbacks = std::move(callbacks);
  auto trainer = std::make_unique<Trainer>(o);
  auto train = make_loader(ro.batches);
  auto val = make_loader(1);
  trainer->fit(model, *train, ro.with_val ? val.get() : nullptr, ro.ckpt_path);
  return trainer;
}

inline std::set<std::string> S(std::initializer_list<const char*> names) {
  std::set<std::string> out;
  for (const char* n : names) out.insert(n);
  return out;
}

// The "global_step" stored in a checkpoint file.
inline int64_t stored_step(const std::string& path) {
  checkpoint::ReadOptions ro;
  ro.weights_only = true;
  return checkpoint::load(path, ro).at(checkpoint::kGlobalStep).as_int();
}

inline double f32(double v) { return static_cast<double>(static_cast<float>(v)); }

}  // namespace ember::cbtest
