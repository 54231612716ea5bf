// End to end on the runtime alone: a 2-layer MLP (linear, tanh or relu, linear) trained with
// mse_loss, backward and a hand-written SGD step under NoGradGuard fits a smooth 2-D function.
// (Calibrated with the same setup in PyTorch: the loss falls to ~0.1-0.2% of its start.)
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"

namespace ember {
namespace {

struct FitResult {
  double initial, after100, final_loss;
};

FitResult fit(bool use_relu, uint64_t seed) {
  Generator g(seed);
  const int64_t n = 64, hidden = 32;
  // x ~ U[-2, 2)^2, y = sin(1.5 x0) + 0.5 x1^2 - 0.5 x0 x1
  Tensor x = sub(mul(rand({n, 2}, DType::f32, &g), 4.0), 2.0);
  std::vector<double> xv = test::values_f64(x), yv(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double a = xv[static_cast<size_t>(2 * i)], b = xv[static_cast<size_t>(2 * i + 1)];
    yv[static_cast<size_t>(i)] = std::sin(1.5 * a) + 0.5 * b * b - 0.5 * a * b;
  }
  Tensor y = test::make_tensor(yv, {n, 1}, DType::f32);

  Tensor w1 = sub(mul(rand({hidden, 2}, DType::f32, &g), 2.0), 1.0).requires_grad_(true);
  Tensor b1 = sub(mul(rand({hidden}, DType::f32, &g), 2.0), 1.0).requires_grad_(true);
  Tensor w2 = mul(sub(mul(rand({1, hidden}, DType::f32, &g), 2.0), 1.0), 1.0 / std::sqrt(hidden)).requires_grad_(true);
  Tensor b2 = zeros({1}, DType::f32).requires_grad_(true);
  std::vector<Tensor> params{w1, b1, w2, b2};

  const double lr = 0.05;
  FitResult r{0, 0, 0};
  for (int step = 0; step < 3000; ++step) {
    Tensor h = linear(x, w1, b1);
    h = use_relu ? relu(h) : tanh(h);
    Tensor loss = mse_loss(linear(h, w2, b2), y);
    const double l = loss.item();
    EXPECT_TRUE(std::isfinite(l)) << "step " << step;
    if (!std::isfinite(l)) return r;
    if (step == 0) r.initial = l;
    if (step == 100) r.after100 = l;
    r.final_loss = l;
    for (Tensor& p : params) p.set_grad(Tensor());
    loss.backward();
    NoGradGuard no_grad;
    for (Tensor& p : params) p.add_(p.grad(), -lr);
  }
  return r;
}

TEST(Mlp, TanhMlpFitsRegression) {
  for (uint64_t seed : {1u, 2u}) {
    const FitResult r = fit(false, seed);
    SCOPED_TRACE(testing::Message() << "seed " << seed << ": initial " << r.initial << ", step 100 " << r.after100
                                    << ", final " << r.final_loss);
    EXPECT_GT(r.initial, 0.1);
    EXPECT_LT(r.after100, r.initial);
    EXPECT_LT(r.final_loss, 0.01 * r.initial);
  }
}

TEST(Mlp, ReluMlpFitsRegression) {
  const FitResult r = fit(true, 3);
  SCOPED_TRACE(testing::Message() << "initial " << r.initial << ", final " << r.final_loss);
  EXPECT_GT(r.initial, 0.1);
  EXPECT_LT(r.after100, r.initial);
  EXPECT_LT(r.final_loss, 0.01 * r.initial);
}

}  // namespace
}  // namespace ember
