// Data-parallel numerics (train/distributed/ddp.h), in every rank of the world this binary runs
// in: after broadcast_module every rank holds rank 0's weights; N ranks of batch B with averaged
// gradients end within 1e-5 of one process with batch N*B over the same samples (20 Adam steps of
// the examples' mlp autoencoder); two such runs are bit-identical; buckets follow the cap in
// reverse order; a parameter without a gradient takes part as zeros.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "examples/common/models.h"
#include "ember/nn/nn.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "ember/train/optim.h"
#include "tests/support/check.h"
#include "train/distributed/ddp.h"
#include "train/distributed/process_group.h"

namespace ember {
namespace {

double max_abs_diff(const nn::Module& a, const nn::Module& b) {
  double m = 0;
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  for (size_t i = 0; i < pa.size(); ++i) m = std::max(m, max(abs(sub(pa[i].second, pb[i].second))).item_double());
  return m;
}

TEST(Ddp, BroadcastModuleGivesEveryRankRankZerosWeights) {
  manual_seed(100 + static_cast<uint64_t>(dist::rank()));  // different weights on every rank
  examples::AutoEncoder model("lit");
  dist::broadcast_module(model);
  manual_seed(100);
  examples::AutoEncoder rank0("lit");
  EXPECT_EQ(max_abs_diff(model, rank0), 0.0);
}

// The global batch k of 2 * world * B samples... each rank takes rows [r*B, (r+1)*B) of global
// batch k; the reference takes the whole global batch on one process.
std::unique_ptr<examples::AutoEncoder> train(bool distributed, int64_t per_rank, int steps) {
  manual_seed(7);
  auto model = std::make_unique<examples::AutoEncoder>("mlp");
  if (distributed) dist::broadcast_module(*model);
  optim::Adam opt(model->named_parameters(), optim::AdamOptions{.lr = 1e-3});
  dist::GradReducer reducer(model->parameters());
  const int n = dist::world_size(), r = dist::rank();
  Generator data(11);
  for (int s = 0; s < steps; ++s) {
    const Tensor global = rand({per_rank * n, 784}, {}, &data);
    const Tensor x = distributed ? global.narrow(0, per_rank * r, per_rank).contiguous() : global;
    opt.zero_grad();
    Tensor loss = mse_loss(model->forward(x), x);
    loss.backward();
    if (distributed) reducer.reduce();
    opt.step();
  }
  return model;
}

TEST(Ddp, RanksOfBatchBStepLikeOneProcessOfBatchNB) {
  auto ddp = train(true, 16, 20);
  auto single = train(false, 16, 20);  // every rank computes the reference for itself
  const double diff = max_abs_diff(*ddp, *single);
  EXPECT_LE(diff, 1e-5) << dist::world_size() << " ranks";
  if (dist::rank() == 0) std::printf("[ddp] %d rank(s): max |w_ddp - w_single| = %.3g\n", dist::world_size(), diff);
  // the ranks hold the same weights
  for (const Tensor& p : ddp->parameters()) {
    Tensor mine = p.clone(), root = p.clone();
    dist::broadcast(root, 0);
    EXPECT_TRUE(test::bit_equal(mine, root));
  }
  // and a second run is bit-identical
  auto again = train(true, 16, 20);
  EXPECT_EQ(max_abs_diff(*ddp, *again), 0.0);
}

TEST(Ddp, BucketsFollowTheCapInReverseOrder) {
  std::vector<Tensor> params = {zeros({100}), zeros({300}), zeros({50}), zeros({10}, DType::f64), zeros({20})};
  dist::GradReducer reducer(params, dist::GradReducerOptions{.bucket_bytes = 1200});
  // reverse: 20 f32 (80 B) | 10 f64 (a new dtype) | 50 f32 (200 B) then 300 f32 (1200 B) passes the
  // cap | 300 alone | 100
  const std::vector<std::vector<size_t>> expected = {{4}, {3}, {2}, {1}, {0}};
  EXPECT_EQ(reducer.buckets(), expected);
  dist::GradReducer one(params, dist::GradReducerOptions{.bucket_bytes = 10000});
  EXPECT_EQ(one.buckets(), (std::vector<std::vector<size_t>>{{4}, {3}, {2, 1, 0}}));
}

TEST(Ddp, AParameterWithoutGradientTakesPartAsZeros) {
  Tensor a = zeros({4}).requires_grad_(), b = zeros({3}).requires_grad_();
  const int n = dist::world_size(), r = dist::rank();
  a.set_grad(full({4}, static_cast<double>(r + 1)));
  if (r == 0) b.set_grad(full({3}, 6.0));  // only rank 0 has b's gradient
  dist::GradReducer reducer({a, b});
  reducer.reduce();
  EXPECT_TRUE(test::allclose(a.grad(), full({4}, (n + 1) / 2.0), 0, 0));
  if (n > 1) {
    ASSERT_TRUE(b.grad().defined());
    EXPECT_TRUE(test::allclose(b.grad(), full({3}, 6.0 / n), 0, 1e-7));
    EXPECT_GT(reducer.last_bytes(), 0);
  }
}

}  // namespace
}  // namespace ember
