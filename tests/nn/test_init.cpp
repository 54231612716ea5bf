// Initialisation: fans and gains equal torch.nn.init's (fixtures/nn_init.txt), the layers' default
// init follows torch's rules (bounds, and empirical mean/std of large layers), fills are seeded.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ember/nn/nn.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"

namespace ember {
namespace {

const test::Fixture& init_fx() {
  static const test::Fixture f = test::load_fixture("fixtures/nn_init.txt");
  return f;
}

struct Stats {
  double mean = 0, std = 0, max_abs = 0;
};

Stats stats_of(const Tensor& t) {
  std::vector<double> v = t.to_vector<double>();
  Stats s;
  for (double e : v) {
    s.mean += e;
    s.max_abs = std::max(s.max_abs, std::abs(e));
  }
  s.mean /= static_cast<double>(v.size());
  for (double e : v) s.std += (e - s.mean) * (e - s.mean);
  s.std = std::sqrt(s.std / static_cast<double>(v.size() - 1));
  return s;
}

// U(-b, b): every value within b, the extremes close to b, mean ~0 and std ~ b / sqrt(3).
// Tolerances are ~5 standard errors for n samples.
void expect_uniform(const Tensor& t, double bound, const std::string& what) {
  SCOPED_TRACE(what);
  Stats s = stats_of(t);
  const double n = static_cast<double>(t.numel());
  const double sd = bound / std::sqrt(3.0);
  EXPECT_LE(s.max_abs, bound * (1.0 + 1e-6));  // f32 rounding of the draw
  EXPECT_GE(s.max_abs, bound * (1.0 - 20.0 / n));
  EXPECT_NEAR(s.mean, 0.0, 5.0 * sd / std::sqrt(n));
  EXPECT_NEAR(s.std, sd, 5.0 * sd * std::sqrt(0.8 / (4.0 * n)) + 1e-7);  // var of U has kurtosis 1.8
}

void expect_normal(const Tensor& t, double mean, double std, const std::string& what) {
  SCOPED_TRACE(what);
  Stats s = stats_of(t);
  const double n = static_cast<double>(t.numel());
  EXPECT_NEAR(s.mean, mean, 5.0 * std / std::sqrt(n));
  EXPECT_NEAR(s.std, std, 5.0 * std / std::sqrt(2.0 * n));
}

TEST(Init, FansAndGainsMatchTorch) {
  const test::Fixture& f = init_fx();
  const std::pair<const char*, Shape> shapes[] = {
      {"linear", {64, 784}}, {"conv", {16, 3, 5, 3}}, {"convt", {8, 6, 3, 2}}, {"r3", {4, 5, 6}}};
  for (const auto& [name, shape] : shapes) {
    nn::init::Fans fans = nn::init::calculate_fan_in_and_fan_out(empty(shape));
    EXPECT_EQ(fans.fan_in, static_cast<int64_t>(f.scalar(str_cat("fan.", name, ".in")))) << name;
    EXPECT_EQ(fans.fan_out, static_cast<int64_t>(f.scalar(str_cat("fan.", name, ".out")))) << name;
  }
  using nn::init::calculate_gain;
  EXPECT_DOUBLE_EQ(calculate_gain("linear"), f.scalar("gain.linear"));
  EXPECT_DOUBLE_EQ(calculate_gain("conv2d"), f.scalar("gain.conv2d"));
  EXPECT_DOUBLE_EQ(calculate_gain("sigmoid"), f.scalar("gain.sigmoid"));
  EXPECT_DOUBLE_EQ(calculate_gain("tanh"), f.scalar("gain.tanh"));
  EXPECT_DOUBLE_EQ(calculate_gain("relu"), f.scalar("gain.relu"));
  EXPECT_DOUBLE_EQ(calculate_gain("leaky_relu"), f.scalar("gain.leaky_relu"));
  EXPECT_DOUBLE_EQ(calculate_gain("leaky_relu", 0.2), f.scalar("gain.leaky_relu_02"));
  EXPECT_DOUBLE_EQ(calculate_gain("leaky_relu", std::sqrt(5.0)), f.scalar("gain.leaky_relu_sqrt5"));
  EXPECT_DOUBLE_EQ(calculate_gain("selu"), f.scalar("gain.selu"));
}

TEST(Init, Errors) {
  try {
    nn::init::calculate_fan_in_and_fan_out(empty({5}));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[calculate_fan_in_and_fan_out] fan in and fan out need a tensor of rank >= 2, got shape (5)"),
              std::string::npos);
  }
  EXPECT_THROW(nn::init::calculate_gain("swish"), Error);
  EXPECT_THROW(nn::init::kaiming_uniform_(empty({3, 3}), 0.0, "fan_avg"), Error);
  EXPECT_THROW(nn::init::xavier_uniform_(empty({3})), Error);
}

TEST(Init, LinearDefault) {
  manual_seed(100);
  nn::Linear lin(300, 200);
  const double bound = init_fx().scalar("bound.linear");
  EXPECT_DOUBLE_EQ(bound, 1.0 / std::sqrt(300.0));
  expect_uniform(lin.weight, bound, "weight");
  Stats b = stats_of(lin.bias);
  EXPECT_LE(b.max_abs, bound);
  EXPECT_GE(b.max_abs, 0.8 * bound);
}

TEST(Init, SkipRandomInitGuardLeavesTensorsAndGeneratorAlone) {
  manual_seed(7);
  const std::vector<uint8_t> before = default_generator().get_state();
  Tensor t = full({4, 5}, 3.0);
  {
    nn::init::SkipRandomInitGuard skip;
    {
      nn::init::SkipRandomInitGuard nested;
      EXPECT_TRUE(nn::init::random_init_skipped());
    }
    EXPECT_TRUE(nn::init::random_init_skipped());  // still inside the outer guard
    nn::init::uniform_(t, -1.0, 1.0);
    nn::init::normal_(t);
    nn::init::kaiming_uniform_(t, std::sqrt(5.0));
    nn::init::xavier_normal_(t);
    EXPECT_TRUE(test::bit_equal(t, full({4, 5}, 3.0)));
    EXPECT_EQ(default_generator().get_state(), before);
    nn::init::constant_(t, 0.5);  // the deterministic fills still run
    EXPECT_TRUE(test::bit_equal(t, full({4, 5}, 0.5)));
    EXPECT_THROW(nn::init::normal_(t, 0.0, -1.0), Error);  // arguments are still checked
  }
  EXPECT_FALSE(nn::init::random_init_skipped());
  nn::init::uniform_(t, -1.0, 1.0);
  EXPECT_NE(default_generator().get_state(), before);
}

TEST(Init, ConvDefaults) {
  manual_seed(101);
  nn::Conv2d conv(16, 32, 3);
  expect_uniform(conv.weight, init_fx().scalar("bound.conv"), "conv weight");  // fan_in 16 * 9
  EXPECT_LE(stats_of(conv.bias).max_abs, init_fx().scalar("bound.conv"));
  // ConvTranspose: weight (16, 8/2, 3, 3), fan_in from dim 1 as torch: 4 * 9 = 36.
  nn::ConvTranspose2d convt(16, 8, 3, 1, 0, 0, 2);
  expect_uniform(convt.weight, init_fx().scalar("bound.convt"), "convT weight");
  EXPECT_LE(stats_of(convt.bias).max_abs, init_fx().scalar("bound.convt"));
}

TEST(Init, EmbeddingAndNormDefaults) {
  manual_seed(102);
  nn::Embedding emb(500, 64);
  expect_normal(emb.weight, 0.0, 1.0, "embedding");
  nn::BatchNorm2d bn(8);
  EXPECT_TRUE(test::allclose(bn.weight, ones({8}), 0, 0));
  EXPECT_TRUE(test::allclose(bn.bias, zeros({8}), 0, 0));
  EXPECT_TRUE(test::allclose(bn.running_mean, zeros({8}), 0, 0));
  EXPECT_TRUE(test::allclose(bn.running_var, ones({8}), 0, 0));
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 0);
  nn::LayerNorm ln(std::vector<int64_t>{3, 4});
  EXPECT_TRUE(test::allclose(ln.weight, ones({3, 4}), 0, 0));
  EXPECT_TRUE(test::allclose(ln.bias, zeros({3, 4}), 0, 0));
}

TEST(Init, Helpers) {
  manual_seed(103);
  Tensor w = empty({200, 300});
  nn::init::xavier_uniform_(w, 2.0);
  expect_uniform(w, 2.0 * std::sqrt(6.0 / 500.0), "xavier_uniform");
  nn::init::xavier_normal_(w);
  expect_normal(w, 0.0, std::sqrt(2.0 / 500.0), "xavier_normal");
  nn::init::kaiming_uniform_(w, 0.0, "fan_in", "relu");
  expect_uniform(w, std::sqrt(2.0) * std::sqrt(3.0 / 300.0), "kaiming_uniform relu");
  nn::init::kaiming_normal_(w, 0.0, "fan_out", "relu");
  expect_normal(w, 0.0, std::sqrt(2.0) / std::sqrt(200.0), "kaiming_normal fan_out");
  nn::init::kaiming_normal_(w, 0.2);  // leaky_relu, fan_in
  expect_normal(w, 0.0, std::sqrt(2.0 / 1.04) / std::sqrt(300.0), "kaiming_normal leaky 0.2");
  nn::init::normal_(w, 3.0, 0.5);
  expect_normal(w, 3.0, 0.5, "normal");
  nn::init::uniform_(w, -2.0, 4.0);
  Stats s = stats_of(w);
  EXPECT_NEAR(s.mean, 1.0, 0.02);
  nn::init::constant_(w, 0.25);
  EXPECT_TRUE(test::allclose(w, full({200, 300}, 0.25), 0, 0));
  nn::init::ones_(w);
  EXPECT_TRUE(test::allclose(w, ones({200, 300}), 0, 0));
  nn::init::zeros_(w);
  EXPECT_TRUE(test::allclose(w, zeros({200, 300}), 0, 0));
  // Fills on parameters do not record autograd history.
  nn::Linear lin(3, 3);
  nn::init::xavier_uniform_(lin.weight);
  EXPECT_TRUE(lin.weight.is_leaf());
  EXPECT_TRUE(lin.weight.requires_grad());
}

TEST(Init, SeededDraws) {
  manual_seed(42);
  nn::Linear a(20, 10);
  manual_seed(42);
  nn::Linear b(20, 10);
  EXPECT_TRUE(test::bit_equal(a.weight, b.weight));
  EXPECT_TRUE(test::bit_equal(a.bias, b.bias));
  nn::Linear c(20, 10);
  EXPECT_FALSE(test::bit_equal(a.weight, c.weight));
  Generator gen(7), gen2(7);
  Tensor x = empty({50}), y = empty({50});
  nn::init::normal_(x, 0, 1, &gen);
  nn::init::normal_(y, 0, 1, &gen2);
  EXPECT_TRUE(test::bit_equal(x, y));
}

}  // namespace
}  // namespace ember
