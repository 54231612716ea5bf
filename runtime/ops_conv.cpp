// Front ends of conv2d, conv_transpose2d, max_pool2d and avg_pool2d: argument checks, output
// sizes exactly as PyTorch computes them, device dispatch and autograd. Inputs are NCHW, or CHW
// (unbatched) as in PyTorch; the kernels see contiguous 4-D tensors only. The convolutions take
// f16/bf16 too (float32 accumulation) and are autocast's low-precision ops; pooling computes half
// inputs in float32.
#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "ember/runtime/autograd.h"
#include "runtime/dispatch.h"
#include "ember/runtime/error.h"
#include "ember/runtime/ops.h"

namespace ember {
namespace {

using Pair = std::array<int64_t, 2>;

std::string str(const Shape& v) { return v.str(); }
std::string str(const Pair& p) { return Shape{p[0], p[1]}.str(); }

// A (height, width) option given as one value (both dims) or two, each at least `min`.
Pair pair_option(const Shape& v, const char* op, const char* what, int64_t min) {
  EMBER_CHECK(v.size() == 1 || v.size() == 2, "[", op, "] ", what, " must have 1 or 2 values, got ", v.size(),
              " ", str(v));
  const Pair p{v[0], v.back()};
  EMBER_CHECK(p[0] >= min && p[1] >= min, "[", op, "] ", what, " must be >= ", min, ", got ", str(v));
  return p;
}

// floor(a / b) for b > 0, as PyTorch's div_rtn.
int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Checks that x is a defined 3-D (C, H, W) or 4-D (N, C, H, W) f32/f64 tensor (or f16/bf16, which
// the convolutions take).
void check_image(const Tensor& x, const char* op, bool half_ok = false) {
  EMBER_CHECK(x.defined(), "[", op, "] input is undefined");
  EMBER_CHECK(x.dim() == 3 || x.dim() == 4, "[", op, "] expected input of rank 3 (C, H, W) or 4 (N, C, H, W), got ",
              x.shape().str());
  EMBER_CHECK(is_compute_floating(x.dtype()) || (half_ok && detail::is_half(x.dtype())), "[", op, "] dtype ",
              dtype_name(x.dtype()), " is not supported (expected ", half_ok ? "f32, f64, f16 or bf16" : "f32 or f64",
              ")");
}

// Checks weight (and bias, when defined) against the input's dtype and device.
void check_params(const Tensor& x, const Tensor& w, const Tensor& b, const char* op) {
  EMBER_CHECK(w.defined(), "[", op, "] weight is undefined");
  EMBER_CHECK(w.dim() == 4, "[", op, "] expected weight of rank 4, got ", w.shape().str());
  for (const Tensor* t : {&w, &b}) {
    if (!t->defined()) continue;
    const char* what = t == &w ? "weight" : "bias";
    EMBER_CHECK(t->dtype() == x.dtype(), "[", op, "] input has dtype ", dtype_name(x.dtype()), " but ", what,
                " has dtype ", dtype_name(t->dtype()));
    EMBER_CHECK(t->device() == x.device(), "[", op, "] input is on ", x.device().str(), " but ", what, " is on ",
                t->device().str());
  }
}

// An uninitialised tensor of `shape` with like's dtype and device.
Tensor alloc(const Shape& shape, const Tensor& like) {
  return empty(shape, TensorOptions(like.dtype()).with_device(like.device()));
}

// y: (N, K, OH, OW) = conv(x, w) for contiguous x, w.
Tensor conv_forward(const kernels::ConvGeom& g, const Tensor& x, const Tensor& w) {
  Tensor y = alloc({g.N, g.K, g.OH, g.OW}, x);
  EMBER_DISPATCH(x.device(), conv2d, g, x, w, y);
  return y;
}

// dx: (N, C, H, W) from dy: (N, K, OH, OW) for contiguous dy, w.
Tensor conv_backward_input(const kernels::ConvGeom& g, const Tensor& dy, const Tensor& w) {
  Tensor dx = alloc({g.N, g.C, g.H, g.W}, dy);
  EMBER_DISPATCH(dy.device(), conv2d_backward_input, g, dy, w, dx);
  return dx;
}

// dw: (K, C/groups, kh, kw) from x: (N, C, H, W) and dy: (N, K, OH, OW), both contiguous.
Tensor conv_backward_weight(const kernels::ConvGeom& g, const Tensor& x, const Tensor& dy) {
  Tensor dw = alloc({g.K, g.C / g.groups, g.kh, g.kw}, x);
  EMBER_DISPATCH(x.device(), conv2d_backward_weight, g, x, dy, dw);
  return dw;
}

// Adds bias (K) to y (N, K, OH, OW) in place, outside autograd (half types: through float, rounded).
void add_bias(Tensor& y, const Tensor& bias) {
  if (!bias.defined()) return;
  NoGradGuard no_grad;
  if (detail::is_half(y.dtype())) y = add(y, bias.detach().view({1, bias.numel(), 1, 1}));
  else y.add_(bias.detach().view({1, bias.numel(), 1, 1}));
}

// True where the CPU kernels add the bias as they store the output (float32 and float64).
bool fused_bias(const Tensor& x, const Tensor& bias) {
  return bias.defined() && x.device().is_cpu() && !detail::is_half(x.dtype()) && bias.is_contiguous();
}

// Records a convolution node; `transposed` picks which kernels form the gradients.
void record_conv(const char* op, const kernels::ConvGeom& g, bool transposed, const Tensor& x, const Tensor& xc,
                 const Tensor& w, const Tensor& wc, const Tensor& b, Tensor& y) {
  autograd::TensorList inputs{x, w};
  if (b.defined()) inputs.push_back(b);
  if (!autograd::any_requires_grad(inputs)) return;
  const bool need_x = x.requires_grad(), need_w = w.requires_grad(), need_b = b.defined() && b.requires_grad();
  const size_t n_inputs = inputs.size();
  autograd::SavedTensor saved_x(xc), saved_w(wc);
  autograd::record(op, inputs, y, [=](const Tensor& grad) -> autograd::TensorList {
    const Tensor gy = grad.contiguous();
    const Tensor xs = saved_x.get(op), ws = saved_w.get(op);
    autograd::TensorList grads(n_inputs);
    if (transposed) {
      // y = conv_backward_input(x): its adjoint is the convolution of gy.
      if (need_x) grads[0] = conv_forward(g, gy, ws);
      if (need_w) grads[1] = conv_backward_weight(g, gy, xs);
    } else {
      if (need_x) grads[0] = conv_backward_input(g, gy, ws);
      if (need_w) grads[1] = conv_backward_weight(g, xs, gy);
    }
    if (need_b) grads[2] = sum(gy, {0, 2, 3});
    return grads;
  });
}

struct ConvArgs {
  Pair stride, padding, dilation, output_padding;
  int64_t groups;
};

ConvArgs conv_args(const Conv2dOptions& o, const char* op, bool transposed) {
  ConvArgs a{pair_option(o.stride, op, "stride", 1), pair_option(o.padding, op, "padding", 0),
             pair_option(o.dilation, op, "dilation", 1), pair_option(o.output_padding, op, "output_padding", 0),
             o.groups};
  EMBER_CHECK(a.groups >= 1, "[", op, "] groups must be >= 1, got ", a.groups);
  if (transposed) {
    for (int d = 0; d < 2; ++d)
      EMBER_CHECK(a.output_padding[d] < std::max(a.stride[d], a.dilation[d]), "[", op, "] output_padding ",
                  str(a.output_padding), " must be smaller than either stride ", str(a.stride), " or dilation ",
                  str(a.dilation), " in each dim");
  } else {
    EMBER_CHECK(a.output_padding == (Pair{0, 0}), "[", op, "] output_padding ", str(a.output_padding),
                " applies to conv_transpose2d only");
  }
  return a;
}

// Runs a 4-D op on a 3-D (unbatched) input by adding and removing the batch dim.
template <typename Fn>
Tensor batched(const Tensor& x, Fn&& fn) {
  return x.dim() == 3 ? fn(x.unsqueeze(0)).squeeze(0) : fn(x);
}

// Output size of a pooling window sweep, exactly as PyTorch's pooling_output_shape.
int64_t pool_out(int64_t in, int64_t k, int64_t pad, int64_t stride, int64_t dil, bool ceil_mode) {
  int64_t out = floor_div(in + 2 * pad - dil * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0), stride) + 1;
  // With ceil_mode the last window must start inside the input or its left padding.
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

kernels::PoolGeom pool_geom(const Tensor& x, const Pool2dOptions& o, const char* op, bool is_max) {
  check_image(x, op);
  const Pair k = pair_option(o.kernel_size, op, "kernel_size", 1);
  const Pair s = o.stride.empty() ? k : pair_option(o.stride, op, "stride", 1);
  const Pair p = pair_option(o.padding, op, "padding", 0);
  const Pair d = pair_option(o.dilation, op, "dilation", 1);
  EMBER_CHECK(is_max || d == (Pair{1, 1}), "[", op, "] dilation ", str(d), " applies to max_pool2d only");
  EMBER_CHECK(p[0] <= k[0] / 2 && p[1] <= k[1] / 2, "[", op, "] padding ", str(p),
              " must be at most half the kernel size ", str(k));
  const int64_t H = x.size(-2), W = x.size(-1);
  const int64_t OH = pool_out(H, k[0], p[0], s[0], d[0], o.ceil_mode);
  const int64_t OW = pool_out(W, k[1], p[1], s[1], d[1], o.ceil_mode);
  EMBER_CHECK(OH >= 1 && OW >= 1, "[", op, "] input ", x.shape().str(), " is too small for kernel_size ", str(k),
              " with padding ", str(p), " and dilation ", str(d), ": output size would be ", str(Pair{OH, OW}));
  const int64_t N = x.dim() == 4 ? x.size(0) : 1;
  return {N, x.size(-3), H, W, OH, OW, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1], o.count_include_pad};
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& opts) {
  const char* op = "conv2d";
  check_image(x, op, true);
  {
    const Tensor* in[3] = {&x, &weight, &bias};
    Tensor cast[3];
    if (detail::autocast_lowp_inputs(in, cast)) return conv2d(cast[0], cast[1], cast[2], opts);
  }
  check_params(x, weight, bias, op);
  const ConvArgs a = conv_args(opts, op, false);
  const int64_t C = x.size(-3), H = x.size(-2), W = x.size(-1);
  const int64_t K = weight.size(0), kh = weight.size(2), kw = weight.size(3);
  EMBER_CHECK(K % a.groups == 0, "[", op, "] weight ", weight.shape().str(), " has ", K,
              " output channels, which is not divisible by groups(", a.groups, ")");
  EMBER_CHECK(C == weight.size(1) * a.groups, "[", op, "] input ", x.shape().str(), " has ", C,
              " channels but weight ", weight.shape().str(), " expects ", weight.size(1), " x groups(", a.groups, ")");
  EMBER_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == K), "[", op, "] bias ", bias.shape().str(),
              " does not match the ", K, " output channels of weight ", weight.shape().str());
  const int64_t eh = a.dilation[0] * (kh - 1) + 1, ew = a.dilation[1] * (kw - 1) + 1;
  const int64_t PH = H + 2 * a.padding[0], PW = W + 2 * a.padding[1];
  EMBER_CHECK(eh <= PH && ew <= PW, "[", op, "] input ", x.shape().str(), " padded by ", str(a.padding), " is ",
              str(Pair{PH, PW}), ", smaller than the dilated kernel ", str(Pair{eh, ew}));
  return batched(x, [&](const Tensor& x4) {
    const kernels::ConvGeom g{x4.size(0), C, H, W, K, kh, kw, (PH - eh) / a.stride[0] + 1, (PW - ew) / a.stride[1] + 1,
                              a.stride[0], a.stride[1], a.padding[0], a.padding[1], a.dilation[0], a.dilation[1],
                              a.groups};
    const Tensor xc = x4.detach().contiguous(), wc = weight.detach().contiguous();
    Tensor y;
    if (fused_bias(xc, bias)) {
      y = alloc({g.N, g.K, g.OH, g.OW}, xc);
      kernels::conv2d_bias_cpu(g, xc, wc, bias.detach(), y);
    } else {
      y = conv_forward(g, xc, wc);
      add_bias(y, bias);
    }
    record_conv(op, g, false, x4, xc, weight, wc, bias, y);
    return y;
  });
}

Tensor conv_transpose2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& opts) {
  const char* op = "conv_transpose2d";
  check_image(x, op, true);
  {
    const Tensor* in[3] = {&x, &weight, &bias};
    Tensor cast[3];
    if (detail::autocast_lowp_inputs(in, cast)) return conv_transpose2d(cast[0], cast[1], cast[2], opts);
  }
  check_params(x, weight, bias, op);
  const ConvArgs a = conv_args(opts, op, true);
  const int64_t C = x.size(-3), H = x.size(-2), W = x.size(-1);
  const int64_t kh = weight.size(2), kw = weight.size(3), K = weight.size(1) * a.groups;
  EMBER_CHECK(C == weight.size(0), "[", op, "] input ", x.shape().str(), " has ", C, " channels but weight ",
              weight.shape().str(), " expects ", weight.size(0));
  EMBER_CHECK(C % a.groups == 0, "[", op, "] input channels ", C, " are not divisible by groups(", a.groups, ")");
  EMBER_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == K), "[", op, "] bias ", bias.shape().str(),
              " does not match the ", K, " output channels of weight ", weight.shape().str(), " x groups(",
              a.groups, ")");
  const int64_t OH = (H - 1) * a.stride[0] - 2 * a.padding[0] + a.dilation[0] * (kh - 1) + a.output_padding[0] + 1;
  const int64_t OW = (W - 1) * a.stride[1] - 2 * a.padding[1] + a.dilation[1] * (kw - 1) + a.output_padding[1] + 1;
  EMBER_CHECK(OH >= 1 && OW >= 1, "[", op, "] input ", x.shape().str(), " with weight ", weight.shape().str(),
              ", stride ", str(a.stride), ", padding ", str(a.padding), " gives output size ", str(Pair{OH, OW}),
              ", which is too small");
  return batched(x, [&](const Tensor& x4) {
    // The convolution whose input gradient this is: input y (N, K, OH, OW), output x (N, C, H, W).
    const kernels::ConvGeom g{x4.size(0), K, OH, OW, C, kh, kw, H, W, a.stride[0], a.stride[1],
                              a.padding[0], a.padding[1], a.dilation[0], a.dilation[1], a.groups};
    const Tensor xc = x4.detach().contiguous(), wc = weight.detach().contiguous();
    Tensor y;
    if (fused_bias(xc, bias)) {
      y = alloc({g.N, g.C, g.H, g.W}, xc);
      kernels::conv2d_backward_input_bias_cpu(g, xc, wc, bias.detach(), y);
    } else {
      y = conv_backward_input(g, xc, wc);
      add_bias(y, bias);
    }
    record_conv(op, g, true, x4, xc, weight, wc, bias, y);
    return y;
  });
}

Tensor max_pool2d(const Tensor& x, const Pool2dOptions& opts) {
  const char* op = "max_pool2d";
  if (x.defined() && detail::is_half(x.dtype()))
    return detail::via_f32(x, false, [&](const Tensor& xf) { return max_pool2d(xf, opts); });
  const kernels::PoolGeom g = pool_geom(x, opts, op, true);
  return batched(x, [&](const Tensor& x4) {
    const Tensor xc = x4.detach().contiguous();
    Tensor y = alloc({g.N, g.C, g.OH, g.OW}, xc);
    Tensor indices = empty({g.N, g.C, g.OH, g.OW}, TensorOptions(DType::i64).with_device(xc.device()));
    EMBER_DISPATCH(xc.device(), max_pool2d, g, xc, y, indices);
    if (autograd::any_requires_grad({&x4})) {
      const DType dtype = xc.dtype();
      const Device device = xc.device();
      autograd::record(op, {x4}, y, [g, indices, dtype, device](const Tensor& grad) -> autograd::TensorList {
        const Tensor gy = grad.contiguous();
        Tensor dx = empty({g.N, g.C, g.H, g.W}, TensorOptions(dtype).with_device(device));
        EMBER_DISPATCH(device, max_pool2d_backward, g, gy, indices, dx);
        return {dx};
      });
    }
    return y;
  });
}

Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& opts) {
  const char* op = "avg_pool2d";
  if (x.defined() && detail::is_half(x.dtype()))
    return detail::via_f32(x, false, [&](const Tensor& xf) { return avg_pool2d(xf, opts); });
  const kernels::PoolGeom g = pool_geom(x, opts, op, false);
  return batched(x, [&](const Tensor& x4) {
    const Tensor xc = x4.detach().contiguous();
    Tensor y = alloc({g.N, g.C, g.OH, g.OW}, xc);
    EMBER_DISPATCH(xc.device(), avg_pool2d, g, xc, y);
    if (autograd::any_requires_grad({&x4})) {
      const DType dtype = xc.dtype();
      const Device device = xc.device();
      autograd::record(op, {x4}, y, [g, dtype, device](const Tensor& grad) -> autograd::TensorList {
        const Tensor gy = grad.contiguous();
        Tensor dx = empty({g.N, g.C, g.H, g.W}, TensorOptions(dtype).with_device(device));
        EMBER_DISPATCH(device, avg_pool2d_backward, g, gy, dx);
        return {dx};
      });
    }
    return y;
  });
}

}  // namespace ember
