// LearningRateMonitor (names, step/epoch intervals, values reaching callback_metrics and
// metrics.csv, errors) and OnExceptionCheckpoint (the file an exception leaves, automatic resume
// from it, deletion after the next successful fit).
#include <gtest/gtest.h>

#include <map>
#include <optional>

#include "ember/train/logger.h"
#include "tests/callbacks/harness.h"

namespace ember::cbtest {
namespace {

std::unique_ptr<Trainer> fit_logged(ScriptedModel& model, const std::string& root,
                                    std::vector<std::shared_ptr<Callback>> callbacks, int64_t max_epochs) {
  TrainerOptions o;
  o.default_root_dir = root;
  o.max_epochs = max_epochs;
  o.enable_progress_bar = false;
  o.num_sanity_val_steps = 0;
  o.log_every_n_steps = 1;
  o.enable_checkpointing = false;
  o.callbacks = std::move(callbacks);
  auto t = std::make_unique<Trainer>(o);
  auto train = make_loader(2);
  t->fit(model, *train);
  return t;
}

TEST(LearningRateMonitor, EpochIntervalFollowsEpochScheduler) {
  std::string root = scratch_dir();
  ScriptedModel model;
  model.step_lr = "epoch";
  auto lrm = std::make_shared<LearningRateMonitor>();
  auto t = fit_logged(model, root, {lrm}, 3);
  EXPECT_EQ(lrm->names(*t), std::vector<std::string>{"lr-SGD"});
  ASSERT_EQ(lrm->lrs().count("lr-SGD"), 1u);
  EXPECT_EQ(lrm->lrs().at("lr-SGD"), (std::vector<double>{0.1, 0.05, 0.025}));  // once per epoch, at its start
  ASSERT_EQ(t->callback_metrics().count("lr-SGD"), 1u);
  EXPECT_EQ(t->callback_metrics().at("lr-SGD").value, f32(0.025));
  auto csv = read_metrics_csv(t->log_dir() + "/metrics.csv");
  ASSERT_EQ(csv.count("lr-SGD"), 1u);
  std::vector<double> logged;
  for (double v : csv.at("lr-SGD"))
    if (!std::isnan(v)) logged.push_back(v);
  EXPECT_EQ(logged, (std::vector<double>{0.1, 0.05, 0.025}));  // the logger gets them exact, as Lightning's
}

// Records the learning rate each training batch used, by epoch, and the step each epoch's first
// batch is logged under.
class LrUsed : public Callback {
 public:
  std::string state_key() const override { return "LrUsed"; }
  void on_train_batch_start(Trainer& t, LightningModule&, const Batch&, int64_t) override {
    used[t.current_epoch()].push_back(t.optimizer_config().optimizers[0]->param_groups()[0].lr());
  }
  void on_train_batch_end(Trainer& t, LightningModule&, const Tensor&, const Batch&, int64_t batch_idx) override {
    if (batch_idx == 0) first_step.push_back(static_cast<double>(t.global_step()));
  }
  std::map<int64_t, std::vector<double>> used;
  std::vector<double> first_step;
};

TEST(LearningRateMonitor, EpochValueIsTheEpochsLearningRateInItsFirstStepRow) {
  // As Lightning: logged at epoch start, before the epoch-end scheduler step, in a row labelled
  // with the step of the epoch's first batch. Forced to "epoch" and by the scheduler's interval.
  for (const std::optional<std::string>& interval : {std::optional<std::string>("epoch"), std::optional<std::string>()}) {
    ScriptedModel model;
    model.step_lr = "epoch";
    auto lrm = std::make_shared<LearningRateMonitor>(LearningRateMonitorOptions{.logging_interval = interval});
    auto lr_used = std::make_shared<LrUsed>();
    auto t = fit_logged(model, scratch_dir(interval ? "_epoch" : "_none"), {lrm, lr_used}, 3);
    auto csv = read_metrics_csv(t->log_dir() + "/metrics.csv");
    ASSERT_EQ(csv.count("lr-SGD"), 1u);
    std::vector<double> lr, epoch, step;
    for (size_t i = 0; i < csv.at("lr-SGD").size(); ++i) {
      if (std::isnan(csv.at("lr-SGD")[i])) continue;
      lr.push_back(csv.at("lr-SGD")[i]);
      epoch.push_back(csv.at("epoch")[i]);
      step.push_back(csv.at("step")[i]);
    }
    EXPECT_EQ(lr, (std::vector<double>{0.1, 0.05, 0.025}));
    EXPECT_EQ(epoch, (std::vector<double>{0, 1, 2}));
    EXPECT_EQ(step, lr_used->first_step);
    for (size_t e = 0; e < lr.size(); ++e)
      EXPECT_EQ(lr_used->used.at(static_cast<int64_t>(e)), std::vector<double>(2, lr[e])) << "epoch " << e;
  }
}

TEST(LearningRateMonitor, StepIntervalFollowsStepScheduler) {
  std::string root = scratch_dir();
  ScriptedModel model;
  model.step_lr = "step";
  auto lrm = std::make_shared<LearningRateMonitor>(LearningRateMonitorOptions{.log_momentum = true});
  auto t = fit_logged(model, root, {lrm}, 2);
  EXPECT_EQ(lrm->lrs().at("lr-SGD"), (std::vector<double>{0.1, 0.05, 0.025, 0.0125}));  // at each batch start
  EXPECT_EQ(t->callback_metrics().at("lr-SGD").value, 0.0125);  // logged as float64
  EXPECT_EQ(t->callback_metrics().at("lr-SGD-momentum").value, 0.0);
  auto csv = read_metrics_csv(t->log_dir() + "/metrics.csv");
  std::vector<double> logged;
  for (double v : csv.at("lr-SGD"))
    if (!std::isnan(v)) logged.push_back(v);
  EXPECT_EQ(logged, (std::vector<double>{0.1, 0.05, 0.025, 0.0125}));
}

TEST(LearningRateMonitor, ForcedIntervalAndOptimizerWithoutScheduler) {
  std::string root = scratch_dir();
  ScriptedModel model;  // no scheduler: logged at both hooks when the interval is not forced
  auto both = std::make_shared<LearningRateMonitor>();
  fit_logged(model, root, {both}, 2);
  EXPECT_EQ(both->lrs().at("lr-SGD").size(), 6u);  // 2 epoch starts + 4 batch starts
  ScriptedModel model2;
  model2.step_lr = "epoch";
  auto forced = std::make_shared<LearningRateMonitor>(LearningRateMonitorOptions{.logging_interval = "step"});
  fit_logged(model2, scratch_dir("_2"), {forced}, 2);
  EXPECT_EQ(forced->lrs().at("lr-SGD"), (std::vector<double>{0.1, 0.1, 0.05, 0.05}));
}

class TwoGroupModel : public ScriptedModel {
 public:
  TwoGroupModel() { b_ = register_parameter("b", full({1}, 0.25)); }
  OptimizerConfig configure_optimizers() override {
    auto params = named_parameters();
    std::vector<optim::ParamGroup> groups{{{params[0]}, {{"lr", 0.1}}}, {{params[1]}, {{"lr", 0.01}, {"name", "head"}}}};
    return OptimizerConfig(std::make_shared<optim::SGD>(groups, optim::SGDOptions{.lr = 0.1, .momentum = 0.9}));
  }

 private:
  Tensor b_;
};

TEST(LearningRateMonitor, StepValuesOnlyOnLoggingSteps) {
  std::string root = scratch_dir();
  ScriptedModel model;
  model.step_lr = "step";
  auto lrm = std::make_shared<LearningRateMonitor>();
  TrainerOptions o;
  o.default_root_dir = root;
  o.max_epochs = 3;
  o.enable_progress_bar = false;
  o.log_every_n_steps = 2;
  o.enable_checkpointing = false;
  o.callbacks = {lrm};
  Trainer t(o);
  auto train = make_loader(2);
  t.fit(model, *train);
  // batch starts before steps 2, 4, 6 (lr after 1, 3, 5 halvings)
  EXPECT_EQ(lrm->lrs().at("lr-SGD"), (std::vector<double>{0.05, 0.0125, 0.003125}));
}

TEST(LearningRateMonitor, ParameterGroupNamesAndMomentum) {
  std::string root = scratch_dir();
  TwoGroupModel model;
  auto lrm = std::make_shared<LearningRateMonitor>(LearningRateMonitorOptions{.log_momentum = true});
  auto t = fit_logged(model, root, {lrm}, 1);
  EXPECT_EQ(lrm->names(*t), (std::vector<std::string>{"lr-SGD/pg1", "lr-SGD/head"}));
  // no scheduler: also logged at epoch start (on_epoch), and epoch aggregates are float32 (as Lightning's)
  EXPECT_EQ(t->callback_metrics().at("lr-SGD/head").value, f32(0.01));
  EXPECT_EQ(t->callback_metrics().at("lr-SGD/pg1-momentum").value, f32(0.9));
  EXPECT_EQ(lrm->lrs().at("lr-SGD/head"), (std::vector<double>{0.01, 0.01, 0.01}));
}

TEST(LearningRateMonitor, Errors) {
  try {
    LearningRateMonitor({.logging_interval = "batch"});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "[LearningRateMonitor] logging_interval should be `step` or `epoch` or `None`.");
  }
  std::string root = scratch_dir();
  ScriptedModel model;
  try {
    run_fit(model, root, {std::make_shared<LearningRateMonitor>()}, {.max_epochs = 1, .with_val = false});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "[LearningRateMonitor] Cannot use `LearningRateMonitor` callback with `Trainer` that has no logger.");
  }
}

TEST(OnExceptionCheckpoint, Configuration) {
  std::string dir = scratch_dir();
  OnExceptionCheckpoint oe(dir + "/x/../ck/");
  EXPECT_EQ(oe.ckpt_path(), dir + "/ck/on_exception.ckpt");
  EXPECT_EQ(OnExceptionCheckpoint(dir, "crash").ckpt_path(), dir + "/crash.ckpt");
  EXPECT_EQ(oe.state_key(), "OnExceptionCheckpoint");
  try {
    OnExceptionCheckpoint(dir, "");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "[OnExceptionCheckpoint] The filename cannot be empty");
  }
}

TEST(OnExceptionCheckpoint, WritesResumableFileAndDeletesItAfterSuccess) {
  std::string dir = scratch_dir();
  std::string file = dir + "/oe/on_exception.ckpt";
  {
    ScriptedModel model;
    model.fail_at_step = 3;  // epoch 1, batch 1 (2 batches per epoch)
    auto oe = std::make_shared<OnExceptionCheckpoint>(dir + "/oe");
    EXPECT_THROW(run_fit(model, dir, {oe}, {.max_epochs = 3, .with_val = false}), Error);
  }
  ASSERT_TRUE(fs::exists(file));
  EXPECT_EQ(stored_step(file), 3);
  checkpoint::ReadOptions ro;
  ro.weights_only = true;
  EXPECT_EQ(checkpoint::load(file, ro).at(checkpoint::kEpoch).as_int(), 1);
  // the default ModelCheckpoint is still added (unlike Lightning) and saved epoch 0
  EXPECT_EQ(files_in(dir + "/checkpoints"), S({"epoch=0-step=2.ckpt"}));

  ScriptedModel model;
  auto oe = std::make_shared<OnExceptionCheckpoint>(dir + "/oe");
  auto t = run_fit(model, dir, {oe}, {.max_epochs = 3, .with_val = false});  // ckpt_path "": resumes from the file
  EXPECT_EQ(t->ckpt_path(), file);
  EXPECT_EQ(t->global_step(), 6);
  EXPECT_FALSE(fs::exists(file));  // removed at teardown of the successful fit
}

}  // namespace
}  // namespace ember::cbtest
