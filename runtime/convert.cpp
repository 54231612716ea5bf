// Bulk conversions (runtime/convert.h): thin entry points over the CPU conversion kernels.
#include "ember/runtime/convert.h"

#include "kernels/kernels.h"
#include "ember/runtime/error.h"

namespace ember {

void u8_to_f32_divided(const uint8_t* src, float* dst, int64_t n, float divisor) {
  EMBER_CHECK(n >= 0, "[u8_to_f32_divided] n must be >= 0, got ", n);
  if (n == 0) return;
  EMBER_CHECK(src != nullptr && dst != nullptr, "[u8_to_f32_divided] null buffer for ", n, " elements");
  kernels::u8_to_f32_divided_cpu(src, dst, n, divisor);
}

}  // namespace ember
