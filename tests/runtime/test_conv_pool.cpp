// Tests for conv2d, conv_transpose2d, max_pool2d and avg_pool2d: forward values and input/weight/
// bias gradients against PyTorch fixtures (tests/reference/gen_conv_pool.py), float64 gradient
// checks, thread-count invariance, edge cases and error messages.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/cpu/gemm_backend.h"
#include "kernels/kernels.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/error.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/parallel.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"

namespace ember {
namespace {

using test::allclose;
using test::gradcheck;

// Success when fn throws ember::Error whose message contains `needle`.
template <typename Fn>
::testing::AssertionResult throws_with(Fn&& fn, const std::string& needle) {
  try {
    fn();
  } catch (const Error& e) {
    if (std::string(e.what()).find(needle) != std::string::npos) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "message \"" << e.what() << "\" lacks \"" << needle << "\"";
  }
  return ::testing::AssertionFailure() << "no ember::Error thrown (expected \"" << needle << "\")";
}

// Names of the cases in a fixture (tensors named "<case>.opts").
std::vector<std::string> case_names(const test::Fixture& fx) {
  std::vector<std::string> names;
  for (const auto& [name, t] : fx.tensors) {
    const std::string suffix = ".opts";
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      names.push_back(name.substr(0, name.size() - suffix.size()));
  }
  return names;
}

// A fresh leaf sharing the fixture tensor's data.
Tensor leaf(const Tensor& t, DType dtype) { return t.to(dtype).detach().requires_grad_(true); }

Conv2dOptions conv_options(const std::vector<int64_t>& o) {
  Conv2dOptions c;
  c.stride = {o[0], o[1]};
  c.padding = {o[2], o[3]};
  c.dilation = {o[4], o[5]};
  c.output_padding = {o[6], o[7]};
  c.groups = o[8];
  return c;
}

Pool2dOptions pool_options(const std::vector<int64_t>& o) {
  Pool2dOptions p;
  p.kernel_size = {o[0], o[1]};
  p.stride = {o[2], o[3]};
  p.padding = {o[4], o[5]};
  p.dilation = {o[6], o[7]};
  p.ceil_mode = o[8] != 0;
  p.count_include_pad = o[9] != 0;
  return p;
}

// Runs every conv case of a fixture in `dtype` and compares y, dx, dw, db with the reference.
void check_conv_fixture(const std::string& file, DType dtype, size_t expected_cases) {
  const test::Fixture fx = test::load_fixture(file);
  const std::vector<std::string> names = case_names(fx);
  ASSERT_EQ(names.size(), expected_cases);
  // The references are float64 results rounded to f32, so the tolerance covers only our f32
  // rounding of sums of up to a few hundred products (observed errors stay below 1e-6).
  const double rtol = 1e-5, atol = dtype == DType::f32 ? 1e-5 : 1e-6;
  for (const std::string& n : names) {
    SCOPED_TRACE(file + ": " + n);
    const std::vector<int64_t> o = fx[n + ".opts"].to_vector<int64_t>();
    const bool transposed = o[9] != 0;
    const bool has_bias = fx.tensors.count(n + ".b") > 0;
    Tensor x = leaf(fx[n + ".x"], dtype), w = leaf(fx[n + ".w"], dtype);
    Tensor b = has_bias ? leaf(fx[n + ".b"], dtype) : Tensor();
    const Conv2dOptions opts = conv_options(o);
    Tensor y = transposed ? conv_transpose2d(x, w, b, opts) : conv2d(x, w, b, opts);
    EXPECT_EQ(y.dtype(), dtype);
    EXPECT_TRUE(allclose(y, fx[n + ".y"], rtol, atol));
    y.backward(fx[n + ".gy"].to(dtype));
    EXPECT_TRUE(allclose(x.grad(), fx[n + ".dx"], rtol, atol));
    EXPECT_TRUE(allclose(w.grad(), fx[n + ".dw"], rtol, atol));
    if (has_bias) {
      EXPECT_TRUE(allclose(b.grad(), fx[n + ".db"], rtol, atol));
    }
  }
}

TEST(Conv2d, MatchesTorchForwardAndGradients) { check_conv_fixture("fixtures/conv_pool_conv.txt", DType::f32, 8); }

TEST(Conv2d, MatchesTorchInFloat64) { check_conv_fixture("fixtures/conv_pool_conv.txt", DType::f64, 8); }

TEST(ConvTranspose2d, MatchesTorchForwardAndGradients) {
  check_conv_fixture("fixtures/conv_pool_convt.txt", DType::f32, 4);
}

TEST(ConvTranspose2d, MatchesTorchInFloat64) { check_conv_fixture("fixtures/conv_pool_convt.txt", DType::f64, 4); }

TEST(Pool2d, MatchesTorchForwardAndGradients) {
  const test::Fixture fx = test::load_fixture("fixtures/conv_pool_pool.txt");
  const std::vector<std::string> names = case_names(fx);
  ASSERT_EQ(names.size(), 12u);
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const std::string& n : names) {
      SCOPED_TRACE(n + " " + dtype_name(dtype));
      const std::vector<int64_t> o = fx[n + ".opts"].to_vector<int64_t>();
      const bool is_max = o[10] != 0;
      Tensor x = leaf(fx[n + ".x"], dtype);
      Tensor y = is_max ? max_pool2d(x, pool_options(o)) : avg_pool2d(x, pool_options(o));
      EXPECT_TRUE(allclose(y, fx[n + ".y"], 1e-5, 1e-6));
      y.backward(fx[n + ".gy"].to(dtype));
      EXPECT_TRUE(allclose(x.grad(), fx[n + ".dx"], 1e-5, 1e-6));
    }
  }
}

// The kernel's indices follow PyTorch: flat h*W+w within the input plane.
TEST(Pool2d, MaxPoolKernelIndicesMatchTorch) {
  const test::Fixture fx = test::load_fixture("fixtures/conv_pool_pool.txt");
  int checked = 0;
  for (const std::string& n : case_names(fx)) {
    if (fx.tensors.count(n + ".idx") == 0) continue;
    SCOPED_TRACE(n);
    const std::vector<int64_t> o = fx[n + ".opts"].to_vector<int64_t>();
    const Tensor x = fx[n + ".x"], ref = fx[n + ".idx"];
    const kernels::PoolGeom g{x.size(0), x.size(1), x.size(2), x.size(3), ref.size(2), ref.size(3), o[0], o[1],
                              o[2],      o[3],      o[4],      o[5],      o[6],        o[7],        true};
    Tensor y = empty(ref.shape()), idx = empty(ref.shape(), DType::i64);
    kernels::max_pool2d_cpu(g, x, y, idx);
    EXPECT_EQ(idx.to_vector<int64_t>(), ref.to_vector<int64_t>());
    ++checked;
  }
  EXPECT_EQ(checked, 6);
}

// --- float64 gradient checks ------------------------------------------------------------------

Tensor randn64(const Shape& shape, Generator& gen) {
  return randn(shape, TensorOptions(DType::f64), &gen).requires_grad_(true);
}

// Distinct values spaced 1/numel apart, so finite differences never change a max-pool argmax.
Tensor distinct64(const Shape& shape, Generator& gen) {
  const int64_t n = shape.numel();
  return (randperm(n, &gen).to(DType::f64) * (1.0 / static_cast<double>(n))).view(shape).detach().requires_grad_(
      true);
}

TEST(Conv2d, GradcheckStridePaddingDilationGroups) {
  Generator gen(11);
  Conv2dOptions o;
  o.stride = {2, 1};
  o.padding = {1, 1};
  o.dilation = {1, 2};
  o.groups = 2;
  EXPECT_TRUE(gradcheck(
      "conv2d", [&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], o); },
      {randn64({2, 4, 5, 6}, gen), randn64({6, 2, 3, 2}, gen), randn64({6}, gen)}));
}

// Stride larger than the kernel: some input pixels feed no output (their gradient is zero).
TEST(Conv2d, GradcheckStrideLargerThanKernel) {
  Generator gen(16);
  Conv2dOptions o;
  o.stride = {3, 3};
  o.padding = {1, 0};
  EXPECT_TRUE(gradcheck(
      "conv2d", [&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], o); },
      {randn64({2, 2, 7, 8}, gen), randn64({3, 2, 2, 2}, gen), randn64({3}, gen)}));
}

TEST(Conv2d, GradcheckPointwiseUnbatched) {
  Generator gen(12);
  EXPECT_TRUE(gradcheck(
      "conv2d", [&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1]); },
      {randn64({3, 3, 4}, gen), randn64({2, 3, 1, 1}, gen)}));
}

TEST(ConvTranspose2d, Gradcheck) {
  Generator gen(13);
  Conv2dOptions o;
  o.stride = {2, 1};
  o.padding = {1, 0};
  o.dilation = {1, 2};
  o.output_padding = {1, 0};
  o.groups = 2;
  EXPECT_TRUE(gradcheck(
      "conv_transpose2d", [&](const std::vector<Tensor>& in) { return conv_transpose2d(in[0], in[1], in[2], o); },
      {randn64({2, 4, 3, 4}, gen), randn64({4, 3, 3, 2}, gen), randn64({6}, gen)}));
}

TEST(MaxPool2d, Gradcheck) {
  Generator gen(14);
  Pool2dOptions o;
  o.kernel_size = {3, 2};
  o.stride = {2, 1};
  o.padding = {1, 1};
  o.dilation = {1, 2};
  o.ceil_mode = true;
  EXPECT_TRUE(gradcheck(
      "max_pool2d", [&](const std::vector<Tensor>& in) { return max_pool2d(in[0], o); },
      {distinct64({2, 2, 6, 7}, gen)}));
}

TEST(AvgPool2d, Gradcheck) {
  Generator gen(15);
  for (bool cip : {true, false}) {
    Pool2dOptions o;
    o.kernel_size = {3, 3};
    o.stride = {2, 2};
    o.padding = {1, 1};
    o.ceil_mode = true;
    o.count_include_pad = cip;
    EXPECT_TRUE(gradcheck(
        "avg_pool2d", [&](const std::vector<Tensor>& in) { return avg_pool2d(in[0], o); },
        {randn64({2, 2, 6, 7}, gen)}));
  }
}

// --- behaviour --------------------------------------------------------------------------------

TEST(Conv2d, UnbatchedInputMatchesBatched) {
  Generator gen(21);
  const Tensor x = randn({3, 6, 5}, {}, &gen), w = randn({4, 3, 3, 3}, {}, &gen), b = randn({4}, {}, &gen);
  Conv2dOptions o;
  o.padding = {1, 1};
  const Tensor y3 = conv2d(x, w, b, o);
  EXPECT_EQ(y3.shape(), Shape({4, 6, 5}));
  EXPECT_TRUE(test::bit_equal(y3, conv2d(x.unsqueeze(0), w, b, o).squeeze(0)));
  const Tensor p3 = max_pool2d(x, {});
  EXPECT_EQ(p3.shape(), Shape({3, 3, 2}));
  EXPECT_TRUE(test::bit_equal(p3, max_pool2d(x.unsqueeze(0), {}).squeeze(0)));
}

TEST(Conv2d, NonContiguousInputsMatchContiguous) {
  Generator gen(22);
  const Tensor xt = randn({2, 7, 6, 3}, {}, &gen).permute({0, 3, 2, 1});  // (2, 3, 6, 7), channels-last memory
  const Tensor w = randn({3, 4, 2, 2}, {}, &gen).transpose(0, 1);          // (4, 3, 2, 2), strided
  ASSERT_FALSE(xt.is_contiguous());
  EXPECT_TRUE(test::bit_equal(conv2d(xt, w), conv2d(xt.contiguous(), w.contiguous())));
  Pool2dOptions o;
  o.kernel_size = {3, 3};
  o.padding = {1, 1};
  EXPECT_TRUE(test::bit_equal(avg_pool2d(xt, o), avg_pool2d(xt.contiguous(), o)));
  EXPECT_TRUE(test::bit_equal(max_pool2d(xt, o), max_pool2d(xt.contiguous(), o)));
}

// Results (including the batch-summed weight gradient) are identical for any thread count.
TEST(Conv2d, ResultsDoNotDependOnThreadCount) {
  const int threads = get_num_threads();
  Generator gen(23);
  const Tensor x0 = randn({5, 4, 9, 8}, {}, &gen), w0 = randn({6, 2, 3, 3}, {}, &gen), gy = randn({5, 6, 5, 4}, {}, &gen);
  Conv2dOptions o;
  o.stride = {2, 2};
  o.padding = {1, 1};
  o.groups = 2;
  std::vector<std::vector<Tensor>> results;
  for (int t : {1, 2, 3}) {
    set_num_threads(t);
    Tensor x = x0.detach().requires_grad_(true), w = w0.detach().requires_grad_(true);
    Tensor y = conv2d(x, w, Tensor(), o);
    y.backward(gy);
    results.push_back({y, x.grad(), w.grad()});
  }
  set_num_threads(threads);
  for (size_t r = 1; r < results.size(); ++r)
    for (size_t k = 0; k < 3; ++k) EXPECT_TRUE(test::bit_equal(results[r][k], results[0][k]));
}

// The same with batches of many chunks (the kernels walk the batch in chunks of images) and the
// stride-2 shapes of the conv autoencoder, through conv_transpose2d as well.
TEST(ConvTranspose2d, ResultsDoNotDependOnThreadCount) {
  const int threads = get_num_threads();
  Generator gen(24);
  const Tensor x0 = randn({37, 1, 28, 28}, {}, &gen), w1 = randn({16, 1, 3, 3}, {}, &gen);
  const Tensor w2 = randn({16, 8, 3, 3}, {}, &gen), gy = randn({37, 8, 28, 28}, {}, &gen);
  Conv2dOptions o;
  o.stride = {2, 2};
  o.padding = {1, 1};
  Conv2dOptions ot = o;
  ot.output_padding = {1, 1};
  std::vector<std::vector<Tensor>> results;
  for (int t : {1, 2, 3}) {
    set_num_threads(t);
    Tensor x = x0.detach().requires_grad_(true), a = w1.detach().requires_grad_(true);
    Tensor b = w2.detach().requires_grad_(true);
    Tensor y = conv_transpose2d(conv2d(x, a, Tensor(), o), b, Tensor(), ot);
    y.backward(gy);
    results.push_back({y, x.grad(), a.grad(), b.grad()});
  }
  set_num_threads(threads);
  for (size_t r = 1; r < results.size(); ++r)
    for (size_t k = 0; k < results[0].size(); ++k) EXPECT_TRUE(test::bit_equal(results[r][k], results[0][k]));
}

// Every GEMM backend this CPU runs (the convolution feeds it row tables and tiny row counts).
TEST(Conv2d, MatchesTorchWithEveryGemmBackend) {
  for (kernels::GemmBackend b : {kernels::GemmBackend::Avx512, kernels::GemmBackend::Avx2, kernels::GemmBackend::Eigen}) {
    if (!kernels::gemm_backend_available(b)) continue;
    SCOPED_TRACE(kernels::gemm_backend_name(b));
    kernels::set_gemm_backend(b);
    check_conv_fixture("fixtures/conv_pool_conv.txt", DType::f32, 8);
    check_conv_fixture("fixtures/conv_pool_convt.txt", DType::f64, 4);
  }
  kernels::set_gemm_backend(kernels::GemmBackend::Auto);
}

TEST(MaxPool2d, PropagatesNaNAndEmptyWindowsGiveMinusInf) {
  // The 2x2 window holds 1, NaN, 4, 5: the NaN wins although larger values follow it.
  Tensor x = test::make_tensor({1, NAN, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3}, DType::f64, true);
  Tensor y = max_pool2d(x, {});
  ASSERT_EQ(y.shape(), Shape({1, 1, 1, 1}));
  EXPECT_TRUE(std::isnan(y.item()));
  y.backward(ones({1, 1, 1, 1}, DType::f64));
  EXPECT_EQ(test::values_f64(x.grad()), std::vector<double>({0, 1, 0, 0, 0, 0, 0, 0, 0}));
  // kernel 2, dilation 5, padding 1 on a 4x4 plane: the single window's taps (-1, 4) all miss.
  Pool2dOptions o;
  o.kernel_size = {2, 2};
  o.stride = {1, 1};
  o.padding = {1, 1};
  o.dilation = {5, 5};
  Tensor z = test::make_tensor(std::vector<double>(16, 1.0), {1, 1, 4, 4}, DType::f64, true);
  Tensor p = max_pool2d(z, o);
  ASSERT_EQ(p.shape(), Shape({1, 1, 1, 1}));
  EXPECT_EQ(p.item(), -std::numeric_limits<double>::infinity());
  p.backward(ones({1, 1, 1, 1}, DType::f64));
  EXPECT_EQ(test::values_f64(z.grad()), std::vector<double>(16, 0.0));
}

TEST(Conv2d, NoGradModeRecordsNothing) {
  Tensor x = ones({1, 1, 3, 3}).requires_grad_(true), w = ones({1, 1, 2, 2}).requires_grad_(true);
  NoGradGuard guard;
  Tensor y = conv2d(x, w);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(test::values_f64(y), std::vector<double>(4, 4.0));
}

// --- errors -----------------------------------------------------------------------------------

TEST(Conv2d, ErrorMessages) {
  const Tensor x = zeros({1, 3, 8, 8}), w = zeros({4, 2, 3, 3});
  EXPECT_TRUE(throws_with([&] { conv2d(x, w); },
                          "[conv2d] input (1, 3, 8, 8) has 3 channels but weight (4, 2, 3, 3) expects 2 x groups(1)"));
  Conv2dOptions g2;
  g2.groups = 2;
  EXPECT_TRUE(throws_with([&] { conv2d(zeros({1, 4, 8, 8}), zeros({5, 2, 3, 3}), Tensor(), g2); },
                          "[conv2d] weight (5, 2, 3, 3) has 5 output channels, which is not divisible by groups(2)"));
  EXPECT_TRUE(throws_with([&] { conv2d(zeros({1, 2, 8, 8}), w, zeros({3})); },
                          "[conv2d] bias (3) does not match the 4 output channels of weight (4, 2, 3, 3)"));
  EXPECT_TRUE(throws_with([&] { conv2d(zeros({1, 2, 2, 8}), w); },
                          "[conv2d] input (1, 2, 2, 8) padded by (0, 0) is (2, 8), smaller than the dilated kernel "
                          "(3, 3)"));
  EXPECT_TRUE(throws_with([&] { conv2d(zeros({8, 8}), w); },
                          "[conv2d] expected input of rank 3 (C, H, W) or 4 (N, C, H, W), got (8, 8)"));
  EXPECT_TRUE(throws_with([&] { conv2d(zeros({1, 2, 8, 8}), zeros({4, 2, 3})); },
                          "[conv2d] expected weight of rank 4, got (4, 2, 3)"));
  EXPECT_TRUE(throws_with([&] { conv2d(zeros({1, 2, 8, 8}), zeros({4, 2, 3, 3}, DType::f64)); },
                          "[conv2d] input has dtype f32 but weight has dtype f64"));
  EXPECT_TRUE(throws_with([&] { conv2d(zeros({1, 2, 8, 8}, DType::i64), w); },
                          "[conv2d] dtype i64 is not supported (expected f32, f64, f16 or bf16)"));
  Conv2dOptions bad_stride;
  bad_stride.stride = {0, 1};
  EXPECT_TRUE(throws_with([&] { conv2d(zeros({1, 2, 8, 8}), w, Tensor(), bad_stride); },
                          "[conv2d] stride must be >= 1, got (0, 1)"));
  Conv2dOptions bad_pad;
  bad_pad.padding = {1, 2, 3};
  EXPECT_TRUE(throws_with([&] { conv2d(zeros({1, 2, 8, 8}), w, Tensor(), bad_pad); },
                          "[conv2d] padding must have 1 or 2 values, got 3 (1, 2, 3)"));
  Conv2dOptions outpad;
  outpad.output_padding = {1, 1};
  EXPECT_TRUE(throws_with([&] { conv2d(zeros({1, 2, 8, 8}), w, Tensor(), outpad); },
                          "[conv2d] output_padding (1, 1) applies to conv_transpose2d only"));
  Conv2dOptions g0;
  g0.groups = 0;
  EXPECT_TRUE(throws_with([&] { conv2d(zeros({1, 2, 8, 8}), w, Tensor(), g0); }, "[conv2d] groups must be >= 1, got 0"));
}

TEST(ConvTranspose2d, ErrorMessages) {
  EXPECT_TRUE(throws_with([&] { conv_transpose2d(zeros({1, 4, 5, 5}), zeros({3, 2, 3, 3})); },
                          "[conv_transpose2d] input (1, 4, 5, 5) has 4 channels but weight (3, 2, 3, 3) expects 3"));
  Conv2dOptions o;
  o.stride = {2, 2};
  o.output_padding = {2, 0};
  EXPECT_TRUE(throws_with([&] { conv_transpose2d(zeros({1, 3, 5, 5}), zeros({3, 2, 3, 3}), Tensor(), o); },
                          "[conv_transpose2d] output_padding (2, 0) must be smaller than either stride (2, 2) or "
                          "dilation (1, 1) in each dim"));
  Conv2dOptions g2;
  g2.groups = 2;
  EXPECT_TRUE(throws_with([&] { conv_transpose2d(zeros({1, 3, 5, 5}), zeros({3, 2, 3, 3}), Tensor(), g2); },
                          "[conv_transpose2d] input channels 3 are not divisible by groups(2)"));
  EXPECT_TRUE(throws_with([&] { conv_transpose2d(zeros({1, 4, 5, 5}), zeros({4, 2, 3, 3}), zeros({2}), g2); },
                          "[conv_transpose2d] bias (2) does not match the 4 output channels of weight (4, 2, 3, 3) x "
                          "groups(2)"));
  Conv2dOptions big_pad;
  big_pad.padding = {3, 3};
  EXPECT_TRUE(throws_with([&] { conv_transpose2d(zeros({1, 3, 2, 2}), zeros({3, 2, 3, 3}), Tensor(), big_pad); },
                          "gives output size (-2, -2), which is too small"));
}

TEST(Pool2d, ErrorMessages) {
  Pool2dOptions o;
  o.kernel_size = {3, 3};
  o.padding = {2, 0};
  EXPECT_TRUE(throws_with([&] { max_pool2d(zeros({1, 1, 5, 5}), o); },
                          "[max_pool2d] padding (2, 0) must be at most half the kernel size (3, 3)"));
  Pool2dOptions big;
  big.kernel_size = {6, 6};
  EXPECT_TRUE(throws_with([&] { avg_pool2d(zeros({1, 1, 5, 5}), big); },
                          "[avg_pool2d] input (1, 1, 5, 5) is too small for kernel_size (6, 6) with padding (0, 0) and "
                          "dilation (1, 1): output size would be (0, 0)"));
  Pool2dOptions dil;
  dil.dilation = {2, 2};
  EXPECT_TRUE(throws_with([&] { avg_pool2d(zeros({1, 1, 5, 5}), dil); },
                          "[avg_pool2d] dilation (2, 2) applies to max_pool2d only"));
  Pool2dOptions k0;
  k0.kernel_size = {0, 2};
  EXPECT_TRUE(throws_with([&] { max_pool2d(zeros({1, 1, 5, 5}), k0); }, "[max_pool2d] kernel_size must be >= 1, got (0, 2)"));
  EXPECT_TRUE(throws_with([&] { max_pool2d(zeros({5, 5}), {}); },
                          "[max_pool2d] expected input of rank 3 (C, H, W) or 4 (N, C, H, W), got (5, 5)"));
  EXPECT_TRUE(throws_with([&] { avg_pool2d(zeros({1, 1, 4, 4}, DType::i32), {}); },
                          "[avg_pool2d] dtype i32 is not supported (expected f32 or f64)"));
}

// Output sizes follow PyTorch's ceil_mode rule: the last window must start inside the input or
// its left padding (H=5, k=2, s=2, p=1: 4 windows by the ceiling, the last one dropped).
TEST(Pool2d, CeilModeOutputSizes) {
  Pool2dOptions o;
  o.kernel_size = {2, 2};
  o.padding = {1, 1};
  o.ceil_mode = true;
  EXPECT_EQ(max_pool2d(zeros({1, 1, 5, 5}), o).shape(), Shape({1, 1, 3, 3}));
  EXPECT_EQ(max_pool2d(zeros({1, 1, 6, 6}), o).shape(), Shape({1, 1, 4, 4}));
  o.ceil_mode = false;
  EXPECT_EQ(max_pool2d(zeros({1, 1, 5, 5}), o).shape(), Shape({1, 1, 3, 3}));
  EXPECT_EQ(avg_pool2d(zeros({1, 1, 6, 6}), o).shape(), Shape({1, 1, 4, 4}));
  Pool2dOptions k3;
  k3.kernel_size = {3, 3};
  k3.stride = {2, 2};
  k3.ceil_mode = true;
  EXPECT_EQ(avg_pool2d(zeros({1, 1, 8, 8}), k3).shape(), Shape({1, 1, 4, 4}));
  k3.ceil_mode = false;
  EXPECT_EQ(avg_pool2d(zeros({1, 1, 8, 8}), k3).shape(), Shape({1, 1, 3, 3}));
}

}  // namespace
}  // namespace ember
