// TrainerOptions::cuda_graphs where no graph can be used: on the CPU the trainer says so in one
// line and trains exactly as without the option. (The graphs themselves are tested on a GPU:
// tests/cuda/test_steady_step.cpp.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "ember/nn/nn.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"
#include "ember/train/trainer.h"

namespace fs = std::filesystem;

namespace ember {
namespace {

class Line : public LightningModule {
 public:
  Line() : LightningModule("Line") { lin = register_module("lin", std::make_shared<nn::Linear>(4, 4)); }
  Tensor training_step(const Batch& b, int64_t) override {
    Tensor loss = mse_loss(lin->forward(b[0]), b[0]);
    log("train_loss", loss);
    return loss;
  }
  OptimizerConfig configure_optimizers() override {
    return OptimizerConfig(std::make_shared<optim::Adam>(named_parameters(), optim::AdamOptions{.lr = 0.01}));
  }
  std::shared_ptr<nn::Linear> lin;
};

size_t count_of(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++n;
  return n;
}

TEST(CudaGraphsOption, OnTheCpuTrainsEagerlyAndSaysWhyOnce) {
  const fs::path root = fs::temp_directory_path() / ("ember_graphs_option_" + std::to_string(::getpid()));
  Generator g(1);
  auto ds = std::make_shared<data::TensorDataset>(std::vector<Tensor>{rand({40, 4}, {}, &g)});
  auto fit = [&](bool graphs, std::string* messages) {
    manual_seed(2);
    auto model = std::make_unique<Line>();
    TrainerOptions o;
    o.default_root_dir = (root / (graphs ? "g" : "e")).string();
    o.max_epochs = 2;
    o.enable_progress_bar = false;
    o.enable_checkpointing = false;
    o.cuda_graphs = graphs;
    Trainer t(o);
    data::DataLoader loader(ds, data::DataLoaderOptions{.batch_size = 8, .shuffle = true, .seed = 4});
    ::testing::internal::CaptureStderr();
    t.fit(*model, loader);
    *messages = ::testing::internal::GetCapturedStderr();
    return model;
  };
  std::string plain, graphed;
  auto a = fit(false, &plain);
  auto b = fit(true, &graphed);
  EXPECT_EQ(count_of(plain, "cuda_graphs"), 0u) << plain;
  EXPECT_EQ(count_of(graphed, "[Trainer] cuda_graphs: the device is cpu; training runs eagerly"), 1u) << graphed;
  EXPECT_TRUE(test::bit_equal(a->lin->weight, b->lin->weight));
  EXPECT_TRUE(test::bit_equal(a->lin->bias, b->lin->bias));
  fs::remove_all(root);
}

}  // namespace
}  // namespace ember
