// The trainer's checkpoints carry the LightningModule's module tree: the module itself (not
// registered) is recorded by name, and its registered submodule rebuilds from the file alone,
// with the trained weights. Files keep loading through load_from_checkpoint as before.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "ember/checkpoint/checkpoint.h"
#include "ember/nn/nn.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"
#include "ember/train/module_io.h"
#include "ember/train/trainer.h"

namespace fs = std::filesystem;
using namespace ember;

namespace {

class TreeNet : public LightningModule {
 public:
  explicit TreeNet(const HParams& hp) : LightningModule("TreeNet") {
    save_hyperparameters(hp);
    net = register_module("net", std::make_shared<nn::Sequential>(
                                      std::make_shared<nn::Linear>(8, 12), std::make_shared<nn::BatchNorm1d>(12),
                                      std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(12, 8)));
  }
  Tensor forward(const Tensor& x) override { return net->forward(x); }
  Tensor training_step(const Batch& b, int64_t) override { return mse_loss(forward(b[0]), b[0]); }
  OptimizerConfig configure_optimizers() override {
    return std::make_shared<optim::Adam>(named_parameters(),
                                         optim::AdamOptions{.lr = hparams().get<double>("learning_rate")});
  }
  std::shared_ptr<nn::Sequential> net;
};

// forward = head(body(x)) over two registered children; inference_module() says so with a
// Sequential of the same children, or (bad = true) with a Sequential that lacks the head or holds
// fresh modules of the same shapes.
class TwoPartNet : public LightningModule {
 public:
  enum class Inference { Same, MissingHead, OtherTensors };
  explicit TwoPartNet(Inference inference = Inference::Same) : LightningModule("TwoPartNet"), inference_(inference) {
    body = register_module("body", std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(8, 6),
                                                                     std::make_shared<nn::BatchNorm1d>(6),
                                                                     std::make_shared<nn::Tanh>()));
    head = register_module("head", std::make_shared<nn::Linear>(6, 8));
  }
  Tensor forward(const Tensor& x) override { return head->forward(body->forward(x)); }
  Tensor training_step(const Batch& b, int64_t) override { return mse_loss(forward(b[0]), b[0]); }
  OptimizerConfig configure_optimizers() override {
    return std::make_shared<optim::SGD>(named_parameters(), optim::SGDOptions{.lr = 0.1});
  }
  std::shared_ptr<const nn::Module> inference_module() const override {
    using Named = std::vector<std::pair<std::string, nn::ModulePtr>>;
    switch (inference_) {
      case Inference::Same: return std::make_shared<nn::Sequential>(Named{{"body", body}, {"head", head}});
      case Inference::MissingHead: return std::make_shared<nn::Sequential>(Named{{"body", body}});
      case Inference::OtherTensors: break;
    }
    return std::make_shared<nn::Sequential>(Named{{"body", body}, {"head", std::make_shared<nn::Linear>(6, 8)}});
  }
  std::shared_ptr<nn::Sequential> body;
  std::shared_ptr<nn::Linear> head;

 private:
  Inference inference_;
};

class TrainerModuleTree : public ::testing::Test {
 protected:
  void SetUp() override {
    root = fs::temp_directory_path() / ("ember_module_tree_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root);
    fs::create_directories(root);
  }
  void TearDown() override { fs::remove_all(root); }
  // Fits a TreeNet for two epochs; returns it.
  std::shared_ptr<TreeNet> fit(Trainer& trainer) {
    Generator g(5);
    auto ds = std::make_shared<data::TensorDataset>(std::vector<Tensor>{rand({32, 8}, {}, &g)});
    data::DataLoader loader(ds, data::DataLoaderOptions{.batch_size = 8, .shuffle = true, .seed = 3});
    auto model = std::make_shared<TreeNet>(HParams{{"learning_rate", 0.01}});
    trainer.fit(*model, loader);
    return model;
  }
  TrainerOptions opts() {
    TrainerOptions o;
    o.default_root_dir = root.string();
    o.max_epochs = 2;
    o.enable_progress_bar = false;
    o.seed = 1;
    return o;
  }
  fs::path root;
};

}  // namespace

TEST_F(TrainerModuleTree, CheckpointHoldsTheTreeAndTheRegisteredSubtreeLoads) {
  Trainer trainer(opts());
  auto model = fit(trainer);
  const std::string path = (root / "fit.ckpt").string();
  trainer.save_checkpoint(path);

  Value section = checkpoint::Reader(path).section(checkpoint::kModuleTree);
  EXPECT_EQ(section.at("version"), Value(nn::kModuleTreeVersion));
  const Value& tree = section.at("root");
  EXPECT_EQ(tree, nn::describe(*model));
  EXPECT_EQ(tree.at("type"), Value("TreeNet"));
  EXPECT_TRUE(tree.at("options").is_null());  // a LightningModule the program did not register
  EXPECT_EQ(tree.at("children"), Value(ValueList{"net"}));
  EXPECT_EQ(nn::subtree(tree, "net.1").at("type"), Value("BatchNorm1d"));

  // The whole module needs its own code; its registered "net" needs nothing but the file.
  std::string err = test::error_of([&] { nn::load_module(path); });
  EXPECT_NE(err.find("[nn::build] module type 'TreeNet' at the root was not registered when its tree was written"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("its children [net] can be built on their own"), std::string::npos) << err;
  auto net = nn::load_module_as<nn::Sequential>(path, "net");
  model->eval();
  Tensor x = randn({4, 8});
  EXPECT_TRUE(test::bit_equal(net->forward(x), model->forward(x)));
  EXPECT_EQ(net->at<nn::BatchNorm1d>(1)->num_batches_tracked.item<int64_t>(), 8);  // 2 epochs x 4 batches

  // load_from_checkpoint reads the same file as before.
  auto again = LightningModule::load_from_checkpoint<TreeNet>(path);
  again->eval();
  EXPECT_TRUE(test::bit_equal(again->forward(x), model->forward(x)));
}

TEST_F(TrainerModuleTree, AutomaticAndWeightsOnlyCheckpointsCarryTheTree) {
  Trainer trainer(opts());
  auto model = fit(trainer);
  const fs::path dir = root / "ember_logs" / "version_0" / "checkpoints";
  ASSERT_TRUE(fs::exists(dir / "epoch=1-step=8.ckpt"));
  EXPECT_EQ(checkpoint::Reader((dir / "epoch=1-step=8.ckpt").string()).section(checkpoint::kModuleTree).at("root"),
            nn::describe(*model));
  const std::string weights = (root / "weights.ckpt").string();
  trainer.save_checkpoint(weights, /*weights_only=*/true);
  checkpoint::Reader r(weights);
  EXPECT_TRUE(r.weights_only());
  EXPECT_TRUE(r.has_section(checkpoint::kModuleTree));  // not a training section
  Tensor x = randn({2, 8});
  model->eval();
  EXPECT_TRUE(test::bit_equal(nn::load_module(weights, "net")->forward(x), model->forward(x)));
}

TEST_F(TrainerModuleTree, InferenceModuleMakesTheWholeModelLoadable) {
  Trainer trainer(opts());
  Generator g(5);
  auto ds = std::make_shared<data::TensorDataset>(std::vector<Tensor>{rand({32, 8}, {}, &g)});
  data::DataLoader loader(ds, data::DataLoaderOptions{.batch_size = 8, .shuffle = true, .seed = 3});
  TwoPartNet model;
  trainer.fit(model, loader);
  const std::string path = (root / "two.ckpt").string();
  trainer.save_checkpoint(path);

  const Value tree = checkpoint::Reader(path).section(checkpoint::kModuleTree).at("root");
  EXPECT_EQ(tree, nn::describe(*model.inference_module()));
  EXPECT_EQ(tree.at("type"), Value("Sequential"));
  EXPECT_EQ(tree.at("children"), Value(ValueList{"body", "head"}));
  // The whole model rebuilds from the file alone, with the state_dict names the trainer wrote.
  auto loaded = nn::load_module_as<nn::Sequential>(path);
  model.eval();
  Tensor x = randn({5, 8});
  EXPECT_TRUE(test::bit_equal(loaded->forward(x), model.forward(x)));
  EXPECT_TRUE(test::bit_equal(nn::load_module(path, "head")->forward(x.narrow(1, 0, 6)),
                              model.head->forward(x.narrow(1, 0, 6))));
}

TEST_F(TrainerModuleTree, InferenceModuleMustHoldTheModelsOwnTensors) {
  Generator g(5);
  auto ds = std::make_shared<data::TensorDataset>(std::vector<Tensor>{rand({16, 8}, {}, &g)});
  data::DataLoader loader(ds, data::DataLoaderOptions{.batch_size = 8});
  for (auto [inference, why] : {std::pair{TwoPartNet::Inference::MissingHead, "has 7 entries where the module has 9"},
                                std::pair{TwoPartNet::Inference::OtherTensors, "holds another tensor under 'head.weight'"}}) {
    TrainerOptions o = opts();
    o.max_epochs = 1;
    o.enable_checkpointing = false;
    Trainer trainer(o);
    TwoPartNet model(inference);
    trainer.fit(model, loader);
    const std::string path = (root / "bad.ckpt").string();
    std::string err = test::error_of([&] { trainer.save_checkpoint(path); });
    EXPECT_NE(err.find("[Trainer.save_checkpoint] TwoPartNet::inference_module() returned a Sequential whose "
                       "state_dict " + std::string(why)),
              std::string::npos)
        << err;
    EXPECT_FALSE(fs::exists(path));
  }
}
