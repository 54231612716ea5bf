// ember_bench_train: one epoch of Fashion-MNIST (60k images in memory) training one of the
// example autoencoders (lit, mlp, conv; examples/common/models.h) with Adam and MSE, then a no-grad
// pass over the 10k test images. Prints one "RESULT key=value ..." line for scripts/bench-train.sh.
// Usage: ember_bench_train --model lit|mlp|conv --threads N [--data DIR] [--trivial] [--gemm N]
//                          [--precision 32-true|bf16-mixed]
// (--gemm N: GFLOP/s of an N x N x N matmul instead of training; bf16-mixed: each step's forward
// pass and loss under AutocastGuard(bf16), with the optimizer's bf16 copies of the weights, as the
// Trainer's precision="bf16-mixed" runs them)
#define BENCH_DEFINE_MALLOC
#include "bench/train_throughput/measure.h"

#include <cstdio>
#include <string>

#include "examples/common/models.h"
#include <optional>

#include "ember/runtime/autocast.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/parallel.h"
#include "ember/runtime/rng.h"
#include "ember/train/data/dataloader.h"
#include "ember/train/data/mnist.h"
#include "ember/train/optim.h"

using namespace ember;

namespace {

// Trivial program for the start-up row: a tensor op and a print.
int trivial() {
  Tensor a = ones({4});
  std::printf("%g\n", sum(a + a).item<double>());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args;
  if (!bench::parse_args(argc, argv, "ember_bench_train", args)) return 2;
  if (args.trivial) return trivial();
  try {
    set_num_threads(args.threads);
    manual_seed(0);
    if (args.gemm_n > 0) {
      const int64_t n = args.gemm_n;
      Tensor a = randn({n, n}), b = randn({n, n}), c;
      const double gflops = bench::best_gflops(n, [&] { c = matmul(a, b); });
      std::printf("RESULT fw=ember model=sgemm threads=%d gflops=%.1f\n", args.threads, gflops);
      return 0;
    }
    if (args.precision != "32-true" && args.precision != "bf16-mixed") {
      std::fprintf(stderr, "ember_bench_train: --precision must be 32-true or bf16-mixed, got '%s'\n",
                   args.precision.c_str());
      return 2;
    }
    const bool mixed = args.precision == "bf16-mixed";
    const std::string& model = args.model;
    const std::string dir = args.dir.empty() ? data::default_data_dir() : args.dir;
    data::ImageLayout layout = examples::model_layout(model);
    auto train = data::load_mnist_dataset(dir, data::Split::Train, layout);
    auto test = data::load_mnist_dataset(dir, data::Split::Test, layout);
    examples::AutoEncoder net(model);
    optim::Adam opt(net.named_parameters(), optim::AdamOptions{.lr = 1e-3});
    if (mixed) opt.keep_lowp_copies(DType::bf16);
    int64_t bs = examples::default_batch_size(model);
    data::DataLoader train_loader(train, {.batch_size = bs, .shuffle = true, .seed = 0});
    data::DataLoader test_loader(test, {.batch_size = bs});
    bench::Run run{};
    run.data_rss_kib = bench::rss_kib();  // RSS with the data sets and the model loaded

    // Training epoch: shuffle, batching, forward, backward, step.
    bench::AllocWindow allocs(bs);
    int64_t samples = 0;
    double loss_sum = 0;
    auto t0 = bench::Clock::now();
    for (auto it = train_loader.begin(); it != train_loader.end(); ++it) {
      allocs.before_step();
      const Tensor& x = (*it)[0];
      opt.zero_grad();
      Tensor loss;
      {
        std::optional<AutocastGuard> amp;
        if (mixed) amp.emplace(DType::bf16);
        opt.use_lowp_copies();
        loss = mse_loss(net.forward(x), x);
      }
      loss.backward();
      opt.step();
      int64_t n = x.shape()[0];
      allocs.after_step(n);
      loss_sum += loss.item<double>() * static_cast<double>(n);
      samples += n;
    }
    run.train_sps = static_cast<double>(samples) / bench::seconds_since(t0);
    run.loss = loss_sum / static_cast<double>(samples);
    run.allocs_per_step = allocs.per_step();

    // Validation: no-grad forward + loss over the test split.
    double val_sum = 0;
    int64_t val_samples = 0;
    t0 = bench::Clock::now();
    {
      NoGradGuard ng;
      std::optional<AutocastGuard> amp;
      if (mixed) amp.emplace(DType::bf16);
      for (auto it = test_loader.begin(); it != test_loader.end(); ++it) {
        const Tensor& x = (*it)[0];
        int64_t n = x.shape()[0];
        val_sum += mse_loss(net.forward(x), x).item<double>() * static_cast<double>(n);
        val_samples += n;
      }
    }
    run.val_sps = static_cast<double>(val_samples) / bench::seconds_since(t0);
    run.val_loss = val_sum / static_cast<double>(val_samples);
    bench::print_result("ember", args, run);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ember_bench_train: %s\n", e.what());
    return 1;
  }
}
