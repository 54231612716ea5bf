// Mixed precision at the op level (runtime/autocast.h): bf16/f16 linear, matmul, conv2d and
// conv_transpose2d and their f32 gradients against PyTorch (fixtures/autocast_ops.txt), which ops
// autocast runs in half precision and which in f32, the cast cache, nesting and errors, and half
// inputs to the other ops.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/gemm_lowp.h"
#include "kernels/cpu/isa.h"
#include "ember/nn/nn.h"
#include "ember/runtime/autocast.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/device.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "ember/train/optim.h"
#include "tests/support/check.h"

namespace ember {
namespace {

const test::Fixture& fixture() {
  static const test::Fixture f = test::load_fixture("fixtures/autocast_ops.txt");
  return f;
}

// One rounding step of the half dtype, relative (2^-7 for bf16's 8-bit significand, 2^-10 for
// f16's 11 bits: the largest relative gap between neighbours).
double half_step(DType t) { return t == DType::bf16 ? 0x1p-7 : 0x1p-10; }

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : test::values_f64(t)) m = std::max(m, std::fabs(v));
  return m;
}

// Ember and the reference round the same f32-accumulated sums to the half dtype; the sums differ
// only in addition order (and in the convolutions, Ember rounds before adding the bias), so
// results agree within one rounding step of the value, or of the tensor's scale near zero.
::testing::AssertionResult close_to(const Tensor& got, const Tensor& want, DType half) {
  const double step = half_step(half);
  return test::allclose(got.to(DType::f64), want.to(DType::f64), step, step * max_abs(want));
}

const char* name_of(DType t) { return t == DType::bf16 ? "bf16" : "f16"; }

using OpFn = Tensor (*)(const std::vector<Tensor>&);

// Runs fixture case `name` under autocast(dtype): forward value and f32 gradients.
void check_case(const std::string& name, OpFn op, DType dtype) {
  SCOPED_TRACE(name + " " + name_of(dtype));
  const test::Fixture& f = fixture();
  std::vector<Tensor> leaves;
  for (int i = 0; f.tensors.count(name + "/in" + std::to_string(i)); ++i)
    leaves.push_back(f[name + "/in" + std::to_string(i)].detach().clone().requires_grad_());
  Tensor y;
  {
    AutocastGuard guard(dtype);
    y = op(leaves);
  }
  ASSERT_EQ(y.dtype(), dtype);
  const std::string prefix = name + "/" + name_of(dtype) + "/";
  EXPECT_TRUE(close_to(y, f[prefix + "y"], dtype));
  sum(mul(y.to(DType::f32), f[name + "/gy"])).backward();
  for (size_t i = 0; i < leaves.size(); ++i) {
    SCOPED_TRACE("gradient " + std::to_string(i));
    ASSERT_TRUE(leaves[i].grad().defined());
    EXPECT_EQ(leaves[i].grad().dtype(), DType::f32);
    EXPECT_TRUE(close_to(leaves[i].grad(), f[prefix + "grad" + std::to_string(i)], dtype));
  }
}

Tensor op_linear(const std::vector<Tensor>& in) { return linear(in[0], in[1], in.size() > 2 ? in[2] : Tensor()); }
Tensor op_matmul(const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }
Tensor op_conv2d(const std::vector<Tensor>& in) {
  Conv2dOptions o;
  o.padding = {1, 1};
  return conv2d(in[0], in[1], in[2], o);
}
Tensor op_conv2d_stride(const std::vector<Tensor>& in) {
  Conv2dOptions o;
  o.stride = {2, 2};
  o.padding = {1, 0};
  return conv2d(in[0], in[1], in[2], o);
}
Tensor op_conv_transpose2d(const std::vector<Tensor>& in) {
  Conv2dOptions o;
  o.stride = {2, 2};
  o.padding = {1, 1};
  o.output_padding = {1, 1};
  return conv_transpose2d(in[0], in[1], in[2], o);
}

class AutocastReference : public ::testing::TestWithParam<DType> {};

TEST_P(AutocastReference, Linear) {
  check_case("linear", op_linear, GetParam());
  check_case("linear_nobias", op_linear, GetParam());
}
TEST_P(AutocastReference, Matmul) { check_case("matmul", op_matmul, GetParam()); }
TEST_P(AutocastReference, Conv2d) {
  check_case("conv2d", op_conv2d, GetParam());
  check_case("conv2d_stride", op_conv2d_stride, GetParam());
}
TEST_P(AutocastReference, ConvTranspose2d) { check_case("conv_transpose2d", op_conv_transpose2d, GetParam()); }

INSTANTIATE_TEST_SUITE_P(HalfTypes, AutocastReference, ::testing::Values(DType::bf16, DType::f16),
                         [](const ::testing::TestParamInfo<DType>& p) { return std::string(name_of(p.param)); });

TEST(Autocast, OffByDefaultAndScopedPerGuard) {
  EXPECT_FALSE(autocast_enabled());
  {
    AutocastGuard g(DType::f16);
    EXPECT_TRUE(autocast_enabled());
    EXPECT_EQ(autocast_dtype(), DType::f16);
  }
  EXPECT_FALSE(autocast_enabled());
}

TEST(Autocast, LowPrecisionOpsReturnTheAutocastDtype) {
  Generator gen(3);
  Tensor x = randn({4, 8}, {}, &gen), w = randn({5, 8}, {}, &gen), b = randn({5}, {}, &gen);
  Tensor img = randn({1, 2, 5, 5}, {}, &gen), k = randn({3, 2, 3, 3}, {}, &gen), kt = randn({2, 3, 3, 3}, {}, &gen);
  for (DType t : {DType::bf16, DType::f16}) {
    AutocastGuard g(t);
    EXPECT_EQ(linear(x, w, b).dtype(), t);
    EXPECT_EQ(matmul(x, w.t()).dtype(), t);
    EXPECT_EQ(conv2d(img, k).dtype(), t);
    EXPECT_EQ(conv_transpose2d(img, kt).dtype(), t);
    // f64 is not cast (as PyTorch: autocast leaves double alone).
    EXPECT_EQ(matmul(x.to(DType::f64), w.t().to(DType::f64)).dtype(), DType::f64);
  }
}

TEST(Autocast, Fp32OpsReturnF32ForHalfInputs) {
  Generator gen(4);
  Tensor xf = randn({3, 5}, {}, &gen);
  Tensor pf = sigmoid(xf);
  Tensor target = from_vector(std::vector<int64_t>{0, 4, 2}, {3});
  for (DType t : {DType::bf16, DType::f16}) {
    SCOPED_TRACE(name_of(t));
    Tensor x = xf.to(t), p = pf.to(t), pos = add(abs(x), 0.5);
    AutocastGuard g(t);
    ASSERT_EQ(x.dtype(), t);
    for (const Tensor& r :
         {sum(x), sum(x, {1}), mean(x), mean(x, {0}, true), softmax(x, 1), log_softmax(x, 1), exp(x), log(pos),
          pow(x, 2.0), pow(pos, x), mse_loss(x, p), l1_loss(x, p), smooth_l1_loss(x, p),
          binary_cross_entropy(p, p), binary_cross_entropy_with_logits(x, p), cross_entropy(x, target),
          nll_loss(log_softmax(x, 1), target)})
      EXPECT_EQ(r.dtype(), DType::f32);
    // The f32 result is the f32 op of the half values.
    EXPECT_TRUE(test::bit_equal(softmax(x, 1), softmax(x.to(DType::f32), 1)));
    EXPECT_TRUE(test::bit_equal(sum(x), sum(x.to(DType::f32))));
  }
}

TEST(Autocast, OtherOpsKeepHalfInputsAndPromoteMixedOnes) {
  Tensor x = from_vector(std::vector<float>{-1.5f, 0.25f, 2.0f, -0.125f}, {2, 2}).to(DType::bf16);
  AutocastGuard g(DType::bf16);
  EXPECT_EQ(relu(x).dtype(), DType::bf16);
  EXPECT_EQ(sigmoid(x).dtype(), DType::bf16);
  EXPECT_EQ(add(x, x).dtype(), DType::bf16);
  EXPECT_EQ(mul(x, 3.0).dtype(), DType::bf16);
  EXPECT_EQ(max(x).dtype(), DType::bf16);
  // PyTorch promotion: bf16 with f32 gives f32, bf16 with f16 gives f32.
  EXPECT_EQ(add(x, ones({2}, DType::f32)).dtype(), DType::f32);
  EXPECT_EQ(add(x, ones({2}, DType::f16)).dtype(), DType::f32);
}

TEST(Autocast, OutsideAScopeHalfOpsKeepTheirDtype) {
  Tensor x = from_vector(std::vector<float>{-1.5f, 0.25f, 2.0f, -0.125f}, {2, 2}).to(DType::bf16);
  EXPECT_EQ(sum(x).dtype(), DType::bf16);
  EXPECT_EQ(softmax(x, 1).dtype(), DType::bf16);
  EXPECT_EQ(exp(x).dtype(), DType::bf16);
  EXPECT_EQ(matmul(x, x).dtype(), DType::bf16);
  EXPECT_EQ(mse_loss(x, x).dtype(), DType::bf16);
  // softmax rounded from the f32 computation.
  EXPECT_TRUE(test::bit_equal(softmax(x, 1), softmax(x.to(DType::f32), 1).to(DType::bf16)));
  // No autocast: mixed f32/half operands of a matrix op are an error, as in PyTorch.
  EXPECT_NE(test::error_of([&] { linear(x, ones({3, 2})); }).find("[linear] input dtype bf16 differs from weight dtype f32"),
            std::string::npos);
}

TEST(Autocast, HalfElementwiseOpsMatchPyTorch) {
  const test::Fixture& f = fixture();
  Tensor x = f["elementwise/x"], bias = f["elementwise/bias"];
  ASSERT_EQ(x.dtype(), DType::bf16);
  struct Case {
    const char* name;
    Tensor got;
  };
  for (const Case& c : {Case{"relu_add", relu(add(x, bias))}, Case{"sigmoid", sigmoid(x)}, Case{"tanh", tanh(x)},
                        Case{"mul", mul(x, bias)}}) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(c.got.dtype(), DType::bf16);
    // torch computes these in float and rounds; float libm differences may move one rounding step.
    EXPECT_TRUE(test::allclose(c.got.to(DType::f64), f[std::string("elementwise/") + c.name].to(DType::f64), 0x1p-8, 0));
  }
  // Exactly Ember's f32 op, rounded once.
  EXPECT_TRUE(test::bit_equal(sigmoid(x), sigmoid(x.to(DType::f32)).to(DType::bf16)));
  EXPECT_TRUE(test::bit_equal(relu(add(x, bias)), relu(add(x.to(DType::f32), bias.to(DType::f32))).to(DType::bf16)));
}

// The CPU's one-pass f16/bf16 paths (chunks widened, the float32 op, one rounding; column sums
// widened row by row) give the bits of the float32 route for tensors of several chunks, odd sizes,
// NaN, infinities, signed zeros and subnormals included.
TEST(Autocast, HalfFastPathsHaveTheBitsOfTheF32Route) {
  for (DType dt : {DType::bf16, DType::f16}) {
    SCOPED_TRACE(dtype_name(dt));
    Generator g(11);
    Tensor xf = randn({37, 301}, {}, &g).mul_(3.0), yf = randn({37, 301}, {}, &g);
    float* p = xf.data_ptr<float>();
    p[0] = std::numeric_limits<float>::quiet_NaN();
    p[1] = std::numeric_limits<float>::infinity();
    p[2] = -std::numeric_limits<float>::infinity();
    p[3] = -0.0f;
    p[4] = 0.0f;
    p[5] = -1e-39f;
    Tensor x = xf.to(dt), y = yf.to(dt);
    auto f32 = [](const Tensor& t) { return t.to(DType::f32); };
    EXPECT_TRUE(test::bit_equal(relu(x), relu(f32(x)).to(dt)));
    EXPECT_TRUE(test::bit_equal(sigmoid(x), sigmoid(f32(x)).to(dt)));
    EXPECT_TRUE(test::bit_equal(tanh(x), tanh(f32(x)).to(dt)));
    EXPECT_TRUE(test::bit_equal(leaky_relu(x, 0.1), leaky_relu(f32(x), 0.1).to(dt)));
    EXPECT_TRUE(test::bit_equal(mul(x, 0.3), mul(f32(x), 0.3).to(dt)));
    EXPECT_TRUE(test::bit_equal(add(x, y), add(f32(x), f32(y)).to(dt)));
    EXPECT_TRUE(test::bit_equal(sub(x, y), sub(f32(x), f32(y)).to(dt)));
    EXPECT_TRUE(test::bit_equal(mul(x, y), mul(f32(x), f32(y)).to(dt)));
    EXPECT_TRUE(test::bit_equal(sum(y, {0}), sum(f32(y), {0}).to(dt)));
    EXPECT_TRUE(test::bit_equal(sum(x, {0}, true), sum(f32(x), {0}, true).to(dt)));
    // The activations' backward from their (half) outputs, torch's formulas in float32.
    const Tensor gx = f32(x);
    struct Act {
      Tensor (*fn)(const Tensor&);
      Tensor (*grad)(const Tensor& g, const Tensor& out);
    };
    const Act acts[] = {
        {[](const Tensor& t) { return relu(t); },
         [](const Tensor& g, const Tensor& o) { return where(gt(o, zeros_like(o)), g, zeros_like(g)); }},
        {[](const Tensor& t) { return sigmoid(t); },
         [](const Tensor& g, const Tensor& o) { return mul(mul(g, sub(ones_like(o), o)), o); }},
        {[](const Tensor& t) { return tanh(t); },
         [](const Tensor& g, const Tensor& o) { return mul(g, sub(ones_like(o), mul(o, o))); }}};
    for (const Act& act : acts) {
      Tensor a = y.detach().requires_grad_();
      Tensor out = act.fn(a);
      out.backward(x);
      EXPECT_TRUE(test::bit_equal(a.grad(), act.grad(gx, f32(out.detach())).to(dt)));
    }
  }
}

TEST(Autocast, HalfInputGradientsFlowInTheirDtype) {
  Tensor x = from_vector(std::vector<float>{-1.5f, 0.25f, 2.0f, -0.125f}, {4}).to(DType::bf16).requires_grad_();
  sum(mul(sigmoid(x), relu(x))).backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_EQ(x.grad().dtype(), DType::bf16);
  // An embedding table in f16: the gathered rows and their scattered gradient keep its dtype.
  Tensor table = from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {3, 2}).to(DType::f16).requires_grad_();
  Tensor rows = embedding(table, from_vector(std::vector<int64_t>{2, 0, 2}, {3}));
  EXPECT_EQ(rows.dtype(), DType::f16);
  sum(rows).backward();
  ASSERT_TRUE(table.grad().defined());
  EXPECT_EQ(table.grad().dtype(), DType::f16);
  EXPECT_EQ(test::values_f64(table.grad()), (std::vector<double>{1, 1, 0, 0, 2, 2}));
}

TEST(AutocastCache, AParameterIsCastOncePerOutermostScope) {
  Generator gen(5);
  Tensor w = randn({4, 6}, {}, &gen).requires_grad_();
  Tensor activation = randn({4, 6}, {}, &gen);  // not a parameter: never cached
  {
    AutocastGuard g(DType::bf16);
    const uint64_t before = autocast_casts_computed();
    Tensor c1 = autocast_lowp(w);
    Tensor c2 = autocast_lowp(w);
    EXPECT_EQ(c1.dtype(), DType::bf16);
    EXPECT_EQ(c1.impl_ptr(), c2.impl_ptr());
    EXPECT_EQ(autocast_casts_computed(), before + 1);
    EXPECT_EQ(autocast_cache_size(), 1u);
    EXPECT_NE(autocast_lowp(activation).impl_ptr(), autocast_lowp(activation).impl_ptr());
    EXPECT_EQ(autocast_cache_size(), 1u);
    {
      AutocastGuard inner(DType::bf16);
      EXPECT_EQ(autocast_lowp(w).impl_ptr(), c1.impl_ptr());  // the outer scope's cast
    }
    EXPECT_EQ(autocast_cache_size(), 1u);  // an inner scope's exit keeps the cache
    // Two linears with one weight: one cast of the weight (and one of each input).
    const uint64_t mid = autocast_casts_computed();
    linear(activation, w);
    linear(activation, w);
    EXPECT_EQ(autocast_casts_computed(), mid + 2);
    // An in-place update of the parameter makes the cached cast stale: it is cast again.
    {
      NoGradGuard ng;
      w.mul_(2.0);
    }
    Tensor c3 = autocast_lowp(w);
    EXPECT_NE(c3.impl_ptr(), c1.impl_ptr());
    EXPECT_TRUE(test::bit_equal(c3, w.detach().to(DType::bf16)));
  }
  EXPECT_EQ(autocast_cache_size(), 0u);  // cleared by the outermost exit
  {
    AutocastGuard g(DType::bf16, true, /*cache=*/false);
    autocast_lowp(w);
    EXPECT_EQ(autocast_cache_size(), 0u);
  }
}

// A CPU linear with f32 parameters under bf16 autocast: the weight and bias gradients are the
// float32 sums of the bf16 products (x and the output gradient in bf16), not rounded to bf16.
TEST(AutocastLinear, F32ParametersGetUnroundedFloat32Gradients) {
  Generator gen(11);
  Tensor x = randn({64, 48}, {}, &gen), gy = randn({64, 40}, {}, &gen);
  Tensor w = randn({40, 48}, {}, &gen).requires_grad_(), b = randn({40}, {}, &gen).requires_grad_();
  Tensor xin = x.detach().clone().requires_grad_();
  Tensor y;
  {
    AutocastGuard g(DType::bf16);
    y = linear(xin, w, b);
  }
  ASSERT_EQ(y.dtype(), DType::bf16);
  y.backward(gy.to(DType::bf16));
  // Exact products of the bf16 values, summed in double: float32 sums differ by their rounding.
  const Tensor xb = x.to(DType::bf16).to(DType::f64), gb = gy.to(DType::bf16).to(DType::f64);
  const Tensor want_w = matmul(gb.t(), xb), want_b = sum(gb, {0});
  ASSERT_EQ(w.grad().dtype(), DType::f32);
  ASSERT_EQ(b.grad().dtype(), DType::f32);
  EXPECT_TRUE(test::allclose(w.grad().to(DType::f64), want_w, 1e-5, 1e-5 * max_abs(want_w)));
  EXPECT_TRUE(test::allclose(b.grad().to(DType::f64), want_b, 1e-5, 1e-5 * max_abs(want_b)));
  // Rounded to bf16 first, most values would move by far more than float32's rounding.
  EXPECT_FALSE(test::bit_equal(w.grad(), w.grad().to(DType::bf16).to(DType::f32)));
  // The input's gradient stays bf16-rounded, as the cast's backward gives it to f32 x.
  ASSERT_TRUE(xin.grad().defined());
  EXPECT_EQ(xin.grad().dtype(), DType::f32);
  EXPECT_TRUE(test::bit_equal(xin.grad(), xin.grad().to(DType::bf16).to(DType::f32)));
  // Under no-grad the same forward runs as plain bf16 linear (same bits).
  Tensor y2;
  {
    NoGradGuard ng;
    AutocastGuard g(DType::bf16);
    y2 = linear(x, w, b);
  }
  EXPECT_TRUE(test::bit_equal(y.detach(), y2));
}

// linear_relu (what Sequential runs for a Linear and a ReLU) under autocast, in grad mode and
// without: the bits of relu(linear) in bf16 and f16, gradients included.
TEST(AutocastLinear, LinearReluHasTheBitsOfReluOfLinear) {
  for (DType dt : {DType::bf16, DType::f16}) {
    for (bool grad : {true, false}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + (grad ? " grad" : " no grad"));
      Generator gen(13);
      const Tensor x = randn({37, 48}, {}, &gen), w0 = randn({40, 48}, {}, &gen), b0 = randn({40}, {}, &gen);
      const Tensor gy = randn({37, 40}, {}, &gen);
      std::vector<Tensor> outs, grads;
      for (bool fused : {true, false}) {
        Tensor w = w0.clone().requires_grad_(grad), b = b0.clone().requires_grad_(grad);
        Tensor xin = x.clone().requires_grad_(grad);
        Tensor y;
        {
          std::optional<NoGradGuard> ng;
          if (!grad) ng.emplace();
          AutocastGuard g(dt);
          y = fused ? linear_relu(xin, w, b) : relu(linear(xin, w, b));
        }
        outs.push_back(y.detach());
        if (grad) {
          y.backward(gy.to(y.dtype()));
          grads.insert(grads.end(), {xin.grad(), w.grad(), b.grad()});
        }
      }
      EXPECT_EQ(outs[0].dtype(), dt);
      EXPECT_TRUE(test::bit_equal(outs[0], outs[1]));
      for (size_t i = 0; i < grads.size() / 2; ++i) {
        EXPECT_TRUE(test::bit_equal(grads[i], grads[i + 3])) << "gradient " << i;
      }
    }
  }
}

// The optimizer's bf16 copies handed to autocast (Optimizer::use_lowp_copies): a training loop
// with them gives the bits of one without, and from the second step on casts no parameter (only
// the input and the activations the ops cast).
TEST(AutocastLowpCopies, TrainingWithTheOptimizersCopiesGivesTheSameBits) {
  auto train = [](bool copies, uint64_t* casts) {
    manual_seed(3);
    nn::Sequential net(std::make_shared<nn::Linear>(20, 16), std::make_shared<nn::ReLU>(),
                       std::make_shared<nn::Linear>(16, 20));
    optim::Adam opt(net.named_parameters(), optim::AdamOptions{.lr = 1e-2});
    if (copies) opt.keep_lowp_copies(DType::bf16);
    Generator gen(4);
    const Tensor x = randn({8, 20}, {}, &gen);
    std::vector<Tensor> losses;
    for (int step = 0; step < 4; ++step) {
      opt.zero_grad();
      Tensor loss;
      const uint64_t before = autocast_casts_computed();
      {
        AutocastGuard g(DType::bf16);
        opt.use_lowp_copies();
        loss = mse_loss(net.forward(x), x);
      }
      casts[step] = autocast_casts_computed() - before;
      loss.backward();
      opt.step();
      losses.push_back(loss.detach());
    }
    std::vector<Tensor> out = losses;
    for (const Tensor& p : net.parameters()) out.push_back(p.detach().clone());
    return out;
  };
  uint64_t casts_plain[4], casts_copies[4];
  const std::vector<Tensor> plain = train(false, casts_plain), with = train(true, casts_copies);
  ASSERT_EQ(plain.size(), with.size());
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_TRUE(test::bit_equal(with[i], plain[i])) << "result " << i;
  // 4 parameters and the input: 5 casts a step without copies; with them, 5 on the first step
  // (no copy yet) and 1 (the input) after.
  EXPECT_EQ(casts_plain[3], 5u);
  EXPECT_EQ(casts_copies[0], 5u);
  EXPECT_EQ(casts_copies[3], 1u);
}

// autocast_use_lowp_copy's errors name the call and what it expected; a 3-D input through the
// fused bf16 linear (no bias) gives the bits of the same rows as a 2-D input.
TEST(AutocastLowpCopies, ErrorsAndHigherRankInputs) {
  Tensor w = ones({3, 4}).requires_grad_();
  EXPECT_NE(test::error_of([&] { autocast_use_lowp_copy(w, w.detach().to(DType::bf16)); })
                .find("[autocast] autocast_use_lowp_copy needs an enabled autocast scope"),
            std::string::npos);
  {
    AutocastGuard g(DType::bf16);
    EXPECT_NE(test::error_of([&] { autocast_use_lowp_copy(w, w.detach().to(DType::f16)); })
                  .find("[autocast] autocast_use_lowp_copy takes an f32 tensor and a copy of its shape and device in "
                        "the scope's bf16, got f32 and f16"),
              std::string::npos);
  }
  Generator gen(12);
  Tensor x = randn({2, 5, 4}, {}, &gen), v = randn({3, 4}, {}, &gen).requires_grad_();
  auto run = [&](const Tensor& in) {
    v.set_grad(Tensor());
    Tensor y;
    {
      AutocastGuard g(DType::bf16);
      y = linear(in, v);
    }
    sum(y.to(DType::f32)).backward();
    return std::vector<Tensor>{y.reshape({-1, 3}), v.grad().clone()};
  };
  const std::vector<Tensor> three = run(x), two = run(x.reshape({10, 4}));
  for (size_t i = 0; i < two.size(); ++i) EXPECT_TRUE(test::bit_equal(three[i], two[i])) << "result " << i;
}

TEST(AutocastCache, ACachedCastKeepsGradientsFlowingToTheF32Parameter) {
  Generator gen(6);
  Tensor w = randn({3, 5}, {}, &gen).requires_grad_();
  Tensor x1 = randn({4, 5}, {}, &gen), x2 = randn({2, 5}, {}, &gen);
  Tensor loss;
  {
    AutocastGuard g(DType::bf16);
    loss = add(sum(linear(x1, w)), sum(mul(linear(x2, w), 2.0)));
  }
  EXPECT_EQ(loss.dtype(), DType::f32);
  loss.backward();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().dtype(), DType::f32);
  // d/dw = sum of x1's rows + 2 * sum of x2's rows, each column of the (3, 5) gradient; bf16
  // rounding of the x casts and of the per-use gradients bounds the difference.
  Tensor want = add(sum(x1, {0}, true), mul(sum(x2, {0}, true), 2.0)).expand({3, 5});
  EXPECT_TRUE(test::allclose(w.grad(), want, 0x1p-6, 0x1p-6 * max_abs(want)));
}

TEST(Autocast, NestedAndDisabledScopes) {
  Generator gen(7);
  Tensor x = randn({2, 3}, {}, &gen), w = randn({4, 3}, {}, &gen);
  AutocastGuard outer(DType::bf16);
  EXPECT_EQ(linear(x, w).dtype(), DType::bf16);
  {
    AutocastGuard inner(DType::f16);
    EXPECT_EQ(linear(x, w).dtype(), DType::f16);
    // A bf16 activation of the outer scope is cast to f16 too (as PyTorch casts every half type).
    EXPECT_EQ(linear(x.to(DType::bf16), w).dtype(), DType::f16);
    {
      AutocastGuard off(DType::bf16, /*enabled=*/false);
      EXPECT_FALSE(autocast_enabled());
      EXPECT_EQ(autocast_dtype(), DType::f16);  // a disabled scope keeps the outer dtype
      EXPECT_EQ(linear(x, w).dtype(), DType::f32);
      // Half values from the enclosing scope run as they are (no casts): f32 results stay f32.
      EXPECT_EQ(sum(x.to(DType::bf16)).dtype(), DType::bf16);
    }
    EXPECT_TRUE(autocast_enabled());
  }
  EXPECT_EQ(autocast_dtype(), DType::bf16);
  EXPECT_EQ(linear(x, w).dtype(), DType::bf16);
}

TEST(Autocast, UnsupportedDtypesAreErrorsNamingThem) {
  for (DType t : {DType::f64, DType::f32, DType::i32, DType::b8}) {
    const std::string e = test::error_of([&] { AutocastGuard g(t); });
    EXPECT_EQ(e.rfind("[autocast] dtype ", 0), 0u) << e;
    EXPECT_NE(e.find(std::string(dtype_name(t)) + " is not supported (expected bf16 or f16)"), std::string::npos) << e;
  }
  EXPECT_FALSE(autocast_enabled());  // a failed guard changed nothing
}

TEST(Autocast, AMixedPrecisionTrainingStepGivesF32Gradients) {
  Generator gen(8);
  Tensor w1 = mul(randn({16, 12}, {}, &gen), 0.3).requires_grad_(), b1 = zeros({16}).requires_grad_();
  Tensor w2 = mul(randn({5, 16}, {}, &gen), 0.3).requires_grad_(), b2 = zeros({5}).requires_grad_();
  Tensor x = randn({8, 12}, {}, &gen);
  Tensor y = from_vector(std::vector<int64_t>{0, 1, 2, 3, 4, 0, 1, 2}, {8});
  for (DType t : {DType::bf16, DType::f16}) {
    SCOPED_TRACE(name_of(t));
    Tensor loss, loss32;
    {
      AutocastGuard g(t);
      Tensor h = relu(linear(x, w1, b1));
      EXPECT_EQ(h.dtype(), t);
      loss = cross_entropy(linear(h, w2, b2), y);
    }
    EXPECT_EQ(loss.dtype(), DType::f32);
    loss.backward();
    std::vector<Tensor> grads;
    for (Tensor* p : {&w1, &b1, &w2, &b2}) {
      ASSERT_TRUE(p->grad().defined());
      EXPECT_EQ(p->grad().dtype(), DType::f32);
      grads.push_back(p->grad().clone());
      p->set_grad(Tensor());
    }
    // The same step in f32: the loss and gradients agree to half precision.
    loss32 = cross_entropy(linear(relu(linear(x, w1, b1)), w2, b2), y);
    loss32.backward();
    EXPECT_NEAR(loss.item(), loss32.item(), 0.02 * std::fabs(loss32.item()));
    const Tensor* params[] = {&w1, &b1, &w2, &b2};
    for (size_t i = 0; i < grads.size(); ++i) {
      const Tensor g32 = params[i]->grad();
      EXPECT_TRUE(test::allclose(grads[i], g32, 0.05, 0.05 * max_abs(g32))) << "parameter " << i;
      params[i]->set_grad(Tensor());
    }
  }
}

// Normalisation layers are built from mean, which autocast keeps in f32: a half activation comes
// out of BatchNorm2d and LayerNorm in f32 (PyTorch's autocast lists them as f32 ops), and the
// running statistics stay f32.
TEST(Autocast, NormalisationLayersRunInF32) {
  manual_seed(10);
  nn::Sequential net;
  net.push_back(std::make_shared<nn::Conv2d>(2, 4, 3, 1, 1));
  net.push_back(std::make_shared<nn::BatchNorm2d>(4));
  net.push_back(std::make_shared<nn::ReLU>());
  net.push_back(std::make_shared<nn::Flatten>());
  net.push_back(std::make_shared<nn::Linear>(4 * 5 * 5, 6));
  net.push_back(std::make_shared<nn::LayerNorm>(6));
  net.train();
  Generator gen(11);
  Tensor x = randn({3, 2, 5, 5}, {}, &gen);
  Tensor loss;
  {
    AutocastGuard g(DType::bf16);
    Tensor h = net.forward(x);
    EXPECT_EQ(h.dtype(), DType::f32);
    loss = sum(mul(h, h));
  }
  loss.backward();
  for (const auto& [name, p] : net.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_EQ(p.grad().dtype(), DType::f32) << name;
  }
  for (const auto& [name, b] : net.named_buffers()) EXPECT_NE(b.dtype(), DType::bf16) << name;
}

// The bf16 GEMM's two paths (AVX512-BF16 and widened f32, chosen by the ISA cap) behind a linear
// layer's forward and backward: the same products in another addition order, so bf16 results
// agree within one rounding step.
TEST(AutocastKernels, NativeAndWidenedBf16PathsAgree) {
  Generator gen(9);
  Tensor x = randn({37, 70}, {}, &gen), w = randn({45, 70}, {}, &gen).requires_grad_(), b = randn({45}, {}, &gen);
  auto run = [&] {
    w.set_grad(Tensor());
    Tensor y;
    {
      AutocastGuard g(DType::bf16);
      y = linear(x, w, b);
    }
    sum(mul(y.to(DType::f32), y.to(DType::f32))).backward();
    return std::vector<Tensor>{y.to(DType::f32), w.grad().clone()};
  };
  const std::vector<Tensor> native = run();
  kernels::set_cpu_isa_cap(kernels::CpuIsa::Avx2);
  EXPECT_FALSE(kernels::gemm_bf16_native());
  const std::vector<Tensor> widened = run();
  kernels::set_cpu_isa_cap(kernels::CpuIsa::Avx512);
  for (size_t i = 0; i < native.size(); ++i)
    EXPECT_TRUE(test::allclose(native[i], widened[i], 0x1p-7, 0x1p-7 * max_abs(widened[i]))) << "result " << i;
}

// CUDA against the CPU: the fixture cases under autocast on a GPU (cuBLAS GemmEx, cuDNN with float
// compute) give the CPU's half results and f32 gradients within one rounding step.
TEST(AutocastCuda, MatchesTheCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  const test::Fixture& f = fixture();
  const std::pair<const char*, OpFn> cases[] = {{"linear", op_linear},   {"linear_nobias", op_linear},
                                                {"matmul", op_matmul},   {"conv2d", op_conv2d},
                                                {"conv2d_stride", op_conv2d_stride},
                                                {"conv_transpose2d", op_conv_transpose2d}};
  for (DType dtype : {DType::bf16, DType::f16}) {
    for (const auto& [name, op] : cases) {
      SCOPED_TRACE(std::string(name) + " " + name_of(dtype));
      std::vector<Tensor> results[2];
      for (int dev = 0; dev < 2; ++dev) {
        const Device device = dev ? cuda_device(0) : kCPU;
        std::vector<Tensor> leaves;
        for (int i = 0; f.tensors.count(std::string(name) + "/in" + std::to_string(i)); ++i)
          leaves.push_back(f[std::string(name) + "/in" + std::to_string(i)].to(device).detach().clone().requires_grad_());
        Tensor y;
        {
          AutocastGuard guard(dtype);
          y = op(leaves);
        }
        ASSERT_EQ(y.dtype(), dtype);
        sum(mul(y.to(DType::f32), f[std::string(name) + "/gy"].to(device))).backward();
        results[dev].push_back(y.to(kCPU));
        for (const Tensor& l : leaves) results[dev].push_back(l.grad().to(kCPU));
      }
      for (size_t i = 0; i < results[0].size(); ++i) EXPECT_TRUE(close_to(results[1][i], results[0][i], dtype)) << i;
    }
  }
}

}  // namespace
}  // namespace ember
