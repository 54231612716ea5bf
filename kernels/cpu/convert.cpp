// Bulk u8 -> f32 conversion with a divisor: how image datasets turn stored pixels into [0, 1]
// floats. One loop compiled per ISA variant; IEEE division gives the same bits in every variant.
#include "kernels/cpu/isa.h"
#include "kernels/kernels.h"

namespace ember::kernels {
namespace {

[[gnu::always_inline]] inline void u8_to_f32_divided_loop(const uint8_t* __restrict src, float* __restrict dst,
                                                          int64_t n, float divisor) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]) / divisor;
}

}  // namespace

void u8_to_f32_divided_cpu(const uint8_t* src, float* dst, int64_t n, float divisor) {
  run_best_isa([&] EMBER_INLINE_LAMBDA { u8_to_f32_divided_loop(src, dst, n, divisor); });
}

}  // namespace ember::kernels
