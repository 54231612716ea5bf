// The README's checkpointing snippets (C++ equivalents of Lightning's docs), compiled and run here.
// Each region between "// [snippet:NAME]" and "// [/snippet]" must appear verbatim in README.md
// (the ReadmeMatches test checks it), so the README never shows code that does not build.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <sstream>

#include "ember/checkpoint/checkpoint.h"
#include "ember/nn/nn.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "ember/train/callbacks.h"
#include "ember/train/data/dataloader.h"
#include "ember/train/module_io.h"
#include "ember/train/trainer.h"
#include "tests/support/check.h"

namespace fs = std::filesystem;

// [snippet:module]
class LitAutoEncoder : public ember::LightningModule {
 public:
  explicit LitAutoEncoder(const ember::HParams& hp) : LightningModule("LitAutoEncoder") {
    save_hyperparameters(hp);  // stored in every checkpoint
    using namespace ember::nn;
    backbone = register_module("backbone", std::make_shared<Sequential>(
        std::make_shared<Linear>(784, 64), std::make_shared<ReLU>(), std::make_shared<Linear>(64, 3),
        std::make_shared<Linear>(3, 64), std::make_shared<ReLU>(), std::make_shared<Linear>(64, 784)));
  }
  ember::Tensor forward(const ember::Tensor& x) override { return backbone->forward(x); }
  ember::Tensor training_step(const ember::Batch& batch, int64_t) override {
    ember::Tensor x = batch[0];
    ember::Tensor loss = ember::mse_loss(forward(x), x);
    log("train_loss", loss);
    return loss;
  }
  void validation_step(const ember::Batch& batch, int64_t) override {
    ember::Tensor x = batch[0];
    ember::Tensor loss = ember::mse_loss(forward(x), x);  // 1. calculate loss
    log("val_loss", loss);                                // 2. log `val_loss`
  }
  ember::OptimizerConfig configure_optimizers() override {
    return std::make_shared<ember::optim::Adam>(
        named_parameters(), ember::optim::AdamOptions{.lr = hparams().get<double>("learning_rate")});
  }
  std::shared_ptr<ember::nn::Sequential> backbone;
};
// [/snippet]

namespace {

class ReadmeSnippets : public ::testing::Test {
 protected:
  void SetUp() override {
    old_cwd = fs::current_path();
    dir = fs::temp_directory_path() / ("ember_readme_" + std::to_string(::getpid()) + "_" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::current_path(dir);
    ember::manual_seed(0);
    auto images = std::make_shared<ember::data::TensorDataset>(std::vector<ember::Tensor>{ember::rand({64, 784})});
    train = std::make_unique<ember::data::DataLoader>(images, ember::data::DataLoaderOptions{.batch_size = 16, .shuffle = true, .seed = 1});
    val = std::make_unique<ember::data::DataLoader>(images, ember::data::DataLoaderOptions{.batch_size = 32});
  }
  void TearDown() override {
    fs::current_path(old_cwd);
    fs::remove_all(dir);
  }
  fs::path old_cwd, dir;
  std::unique_ptr<ember::data::DataLoader> train, val;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_F(ReadmeSnippets, AutomaticSaving) {
  LitAutoEncoder model({{"learning_rate", 1e-3}});
  auto& train_loader = *train;
  auto& val_loader = *val;
  // [snippet:automatic]
  // saves ckpts/ember_logs/version_0/checkpoints/epoch=1-step=8.ckpt at every epoch end
  ember::Trainer trainer({.default_root_dir = "ckpts", .max_epochs = 2});
  trainer.fit(model, train_loader, &val_loader);
  // [/snippet]
  EXPECT_TRUE(fs::exists("ckpts/ember_logs/version_0/checkpoints/epoch=1-step=8.ckpt"));
}

TEST_F(ReadmeSnippets, MonitorValLoss) {
  LitAutoEncoder model({{"learning_rate", 1e-3}});
  auto& train_loader = *train;
  auto& val_loader = *val;
  // [snippet:monitor]
  // 3. ModelCheckpoint monitoring 'val_loss'; 4. pass it to the Trainer's callbacks
  auto checkpoint_callback = std::make_shared<ember::ModelCheckpoint>(ember::ModelCheckpointOptions{.monitor = "val_loss"});
  ember::Trainer trainer({.max_epochs = 2, .callbacks = {checkpoint_callback}});
  trainer.fit(model, train_loader, &val_loader);
  // [/snippet]
  EXPECT_TRUE(fs::exists(checkpoint_callback->best_model_path()));
  EXPECT_TRUE(checkpoint_callback->best_model_score().has_value());
}

TEST_F(ReadmeSnippets, TemplateTopK) {
  LitAutoEncoder model({{"learning_rate", 1e-3}});
  auto& train_loader = *train;
  auto& val_loader = *val;
  // [snippet:topk]
  // saves files like my/path/sample-mnist-epoch=02-val_loss=0.32.ckpt, keeping the 3 best
  auto checkpoint_callback = std::make_shared<ember::ModelCheckpoint>(ember::ModelCheckpointOptions{
      .dirpath = "my/path/",
      .filename = "sample-mnist-{epoch:02d}-{val_loss:.2f}",
      .monitor = "val_loss",
      .save_top_k = 3,
      .mode = "min",
  });
  ember::Trainer trainer({.max_epochs = 5, .callbacks = {checkpoint_callback}});
  trainer.fit(model, train_loader, &val_loader);
  // [/snippet]
  int n = 0;
  for (auto& e : fs::directory_iterator("my/path")) {
    std::string name = e.path().filename().string();
    EXPECT_EQ(name.rfind("sample-mnist-epoch=0", 0), 0u) << name;
    EXPECT_NE(name.find("-val_loss=0."), std::string::npos) << name;
    ++n;
  }
  EXPECT_EQ(n, 3);
}

TEST_F(ReadmeSnippets, AsynchronousSaving) {
  LitAutoEncoder model({{"learning_rate", 1e-3}});
  auto& train_loader = *train;
  auto& val_loader = *val;
  // [snippet:async]
  // a background thread writes the files: a save blocks training only while the state is copied
  ember::Trainer trainer({.max_epochs = 2, .async_checkpointing = true});
  trainer.fit(model, train_loader, &val_loader);  // returns once the last file is committed
  std::cout << trainer.checkpoint_times().max_blocked_s << " s blocked at most\n";
  // [/snippet]
  EXPECT_TRUE(fs::exists("ember_logs/version_0/checkpoints/epoch=1-step=8.ckpt"));
  EXPECT_EQ(trainer.checkpoint_times().async_saves, 2);
}

TEST_F(ReadmeSnippets, MixedPrecision) {
  auto& train_loader = *train;
  auto& val_loader = *val;
  LitAutoEncoder model({{"learning_rate", 1e-3}});
  // [snippet:precision]
  // matmuls and convolutions in bf16 with float32 accumulation; the weights and Adam stay float32
  ember::Trainer trainer({.max_epochs = 2, .precision = "bf16-mixed"});
  trainer.fit(model, train_loader, &val_loader);  // "16-mixed" scales the loss as well
  // [/snippet]
  const auto file = "ember_logs/version_0/checkpoints/epoch=1-step=8.ckpt";
  EXPECT_EQ(ember::checkpoint::load(file).at("precision").as_string(), "bf16-mixed");
  EXPECT_EQ(model.named_parameters()[0].second.dtype(), ember::DType::f32);
}

TEST_F(ReadmeSnippets, ManualSaveAndLoad) {
  auto& train_loader = *train;
  // [snippet:manual]
  LitAutoEncoder model({{"learning_rate", 1e-3}});
  ember::Trainer trainer({.max_epochs = 1});
  trainer.fit(model, train_loader);
  trainer.save_checkpoint("example.ckpt");
  auto new_model = ember::LightningModule::load_from_checkpoint<LitAutoEncoder>("example.ckpt");
  // [/snippet]
  ember::Tensor x = ember::rand({2, 784});
  // [snippet:load]
  auto loaded = ember::LightningModule::load_from_checkpoint<LitAutoEncoder>("example.ckpt");
  std::cout << loaded->hparams().get<double>("learning_rate") << "\n";  // the learning rate used in training
  loaded->eval();
  ember::Tensor y_hat = (*loaded)(x);
  // [/snippet]
  EXPECT_EQ(loaded->hparams().get<double>("learning_rate"), 1e-3);
  ember::NoGradGuard ng;
  ember::Tensor expect = model.eval().forward(x);
  EXPECT_TRUE(ember::test::bit_equal(y_hat, expect));
  EXPECT_TRUE(ember::test::bit_equal(new_model->backbone->at<ember::nn::Linear>(0)->weight,
                                     model.backbone->at<ember::nn::Linear>(0)->weight));
}

TEST_F(ReadmeSnippets, LoadWithoutTheModelsCode) {
  LitAutoEncoder model({{"learning_rate", 1e-3}});
  ember::Trainer trainer({.max_epochs = 1, .enable_progress_bar = false});
  trainer.fit(model, *train);
  trainer.save_checkpoint("example.ckpt");
  ember::Tensor x = ember::rand({2, 784});
  // [snippet:deploy]
  // no LitAutoEncoder here: "backbone" is rebuilt from the module tree stored in the file
  ember::nn::ModulePtr backbone = ember::nn::load_module("example.ckpt", "backbone");  // eval mode
  ember::Tensor y = backbone->forward(x);
  // [/snippet]
  ember::NoGradGuard ng;
  EXPECT_TRUE(ember::test::bit_equal(y, model.eval().forward(x)));
}

TEST_F(ReadmeSnippets, RestoreTrainingState) {
  LitAutoEncoder first({{"learning_rate", 1e-3}});
  ember::Trainer t0({.max_epochs = 86, .limit_train_batches = 1, .enable_progress_bar = false});
  t0.fit(first, *train);  // writes epoch=85-step=86.ckpt
  fs::copy_file("ember_logs/version_0/checkpoints/epoch=85-step=86.ckpt", "epoch=85.ckpt");
  LitAutoEncoder model({{"learning_rate", 1e-3}});
  auto& train_loader = *train;
  // [snippet:resume]
  // restores weights, optimizer moments, schedulers, epoch, global step, RNG and data position;
  // a checkpoint written at the end of epoch index 85 continues with epochs 86..89
  ember::Trainer trainer({.max_epochs = 90, .limit_train_batches = 1});
  trainer.fit(model, train_loader, nullptr, "epoch=85.ckpt");
  // [/snippet]
  EXPECT_EQ(trainer.current_epoch(), 90);
  EXPECT_EQ(trainer.global_step(), 90);
}

TEST(ReadmeSnippetsText, ReadmeMatches) {
  fs::path src = fs::path(EMBER_TEST_DATA_DIR) / "readme" / "test_readme_snippets.cpp";
  fs::path readme = fs::path(EMBER_TEST_DATA_DIR).parent_path() / "README.md";
  std::string code = read_file(src), doc = read_file(readme);
  ASSERT_FALSE(code.empty());
  ASSERT_FALSE(doc.empty()) << readme;
  // Markers are whole lines: "// [snippet:name]" ... "// [/snippet]".
  std::regex open_re(R"(^( *)// \[snippet:([a-z_]+)\]$)"), close_re(R"(^ *// \[/snippet\]$)");
  std::stringstream lines(code);
  std::string line, name, body;
  size_t indent = 0;
  bool inside = false;
  int count = 0;
  while (std::getline(lines, line)) {
    std::smatch m;
    if (!inside && std::regex_match(line, m, open_re)) {
      inside = true;
      indent = m[1].length();
      name = m[2];
      body.clear();
    } else if (inside && std::regex_match(line, close_re)) {
      inside = false;
      ++count;
      // README shows the snippet dedented by its marker's indentation
      EXPECT_NE(doc.find(body), std::string::npos) << "README.md lacks snippet '" << name << "':\n" << body;
    } else if (inside) {
      body += (line.size() >= indent ? line.substr(indent) : line) + "\n";
    }
  }
  EXPECT_FALSE(inside) << "unterminated snippet '" << name << "'";
  EXPECT_EQ(count, 10);
}
