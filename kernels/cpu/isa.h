// Run-time choice of the widest x86 vector ISA for simple loops. The library is built for the
// baseline x86-64 (SSE2) unless EMBER_NATIVE; run_best_isa instantiates a hot loop, written once
// as an always_inline lambda, inside lambdas carrying these target attributes, and the compiler
// vectorises each for its ISA. The library compiles with -ffp-contract=off, so the
// wider variants perform exactly the same rounded operations (IEEE +, -, *, /, sqrt are exact
// per element in every ISA) and give bit-identical results. Private to the library.
#pragma once
#include <algorithm>
#include <atomic>

namespace ember::kernels {

enum class CpuIsa { Baseline, Avx2, Avx512 };

// Caps the ISA that cpu_isa() reports (it never exceeds what the CPU has), so that tests can run
// every variant of a kernel on one machine; CpuIsa::Avx512 (the default) means no cap.
inline std::atomic<int>& cpu_isa_cap() {
  static std::atomic<int> cap{static_cast<int>(CpuIsa::Avx512)};
  return cap;
}
inline void set_cpu_isa_cap(CpuIsa cap) { cpu_isa_cap().store(static_cast<int>(cap), std::memory_order_relaxed); }

#if defined(__x86_64__) && defined(__GNUC__)
#define EMBER_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define EMBER_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")))
// The widest ISA this CPU has.
inline CpuIsa detected_cpu_isa() {
  static const CpuIsa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw")) {
      return CpuIsa::Avx512;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::Avx2;
    return CpuIsa::Baseline;
  }();
  return isa;
}
// Whether the CPU has AVX512-BF16 (vdpbf16ps, vcvtne2ps2bf16) with the AVX-512 subsets its
// kernels use; code for it is compiled with EMBER_TARGET_AVX512_BF16. Callers also check cpu_isa()
// (the cap) before taking such a path.
#define EMBER_TARGET_AVX512_BF16 __attribute__((target("avx512f,avx512bf16,avx512vl,avx512bw")))
inline bool cpu_has_avx512_bf16() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
  }();
  return has;
}
#define EMBER_HAVE_ISA_VARIANTS 1
#else
inline CpuIsa detected_cpu_isa() { return CpuIsa::Baseline; }
#define EMBER_HAVE_ISA_VARIANTS 0
#endif

// The ISA the kernels use: the detected one, lowered by set_cpu_isa_cap.
inline CpuIsa cpu_isa() {
  return static_cast<CpuIsa>(
      std::min(static_cast<int>(detected_cpu_isa()), cpu_isa_cap().load(std::memory_order_relaxed)));
}

// For the body passed to run_best_isa: `[&] EMBER_INLINE_LAMBDA { loop }`.
#define EMBER_INLINE_LAMBDA __attribute__((always_inline))

// Runs body() compiled for the widest ISA this CPU has; returns what it returns.
template <typename Body>
[[gnu::always_inline]] inline decltype(auto) run_best_isa(Body&& body) {
#if EMBER_HAVE_ISA_VARIANTS
  switch (cpu_isa()) {
    case CpuIsa::Avx512: return [&]() EMBER_TARGET_AVX512 { return body(); }();
    case CpuIsa::Avx2: return [&]() EMBER_TARGET_AVX2 { return body(); }();
    case CpuIsa::Baseline: break;
  }
#endif
  return body();
}

}  // namespace ember::kernels
