// Trainer: resume arithmetic, bit-exact resume (end-of-epoch, mid-epoch, SIGTERM) in every
// precision (32-true, bf16-mixed, 16-mixed with its gradient scaler, 64-true), resuming in another
// precision, hyperparameter round trip, weights-only refusal, scheduler continuation, logging
// layout, resuming a finished run and what a failed restore leaves behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "ember/checkpoint/checkpoint.h"
#include "ember/nn/nn.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"
#include "ember/train/callbacks.h"
#include "ember/train/grad_scaler.h"
#include "ember/train/logger.h"
#include "ember/train/trainer.h"

namespace fs = std::filesystem;
using namespace ember;

namespace {

// A small autoencoder with dropout, Adam, a step-interval and an epoch-interval scheduler: every
// piece of state that resume must restore (weights, moments, scheduler counters, RNG, sampler).
class TinyAE : public LightningModule {
 public:
  explicit TinyAE(const HParams& hp) : LightningModule("TinyAE") {
    save_hyperparameters(hp);
    net = register_module("net", std::make_shared<nn::Sequential>(
                                      std::make_shared<nn::Linear>(8, 16), std::make_shared<nn::ReLU>(),
                                      std::make_shared<nn::Dropout>(0.2), std::make_shared<nn::Linear>(16, 8)));
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
    auto opt = std::make_shared<optim::Adam>(named_parameters(),
                                             optim::AdamOptions{.lr = hparams().get<double>("learning_rate")});
    OptimizerConfig c(opt);
    c.schedulers.push_back(SchedulerConfig{.scheduler = std::make_shared<optim::StepLR>(*opt, 2, 0.5)});
    c.schedulers.push_back(SchedulerConfig{.scheduler = std::make_shared<optim::ExponentialLR>(*opt, 0.99),
                                           .interval = "step"});
    return c;
  }
  std::shared_ptr<nn::Sequential> net;
  int64_t sigterm_at_batch = -1;
};

// A model whose parameters do not match TinyAE's: its checkpoints cannot be restored into one.
class OtherAE : public LightningModule {
 public:
  OtherAE() : LightningModule("OtherAE") { net = register_module("net", std::make_shared<nn::Linear>(8, 8)); }
  Tensor forward(const Tensor& x) override { return net->forward(x); }
  Tensor training_step(const Batch& b, int64_t) override { return mse_loss(forward(b[0]), b[0]); }
  OptimizerConfig configure_optimizers() override {
    return OptimizerConfig(std::make_shared<optim::Adam>(named_parameters(), optim::AdamOptions{.lr = 0.01}));
  }
  std::shared_ptr<nn::Linear> net;
};

struct Data {
  std::shared_ptr<data::TensorDataset> train, val;
  Data() {
    Generator g(123);
    train = std::make_shared<data::TensorDataset>(std::vector<Tensor>{rand({64, 8}, {}, &g)});
    val = std::make_shared<data::TensorDataset>(std::vector<Tensor>{rand({16, 8}, {}, &g)});
  }
  std::unique_ptr<data::DataLoader> train_loader() const {
    return std::make_unique<data::DataLoader>(train, data::DataLoaderOptions{.batch_size = 8, .shuffle = true, .seed = 7});
  }
  std::unique_ptr<data::DataLoader> val_loader() const {
    return std::make_unique<data::DataLoader>(val, data::DataLoaderOptions{.batch_size = 8});
  }
};

HParams hp() { return HParams{{"learning_rate", 0.01}, {"hidden", int64_t{16}}}; }

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root = fs::temp_directory_path() / ("ember_trainer_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root);
    fs::create_directories(root);
  }
  void TearDown() override { fs::remove_all(root); }
  TrainerOptions opts(int64_t max_epochs) {
    TrainerOptions o;
    o.default_root_dir = root.string();
    o.max_epochs = max_epochs;
    o.enable_progress_bar = false;
    o.seed = 42;
    o.precision = precision;
    return o;
  }
  fs::path root;
  Data data;
  std::string precision = "32-true";
};

// The resume tests in every precision.
class TrainerResume : public TrainerTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    TrainerTest::SetUp();
    precision = GetParam();
  }
};

std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> out;
  if (!fs::exists(dir)) return out;
  for (auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Every path under dir, directories included, relative and sorted.
std::vector<std::string> tree(const fs::path& dir) {
  std::vector<std::string> out;
  for (auto& e : fs::recursive_directory_iterator(dir)) out.push_back(e.path().lexically_relative(dir).string());
  std::sort(out.begin(), out.end());
  return out;
}

size_t count_of(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++n;
  return n;
}

void expect_same_state(LightningModule& a, LightningModule& b, Trainer& ta, Trainer& tb) {
  auto sa = a.state_dict(), sb = b.state_dict();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(test::bit_equal(sa[i].second, sb[i].second)) << sa[i].first;
  const auto& oa = ta.optimizer_config(), &ob = tb.optimizer_config();
  EXPECT_TRUE(oa.optimizers[0]->state_dict() == ob.optimizers[0]->state_dict());
  for (size_t i = 0; i < oa.schedulers.size(); ++i)
    EXPECT_TRUE(oa.schedulers[i].scheduler->state_dict() == ob.schedulers[i].scheduler->state_dict()) << i;
  EXPECT_EQ(ta.global_step(), tb.global_step());
  ASSERT_EQ(ta.grad_scaler() != nullptr, tb.grad_scaler() != nullptr);
  if (ta.grad_scaler()) {
    EXPECT_TRUE(ta.grad_scaler()->state_dict() == tb.grad_scaler()->state_dict());
  }
}

}  // namespace

TEST_F(TrainerTest, AutomaticCheckpointKeepsLatestEpoch) {
  TinyAE model(hp());
  auto tl = data.train_loader();
  auto vl = data.val_loader();
  Trainer t(opts(3));
  t.fit(model, *tl, vl.get());
  EXPECT_EQ(t.current_epoch(), 3);
  EXPECT_EQ(t.global_step(), 24);
  fs::path run = root / "ember_logs" / "version_0";
  EXPECT_EQ(t.log_dir(), run.string());
  EXPECT_EQ(files_in(run / "checkpoints"), std::vector<std::string>{"epoch=2-step=24.ckpt"});
  EXPECT_TRUE(fs::exists(run / "metrics.csv"));
  EXPECT_TRUE(fs::exists(run / "hparams.yaml"));
  auto m = read_metrics_csv((run / "metrics.csv").string());
  ASSERT_TRUE(m.count("val_loss"));
  int n_val = 0;
  for (double v : m["val_loss"]) n_val += !std::isnan(v);
  EXPECT_EQ(n_val, 3);
  // a second fit gets the next version directory
  TinyAE model2(hp());
  Trainer t2(opts(1));
  t2.fit(model2, *tl, vl.get());
  EXPECT_EQ(t2.log_dir(), (root / "ember_logs" / "version_1").string());
}

TEST_P(TrainerResume, FromEpochEndCheckpointContinuesAtNextEpochBitExactly) {
  // uninterrupted: 4 epochs (models are initialised from the default generator: seed it first)
  manual_seed(1);
  TinyAE full(hp());
  auto tl = data.train_loader();
  auto vl = data.val_loader();
  Trainer tf(opts(4));
  tf.fit(full, *tl, vl.get());

  // interrupted: 2 epochs (file epoch=1-step=16), then resume with max_epochs=4
  TrainerOptions o2 = opts(2);
  o2.default_root_dir = (root / "b").string();
  manual_seed(1);
  TinyAE first(hp());
  auto tl2 = data.train_loader();
  auto vl2 = data.val_loader();
  Trainer t2(o2);
  t2.fit(first, *tl2, vl2.get());
  fs::path ckpt = root / "b" / "ember_logs" / "version_0" / "checkpoints" / "epoch=1-step=16.ckpt";
  ASSERT_TRUE(fs::exists(ckpt));

  TrainerOptions o3 = opts(4);
  o3.default_root_dir = (root / "c").string();
  TinyAE resumed(HParams{{"learning_rate", 0.5}, {"hidden", int64_t{16}}});  // overwritten by the checkpoint's state
  resumed.save_hyperparameters(hp());
  auto tl3 = data.train_loader();
  auto vl3 = data.val_loader();
  Trainer t3(o3);
  t3.fit(resumed, *tl3, vl3.get(), ckpt.string());
  EXPECT_EQ(t3.current_epoch(), 4);
  EXPECT_EQ(t3.global_step(), 32);
  expect_same_state(full, resumed, tf, t3);
}

TEST_P(TrainerResume, MidEpochIsBitExact) {
  manual_seed(1);
  TinyAE full(hp());
  auto tl = data.train_loader();
  Trainer tf(opts(3));
  tf.fit(full, *tl);

  // every 5 steps, keep all: step 5 is in epoch 0 (batch 4), step 20 in epoch 2 (batch 3)
  TrainerOptions o = opts(3);
  o.default_root_dir = (root / "b").string();
  auto mc = std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.save_top_k = -1, .every_n_train_steps = 5});
  o.callbacks = {mc};
  manual_seed(1);
  TinyAE part(hp());
  auto tl2 = data.train_loader();
  Trainer t2(o);
  t2.fit(part, *tl2);
  fs::path dir = root / "b" / "ember_logs" / "version_0" / "checkpoints";
  EXPECT_EQ(files_in(dir), (std::vector<std::string>{"epoch=0-step=5.ckpt", "epoch=1-step=10.ckpt",
                                                     "epoch=1-step=15.ckpt", "epoch=2-step=20.ckpt"}));
  for (const char* name : {"epoch=0-step=5.ckpt", "epoch=2-step=20.ckpt"}) {
    TrainerOptions o3 = opts(3);
    o3.default_root_dir = (root / "c").string();
    TinyAE resumed(hp());
    auto tl3 = data.train_loader();
    Trainer t3(o3);
    t3.fit(resumed, *tl3, nullptr, (dir / name).string());
    EXPECT_EQ(t3.global_step(), 24) << name;
    expect_same_state(full, resumed, tf, t3);
  }
}

TEST_F(TrainerTest, ManualSaveAfterFitResumesAtCompletedEpochs) {
  TinyAE model(hp());
  auto tl = data.train_loader();
  Trainer t(opts(2));
  t.fit(model, *tl);
  std::string path = (root / "manual.ckpt").string();
  t.save_checkpoint(path);
  Value ck = checkpoint::load(path);
  EXPECT_EQ(ck.at("epoch").as_int(), 2);
  EXPECT_EQ(ck.at("global_step").as_int(), 16);

  TinyAE r(hp());
  auto tl2 = data.train_loader();
  Trainer t2(opts(3));
  t2.fit(r, *tl2, nullptr, path);
  EXPECT_EQ(t2.global_step(), 24);  // exactly one more epoch

  TinyAE r2(hp());
  auto tl3 = data.train_loader();
  Trainer t3(opts(1));
  try {
    t3.fit(r2, *tl3, nullptr, path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("2 completed epochs"), std::string::npos) << msg;
    EXPECT_NE(msg.find("max_epochs=1"), std::string::npos) << msg;
  }
}

TEST_F(TrainerTest, ResumeAtMaxEpochsOrMaxStepsHasNothingLeftToTrain) {
  TinyAE model(hp());
  auto tl = data.train_loader();
  auto vl = data.val_loader();
  Trainer t(opts(2));
  t.fit(model, *tl, vl.get());
  fs::path ckpt = root / "ember_logs" / "version_0" / "checkpoints" / "epoch=1-step=16.ckpt";
  ASSERT_TRUE(fs::exists(ckpt));

  // max_epochs equal to the completed epochs: fit ends at once, saying so in one line
  TinyAE resumed(hp());
  Trainer t2(opts(2));
  ::testing::internal::CaptureStderr();
  t2.fit(resumed, *tl, vl.get(), ckpt.string());
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(count_of(err, "[Trainer.fit] nothing left to train: max_epochs=2 reached (2 epochs completed)\n"), 1u) << err;
  EXPECT_EQ(count_of(err, "nothing left to train"), 1u) << err;
  EXPECT_EQ(t2.current_epoch(), 2);
  EXPECT_EQ(t2.global_step(), 16);
  auto sa = model.state_dict(), sb = resumed.state_dict();
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(test::bit_equal(sa[i].second, sb[i].second)) << sa[i].first;
  // its run directory holds the hyperparameters only: nothing was logged, nothing saved
  fs::path run = root / "ember_logs" / "version_1";
  EXPECT_EQ(files_in(run), std::vector<std::string>{"hparams.yaml"});

  // the same with max_steps: 12 steps end in epoch 1, whose end writes epoch=1-step=12.ckpt
  TrainerOptions o = opts(5);
  o.default_root_dir = (root / "s").string();
  o.max_steps = 12;
  TinyAE by_steps(hp());
  Trainer t3(o);
  t3.fit(by_steps, *tl, vl.get());
  fs::path step_ckpt = root / "s" / "ember_logs" / "version_0" / "checkpoints" / "epoch=1-step=12.ckpt";
  ASSERT_TRUE(fs::exists(step_ckpt));
  TinyAE resumed2(hp());
  Trainer t4(o);
  ::testing::internal::CaptureStderr();
  t4.fit(resumed2, *tl, vl.get(), step_ckpt.string());
  err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(count_of(err, "[Trainer.fit] nothing left to train: max_steps=12 reached (global step 12)\n"), 1u) << err;
  EXPECT_EQ(t4.global_step(), 12);
  EXPECT_EQ(files_in(root / "s" / "ember_logs" / "version_1"), std::vector<std::string>{"hparams.yaml"});
}

TEST_F(TrainerTest, FailedRestoreLeavesNoRunDirectory) {
  TinyAE model(hp());
  auto tl = data.train_loader();
  Trainer t(opts(1));
  t.fit(model, *tl);
  fs::path good = root / "ember_logs" / "version_0" / "checkpoints" / "epoch=0-step=8.ckpt";
  ASSERT_TRUE(fs::exists(good));
  fs::path corrupt = root / "corrupt.ckpt";
  {
    std::string bytes;
    std::ifstream in(good, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
    std::ofstream out(corrupt, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));  // truncated
  }
  const std::vector<std::string> before = tree(root);
  // into an existing ember_logs/ and into a root directory that does not exist yet
  for (const fs::path& dir : {root, root / "fresh"}) {
    TrainerOptions o = opts(2);
    o.default_root_dir = dir.string();
    for (const fs::path& ckpt : {root / "absent.ckpt", corrupt}) {
      TinyAE r(hp());
      Trainer t2(o);
      EXPECT_THROW(t2.fit(r, *tl, nullptr, ckpt.string()), Error) << ckpt;
      EXPECT_EQ(tree(root), before) << ckpt << " into " << dir;
    }
    OtherAE other;  // a checkpoint of another model
    Trainer t3(o);
    EXPECT_THROW(t3.fit(other, *tl, nullptr, good.string()), Error);
    EXPECT_EQ(tree(root), before) << "OtherAE into " << dir;
  }
}

TEST_F(TrainerTest, WeightsOnlyCheckpointRefusedForResumeButLoadsForInference) {
  TinyAE model(hp());
  auto tl = data.train_loader();
  Trainer t(opts(1));
  t.fit(model, *tl);
  std::string path = (root / "w.ckpt").string();
  t.save_checkpoint(path, /*weights_only=*/true);
  TinyAE r(hp());
  Trainer t2(opts(2));
  try {
    t2.fit(r, *tl, nullptr, path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("weights-only"), std::string::npos) << e.what();
  }
  auto loaded = LightningModule::load_from_checkpoint<TinyAE>(path);
  EXPECT_TRUE(test::bit_equal(loaded->net->at<nn::Linear>(0)->weight, model.net->at<nn::Linear>(0)->weight));
}

TEST_F(TrainerTest, LoadFromCheckpointRestoresHyperparameters) {
  TinyAE model(HParams{{"learning_rate", 0.0025}, {"hidden", int64_t{16}}, {"name", "ae"}});
  auto tl = data.train_loader();
  Trainer t(opts(1));
  t.fit(model, *tl);
  std::string path = (root / "m.ckpt").string();
  t.save_checkpoint(path);
  auto loaded = LightningModule::load_from_checkpoint<TinyAE>(path);
  EXPECT_EQ(loaded->hparams().get<double>("learning_rate"), 0.0025);
  EXPECT_EQ(loaded->hparams().get<int64_t>("hidden"), 16);
  EXPECT_EQ(loaded->hparams().get<std::string>("name"), "ae");
  auto over = LightningModule::load_from_checkpoint<TinyAE>(path, {.hparams = HParams{{"learning_rate", 0.1}}});
  EXPECT_EQ(over->hparams().get<double>("learning_rate"), 0.1);
  auto sd = model.state_dict();
  auto sl = loaded->state_dict();
  for (size_t i = 0; i < sd.size(); ++i) EXPECT_TRUE(test::bit_equal(sd[i].second, sl[i].second)) << sd[i].first;
  EXPECT_THROW(loaded->hparams().get<double>("missing"), Error);
}

TEST_F(TrainerTest, SchedulersContinueAcrossResume) {
  TinyAE model(hp());
  auto tl = data.train_loader();
  Trainer t(opts(3));
  t.fit(model, *tl);
  // StepLR(2, 0.5) stepped per epoch (3 times), ExponentialLR(0.99) per step (24 times)
  const auto& groups = t.optimizer_config().optimizers[0]->param_groups();
  EXPECT_DOUBLE_EQ(groups[0].lr(), 0.01 * 0.5 * std::pow(0.99, 24));
  EXPECT_EQ(t.optimizer_config().schedulers[0].scheduler->state_dict().at("last_epoch").as_int(), 3);
  EXPECT_EQ(t.optimizer_config().schedulers[1].scheduler->state_dict().at("last_epoch").as_int(), 24);
}

TEST_F(TrainerTest, LastAndBestResolve) {
  TrainerOptions o = opts(3);
  auto mc = std::make_shared<ModelCheckpoint>(
      ModelCheckpointOptions{.dirpath = (root / "ck").string(), .monitor = "val_loss", .save_last = true});
  o.callbacks = {mc};
  TinyAE model(hp());
  auto tl = data.train_loader();
  auto vl = data.val_loader();
  Trainer t(o);
  t.fit(model, *tl, vl.get());
  EXPECT_TRUE(fs::exists(root / "ck" / "last.ckpt"));
  TrainerOptions o2 = opts(4);
  auto mc2 = std::make_shared<ModelCheckpoint>(
      ModelCheckpointOptions{.dirpath = (root / "ck").string(), .monitor = "val_loss", .save_last = true});
  o2.callbacks = {mc2};
  TinyAE r(hp());
  auto tl2 = data.train_loader();
  Trainer t2(o2);
  t2.fit(r, *tl2, vl.get(), "last");
  EXPECT_EQ(t2.ckpt_path(), (root / "ck" / "last.ckpt").string());
  EXPECT_EQ(t2.global_step(), 32);

  // "best": the restored ModelCheckpoint's best_model_path (its state comes back with the dirpath)
  std::string best = mc2->best_model_path();
  ASSERT_FALSE(best.empty());
  double best_score = *mc2->best_model_score();
  TrainerOptions o3 = opts(6);
  auto mc3 = std::make_shared<ModelCheckpoint>(
      ModelCheckpointOptions{.dirpath = (root / "ck").string(), .monitor = "val_loss", .save_last = true});
  o3.callbacks = {mc3};
  TinyAE r3(hp());
  auto tl3 = data.train_loader();
  Trainer t3(o3);
  t3.fit(r3, *tl3, vl.get(), "last");  // restores mc3's state, so "best" is known for the next fit
  TinyAE r4(hp());
  auto tl4 = data.train_loader();
  TrainerOptions o4 = opts(8);
  o4.callbacks = {mc3};
  Trainer t4(o4);
  std::string expect_best = mc3->best_model_path();
  t4.fit(r4, *tl4, vl.get(), "best");
  EXPECT_EQ(t4.ckpt_path(), expect_best);
  EXPECT_LE(*mc3->best_model_score(), best_score);
  Value ck = checkpoint::load(expect_best);
  EXPECT_EQ(t4.global_step(), 64);
  EXPECT_GT(ck.at("global_step").as_int(), 0);

  // no ModelCheckpoint configured: "best" is an error naming the problem
  TrainerOptions o5 = opts(1);
  o5.enable_checkpointing = false;
  TinyAE r5(hp());
  Trainer t5(o5);
  try {
    t5.fit(r5, *tl4, nullptr, "best");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no ModelCheckpoint"), std::string::npos) << e.what();
  }
}

TEST_P(TrainerResume, SigtermMidEpochLeavesResumableCheckpoint) {
  manual_seed(1);
  TinyAE full(hp());
  auto tl = data.train_loader();
  Trainer tf(opts(3));
  tf.fit(full, *tl);

  fs::path exc_dir = root / "exc";
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int code = 1;
    try {
      TrainerOptions o = opts(3);
      o.default_root_dir = (root / "child").string();
      o.callbacks = {std::make_shared<OnExceptionCheckpoint>(exc_dir.string())};
      manual_seed(1);
      TinyAE m(hp());
      m.sigterm_at_batch = 5;  // the child signals itself in epoch 0, batch 5 ("kill -TERM" from inside)
      Data d;
      auto l = d.train_loader();
      Trainer t(o);
      t.fit(m, *l);
      code = 0;
    } catch (const TrainingInterrupted& e) {
      code = e.exit_code();
    } catch (...) {
      code = 2;
    }
    ::_exit(code);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 143);
  fs::path file = exc_dir / "on_exception.ckpt";
  ASSERT_TRUE(fs::exists(file));
  EXPECT_EQ(checkpoint::load(file.string()).at("global_step").as_int(), 6);

  TrainerOptions o = opts(3);
  o.default_root_dir = (root / "resume").string();
  o.callbacks = {std::make_shared<OnExceptionCheckpoint>(exc_dir.string())};
  TinyAE resumed(hp());
  auto tl2 = data.train_loader();
  Trainer t(o);
  t.fit(resumed, *tl2);  // finds on_exception.ckpt by itself, as Lightning
  EXPECT_EQ(t.ckpt_path(), file.string());
  expect_same_state(full, resumed, tf, t);
  EXPECT_FALSE(fs::exists(file));  // deleted after the successful run
}

TEST_F(TrainerTest, OptionsAreValidated) {
  TrainerOptions o = opts(1);
  o.accumulate_grad_batches = 0;
  EXPECT_THROW(Trainer{o}, Error);
  TrainerOptions o2 = opts(1);
  o2.enable_checkpointing = false;
  o2.callbacks = {std::make_shared<ModelCheckpoint>()};
  EXPECT_THROW(Trainer{o2}, Error);
}

INSTANTIATE_TEST_SUITE_P(Precisions, TrainerResume, ::testing::Values("32-true", "bf16-mixed", "16-mixed", "64-true"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

namespace {

// Records the dtypes a step sees: the first layer's output and the loss.
class DtypeProbe : public TinyAE {
 public:
  DtypeProbe() : TinyAE(hp()) {}
  Tensor training_step(const Batch& b, int64_t) override {
    Tensor h = net->children()[0]->forward(b[0]);
    hidden = h.dtype();
    Tensor loss = mse_loss(forward(b[0]), b[0]);
    loss_dtype = loss.dtype();
    return loss;
  }
  DType hidden = DType::u8, loss_dtype = DType::u8;
};

}  // namespace

// 16-mixed with gradient clipping, and a first batch whose loss overflows once scaled: that step
// is skipped (weights, moments and the step-interval scheduler untouched, the scale backs off),
// and every later step clips the unscaled gradients and steps.
class OverflowFirstBatch : public TinyAE {
 public:
  OverflowFirstBatch() : TinyAE(hp()) {}
  Tensor training_step(const Batch& b, int64_t batch_idx) override {
    Tensor loss = mse_loss(forward(b[0]), b[0]);
    return batch_idx == 0 && trainer()->current_epoch() == 0 ? mul(loss, 1e35) : loss;  // * 65536: inf
  }
};

TEST_F(TrainerTest, SixteenMixedSkipsAnOverflowingStepAndItsScheduler) {
  precision = "16-mixed";
  TrainerOptions o = opts(2);
  o.enable_checkpointing = false;
  o.gradient_clip_val = 1.0;
  manual_seed(1);
  OverflowFirstBatch m;
  const std::vector<Tensor> before = [&] {
    std::vector<Tensor> v;
    for (const auto& [name, p] : m.named_parameters()) v.push_back(p.clone());
    return v;
  }();
  auto tl = data.train_loader();
  Trainer t(o);
  t.fit(m, *tl);
  EXPECT_EQ(t.global_step(), 16);  // skipped steps still count, as in Lightning
  ASSERT_NE(t.grad_scaler(), nullptr);
  const double scale = t.grad_scaler()->get_scale();
  const int64_t skipped = std::lround(std::log2(65536.0 / scale));
  EXPECT_GE(skipped, 1);
  EXPECT_EQ(std::ldexp(65536.0, -static_cast<int>(skipped)), scale);
  // the step-interval ExponentialLR stepped once per step taken
  const auto& sched = t.optimizer_config().schedulers;
  ASSERT_EQ(sched.size(), 2u);
  EXPECT_EQ(sched[1].scheduler->state_dict().at("last_epoch").as_int(), 16 - skipped);
  // trained: finite weights, changed from the start
  size_t i = 0;
  for (const auto& [name, p] : m.named_parameters()) {
    EXPECT_TRUE(std::isfinite(sum(p.to(DType::f64)).item_double())) << name;
    EXPECT_FALSE(test::bit_equal(p, before[i++])) << name;
  }
}

TEST_F(TrainerTest, PrecisionSetsTheStepsDtypes) {
  struct Case {
    const char* precision;
    DType hidden, loss, param;
  };
  for (const Case& c : {Case{"32-true", DType::f32, DType::f32, DType::f32}, Case{"bf16", DType::bf16, DType::f32, DType::f32},
                        Case{"16-mixed", DType::f16, DType::f32, DType::f32}, Case{"64", DType::f64, DType::f64, DType::f64}}) {
    SCOPED_TRACE(c.precision);
    precision = c.precision;
    TrainerOptions o = opts(1);
    o.enable_checkpointing = false;
    DtypeProbe m;
    auto tl = data.train_loader();
    Trainer t(o);
    EXPECT_EQ(t.options().precision, std::string(c.precision).find('-') == std::string::npos
                                         ? (c.precision == std::string("bf16") ? "bf16-mixed" : "64-true")
                                         : c.precision);
    t.fit(m, *tl);
    EXPECT_EQ(m.hidden, c.hidden);
    EXPECT_EQ(m.loss_dtype, c.loss);
    for (const auto& [name, p] : m.named_parameters()) EXPECT_EQ(p.dtype(), c.param) << name;
    EXPECT_EQ(t.grad_scaler() != nullptr, precision == "16-mixed");
  }
  precision = "32";
  EXPECT_NO_THROW(Trainer{opts(1)});
  precision = "8-mixed";
  try {
    Trainer t(opts(1));
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[Trainer] precision='8-mixed' is not supported: expected '32-true', "
                                         "'bf16-mixed', '16-mixed' or '64-true'"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(TrainerTest, ResumingInAnotherPrecisionSaysSoInOneLine) {
  // 2 epochs in 32-true, then on to 3 in 16-mixed: the file has no scaler state
  manual_seed(1);
  TinyAE first(hp());
  auto tl = data.train_loader();
  Trainer t1(opts(2));
  t1.fit(first, *tl);
  const fs::path ckpt = root / "ember_logs" / "version_0" / "checkpoints" / "epoch=1-step=16.ckpt";
  ASSERT_TRUE(fs::exists(ckpt));
  EXPECT_EQ(checkpoint::load(ckpt.string()).at("precision").as_string(), "32-true");
  EXPECT_FALSE(checkpoint::load(ckpt.string()).contains("MixedPrecision"));
  for (const char* p : {"16-mixed", "64-true"}) {
    SCOPED_TRACE(p);
    precision = p;
    TrainerOptions o = opts(3);
    o.default_root_dir = (root / p).string();
    TinyAE resumed(hp());
    auto tl2 = data.train_loader();
    Trainer t2(o);
    ::testing::internal::CaptureStderr();  // the Trainer's notices go to stderr
    t2.fit(resumed, *tl2, nullptr, ckpt.string());
    const std::string out = ::testing::internal::GetCapturedStderr();
    const std::string line = "[Trainer] " + ckpt.string() + " was written in precision '32-true'; resuming in '" + p + "'";
    EXPECT_EQ(count_of(out, line), 1u) << out;
    EXPECT_EQ(count_of(out, "the gradient scaler starts from its defaults"), precision == "16-mixed" ? 1u : 0u) << out;
    EXPECT_EQ(t2.global_step(), 24);
    for (const auto& [name, w] : resumed.named_parameters()) {
      EXPECT_EQ(w.dtype(), precision == "64-true" ? DType::f64 : DType::f32) << name;
      EXPECT_TRUE(std::isfinite(sum(w.to(DType::f64)).item_double())) << name;
    }
    if (precision == "16-mixed") {
      ASSERT_NE(t2.grad_scaler(), nullptr);
      const Value st = checkpoint::load((root / p / "ember_logs" / "version_0" / "checkpoints" / "epoch=2-step=24.ckpt").string())
                           .at("MixedPrecision");
      EXPECT_TRUE(st == t2.grad_scaler()->state_dict());
      EXPECT_GT(st.at("scale").as_double(), 0.0);
    }
  }
  // and a 64-true file back in 32-true
  precision = "32-true";
  TrainerOptions o = opts(4);
  o.default_root_dir = (root / "back").string();
  TinyAE back(hp());
  auto tl3 = data.train_loader();
  Trainer t3(o);
  t3.fit(back, *tl3, nullptr, (root / "64-true" / "ember_logs" / "version_0" / "checkpoints" / "epoch=2-step=24.ckpt").string());
  EXPECT_EQ(t3.global_step(), 32);
  for (const auto& [name, w] : back.named_parameters()) EXPECT_EQ(w.dtype(), DType::f32) << name;
  // load_from_checkpoint loads a 64-true file's weights into the model's float32 (as PyTorch's
  // load_state_dict copies), and validate() in 64-true takes a float32 file into its float64 model
  const fs::path f64_file = root / "64-true" / "ember_logs" / "version_0" / "checkpoints" / "epoch=2-step=24.ckpt";
  auto loaded = LightningModule::load_from_checkpoint<TinyAE>(f64_file.string());
  const Value stored = checkpoint::load(f64_file.string()).at("state_dict");
  for (const auto& [name, w] : loaded->named_parameters()) {
    EXPECT_EQ(w.dtype(), DType::f32) << name;
    EXPECT_TRUE(test::bit_equal(w, stored.at(name).as_tensor().to(DType::f32))) << name;
  }
  precision = "64-true";
  TrainerOptions ov = opts(1);
  ov.default_root_dir = (root / "validate").string();
  TinyAE judged(hp());
  auto vl = data.val_loader();
  Trainer tv(ov);
  const Metrics m = tv.validate(judged, *vl, ckpt.string());
  EXPECT_TRUE(m.count("val_loss"));
  for (const auto& [name, w] : judged.named_parameters()) EXPECT_EQ(w.dtype(), DType::f64) << name;
}
