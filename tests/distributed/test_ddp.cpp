// Data-parallel numerics (train/distributed/ddp.h), in every rank of the world this binary runs
// in: after broadcast_module every rank holds rank 0's weights; N ranks of batch B with averaged
// gradients end within 1e-5 of one process with batch N*B over the same samples (20 Adam steps of
// the examples' mlp autoencoder); two such runs are bit-identical, and so are runs whose buckets
// start from gradient hooks during backward; buckets follow the caps in reverse order; a
// parameter without a gradient takes part as zeros.
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
#include "ember/train/distributed/ddp.h"
#include "ember/train/distributed/process_group.h"

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
enum class Reduce { None, AfterBackward, DuringBackward };

std::unique_ptr<examples::AutoEncoder> train(Reduce mode, int64_t per_rank, int steps,
                                             int* started_in_backward = nullptr,
                                             dist::Overlap overlap = dist::Overlap::On,
                                             bool host_shared_memory = true, bool set_to_none = true) {
  const bool distributed = mode != Reduce::None;
  manual_seed(7);
  auto model = std::make_unique<examples::AutoEncoder>("mlp");
  if (distributed) dist::broadcast_module(*model);
  optim::Adam opt(model->named_parameters(), optim::AdamOptions{.lr = 1e-3});
  dist::GradReducer reducer(model->parameters(),
                            dist::GradReducerOptions{.overlap = overlap, .host_shared_memory = host_shared_memory});
  const int n = dist::world_size(), r = dist::rank();
  Generator data(11);
  for (int s = 0; s < steps; ++s) {
    const Tensor global = rand({per_rank * n, 784}, {}, &data);
    const Tensor x = distributed ? global.narrow(0, per_rank * r, per_rank).contiguous() : global;
    opt.zero_grad(set_to_none);
    Tensor loss = mse_loss(model->forward(x), x);
    if (mode == Reduce::DuringBackward) reducer.prepare_for_backward();
    loss.backward();
    if (mode == Reduce::DuringBackward) reducer.finish();
    if (mode == Reduce::AfterBackward) reducer.reduce();
    if (started_in_backward) *started_in_backward = reducer.last_buckets_started_in_backward();
    opt.step();
  }
  return model;
}

TEST(Ddp, RanksOfBatchBStepLikeOneProcessOfBatchNB) {
  auto ddp = train(Reduce::AfterBackward, 16, 20);
  auto single = train(Reduce::None, 16, 20);  // every rank computes the reference for itself
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
  auto again = train(Reduce::AfterBackward, 16, 20);
  EXPECT_EQ(max_abs_diff(*ddp, *again), 0.0);
}

TEST(Ddp, BucketsStartedDuringBackwardGiveTheSameSteps) {
  int started = -1;
  auto overlapped = train(Reduce::DuringBackward, 16, 20, &started);
  auto after = train(Reduce::AfterBackward, 16, 20);
  const size_t buckets = dist::GradReducer(overlapped->parameters()).buckets().size();
  EXPECT_GE(buckets, 2u);  // the first bucket (1 MB) holds the decoder's last layers only
  if (dist::world_size() == 1) {
    EXPECT_EQ(started, 0);  // a world of one registers no hooks
  } else {
    EXPECT_EQ(started, static_cast<int>(buckets));  // every gradient arrived during backward
  }
  // Two ranks sum in one order however the all-reduce runs; more may use other algorithms.
  if (dist::world_size() <= 2) EXPECT_EQ(max_abs_diff(*overlapped, *after), 0.0);
  else EXPECT_LE(max_abs_diff(*overlapped, *after), 1e-5);
  // Auto (the default): CPU buckets wait for the end of backward, with the same result
  int auto_started = -1;
  auto by_default = train(Reduce::DuringBackward, 16, 20, &auto_started, dist::Overlap::Auto);
  EXPECT_EQ(auto_started, 0);
  if (dist::world_size() <= 2) {
    EXPECT_EQ(max_abs_diff(*by_default, *after), 0.0);
  }
}

TEST(Ddp, BucketsInHostSharedMemoryGiveTheSameSteps) {
  // Every rank of this test is on one host: CPU buckets reduced after backward are reduced in
  // memory all ranks map; the steps equal those through MPI (two ranks: the same sums; the world
  // size divides before the sum there and after it here, exact for a power of two). Gradients
  // kept across zero_grad(false) accumulate into the buckets themselves, with the same steps.
  {
    manual_seed(3);
    examples::AutoEncoder model("lit");
    dist::GradReducer shared(model.parameters());
    dist::GradReducer private_memory(model.parameters(), dist::GradReducerOptions{.host_shared_memory = false});
    EXPECT_EQ(shared.uses_host_shared_memory(), dist::world_size() > 1);
    EXPECT_FALSE(private_memory.uses_host_shared_memory());
    dist::GradReducer overlapped(model.parameters(), dist::GradReducerOptions{.overlap = dist::Overlap::On});
    EXPECT_FALSE(overlapped.uses_host_shared_memory());  // started during backward: through MPI
  }
  auto shared = train(Reduce::DuringBackward, 16, 20, nullptr, dist::Overlap::Off, true);
  auto through_mpi = train(Reduce::DuringBackward, 16, 20, nullptr, dist::Overlap::Off, false);
  auto kept = train(Reduce::DuringBackward, 16, 20, nullptr, dist::Overlap::Off, true, /*set_to_none=*/false);
  auto single = train(Reduce::None, 16, 20);
  if (dist::world_size() <= 2) {
    EXPECT_EQ(max_abs_diff(*shared, *through_mpi), 0.0);
  }
  EXPECT_LE(max_abs_diff(*shared, *through_mpi), 1e-5);
  EXPECT_EQ(max_abs_diff(*shared, *kept), 0.0);
  EXPECT_LE(max_abs_diff(*shared, *single), 1e-5);
}

TEST(Ddp, GradientsBecomeTheirBucketsSlots) {
  // As PyTorch's gradient_as_bucket_view: after finish() every gradient is a view of its bucket's
  // buffer (one buffer for consecutive buckets of a dtype), holding the average.
  manual_seed(5);
  examples::AutoEncoder model("mlp");
  dist::broadcast_module(model);
  dist::GradReducer reducer(model.parameters());
  const Tensor x = rand({8, 784}, {}, nullptr);
  Tensor mine = x.clone();
  dist::broadcast(mine, 0);  // the same batch on every rank: the average is each rank's gradient
  mse_loss(model.forward(mine), mine).backward();
  std::vector<Tensor> own;
  for (const Tensor& p : model.parameters()) own.push_back(p.grad().clone());
  reducer.prepare_for_backward();
  for (const Tensor& p : model.parameters()) p.set_grad(Tensor());
  mse_loss(model.forward(mine), mine).backward();
  reducer.finish();
  const auto params = model.parameters();
  for (size_t k = 0; k < params.size(); ++k) {
    EXPECT_TRUE(test::allclose(params[k].grad(), own[k], 1e-6, 1e-7)) << "parameter " << k;
    if (dist::world_size() > 1) {
      EXPECT_TRUE(params[k].grad().is_alias_of(params[0].grad())) << "parameter " << k;
    }
  }
}

TEST(Ddp, HooksWithoutPrepareForBackwardDoNothing) {
  // Micro-batches accumulated before the step's backward (DDP's no_sync): no bucket starts.
  manual_seed(3);
  examples::AutoEncoder model("lit");
  dist::GradReducer reducer(model.parameters(), dist::GradReducerOptions{.overlap = dist::Overlap::On});
  const Tensor x = rand({4, 784});
  mse_loss(model.forward(x), x).backward();
  const Tensor before = model.parameters().back().grad().clone();
  reducer.prepare_for_backward();
  mse_loss(model.forward(x), x).backward();
  reducer.finish();
  // Same data on every rank: the average of the accumulated gradients is each rank's own.
  EXPECT_TRUE(test::allclose(model.parameters().back().grad(), mul(before, 2.0), 1e-6, 1e-6));
  EXPECT_EQ(reducer.last_buckets_started_in_backward(),
            dist::world_size() == 1 ? 0 : static_cast<int>(reducer.buckets().size()));
  EXPECT_THROW(
      {
        reducer.prepare_for_backward();
        reducer.prepare_for_backward();
      },
      Error);
  reducer.finish();
}

TEST(Ddp, BucketsFollowTheCapInReverseOrder) {
  // PyTorch's rule: in reverse order, a bucket closes once it holds at least its cap, or before a
  // parameter of another dtype.
  std::vector<Tensor> params = {zeros({100}), zeros({300}), zeros({50}), zeros({10}, DType::f64), zeros({20})};
  dist::GradReducer reducer(params, dist::GradReducerOptions{.bucket_bytes = 1200, .first_bucket_bytes = 1200});
  // reverse: 20 f32 (80 B) | 10 f64 (another dtype, 80 B) | 50 f32 (200 B) + 300 f32 (1200 B) reach
  // the cap | 100 f32 (400 B)
  const std::vector<std::vector<size_t>> expected = {{4}, {3}, {2, 1}, {0}};
  EXPECT_EQ(reducer.buckets(), expected);
  dist::GradReducer one(params, dist::GradReducerOptions{.bucket_bytes = 10000, .first_bucket_bytes = 10000});
  EXPECT_EQ(one.buckets(), (std::vector<std::vector<size_t>>{{4}, {3}, {2, 1, 0}}));
  // The first bucket has a cap of its own (small, so that its all-reduce starts early).
  const std::vector<Tensor> same = {zeros({100}), zeros({300}), zeros({50}), zeros({20})};
  dist::GradReducer split(same, dist::GradReducerOptions{.bucket_bytes = 10000, .first_bucket_bytes = 250});
  EXPECT_EQ(split.buckets(), (std::vector<std::vector<size_t>>{{3, 2}, {1, 0}}));
  dist::GradReducer tiny(same, dist::GradReducerOptions{.bucket_bytes = 1, .first_bucket_bytes = 1});
  EXPECT_EQ(tiny.buckets(), (std::vector<std::vector<size_t>>{{3}, {2}, {1}, {0}}));
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
