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

// C (M x N, row stride ldc) = op(A) (M x K) @ op(B) (K x N); row-major bfloat16 bit patterns,
// op(X) = X, or X^T when trans_x (then X is stored K x M or N x K); lda/ldb are the stored row
// strides. A linear layer's forward is (false, true), its weight gradient (true, false).
void gemm_bf16_cpu(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda,
                   const uint16_t* B, int64_t ldb, float* C, int64_t ldc);

// Whether gemm_bf16_cpu takes the AVX512-BF16 path now (the CPU has it and the ISA cap allows it).
bool gemm_bf16_native();

// C (M x N half values, row stride ldc) = round(op(A) @ op(B) + beta * C) for A, B and C of one
// half format (bf16 or f16 bits): float32 accumulation of exact products, one rounding at the
// end (what cuBLAS gives with CUBLAS_COMPUTE_32F). bf16 goes through gemm_bf16_cpu; f16 widens
// to float32 (exactly) and runs the float32 GEMM. beta is 0 or 1 (bmm's accumulate flag). A bias
// (N half values) takes the place of beta * C: added to every row before the rounding.
void gemm_half_cpu(bool bf16, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const uint16_t* A,
                   int64_t lda, const uint16_t* B, int64_t ldb, float beta, uint16_t* C, int64_t ldc,
                   const uint16_t* bias = nullptr);

}  // namespace ember::kernels
