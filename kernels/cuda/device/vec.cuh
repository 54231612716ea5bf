// Aligned vector loads and stores for the contiguous fast paths of elementwise kernels.
// Includes nothing from Ember.
#pragma once
#include <cstdint>

namespace ember::cu {

template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Vec {
  T v[VEC];
};

template <int VEC, typename T>
__device__ inline Vec<T, VEC> load_vec(const T* p, int64_t i) {
  return reinterpret_cast<const Vec<T, VEC>*>(p)[i];
}

template <int VEC, typename T>
__device__ inline void store_vec(T* p, int64_t i, const Vec<T, VEC>& v) {
  reinterpret_cast<Vec<T, VEC>*>(p)[i] = v;
}

}  // namespace ember::cu
