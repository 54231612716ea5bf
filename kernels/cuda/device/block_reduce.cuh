// Deterministic block-wide reductions through shared memory: a fixed pairwise tree over the
// threads of a block, so the result depends only on the launch shape, never on timing.
// Includes nothing from Ember.
#pragma once

namespace ember::cu {

// Combines v across the block with op(lower half, upper half); every thread gets the result.
// blockDim.x must be a power of two; smem holds blockDim.x values of T.
template <typename T, typename Op>
__device__ inline T block_reduce(T v, T* smem, Op op) {
  const unsigned tid = threadIdx.x;
  smem[tid] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (tid < s) smem[tid] = op(smem[tid], smem[tid + s]);
    __syncthreads();
  }
  T r = smem[0];
  __syncthreads();  // smem may be reused by the caller
  return r;
}

}  // namespace ember::cu
