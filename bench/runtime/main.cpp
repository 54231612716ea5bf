// ember-bench-runtime: CPU GEMM throughput of our blocked AVX2/FMA kernel and of Eigen (square
// sizes, 1 and 2 threads), and the time of one training step of an MLP autoencoder built from
// ember ops. Prints tables of medians; numbers vary with the machine and its load.
//   usage: ember-bench-runtime [--gemm-only | --mlp-only] [--reps N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemm_backend.h"
#include "runtime/autograd.h"
#include "runtime/ops.h"
#include "runtime/parallel.h"
#include "runtime/rng.h"
#include "runtime/tensor.h"

namespace {

using Clock = std::chrono::steady_clock;
using ember::kernels::GemmBackend;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Seconds per call of fn: each sample repeats fn until it has run >= 20 ms; median of `reps`.
template <typename Fn>
double time_per_call(int reps, Fn&& fn) {
  fn();  // warm caches, packing buffers and the thread pool
  std::vector<double> samples;
  for (int r = 0; r < reps; ++r) {
    int calls = 0;
    Clock::time_point t0 = Clock::now();
    double dt = 0;
    do {
      fn();
      ++calls;
      dt = seconds_since(t0);
    } while (dt < 0.02);
    samples.push_back(dt / calls);
  }
  return median(samples);
}

std::vector<GemmBackend> backends() {
  std::vector<GemmBackend> b;
  if (ember::kernels::gemm_blocked_available()) b.push_back(GemmBackend::Blocked);
  b.push_back(GemmBackend::Eigen);
  return b;
}

template <typename T>
void bench_gemm(const char* name, int reps) {
  std::printf("\n%s C = A @ B (row-major, square), GFLOP/s, median of %d\n", name, reps);
  std::printf("%-6s %-14s %10s %10s\n", "n", "backend", "1 thread", "2 threads");
  for (int64_t n : {256, 512, 1024}) {
    std::vector<T> A(n * n), B(n * n), C(n * n);
    ember::Generator gen(42);
    for (auto& x : A) x = static_cast<T>(gen.next_double() - 0.5);
    for (auto& x : B) x = static_cast<T>(gen.next_double() - 0.5);
    for (GemmBackend backend : backends()) {
      ember::kernels::set_gemm_backend(backend);
      double gflops[2];
      for (int threads : {1, 2}) {
        ember::set_num_threads(threads);
        double s = time_per_call(reps, [&] {
          ember::kernels::gemm_cpu(false, false, n, n, n, T(1), A.data(), n, B.data(), n, T(0), C.data(), n);
        });
        gflops[threads - 1] = 2.0 * n * n * n / s * 1e-9;
      }
      std::printf("%-6lld %-14s %10.1f %10.1f\n", static_cast<long long>(n),
                  ember::kernels::gemm_backend_name(backend), gflops[0], gflops[1]);
    }
  }
  ember::kernels::set_gemm_backend(GemmBackend::Auto);
}

// 784-512-128-32-128-512-784 autoencoder: ReLU between layers, sigmoid output, MSE against the
// input, backward, then plain SGD (p -= lr * grad) with in-place ops under NoGradGuard.
struct Mlp {
  std::vector<ember::Tensor> weights, biases;

  explicit Mlp(const std::vector<int64_t>& widths) {
    ember::Generator gen(7);
    for (size_t i = 0; i + 1 < widths.size(); ++i) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(widths[i]));
      ember::Tensor w = ember::rand({widths[i + 1], widths[i]}, {}, &gen);
      ember::Tensor b = ember::rand({widths[i + 1]}, {}, &gen);
      w.mul_(2 * bound).add_(-bound);
      b.mul_(2 * bound).add_(-bound);
      weights.push_back(w.requires_grad_());
      biases.push_back(b.requires_grad_());
    }
  }

  double step(const ember::Tensor& x, double lr) {
    ember::Tensor h = x;
    for (size_t i = 0; i < weights.size(); ++i) {
      h = ember::linear(h, weights[i], biases[i]);
      h = i + 1 < weights.size() ? ember::relu(h) : ember::sigmoid(h);
    }
    ember::Tensor loss = ember::mse_loss(h, x);
    loss.backward();
    ember::NoGradGuard no_grad;
    for (auto* group : {&weights, &biases})
      for (ember::Tensor& p : *group) {
        p.add_(p.grad(), -lr);
        p.grad().zero_();
      }
    return loss.item();
  }

  // Multiply-adds of the GEMMs in one step: forward, input gradients (not for layer 0), weight gradients.
  double gemm_flops(int64_t batch) const {
    double f = 0;
    for (size_t i = 0; i < weights.size(); ++i) {
      const double mk = static_cast<double>(batch * weights[i].size(0) * weights[i].size(1));
      f += 2 * mk * (i == 0 ? 2 : 3);
    }
    return f;
  }
};

void bench_mlp(int reps) {
  const std::vector<int64_t> widths = {784, 512, 128, 32, 128, 512, 784};
  const int64_t batch = 256;
  std::printf("\nMLP 784-512-128-32-128-512-784, batch %lld, f32: one SGD step (forward, backward, update)\n",
              static_cast<long long>(batch));
  std::printf("%-14s %8s %10s %14s %12s\n", "gemm backend", "threads", "ms/step", "GEMM GFLOP/s", "final loss");
  ember::Generator gen(3);
  ember::Tensor x = ember::rand({batch, widths.front()}, {}, &gen);
  for (GemmBackend backend : backends()) {
    ember::kernels::set_gemm_backend(backend);
    for (int threads : {1, 2}) {
      ember::set_num_threads(threads);
      Mlp mlp(widths);  // same initial weights for every row
      double loss = 0;
      std::vector<double> samples;
      loss = mlp.step(x, 0.1);  // warm-up
      for (int r = 0; r < reps; ++r) {
        Clock::time_point t0 = Clock::now();
        loss = mlp.step(x, 0.1);
        samples.push_back(seconds_since(t0));
      }
      const double s = median(samples);
      std::printf("%-14s %8d %10.2f %14.1f %12.6f\n", ember::kernels::gemm_backend_name(backend), threads, s * 1e3,
                  mlp.gemm_flops(batch) / s * 1e-9, loss);
    }
  }
  ember::kernels::set_gemm_backend(GemmBackend::Auto);
}

}  // namespace

int main(int argc, char** argv) {
  bool gemm = true, mlp = true;
  int reps = 7;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--gemm-only")) {
      mlp = false;
    } else if (!std::strcmp(argv[i], "--mlp-only")) {
      gemm = false;
    } else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--gemm-only | --mlp-only] [--reps N]\n", argv[0]);
      return 2;
    }
  }
  std::printf("ember-bench-runtime: blocked AVX2/FMA kernel %s; default backend f32 %s, f64 %s\n",
              ember::kernels::gemm_blocked_available() ? "available" : "not available (no AVX2+FMA)",
              ember::kernels::gemm_backend_name(ember::kernels::gemm_backend_in_use(false)),
              ember::kernels::gemm_backend_name(ember::kernels::gemm_backend_in_use(true)));
  try {
    if (gemm) {
      bench_gemm<float>("sgemm", reps);
      bench_gemm<double>("dgemm", reps);
    }
    if (mlp) bench_mlp(std::max(reps, 10));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
