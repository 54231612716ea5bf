// nn::save / nn::load_module: every built-in layer, container and loss (with non-default options)
// rebuilt from the file alone gives bit-identical outputs; a user module registered with
// EMBER_REGISTER_MODULE round-trips; unregistered types, files without a module tree and newer
// tree layouts fail with clear errors; submodules load by their dotted names.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>

#include "ember/checkpoint/checkpoint.h"
#include "ember/nn/nn.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"
#include "ember/train/module_io.h"

namespace fs = std::filesystem;
using namespace ember;
using test::error_of;

namespace {

// The module of nn/README.md: makes its own children from its options.
class Block : public nn::Module {
 public:
  Block(int64_t dim, double p) : Module("Block"), dim(dim), p(p) {
    fc = register_module("fc", std::make_shared<nn::Linear>(dim, dim));
    drop = register_module("drop", std::make_shared<nn::Dropout>(p));
  }
  Tensor forward(const Tensor& x) override { return x + drop->forward(fc->forward(x)); }
  int64_t dim;
  double p;
  std::shared_ptr<nn::Linear> fc;
  std::shared_ptr<nn::Dropout> drop;
};

EMBER_REGISTER_MODULE(Block, "Block",
    [](const Block& m) { return ValueMap{{"dim", m.dim}, {"p", m.p}}; },
    [](const nn::ModuleOptions& o) { return std::make_shared<Block>(o.get<int64_t>("dim"), o.get<double>("p")); });

// A container of its own: its child comes from the tree; `scale` multiplies the child's output.
class Scaled : public nn::Module {
 public:
  Scaled(nn::ModulePtr body, double scale) : Module("Scaled"), scale(scale) { add_module("body", std::move(body)); }
  Tensor forward(const Tensor& x) override { return children()[0]->forward(x) * scale; }
  double scale;
};

ValueMap write_scaled(const Scaled& m) { return ValueMap{{"scale", m.scale}}; }
std::shared_ptr<Scaled> read_scaled(const nn::ModuleOptions& o) {
  return std::make_shared<Scaled>(o.child("body"), o.get<double>("scale"));
}
EMBER_REGISTER_MODULE(Scaled, "Scaled", write_scaled, read_scaled);

// Not registered.
class Mystery : public nn::Module {
 public:
  Mystery() : Module("Mystery") { register_module("proj", std::make_shared<nn::Linear>(3, 3)); }
  Tensor forward(const Tensor& x) override { return children()[0]->forward(x); }
};

class ModuleIO : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("ember_module_io_" + std::to_string(::getpid()) + "_" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  std::string file(const std::string& name) const { return (dir / name).string(); }
  fs::path dir;
};

// Saves `model` (in eval mode), loads it back and checks: same tree, same state dict bit for bit,
// same repr, eval mode, and the same output for `run` bit for bit.
void expect_round_trip(const std::string& path, const nn::ModulePtr& model,
                       const std::function<Tensor(nn::Module&)>& run) {
  model->eval();
  Tensor want = run(*model);
  nn::save(*model, path);
  nn::ModulePtr loaded = nn::load_module(path);
  ASSERT_NE(loaded, nullptr);
  EXPECT_EQ(nn::describe(*loaded), nn::describe(*model));
  EXPECT_EQ(loaded->repr(), model->repr());
  EXPECT_FALSE(loaded->is_training());
  auto a = model->state_dict(), b = loaded->state_dict();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(test::bit_equal(a[i].second, b[i].second)) << a[i].first;
  }
  EXPECT_TRUE(test::bit_equal(run(*loaded), want));
}

std::function<Tensor(nn::Module&)> on(Tensor x) {
  return [x](nn::Module& m) { return m.forward(x); };
}

// Runs a few training-mode batches through m so that BatchNorm's running statistics (and
// num_batches_tracked) are far from their initial values.
void train_batches(nn::Module& m, const Shape& shape) {
  m.train();
  NoGradGuard no_grad;
  for (int i = 0; i < 3; ++i) m.forward(randn(shape) * 3.0 + 1.5);
}

}  // namespace

TEST_F(ModuleIO, EveryBuiltinLayerRoundTripsBitIdentical) {
  manual_seed(7);
  Tensor flat = randn({4, 6});
  Tensor image = randn({2, 4, 9, 8});
  Tensor small_image = randn({2, 4, 5, 5});
  struct Case {
    const char* name;
    nn::ModulePtr model;
    Tensor input;
  };
  std::vector<Case> cases = {
      {"Identity", std::make_shared<nn::Identity>(), flat},
      {"Linear", std::make_shared<nn::Linear>(6, 3), flat},
      {"Linear-nobias", std::make_shared<nn::Linear>(6, 5, false), flat},
      {"Conv1d", std::make_shared<nn::Conv1d>(4, 6, 3, 2, 1, 2, 2, false), randn({2, 4, 11})},
      {"Conv1d-unbatched", std::make_shared<nn::Conv1d>(4, 3, 2), randn({4, 7})},
      {"Conv2d", std::make_shared<nn::Conv2d>(4, 6, nn::Size2(3, 2), 2, nn::Size2(1, 0), 1, 2, false), image},
      {"Conv2d-dilated", std::make_shared<nn::Conv2d>(4, 3, 3, 1, 2, 2), image},
      {"ConvTranspose2d", std::make_shared<nn::ConvTranspose2d>(4, 6, 3, 2, 1, 1, 2, true, 1), small_image},
      {"ConvTranspose2d-dilated", std::make_shared<nn::ConvTranspose2d>(4, 2, nn::Size2(2, 3), 1, 0, 0, 1, false, 2),
       small_image},
      {"MaxPool2d", std::make_shared<nn::MaxPool2d>(3, 2, 1, 1, true), image},
      {"MaxPool2d-pair", std::make_shared<nn::MaxPool2d>(nn::Size2(2, 3)), image},
      {"AvgPool2d", std::make_shared<nn::AvgPool2d>(3, 2, 1, true, false), image},
      {"Dropout", std::make_shared<nn::Dropout>(0.3), flat},
      {"Embedding", std::make_shared<nn::Embedding>(10, 4, -1),
       test::make_tensor({0, 9, 3, 3, 7, 1, 9, 2, 5, 0, 4, 8, 6, 9, 1}, {3, 5}, DType::i64)},
      {"Flatten", std::make_shared<nn::Flatten>(0, 1), image},
      {"Unflatten", std::make_shared<nn::Unflatten>(1, std::vector<int64_t>{2, -1}), flat},
      {"ReLU", std::make_shared<nn::ReLU>(), flat},
      {"LeakyReLU", std::make_shared<nn::LeakyReLU>(0.2), flat},
      {"Sigmoid", std::make_shared<nn::Sigmoid>(), flat},
      {"Tanh", std::make_shared<nn::Tanh>(), flat},
      {"GELU", std::make_shared<nn::GELU>("tanh"), flat},
      {"Softmax", std::make_shared<nn::Softmax>(0), flat},
      {"BatchNorm1d", std::make_shared<nn::BatchNorm1d>(6, 1e-3, 0.3), flat},
      {"BatchNorm1d-cumulative", std::make_shared<nn::BatchNorm1d>(6, 1e-5, std::nullopt, false), flat},
      {"BatchNorm1d-untracked", std::make_shared<nn::BatchNorm1d>(6, 1e-5, 0.1, true, false), flat},
      {"BatchNorm2d", std::make_shared<nn::BatchNorm2d>(4, 1e-4, 0.5, false), image},
      {"LayerNorm", std::make_shared<nn::LayerNorm>(std::vector<int64_t>{9, 8}, 1e-6, false), image},
      {"LayerNorm-affine", std::make_shared<nn::LayerNorm>(6), flat},
  };
  for (auto& c : cases) {
    SCOPED_TRACE(c.name);
    if (c.model->type_name().rfind("BatchNorm", 0) == 0) train_batches(*c.model, c.input.shape());
    // Parameters away from their initial values (LayerNorm's ones and zeros, BatchNorm's too).
    {
      NoGradGuard no_grad;
      for (Tensor p : c.model->parameters()) p.add_(randn(p.shape()), 0.1);
    }
    expect_round_trip(file(std::string(c.name) + ".ckpt"), c.model, on(c.input));
  }
}

TEST_F(ModuleIO, NestedContainersRoundTripBitIdentical) {
  manual_seed(11);
  auto model = std::make_shared<nn::Sequential>(std::vector<std::pair<std::string, nn::ModulePtr>>{
      {"encoder", std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(6, 8),
                                                   std::make_shared<nn::BatchNorm1d>(8), std::make_shared<nn::GELU>())},
      {"mid", std::make_shared<nn::Sequential>(std::make_shared<nn::Sequential>(std::make_shared<nn::LeakyReLU>(0.3)),
                                               std::make_shared<nn::Dropout>(0.1))},
      {"head", std::make_shared<nn::Linear>(8, 2)}});
  train_batches(*model, {16, 6});
  Tensor x = randn({5, 6});
  expect_round_trip(file("nested.ckpt"), model, on(x));
  // The loaded encoder is a Sequential whose children are the same types.
  auto loaded = nn::load_module_as<nn::Sequential>(file("nested.ckpt"));
  auto encoder = loaded->at<nn::Sequential>(0);
  EXPECT_EQ(encoder->at<nn::BatchNorm1d>(1)->num_batches_tracked.item<int64_t>(), 3);

  // A ModuleList (no forward of its own) holding a Sequential and another ModuleList.
  auto list = std::make_shared<nn::ModuleList>(std::vector<nn::ModulePtr>{
      std::make_shared<nn::Linear>(6, 4),
      std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(6, 4), std::make_shared<nn::Tanh>()),
      std::make_shared<nn::ModuleList>(std::vector<nn::ModulePtr>{std::make_shared<nn::Linear>(6, 4, false)})});
  auto run_list = [x](nn::Module& m) {
    auto& l = dynamic_cast<nn::ModuleList&>(m);
    return cat({l[0]->forward(x), l[1]->forward(x), l.at<nn::ModuleList>(2)->operator[](0)->forward(x)}, 1);
  };
  expect_round_trip(file("list.ckpt"), list, run_list);

  // A ModuleDict keeps its names and their order.
  auto dict = std::make_shared<nn::ModuleDict>(std::vector<std::pair<std::string, nn::ModulePtr>>{
      {"proj", std::make_shared<nn::Linear>(6, 4)},
      {"act", std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(6, 2), std::make_shared<nn::ReLU>())}});
  auto run_dict = [x](nn::Module& m) {
    auto& d = dynamic_cast<nn::ModuleDict&>(m);
    EXPECT_EQ(d.keys(), (std::vector<std::string>{"proj", "act"}));
    return cat({d["proj"]->forward(x), d.at<nn::Sequential>("act")->forward(x)}, 1);
  };
  expect_round_trip(file("dict.ckpt"), dict, run_dict);
}

TEST_F(ModuleIO, EveryLossRoundTripsBitIdentical) {
  manual_seed(3);
  Tensor pred = randn({6, 4}), target = randn({6, 4});
  Tensor prob = sigmoid(randn({6, 4})), label = rand({6, 4});
  Tensor logits = randn({6, 4}), classes = test::make_tensor({0, 3, 1, 2, 1, 3}, {6}, DType::i64);
  auto two = [](Tensor a, Tensor b) {
    return [a, b](nn::Module& m) { return dynamic_cast<nn::Loss&>(m)(a, b); };
  };
  Tensor w = rand({4}) + 0.5, pw = rand({4}) + 0.5;
  struct Case {
    const char* name;
    nn::ModulePtr model;
    std::function<Tensor(nn::Module&)> run;
  };
  std::vector<Case> cases = {
      {"MSELoss", std::make_shared<nn::MSELoss>(Reduction::Sum), two(pred, target)},
      {"L1Loss", std::make_shared<nn::L1Loss>(Reduction::None), two(pred, target)},
      {"SmoothL1Loss", std::make_shared<nn::SmoothL1Loss>(Reduction::Mean, 0.5), two(pred, target)},
      {"BCELoss", std::make_shared<nn::BCELoss>(w, Reduction::Sum), two(prob, label)},
      {"BCELoss-plain", std::make_shared<nn::BCELoss>(), two(prob, label)},
      {"BCEWithLogitsLoss", std::make_shared<nn::BCEWithLogitsLoss>(w, Reduction::None, pw), two(logits, label)},
      {"CrossEntropyLoss", std::make_shared<nn::CrossEntropyLoss>(w, 1, Reduction::Mean, 0.1), two(logits, classes)},
      {"NLLLoss", std::make_shared<nn::NLLLoss>(w, 2, Reduction::Sum), two(log_softmax(logits, 1), classes)},
  };
  for (auto& c : cases) {
    SCOPED_TRACE(c.name);
    expect_round_trip(file(std::string(c.name) + ".ckpt"), c.model, c.run);
  }
}

TEST_F(ModuleIO, RegisteredUserModulesRoundTrip) {
  manual_seed(5);
  auto model = std::make_shared<nn::Sequential>(std::make_shared<Block>(6, 0.25),
                                                std::make_shared<Scaled>(std::make_shared<Block>(6, 0.5), 0.75),
                                                std::make_shared<nn::Linear>(6, 2));
  expect_round_trip(file("user.ckpt"), model, on(randn({3, 6})));
  auto loaded = nn::load_module_as<nn::Sequential>(file("user.ckpt"));
  EXPECT_DOUBLE_EQ(loaded->at<Scaled>(1)->scale, 0.75);
  EXPECT_DOUBLE_EQ(loaded->at<Block>(0)->p, 0.25);
  EXPECT_EQ(error_of([&] { nn::load_module_as<Block>(file("user.ckpt")); }),
            "[nn::load_module] '" + file("user.ckpt") + "': the module at the root is a Sequential, not the "
            "requested type");
}

TEST_F(ModuleIO, UnregisteredTypeFailsWithItsNameAndRegisteredSiblingsStillLoad) {
  manual_seed(9);
  auto model = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(3, 3), std::make_shared<Mystery>());
  nn::save(*model, file("mystery.ckpt"));
  std::string err = error_of([&] { nn::load_module(file("mystery.ckpt")); });
  EXPECT_NE(err.find("[nn::load_module] '" + file("mystery.ckpt") + "': [nn::build] module type 'Mystery' at '1' "
                     "was not registered when its tree was written"),
            std::string::npos)
      << err;
  // Its registered pieces load by their dotted names, with their own weights.
  Tensor x = randn({2, 3});
  model->eval();
  auto proj = nn::load_module(file("mystery.ckpt"), "1.proj");
  EXPECT_TRUE(test::bit_equal(proj->forward(x), model->at<Mystery>(1)->forward(x)));
  auto first = nn::load_module_as<nn::Linear>(file("mystery.ckpt"), "0");
  EXPECT_TRUE(test::bit_equal(first->forward(x), (*model)[0]->forward(x)));
}

TEST_F(ModuleIO, FileWithoutTreeFailsClearlyButLoadsThroughLoadStateDict) {
  manual_seed(2);
  auto model = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(4, 3), std::make_shared<nn::ReLU>());
  checkpoint::save(file("old.ckpt"), Value(ValueMap{{checkpoint::kStateDict, model->state_dict_value()}}));
  EXPECT_EQ(error_of([&] { nn::load_module(file("old.ckpt")); }),
            "[nn::load_module] '" + file("old.ckpt") + "' was written without a module tree (it has no "
            "'module_tree' section: an older file, or one not written by nn::save or the Trainer), so the model "
            "cannot be rebuilt from the file alone; build it with the code that made it and load the weights with "
            "load_state_dict (LightningModule::load_from_checkpoint for a trainer checkpoint)");
  manual_seed(99);
  auto rebuilt = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(4, 3), std::make_shared<nn::ReLU>());
  rebuilt->load_state_dict(checkpoint::load(file("old.ckpt")).at(checkpoint::kStateDict));
  Tensor x = randn({2, 4});
  EXPECT_TRUE(test::bit_equal(rebuilt->forward(x), model->forward(x)));
}

TEST_F(ModuleIO, SubmodulesLoadByDottedNameWithTheirPrefixRemoved) {
  manual_seed(4);
  auto model = std::make_shared<nn::Sequential>(
      std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(4, 5), std::make_shared<nn::BatchNorm1d>(5)),
      std::make_shared<nn::Linear>(5, 2));
  train_batches(*model, {8, 4});
  model->eval();
  nn::save(*model, file("m.ckpt"));
  Tensor x = randn({3, 4});
  auto inner = nn::load_module(file("m.ckpt"), "0");
  EXPECT_FALSE(inner->is_training());
  EXPECT_TRUE(test::bit_equal(inner->forward(x), (*model)[0]->forward(x)));
  std::vector<std::string> names;
  for (auto& [n, t] : inner->state_dict()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                             "1.running_var", "1.num_batches_tracked"}));
  auto bn = nn::load_module_as<nn::BatchNorm1d>(file("m.ckpt"), "0.1");
  EXPECT_TRUE(test::bit_equal(bn->running_var, model->at<nn::Sequential>(0)->at<nn::BatchNorm1d>(1)->running_var));
  EXPECT_EQ(error_of([&] { nn::load_module(file("m.ckpt"), "2"); }),
            "[nn::load_module] '" + file("m.ckpt") + "': [nn::subtree] Sequential at the root has no child '2' (its "
            "children: [0, 1])");
}

TEST_F(ModuleIO, FloatingDtypeFollowsTheStoredWeights) {
  manual_seed(6);
  auto model = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(4, 3), std::make_shared<nn::LayerNorm>(3));
  model->to(DType::f64);
  expect_round_trip(file("f64.ckpt"), model, on(randn({2, 4}, TensorOptions(DType::f64))));
  EXPECT_EQ(nn::load_module(file("f64.ckpt"))->parameters()[0].dtype(), DType::f64);
}

TEST_F(ModuleIO, TreeAndWeightsMustAgree) {
  auto model = std::make_shared<nn::Linear>(4, 3);
  Value tree = nn::module_tree_section(*model);
  tree["root"]["options"]["out_features"] = 5;  // the weights in the file are (3, 4)
  checkpoint::save(file("bad.ckpt"), Value(ValueMap{{checkpoint::kStateDict, model->state_dict_value()},
                                                    {checkpoint::kModuleTree, tree}}));
  std::string err = error_of([&] { nn::load_module(file("bad.ckpt")); });
  EXPECT_NE(err.find("[nn::load_module] '" + file("bad.ckpt") + "': [load_state_dict] 2 problem(s)"), std::string::npos)
      << err;
  EXPECT_NE(err.find("shape mismatch for \"weight\": state dict has (3, 4), model has (5, 4)"), std::string::npos)
      << err;
}

TEST_F(ModuleIO, NewerTreeLayoutIsRefused) {
  nn::Linear model(2, 2);
  Value tree = nn::module_tree_section(model);
  EXPECT_EQ(tree.at("version"), Value(nn::kModuleTreeVersion));
  tree["version"] = nn::kModuleTreeVersion + 1;
  checkpoint::save(file("new.ckpt"), Value(ValueMap{{checkpoint::kStateDict, model.state_dict_value()},
                                                    {checkpoint::kModuleTree, tree}}));
  EXPECT_EQ(error_of([&] { nn::load_module(file("new.ckpt")); }),
            "[nn::load_module] '" + file("new.ckpt") + "': the 'module_tree' section has layout version 2; this "
            "Ember reads versions 1 to 1 (a newer Ember wrote it)");
}

TEST_F(ModuleIO, SaveWritesAWeightsOnlyFileWithBothSections) {
  nn::Linear model(2, 3);
  nn::save(model, file("w.ckpt"));
  checkpoint::Reader r(file("w.ckpt"));
  EXPECT_TRUE(r.weights_only());
  EXPECT_TRUE(r.has_section(checkpoint::kStateDict));
  EXPECT_TRUE(r.has_section(checkpoint::kModuleTree));
  EXPECT_EQ(r.section(checkpoint::kModuleTree).at("root"), nn::describe(model));
}

TEST_F(ModuleIO, GoldenFilesFromBeforeTheTreeLoadAsBeforeAndAreRefusedClearly) {
  // Format 1.0 files written before the module_tree section existed.
  const std::string path = std::string(EMBER_TEST_DATA_DIR) + "/checkpoint/golden/v1_0_trainer.ckpt";
  checkpoint::Reader r(path);
  EXPECT_FALSE(r.has_section(checkpoint::kModuleTree));
  std::string err = error_of([&] { nn::load_module(path); });
  EXPECT_NE(err.find("[nn::load_module] '" + path + "' was written without a module tree"), std::string::npos) << err;
  EXPECT_FALSE(nn::state_dict_from_value(r.section(checkpoint::kStateDict)).empty());
}

TEST_F(ModuleIO, LoadingDrawsNothingFromTheGenerator) {
  manual_seed(3);
  auto net = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(6, 5), std::make_shared<nn::ReLU>(),
                                              std::make_shared<nn::Embedding>(9, 4));
  const std::string path = file("gen.ckpt");
  nn::save(*net, path);
  const std::vector<uint8_t> before = default_generator().get_state();
  nn::ModulePtr loaded = nn::load_module(path);
  EXPECT_EQ(default_generator().get_state(), before);  // building skipped the random initial values
  for (const auto& [name, t] : net->state_dict()) {
    bool found = false;
    for (const auto& [n2, t2] : loaded->state_dict())
      if (n2 == name) found = test::bit_equal(t2, t);
    EXPECT_TRUE(found) << name;
  }
  EXPECT_FALSE(nn::init::random_init_skipped());
}
