// A steady training step on a GPU makes no host-device round trip: batches go from pinned host
// buffers to the device asynchronously (a buffer is refilled only after its copy ran), logged
// tensors are read when the logger or progress bar needs them, and input checks computed on the
// device are read with the next read instead of at their op (index_select, nll_loss,
// binary_cross_entropy), with the op still memory-safe and the error naming it. Tests that need a
// device skip without one.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "ember/runtime/allocator.h"
#include "ember/runtime/device.h"
#include "ember/runtime/device_checks.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "ember/train/callbacks.h"
#include "ember/train/logger.h"
#include "ember/train/trainer.h"
#include "tests/support/check.h"
#include "examples/mnist_ae/module.h"

namespace fs = std::filesystem;

namespace ember {
namespace {

#define REQUIRE_CUDA() \
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason()

const Device kGPU = cuda_device(0);

// Tells whether a message starts with a prefix, for errors with a trailing explanation.
::testing::AssertionResult starts_with(const std::string& text, const std::string& prefix) {
  if (text.rfind(prefix, 0) == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not start with '" << prefix << "'";
}

// A copy from a pinned block with non_blocking returns without waiting, equals the synchronous
// copy, and the block is not handed out again until the copy ran.
TEST(CudaSteadyStep, PinnedCopiesToTheDeviceAreAsynchronous) {
  REQUIRE_CUDA();
  const size_t n = 1 << 20;
  void* block = pinned_host_alloc(n * sizeof(float));
  ASSERT_TRUE(pinned_host_owns(block));
  {
    Tensor host = from_blob(block, {static_cast<int64_t>(n)}, DType::f32, kCPU, [n](void* p) {
      pinned_host_free(p, n * sizeof(float));
    });
    float* p = host.data_ptr<float>();
    for (size_t i = 0; i < n; ++i) p[i] = static_cast<float>(i % 977) * 0.5f;
    reset_cuda_round_trips();
    Tensor dev = host.to(kGPU, /*non_blocking=*/true);
    EXPECT_EQ(cuda_round_trips().synchronizations, 0u);
    EXPECT_TRUE(test::bit_equal(dev.to(kCPU), host));
    // ordinary memory takes the synchronous copy
    Tensor plain = full({16}, 2.0);
    EXPECT_FALSE(pinned_host_owns(plain.storage()->data()));
    reset_cuda_round_trips();
    EXPECT_TRUE(test::bit_equal(plain.to(kGPU, true).to(kCPU), plain));
    EXPECT_GE(cuda_round_trips().synchronizations, 2u);
  }
  // the block came back (its copy has run: the read above waited for the stream)
  void* again = pinned_host_alloc(n * sizeof(float));
  EXPECT_EQ(again, block);
  pinned_host_free(again, n * sizeof(float));
}

TEST(CudaSteadyStep, DeviceSideChecksAreReadLaterAndNameTheOp) {
  REQUIRE_CUDA();
  set_sync_device_checks(false);
  run_device_checks();
  Tensor logits = zeros({4, 10}, TensorOptions(DType::f32).with_device(kGPU));
  Tensor bad_target = from_vector(std::vector<int64_t>{1, 12, 3, 0}, {4}).to(kGPU);
  reset_cuda_round_trips();
  Tensor loss = cross_entropy(logits, bad_target);
  EXPECT_EQ(cuda_round_trips().synchronizations, 0u) << "the check does not stop the host";
  EXPECT_EQ(queued_device_checks(), 1u);
  try {
    loss.item();
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_TRUE(starts_with(e.what(), "[nll_loss] target 12 is out of bounds for 10 classes (a check computed on cuda:0"));
  }
  EXPECT_EQ(queued_device_checks(), 0u);

  Tensor x = arange(12, TensorOptions(DType::f32)).reshape({4, 3}).to(kGPU);
  Tensor sel = index_select(x, 0, from_vector(std::vector<int64_t>{0, 7}, {2}).to(kGPU));
  try {
    sel.to(kCPU);
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_TRUE(starts_with(e.what(), "[index_select] index 7 is out of range for dimension 0 of size 4"));
  }
  Tensor p = full({3}, 1.5, TensorOptions(DType::f32).with_device(kGPU));
  Tensor bce = binary_cross_entropy(p, zeros({3}, TensorOptions(DType::f32).with_device(kGPU)));
  try {
    bce.item();
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_TRUE(starts_with(e.what(), "[binary_cross_entropy] all elements of input should be between 0 and 1"));
  }

  // read at the op itself when asked to
  set_sync_device_checks(true);
  try {
    cross_entropy(logits, bad_target);
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "[nll_loss] target 12 is out of bounds for 10 classes");
  }
  set_sync_device_checks(false);
  // valid inputs pass, and the device stays usable
  EXPECT_NEAR(cross_entropy(logits, from_vector(std::vector<int64_t>{1, 2, 3, 0}, {4}).to(kGPU)).item(), std::log(10.0),
              1e-6);
  EXPECT_TRUE(test::bit_equal(index_select(x, 0, from_vector(std::vector<int64_t>{3, 0}, {2}).to(kGPU)).to(kCPU),
                              index_select(x.to(kCPU), 0, from_vector(std::vector<int64_t>{3, 0}, {2}))));
}

// Counts round trips from the end of one training batch to the end of the next, past warm-up:
// loading the batch, its copy to the device, forward, backward, optimizer step and logging.
class RoundTripWindow : public Callback {
 public:
  std::string state_key() const override { return "RoundTripWindow"; }
  void on_train_batch_end(Trainer&, LightningModule&, const Tensor&, const Batch&, int64_t batch_idx) override {
    const CudaRoundTrips now = cuda_round_trips();
    if (batch_idx > kWarm && batch_idx < last_) {
      syncs.push_back(now.synchronizations - prev_.synchronizations);
      reads.push_back(now.device_to_host_copies - prev_.device_to_host_copies);
    }
    prev_ = now;
  }
  static constexpr int64_t kWarm = 3;
  int64_t last_ = 0;
  std::vector<uint64_t> syncs, reads;

 private:
  CudaRoundTrips prev_;
};

TEST(CudaSteadyStep, TheExampleModelsTrainWithoutRoundTrips) {
  REQUIRE_CUDA();
  Generator g(11);
  auto ds = std::make_shared<data::TensorDataset>(std::vector<Tensor>{rand({640, 1, 28, 28}, {}, &g)});
  const fs::path root = fs::temp_directory_path() / ("ember_steady_" + std::to_string(::getpid()));
  for (const char* name : {"lit", "mlp", "conv"}) {
    SCOPED_TRACE(name);
    manual_seed(5);
    examples::AutoEncoderModule model(HParams{{"model", std::string(name)},
                                              {"learning_rate", 1e-3},
                                              {"optimizer", std::string("adam")},
                                              {"scheduler", std::string("none")}});
    auto window = std::make_shared<RoundTripWindow>();
    window->last_ = 640 / 64 - 1;
    TrainerOptions o;
    o.default_root_dir = root.string();
    o.max_epochs = 1;
    o.device = kGPU;
    o.enable_progress_bar = false;
    o.enable_checkpointing = false;
    o.log_every_n_steps = 1000;
    o.callbacks = {window};
    Trainer t(o);
    data::DataLoader loader(ds, data::DataLoaderOptions{.batch_size = 64, .shuffle = true, .seed = 3, .device = kGPU});
    t.fit(model, loader);
    ASSERT_FALSE(window->syncs.empty());
    for (size_t i = 0; i < window->syncs.size(); ++i) {
      EXPECT_EQ(window->syncs[i], 0u) << "step " << i + RoundTripWindow::kWarm + 1;
      EXPECT_EQ(window->reads[i], 0u) << "step " << i + RoundTripWindow::kWarm + 1;
    }
    // and what was logged is all there once read
    EXPECT_TRUE(std::isfinite(t.callback_metrics().at("train_loss").value));
  }
  fs::remove_all(root);
}

// With cuda_graphs the step is captured after warm-up and replayed: the weights and the last
// logged loss equal the eager run's bit for bit (the last, shorter batch of each epoch runs
// eagerly between replays, and a StepLR changes the learning rate at each epoch), no line says
// the graph was refused, and a replayed step makes no round trip.
TEST(CudaSteadyStep, GraphReplaysEqualTheEagerStepsBitForBit) {
  REQUIRE_CUDA();
  Generator g(12);
  auto ds = std::make_shared<data::TensorDataset>(std::vector<Tensor>{rand({600, 1, 28, 28}, {}, &g)});
  const fs::path root = fs::temp_directory_path() / ("ember_graphs_" + std::to_string(::getpid()));
  struct Run {
    std::unique_ptr<examples::AutoEncoderModule> model;
    double last_loss = 0;
    std::string messages;
    std::vector<uint64_t> syncs;
  };
  for (const char* name : {"lit", "mlp", "conv"}) {
    SCOPED_TRACE(name);
    auto run = [&](bool graphs) {
      Run r;
      manual_seed(6);
      r.model = std::make_unique<examples::AutoEncoderModule>(HParams{{"model", std::string(name)},
                                                                      {"learning_rate", 1e-3},
                                                                      {"optimizer", std::string("adam")},
                                                                      {"scheduler", std::string("step")}});
      auto window = std::make_shared<RoundTripWindow>();
      window->last_ = 600 / 64 - 1;
      TrainerOptions o;
      o.default_root_dir = (root / (graphs ? "graphs" : "eager")).string();
      o.max_epochs = 2;
      o.device = kGPU;
      o.enable_progress_bar = false;
      o.enable_checkpointing = false;
      o.log_every_n_steps = 1000;
      o.cuda_graphs = graphs;
      o.callbacks = {window};
      Trainer t(o);
      data::DataLoader loader(ds, data::DataLoaderOptions{.batch_size = 64, .shuffle = true, .seed = 3, .device = kGPU});
      ::testing::internal::CaptureStderr();
      t.fit(*r.model, loader);
      r.messages = ::testing::internal::GetCapturedStderr();
      r.last_loss = t.callback_metrics().at("train_loss").value;
      r.syncs = window->syncs;
      return r;
    };
    Run eager = run(false), graphed = run(true);
    EXPECT_EQ(graphed.messages.find("cuda_graphs"), std::string::npos) << graphed.messages;
    const auto a = eager.model->state_dict(), b = graphed.model->state_dict();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_TRUE(test::bit_equal(a[i].second.to(kCPU), b[i].second.to(kCPU))) << a[i].first;
    EXPECT_EQ(eager.last_loss, graphed.last_loss);
    ASSERT_FALSE(graphed.syncs.empty());
    for (size_t i = 0; i < graphed.syncs.size(); ++i) EXPECT_EQ(graphed.syncs[i], 0u) << "step " << i;
  }
  fs::remove_all(root);
}

}  // namespace
}  // namespace ember
