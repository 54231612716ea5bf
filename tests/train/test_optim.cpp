// Optimizer tests: 10 steps of every option combination against torch 1.13 (fixtures from
// tests/reference/gen_optim.py) in f32 and f64, non-contiguous parameters, state-dict layout,
// load_state_dict validation, bit-exact save/resume with a scheduler, and gradient clipping.
#include <cmath>
#include <memory>
#include <set>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/parallel.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"
#include "ember/train/lr_scheduler.h"
#include "ember/train/optim.h"

namespace ember::optim {
namespace {

using ::testing::HasSubstr;
using test::Fixture;

const std::vector<std::string> kParams{"a", "b", "c"};
constexpr int kSteps = 10;

// Loaded once per file and never destroyed: tensors must not outlive the allocator at exit.
const Fixture& fixture(const std::string& file) {
  static auto* cache = new std::map<std::string, Fixture>();
  auto it = cache->find(file);
  if (it == cache->end()) it = cache->emplace(file, test::load_fixture("fixtures/" + file)).first;
  return it->second;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// "<opt>/<case>" for every case of a fixture (each has an "<opt>/<case>/ngroups" scalar).
std::vector<std::string> configs(const Fixture& f) {
  std::vector<std::string> out;
  const std::string suffix = "/ngroups";
  for (const auto& [name, v] : f.scalars) {
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      out.push_back(name.substr(0, name.size() - suffix.size()));
    }
  }
  return out;
}

// Group i's options as written by the generator (bools as 0/1, betas as betas0/betas1).
ValueMap group_options(const Fixture& f, const std::string& cfg, int gi) {
  static const std::set<std::string> kBools{"nesterov", "maximize", "amsgrad", "centered"};
  const std::string prefix = str_cat(cfg, "/g", gi, "/");
  ValueMap o;
  double b0 = -1, b1 = -1;
  for (const auto& [name, v] : f.scalars) {
    if (!starts_with(name, prefix)) continue;
    std::string key = name.substr(prefix.size());
    if (key == "betas0") {
      b0 = v;
    } else if (key == "betas1") {
      b1 = v;
    } else if (kBools.count(key)) {
      o[key] = Value(v != 0.0);
    } else {
      o[key] = Value(v);
    }
  }
  if (b0 >= 0) o["betas"] = Value(ValueList{b0, b1});
  return o;
}

std::unique_ptr<Optimizer> make_optimizer(const std::string& kind, std::vector<ParamGroup> groups) {
  if (kind == "sgd") return std::make_unique<SGD>(std::move(groups), SGDOptions{});
  if (kind == "adam") return std::make_unique<Adam>(std::move(groups));
  if (kind == "adamw") return std::make_unique<AdamW>(std::move(groups));
  if (kind == "rmsprop") return std::make_unique<RMSprop>(std::move(groups));
  if (kind == "adagrad") return std::make_unique<Adagrad>(std::move(groups));
  throw Error("unknown optimizer kind " + kind);
}

// Fresh leaf parameters from the fixture's initial values; with strided_a, parameter a is a
// transposed view (non-contiguous), which the update reaches through a contiguous copy.
std::map<std::string, Tensor> make_params(const Fixture& f, DType dt, bool strided_a = false) {
  std::map<std::string, Tensor> params;
  for (const auto& p : kParams) params[p] = f["init/" + p].to(dt).clone().requires_grad_(true);
  if (strided_a) {
    Tensor base = f["init/a"].to(dt).t().contiguous();
    Tensor a = base.t();
    a.requires_grad_(true);
    params["a"] = a;
  }
  return params;
}

std::vector<ParamGroup> make_groups(const Fixture& f, const std::string& cfg, std::map<std::string, Tensor>& params) {
  const int ngroups = static_cast<int>(f.scalar(cfg + "/ngroups"));
  std::vector<ParamGroup> groups;
  if (ngroups == 1) {
    groups.push_back({{{"a", params["a"]}, {"b", params["b"]}, {"c", params["c"]}}, group_options(f, cfg, 0)});
  } else {
    groups.push_back({{{"a", params["a"]}, {"b", params["b"]}}, group_options(f, cfg, 0)});
    // As in the generator, group 0's options are the defaults that group 1 overrides.
    ValueMap g1 = group_options(f, cfg, 0);
    for (auto& [k, v] : group_options(f, cfg, 1)) g1[k] = v;
    groups.push_back({{{"c", params["c"]}}, g1});
  }
  return groups;
}

// Sets the gradients of step t (c has none before step 3) in dtype dt.
void set_grads(const Fixture& f, std::map<std::string, Tensor>& params, int t, DType dt) {
  for (const auto& p : kParams) {
    const std::string name = str_cat("grad/", t, "/", p);
    if (f.tensors.count(name)) {
      params[p].set_grad(f[name].to(dt).clone());
    } else {
      params[p].set_grad(Tensor());
    }
  }
}

void expect_matches_torch(const Fixture& f, const std::string& cfg, DType dt, std::map<std::string, Tensor>& params,
                          const Optimizer& opt) {
  const bool f32 = dt == DType::f32;
  const double rtol = f32 ? 1e-6 : 1e-12, atol = f32 ? 1e-7 : 1e-14;
  const std::string pre = str_cat(cfg, "/", dtype_name(dt), "/");
  for (const auto& p : kParams) {
    SCOPED_TRACE(pre + p);
    EXPECT_TRUE(test::allclose(params[p], f[pre + "param/" + p], rtol, atol));
    // Expected state keys: tensors, "step" scalars and "<key>/none" markers.
    const std::string sp = pre + "state/" + p + "/";
    std::set<std::string> expected_keys;
    for (const auto& [name, t] : f.tensors) {
      if (starts_with(name, sp)) expected_keys.insert(name.substr(sp.size()));
    }
    for (const auto& [name, v] : f.scalars) {
      if (!starts_with(name, sp)) continue;
      std::string key = name.substr(sp.size());
      if (key.size() > 5 && key.compare(key.size() - 5, 5, "/none") == 0) key = key.substr(0, key.size() - 5);
      expected_keys.insert(key);
    }
    const ValueMap* st = opt.state(p);
    ASSERT_NE(st, nullptr);
    std::set<std::string> keys;
    for (const auto& [k, v] : *st) keys.insert(k);
    EXPECT_EQ(keys, expected_keys);
    for (const auto& key : expected_keys) {
      if (!st->count(key)) continue;
      const Value& v = st->at(key);
      if (key == "step") {
        ASSERT_TRUE(v.is_number()) << v.repr();
        EXPECT_EQ(v.as_double(), f.scalar(sp + "step"));
      } else if (f.scalars.count(sp + key + "/none")) {
        EXPECT_TRUE(v.is_null()) << key << " = " << v.repr();
      } else {
        ASSERT_TRUE(v.is_tensor()) << key << " = " << v.repr();
        EXPECT_TRUE(test::allclose(v.as_tensor(), f[sp + key], rtol, atol)) << key;
      }
    }
  }
}

void check_against_torch(const std::string& kind, bool strided_a = false) {
  const Fixture& f = fixture("optim_" + kind + ".txt");
  const auto cfgs = configs(f);
  ASSERT_GE(cfgs.size(), 4u);
  for (const auto& cfg : cfgs) {
    for (DType dt : {DType::f32, DType::f64}) {
      SCOPED_TRACE(str_cat(cfg, " ", dtype_name(dt), strided_a ? " (strided a)" : ""));
      auto params = make_params(f, dt, strided_a);
      auto opt = make_optimizer(kind, make_groups(f, cfg, params));
      for (int t = 0; t < kSteps; ++t) {
        set_grads(f, params, t, dt);
        opt->step();
      }
      if (strided_a) {
        ASSERT_FALSE(params["a"].is_contiguous());
      }
      expect_matches_torch(f, cfg, dt, params, *opt);
    }
  }
}

TEST(OptimTorch, SGD) { check_against_torch("sgd"); }
TEST(OptimTorch, Adam) { check_against_torch("adam"); }
TEST(OptimTorch, AdamW) { check_against_torch("adamw"); }
TEST(OptimTorch, RMSprop) { check_against_torch("rmsprop"); }
TEST(OptimTorch, Adagrad) { check_against_torch("adagrad"); }

// A non-contiguous parameter is updated through a contiguous copy; it must give torch's numbers too.
TEST(OptimTorch, GenericPathSGD) { check_against_torch("sgd", true); }
TEST(OptimTorch, GenericPathAdam) { check_against_torch("adam", true); }
TEST(OptimTorch, GenericPathAdamW) { check_against_torch("adamw", true); }
TEST(OptimTorch, GenericPathRMSprop) { check_against_torch("rmsprop", true); }
TEST(OptimTorch, GenericPathAdagrad) { check_against_torch("adagrad", true); }

// The fused loops split large tensors across threads; results must not depend on the split, and
// must agree with a non-contiguous parameter's.
TEST(OptimTorch, LargeParameterFusedAndGenericPathsAgree) {
  const int64_t n = 70001;  // several parallel chunks, odd tail
  auto run = [&](int threads, bool strided) {
    set_num_threads(threads);
    Generator gen(7);
    Tensor init = randn({n, 2}, {}, &gen);
    Tensor p = strided ? init.t().contiguous().t() : init.clone();
    p.requires_grad_(true);
    RMSprop opt(NamedParams{{"p", p}}, {.weight_decay = 0.01, .momentum = 0.5, .centered = true});
    for (int s = 0; s < 3; ++s) {
      p.set_grad(randn({n, 2}, {}, &gen));
      opt.step();
    }
    return p.contiguous();
  };
  const int saved = get_num_threads();
  Tensor one = run(1, false), two = run(2, false), generic = run(1, true);
  set_num_threads(saved);
  EXPECT_TRUE(test::bit_equal(one, two));
  EXPECT_TRUE(test::allclose(generic, one, 1e-6, 1e-7));
}

// --- layout -------------------------------------------------------------------------------------

std::set<std::string> keys_of(const Value& v) {
  std::set<std::string> k;
  for (const auto& [key, x] : v.as_map()) k.insert(key);
  return k;
}

TEST(OptimStateDict, GroupKeysAreTorchs) {
  Tensor w = zeros({2}).requires_grad_(true);
  NamedParams ps{{"w", w}};
  const std::set<std::string> common{"params", "param_names", "lr", "foreach", "maximize", "weight_decay"};
  auto with = [&](std::set<std::string> extra) {
    extra.insert(common.begin(), common.end());
    return extra;
  };
  EXPECT_EQ(keys_of(SGD(ps, {.lr = 0.1}).state_dict().at("param_groups").as_list()[0]),
            with({"momentum", "dampening", "nesterov", "differentiable"}));
  EXPECT_EQ(keys_of(Adam(ps).state_dict().at("param_groups").as_list()[0]),
            with({"betas", "eps", "amsgrad", "capturable", "differentiable", "fused"}));
  EXPECT_EQ(keys_of(AdamW(ps).state_dict().at("param_groups").as_list()[0]),
            with({"betas", "eps", "amsgrad", "capturable"}));
  EXPECT_EQ(keys_of(RMSprop(ps).state_dict().at("param_groups").as_list()[0]),
            with({"alpha", "eps", "momentum", "centered", "differentiable"}));
  EXPECT_EQ(keys_of(Adagrad(ps).state_dict().at("param_groups").as_list()[0]),
            with({"lr_decay", "eps", "initial_accumulator_value"}));
}

TEST(OptimStateDict, IndicesNamesAndState) {
  Tensor a = ones({2, 2}).requires_grad_(true), b = ones({3}).requires_grad_(true), c = ones({1}).requires_grad_(true);
  Adam opt(std::vector<ParamGroup>{{{{"enc.w", a}, {"enc.b", b}}, {}}, {{{"head.w", c}}, {{"lr", 0.5}}}},
           {.lr = 0.01, .amsgrad = true});
  a.set_grad(full({2, 2}, 0.5));
  c.set_grad(full({1}, -1.0));
  opt.step();
  opt.step();
  Value sd = opt.state_dict();
  const ValueList& groups = sd.at("param_groups").as_list();
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].at("params"), Value(ValueList{0, 1}));
  EXPECT_EQ(groups[0].at("param_names"), Value(ValueList{"enc.w", "enc.b"}));
  EXPECT_EQ(groups[1].at("params"), Value(ValueList{2}));
  EXPECT_EQ(groups[1].at("param_names"), Value(ValueList{"head.w"}));
  EXPECT_EQ(groups[0].at("lr").as_double(), 0.01);
  EXPECT_EQ(groups[1].at("lr").as_double(), 0.5);
  EXPECT_EQ(groups[1].at("amsgrad"), Value(true));
  EXPECT_EQ(groups[0].at("betas"), Value(ValueList{0.9, 0.999}));
  // b never had a gradient: no state, as torch.
  EXPECT_EQ(keys_of(sd.at("state")), (std::set<std::string>{"0", "2"}));
  const Value& s0 = sd.at("state").at("0");
  EXPECT_EQ(keys_of(s0), (std::set<std::string>{"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}));
  EXPECT_EQ(s0.at("step"), Value(2.0));
  EXPECT_EQ(s0.at("exp_avg").as_tensor().shape(), (Shape{2, 2}));
  // The state tensors alias the live state.
  EXPECT_TRUE(s0.at("exp_avg").as_tensor().is_alias_of(opt.state("enc.w")->at("exp_avg").as_tensor()));
  EXPECT_EQ(opt.state("enc.b"), nullptr);
}

TEST(OptimStateDict, RMSpropStepIsIntAndSGDBufferIsNull) {
  Tensor w = ones({2}).requires_grad_(true);
  RMSprop rms(NamedParams{{"w", w}});
  w.set_grad(ones({2}));
  rms.step();
  EXPECT_EQ(rms.state("w")->at("step"), Value(int64_t{1}));
  SGD sgd(NamedParams{{"w", w}}, {.lr = 0.1});
  sgd.step();
  EXPECT_TRUE(sgd.state("w")->at("momentum_buffer").is_null());
  Adagrad ada(NamedParams{{"w", w}}, {.initial_accumulator_value = 0.25});
  // Adagrad's state exists from construction, as torch.
  ASSERT_NE(ada.state("w"), nullptr);
  EXPECT_EQ(ada.state("w")->at("step"), Value(0.0));
  EXPECT_EQ(ada.state("w")->at("sum").as_tensor().to_vector<float>(), (std::vector<float>{0.25f, 0.25f}));
}

// torch 1.13's Adagrad fills every group's "sum" with the constructor's initial_accumulator_value
// and ignores a group's own; Ember honours the group's value (a deliberate difference).
TEST(OptimOptions, AdagradHonoursPerGroupInitialAccumulator) {
  Tensor a = zeros({2}).requires_grad_(true), b = zeros({2}).requires_grad_(true);
  Adagrad opt(std::vector<ParamGroup>{{{{"a", a}}, {}}, {{{"b", b}}, {{"initial_accumulator_value", 0.75}}}},
              {.initial_accumulator_value = 0.25});
  EXPECT_EQ(opt.state("a")->at("sum").as_tensor().to_vector<float>(), (std::vector<float>{0.25f, 0.25f}));
  EXPECT_EQ(opt.state("b")->at("sum").as_tensor().to_vector<float>(), (std::vector<float>{0.75f, 0.75f}));
  Tensor c = zeros({1}).requires_grad_(true);
  opt.add_param_group({{{"c", c}}, {{"initial_accumulator_value", 2.0}}});  // torch: no state at all here
  EXPECT_EQ(opt.state("c")->at("sum").as_tensor().item<double>(), 2.0);
}

TEST(OptimOptions, TypedOptionsEqualGroupOptions) {
  Tensor w = ones({2}).requires_grad_(true);
  Adam typed(NamedParams{{"w", w}}, {.lr = 0.02, .betas = {0.8, 0.9}, .weight_decay = 0.1, .amsgrad = true});
  Adam grouped(std::vector<ParamGroup>{{{{"w", w}},
                                        {{"lr", 0.02},
                                         {"betas", ValueList{0.8, 0.9}},
                                         {"weight_decay", int64_t{0}},
                                         {"amsgrad", true}}}});
  ValueMap a = typed.param_groups()[0].options, b = grouped.param_groups()[0].options;
  EXPECT_EQ(b.at("weight_decay"), Value(0.0));  // ints become floats
  b["weight_decay"] = Value(0.1);
  EXPECT_EQ(Value(a), Value(b));
}

TEST(OptimOptions, AddParamGroupFillsDefaultsAndKeepsExtras) {
  Tensor a = ones({2}).requires_grad_(true), b = ones({2}).requires_grad_(true);
  SGD opt(NamedParams{{"a", a}}, {.lr = 0.1, .momentum = 0.9});
  opt.add_param_group({{{"b", b}}, {{"lr", 0.01}, {"initial_lr", 0.01}}});
  ASSERT_EQ(opt.param_groups().size(), 2u);
  const ValueMap& o = opt.param_groups()[1].options;
  EXPECT_EQ(o.at("lr").as_double(), 0.01);
  EXPECT_EQ(o.at("momentum").as_double(), 0.9);
  EXPECT_EQ(o.at("initial_lr").as_double(), 0.01);
  EXPECT_EQ(opt.param_groups()[1].lr(), 0.01);
}

TEST(OptimOptions, ConstructorErrors) {
  Tensor a = ones({2}).requires_grad_(true), b = ones({2}).requires_grad_(true);
  auto throws = [](auto&& fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "expected an ember::Error containing: " << needle;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(needle));
    }
  };
  throws([&] { SGD(NamedParams{{"a", a}}, SGDOptions{}); }, "[SGD] parameter group 0 doesn't specify lr");
  throws([&] { SGD(NamedParams{{"a", a}}, {.lr = 0.1, .nesterov = true}); },
         "Nesterov momentum requires a momentum and zero dampening");
  throws([&] { Adam(NamedParams{{"a", a}}, {.lr = -1.0}); }, "[Adam] parameter group 0: invalid learning rate value: -1");
  throws([&] { Adam(NamedParams{{"a", a}}, {.betas = {0.9, 1.0}}); }, "invalid beta parameter at index 1: 1");
  throws([&] { RMSprop(NamedParams{{"a", a}}, {.alpha = -0.5}); }, "invalid alpha value: -0.5");
  throws([&] { Adagrad(NamedParams{}); }, "[Adagrad] optimizer got an empty parameter list");
  throws([&] { Adam(NamedParams{{"a", a}, {"a", b}}); }, "parameter name 'a' appears more than once");
  throws([&] { Adam(NamedParams{{"a", a}, {"b", a}}); }, "parameter 'b' is the same tensor as another parameter");
  throws([&] { Adam(NamedParams{{"i", zeros({2}, DType::i64)}}); }, "parameter 'i' has dtype i64");
  throws([&] { Adam(std::vector<ParamGroup>{{{{"a", a}}, {{"amsgrad", 1.0}}}}); },
         "option 'amsgrad' must be a bool, got 1");
  Tensor nonleaf = mul(a, 2.0);
  throws([&] { Adam(NamedParams{{"n", nonleaf}}); }, "can't optimize a non-leaf tensor ('n')");
  Adam opt(NamedParams{{"a", a}});
  throws([&] { opt.add_param_group({{{"a2", a}}, {}}); }, "parameter 'a2' is the same tensor as another");
  throws([&] { opt.add_param_group({{{"a", b}}, {}}); }, "parameter name 'a' appears more than once");
  EXPECT_EQ(opt.param_groups().size(), 1u);
}

TEST(OptimBehaviour, ZeroGradAndClosure) {
  Tensor w = from_vector(std::vector<float>{1.0f, -2.0f}, {2}).requires_grad_(true);
  SGD opt(NamedParams{{"w", w}}, {.lr = 0.5});
  w.set_grad(ones({2}));
  opt.zero_grad(false);
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{0.0f, 0.0f}));
  opt.zero_grad();
  EXPECT_FALSE(w.grad().defined());
  // step(closure): loss = sum(w * w), grad 2w, w -= 0.5 * 2w -> 0.
  Tensor loss = opt.step([&] {
    opt.zero_grad();
    Tensor l = sum(mul(w, w));
    l.backward();
    return l;
  });
  EXPECT_DOUBLE_EQ(loss.item_double(), 5.0);
  EXPECT_EQ(w.to_vector<float>(), (std::vector<float>{0.0f, 0.0f}));
  EXPECT_FALSE(w.grad_fn());
  EXPECT_TRUE(w.requires_grad());
}

TEST(OptimBehaviour, GroupLrChangesTakeEffect) {
  Tensor w = zeros({1}).requires_grad_(true);
  SGD opt(NamedParams{{"w", w}}, {.lr = 1.0});
  w.set_grad(ones({1}));
  opt.step();
  opt.param_groups()[0].set_lr(0.25);
  opt.step();
  EXPECT_EQ(w.item<double>(), -1.25);
}

// --- load_state_dict validation ---------------------------------------------------------------

struct Trained {
  Tensor a = ones({2, 3}).requires_grad_(true);
  Tensor b = ones({4}).requires_grad_(true);
  std::unique_ptr<Adam> opt;
  Trained() {
    opt = std::make_unique<Adam>(NamedParams{{"fc.weight", a}, {"fc.bias", b}}, AdamOptions{.amsgrad = true});
    a.set_grad(full({2, 3}, 0.1));
    b.set_grad(full({4}, -0.2));
    opt->step();
  }
};

std::string load_error(Optimizer& opt, const Value& sd) {
  try {
    opt.load_state_dict(sd);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(OptimLoad, GroupAndParameterCounts) {
  Trained src;
  Tensor x = ones({2, 3}).requires_grad_(true), y = ones({4}).requires_grad_(true);
  Adam two_groups(std::vector<ParamGroup>{{{{"fc.weight", x}}, {}}, {{{"fc.bias", y}}, {}}});
  EXPECT_EQ(load_error(two_groups, src.opt->state_dict()),
            "[Adam] load_state_dict: the state dict has 1 parameter groups but the optimizer has 2");
  Adam one_param(NamedParams{{"fc.weight", x}});
  EXPECT_EQ(load_error(one_param, src.opt->state_dict()),
            "[Adam] load_state_dict: parameter group 0 has 2 parameters in the state dict but 1 in the optimizer");
}

TEST(OptimLoad, NamesShapesDtypesAndKeysAllReported) {
  Trained src;
  // Names swapped, and the shapes/dtypes of the destination differ from the saved state.
  Tensor x = ones({3, 2}).requires_grad_(true), y = ones({4}, DType::f64).requires_grad_(true);
  Adam dst(NamedParams{{"fc.bias", x}, {"fc.weight", y}}, {.amsgrad = true});
  std::string msg = load_error(dst, src.opt->state_dict());
  EXPECT_THAT(msg, HasSubstr("[Adam] load_state_dict: 8 problems: "));
  EXPECT_THAT(msg, HasSubstr("parameter group 0 position 0: the state dict has 'fc.weight', the optimizer has 'fc.bias'"));
  EXPECT_THAT(msg, HasSubstr("parameter group 0 position 1: the state dict has 'fc.bias', the optimizer has 'fc.weight'"));
  EXPECT_THAT(msg, HasSubstr("state of 'fc.bias': 'exp_avg' has shape (2, 3) but the parameter has shape (3, 2)"));
  EXPECT_THAT(msg, HasSubstr("state of 'fc.weight': 'exp_avg' has dtype f32 but the parameter has dtype f64"));
  EXPECT_EQ(dst.state("fc.bias"), nullptr);  // nothing changed

  // Missing and unexpected state keys; a bad option; a bad step.
  Tensor p = ones({2, 3}).requires_grad_(true), q = ones({4}).requires_grad_(true);
  Adam good(NamedParams{{"fc.weight", p}, {"fc.bias", q}});
  Value sd = src.opt->state_dict().deep_copy();
  sd["state"]["0"].as_map().erase("exp_avg_sq");
  sd["state"]["1"]["momentum_buffer"] = Value(ones({4}));
  sd["state"]["1"]["step"] = Value(-3.0);
  sd["param_groups"].as_list()[0]["eps"] = Value("tiny");
  msg = load_error(good, sd);
  EXPECT_THAT(msg, HasSubstr("4 problems"));
  EXPECT_THAT(msg, HasSubstr("state of 'fc.weight' lacks 'exp_avg_sq'"));
  EXPECT_THAT(msg, HasSubstr("state of 'fc.bias' has unexpected key 'momentum_buffer'"));
  EXPECT_THAT(msg, HasSubstr("state of 'fc.bias': 'step' must be a non-negative whole number, got -3"));
  EXPECT_THAT(msg, HasSubstr("[Adam] parameter group 0: option 'eps' must be a number, got \"tiny\""));
  EXPECT_EQ(good.state("fc.weight"), nullptr);
  EXPECT_EQ(good.param_groups()[0].options.at("eps").as_double(), 1e-8);

  // amsgrad groups need max_exp_avg_sq.
  sd = src.opt->state_dict().deep_copy();
  sd["state"]["1"].as_map().erase("max_exp_avg_sq");
  EXPECT_THAT(load_error(good, sd), HasSubstr("1 problem: state of 'fc.bias' lacks 'max_exp_avg_sq'"));
  // A state entry that points at no parameter.
  sd = src.opt->state_dict().deep_copy();
  sd["state"]["7"] = sd["state"]["0"];
  EXPECT_THAT(load_error(good, sd), HasSubstr("state entry '7' refers to no parameter"));
  // Not a state dict at all.
  EXPECT_THAT(load_error(good, Value(ValueMap{{"state", ValueMap{}}})), HasSubstr("'param_groups' is missing"));
}

TEST(OptimLoad, TorchStyleDictWithoutNamesLoadsByPosition) {
  Trained src;
  Value sd = src.opt->state_dict().deep_copy();
  sd["param_groups"].as_list()[0].as_map().erase("param_names");
  // torch 1.13 keeps Adam's step as a one-element float32 tensor.
  sd["state"]["0"]["step"] = Value(scalar_tensor(1.0));
  Tensor p = ones({2, 3}).requires_grad_(true), q = ones({4}).requires_grad_(true);
  Adam dst(NamedParams{{"w", p}, {"b", q}});
  dst.load_state_dict(sd);
  EXPECT_EQ(dst.state("w")->at("step"), Value(1.0));
  EXPECT_TRUE(test::bit_equal(dst.state("w")->at("exp_avg").as_tensor(),
                              src.opt->state("fc.weight")->at("exp_avg").as_tensor()));
  EXPECT_EQ(dst.param_groups()[0].options.at("amsgrad"), Value(true));  // options come from the dict
  // The loaded tensors are copies.
  EXPECT_FALSE(dst.state("w")->at("exp_avg").as_tensor().is_alias_of(sd["state"]["0"]["exp_avg"].as_tensor()));
}

// --- save / resume: bit-identical to an uninterrupted run -------------------------------------

using SchedFactory = std::function<std::shared_ptr<LRScheduler>(Optimizer&)>;

struct Trainer {
  std::map<std::string, Tensor> params;
  std::unique_ptr<Optimizer> opt;
  std::shared_ptr<LRScheduler> sched;
  std::unique_ptr<ReduceLROnPlateau> plateau;
};

Trainer make_trainer(const Fixture& f, const std::string& cfg, const std::string& kind, const SchedFactory& sf,
                     bool plateau) {
  Trainer t;
  t.params = make_params(f, DType::f32);
  t.opt = make_optimizer(kind, make_groups(f, cfg, t.params));
  if (sf) t.sched = sf(*t.opt);
  if (plateau) t.plateau = std::make_unique<ReduceLROnPlateau>(*t.opt, ReduceLROnPlateauOptions{.patience = 0});
  return t;
}

void train_steps(const Fixture& f, Trainer& t, int from, int to) {
  for (int s = from; s < to; ++s) {
    set_grads(f, t.params, s, DType::f32);
    t.opt->step();
    if (t.sched) t.sched->step();
    if (t.plateau) t.plateau->step(1.0 + 0.1 * (s % 3));  // plateaus: reduces the lr now and then
  }
}

void check_round_trip(const std::string& kind, const std::string& cfg, const SchedFactory& sf, bool plateau = false) {
  SCOPED_TRACE(cfg);
  const Fixture& f = fixture("optim_" + kind + ".txt");
  Trainer full_run = make_trainer(f, cfg, kind, sf, plateau);
  train_steps(f, full_run, 0, kSteps);

  Trainer first = make_trainer(f, cfg, kind, sf, plateau);
  train_steps(f, first, 0, 5);
  ValueMap model;
  for (auto& [name, p] : first.params) model[name] = Value(p.detach().clone());
  Value opt_sd = first.opt->state_dict().deep_copy();
  Value sched_sd = first.sched ? first.sched->state_dict() : (first.plateau ? first.plateau->state_dict() : Value());
  first = Trainer();  // the original objects are gone

  Trainer resumed = make_trainer(f, cfg, kind, sf, plateau);
  for (auto& [name, p] : resumed.params) {
    NoGradGuard ng;
    p.copy_(model.at(name).as_tensor());
  }
  resumed.opt->load_state_dict(opt_sd);
  if (resumed.sched) resumed.sched->load_state_dict(sched_sd);
  if (resumed.plateau) resumed.plateau->load_state_dict(sched_sd);
  train_steps(f, resumed, 5, kSteps);

  for (const auto& p : kParams) {
    EXPECT_TRUE(test::bit_equal(resumed.params[p], full_run.params[p])) << p;
    const ValueMap* a = resumed.opt->state(p);
    const ValueMap* b = full_run.opt->state(p);
    ASSERT_TRUE(a && b);
    EXPECT_EQ(Value(*a), Value(*b)) << p;  // tensors compared bytewise
  }
  EXPECT_EQ(resumed.opt->state_dict().at("param_groups"), full_run.opt->state_dict().at("param_groups"));
  if (sf) {
    EXPECT_EQ(resumed.sched->state_dict(), full_run.sched->state_dict());
    EXPECT_EQ(resumed.sched->get_last_lr(), full_run.sched->get_last_lr());
  }
  if (plateau) {
    EXPECT_EQ(resumed.plateau->state_dict(), full_run.plateau->state_dict());
  }
}

TEST(OptimRoundTrip, SGDWithStepLR) {
  check_round_trip("sgd", "sgd/groups", [](Optimizer& o) { return std::make_shared<StepLR>(o, 3, 0.5); });
}
TEST(OptimRoundTrip, SGDNesterovWithSequentialLR) {
  check_round_trip("sgd", "sgd/nesterov_wd_max", [](Optimizer& o) {
    return std::make_shared<SequentialLR>(
        o,
        std::vector<std::shared_ptr<LRScheduler>>{std::make_shared<LinearLR>(o, 0.1, 1.0, 4),
                                                  std::make_shared<CosineAnnealingLR>(o, 6)},
        std::vector<int64_t>{4});
  });
}
TEST(OptimRoundTrip, AdamWithOneCycleLR) {
  check_round_trip("adam", "adam/all", [](Optimizer& o) {
    return std::make_shared<OneCycleLR>(o, OneCycleLROptions{.max_lr = {0.05}, .total_steps = 12});
  });
}
TEST(OptimRoundTrip, AdamWGroupsWithChainedScheduler) {
  check_round_trip("adamw", "adamw/groups", [](Optimizer& o) {
    return std::make_shared<ChainedScheduler>(std::vector<std::shared_ptr<LRScheduler>>{
        std::make_shared<ConstantLR>(o, 0.5, 3), std::make_shared<ExponentialLR>(o, 0.8)});
  });
}
TEST(OptimRoundTrip, RMSpropWithWarmRestarts) {
  check_round_trip("rmsprop", "rmsprop/all",
                   [](Optimizer& o) { return std::make_shared<CosineAnnealingWarmRestarts>(o, 2, 2, 1e-4); });
}
TEST(OptimRoundTrip, AdagradWithPlateau) { check_round_trip("adagrad", "adagrad/all", nullptr, true); }

// --- gradient clipping -------------------------------------------------------------------------

std::vector<Tensor> clip_params(const Fixture& f) {
  std::vector<Tensor> ps;
  for (const auto& p : kParams) {
    Tensor t = zeros(f["clipin/" + p].shape()).requires_grad_(true);
    t.set_grad(f["clipin/" + p].clone());
    ps.push_back(t);
  }
  return ps;
}

TEST(ClipGrad, NormMatchesTorch) {
  const Fixture& f = fixture("optim_clip.txt");
  for (const char* c : {"l2_clip", "l2_noclip", "l1", "inf", "p3_5"}) {
    SCOPED_TRACE(c);
    const std::string pre = std::string("clip/") + c + "/";
    std::vector<Tensor> ps = clip_params(f);
    double total = clip_grad_norm_(ps, f.scalar(pre + "max_norm"), f.scalar(pre + "norm_type"));
    EXPECT_NEAR(total, f.scalar(pre + "total"), 1e-6 * f.scalar(pre + "total"));
    for (size_t i = 0; i < ps.size(); ++i) {
      EXPECT_TRUE(test::allclose(ps[i].grad(), f[pre + "g/" + kParams[i]], 1e-6, 1e-7)) << kParams[i];
    }
  }
}

TEST(ClipGrad, ValueMatchesTorch) {
  const Fixture& f = fixture("optim_clip.txt");
  for (const char* c : {"v02", "v1"}) {
    const std::string pre = std::string("clipv/") + c + "/";
    std::vector<Tensor> ps = clip_params(f);
    clip_grad_value_(ps, f.scalar(pre + "clip_value"));
    for (size_t i = 0; i < ps.size(); ++i) EXPECT_TRUE(test::bit_equal(ps[i].grad(), f[pre + "g/" + kParams[i]]));
  }
}

TEST(ClipGrad, EdgeCases) {
  Tensor a = zeros({3}).requires_grad_(true), b = zeros({2}).requires_grad_(true);
  EXPECT_EQ(clip_grad_norm_(std::vector<Tensor>{a, b}, 1.0), 0.0);  // no gradients
  a.set_grad(from_vector(std::vector<float>{3.0f, 0.0f, 4.0f}, {3}));
  // Named form; b has no gradient and is skipped.
  EXPECT_NEAR(clip_grad_norm_(NamedParams{{"a", a}, {"b", b}}, 1.0), 5.0, 1e-6);
  std::vector<float> g = a.grad().to_vector<float>();
  EXPECT_NEAR(g[0], 0.6, 1e-6);
  EXPECT_NEAR(g[2], 0.8, 1e-6);
  a.set_grad(from_vector(std::vector<float>{1.0f, INFINITY, 0.0f}, {3}));
  try {
    clip_grad_norm_(std::vector<Tensor>{a}, 1.0, 2.0, true);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("[clip_grad_norm_] the total norm of order 2 of the gradients is inf"));
  }
  EXPECT_EQ(a.grad().to_vector<float>()[0], 1.0f);  // unchanged when it throws
  EXPECT_THROW(clip_grad_norm_(std::vector<Tensor>{a}, 1.0, 0.0), Error);
  b.set_grad(from_vector(std::vector<float>{-3.0f, 0.5f}, {2}));
  clip_grad_value_(NamedParams{{"b", b}}, 1.0);
  EXPECT_EQ(b.grad().to_vector<float>(), (std::vector<float>{-1.0f, 0.5f}));
}

}  // namespace
}  // namespace ember::optim
