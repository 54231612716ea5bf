// CUDA device management: device count, allocation, copies and synchronisation, with every
// CUDA status turned into an ember::Error naming the call.
#include <cuda_runtime.h>

#include "kernels/kernels.h"

namespace ember::kernels {

namespace {
void check(cudaError_t st, const char* call) {
  if (st != cudaSuccess) EMBER_THROW("[cuda] ", call, " failed: ", cudaGetErrorName(st), " (", cudaGetErrorString(st), ")");
}
}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

void* cuda_malloc(int device, size_t nbytes) {
  int n = cuda_device_count();
  EMBER_CHECK(device >= 0 && device < n, "[cuda] device cuda:", device, " is not available (", n, " CUDA devices visible)");
  check(cudaSetDevice(device), "cudaSetDevice");
  void* p = nullptr;
  check(cudaMalloc(&p, nbytes), "cudaMalloc");
  return p;
}

void cuda_free(int device, void* p) {
  cudaSetDevice(device);
  cudaFree(p);
}

void cuda_memcpy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes) {
  cudaMemcpyKind kind = cudaMemcpyDefault;
  if (dst_dev.is_cuda()) check(cudaSetDevice(dst_dev.index), "cudaSetDevice");
  else if (src_dev.is_cuda()) check(cudaSetDevice(src_dev.index), "cudaSetDevice");
  check(cudaMemcpy(dst, src, nbytes, kind), "cudaMemcpy");
}

void cuda_synchronize(int device) {
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

}  // namespace ember::kernels
