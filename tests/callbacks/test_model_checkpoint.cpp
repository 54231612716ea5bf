// ModelCheckpoint: constructor validation, state key, and — through real Trainer runs over a
// scripted validation metric — which files exist after each epoch (top-k for min/max, k = 0, 1,
// 3, -1, ties, NaN), version counter, save_last / last-v1 / link, periodic triggers, deferred
// step saves, protection of the resumed file and of files outside dirpath, and state round trips.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <limits>

#include "tests/callbacks/harness.h"
#include "tests/support/check.h"

namespace ember::cbtest {
namespace {

using ember::test::error_of;

// --- construction ------------------------------------------------------------------------------

TEST(ModelCheckpointConfig, ConstructorErrorsUseLightningMessages) {
  EXPECT_EQ(error_of([] { ModelCheckpoint({.mode = "avg"}); }), "[ModelCheckpoint] `mode` can be min, max but got avg");
  EXPECT_EQ(error_of([] { ModelCheckpoint({.save_top_k = -2}); }),
            "[ModelCheckpoint] Invalid value for save_top_k=-2. Must be >= -1");
  EXPECT_EQ(error_of([] { ModelCheckpoint({.every_n_train_steps = -1}); }),
            "[ModelCheckpoint] Invalid value for every_n_train_steps=-1. Must be >= 0");
  EXPECT_EQ(error_of([] { ModelCheckpoint({.every_n_epochs = -3}); }),
            "[ModelCheckpoint] Invalid value for every_n_epochs=-3. Must be >= 0");
  EXPECT_EQ(error_of([] { ModelCheckpoint({.every_n_train_steps = 5, .every_n_epochs = 2}); }),
            "[ModelCheckpoint] Combination of parameters every_n_train_steps=5, every_n_epochs=2 and "
            "train_time_interval=None should be mutually exclusive.");
  EXPECT_EQ(error_of([] {
              ModelCheckpoint({.every_n_train_steps = 5, .train_time_interval = std::chrono::minutes(90)});
            }),
            "[ModelCheckpoint] Combination of parameters every_n_train_steps=5, every_n_epochs=0 and "
            "train_time_interval=1:30:00 should be mutually exclusive.");
  EXPECT_EQ(error_of([] { ModelCheckpoint({.save_top_k = 3}); }),
            "[ModelCheckpoint] ModelCheckpoint(save_top_k=3, monitor=None) is not a valid configuration. No quantity "
            "for top_k to track.");
  EXPECT_EQ(error_of([] { ModelCheckpoint({.save_last = "copy"}); }),
            "[ModelCheckpoint] save_last must be true, false or \"link\", got 'copy'");
  // valid corner cases
  EXPECT_EQ(error_of([] { ModelCheckpoint({.save_top_k = -1}); }), "no error");
  EXPECT_EQ(error_of([] { ModelCheckpoint({.save_top_k = 0}); }), "no error");
  EXPECT_EQ(error_of([] { ModelCheckpoint({.train_time_interval = std::chrono::seconds(0)}); }), "no error");
  EXPECT_EQ(error_of([] { ModelCheckpoint({.every_n_train_steps = 0, .every_n_epochs = 0}); }), "no error");
}

TEST(ModelCheckpointConfig, TriggersAndStateKeyAsLightning) {
  ModelCheckpoint def;
  EXPECT_EQ(def.every_n_epochs(), 1);
  EXPECT_EQ(def.every_n_train_steps(), 0);
  EXPECT_EQ(def.options().save_top_k, 1);
  EXPECT_FALSE(def.monitor().has_value());
  EXPECT_EQ(def.state_key(),
            "ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1, "
            "'train_time_interval': None}");
  ModelCheckpoint mon({.monitor = "val_loss"});
  EXPECT_EQ(mon.state_key(),
            "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1, "
            "'train_time_interval': None}");
  ModelCheckpoint steps({.monitor = "acc", .mode = "max", .every_n_train_steps = 100});
  EXPECT_EQ(steps.every_n_epochs(), 0);
  EXPECT_EQ(steps.state_key(),
            "ModelCheckpoint{'monitor': 'acc', 'mode': 'max', 'every_n_train_steps': 100, 'every_n_epochs': 0, "
            "'train_time_interval': None}");
  ModelCheckpoint timed({.train_time_interval = std::chrono::minutes(30)});
  EXPECT_EQ(timed.state_key(),
            "ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 0, "
            "'train_time_interval': datetime.timedelta(seconds=1800)}");
  EXPECT_EQ(ModelCheckpoint({.monitor = "it's"}).state_key().substr(0, 33), "ModelCheckpoint{'monitor': \"it's\"");
  EXPECT_EQ(def.kth_value(), std::numeric_limits<double>::infinity());
  EXPECT_EQ(ModelCheckpoint({.monitor = "a", .mode = "max"}).kth_value(), -std::numeric_limits<double>::infinity());
}

TEST(ModelCheckpointConfig, DirpathIsMadeAbsolute) {
  std::string dir = scratch_dir();
  fs::path cwd = fs::current_path();
  fs::current_path(dir);
  ModelCheckpoint cb({.dirpath = "sub/../ckpts/"});
  fs::current_path(cwd);
  EXPECT_EQ(cb.dirpath(), (fs::path(dir) / "ckpts").string());
}

// --- the automatic checkpoint ---------------------------------------------------------------------

TEST(ModelCheckpointRun, DefaultCallbackKeepsOnlyLatestEpochInLogDir) {
  std::string root = scratch_dir();
  ScriptedModel model({0.5, 0.4, 0.3});
  TrainerOptions o;
  o.default_root_dir = root;
  o.max_epochs = 3;
  o.enable_progress_bar = false;
  o.num_sanity_val_steps = 0;
  Trainer trainer(o);
  auto train = make_loader(2);
  trainer.fit(model, *train);
  ModelCheckpoint* mc = nullptr;
  for (auto& cb : trainer.callbacks())
    if (auto* m = dynamic_cast<ModelCheckpoint*>(cb.get())) mc = m;
  ASSERT_NE(mc, nullptr) << "the trainer adds a ModelCheckpoint when enable_checkpointing";
  std::string ckdir = (fs::path(trainer.log_dir()) / "checkpoints").string();
  EXPECT_EQ(mc->dirpath(), fs::weakly_canonical(ckdir).string());
  EXPECT_EQ(files_in(ckdir), S({"epoch=2-step=6.ckpt"}));
  EXPECT_EQ(mc->best_model_path(), (fs::path(mc->dirpath()) / "epoch=2-step=6.ckpt").string());
  EXPECT_EQ(stored_step(mc->best_model_path()), 6);
}

TEST(ModelCheckpointRun, LoggerOffWritesToRootCheckpoints) {
  std::string root = scratch_dir();
  ScriptedModel model;
  auto mc = std::make_shared<ModelCheckpoint>();
  run_fit(model, root, {mc}, {.max_epochs = 2, .with_val = false});
  EXPECT_EQ(mc->dirpath(), (fs::path(root) / "checkpoints").string());
  EXPECT_EQ(files_in(root), S({"checkpoints/epoch=1-step=4.ckpt"}));
}

// --- top-k retention ---------------------------------------------------------------------------------

struct TopKCase {
  const char* name;
  std::string mode;
  int64_t k;
  std::vector<double> script;
  std::vector<std::set<std::string>> expected;  // files after each epoch
  std::string best;
  double best_score;
};

void run_topk(const TopKCase& c) {
  SCOPED_TRACE(c.name);
  std::string dir = scratch_dir(std::string("_") + c.name);
  std::string ck = dir + "/ck";
  ScriptedModel model(c.script);
  auto mc = std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{
      .dirpath = ck, .filename = "{epoch}-{val_loss:.2f}", .monitor = "val_loss", .save_top_k = c.k, .mode = c.mode});
  auto snap = std::make_shared<FileSnapshots>(ck);
  run_fit(model, dir, {mc, snap}, {.max_epochs = static_cast<int64_t>(c.script.size())});
  ASSERT_EQ(snap->per_epoch.size(), c.expected.size());
  for (size_t e = 0; e < c.expected.size(); ++e) EXPECT_EQ(snap->per_epoch[e], c.expected[e]) << "after epoch " << e;
  EXPECT_EQ(mc->best_model_path(), c.best.empty() ? "" : ck + "/" + c.best);
  if (!c.best.empty()) {
    EXPECT_EQ(*mc->best_model_score(), c.best_score);
  }
}

TEST(ModelCheckpointTopK, MinK1StrictTiesAndNaN) {
  run_topk({"min_k1", "min", 1, {0.5, 0.4, 0.45, 0.4, 0.3, nan_v(), 0.2},
            {S({"epoch=0-val_loss=0.50.ckpt"}), S({"epoch=1-val_loss=0.40.ckpt"}), S({"epoch=1-val_loss=0.40.ckpt"}),
             S({"epoch=1-val_loss=0.40.ckpt"}), S({"epoch=4-val_loss=0.30.ckpt"}), S({"epoch=4-val_loss=0.30.ckpt"}),
             S({"epoch=6-val_loss=0.20.ckpt"})},
            "epoch=6-val_loss=0.20.ckpt", f32(0.2)});
}

TEST(ModelCheckpointTopK, MinK3EvictsFirstWorstInInsertionOrder) {
  run_topk({"min_k3", "min", 3, {0.5, 0.4, 0.45, 0.4, 0.3, nan_v(), 0.2},
            {S({"epoch=0-val_loss=0.50.ckpt"}),
             S({"epoch=0-val_loss=0.50.ckpt", "epoch=1-val_loss=0.40.ckpt"}),
             S({"epoch=0-val_loss=0.50.ckpt", "epoch=1-val_loss=0.40.ckpt", "epoch=2-val_loss=0.45.ckpt"}),
             S({"epoch=1-val_loss=0.40.ckpt", "epoch=2-val_loss=0.45.ckpt", "epoch=3-val_loss=0.40.ckpt"}),
             S({"epoch=1-val_loss=0.40.ckpt", "epoch=3-val_loss=0.40.ckpt", "epoch=4-val_loss=0.30.ckpt"}),
             S({"epoch=1-val_loss=0.40.ckpt", "epoch=3-val_loss=0.40.ckpt", "epoch=4-val_loss=0.30.ckpt"}),
             S({"epoch=3-val_loss=0.40.ckpt", "epoch=4-val_loss=0.30.ckpt", "epoch=6-val_loss=0.20.ckpt"})},
            "epoch=6-val_loss=0.20.ckpt", f32(0.2)});
}

TEST(ModelCheckpointTopK, MaxK2TiesKeepOlderNaNRejected) {
  run_topk({"max_k2", "max", 2, {0.1, 0.3, 0.2, 0.3, nan_v(), 0.5},
            {S({"epoch=0-val_loss=0.10.ckpt"}), S({"epoch=0-val_loss=0.10.ckpt", "epoch=1-val_loss=0.30.ckpt"}),
             S({"epoch=1-val_loss=0.30.ckpt", "epoch=2-val_loss=0.20.ckpt"}),
             S({"epoch=1-val_loss=0.30.ckpt", "epoch=3-val_loss=0.30.ckpt"}),
             S({"epoch=1-val_loss=0.30.ckpt", "epoch=3-val_loss=0.30.ckpt"}),
             S({"epoch=3-val_loss=0.30.ckpt", "epoch=5-val_loss=0.50.ckpt"})},
            "epoch=5-val_loss=0.50.ckpt", f32(0.5)});
}

TEST(ModelCheckpointTopK, MaxK2NaNAcceptedWhileFreeRanksWorst) {
  run_topk({"max_nan", "max", 2, {nan_v(), 0.1, 0.2},
            {S({"epoch=0-val_loss=nan.ckpt"}), S({"epoch=0-val_loss=nan.ckpt", "epoch=1-val_loss=0.10.ckpt"}),
             S({"epoch=1-val_loss=0.10.ckpt", "epoch=2-val_loss=0.20.ckpt"})},
            "epoch=2-val_loss=0.20.ckpt", f32(0.2)});
}

TEST(ModelCheckpointTopK, KeepAllAndNone) {
  run_topk({"min_all", "min", -1, {0.5, nan_v(), 0.7, 0.1},
            {S({"epoch=0-val_loss=0.50.ckpt"}), S({"epoch=0-val_loss=0.50.ckpt", "epoch=1-val_loss=nan.ckpt"}),
             S({"epoch=0-val_loss=0.50.ckpt", "epoch=1-val_loss=nan.ckpt", "epoch=2-val_loss=0.70.ckpt"}),
             S({"epoch=0-val_loss=0.50.ckpt", "epoch=1-val_loss=nan.ckpt", "epoch=2-val_loss=0.70.ckpt",
                "epoch=3-val_loss=0.10.ckpt"})},
            "epoch=3-val_loss=0.10.ckpt", f32(0.1)});
  run_topk({"min_k0", "min", 0, {0.5, 0.4}, {S({}), S({})}, "", 0.0});
}

TEST(ModelCheckpointTopK, KeepAllStoresNaNAsWorstScore) {
  std::string dir = scratch_dir();
  ScriptedModel model({0.5, nan_v(), 0.7});
  auto mc = std::make_shared<ModelCheckpoint>(
      ModelCheckpointOptions{.dirpath = dir, .filename = "{epoch}", .monitor = "val_loss", .save_top_k = -1});
  run_fit(model, dir, {mc}, {.max_epochs = 3});
  ASSERT_EQ(mc->best_k_models().size(), 3u);
  EXPECT_EQ(mc->best_k_models()[0], std::make_pair(dir + "/epoch=0.ckpt", f32(0.5)));
  EXPECT_EQ(mc->best_k_models()[1], std::make_pair(dir + "/epoch=1.ckpt", std::numeric_limits<double>::infinity()));
  EXPECT_EQ(mc->best_k_models()[2], std::make_pair(dir + "/epoch=2.ckpt", f32(0.7)));
  EXPECT_EQ(*mc->current_score(), f32(0.7));
  EXPECT_EQ(mc->best_model_path(), dir + "/epoch=0.ckpt");
  EXPECT_EQ(mc->kth_best_model_path(), dir + "/epoch=1.ckpt");
  EXPECT_EQ(mc->kth_value(), std::numeric_limits<double>::infinity());
}

TEST(ModelCheckpointTopK, NewFileWrittenBeforeEvictedOneIsDeleted) {
  std::string dir = scratch_dir();
  ScriptedModel model({0.5, 0.4});
  auto mc = std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.dirpath = dir, .monitor = "val_loss"});
  auto snap = std::make_shared<FileSnapshots>(dir);
  run_fit(model, dir, {mc, snap}, {.max_epochs = 2});
  ASSERT_EQ(snap->at_write.size(), 2u);
  EXPECT_EQ(snap->at_write[1], S({"epoch=0-step=2.ckpt"}));  // still there while epoch 1's file is written
  EXPECT_EQ(snap->per_epoch[1], S({"epoch=1-step=4.ckpt"}));
}

// --- names: version counter, static names ------------------------------------------------------------

TEST(ModelCheckpointNames, VersionCounterOnAnyCollision) {
  std::string dir = scratch_dir();
  {
    ScriptedModel model;
    run_fit(model, dir, {std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.dirpath = dir})},
            {.max_epochs = 2, .with_val = false});
  }
  EXPECT_EQ(files_in(dir), S({"epoch=1-step=4.ckpt"}));
  ScriptedModel model;
  auto mc = std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.dirpath = dir});
  auto snap = std::make_shared<FileSnapshots>(dir);
  run_fit(model, dir, {mc, snap}, {.max_epochs = 2, .with_val = false});
  EXPECT_EQ(snap->per_epoch[0], S({"epoch=0-step=2.ckpt", "epoch=1-step=4.ckpt"}));
  EXPECT_EQ(files_in(dir), S({"epoch=1-step=4-v1.ckpt", "epoch=1-step=4.ckpt"}));  // the old run's file survives
  EXPECT_EQ(mc->best_model_path(), dir + "/epoch=1-step=4-v1.ckpt");
}

TEST(ModelCheckpointNames, VersionCounterOffOverwrites) {
  std::string dir = scratch_dir();
  for (int run = 0; run < 2; ++run) {
    ScriptedModel model;
    run_fit(model, dir,
            {std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.dirpath = dir, .enable_version_counter = false})},
            {.max_epochs = 2, .with_val = false});
  }
  EXPECT_EQ(files_in(dir), S({"epoch=1-step=4.ckpt"}));
}

TEST(ModelCheckpointNames, StaticFilenameReusesEvictedSlot) {
  std::string dir = scratch_dir();
  ScriptedModel k1({0.5, 0.4, 0.6, 0.3});
  auto mc1 = std::make_shared<ModelCheckpoint>(
      ModelCheckpointOptions{.dirpath = dir + "/k1", .filename = "best", .monitor = "val_loss"});
  run_fit(k1, dir, {mc1}, {.max_epochs = 4});
  EXPECT_EQ(files_in(dir + "/k1"), S({"best.ckpt"}));  // never best-v1 for k=1
  EXPECT_EQ(stored_step(dir + "/k1/best.ckpt"), 8);

  ScriptedModel k2({0.5, 0.4, 0.3});
  auto mc2 = std::make_shared<ModelCheckpoint>(
      ModelCheckpointOptions{.dirpath = dir + "/k2", .filename = "best", .monitor = "val_loss", .save_top_k = 2});
  run_fit(k2, dir, {mc2}, {.max_epochs = 3});
  EXPECT_EQ(files_in(dir + "/k2"), S({"best-v1.ckpt", "best.ckpt"}));
  ASSERT_EQ(mc2->best_k_models().size(), 2u);  // version numbers are unrelated to rank
  EXPECT_EQ(mc2->best_k_models()[0], std::make_pair(dir + "/k2/best-v1.ckpt", f32(0.4)));
  EXPECT_EQ(mc2->best_k_models()[1], std::make_pair(dir + "/k2/best.ckpt", f32(0.3)));
  EXPECT_EQ(mc2->best_model_path(), dir + "/k2/best.ckpt");
}

TEST(ModelCheckpointNames, SlashInMetricNameMakesSubdirectory) {
  std::string dir = scratch_dir();
  ScriptedModel model({0.03, 0.02}, "val/loss");
  auto mc = std::make_shared<ModelCheckpoint>(
      ModelCheckpointOptions{.dirpath = dir, .filename = "{epoch}_{val/loss:.5f}", .monitor = "val/loss"});
  run_fit(model, dir, {mc}, {.max_epochs = 2});
  EXPECT_EQ(files_in(dir), S({"epoch=1_val/loss=0.02000.ckpt"}));
}

// --- last ----------------------------------------------------------------------------------------------

TEST(ModelCheckpointLast, LastHoldsNewestStateEvenWhenTopKRejects) {
  std::string dir = scratch_dir();
  ScriptedModel model({0.3, 0.5, 0.6});
  auto mc = std::make_shared<ModelCheckpoint>(
      ModelCheckpointOptions{.dirpath = dir, .monitor = "val_loss", .save_last = true});
  run_fit(model, dir, {mc}, {.max_epochs = 3});
  EXPECT_EQ(files_in(dir), S({"epoch=0-step=2.ckpt", "last.ckpt"}));
  EXPECT_EQ(stored_step(dir + "/last.ckpt"), 6);  // Lightning 2.6 would leave the epoch-0 state here
  EXPECT_EQ(mc->last_model_path(), dir + "/last.ckpt");
}

TEST(ModelCheckpointLast, FreshRunWritesLastV1ResumedRunOverwritesItsOwn) {
  std::string dir = scratch_dir();
  auto opts = ModelCheckpointOptions{.dirpath = dir, .save_last = true};
  {
    ScriptedModel model;
    run_fit(model, dir, {std::make_shared<ModelCheckpoint>(opts)}, {.max_epochs = 2, .with_val = false});
  }
  EXPECT_EQ(files_in(dir), S({"epoch=1-step=4.ckpt", "last.ckpt"}));
  {
    ScriptedModel model;
    auto mc = std::make_shared<ModelCheckpoint>(opts);
    run_fit(model, dir, {mc}, {.max_epochs = 2, .with_val = false});
    EXPECT_EQ(mc->last_model_path(), dir + "/last-v1.ckpt");
  }
  EXPECT_EQ(files_in(dir), S({"epoch=1-step=4-v1.ckpt", "epoch=1-step=4.ckpt", "last-v1.ckpt", "last.ckpt"}));
  EXPECT_EQ(stored_step(dir + "/last-v1.ckpt"), 4);
  {
    ScriptedModel model;
    auto mc = std::make_shared<ModelCheckpoint>(opts);
    auto t = run_fit(model, dir, {mc}, {.max_epochs = 3, .with_val = false, .ckpt_path = dir + "/last-v1.ckpt"});
    EXPECT_EQ(t->global_step(), 6);
    EXPECT_EQ(mc->last_model_path(), dir + "/last-v1.ckpt");
  }
  // restored best_model_path (epoch=1-step=4-v1) was replaced; run 1's files are untouched
  EXPECT_EQ(files_in(dir), S({"epoch=1-step=4.ckpt", "epoch=2-step=6.ckpt", "last-v1.ckpt", "last.ckpt"}));
  EXPECT_EQ(stored_step(dir + "/last-v1.ckpt"), 6);
  EXPECT_EQ(stored_step(dir + "/last.ckpt"), 4);
}

TEST(ModelCheckpointLast, LinkPointsRelativeToNewestSave) {
  std::string dir = scratch_dir();
  ScriptedModel model({0.3, 0.5, 0.6});
  auto mc = std::make_shared<ModelCheckpoint>(
      ModelCheckpointOptions{.dirpath = dir, .monitor = "val_loss", .save_last = "link"});
  run_fit(model, dir, {mc}, {.max_epochs = 3});
  EXPECT_EQ(files_in(dir), S({"epoch=0-step=2.ckpt", "last.ckpt"}));
  ASSERT_TRUE(fs::is_symlink(dir + "/last.ckpt"));
  EXPECT_EQ(fs::read_symlink(dir + "/last.ckpt").string(), "epoch=0-step=2.ckpt");  // the most recent save

  std::string d0 = dir + "/k0";
  ScriptedModel m0;
  auto mc0 = std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.dirpath = d0, .save_last = "link", .save_top_k = 0});
  run_fit(m0, dir, {mc0}, {.max_epochs = 2, .with_val = false});
  EXPECT_EQ(files_in(d0), S({"last.ckpt"}));
  EXPECT_FALSE(fs::is_symlink(d0 + "/last.ckpt"));  // nothing to link to: a full copy
  EXPECT_EQ(stored_step(d0 + "/last.ckpt"), 4);
}

TEST(ModelCheckpointLast, LastTemplateAndCandidates) {
  std::string dir = scratch_dir();
  ModelCheckpointOptions o{.dirpath = dir, .save_last = true};
  o.checkpoint_name_last = "last-{epoch}";
  ScriptedModel model;
  auto mc = std::make_shared<ModelCheckpoint>(o);
  auto t = run_fit(model, dir, {mc}, {.max_epochs = 3, .with_val = false});
  EXPECT_EQ(files_in(dir), S({"epoch=2-step=6.ckpt", "last-epoch=2.ckpt"}));  // the previous last is removed
  EXPECT_EQ(ModelCheckpoint::find_last_checkpoints(dir), std::vector<std::string>{dir + "/last-epoch=2.ckpt"});
  EXPECT_EQ(mc->last_checkpoint_candidates(*t), std::vector<std::string>{});  // "last-{epoch}" is taken literally
  EXPECT_EQ(ModelCheckpoint::find_last_checkpoints(dir + "/missing"), std::vector<std::string>{});
}

TEST(ModelCheckpointLast, SavedAtTrainEndWhenNothingElseWas) {
  std::string dir = scratch_dir();
  ScriptedModel model({0.5, 0.4, 0.3});
  // validation never runs (every 5th epoch of 3), saves are due at validation end: only on_train_end saves
  auto mc = std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.dirpath = dir, .save_last = true});
  run_fit(model, dir, {mc}, {.max_epochs = 3, .check_val_every_n_epoch = 5});
  EXPECT_EQ(files_in(dir), S({"last.ckpt"}));
  EXPECT_EQ(stored_step(dir + "/last.ckpt"), 6);
}

// --- triggers ------------------------------------------------------------------------------------------

TEST(ModelCheckpointTriggers, EveryNEpochs) {
  std::string dir = scratch_dir();
  ScriptedModel model;
  auto mc = std::make_shared<ModelCheckpoint>(
      ModelCheckpointOptions{.dirpath = dir, .save_last = true, .save_top_k = -1, .every_n_epochs = 2});
  run_fit(model, dir, {mc}, {.max_epochs = 5, .with_val = false});
  EXPECT_EQ(files_in(dir), S({"epoch=1-step=4.ckpt", "epoch=3-step=8.ckpt", "last.ckpt"}));
  EXPECT_EQ(stored_step(dir + "/last.ckpt"), 10);  // refreshed every epoch (Lightning 2.5)
}

TEST(ModelCheckpointTriggers, EveryNTrainStepsCountsGlobalSteps) {
  std::string dir = scratch_dir();
  ScriptedModel model;
  auto mc = std::make_shared<ModelCheckpoint>(
      ModelCheckpointOptions{.dirpath = dir, .save_top_k = -1, .every_n_train_steps = 3});
  auto snap = std::make_shared<FileSnapshots>(dir);
  run_fit(model, dir, {mc, snap}, {.max_epochs = 3, .with_val = false});
  EXPECT_EQ(snap->per_epoch[0], S({}));
  EXPECT_EQ(files_in(dir), S({"epoch=1-step=3.ckpt", "epoch=2-step=6.ckpt"}));
}

TEST(ModelCheckpointTriggers, StepSavesWithValidationMonitorAtTrainEpochEnd) {
  // Lightning's edge case: the trigger before the first validation is deferred and dropped; later
  // step saves rank the previous validation's value.
  std::string dir = scratch_dir();
  ScriptedModel model({0.5, 0.4, 0.3});
  auto mc = std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{
      .dirpath = dir, .filename = "{epoch}-{step}-{val_loss:.2f}", .monitor = "val_loss", .save_top_k = -1,
      .every_n_train_steps = 2});
  run_fit(model, dir, {mc}, {.max_epochs = 3});
  EXPECT_EQ(files_in(dir), S({"epoch=1-step=4-val_loss=0.50.ckpt", "epoch=2-step=6-val_loss=0.40.ckpt"}));
}

TEST(ModelCheckpointTriggers, StepSavesDeferredToValidationEnd) {
  std::string dir = scratch_dir();
  ScriptedModel model({0.5, 0.4, 0.3});
  auto mc = std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{
      .dirpath = dir, .filename = "{epoch}-{step}-{val_loss:.2f}", .monitor = "val_loss", .save_top_k = -1,
      .every_n_train_steps = 2, .save_on_train_epoch_end = false});
  run_fit(model, dir, {mc}, {.max_epochs = 3});
  EXPECT_EQ(files_in(dir), S({"epoch=0-step=2-val_loss=0.50.ckpt", "epoch=1-step=4-val_loss=0.40.ckpt",
                              "epoch=2-step=6-val_loss=0.30.ckpt"}));
}

TEST(ModelCheckpointTriggers, TimeIntervalZeroSavesEveryBatch) {
  std::string dir = scratch_dir();
  ScriptedModel model;
  auto mc = std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{
      .dirpath = dir, .save_top_k = -1, .train_time_interval = std::chrono::seconds(0)});
  run_fit(model, dir, {mc}, {.max_epochs = 2, .with_val = false});
  EXPECT_EQ(files_in(dir), S({"epoch=0-step=1.ckpt", "epoch=0-step=2.ckpt", "epoch=1-step=3.ckpt", "epoch=1-step=4.ckpt"}));
}

TEST(ModelCheckpointTriggers, SavesAfterEveryValidationWhenValidatingWithinEpochs) {
  // val_check_interval=0.5: the epoch trigger moves to validation end, which runs twice per epoch
  std::string dir = scratch_dir();
  ScriptedModel model;
  auto mc = std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.dirpath = dir, .save_top_k = -1});
  run_fit(model, dir, {mc}, {.max_epochs = 2, .val_check_interval = 0.5});
  EXPECT_EQ(files_in(dir), S({"epoch=0-step=1.ckpt", "epoch=0-step=2.ckpt", "epoch=1-step=3.ckpt", "epoch=1-step=4.ckpt"}));
}

TEST(ModelCheckpointTriggers, NoSavesDuringSanityCheckAndOncePerStep) {
  std::string dir = scratch_dir();
  ScriptedModel model({0.5, 0.4});
  auto mc = std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{
      .dirpath = dir, .monitor = "val_loss", .save_last = true, .save_top_k = -1, .save_on_train_epoch_end = false});
  auto snap = std::make_shared<FileSnapshots>(dir);
  run_fit(model, dir, {mc, snap}, {.max_epochs = 2, .num_sanity_val_steps = 2});
  EXPECT_EQ(files_in(dir), S({"epoch=0-step=2.ckpt", "epoch=1-step=4.ckpt", "last.ckpt"}));
  EXPECT_EQ(snap->at_write.size(), 4u);  // two epochs x (ranked + last), nothing for the sanity check
}

TEST(ModelCheckpointTriggers, TrainingMetricAtTrainEpochEnd) {
  std::string dir = scratch_dir();
  ScriptedModel model({0.9, 0.7, 0.8});
  model.train_metric = "train_loss";
  auto mc = std::make_shared<ModelCheckpoint>(
      ModelCheckpointOptions{.dirpath = dir, .filename = "{epoch}-{train_loss:.1f}", .monitor = "train_loss"});
  run_fit(model, dir, {mc}, {.max_epochs = 3, .with_val = false});
  EXPECT_EQ(files_in(dir), S({"epoch=1-train_loss=0.7.ckpt"}));
}

TEST(ModelCheckpointTriggers, MissingMonitorAfterValidationIsAnError) {
  std::string dir = scratch_dir();
  ScriptedModel model({0.5, 0.4});
  auto mc = std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.dirpath = dir, .monitor = "val_acc"});
  std::string err = error_of([&] { run_fit(model, dir, {mc}, {.max_epochs = 2}); });
  EXPECT_EQ(err.rfind("[ModelCheckpoint] `ModelCheckpoint(monitor='val_acc')` could not find the monitored key in the "
                      "returned metrics: [",
                      0),
            0u)
      << err;
  EXPECT_NE(err.find("'val_loss'"), std::string::npos) << err;
  EXPECT_NE(err.find("'epoch', 'step']. HINT: Did you call `log('val_acc', value)` in the `LightningModule`?"),
            std::string::npos)
      << err;
  EXPECT_EQ(files_in(dir), S({}));
}

TEST(ModelCheckpointTriggers, MissingMonitorRaisesAtTheFirstValidationEnd) {
  // Lightning's val_loop._has_run is already true in on_validation_end of the first real validation,
  // so a monitor that validation did not log is an error there, not one validation later.
  std::string dir = scratch_dir();
  ScriptedModel model({0.5});
  auto mc = std::make_shared<ModelCheckpoint>(
      ModelCheckpointOptions{.dirpath = dir, .monitor = "val_acc", .save_on_train_epoch_end = false});
  std::string err = error_of([&] { run_fit(model, dir, {mc}, {.max_epochs = 1}); });
  EXPECT_EQ(err.rfind("[ModelCheckpoint] `ModelCheckpoint(monitor='val_acc')` could not find the monitored key", 0), 0u)
      << err;
}

TEST(ModelCheckpointTriggers, SaveWeightsOnly) {
  std::string dir = scratch_dir();
  ScriptedModel model;
  auto mc = std::make_shared<ModelCheckpoint>(
      ModelCheckpointOptions{.dirpath = dir, .save_last = true, .save_weights_only = true});
  run_fit(model, dir, {mc}, {.max_epochs = 1, .with_val = false});
  EXPECT_TRUE(checkpoint::Reader(dir + "/epoch=0-step=2.ckpt").weights_only());
  EXPECT_TRUE(checkpoint::Reader(dir + "/last.ckpt").weights_only());
}

// --- resume and state -------------------------------------------------------------------------------------

TEST(ModelCheckpointResume, ResumedFileIsNeverDeleted) {
  std::string dir = scratch_dir();
  {
    ScriptedModel model;
    run_fit(model, dir, {std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.dirpath = dir})},
            {.max_epochs = 2, .with_val = false});
  }
  ScriptedModel model;
  auto mc = std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.dirpath = dir});
  auto t = run_fit(model, dir, {mc}, {.max_epochs = 4, .with_val = false, .ckpt_path = dir + "/epoch=1-step=4.ckpt"});
  EXPECT_EQ(t->global_step(), 8);
  // epoch=2's file replaced the resumed best (kept: it is ckpt_path), epoch=3's replaced epoch=2's
  EXPECT_EQ(files_in(dir), S({"epoch=1-step=4.ckpt", "epoch=3-step=8.ckpt"}));
}

TEST(ModelCheckpointResume, ResumedFileIsProtectedWhenGivenThroughARelativeSymlinkedPath) {
  std::string root = scratch_dir();
  std::string dir = root + "/real";
  {
    ScriptedModel model;
    run_fit(model, root, {std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.dirpath = dir})},
            {.max_epochs = 2, .with_val = false});
  }
  fs::create_directory_symlink("real", root + "/alias");
  fs::path cwd = fs::current_path();
  fs::current_path(root);
  ScriptedModel model;
  auto mc = std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.dirpath = dir});
  std::string err = error_of([&] {
    run_fit(model, root, {mc}, {.max_epochs = 3, .with_val = false, .ckpt_path = "alias/epoch=1-step=4.ckpt"});
  });
  fs::current_path(cwd);
  EXPECT_EQ(err, "no error");
  EXPECT_EQ(files_in(dir), S({"epoch=1-step=4.ckpt", "epoch=2-step=6.ckpt"}));
}

TEST(ModelCheckpointResume, FilesOutsideDirpathAreNeverDeletedAndStateIsNotReloaded) {
  std::string root = scratch_dir();
  std::string d1 = root + "/d1", d2 = root + "/d2";
  {
    ScriptedModel model;
    run_fit(model, root, {std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.dirpath = d1, .save_last = true})},
            {.max_epochs = 2, .with_val = false});
  }
  fs::copy_file(d1 + "/epoch=1-step=4.ckpt", root + "/resume.ckpt");
  ScriptedModel model;
  auto mc = std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.dirpath = d2, .save_last = true});
  run_fit(model, root, {mc}, {.max_epochs = 3, .with_val = false, .ckpt_path = root + "/resume.ckpt"});
  // the restored best_model_path (d1/epoch=1-step=4.ckpt) lies outside d2: replaced but kept
  EXPECT_EQ(files_in(d1), S({"epoch=1-step=4.ckpt", "last.ckpt"}));
  EXPECT_EQ(files_in(d2), S({"epoch=2-step=6.ckpt", "last.ckpt"}));
  EXPECT_EQ(mc->best_model_path(), d2 + "/epoch=2-step=6.ckpt");
  EXPECT_EQ(mc->last_model_path(), d2 + "/last.ckpt");  // not reloaded: the dirpath changed
}

TEST(ModelCheckpointResume, TopKContinuesAcrossRestartLikeUninterruptedRun) {
  std::vector<double> script{0.5, 0.3, 0.6, 0.4, 0.2, 0.7};
  ModelCheckpointOptions base{.filename = "{epoch}-{val_loss:.2f}", .monitor = "val_loss", .save_last = true, .save_top_k = 2};
  std::string root = scratch_dir();
  auto straight = base;
  straight.dirpath = root + "/straight";
  {
    ScriptedModel model(script);
    run_fit(model, root, {std::make_shared<ModelCheckpoint>(straight)}, {.max_epochs = 6});
  }
  auto split = base;
  split.dirpath = root + "/split";
  {
    ScriptedModel model(script);
    run_fit(model, root, {std::make_shared<ModelCheckpoint>(split)}, {.max_epochs = 3});
  }
  ScriptedModel model(script);
  auto mc = std::make_shared<ModelCheckpoint>(split);
  run_fit(model, root, {mc}, {.max_epochs = 6, .ckpt_path = root + "/split/last.ckpt"});
  EXPECT_EQ(files_in(root + "/split"), files_in(root + "/straight"));
  EXPECT_EQ(files_in(root + "/split"), S({"epoch=1-val_loss=0.30.ckpt", "epoch=4-val_loss=0.20.ckpt", "last.ckpt"}));
  EXPECT_EQ(mc->best_model_path(), root + "/split/epoch=4-val_loss=0.20.ckpt");
  EXPECT_EQ(mc->kth_best_model_path(), root + "/split/epoch=1-val_loss=0.30.ckpt");
}

TEST(ModelCheckpointState, RoundTripKeepsOrderAndValues) {
  std::string dir = scratch_dir();
  ScriptedModel model({0.5, 0.4, 0.45, 0.4, 0.3});
  auto mc = std::make_shared<ModelCheckpoint>(
      ModelCheckpointOptions{.dirpath = dir, .monitor = "val_loss", .save_last = true, .save_top_k = 3});
  run_fit(model, dir, {mc}, {.max_epochs = 5});
  Value st = mc->state_dict();
  EXPECT_EQ(st.at("monitor").as_string(), "val_loss");
  EXPECT_EQ(st.at("dirpath").as_string(), dir);
  EXPECT_EQ(st.at("best_model_score").as_double(), f32(0.3));
  EXPECT_EQ(st.at("current_score").as_double(), f32(0.3));
  EXPECT_EQ(st.at("best_k_models").as_map().size(), 3u);
  EXPECT_EQ(st.at("last_model_path").as_string(), dir + "/last.ckpt");

  ModelCheckpoint same({.dirpath = dir, .monitor = "val_loss", .save_last = true, .save_top_k = 3});
  same.load_state_dict(st);
  EXPECT_EQ(same.best_k_models(), mc->best_k_models());
  EXPECT_EQ(same.best_model_path(), mc->best_model_path());
  EXPECT_EQ(same.best_model_score(), mc->best_model_score());
  EXPECT_EQ(same.kth_best_model_path(), mc->kth_best_model_path());
  EXPECT_EQ(same.kth_value(), mc->kth_value());
  EXPECT_EQ(same.last_model_path(), mc->last_model_path());
  EXPECT_FALSE(same.current_score().has_value());  // never restored, as Lightning

  ModelCheckpoint other({.dirpath = dir + "/elsewhere", .monitor = "val_loss", .save_top_k = 3});
  other.load_state_dict(st);
  EXPECT_EQ(other.best_model_path(), mc->best_model_path());
  EXPECT_TRUE(other.best_k_models().empty());
  EXPECT_FALSE(other.best_model_score().has_value());
  EXPECT_EQ(other.last_model_path(), "");

  // the state is in the checkpoint under the Lightning key
  Value ck = checkpoint::load(dir + "/last.ckpt");
  Value saved = ck.at(checkpoint::kCallbacks).at(mc->state_key());
  EXPECT_EQ(saved.at("last_model_path").as_string(), dir + "/last.ckpt");  // a file records itself
  EXPECT_EQ(saved.at("best_k_models_order"), st.at("best_k_models_order"));
}

}  // namespace
}  // namespace ember::cbtest
