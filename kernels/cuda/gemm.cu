// Batched matrix multiply on CUDA through cuBLAS (cublas{S,D}gemmStridedBatched), with one handle
// per thread and device. Ember's row-major out = a @ w is cuBLAS's column-major out^T = w^T a^T, so
// the operands are passed swapped; a "transposed" (column-major) operand becomes CUBLAS_OP_T.
// f32 runs in full FP32 (no TF32) unless EMBER_ALLOW_TF32=1 is set in the environment. cuBLAS is
// opened on the first call (kernels/cuda/dynload.h), so a program that never multiplies on a GPU
// runs without it.
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/dynload.h"
#include "kernels/cuda/launch.h"
#include "kernels/kernels.h"

namespace ember::kernels {
namespace {

const char* cublas_status_name(cublasStatus_t st) {
  switch (st) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "unknown cuBLAS status";
}

// Throws "[cublas] <call> failed: <status>" unless st is CUBLAS_STATUS_SUCCESS.
void check_cublas(cublasStatus_t st, const char* call) {
  if (st != CUBLAS_STATUS_SUCCESS)
    EMBER_THROW("[cublas] ", call, " failed: ", cublas_status_name(st), " (", static_cast<int>(st), ")");
}
#define EMBER_CUBLAS_CHECK(expr) check_cublas((expr), #expr)

bool allow_tf32() {
  static const bool on = [] {
    const char* v = std::getenv("EMBER_ALLOW_TF32");
    return v && std::strcmp(v, "1") == 0;
  }();
  return on;
}

// The calling thread's handle for the current device, bound to the current stream.
cublasHandle_t handle(int device) {
  struct Handles {
    cublasHandle_t h[16] = {};
    ~Handles() {
      for (cublasHandle_t x : h)
        if (x) cu::cublas().Destroy(x);
    }
  };
  thread_local Handles hs;
  EMBER_CHECK(device >= 0 && device < 16, "[cublas] device index ", device, " is out of range");
  if (!hs.h[device]) {
    EMBER_CUBLAS_CHECK(cu::cublas().Create(&hs.h[device]));
    EMBER_CUBLAS_CHECK(
        cu::cublas().SetMathMode(hs.h[device], allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  }
  EMBER_CUBLAS_CHECK(cu::cublas().SetStream(hs.h[device], cu::current_stream(device)));
  return hs.h[device];
}

constexpr int64_t kIntMax = 2147483647;

// An operand as cuBLAS sees it: op, leading dimension, and whether cuBLAS accepts it as is.
struct Operand {
  bool trans;
  int64_t ld;
};

// Layout of the (rows, cols) matrices of t (B, rows, cols): row-major (stride 1 along cols) or
// column-major (stride 1 along rows), as the CPU kernel's matrix_layout. The leading dimension
// must cover the stored matrix for cuBLAS; otherwise (a broadcast row, say) the caller copies.
bool layout(const Tensor& t, Operand& op) {
  const int64_t rows = t.size(1), cols = t.size(2), rs = t.stride(1), cs = t.stride(2);
  if (cs == 1 || cols <= 1) {
    op = {false, rows <= 1 ? std::max<int64_t>(cols, 1) : rs};
    return op.ld >= std::max<int64_t>(cols, 1) && op.ld <= kIntMax && t.stride(0) >= 0;
  }
  if (rs == 1 || rows <= 1) {
    op = {true, cs};
    return op.ld >= std::max<int64_t>(rows, 1) && op.ld <= kIntMax && t.stride(0) >= 0;
  }
  return false;
}

// t as cuBLAS takes it, described by op: t itself where its layout allows, else a contiguous copy
// on its device.
Tensor as_operand(const Tensor& t, Operand& op) {
  if (layout(t, op)) return t;
  Tensor c = empty(t.shape(), TensorOptions(t.dtype()).with_device(t.device()));
  copy_cuda(t, c);
  layout(c, op);
  return c;
}

template <typename T>
__global__ void scale_kernel(int64_t n, T* p, T beta) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) p[i] = p[i] * beta;
}

// f16/bf16 operands: cublasGemmStridedBatchedEx with float32 compute and scaling (one rounding of
// the float32 result, beta 0 or 1). K == 0 gives beta * out, as for f32.
void bmm_half(const Tensor& a_in, const Tensor& w_in, const Tensor& out, double beta, int dev, cudaStream_t s) {
  EMBER_CHECK(beta == 0.0 || beta == 1.0, "[bmm] beta must be 0 or 1 for dtype ", dtype_name(out.dtype()), ", got ",
              beta);
  const int64_t batch = out.size(0), M = out.size(1), N = out.size(2), K = a_in.size(2);
  if (K == 0) {
    if (beta == 0.0) EMBER_CUDA_CHECK(cudaMemsetAsync(out.data_ptr(), 0, out.nbytes(), s));
    return;
  }
  Operand la{}, lw{};
  const Tensor a = as_operand(a_in, la), w = as_operand(w_in, lw);
  const cudaDataType_t dt = out.dtype() == DType::bf16 ? CUDA_R_16BF : CUDA_R_16F;
  const float alpha = 1.0f, b = static_cast<float>(beta);
  const cublasOperation_t opw = lw.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t opa = la.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int m = static_cast<int>(N), n = static_cast<int>(M), k = static_cast<int>(K);
  const int ldw = static_cast<int>(lw.ld), lda = static_cast<int>(la.ld), ldc = static_cast<int>(N);
  const long long sw = batch > 1 ? w.stride(0) : 0, sa = batch > 1 ? a.stride(0) : 0, sc = M * N;
  EMBER_CUBLAS_CHECK(cu::cublas().GemmStridedBatchedEx(handle(dev), opw, opa, m, n, k, &alpha, w.data_ptr(), dt, ldw,
                                                       sw, a.data_ptr(), dt, lda, sa, &b, out.data_ptr(), dt, ldc, sc,
                                                       static_cast<int>(batch), CUBLAS_COMPUTE_32F,
                                                       CUBLAS_GEMM_DEFAULT));
}

}  // namespace

void bmm_cuda(const Tensor& a_in, const Tensor& w_in, const Tensor& out, double beta) {
  EMBER_CHECK(a_in.dim() == 3 && w_in.dim() == 3 && out.dim() == 3, "[bmm] expects 3-D tensors, got ranks ",
              a_in.dim(), ", ", w_in.dim(), " and ", out.dim());
  const int64_t batch = out.size(0), M = out.size(1), N = out.size(2), K = a_in.size(2);
  EMBER_CHECK(a_in.size(0) == batch && a_in.size(1) == M && w_in.size(0) == batch && w_in.size(1) == K &&
                  w_in.size(2) == N,
              "[bmm] shapes (", a_in.size(0), ", ", M, ", ", K, ") @ (", w_in.size(0), ", ", w_in.size(1), ", ",
              w_in.size(2), ") do not give (", batch, ", ", M, ", ", N, ")");
  EMBER_CHECK(out.is_contiguous(), "[bmm] out must be contiguous");
  EMBER_CHECK(a_in.dtype() == out.dtype() && w_in.dtype() == out.dtype(), "[bmm] dtypes differ: ",
              dtype_name(a_in.dtype()), ", ", dtype_name(w_in.dtype()), " and ", dtype_name(out.dtype()));
  if (batch == 0 || M == 0 || N == 0) return;
  EMBER_CHECK(M <= kIntMax && N <= kIntMax && K <= kIntMax && batch <= kIntMax, "[bmm] dimensions (", batch, ", ", M,
              ", ", K, ") @ (", K, ", ", N, ") exceed cuBLAS's 32-bit sizes");
  cu::DeviceGuard g(out);
  const int dev = out.device().index;
  cudaStream_t s = cu::current_stream(dev);
  if (out.dtype() == DType::f16 || out.dtype() == DType::bf16) return bmm_half(a_in, w_in, out, beta, dev, s);
  dispatch_floating(out.dtype(), "bmm", [&](auto tag) {
    using T = decltype(tag);
    T* op = static_cast<T*>(out.data_ptr());
    if (K == 0) {  // out = beta * out; a and w are not read
      if (beta == 0.0) {
        EMBER_CUDA_CHECK(cudaMemsetAsync(op, 0, out.nbytes(), s));
      } else if (beta != 1.0) {
        scale_kernel<T><<<cu::blocks_for(out.numel(), cu::kThreads), cu::kThreads, 0, s>>>(out.numel(), op,
                                                                                          static_cast<T>(beta));
        cu::check_launch("scale_kernel");
      }
      return;
    }
    Operand la{}, lw{};
    const Tensor a = as_operand(a_in, la), w = as_operand(w_in, lw);
    const T alpha = T(1), b = static_cast<T>(beta);
    const T* ap = static_cast<const T*>(a.data_ptr());
    const T* wp = static_cast<const T*>(w.data_ptr());
    const cublasOperation_t opw = lw.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t opa = la.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasHandle_t h = handle(dev);
    const int m = static_cast<int>(N), n = static_cast<int>(M), k = static_cast<int>(K);
    const int ldw = static_cast<int>(lw.ld), lda = static_cast<int>(la.ld), ldc = static_cast<int>(N);
    const long long sw = batch > 1 ? w.stride(0) : 0, sa = batch > 1 ? a.stride(0) : 0, sc = M * N;
    if constexpr (std::is_same_v<T, float>) {
      EMBER_CUBLAS_CHECK(cu::cublas().SgemmStridedBatched(h, opw, opa, m, n, k, &alpha, wp, ldw, sw, ap, lda, sa, &b,
                                                          op, ldc, sc, static_cast<int>(batch)));
    } else {
      EMBER_CUBLAS_CHECK(cu::cublas().DgemmStridedBatched(h, opw, opa, m, n, k, &alpha, wp, ldw, sw, ap, lda, sa, &b,
                                                          op, ldc, sc, static_cast<int>(batch)));
    }
  });
}

}  // namespace ember::kernels
