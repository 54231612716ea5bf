// CUDA 2-D convolution (NCHW, contiguous, f32/f64): cuDNN when it takes the geometry
// (kernels/cuda/conv_cudnn.cu), otherwise direct kernels. The direct kernels gather: each output
// element is computed by one thread (forward, input gradient) or one block with a fixed tree (weight
// gradient), so they need no atomics and are deterministic. They serve builds and machines without cuDNN
// and the geometries cuDNN rejects; they are simple, not fast.
#include "kernels/cuda/conv_cudnn.h"
#include "kernels/cuda/device/block_reduce.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/kernels.h"

namespace ember::kernels {
namespace {

// y[n, k, oh, ow] = sum over the group's channels and taps of x * w.
template <typename T>
__global__ void conv_forward_kernel(ConvGeom g, const T* x, const T* w, T* y) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= g.N * g.K * g.OH * g.OW) return;
  const int64_t ow = idx % g.OW, oh = idx / g.OW % g.OH, k = idx / (g.OW * g.OH) % g.K, n = idx / (g.OW * g.OH * g.K);
  const int64_t Cg = g.C / g.groups, Kg = g.K / g.groups, c0 = k / Kg * Cg;
  T acc = 0;
  for (int64_t c = 0; c < Cg; ++c) {
    const T* xp = x + ((n * g.C + c0 + c) * g.H) * g.W;
    const T* wp = w + (k * Cg + c) * g.kh * g.kw;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t ih = oh * g.sh - g.ph + i * g.dh;
      if (ih < 0 || ih >= g.H) continue;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t iw = ow * g.sw - g.pw + j * g.dw;
        if (iw < 0 || iw >= g.W) continue;
        acc += xp[ih * g.W + iw] * wp[i * g.kw + j];
      }
    }
  }
  y[idx] = acc;
}

// dx[n, c, ih, iw] = sum of dy * w over the outputs whose window covers (ih, iw).
template <typename T>
__global__ void conv_backward_input_kernel(ConvGeom g, const T* dy, const T* w, T* dx) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= g.N * g.C * g.H * g.W) return;
  const int64_t iw = idx % g.W, ih = idx / g.W % g.H, c = idx / (g.W * g.H) % g.C, n = idx / (g.W * g.H * g.C);
  const int64_t Cg = g.C / g.groups, Kg = g.K / g.groups, grp = c / Cg, cl = c - grp * Cg;
  T acc = 0;
  for (int64_t k = grp * Kg; k < (grp + 1) * Kg; ++k) {
    const T* dyp = dy + ((n * g.K + k) * g.OH) * g.OW;
    const T* wp = w + (k * Cg + cl) * g.kh * g.kw;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t th = ih + g.ph - i * g.dh;
      if (th < 0 || th % g.sh != 0 || th / g.sh >= g.OH) continue;
      const int64_t oh = th / g.sh;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t tw = iw + g.pw - j * g.dw;
        if (tw < 0 || tw % g.sw != 0 || tw / g.sw >= g.OW) continue;
        acc += dyp[oh * g.OW + tw / g.sw] * wp[i * g.kw + j];
      }
    }
  }
  dx[idx] = acc;
}

// dw[k, cl, i, j]: one block per weight, threads over (n, oh, ow), combined by a fixed tree.
template <typename T>
__global__ void conv_backward_weight_kernel(ConvGeom g, const T* x, const T* dy, T* dw) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int64_t idx = blockIdx.x;
  const int64_t Cg = g.C / g.groups, Kg = g.K / g.groups;
  const int64_t j = idx % g.kw, i = idx / g.kw % g.kh, cl = idx / (g.kw * g.kh) % Cg, k = idx / (g.kw * g.kh * Cg);
  const int64_t c = k / Kg * Cg + cl;
  const int64_t P = g.OH * g.OW;
  T acc = 0;
  for (int64_t t = threadIdx.x; t < g.N * P; t += blockDim.x) {
    const int64_t n = t / P, oh = t % P / g.OW, ow = t % g.OW;
    const int64_t ih = oh * g.sh - g.ph + i * g.dh, iw = ow * g.sw - g.pw + j * g.dw;
    if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
    acc += x[((n * g.C + c) * g.H + ih) * g.W + iw] * dy[(n * g.K + k) * P + oh * g.OW + ow];
  }
  struct Add {
    __device__ T operator()(T a, T b) const { return a + b; }
  };
  acc = cu::block_reduce(acc, reinterpret_cast<T*>(smem_raw), Add{});
  if (threadIdx.x == 0) dw[idx] = acc;
}

bool is_half(DType t) { return t == DType::f16 || t == DType::bf16; }

// f16/bf16 where cuDNN does not serve the pass: the operands widened to float32, the float32
// kernel, and one rounding into out (float32 accumulation, as cuDNN's with float compute).
template <typename Run>
void via_f32(const Tensor& a, const Tensor& b, const Tensor& out, Run run) {
  auto widened = [](const Tensor& t) {
    Tensor f = empty(t.shape(), TensorOptions(DType::f32).with_device(t.device()));
    copy_cuda(t, f);
    return f;
  };
  Tensor o = empty(out.shape(), TensorOptions(DType::f32).with_device(out.device()));
  run(widened(a), widened(b), o);
  copy_cuda(o, out);
}

}  // namespace

void conv2d_cuda(const ConvGeom& g, const Tensor& x, const Tensor& w, const Tensor& y) {
  if (y.numel() == 0) return;
  cu::DeviceGuard guard(y);
  if (x.numel() == 0 || w.numel() == 0) return fill_cuda(y, 0.0);
  if (cu::cudnn_conv2d(cu::ConvPass::Forward, g, x, w, y)) return;
  if (is_half(x.dtype())) return via_f32(x, w, y, [&](const Tensor& a, const Tensor& b, const Tensor& o) {
    conv2d_cuda(g, a, b, o);
  });
  dispatch_floating(x.dtype(), "conv2d", [&](auto tag) {
    using T = decltype(tag);
    conv_forward_kernel<T><<<cu::blocks_for(y.numel(), cu::kThreads), cu::kThreads, 0, cu::current_stream()>>>(
        g, static_cast<const T*>(x.data_ptr()), static_cast<const T*>(w.data_ptr()), static_cast<T*>(y.data_ptr()));
    cu::check_launch("conv_forward_kernel");
  });
}

void conv2d_backward_input_cuda(const ConvGeom& g, const Tensor& dy, const Tensor& w, const Tensor& dx) {
  if (dx.numel() == 0) return;
  cu::DeviceGuard guard(dx);
  if (dy.numel() == 0 || w.numel() == 0) return fill_cuda(dx, 0.0);
  if (cu::cudnn_conv2d(cu::ConvPass::BackwardData, g, dx, w, dy)) return;
  if (is_half(dy.dtype())) return via_f32(dy, w, dx, [&](const Tensor& a, const Tensor& b, const Tensor& o) {
    conv2d_backward_input_cuda(g, a, b, o);
  });
  dispatch_floating(dy.dtype(), "conv2d_backward_input", [&](auto tag) {
    using T = decltype(tag);
    conv_backward_input_kernel<T><<<cu::blocks_for(dx.numel(), cu::kThreads), cu::kThreads, 0,
                                    cu::current_stream()>>>(g, static_cast<const T*>(dy.data_ptr()),
                                                            static_cast<const T*>(w.data_ptr()),
                                                            static_cast<T*>(dx.data_ptr()));
    cu::check_launch("conv_backward_input_kernel");
  });
}

void conv2d_backward_weight_cuda(const ConvGeom& g, const Tensor& x, const Tensor& dy, const Tensor& dw) {
  if (dw.numel() == 0) return;
  cu::DeviceGuard guard(dw);
  if (x.numel() == 0 || dy.numel() == 0) return fill_cuda(dw, 0.0);
  if (cu::cudnn_conv2d(cu::ConvPass::BackwardFilter, g, x, dw, dy)) return;
  if (is_half(x.dtype())) return via_f32(x, dy, dw, [&](const Tensor& a, const Tensor& b, const Tensor& o) {
    conv2d_backward_weight_cuda(g, a, b, o);
  });
  EMBER_CHECK(dw.numel() < (int64_t{1} << 31), "[conv2d_backward_weight] weight too large for the direct kernel");
  dispatch_floating(x.dtype(), "conv2d_backward_weight", [&](auto tag) {
    using T = decltype(tag);
    conv_backward_weight_kernel<T><<<static_cast<unsigned>(dw.numel()), cu::kThreads, cu::kThreads * sizeof(T),
                                     cu::current_stream()>>>(g, static_cast<const T*>(x.data_ptr()),
                                                             static_cast<const T*>(dy.data_ptr()),
                                                             static_cast<T*>(dw.data_ptr()));
    cu::check_launch("conv_backward_weight_kernel");
  });
}

}  // namespace ember::kernels
