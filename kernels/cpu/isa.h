// Run-time choice of the widest x86 vector ISA for simple loops. The library is built for the
// baseline x86-64 (SSE2) unless EMBER_NATIVE; run_best_isa instantiates a hot loop, written once
// as an always_inline lambda, inside lambdas carrying these target attributes, and the compiler
// vectorises each for its ISA. The library compiles with -ffp-contract=off, so the
// wider variants perform exactly the same rounded operations (IEEE +, -, *, /, sqrt are exact
// per element in every ISA) and give bit-identical results. Private to the library.
#pragma once

namespace ember::kernels {

enum class CpuIsa { Baseline, Avx2, Avx512 };

#if defined(__x86_64__) && defined(__GNUC__)
#define EMBER_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define EMBER_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")))
inline CpuIsa cpu_isa() {
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
#define EMBER_HAVE_ISA_VARIANTS 1
#else
inline CpuIsa cpu_isa() { return CpuIsa::Baseline; }
#define EMBER_HAVE_ISA_VARIANTS 0
#endif

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
