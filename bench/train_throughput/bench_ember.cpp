// ember_bench_train: one epoch of Fashion-MNIST (60k images in memory) training one of the
// example autoencoders (lit, mlp, conv; examples/common/models.h) with Adam and MSE, then a no-grad
// pass over the 10k test images. Prints one "RESULT key=value ..." line for scripts/bench-train.sh.
// Usage: ember_bench_train --model lit|mlp|conv --threads N [--data DIR] [--trivial] [--gemm N]
// (--gemm N: GFLOP/s of an N x N x N matmul instead of training)
#define BENCH_DEFINE_MALLOC
#include "bench/train_throughput/measure.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "examples/common/models.h"
#include "runtime/autograd.h"
#include "runtime/ops.h"
#include "runtime/parallel.h"
#include "runtime/rng.h"
#include "train/data/dataloader.h"
#include "train/data/mnist.h"
#include "train/optim.h"

using namespace ember;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Trivial program for the start-up row: a tensor op and a print.
int trivial() {
  Tensor a = ones({4});
  std::printf("%g\n", sum(a + a).item<double>());
  return 0;
}

// sgemm roof for the GFLOP/s row: GFLOP/s of an (n, n) x (n, n) f32 matmul, best of 5 rounds of
// enough products to take about 0.2 s each.
double gemm_gflops(int64_t n) {
  Tensor a = randn({n, n}), b = randn({n, n});
  Tensor c = matmul(a, b);
  const double flop = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  int reps = 1;
  for (auto t0 = Clock::now(); seconds_since(t0) < 0.05; ++reps) c = matmul(a, b);
  reps = std::max(1, reps * 4);
  double best = 0;
  for (int round = 0; round < 5; ++round) {
    auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) c = matmul(a, b);
    best = std::max(best, flop * reps / seconds_since(t0) / 1e9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "lit", dir;
  int threads = 1;
  int64_t gemm_n = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--trivial") return trivial();
    if (i + 1 >= argc) {
      std::fprintf(stderr, "ember_bench_train: %s needs a value\n", a.c_str());
      return 2;
    }
    if (a == "--model") model = argv[++i];
    else if (a == "--threads") threads = std::atoi(argv[++i]);
    else if (a == "--data") dir = argv[++i];
    else if (a == "--gemm") gemm_n = std::atoll(argv[++i]);
    else {
      std::fprintf(stderr, "ember_bench_train: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    set_num_threads(threads);
    manual_seed(0);
    if (gemm_n > 0) {
      std::printf("RESULT fw=ember model=sgemm threads=%d gflops=%.1f\n", threads, gemm_gflops(gemm_n));
      return 0;
    }
    if (dir.empty()) dir = data::default_data_dir();
    data::ImageLayout layout = examples::model_layout(model);
    auto train = data::load_mnist_dataset(dir, data::Split::Train, layout);
    auto test = data::load_mnist_dataset(dir, data::Split::Test, layout);
    examples::AutoEncoder net(model);
    optim::Adam opt(net.named_parameters(), optim::AdamOptions{.lr = 1e-3});
    int64_t bs = examples::default_batch_size(model);
    data::DataLoader train_loader(train, {.batch_size = bs, .shuffle = true, .seed = 0});
    data::DataLoader test_loader(test, {.batch_size = bs});
    const long data_rss_kib = bench::rss_kib();  // RSS with the data sets and the model loaded

    // Training epoch: shuffle, batching, forward, backward, step.
    // Allocations are counted over the full-size steps from step 10 on (steady state; the last,
    // partial batch has new shapes).
    const int64_t warm = 10;
    uint64_t allocs0 = 0, allocs1 = 0;
    int64_t full_steps = 0;
    int64_t steps = 0, samples = 0;
    double loss_sum = 0;
    auto t0 = Clock::now();
    for (auto it = train_loader.begin(); it != train_loader.end(); ++it) {
      if (steps == warm) allocs0 = bench::g_allocs.load();
      const Tensor& x = (*it)[0];
      opt.zero_grad();
      Tensor loss = mse_loss(net.forward(x), x);
      loss.backward();
      opt.step();
      int64_t n = x.shape()[0];
      if (n == bs && steps >= warm) {
        ++full_steps;
        allocs1 = bench::g_allocs.load();
      }
      loss_sum += loss.item<double>() * static_cast<double>(n);
      samples += n;
      ++steps;
    }
    double train_s = seconds_since(t0);
    double allocs_per_step = static_cast<double>(allocs1 - allocs0) / static_cast<double>(std::max<int64_t>(full_steps, 1));

    // Validation: no-grad forward + loss over the test split.
    double val_sum = 0;
    int64_t val_samples = 0;
    t0 = Clock::now();
    {
      NoGradGuard ng;
      for (auto it = test_loader.begin(); it != test_loader.end(); ++it) {
        const Tensor& x = (*it)[0];
        int64_t n = x.shape()[0];
        val_sum += mse_loss(net.forward(x), x).item<double>() * static_cast<double>(n);
        val_samples += n;
      }
    }
    double val_s = seconds_since(t0);
    bench::Footprint fp = bench::footprint();
    std::printf(
        "RESULT fw=ember model=%s threads=%d train_sps=%.1f val_sps=%.1f loss=%.6f val_loss=%.6f allocs_per_step=%.2f "
        "peak_rss_kib=%ld data_rss_kib=%ld exe_bytes=%llu libs_bytes=%llu libs=%d blas=%s\n",
        model.c_str(), threads, static_cast<double>(samples) / train_s, static_cast<double>(val_samples) / val_s,
        loss_sum / static_cast<double>(samples), val_sum / static_cast<double>(val_samples), allocs_per_step,
        bench::peak_rss_kib(), data_rss_kib, static_cast<unsigned long long>(fp.exe_bytes),
        static_cast<unsigned long long>(fp.libs_bytes), fp.libs, fp.blas.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ember_bench_train: %s\n", e.what());
    return 1;
  }
}
