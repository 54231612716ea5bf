// BatchNorm over several training steps (running statistics with momentum, cumulative average,
// no tracking) and in eval mode, and the loss modules per reduction, against PyTorch
// (fixtures/nn_batchnorm.txt, fixtures/nn_losses.txt from gen_nn.py).
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>

#include "ember/nn/nn.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "tests/support/check.h"

namespace ember {
namespace {

using test::allclose;

nn::StateDict state_of(const test::Fixture& f, const std::string& prefix) {
  nn::StateDict sd;
  for (auto it = f.tensors.lower_bound(prefix); it != f.tensors.end() && it->first.rfind(prefix, 0) == 0; ++it)
    sd.emplace_back(it->first.substr(prefix.size()), it->second);
  return sd;
}

void check_batchnorm_sequence(const std::string& name, nn::BatchNormBase& bn) {
  SCOPED_TRACE(name);
  static const test::Fixture f = test::load_fixture("fixtures/nn_batchnorm.txt");
  bn.load_state_dict(state_of(f, name + ".sd."));
  bn.train();
  for (int k = 0; k < 3; ++k) {
    Tensor y = bn.forward(f[str_cat(name, ".x", k)]);
    EXPECT_TRUE(allclose(y, f[str_cat(name, ".y", k)], 1e-5, 1e-6)) << "training step " << k;
  }
  nn::StateDict after = state_of(f, name + ".after.");
  auto bufs = bn.named_buffers();
  ASSERT_EQ(after.size(), bufs.size());
  for (auto& [k, ref] : after) {
    bool found = false;
    for (auto& [bk, b] : bufs) {
      if (bk != k) continue;
      found = true;
      EXPECT_TRUE(allclose(b, ref, 1e-5, 1e-6)) << k;
    }
    EXPECT_TRUE(found) << k;
  }
  bn.eval();
  Tensor x = f[name + ".xe"].clone();
  x.requires_grad_();
  Tensor y = bn.forward(x);
  EXPECT_TRUE(allclose(y, f[name + ".ye"], 1e-5, 1e-6)) << "eval forward";
  y.backward(f[name + ".gye"]);
  EXPECT_TRUE(allclose(x.grad(), f[name + ".gxe"], 1e-5, 1e-6)) << "eval input gradient";
  for (auto& [k, p] : bn.named_parameters())
    EXPECT_TRUE(allclose(p.grad(), f[name + ".grade." + k], 1e-5, 1e-6)) << "eval gradient of " << k;
}

TEST(BatchNorm, RunningStatsWithMomentum) {
  nn::BatchNorm2d bn(3);
  check_batchnorm_sequence("bn2d_mom", bn);
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 3);
}

TEST(BatchNorm, CumulativeAverageWhenMomentumIsNone) {
  nn::BatchNorm1d bn(4, 1e-5, std::nullopt);
  check_batchnorm_sequence("bn1d_cumavg", bn);
}

TEST(BatchNorm, CustomMomentumAndEps) {
  nn::BatchNorm1d bn(4, 1e-3, 0.3);
  check_batchnorm_sequence("bn1d_mom03", bn);
}

TEST(BatchNorm, WithoutRunningStatsUsesBatchStatsInEval) {
  nn::BatchNorm2d bn(2, 1e-5, 0.1, /*affine=*/false, /*track_running_stats=*/false);
  EXPECT_TRUE(bn.state_dict().empty());
  EXPECT_EQ(bn.num_parameters(), 0);
  check_batchnorm_sequence("bn2d_notrack", bn);
}

TEST(BatchNorm, EvalDoesNotTouchRunningStats) {
  nn::BatchNorm1d bn(2);
  bn.eval();
  Tensor x = from_vector(std::vector<float>{1, 2, 3, 4, 5, 7}, {3, 2});
  // Running stats (0, 1): y = x / sqrt(1 + eps).
  EXPECT_TRUE(allclose(bn.forward(x), x / std::sqrt(1.0 + 1e-5)));
  EXPECT_TRUE(allclose(bn.running_mean, zeros({2}), 0, 0));
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 0);
  bn.train();
  bn.forward(x);
  // mean (3, 4.333), unbiased var (4, 6.333): running = 0.9 * init + 0.1 * batch.
  EXPECT_TRUE(allclose(bn.running_mean, from_vector(std::vector<double>{0.3, 0.43333333}, {2}), 1e-5, 1e-6));
  EXPECT_TRUE(allclose(bn.running_var, from_vector(std::vector<double>{1.3, 1.53333333}, {2}), 1e-5, 1e-6));
  bn.reset_running_stats();
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 0);
  EXPECT_TRUE(allclose(bn.running_var, ones({2}), 0, 0));
}

// The batch count is kept on the host from the value the layer last wrote (no read from a device
// per step), but a count written from outside (reset, load_state_dict, a direct fill, a new
// buffer) is read again.
TEST(BatchNorm, BatchCountFollowsWritesFromOutside) {
  nn::BatchNorm1d bn(2, 1e-5, std::nullopt);
  Tensor x = from_vector(std::vector<float>{1, 2, 3, 4, 5, 7}, {3, 2});
  bn.forward(x);
  bn.forward(x);
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 2);
  bn.reset_running_stats();
  bn.forward(x);
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 1);
  bn.num_batches_tracked.fill_(10.0);
  bn.forward(x);
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 11);
  nn::BatchNorm1d other(2, 1e-5, std::nullopt);
  other.num_batches_tracked.fill_(41.0);
  bn.load_state_dict(other.state_dict());
  bn.forward(x);
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 42);
  bn.num_batches_tracked = zeros({}, DType::i64);  // a new buffer tensor
  bn.forward(x);
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 1);
}

// --- losses ---------------------------------------------------------------------------------------

const test::Fixture& losses() {
  static const test::Fixture f = test::load_fixture("fixtures/nn_losses.txt");
  return f;
}

Tensor opt(const std::string& key) {
  const test::Fixture& f = losses();
  return f.tensors.count(key) ? f[key] : Tensor();
}

// make(reduction) builds the loss module; checks y and the input gradient for mean, sum and none.
void check_loss(const std::string& name, const std::function<std::shared_ptr<nn::Loss>(Reduction)>& make) {
  SCOPED_TRACE(name);
  const test::Fixture& f = losses();
  const std::pair<const char*, Reduction> reductions[] = {
      {"mean", Reduction::Mean}, {"sum", Reduction::Sum}, {"none", Reduction::None}};
  for (const auto& [rname, r] : reductions) {
    auto loss = make(r);
    Tensor x = f[name + ".input"].clone();
    x.requires_grad_();
    Tensor y = (*loss)(x, f[name + ".target"]);
    EXPECT_TRUE(allclose(y, f[name + "." + rname + ".y"], 1e-5, 1e-6)) << rname;
    if (r == Reduction::None) y.backward(f[name + ".none.gy"]);
    else y.backward();
    EXPECT_TRUE(allclose(x.grad(), f[name + "." + rname + ".gx"], 1e-5, 1e-6)) << rname << " gradient";
  }
}

TEST(Losses, Regression) {
  check_loss("mse", [](Reduction r) { return std::make_shared<nn::MSELoss>(r); });
  check_loss("l1", [](Reduction r) { return std::make_shared<nn::L1Loss>(r); });
  check_loss("smooth_l1", [](Reduction r) { return std::make_shared<nn::SmoothL1Loss>(r); });
  check_loss("smooth_l1_b05", [](Reduction r) { return std::make_shared<nn::SmoothL1Loss>(r, 0.5); });
}

TEST(Losses, Binary) {
  check_loss("bce", [](Reduction r) { return std::make_shared<nn::BCELoss>(opt("bce.weight"), r); });
  check_loss("bce_logits", [](Reduction r) {
    return std::make_shared<nn::BCEWithLogitsLoss>(opt("bce_logits.weight"), r, opt("bce_logits.pos_weight"));
  });
}

TEST(Losses, Classification) {
  check_loss("ce", [](Reduction r) { return std::make_shared<nn::CrossEntropyLoss>(Tensor(), -100, r); });
  check_loss("ce_full",
             [](Reduction r) { return std::make_shared<nn::CrossEntropyLoss>(opt("ce_full.weight"), 1, r, 0.1); });
  check_loss("ce_spatial",
             [](Reduction r) { return std::make_shared<nn::CrossEntropyLoss>(opt("ce_spatial.weight"), 1, r); });
  check_loss("nll", [](Reduction r) { return std::make_shared<nn::NLLLoss>(opt("nll.weight"), 1, r); });
}

TEST(Losses, WeightsAreBuffers) {
  nn::CrossEntropyLoss ce(ones({3}));
  ASSERT_EQ(ce.state_dict().size(), 1u);
  EXPECT_EQ(ce.state_dict()[0].first, "weight");
  EXPECT_TRUE(nn::CrossEntropyLoss().state_dict().empty());
  nn::BCEWithLogitsLoss bce(Tensor(), Reduction::Mean, ones({2}));
  ASSERT_EQ(bce.state_dict().size(), 1u);
  EXPECT_EQ(bce.state_dict()[0].first, "pos_weight");
  ce.to(DType::f64);
  EXPECT_EQ(ce.weight.dtype(), DType::f64);
  try {
    nn::CrossEntropyLoss bad(Tensor(), -100, Reduction::Mean, 1.5);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[CrossEntropyLoss] label_smoothing must be between 0.0 and 1.0, got 1.5"),
              std::string::npos);
  }
}

}  // namespace
}  // namespace ember
