// Trainer options that change the loop: max_steps, accumulate_grad_batches, gradient clipping,
// check_val_every_n_epoch, val_check_interval, num_sanity_val_steps, limit_*_batches, min_epochs
// with EarlyStopping-style should_stop, and validate/test/predict.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "ember/nn/nn.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "ember/train/logger.h"
#include "ember/train/trainer.h"

namespace fs = std::filesystem;
using namespace ember;

namespace {

// One Linear layer trained with plain SGD(lr=1); records what the trainer did.
class Probe : public LightningModule {
 public:
  Probe() : LightningModule("Probe") { fc = register_module("fc", std::make_shared<nn::Linear>(4, 4)); }
  Tensor forward(const Tensor& x) override { return fc->forward(x); }
  Tensor training_step(const Batch& b, int64_t) override {
    ++train_steps;
    Tensor loss = mul(mse_loss(forward(b[0]), b[0]), loss_scale);
    log("train_loss", loss);
    return loss;
  }
  void validation_step(const Batch& b, int64_t) override {
    ++val_steps;
    log("val_loss", mse_loss(forward(b[0]), b[0]));
  }
  void test_step(const Batch& b, int64_t) override { log("test_loss", mse_loss(forward(b[0]), b[0])); }
  void on_train_epoch_end() override {
    if (stop_after_epoch >= 0 && trainer()->current_epoch() >= stop_after_epoch) trainer()->should_stop = true;
  }
  OptimizerConfig configure_optimizers() override {
    return std::make_shared<optim::SGD>(named_parameters(), optim::SGDOptions{.lr = 1.0});
  }
  std::shared_ptr<nn::Linear> fc;
  int64_t train_steps = 0, val_steps = 0;
  double loss_scale = 1.0;
  int64_t stop_after_epoch = -1;
};

class TrainerOptions_ : public ::testing::Test {
 protected:
  void SetUp() override {
    root = fs::temp_directory_path() / ("ember_opts_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root);
    Generator g(3);
    data = std::make_shared<data::TensorDataset>(std::vector<Tensor>{rand({40, 4}, {}, &g)});
    manual_seed(0);
  }
  void TearDown() override { fs::remove_all(root); }
  TrainerOptions opts() {
    TrainerOptions o;
    o.default_root_dir = root.string();
    o.enable_progress_bar = false;
    o.enable_checkpointing = false;
    o.max_epochs = 3;
    return o;
  }
  std::unique_ptr<data::DataLoader> loader(int64_t bs = 4) {  // 10 batches of 4
    return std::make_unique<data::DataLoader>(data, data::DataLoaderOptions{.batch_size = bs});
  }
  int64_t logged_count(const Trainer& t, const std::string& key) {
    auto m = read_metrics_csv((fs::path(t.log_dir()) / "metrics.csv").string());
    int64_t n = 0;
    for (double v : m[key]) n += !std::isnan(v);
    return n;
  }
  fs::path root;
  std::shared_ptr<data::TensorDataset> data;
};

}  // namespace

TEST_F(TrainerOptions_, MaxStepsStopsMidEpoch) {
  Probe m;
  auto l = loader();
  TrainerOptions o = opts();
  o.max_epochs = 10;
  o.max_steps = 13;
  Trainer t(o);
  t.fit(m, *l);
  EXPECT_EQ(t.global_step(), 13);
  EXPECT_EQ(m.train_steps, 13);
  EXPECT_EQ(t.current_epoch(), 2);  // epoch 1 ended by the step limit counts as completed
}

TEST_F(TrainerOptions_, AccumulateGradBatchesStepsEveryN) {
  Probe m;
  auto l = loader();
  TrainerOptions o = opts();
  o.accumulate_grad_batches = 3;  // 10 batches: steps after 3, 6, 9 and the last batch
  Trainer t(o);
  t.fit(m, *l);
  EXPECT_EQ(m.train_steps, 30);
  EXPECT_EQ(t.global_step(), 12);
}

TEST_F(TrainerOptions_, GradientClippingBoundsTheUpdate) {
  for (const char* algo : {"norm", "value"}) {
    Probe m;
    m.loss_scale = 1e3;  // huge gradients
    Tensor w0 = m.fc->weight.detach().clone(), b0 = m.fc->bias.detach().clone();
    auto l = loader(40);  // one batch: one step of SGD(lr=1)
    TrainerOptions o = opts();
    o.max_epochs = 1;
    o.gradient_clip_val = 0.5;
    o.gradient_clip_algorithm = algo;
    Trainer t(o);
    t.fit(m, *l);
    Tensor dw = sub(m.fc->weight.detach(), w0), db = sub(m.fc->bias.detach(), b0);
    if (std::string(algo) == "norm") {
      double norm = std::sqrt(sum(mul(dw, dw)).item() + sum(mul(db, db)).item());
      EXPECT_NEAR(norm, 0.5, 1e-4) << algo;  // lr 1: the step is the clipped gradient
    } else {
      EXPECT_LE(max(abs(dw)).item(), 0.5 + 1e-6);
      EXPECT_NEAR(max(abs(dw)).item(), 0.5, 1e-6);  // some element was clipped
    }
  }
}

TEST_F(TrainerOptions_, ValidationCadenceAndSanityCheck) {
  Probe m;
  auto tl = loader(), vl = loader(8);  // 5 validation batches
  TrainerOptions o = opts();
  o.max_epochs = 4;
  o.check_val_every_n_epoch = 2;
  o.limit_val_batches = 3;
  o.num_sanity_val_steps = 2;
  Trainer t(o);
  t.fit(m, *tl, vl.get());
  EXPECT_EQ(m.val_steps, 2 + 2 * 3);        // sanity 2 batches, then epochs 1 and 3 with 3 batches
  EXPECT_EQ(logged_count(t, "val_loss"), 2);  // the sanity check logs nothing
}

TEST_F(TrainerOptions_, ValCheckIntervalWithinEpoch) {
  Probe m;
  auto tl = loader(), vl = loader(8);
  TrainerOptions o = opts();
  o.max_epochs = 1;
  o.num_sanity_val_steps = 0;
  o.val_check_interval = 0.5;  // 10 batches: after batch 5 and at the end
  o.limit_train_batches = 1.0;
  Trainer t(o);
  t.fit(m, *tl, vl.get());
  EXPECT_EQ(m.val_steps, 2 * 5);
  EXPECT_EQ(logged_count(t, "val_loss"), 2);
}

TEST_F(TrainerOptions_, LimitTrainBatchesFractionAndCount) {
  for (BatchLimit lim : {BatchLimit(0.25), BatchLimit(3)}) {
    Probe m;
    auto l = loader();
    TrainerOptions o = opts();
    o.limit_train_batches = lim;
    Trainer t(o);
    t.fit(m, *l);
    EXPECT_EQ(t.global_step(), 3 * (lim.is_count ? 3 : 2));  // floor(10 * 0.25) = 2
  }
  TrainerOptions bad = opts();
  bad.limit_train_batches = 1.5;
  Probe m;
  auto l = loader();
  Trainer t(bad);
  EXPECT_THROW(t.fit(m, *l), Error);
}

TEST_F(TrainerOptions_, ShouldStopRespectsMinEpochs) {
  Probe m;
  m.stop_after_epoch = 0;  // asks to stop at the end of every epoch
  auto l = loader();
  TrainerOptions o = opts();
  o.max_epochs = 10;
  o.min_epochs = 3;
  Trainer t(o);
  t.fit(m, *l);
  EXPECT_EQ(t.current_epoch(), 3);
}

TEST_F(TrainerOptions_, ValidateTestPredict) {
  Probe m;
  auto l = loader(8);
  Trainer t(opts());
  Metrics v = t.validate(m, *l);
  ASSERT_TRUE(v.count("val_loss"));
  double expect;
  {
    NoGradGuard ng;
    Tensor x = data->tensors()[0];
    expect = mse_loss(m.forward(x), x).item();  // equal batches: the batch mean is the overall mean
  }
  EXPECT_NEAR(v.at("val_loss").value, expect, 1e-6);
  Metrics te = t.test(m, *l);
  EXPECT_NEAR(te.at("test_loss").value, expect, 1e-6);
  std::vector<Tensor> out = t.predict(m, *l);
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(out[0].shape(), (Shape{8, 4}));
}
