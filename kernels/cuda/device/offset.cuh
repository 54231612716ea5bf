// Device-side index math for strided kernels: fast 32-bit division by a fixed divisor (multiply
// and shift) and an offset calculator that turns a linear element index into per-tensor element
// offsets for up to 8 dims. Dims are stored innermost first. Includes nothing from Ember.
#pragma once
#include <cstdint>

namespace ember::cu {

inline constexpr int kMaxDims = 8;

template <typename Index>
struct DivMod {
  Index div, mod;
};

// Division by a fixed divisor. The 32-bit form (used when every index fits in 31 bits) replaces the
// division by a multiply-high, an add and a shift (Granlund and Montgomery).
template <typename Index>
struct IntDivider {
  Index divisor = 1;
  IntDivider() = default;
  explicit IntDivider(Index d) : divisor(d) {}
  __host__ __device__ DivMod<Index> divmod(Index n) const { return {n / divisor, n % divisor}; }
};

template <>
struct IntDivider<uint32_t> {
  uint32_t divisor = 1, magic = 0, shift = 0;
  IntDivider() = default;
  explicit IntDivider(uint32_t d) : divisor(d) {
    while (shift < 32 && (uint64_t{1} << shift) < d) ++shift;
    magic = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << shift) - d)) / d + 1);
  }
  __host__ __device__ DivMod<uint32_t> divmod(uint32_t n) const {
#if defined(__CUDA_ARCH__)
    uint32_t q = (__umulhi(n, magic) + n) >> shift;
#else
    uint32_t q = static_cast<uint32_t>(((static_cast<uint64_t>(n) * magic >> 32) + n) >> shift);
#endif
    return {q, n - q * divisor};
  }
};

template <typename T, int N>
struct Array {
  T v[N];
  __host__ __device__ T& operator[](int i) { return v[i]; }
  __host__ __device__ const T& operator[](int i) const { return v[i]; }
};

// Element offsets of NT tensors that share one shape. Built on the host from coalesced dims.
template <int NT, typename Index>
struct OffsetCalc {
  int ndim = 0;
  IntDivider<Index> sizes[kMaxDims];
  int64_t strides[kMaxDims][NT] = {};

  __device__ Array<int64_t, NT> get(Index linear) const {
    Array<int64_t, NT> off;
#pragma unroll
    for (int t = 0; t < NT; ++t) off[t] = 0;
#pragma unroll
    for (int d = 0; d < kMaxDims; ++d) {
      if (d == ndim) break;
      DivMod<Index> qr = sizes[d].divmod(linear);
      linear = qr.div;
#pragma unroll
      for (int t = 0; t < NT; ++t) off[t] += static_cast<int64_t>(qr.mod) * strides[d][t];
    }
    return off;
  }
};

}  // namespace ember::cu
