// Low-precision GEMM for the CPU kernels: C (float32) = A @ B for A and B in bfloat16 (raw bits),
// each product of two bfloat16 values exact in float32 and the sums accumulated in float32 (what
// mixed precision asks of matmul and linear). On CPUs with AVX512-BF16 (and no ISA cap below
// AVX-512, see isa.h) a blocked kernel of vdpbf16ps instructions runs: each instruction adds the
// products of two consecutive k into a float32 lane, twice the multiply rate of float32 FMAs.
// Elsewhere the operands are widened to float32 (exactly) and the float32 GEMM runs. The two
// differ only in the order of the float32 additions. Threaded with ember::parallel_for over row
// blocks. Private to the library.
#pragma once
#include <cstdint>

namespace ember::kernels {

// C (M x N, row stride ldc) = A (M x K, row stride lda) @ B (K x N, row stride ldb); row-major,
// A and B bfloat16 bit patterns.
void gemm_bf16_cpu(int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb,
                   float* C, int64_t ldc);

// Whether gemm_bf16_cpu takes the AVX512-BF16 path now (the CPU has it and the ISA cap allows it).
bool gemm_bf16_native();

}  // namespace ember::kernels
