// LR scheduler tests against torch 1.13 (fixtures from tests/reference/gen_sched.py): the lr
// (and momentum) sequence of every scheduler over 50 steps, closed forms via step_to, plateau
// metric sequences, torch's numeric state_dict fields, save/resume mid-run, error messages, and the
// closed forms as free functions (known values, and equal to what the classes compute).
#include <cmath>
#include <functional>
#include <iomanip>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/check.h"
#include "ember/train/lr_scheduler.h"
#include "ember/train/optim.h"

namespace ember::optim {
namespace {

using ::testing::HasSubstr;
using test::Fixture;

constexpr int kSteps = 50;

// Loaded once and never destroyed: tensors must not outlive the allocator at exit.
const Fixture& fixture() {
  static const auto* f = new Fixture(test::load_fixture("fixtures/sched_lr.txt"));
  return *f;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// Two groups (lr 0.1 and 0.05) as in the generator: SGD with momentum 0.9, or Adam.
struct Rig {
  Tensor a = zeros({3}).requires_grad_(true);
  Tensor b = zeros({2}).requires_grad_(true);
  std::unique_ptr<Optimizer> opt;
  explicit Rig(const std::string& kind = "sgd") {
    std::vector<ParamGroup> groups{{{{"a", a}}, {}}, {{{"b", b}}, {{"lr", 0.05}}}};
    if (kind == "adam") {
      opt = std::make_unique<Adam>(std::move(groups), AdamOptions{.lr = 0.1});
    } else {
      opt = std::make_unique<SGD>(std::move(groups), SGDOptions{.lr = 0.1, .momentum = 0.9});
    }
  }
  std::vector<double> lrs() const { return {opt->param_groups()[0].lr(), opt->param_groups()[1].lr()}; }
  std::vector<double> momenta() const {
    std::vector<double> m;
    for (const auto& g : opt->param_groups()) {
      const ValueMap& o = g.options;
      m.push_back(o.count("betas") ? o.at("betas").as_list()[0].as_double() : o.at("momentum").as_double());
    }
    return m;
  }
};

using Factory = std::function<std::shared_ptr<LRScheduler>(Optimizer&)>;
template <typename S, typename... Args>
Factory make(Args... args) {
  return [=](Optimizer& o) { return std::make_shared<S>(o, args...); };
}
using Scheds = std::vector<std::shared_ptr<LRScheduler>>;

struct Case {
  std::string name;
  std::string kind;  // "sgd" or "adam"
  Factory factory;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> c{
      {"step", "sgd", make<StepLR>(int64_t{7}, 0.5)},
      {"multistep", "sgd", make<MultiStepLR>(std::vector<int64_t>{5, 12, 12, 30}, 0.3)},
      {"constant", "sgd", make<ConstantLR>(0.25, int64_t{8})},
      {"linear", "sgd", make<LinearLR>(0.2, 0.9, int64_t{12})},
      {"linear_default", "sgd", [](Optimizer& o) { return std::make_shared<LinearLR>(o); }},
      {"exponential", "sgd", make<ExponentialLR>(0.93)},
      {"polynomial", "sgd", make<PolynomialLR>(int64_t{20}, 2.0)},
      {"cosine", "sgd", make<CosineAnnealingLR>(int64_t{15}, 0.001)},
      {"warm_restarts", "sgd", make<CosineAnnealingWarmRestarts>(int64_t{5}, int64_t{2}, 0.0005)},
      {"warm_restarts_mult1", "sgd", make<CosineAnnealingWarmRestarts>(int64_t{7})},
      {"onecycle_cos", "sgd",
       [](Optimizer& o) {
         return std::make_shared<OneCycleLR>(o, OneCycleLROptions{.max_lr = {1.0, 0.5}, .total_steps = 50});
       }},
      {"onecycle_linear_3phase", "sgd",
       [](Optimizer& o) {
         return std::make_shared<OneCycleLR>(o, OneCycleLROptions{.max_lr = {0.8},
                                                                  .total_steps = 50,
                                                                  .anneal_strategy = "linear",
                                                                  .base_momentum = {0.8},
                                                                  .max_momentum = {0.9},
                                                                  .three_phase = true});
       }},
      {"onecycle_epochs_nomomentum", "sgd",
       [](Optimizer& o) {
         return std::make_shared<OneCycleLR>(o, OneCycleLROptions{.max_lr = {0.5},
                                                                  .epochs = 5,
                                                                  .steps_per_epoch = 10,
                                                                  .pct_start = 0.25,
                                                                  .cycle_momentum = false,
                                                                  .div_factor = 10.0,
                                                                  .final_div_factor = 100.0});
       }},
      {"onecycle_adam", "adam",
       [](Optimizer& o) {
         return std::make_shared<OneCycleLR>(
             o, OneCycleLROptions{.max_lr = {0.01}, .total_steps = 50, .pct_start = 0.4});
       }},
      {"sequential", "sgd",
       [](Optimizer& o) {
         return std::make_shared<SequentialLR>(
             o, Scheds{std::make_shared<LinearLR>(o, 0.1, 1.0, 5), std::make_shared<CosineAnnealingLR>(o, 20)},
             std::vector<int64_t>{5});
       }},
      {"sequential3", "sgd",
       [](Optimizer& o) {
         return std::make_shared<SequentialLR>(
             o,
             Scheds{std::make_shared<ConstantLR>(o, 0.5, 3), std::make_shared<ExponentialLR>(o, 0.9),
                    std::make_shared<StepLR>(o, 4, 0.5)},
             std::vector<int64_t>{6, 20});
       }},
      {"chained", "sgd",
       [](Optimizer& o) {
         return std::make_shared<ChainedScheduler>(
             Scheds{std::make_shared<ConstantLR>(o, 0.1, 2), std::make_shared<ExponentialLR>(o, 0.9)});
       }},
      {"lambda", "sgd",
       [](Optimizer& o) {
         return std::make_shared<LambdaLR>(
             o, std::vector<LambdaLR::Fn>{[](int64_t e) { return std::pow(0.95, static_cast<double>(e)); },
                                          [](int64_t e) { return 1.0 / (1.0 + static_cast<double>(e)); }});
       }},
      {"cosine_resume", "sgd",
       [](Optimizer& o) {
         for (size_t i = 0; i < 2; ++i) {
           const double lr = i == 0 ? 0.1 : 0.05;
           o.param_groups()[i].options["initial_lr"] = Value(lr);
           o.param_groups()[i].set_lr(lr * 0.3);
         }
         return std::make_shared<CosineAnnealingLR>(o, 15, 0.001, 10);
       }},
  };
  return c;
}

// Exact comparison of a recorded (rows, 2) sequence with the fixture's; reports the first miss.
void expect_sequence(const std::vector<std::vector<double>>& got, const std::string& name) {
  const Tensor& t = fixture()[name];
  ASSERT_EQ(t.dim(), 2);
  ASSERT_EQ(static_cast<size_t>(t.size(0)), got.size()) << name;
  std::vector<double> want = t.to_vector<double>();
  for (size_t i = 0; i < got.size(); ++i) {
    for (size_t g = 0; g < 2; ++g) {
      const double w = want[i * 2 + g];
      if (got[i][g] != w && !(std::isnan(w) && std::isnan(got[i][g]))) {
        ADD_FAILURE() << name << " row " << i << " group " << g << ": got " << str_cat(std::setprecision(17), got[i][g])
                      << ", torch " << str_cat(std::setprecision(17), w);
        return;
      }
    }
  }
}

// Every numeric field torch's state_dict had (fixture "<case>/sd/<path>") equals ours.
void expect_torch_fields(const Value& sd, const std::string& c) {
  const std::string pre = c + "/sd/";
  int checked = 0;
  auto walk = [&](const std::string& path) -> const Value* {
    const Value* v = &sd;
    size_t start = 0;
    while (start <= path.size()) {
      size_t slash = path.find('/', start);
      std::string key = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
      if (v->is_map()) {
        if (!v->contains(key)) return nullptr;
        v = &v->at(key);
      } else if (v->is_list()) {
        size_t i = std::stoul(key);
        if (i >= v->as_list().size()) return nullptr;
        v = &v->as_list()[i];
      } else {
        return nullptr;
      }
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
    return v;
  };
  for (const auto& [name, want] : fixture().scalars) {
    if (!starts_with(name, pre)) continue;
    const Value* v = walk(name.substr(pre.size()));
    ASSERT_TRUE(v && v->is_number()) << name << " missing or not a number in " << sd.repr();
    EXPECT_EQ(v->as_double(), want) << name;
    ++checked;
  }
  for (const auto& [name, t] : fixture().tensors) {
    if (!starts_with(name, pre)) continue;
    const Value* v = walk(name.substr(pre.size()));
    ASSERT_TRUE(v && v->is_list()) << name << " missing or not a list in " << sd.repr();
    std::vector<double> want = t.to_vector<double>();
    ASSERT_EQ(v->as_list().size(), want.size()) << name;
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(v->as_list()[i].as_double(), want[i]) << name << "[" << i << "]";
    ++checked;
  }
  EXPECT_GE(checked, 3) << c;
}

TEST(LRSchedulerTorch, SequencesMatchBitForBit) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    Rig s(c.kind);
    auto sched = c.factory(*s.opt);
    const bool momentum = fixture().tensors.count(c.name + "/momentum") > 0;
    std::vector<std::vector<double>> lrs{s.lrs()}, moms{s.momenta()};
    EXPECT_EQ(sched->get_last_lr(), s.lrs());
    for (int i = 0; i < kSteps; ++i) {
      sched->step();
      lrs.push_back(s.lrs());
      moms.push_back(s.momenta());
      EXPECT_EQ(sched->get_last_lr(), s.lrs());
    }
    expect_sequence(lrs, c.name + "/lr");
    if (momentum) {
      expect_sequence(moms, c.name + "/momentum");
    }
    expect_torch_fields(sched->state_dict(), c.name);
  }
}

TEST(LRSchedulerTorch, ClosedFormsViaStepTo) {
  const std::vector<Case> closed{
      {"closed_step", "sgd", make<StepLR>(int64_t{7}, 0.5)},
      {"closed_multistep", "sgd", make<MultiStepLR>(std::vector<int64_t>{5, 12, 12, 30}, 0.3)},
      {"closed_constant", "sgd", make<ConstantLR>(0.25, int64_t{8})},
      {"closed_linear", "sgd", make<LinearLR>(0.2, 0.9, int64_t{12})},
      {"closed_exponential", "sgd", make<ExponentialLR>(0.93)},
      {"closed_polynomial", "sgd", make<PolynomialLR>(int64_t{20}, 2.0)},
      {"closed_cosine", "sgd", make<CosineAnnealingLR>(int64_t{15}, 0.001)},
      {"fractional_warm_restarts", "sgd", make<CosineAnnealingWarmRestarts>(int64_t{5}, int64_t{2}, 0.0005)},
      {"fractional_warm_restarts_mult3", "sgd", make<CosineAnnealingWarmRestarts>(int64_t{3}, int64_t{3})},
      {"fractional_warm_restarts_mult1", "sgd", make<CosineAnnealingWarmRestarts>(int64_t{7})},
  };
  for (const Case& c : closed) {
    SCOPED_TRACE(c.name);
    Rig s;
    auto sched = c.factory(*s.opt);
    std::vector<std::vector<double>> lrs{s.lrs()};
    for (double e : fixture()[c.name + "/epochs"].to_vector<double>()) {
      sched->step_to(e);
      lrs.push_back(s.lrs());
    }
    expect_sequence(lrs, c.name + "/lr");
    expect_torch_fields(sched->state_dict(), c.name);
  }
}

ReduceLROnPlateauOptions plateau_options(const std::string& name) {
  if (name == "plateau_min_rel") {
    return {.mode = "min", .factor = 0.5, .patience = 2, .threshold = 0.01, .cooldown = 1, .min_lr = {0.01, 0.002}};
  }
  if (name == "plateau_min_abs") {
    return {.mode = "min", .factor = 0.3, .patience = 1, .threshold = 0.05, .threshold_mode = "abs"};
  }
  if (name == "plateau_max_rel") {
    return {.mode = "max", .factor = 0.7, .patience = 3, .threshold = 0.02, .cooldown = 2, .min_lr = {0.03}};
  }
  return {.mode = "max",
          .factor = 0.5,
          .patience = 0,
          .threshold = 0.1,
          .threshold_mode = "abs",
          .cooldown = 3,
          .eps = 1e-3};
}

const std::vector<std::string> kPlateauCases{"plateau_min_rel", "plateau_min_abs", "plateau_max_rel",
                                             "plateau_max_abs"};

TEST(LRSchedulerTorch, ReduceLROnPlateauSequences) {
  for (const auto& name : kPlateauCases) {
    SCOPED_TRACE(name);
    Rig s;
    ReduceLROnPlateau sched(*s.opt, plateau_options(name));
    std::vector<std::vector<double>> lrs{s.lrs()};
    for (double m : fixture()[name + "/metrics"].to_vector<double>()) {
      sched.step(m);
      lrs.push_back(s.lrs());
    }
    expect_sequence(lrs, name + "/lr");
    // The lr must actually have been reduced in these sequences.
    EXPECT_LT(lrs.back()[0], lrs.front()[0]);
    expect_torch_fields(sched.state_dict(), name);
  }
}

// --- save / resume --------------------------------------------------------------------------

TEST(LRSchedulerResume, MidRunRoundTripContinuesTheSequence) {
  constexpr int kSplit = 20;
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    std::vector<std::vector<double>> lrs, moms;
    Value opt_sd, sched_sd;
    {
      Rig s(c.kind);
      auto sched = c.factory(*s.opt);
      lrs.push_back(s.lrs());
      moms.push_back(s.momenta());
      for (int i = 0; i < kSplit; ++i) {
        sched->step();
        lrs.push_back(s.lrs());
        moms.push_back(s.momenta());
      }
      opt_sd = s.opt->state_dict();
      sched_sd = sched->state_dict();
    }
    Rig s(c.kind);
    auto sched = c.factory(*s.opt);  // a fresh scheduler: its constructor changes the groups
    s.opt->load_state_dict(opt_sd);
    sched->load_state_dict(sched_sd);
    EXPECT_EQ(sched->state_dict(), sched_sd);
    EXPECT_EQ(sched->get_last_lr(), lrs.back());
    for (int i = kSplit; i < kSteps; ++i) {
      sched->step();
      lrs.push_back(s.lrs());
      moms.push_back(s.momenta());
    }
    expect_sequence(lrs, c.name + "/lr");
    if (fixture().tensors.count(c.name + "/momentum")) {
      expect_sequence(moms, c.name + "/momentum");
    }
  }
}

TEST(LRSchedulerResume, PlateauRoundTrip) {
  for (const auto& name : kPlateauCases) {
    SCOPED_TRACE(name);
    const std::vector<double> metrics = fixture()[name + "/metrics"].to_vector<double>();
    std::vector<std::vector<double>> lrs;
    Value opt_sd, sched_sd;
    {
      Rig s;
      ReduceLROnPlateau sched(*s.opt, plateau_options(name));
      lrs.push_back(s.lrs());
      for (int i = 0; i < 25; ++i) {
        sched.step(metrics[i]);
        lrs.push_back(s.lrs());
      }
      opt_sd = s.opt->state_dict();
      sched_sd = sched.state_dict();
    }
    Rig s;
    ReduceLROnPlateau sched(*s.opt, {});  // default options: all of them come from the state dict
    s.opt->load_state_dict(opt_sd);
    sched.load_state_dict(sched_sd);
    EXPECT_EQ(sched.state_dict(), sched_sd);
    for (size_t i = 25; i < metrics.size(); ++i) {
      sched.step(metrics[i]);
      lrs.push_back(s.lrs());
    }
    expect_sequence(lrs, name + "/lr");
  }
}

// --- state dict contents and errors ---------------------------------------------------------

using test::error_of;

TEST(LRSchedulerState, LambdaLRSaysItsFunctionsAreNotSaved) {
  Rig s;
  LambdaLR sched(*s.opt, [](int64_t e) { return 1.0 / (1.0 + static_cast<double>(e)); });
  sched.step();
  sched.step();
  Value sd = sched.state_dict();
  EXPECT_EQ(sd.at("lr_lambdas"), Value(ValueList{Value(), Value()}));
  EXPECT_THAT(sd.at("lr_lambdas_note").as_string(), HasSubstr("not saved"));
  EXPECT_EQ(sd.at("last_epoch"), Value(int64_t{2}));
  EXPECT_EQ(sd.at("_step_count"), Value(int64_t{3}));

  Rig s2;
  LambdaLR other(*s2.opt, [](int64_t e) { return 1.0 / (1.0 + static_cast<double>(e)); });
  other.load_state_dict(sd);
  EXPECT_EQ(other.last_epoch(), 2);
  other.step();
  sched.step();
  EXPECT_EQ(other.get_last_lr(), sched.get_last_lr());
  // A dict from torch without the note loads too.
  sd.as_map().erase("lr_lambdas_note");
  other.load_state_dict(sd);
}

TEST(LRSchedulerState, InitialLrIsStoredInTheGroupsAsTorch) {
  Rig s;
  CosineAnnealingLR sched(*s.opt, 10);
  EXPECT_EQ(s.opt->param_groups()[0].number("initial_lr"), 0.1);
  EXPECT_EQ(s.opt->param_groups()[1].number("initial_lr"), 0.05);
  EXPECT_EQ(sched.base_lrs(), (std::vector<double>{0.1, 0.05}));
  EXPECT_EQ(sched.last_epoch(), 0);
  Rig a("adam");
  OneCycleLR oc(*a.opt, {.max_lr = {1.0}, .total_steps = 10});
  const ValueMap& o = a.opt->param_groups()[0].options;
  EXPECT_EQ(o.at("initial_lr").as_double(), 1.0 / 25.0);
  EXPECT_EQ(o.at("max_lr").as_double(), 1.0);
  EXPECT_EQ(o.at("min_lr").as_double(), 1.0 / 25.0 / 1e4);
  EXPECT_EQ(o.at("max_momentum").as_double(), 0.95);
  EXPECT_EQ(o.at("base_momentum").as_double(), 0.85);
  EXPECT_EQ(o.at("betas"), Value(ValueList{0.85 + (0.95 - 0.85) / 2.0 * (std::cos(0.0) + 1), 0.999}));
  EXPECT_EQ(oc.state_dict().at("anneal_strategy"), Value("cos"));
}

TEST(LRSchedulerErrors, LoadStateDictNamesWhatDiffers) {
  Rig s;
  StepLR step(*s.opt, 3);
  ExponentialLR expo(*s.opt, 0.9);
  EXPECT_EQ(error_of([&] { expo.load_state_dict(step.state_dict()); }),
            "[ExponentialLR] load_state_dict: the state dict's keys do not match ExponentialLR's; unexpected keys: "
            "'step_size'");
  CosineAnnealingLR cos(*s.opt, 5);
  EXPECT_EQ(error_of([&] { cos.load_state_dict(expo.state_dict()); }),
            "[CosineAnnealingLR] load_state_dict: the state dict's keys do not match CosineAnnealingLR's; missing keys: "
            "'T_max', 'eta_min'; unexpected keys: 'gamma'");
  Value sd = step.state_dict();
  sd["last_epoch"] = Value("three");
  EXPECT_EQ(error_of([&] { step.load_state_dict(sd); }),
            "[StepLR] load_state_dict: 'last_epoch' must be an integer, got \"three\"");
  sd = step.state_dict();
  sd["base_lrs"] = Value(ValueList{0.1});
  EXPECT_EQ(error_of([&] { step.load_state_dict(sd); }),
            "[StepLR] load_state_dict: 'base_lrs' has 1 values but the optimizer has 2 parameter groups");
  sd = step.state_dict();
  sd["step_size"] = Value(int64_t{0});
  sd["last_epoch"] = Value(int64_t{9});
  EXPECT_THAT(error_of([&] { step.load_state_dict(sd); }), HasSubstr("step_size must be positive, got 0"));
  EXPECT_EQ(step.last_epoch(), 0);  // unchanged after a failed load
  // torch's verbose flag is accepted and ignored.
  sd = step.state_dict();
  sd["verbose"] = Value(false);
  step.load_state_dict(sd);

  auto seq = std::make_shared<SequentialLR>(
      *s.opt, Scheds{std::make_shared<StepLR>(*s.opt, 2), std::make_shared<ExponentialLR>(*s.opt, 0.5)},
      std::vector<int64_t>{3});
  sd = seq->state_dict();
  sd["_schedulers"].as_list()[1]["gamma"] = Value("half");
  EXPECT_EQ(error_of([&] { seq->load_state_dict(sd); }),
            "[SequentialLR] load_state_dict: scheduler 1: [ExponentialLR] load_state_dict: 'gamma' must be a number, "
            "got \"half\"");

  ReduceLROnPlateau plateau(*s.opt);
  Value psd = plateau.state_dict();
  psd["mode"] = Value("maxx");
  EXPECT_EQ(error_of([&] { plateau.load_state_dict(psd); }),
            "[ReduceLROnPlateau] load_state_dict: mode 'maxx' is unknown (expected 'min' or 'max')");
}

TEST(LRSchedulerErrors, ConstructionAndStepping) {
  Rig s;
  EXPECT_THAT(error_of([&] { ConstantLR(*s.opt, 1.5); }),
              HasSubstr("[ConstantLR] constant multiplicative factor expected to be between 0 and 1, got 1.5"));
  EXPECT_THAT(error_of([&] { LinearLR(*s.opt, 0.0, 2.0); }),
              HasSubstr("[LinearLR] ending multiplicative factor expected to be between 0 and 1, got 2"));
  EXPECT_THAT(error_of([&] { CosineAnnealingWarmRestarts(*s.opt, 0); }),
              HasSubstr("expected positive integer T_0, but got 0"));
  EXPECT_THAT(error_of([&] { OneCycleLR(*s.opt, {.max_lr = {0.1}}); }),
              HasSubstr("you must define either total_steps OR (epochs AND steps_per_epoch)"));
  EXPECT_THAT(error_of([&] { OneCycleLR(*s.opt, {.max_lr = {0.1, 0.2, 0.3}, .total_steps = 5}); }),
              HasSubstr("[OneCycleLR] expected 2 values for max_lr, got 3"));
  EXPECT_THAT(error_of([&] { LambdaLR(*s.opt, std::vector<LambdaLR::Fn>{[](int64_t) { return 1.0; }}); }),
              HasSubstr("[LambdaLR] expected 2 lr_lambdas, but got 1"));
  EXPECT_THAT(error_of([&] { ReduceLROnPlateau(*s.opt, {.factor = 1.0}); }),
              HasSubstr("[ReduceLROnPlateau] factor should be < 1.0, got 1"));
  EXPECT_THAT(error_of([&] { ReduceLROnPlateau(*s.opt, {.min_lr = {0.1, 0.2, 0.3}}); }),
              HasSubstr("[ReduceLROnPlateau] expected 2 min_lrs, got 3"));
  EXPECT_THAT(error_of([&] { ReduceLROnPlateau(*s.opt, {.threshold_mode = "relative"}); }),
              HasSubstr("threshold mode 'relative' is unknown"));

  Tensor w = zeros({1}).requires_grad_(true);
  Adagrad ada(NamedParams{{"w", w}});
  EXPECT_THAT(error_of([&] { OneCycleLR(ada, {.max_lr = {0.1}, .total_steps = 5}); }),
              HasSubstr("[OneCycleLR] optimizer Adagrad must support momentum"));
  EXPECT_THAT(error_of([&] { StepLR(ada, 2, 0.1, 4); }),
              HasSubstr("[StepLR] param 'initial_lr' is not specified in param_groups[0] when resuming"));

  Rig other;
  auto foreign = std::make_shared<StepLR>(*other.opt, 2);
  EXPECT_THAT(error_of([&] { SequentialLR(*s.opt, Scheds{foreign}, {}); }),
              HasSubstr("[SequentialLR] expects all schedulers to belong to the same optimizer"));
  EXPECT_THAT(error_of([&] { ChainedScheduler(Scheds{std::make_shared<StepLR>(*s.opt, 2), foreign}); }),
              HasSubstr("got schedulers at index 0 and 1 to be different"));
  EXPECT_THAT(error_of([&] {
                SequentialLR(*s.opt, Scheds{std::make_shared<StepLR>(*s.opt, 2)}, std::vector<int64_t>{3});
              }),
              HasSubstr("expects one more scheduler than milestones, but got 1 schedulers and 1 milestones"));

  // OneCycleLR refuses to step past total_steps and leaves its state as it was.
  Rig t;
  OneCycleLR oc(*t.opt, {.max_lr = {0.1}, .total_steps = 3});
  for (int i = 0; i < 3; ++i) oc.step();
  EXPECT_EQ(error_of([&] { oc.step(); }),
            "[OneCycleLR] tried to step 5 times. The specified number of total steps is 3");
  EXPECT_EQ(oc.last_epoch(), 3);

  // Adding a group after the scheduler was built is an error at the next step.
  Rig u;
  ExponentialLR ex(*u.opt, 0.5);
  Tensor extra = zeros({1}).requires_grad_(true);
  u.opt->add_param_group({{{"extra", extra}}, {}});
  EXPECT_EQ(error_of([&] { ex.step(); }),
            "[ExponentialLR] the optimizer has 3 parameter groups but the scheduler was built for 2");
}


// --- the closed forms as free functions -----------------------------------------------------

TEST(LRScheduleFunctions, KnownValues) {
  EXPECT_DOUBLE_EQ(step_lr(1.0, 0.5, 6, 7), 1.0);
  EXPECT_DOUBLE_EQ(step_lr(1.0, 0.5, 14, 7), 0.25);
  EXPECT_DOUBLE_EQ(step_lr(1.0, 0.5, -1, 7), 2.0);  // Python's floor division: -1 // 7 == -1
  const std::map<int64_t, int64_t> milestones{{5, 1}, {12, 2}};
  EXPECT_DOUBLE_EQ(multistep_lr(1.0, 0.5, 4, milestones), 1.0);
  EXPECT_DOUBLE_EQ(multistep_lr(1.0, 0.5, 5, milestones), 0.5);
  EXPECT_DOUBLE_EQ(multistep_lr(1.0, 0.5, 12, milestones), 0.125);
  EXPECT_DOUBLE_EQ(constant_lr(0.1, 0.25, 7, 8), 0.025);
  EXPECT_DOUBLE_EQ(constant_lr(0.1, 0.25, 8, 8), 0.1);
  EXPECT_DOUBLE_EQ(linear_lr(1.0, 0.2, 0.9, 0, 12), 0.2);
  EXPECT_DOUBLE_EQ(linear_lr(1.0, 0.2, 0.9, 6, 12), 0.55);
  EXPECT_DOUBLE_EQ(linear_lr(1.0, 0.2, 0.9, 100, 12), 0.9);
  EXPECT_DOUBLE_EQ(exponential_lr(2.0, 0.5, 3), 0.25);
  EXPECT_DOUBLE_EQ(polynomial_lr(1.0, 2.0, 10, 20), 0.25);
  EXPECT_DOUBLE_EQ(polynomial_lr(1.0, 2.0, 30, 20), 0.0);

  EXPECT_DOUBLE_EQ(cosine_annealing_lr(1.0, 0.0, 0, 10), 1.0);
  EXPECT_DOUBLE_EQ(cosine_annealing_lr(1.0, 0.0, 5, 10), 0.5);
  EXPECT_DOUBLE_EQ(cosine_annealing_lr(1.0, 0.1, 10, 10), 0.1);
  EXPECT_DOUBLE_EQ(cosine_annealing_lr(1.0, 0.1, 20, 10), 1.0);  // back up past T_max
  // Cycles of 5, 10, 20 epochs start at epochs 0, 5, 15.
  EXPECT_EQ(warm_restart_position(3.0, 5, 2).T_i, 5);
  EXPECT_DOUBLE_EQ(warm_restart_position(3.0, 5, 2).T_cur, 3.0);
  EXPECT_EQ(warm_restart_position(12.5, 5, 2).T_i, 10);
  EXPECT_DOUBLE_EQ(warm_restart_position(12.5, 5, 2).T_cur, 7.5);
  EXPECT_EQ(warm_restart_position(15.0, 5, 2).T_i, 20);
  EXPECT_DOUBLE_EQ(warm_restart_position(15.0, 5, 2).T_cur, 0.0);
  EXPECT_DOUBLE_EQ(warm_restart_position(12.5, 5, 1).T_cur, 2.5);
  EXPECT_DOUBLE_EQ(cosine_warm_restarts_lr(1.0, 0.0, 10.0, 5, 2), 0.5);

  EXPECT_DOUBLE_EQ(annealing_cos(1.0, 0.0, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(annealing_cos(1.0, 0.0, 0.5), 0.5);
  EXPECT_DOUBLE_EQ(annealing_cos(1.0, 0.2, 1.0), 0.2);
  EXPECT_DOUBLE_EQ(annealing_linear(0.2, 1.0, 0.25), 0.4);
  const std::vector<double> ends{14.0, 49.0};
  EXPECT_EQ(one_cycle_point(0, ends).phase, 0u);
  EXPECT_DOUBLE_EQ(one_cycle_point(0, ends).pct, 0.0);
  EXPECT_DOUBLE_EQ(one_cycle_point(14, ends).pct, 1.0);
  EXPECT_EQ(one_cycle_point(30, ends).phase, 1u);
  EXPECT_DOUBLE_EQ(one_cycle_point(30, ends).pct, 16.0 / 35.0);
  EXPECT_DOUBLE_EQ(one_cycle_point(49, ends).pct, 1.0);
  EXPECT_EQ(error_of([] { one_cycle_point(0, {}); }), "[one_cycle_point] needs at least one phase");
}

// The free functions give step_to()'s values bit for bit (they are the code step_to runs), for
// negative epochs (as SequentialLR makes) and epochs past the schedule's end too.
TEST(LRScheduleFunctions, EqualTheClassesClosedForms) {
  using Fn = std::function<double(double base, int64_t t)>;
  const std::map<int64_t, int64_t> milestones{{5, 1}, {12, 2}, {30, 1}};
  const std::vector<std::pair<Factory, Fn>> cases{
      {make<StepLR>(int64_t{7}, 0.5), [](double b, int64_t t) { return step_lr(b, 0.5, t, 7); }},
      {make<MultiStepLR>(std::vector<int64_t>{5, 12, 12, 30}, 0.3),
       [&](double b, int64_t t) { return multistep_lr(b, 0.3, t, milestones); }},
      {make<ConstantLR>(0.25, int64_t{8}), [](double b, int64_t t) { return constant_lr(b, 0.25, t, 8); }},
      {make<LinearLR>(0.2, 0.9, int64_t{12}), [](double b, int64_t t) { return linear_lr(b, 0.2, 0.9, t, 12); }},
      {make<ExponentialLR>(0.93), [](double b, int64_t t) { return exponential_lr(b, 0.93, t); }},
      {make<PolynomialLR>(int64_t{20}, 2.0), [](double b, int64_t t) { return polynomial_lr(b, 2.0, t, 20); }},
      {make<CosineAnnealingLR>(int64_t{15}, 0.001),
       [](double b, int64_t t) { return cosine_annealing_lr(b, 0.001, static_cast<double>(t), 15.0); }},
  };
  for (size_t c = 0; c < cases.size(); ++c) {
    SCOPED_TRACE(c);
    Rig s;
    auto sched = cases[c].first(*s.opt);
    for (int64_t t = -3; t <= 60; ++t) {
      sched->step_to(static_cast<double>(t));
      EXPECT_EQ(s.lrs()[0], cases[c].second(0.1, t)) << "epoch " << t;
      EXPECT_EQ(s.lrs()[1], cases[c].second(0.05, t)) << "epoch " << t;
    }
  }
  Rig s;
  CosineAnnealingWarmRestarts warm(*s.opt, 5, 2, 0.0005);
  for (double e = 0.0; e < 60.0; e += 0.7) {
    warm.step_to(e);
    EXPECT_EQ(s.lrs()[0], cosine_warm_restarts_lr(0.1, 0.0005, e, 5, 2)) << "epoch " << e;
    EXPECT_EQ(warm.T_cur(), warm_restart_position(e, 5, 2).T_cur) << "epoch " << e;
  }
}

// OneCycleLR's lr at a step is the anneal of its phase at one_cycle_point's fraction.
TEST(LRScheduleFunctions, OneCycleSteps) {
  Rig s;
  OneCycleLR sched(*s.opt, {.max_lr = {1.0}, .total_steps = 50});
  const double initial = 1.0 / 25.0, min = initial / 1e4;  // the default div_factor, final_div_factor
  const std::vector<double> ends{0.3 * 50 - 1, 50 - 1};
  for (int64_t t = 0; t <= 50; ++t) {
    if (t > 0) sched.step();
    const OneCyclePoint at = one_cycle_point(t, ends);
    const double want = at.phase == 0 ? annealing_cos(initial, 1.0, at.pct) : annealing_cos(1.0, min, at.pct);
    EXPECT_EQ(s.lrs()[0], want) << "step " << t;
  }
}

}  // namespace
}  // namespace ember::optim
