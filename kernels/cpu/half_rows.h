// Runs of f16/bf16 <-> f32 conversions for the CPU kernels (mixed precision's casts, the half
// GEMM's operands and epilogue): AVX-512 code where the ISA allows (F16C for f16, integer
// rounding for bf16), with NaNs rewritten to what runtime/half.h gives, so that every ISA variant
// produces the same bits as its f16/bf16 functions. One small loop each, not one per ISA and
// caller. Private to the library.
#pragma once
#include <cstdint>

namespace ember::kernels {

// y[i] = f16_from_float(x[i]) (bf16: bf16_from_float) for i < n: round to nearest even; a NaN
// becomes sign | 0x7e00 (bf16: its top bits, made quiet).
void half_from_f32_row(bool bf16, const float* x, uint16_t* y, int64_t n);
// y[i] = f16_to_float(x[i]) (bf16: bf16_to_float) for i < n: exact; a NaN keeps its payload bits.
void half_to_f32_row(bool bf16, const uint16_t* x, float* y, int64_t n);

}  // namespace ember::kernels
