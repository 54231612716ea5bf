// Kernel entry points, one per line, <op>_cpu and <op>_cuda. Private to the library: the op front
// ends (runtime/ops_*.cpp) call these after checking inputs and allocating outputs. Kernels only
// compute. Inputs already have the output's dtype and device; broadcast inputs arrive as expanded
// views (stride 0). Every _cuda entry is declared with EMBER_CUDA_ENTRY: kernels/cuda/ defines it
// in a CUDA build, and a CPU-only build gets it from kernels/stubs.cpp as a stub that says so.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/common/functors.h"
#include "kernels/common/optim.h"
#include "kernels/common/pool.h"
#include "kernels/common/random.h"
#include "ember/runtime/device.h"
#include "ember/runtime/tensor.h"

namespace ember::kernels {

// EMBER_CUDA_ENTRY(ret, name, (params)) declares a CUDA entry point. kernels/stubs.cpp defines
// EMBER_CUDA_DEFINE_STUBS in a CPU-only build before it includes this header, which turns each
// declaration into a definition that throws "[name] this build of Ember has no CUDA backend ...";
// EMBER_CUDA_ENTRY_OR(ret, name, (params), {body}) gives such a build `body` instead (queries and
// frees that must work without CUDA).
#if defined(EMBER_CUDA_DEFINE_STUBS)
[[noreturn]] void no_cuda_backend(const char* entry);
#define EMBER_CUDA_ENTRY(ret, name, params) \
  ret name params { no_cuda_backend(#name); }
#define EMBER_CUDA_ENTRY_OR(ret, name, params, body) ret name params body
#else
#define EMBER_CUDA_ENTRY(ret, name, params) ret name params;
#define EMBER_CUDA_ENTRY_OR(ret, name, params, body) ret name params;
#endif

// --- devices and memory ----------------------------------------------------------------------
EMBER_CUDA_ENTRY_OR(int, cuda_device_count, (), { return 0; })
// Why no CUDA device can be used ("" when one can): the CUDA runtime's error for the device query
// (no driver, a driver older than the runtime, no device), or that the build has no CUDA backend.
EMBER_CUDA_ENTRY_OR(std::string, cuda_unavailable_reason, (),
                    { return "this build of Ember has no CUDA backend (built with EMBER_CUDA=OFF or without nvcc)"; })
EMBER_CUDA_ENTRY(void*, cuda_malloc, (int device, size_t nbytes))
EMBER_CUDA_ENTRY_OR(void, cuda_free, (int device, void* p), {})
// Copies nbytes between host and device memory (either side may be CUDA).
EMBER_CUDA_ENTRY(void, cuda_memcpy, (void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes))
EMBER_CUDA_ENTRY(void, cuda_synchronize, (int device))
// Queues a copy of nbytes from device memory into (page-locked) host memory on the device's
// current stream and returns at once: the copy sees every kernel queued before it and none queued
// after. cuda_event_record then marks the point a host thread waits for with
// cuda_event_synchronize (counted as a round trip); cuda_event_destroy frees the event.
EMBER_CUDA_ENTRY(void, cuda_memcpy_to_host_async, (void* dst, const void* src, int device, size_t nbytes))
// The other way: queues a copy of nbytes from (page-locked) host memory into device memory on the
// device's current stream and returns at once; the host memory must stay unchanged until the copy
// ran (an event recorded after it, see runtime/allocator.h's pinned_host_record_use).
EMBER_CUDA_ENTRY(void, cuda_memcpy_to_device_async, (void* dst, const void* src, int device, size_t nbytes))
EMBER_CUDA_ENTRY(void*, cuda_event_record, (int device))
EMBER_CUDA_ENTRY(void, cuda_event_synchronize, (void* event))
// Whether the work before the event completed, without waiting (not a round trip).
EMBER_CUDA_ENTRY(bool, cuda_event_query, (void* event))
EMBER_CUDA_ENTRY_OR(void, cuda_event_destroy, (void* event), {})
// Streams: create one on a device, destroy it, and make one the calling thread's current stream
// on a device (returning the previous one; nullptr is the legacy default stream).
EMBER_CUDA_ENTRY(void*, cuda_stream_create, (int device))
EMBER_CUDA_ENTRY_OR(void, cuda_stream_destroy, (int device, void* stream), {})
EMBER_CUDA_ENTRY(void*, cuda_exchange_stream, (int device, void* stream))
// The calling thread's current stream on a device (nullptr: the legacy default stream), and the
// current device (returns the previous one), for libraries that queue work of their own (NCCL).
EMBER_CUDA_ENTRY(void*, cuda_current_stream, (int device))
EMBER_CUDA_ENTRY(int, cuda_set_current_device, (int device))
EMBER_CUDA_ENTRY(void, cuda_stream_synchronize, (int device))
// CUDA graphs (runtime/cuda_graph.h): capture the calling thread's work on the device's current
// stream (not the legacy default stream), end it into an instantiated graph (its handle), replay
// it on the current stream. While capturing, the fused optimizer kernels record their nodes;
// between begin_update and end_update, the optimizer updates do not run but set the scalars of
// their recorded nodes, in capture order, for the next replays.
EMBER_CUDA_ENTRY(void, cuda_graph_begin_capture, (int device))
EMBER_CUDA_ENTRY(void*, cuda_graph_end_capture, (int device))
EMBER_CUDA_ENTRY_OR(void, cuda_graph_abort_capture, (int device), {})
EMBER_CUDA_ENTRY(void, cuda_graph_launch, (void* graph))
EMBER_CUDA_ENTRY_OR(void, cuda_graph_destroy, (void* graph), {})
EMBER_CUDA_ENTRY(void, cuda_graph_begin_update, (void* graph))
EMBER_CUDA_ENTRY(void, cuda_graph_end_update, (void* graph))
EMBER_CUDA_ENTRY_OR(bool, cuda_graph_updating, (), { return false; })
// The host-device round-trip counters (runtime/device.h: cuda_round_trips()).
EMBER_CUDA_ENTRY_OR(CudaRoundTrips, cuda_round_trips, (), { return {}; })
EMBER_CUDA_ENTRY_OR(void, reset_cuda_round_trips, (), {})
// Page-locked host memory straight from the driver (cudaHostAlloc, uncached; needs a device); the
// runtime's pinned host allocator (runtime/allocator.h) caches these blocks.
EMBER_CUDA_ENTRY(void*, cuda_host_alloc, (size_t nbytes))
EMBER_CUDA_ENTRY_OR(void, cuda_host_free, (void* p), {})

// --- elementwise -----------------------------------------------------------------------------
// out = op(x; a, b); x has out's shape (maybe strided).
void unary_cpu(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b);
// f16/bf16 x, contiguous: op(x) in x's dtype, computed in float32 chunk by chunk and rounded once
// (the bits of widening x, the float32 op and rounding), in one pass. Undefined (nothing
// allocated) for other dtypes or layouts and for the ops without this path. binary_half_cpu
// likewise for x and y of one dtype and shape.
Tensor unary_half_cpu(UnaryOp op, const Tensor& x, double a, double b);
Tensor binary_half_cpu(BinaryOp op, const Tensor& x, const Tensor& y);
EMBER_CUDA_ENTRY(void, unary_cuda, (UnaryOp op, const Tensor& x, const Tensor& out, double a, double b))
// out = op(x, y); x, y expanded to out's shape. Comparison ops write 0/1 in out's dtype.
void binary_cpu(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out);
EMBER_CUDA_ENTRY(void, binary_cuda, (BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out))
// out = cond ? x : y (all expanded to out's shape; cond is bool)
void where_cpu(const Tensor& cond, const Tensor& x, const Tensor& y, const Tensor& out);
EMBER_CUDA_ENTRY(void, where_cuda, (const Tensor& cond, const Tensor& x, const Tensor& y, const Tensor& out))
// dst = src elementwise (same shape, any strides, any dtypes, same device)
void copy_cpu(const Tensor& src, const Tensor& dst);
EMBER_CUDA_ENTRY(void, copy_cuda, (const Tensor& src, const Tensor& dst))
void fill_cpu(const Tensor& dst, double value);
EMBER_CUDA_ENTRY(void, fill_cuda, (const Tensor& dst, double value))
// dst += alpha*x*y (addcmul; y undefined: dst += alpha*x) or dst += alpha*x/y (addcdiv), evaluated left to right as torch
void axpby_cpu(const Tensor& dst, const Tensor& x, const Tensor& y, double alpha, bool divide);
EMBER_CUDA_ENTRY(void, axpby_cuda, (const Tensor& dst, const Tensor& x, const Tensor& y, double alpha, bool divide))

// --- reductions ------------------------------------------------------------------------------
enum class ReduceOp { Sum, Max };
// out has x's rank with reduced dims of size 1 (out is contiguous). For Max, indices (i64,
// same shape as out) receives the position along the single reduced dim when defined.
void reduce_cpu(ReduceOp op, const Tensor& x, const DimList& dims, const Tensor& out, const Tensor& indices);
// out (columns, float32) = the column sums of x, a contiguous (rows, columns) f16/bf16 matrix: the
// bits of reduce_cpu's sum over dim 0 of x widened to float32, without the float32 copy of x.
void sum_rows_half_cpu(const Tensor& x, const Tensor& out);
EMBER_CUDA_ENTRY(void, reduce_cuda, (ReduceOp op, const Tensor& x, const DimList& dims, const Tensor& out,
                 const Tensor& indices))
// out (0-d) = sum((a - b)^2) of contiguous a, b of one floating dtype, in the order of
// reduce_cpu's full sum of the squared difference; also writes a - b to diff when it is defined.
// CPU only (elsewhere mse_loss composes sub, mul and sum).
void squared_error_sum_cpu(const Tensor& a, const Tensor& b, const Tensor& diff, const Tensor& out);
// out = (log_)softmax(x) along dim (x, out contiguous)
void softmax_cpu(const Tensor& x, int dim, bool log, const Tensor& out);
EMBER_CUDA_ENTRY(void, softmax_cuda, (const Tensor& x, int dim, bool log, const Tensor& out))

// --- matrix multiply -------------------------------------------------------------------------
// out[b] = a[b] @ w[b] for a: (B, M, K), w: (B, K, N), out: (B, M, N) contiguous. a and w may be
// row- or column-major per batch (stride 1 along either of the last two dims) and may have batch
// stride 0. beta=1 accumulates into out. f16/bf16 operands (all three of one dtype) accumulate in
// float32 and round once (beta 0 or 1): autocast's matrix products.
void bmm_cpu(const Tensor& a, const Tensor& w, const Tensor& out, double beta);
// out = a @ w + bias, bias (N values of out's dtype) added to every row of every batch: the bits
// of copying the bias into out and bmm_cpu with beta = 1, in one pass (the GEMM's epilogue). The
// bias may be undefined (nothing added). relu (float32/64 only): out = relu(out), the bits of the
// elementwise ReLU after it, applied as the GEMM stores out.
void bmm_bias_cpu(const Tensor& a, const Tensor& w, const Tensor& bias, const Tensor& out, bool relu = false);
// A float32/64 linear weight w (N, K) packed as the GEMM reads op(B) = w^T (kernels/cpu/gemm.h's
// gemm_pack_b_cpu): a 1-D tensor of the panels, *kernel set to the GEMM backend they are for.
// Undefined (and *kernel -1) where the GEMM in use packs nothing.
Tensor pack_linear_weight_cpu(const Tensor& w, int* kernel);
// The GEMM backend pack_linear_weight_cpu packs for now (an int of kernels/cpu/gemm_backend.h's
// GemmBackend); products with panels packed for another one take the unpacked weight.
int gemm_packing_backend();
// out (M, N, contiguous) = x (M, K, row-major) @ w^T + bias (undefined: none), relu'd when set,
// from pack_linear_weight_cpu's panels: the bits of bmm_bias_cpu with the unpacked weight. Throws
// when the backend in use is not the one the panels are for.
void linear_packed_cpu(const Tensor& x, const Tensor& panels, int kernel, int64_t N, const Tensor& bias,
                       const Tensor& out, bool relu);
// out (M, N, float32, contiguous) = a (1, M, K) @ w (1, K, N) for bf16 a and w (row- or
// column-major): float32 sums of exact products, not rounded to bf16 (the weight gradient of a
// float32 parameter under bf16 autocast).
void bmm_bf16_f32_cpu(const Tensor& a, const Tensor& w, const Tensor& out);
EMBER_CUDA_ENTRY(void, bmm_cuda, (const Tensor& a, const Tensor& w, const Tensor& out, double beta))

// --- convolution and pooling (NCHW, contiguous) ----------------------------------------------
struct ConvGeom {
  int64_t N, C, H, W;       // input
  int64_t K, kh, kw;        // output channels, kernel
  int64_t OH, OW;           // output
  int64_t sh, sw, ph, pw, dh, dw, groups;
};
// The three take f32/f64, or f16/bf16 with float32 accumulation (x, w, y of one dtype).
// y: (N, K, OH, OW) = conv(x: (N, C, H, W), w: (K, C/g, kh, kw)); no bias
void conv2d_cpu(const ConvGeom& g, const Tensor& x, const Tensor& w, const Tensor& y);
EMBER_CUDA_ENTRY(void, conv2d_cuda, (const ConvGeom& g, const Tensor& x, const Tensor& w, const Tensor& y))
// dx: (N, C, H, W) = conv2d's input gradient for dy (this is also conv_transpose2d's forward)
void conv2d_backward_input_cpu(const ConvGeom& g, const Tensor& dy, const Tensor& w, const Tensor& dx);
EMBER_CUDA_ENTRY(void, conv2d_backward_input_cuda, (const ConvGeom& g, const Tensor& dy, const Tensor& w,
                 const Tensor& dx))
// The two above plus a bias (K values for y, C for dx; f32/f64, contiguous, of the output's dtype):
// the bits of adding it to the output afterwards, without that pass where the kernel adds it as it
// stores the output. CPU only, like bmm_bias_cpu.
void conv2d_bias_cpu(const ConvGeom& g, const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y);
void conv2d_backward_input_bias_cpu(const ConvGeom& g, const Tensor& dy, const Tensor& w, const Tensor& bias,
                                    const Tensor& dx);
// dw: (K, C/g, kh, kw) = conv2d's weight gradient
void conv2d_backward_weight_cpu(const ConvGeom& g, const Tensor& x, const Tensor& dy, const Tensor& dw);
EMBER_CUDA_ENTRY(void, conv2d_backward_weight_cuda, (const ConvGeom& g, const Tensor& x, const Tensor& dy,
                 const Tensor& dw))

// Pooling geometry (PoolGeom) and windows: kernels/common/pool.h.
// indices (i64, y's shape) records the flat h*W+w argmax for backward
void max_pool2d_cpu(const PoolGeom& g, const Tensor& x, const Tensor& y, const Tensor& indices);
EMBER_CUDA_ENTRY(void, max_pool2d_cuda, (const PoolGeom& g, const Tensor& x, const Tensor& y, const Tensor& indices))
void max_pool2d_backward_cpu(const PoolGeom& g, const Tensor& dy, const Tensor& indices, const Tensor& dx);
EMBER_CUDA_ENTRY(void, max_pool2d_backward_cuda, (const PoolGeom& g, const Tensor& dy, const Tensor& indices,
                 const Tensor& dx))
void avg_pool2d_cpu(const PoolGeom& g, const Tensor& x, const Tensor& y);
EMBER_CUDA_ENTRY(void, avg_pool2d_cuda, (const PoolGeom& g, const Tensor& x, const Tensor& y))
void avg_pool2d_backward_cpu(const PoolGeom& g, const Tensor& dy, const Tensor& dx);
EMBER_CUDA_ENTRY(void, avg_pool2d_backward_cuda, (const PoolGeom& g, const Tensor& dy, const Tensor& dx))

// --- indexing --------------------------------------------------------------------------------
// out = x.index_select(dim, index) (out contiguous, index i64 contiguous and validated)
void index_select_cpu(const Tensor& x, int dim, const Tensor& index, const Tensor& out);
EMBER_CUDA_ENTRY(void, index_select_cuda, (const Tensor& x, int dim, const Tensor& index, const Tensor& out))
// out.index_select(dim, index) += src (index_add_, used by backward)
void index_add_cpu(const Tensor& out, int dim, const Tensor& index, const Tensor& src);
EMBER_CUDA_ENTRY(void, index_add_cuda, (const Tensor& out, int dim, const Tensor& index, const Tensor& src))
// nll: logp (M, C) contiguous, target (M) i64, weight (C) or undefined.
// out_losses (M): -w[t]*logp[i,t] (0 for ignore_index), out_weights (M): w[t] or 0.
void nll_loss_cpu(const Tensor& logp, const Tensor& target, const Tensor& weight, int64_t ignore_index,
                  const Tensor& out_losses, const Tensor& out_weights);
// The CUDA kernel does not stop the host for a bad target: it skips it (loss and weight 0) and
// sets status (i64 [2], zeroed by the caller) to {1, the target} for the front end's deferred check.
EMBER_CUDA_ENTRY(void, nll_loss_cuda, (const Tensor& logp, const Tensor& target, const Tensor& weight,
                 int64_t ignore_index, const Tensor& out_losses, const Tensor& out_weights, const Tensor& status))
// dlogp (M, C) zeroed by the caller: dlogp[i, t_i] = -w[t_i] * g[i]
void nll_loss_backward_cpu(const Tensor& g, const Tensor& target, const Tensor& weight, int64_t ignore_index,
                           const Tensor& dlogp);
EMBER_CUDA_ENTRY(void, nll_loss_backward_cuda, (const Tensor& g, const Tensor& target, const Tensor& weight,
                 int64_t ignore_index, const Tensor& dlogp))

// --- conversion ------------------------------------------------------------------------------
// dst[i] = float(src[i]) / divisor for n elements (CPU buffers, no overlap), same bits on every ISA
void u8_to_f32_divided_cpu(const uint8_t* src, float* dst, int64_t n, float divisor);

// --- random (Philox4x32-10; element i uses counter block offset + i/4, lane i%4) -------------
// RandomDist and the values of one counter block: kernels/common/random.h.
// out (contiguous f32/f64) = dist(a, b) drawn from (seed, offset): Uniform in [a, b), Normal(mean a,
// std b), Bernoulli(p a) as 0/1.
void random_cpu(RandomDist dist, uint64_t seed, uint64_t offset, double a, double b, const Tensor& out);
EMBER_CUDA_ENTRY(void, random_cuda, (RandomDist dist, uint64_t seed, uint64_t offset, double a, double b,
                 const Tensor& out))

}  // namespace ember::kernels

namespace ember::kernels {

// --- fused optimizer updates (runtime/ops_optim.cpp's fused_*_ front ends call these) ----------
// One in-place elementwise pass per parameter with the math of kernels/common/optim.h, so the CPU
// and CUDA give the same bits. p, g and the state are contiguous tensors of p's dtype (f32/f64)
// and shape on one device; state an option leaves out is undefined.
// buf undefined unless momentum != 0.
void sgd_update_cpu(const Tensor& p, const Tensor& g, const Tensor& buf, const SgdUpdate& u);
EMBER_CUDA_ENTRY(void, sgd_update_cuda, (const Tensor& p, const Tensor& g, const Tensor& buf, const SgdUpdate& u))
// vmax undefined unless amsgrad. lowp, when defined (f32 p only: p.numel() contiguous bf16/f16
// values), receives the updated p rounded to its dtype, each chunk right after its update.
void adam_update_cpu(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, const Tensor& vmax,
                     const AdamUpdate& u, const Tensor& lowp = Tensor());
EMBER_CUDA_ENTRY(void, adam_update_cuda, (const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                 const Tensor& vmax, const AdamUpdate& u))
// buf undefined unless momentum > 0, grad_avg unless centered.
void rmsprop_update_cpu(const Tensor& p, const Tensor& g, const Tensor& square_avg, const Tensor& buf,
                        const Tensor& grad_avg, const RmspropUpdate& u);
EMBER_CUDA_ENTRY(void, rmsprop_update_cuda, (const Tensor& p, const Tensor& g, const Tensor& square_avg,
                 const Tensor& buf, const Tensor& grad_avg, const RmspropUpdate& u))
void adagrad_update_cpu(const Tensor& p, const Tensor& g, const Tensor& sum, const AdagradUpdate& u);
EMBER_CUDA_ENTRY(void, adagrad_update_cuda, (const Tensor& p, const Tensor& g, const Tensor& sum, const AdagradUpdate& u))

}  // namespace ember::kernels
