// Row-major GEMM for the CPU kernels: C = alpha * op(A) @ op(B) + beta * C, where op(X) is X or
// X^T. A is M x K after op, B is K x N after op, C is M x N with row stride ldc. lda/ldb are the
// row strides of A and B as stored. Threaded with ember::parallel_for unless called from inside a
// parallel region. Private to the library.
#pragma once
#include <cstdint>

namespace ember::kernels {

void gemm_cpu(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
              int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void gemm_cpu(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
              int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

}  // namespace ember::kernels
