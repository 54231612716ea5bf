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
namespace {

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

}  // namespace

int main(int argc, char** argv) {
  bench::Args args;
  if (!bench::parse_args(argc, argv, "ember_bench_train_torch", args)) return 2;
  if (args.precision != "32-true") {
    std::fprintf(stderr, "ember_bench_train_torch: only --precision 32-true (PyTorch 2.x's autocast runs in "
                         "bench_torch2.py)\n");
    return 2;
  }
  if (args.trivial) {
    torch::Tensor t = torch::ones({4});
    std::printf("%g\n", (t + t).sum().item<double>());
    return 0;
  }
  std::string dir = args.dir;
  if (dir.empty()) {
    const char* e = std::getenv("EMBER_DATA");
    dir = e && *e ? e : "/usr/share/datasets/fashion-mnist";
  }
  try {
    torch::set_num_threads(args.threads);
    torch::manual_seed(0);
    if (args.gemm_n > 0) {  // sgemm roof: torch::mm, i.e. the BLAS it loaded
      const int64_t n = args.gemm_n;
      torch::Tensor a = torch::randn({n, n}), b = torch::randn({n, n}), c;
      const double gflops = bench::best_gflops(n, [&] { c = torch::mm(a, b); });
      std::printf("RESULT fw=torch model=sgemm threads=%d gflops=%.1f\n", args.threads, gflops);
      return 0;
    }
    bool nchw = args.model == "conv";
    torch::Tensor train = load_images(dir + "/train-images-idx3-ubyte.gz", nchw);
    torch::Tensor test = load_images(dir + "/t10k-images-idx3-ubyte.gz", nchw);
    nn::Sequential net = build(args.model);
    torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(1e-3));
    int64_t bs = nchw ? 128 : 256, n_train = train.size(0), n_test = test.size(0);
    bench::Run run{};
    run.data_rss_kib = bench::rss_kib();  // RSS with the data sets and the model loaded

    bench::AllocWindow allocs(bs);
    double loss_sum = 0;
    auto t0 = bench::Clock::now();
    torch::Tensor perm = torch::randperm(n_train, torch::kLong);
    for (int64_t b = 0; b < n_train; b += bs) {
      allocs.before_step();
      torch::Tensor x = train.index_select(0, perm.slice(0, b, std::min(b + bs, n_train)));
      opt.zero_grad();
      torch::Tensor loss = torch::mse_loss(net->forward(x), x);
      loss.backward();
      opt.step();
      allocs.after_step(x.size(0));
      loss_sum += loss.item<double>() * static_cast<double>(x.size(0));
    }
    run.train_sps = static_cast<double>(n_train) / bench::seconds_since(t0);
    run.loss = loss_sum / static_cast<double>(n_train);
    run.allocs_per_step = allocs.per_step();

    double val_sum = 0;
    t0 = bench::Clock::now();
    {
      torch::NoGradGuard ng;
      for (int64_t b = 0; b < n_test; b += bs) {
        torch::Tensor x = test.slice(0, b, std::min(b + bs, n_test));
        val_sum += torch::mse_loss(net->forward(x), x).item<double>() * static_cast<double>(x.size(0));
      }
    }
    run.val_sps = static_cast<double>(n_test) / bench::seconds_since(t0);
    run.val_loss = val_sum / static_cast<double>(n_test);
    bench::print_result("torch", args, run);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ember_bench_train_torch: %s\n", e.what());
    return 1;
  }
}
