// Runs of f16 <-> f32 conversions for the CPU kernels (mixed precision's casts and GEMM epilogues):
// the F16C conversions of AVX-512 where the ISA allows, with NaNs rewritten to what
// runtime/half.h gives, so that every ISA variant produces the same bits as f16_from_float and
// f16_to_float. Private to the library.
#pragma once
#include <cstdint>

namespace ember::kernels {

// y[i] = f16_from_float(x[i]) for i < n (round to nearest even; a NaN becomes sign | 0x7e00).
void f16_from_f32_row(const float* x, uint16_t* y, int64_t n);
// y[i] = f16_to_float(x[i]) for i < n (exact; a NaN keeps its payload bits).
void f16_to_f32_row(const uint16_t* x, float* y, int64_t n);

}  // namespace ember::kernels
