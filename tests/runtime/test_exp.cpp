// The CPU's f32 exp and sigmoid use a vectorisable exp (kernels/cpu/elementwise.cpp): within
// 2 ulp of the exact value over the whole float range, exact special values, and the same bits
// for contiguous and strided inputs (the vector and scalar loops run the same code).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"

namespace ember {
namespace {

// Distance in units in the last place between two finite floats of the same sign.
int64_t ulp_distance(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::llabs(static_cast<long long>(ia) - static_cast<long long>(ib));
}

TEST(CpuExp, WithinTwoUlpOverTheWholeRange) {
  std::vector<float> xs;
  for (float x = -103.0f; x <= 88.7f; x += 0.0137f) xs.push_back(x);
  for (float x : {0.0f, -0.0f, 1e-30f, -1e-30f, 1.0f, -1.0f, 88.72f, -87.0f, -100.0f}) xs.push_back(x);
  Tensor t = from_vector(xs, {static_cast<int64_t>(xs.size())});
  std::vector<float> got = exp(t).to_vector<float>();
  int64_t worst = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const float want = static_cast<float>(std::exp(static_cast<double>(xs[i])));
    if (want < std::numeric_limits<float>::min()) {  // subnormal results: absolute error
      EXPECT_NEAR(got[i], want, 2e-45f) << xs[i];
      continue;
    }
    worst = std::max(worst, ulp_distance(got[i], want));
  }
  EXPECT_LE(worst, 2);
}

TEST(CpuExp, SpecialValuesAndSigmoidEnds) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  Tensor t = from_vector(std::vector<float>{inf, -inf, nan, 89.0f, -104.0f, 0.0f}, {6});
  std::vector<float> e = exp(t).to_vector<float>();
  EXPECT_EQ(e[0], inf);
  EXPECT_EQ(e[1], 0.0f);
  EXPECT_TRUE(std::isnan(e[2]));
  EXPECT_EQ(e[3], inf);
  EXPECT_EQ(e[4], 0.0f);
  EXPECT_EQ(e[5], 1.0f);
  std::vector<float> s = sigmoid(t).to_vector<float>();
  EXPECT_EQ(s[0], 1.0f);
  EXPECT_EQ(s[1], 0.0f);
  EXPECT_TRUE(std::isnan(s[2]));
  EXPECT_EQ(s[5], 0.5f);
}

TEST(CpuExp, ContiguousAndStridedInputsGiveTheSameBits) {
  Tensor wide = mul(randn({1000, 2}), 20.0);
  Tensor strided = wide.select(1, 1), dense = strided.contiguous();
  EXPECT_TRUE(test::bit_equal(exp(strided), exp(dense)));
  EXPECT_TRUE(test::bit_equal(sigmoid(strided), sigmoid(dense)));
}

}  // namespace
}  // namespace ember
