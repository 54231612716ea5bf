// The bfloat16 GEMM (kernels/cpu/gemm_lowp.h): float32 accumulation of exact bf16 products, against
// a double-precision sum of the same products, for odd K, partial tiles, strided and transposed
// operands and a single row; the AVX512-BF16 path (where the CPU has it) and the widened float32 path (the ISA
// cap lowered) both, and agreeing with each other.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/gemm_lowp.h"
#include "kernels/cpu/isa.h"
#include "ember/runtime/half.h"

namespace ember {
namespace {

struct Case {
  int64_t M, N, K, lda_pad, ldb_pad;
  bool ta = false, tb = false;
};

struct Result {
  std::vector<float> c;
  std::vector<double> ref, bound;  // exact-product sum and sum of |products|
};

Result run(const Case& t, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  // Stored shapes: A is M x K (K x M when transposed), B is K x N (N x K when transposed).
  const int64_t lda = (t.ta ? t.M : t.K) + t.lda_pad, ldb = (t.tb ? t.K : t.N) + t.ldb_pad;
  std::vector<uint16_t> a(static_cast<size_t>((t.ta ? t.K : t.M) * lda)), b(static_cast<size_t>((t.tb ? t.N : t.K) * ldb));
  auto A = [&](int64_t i, int64_t k) { return kernels::bf16_to_float(t.ta ? a[k * lda + i] : a[i * lda + k]); };
  auto B = [&](int64_t k, int64_t j) { return kernels::bf16_to_float(t.tb ? b[j * ldb + k] : b[k * ldb + j]); };
  for (auto& v : a) v = kernels::bf16_from_float(nd(rng));
  for (auto& v : b) v = kernels::bf16_from_float(nd(rng));
  Result r;
  const int64_t ldc = t.N + 3;
  r.c.assign(static_cast<size_t>(t.M * ldc), -7.0f);
  kernels::gemm_bf16_cpu(t.ta, t.tb, t.M, t.N, t.K, a.data(), lda, b.data(), ldb, r.c.data(), ldc);
  for (int64_t i = 0; i < t.M; ++i)
    for (int64_t j = 0; j < t.N; ++j) {
      double s = 0, m = 0;
      for (int64_t k = 0; k < t.K; ++k) {
        double p = static_cast<double>(A(i, k)) * B(k, j);
        s += p;
        m += std::fabs(p);
      }
      r.ref.push_back(s);
      r.bound.push_back(m);
    }
  // Only C's M x N block is written: the padding keeps its value.
  for (int64_t i = 0; i < t.M; ++i)
    for (int64_t j = t.N; j < ldc; ++j) EXPECT_EQ(r.c[static_cast<size_t>(i * ldc + j)], -7.0f);
  std::vector<float> dense;
  for (int64_t i = 0; i < t.M; ++i)
    for (int64_t j = 0; j < t.N; ++j) dense.push_back(r.c[static_cast<size_t>(i * ldc + j)]);
  r.c = dense;
  return r;
}

void expect_close(const Result& r, const char* what) {
  for (size_t e = 0; e < r.c.size(); ++e) {
    // float32 accumulation: |error| <= K * 2^-24 * sum |products| (a loose form of the bound).
    double tol = 1e-6 * r.bound[e] + 1e-30;
    ASSERT_LE(std::fabs(r.c[e] - r.ref[e]), tol * 64) << what << " element " << e;
  }
}

const std::vector<Case> kCases = {{1, 1, 1, 0, 0},          {13, 45, 37, 3, 5},        {8, 32, 64, 0, 0},
                                  {1, 300, 129, 0, 0},      {65, 33, 2, 1, 0},         {128, 256, 512, 0, 0},
                                  {31, 7, 1001, 2, 2},      {13, 45, 37, 3, 5, false, true},
                                  {17, 40, 33, 0, 2, true, false}, {9, 70, 65, 1, 1, true, true},
                                  // 16 x 16 word blocks of the packing and their leftovers, each layout
                                  {37, 70, 101, 1, 3, false, false}, {37, 70, 101, 0, 1, false, true},
                                  {37, 70, 101, 2, 0, true, false},  {37, 70, 101, 1, 1, true, true},
                                  {64, 96, 128, 0, 0, false, true},  {16, 48, 66, 0, 0, true, true}};

TEST(GemmBf16, NativePathMatchesExactProductSums) {
  if (!kernels::gemm_bf16_native()) GTEST_SKIP() << "this CPU has no AVX512-BF16";
  for (size_t i = 0; i < kCases.size(); ++i) expect_close(run(kCases[i], static_cast<uint32_t>(i + 1)), "native");
}

TEST(GemmBf16, WidenedPathMatchesExactProductSumsAndTheNativePath) {
  for (size_t i = 0; i < kCases.size(); ++i) {
    const bool native = kernels::gemm_bf16_native();
    Result n = run(kCases[i], static_cast<uint32_t>(i + 1));
    kernels::set_cpu_isa_cap(kernels::CpuIsa::Avx2);
    EXPECT_FALSE(kernels::gemm_bf16_native());
    Result w = run(kCases[i], static_cast<uint32_t>(i + 1));
    kernels::set_cpu_isa_cap(kernels::CpuIsa::Avx512);
    expect_close(w, "widened");
    if (native) {
      // Same products, other addition order: within the accumulation bound of each other.
      for (size_t e = 0; e < w.c.size(); ++e) ASSERT_LE(std::fabs(w.c[e] - n.c[e]), 2e-6 * 64 * w.bound[e] + 1e-30);
    }
  }
}

// gemm_half_cpu in bf16 rounds in the GEMM's epilogue: the same bits as rounding the float32
// result of gemm_bf16_cpu (plus the old C when accumulating), on either path, C's padding untouched.
TEST(GemmBf16, HalfOutputIsTheRoundedFloatResult) {
  for (size_t i = 0; i < kCases.size(); ++i) {
    const Case& t = kCases[i];
    std::mt19937 rng(static_cast<uint32_t>(i + 11));
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int64_t lda = (t.ta ? t.M : t.K) + t.lda_pad, ldb = (t.tb ? t.K : t.N) + t.ldb_pad, ldc = t.N + 2;
    std::vector<uint16_t> a(static_cast<size_t>((t.ta ? t.K : t.M) * lda)), b(static_cast<size_t>((t.tb ? t.N : t.K) * ldb));
    for (auto& v : a) v = kernels::bf16_from_float(nd(rng));
    for (auto& v : b) v = kernels::bf16_from_float(nd(rng));
    std::vector<uint16_t> c0(static_cast<size_t>(t.M * ldc));
    for (auto& v : c0) v = kernels::bf16_from_float(nd(rng));
    for (bool accumulate : {false, true}) {
      for (bool native : {true, false}) {
        if (native && !kernels::gemm_bf16_native()) continue;
        if (!native) kernels::set_cpu_isa_cap(kernels::CpuIsa::Avx2);
        std::vector<float> f(static_cast<size_t>(t.M * t.N));
        kernels::gemm_bf16_cpu(t.ta, t.tb, t.M, t.N, t.K, a.data(), lda, b.data(), ldb, f.data(), t.N);
        std::vector<uint16_t> c = c0;
        kernels::gemm_half_cpu(true, t.ta, t.tb, t.M, t.N, t.K, a.data(), lda, b.data(), ldb, accumulate ? 1.0f : 0.0f,
                               c.data(), ldc);
        kernels::set_cpu_isa_cap(kernels::CpuIsa::Avx512);
        for (int64_t r = 0; r < t.M; ++r)
          for (int64_t j = 0; j < ldc; ++j) {
            const size_t e = static_cast<size_t>(r * ldc + j);
            uint16_t want = c0[e];
            if (j < t.N) {
              float v = f[static_cast<size_t>(r * t.N + j)];
              if (accumulate) v += kernels::bf16_to_float(c0[e]);
              want = kernels::bf16_from_float(v);
            }
            ASSERT_EQ(c[e], want) << "case " << i << (native ? " native" : " widened") << " accumulate " << accumulate
                                  << " at (" << r << ", " << j << ")";
          }
      }
    }
  }
}

TEST(GemmBf16, EmptyKGivesZeros) {
  std::vector<float> c(6, 5.0f);
  kernels::gemm_bf16_cpu(false, false, 2, 3, 0, nullptr, 0, nullptr, 3, c.data(), 3);
  for (float v : c) EXPECT_EQ(v, 0.0f);
}

}  // namespace
}  // namespace ember
