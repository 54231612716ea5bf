// Front ends of matmul (1-D, 2-D, batched with broadcast) and linear (x @ W^T + b). Both take
// f16/bf16 operands (float32 accumulation, one rounding) and, inside an autocast scope, cast f32
// operands to the autocast dtype first (runtime/autocast.h).
#include "ember/runtime/autograd.h"
#include "runtime/dispatch.h"
#include "ember/runtime/ops.h"

namespace ember {

using autograd::SavedTensor;

namespace {

// A (B, R, C) view the GEMM kernel accepts: stride 1 along one of the last two dims.
Tensor gemm_operand(const Tensor& t) {
  int64_t r = t.shape()[1], c = t.shape()[2];
  const Strides& st = t.strides();
  bool row_major = st[2] == 1 && st[1] >= c;
  bool col_major = st[1] == 1 && st[2] >= r;
  return row_major || col_major ? t : t.contiguous();
}

// out (B, M, N) = a (B, M, K) @ b (B, K, N), no autograd.
Tensor bmm_raw(const Tensor& a, const Tensor& b) {
  Tensor out = empty({a.shape()[0], a.shape()[1], b.shape()[2]}, TensorOptions(a.dtype()).with_device(a.device()));
  EMBER_DISPATCH(a.device(), bmm, gemm_operand(a), gemm_operand(b), out, 0.0);
  return out;
}

// Batched matmul of (..., M, K) and (..., K, N) with broadcast batch dims, no autograd.
Tensor matmul_nd_raw(const Tensor& a, const Tensor& b) {
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(ba, bb, "matmul");
  int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  Shape ea = batch, eb = batch;
  ea.push_back(M);
  ea.push_back(K);
  eb.push_back(K);
  eb.push_back(N);
  int64_t B = batch.numel();
  Tensor a3 = a.expand(ea).reshape({B, M, K});
  Tensor b3 = b.expand(eb).reshape({B, K, N});
  Tensor out = bmm_raw(a3, b3);
  Shape os = batch;
  os.push_back(M);
  os.push_back(N);
  return out.reshape(os);
}

// linear under bf16 autocast on the CPU with float32 parameters: the forward pass of the bf16
// linear (x, the weight and the bias cast to bf16, the weight and bias casts cached), recorded as
// one node whose inputs are the float32 parameters themselves. The backward pass writes the
// weight gradient in float32 straight from the GEMM's float32 sums and the bias gradient as
// float32 column sums, instead of rounding both to bf16 and widening them again through the
// casts' backward (torch's autocast does the latter): one rounding less, and two passes over
// every weight less per step.
Tensor linear_bf16_f32_params(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  Tensor xl = autocast_lowp(x);
  Tensor wl = autocast_lowp(weight).detach(), bl = bias.defined() ? autocast_lowp(bias).detach() : Tensor();
  Tensor out;
  {
    NoGradGuard no_grad;
    out = linear(xl, wl, bl);
  }
  const int64_t in = weight.size(1), out_f = weight.size(0);
  const bool need_x = xl.requires_grad(), need_w = weight.requires_grad(), need_b = bias.defined() && bias.requires_grad();
  SavedTensor sx(need_w ? xl : Tensor()), sw(need_x ? wl : Tensor());
  Shape xs = xl.shape();
  autograd::record("linear", {xl, weight, bias}, out, [=](const Tensor& g) -> autograd::TensorList {
    Tensor g2 = g.reshape({-1, out_f});
    if (g2.dtype() != DType::bf16) g2 = g2.to(DType::bf16);
    Tensor gx, gw, gb;
    if (need_x) gx = bmm_raw(g2.unsqueeze(0), sw.get("linear").unsqueeze(0)).reshape(xs);
    if (need_w) {
      Tensor xv = sx.get("linear").reshape({-1, in});
      gw = empty({out_f, in}, TensorOptions(DType::f32));
      kernels::bmm_bf16_f32_cpu(gemm_operand(g2.t().unsqueeze(0)), gemm_operand(xv.unsqueeze(0)), gw);
    }
    if (need_b) {
      gb = empty({out_f}, TensorOptions(DType::f32));
      kernels::sum_rows_half_cpu(g2.contiguous(), gb);
    }
    return {gx, gw, gb};
  });
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  detail::check_defined(a, "matmul", "first input");
  detail::check_defined(b, "matmul", "second input");
  detail::check_same_device(a, b, "matmul");
  {
    const Tensor* in[2] = {&a, &b};
    Tensor cast[2];
    if (detail::autocast_lowp_inputs(in, cast)) return matmul(cast[0], cast[1]);
  }
  EMBER_CHECK(a.dim() >= 1 && b.dim() >= 1, "[matmul] both arguments need at least 1 dimension, got shapes ",
              a.shape().str(), " and ", b.shape().str());
  EMBER_CHECK(a.dtype() == b.dtype(), "[matmul] dtypes differ: ", dtype_name(a.dtype()), " and ", dtype_name(b.dtype()));
  detail::check_floating_or_half(a, "matmul");
  if (a.dim() == 1 && b.dim() == 1) {
    EMBER_CHECK(a.size(0) == b.size(0), "[matmul] shapes ", a.shape().str(), " and ", b.shape().str(),
                " cannot be multiplied (dot product of different lengths)");
    return matmul(a.unsqueeze(0), b.unsqueeze(1)).reshape(Shape{});
  }
  if (a.dim() == 1) return matmul(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul(a, b.unsqueeze(1)).squeeze(-1);
  EMBER_CHECK(a.size(-1) == b.size(-2), "[matmul] shapes ", a.shape().str(), " and ", b.shape().str(),
              " cannot be multiplied (", a.size(-1), " != ", b.size(-2), ")");
  Tensor out = matmul_nd_raw(a.detach(), b.detach());
  if (autograd::any_requires_grad({&a, &b})) {
    bool need_a = a.requires_grad(), need_b = b.requires_grad();
    SavedTensor sa(need_b ? a : Tensor()), sb(need_a ? b : Tensor());
    Shape shape_a = a.shape(), shape_b = b.shape();
    autograd::record("matmul", {a, b}, out, [=](const Tensor& g) -> autograd::TensorList {
      Tensor ga, gb;
      if (need_a) ga = sum_to(matmul_nd_raw(g, sb.get("matmul").transpose(-1, -2)), shape_a);
      if (need_b) gb = sum_to(matmul_nd_raw(sa.get("matmul").transpose(-1, -2), g), shape_b);
      return {ga, gb};
    });
  }
  return out;
}

namespace {

// linear, and with relu set relu(linear): one node whose backward takes the ReLU's backward
// (g where the output is > 0, else 0: torch's threshold_backward, from the saved output) first.
Tensor linear_impl(const Tensor& x, const Tensor& weight, const Tensor& bias, bool relu) {
  detail::check_defined(x, "linear", "input");
  detail::check_defined(weight, "linear", "weight");
  detail::check_same_device(x, weight, "linear");
  if (autocast_enabled() && autocast_dtype() == DType::bf16 && grad_enabled() && x.device().is_cpu() &&
      (x.dtype() == DType::f32 || x.dtype() == DType::bf16) && weight.dtype() == DType::f32 &&
      weight.requires_grad() && (!bias.defined() || bias.dtype() == DType::f32)) {
    Tensor out = linear_bf16_f32_params(x, weight, bias);
    return relu ? ember::relu(out) : out;
  }
  {
    const Tensor* in[3] = {&x, &weight, &bias};
    Tensor cast[3];
    if (detail::autocast_lowp_inputs(in, cast)) return linear_impl(cast[0], cast[1], cast[2], relu);
  }
  // The ReLU epilogue: float32/64 on the CPU; elsewhere the ReLU is the op's own.
  if (relu && !(x.device().is_cpu() && (x.dtype() == DType::f32 || x.dtype() == DType::f64)))
    return ember::relu(linear_impl(x, weight, bias, false));
  detail::check_floating_or_half(x, "linear");
  EMBER_CHECK(weight.dim() == 2, "[linear] weight must be 2-D (out_features, in_features), got shape ",
              weight.shape().str());
  EMBER_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "[linear] input shape ", x.shape().str(),
              " does not match weight shape ", weight.shape().str(), " (expected last dim ", weight.size(1), ")");
  EMBER_CHECK(x.dtype() == weight.dtype(), "[linear] input dtype ", dtype_name(x.dtype()), " differs from weight dtype ",
              dtype_name(weight.dtype()));
  int64_t in = weight.size(1), out_f = weight.size(0);
  if (bias.defined()) {
    detail::check_same_device(x, bias, "linear");
    EMBER_CHECK(bias.dim() == 1 && bias.size(0) == out_f, "[linear] bias shape ", bias.shape().str(),
                " does not match out_features ", out_f);
    EMBER_CHECK(bias.dtype() == x.dtype(), "[linear] bias dtype ", dtype_name(bias.dtype()), " differs from input dtype ",
                dtype_name(x.dtype()));
  }
  Tensor x2 = x.detach().reshape({-1, in});
  int64_t M = x2.size(0);
  Tensor out = empty({1, M, out_f}, TensorOptions(x.dtype()).with_device(x.device()));
  Tensor wt = weight.detach().t().unsqueeze(0);  // (1, in, out), column-major
  if (x.device().is_cpu() && (relu || bias.defined())) {
    // out = x2 @ W^T + bias, the bias (and the ReLU) in the GEMM's epilogue
    kernels::bmm_bias_cpu(gemm_operand(x2.unsqueeze(0)), wt, bias.defined() ? bias.detach().contiguous() : Tensor(),
                          out, relu);
  } else if (bias.defined()) {
    // out = bias (broadcast over rows), then out += x2 @ W^T
    EMBER_DISPATCH(x.device(), copy, bias.detach().expand({1, M, out_f}), out);
    EMBER_DISPATCH(x.device(), bmm, gemm_operand(x2.unsqueeze(0)), wt, out, 1.0);
  } else {
    EMBER_DISPATCH(x.device(), bmm, gemm_operand(x2.unsqueeze(0)), wt, out, 0.0);
  }
  Shape os = x.shape();
  os[os.size() - 1] = out_f;
  out = out.reshape(os);
  if (autograd::any_requires_grad({&x, &weight, &bias})) {
    bool need_x = x.requires_grad(), need_w = weight.requires_grad(), need_b = bias.defined() && bias.requires_grad();
    SavedTensor sx(need_w ? x : Tensor()), sw(need_x ? weight : Tensor()), sy(relu ? out : Tensor());
    Shape xs = x.shape();
    autograd::record(relu ? "linear_relu" : "linear", {x, weight, bias}, out, [=](const Tensor& g) -> autograd::TensorList {
      Tensor g2 = g.reshape({-1, out_f});
      if (relu) {
        const Tensor y = sy.get("linear_relu");
        Tensor gy = g.detach();
        if (gy.dtype() != y.dtype()) gy = gy.to(y.dtype());
        Tensor gr = empty(y.shape(), TensorOptions(y.dtype()).with_device(y.device()));
        EMBER_DISPATCH(y.device(), binary, kernels::BinaryOp::ReluBackward, gy, y, gr);
        g2 = gr.reshape({-1, out_f});
      }
      Tensor gx, gw, gb;
      if (need_x) gx = bmm_raw(g2.unsqueeze(0), sw.get("linear").unsqueeze(0)).reshape(xs);
      if (need_w) {
        Tensor xv = sx.get("linear").reshape({-1, in});
        gw = bmm_raw(g2.t().unsqueeze(0), xv.unsqueeze(0)).reshape({out_f, in});
      }
      if (need_b) gb = sum(g2, {0});
      return {gx, gw, gb};
    });
  }
  return out;
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) { return linear_impl(x, weight, bias, false); }

Tensor linear_relu(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  return linear_impl(x, weight, bias, true);
}

PackedLinearWeight pack_linear_weight(const Tensor& weight) {
  detail::check_defined(weight, "pack_linear_weight", "weight");
  PackedLinearWeight p;
  p.weight = weight;  // not detached: the products that fall back to linear differentiate it
  if (weight.device().is_cpu() && weight.dim() == 2 && (weight.dtype() == DType::f32 || weight.dtype() == DType::f64))
    p.panels = kernels::pack_linear_weight_cpu(weight.detach(), &p.kernel);
  return p;
}

Tensor linear_packed(const Tensor& x, const PackedLinearWeight& w, const Tensor& bias, bool relu) {
  detail::check_defined(w.weight, "linear_packed", "weight");
  const bool usable = w.panels.defined() && w.kernel == kernels::gemm_packing_backend() && x.defined() &&
                      x.device().is_cpu() && x.dtype() == w.weight.dtype() && x.dim() >= 1 &&
                      x.size(-1) == w.weight.size(1) && !autocast_enabled() &&
                      !autograd::any_requires_grad({&x, &w.weight, &bias}) &&
                      (!bias.defined() || (bias.device().is_cpu() && bias.dtype() == x.dtype() && bias.dim() == 1 &&
                                           bias.size(0) == w.weight.size(0) && bias.is_contiguous()));
  if (!usable) return relu ? linear_relu(x, w.weight, bias) : linear(x, w.weight, bias);
  const int64_t in = w.weight.size(1), out_f = w.weight.size(0);
  const Tensor x2 = x.detach().reshape({-1, in}).contiguous();
  Tensor out = empty({x2.size(0), out_f}, TensorOptions(x.dtype()));
  kernels::linear_packed_cpu(x2, w.panels, w.kernel, out_f, bias.defined() ? bias.detach() : Tensor(), out, relu);
  Shape os = x.shape();
  os[os.size() - 1] = out_f;
  return out.reshape(os);
}

}  // namespace ember
