// The autograd engine: .grad accumulation, NoGradGuard, detach, leaf rules, explicit and implicit
// output gradients, in-place modification of saved tensors, retain_graph, autograd::grad and
// post-accumulate-grad hooks.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "tests/support/check.h"

namespace ember {
namespace {

using test::allclose;
using test::make_tensor;
using test::values_f64;

using test::error_of;

#define EXPECT_ERROR_CONTAINS(stmt, text)                                             \
  do {                                                                                \
    const std::string _msg = error_of([&] { stmt; });                                 \
    EXPECT_NE(_msg, "no error") << #stmt " did not throw ember::Error";           \
    EXPECT_NE(_msg.find(text), std::string::npos) << "'" << (text) << "' not in: " << _msg; \
  } while (0)

TEST(Autograd, GradAccumulatesOverTwoBackwardCalls) {
  Tensor x = make_tensor({1, 2, 3}, {3}, DType::f64, true);
  sum(mul(x, x)).backward();  // d/dx = 2x
  EXPECT_EQ(values_f64(x.grad()), (std::vector<double>{2, 4, 6}));
  sum(mul(x, 3.0)).backward();  // += 3
  EXPECT_EQ(values_f64(x.grad()), (std::vector<double>{5, 7, 9}));
  // The accumulated gradient is the leaf's own tensor, not an alias of a graph buffer.
  EXPECT_FALSE(x.grad().is_alias_of(x));
  x.set_grad(Tensor());
  EXPECT_FALSE(x.grad().defined());
  sum(x).backward();
  EXPECT_EQ(values_f64(x.grad()), (std::vector<double>{1, 1, 1}));
}

// A leaf takes over a gradient buffer only when nothing else holds it: two leaves fed the same
// gradient tensor (add's backward hands g to both) end up with separate buffers, and a gradient
// the caller passed in is copied, not adopted.
TEST(Autograd, LeafGradientsNeverAliasEachOtherOrTheCallersTensor) {
  Tensor a = make_tensor({1, 2}, {2}, DType::f32, true), b = make_tensor({3, 4}, {2}, DType::f32, true);
  add(a, b).backward(make_tensor({1, 1}, {2}, DType::f32));
  ASSERT_TRUE(a.grad().defined() && b.grad().defined());
  EXPECT_FALSE(a.grad().is_alias_of(b.grad()));
  b.grad().mul_(5.0);
  EXPECT_EQ(values_f64(a.grad()), (std::vector<double>{1, 1}));
  EXPECT_EQ(values_f64(b.grad()), (std::vector<double>{5, 5}));

  Tensor leaf = make_tensor({1, 2}, {2}, DType::f32, true);
  Tensor given = make_tensor({7, 8}, {2}, DType::f32);
  leaf.backward(given);
  EXPECT_FALSE(leaf.grad().is_alias_of(given));
  given.zero_();
  EXPECT_EQ(values_f64(leaf.grad()), (std::vector<double>{7, 8}));

  // A gradient computed by the graph is adopted (no copy): still the right values, its own buffer.
  Tensor w = make_tensor({1, 2, 3}, {3}, DType::f32, true);
  sum(mul(w, w)).backward();
  EXPECT_EQ(values_f64(w.grad()), (std::vector<double>{2, 4, 6}));
  EXPECT_FALSE(w.grad().is_alias_of(w));
}

// A custom op recorded with a closure returning std::vector<Tensor> (the older form of a backward)
// still works: BackwardFn converts its result.
TEST(Autograd, RecordAcceptsBackwardClosuresReturningStdVector) {
  Tensor x = make_tensor({1, 2, 3}, {3}, DType::f64, true);
  Tensor out;
  {
    NoGradGuard ng;
    out = mul(x, 3.0);
  }
  autograd::record("times_three", {x}, out, [](const Tensor& g) -> std::vector<Tensor> { return {mul(g, 3.0)}; });
  sum(out).backward();
  EXPECT_EQ(values_f64(x.grad()), (std::vector<double>{3, 3, 3}));
  autograd::BackwardFn empty;
  EXPECT_FALSE(static_cast<bool>(empty));
}

TEST(Autograd, SharedSubexpressionsSumTheirGradients) {
  Tensor x = make_tensor({0.5, -1.5}, {2}, DType::f64, true);
  Tensor y = exp(x);
  Tensor z = sum(add(mul(y, y), y));  // d/dx = 2 e^{2x} + e^x
  z.backward();
  const std::vector<double> g = values_f64(x.grad());
  EXPECT_NEAR(g[0], 2 * std::exp(1.0) + std::exp(0.5), 1e-12);
  EXPECT_NEAR(g[1], 2 * std::exp(-3.0) + std::exp(-1.5), 1e-12);
}

TEST(Autograd, NoGradGuardStopsRecording) {
  Tensor x = make_tensor({1, 2}, {2}, DType::f32, true);
  EXPECT_TRUE(grad_enabled());
  {
    NoGradGuard guard;
    EXPECT_FALSE(grad_enabled());
    Tensor y = mul(x, 2.0);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
    {
      NoGradGuard nested;
      EXPECT_FALSE(grad_enabled());
    }
    EXPECT_FALSE(grad_enabled());  // restores the outer state, not "enabled"
  }
  EXPECT_TRUE(grad_enabled());
  Tensor y = mul(x, 2.0);
  EXPECT_TRUE(y.requires_grad());
  EXPECT_NE(y.grad_fn(), nullptr);
  EXPECT_FALSE(y.is_leaf());
}

TEST(Autograd, DetachCutsTheGraphButSharesData) {
  Tensor x = make_tensor({1, 2}, {2}, DType::f64, true);
  Tensor y = mul(x, x);
  Tensor d = y.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.is_leaf());
  EXPECT_TRUE(d.is_alias_of(y));
  // z = x * detach(x^2): gradient treats the detached factor as a constant
  sum(mul(x, d)).backward();
  EXPECT_EQ(values_f64(x.grad()), (std::vector<double>{1, 4}));
}

TEST(Autograd, RequiresGradOnlyOnFloatingLeaves) {
  Tensor x = make_tensor({1, 2}, {2}, DType::f32, true);
  Tensor y = mul(x, 2.0);
  const std::string msg = error_of([&] { y.requires_grad_(true); });
  EXPECT_NE(msg.find("[requires_grad_]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("leaf"), std::string::npos) << msg;
  EXPECT_ERROR_CONTAINS(from_vector(std::vector<int64_t>{1}, {1}).requires_grad_(true), "i64");
  Tensor leaf = make_tensor({1}, {1});
  leaf.requires_grad_(true);
  EXPECT_TRUE(leaf.requires_grad());
  leaf.requires_grad_(false);
  EXPECT_FALSE(leaf.requires_grad());
}

TEST(Autograd, BackwardWithExplicitGradient) {
  Tensor x = make_tensor({1, 2, 3, 4}, {2, 2}, DType::f64, true);
  Tensor y = mul(x, x);  // dy/dx = 2x
  y.backward(make_tensor({1, 0, -1, 0.5}, {2, 2}));
  EXPECT_EQ(values_f64(x.grad()), (std::vector<double>{2, 0, -6, 4}));
  Tensor x2 = make_tensor({1, 2}, {2}, DType::f64, true);
  Tensor y2 = mul(x2, 3.0);
  EXPECT_ERROR_CONTAINS(y2.backward(make_tensor({1, 1, 1}, {3})), "(3)");
  // .grad never aliases the caller's gradient: accumulating must not change it
  Tensor x3 = make_tensor({1, 2}, {2}, DType::f64, true);
  Tensor g = make_tensor({0.5, 0.25}, {2}, DType::f64);
  add(x3, 1.0).backward(g);
  EXPECT_FALSE(x3.grad().is_alias_of(g));
  add(x3, 1.0).backward(g);
  EXPECT_EQ(values_f64(x3.grad()), (std::vector<double>{1, 0.5}));
  EXPECT_EQ(values_f64(g), (std::vector<double>{0.5, 0.25}));
}

TEST(Autograd, NonScalarBackwardWithoutGradientErrors) {
  Tensor x = make_tensor({1, 2}, {2}, DType::f32, true);
  Tensor y = mul(x, 2.0);
  const std::string msg = error_of([&] { y.backward(); });
  EXPECT_NE(msg.find("[backward]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(2)"), std::string::npos) << msg;
  // a one-element non-scalar output is fine
  Tensor z = sum(x, {0}, true);
  z.backward();
  EXPECT_EQ(values_f64(x.grad()), (std::vector<double>{1, 1}));
  // a tensor without history cannot be backpropagated
  EXPECT_ERROR_CONTAINS(make_tensor({1}, {}).backward(), "[backward]");
}

TEST(Autograd, InplaceModificationOfSavedTensorIsDetected) {
  Tensor x = make_tensor({0.5, 1.0}, {2}, DType::f64, true);
  Tensor y = exp(x);  // exp saves its output
  {
    NoGradGuard ng;
    y.add_(1.0);
  }
  const std::string msg = error_of([&] { sum(y).backward(); });
  EXPECT_NE(msg.find("modified by an inplace operation"), std::string::npos) << msg;
  EXPECT_NE(msg.find("version"), std::string::npos) << msg;

  // Through a view of the saved tensor: the version counter is per storage.
  Tensor a = make_tensor({0.5, 1.0, 1.5}, {3}, DType::f64, true);
  Tensor b = make_tensor({2, 3, 4}, {3}, DType::f64);  // saved by mul for a's gradient
  Tensor c = mul(a, b);
  b.narrow(0, 1, 1).fill_(0.0);
  EXPECT_ERROR_CONTAINS(sum(c).backward(), "modified by an inplace operation");

  // Recording an in-place op on a tensor that requires grad is refused up front.
  Tensor z = exp(x);
  EXPECT_ERROR_CONTAINS(z.add_(1.0), "[add_]");
  EXPECT_ERROR_CONTAINS(x.mul_(2.0), "[mul_]");
}

TEST(Autograd, SecondBackwardNeedsRetainGraph) {
  Tensor x = make_tensor({1, 2}, {2}, DType::f64, true);
  Tensor loss = sum(exp(x));
  loss.backward();
  const std::string msg = error_of([&] { loss.backward(); });
  EXPECT_NE(msg.find("second time"), std::string::npos) << msg;
  EXPECT_NE(msg.find("retain_graph"), std::string::npos) << msg;

  Tensor x2 = make_tensor({1, 2}, {2}, DType::f64, true);
  Tensor l2 = sum(exp(x2));
  l2.backward(Tensor(), /*retain_graph=*/true);
  l2.backward();
  EXPECT_NEAR(values_f64(x2.grad())[0], 2 * std::exp(1.0), 1e-12);
  EXPECT_NEAR(values_f64(x2.grad())[1], 2 * std::exp(2.0), 1e-12);
}

TEST(Autograd, GradFunctionDoesNotTouchDotGrad) {
  Tensor x = make_tensor({1, 2, 3}, {3}, DType::f64, true);
  Tensor w = make_tensor({4, 5, 6}, {3}, DType::f64, true);
  Tensor y = sum(mul(mul(x, x), w));  // dy/dx = 2xw, dy/dw = x^2
  std::vector<Tensor> g = autograd::grad({y}, {x, w}, {}, /*retain_graph=*/true);
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(values_f64(g[0]), (std::vector<double>{8, 20, 36}));
  EXPECT_EQ(values_f64(g[1]), (std::vector<double>{1, 4, 9}));
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
  // explicit output gradient, then an input the output does not depend on
  std::vector<Tensor> g2 = autograd::grad({y}, {w}, {scalar_tensor(2.0, DType::f64)});
  EXPECT_EQ(values_f64(g2[0]), (std::vector<double>{2, 8, 18}));
  Tensor unrelated = make_tensor({1}, {1}, DType::f64, true);
  Tensor y3 = sum(mul(x, 2.0));
  std::vector<Tensor> g3 = autograd::grad({y3}, {x, unrelated});
  EXPECT_EQ(values_f64(g3[0]), (std::vector<double>{2, 2, 2}));
  EXPECT_FALSE(g3[1].defined());
  EXPECT_ERROR_CONTAINS(autograd::grad({y3}, {make_tensor({1}, {1})}), "[autograd::grad]");
}

TEST(Autograd, GradientsFlowThroughViewsAndBroadcasts) {
  Tensor x = make_tensor({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64, true);
  Tensor b = make_tensor({10, 20, 30}, {3}, DType::f64, true);
  // x.t() (3, 2) narrowed to its second column, plus a broadcast b
  Tensor y = add(x.t().narrow(1, 1, 1).squeeze(1), b);  // (3): x[1, :] + b
  sum(mul(y, y)).backward();
  EXPECT_EQ(values_f64(x.grad()), (std::vector<double>{0, 0, 0, 28, 50, 72}));
  EXPECT_EQ(values_f64(b.grad()), (std::vector<double>{28, 50, 72}));
  Tensor s = make_tensor({2}, {1}, DType::f64, true);
  sum(mul(x.detach(), s)).backward();  // broadcast (1) against (2, 3): gradient sums
  EXPECT_EQ(values_f64(s.grad()), (std::vector<double>{21}));
}

TEST(Autograd, GradDtypeFollowsTheLeaf) {
  Tensor x = make_tensor({1, 2}, {2}, DType::f32, true);
  sum(mul(x.to(DType::f64), 3.0)).backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_EQ(x.grad().dtype(), DType::f32);
  EXPECT_TRUE(allclose(x.grad(), make_tensor({3, 3}, {2}), 0, 0));
}

// Gradients at kinks, ties and special points, as PyTorch 1.13 defines them (values printed by
// torch for the same inputs).
TEST(Autograd, SubgradientsAtKinksMatchPyTorch) {
  const double inf = std::numeric_limits<double>::infinity();
  auto grad_of = [](const std::function<Tensor(const Tensor&)>& f, const std::vector<double>& xv) {
    Tensor x = make_tensor(xv, {static_cast<int64_t>(xv.size())}, DType::f64, true);
    sum(f(x)).backward();
    return values_f64(x.grad());
  };
  EXPECT_EQ(grad_of([](const Tensor& x) { return abs(x); }, {-1, 0, 1}), (std::vector<double>{-1, 0, 1}));
  EXPECT_EQ(grad_of([](const Tensor& x) { return relu(x); }, {-1, 0, 1}), (std::vector<double>{0, 0, 1}));
  EXPECT_EQ(grad_of([](const Tensor& x) { return leaky_relu(x, 0.25); }, {-1, 0, 1}), (std::vector<double>{0.25, 0.25, 1}));
  EXPECT_EQ(grad_of([](const Tensor& x) { return clamp(x, -1.0, 1.0); }, {-1, 0, 1}), (std::vector<double>{1, 1, 1}));
  EXPECT_EQ(grad_of([](const Tensor& x) { return sqrt(x); }, {0, 4}), (std::vector<double>{inf, 0.25}));
  EXPECT_EQ(grad_of([](const Tensor& x) { return pow(x, 0.0); }, {0, 1}), (std::vector<double>{0, 0}));
  EXPECT_EQ(grad_of([](const Tensor& x) { return pow(x, 2.0); }, {0, 1}), (std::vector<double>{0, 2}));
  EXPECT_EQ(grad_of([](const Tensor& x) { return pow(x, 0.5); }, {0, 1}), (std::vector<double>{inf, 0.5}));
  // max over all elements splits the gradient evenly between ties; max along a dim picks one
  EXPECT_EQ(grad_of([](const Tensor& x) { return max(x); }, {1, 3, 3}), (std::vector<double>{0, 0.5, 0.5}));
  EXPECT_EQ(grad_of([](const Tensor& x) { return max(x, 0).values; }, {1, 3, 3}), (std::vector<double>{0, 1, 0}));
  // l1 at zero difference, smooth_l1 at |d| = beta, and beta = 0 (plain l1)
  const Tensor t12 = make_tensor({1, 2}, {2}, DType::f64);
  EXPECT_EQ(grad_of([&](const Tensor& x) { return l1_loss(x, t12); }, {1, 2}), (std::vector<double>{0, 0}));
  EXPECT_EQ(grad_of([](const Tensor& x) { return smooth_l1_loss(x, make_tensor({0, 2}, {2}, DType::f64)); }, {1, 2}),
            (std::vector<double>{0.5, 0}));
  EXPECT_EQ(grad_of([](const Tensor& x) {
              return smooth_l1_loss(x, make_tensor({1, 0}, {2}, DType::f64), Reduction::Sum, 0.0);
            }, {1, 2}),
            (std::vector<double>{0, 1}));
}

TEST(Autograd, TiedMaximumMinimumSplitTheGradient) {
  Tensor a = make_tensor({1, 2}, {2}, DType::f64, true);
  Tensor b = make_tensor({1, 1}, {2}, DType::f64, true);
  sum(maximum(a, b)).backward();
  EXPECT_EQ(values_f64(a.grad()), (std::vector<double>{0.5, 1}));
  EXPECT_EQ(values_f64(b.grad()), (std::vector<double>{0.5, 0}));
  Tensor c = make_tensor({1, 2}, {2}, DType::f64, true);
  Tensor d = make_tensor({1, 1}, {2}, DType::f64, true);
  sum(minimum(c, d)).backward();
  EXPECT_EQ(values_f64(c.grad()), (std::vector<double>{0.5, 0}));
  EXPECT_EQ(values_f64(d.grad()), (std::vector<double>{0.5, 1}));
  // pow with a tensor exponent at base 0: PyTorch masks the 0 * log(0) terms to 0
  Tensor x = make_tensor({0, 2}, {2}, DType::f64, true);
  Tensor e = make_tensor({2, 2}, {2}, DType::f64, true);
  sum(pow(x, e)).backward();
  EXPECT_EQ(values_f64(x.grad()), (std::vector<double>{0, 4}));
  EXPECT_EQ(values_f64(e.grad())[0], 0.0);
  EXPECT_NEAR(values_f64(e.grad())[1], 4 * std::log(2.0), 1e-12);
}

TEST(Autograd, PostAccumulateGradHooksSeeTheFinalGradientOncePerBackward) {
  Tensor w = make_tensor({1, 2}, {2}, DType::f64, true);
  Tensor v = make_tensor({3, 4}, {2}, DType::f64, true);
  std::vector<std::string> calls;
  std::vector<double> seen;
  autograd::register_post_accumulate_grad_hook(w, [&](const Tensor& leaf) {
    calls.push_back("w1");
    seen.push_back(sum(leaf.grad()).item_double());
  });
  auto second = autograd::register_post_accumulate_grad_hook(w, [&](const Tensor&) { calls.push_back("w2"); });
  autograd::register_post_accumulate_grad_hook(v, [&](const Tensor&) { calls.push_back("v"); });
  // w is used twice: its hook runs once, after both contributions were summed into .grad
  Tensor y = add(sum(mul(w, w)), sum(mul(w, v)));
  y.backward();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_DOUBLE_EQ(seen[0], (2 * 1.0 + 3.0) + (2 * 2.0 + 4.0));
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "w1"), 1);
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "v"), 1);
  // registration order within a leaf
  EXPECT_LT(std::find(calls.begin(), calls.end(), "w1"), std::find(calls.begin(), calls.end(), "w2"));
  // a second backward accumulates and calls again, with the accumulated gradient
  sum(mul(w, w)).backward();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_DOUBLE_EQ(seen[1], seen[0] + 2 * 1.0 + 2 * 2.0);
  // removed hooks stay quiet; autograd::grad (which leaves .grad alone) calls none
  second.remove();
  second.remove();  // a second remove does nothing
  calls.clear();
  sum(mul(w, v)).backward();
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "w2"), 0);
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "w1"), 1);
  calls.clear();
  autograd::grad({sum(mul(w, v))}, {w, v});
  EXPECT_TRUE(calls.empty());
}

TEST(Autograd, PostAccumulateGradHooksNeedALeafThatRequiresGrad) {
  Tensor w = make_tensor({1, 2}, {2}, DType::f64, true);
  EXPECT_ERROR_CONTAINS(autograd::register_post_accumulate_grad_hook(mul(w, 2.0), [](const Tensor&) {}),
                        "[register_post_accumulate_grad_hook] the tensor of shape (2) is not a leaf that requires grad");
  EXPECT_ERROR_CONTAINS(autograd::register_post_accumulate_grad_hook(make_tensor({1}, {1}, DType::f64), [](const Tensor&) {}),
                        "is not a leaf that requires grad");
  EXPECT_ERROR_CONTAINS(autograd::register_post_accumulate_grad_hook(w, nullptr), "the hook is empty");
  // a hook may remove itself while it runs
  autograd::GradHookHandle h;
  int n = 0;
  h = autograd::register_post_accumulate_grad_hook(w, [&](const Tensor&) {
    ++n;
    h.remove();
  });
  sum(w).backward();
  sum(w).backward();
  EXPECT_EQ(n, 1);
}

}  // namespace
}  // namespace ember
