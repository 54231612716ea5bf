// CUDA kernels beyond the registry parity table: conversions between every dtype pair, fills,
// integer elementwise ops, the bit-for-bit guarantees (serial reductions, gathered pooling and
// index_add backward match the CPU exactly; every reduction repeats exactly), NaN and tie rules,
// the direct convolution kernels, cuBLAS operand layouts, device errors, the caching allocator and
// pinned host memory. Tests that need a device skip without one.
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "ember/config.h"
#include "kernels/kernels.h"
#include "ember/runtime/allocator.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/device.h"
#include "ember/runtime/device_checks.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"
#include "ember/train/data/dataloader.h"
#include "ember/train/data/dataset.h"

namespace ember {
namespace {

#define REQUIRE_CUDA() \
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason()

const Device kGPU = cuda_device(0);
const DType kAllTypes[] = {DType::f32, DType::f64, DType::f16, DType::bf16,
                           DType::i32, DType::i64, DType::u8,  DType::b8};

bool is_int_type(DType t) { return t == DType::i32 || t == DType::i64 || t == DType::u8; }

// Source values for a conversion from src to dst whose CPU result is defined behaviour: no NaN,
// inf or out-of-range values into integer types, no negatives into u8.
std::vector<double> conversion_values(DType src, DType dst) {
  std::vector<double> v{0, 1, 2, 3, 7, 100, 127, 42, 5, 9};
  if (is_floating(src)) {
    for (double x : {0.5, 2.75, 99.9, 1e-3, 3.25, 0.0625}) v.push_back(x);
    if (dst != DType::u8) for (double x : {-0.5, -2.75, -100.0, -1.0}) v.push_back(x);
    if (!is_int_type(dst)) {
      for (double x : {1e30, -1e-30, 65519.0, 65520.0, 3.0e-8, 6.0e-8, 1.0 / 3.0, 1e-40})
        v.push_back(x);
      const double inf = std::numeric_limits<double>::infinity();
      v.push_back(inf);
      v.push_back(-inf);
      v.push_back(std::nan(""));
    }
  } else if (src != DType::u8 && src != DType::b8 && dst != DType::u8) {
    for (double x : {-1.0, -7.0, -128.0}) v.push_back(x);
  }
  if (src == DType::b8)
    for (double& x : v) x = x != 0.0 ? 1.0 : 0.0;
  return v;
}

// Same dtype, shape and values, NaN equal to NaN whatever its payload: a GPU converts a NaN between
// f32 and f64 to the canonical NaN, x86 keeps the payload; every other value must match exactly
// (through double, which holds every value of every dtype here).
::testing::AssertionResult same_values(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype())
    return ::testing::AssertionFailure() << "dtype " << dtype_name(a.dtype()) << " vs " << dtype_name(b.dtype());
  return test::allclose(a, b, 0.0, 0.0);
}

TEST(CudaKernels, CopyConvertsEveryDtypePairLikeTheCpu) {
  REQUIRE_CUDA();
  for (DType s : kAllTypes) {
    for (DType d : kAllTypes) {
      SCOPED_TRACE(std::string(dtype_name(s)) + " -> " + dtype_name(d));
      std::vector<double> v = conversion_values(s, d);
      const int64_t n = static_cast<int64_t>(v.size());
      Tensor src = test::make_tensor(v, {n}, s);
      EXPECT_TRUE(same_values(src.to(kGPU).to(d).to(kCPU), src.to(d)));
      // strided: a transposed 2-D view of the values repeated
      std::vector<double> v2(v);
      v2.insert(v2.end(), v.begin(), v.end());
      Tensor s2 = test::make_tensor(v2, {2, n}, s);
      EXPECT_TRUE(same_values(s2.to(kGPU).t().to(d).to(kCPU), s2.t().to(d)));
    }
  }
}

TEST(CudaKernels, FillMatchesTheCpuForEveryDtype) {
  REQUIRE_CUDA();
  for (DType t : kAllTypes) {
    for (double value : {0.0, 2.5, -1.0, 1e-3, 300.0}) {
      if (t == DType::u8 && value < 0) continue;
      SCOPED_TRACE(std::string(dtype_name(t)) + " " + std::to_string(value));
      Tensor c = empty({5, 7}, t);
      c.fill_(value);
      Tensor g = empty({5, 7}, TensorOptions(t).with_device(kGPU));
      g.fill_(value);
      EXPECT_TRUE(test::bit_equal(g.to(kCPU), c));
      // a strided fill touches only the view
      Tensor gz = zeros({5, 7}, TensorOptions(t).with_device(kGPU));
      gz.slice(1, 1, 7, 3).fill_(value);
      Tensor cz = zeros({5, 7}, t);
      cz.slice(1, 1, 7, 3).fill_(value);
      EXPECT_TRUE(test::bit_equal(gz.to(kCPU), cz));
    }
  }
}

TEST(CudaKernels, IntegerElementwiseOpsMatchTheCpu) {
  REQUIRE_CUDA();
  for (DType t : {DType::i32, DType::i64}) {
    SCOPED_TRACE(dtype_name(t));
    std::vector<double> av, bv;
    for (int i = 0; i < 35; ++i) {
      av.push_back(i * 37 % 19 - 9);
      bv.push_back(i * 11 % 7 - 3);
    }
    Tensor a = test::make_tensor(av, {5, 7}, t), b = test::make_tensor(bv, {5, 7}, t);
    Tensor ga = a.to(kGPU), gb = b.to(kGPU);
    EXPECT_TRUE(test::bit_equal(add(ga, gb).to(kCPU), add(a, b)));
    EXPECT_TRUE(test::bit_equal(sub(ga, gb).to(kCPU), sub(a, b)));
    EXPECT_TRUE(test::bit_equal(mul(ga, gb.t().t()).to(kCPU), mul(a, b)));
    EXPECT_TRUE(test::bit_equal(maximum(ga, gb).to(kCPU), maximum(a, b)));
    EXPECT_TRUE(test::bit_equal(eq(ga, gb).to(kCPU), eq(a, b)));
    EXPECT_TRUE(test::bit_equal(lt(ga, gb.slice(0, 0, 1)).to(kCPU), lt(a, b.slice(0, 0, 1))));
    EXPECT_TRUE(test::bit_equal(neg(ga).to(kCPU), neg(a)));
    EXPECT_TRUE(test::bit_equal(abs(ga).to(kCPU), abs(a)));
    EXPECT_TRUE(test::bit_equal(add(ga, 3.0).to(kCPU), add(a, 3.0)));
  }
}

TEST(CudaKernels, ElementwiseOnMisalignedViewsTakesTheStridedPath) {
  REQUIRE_CUDA();
  // narrow(0, 1, ...) offsets the data by one element, so the vectorised path must not be used
  std::vector<double> v(1030);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i) * 0.5;
  Tensor x = test::make_tensor(v, {1030}, DType::f32);
  Tensor gx = x.to(kGPU);
  EXPECT_TRUE(test::bit_equal(mul(gx.narrow(0, 1, 1027), gx.narrow(0, 3, 1027)).to(kCPU),
                              mul(x.narrow(0, 1, 1027), x.narrow(0, 3, 1027))));
  EXPECT_TRUE(test::bit_equal(add(gx.narrow(0, 1, 1029), 0.25).to(kCPU), add(x.narrow(0, 1, 1029), 0.25)));
  EXPECT_TRUE(test::allclose(exp(gx.narrow(0, 1, 1029) * 0.01).to(kCPU), exp(x.narrow(0, 1, 1029) * 0.01), 1e-6, 0));
}

TEST(CudaKernels, SerialReductionsEqualTheCpuBitForBit) {
  REQUIRE_CUDA();
  Generator g(3);
  // few reduced elements: one thread per output in the CPU's order (double accumulator)
  Tensor a = rand({20, 3001}, {}, &g);
  EXPECT_TRUE(test::bit_equal(sum(a.to(kGPU), {0}).to(kCPU), sum(a, {0})));
  // many outputs with far-apart reduced elements: also serial
  Tensor b = rand({40, 2051}, DType::f64, &g);
  EXPECT_TRUE(test::bit_equal(sum(b.to(kGPU), {0}).to(kCPU), sum(b, {0})));
  EXPECT_TRUE(test::bit_equal(max(b.to(kGPU), 0).values.to(kCPU), max(b, 0).values));
  EXPECT_TRUE(test::bit_equal(max(b.to(kGPU), 0).indices.to(kCPU), max(b, 0).indices));
}

// Strided reductions with few outputs, or many rows (bias gradients: [rows, outputs] summed over
// rows) take the coalesced tile kernel, chunked over rows: sums close to the CPU's and identical
// run to run, max and argmax equal to the CPU's whatever the split.
TEST(CudaKernels, StridedReductionsOverManyRowsUseCoalescedTiles) {
  REQUIRE_CUDA();
  Generator g(5);
  const std::vector<std::vector<int64_t>> shapes = {{4096, 300}, {100000, 7}, {5000, 2000}, {33, 1}, {257, 31}};
  for (const auto& dims : shapes) {
    SCOPED_TRACE(Shape(dims).str());
    for (DType dt : {DType::f32, DType::f64}) {
      Tensor x = randn(Shape(dims), TensorOptions(dt), &g);
      Tensor xg = x.to(kGPU);
      Tensor s = sum(xg, {0}).to(kCPU);
      EXPECT_TRUE(test::allclose(s, sum(x, {0}), 1e-12, dt == DType::f32 ? 1e-6 : 1e-12));
      EXPECT_TRUE(test::bit_equal(sum(xg, {0}).to(kCPU), s));
      EXPECT_TRUE(test::bit_equal(max(xg, 0).values.to(kCPU), max(x, 0).values));
      EXPECT_TRUE(test::bit_equal(max(xg, 0).indices.to(kCPU), max(x, 0).indices));
      // the same through a transposed view (reduced dim innermost in shape, strided in memory)
      EXPECT_TRUE(test::allclose(sum(xg.t(), {1}).to(kCPU), sum(x, {0}), 1e-12, dt == DType::f32 ? 1e-6 : 1e-12));
    }
  }
}

TEST(CudaKernels, EveryReductionIsReproducibleRunToRun) {
  REQUIRE_CUDA();
  Generator g(4);
  Tensor x = randn({3, 200003}, TensorOptions(DType::f32).with_device(kGPU), &g);
  Tensor first = sum(x).to(kCPU), rows = sum(x, {1}).to(kCPU), sm = softmax(x, 1).to(kCPU);
  for (int rep = 0; rep < 3; ++rep) {
    EXPECT_TRUE(test::bit_equal(sum(x).to(kCPU), first));
    EXPECT_TRUE(test::bit_equal(sum(x, {1}).to(kCPU), rows));
    EXPECT_TRUE(test::bit_equal(softmax(x, 1).to(kCPU), sm));
  }
  // and close to the CPU's serial double sum
  EXPECT_TRUE(test::allclose(first, sum(x.to(kCPU)), 1e-6, 1e-4));
}

TEST(CudaKernels, MaxPrefersFirstNaNThenFirstMaximum) {
  REQUIRE_CUDA();
  for (int64_t n : {7, 33, 5000}) {  // serial path and block path
    SCOPED_TRACE(n);
    std::vector<double> v(static_cast<size_t>(3 * n), 1.0);
    // row 0: ties everywhere (first index wins); row 1: max at n-2 and n-1 (first wins);
    // row 2: NaNs at 4 and n-1 (first NaN wins)
    v[static_cast<size_t>(n + n - 2)] = 5.0;
    v[static_cast<size_t>(n + n - 1)] = 5.0;
    v[static_cast<size_t>(2 * n + 4)] = std::nan("");
    v[static_cast<size_t>(2 * n + n - 1)] = std::nan("");
    Tensor x = test::make_tensor(v, {3, n}, DType::f32);
    ValuesIndices c = max(x, 1), gi = max(x.to(kGPU), 1);
    EXPECT_TRUE(test::bit_equal(gi.indices.to(kCPU), c.indices));
    EXPECT_TRUE(test::allclose(gi.values.to(kCPU), c.values, 0, 0));
    EXPECT_EQ(test::values_f64(c.indices), (std::vector<double>{0, static_cast<double>(n - 2), 4}));
  }
}

TEST(CudaKernels, IndexAddBackwardEqualsTheCpuBitForBit) {
  REQUIRE_CUDA();
  Generator g(5);
  Tensor w = rand({50, 16}, {}, &g).requires_grad_(true);
  std::vector<int64_t> idx(2000);
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>((i * i + 3 * i) % 37);
  Tensor ids = from_vector(idx, {40, 50});
  Tensor go = rand({40, 50, 16}, {}, &g);
  embedding(w, ids).backward(go);
  Tensor gw = w.detach().to(kGPU).requires_grad_(true);
  embedding(gw, ids.to(kGPU)).backward(go.to(kGPU));
  EXPECT_TRUE(test::bit_equal(gw.grad().to(kCPU), w.grad()));
}

TEST(CudaKernels, PoolingBackwardEqualsTheCpuBitForBit) {
  REQUIRE_CUDA();
  Generator g(6);
  Pool2dOptions o;
  o.kernel_size = {3, 3};
  o.stride = {1, 2};
  o.padding = {1, 1};
  for (bool is_max : {true, false}) {
    SCOPED_TRACE(is_max ? "max" : "avg");
    Tensor x = rand({2, 3, 11, 12}, {}, &g).requires_grad_(true);
    Tensor go = rand(is_max ? max_pool2d(x, o).shape() : avg_pool2d(x, o).shape(), {}, &g);
    (is_max ? max_pool2d(x, o) : avg_pool2d(x, o)).backward(go);
    Tensor gx = x.detach().to(kGPU).requires_grad_(true);
    Tensor gy = is_max ? max_pool2d(gx, o) : avg_pool2d(gx, o);
    EXPECT_TRUE(test::bit_equal(gy.detach().to(kCPU), (is_max ? max_pool2d(x, o) : avg_pool2d(x, o)).detach()));
    gy.backward(go.to(kGPU));
    EXPECT_TRUE(test::bit_equal(gx.grad().to(kCPU), x.grad()));
  }
}

TEST(CudaKernels, MaxPoolPropagatesNaNLikeTheCpu) {
  REQUIRE_CUDA();
  std::vector<double> v(36);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i % 7);
  v[8] = std::nan("");
  v[9] = std::nan("");
  Tensor x = test::make_tensor(v, {1, 1, 6, 6}, DType::f64, true);
  Pool2dOptions o;
  o.kernel_size = {2, 2};
  Tensor y = max_pool2d(x, o);
  Tensor gx = x.detach().to(kGPU).requires_grad_(true);
  Tensor gy = max_pool2d(gx, o);
  EXPECT_TRUE(test::allclose(gy.to(kCPU), y, 0, 0));
  sum(y).backward();
  sum(gy).backward();
  EXPECT_TRUE(test::bit_equal(gx.grad().to(kCPU), x.grad()));
}

// Runs conv2d / conv_transpose2d forward and backward on the device with the given environment
// switch and returns outputs and gradients on the CPU.
std::vector<Tensor> conv_run(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& o, bool transposed,
                             Device d) {
  Tensor xd = x.detach().to(d).requires_grad_(true), wd = w.detach().to(d).requires_grad_(true),
         bd = b.detach().to(d).requires_grad_(true);
  Tensor y = transposed ? conv_transpose2d(xd, wd, bd, o) : conv2d(xd, wd, bd, o);
  Generator g(9);
  sum(mul(y, rand(y.shape(), TensorOptions(y.dtype()), &g).to(d))).backward();
  return {y.detach().to(kCPU), xd.grad().to(kCPU), wd.grad().to(kCPU), bd.grad().to(kCPU)};
}

TEST(CudaKernels, DirectConvolutionKernelsMatchTheCpu) {
  REQUIRE_CUDA();
  Generator g(7);
  struct Geo {
    Shape x, w;
    Conv2dOptions o;
    bool transposed;
  };
  Conv2dOptions strided;
  strided.stride = {2, 1};
  strided.padding = {1, 2};
  strided.dilation = {1, 2};
  Conv2dOptions grouped;
  grouped.groups = 2;
  grouped.padding = {1, 1};
  Conv2dOptions up;
  up.stride = {2, 2};
  up.padding = {1, 1};
  up.output_padding = {1, 0};
  const std::vector<Geo> geos = {{{2, 3, 9, 10}, {4, 3, 3, 3}, strided, false},
                                 {{1, 4, 6, 7}, {6, 2, 3, 3}, grouped, false},
                                 {{2, 4, 5, 4}, {4, 3, 3, 3}, up, true}};
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Geo& geo : geos) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " x" + geo.x.str() + (geo.transposed ? " transposed" : ""));
      Tensor x = rand(geo.x, dt, &g), w = rand(geo.w, dt, &g);
      Tensor b = rand({geo.transposed ? geo.w[1] * geo.o.groups : geo.w[0]}, dt, &g);
      std::vector<Tensor> cpu = conv_run(x, w, b, geo.o, geo.transposed, kCPU);
      setenv("EMBER_DISABLE_CUDNN", "1", 1);
      std::vector<Tensor> direct = conv_run(x, w, b, geo.o, geo.transposed, kGPU);
      unsetenv("EMBER_DISABLE_CUDNN");
      std::vector<Tensor> cudnn = conv_run(x, w, b, geo.o, geo.transposed, kGPU);
      const double rtol = dt == DType::f32 ? 1e-4 : 1e-10, atol = dt == DType::f32 ? 1e-5 : 1e-12;
      for (size_t i = 0; i < cpu.size(); ++i) {
        EXPECT_TRUE(test::allclose(direct[i], cpu[i], rtol, atol)) << "direct, result " << i;
        EXPECT_TRUE(test::allclose(cudnn[i], cpu[i], rtol, atol)) << "cudnn, result " << i;
      }
    }
  }
}

TEST(CudaKernels, MatmulTakesEveryOperandLayout) {
  REQUIRE_CUDA();
  Generator g(8);
  for (DType dt : {DType::f32, DType::f64}) {
    SCOPED_TRACE(dtype_name(dt));
    const double rtol = dt == DType::f32 ? 1e-4 : 1e-11;
    Tensor a = rand({4, 7, 13}, dt, &g), b = rand({4, 13, 5}, dt, &g);
    Tensor ga = a.to(kGPU), gb = b.to(kGPU);
    // row-major, column-major (transposed storage), batch stride 0, broadcast row (stride 0 rows)
    EXPECT_TRUE(test::allclose(matmul(ga, gb).to(kCPU), matmul(a, b), rtol, 1e-6));
    Tensor at = a.transpose(1, 2).contiguous().transpose(1, 2), bt = b.transpose(1, 2).contiguous().transpose(1, 2);
    EXPECT_TRUE(test::allclose(matmul(at.to(kGPU).transpose(1, 2).contiguous().transpose(1, 2),
                                      bt.to(kGPU).transpose(1, 2).contiguous().transpose(1, 2))
                                   .to(kCPU),
                               matmul(a, b), rtol, 1e-6));
    Tensor row = rand({1, 13}, dt, &g);
    EXPECT_TRUE(test::allclose(matmul(row.to(kGPU).expand({7, 13}), gb.select(0, 1)).to(kCPU),
                               matmul(row.expand({7, 13}), b.select(0, 1)), rtol, 1e-6));
    EXPECT_TRUE(test::allclose(matmul(ga, gb.select(0, 2)).to(kCPU), matmul(a, b.select(0, 2)), rtol, 1e-6));
    // K == 0 gives zeros
    Tensor z = matmul(empty({3, 0}, TensorOptions(dt).with_device(kGPU)), empty({0, 4}, TensorOptions(dt).with_device(kGPU)));
    EXPECT_TRUE(test::allclose(z.to(kCPU), zeros({3, 4}, dt), 0, 0));
  }
}

// Read at the op (EMBER_SYNC_DEVICE_CHECKS); test_steady_step.cpp has the deferred reading.
TEST(CudaKernels, NllLossRejectsAnOutOfRangeTargetOnTheDevice) {
  REQUIRE_CUDA();
  set_sync_device_checks(true);
  Tensor logits = zeros({4, 10}, TensorOptions(DType::f32).with_device(kGPU));
  Tensor target = from_vector(std::vector<int64_t>{1, 12, 3, 0}, {4}).to(kGPU);
  try {
    cross_entropy(logits, target);
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "[nll_loss] target 12 is out of bounds for 10 classes");
  }
  set_sync_device_checks(false);
  // the device stays usable
  EXPECT_NEAR(cross_entropy(logits, from_vector(std::vector<int64_t>{1, 2, 3, 0}, {4}).to(kGPU)).item(),
              std::log(10.0), 1e-6);
}

// Loss front ends that build tensors of their own (bounds, weights) keep them on the input's
// device, and a class weight left on the CPU is an error naming both devices, not a host pointer
// read by a device kernel.
TEST(CudaKernels, LossesKeepTheirTensorsOnTheInputsDevice) {
  REQUIRE_CUDA();
  Tensor p = full({3, 4}, 0.25, TensorOptions(DType::f32).with_device(kGPU));
  Tensor t = zeros({3, 4}, TensorOptions(DType::f32).with_device(kGPU));
  EXPECT_NEAR(binary_cross_entropy(p, t).item(), -std::log(0.75), 1e-6);
  Tensor logits = zeros({4, 10}, TensorOptions(DType::f32).with_device(kGPU));
  Tensor target = from_vector(std::vector<int64_t>{1, 2, 3, 0}, {4}).to(kGPU);
  try {
    cross_entropy(logits, target, Reduction::Mean, -100, 0.0, ones({10}));
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "[nll_loss] weight is on cpu but the input is on cuda:0");
  }
  EXPECT_NEAR(cross_entropy(logits, target, Reduction::Mean, -100, 0.0, ones({10}).to(kGPU)).item(), std::log(10.0),
              1e-6);
}

// The round-trip counters: device work adds nothing, item() one wait ending a device-to-host copy,
// a host-to-device copy one wait and no device-to-host copy.
TEST(CudaKernels, HostDeviceRoundTripsAreCounted) {
  REQUIRE_CUDA();
  Tensor a = full({64}, 1.5, TensorOptions(DType::f32).with_device(kGPU));
  Tensor b = full({64}, 2.0, TensorOptions(DType::f32).with_device(kGPU));
  reset_cuda_round_trips();
  Tensor c = mul(add(a, b), a);
  Tensor s = sum(c);
  EXPECT_EQ(cuda_round_trips().synchronizations, 0u);
  EXPECT_EQ(cuda_round_trips().device_to_host_copies, 0u);
  EXPECT_EQ(s.item(), 64 * 3.5 * 1.5);
  EXPECT_EQ(cuda_round_trips().synchronizations, 1u);
  EXPECT_EQ(cuda_round_trips().device_to_host_copies, 1u);
  Tensor d = full({64}, 1.0).to(kGPU);
  EXPECT_EQ(cuda_round_trips().synchronizations, 2u);
  EXPECT_EQ(cuda_round_trips().device_to_host_copies, 1u);
  reset_cuda_round_trips();
  EXPECT_EQ(cuda_round_trips().synchronizations, 0u);
}

TEST(CudaKernels, TransfersRoundTripEveryDtypeAndLayout) {
  REQUIRE_CUDA();
  for (DType t : kAllTypes) {
    SCOPED_TRACE(dtype_name(t));
    std::vector<double> v;
    for (int i = 0; i < 77; ++i) v.push_back(t == DType::b8 ? i % 3 == 0 : i % 50);
    Tensor c = test::make_tensor(v, {7, 11}, t);
    Tensor g = c.to(kGPU);
    EXPECT_EQ(g.device(), kGPU);
    EXPECT_TRUE(test::bit_equal(g.to(kCPU), c));
    EXPECT_TRUE(test::bit_equal(g.t().to(kCPU), c.t().contiguous()));
    EXPECT_TRUE(test::bit_equal(c.t().to(kGPU).to(kCPU), c.t().contiguous()));
    Tensor back = empty({11, 7}, t);
    back.copy_(g.t());  // cross-device copy_ of a strided view
    EXPECT_TRUE(test::bit_equal(back, c.t().contiguous()));
  }
}

TEST(CudaDevice, UnavailableDeviceIsAClearError) {
  // Runs everywhere: without a device, without CUDA in the build, or with fewer than 8 devices.
  if (cuda_device_count() > 7) GTEST_SKIP() << "this machine has a cuda:7";
  try {
    empty({2}, TensorOptions(DType::f32).with_device(cuda_device(7)));
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (EMBER_WITH_CUDA)
      EXPECT_NE(msg.find("device cuda:7 is not available"), std::string::npos) << msg;
    else
      EXPECT_NE(msg.find("no CUDA backend"), std::string::npos) << msg;
  }
}

TEST(CudaDevice, CachingAllocatorReusesBlocks) {
  REQUIRE_CUDA();
  empty_cache(kGPU);
  const AllocatorStats before = allocator_stats(kGPU);
  for (int i = 0; i < 10; ++i) {
    Tensor t = empty({1000, 1000}, TensorOptions(DType::f32).with_device(kGPU));
    t.fill_(1.0);
  }
  const AllocatorStats after = allocator_stats(kGPU);
  EXPECT_EQ(after.system_allocs - before.system_allocs, 1u);
  EXPECT_GE(after.cache_hits - before.cache_hits, 9u);
  EXPECT_EQ(after.allocated_bytes, before.allocated_bytes);
  EXPECT_GE(after.peak_allocated_bytes, 4000000u);
  empty_cache(kGPU);
  EXPECT_EQ(allocator_stats(kGPU).reserved_bytes, allocator_stats(kGPU).allocated_bytes);
}

TEST(CudaDevice, ThreadsRunKernelsConcurrently) {
  REQUIRE_CUDA();
  Generator g(10);
  Tensor a = rand({64, 64}, {}, &g), b = rand({64, 64}, {}, &g);
  Tensor expected = matmul(a, b);
  std::vector<Tensor> results(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] { results[static_cast<size_t>(t)] = relu(matmul(a.to(kGPU), b.to(kGPU))).to(kCPU); });
  for (auto& th : threads) th.join();
  for (const Tensor& r : results) EXPECT_TRUE(test::allclose(r, relu(expected), 1e-5, 1e-5));
}

TEST(CudaPinnedMemory, HostAllocatorCachesBlocks) {
  // Runs in every build: without a device the blocks are ordinary memory of the CPU allocator.
  EXPECT_EQ(pinned_host_memory_available(), cuda_is_available());
  void* p = pinned_host_alloc(10000);
  ASSERT_NE(p, nullptr);
  static_cast<char*>(p)[9999] = 7;
  pinned_host_free(p, 10000);
  void* q = pinned_host_alloc(9000);  // same size class
  EXPECT_EQ(q, p) << "a freed pinned block of the same class is reused";
  pinned_host_free(q, 9000);
  pinned_host_free(nullptr, 0);  // a no-op, as free()
  if (cuda_is_available()) {
    EXPECT_GE(pinned_host_stats().cache_hits, 1u);
  }
}

TEST(CudaPinnedMemory, DataLoaderBatchesForCudaMatchPlainOnes) {
  Generator g(11);
  auto ds = std::make_shared<data::TensorDataset>(std::vector<Tensor>{rand({37, 5}, {}, &g)});
  data::DataLoaderOptions o{.batch_size = 8, .num_workers = 2, .device = kGPU};
  data::DataLoader pinned(ds, o);
  EXPECT_TRUE(pinned.pin_memory());
  o.pin_memory = false;
  data::DataLoader plain(ds, o);
  std::vector<Tensor> a, b;
  for (auto& batch : pinned) a.push_back(batch[0].clone());
  for (auto& batch : plain) b.push_back(batch[0]);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(test::bit_equal(a[i], b[i]));
    if (cuda_is_available()) {
      EXPECT_TRUE(test::bit_equal(a[i].to(kGPU).to(kCPU), b[i]));
    }
  }
}

}  // namespace
}  // namespace ember
