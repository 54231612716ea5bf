// ember-bench-runtime: CPU GEMM throughput of our blocked AVX-512 / AVX2 kernels and of Eigen
// (square sizes, 1 and 2 threads), and the time of one training step of an MLP autoencoder built from
// ember ops. Prints tables of medians; numbers vary with the machine and its load.
//   usage: ember-bench-runtime [--gemm-only | --shapes-only | --mlp-only | --amp-only] [--backend blocked-avx512|blocked-avx2|eigen]
//                              [--reps N]
#include <algorithm>
#include <array>
#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemm_backend.h"
#include "kernels/cpu/gemm_lowp.h"
#include "ember/runtime/half.h"
#include "ember/runtime/autocast.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/parallel.h"
#include "ember/runtime/rng.h"
#include "ember/runtime/tensor.h"

namespace {

using Clock = std::chrono::steady_clock;
using ember::kernels::GemmBackend;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// CPU seconds used by the whole process (all threads). On a loaded machine wall time includes
// waiting for a core; work per CPU second still shows how fast the kernel itself is.
double process_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

struct Timing {
  double wall, cpu;  // seconds per call (medians)
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Wall and CPU seconds per call of fn: each sample repeats fn until it has run >= 20 ms; median
// of `reps` samples.
template <typename Fn>
Timing time_per_call(int reps, Fn&& fn) {
  fn();  // warm caches, packing buffers and the thread pool
  std::vector<double> wall, cpu;
  for (int r = 0; r < reps; ++r) {
    int calls = 0;
    const Clock::time_point t0 = Clock::now();
    const double c0 = process_cpu_seconds();
    double dt = 0;
    do {
      fn();
      ++calls;
      dt = seconds_since(t0);
    } while (dt < 0.02);
    wall.push_back(dt / calls);
    cpu.push_back((process_cpu_seconds() - c0) / calls);
  }
  return {median(wall), median(cpu)};
}

std::string g_only_backend;  // --backend NAME: time just this one

// Every backend this CPU can run (or the one named with --backend).
std::vector<GemmBackend> backends() {
  std::vector<GemmBackend> b;
  for (GemmBackend g : {GemmBackend::Avx512, GemmBackend::Avx2, GemmBackend::Eigen})
    if (ember::kernels::gemm_backend_available(g) &&
        (g_only_backend.empty() || g_only_backend == ember::kernels::gemm_backend_name(g)))
      b.push_back(g);
  return b;
}

template <typename T>
void bench_gemm(const char* name, int reps) {
  const std::vector<int64_t> sizes = {256, 512, 1024};
  const std::vector<GemmBackend> bs = backends();
  // t[size][backend][threads - 1]; the thread count is the outer loop, so the pool is resized
  // only once per table.
  std::vector<std::vector<std::array<Timing, 2>>> t(sizes.size(), std::vector<std::array<Timing, 2>>(bs.size()));
  for (int threads : {1, 2}) {
    ember::set_num_threads(threads);
    for (size_t si = 0; si < sizes.size(); ++si) {
      const int64_t n = sizes[si];
      std::vector<T> A(n * n), B(n * n), C(n * n);
      ember::Generator gen(42);
      for (auto& x : A) x = static_cast<T>(gen.next_double() - 0.5);
      for (auto& x : B) x = static_cast<T>(gen.next_double() - 0.5);
      for (size_t bi = 0; bi < bs.size(); ++bi) {
        ember::kernels::set_gemm_backend(bs[bi]);
        t[si][bi][threads - 1] = time_per_call(reps, [&] {
          ember::kernels::gemm_cpu(false, false, n, n, n, T(1), A.data(), n, B.data(), n, T(0), C.data(), n);
        });
      }
    }
  }
  ember::kernels::set_gemm_backend(GemmBackend::Auto);
  std::printf("\n%s C = A @ B (row-major, square), GFLOP per wall second and per CPU second, median of %d\n",
              name, reps);
  std::printf("%-6s %-14s %12s %12s %12s %12s\n", "n", "backend", "1 thr wall", "1 thr cpu", "2 thr wall",
              "2 thr cpu");
  for (size_t si = 0; si < sizes.size(); ++si) {
    const double flop = 2.0 * sizes[si] * sizes[si] * sizes[si] * 1e-9;
    for (size_t bi = 0; bi < bs.size(); ++bi) {
      const auto& r = t[si][bi];
      std::printf("%-6lld %-14s %12.1f %12.1f %12.1f %12.1f\n", static_cast<long long>(sizes[si]),
                  ember::kernels::gemm_backend_name(bs[bi]), flop / r[0].wall, flop / r[0].cpu, flop / r[1].wall,
                  flop / r[1].cpu);
    }
  }
}

// The float32 GEMMs a Linear layer runs, at the examples' and the layer benchmark's sizes, next to
// a 1024^3 sgemm timed in the same rounds (its rate is the roof the others are read against):
// forward y = x W^T (+ bias) with W as stored (B transposed) or as the no-grad path's transposed
// copy (B plain), input gradient dx = dy W, weight gradient dW = dy^T x.
void bench_gemm_shapes(int reps) {
  struct Shape {
    const char* layer;
    int64_t batch, in, out;
  };
  const std::vector<Shape> shapes = {{"mlp 784->512", 256, 784, 512},   {"mlp 512->128", 256, 512, 128},
                                     {"mlp 128->512", 256, 128, 512},   {"mlp 512->784", 256, 512, 784},
                                     {"lit 784->64", 256, 784, 64},     {"lit 64->784", 256, 64, 784},
                                     {"linear 1024", 256, 1024, 1024}, {"linear 2048", 256, 2048, 2048}};
  struct Pass {
    const char* name;
    bool ta, tb;
  };
  const Pass passes[] = {{"fwd W^T", false, true}, {"fwd Wt copy", false, false}, {"dx", false, false},
                         {"dW", true, false}};
  // M, N, K of pass p: forward (batch x out x in), dx (batch x in x out), dW (out x in x batch).
  auto dims = [](const Shape& s, int p) -> std::array<int64_t, 3> {
    if (p == 2) return {s.batch, s.in, s.out};
    if (p == 3) return {s.out, s.in, s.batch};
    return {s.batch, s.out, s.in};
  };
  std::printf("\nsgemm at Linear layers' shapes (M x N x K), GFLOP per wall second, median of %d, and the share of "
              "the 1024^3 sgemm of the same thread count\n",
              reps);
  std::printf("%-14s %-12s %-18s %10s %8s %10s %8s\n", "layer", "pass", "M x N x K", "1 thr", "% roof", "2 thr",
              "% roof");
  double roof[2] = {0, 0};
  std::vector<std::array<double, 2>> rate(shapes.size() * 4);
  for (int threads : {1, 2}) {
    ember::set_num_threads(threads);
    const int64_t n = 1024;
    std::vector<float> A(n * n, 0.25f), B(n * n, 0.5f), C(n * n);
    roof[threads - 1] = 2e-9 * n * n * n / time_per_call(reps, [&] {
      ember::kernels::gemm_cpu(false, false, n, n, n, 1.0f, A.data(), n, B.data(), n, 0.0f, C.data(), n);
    }).wall;
    for (size_t si = 0; si < shapes.size(); ++si) {
      const Shape& s = shapes[si];
      std::vector<float> x(s.batch * s.in), w(s.out * s.in), wt(s.in * s.out), dy(s.batch * s.out),
          y(s.batch * s.out), dx(s.batch * s.in), dw(s.out * s.in);
      ember::Generator gen(42);
      for (auto* v : {&x, &w, &wt, &dy})
        for (auto& e : *v) e = static_cast<float>(gen.next_double() - 0.5);
      for (int p = 0; p < 4; ++p) {
        const auto [M, N, K] = dims(s, p);
        const float* a = p >= 2 ? dy.data() : x.data();
        const int64_t lda = p == 3 ? s.out : K;
        const float* b = p == 1 ? wt.data() : p == 3 ? x.data() : w.data();
        const int64_t ldb = p == 0 ? s.in : N;
        float* c = p == 2 ? dx.data() : p == 3 ? dw.data() : y.data();
        rate[si * 4 + p][threads - 1] = 2e-9 * M * N * K / time_per_call(reps, [&] {
          ember::kernels::gemm_cpu(passes[p].ta, passes[p].tb, M, N, K, 1.0f, a, lda, b, ldb, 0.0f, c, N);
        }).wall;
      }
    }
  }
  std::printf("%-14s %-12s %-18s %10.1f %8s %10.1f %8s\n", "square 1024", "", "1024 x 1024 x 1024", roof[0], "100%",
              roof[1], "100%");
  for (size_t si = 0; si < shapes.size(); ++si) {
    const Shape& s = shapes[si];
    for (int p = 0; p < 4; ++p) {
      const auto [M, N, K] = dims(s, p);
      char mnk[40];
      std::snprintf(mnk, sizeof mnk, "%lld x %lld x %lld", static_cast<long long>(M), static_cast<long long>(N),
                    static_cast<long long>(K));
      const auto& r = rate[si * 4 + p];
      std::printf("%-14s %-12s %-18s %10.1f %7.0f%% %10.1f %7.0f%%\n", s.layer, passes[p].name, mnk, r[0],
                  100 * r[0] / roof[0], r[1], 100 * r[1] / roof[1]);
    }
  }
}

// bfloat16 inputs, float32 accumulation and output (kernels/cpu/gemm_lowp.h), next to the
// float32 GEMM of the default backend on the same sizes: the mixed-precision matmul's two paths
// (vdpbf16ps where the CPU has AVX512-BF16, else widening to float32).
void bench_gemm_bf16(int reps) {
  const std::vector<int64_t> sizes = {256, 512, 1024};
  std::printf("\nbf16 GEMM (f32 accumulation) vs sgemm, C = A @ B square, GFLOP per wall second, median of %d; "
              "AVX512-BF16 path: %s\n",
              reps, ember::kernels::gemm_bf16_native() ? "yes" : "no (widened to f32)");
  std::printf("%-6s %12s %12s %12s %12s %10s\n", "n", "sgemm 1 thr", "bf16 1 thr", "sgemm 2 thr", "bf16 2 thr",
              "bf16/f32");
  std::vector<std::array<double, 4>> g(sizes.size());
  for (int threads : {1, 2}) {
    ember::set_num_threads(threads);
    for (size_t si = 0; si < sizes.size(); ++si) {
      const int64_t n = sizes[si];
      std::vector<float> A(n * n), B(n * n), C(n * n);
      std::vector<uint16_t> Ah(n * n), Bh(n * n);
      ember::Generator gen(42);
      for (size_t i = 0; i < A.size(); ++i) {
        A[i] = static_cast<float>(gen.next_double() - 0.5);
        B[i] = static_cast<float>(gen.next_double() - 0.5);
        Ah[i] = ember::kernels::bf16_from_float(A[i]);
        Bh[i] = ember::kernels::bf16_from_float(B[i]);
      }
      const double flop = 2.0 * n * n * n * 1e-9;
      g[si][2 * (threads - 1)] = flop / time_per_call(reps, [&] {
        ember::kernels::gemm_cpu(false, false, n, n, n, 1.0f, A.data(), n, B.data(), n, 0.0f, C.data(), n);
      }).wall;
      g[si][2 * (threads - 1) + 1] = flop / time_per_call(reps, [&] {
        ember::kernels::gemm_bf16_cpu(false, false, n, n, n, Ah.data(), n, Bh.data(), n, C.data(), n);
      }).wall;
    }
  }
  for (size_t si = 0; si < sizes.size(); ++si)
    std::printf("%-6lld %12.1f %12.1f %12.1f %12.1f %9.2fx\n", static_cast<long long>(sizes[si]), g[si][0], g[si][1],
                g[si][2], g[si][3], g[si][3] / g[si][2]);
}

// 784-512-128-32-128-512-784 autoencoder: ReLU between layers, sigmoid output, MSE against the
// input, backward, then plain SGD (p -= lr * grad) with in-place ops under NoGradGuard. The
// printed loss is that of the last timed step (every row runs the same steps from the same start).
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

  // amp: the forward pass and the loss under ember::AutocastGuard(amp) (bf16- or 16-mixed); the
  // parameters, gradients and update stay f32.
  double step(const ember::Tensor& x, double lr, std::optional<ember::DType> amp = std::nullopt) {
    ember::Tensor loss;
    {
      std::optional<ember::AutocastGuard> autocast;
      if (amp) autocast.emplace(*amp);
      ember::Tensor h = x;
      for (size_t i = 0; i < weights.size(); ++i) {
        h = ember::linear(h, weights[i], biases[i]);
        h = i + 1 < weights.size() ? ember::relu(h) : ember::sigmoid(h);
      }
      loss = ember::mse_loss(h, x);
    }
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
  std::printf("%-14s %8s %10s %12s %14s %12s\n", "gemm backend", "threads", "wall ms", "CPU ms", "GEMM GFLOP/s",
              "loss");
  ember::Generator gen(3);
  ember::Tensor x = ember::rand({batch, widths.front()}, {}, &gen);
  const std::vector<GemmBackend> bs = backends();
  struct Row {
    double wall_ms, cpu_ms, loss;
  };
  std::vector<std::array<Row, 2>> rows(bs.size());
  double gemm_gflop = 0;
  for (int threads : {1, 2}) {
    ember::set_num_threads(threads);
    for (size_t bi = 0; bi < bs.size(); ++bi) {
      ember::kernels::set_gemm_backend(bs[bi]);
      Mlp mlp(widths);  // same initial weights for every row
      double loss = mlp.step(x, 0.1);  // warm-up
      std::vector<double> wall, cpu;
      for (int r = 0; r < reps; ++r) {
        const Clock::time_point t0 = Clock::now();
        const double c0 = process_cpu_seconds();
        loss = mlp.step(x, 0.1);
        wall.push_back(seconds_since(t0));
        cpu.push_back(process_cpu_seconds() - c0);
      }
      rows[bi][threads - 1] = {median(wall) * 1e3, median(cpu) * 1e3, loss};
      gemm_gflop = mlp.gemm_flops(batch) * 1e-9;
    }
  }
  for (size_t bi = 0; bi < bs.size(); ++bi)
    for (int t = 0; t < 2; ++t)
      std::printf("%-14s %8d %10.2f %12.2f %14.1f %12.6f\n", ember::kernels::gemm_backend_name(bs[bi]), t + 1,
                  rows[bi][t].wall_ms, rows[bi][t].cpu_ms, gemm_gflop / (rows[bi][t].wall_ms * 1e-3), rows[bi][t].loss);
  ember::kernels::set_gemm_backend(GemmBackend::Auto);
}

// The same MLP step in f32 and under autocast (bf16-mixed, 16-mixed), the auto GEMM backend.
void bench_mlp_amp(int reps) {
  const std::vector<int64_t> widths = {784, 512, 128, 32, 128, 512, 784};
  const int64_t batch = 256;
  std::printf("\nMLP 784-512-128-32-128-512-784, batch %lld: one SGD step in f32 and mixed precision "
              "(AVX512-BF16: %s), median of %d\n",
              static_cast<long long>(batch), ember::kernels::gemm_bf16_native() ? "yes" : "no", reps);
  std::printf("%-12s %8s %10s %12s %10s %12s\n", "precision", "threads", "wall ms", "CPU ms", "f32/this", "loss");
  ember::Generator gen(3);
  ember::Tensor x = ember::rand({batch, widths.front()}, {}, &gen);
  struct Mode {
    const char* name;
    std::optional<ember::DType> amp;
  };
  const Mode modes[] = {{"32-true", std::nullopt}, {"bf16-mixed", ember::DType::bf16}, {"16-mixed", ember::DType::f16}};
  for (int threads : {1, 2}) {
    ember::set_num_threads(threads);
    double f32_ms = 0;
    for (const Mode& m : modes) {
      Mlp mlp(widths);
      double loss = mlp.step(x, 0.1, m.amp);  // warm-up
      std::vector<double> wall, cpu;
      for (int r = 0; r < reps; ++r) {
        const Clock::time_point t0 = Clock::now();
        const double c0 = process_cpu_seconds();
        loss = mlp.step(x, 0.1, m.amp);
        wall.push_back(seconds_since(t0));
        cpu.push_back(process_cpu_seconds() - c0);
      }
      const double ms = median(wall) * 1e3;
      if (!m.amp) f32_ms = ms;
      std::printf("%-12s %8d %10.2f %12.2f %10.2f %12.6f\n", m.name, threads, ms, median(cpu) * 1e3, f32_ms / ms, loss);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool gemm = true, mlp = true, amp = true, shapes = false;
  int reps = 7;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--gemm-only")) {
      mlp = amp = false;
    } else if (!std::strcmp(argv[i], "--shapes-only")) {
      gemm = mlp = amp = false;
      shapes = true;
    } else if (!std::strcmp(argv[i], "--mlp-only")) {
      gemm = amp = false;
    } else if (!std::strcmp(argv[i], "--amp-only")) {
      gemm = mlp = false;
    } else if (!std::strcmp(argv[i], "--backend") && i + 1 < argc) {
      g_only_backend = argv[++i];
    } else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--gemm-only | --shapes-only | --mlp-only | --amp-only] [--backend NAME] [--reps N]\n", argv[0]);
      return 2;
    }
  }
  std::printf("ember-bench-runtime: default GEMM backend %s\n",
              ember::kernels::gemm_backend_name(ember::kernels::gemm_backend_in_use()));
  if (backends().empty()) {
    std::fprintf(stderr, "error: no backend named '%s' runs on this CPU\n", g_only_backend.c_str());
    return 2;
  }
  try {
    if (gemm) {
      bench_gemm<float>("sgemm", reps);
      bench_gemm<double>("dgemm", reps);
      bench_gemm_bf16(reps);
    }
    if (gemm || shapes) bench_gemm_shapes(reps);
    if (mlp) bench_mlp(std::max(reps, 10));
    if (amp) bench_mlp_amp(std::max(reps, 10));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
