// What the Ember and LibTorch training-throughput programs share: their command line, the sgemm
// timing loop, a malloc counter (the program defines the malloc family, forwarding to glibc) with
// the steady-state window it is read over, peak RSS, the size of the executable plus every shared
// library it maps, which BLAS library is mapped, and the RESULT line.
#pragma once
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void __libc_free(void*);
}

namespace bench {


// The command line: --model lit|mlp|conv --threads N [--data DIR] [--gemm N] [--trivial].
struct Args {
  std::string model = "lit", dir;
  int threads = 1;
  int64_t gemm_n = 0;  // > 0: time an (n, n) x (n, n) matmul instead of training
  bool trivial = false;
  std::string precision = "32-true";  // or "bf16-mixed": forward and loss under autocast (bf16)
};

// Parses argv into `a`; returns false (having said why on stderr, prefixed with `prog`) on a bad
// command line.
inline bool parse_args(int argc, char** argv, const char* prog, Args& a) {
  for (int i = 1; i < argc; ++i) {
    const std::string opt = argv[i];
    if (opt == "--trivial") {
      a.trivial = true;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s: %s needs a value\n", prog, opt.c_str());
      return false;
    }
    if (opt == "--model") a.model = argv[++i];
    else if (opt == "--threads") a.threads = std::atoi(argv[++i]);
    else if (opt == "--data") a.dir = argv[++i];
    else if (opt == "--gemm") a.gemm_n = std::atoll(argv[++i]);
    else if (opt == "--precision") a.precision = argv[++i];
    else {
      std::fprintf(stderr, "%s: unknown option %s\n", prog, opt.c_str());
      return false;
    }
  }
  return true;
}

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// GFLOP/s of an (n, n) x (n, n) product run by product(): best of 5 rounds of enough products to
// take about 0.2 s each.
template <typename Product>
double best_gflops(int64_t n, Product product) {
  const double flop = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  product();
  int reps = 1;
  for (auto t0 = Clock::now(); seconds_since(t0) < 0.05; ++reps) product();
  reps = std::max(1, reps * 4);
  double best = 0;
  for (int round = 0; round < 5; ++round) {
    auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) product();
    best = std::max(best, flop * reps / seconds_since(t0) / 1e9);
  }
  return best;
}

// Heap allocations since start (every malloc/calloc/realloc/memalign of the process, which
// includes operator new and every library's allocations).
inline std::atomic<uint64_t> g_allocs{0};

// Heap allocations per steady-state training step: counted over the full-size steps from step 10
// on (the epoch's last, partial batch has new shapes). Call before_step/after_step around each.
class AllocWindow {
 public:
  explicit AllocWindow(int64_t batch_size) : batch_size_(batch_size) {}
  void before_step() {
    if (steps_ == kWarm) first_ = g_allocs.load();
  }
  void after_step(int64_t batch) {
    if (batch == batch_size_ && steps_ >= kWarm) {
      ++full_steps_;
      last_ = g_allocs.load();
    }
    ++steps_;
  }
  double per_step() const {
    return static_cast<double>(last_ - first_) / static_cast<double>(std::max<int64_t>(full_steps_, 1));
  }

 private:
  static constexpr int64_t kWarm = 10;
  int64_t batch_size_, steps_ = 0, full_steps_ = 0;
  uint64_t first_ = 0, last_ = 0;
};

// Peak resident set size of this process, in KiB.
inline long peak_rss_kib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

// Current resident set size of this process, in KiB (from /proc/self/statm).
inline long rss_kib() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

struct Footprint {
  uint64_t exe_bytes = 0, libs_bytes = 0;
  int libs = 0;
  std::string blas;  // mapped libraries whose name contains "blas" (comma separated), "-" if none
};

// Sizes on disk of /proc/self/exe and of each distinct shared library in /proc/self/maps.
inline Footprint footprint() {
  Footprint f;
  struct stat st{};
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  std::string exe_path = n > 0 ? std::string(exe, static_cast<size_t>(n)) : "";
  if (!exe_path.empty() && stat(exe_path.c_str(), &st) == 0) f.exe_bytes = static_cast<uint64_t>(st.st_size);
  std::ifstream maps("/proc/self/maps");
  std::set<std::string> seen;
  std::string line;
  while (std::getline(maps, line)) {
    size_t slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    if (path == exe_path || path.find(".so") == std::string::npos || !seen.insert(path).second) continue;
    if (stat(path.c_str(), &st) == 0) f.libs_bytes += static_cast<uint64_t>(st.st_size);
    ++f.libs;
    if (path.find("blas") != std::string::npos) {
      if (!f.blas.empty()) f.blas.push_back(',');
      f.blas.append(path);
    }
  }
  if (f.blas.empty()) f.blas.push_back('-');
  return f;
}

struct Run {
  double train_sps, val_sps, loss, val_loss, allocs_per_step;
  long data_rss_kib;
};

// The RESULT line scripts/bench-train.sh reads.
inline void print_result(const char* fw, const Args& a, const Run& r) {
  const Footprint fp = footprint();
  std::printf(
      "RESULT fw=%s precision=%s model=%s threads=%d train_sps=%.1f val_sps=%.1f loss=%.6f val_loss=%.6f allocs_per_step=%.2f "
      "peak_rss_kib=%ld data_rss_kib=%ld exe_bytes=%llu libs_bytes=%llu libs=%d blas=%s\n",
      fw, a.precision.c_str(), a.model.c_str(), a.threads, r.train_sps, r.val_sps, r.loss, r.val_loss, r.allocs_per_step, peak_rss_kib(),
      r.data_rss_kib, static_cast<unsigned long long>(fp.exe_bytes), static_cast<unsigned long long>(fp.libs_bytes),
      fp.libs, fp.blas.c_str());
}

}  // namespace bench

// The malloc family, counted. Only one translation unit per program includes this with
// BENCH_DEFINE_MALLOC defined.
#ifdef BENCH_DEFINE_MALLOC
extern "C" {
void* malloc(size_t n) noexcept {
  bench::g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t s) noexcept {
  bench::g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(n, s);
}
void* realloc(void* p, size_t n) noexcept {
  bench::g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(p, n);
}
void free(void* p) noexcept { __libc_free(p); }
void* memalign(size_t a, size_t n) noexcept {
  bench::g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(a, n);
}
void* aligned_alloc(size_t a, size_t n) noexcept {
  bench::g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, size_t a, size_t n) noexcept {
  bench::g_allocs.fetch_add(1, std::memory_order_relaxed);
  void* p = __libc_memalign(a, n);
  if (!p && n) return 12;  // ENOMEM
  *out = p;
  return 0;
}
}
#endif
