// nn::Module: registration rules, dotted names and their order (checked against PyTorch's),
// state_dict/load_state_dict (all problems in one error, nothing copied on failure, references
// kept), train/eval, to(dtype), zero_grad, parameter counts and the printed module tree.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ember/nn/nn.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"

namespace ember {
namespace {

using test::allclose;
using test::bit_equal;

// The model used by the PyTorch name-order check (see the expected lists below, printed by torch 1.13):
//   scale = Parameter(ones(1)); encoder = Sequential(Linear(4, 8), ReLU(), BatchNorm1d(8));
//   head = Linear(8, 2); register_buffer("steps", zeros((), int64)) after the children.
class Net : public nn::Module {
 public:
  Net() : Module("Net") {
    scale = register_parameter("scale", ones({1}));
    encoder = register_module("encoder", std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(4, 8),
                                                                          std::make_shared<nn::ReLU>(),
                                                                          std::make_shared<nn::BatchNorm1d>(8)));
    head = register_module("head", std::make_shared<nn::Linear>(8, 2));
    steps = register_buffer("steps", zeros({}, DType::i64));
  }
  Tensor forward(const Tensor& x) override { return head->forward(encoder->forward(x)) * scale; }

  Tensor scale, steps;
  std::shared_ptr<nn::Sequential> encoder;
  std::shared_ptr<nn::Linear> head;
};

template <typename Pairs>
std::vector<std::string> names_of(const Pairs& pairs) {
  std::vector<std::string> out;
  for (const auto& p : pairs) out.push_back(p.first);
  return out;
}

using test::error_of;

TEST(Module, NamesAndOrderMatchPyTorch) {
  auto net = std::make_shared<Net>();
  EXPECT_EQ(names_of(net->state_dict()),
            (std::vector<std::string>{"scale", "steps", "encoder.0.weight", "encoder.0.bias", "encoder.2.weight",
                                      "encoder.2.bias", "encoder.2.running_mean", "encoder.2.running_var",
                                      "encoder.2.num_batches_tracked", "head.weight", "head.bias"}));
  EXPECT_EQ(names_of(net->named_parameters()),
            (std::vector<std::string>{"scale", "encoder.0.weight", "encoder.0.bias", "encoder.2.weight",
                                      "encoder.2.bias", "head.weight", "head.bias"}));
  EXPECT_EQ(names_of(net->named_buffers()),
            (std::vector<std::string>{"steps", "encoder.2.running_mean", "encoder.2.running_var",
                                      "encoder.2.num_batches_tracked"}));
  EXPECT_EQ(names_of(net->named_modules()),
            (std::vector<std::string>{"", "encoder", "encoder.0", "encoder.1", "encoder.2", "head"}));
  EXPECT_EQ(names_of(net->named_children()), (std::vector<std::string>{"encoder", "head"}));
  EXPECT_EQ(names_of(net->named_parameters(/*recurse=*/false)), (std::vector<std::string>{"scale"}));
  EXPECT_EQ(net->named_modules()[0].second.get(), net.get());

  // num_batches_tracked is a 0-d i64 buffer; the state dict aliases the live tensors.
  nn::StateDict sd = net->state_dict();
  const Tensor& nbt = sd[8].second;
  EXPECT_EQ(nbt.dtype(), DType::i64);
  EXPECT_EQ(nbt.dim(), 0);
  EXPECT_TRUE(sd[9].second.is_alias_of(net->head->weight));
  EXPECT_FALSE(sd[9].second.requires_grad());
  EXPECT_EQ(net->num_parameters(), 75);  // as torch: sum(p.numel() for p in m.parameters())
}

TEST(Module, ModulesOnTheStackWork) {
  nn::Linear lin(3, 2);
  auto mods = lin.named_modules();
  ASSERT_EQ(mods.size(), 1u);
  EXPECT_EQ(mods[0].second.get(), &lin);
  EXPECT_EQ(lin.num_parameters(), 8);
}

TEST(Module, RegistrationErrors) {
  nn::Module m("Custom");
  m.register_parameter("w", zeros({2}));
  EXPECT_NE(error_of([&] { m.register_parameter("w", zeros({2})); })
                .find("[Module] Custom already has a parameter, buffer or submodule named 'w'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { m.register_buffer("w", zeros({2})); }).find("named 'w'"), std::string::npos);
  EXPECT_NE(error_of([&] { m.add_module("w", std::make_shared<nn::ReLU>()); }).find("named 'w'"), std::string::npos);
  EXPECT_NE(error_of([&] { m.register_parameter("a.b", zeros({2})); }).find("'a.b' must not contain '.'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { m.register_buffer("", zeros({2})); }).find("must not be empty"), std::string::npos);
  EXPECT_NE(error_of([&] { m.register_parameter("i", zeros({2}, DType::i64)); }).find("only floating-point"),
            std::string::npos);
  EXPECT_NE(error_of([&] { m.forward(zeros({1})); }).find("[Custom] this module has no single-input forward()"),
            std::string::npos);
  // A parameter registered from a non-leaf becomes a leaf.
  Tensor a = ones({2});
  a.requires_grad_();
  Tensor p = m.register_parameter("p", a * 2.0);
  EXPECT_TRUE(p.is_leaf());
  EXPECT_TRUE(p.requires_grad());
  EXPECT_EQ(m.type_name(), "Custom");
}

TEST(Module, TypeNameDefaultsToTheClassName) {
  struct MyBlock : nn::Module {};
  MyBlock b;
  EXPECT_EQ(b.type_name(), "MyBlock");
  EXPECT_EQ(b.repr(), "MyBlock()");
}

TEST(Module, SharedParametersAreListedOnce) {
  auto a = std::make_shared<nn::Linear>(3, 3);
  nn::Sequential seq(a, std::make_shared<nn::Tanh>(), a);
  EXPECT_EQ(names_of(seq.named_parameters()), (std::vector<std::string>{"0.weight", "0.bias"}));
  EXPECT_EQ(names_of(seq.named_modules()), (std::vector<std::string>{"", "0", "1"}));
  // The state dict, as torch's, has every name.
  EXPECT_EQ(names_of(seq.state_dict()), (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"}));
  EXPECT_EQ(seq.num_parameters(), 12);
}

TEST(Module, LoadStateDictCopiesIntoExistingTensors) {
  manual_seed(1);
  auto src = std::make_shared<Net>();
  manual_seed(2);
  auto dst = std::make_shared<Net>();
  // Make the source's buffers differ from their defaults.
  src->train();
  src->forward(randn({5, 4}));
  Tensor weight_handle = dst->head->weight;  // e.g. held by an optimizer
  Tensor running_mean = dst->encoder->at<nn::BatchNorm1d>(2)->running_mean;
  nn::LoadResult r = dst->load_state_dict(src->state_dict());
  EXPECT_TRUE(r.missing_keys.empty());
  EXPECT_TRUE(r.unexpected_keys.empty());
  for (const auto& [name, t] : src->state_dict()) {
    bool found = false;
    for (const auto& [n2, t2] : dst->state_dict()) {
      if (n2 != name) continue;
      found = true;
      EXPECT_TRUE(bit_equal(t2, t)) << name;
      EXPECT_FALSE(t2.is_alias_of(t)) << name;
    }
    EXPECT_TRUE(found) << name;
  }
  EXPECT_TRUE(bit_equal(weight_handle, src->head->weight));
  EXPECT_TRUE(running_mean.is_alias_of(dst->encoder->at<nn::BatchNorm1d>(2)->running_mean));
  EXPECT_TRUE(bit_equal(running_mean, src->encoder->at<nn::BatchNorm1d>(2)->running_mean));
  EXPECT_EQ(dst->encoder->at<nn::BatchNorm1d>(2)->num_batches_tracked.item<int64_t>(), 1);
  EXPECT_TRUE(dst->head->weight.requires_grad());
  EXPECT_TRUE(dst->head->weight.is_leaf());

  // The Value form (what checkpoints hold) round-trips too.
  manual_seed(3);
  auto third = std::make_shared<Net>();
  Value v = src->state_dict_value();
  ASSERT_TRUE(v.is_map());
  EXPECT_EQ(v.as_map().size(), 11u);
  third->load_state_dict(v);
  EXPECT_TRUE(bit_equal(third->encoder->at<nn::Linear>(0)->weight, src->encoder->at<nn::Linear>(0)->weight));
}

TEST(Module, LoadStateDictReportsAllProblemsAtOnce) {
  manual_seed(4);
  auto net = std::make_shared<Net>();
  nn::StateDict sd;
  for (auto& [name, t] : std::make_shared<Net>()->state_dict()) {
    if (name == "head.bias" || name == "scale") continue;  // missing
    if (name == "encoder.0.weight") {
      sd.emplace_back(name, zeros({8, 5}));  // shape mismatch
    } else if (name == "encoder.2.running_mean") {
      sd.emplace_back(name, zeros({8}, DType::f64));  // dtype mismatch
    } else {
      sd.emplace_back(name, t.clone());
    }
  }
  sd.emplace_back("foo.weight", zeros({1}));  // unexpected
  sd.emplace_back("head.extra", zeros({1}));  // unexpected
  Tensor before = net->head->weight.clone();
  std::string msg = error_of([&] { net->load_state_dict(sd); });
  EXPECT_NE(msg.find("[load_state_dict] 4 problem(s) loading a state dict into Net:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing keys: \"scale\", \"head.bias\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("unexpected keys: \"foo.weight\", \"head.extra\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("shape mismatch for \"encoder.0.weight\": state dict has (8, 5), model has (8, 4)"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("dtype mismatch for \"encoder.2.running_mean\": state dict has f64, model has f32"),
            std::string::npos)
      << msg;
  // Nothing was copied.
  EXPECT_TRUE(bit_equal(net->head->weight, before));

  // strict=false tolerates missing/unexpected keys but still rejects mismatches.
  msg = error_of([&] { net->load_state_dict(sd, /*strict=*/false); });
  EXPECT_NE(msg.find("2 problem(s)"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("missing keys"), std::string::npos) << msg;
  nn::StateDict ok;
  for (auto& [name, t] : sd)
    if (name != "encoder.0.weight" && name != "encoder.2.running_mean") ok.emplace_back(name, t);
  nn::LoadResult r = net->load_state_dict(ok, /*strict=*/false);
  EXPECT_EQ(r.missing_keys, (std::vector<std::string>{"scale", "encoder.0.weight", "encoder.2.running_mean", "head.bias"}));
  EXPECT_EQ(r.unexpected_keys, (std::vector<std::string>{"foo.weight", "head.extra"}));
  for (auto& [name, t] : ok) {
    if (name == "head.weight") {
      EXPECT_TRUE(bit_equal(net->head->weight, t));
    }
  }

  // The Value form names entries that are not tensors.
  ValueMap m;
  m["head.weight"] = Value(int64_t{3});
  msg = error_of([&] { net->load_state_dict(Value(m)); });
  EXPECT_NE(msg.find("[load_state_dict] entry \"head.weight\" is a"), std::string::npos) << msg;
}

TEST(Module, TrainEvalPropagates) {
  auto net = std::make_shared<Net>();
  EXPECT_TRUE(net->is_training());
  net->eval();
  for (auto& [name, m] : net->named_modules()) EXPECT_FALSE(m->is_training()) << name;
  net->train();
  for (auto& [name, m] : net->named_modules()) EXPECT_TRUE(m->is_training()) << name;
}

TEST(Module, ToDTypeConvertsInPlace) {
  manual_seed(5);
  auto net = std::make_shared<Net>();
  Tensor w = net->head->weight;
  std::vector<double> before = w.to_vector<double>();
  Tensor x = randn({3, 4});
  Tensor y32 = net->forward(x);
  y32.backward(ones_like(y32));
  net->to(DType::f64);
  EXPECT_EQ(w.dtype(), DType::f64);  // the old handle sees the conversion
  EXPECT_EQ(w.to_vector<double>(), before);
  EXPECT_EQ(net->head->weight.grad().dtype(), DType::f64);
  EXPECT_EQ(net->encoder->at<nn::BatchNorm1d>(2)->running_var.dtype(), DType::f64);
  EXPECT_EQ(net->encoder->at<nn::BatchNorm1d>(2)->num_batches_tracked.dtype(), DType::i64);
  EXPECT_EQ(net->steps.dtype(), DType::i64);
  EXPECT_TRUE(w.requires_grad());
  net->eval();
  Tensor y64 = net->forward(x.to(DType::f64));
  EXPECT_EQ(y64.dtype(), DType::f64);
  net->to(kCPU);  // no-op on the CPU
  EXPECT_EQ(w.device(), kCPU);
  EXPECT_NE(error_of([&] { net->to(DType::i32); }).find("[Module] to(dtype) needs a floating-point dtype"),
            std::string::npos);
}

TEST(Module, ToCudaAndBack) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  manual_seed(6);
  auto net = std::make_shared<Net>();
  Tensor x = randn({6, 4});
  Tensor y_cpu = net->forward(x);
  Tensor w = net->head->weight;
  net->to(cuda_device());
  EXPECT_TRUE(w.device().is_cuda());
  auto bn = net->encoder->at<nn::BatchNorm1d>(2);
  EXPECT_TRUE(bn->num_batches_tracked.device().is_cuda());
  net->load_state_dict(net->state_dict());  // cross-device-safe
  net->eval();
  Tensor y_cuda = net->forward(x.to(cuda_device()));
  net->to(kCPU);
  EXPECT_EQ(w.device(), kCPU);
  net->eval();
  EXPECT_TRUE(allclose(y_cuda.to(kCPU), net->forward(x), 1e-5, 1e-6));
  (void)y_cpu;
}

TEST(Module, ZeroGrad) {
  auto lin = std::make_shared<nn::Linear>(3, 2);
  Tensor y = lin->forward(ones({4, 3}));
  sum(y).backward();
  ASSERT_TRUE(lin->weight.grad().defined());
  EXPECT_TRUE(allclose(lin->bias.grad(), full({2}, 4.0)));
  lin->zero_grad(/*set_to_none=*/false);
  ASSERT_TRUE(lin->weight.grad().defined());
  EXPECT_TRUE(allclose(lin->weight.grad(), zeros({2, 3})));
  lin->zero_grad();
  EXPECT_FALSE(lin->weight.grad().defined());
  EXPECT_FALSE(lin->bias.grad().defined());
}

TEST(Module, ParameterCounts) {
  nn::Sequential mlp(std::make_shared<nn::Linear>(784, 64), std::make_shared<nn::ReLU>(),
                     std::make_shared<nn::Linear>(64, 10));
  EXPECT_EQ(mlp.num_parameters(), 784 * 64 + 64 + 64 * 10 + 10);
  mlp.at<nn::Linear>(0)->weight.requires_grad_(false);
  EXPECT_EQ(mlp.num_parameters(/*trainable_only=*/true), 64 + 64 * 10 + 10);
  EXPECT_EQ(mlp.num_parameters(), 50890);
  nn::BatchNorm2d bn(16);
  EXPECT_EQ(bn.num_parameters(), 32);  // buffers are not parameters
  EXPECT_EQ(nn::BatchNorm2d(16, 1e-5, 0.1, /*affine=*/false).num_parameters(), 0);
}

TEST(Module, ApplyVisitsChildrenFirst) {
  auto net = std::make_shared<Net>();
  std::vector<std::string> seen;
  net->apply([&](nn::Module& m) { seen.push_back(m.type_name()); });
  EXPECT_EQ(seen, (std::vector<std::string>{"Linear", "ReLU", "BatchNorm1d", "Sequential", "Linear", "Net"}));
  // The usual use: a custom initialisation.
  net->apply([](nn::Module& m) {
    if (auto* lin = dynamic_cast<nn::Linear*>(&m)) nn::init::zeros_(lin->bias);
  });
  EXPECT_TRUE(allclose(net->head->bias, zeros({2})));
}

TEST(Module, PrintMatchesPyTorch) {
  // Expected strings are torch 1.13's print() of the same modules.
  auto net = std::make_shared<Net>();
  EXPECT_EQ(net->repr(),
            "Net(\n"
            "  (encoder): Sequential(\n"
            "    (0): Linear(in_features=4, out_features=8, bias=True)\n"
            "    (1): ReLU()\n"
            "    (2): BatchNorm1d(8, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
            "  )\n"
            "  (head): Linear(in_features=8, out_features=2, bias=True)\n"
            ")");

  auto list = std::make_shared<nn::ModuleList>();
  for (int i = 0; i < 3; ++i) list->push_back(std::make_shared<nn::Linear>(2, 2));
  auto inner = std::make_shared<nn::Sequential>(std::make_shared<nn::Conv2d>(3, 16, 3, 1, 1, 1, 1, false),
                                                std::make_shared<nn::BatchNorm2d>(16, 1e-5, std::nullopt));
  nn::Sequential seq(std::vector<nn::ModulePtr>{
      std::make_shared<nn::Linear>(784, 64), std::make_shared<nn::ReLU>(), inner, list,
      std::make_shared<nn::GELU>(), std::make_shared<nn::GELU>("tanh"), std::make_shared<nn::Softmax>(1),
      std::make_shared<nn::LayerNorm>(10), std::make_shared<nn::Dropout>(), std::make_shared<nn::Embedding>(10, 3, 0),
      std::make_shared<nn::Flatten>(), std::make_shared<nn::Unflatten>(1, std::vector<int64_t>{2, 5}),
      std::make_shared<nn::MaxPool2d>(2), std::make_shared<nn::MaxPool2d>(nn::Size2{2, 3}, 1),
      std::make_shared<nn::AvgPool2d>(2), std::make_shared<nn::LeakyReLU>(),
      std::make_shared<nn::ConvTranspose2d>(4, 2, 3, 2, 0, 1), std::make_shared<nn::BatchNorm1d>(5, 1e-3),
      std::make_shared<nn::CrossEntropyLoss>(ones({3}), -100, Reduction::Mean, 0.1), std::make_shared<nn::MSELoss>(),
      std::make_shared<nn::BCEWithLogitsLoss>(Tensor(), Reduction::Mean, ones({2})),
      std::make_shared<nn::SmoothL1Loss>(Reduction::Mean, 0.5),
      std::make_shared<nn::LayerNorm>(std::vector<int64_t>{3, 4}, 1e-5, false), std::make_shared<nn::Tanh>(),
      std::make_shared<nn::Sigmoid>(), std::make_shared<nn::Identity>()});
  EXPECT_EQ(seq.repr(),
            "Sequential(\n"
            "  (0): Linear(in_features=784, out_features=64, bias=True)\n"
            "  (1): ReLU()\n"
            "  (2): Sequential(\n"
            "    (0): Conv2d(3, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)\n"
            "    (1): BatchNorm2d(16, eps=1e-05, momentum=None, affine=True, track_running_stats=True)\n"
            "  )\n"
            "  (3): ModuleList(\n"
            "    (0): Linear(in_features=2, out_features=2, bias=True)\n"
            "    (1): Linear(in_features=2, out_features=2, bias=True)\n"
            "    (2): Linear(in_features=2, out_features=2, bias=True)\n"
            "  )\n"
            "  (4): GELU(approximate='none')\n"
            "  (5): GELU(approximate='tanh')\n"
            "  (6): Softmax(dim=1)\n"
            "  (7): LayerNorm((10,), eps=1e-05, elementwise_affine=True)\n"
            "  (8): Dropout(p=0.5, inplace=False)\n"
            "  (9): Embedding(10, 3, padding_idx=0)\n"
            "  (10): Flatten(start_dim=1, end_dim=-1)\n"
            "  (11): Unflatten(dim=1, unflattened_size=(2, 5))\n"
            "  (12): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)\n"
            "  (13): MaxPool2d(kernel_size=(2, 3), stride=1, padding=0, dilation=1, ceil_mode=False)\n"
            "  (14): AvgPool2d(kernel_size=2, stride=2, padding=0)\n"
            "  (15): LeakyReLU(negative_slope=0.01)\n"
            "  (16): ConvTranspose2d(4, 2, kernel_size=(3, 3), stride=(2, 2), output_padding=(1, 1))\n"
            "  (17): BatchNorm1d(5, eps=0.001, momentum=0.1, affine=True, track_running_stats=True)\n"
            "  (18): CrossEntropyLoss()\n"
            "  (19): MSELoss()\n"
            "  (20): BCEWithLogitsLoss()\n"
            "  (21): SmoothL1Loss()\n"
            "  (22): LayerNorm((3, 4), eps=1e-05, elementwise_affine=False)\n"
            "  (23): Tanh()\n"
            "  (24): Sigmoid()\n"
            "  (25): Identity()\n"
            ")");
  // Loss weights are buffers, as torch's: '18.weight' and '20.pos_weight' are in the state dict.
  std::vector<std::string> loss_keys;
  for (auto& [name, t] : seq.state_dict())
    if (name.rfind("18.", 0) == 0 || name.rfind("20.", 0) == 0) loss_keys.push_back(name);
  EXPECT_EQ(loss_keys, (std::vector<std::string>{"18.weight", "20.pos_weight"}));
  std::ostringstream os;
  os << nn::ReLU();
  EXPECT_EQ(os.str(), "ReLU()");
}

TEST(Module, PyFloatMatchesPythonRepr) {
  EXPECT_EQ(nn::py_float(1e-5), "1e-05");
  EXPECT_EQ(nn::py_float(0.1), "0.1");
  EXPECT_EQ(nn::py_float(0.001), "0.001");
  EXPECT_EQ(nn::py_float(0.0001), "0.0001");
  EXPECT_EQ(nn::py_float(1.0), "1.0");
  EXPECT_EQ(nn::py_float(-2.5), "-2.5");
  EXPECT_EQ(nn::py_float(123456.0), "123456.0");
  EXPECT_EQ(nn::py_float(1e16), "1e+16");
  EXPECT_EQ(nn::py_float(1.5e300), "1.5e+300");
  EXPECT_EQ(nn::py_float(1.0 / 3.0), "0.3333333333333333");
  EXPECT_EQ(nn::py_float(0.0), "0.0");
  EXPECT_EQ(nn::py_float(2.0 / 3.0 * 1e-7), "6.666666666666665e-08");
  EXPECT_EQ(nn::py_tuple({10}), "(10,)");
  EXPECT_EQ(nn::py_tuple({2, 5}), "(2, 5)");
}

TEST(Containers, SequentialModuleListAndModuleDict) {
  nn::Sequential named(std::vector<std::pair<std::string, nn::ModulePtr>>{
      {"fc", std::make_shared<nn::Linear>(3, 4)}, {"act", std::make_shared<nn::ReLU>()}});
  EXPECT_EQ(names_of(named.state_dict()), (std::vector<std::string>{"fc.weight", "fc.bias"}));
  EXPECT_EQ(named.size(), 2u);
  Tensor y = named.forward(ones({2, 3}));
  EXPECT_EQ(y.shape(), Shape({2, 4}));
  for (double v : y.to_vector<double>()) EXPECT_GE(v, 0.0);
  EXPECT_NE(error_of([&] { named[5]; }).find("[Sequential] index 5 is out of range for 2 modules"), std::string::npos);
  EXPECT_NE(error_of([&] { named.at<nn::Conv2d>(0); }).find("[Sequential] child 0 is a Linear"), std::string::npos);

  nn::ModuleList list;
  list.push_back(std::make_shared<nn::Linear>(2, 2));
  list.push_back(std::make_shared<nn::Linear>(2, 2, false));
  EXPECT_EQ(names_of(list.state_dict()), (std::vector<std::string>{"0.weight", "0.bias", "1.weight"}));
  int n = 0;
  for (const auto& m : list) n += m->type_name() == "Linear";
  EXPECT_EQ(n, 2);
  EXPECT_NE(error_of([&] { list.forward(ones({2})); }).find("[ModuleList]"), std::string::npos);

  nn::ModuleDict dict(std::vector<std::pair<std::string, nn::ModulePtr>>{
      {"encoder", std::make_shared<nn::Linear>(4, 2)}, {"act", std::make_shared<nn::ReLU>()}});
  dict.insert("decoder", std::make_shared<nn::Linear>(2, 4, false));
  EXPECT_EQ(dict.keys(), (std::vector<std::string>{"encoder", "act", "decoder"}));
  EXPECT_EQ(dict.size(), 3u);
  EXPECT_TRUE(dict.contains("act"));
  EXPECT_FALSE(dict.contains("head"));
  EXPECT_EQ(names_of(dict.state_dict()), (std::vector<std::string>{"encoder.weight", "encoder.bias", "decoder.weight"}));
  EXPECT_EQ(dict.at<nn::Linear>("decoder")->out_features, 4);
  EXPECT_EQ(error_of([&] { dict["head"]; }), "[ModuleDict] no module 'head' (keys: 'encoder', 'act', 'decoder')");
  EXPECT_NE(error_of([&] { dict.at<nn::Linear>("act"); }).find("[ModuleDict] 'act' is a ReLU"), std::string::npos);
  EXPECT_NE(error_of([&] { dict.insert("act", std::make_shared<nn::ReLU>()); }).find("act"), std::string::npos);
  EXPECT_EQ(dict.repr(),
            "ModuleDict(\n"
            "  (encoder): Linear(in_features=4, out_features=2, bias=True)\n"
            "  (act): ReLU()\n"
            "  (decoder): Linear(in_features=2, out_features=4, bias=False)\n"
            ")");
  EXPECT_NE(error_of([&] { dict.forward(ones({2})); }).find("[ModuleDict]"), std::string::npos);
}

}  // namespace
}  // namespace ember
