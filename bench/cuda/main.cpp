// ember-bench-cuda: training throughput (samples/s) on CUDA of the example's three autoencoders
// (lit, mlp, conv) with synthetic pixels in [0, 1) resident on the device, MSE loss and
// Adam (lr 1e-3), one optimizer step per batch; then the same models in PyTorch eager
// (bench/cuda/torch_models.py) when a python3 with torch is available. Each Ember model runs twice:
// eager ("ember"), and with the step captured into a CUDA graph after the warm-up and replayed
// ("ember-graphs", the Trainer's cuda_graphs; with --warmup 4 or more its final loss equals the
// eager one bit for bit). FP32
// throughout unless --tf32. Lines "RESULT <framework> <model> <samples/s> <ms/step>" are for
// scripts/gpu-check.sh.
//   usage: ember-bench-cuda [--steps N] [--warmup N] [--models lit,mlp,conv] [--tf32] [--no-torch]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "ember/nn/nn.h"
#include "ember/runtime/cuda_graph.h"
#include "ember/runtime/device.h"
#include "ember/runtime/error.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "ember/train/optim.h"

namespace {

using namespace ember;
using Clock = std::chrono::steady_clock;

struct Model {
  std::shared_ptr<nn::Module> net;
  int64_t batch;
  Shape sample;  // one input without the batch dim
};

Model build(const std::string& name) {
  using std::make_shared;
  if (name == "lit") {
    auto net = make_shared<nn::Sequential>(make_shared<nn::Linear>(784, 64), make_shared<nn::ReLU>(),
                                           make_shared<nn::Linear>(64, 3), make_shared<nn::Linear>(3, 64),
                                           make_shared<nn::ReLU>(), make_shared<nn::Linear>(64, 784));
    return {net, 256, {784}};
  }
  if (name == "mlp") {
    const int64_t dims[] = {784, 512, 128, 32, 128, 512, 784};
    auto net = make_shared<nn::Sequential>();
    for (int i = 0; i + 1 < 7; ++i) {
      net->push_back(make_shared<nn::Linear>(dims[i], dims[i + 1]));
      if (i + 2 < 7) net->push_back(make_shared<nn::ReLU>());
      else net->push_back(make_shared<nn::Sigmoid>());
    }
    return {net, 256, {784}};
  }
  if (name == "conv") {
    auto net = make_shared<nn::Sequential>(
        make_shared<nn::Conv2d>(1, 16, 3, 2, 1), make_shared<nn::ReLU>(), make_shared<nn::Conv2d>(16, 32, 3, 2, 1),
        make_shared<nn::ReLU>(), make_shared<nn::ConvTranspose2d>(32, 16, 3, 2, 1, 1), make_shared<nn::ReLU>(),
        make_shared<nn::ConvTranspose2d>(16, 1, 3, 2, 1, 1), make_shared<nn::Sigmoid>());
    return {net, 128, {1, 28, 28}};
  }
  EMBER_THROW("[ember-bench-cuda] unknown model '", name, "' (expected lit, mlp or conv)");
}

struct Result {
  double samples_per_s, ms_per_step, final_loss;
};

Result run(const std::string& name, int steps, int warmup) {
  manual_seed(0);
  Model m = build(name);
  const Device dev = cuda_device(0);
  m.net->to(dev);
  optim::Adam opt(m.net->named_parameters(), optim::AdamOptions{.lr = 1e-3});
  Shape shape = m.sample;
  shape.insert(0, m.batch);
  std::vector<Tensor> data;
  for (int i = 0; i < 8; ++i) data.push_back(rand(shape, TensorOptions(DType::f32).with_device(dev)));
  Tensor loss;
  auto step = [&](int i) {
    const Tensor& x = data[static_cast<size_t>(i) % data.size()];
    opt.zero_grad();
    loss = mse_loss(m.net->forward(x), x);
    loss.backward();
    opt.step();
  };
  for (int i = 0; i < warmup; ++i) step(i);
  loss.item();  // waits for the device
  const Clock::time_point t0 = Clock::now();
  for (int i = 0; i < steps; ++i) step(i);
  const double final_loss = loss.item();
  const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
  return {static_cast<double>(steps) * static_cast<double>(m.batch) / dt, 1e3 * dt / steps, final_loss};
}

// The same training with the step as a CUDA graph, as the Trainer's cuda_graphs does it: eager
// warm-up on a stream of its own, one capture of forward, backward and Adam step reading a static
// input, then per step: the batch copied into the static input, Adam's bookkeeping setting the
// captured update kernels' scalars, one replay.
Result run_graphs(const std::string& name, int steps, int warmup) {
  manual_seed(0);
  Model m = build(name);
  const Device dev = cuda_device(0);
  CudaStream stream(dev);
  CudaStreamGuard on_stream(stream);
  m.net->to(dev);
  optim::Adam opt(m.net->named_parameters(), optim::AdamOptions{.lr = 1e-3});
  Shape shape = m.sample;
  shape.insert(0, m.batch);
  std::vector<Tensor> data;
  for (int i = 0; i < 8; ++i) data.push_back(rand(shape, TensorOptions(DType::f32).with_device(dev)));
  Tensor loss;
  auto eager_step = [&](int i) {
    const Tensor& x = data[static_cast<size_t>(i) % data.size()];
    opt.zero_grad();
    loss = mse_loss(m.net->forward(x), x);
    loss.backward();
    opt.step();
  };
  // The same batches as run(): warm-up steps 0 .. warmup-1 (the last one captured, at least three
  // eager ones before it), then the timed steps 0 .. steps-1.
  const int eager_steps = std::max(warmup - 1, 3);
  for (int i = 0; i < eager_steps; ++i) eager_step(i);
  opt.zero_grad();
  Tensor x_static = data[static_cast<size_t>(eager_steps) % data.size()].clone();
  std::vector<std::pair<Tensor, Tensor>> grads;
  CudaGraph::begin_capture(dev);
  CudaGraph graph;
  try {
    loss = mse_loss(m.net->forward(x_static), x_static);
    loss.backward();
    for (auto& [pname, p] : m.net->named_parameters()) grads.emplace_back(p, p.grad());
    opt.step();
    opt.zero_grad();
    graph = CudaGraph::end_capture(dev);
  } catch (...) {
    CudaGraph::abort_capture(dev);
    throw;
  }
  graph.replay();  // the captured step itself
  auto replay_step = [&](int i) {
    {
      NoGradGuard ng;
      x_static.copy_(data[static_cast<size_t>(i) % data.size()]);
    }
    for (auto& [p, g] : grads) p.set_grad(g);
    {
      CudaGraph::UpdateScope update(graph);
      opt.step();
      opt.zero_grad();
    }
    graph.replay();
  };
  loss.item();  // waits for the device
  const Clock::time_point t0 = Clock::now();
  for (int i = 0; i < steps; ++i) replay_step(i);
  const double final_loss = loss.item();
  const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
  return {static_cast<double>(steps) * static_cast<double>(m.batch) / dt, 1e3 * dt / steps, final_loss};
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

int usage() {
  std::fprintf(stderr, "usage: ember-bench-cuda [--steps N] [--warmup N] [--models lit,mlp,conv] [--tf32] [--no-torch]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 300, warmup = 30;
  std::string models = "lit,mlp,conv";
  bool tf32 = false, torch = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--steps") steps = std::atoi(value().c_str());
    else if (a == "--warmup") warmup = std::atoi(value().c_str());
    else if (a == "--models") models = value();
    else if (a == "--tf32") tf32 = true;
    else if (a == "--no-torch") torch = false;
    else return usage();
  }
  if (steps <= 0 || warmup < 0 || models.empty()) return usage();
  if (!cuda_is_available()) {
    std::fprintf(stderr, "ember-bench-cuda: no CUDA device visible\n");
    return 1;
  }
  if (tf32) setenv("EMBER_ALLOW_TF32", "1", 1);  // read once, at the first cuBLAS/cuDNN call
  std::printf("ember-bench-cuda: %d timed steps after %d warm-up steps, %s\n", steps, warmup, tf32 ? "TF32 allowed" : "FP32");
  try {
    for (const std::string& name : split(models)) {
      const Result r = run(name, steps, warmup);
      std::printf("RESULT ember %s %.1f %.3f\n", name.c_str(), r.samples_per_s, r.ms_per_step);
      std::printf("  (ember %s final loss %.6f)\n", name.c_str(), r.final_loss);
      std::fflush(stdout);
      const Result rg = run_graphs(name, steps, warmup);
      std::printf("RESULT ember-graphs %s %.1f %.3f\n", name.c_str(), rg.samples_per_s, rg.ms_per_step);
      std::printf("  (ember-graphs %s final loss %.6f)\n", name.c_str(), rg.final_loss);
      std::fflush(stdout);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "ember-bench-cuda: %s\n", e.what());
    return 1;
  }
  if (torch) {
    // The first python3 that imports torch: the one on PATH, then Debian's.
    std::string python;
    for (const char* candidate : {"python3", "/usr/bin/python3"}) {
      if (std::system((std::string(candidate) + " -c 'import torch' >/dev/null 2>&1").c_str()) == 0) {
        python = candidate;
        break;
      }
    }
    if (python.empty()) {
      std::printf("SKIP torch: no python3 here imports torch\n");
      return 0;
    }
    // EMBER_BENCH_TORCH_SCRIPT in the environment overrides the source-tree path compiled in (for
    // a binary run from another checkout).
    const char* script = std::getenv("EMBER_BENCH_TORCH_SCRIPT");
    const std::string cmd = python + " '" + (script ? script : EMBER_BENCH_TORCH_SCRIPT) + "' --steps " + std::to_string(steps) +
                            " --warmup " + std::to_string(warmup) + " --models " + models + (tf32 ? " --tf32" : "");
    std::fflush(stdout);
    if (std::system(cmd.c_str()) != 0) std::printf("SKIP torch: %s failed\n", cmd.c_str());
  }
  return 0;
}
