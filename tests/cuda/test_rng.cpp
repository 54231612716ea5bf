// Random draws on CUDA equal the CPU's: the same Philox4x32-10 counter scheme (element i uses block
// offset + i/4, lane i%4), so for the same generator state the values are identical bit for bit
// (normal f64 values to within an ulp or two of the device's double log/sin/cos), and generators
// advance by the same amount on both devices.
#include <cmath>
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "ember/runtime/device.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"

namespace ember {
namespace {

#define REQUIRE_CUDA() \
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason()

const Device kGPU = cuda_device(0);
const int64_t kSizes[] = {1, 3, 4, 5, 1001, 65537};

enum class Kind { Uniform, Normal, Bernoulli };

Tensor draw(Kind k, int64_t n, DType dt, Device d, Generator& g) {
  const TensorOptions o = TensorOptions(dt).with_device(d);
  switch (k) {
    case Kind::Uniform: return rand({n}, o, &g);
    case Kind::Normal: return randn({n}, o, &g);
    case Kind::Bernoulli: return bernoulli({n}, 0.3, o, &g);
  }
  return {};
}

// Box-Muller runs in double on both devices; the device's log/sin/cos may differ from glibc's by an
// ulp of a double, which changes the rounded float only when the double lies within that ulp of a
// rounding boundary (about 1 in 2^28 values). Such values may differ by one float ulp; all others
// must be identical.
void expect_f32_normals_equal(const Tensor& g, const Tensor& c) {
  const std::vector<float> a = g.to_vector<float>(), b = c.to_vector<float>();
  ASSERT_EQ(a.size(), b.size());
  size_t differ = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == b[i]) continue;
    ++differ;
    EXPECT_EQ(std::nextafter(a[i], b[i]), b[i]) << "element " << i << ": " << a[i] << " vs " << b[i];
  }
  EXPECT_LE(differ, a.size() / 100000) << differ << " of " << a.size() << " normal draws differ";
}

TEST(CudaRng, DrawsEqualTheCpuBitForBit) {
  REQUIRE_CUDA();
  for (Kind k : {Kind::Uniform, Kind::Normal, Kind::Bernoulli}) {
    for (DType dt : {DType::f32, DType::f64}) {
      for (int64_t n : kSizes) {
        SCOPED_TRACE(std::to_string(static_cast<int>(k)) + " " + dtype_name(dt) + " n=" + std::to_string(n));
        Generator gc(777), gg(777);
        // start mid-stream, at an offset that is not a multiple of anything in particular
        rand({7}, {}, &gc);
        rand({7}, {}, &gg);
        Tensor c = draw(k, n, dt, kCPU, gc);
        Tensor g = draw(k, n, dt, kGPU, gg).to(kCPU);
        EXPECT_EQ(gg.offset(), gc.offset());
        if (k == Kind::Normal && dt == DType::f64) {
          EXPECT_TRUE(test::allclose(g, c, 1e-14, 1e-15));
        } else if (k == Kind::Normal) {
          expect_f32_normals_equal(g, c);
        } else {
          EXPECT_TRUE(test::bit_equal(g, c));
        }
      }
    }
  }
}

TEST(CudaRng, DefaultGeneratorAndInPlaceFillsMatch) {
  REQUIRE_CUDA();
  manual_seed(31);
  Tensor c = empty({9, 13});
  uniform_(c, -2.0, 3.0);
  Tensor cn = empty({9, 13}, DType::f64);
  normal_(cn, 1.0, 0.5);
  manual_seed(31);
  Tensor g = empty({9, 13}, TensorOptions(DType::f32).with_device(kGPU));
  uniform_(g, -2.0, 3.0);
  Tensor gn = empty({9, 13}, TensorOptions(DType::f64).with_device(kGPU));
  normal_(gn, 1.0, 0.5);
  EXPECT_TRUE(test::bit_equal(g.to(kCPU), c));
  EXPECT_TRUE(test::allclose(gn.to(kCPU), cn, 1e-14, 1e-15));
  // into a strided view
  manual_seed(5);
  Tensor cv = zeros({6, 8});
  Tensor cvt = cv.t();
  uniform_(cvt, 0.0, 1.0);
  manual_seed(5);
  Tensor gv = zeros({6, 8}, TensorOptions(DType::f32).with_device(kGPU));
  Tensor gvt = gv.t();
  uniform_(gvt, 0.0, 1.0);
  EXPECT_TRUE(test::bit_equal(gv.to(kCPU), cv));
}

TEST(CudaRng, DropoutMasksMatchAcrossDevices) {
  REQUIRE_CUDA();
  Tensor x = ones({33, 65});
  Generator gc(99), gg(99);
  Tensor c = dropout(x, 0.25, true, &gc);
  Tensor g = dropout(x.to(kGPU), 0.25, true, &gg);
  EXPECT_TRUE(test::bit_equal(g.to(kCPU), c));
  EXPECT_EQ(gg.offset(), gc.offset());
}

TEST(CudaRng, GeneratorStateRestoresTheSameDraws) {
  REQUIRE_CUDA();
  Generator g(2024);
  rand({100}, TensorOptions(DType::f32).with_device(kGPU), &g);
  const std::vector<uint8_t> state = g.get_state();
  Tensor first = randn({1000}, TensorOptions(DType::f32).with_device(kGPU), &g).to(kCPU);
  Generator h;
  h.set_state(state);
  Tensor again = randn({1000}, TensorOptions(DType::f32).with_device(kGPU), &h).to(kCPU);
  EXPECT_TRUE(test::bit_equal(again, first));
  Generator c;
  c.set_state(state);
  expect_f32_normals_equal(first, randn({1000}, {}, &c));
}

}  // namespace
}  // namespace ember
