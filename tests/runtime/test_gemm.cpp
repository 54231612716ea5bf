// Tests for the CPU GEMM (kernels/cpu/gemm.h) and kernels::bmm_cpu: results against a naive
// float64 triple loop over many shapes, transposes, row strides and alpha/beta, for every backend
// the CPU runs (blocked AVX-512 / AVX2, Eigen), and bitwise equality between 1 and 2 threads and
// between the AVX2 and AVX-512 kernels.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemm_backend.h"
#include "kernels/kernels.h"
#include "ember/runtime/error.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/parallel.h"
#include "ember/runtime/tensor.h"

namespace ember::kernels {
namespace {

// Restores the default backend and thread count when a test ends.
class GemmSettingsGuard {
 public:
  GemmSettingsGuard() : threads_(get_num_threads()) {}
  ~GemmSettingsGuard() {
    set_gemm_backend(GemmBackend::Auto);
    set_num_threads(threads_);
  }

 private:
  int threads_;
};

// Every backend this CPU can run.
std::vector<GemmBackend> backends() {
  std::vector<GemmBackend> b;
  for (GemmBackend g : {GemmBackend::Avx512, GemmBackend::Avx2, GemmBackend::Eigen})
    if (gemm_backend_available(g)) b.push_back(g);
  return b;
}

// Deterministic values in [-1, 1).
struct Lcg {
  uint64_t s;
  double next() {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
  }
};

struct Problem {
  bool ta, tb;
  int64_t M, N, K;
  int64_t pad_a = 0, pad_b = 0, pad_c = 0;  // extra elements per stored row
  double alpha = 1, beta = 0;
  bool nan_c = false;  // C starts as NaN (only meaningful with beta == 0)
};

std::string describe(const Problem& p) {
  return str_cat("ta=", p.ta, " tb=", p.tb, " M=", p.M, " N=", p.N, " K=", p.K, " pads=", p.pad_a, "/", p.pad_b,
                 "/", p.pad_c, " alpha=", p.alpha, " beta=", p.beta, p.nan_c ? " C=NaN" : "");
}

constexpr double kCSentinel = 12345.0;  // in C's row padding; must survive

// Operands stored as gemm_cpu sees them. Padding of A and B holds NaN so that reading past a row
// poisons the result; padding of C holds kCSentinel.
template <typename T>
struct Operands {
  int64_t lda, ldb, ldc;
  std::vector<T> A, B, C0;

  explicit Operands(const Problem& p, uint64_t seed = 1) {
    const T nan = std::numeric_limits<T>::quiet_NaN();
    Lcg rng{seed};
    const int64_t a_rows = p.ta ? p.K : p.M, a_cols = p.ta ? p.M : p.K;
    const int64_t b_rows = p.tb ? p.N : p.K, b_cols = p.tb ? p.K : p.N;
    lda = a_cols + p.pad_a;
    ldb = b_cols + p.pad_b;
    ldc = p.N + p.pad_c;
    A.assign(static_cast<size_t>(std::max<int64_t>(a_rows * lda, 1)), nan);
    B.assign(static_cast<size_t>(std::max<int64_t>(b_rows * ldb, 1)), nan);
    C0.assign(static_cast<size_t>(std::max<int64_t>(p.M * ldc, 1)), static_cast<T>(kCSentinel));
    for (int64_t i = 0; i < a_rows; ++i)
      for (int64_t j = 0; j < a_cols; ++j) A[i * lda + j] = static_cast<T>(rng.next());
    for (int64_t i = 0; i < b_rows; ++i)
      for (int64_t j = 0; j < b_cols; ++j) B[i * ldb + j] = static_cast<T>(rng.next());
    for (int64_t i = 0; i < p.M; ++i)
      for (int64_t j = 0; j < p.N; ++j) C0[i * ldc + j] = p.nan_c ? nan : static_cast<T>(rng.next());
  }

  double a(const Problem& p, int64_t i, int64_t k) const { return p.ta ? A[k * lda + i] : A[i * lda + k]; }
  double b(const Problem& p, int64_t k, int64_t j) const { return p.tb ? B[j * ldb + k] : B[k * ldb + j]; }

  std::vector<T> run(const Problem& p) const {
    std::vector<T> C = C0;
    gemm_cpu(p.ta, p.tb, p.M, p.N, p.K, static_cast<T>(p.alpha), A.data(), lda, B.data(), ldb,
             static_cast<T>(p.beta), C.data(), ldc);
    return C;
  }
};

// Compares C against a float64 triple loop: |C - ref| <= 2 (K + 2) eps (|alpha| sum|a b| + |beta c|),
// the worst-case rounding bound. A dropped or doubled term is orders of magnitude larger.
template <typename T>
::testing::AssertionResult matches_reference(const Problem& p, const Operands<T>& ops, const std::vector<T>& C) {
  const double eps = std::numeric_limits<T>::epsilon();
  for (int64_t i = 0; i < p.M; ++i) {
    for (int64_t j = 0; j < p.N; ++j) {
      double dot = 0, mag = 0;
      for (int64_t k = 0; k < p.K; ++k) {
        const double t = ops.a(p, i, k) * ops.b(p, k, j);
        dot += t;
        mag += std::abs(t);
      }
      const double c0 = ops.C0[i * ops.ldc + j];
      const double ref = p.alpha * dot + (p.beta == 0 ? 0.0 : p.beta * c0);
      const double bound = std::abs(p.alpha) * mag + (p.beta == 0 ? 0.0 : std::abs(p.beta * c0));
      const double got = C[i * ops.ldc + j];
      if (!(std::abs(got - ref) <= 2.0 * (p.K + 2) * eps * bound + std::numeric_limits<double>::min()))
        return ::testing::AssertionFailure() << describe(p) << ": C(" << i << ", " << j << ") = " << got
                                             << ", expected " << ref;
    }
    for (int64_t j = p.N; j < ops.ldc; ++j)
      if (C[i * ops.ldc + j] != static_cast<T>(kCSentinel))
        return ::testing::AssertionFailure() << describe(p) << ": C's row padding (" << i << ", " << j
                                             << ") was overwritten";
  }
  return ::testing::AssertionSuccess();
}

// The shapes every backend/dtype/transpose combination runs: scalars, odd sizes, sizes one off
// the 6x16 / 6x8 tiles, and K crossing the 256-deep K block.
const std::vector<std::array<int64_t, 3>> kShapes = {
    {1, 1, 1},   {7, 13, 5},  {97, 131, 67}, {6, 16, 8},  {12, 32, 256}, {5, 15, 255},
    {7, 17, 257}, {1, 40, 33}, {40, 1, 33},   {3, 2, 600}, {19, 8, 1},    {145, 9, 20},
    // One or two rows over several column tiles per k step, plus a tail; K past one block.
    {1, 300, 40}, {2, 200, 300},
};

template <typename T>
void check_all_shapes() {
  const std::vector<std::array<double, 2>> alpha_beta = {{1, 0}, {0.5, 1}, {-1.25, 0.75}};
  GemmSettingsGuard guard;
  set_num_threads(1);
  for (GemmBackend backend : backends()) {
    set_gemm_backend(backend);
    SCOPED_TRACE(gemm_backend_name(backend));
    for (const auto& s : kShapes)
      for (int combo = 0; combo < 4; ++combo)
        for (int padded = 0; padded < 2; ++padded)
          for (const auto& ab : alpha_beta) {
            Problem p{(combo & 1) != 0, (combo & 2) != 0, s[0], s[1], s[2]};
            if (padded) {
              p.pad_a = 3;
              p.pad_b = 5;
              p.pad_c = 2;
            }
            p.alpha = ab[0];
            p.beta = ab[1];
            Operands<T> ops(p);
            ASSERT_TRUE(matches_reference(p, ops, ops.run(p)));
          }
  }
}

TEST(Gemm, MatchesNaiveLoopFloat) { check_all_shapes<float>(); }

TEST(Gemm, MatchesNaiveLoopDouble) { check_all_shapes<double>(); }

// Blocks larger than the cache blocks: M > MC, N > NC, K > KC in one call, with 2 threads.
TEST(Gemm, SpansEveryCacheBlock) {
  GemmSettingsGuard guard;
  set_num_threads(2);
  for (GemmBackend backend : backends()) {
    set_gemm_backend(backend);
    SCOPED_TRACE(gemm_backend_name(backend));
    Problem pf{false, true, 150, 4100, 260, 1, 2, 3, 0.75, 0.5};
    Operands<float> f(pf);
    EXPECT_TRUE(matches_reference(pf, f, f.run(pf)));
    Problem pd{true, false, 100, 2050, 300, 0, 0, 0, -1, 1};
    Operands<double> d(pd);
    EXPECT_TRUE(matches_reference(pd, d, d.run(pd)));
  }
}

// beta = 0 must overwrite C, even where C holds NaN (BLAS semantics; also what zero-init relies on).
TEST(Gemm, BetaZeroOverwritesNaN) {
  GemmSettingsGuard guard;
  for (GemmBackend backend : backends()) {
    set_gemm_backend(backend);
    SCOPED_TRACE(gemm_backend_name(backend));
    for (const auto& s : std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {7, 13, 5}, {64, 100, 300}}) {
      Problem p{false, false, s[0], s[1], s[2], 0, 0, 4, 2.0, 0.0, true};
      Operands<float> f(p);
      std::vector<float> C = f.run(p);
      for (int64_t i = 0; i < p.M; ++i)
        for (int64_t j = 0; j < p.N; ++j) ASSERT_FALSE(std::isnan(C[i * f.ldc + j])) << describe(p);
      EXPECT_TRUE(matches_reference(p, f, C));
      Operands<double> d(p);
      EXPECT_TRUE(matches_reference(p, d, d.run(p)));
    }
  }
}

// alpha = 0 or K = 0 gives beta * C exactly, without reading A or B (they hold NaN here).
TEST(Gemm, AlphaZeroAndEmptyK) {
  GemmSettingsGuard guard;
  for (GemmBackend backend : backends()) {
    set_gemm_backend(backend);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> A(12, nan), B(12, nan);
    std::vector<float> C = {1, -2, 3, 4, 5, -6};
    gemm_cpu(false, false, 2, 3, 4, 0.0f, A.data(), 4, B.data(), 3, 2.0f, C.data(), 3);
    EXPECT_EQ(C, (std::vector<float>{2, -4, 6, 8, 10, -12}));
    gemm_cpu(false, false, 2, 3, 0, 1.0f, A.data(), 1, B.data(), 3, 0.5f, C.data(), 3);
    EXPECT_EQ(C, (std::vector<float>{1, -2, 3, 4, 5, -6}));
    std::vector<float> Cn(6, nan);
    gemm_cpu(false, false, 2, 3, 0, 1.0f, A.data(), 1, B.data(), 3, 0.0f, Cn.data(), 3);
    EXPECT_EQ(Cn, std::vector<float>(6, 0.0f));
    gemm_cpu(false, false, 0, 3, 4, 1.0f, A.data(), 4, B.data(), 3, 0.0f, Cn.data(), 3);  // M = 0: no-op
    EXPECT_EQ(Cn, std::vector<float>(6, 0.0f));
  }
}

TEST(Gemm, NegativeSizeThrows) {
  float x = 0;
  try {
    gemm_cpu(false, false, -1, 1, 1, 1.0f, &x, 1, &x, 1, 0.0f, &x, 1);
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[gemm] sizes must be non-negative"), std::string::npos) << e.what();
  }
}

// The same numbers for 1 and 2 threads, bit for bit (bit-exact resume depends on it). The shapes
// are large enough to take the threaded path, splitting N, M, or both across the K-block boundary.
template <typename T>
void check_thread_invariance() {
  GemmSettingsGuard guard;
  const std::vector<Problem> problems = {
      {false, false, 64, 700, 100, 0, 0, 0, 1, 0},  {true, true, 700, 64, 100, 2, 1, 3, 0.5, 1},
      {false, true, 120, 150, 300, 0, 0, 0, 1, 1},   {true, false, 257, 333, 129, 1, 0, 0, -2, 0.25},
      {false, false, 13, 2000, 70, 0, 0, 0, 1, 0},
      // The few-row path splits its column tiles across threads too.
      {false, false, 1, 2000, 300, 0, 0, 0, 1, 0},   {false, false, 2, 1500, 100, 0, 0, 1, 1, 1},
  };
  for (GemmBackend backend : backends()) {
    set_gemm_backend(backend);
    SCOPED_TRACE(gemm_backend_name(backend));
    for (const Problem& p : problems) {
      Operands<T> ops(p, 7);
      set_num_threads(1);
      std::vector<T> one = ops.run(p);
      set_num_threads(2);
      std::vector<T> two = ops.run(p);
      ASSERT_EQ(std::memcmp(one.data(), two.data(), one.size() * sizeof(T)), 0) << describe(p);
      EXPECT_TRUE(matches_reference(p, ops, two));
    }
  }
}

TEST(Gemm, ThreadCountDoesNotChangeBitsFloat) { check_thread_invariance<float>(); }

TEST(Gemm, ThreadCountDoesNotChangeBitsDouble) { check_thread_invariance<double>(); }

// Both blocked kernels run the same per-element arithmetic (same K blocking, same FMA chain), so
// they must agree bit for bit, including partial tiles and K past one block.
TEST(Gemm, Avx2AndAvx512KernelsAgreeBitwise) {
  if (!gemm_backend_available(GemmBackend::Avx512)) GTEST_SKIP() << "CPU lacks AVX-512";
  GemmSettingsGuard guard;
  for (const Problem& p : std::vector<Problem>{{false, false, 37, 75, 300, 1, 2, 3, 1, 0},
                                               {true, true, 100, 19, 513, 0, 0, 0, -0.5, 1},
                                               {false, true, 13, 50, 7, 0, 0, 0, 2, 0.25},
                                               {false, false, 1, 300, 40, 0, 0, 0, 1, 0},
                                               {false, false, 2, 200, 300, 1, 0, 0, 1, 1}}) {
    Operands<float> f(p, 3);
    Operands<double> d(p, 3);
    set_gemm_backend(GemmBackend::Avx2);
    std::vector<float> f2 = f.run(p);
    std::vector<double> d2 = d.run(p);
    set_gemm_backend(GemmBackend::Avx512);
    std::vector<float> f512 = f.run(p);
    std::vector<double> d512 = d.run(p);
    EXPECT_EQ(std::memcmp(f2.data(), f512.data(), f2.size() * sizeof(float)), 0) << describe(p);
    EXPECT_EQ(std::memcmp(d2.data(), d512.data(), d2.size() * sizeof(double)), 0) << describe(p);
  }
}

TEST(Gemm, BackendSelection) {
  GemmSettingsGuard guard;
  const GemmBackend best = gemm_backend_available(GemmBackend::Avx512) ? GemmBackend::Avx512
                           : gemm_backend_available(GemmBackend::Avx2) ? GemmBackend::Avx2
                                                                       : GemmBackend::Eigen;
  EXPECT_EQ(gemm_backend_in_use(), best);
  set_gemm_backend(GemmBackend::Eigen);
  EXPECT_EQ(gemm_backend_in_use(), GemmBackend::Eigen);
  set_gemm_backend(GemmBackend::Auto);
  EXPECT_EQ(gemm_backend_in_use(), best);
  EXPECT_STREQ(gemm_backend_name(GemmBackend::Avx2), "blocked-avx2");
  if (!gemm_backend_available(GemmBackend::Avx512)) {
    EXPECT_THROW(set_gemm_backend(GemmBackend::Avx512), Error);
  }
}

// --- bmm_cpu ------------------------------------------------------------------------------------

std::vector<double> iota_values(int64_t n, double scale, double shift) {
  std::vector<double> v(static_cast<size_t>(n));
  Lcg rng{static_cast<uint64_t>(n) * 31 + 5};
  for (auto& x : v) x = rng.next() * scale + shift;
  return v;
}

// out[b] = beta * out0[b] + a[b] @ w[b], computed in double from the tensors' logical elements.
std::vector<double> bmm_reference(const Tensor& a, const Tensor& w, const std::vector<double>& out0, double beta) {
  const int64_t B = a.size(0), M = a.size(1), K = a.size(2), N = w.size(2);
  std::vector<double> av = a.to_vector<double>(), wv = w.to_vector<double>(), out(static_cast<size_t>(B * M * N));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += av[(b * M + i) * K + k] * wv[(b * K + k) * N + j];
        const size_t o = static_cast<size_t>((b * M + i) * N + j);
        out[o] = s + (beta == 0 ? 0.0 : beta * out0[o]);
      }
  return out;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], tol) << "element " << i;
}

// Runs bmm_cpu for a, w (any layouts) into a fresh contiguous out, checking against the reference.
void check_bmm(const Tensor& a, const Tensor& w, double beta, DType dtype) {
  const int64_t B = a.size(0), M = a.size(1), N = w.size(2);
  std::vector<double> out0 = iota_values(B * M * N, 1.0, 0.0);
  Tensor out = from_vector(out0, {B, M, N}, dtype);
  bmm_cpu(a, w, out, beta);
  expect_close(out.to_vector<double>(), bmm_reference(a, w, out0, beta), dtype == DType::f32 ? 1e-4 : 1e-12);
}

TEST(Bmm, RowAndColumnMajorOperands) {
  for (DType dt : {DType::f32, DType::f64}) {
    SCOPED_TRACE(dtype_name(dt));
    const int64_t B = 3, M = 5, K = 7, N = 4;
    Tensor a = from_vector(iota_values(B * M * K, 1.0, 0.0), {B, M, K}, dt);
    Tensor w = from_vector(iota_values(B * K * N, 0.5, 0.1), {B, K, N}, dt);
    // Column-major copies: contiguous (B, K, M) transposed to (B, M, K), stride(-2) == 1.
    Tensor a_cm = a.transpose(1, 2).contiguous().transpose(1, 2);
    Tensor w_cm = w.transpose(1, 2).contiguous().transpose(1, 2);
    ASSERT_EQ(a_cm.stride(1), 1);
    ASSERT_EQ(w_cm.stride(1), 1);
    for (double beta : {0.0, 1.0}) {
      check_bmm(a, w, beta, dt);
      check_bmm(a_cm, w, beta, dt);
      check_bmm(a, w_cm, beta, dt);
      check_bmm(a_cm, w_cm, beta, dt);
    }
  }
}

TEST(Bmm, BroadcastBatchAndRowStrides) {
  const int64_t B = 4, M = 6, K = 9, N = 11;
  // w shared by every batch (batch stride 0); a is a column slice of a wider tensor (row stride > K).
  Tensor w = from_vector(iota_values(K * N, 1.0, 0.0), {1, K, N}).expand({B, K, N});
  ASSERT_EQ(w.stride(0), 0);
  Tensor wide = from_vector(iota_values(B * M * (K + 3), 1.0, 0.0), {B, M, K + 3});
  Tensor a = wide.narrow(2, 2, K);
  ASSERT_EQ(a.stride(1), K + 3);
  check_bmm(a, w, 0.0, DType::f32);
  check_bmm(a, w, 1.0, DType::f32);
}

// Many small products run one batch per thread; the bits must not depend on that.
TEST(Bmm, ManySmallBatchesThreadInvariant) {
  GemmSettingsGuard guard;
  const int64_t B = 512, M = 8, K = 24, N = 16;
  Tensor a = from_vector(iota_values(B * M * K, 1.0, 0.0), {B, M, K});
  Tensor w = from_vector(iota_values(B * K * N, 1.0, 0.0), {B, K, N});
  set_num_threads(1);
  Tensor one = zeros({B, M, N});
  bmm_cpu(a, w, one, 0.0);
  set_num_threads(2);
  Tensor two = zeros({B, M, N});
  bmm_cpu(a, w, two, 0.0);
  ASSERT_EQ(std::memcmp(one.data_ptr<float>(), two.data_ptr<float>(), B * M * N * sizeof(float)), 0);
  expect_close(two.to_vector<double>(), bmm_reference(a, w, std::vector<double>(B * M * N, 0.0), 0.0), 1e-4);
}

// bmm_bias_cpu adds the bias in the GEMM's epilogue: the same bits as copying the bias into every
// row and bmm_cpu with beta = 1, for every backend and dtype (half included), small and partial
// tiles, K past one cache block, and both operand layouts.
TEST(Bmm, BiasInTheEpilogueHasTheBitsOfCopyThenAccumulate) {
  GemmSettingsGuard guard;
  const std::vector<std::array<int64_t, 3>> shapes = {{1, 5, 3},   {3, 40, 17}, {7, 33, 300}, {13, 70, 64},
                                                      {64, 96, 8}, {29, 17, 600}, {256, 784, 64},
                                                      {1, 300, 40}, {2, 200, 300}};
  for (GemmBackend backend : backends()) {
    set_gemm_backend(backend);
    for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16}) {
      for (const auto& [M, N, K] : shapes) {
        for (bool trans_w : {false, true}) {
          SCOPED_TRACE(std::string(gemm_backend_name(backend)) + " " + dtype_name(dt) + " M=" + std::to_string(M) +
                       " N=" + std::to_string(N) + " K=" + std::to_string(K) + (trans_w ? " w^T" : ""));
          Tensor a = from_vector(iota_values(M * K, 1.0, 0.0), {1, M, K}).to(dt);
          Tensor w = from_vector(iota_values(K * N, 0.5, 0.1), {1, K, N}).to(dt);
          if (trans_w) w = w.transpose(1, 2).contiguous().transpose(1, 2);
          Tensor bias = from_vector(iota_values(N, 2.0, -0.5), {N}).to(dt);
          Tensor fused = empty({1, M, N}, TensorOptions(dt));
          bmm_bias_cpu(a, w, bias, fused);
          Tensor composed = empty({1, M, N}, TensorOptions(dt));
          copy_cpu(bias.expand({1, M, N}), composed);
          bmm_cpu(a, w, composed, 1.0);
          ASSERT_EQ(std::memcmp(fused.data_ptr(), composed.data_ptr(), static_cast<size_t>(fused.nbytes())), 0);
        }
      }
    }
  }
}

// The ReLU epilogue: the bits of the GEMM (with or without a bias) followed by the elementwise
// ReLU, for every backend, float32 and float64, both weight layouts, and the kernel's paths: few
// rows (unpacked), the few rows left after whole tiles, partial tiles, K past one block (the ReLU
// belongs to the last block only), 2 threads. A has a zero row, a row of -1 (mostly negative
// outputs) and a NaN (NaN stays NaN).
TEST(Bmm, ReluEpilogueHasTheBitsOfTheGemmThenRelu) {
  GemmSettingsGuard guard;
  set_num_threads(2);
  const std::vector<std::array<int64_t, 3>> shapes = {{1, 5, 3},    {3, 40, 17},  {4, 200, 300}, {7, 33, 300},
                                                      {13, 70, 64}, {16, 64, 520}, {64, 96, 8},  {256, 784, 64},
                                                      {100, 19, 513}};
  for (GemmBackend backend : backends()) {
    set_gemm_backend(backend);
    for (DType dt : {DType::f32, DType::f64}) {
      for (const auto& [M, N, K] : shapes) {
        for (bool trans_w : {false, true}) {
          for (bool with_bias : {false, true}) {
            SCOPED_TRACE(std::string(gemm_backend_name(backend)) + " " + dtype_name(dt) + " M=" + std::to_string(M) +
                         " N=" + std::to_string(N) + " K=" + std::to_string(K) + (trans_w ? " w^T" : "") +
                         (with_bias ? " bias" : ""));
            std::vector<double> av = iota_values(M * K, 1.0, 0.0);
            for (int64_t k = 0; k < K; ++k) av[static_cast<size_t>(k)] = 0.0;  // row 0: zeros
            if (M > 1)
              for (int64_t k = 0; k < K; ++k) av[static_cast<size_t>(K + k)] = -1.0;  // row 1: negatives
            if (M > 2) av[static_cast<size_t>(2 * K + K / 2)] = std::numeric_limits<double>::quiet_NaN();
            Tensor a = from_vector(av, {1, M, K}).to(dt);
            Tensor w = from_vector(iota_values(K * N, 0.5, 0.1), {1, K, N}).to(dt);
            if (trans_w) w = w.transpose(1, 2).contiguous().transpose(1, 2);
            Tensor bias = with_bias ? from_vector(iota_values(N, 2.0, -0.5), {N}).to(dt) : Tensor();
            Tensor fused = full({1, M, N}, 7.0, TensorOptions(dt));  // overwritten, never read
            bmm_bias_cpu(a, w, bias, fused, true);
            Tensor gemm = empty({1, M, N}, TensorOptions(dt));
            if (with_bias) {
              bmm_bias_cpu(a, w, bias, gemm);
            } else {
              bmm_cpu(a, w, gemm, 0.0);
            }
            Tensor composed = empty({1, M, N}, TensorOptions(dt));
            unary_cpu(UnaryOp::Relu, gemm, composed, 0, 0);
            ASSERT_EQ(std::memcmp(fused.data_ptr(), composed.data_ptr(), static_cast<size_t>(fused.nbytes())), 0);
            if (M > 2) {
              EXPECT_TRUE(std::isnan(fused.to_vector<double>()[static_cast<size_t>(2 * N)]));
            }
          }
        }
      }
    }
  }
}

// op(B) packed once (gemm_pack_b_cpu, what an inference Linear keeps) gives the bits of the same
// product packing B per call: every blocked backend, float32 and float64, B plain and transposed,
// few rows, partial panels, K past one and several blocks, a bias and the ReLU epilogue, and 1
// and 2 threads (the threads split N at panel boundaries into the packed panels).
template <typename T>
void check_packed_b(GemmBackend backend) {
  const std::vector<std::array<int64_t, 3>> shapes = {{1, 5, 3},    {3, 40, 17},  {13, 70, 64},  {37, 33, 300},
                                                      {64, 700, 100}, {256, 784, 64}, {100, 19, 600}, {5, 2000, 70}};
  for (const auto& [M, N, K] : shapes) {
    for (bool tb : {false, true}) {
      for (int epilogue = 0; epilogue < 3; ++epilogue) {  // none, bias, bias + ReLU
        SCOPED_TRACE(std::string(gemm_backend_name(backend)) + (sizeof(T) == 4 ? " f32" : " f64") + " M=" +
                     std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) + (tb ? " B^T" : "") +
                     " epilogue " + std::to_string(epilogue));
        Problem p{false, tb, M, N, K};
        Operands<T> ops(p, 9);
        std::vector<T> bias(static_cast<size_t>(N));
        for (int64_t j = 0; j < N; ++j) bias[static_cast<size_t>(j)] = static_cast<T>(0.25 * static_cast<double>(j % 7) - 0.5);
        const T* bp = epilogue > 0 ? bias.data() : nullptr;
        int64_t npad = 0;
        const int64_t size = gemm_packed_b_size(sizeof(T) == 8, K, N, &npad);
        ASSERT_EQ(size, K * npad);
        ASSERT_GE(npad, N);
        T* packed = static_cast<T*>(std::aligned_alloc(64, static_cast<size_t>(size) * sizeof(T) + 64));
        ASSERT_EQ(gemm_pack_b_cpu(K, N, GemmOperand<T>::strided(ops.B.data(), ops.ldb, tb), packed),
                  static_cast<int>(backend));
        for (int threads : {1, 2}) {
          set_num_threads(threads);
          std::vector<T> want(static_cast<size_t>(M * N)), got(static_cast<size_t>(M * N), T(7));
          gemm_bias_cpu(M, N, K, T(1), GemmOperand<T>::strided(ops.A.data(), ops.lda, false),
                        GemmOperand<T>::strided(ops.B.data(), ops.ldb, tb), bp, want.data(), N, epilogue == 2);
          gemm_bias_cpu(M, N, K, T(1), GemmOperand<T>::strided(ops.A.data(), ops.lda, false),
                        GemmOperand<T>::packed(packed, npad), bp, got.data(), N, epilogue == 2);
          EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(T)), 0) << threads << " threads";
        }
        std::free(packed);
      }
    }
  }
}

TEST(Gemm, PackedBHasTheBitsOfPackingPerCall) {
  GemmSettingsGuard guard;
  for (GemmBackend backend : {GemmBackend::Avx512, GemmBackend::Avx2}) {
    if (!gemm_backend_available(backend)) continue;
    set_gemm_backend(backend);
    check_packed_b<float>(backend);
    check_packed_b<double>(backend);
  }
  set_gemm_backend(GemmBackend::Eigen);  // packs nothing
  int64_t npad = 1;
  EXPECT_EQ(gemm_packed_b_size(false, 10, 10, &npad), 0);
  EXPECT_EQ(npad, 0);
}

// The tensor-level form: a packed linear weight for another backend, or of another size, is refused
// with what was expected; the backend in use that packs nothing gives no panels.
TEST(Gemm, PackedLinearWeightChecksItsKernelAndSize) {
  GemmSettingsGuard guard;
  const Tensor w = from_vector(iota_values(40 * 30, 1.0, 0.0), {40, 30});
  const Tensor x = from_vector(iota_values(8 * 30, 1.0, 0.0), {8, 30});
  int kernel = -2;
  set_gemm_backend(GemmBackend::Eigen);
  EXPECT_FALSE(pack_linear_weight_cpu(w, &kernel).defined());
  EXPECT_EQ(kernel, -1);
  if (!gemm_backend_available(GemmBackend::Avx2)) GTEST_SKIP() << "no blocked kernel on this CPU";
  set_gemm_backend(GemmBackend::Avx2);
  const Tensor panels = pack_linear_weight_cpu(w, &kernel);
  ASSERT_TRUE(panels.defined());
  Tensor out = empty({8, 40});
  linear_packed_cpu(x, panels, kernel, 40, Tensor(), out, false);
  Tensor want = empty({1, 8, 40});
  bmm_cpu(x.unsqueeze(0), w.t().unsqueeze(0), want, 0.0);
  EXPECT_EQ(std::memcmp(out.data_ptr(), want.data_ptr(), static_cast<size_t>(out.nbytes())), 0);
  set_gemm_backend(GemmBackend::Eigen);
  try {
    linear_packed_cpu(x, panels, kernel, 40, Tensor(), out, false);
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the packed weight is for GEMM kernel blocked-avx2, but eigen is in use"),
              std::string::npos)
        << e.what();
  }
  set_gemm_backend(GemmBackend::Avx2);
  try {
    linear_packed_cpu(x, panels, kernel, 50, Tensor(), empty({8, 50}), false);
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("values, not those of a 50 x 30 weight"), std::string::npos) << e.what();
  }
}

// The public op over panels packed for one backend, after another backend was chosen: the bits of
// linear on the weight (it does not read the stale panels), with and without the ReLU.
TEST(Gemm, LinearPackedForAnotherBackendTakesTheWeight) {
  if (!gemm_backend_available(GemmBackend::Avx2)) GTEST_SKIP() << "no blocked kernel on this CPU";
  GemmSettingsGuard guard;
  const Tensor w = from_vector(iota_values(40 * 300, 1.0, 0.0), {40, 300});
  const Tensor b = from_vector(iota_values(40, 1.0, 0.0), {40});
  const Tensor x = from_vector(iota_values(9 * 300, 1.0, 0.0), {9, 300});
  set_gemm_backend(GemmBackend::Avx2);
  const PackedLinearWeight packed = pack_linear_weight(w);
  ASSERT_TRUE(packed.panels.defined());
  for (GemmBackend other : {GemmBackend::Eigen, GemmBackend::Avx512}) {
    if (!gemm_backend_available(other)) continue;
    set_gemm_backend(other);
    SCOPED_TRACE(gemm_backend_name(other));
    for (bool relu : {false, true}) {
      const Tensor want = relu ? linear_relu(x, w, b) : linear(x, w, b);
      EXPECT_EQ(std::memcmp(linear_packed(x, packed, b, relu).data_ptr(), want.data_ptr(),
                            static_cast<size_t>(want.nbytes())),
                0);
    }
  }
}

TEST(Bmm, ReluEpilogueIsForFloat32AndFloat64) {
  Tensor a = zeros({1, 3, 4}, TensorOptions(DType::bf16)), w = zeros({1, 4, 5}, TensorOptions(DType::bf16));
  Tensor out = zeros({1, 3, 5}, TensorOptions(DType::bf16));
  try {
    bmm_bias_cpu(a, w, Tensor(), out, true);
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[bmm] the ReLU epilogue is for float32 and float64, got dtype bf16"),
              std::string::npos)
        << e.what();
  }
}

TEST(Bmm, RejectsABiasOfTheWrongSizeOrDtype) {
  Tensor a = zeros({1, 3, 4}), w = zeros({1, 4, 5}), out = zeros({1, 3, 5});
  for (const Tensor& bias : {zeros({4}), zeros({5}, TensorOptions(DType::f64))}) {
    try {
      bmm_bias_cpu(a, w, bias, out);
      FAIL() << "expected ember::Error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("[bmm] bias must be 5 contiguous values of dtype f32"), std::string::npos)
          << e.what();
    }
  }
}

TEST(Bmm, RejectsOperandWithoutUnitStride) {
  Tensor base = zeros({2, 6, 8});
  Tensor a = base.slice(2, 0, 8, 2).slice(1, 0, 6, 2);  // (2, 3, 4), strides (48, 16, 2)
  Tensor w = zeros({2, 4, 5});
  Tensor out = zeros({2, 3, 5});
  try {
    bmm_cpu(a, w, out, 0.0);
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[bmm] a needs stride 1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ember::kernels
