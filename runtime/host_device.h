// EMBER_HOST_DEVICE marks the functions that both devices run (runtime/half.h, kernels/common/):
// __host__ __device__ when nvcc compiles a .cu file, nothing in ordinary C++.
#pragma once

#if defined(__CUDACC__)
#define EMBER_HOST_DEVICE __host__ __device__
#else
#define EMBER_HOST_DEVICE
#endif

// Asks nvcc to unroll the loop that follows in device code; nothing for the host compiler.
#if defined(__CUDA_ARCH__)
#define EMBER_UNROLL _Pragma("unroll")
#else
#define EMBER_UNROLL
#endif
