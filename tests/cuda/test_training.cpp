// Training on CUDA against the CPU: optimizer steps (the fused CUDA update kernels against the CPU
// loops, which share their per-element math) give the same parameters; a small model
// trains to the same losses; checkpoints written from CUDA tensors load on the CPU and the reverse;
// and a Trainer run checkpointed on one device resumes on the other.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ember/checkpoint/checkpoint.h"
#include "kernels/kernels.h"
#include "ember/nn/nn.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/device.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"
#include "ember/train/data/dataset.h"
#include "ember/train/optim.h"
#include "ember/train/trainer.h"

namespace fs = std::filesystem;

namespace ember {
namespace {

#define REQUIRE_CUDA() \
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason()

const Device kGPU = cuda_device(0);

using MakeOpt = std::function<std::unique_ptr<optim::Optimizer>(optim::NamedParams)>;

// Steps an optimizer over fixed gradients on `d`; returns the final parameters on the CPU.
std::vector<Tensor> run_steps(const MakeOpt& make, DType dt, Device d, int steps) {
  Generator g(17);
  optim::NamedParams params{{"w", rand({7, 13}, dt, &g).to(d).requires_grad_(true)},
                            {"b", rand({13}, dt, &g).to(d).requires_grad_(true)}};
  auto opt = make(params);
  for (int s = 0; s < steps; ++s) {
    for (auto& [name, p] : params) p.set_grad(randn(p.shape(), dt, &g).to(d));
    opt->step();
  }
  std::vector<Tensor> out;
  for (auto& [name, p] : params) out.push_back(p.detach().to(kCPU));
  return out;
}

TEST(CudaTraining, OptimizerStepsEqualTheCpu) {
  REQUIRE_CUDA();
  const std::vector<std::pair<std::string, MakeOpt>> opts = {
      {"sgd_momentum_nesterov_wd",
       [](optim::NamedParams p) {
         return std::make_unique<optim::SGD>(
             std::move(p), optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-2, .nesterov = true});
       }},
      {"sgd_plain", [](optim::NamedParams p) { return std::make_unique<optim::SGD>(std::move(p), optim::SGDOptions{.lr = 0.05}); }},
      {"adam", [](optim::NamedParams p) { return std::make_unique<optim::Adam>(std::move(p), optim::AdamOptions{.lr = 1e-2}); }},
      {"adam_amsgrad_wd",
       [](optim::NamedParams p) {
         return std::make_unique<optim::Adam>(std::move(p),
                                              optim::AdamOptions{.lr = 1e-2, .weight_decay = 0.1, .amsgrad = true});
       }},
      {"adamw", [](optim::NamedParams p) { return std::make_unique<optim::AdamW>(std::move(p), optim::AdamWOptions{.lr = 1e-2}); }},
  };
  for (const auto& [name, make] : opts) {
    for (DType dt : {DType::f32, DType::f64}) {
      SCOPED_TRACE(name + " " + dtype_name(dt));
      std::vector<Tensor> c = run_steps(make, dt, kCPU, 6), g = run_steps(make, dt, kGPU, 6);
      const double rtol = dt == DType::f32 ? 1e-5 : 1e-12, atol = dt == DType::f32 ? 1e-6 : 1e-14;
      for (size_t i = 0; i < c.size(); ++i) EXPECT_TRUE(test::allclose(g[i], c[i], rtol, atol)) << "param " << i;
    }
  }
}

// The fused CUDA update kernels (kernels::sgd_update_cuda / adam_update_cuda) against the CPU
// optimizers' fused loops: bit for bit, several steps, every option that changes the math.
TEST(CudaTraining, FusedUpdateKernelsEqualTheCpuOptimizersBitForBit) {
  REQUIRE_CUDA();
  for (DType dt : {DType::f32, DType::f64}) {
    for (int variant = 0; variant < 3; ++variant) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " variant " + std::to_string(variant));
      Generator g(21);
      Tensor p0 = rand({37, 11}, dt, &g);
      std::vector<Tensor> grads;
      for (int s = 0; s < 4; ++s) grads.push_back(randn({37, 11}, dt, &g));
      // Adam / AdamW on the CPU
      const bool decoupled = variant == 1, amsgrad = variant == 2;
      const double lr = 1e-2, wd = variant == 0 ? 0.0 : 0.05;
      optim::NamedParams cp{{"p", p0.clone().requires_grad_(true)}};
      std::unique_ptr<optim::Optimizer> opt;
      if (decoupled) opt = std::make_unique<optim::AdamW>(cp, optim::AdamWOptions{.lr = lr, .weight_decay = wd});
      else opt = std::make_unique<optim::Adam>(cp, optim::AdamOptions{.lr = lr, .weight_decay = wd, .amsgrad = amsgrad});
      // the same on the device through the kernel
      Tensor gp = p0.to(kGPU), m = zeros_like(gp), v = zeros_like(gp), vm = amsgrad ? zeros_like(gp) : Tensor();
      for (int s = 0; s < 4; ++s) {
        cp[0].second.set_grad(grads[static_cast<size_t>(s)]);
        opt->step();
        const double step = s + 1.0;
        kernels::AdamUpdate u{lr, 0.9, 0.999, 1e-8, wd, lr / (1.0 - std::pow(0.9, step)),
                              std::sqrt(1.0 - std::pow(0.999, step)), amsgrad, false, decoupled};
        kernels::adam_update_cuda(gp, grads[static_cast<size_t>(s)].to(kGPU), m, v, vm, u);
      }
      EXPECT_TRUE(test::bit_equal(gp.to(kCPU), cp[0].second.detach()));
      // SGD with momentum (Nesterov in variant 1, dampening in 2) and weight decay
      optim::NamedParams sp{{"p", p0.clone().requires_grad_(true)}};
      optim::SGD sgd(sp, optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .dampening = variant == 2 ? 0.3 : 0.0,
                                           .weight_decay = wd, .nesterov = variant == 1});
      Tensor sgp = p0.to(kGPU), buf = empty_like(sgp);
      for (int s = 0; s < 4; ++s) {
        sp[0].second.set_grad(grads[static_cast<size_t>(s)]);
        sgd.step();
        kernels::SgdUpdate u{0.1, 0.9, variant == 2 ? 0.3 : 0.0, wd, variant == 1, false, s == 0};
        kernels::sgd_update_cuda(sgp, grads[static_cast<size_t>(s)].to(kGPU), buf, u);
      }
      EXPECT_TRUE(test::bit_equal(sgp.to(kCPU), sp[0].second.detach()));
    }
  }
}

// Every optimizer through its front end on the device equals the CPU bit for bit (the two share
// the per-element math), for the options that change it, with a contiguous and a transposed
// parameter (the latter updated through a contiguous copy).
TEST(CudaTraining, EveryOptimizerStepEqualsTheCpuBitForBit) {
  REQUIRE_CUDA();
  const std::vector<std::pair<std::string, MakeOpt>> opts = {
      {"sgd_dampening_wd_maximize",
       [](optim::NamedParams p) {
         return std::make_unique<optim::SGD>(std::move(p), optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .dampening = 0.3,
                                                                             .weight_decay = 1e-2, .maximize = true});
       }},
      {"adamw_amsgrad",
       [](optim::NamedParams p) {
         return std::make_unique<optim::AdamW>(std::move(p), optim::AdamWOptions{.lr = 1e-2, .amsgrad = true});
       }},
      {"rmsprop", [](optim::NamedParams p) { return std::make_unique<optim::RMSprop>(std::move(p), optim::RMSpropOptions{}); }},
      {"rmsprop_centered_momentum_wd",
       [](optim::NamedParams p) {
         return std::make_unique<optim::RMSprop>(
             std::move(p), optim::RMSpropOptions{.weight_decay = 0.1, .momentum = 0.5, .centered = true, .maximize = true});
       }},
      {"adagrad_lr_decay_wd",
       [](optim::NamedParams p) {
         return std::make_unique<optim::Adagrad>(
             std::move(p), optim::AdagradOptions{.lr_decay = 0.01, .weight_decay = 0.1, .initial_accumulator_value = 0.2});
       }},
  };
  for (const auto& [name, make] : opts) {
    for (DType dt : {DType::f32, DType::f64}) {
      for (bool transposed : {false, true}) {
        SCOPED_TRACE(name + " " + dtype_name(dt) + (transposed ? " transposed" : ""));
        auto run = [&](Device d) {
          Generator g(29);
          Tensor init = rand({13, 7}, dt, &g);
          Tensor p = transposed ? init.t().contiguous().to(d).t() : init.to(d);
          p.requires_grad_(true);
          auto opt = make(optim::NamedParams{{"p", p}});
          for (int s = 0; s < 4; ++s) {
            p.set_grad(randn({13, 7}, dt, &g).to(d));
            opt->step();
          }
          return p.detach().contiguous().to(kCPU);
        };
        EXPECT_TRUE(test::bit_equal(run(kGPU), run(kCPU)));
      }
    }
  }
}

// A small MLP with an Adam step per batch; returns the losses.
std::vector<double> train_mlp(Device d, int steps) {
  manual_seed(123);
  auto net = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(20, 32), std::make_shared<nn::ReLU>(),
                                              std::make_shared<nn::Linear>(32, 5));
  net->to(d);
  optim::Adam opt(net->named_parameters(), optim::AdamOptions{.lr = 1e-2});
  Generator g(1);
  Tensor x = randn({64, 20}, {}, &g).to(d);
  std::vector<int64_t> labels(64);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int64_t>(i % 5);
  Tensor y = from_vector(labels, {64}).to(d);
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    Tensor loss = cross_entropy(net->forward(x), y);
    loss.backward();
    opt.step();
    losses.push_back(loss.item());
  }
  return losses;
}

TEST(CudaTraining, SmallModelTrainsToTheSameLosses) {
  REQUIRE_CUDA();
  std::vector<double> c = train_mlp(kCPU, 20), g = train_mlp(kGPU, 20);
  ASSERT_EQ(c.size(), g.size());
  for (size_t i = 0; i < c.size(); ++i) EXPECT_NEAR(g[i], c[i], 1e-4 * (1 + c[i])) << "step " << i;
  EXPECT_LT(g.back(), g.front());
}

class CudaCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("ember_cuda_ckpt_" + std::to_string(::getpid()) + "_" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  fs::path dir;
};

TEST_F(CudaCheckpoint, WrittenFromCudaLoadsOnCpuAndTheReverse) {
  REQUIRE_CUDA();
  Generator g(3);
  Tensor a = rand({33, 17}, {}, &g), b = randn({5}, DType::f64, &g), c = from_vector(std::vector<int64_t>{4, -1, 9}, {3});
  Tensor t = rand({6, 4}, {}, &g).to(DType::f16);
  // from CUDA (including a strided view) to the CPU
  ValueMap sd{{"a", a.to(kGPU)}, {"b", b.to(kGPU)}, {"c", c.to(kGPU)}, {"at", a.to(kGPU).t()}, {"h", t.to(kGPU)}};
  const std::string p1 = (dir / "from_cuda.ckpt").string();
  checkpoint::save(p1, Value(ValueMap{{checkpoint::kStateDict, Value(sd)}}));
  Value back = checkpoint::load(p1);
  const ValueMap& m = back.as_map().at(checkpoint::kStateDict).as_map();
  EXPECT_EQ(m.at("a").as_tensor().device(), kCPU);
  EXPECT_TRUE(test::bit_equal(m.at("a").as_tensor(), a));
  EXPECT_TRUE(test::bit_equal(m.at("b").as_tensor(), b));
  EXPECT_TRUE(test::bit_equal(m.at("c").as_tensor(), c));
  EXPECT_TRUE(test::bit_equal(m.at("at").as_tensor(), a.t().contiguous()));
  EXPECT_TRUE(test::bit_equal(m.at("h").as_tensor(), t));
  // from the CPU onto CUDA
  const std::string p2 = (dir / "from_cpu.ckpt").string();
  checkpoint::save(p2, Value(ValueMap{{checkpoint::kStateDict, Value(ValueMap{{"a", a}, {"c", c}})}}));
  checkpoint::ReadOptions ro;
  ro.device = kGPU;
  Value on_gpu = checkpoint::load(p2, ro);
  const ValueMap& mg = on_gpu.as_map().at(checkpoint::kStateDict).as_map();
  EXPECT_EQ(mg.at("a").as_tensor().device(), kGPU);
  EXPECT_TRUE(test::bit_equal(mg.at("a").as_tensor().to(kCPU), a));
  EXPECT_TRUE(test::bit_equal(mg.at("c").as_tensor().to(kCPU), c));
}

// The trainer's TinyAE (tests/trainer): dropout and Adam, so resume must carry weights, moments
// and the RNG state across devices.
class TinyAE : public LightningModule {
 public:
  TinyAE() : LightningModule("TinyAE") {
    save_hyperparameters(HParams{{"learning_rate", 0.01}});
    net = register_module("net", std::make_shared<nn::Sequential>(
                                      std::make_shared<nn::Linear>(8, 16), std::make_shared<nn::ReLU>(),
                                      std::make_shared<nn::Dropout>(0.2), std::make_shared<nn::Linear>(16, 8)));
  }
  Tensor forward(const Tensor& x) override { return net->forward(x); }
  Tensor training_step(const Batch& b, int64_t) override {
    Tensor loss = mse_loss(forward(b[0]), b[0]);
    log("train_loss", loss);
    return loss;
  }
  OptimizerConfig configure_optimizers() override {
    return std::make_shared<optim::Adam>(named_parameters(), optim::AdamOptions{.lr = 0.01});
  }
  std::shared_ptr<nn::Sequential> net;
};

std::unique_ptr<data::DataLoader> loader() {
  Generator g(123);
  auto ds = std::make_shared<data::TensorDataset>(std::vector<Tensor>{rand({64, 8}, {}, &g)});
  return std::make_unique<data::DataLoader>(ds, data::DataLoaderOptions{.batch_size = 8, .shuffle = true, .seed = 7});
}

TrainerOptions trainer_opts(const fs::path& root, int64_t epochs, Device d) {
  TrainerOptions o;
  o.default_root_dir = root.string();
  o.max_epochs = epochs;
  o.enable_progress_bar = false;
  o.logger = false;
  o.seed = 42;
  o.device = d;
  return o;
}

TEST_F(CudaCheckpoint, TrainerResumesAcrossDevices) {
  REQUIRE_CUDA();
  for (bool cuda_first : {true, false}) {
    SCOPED_TRACE(cuda_first ? "cuda -> cpu" : "cpu -> cuda");
    const Device first = cuda_first ? kGPU : kCPU, second = cuda_first ? kCPU : kGPU;
    const fs::path root = dir / (cuda_first ? "a" : "b");
    // reference: three epochs on the second device
    TinyAE ref;
    auto l0 = loader();
    Trainer t0(trainer_opts(root / "ref", 3, second));
    t0.fit(ref, *l0);
    // two epochs on the first device, then resume for the third on the second
    TinyAE m1;
    auto l1 = loader();
    Trainer t1(trainer_opts(root / "run", 2, first));
    t1.fit(m1, *l1);
    const std::string ckpt = (dir / (cuda_first ? "two_epochs_cuda.ckpt" : "two_epochs_cpu.ckpt")).string();
    t1.save_checkpoint(ckpt);
    TinyAE m2;
    auto l2 = loader();
    Trainer t2(trainer_opts(root / "resume", 3, second));
    t2.fit(m2, *l2, nullptr, ckpt);
    EXPECT_EQ(t2.global_step(), t0.global_step());
    auto sa = m2.state_dict(), sb = ref.state_dict();
    ASSERT_EQ(sa.size(), sb.size());
    for (size_t i = 0; i < sa.size(); ++i) {
      EXPECT_EQ(sa[i].second.device(), second) << sa[i].first;
      EXPECT_TRUE(test::allclose(sa[i].second, sb[i].second, 1e-4, 1e-5)) << sa[i].first;
    }
  }
}

}  // namespace
}  // namespace ember
