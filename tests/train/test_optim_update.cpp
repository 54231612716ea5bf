// The fused optimizer updates behind SGD, Adam/AdamW, RMSprop and Adagrad: parameters and
// gradients that are not contiguous (transposed views, strided slices) are updated through
// contiguous copies with the contiguous path's bits, for every option that changes the math; and
// the front ends' checks, error messages and version bumps.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"
#include "ember/train/optim.h"

namespace ember::optim {
namespace {

using MakeOpt = std::function<std::unique_ptr<Optimizer>(NamedParams)>;

struct Case {
  std::string name;
  MakeOpt make;
};

template <typename Opt, typename Options>
Case make_case(std::string name, Options o) {
  return {std::move(name), [o](NamedParams p) { return std::make_unique<Opt>(std::move(p), o); }};
}

// Every optimizer with each option that changes its update, alone and combined.
std::vector<Case> cases() {
  std::vector<Case> out;
  for (bool maximize : {false, true}) {
    for (double wd : {0.0, 0.1}) {
      const std::string tag = str_cat(maximize ? " maximize" : "", wd != 0.0 ? " wd" : "");
      out.push_back(make_case<SGD>("SGD" + tag, SGDOptions{.lr = 0.1, .weight_decay = wd, .maximize = maximize}));
      out.push_back(make_case<SGD>("SGD momentum" + tag,
                                   SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = wd, .maximize = maximize}));
      out.push_back(make_case<SGD>(
          "SGD momentum dampening" + tag,
          SGDOptions{.lr = 0.1, .momentum = 0.9, .dampening = 0.3, .weight_decay = wd, .maximize = maximize}));
      out.push_back(make_case<SGD>(
          "SGD nesterov" + tag,
          SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = wd, .nesterov = true, .maximize = maximize}));
      for (bool amsgrad : {false, true}) {
        const std::string t2 = tag + (amsgrad ? " amsgrad" : "");
        out.push_back(make_case<Adam>(
            "Adam" + t2, AdamOptions{.lr = 1e-2, .weight_decay = wd, .amsgrad = amsgrad, .maximize = maximize}));
        out.push_back(make_case<AdamW>(
            "AdamW" + t2, AdamWOptions{.lr = 1e-2, .weight_decay = wd, .amsgrad = amsgrad, .maximize = maximize}));
      }
      for (double momentum : {0.0, 0.5}) {
        for (bool centered : {false, true}) {
          out.push_back(make_case<RMSprop>(
              str_cat("RMSprop", tag, momentum != 0.0 ? " momentum" : "", centered ? " centered" : ""),
              RMSpropOptions{.weight_decay = wd, .momentum = momentum, .centered = centered, .maximize = maximize}));
        }
      }
      out.push_back(make_case<Adagrad>("Adagrad" + tag, AdagradOptions{.weight_decay = wd, .maximize = maximize}));
      out.push_back(make_case<Adagrad>(
          "Adagrad lr_decay initial_accumulator" + tag,
          AdagradOptions{
              .lr_decay = 0.01, .weight_decay = wd, .initial_accumulator_value = 0.2, .maximize = maximize}));
    }
  }
  return out;
}

// How the parameter (and its gradient) is laid out.
enum class Layout { Contiguous, Transposed, StridedSlice, TransposedGrad };

constexpr int64_t kRows = 67, kCols = 29;
constexpr int kSteps = 4;

struct Result {
  Tensor param;               // the values after kSteps, contiguous
  std::vector<Tensor> state;  // every state tensor, in key order
  Tensor base;                // the storage the parameter views (for StridedSlice: its untouched columns)
};

const char* layout_name(Layout l) {
  switch (l) {
    case Layout::Contiguous: return "contiguous";
    case Layout::Transposed: return "transposed";
    case Layout::StridedSlice: return "strided slice";
    case Layout::TransposedGrad: return "transposed gradient";
  }
  return "?";
}

// Steps `make`'s optimizer kSteps times over fixed gradients on a (kRows, kCols) parameter laid out
// as `layout`.
Result run(const MakeOpt& make, DType dt, Layout layout) {
  Generator gen(5);
  Tensor init = randn({kRows, kCols}, TensorOptions(dt), &gen);
  std::vector<Tensor> grads;
  for (int s = 0; s < kSteps; ++s) grads.push_back(randn({kRows, kCols}, TensorOptions(dt), &gen));
  Result r;
  Tensor p;
  switch (layout) {
    case Layout::Contiguous:
    case Layout::TransposedGrad: p = init.clone(); break;
    case Layout::Transposed:
      r.base = init.t().contiguous();
      p = r.base.t();
      break;
    case Layout::StridedSlice:
      r.base = zeros({kRows, 2 * kCols}, TensorOptions(dt));
      p = r.base.slice(1, 1, 2 * kCols, 2);
      p.copy_(init);
      break;
  }
  EXPECT_EQ(p.is_contiguous(), layout == Layout::Contiguous || layout == Layout::TransposedGrad);
  p.requires_grad_(true);
  auto opt = make(NamedParams{{"p", p}});
  for (int s = 0; s < kSteps; ++s) {
    Tensor g = grads[static_cast<size_t>(s)].clone();
    if (layout == Layout::TransposedGrad) g = g.t().contiguous().t();
    p.set_grad(g);
    opt->step();
  }
  r.param = p.detach().contiguous();
  for (const auto& [key, v] : *opt->state("p")) {
    if (v.is_tensor()) r.state.push_back(v.as_tensor().contiguous());
  }
  return r;
}

TEST(OptimUpdate, NonContiguousTensorsGiveTheContiguousBits) {
  for (const Case& c : cases()) {
    for (DType dt : {DType::f32, DType::f64}) {
      const Result want = run(c.make, dt, Layout::Contiguous);
      for (Layout layout : {Layout::Transposed, Layout::StridedSlice, Layout::TransposedGrad}) {
        SCOPED_TRACE(str_cat(c.name, " ", dtype_name(dt), " ", layout_name(layout)));
        const Result got = run(c.make, dt, layout);
        EXPECT_TRUE(test::bit_equal(got.param, want.param));
        ASSERT_EQ(got.state.size(), want.state.size());
        for (size_t i = 0; i < got.state.size(); ++i) EXPECT_TRUE(test::bit_equal(got.state[i], want.state[i])) << i;
        if (layout == Layout::StridedSlice) {
          // The columns between the parameter's are not part of it and stay zero.
          EXPECT_TRUE(test::bit_equal(got.base.slice(1, 0, 2 * kCols, 2), zeros({kRows, kCols}, TensorOptions(dt))));
        }
      }
    }
  }
}


// Low-precision copies (Optimizer::keep_lowp_copies): after every step, each updated float32
// parameter's copy holds exactly param.to(dtype) and is marked valid; the parameter and the state
// keep the bits of a run without copies. Adam and AdamW write the copy in their own pass (chunk by
// chunk on a parameter larger than one chunk, threads splitting the chunks), the others cast after
// the update; a non-contiguous parameter takes the cast too.
TEST(OptimUpdate, LowpCopiesHoldTheUpdatedWeightsRounded) {
  for (const Case& c : cases()) {
    for (DType lowp : {DType::bf16, DType::f16}) {
      for (bool transposed : {false, true}) {
        SCOPED_TRACE(str_cat(c.name, " ", dtype_name(lowp), transposed ? " transposed" : ""));
        Generator gen(8);
        const int64_t rows = 300, cols = 170;  // 51000 values: several chunks of the fused loops
        Tensor init = randn({rows, cols}, {}, &gen);
        Tensor p = transposed ? init.t().contiguous().t() : init.clone(), q = init.clone();
        p.requires_grad_(true);
        q.requires_grad_(true);
        auto opt = c.make(NamedParams{{"p", p}});
        auto plain = c.make(NamedParams{{"p", q}});
        opt->keep_lowp_copies(lowp);
        EXPECT_TRUE(opt->lowp_copies().empty());
        for (int s = 0; s < 3; ++s) {
          Tensor g = randn({rows, cols}, {}, &gen);
          p.set_grad(g.clone());
          q.set_grad(g.clone());
          opt->step();
          plain->step();
          ASSERT_EQ(opt->lowp_copies().size(), 1u);
          const Optimizer::LowpCopy& copy = opt->lowp_copies().at("p");
          EXPECT_EQ(copy.version, p.version());
          EXPECT_EQ(copy.copy.dtype(), lowp);
          EXPECT_TRUE(test::bit_equal(copy.copy, p.detach().to(lowp)));
          EXPECT_TRUE(test::bit_equal(p.detach(), q.detach()));
        }
        // A step without a gradient leaves the copy valid; an in-place change makes it stale.
        p.set_grad(Tensor());
        opt->step();
        EXPECT_EQ(opt->lowp_copies().at("p").version, p.version());
        {
          NoGradGuard ng;
          p.mul_(2.0);
        }
        EXPECT_NE(opt->lowp_copies().at("p").version, p.version());
        // load_state_dict and turning copies off drop them.
        opt->load_state_dict(opt->state_dict());
        EXPECT_TRUE(opt->lowp_copies().empty());
        p.set_grad(zeros({rows, cols}));
        opt->step();
        EXPECT_EQ(opt->lowp_copies().size(), 1u);
        opt->keep_lowp_copies(std::nullopt);
        EXPECT_TRUE(opt->lowp_copies().empty());
      }
    }
  }
}

// Copies are kept only for float32 CPU parameters, in bf16 or f16.
TEST(OptimUpdate, LowpCopiesOnlyForFloat32Parameters) {
  Tensor p = ones({4, 3}, TensorOptions(DType::f64)).requires_grad_(true);
  Adam opt(NamedParams{{"p", p}}, AdamOptions{.lr = 1e-2});
  opt.keep_lowp_copies(DType::bf16);
  p.set_grad(ones({4, 3}, TensorOptions(DType::f64)));
  opt.step();
  EXPECT_TRUE(opt.lowp_copies().empty());
  EXPECT_NE(test::error_of([&] { opt.keep_lowp_copies(DType::f32); }).find("keep_lowp_copies takes bf16 or f16"),
            std::string::npos);
  Tensor q = ones({4, 3}), g = ones({4, 3}), m = zeros({4, 3}), v = zeros({4, 3});
  const std::string e = test::error_of([&] {
    fused_adam_(q, g, m, v, Tensor(), 1, 1e-3, 0.9, 0.999, 1e-8, 0, false, false, zeros({4, 3}));
  });
  EXPECT_NE(e.find("[Adam] lowp_copy must be a bf16/f16 tensor of a float32 param's shape and device, got f32(4, 3) on cpu for param f32(4, 3)"),
            std::string::npos)
      << e;
}

// Three steps of every update on one parameter and its state, laid out contiguously or as
// transposed views; returns the parameter and the state tensors, contiguous.
std::vector<Tensor> update_all(const Tensor& p0, const Tensor& g0, bool transposed) {
  NoGradGuard no_grad;
  auto lay = [&](const Tensor& x) { return transposed ? x.t().contiguous().t() : x.clone(); };
  // p, then the state: SGD buffer, Adam m, v, vmax, RMSprop square_avg, buffer, grad_avg, Adagrad sum
  std::vector<Tensor> t{lay(p0)};
  for (int i = 0; i < 8; ++i) t.push_back(lay(zeros_like(p0)));
  const Tensor g = lay(g0);
  for (int s = 1; s <= 3; ++s) {
    fused_sgd_(t[0], g, t[1], 1e-2, 0.9, 0.1, 0.01, false, true, s == 1);
    fused_adam_(t[0], g, t[2], t[3], t[4], s, 1e-2, 0.9, 0.999, 1e-8, 0.01, true, false);
    fused_rmsprop_(t[0], g, t[5], t[6], t[7], 1e-2, 0.99, 1e-8, 0.01, 0.5, true, false);
    fused_adagrad_(t[0], g, t[8], s, 1e-2, 0.01, 0.01, 1e-10, true);
  }
  for (Tensor& x : t) x = x.contiguous();
  return t;
}

// State tensors that are views are updated through copies too, and get the results written back.
TEST(OptimUpdate, NonContiguousStateGivesTheContiguousBits) {
  for (DType dt : {DType::f32, DType::f64}) {
    SCOPED_TRACE(dtype_name(dt));
    Generator gen(11);
    const Tensor p = randn({kRows, kCols}, TensorOptions(dt), &gen), g = randn({kRows, kCols}, TensorOptions(dt), &gen);
    const std::vector<Tensor> want = update_all(p, g, false), got = update_all(p, g, true);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(test::bit_equal(got[i], want[i])) << "tensor " << i;
    EXPECT_FALSE(test::bit_equal(want[0], p));
  }
}

// --- the front ends ---------------------------------------------------------------------------

using test::error_of;

// Bad tensors are reported with their names, dtypes, shapes and devices before anything is written.
TEST(OptimUpdate, FrontEndErrors) {
  NoGradGuard no_grad;
  const TensorOptions f32(DType::f32);
  Tensor p = zeros({2, 3}, f32), g = ones({2, 3}, f32), s = zeros({2, 3}, f32);
  const uint32_t version = p.version();
  const std::vector<std::pair<std::function<void()>, std::string>> cases = {
      {[&] { fused_sgd_(p.to(DType::i64), g.to(DType::i64), Tensor(), 0.1, 0.0, 0.0, 0.0, false, false, false); },
       "[SGD] param has dtype i64 (expected f32 or f64)"},
      {[&] { fused_sgd_(p, Tensor(), Tensor(), 0.1, 0.0, 0.0, 0.0, false, false, false); },
       "[SGD] grad is an undefined tensor"},
      {[&] { fused_sgd_(p, g, Tensor(), 0.1, 0.9, 0.0, 0.0, false, false, true); },
       "[SGD] momentum_buffer is an undefined tensor"},
      {[&] { fused_sgd_(p, g.reshape({3, 2}), Tensor(), 0.1, 0.0, 0.0, 0.0, false, false, false); },
       "[SGD] grad is f32(3, 2) on cpu but param is f32(2, 3) on cpu"},
      {[&] { fused_adam_(p, g, s.to(DType::f64), s, Tensor(), 1.0, 1e-3, 0.9, 0.999, 1e-8, 0.0, false, false); },
       "[Adam] exp_avg is f64(2, 3) on cpu but param is f32(2, 3) on cpu"},
      {[&] { fused_adamw_(p, g, s, s, Tensor(), 1.0, 1e-3, 0.9, 0.999, 1e-8, 0.0, true, false); },
       "[AdamW] max_exp_avg_sq is an undefined tensor"},
      {[&] { fused_rmsprop_(p, g, s, Tensor(), Tensor(), 1e-2, 0.99, 1e-8, 0.0, 0.0, true, false); },
       "[RMSprop] grad_avg is an undefined tensor"},
      {[&] { fused_rmsprop_(p, g, s, s.t(), Tensor(), 1e-2, 0.99, 1e-8, 0.0, 0.5, false, false); },
       "[RMSprop] momentum_buffer is f32(3, 2) on cpu but param is f32(2, 3) on cpu"},
      {[&] { fused_adagrad_(p, g, s.reshape({6}), 1.0, 1e-2, 0.0, 0.0, 1e-10, false); },
       "[Adagrad] state_sum is f32(6) on cpu but param is f32(2, 3) on cpu"},
  };
  for (const auto& [call, message] : cases) EXPECT_EQ(error_of(call), message);
  EXPECT_TRUE(test::bit_equal(p, zeros({2, 3}, f32)));
  EXPECT_TRUE(test::bit_equal(s, zeros({2, 3}, f32)));
  EXPECT_EQ(p.version(), version);
}

// The update is in place and not recorded, so a parameter that requires grad is refused with grad
// mode on (as in-place tensor ops are).
TEST(OptimUpdate, ParameterThatRequiresGradNeedsNoGrad) {
  Tensor p = zeros({4}, TensorOptions(DType::f64)).requires_grad_(true), g = ones({4}, TensorOptions(DType::f64));
  EXPECT_EQ(error_of([&] { fused_sgd_(p, g, Tensor(), 0.5, 0.0, 0.0, 0.0, false, false, false); }),
            "[SGD] updates the parameter in place, which autograd does not record; run it under NoGradGuard");
  NoGradGuard no_grad;
  fused_sgd_(p, g, Tensor(), 0.5, 0.0, 0.0, 0.0, false, false, false);
  EXPECT_EQ(test::values_f64(p), std::vector<double>(4, -0.5));
}

// State an option leaves out is neither checked nor touched; what the update writes gets a new
// version (so autograd notices), the gradient keeps its own.
TEST(OptimUpdate, UnusedStateIsIgnoredAndWrittenTensorsBumpTheirVersion) {
  NoGradGuard no_grad;
  const TensorOptions f32(DType::f32);
  Tensor p = zeros({2, 3}, f32), g = ones({2, 3}, f32), m = zeros({2, 3}, f32), v = zeros({2, 3}, f32);
  Tensor unused = full({5}, 7.0, f32);
  const uint32_t vp = p.version(), vg = g.version(), vm = m.version(), vu = unused.version();
  fused_adam_(p, g, m, v, unused, 1.0, 1e-3, 0.9, 0.999, 1e-8, 0.0, false, false);
  EXPECT_GT(p.version(), vp);
  EXPECT_GT(m.version(), vm);
  EXPECT_EQ(g.version(), vg);
  EXPECT_EQ(unused.version(), vu);
  EXPECT_EQ(test::values_f64(unused), std::vector<double>(5, 7.0));
  fused_sgd_(p, g, unused, 0.1, 0.0, 0.0, 0.0, false, false, false);  // momentum 0: no buffer
  EXPECT_EQ(test::values_f64(unused), std::vector<double>(5, 7.0));
}

}  // namespace
}  // namespace ember::optim
