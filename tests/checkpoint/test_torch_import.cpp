// ember-ckpt import-torch: PyTorch models exported by tools/torch_export.py (fixtures from
// tests/reference/gen_torch_import.py) become checkpoints that nn::load_module rebuilds and that
// reproduce PyTorch's eval-mode output; every refused input is named in the error.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <iostream>

#include <nlohmann/json.hpp>

#include "ember/checkpoint/checkpoint.h"
#include "ember/nn/serialize.h"
#include "ember/train/module_io.h"
#include "tools/ckpt/commands.h"
#include "tests/checkpoint/util.h"
#include "tests/support/check.h"

namespace ember::test {
namespace {

namespace ck = ember::checkpoint;
namespace tool = ember::ckpt_tool;
using json = nlohmann::json;

std::string arch_of(const std::string& model) {
  return reference_path("fixtures/torch_import_" + model + ".arch.json");
}
std::string weights_of(const std::string& model) {
  return reference_path("fixtures/torch_import_" + model + ".safetensors");
}

int run_tool(const std::string& args, std::string* out = nullptr) {
  return run_command(std::string(EMBER_CKPT_TOOL) + " " + args, out);
}

// max |model(x) - PyTorch's output| for the checkpoint at path and the model's fixture.
double max_abs_difference(const std::string& path, const std::string& model) {
  Fixture fx = load_fixture("fixtures/torch_import_" + model + ".txt");
  nn::ModulePtr m = nn::load_module(path);
  EXPECT_FALSE(m->is_training());
  Tensor out = m->forward(fx["x"]);
  const Tensor& expected = fx["out"];
  EXPECT_EQ(out.shape(), expected.shape());
  EXPECT_EQ(out.dtype(), DType::f32);
  std::vector<double> a = values_f64(out), b = values_f64(expected);
  if (a.size() != b.size()) return INFINITY;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

class TorchImportModel : public ::testing::TestWithParam<std::string> {};

TEST_P(TorchImportModel, MatchesPyTorchThroughTheLibrary) {
  ScratchDir dir;
  const std::string model = GetParam(), out = dir.file("model.ckpt");
  tool::TorchImport r = tool::import_torch(arch_of(model), weights_of(model), out);
  EXPECT_EQ(r.model, "Sequential");

  ck::Reader reader(out, {.verify = ck::Verify::all});
  EXPECT_TRUE(reader.weights_only());
  std::vector<std::string> sections;
  for (auto& s : reader.sections()) sections.push_back(s.name);
  EXPECT_EQ(sections, (std::vector<std::string>{"ember_version", "module_tree", "state_dict"}));
  // The tree is the JSON's, converted kind for kind (1.0 a float, 16 an int, null kept).
  EXPECT_TRUE(reader.section(ck::kModuleTree) == tool::module_tree_from_json(arch_of(model)));
  EXPECT_EQ(reader.section(ck::kStateDict).as_map().size(), r.tensors);
  EXPECT_EQ(dir.list(), std::vector<std::string>{"model.ckpt"});  // no temporary file left

  double diff = max_abs_difference(out, model);
  RecordProperty("max_abs_difference", std::to_string(diff));
  std::cout << "[ torch    ] " << model << ": max |ember - torch| = " << diff << "\n";
  EXPECT_LE(diff, 1e-5) << model;
}

TEST_P(TorchImportModel, MatchesPyTorchThroughTheBinary) {
  ScratchDir dir;
  const std::string model = GetParam(), out = dir.file("model.ckpt");
  std::string text;
  ASSERT_EQ(run_tool("import-torch --zlib " + arch_of(model) + " " + weights_of(model) + " " + out, &text), 0)
      << text;
  EXPECT_NE(text.find("wrote " + out + " (Sequential, "), std::string::npos) << text;
  EXPECT_LE(max_abs_difference(out, model), 1e-5) << model;
  EXPECT_EQ(run_tool("verify " + out, &text), 0) << text;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TorchImportModel, ::testing::Values("mlp", "seq1d", "autoencoder", "cnn"),
                         [](const auto& info) { return info.param; });

TEST(TorchImport, KeepsTheRunningStatisticsAndOptions) {
  ScratchDir dir;
  const std::string out = dir.file("cnn.ckpt");
  tool::import_torch(arch_of("cnn"), weights_of("cnn"), out);
  Value sd = ck::Reader(out).section(ck::kStateDict);
  Tensor tracked = sd.at("features.1.num_batches_tracked").as_tensor();
  EXPECT_EQ(tracked.dtype(), DType::i64);
  EXPECT_EQ(values_f64(tracked), std::vector<double>{3});
  std::vector<double> var = values_f64(sd.at("head.1.running_var").as_tensor());
  EXPECT_TRUE(std::any_of(var.begin(), var.end(), [](double v) { return std::abs(v - 1) > 0.05; }));
  Value tree = ck::Reader(out).section(ck::kModuleTree);
  const Value& bn1d = nn::subtree(tree.at("root"), "head.1");
  EXPECT_EQ(bn1d.at("type").as_string(), "BatchNorm1d");
  EXPECT_TRUE(bn1d.at("options").at("momentum").is_null());  // momentum=None: a cumulative average
  EXPECT_TRUE(nn::subtree(tree.at("root"), "features.4").at("options").at("padding") == nn::int_list({1, 1}));
}

// The fixtures' files with one change, in a scratch directory.
struct Edited {
  ScratchDir dir;
  std::string arch = dir.file("arch.json"), weights = dir.file("w.safetensors"), out = dir.file("out.ckpt");

  explicit Edited(const std::string& model) {
    write_bytes(arch, read_bytes(arch_of(model)));
    write_bytes(weights, read_bytes(weights_of(model)));
  }
  void edit_arch(const std::function<void(json&)>& change) {
    std::ifstream f(arch);
    json j = json::parse(f);
    change(j);
    write_text(arch, j.dump(1));
  }
  void write_text(const std::string& path, const std::string& text) {
    write_bytes(path, std::vector<uint8_t>(text.begin(), text.end()));
  }
  // Rewrites the weights through an Ember checkpoint and export-safetensors.
  void edit_weights(const std::function<void(ValueMap&)>& change) {
    tool::import_safetensors(weights, dir.file("w.ckpt"));
    Value sd = ck::Reader(dir.file("w.ckpt")).section(ck::kStateDict).deep_copy();
    change(sd.as_map());
    ck::save(dir.file("w2.ckpt"), Value(ValueMap{{ck::kStateDict, sd}}));
    tool::export_safetensors(dir.file("w2.ckpt"), weights);
  }
  // The error of import_torch, after checking that it wrote nothing.
  std::string error() {
    std::string e = error_of([&] { tool::import_torch(arch, weights, out); });
    for (const std::string& name : dir.list()) EXPECT_EQ(name.find("out.ckpt"), std::string::npos) << name;
    return e;
  }
};

#define EXPECT_HAS(text, part) EXPECT_NE((text).find(part), std::string::npos) << (text)

TEST(TorchImport, UnknownModuleTypeNamesItsPath) {
  Edited f("mlp");
  f.edit_arch([](json& j) { j["root"]["modules"]["2"]["type"] = "LSTM"; });
  std::string e = f.error();
  EXPECT_HAS(e, "[ember-ckpt] '" + f.arch + "': the module '2' has type 'LSTM', which Ember does not have");
  EXPECT_HAS(e, "its module types: AvgPool2d, BCELoss");

  std::string text;  // the binary reports it with exit code 2
  EXPECT_EQ(run_tool("import-torch " + f.arch + " " + f.weights + " " + f.out, &text), 2);
  EXPECT_HAS(text, "ember-ckpt: [ember-ckpt] '" + f.arch + "': the module '2' has type 'LSTM'");
}

TEST(TorchImport, BadOptionsNameTheModuleAndKey) {
  {
    Edited f("mlp");
    f.edit_arch([](json& j) { j["root"]["modules"]["1"]["options"]["eps"] = 1; });
    EXPECT_HAS(f.error(), "'" + f.arch + "': [nn::build] LayerNorm at '1': option 'eps' is int 1, expected a float");
  }
  {
    Edited f("cnn");
    f.edit_arch([](json& j) { j["root"]["modules"]["features"]["modules"]["0"]["options"]["padding_mode"] = "zeros"; });
    EXPECT_HAS(f.error(), "Conv2d at 'features.0': unknown option 'padding_mode'");
  }
  {
    Edited f("mlp");
    f.edit_arch([](json& j) { j["root"]["modules"]["0"]["options"].erase("bias"); });
    EXPECT_HAS(f.error(), "Linear at '0': option 'bias' is missing");
  }
  {
    Edited f("mlp");
    f.edit_arch([](json& j) { j["root"]["modules"]["0"]["options"]["out_features"] = 9223372036854775808ull; });
    EXPECT_HAS(f.error(), "'root.modules.0.options.out_features' is 9223372036854775808, which does not fit");
  }
}

TEST(TorchImport, MalformedOrMissingFilesAreNamed) {
  Edited f("mlp");
  f.write_text(f.arch, "{\"version\": 1, \"root\": {\"type\": \"Linear\",");
  std::string e = f.error();
  EXPECT_HAS(e, "[ember-ckpt] '" + f.arch + "' is not valid JSON: ");
  EXPECT_HAS(e, "line 1, column 42");

  f.write_text(f.arch, "[1, 2]");
  EXPECT_HAS(f.error(), "'" + f.arch + "' is not a module tree");
  f.write_text(f.arch, "{\"version\": 2, \"root\": {}}");
  EXPECT_HAS(f.error(), "'version' is 2; this Ember reads version 1");
  f.write_text(f.arch, "{\"version\": 1, \"root\": {}, \"extra\": 0}");
  EXPECT_HAS(f.error(), "unknown key 'extra'");
  f.write_text(f.arch, "{\"version\": 1, \"root\": {\"type\": \"ReLU\"}}");
  EXPECT_HAS(f.error(), "[nn::build] the module tree node at the root has no 'options'");

  std::string missing = f.dir.file("missing.json");
  EXPECT_HAS(error_of([&] { tool::import_torch(missing, f.weights, f.out); }),
             "[ember-ckpt] cannot open '" + missing + "': No such file or directory");
  Edited g("mlp");
  std::string no_weights = g.dir.file("missing.safetensors");
  EXPECT_HAS(error_of([&] { tool::import_torch(g.arch, no_weights, g.out); }),
             "[ember-ckpt] cannot open '" + no_weights + "'");
  g.write_text(g.weights, "not a safetensors file");
  EXPECT_HAS(g.error(), "'" + g.weights + "': invalid safetensors file");

  std::string text;
  EXPECT_EQ(run_tool("import-torch " + missing + " " + g.weights + " " + g.out, &text), 2);
  EXPECT_HAS(text, "cannot open '" + missing + "'");
  EXPECT_EQ(run_tool("import-torch " + g.arch, &text), 2);  // usage
}

TEST(TorchImport, WeightsThatDoNotFitAreNamedByKey) {
  auto fits = [](const std::string& part, const std::function<void(ValueMap&)>& change) {
    Edited f("mlp");
    f.edit_weights(change);
    std::string e = f.error();
    EXPECT_HAS(e, "[ember-ckpt] '" + f.weights + "' does not hold the weights of the model in '" + f.arch + "'");
    EXPECT_HAS(e, part);
  };
  fits("missing keys: \"0.bias\"", [](ValueMap& sd) { sd.erase("0.bias"); });
  fits("unexpected keys: \"4.bias\"", [](ValueMap& sd) { sd["4.bias"] = Value(zeros({16})); });
  fits("shape mismatch for \"6.weight\": state dict has (16, 6), model has (6, 16)", [](ValueMap& sd) {
    sd["6.weight"] = Value(zeros({16, 6}));
  });
  fits("dtype mismatch for \"0.bias\": state dict has f64, model has f32", [](ValueMap& sd) {
    sd["0.bias"] = Value(zeros({16}, DType::f64));
  });
}

TEST(TorchImport, WeightsInAnotherFloatingDtypeBuildThatDtype) {
  Edited f("mlp");
  f.edit_weights([](ValueMap& sd) {
    for (auto& [name, v] : sd) v = Value(v.as_tensor().to(DType::f64));
  });
  tool::import_torch(f.arch, f.weights, f.out);
  nn::ModulePtr m = nn::load_module(f.out);
  Fixture fx = load_fixture("fixtures/torch_import_mlp.txt");
  Tensor out = m->forward(fx["x"].to(DType::f64));
  EXPECT_EQ(out.dtype(), DType::f64);
  EXPECT_TRUE(allclose(out.to(DType::f32), fx["out"], 0, 1e-5));
}

}  // namespace
}  // namespace ember::test
