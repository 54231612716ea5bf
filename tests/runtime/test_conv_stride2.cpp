// Tests for the direct stride-2 kernels of float32 conv2d (kernels/cpu/conv_stride2.cpp): the
// forward pass, the input gradient and the weight gradient (the first two are also
// conv_transpose2d's input gradient and forward) give the bits of the phase-plane GEMM path over odd
// sizes, paddings, dilation, groups, kernel sizes 1-5, one and many channels, long reductions
// (several GEMM K blocks), batch 1 and batches of several chunks and slices, and rows at the 8- and
// 16-lane limits; they match float64; they do not depend on the thread count; and they apply only
// where they should.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/conv_stride2.h"
#include "kernels/cpu/isa.h"
#include "kernels/kernels.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/parallel.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"

namespace ember {
namespace {

// Switches the direct stride-2 path on or off for one scope.
struct Stride2Switch {
  explicit Stride2Switch(bool on) { kernels::conv_stride2_enabled().store(on); }
  ~Stride2Switch() { kernels::conv_stride2_enabled().store(true); }
};

struct Case {
  int64_t N, C, K, H, W, k, pad, dil, groups, out_pad;
};

Conv2dOptions options(const Case& c) {
  Conv2dOptions o;
  o.stride = {2, 2};
  o.padding = {c.pad, c.pad};
  o.dilation = {c.dil, c.dil};
  o.groups = c.groups;
  return o;
}

int64_t conv_out(int64_t in, const Case& c) { return (in + 2 * c.pad - c.dil * (c.k - 1) - 1) / 2 + 1; }

// conv2d(x, w, b) and conv_transpose2d(xt, wt, b) with upstream gradients: y, dx, dw of each.
std::vector<Tensor> run(const Case& c, DType dtype) {
  Generator gen(41);
  const Tensor x0 = randn({c.N, c.C, c.H, c.W}, {}, &gen);
  const Tensor w0 = mul(randn({c.K, c.C / c.groups, c.k, c.k}, {}, &gen), 0.3);
  const Tensor gy0 = randn({c.N, c.K, conv_out(c.H, c), conv_out(c.W, c)}, {}, &gen);
  std::vector<Tensor> out;
  {
    Tensor x = x0.to(dtype).detach().requires_grad_(true), w = w0.to(dtype).detach().requires_grad_(true);
    Tensor y = conv2d(x, w, Tensor(), options(c));
    y.backward(gy0.to(dtype));
    out.insert(out.end(), {y, x.grad(), w.grad()});
  }
  {
    // The transpose maps (N, K, OH, OW) back to (N, C, H, W): its forward is the input-gradient kernel.
    Conv2dOptions o = options(c);
    o.output_padding = {c.out_pad, c.out_pad};
    Tensor x = gy0.to(dtype).detach().requires_grad_(true), w = w0.to(dtype).detach().requires_grad_(true);
    Tensor y = conv_transpose2d(x, w, Tensor(), o);
    y.backward(ones(y.shape(), TensorOptions(dtype)));
    out.insert(out.end(), {y, x.grad(), w.grad()});
  }
  return out;
}

kernels::ConvGeom geom(const Case& c) {
  return {c.N, c.C, c.H, c.W, c.K, c.k, c.k, conv_out(c.H, c), conv_out(c.W, c), 2, 2, c.pad, c.pad,
          c.dil, c.dil, c.groups};
}

// The autoencoder's layers, odd and even sizes, paddings 0-2 (and an output padding that leaves
// the transpose's last row and column to the padding), dilation 2, groups, kernels 1-5, one output
// or input channel, odd channel counts (a tile's second channel unused), reductions over more than
// one GEMM K block (C * k * k > 256), batch 1, rows of 8 and 16 lanes, tall images (several row
// tiles, the last one overlapping), and batches of several weight-gradient slices and chunks, with
// chunks of more than one K block (more than 256 plane columns).
const std::vector<Case> kCases = {
    {3, 1, 16, 28, 28, 3, 1, 1, 1, 1},  {2, 16, 32, 14, 14, 3, 1, 1, 1, 1}, {2, 32, 16, 7, 7, 3, 1, 1, 1, 0},
    {4, 16, 1, 14, 14, 3, 1, 1, 1, 1},  {1, 3, 5, 13, 11, 3, 1, 1, 1, 0},   {2, 4, 6, 9, 15, 5, 2, 1, 2, 1},
    {1, 2, 3, 10, 10, 3, 0, 2, 1, 1},   {2, 3, 3, 8, 9, 1, 0, 1, 1, 1},     {2, 40, 3, 6, 6, 3, 1, 1, 1, 1},
    {1, 2, 40, 16, 16, 4, 1, 1, 1, 0},  {2, 5, 4, 30, 29, 3, 1, 1, 1, 1},   {1, 2, 2, 1, 1, 3, 1, 1, 1, 0},
    {1, 3, 7, 40, 9, 3, 2, 1, 1, 1},    {3, 6, 6, 17, 16, 2, 0, 1, 3, 1},   {1, 1, 1, 5, 3, 3, 1, 1, 1, 1},
    {20, 16, 32, 14, 14, 3, 1, 1, 1, 1}, {9, 3, 40, 28, 28, 3, 1, 1, 1, 1},
};

TEST(Conv2dStride2, GivesTheGemmPathsBits) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(::testing::Message() << "N=" << c.N << " C=" << c.C << " K=" << c.K << " H=" << c.H << " W=" << c.W
                                      << " k=" << c.k << " pad=" << c.pad << " dil=" << c.dil << " groups=" << c.groups);
    if (kernels::detected_cpu_isa() == kernels::CpuIsa::Avx512) {
      EXPECT_TRUE(kernels::stride2_conv_applies(geom(c), kernels::ConvPass::Forward));
    }
    const std::vector<Tensor> got = run(c, DType::f32);
    std::vector<Tensor> gemm;
    {
      Stride2Switch off(false);
      gemm = run(c, DType::f32);
    }
    for (size_t k = 0; k < got.size(); ++k)
      EXPECT_TRUE(test::bit_equal(got[k], gemm[k])) << "output " << k << " (y, dx, dw of conv2d, then of the transpose)";
  }
}

double max_abs(const Tensor& t) {
  const Tensor c = t.to(DType::f64).contiguous();
  const double* p = c.data_ptr<double>();
  double m = 0;
  for (int64_t i = 0; i < c.numel(); ++i) m = std::max(m, std::fabs(p[i]));
  return m;
}

TEST(Conv2dStride2, MatchesFloat64) {
  for (const Case& c : kCases) {
    const std::vector<Tensor> got = run(c, DType::f32), ref = run(c, DType::f64);
    for (size_t k = 0; k < got.size(); ++k) {
      const double err = max_abs(sub(got[k].to(DType::f64), ref[k])), scale = std::max(max_abs(ref[k]), 1.0);
      EXPECT_LT(err / scale, 1e-5) << "C=" << c.C << " K=" << c.K << " H=" << c.H << " output " << k;
    }
  }
}

// Images are split over threads, each computed whole.
TEST(Conv2dStride2, ResultsDoNotDependOnThreadCount) {
  const int threads = get_num_threads();
  for (const Case& c : {Case{37, 1, 16, 28, 28, 3, 1, 1, 1, 1}, Case{13, 16, 32, 14, 14, 3, 1, 1, 1, 1}}) {
    std::vector<std::vector<Tensor>> results;
    for (int t : {1, 2, 3}) {
      set_num_threads(t);
      results.push_back(run(c, DType::f32));
    }
    set_num_threads(threads);
    for (size_t r = 1; r < results.size(); ++r)
      for (size_t k = 0; k < results[0].size(); ++k) EXPECT_TRUE(test::bit_equal(results[r][k], results[0][k]));
  }
}

// The CPU kernels add conv2d's and conv_transpose2d's bias as they store the output (the direct
// stride-2 kernels) or right after (the others): the bits of adding it to the finished output.
TEST(Conv2dStride2, BiasGivesTheBitsOfAddingItAfterwards) {
  for (DType dt : {DType::f32, DType::f64})
    for (int64_t stride : {1, 2})
      for (bool direct : {true, false}) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " stride " << stride << " direct " << direct);
        Stride2Switch on(direct);
        Generator gen(43);
        // 20 and 24 channels at stride 1 take the Winograd kernels.
        const Tensor x = randn({3, 20, 14, 13}, {}, &gen).to(dt), w = randn({24, 20, 3, 3}, {}, &gen).to(dt);
        const Tensor b = randn({24}, {}, &gen).to(dt), wt = randn({20, 5, 3, 3}, {}, &gen).to(dt);
        const Tensor bt = randn({5}, {}, &gen).to(dt);
        Conv2dOptions o;
        o.stride = {stride, stride};
        o.padding = {1, 1};
        EXPECT_TRUE(test::bit_equal(conv2d(x, w, b, o), add(conv2d(x, w, Tensor(), o), b.view({1, 24, 1, 1}))));
        o.output_padding = {stride - 1, stride - 1};
        EXPECT_TRUE(test::bit_equal(conv_transpose2d(x, wt, bt, o),
                                    add(conv_transpose2d(x, wt, Tensor(), o), bt.view({1, 5, 1, 1}))));
        const Tensor x1 = randn({2, 1, 28, 28}, {}, &gen).to(dt), w1 = randn({16, 1, 3, 3}, {}, &gen).to(dt);
        const Tensor b1 = randn({16}, {}, &gen).to(dt), w4 = randn({1, 1, 3, 3}, {}, &gen).to(dt);
        const Tensor b4 = randn({1}, {}, &gen).to(dt);
        o.output_padding = {0, 0};
        EXPECT_TRUE(test::bit_equal(conv2d(x1, w1, b1, o), add(conv2d(x1, w1, Tensor(), o), b1.view({1, 16, 1, 1}))));
        o.output_padding = {stride - 1, stride - 1};
        EXPECT_TRUE(test::bit_equal(conv_transpose2d(x1, w4, b4, o),
                                    add(conv_transpose2d(x1, w4, Tensor(), o), b4.view({1, 1, 1, 1}))));
      }
}

TEST(Conv2dStride2, AppliesOnlyWhereItShould) {
  using kernels::ConvPass;
  if (kernels::detected_cpu_isa() != kernels::CpuIsa::Avx512) GTEST_SKIP() << "needs AVX-512";
  const kernels::ConvGeom base = geom({2, 16, 32, 14, 14, 3, 1, 1, 1, 1});
  EXPECT_TRUE(kernels::stride2_conv_applies(base, ConvPass::Forward));
  EXPECT_TRUE(kernels::stride2_conv_applies(base, ConvPass::Input));
  EXPECT_TRUE(kernels::stride2_conv_applies(base, ConvPass::Weight));
  kernels::ConvGeom g = base;
  g.sh = g.sw = 1;  // stride 1
  EXPECT_FALSE(kernels::stride2_conv_applies(g, ConvPass::Forward));
  g = geom({1, 2, 2, 40, 40, 3, 1, 1, 1, 1});  // output rows of 20 (and dx phase rows of 21)
  EXPECT_FALSE(kernels::stride2_conv_applies(g, ConvPass::Forward));
  EXPECT_FALSE(kernels::stride2_conv_applies(g, ConvPass::Input));
  EXPECT_FALSE(kernels::stride2_conv_applies(g, ConvPass::Weight));
  g = geom({1, 2, 2, 29, 29, 3, 1, 1, 1, 1});  // rows of 16 with the shift: 15 + 1
  EXPECT_TRUE(kernels::stride2_conv_applies(g, ConvPass::Forward));
  kernels::set_cpu_isa_cap(kernels::CpuIsa::Avx2);
  EXPECT_FALSE(kernels::stride2_conv_applies(base, ConvPass::Forward));
  kernels::set_cpu_isa_cap(kernels::CpuIsa::Avx512);
  {
    Stride2Switch off(false);
    EXPECT_FALSE(kernels::stride2_conv_applies(base, ConvPass::Forward));
  }
}

}  // namespace
}  // namespace ember
