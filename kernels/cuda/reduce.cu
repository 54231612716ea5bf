// CUDA reductions (sum with a double accumulator, max with argmax) and (log_)softmax. No atomics:
// an output is reduced either serially by one thread (in the CPU's order, so sums match the CPU
// bit for bit), by blocks over fixed chunks with a fixed tree, or (strided reduced elements) by
// tiles of neighbouring outputs with fixed row lanes, then the chunks in order. The
// split depends only on the shapes, so results are identical run to run.
#include <cmath>
#include <limits>

#include "kernels/common/softmax.h"
#include "kernels/cuda/device/block_reduce.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/kernels.h"

namespace ember::kernels {
namespace {

using cu::OffsetCalc;

// (value, position) of a running max. Prefers NaN, then the larger value, then the lower position,
// which is the CPU scan's answer (first NaN, else first maximum) in any combination order.
template <typename T>
struct ArgMax {
  T v;
  int64_t i;
};

template <typename T>
__device__ inline ArgMax<T> better(const ArgMax<T>& a, const ArgMax<T>& b) {
  const bool an = a.v != a.v, bn = b.v != b.v;
  if (an || bn) {
    if (an && bn) return a.i <= b.i ? a : b;
    return an ? a : b;
  }
  if (a.v != b.v) return a.v > b.v ? a : b;
  return a.i <= b.i ? a : b;
}

template <typename T>
__device__ inline ArgMax<T> argmax_identity() {
  return {-std::numeric_limits<T>::infinity(), std::numeric_limits<int64_t>::max()};
}

struct SumOp {
  __device__ double operator()(double a, double b) const { return a + b; }
};
template <typename T>
struct ArgMaxOp {
  __device__ ArgMax<T> operator()(const ArgMax<T>& a, const ArgMax<T>& b) const { return better(a, b); }
};

// Offset of reduced position k (a single reduced dim walks by its stride).
template <typename Index>
__device__ inline int64_t red_offset(const OffsetCalc<1, Index>& red, Index k) {
  return red.ndim <= 1 ? static_cast<int64_t>(k) * red.strides[0][0] : red.get(k)[0];
}

// One thread per output, reducing serially in k order exactly like the CPU loop.
template <typename T, typename Index, bool kMax>
__global__ void reduce_serial_kernel(Index n_out, Index n_red, OffsetCalc<1, Index> kept, OffsetCalc<1, Index> red,
                                     const T* x, T* out, int64_t* idx) {
  const Index o = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (o >= n_out) return;
  const T* base = x + kept.get(o)[0];
  if constexpr (!kMax) {
    double acc = 0;
    for (Index k = 0; k < n_red; ++k) acc += static_cast<double>(base[red_offset(red, k)]);
    out[o] = static_cast<T>(acc);
  } else {
    T best = -std::numeric_limits<T>::infinity();
    int64_t best_k = 0;
    for (Index k = 0; k < n_red; ++k) {
      const T v = base[red_offset(red, k)];
      if (v != v) {
        best = v;
        best_k = static_cast<int64_t>(k);
        break;
      }
      if (v > best || k == 0) {
        best = v;
        best_k = static_cast<int64_t>(k);
      }
    }
    out[o] = best;
    if (idx) idx[o] = best_k;
  }
}

// Block b reduces chunk (b % chunks) of output (b / chunks). With one chunk it writes the result,
// otherwise a partial that reduce_chunks_kernel combines in chunk order.
template <typename T, typename Index, bool kMax>
__global__ void reduce_block_kernel(Index n_red, Index chunk, unsigned chunks, OffsetCalc<1, Index> kept,
                                    OffsetCalc<1, Index> red, const T* x, T* out, int64_t* idx, double* part_sum,
                                    ArgMax<T>* part_max) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const Index o = static_cast<Index>(blockIdx.x / chunks);
  const unsigned c = blockIdx.x % chunks;
  const Index start = static_cast<Index>(c) * chunk;
  const Index end = n_red - start < chunk ? n_red : start + chunk;
  const T* base = x + kept.get(o)[0];
  if constexpr (!kMax) {
    double acc = 0;
    for (Index k = start + threadIdx.x; k < end; k += blockDim.x) acc += static_cast<double>(base[red_offset(red, k)]);
    acc = cu::block_reduce(acc, reinterpret_cast<double*>(smem_raw), SumOp{});
    if (threadIdx.x == 0) {
      if (chunks == 1) out[o] = static_cast<T>(acc);
      else part_sum[blockIdx.x] = acc;
    }
  } else {
    ArgMax<T> best = argmax_identity<T>();
    for (Index k = start + threadIdx.x; k < end; k += blockDim.x)
      best = better(best, ArgMax<T>{base[red_offset(red, k)], static_cast<int64_t>(k)});
    best = cu::block_reduce(best, reinterpret_cast<ArgMax<T>*>(smem_raw), ArgMaxOp<T>{});
    if (threadIdx.x == 0) {
      if (chunks == 1) {
        out[o] = best.v;
        if (idx) idx[o] = best.i;
      } else {
        part_max[blockIdx.x] = best;
      }
    }
  }
}

template <typename T, bool kMax>
__global__ void reduce_chunks_kernel(int64_t n_out, unsigned chunks, const double* part_sum, const ArgMax<T>* part_max,
                                     T* out, int64_t* idx) {
  const int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (o >= n_out) return;
  if constexpr (!kMax) {
    double acc = 0;
    for (unsigned c = 0; c < chunks; ++c) acc += part_sum[o * chunks + c];
    out[o] = static_cast<T>(acc);
  } else {
    ArgMax<T> best = part_max[o * chunks];
    for (unsigned c = 1; c < chunks; ++c) best = better(best, part_max[o * chunks + c]);
    out[o] = best.v;
    if (idx) idx[o] = best.i;
  }
}

// Reductions whose reduced elements are strided (a bias gradient: a [rows, outputs] tensor summed
// over its rows). A block is a tile of kColTile outputs by kColRows row lanes: the lanes of a warp
// read kColTile neighbouring outputs of one row (coalesced, whatever the number of outputs), each
// row lane walks every kColRows-th row of its chunk in order, and the lanes of an output combine in
// lane order. Chunks of rows (blockIdx.y) leave partials that reduce_chunks_kernel adds in order.
constexpr unsigned kColTile = 32, kColRows = 8;

template <typename T, typename Index, bool kMax>
__global__ void reduce_columns_kernel(Index n_out, Index n_red, Index chunk, unsigned chunks,
                                      OffsetCalc<1, Index> kept, OffsetCalc<1, Index> red, const T* x, T* out,
                                      int64_t* idx, double* part_sum, ArgMax<T>* part_max) {
  __shared__ double sums[kColRows][kColTile];
  __shared__ ArgMax<T> maxes[kMax ? kColRows : 1][kColTile];
  const Index o = static_cast<Index>(blockIdx.x) * kColTile + threadIdx.x;
  const unsigned c = blockIdx.y;
  const Index start = static_cast<Index>(c) * chunk;
  const Index end = n_red - start < chunk ? n_red : start + chunk;
  const bool active = o < n_out;
  const T* base = active ? x + kept.get(o)[0] : x;
  if constexpr (!kMax) {
    double acc = 0;
    if (active)
      for (Index k = start + threadIdx.y; k < end; k += kColRows) acc += static_cast<double>(base[red_offset(red, k)]);
    sums[threadIdx.y][threadIdx.x] = acc;
  } else {
    ArgMax<T> best = argmax_identity<T>();
    if (active)
      for (Index k = start + threadIdx.y; k < end; k += kColRows)
        best = better(best, ArgMax<T>{base[red_offset(red, k)], static_cast<int64_t>(k)});
    maxes[threadIdx.y][threadIdx.x] = best;
  }
  __syncthreads();
  if (threadIdx.y != 0 || !active) return;
  if constexpr (!kMax) {
    double acc = sums[0][threadIdx.x];
    for (unsigned r = 1; r < kColRows; ++r) acc += sums[r][threadIdx.x];
    if (chunks == 1) out[o] = static_cast<T>(acc);
    else part_sum[static_cast<int64_t>(o) * chunks + c] = acc;
  } else {
    ArgMax<T> best = maxes[0][threadIdx.x];
    for (unsigned r = 1; r < kColRows; ++r) best = better(best, maxes[r][threadIdx.x]);
    if (chunks == 1) {
      out[o] = best.v;
      if (idx) idx[o] = best.i;
    } else {
      part_max[static_cast<int64_t>(o) * chunks + c] = best;
    }
  }
}

unsigned pow2_threads(int64_t n, unsigned lo, unsigned hi) {
  unsigned t = lo;
  while (t < hi && static_cast<int64_t>(t) < n) t <<= 1;
  return t;
}

template <typename T, typename Index, bool kMax>
void reduce_launch(const Geometry<1>& kd, const Geometry<1>& rd, int64_t n_out, int64_t n_red, const Tensor& x,
                   const Tensor& out, const Tensor& indices) {
  const auto kept = cu::make_offset_calc<1, Index>(kd);
  const auto red = cu::make_offset_calc<1, Index>(rd);
  const T* xp = static_cast<const T*>(x.data_ptr());
  T* op = static_cast<T*>(out.data_ptr());
  int64_t* ip = indices.defined() ? static_cast<int64_t*>(indices.data_ptr()) : nullptr;
  cudaStream_t s = cu::current_stream();
  const bool red_contiguous = rd.ndim <= 1 && (rd.ndim == 0 || rd.strides[0][0] == 1);
  // Few elements per output: one thread per output, serially in the CPU's order.
  if (n_red <= 32) {
    reduce_serial_kernel<T, Index, kMax><<<cu::blocks_for(n_out, cu::kThreads), cu::kThreads, 0, s>>>(
        static_cast<Index>(n_out), static_cast<Index>(n_red), kept, red, xp, op, ip);
    cu::check_launch("reduce_serial_kernel");
    return;
  }
  // Reduced elements far apart (strided rows, e.g. a bias gradient): the threads of a warp read
  // neighbouring outputs. Many outputs over a few thousand rows: one thread per output, in the
  // CPU's order. Otherwise tiles of neighbouring outputs with the rows split into chunks of at
  // least 256, so that about a thousand blocks run however few the outputs are.
  if (!red_contiguous && n_out >= 1024 && n_red <= 4096) {
    reduce_serial_kernel<T, Index, kMax><<<cu::blocks_for(n_out, cu::kThreads), cu::kThreads, 0, s>>>(
        static_cast<Index>(n_out), static_cast<Index>(n_red), kept, red, xp, op, ip);
    cu::check_launch("reduce_serial_kernel");
    return;
  }
  if (!red_contiguous) {
    const int64_t tiles = (n_out + kColTile - 1) / kColTile;
    int64_t chunks = std::clamp<int64_t>((1024 + tiles - 1) / tiles, 1, (n_red + 255) / 256);
    chunks = std::min<int64_t>(chunks, 65535);  // gridDim.y's limit
    const int64_t chunk = (n_red + chunks - 1) / chunks;
    chunks = (n_red + chunk - 1) / chunk;
    EMBER_CHECK(tiles < (int64_t{1} << 31), "[reduce] too many outputs (", n_out, ") for one launch");
    cu::Scratch part(x.device().index,
                     chunks > 1 ? static_cast<size_t>(n_out * chunks) * (kMax ? sizeof(ArgMax<T>) : sizeof(double)) : 0);
    const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(chunks));
    reduce_columns_kernel<T, Index, kMax><<<grid, dim3(kColTile, kColRows), 0, s>>>(
        static_cast<Index>(n_out), static_cast<Index>(n_red), static_cast<Index>(chunk), static_cast<unsigned>(chunks),
        kept, red, xp, op, ip, part.as<double>(), part.as<ArgMax<T>>());
    cu::check_launch("reduce_columns_kernel");
    if (chunks > 1) {
      reduce_chunks_kernel<T, kMax><<<cu::blocks_for(n_out, cu::kThreads), cu::kThreads, 0, s>>>(
          n_out, static_cast<unsigned>(chunks), part.as<double>(), part.as<ArgMax<T>>(), op, ip);
      cu::check_launch("reduce_chunks_kernel");
    }
    return;
  }
  // Contiguous reduced elements: blocks of up to 256 threads per output; few outputs split their
  // range into chunks so that about a thousand blocks run.
  const unsigned threads = pow2_threads(n_red, 32, 256);
  int64_t chunks = 1;
  if (n_out < 1024) chunks = std::clamp<int64_t>((1024 + n_out - 1) / n_out, 1, (n_red + 2047) / 2048);
  const int64_t chunk = (n_red + chunks - 1) / chunks;
  chunks = (n_red + chunk - 1) / chunk;
  const size_t smem = threads * (kMax ? sizeof(ArgMax<T>) : sizeof(double));
  const int64_t blocks = n_out * chunks;
  EMBER_CHECK(blocks < (int64_t{1} << 31), "[reduce] too many outputs (", n_out, ") for one launch");
  cu::Scratch part(x.device().index, chunks > 1 ? static_cast<size_t>(blocks) * (kMax ? sizeof(ArgMax<T>) : sizeof(double)) : 0);
  reduce_block_kernel<T, Index, kMax><<<static_cast<unsigned>(blocks), threads, smem, s>>>(
      static_cast<Index>(n_red), static_cast<Index>(chunk), static_cast<unsigned>(chunks), kept, red, xp, op, ip,
      part.as<double>(), part.as<ArgMax<T>>());
  cu::check_launch("reduce_block_kernel");
  if (chunks > 1) {
    reduce_chunks_kernel<T, kMax><<<cu::blocks_for(n_out, cu::kThreads), cu::kThreads, 0, s>>>(
        n_out, static_cast<unsigned>(chunks), part.as<double>(), part.as<ArgMax<T>>(), op, ip);
    cu::check_launch("reduce_chunks_kernel");
  }
}

// --- softmax ---------------------------------------------------------------------------------

template <typename T>
struct MaxIgnoringNaN {  // m < v ? v : m as softmax_line: a NaN v leaves m unchanged
  __device__ T operator()(T m, T v) const { return m < v ? v : m; }
};

// Rows of n contiguous elements (inner == 1): one block per row.
template <typename T>
__global__ void softmax_rows_kernel(int64_t n, const T* x, T* y, bool log) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const T* xr = x + static_cast<int64_t>(blockIdx.x) * n;
  T* yr = y + static_cast<int64_t>(blockIdx.x) * n;
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) m = MaxIgnoringNaN<T>{}(m, xr[k]);
  m = cu::block_reduce(m, reinterpret_cast<T*>(smem_raw), MaxIgnoringNaN<T>{});
  if (m == -std::numeric_limits<T>::infinity()) m = 0;
  double s = 0;
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) s += std::exp(static_cast<double>(xr[k] - m));
  s = cu::block_reduce(s, reinterpret_cast<double*>(smem_raw), SumOp{});
  if (log) {
    const T ls = static_cast<T>(std::log(s));
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) yr[k] = xr[k] - m - ls;
  } else {
    const T inv = static_cast<T>(1.0 / s);
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) yr[k] = std::exp(xr[k] - m) * inv;
  }
}

// inner > 1: one thread per (outer, inner) position, serial along dim as the CPU loop.
template <typename T>
__global__ void softmax_strided_kernel(int64_t outer, int64_t n, int64_t inner, const T* x, T* y, bool log) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= outer * inner) return;
  const int64_t o = idx / inner, i = idx % inner;
  softmax_line(x + o * n * inner + i, y + o * n * inner + i, n, inner, log);
}

}  // namespace

void reduce_cuda(ReduceOp op, const Tensor& x, const DimList& dims, const Tensor& out, const Tensor& indices) {
  cu::DeviceGuard g(out);
  bool reduced[kMaxRank] = {};
  for (int d : dims) reduced[d] = true;
  const ReduceDims split = split_reduce_dims(x, reduced);
  const int64_t n_out = split.kept_shape.numel(), n_red = split.red_shape.numel();
  if (n_out == 0) return;
  const Geometry<1> kd = make_geometry<1>(split.kept_shape, {&split.kept_strides});
  const Geometry<1> rd = make_geometry<1>(split.red_shape, {&split.red_strides});
  dispatch_floating(x.dtype(), "reduce", [&](auto tag) {
    using T = decltype(tag);
    const bool small = cu::fits_u32(n_out) && cu::fits_u32(n_red);
    if (op == ReduceOp::Sum) {
      if (small) reduce_launch<T, uint32_t, false>(kd, rd, n_out, n_red, x, out, indices);
      else reduce_launch<T, uint64_t, false>(kd, rd, n_out, n_red, x, out, indices);
    } else {
      if (small) reduce_launch<T, uint32_t, true>(kd, rd, n_out, n_red, x, out, indices);
      else reduce_launch<T, uint64_t, true>(kd, rd, n_out, n_red, x, out, indices);
    }
  });
}

void softmax_cuda(const Tensor& x, int dim, bool log, const Tensor& out) {
  cu::DeviceGuard g(out);
  const AroundDim a = around_dim(x.shape(), dim);
  const int64_t outer = a.outer, n = a.size, inner = a.inner;
  if (outer * inner == 0 || n == 0) return;
  dispatch_floating(x.dtype(), "softmax", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.data_ptr());
    T* yp = static_cast<T*>(out.data_ptr());
    cudaStream_t s = cu::current_stream();
    if (inner == 1) {
      EMBER_CHECK(outer < (int64_t{1} << 31), "[softmax] too many rows (", outer, ") for one launch");
      const unsigned threads = pow2_threads(n, 32, 512);
      softmax_rows_kernel<T><<<static_cast<unsigned>(outer), threads, threads * sizeof(double), s>>>(n, xp, yp, log);
      cu::check_launch("softmax_rows_kernel");
    } else {
      softmax_strided_kernel<T><<<cu::blocks_for(outer * inner, cu::kThreads), cu::kThreads, 0, s>>>(outer, n, inner,
                                                                                                  xp, yp, log);
      cu::check_launch("softmax_strided_kernel");
    }
  });
}

}  // namespace ember::kernels
