// CUDA elementwise kernels: unary, binary (incl. comparisons), where, copy/convert (all dtype
// pairs), fill, axpby. Math comes from kernels/common/functors.h, the same functors as the CPU loops.
// Strided and broadcast inputs go through an offset calculator over coalesced dims (32-bit index
// math when it fits); fully contiguous f32/f64/int inputs take a vectorised path.
#include <cstring>

#include "kernels/common/convert.h"
#include "kernels/common/dispatch.h"
#include "kernels/common/functors.h"
#include "kernels/cuda/device/vec.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/kernels.h"

namespace ember::kernels {
namespace {

using cu::Array;
using cu::kThreads;
using cu::OffsetCalc;

constexpr int kUnroll = 4;

// Device storage of f16/bf16 elements: bits only, converted by kernels/common/convert.h.
struct F16 {
  static constexpr HalfFormat kFormat = HalfFormat::f16;
  uint16_t bits;
};
struct BF16 {
  static constexpr HalfFormat kFormat = HalfFormat::bf16;
  uint16_t bits;
};

// f(offsets) for every linear index below n; each thread takes kUnroll indices a block apart.
template <int NT, typename Index, typename F>
__global__ void strided_kernel(Index n, OffsetCalc<NT, Index> oc, F f) {
  Index i = static_cast<Index>(blockIdx.x) * (kThreads * kUnroll) + threadIdx.x;
#pragma unroll
  for (int j = 0; j < kUnroll; ++j) {
    if (i < n) f(oc.get(i));
    i += kThreads;
  }
}

template <int NT, typename F>
void launch_strided(const Geometry<NT>& d, int64_t n, const F& f) {
  if (n == 0) return;
  cudaStream_t s = cu::current_stream();
  const unsigned blocks = cu::blocks_for(n, kThreads * kUnroll);
  if (cu::fits_u32(n)) {
    strided_kernel<NT, uint32_t, F><<<blocks, kThreads, 0, s>>>(static_cast<uint32_t>(n),
                                                                cu::make_offset_calc<NT, uint32_t>(d), f);
  } else {
    strided_kernel<NT, uint64_t, F><<<blocks, kThreads, 0, s>>>(static_cast<uint64_t>(n),
                                                                cu::make_offset_calc<NT, uint64_t>(d), f);
  }
  cu::check_launch("strided elementwise kernel");
}

// Vector width for T on the contiguous path (16-byte loads).
template <typename T>
constexpr int vec_width() {
  return sizeof(T) >= 16 ? 1 : static_cast<int>(16 / sizeof(T));
}

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// out[i] = fn(x[i]) (or fn(x[i], y[i])) for contiguous arrays; thread t handles vector t and,
// in the tail, scalar element nvec*VEC + t.
template <int VEC, typename O, typename T, typename Fn>
__global__ void map1_contig(int64_t n, O* out, const T* x, Fn fn) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t nvec = n / VEC;
  if (i < nvec) {
    cu::Vec<T, VEC> a = cu::load_vec<VEC>(x, i);
    cu::Vec<O, VEC> r;
#pragma unroll
    for (int k = 0; k < VEC; ++k) r.v[k] = fn(a.v[k]);
    cu::store_vec<VEC>(out, i, r);
  }
  const int64_t t = nvec * VEC + i;
  if (i < VEC && t < n) out[t] = fn(x[t]);
}

template <int VEC, typename O, typename T, typename Fn>
__global__ void map2_contig(int64_t n, O* out, const T* x, const T* y, Fn fn) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t nvec = n / VEC;
  if (i < nvec) {
    cu::Vec<T, VEC> a = cu::load_vec<VEC>(x, i);
    cu::Vec<T, VEC> b = cu::load_vec<VEC>(y, i);
    cu::Vec<O, VEC> r;
#pragma unroll
    for (int k = 0; k < VEC; ++k) r.v[k] = fn(a.v[k], b.v[k]);
    cu::store_vec<VEC>(out, i, r);
  }
  const int64_t t = nvec * VEC + i;
  if (i < VEC && t < n) out[t] = fn(x[t], y[t]);
}

unsigned contig_blocks(int64_t n, int vec) { return cu::blocks_for(std::max<int64_t>(n / vec, vec), kThreads); }

// --- unary -----------------------------------------------------------------------------------

template <UnaryOp OP, typename T>
struct UnaryFn {
  T a, b;
  __device__ T operator()(T x) const { return unary_apply<T>(OP, x, a, b); }
};

template <UnaryOp OP, typename T>
struct UnaryStrided {
  T* out;
  const T* x;
  UnaryFn<OP, T> fn;
  __device__ void operator()(const Array<int64_t, 2>& off) const { out[off[0]] = fn(x[off[1]]); }
};

template <UnaryOp OP, typename T>
void unary_launch(const Tensor& x, const Tensor& out, T a, T b) {
  const int64_t n = out.numel();
  if (n == 0) return;
  T* op = static_cast<T*>(out.data_ptr());
  const T* xp = static_cast<const T*>(x.data_ptr());
  const UnaryFn<OP, T> fn{a, b};
  const Geometry<2> d = make_geometry<2>(out.shape(), {&out, &x});
  constexpr int V = vec_width<T>();
  if (d.contiguous() && aligned(op, sizeof(T) * V) && aligned(xp, sizeof(T) * V)) {
    map1_contig<V><<<contig_blocks(n, V), kThreads, 0, cu::current_stream()>>>(n, op, xp, fn);
    cu::check_launch("unary kernel");
    return;
  }
  launch_strided<2>(d, n, UnaryStrided<OP, T>{op, xp, fn});
}

template <typename T>
void unary_typed(UnaryOp op, const Tensor& x, const Tensor& out, T a, T b) {
  dispatch_unary_op(op, [&](auto k) { unary_launch<decltype(k)::value, T>(x, out, a, b); });
}

// Integer tensors (counters, indices) support the exact integer ops only, as on the CPU.
template <typename T>
void unary_integer(UnaryOp op, const Tensor& x, const Tensor& out, T a, T b) {
  EMBER_CHECK(is_integer_unary_op(op), "[unary] this op is not supported for integer dtype ",
              dtype_name(out.dtype()));
  dispatch_unary_op(op, [&](auto k) {
    if constexpr (is_integer_unary_op(decltype(k)::value)) unary_launch<decltype(k)::value, T>(x, out, a, b);
  });
}

// --- binary ----------------------------------------------------------------------------------

template <BinaryOp OP, typename T, typename O>
struct BinaryFn {
  __device__ O operator()(T x, T y) const { return static_cast<O>(binary_apply<T>(OP, x, y)); }
};

template <BinaryOp OP, typename T, typename O>
struct BinaryStrided {
  O* out;
  const T* x;
  const T* y;
  __device__ void operator()(const Array<int64_t, 3>& off) const {
    out[off[0]] = BinaryFn<OP, T, O>{}(x[off[1]], y[off[2]]);
  }
};

template <BinaryOp OP, typename T, typename O>
void binary_launch(const Tensor& x, const Tensor& y, const Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  O* op = static_cast<O*>(out.data_ptr());
  const T* xp = static_cast<const T*>(x.data_ptr());
  const T* yp = static_cast<const T*>(y.data_ptr());
  const Geometry<3> d = make_geometry<3>(out.shape(), {&out, &x, &y});
  constexpr int V = vec_width<T>();
  if (d.contiguous() && aligned(op, sizeof(O) * V) && aligned(xp, sizeof(T) * V) && aligned(yp, sizeof(T) * V)) {
    map2_contig<V><<<contig_blocks(n, V), kThreads, 0, cu::current_stream()>>>(n, op, xp, yp, BinaryFn<OP, T, O>{});
    cu::check_launch("binary kernel");
    return;
  }
  launch_strided<3>(d, n, BinaryStrided<OP, T, O>{op, xp, yp});
}

template <typename T, typename O>
void binary_typed(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out) {
  dispatch_binary_op(op, [&](auto k) { binary_launch<decltype(k)::value, T, O>(x, y, out); });
}

// Calls fn(T{}) with T the device storage type of any dtype.
template <typename Fn>
void dispatch_device_type(DType t, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn(float{});
    case DType::f64: return fn(double{});
    case DType::f16: return fn(F16{});
    case DType::bf16: return fn(BF16{});
    case DType::i32: return fn(int32_t{});
    case DType::i64: return fn(int64_t{});
    case DType::u8: return fn(uint8_t{});
    case DType::b8: return fn(bool{});
  }
  EMBER_THROW("[dtype] invalid dtype code ", static_cast<int>(t));
}

// --- where, copy, fill, axpby ----------------------------------------------------------------

template <typename W>
struct WhereStrided {
  W* out;
  const bool* cond;
  const W* x;
  const W* y;
  __device__ void operator()(const Array<int64_t, 4>& off) const { out[off[0]] = cond[off[1]] ? x[off[2]] : y[off[3]]; }
};

template <typename D, typename S>
struct CopyStrided {
  D* dst;
  const S* src;
  __device__ void operator()(const Array<int64_t, 2>& off) const { dst[off[0]] = convert<D>(src[off[1]]); }
};

template <typename W>
struct FillStrided {
  W* dst;
  W value;
  __device__ void operator()(const Array<int64_t, 1>& off) const { dst[off[0]] = value; }
};

// dst += alpha*x (y null), alpha*x*y or alpha*x/y, evaluated left to right as the CPU loop.
template <typename T>
struct AxpbyStrided {
  T* dst;
  const T* x;
  const T* y;
  T alpha;
  bool divide;
  __device__ void operator()(const Array<int64_t, 3>& off) const {
    if (!y) dst[off[0]] += alpha * x[off[1]];
    else if (divide) dst[off[0]] += alpha * x[off[1]] / y[off[2]];
    else dst[off[0]] += alpha * x[off[1]] * y[off[2]];
  }
};

}  // namespace

void unary_cuda(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b) {
  cu::DeviceGuard g(out);
  if (out.dtype() == DType::i64) return unary_integer<int64_t>(op, x, out, static_cast<int64_t>(a), static_cast<int64_t>(b));
  if (out.dtype() == DType::i32) return unary_integer<int32_t>(op, x, out, static_cast<int32_t>(a), static_cast<int32_t>(b));
  dispatch_floating(out.dtype(), "unary", [&](auto tag) {
    using T = decltype(tag);
    unary_typed<T>(op, x, out, static_cast<T>(a), static_cast<T>(b));
  });
}

void binary_cuda(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out) {
  cu::DeviceGuard g(out);
  dispatch_arith(x.dtype(), "binary", [&](auto tag) {
    using T = decltype(tag);
    if (out.dtype() == DType::b8) binary_typed<T, bool>(op, x, y, out);
    else binary_typed<T, T>(op, x, y, out);
  });
}

void where_cuda(const Tensor& cond, const Tensor& x, const Tensor& y, const Tensor& out) {
  cu::DeviceGuard g(out);
  dispatch_by_size(out.dtype(), [&](auto tag) {
    using W = decltype(tag);
    const Geometry<4> d = make_geometry<4>(out.shape(), {&out, &cond, &x, &y});
    launch_strided<4>(d, out.numel(),
                      WhereStrided<W>{static_cast<W*>(out.data_ptr()), static_cast<const bool*>(cond.data_ptr()),
                                      static_cast<const W*>(x.data_ptr()), static_cast<const W*>(y.data_ptr())});
  });
}

void copy_cuda(const Tensor& src, const Tensor& dst) {
  if (dst.numel() == 0) return;
  cu::DeviceGuard g(dst);
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    if (src.data_ptr() != dst.data_ptr())
      EMBER_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(), cudaMemcpyDeviceToDevice,
                                       cu::current_stream()));
    return;
  }
  const Geometry<2> d = make_geometry<2>(dst.shape(), {&dst, &src});
  if (src.dtype() == dst.dtype()) {
    dispatch_by_size(dst.dtype(), [&](auto tag) {
      using W = decltype(tag);
      launch_strided<2>(d, dst.numel(), CopyStrided<W, W>{static_cast<W*>(dst.data_ptr()),
                                                          static_cast<const W*>(src.data_ptr())});
    });
    return;
  }
  dispatch_device_type(dst.dtype(), [&](auto dtag) {
    using D = decltype(dtag);
    dispatch_device_type(src.dtype(), [&](auto stag) {
      using S = decltype(stag);
      launch_strided<2>(d, dst.numel(),
                        CopyStrided<D, S>{static_cast<D*>(dst.data_ptr()), static_cast<const S*>(src.data_ptr())});
    });
  });
}

void fill_cuda(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  cu::DeviceGuard g(dst);
  // The value's bits in dst's dtype, converted on the host exactly as the CPU kernel does.
  uint64_t bits = 0;
  dispatch_all(dst.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T v = convert<T>(value);
    std::memcpy(&bits, &v, sizeof(T));
  });
  if (bits == 0 && dst.is_contiguous()) {
    EMBER_CUDA_CHECK(cudaMemsetAsync(dst.data_ptr(), 0, dst.nbytes(), cu::current_stream()));
    return;
  }
  dispatch_by_size(dst.dtype(), [&](auto tag) {
    using W = decltype(tag);
    W w;
    std::memcpy(&w, &bits, sizeof(W));
    const Geometry<1> d = make_geometry<1>(dst.shape(), {&dst});
    launch_strided<1>(d, dst.numel(), FillStrided<W>{static_cast<W*>(dst.data_ptr()), w});
  });
}

void axpby_cuda(const Tensor& dst, const Tensor& x, const Tensor& y, double alpha, bool divide) {
  cu::DeviceGuard g(dst);
  dispatch_floating(dst.dtype(), "axpby", [&](auto tag) {
    using T = decltype(tag);
    const Tensor& yy = y.defined() ? y : x;  // stand-in strides when y is absent (never read)
    const Geometry<3> d = make_geometry<3>(dst.shape(), {&dst, &x, &yy});
    launch_strided<3>(d, dst.numel(),
                      AxpbyStrided<T>{static_cast<T*>(dst.data_ptr()), static_cast<const T*>(x.data_ptr()),
                                      y.defined() ? static_cast<const T*>(y.data_ptr()) : nullptr,
                                      static_cast<T>(alpha), divide});
  });
}

}  // namespace ember::kernels
