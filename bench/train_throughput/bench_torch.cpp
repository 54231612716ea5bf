// ember_bench_train_torch: the LibTorch side of the training-throughput benchmark. The same three
// autoencoders as examples/common/models.h (torch::nn, default init), Adam(lr 1e-3), MSE, one
// shuffled epoch of the 60k Fashion-MNIST images in memory (randperm + index_select per batch),
// then a no-grad pass over the 10k test images. Prints one "RESULT ..." line like ember_bench_train.
// Usage: ember_bench_train_torch --model lit|mlp|conv --threads N [--data DIR] [--trivial] [--gemm N]
#define BENCH_DEFINE_MALLOC
#include "bench/train_throughput/measure.h"

#include <torch/torch.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace nn = torch::nn;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

uint32_t be32(const unsigned char* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3]; }

// An IDX3 image file (gzip or plain) as f32 pixels/255, (N, 784) or (N, 1, 28, 28).
torch::Tensor load_images(const std::string& path, bool nchw) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("[bench] cannot open " + path);
  unsigned char h[16];
  if (gzread(f, h, 16) != 16 || be32(h) != 2051) throw std::runtime_error("[bench] not an IDX3 image file: " + path);
  int64_t n = be32(h + 4), r = be32(h + 8), c = be32(h + 12);
  std::vector<unsigned char> buf(static_cast<size_t>(n * r * c));
  if (gzread(f, buf.data(), static_cast<unsigned>(buf.size())) != static_cast<int>(buf.size()))
    throw std::runtime_error("[bench] short read in " + path);
  gzclose(f);
  torch::Tensor t = torch::from_blob(buf.data(), {n, r * c}, torch::kUInt8).to(torch::kFloat).div(255);
  return nchw ? t.view({n, 1, r, c}).contiguous() : t;
}

nn::Sequential build(const std::string& m) {
  if (m == "lit")
    return nn::Sequential(nn::Linear(784, 64), nn::ReLU(), nn::Linear(64, 3), nn::Linear(3, 64), nn::ReLU(),
                          nn::Linear(64, 784));
  if (m == "mlp")
    return nn::Sequential(nn::Linear(784, 512), nn::ReLU(), nn::Linear(512, 128), nn::ReLU(), nn::Linear(128, 32),
                          nn::ReLU(), nn::Linear(32, 128), nn::ReLU(), nn::Linear(128, 512), nn::ReLU(),
                          nn::Linear(512, 784), nn::Sigmoid());
  if (m == "conv")
    return nn::Sequential(
        nn::Conv2d(nn::Conv2dOptions(1, 16, 3).stride(2).padding(1)), nn::ReLU(),
        nn::Conv2d(nn::Conv2dOptions(16, 32, 3).stride(2).padding(1)), nn::ReLU(),
        nn::ConvTranspose2d(nn::ConvTranspose2dOptions(32, 16, 3).stride(2).padding(1).output_padding(1)), nn::ReLU(),
        nn::ConvTranspose2d(nn::ConvTranspose2dOptions(16, 1, 3).stride(2).padding(1).output_padding(1)),
        nn::Sigmoid());
  throw std::runtime_error("[bench] unknown model '" + m + "' (expected lit, mlp or conv)");
}

// sgemm roof (torch::mm, i.e. the BLAS it loaded): best of 5 rounds, as ember_bench_train --gemm.
double gemm_gflops(int64_t n) {
  torch::Tensor a = torch::randn({n, n}), b = torch::randn({n, n});
  torch::Tensor c = torch::mm(a, b);
  const double flop = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  int reps = 1;
  for (auto t0 = Clock::now(); seconds_since(t0) < 0.05; ++reps) c = torch::mm(a, b);
  reps = std::max(1, reps * 4);
  double best = 0;
  for (int round = 0; round < 5; ++round) {
    auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) c = torch::mm(a, b);
    best = std::max(best, flop * reps / seconds_since(t0) / 1e9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "lit", dir = "/usr/share/datasets/fashion-mnist";
  if (const char* e = std::getenv("EMBER_DATA"); e && *e) dir = e;
  int threads = 1;
  int64_t gemm_n = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--trivial") {
      torch::Tensor t = torch::ones({4});
      std::printf("%g\n", (t + t).sum().item<double>());
      return 0;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "ember_bench_train_torch: %s needs a value\n", a.c_str());
      return 2;
    }
    if (a == "--model") model = argv[++i];
    else if (a == "--threads") threads = std::atoi(argv[++i]);
    else if (a == "--data") dir = argv[++i];
    else if (a == "--gemm") gemm_n = std::atoll(argv[++i]);
    else {
      std::fprintf(stderr, "ember_bench_train_torch: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    torch::set_num_threads(threads);
    torch::manual_seed(0);
    if (gemm_n > 0) {
      std::printf("RESULT fw=torch model=sgemm threads=%d gflops=%.1f\n", threads, gemm_gflops(gemm_n));
      return 0;
    }
    bool nchw = model == "conv";
    torch::Tensor train = load_images(dir + "/train-images-idx3-ubyte.gz", nchw);
    torch::Tensor test = load_images(dir + "/t10k-images-idx3-ubyte.gz", nchw);
    nn::Sequential net = build(model);
    torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(1e-3));
    int64_t bs = nchw ? 128 : 256, n_train = train.size(0), n_test = test.size(0);
    const long data_rss_kib = bench::rss_kib();  // RSS with the data sets and the model loaded

    // Allocations are counted over the full-size steps from step 10 on (steady state; the last,
    // partial batch has new shapes).
    const int64_t warm = 10;
    uint64_t allocs0 = 0, allocs1 = 0;
    int64_t full_steps = 0;
    int64_t steps = 0;
    double loss_sum = 0;
    auto t0 = Clock::now();
    torch::Tensor perm = torch::randperm(n_train, torch::kLong);
    for (int64_t b = 0; b < n_train; b += bs) {
      if (steps == warm) allocs0 = bench::g_allocs.load();
      torch::Tensor x = train.index_select(0, perm.slice(0, b, std::min(b + bs, n_train)));
      opt.zero_grad();
      torch::Tensor loss = torch::mse_loss(net->forward(x), x);
      loss.backward();
      opt.step();
      if (x.size(0) == bs && steps >= warm) {
        ++full_steps;
        allocs1 = bench::g_allocs.load();
      }
      loss_sum += loss.item<double>() * static_cast<double>(x.size(0));
      ++steps;
    }
    double train_s = seconds_since(t0);
    double allocs_per_step = static_cast<double>(allocs1 - allocs0) / static_cast<double>(std::max<int64_t>(full_steps, 1));

    double val_sum = 0;
    t0 = Clock::now();
    {
      torch::NoGradGuard ng;
      for (int64_t b = 0; b < n_test; b += bs) {
        torch::Tensor x = test.slice(0, b, std::min(b + bs, n_test));
        val_sum += torch::mse_loss(net->forward(x), x).item<double>() * static_cast<double>(x.size(0));
      }
    }
    double val_s = seconds_since(t0);
    bench::Footprint fp = bench::footprint();
    std::printf(
        "RESULT fw=torch model=%s threads=%d train_sps=%.1f val_sps=%.1f loss=%.6f val_loss=%.6f allocs_per_step=%.2f "
        "peak_rss_kib=%ld data_rss_kib=%ld exe_bytes=%llu libs_bytes=%llu libs=%d blas=%s\n",
        model.c_str(), threads, static_cast<double>(n_train) / train_s, static_cast<double>(n_test) / val_s,
        loss_sum / static_cast<double>(n_train), val_sum / static_cast<double>(n_test), allocs_per_step,
        bench::peak_rss_kib(), data_rss_kib, static_cast<unsigned long long>(fp.exe_bytes),
        static_cast<unsigned long long>(fp.libs_bytes), fp.libs, fp.blas.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ember_bench_train_torch: %s\n", e.what());
    return 1;
  }
}
