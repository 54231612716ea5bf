// EarlyStopping through real Trainer runs: patience, min_delta in both modes, non-finite values,
// stopping / divergence thresholds, missing monitor (strict or not), where the check runs, and
// its state in the checkpoint (a resumed run stops where the uninterrupted one would).
#include <gtest/gtest.h>

#include "tests/callbacks/harness.h"

namespace ember::cbtest {
namespace {

std::unique_ptr<Trainer> fit_es(std::vector<double> script, EarlyStoppingOptions eo, std::shared_ptr<EarlyStopping>* out,
                                int64_t max_epochs = 10, int64_t check_val_every_n_epoch = 1) {
  std::string dir = scratch_dir();
  ScriptedModel model(std::move(script));
  auto es = std::make_shared<EarlyStopping>(std::move(eo));
  if (out) *out = es;
  return run_fit(model, dir, {es}, {.max_epochs = max_epochs, .check_val_every_n_epoch = check_val_every_n_epoch});
}

TEST(EarlyStopping, ConfigurationAndStateKey) {
  EXPECT_THROW(EarlyStopping({.monitor = "val_loss", .mode = "avg"}), Error);
  try {
    EarlyStopping({.monitor = "val_loss", .mode = "avg"});
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "[EarlyStopping] `mode` can be min, max, got avg");
  }
  EarlyStopping es("val_loss");
  EXPECT_EQ(es.state_key(), "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}");
  EXPECT_EQ(es.patience(), 3);
  EXPECT_EQ(es.best_score(), std::numeric_limits<double>::infinity());
  EXPECT_EQ(EarlyStopping({.monitor = "acc", .mode = "max"}).best_score(), -std::numeric_limits<double>::infinity());
}

TEST(EarlyStopping, PatienceCountsChecksWithoutImprovement) {
  std::shared_ptr<EarlyStopping> es;
  auto t = fit_es({1.0, 0.9, 0.95, 0.92, 0.91, 0.5, 0.4}, {.monitor = "val_loss", .patience = 3}, &es);
  EXPECT_EQ(es->stopped_epoch(), 4);
  EXPECT_EQ(es->wait_count(), 3);
  EXPECT_EQ(es->best_score(), f32(0.9));
  EXPECT_EQ(t->current_epoch(), 5);  // epochs 0..4 ran
  EXPECT_EQ(t->global_step(), 10);
  EXPECT_EQ(es->last_reason(), "Monitored metric val_loss did not improve in the last 3 records. Best score: 0.900. "
                               "Signaling Trainer to stop.");
}

TEST(EarlyStopping, MinDeltaInMinAndMaxMode) {
  std::shared_ptr<EarlyStopping> es;
  auto t = fit_es({1.0, 0.96, 0.94, 0.9, 0.88}, {.monitor = "val_loss", .min_delta = 0.05, .patience = 5}, &es, 5);
  EXPECT_EQ(t->current_epoch(), 5);
  EXPECT_EQ(es->best_score(), f32(0.88));
  EXPECT_EQ(es->wait_count(), 0);
  EXPECT_EQ(es->stopped_epoch(), 0);

  auto t2 = fit_es({0.5, 0.52, 0.6}, {.monitor = "val_loss", .min_delta = 0.05, .patience = 1, .mode = "max"}, &es);
  EXPECT_EQ(es->stopped_epoch(), 1);  // +0.02 is not an improvement by more than 0.05
  EXPECT_EQ(es->best_score(), f32(0.5));
  EXPECT_EQ(t2->current_epoch(), 2);
}

TEST(EarlyStopping, NonFiniteAndThresholds) {
  std::shared_ptr<EarlyStopping> es;
  auto t = fit_es({1.0, nan_v(), 0.5}, {.monitor = "val_loss"}, &es);
  EXPECT_EQ(es->stopped_epoch(), 1);
  EXPECT_EQ(t->current_epoch(), 2);
  EXPECT_EQ(es->last_reason(),
            "Monitored metric val_loss = nan is not finite. Previous best value was 1.000. Signaling Trainer to stop.");

  auto t2 = fit_es({1.0, nan_v(), 0.5}, {.monitor = "val_loss", .check_finite = false}, &es, 3);
  EXPECT_EQ(t2->current_epoch(), 3);  // NaN just does not improve
  EXPECT_EQ(es->best_score(), f32(0.5));

  auto t3 = fit_es({0.9, 0.4, 0.3}, {.monitor = "val_loss", .stopping_threshold = 0.5}, &es);
  EXPECT_EQ(es->stopped_epoch(), 1);
  EXPECT_EQ(t3->current_epoch(), 2);
  EXPECT_EQ(es->last_reason(), "Stopping threshold reached: val_loss = 0.4000000059604645 < 0.5. Signaling Trainer to stop.");

  auto t4 = fit_es({1.0, 3.0, 0.1}, {.monitor = "val_loss", .divergence_threshold = 2.0}, &es);
  EXPECT_EQ(es->stopped_epoch(), 1);
  EXPECT_EQ(t4->current_epoch(), 2);
  EXPECT_EQ(es->last_reason(), "Divergence threshold reached: val_loss = 3.0 < 2.0. Signaling Trainer to stop.");
}

TEST(EarlyStopping, MissingMonitor) {
  std::string err;
  try {
    fit_es({1.0}, {.monitor = "val_acc"}, nullptr, 2);
  } catch (const Error& e) {
    err = e.what();
  }
  EXPECT_EQ(err, "[EarlyStopping] Early stopping conditioned on metric `val_acc` which is not available. Pass in or "
                 "modify your `EarlyStopping` callback to use any of the following: `val_loss`");
  auto t = fit_es({1.0}, {.monitor = "val_acc", .strict = false}, nullptr, 2);
  EXPECT_EQ(t->current_epoch(), 2);
}

TEST(EarlyStopping, ChecksAtValidationEndWhenValidationIsNotEveryEpoch) {
  // validation at epochs 1, 3, 5: a check at every train epoch end would fail at epoch 0 (no metric yet)
  std::shared_ptr<EarlyStopping> es;
  auto t = fit_es({9, 1.0, 9, 1.1, 9, 1.2, 9, 0.1}, {.monitor = "val_loss", .patience = 2}, &es, 10, 2);
  EXPECT_EQ(es->stopped_epoch(), 5);
  EXPECT_EQ(t->current_epoch(), 6);
  EXPECT_EQ(es->best_score(), 1.0);
}

TEST(EarlyStopping, StateRoundTripAndResume) {
  std::string dir = scratch_dir();
  std::vector<double> script{1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6};
  {
    ScriptedModel model(script);
    auto es = std::make_shared<EarlyStopping>(EarlyStoppingOptions{.monitor = "val_loss", .patience = 3});
    auto mc = std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.dirpath = dir, .save_last = true});
    run_fit(model, dir, {es, mc}, {.max_epochs = 3});
    EXPECT_EQ(es->wait_count(), 2);
    Value st = es->state_dict();
    EXPECT_EQ(st.at("wait_count").as_int(), 2);
    EXPECT_EQ(st.at("stopped_epoch").as_int(), 0);
    EXPECT_EQ(st.at("best_score").as_double(), 1.0);
    EXPECT_EQ(st.at("patience").as_int(), 3);
    EarlyStopping copy({.monitor = "val_loss", .patience = 7});
    copy.load_state_dict(st);
    EXPECT_EQ(copy.wait_count(), 2);
    EXPECT_EQ(copy.patience(), 3);  // restored, as Lightning
  }
  ScriptedModel model(script);
  auto es = std::make_shared<EarlyStopping>(EarlyStoppingOptions{.monitor = "val_loss", .patience = 3});
  auto mc = std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.dirpath = dir, .save_last = true});
  auto t = run_fit(model, dir, {es, mc}, {.max_epochs = 10, .ckpt_path = dir + "/last.ckpt"});
  EXPECT_EQ(es->stopped_epoch(), 3);  // the fresh callback would have waited until epoch 3 + 2
  EXPECT_EQ(t->current_epoch(), 4);
  EXPECT_EQ(t->global_step(), 8);
}

}  // namespace
}  // namespace ember::cbtest
