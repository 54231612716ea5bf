// Tests for the Winograd path of float32 3x3 stride-1 conv2d (kernels/cpu/conv_winograd.cpp):
// forward, input gradient and weight gradient against the float64 direct kernel over odd sizes,
// paddings 0-2, several channel and batch counts; the same against the float32 direct kernel;
// conv_transpose2d with stride 1; independence from the thread count and the ISA variant; and the
// shapes it must leave to the direct kernel.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/conv_winograd.h"
#include "kernels/cpu/isa.h"
#include "kernels/kernels.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/parallel.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"

namespace ember {
namespace {

// Switches the Winograd path on or off for one scope.
struct WinogradSwitch {
  explicit WinogradSwitch(bool on) { kernels::conv_winograd_enabled().store(on); }
  ~WinogradSwitch() { kernels::conv_winograd_enabled().store(true); }
};

struct Case {
  int64_t N, C, K, H, W, pad;
};

// y, dx, dw of conv2d(x, w, b) with upstream gradient gy, as float64 tensors.
std::vector<Tensor> run_conv(const Tensor& x0, const Tensor& w0, const Tensor& b0, const Tensor& gy, int64_t pad,
                             DType dtype) {
  Tensor x = x0.to(dtype).detach().requires_grad_(true), w = w0.to(dtype).detach().requires_grad_(true);
  Tensor b = b0.to(dtype).detach().requires_grad_(true);
  Conv2dOptions o;
  o.padding = {pad, pad};
  Tensor y = conv2d(x, w, b, o);
  y.backward(gy.to(dtype));
  return {y.to(DType::f64), x.grad().to(DType::f64), w.grad().to(DType::f64), b.grad().to(DType::f64)};
}

double max_abs(const Tensor& t) {
  const Tensor c = t.contiguous();
  const double* p = c.data_ptr<double>();
  double m = 0;
  for (int64_t i = 0; i < c.numel(); ++i) m = std::max(m, std::fabs(p[i]));
  return m;
}

// max |a - b| / max |b|
double rel_error(const Tensor& a, const Tensor& b) {
  const Tensor d = sub(a, b);
  const double scale = max_abs(b);
  return scale == 0 ? max_abs(d) : max_abs(d) / scale;
}

kernels::ConvGeom geom(const Case& c) {
  const int64_t OH = c.H + 2 * c.pad - 2, OW = c.W + 2 * c.pad - 2;
  return {c.N, c.C, c.H, c.W, c.K, 3, 3, OH, OW, 1, 1, c.pad, c.pad, 1, 1, 1};
}

// Odd and even sizes (tiles cut by the output's edge, images narrower than a tile), paddings 0-2,
// channel counts at and above the threshold, one image and several.
const std::vector<Case> kCases = {
    {1, 16, 16, 8, 8, 1},  {3, 17, 33, 9, 11, 0},  {2, 35, 16, 7, 5, 2}, {4, 32, 24, 3, 3, 1},
    {2, 16, 20, 3, 4, 0},  {5, 24, 40, 13, 6, 1},  {1, 64, 64, 1, 1, 1}, {2, 48, 32, 12, 12, 2},
    {7, 20, 16, 2, 9, 1},  {3, 40, 48, 16, 16, 1},
};

// The bound seen: relative errors (max |error| / max |float64 value|) up to ~1e-5 at 256 channels
// (the direct float32 kernel: ~3e-7), growing slowly with the channel count; 1e-4 leaves room.
// The sizes here give 2e-6 to 7e-6.
constexpr double kTol = 1e-4;

TEST(Conv2dWinograd, MatchesFloat64DirectKernel) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(::testing::Message() << "N=" << c.N << " C=" << c.C << " K=" << c.K << " H=" << c.H << " W=" << c.W
                                      << " pad=" << c.pad);
    ASSERT_TRUE(kernels::winograd_conv_applies(geom(c), kernels::ConvPass::Forward));
    Generator gen(31);
    const kernels::ConvGeom g = geom(c);
    const Tensor x = randn({c.N, c.C, c.H, c.W}, {}, &gen);
    const Tensor w = mul(randn({c.K, c.C, 3, 3}, {}, &gen), 1.0 / std::sqrt(9.0 * static_cast<double>(c.C)));
    const Tensor b = randn({c.K}, {}, &gen), gy = randn({c.N, c.K, g.OH, g.OW}, {}, &gen);
    const std::vector<Tensor> ref = run_conv(x, w, b, gy, c.pad, DType::f64);
    const std::vector<Tensor> got = run_conv(x, w, b, gy, c.pad, DType::f32);
    std::vector<Tensor> direct;
    {
      WinogradSwitch off(false);
      direct = run_conv(x, w, b, gy, c.pad, DType::f32);
    }
    for (size_t k = 0; k < ref.size(); ++k) {
      SCOPED_TRACE(::testing::Message() << "output " << k << " (y, dx, dw, db)");
      EXPECT_LT(rel_error(got[k], ref[k]), kTol);
      EXPECT_LT(rel_error(got[k], direct[k]), kTol);
      EXPECT_LT(rel_error(direct[k], ref[k]), 1e-5);
    }
  }
}

// The forward chunks and the weight gradient's per-point GEMMs are fixed by the shapes.
TEST(Conv2dWinograd, ResultsDoNotDependOnThreadCount) {
  const int threads = get_num_threads();
  Generator gen(32);
  const Tensor x0 = randn({9, 24, 13, 10}, {}, &gen), w0 = randn({20, 24, 3, 3}, {}, &gen);
  const Tensor gy = randn({9, 20, 13, 10}, {}, &gen);
  Conv2dOptions o;
  o.padding = {1, 1};
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

TEST(Conv2dWinograd, EmptyBatchGivesZeroWeightGradient) {
  Tensor x = zeros({0, 16, 5, 5}).requires_grad_(true), w = ones({16, 16, 3, 3}).requires_grad_(true);
  Conv2dOptions o;
  o.padding = {1, 1};
  Tensor y = conv2d(x, w, Tensor(), o);
  EXPECT_EQ(y.shape(), Shape({0, 16, 5, 5}));
  y.backward(zeros({0, 16, 5, 5}));
  EXPECT_TRUE(test::bit_equal(w.grad(), zeros({16, 16, 3, 3})));
}

// The transforms run compiled for the widest ISA; every variant rounds alike (no contraction into
// FMA), so the results are bit-identical under each ISA cap.
TEST(Conv2dWinograd, EveryIsaVariantGivesTheSameBits) {
  Generator gen(36);
  const Tensor x0 = randn({3, 20, 9, 7}, {}, &gen), w0 = randn({24, 20, 3, 3}, {}, &gen);
  const Tensor gy = randn({3, 24, 9, 7}, {}, &gen);
  auto run = [&] {
    Tensor x = x0.detach().requires_grad_(true), w = w0.detach().requires_grad_(true);
    Conv2dOptions o;
    o.padding = {1, 1};
    Tensor y = conv2d(x, w, Tensor(), o);
    y.backward(gy);
    return std::vector<Tensor>{y, x.grad(), w.grad()};
  };
  const std::vector<Tensor> ref = run();
  for (kernels::CpuIsa isa : {kernels::CpuIsa::Baseline, kernels::CpuIsa::Avx2}) {
    if (kernels::detected_cpu_isa() < isa) continue;
    kernels::set_cpu_isa_cap(isa);
    const std::vector<Tensor> got = run();
    kernels::set_cpu_isa_cap(kernels::CpuIsa::Avx512);
    for (size_t k = 0; k < 3; ++k) EXPECT_TRUE(test::bit_equal(got[k], ref[k])) << "isa " << static_cast<int>(isa);
  }
}

// Batches with many chunks (a batch of small images, and wide images of one band per chunk).
TEST(Conv2dWinograd, ManyChunksMatchFloat64) {
  for (const Case& c : {Case{70, 16, 16, 6, 6, 1}, Case{2, 16, 16, 40, 75, 1}}) {
    Generator gen(33);
    const Tensor x = randn({c.N, c.C, c.H, c.W}, {}, &gen), w = mul(randn({c.K, c.C, 3, 3}, {}, &gen), 0.1);
    const Tensor b = randn({c.K}, {}, &gen), gy = randn({c.N, c.K, c.H, c.W}, {}, &gen);
    const std::vector<Tensor> ref = run_conv(x, w, b, gy, c.pad, DType::f64);
    const std::vector<Tensor> got = run_conv(x, w, b, gy, c.pad, DType::f32);
    for (size_t k = 0; k < ref.size(); ++k) EXPECT_LT(rel_error(got[k], ref[k]), kTol) << "output " << k;
  }
}

// conv_transpose2d with stride 1 runs the same kernels with the roles swapped (its forward is the
// input-gradient kernel, its input gradient the forward kernel).
TEST(Conv2dWinograd, ConvTransposeStride1MatchesFloat64) {
  for (int64_t pad : {0, 1, 2}) {
    Generator gen(35);
    const Tensor x0 = randn({3, 24, 7, 10}, {}, &gen), w0 = mul(randn({24, 20, 3, 3}, {}, &gen), 0.1);
    const int64_t OH = 7 + 2 - 2 * pad, OW = 10 + 2 - 2 * pad;
    const Tensor gy = randn({3, 20, OH, OW}, {}, &gen);
    std::vector<std::vector<Tensor>> out;
    for (DType dt : {DType::f64, DType::f32}) {
      Tensor x = x0.to(dt).detach().requires_grad_(true), w = w0.to(dt).detach().requires_grad_(true);
      Conv2dOptions o;
      o.padding = {pad, pad};
      Tensor y = conv_transpose2d(x, w, Tensor(), o);
      y.backward(gy.to(dt));
      out.push_back({y.to(DType::f64), x.grad().to(DType::f64), w.grad().to(DType::f64)});
    }
    for (size_t k = 0; k < 3; ++k) EXPECT_LT(rel_error(out[1][k], out[0][k]), kTol) << "pad " << pad << " output " << k;
  }
}

TEST(Conv2dWinograd, AppliesOnlyWhereItShould) {
  using kernels::ConvPass;
  const kernels::ConvGeom base = geom({2, 32, 32, 8, 8, 1});
  EXPECT_TRUE(kernels::winograd_conv_applies(base, ConvPass::Forward));
  kernels::ConvGeom g = base;
  g.C = 8;  // few channels: the direct kernel is as fast
  EXPECT_FALSE(kernels::winograd_conv_applies(g, ConvPass::Forward));
  g = base;
  g.sh = g.sw = 2;
  EXPECT_FALSE(kernels::winograd_conv_applies(g, ConvPass::Input));
  g = base;
  g.dh = g.dw = 2;
  EXPECT_FALSE(kernels::winograd_conv_applies(g, ConvPass::Weight));
  g = base;
  g.groups = 2;
  EXPECT_FALSE(kernels::winograd_conv_applies(g, ConvPass::Forward));
  g = base;
  g.kh = g.kw = 5;
  EXPECT_FALSE(kernels::winograd_conv_applies(g, ConvPass::Forward));
  g = base;
  g.ph = 3;  // the input gradient's padding 2 - p would be negative
  EXPECT_FALSE(kernels::winograd_conv_applies(g, ConvPass::Input));
  g = base;
  g.N = 0;  // an empty batch: the direct kernels (a zero weight gradient)
  EXPECT_FALSE(kernels::winograd_conv_applies(g, ConvPass::Weight));
  WinogradSwitch off(false);
  EXPECT_FALSE(kernels::winograd_conv_applies(base, ConvPass::Forward));
}

// float64 keeps the direct kernel: bit-identical with the switch on and off.
TEST(Conv2dWinograd, Float64UsesTheDirectKernel) {
  Generator gen(34);
  const Tensor x = randn({2, 16, 6, 6}, TensorOptions(DType::f64), &gen);
  const Tensor w = randn({16, 16, 3, 3}, TensorOptions(DType::f64), &gen);
  Conv2dOptions o;
  o.padding = {1, 1};
  const Tensor on = conv2d(x, w, Tensor(), o);
  WinogradSwitch off(false);
  EXPECT_TRUE(test::bit_equal(on, conv2d(x, w, Tensor(), o)));
}

}  // namespace
}  // namespace ember
