// ember_bench_infer: inference speed of one example autoencoder (lit, mlp, conv;
// examples/common/models.h) the way ember-run runs a checkpoint: run_tool::load_model (nn::load_module,
// eval mode) and, under NoGradGuard, the forward pass over batches of the first axis, each batch's
// output copied into one output tensor. The 10k Fashion-MNIST test images are held in memory as f32
// pixels / 255 (the conversion is not timed; ember-run reads its input from a .npy file instead).
// Prints one "RESULT key=value ..." line per measurement (scripts/bench-infer.sh reads them):
//   batch=B: samples/s of passes over the 10k images in batches of B (the last one smaller),
//            median of --passes timed passes after one untimed pass (--passes 0: none, so that a
//            profiler sees the batch-1 forward alone)
//   batch=1: latency of one image's forward pass, median and 90th percentile in microseconds over
//            --latency-images single images (after 20 untimed ones)
// --write-output FILE.npy writes the outputs of the first B images, for the comparison with ONNX
// Runtime's outputs (bench/inference/bench_ort.py --check).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "ember/checkpoint/npy.h"
#include "ember/nn/init.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/error.h"
#include "ember/runtime/parallel.h"
#include "ember/train/data/mnist.h"
#include "examples/common/models.h"
#include "tools/run/run.h"

using namespace ember;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The value at quantile q (0..1) of v, by nearest rank.
double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const size_t i = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// Checks that the checkpoint holds the example model `name`: the same parameter names and shapes
// as examples::AutoEncoder(name) (lit and mlp take the same input, so a wrong file would otherwise
// run without an error).
void check_same_model(const nn::Module& loaded, const std::string& name, const std::string& path) {
  nn::init::SkipRandomInitGuard no_init;
  const examples::AutoEncoder expected(name);
  const nn::NamedTensors a = loaded.named_parameters(), b = expected.named_parameters();
  bool same = a.size() == b.size();
  for (size_t i = 0; same && i < a.size(); ++i) same = a[i].first == b[i].first && a[i].second.shape() == b[i].second.shape();
  if (!same)
    EMBER_THROW("[bench_infer] '", path, "' does not hold the '", name, "' model (", a.size(), " parameters, expected ",
                b.size(), " as examples/common/models.cpp builds it)");
}

// One pass of ember-run's loop (tools/run/run.cpp, run()): the model over x in batches, each
// output copied into out.
void run_pass(nn::Module& model, const Tensor& x, Tensor& out, int64_t batch) {
  const int64_t n = x.size(0);
  for (int64_t start = 0; start < n; start += batch) {
    const int64_t len = std::min(batch, n - start);
    const Tensor yb = model.forward(x.narrow(0, start, len));
    out.narrow(0, start, len).copy_(yb);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ember_bench_infer: batch throughput and single-image latency of an example autoencoder run as "
               "ember-run runs a checkpoint"};
  std::string model, ckpt, dir, write_output;
  int threads = 1, passes = 5, latency_images = 1000;
  int64_t batch = 256;
  app.add_option("--model", model, "lit, mlp or conv (the input layout and the parameter check)")->required();
  app.add_option("--ckpt", ckpt, "checkpoint of that model (bench/deploy/export_models.py --ember-ckpt writes one)")
      ->required();
  app.add_option("--threads", threads, "CPU threads")->check(CLI::Range(1, 4096));
  app.add_option("--data", dir, "Fashion-MNIST folder (default: EMBER_DATA or Debian's dataset-fashion-mnist)");
  app.add_option("--batch", batch, "batch size of the throughput passes (default 256)")->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--passes", passes, "timed passes over the test images (default 5; 0: none, for profiling the latency)")
      ->check(CLI::Range(0, 1000));
  app.add_option("--latency-images", latency_images, "single images timed for the latency (default 1000; 0: none)")
      ->check(CLI::Range(0, 1000000));
  app.add_option("--write-output", write_output, ".npy file for the outputs of the first batch");
  CLI11_PARSE(app, argc, argv);

  try {
    set_num_threads(threads);
    const data::ImageLayout layout = examples::model_layout(model);  // throws naming an unknown model
    nn::ModulePtr net = run_tool::load_model(ckpt, "");
    check_same_model(*net, model, ckpt);
    const auto test = data::load_mnist_dataset(dir.empty() ? data::default_data_dir() : dir, data::Split::Test, layout);
    const Tensor x = test->images(0, test->size());
    const int64_t n = x.size(0);

    NoGradGuard no_grad;
    Tensor out = net->forward(x.narrow(0, 0, 1));  // the output's per-sample shape
    Shape shape = out.shape();
    shape[0] = n;
    out = empty(shape);

    if (passes > 0 || !write_output.empty()) {
      run_pass(*net, x, out, batch);  // untimed: first-touch of the buffers, the thread pool's start
      if (!write_output.empty()) write_npy(write_output, out.narrow(0, 0, std::min(batch, n)));
    }
    if (passes > 0) {
      std::vector<double> sps;
      for (int p = 0; p < passes; ++p) {
        const auto t0 = Clock::now();
        run_pass(*net, x, out, batch);
        sps.push_back(static_cast<double>(n) / seconds_since(t0));
      }
      std::printf("RESULT fw=ember model=%s threads=%d batch=%lld sps=%.1f\n", model.c_str(), threads,
                  static_cast<long long>(batch), quantile(sps, 0.5));
    }

    if (latency_images > 0) {
      for (int64_t i = 0; i < 20; ++i) net->forward(x.narrow(0, i % n, 1));
      std::vector<double> us;
      us.reserve(static_cast<size_t>(latency_images));
      for (int64_t i = 0; i < latency_images; ++i) {
        const Tensor xi = x.narrow(0, i % n, 1);
        const auto t0 = Clock::now();
        const Tensor y = net->forward(xi);
        us.push_back(seconds_since(t0) * 1e6);
      }
      std::printf("RESULT fw=ember model=%s threads=%d batch=1 latency_us=%.2f p90_us=%.2f images=%d\n", model.c_str(),
                  threads, quantile(us, 0.5), quantile(us, 0.9), latency_images);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ember_bench_infer: %s\n", e.what());
    return 2;
  }
}
