// The state_dict round trip with real modules: 5 steps, state_dict() of model + optimizer + scheduler,
// load into freshly built objects, 5 more steps == 10 uninterrupted steps, bit for bit.
#include <gtest/gtest.h>

#include "ember/nn/nn.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"
#include "ember/train/lr_scheduler.h"
#include "ember/train/optim.h"

using namespace ember;

namespace {

struct TrainingRun {
  std::shared_ptr<nn::Sequential> model;
  std::shared_ptr<optim::AdamW> opt;
  std::shared_ptr<optim::OneCycleLR> sched;
  explicit TrainingRun(uint64_t init_seed) {
    manual_seed(init_seed);
    model = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(6, 12), std::make_shared<nn::BatchNorm1d>(12),
                                             std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(12, 3));
    opt = std::make_shared<optim::AdamW>(model->named_parameters(), optim::AdamWOptions{.lr = 1e-2, .weight_decay = 0.05});
    sched = std::make_shared<optim::OneCycleLR>(*opt, optim::OneCycleLROptions{.max_lr = {0.05}, .total_steps = 10});
  }
  void step(int i) {
    Generator g(1000 + i);  // batch i is the same in every run
    Tensor x = randn({16, 6}, {}, &g), y = randn({16, 3}, {}, &g);
    Tensor loss = mse_loss(model->forward(x), y);
    loss.backward();
    opt->step();
    opt->zero_grad();
    sched->step();
  }
};

}  // namespace

TEST(ModuleRoundTrip, FiveStepsSaveLoadFiveMoreIsBitIdentical) {
  TrainingRun uninterrupted(1);
  for (int i = 0; i < 10; ++i) uninterrupted.step(i);

  TrainingRun first(1);
  for (int i = 0; i < 5; ++i) first.step(i);
  Value model_sd = first.model->state_dict_value().deep_copy();
  Value opt_sd = first.opt->state_dict().deep_copy();
  Value sched_sd = first.sched->state_dict().deep_copy();

  TrainingRun second(99);  // different initial weights: everything must come from the state dicts
  second.model->load_state_dict(model_sd);
  second.opt->load_state_dict(opt_sd);
  second.sched->load_state_dict(sched_sd);
  for (int i = 5; i < 10; ++i) second.step(i);

  auto a = uninterrupted.model->state_dict(), b = second.model->state_dict();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(test::bit_equal(a[i].second, b[i].second)) << a[i].first;
  }
  EXPECT_TRUE(uninterrupted.opt->state_dict() == second.opt->state_dict());
  EXPECT_TRUE(uninterrupted.sched->state_dict() == second.sched->state_dict());
  EXPECT_EQ(b[4].first, "1.running_mean");
  EXPECT_EQ(b[6].first, "1.num_batches_tracked");
  EXPECT_EQ(b[6].second.item<int64_t>(), 10);
}
