// Module trees without files: the built-in registry under PyTorch's names, describe()'s layout,
// build() of nested containers and of user modules, and build()'s errors (each names the module's
// path, its type and the offending key).
#include <gtest/gtest.h>

#include <algorithm>

#include "ember/nn/nn.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"

using namespace ember;
using test::error_of;

namespace {

// A user module that makes its own children from its options (as most models do).
class TwoLayer : public nn::Module {
 public:
  TwoLayer(int64_t in, int64_t hidden, std::string act) : Module("TwoLayer"), in(in), hidden(hidden), act(act) {
    fc = register_module("fc", std::make_shared<nn::Linear>(in, hidden));
    if (act == "tanh") register_module("act", std::make_shared<nn::Tanh>());
    else register_module("act", std::make_shared<nn::ReLU>());
  }
  Tensor forward(const Tensor& x) override { return children()[1]->forward(fc->forward(x)); }
  int64_t in, hidden;
  std::string act;
  std::shared_ptr<nn::Linear> fc;
};

EMBER_REGISTER_MODULE(
    TwoLayer, "TwoLayer",
    [](const TwoLayer& m) { return ValueMap{{"in", m.in}, {"hidden", m.hidden}, {"act", m.act}}; },
    [](const nn::ModuleOptions& o) {
      return std::make_shared<TwoLayer>(o.get<int64_t>("in"), o.get<int64_t>("hidden"), o.get<std::string>("act"));
    });

// Not registered anywhere.
class Mystery : public nn::Module {
 public:
  Mystery() : Module("Mystery") { register_module("inner", std::make_shared<nn::Linear>(2, 2)); }
};

// A Sequential of a Linear and whatever `second` is.
std::shared_ptr<nn::Sequential> pair_with(nn::ModulePtr second) {
  return std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{std::make_shared<nn::Linear>(4, 3), second});
}

// The node of child `name` in a tree (mutable, to break it).
Value& child_node(Value& tree, const std::string& name) { return tree["modules"][name]; }

}  // namespace

TEST(Serialize, EveryBuiltinIsRegisteredUnderPyTorchsClassName) {
  std::vector<std::string> names = nn::registered_module_types();
  for (const char* want :
       {"Linear", "Conv1d", "Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "Dropout", "Embedding", "Flatten", "Unflatten",
        "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "Identity", "BatchNorm1d", "BatchNorm2d",
        "LayerNorm", "Sequential", "ModuleList", "ModuleDict", "MSELoss", "L1Loss", "SmoothL1Loss", "BCELoss", "BCEWithLogitsLoss",
        "CrossEntropyLoss", "NLLLoss", "TwoLayer"})
    EXPECT_TRUE(std::find(names.begin(), names.end(), want) != names.end()) << want;
  EXPECT_TRUE(nn::is_registered_module_type("Linear"));
  EXPECT_FALSE(nn::is_registered_module_type("Mystery"));
}

TEST(Serialize, DescribeRecordsTypeOptionsAndChildrenInOrder) {
  nn::Sequential seq(std::vector<std::pair<std::string, nn::ModulePtr>>{
      {"enc", std::make_shared<nn::Linear>(4, 3, false)}, {"act", std::make_shared<nn::LeakyReLU>(0.2)}});
  Value empty_children{ValueList{}};
  Value empty_modules{ValueMap{}};
  Value linear(ValueMap{{"type", "Linear"},
                        {"options", ValueMap{{"in_features", 4}, {"out_features", 3}, {"bias", false}}},
                        {"children", empty_children},
                        {"modules", empty_modules}});
  Value leaky(ValueMap{{"type", "LeakyReLU"},
                       {"options", ValueMap{{"negative_slope", 0.2}}},
                       {"children", empty_children},
                       {"modules", empty_modules}});
  Value want(ValueMap{{"type", "Sequential"},
                      {"options", ValueMap{}},
                      {"children", ValueList{"enc", "act"}},  // registration order, not the map's
                      {"modules", ValueMap{{"enc", linear}, {"act", leaky}}}});
  EXPECT_EQ(nn::describe(seq), want) << nn::describe(seq).repr();
}

TEST(Serialize, SizesAndOptionalsKeepTheirForm) {
  Value conv = nn::describe(nn::Conv2d(2, 4, {3, 1}, 2));
  EXPECT_EQ(conv.at("options").at("kernel_size"), nn::int_list({3, 1}));
  EXPECT_EQ(conv.at("options").at("stride"), Value(2));
  Value bn = nn::describe(nn::BatchNorm1d(3, 1e-5, std::nullopt));
  EXPECT_TRUE(bn.at("options").at("momentum").is_null());
  Value pool = nn::describe(nn::MaxPool2d(3));
  EXPECT_EQ(pool.at("options").at("stride"), Value(3));  // resolved, as torch stores it
  Value ce = nn::describe(nn::CrossEntropyLoss(ones({5}), 2, Reduction::Sum, 0.1));
  EXPECT_EQ(ce.at("options").at("weight"), nn::int_list({5}));
  EXPECT_EQ(ce.at("options").at("reduction"), Value("sum"));
}

TEST(Serialize, BuildRebuildsNestedContainersThatDescribeTheSame) {
  auto inner = std::make_shared<nn::ModuleList>(std::vector<nn::ModulePtr>{
      std::make_shared<nn::Linear>(3, 3), std::make_shared<nn::Sequential>(std::make_shared<nn::GELU>("tanh"))});
  auto model = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(4, 3), inner,
                                                std::make_shared<TwoLayer>(3, 5, "tanh"),
                                                std::make_shared<nn::Dropout>(0.25));
  Value tree = nn::describe(*model);
  nn::ModulePtr built = nn::build(tree);
  EXPECT_EQ(nn::describe(*built), tree);
  EXPECT_EQ(built->repr(), model->repr());
  std::vector<std::string> names, want;
  for (auto& [n, t] : built->state_dict()) names.push_back(n);
  for (auto& [n, t] : model->state_dict()) want.push_back(n);
  EXPECT_EQ(names, want);
  EXPECT_TRUE(built->is_training());  // a fresh module, as a constructor makes it
}

TEST(Serialize, UnregisteredTypeIsDescribedAndFailsToBuildNamingTypeAndPath) {
  auto model = std::make_shared<nn::Sequential>(
      std::make_shared<nn::Linear>(2, 2),
      std::make_shared<nn::Sequential>(std::make_shared<nn::ReLU>(), std::make_shared<Mystery>()));
  Value tree = nn::describe(*model);
  const Value& node = nn::subtree(tree, "1.1");
  EXPECT_EQ(node.at("type"), Value("Mystery"));
  EXPECT_TRUE(node.at("options").is_null());
  EXPECT_EQ(node.at("children"), Value(ValueList{"inner"}));
  EXPECT_EQ(nn::subtree(tree, "1.1.inner").at("type"), Value("Linear"));
  std::string err = error_of([&] { nn::build(tree); });
  EXPECT_NE(err.find("[nn::build] module type 'Mystery' at '1.1' was not registered when its tree was written"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("EMBER_REGISTER_MODULE"), std::string::npos) << err;
  // Its registered descendants still build on their own.
  EXPECT_EQ(nn::build(nn::subtree(tree, "1.1.inner"))->type_name(), "Linear");
}

TEST(Serialize, TypeUnknownToThisProgramIsAnError) {
  Value tree = nn::describe(*pair_with(std::make_shared<nn::ReLU>()));
  child_node(tree, "1")["type"] = "Swish";
  EXPECT_EQ(error_of([&] { nn::build(tree); }),
            "[nn::build] module type 'Swish' at '1' is not registered in this program; register it with "
            "EMBER_REGISTER_MODULE (nn/serialize.h) before building");
}

TEST(Serialize, MissingMistypedAndUnknownOptionsNamePathAndKey) {
  const Value good = nn::describe(*pair_with(std::make_shared<nn::BatchNorm1d>(3)));
  Value tree = good.deep_copy();
  child_node(tree, "0")["options"].as_map().erase("bias");
  EXPECT_EQ(error_of([&] { nn::build(tree); }),
            "[nn::build] Linear at '0': option 'bias' is missing (expected a bool)");

  tree = good.deep_copy();
  child_node(tree, "0")["options"]["in_features"] = "4";
  EXPECT_EQ(error_of([&] { nn::build(tree); }),
            "[nn::build] Linear at '0': option 'in_features' is string \"4\", expected an int");

  tree = good.deep_copy();
  child_node(tree, "1")["options"]["eps"] = 1;  // an int where a float is stored
  EXPECT_EQ(error_of([&] { nn::build(tree); }),
            "[nn::build] BatchNorm1d at '1': option 'eps' is int 1, expected a float");

  tree = good.deep_copy();
  child_node(tree, "1")["options"]["momentum"] = "fast";
  EXPECT_EQ(error_of([&] { nn::build(tree); }),
            "[nn::build] BatchNorm1d at '1': option 'momentum' is string \"fast\", expected a float or null");

  tree = good.deep_copy();
  child_node(tree, "0")["options"]["inplace"] = true;
  EXPECT_EQ(error_of([&] { nn::build(tree); }),
            "[nn::build] Linear at '0': unknown option 'inplace' (the Linear reader uses [bias, in_features, "
            "out_features])");

  tree = good.deep_copy();
  child_node(tree, "0")["options"]["in_features"] = -1;  // the constructor's own check, located
  EXPECT_EQ(error_of([&] { nn::build(tree); }),
            "[nn::build] Linear at '0': [Linear] in_features and out_features must be >= 0, got -1 and 3");

  Value loss = nn::describe(nn::MSELoss());
  loss["options"]["reduction"] = "avg";
  EXPECT_EQ(error_of([&] { nn::build(loss); }),
            "[nn::build] MSELoss at the root: option 'reduction' is 'avg', expected 'none', 'mean' or 'sum'");
}

TEST(Serialize, MalformedNodesAreErrors) {
  const Value good = nn::describe(*pair_with(std::make_shared<nn::ReLU>()));
  Value tree = good.deep_copy();
  tree["children"] = ValueList{"0"};
  EXPECT_EQ(error_of([&] { nn::build(tree); }),
            "[nn::build] the module tree node at the root (Sequential) has a node for '1' in 'modules' that "
            "'children' does not list");
  tree = good.deep_copy();
  tree["children"] = ValueList{"0", "1", "2"};
  EXPECT_EQ(error_of([&] { nn::build(tree); }),
            "[nn::build] the module tree node at the root (Sequential) lists the child '2' but 'modules' has no node "
            "for it");
  tree = good.deep_copy();
  child_node(tree, "1").as_map().erase("options");
  EXPECT_EQ(error_of([&] { nn::build(tree); }), "[nn::build] the module tree node at '1' has no 'options'");
  tree = good.deep_copy();
  tree["training"] = true;
  EXPECT_EQ(error_of([&] { nn::build(tree); }),
            "[nn::build] the module tree node at the root has an unknown key 'training' (expected type, options, "
            "children, modules)");
  EXPECT_EQ(error_of([&] { nn::build(Value(3)); }),
            "[nn::build] the module tree node at the root is int 3, expected a map");
  // A ModuleList's children are positional: other names cannot be rebuilt.
  Value list = nn::describe(nn::ModuleList(std::vector<nn::ModulePtr>{std::make_shared<nn::ReLU>()}));
  list["children"] = ValueList{"first"};
  list["modules"] = ValueMap{{"first", list.at("modules").at("0")}};
  EXPECT_EQ(error_of([&] { nn::build(list); }),
            "[nn::build] ModuleList at the root: the rebuilt module has the children [0] but the tree lists [first]");
}

TEST(Serialize, ChildrenAModuleMakesItselfMustMatchTheTree) {
  Value tree = nn::describe(TwoLayer(3, 4, "relu"));
  tree["modules"]["act"]["type"] = "Tanh";  // the constructor makes a ReLU from act="relu"
  std::string err = error_of([&] { nn::build(tree); });
  EXPECT_NE(err.find("[nn::build] TwoLayer at the root made its child 'act' differently from the tree"),
            std::string::npos)
      << err;
}

TEST(Serialize, ErrorsInsideChildrenKeepTheirOwnPath) {
  auto model = std::make_shared<nn::Sequential>(pair_with(std::make_shared<nn::ReLU>()));
  Value tree = nn::describe(*model);
  tree["modules"]["0"]["modules"]["0"]["options"].as_map().erase("out_features");
  EXPECT_EQ(error_of([&] { nn::build(tree); }),
            "[nn::build] Linear at '0.0': option 'out_features' is missing (expected an int)");
  EXPECT_EQ(error_of([&] { nn::build(tree.at("modules").at("0"), "model.0"); }),
            "[nn::build] Linear at 'model.0.0': option 'out_features' is missing (expected an int)");
}

TEST(Serialize, SubtreeFollowsDottedNames) {
  Value tree = nn::describe(*std::make_shared<nn::Sequential>(pair_with(std::make_shared<nn::Tanh>())));
  EXPECT_EQ(nn::subtree(tree, ""), tree);
  EXPECT_EQ(nn::subtree(tree, "0.1").at("type"), Value("Tanh"));
  EXPECT_EQ(error_of([&] { nn::subtree(tree, "0.2"); }),
            "[nn::subtree] Sequential at '0' has no child '2' (its children: [0, 1])");
  EXPECT_EQ(error_of([&] { nn::subtree(tree, "0."); }),
            "[nn::subtree] '0.' is not a dotted module path (it has an empty name)");
}

TEST(Serialize, RegistrationConflictsAreErrors) {
  EXPECT_EQ(error_of([] {
              nn::register_module_type<Mystery>(
                  "Linear", [](const Mystery&) { return ValueMap{}; },
                  [](const nn::ModuleOptions&) { return std::make_shared<Mystery>(); });
            }),
            "[nn::register_module_type] 'Linear' is already registered for another C++ type (ember::nn::Linear)");
  EXPECT_EQ(error_of([] {
              nn::register_module_type<nn::Linear>(
                  "Dense", [](const nn::Linear&) { return ValueMap{}; },
                  [](const nn::ModuleOptions&) { return std::make_shared<nn::Linear>(1, 1); });
            }),
            "[nn::register_module_type] C++ type ember::nn::Linear is already registered as 'Linear', cannot "
            "register it as 'Dense'");
  EXPECT_FALSE(nn::is_registered_module_type("Dense"));
}
