// Row-major GEMM for the CPU kernels: C = alpha * op(A) @ op(B) + beta * C, where op(X) is X or
// X^T. A is M x K after op, B is K x N after op, C is M x N with row stride ldc. lda/ldb are the
// row strides of A and B as stored. Threaded with ember::parallel_for unless called from inside a
// parallel region. The GemmOperand overload also takes an operand as a table of row pointers
// (the convolution kernels pass shifted views of an image that way instead of building im2col
// matrices). Private to the library.
#pragma once
#include <cstdint>

namespace ember::kernels {

// K block depth of the blocked GEMM: each element of C is an FMA chain over k restarted every
// kGemmKC, the blocks added in order. Shared by every ISA so that their results agree bit for bit,
// and by the direct convolution kernels that reproduce these sums (conv_stride2.cpp).
constexpr int64_t kGemmKC = 256;

// op(X) for gemm_cpu: a strided matrix (stored row-major with row stride ld, transposed when
// trans), or, when rows is set, a table of row pointers: row r of op(X) is the contiguous run
// starting at rows[r] (data, ld and trans are then unused), or, for op(B) only, when panels is
// set, a matrix gemm_pack_b_cpu packed (npad: its column count rounded up to whole panels).
template <typename T>
struct GemmOperand {
  const T* data = nullptr;
  int64_t ld = 0;
  bool trans = false;
  const T* const* rows = nullptr;
  const T* panels = nullptr;
  int64_t npad = 0;

  static GemmOperand strided(const T* data, int64_t ld, bool trans) { return {data, ld, trans, nullptr}; }
  static GemmOperand row_table(const T* const* rows) { return {nullptr, 0, false, rows}; }
  static GemmOperand packed(const T* panels, int64_t npad) { return {nullptr, 0, false, nullptr, panels, npad}; }
};

// op(B) (K x N) packed once for many products with it (a layer's weight at inference): the
// panels the blocked kernel otherwise packs B into on every call. gemm_packed_b_size gives the
// values the packing takes (K times N rounded up to the kernel's panel width; 0 when the GEMM in
// use packs nothing: Eigen), with *npad set to that rounded width; gemm_pack_b_cpu writes them
// (64-byte aligned out) and returns the backend they are for: a product reading them
// (GemmOperand::packed) checks that this is still the backend in use. The results are the bits of
// the unpacked product.
int64_t gemm_packed_b_size(bool f64, int64_t K, int64_t N, int64_t* npad);
int gemm_pack_b_cpu(int64_t K, int64_t N, const GemmOperand<float>& B, float* out);
int gemm_pack_b_cpu(int64_t K, int64_t N, const GemmOperand<double>& B, double* out);

// C (M x N, row stride ldc) = alpha * op(A) @ op(B) + beta * C; op(A) is M x K, op(B) is K x N.
void gemm_cpu(int64_t M, int64_t N, int64_t K, float alpha, const GemmOperand<float>& A,
              const GemmOperand<float>& B, float beta, float* C, int64_t ldc);
void gemm_cpu(int64_t M, int64_t N, int64_t K, double alpha, const GemmOperand<double>& A,
              const GemmOperand<double>& B, double beta, double* C, int64_t ldc);

// C = alpha * op(A) @ op(B) + bias, bias (N values) added to every row: the bits of copying the
// bias into each row of C and calling gemm_cpu with beta = 1, without that pass over C. A null
// bias adds nothing (beta = 0). relu: then C = relu(C) as the elementwise ReLU computes it
// (c < 0 ? 0 : c, NaN kept), applied as the kernel stores C instead of in a pass of its own.
void gemm_bias_cpu(int64_t M, int64_t N, int64_t K, float alpha, const GemmOperand<float>& A,
                   const GemmOperand<float>& B, const float* bias, float* C, int64_t ldc, bool relu = false);
void gemm_bias_cpu(int64_t M, int64_t N, int64_t K, double alpha, const GemmOperand<double>& A,
                   const GemmOperand<double>& B, const double* bias, double* C, int64_t ldc, bool relu = false);

void gemm_cpu(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
              int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void gemm_cpu(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
              int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

}  // namespace ember::kernels
