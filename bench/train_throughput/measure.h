// Process measurements shared by the Ember and LibTorch training-throughput programs: a malloc
// counter (the program defines the malloc family, forwarding to glibc), peak RSS, the size of the
// executable plus every shared library it maps, and which BLAS library is mapped.
#pragma once
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
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

// Heap allocations since start (every malloc/calloc/realloc/memalign of the process, which
// includes operator new and every library's allocations).
inline std::atomic<uint64_t> g_allocs{0};

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
