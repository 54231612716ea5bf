// Bulk u8 -> f32 conversion (runtime/convert.h): every byte value against float(v) / divisor, odd
// lengths that leave vector tails, and the error for a negative count.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "ember/runtime/convert.h"
#include "ember/runtime/error.h"
#include "tests/support/check.h"

namespace ember {
namespace {

TEST(Convert, U8ToF32DividedMatchesScalarDivisionForEveryByteAndLength) {
  for (int64_t n : {0, 1, 7, 16, 33, 256, 1000}) {
    std::vector<uint8_t> src(n);
    for (int64_t i = 0; i < n; ++i) src[i] = static_cast<uint8_t>((i * 37 + 11) % 256);
    std::vector<float> dst(n + 1, -1.0f);
    u8_to_f32_divided(src.data(), dst.data(), n, 255.0f);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(dst[i], static_cast<float>(src[i]) / 255.0f) << "n=" << n << " i=" << i;
    EXPECT_EQ(dst[n], -1.0f) << "wrote past n=" << n;
  }
  std::vector<uint8_t> all(256);
  for (int v = 0; v < 256; ++v) all[v] = static_cast<uint8_t>(v);
  std::vector<float> out(256);
  u8_to_f32_divided(all.data(), out.data(), 256, 3.0f);
  for (int v = 0; v < 256; ++v) EXPECT_EQ(out[v], static_cast<float>(v) / 3.0f) << v;
}

TEST(Convert, NegativeCountIsAnError) {
  uint8_t s = 1;
  float d = 0;
  EXPECT_EQ(test::error_of([&] { u8_to_f32_divided(&s, &d, -1, 255.0f); }),
            "[u8_to_f32_divided] n must be >= 0, got -1");
  EXPECT_EQ(test::error_of([&] { u8_to_f32_divided(nullptr, &d, 1, 255.0f); }),
            "[u8_to_f32_divided] null buffer for 1 elements");
}

}  // namespace
}  // namespace ember
