// TrainerOptions::async_checkpointing: a run writes the same files, byte for byte (file ids aside),
// as the same run with synchronous saves, for several models, optimizers, schedulers and
// ModelCheckpoint settings (top-k deletions, last copies and links, step saves while every weight
// changes at every step); a failed background write ends fit with the previous files intact; a
// SIGTERM waits for the write in flight before on_exception.ckpt is written.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "ember/checkpoint/checkpoint.h"
#include "ember/nn/nn.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "ember/train/callbacks.h"
#include "ember/train/trainer.h"
#include "tests/support/checkpoint_bytes.h"
#include "tests/support/file_size_limit.h"

namespace fs = std::filesystem;
using namespace ember;

namespace {

enum class Opt { adam_steplr, sgd_momentum, adamw_cosine };

// An autoencoder whose every weight changes at every optimizer step (dense gradients, no dropout),
// optionally with BatchNorm (buffers that change in the forward pass).
class Net : public LightningModule {
 public:
  Net(Opt opt, bool batchnorm, int64_t width) : LightningModule("Net"), opt_(opt) {
    save_hyperparameters(HParams{{"width", width}});
    std::vector<nn::ModulePtr> layers{std::make_shared<nn::Linear>(16, width)};
    if (batchnorm) layers.push_back(std::make_shared<nn::BatchNorm1d>(width));
    layers.push_back(std::make_shared<nn::Tanh>());
    layers.push_back(std::make_shared<nn::Linear>(width, 16));
    net = register_module("net", std::make_shared<nn::Sequential>(layers));
  }
  Tensor forward(const Tensor& x) override { return net->forward(x); }
  Tensor training_step(const Batch& b, int64_t batch_idx) override {
    Tensor loss = mse_loss(forward(b[0]), b[0]);
    log("train_loss", loss);
    if (batch_idx == sigterm_at_batch) ::raise(SIGTERM);
    return loss;
  }
  void validation_step(const Batch& b, int64_t) override { log("val_loss", mse_loss(forward(b[0]), b[0])); }
  OptimizerConfig configure_optimizers() override {
    switch (opt_) {
      case Opt::adam_steplr: {
        auto o = std::make_shared<optim::Adam>(named_parameters(), optim::AdamOptions{.lr = 0.01});
        OptimizerConfig c(o);
        c.schedulers.push_back(SchedulerConfig{.scheduler = std::make_shared<optim::StepLR>(*o, 1, 0.5)});
        return c;
      }
      case Opt::sgd_momentum:
        return OptimizerConfig(std::make_shared<optim::SGD>(
            named_parameters(), optim::SGDOptions{.lr = 0.05, .momentum = 0.9, .nesterov = true}));
      case Opt::adamw_cosine: {
        auto o = std::make_shared<optim::AdamW>(named_parameters(), optim::AdamWOptions{.lr = 0.01});
        OptimizerConfig c(o);
        c.schedulers.push_back(SchedulerConfig{.scheduler = std::make_shared<optim::CosineAnnealingLR>(*o, 10),
                                               .interval = "step"});
        return c;
      }
    }
    return OptimizerConfig();
  }
  std::shared_ptr<nn::Sequential> net;
  int64_t sigterm_at_batch = -1;

 private:
  Opt opt_;
};

struct Config {
  const char* name;
  Opt opt;
  bool batchnorm;
  ModelCheckpointOptions ckpt;
};

std::vector<Config> configs() {
  return {
      {"AdamStepLrEveryEpoch", Opt::adam_steplr, false, {}},
      {"SgdTopKOnValLossEveryThreeStepsWithLast", Opt::sgd_momentum, false,
       {.monitor = "val_loss", .save_last = true, .save_top_k = 2, .every_n_train_steps = 3}},
      {"AdamWCosineBatchNormKeepAllLinkLast", Opt::adamw_cosine, true,
       {.filename = "{epoch}-{step}-{train_loss:.3f}", .save_last = "link", .save_top_k = -1, .every_n_train_steps = 2}},
  };
}

// Regular files and symlinks under dir (relative paths; a link as "name -> target").
std::vector<std::string> tree(const fs::path& dir) {
  std::vector<std::string> out;
  for (auto& e : fs::recursive_directory_iterator(dir)) {
    std::string rel = fs::relative(e.path(), dir).string();
    if (e.is_symlink()) out.push_back(rel + " -> " + fs::read_symlink(e.path()).string());
    else if (e.is_regular_file()) out.push_back(rel);
  }
  std::sort(out.begin(), out.end());
  return out;
}

using ember::test::without_file_id;
using ember::test::file_bytes;

class AsyncCheckpointing : public ::testing::Test {
 protected:
  void SetUp() override {
    root = fs::temp_directory_path() / ("ember_async_ckpt_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root);
    fs::create_directories(root);
    Generator g(9);
    train = std::make_shared<data::TensorDataset>(std::vector<Tensor>{rand({80, 16}, {}, &g)});
    val = std::make_shared<data::TensorDataset>(std::vector<Tensor>{rand({24, 16}, {}, &g)});
  }
  void TearDown() override { fs::remove_all(root); }

  TrainerOptions opts(const fs::path& dir, bool async) const {
    TrainerOptions o;
    o.default_root_dir = dir.string();
    o.max_epochs = 3;
    o.enable_progress_bar = false;
    o.seed = 3;
    o.async_checkpointing = async;
    return o;
  }
  // One fit into dir; returns the final parameters.
  std::vector<Tensor> run(const Config& c, const fs::path& dir, bool async, CheckpointTimes* times = nullptr) const {
    data::DataLoader tl(train, data::DataLoaderOptions{.batch_size = 8, .shuffle = true, .seed = 4});
    data::DataLoader vl(val, data::DataLoaderOptions{.batch_size = 8});
    TrainerOptions o = opts(dir, async);
    o.callbacks = {std::make_shared<ModelCheckpoint>(c.ckpt)};
    Trainer trainer(o);
    manual_seed(11);  // the initial weights
    Net model(c.opt, c.batchnorm, 32);
    trainer.fit(model, tl, &vl);
    if (times) *times = trainer.checkpoint_times();
    std::vector<Tensor> out;
    for (const Tensor& p : model.parameters()) out.push_back(p.clone());
    return out;
  }

  fs::path root;
  std::shared_ptr<data::TensorDataset> train, val;
};

TEST_F(AsyncCheckpointing, RunsWriteTheFilesOfSynchronousRuns) {
  for (const Config& c : configs()) {
    SCOPED_TRACE(c.name);
    const fs::path dir = root / "run", sync_dir = root / "sync";
    // The same directory for both runs: checkpoints record their own paths.
    std::vector<Tensor> sync_params = run(c, dir, false);
    fs::rename(dir, sync_dir);
    CheckpointTimes times;
    std::vector<Tensor> async_params = run(c, dir, true, &times);
    EXPECT_GT(times.async_saves, 2);
    EXPECT_EQ(times.async_saves, times.saves);

    std::vector<std::string> files = tree(dir);
    EXPECT_EQ(files, tree(sync_dir));
    int compared = 0;
    for (const std::string& f : files) {
      if (f.find(".ckpt") == std::string::npos || f.find(" -> ") != std::string::npos) continue;
      EXPECT_EQ(without_file_id(file_bytes(dir / f)), without_file_id(file_bytes(sync_dir / f))) << f;
      EXPECT_NO_THROW(checkpoint::Reader((dir / f).string(), {.verify = checkpoint::Verify::all})) << f;
      ++compared;
    }
    EXPECT_GE(compared, 1);
    // Training itself is unchanged by the background writes.
    ASSERT_EQ(sync_params.size(), async_params.size());
    for (size_t i = 0; i < sync_params.size(); ++i)
      EXPECT_EQ(sync_params[i].to_vector<float>(), async_params[i].to_vector<float>()) << "parameter " << i;
    fs::remove_all(dir);
    fs::remove_all(sync_dir);
  }
}

// A file size limit from the start of the given epoch (after the previous epoch's file landed):
// that epoch's checkpoint cannot be written.
class FailWritesFromEpoch : public Callback {
 public:
  explicit FailWritesFromEpoch(int64_t epoch) : epoch_(epoch) {}
  std::string state_key() const override { return "FailWritesFromEpoch"; }
  void on_train_epoch_start(Trainer& trainer, LightningModule&) override {
    if (trainer.current_epoch() != epoch_) return;
    trainer.wait_for_checkpoint();
    limit_.set(64 << 10);  // a checkpoint of this model is larger
  }
  void restore() { limit_.restore(); }

 private:
  int64_t epoch_;
  ember::test::FileSizeLimit limit_;
};

TEST_F(AsyncCheckpointing, AFailedWriteEndsFitAndKeepsThePreviousCheckpoint) {
  data::DataLoader tl(train, data::DataLoaderOptions{.batch_size = 8, .shuffle = true, .seed = 4});
  TrainerOptions o = opts(root, true);
  o.logger = false;
  auto fail = std::make_shared<FailWritesFromEpoch>(1);
  auto mc = std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.dirpath = (root / "ck").string()});
  o.callbacks = {fail, mc};
  Trainer trainer(o);
  Net model(Opt::adam_steplr, false, 256);
  try {
    trainer.fit(model, tl);
    FAIL() << "fit did not report the failed write";
  } catch (const Error& e) {
    fail->restore();
    std::string what = e.what();
    EXPECT_NE(what.find("asynchronous checkpoint save to '"), std::string::npos) << what;
    EXPECT_NE(what.find("epoch=1-step=20.ckpt' failed"), std::string::npos) << what;
    EXPECT_NE(what.find("File too large"), std::string::npos) << what;
  }
  fail->restore();
  // The first epoch's file is intact: top-k did not delete it for a file that never landed.
  EXPECT_EQ(tree(root / "ck"), std::vector<std::string>{"epoch=0-step=10.ckpt"});
  EXPECT_NO_THROW(checkpoint::Reader((root / "ck" / "epoch=0-step=10.ckpt").string(), {.verify = checkpoint::Verify::all})
                      .verify_all());
}

TEST_F(AsyncCheckpointing, AFailedLastWriteIsThrownAtTheEndOfFit) {
  data::DataLoader tl(train, data::DataLoaderOptions{.batch_size = 8, .shuffle = true, .seed = 4});
  TrainerOptions o = opts(root, true);
  o.logger = false;
  auto fail = std::make_shared<FailWritesFromEpoch>(2);  // the last epoch
  o.callbacks = {fail, std::make_shared<ModelCheckpoint>(
                           ModelCheckpointOptions{.dirpath = (root / "ck").string(), .save_top_k = -1})};
  Trainer trainer(o);
  Net model(Opt::sgd_momentum, false, 256);
  try {
    trainer.fit(model, tl);
    FAIL() << "fit did not report the failed write";
  } catch (const Error& e) {
    fail->restore();
    EXPECT_NE(std::string(e.what()).find("epoch=2-step=30.ckpt' failed"), std::string::npos) << e.what();
  }
  fail->restore();
  EXPECT_EQ(tree(root / "ck"), (std::vector<std::string>{"epoch=0-step=10.ckpt", "epoch=1-step=20.ckpt"}));
  EXPECT_EQ(trainer.checkpoint_times().async_saves, 3);
}

TEST_F(AsyncCheckpointing, SigtermWaitsForTheWriteInFlightThenWritesOnException) {
  std::vector<std::vector<char>> on_exception;
  for (bool async : {false, true}) {
    SCOPED_TRACE(async ? "async" : "sync");
    const fs::path dir = root / "run";
    data::DataLoader tl(train, data::DataLoaderOptions{.batch_size = 8, .shuffle = true, .seed = 4});
    TrainerOptions o = opts(dir, async);
    o.logger = false;
    o.callbacks = {std::make_shared<ModelCheckpoint>(
                       ModelCheckpointOptions{.dirpath = (dir / "ck").string(), .save_top_k = -1, .every_n_train_steps = 1}),
                   std::make_shared<OnExceptionCheckpoint>((dir / "exc").string())};
    Trainer trainer(o);
    manual_seed(11);
    Net model(Opt::sgd_momentum, false, 64);
    model.sigterm_at_batch = 5;
    EXPECT_THROW(trainer.fit(model, tl), TrainingInterrupted);
    // Step files 1..6 (the signal is seen after batch 5's step and its save), each complete.
    std::vector<std::string> expected;
    for (int s = 1; s <= 6; ++s) expected.push_back("epoch=0-step=" + std::to_string(s) + ".ckpt");
    EXPECT_EQ(tree(dir / "ck"), expected);
    for (const std::string& f : expected)
      EXPECT_NO_THROW(checkpoint::Reader((dir / "ck" / f).string(), {.verify = checkpoint::Verify::all}).verify_all()) << f;
    ASSERT_TRUE(fs::exists(dir / "exc" / "on_exception.ckpt"));
    on_exception.push_back(without_file_id(file_bytes(dir / "exc" / "on_exception.ckpt")));
    fs::remove_all(dir);
  }
  EXPECT_EQ(on_exception[0], on_exception[1]);
}

TEST_F(AsyncCheckpointing, ExplicitSavesOutsideFitCopyEverythingBeforeReturning) {
  data::DataLoader tl(train, data::DataLoaderOptions{.batch_size = 8, .shuffle = true, .seed = 4});
  TrainerOptions o = opts(root, false);
  o.max_epochs = 1;
  o.logger = false;
  o.enable_checkpointing = false;
  Trainer trainer(o);
  Net model(Opt::adam_steplr, false, 32);
  trainer.fit(model, tl);
  const std::string sync_path = (root / "sync.ckpt").string(), async_path = (root / "async.ckpt").string();
  trainer.save_checkpoint(sync_path);
  trainer.save_checkpoint(async_path, false, true);
  {
    NoGradGuard ng;
    for (Tensor p : model.parameters()) p.copy_(add(p, 1.0));  // right away: must not reach the file
  }
  trainer.wait_for_checkpoint();
  EXPECT_EQ(without_file_id(file_bytes(async_path)), without_file_id(file_bytes(sync_path)));
  EXPECT_EQ(trainer.checkpoint_times().async_saves, 1);
}

}  // namespace
