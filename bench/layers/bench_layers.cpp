// ember_bench_layers: one training step of a single layer at sizes larger than the examples' --
// forward of the layer and a ReLU, loss = sum of the outputs, backward to the weight, the bias and
// the input (which requires a gradient, as a layer inside a network does) -- timed after warm-up
// steps. The cases (bench_layers_torch.py has the same list):
//   linear1024  Linear 1024->1024, batch 256          linear2048  Linear 2048->2048, batch 256
//   conv64      Conv2d 64->64 3x3 pad 1, 32x32, batch 64
//   conv128     Conv2d 128->128 3x3 pad 1, 16x16, batch 32
//   conv256     Conv2d 256->256 3x3 pad 1, 8x8, batch 16
// Weights: the layers' default initialisation after manual_seed(0); input N(0, 1). Gradients are
// reset to none before each step (as zero_grad(set_to_none=True)). Prints one RESULT line per case:
// median and fastest step in ms, and GFLOP/s of the median (2 FLOP per multiply-add of the forward
// pass, the weight gradient and the input gradient).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "ember/nn/nn.h"
#include "ember/runtime/error.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/parallel.h"
#include "ember/runtime/rng.h"

using namespace ember;

namespace {

using Clock = std::chrono::steady_clock;

struct Case {
  const char* name;
  bool conv;
  int64_t batch, in, out, size;  // size: H = W of a conv case's input
};
const std::vector<Case> kCases = {
    {"linear1024", false, 256, 1024, 1024, 0}, {"linear2048", false, 256, 2048, 2048, 0},
    {"conv64", true, 64, 64, 64, 32},          {"conv128", true, 32, 128, 128, 16},
    {"conv256", true, 16, 256, 256, 8},
};

// Multiply-adds of the forward pass (3x3 kernels, padding 1: the output is as large as the input).
double macs(const Case& c) {
  const double b = static_cast<double>(c.batch), in = static_cast<double>(c.in), out = static_cast<double>(c.out);
  return c.conv ? b * out * in * 9 * static_cast<double>(c.size * c.size) : b * in * out;
}

const Case& find_case(const std::string& name) {
  for (const Case& c : kCases)
    if (name == c.name) return c;
  EMBER_THROW("[bench_layers] unknown case '", name, "' (expected linear1024, linear2048, conv64, conv128 or conv256)");
}

// The step times in ms of `steps` steps after `warmup` untimed ones.
std::vector<double> time_case(const Case& c, int warmup, int steps) {
  manual_seed(0);
  nn::ModulePtr layer;
  if (c.conv)
    layer = std::make_shared<nn::Conv2d>(c.in, c.out, 3, 1, 1);
  else
    layer = std::make_shared<nn::Linear>(c.in, c.out);
  const Shape shape = c.conv ? Shape{c.batch, c.in, c.size, c.size} : Shape{c.batch, c.in};
  Tensor x = randn(shape).requires_grad_();
  std::vector<double> ms;
  for (int i = 0; i < warmup + steps; ++i) {
    const auto t0 = Clock::now();
    layer->zero_grad();
    x.set_grad(Tensor());
    sum(relu(layer->forward(x))).backward();
    if (i >= warmup) ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ember_bench_layers: forward + backward of one Linear or Conv2d layer and a ReLU"};
  std::vector<std::string> cases;
  int threads = 1, warmup = 3, steps = 7;
  app.add_option("--cases", cases, "linear1024 linear2048 conv64 conv128 conv256 (default: all)");
  app.add_option("--threads", threads, "CPU threads")->check(CLI::Range(1, 4096));
  app.add_option("--warmup", warmup, "untimed steps first (default 3)")->check(CLI::Range(0, 1000));
  app.add_option("--steps", steps, "timed steps (default 7)")->check(CLI::Range(1, 1000));
  CLI11_PARSE(app, argc, argv);
  try {
    set_num_threads(threads);
    if (cases.empty())
      for (const Case& c : kCases) cases.push_back(c.name);
    for (const std::string& name : cases) find_case(name);  // every name checked before any run
    for (const std::string& name : cases) {
      const Case& c = find_case(name);
      std::vector<double> ms = time_case(c, warmup, steps);
      std::sort(ms.begin(), ms.end());
      const double median = ms[ms.size() / 2];
      std::printf("RESULT fw=ember case=%s threads=%d ms=%.3f min_ms=%.3f gflops=%.1f steps=%d\n", c.name, threads,
                  median, ms.front(), 3 * 2 * macs(c) / (median * 1e-3) / 1e9, steps);
      std::fflush(stdout);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ember_bench_layers: %s\n", e.what());
    return 2;
  }
}
