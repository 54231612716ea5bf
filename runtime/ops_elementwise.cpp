// Front ends of the elementwise ops (binary with broadcasting, scalar, unary, comparisons,
// where) and their backward formulas. f16/bf16 inputs are computed in float32 and rounded back to
// their dtype: the CPU kernels do that chunk by chunk for contiguous tensors of one shape (the
// activations of mixed precision, their gradients, scalar arithmetic); other ops and layouts, and
// CUDA, widen the inputs to float32 tensors first. Inside an autocast scope exp, log and pow return f32.
#include <cmath>
#include <limits>

#include "ember/runtime/autograd.h"
#include "runtime/dispatch.h"
#include "ember/runtime/ops.h"

namespace ember {

using kernels::BinaryOp;
using kernels::UnaryOp;
using autograd::SavedTensor;

namespace {

// out = op(x; a, b) without autograd; x must be floating.
Tensor unary_raw(UnaryOp op, const Tensor& x, double a = 0.0, double b = 0.0) {
  if (detail::is_half(x.dtype())) {
    if (x.device().is_cpu()) {
      Tensor out = kernels::unary_half_cpu(op, x, a, b);
      if (out.defined()) return out;
    }
    return unary_raw(op, x.detach().to(DType::f32), a, b).to(x.dtype());
  }
  Tensor out = empty(x.shape(), TensorOptions(x.dtype()).with_device(x.device()));
  EMBER_DISPATCH(x.device(), unary, op, x, out, a, b);
  return out;
}

// out = op(a, b) broadcast, without autograd. Comparisons give bool.
Tensor binary_raw(BinaryOp op, const char* name, const Tensor& a, const Tensor& b, bool compare = false) {
  detail::check_defined(a, name, "first input");
  detail::check_defined(b, name, "second input");
  detail::check_same_device(a, b, name);
  DType t = promote_types(a.dtype(), b.dtype());
  EMBER_CHECK(t != DType::b8 && t != DType::u8, "[", name, "] dtypes ", dtype_name(a.dtype()), " and ",
              dtype_name(b.dtype()), " are not supported (expected f32, f64, f16, bf16, i32 or i64)");
  if (detail::is_half(t) && !compare && a.device().is_cpu()) {
    Tensor out = kernels::binary_half_cpu(op, a, b);
    if (out.defined()) return out;
  }
  if (detail::is_half(t)) {
    Tensor out = binary_raw(op, name, a.detach().to(DType::f32), b.detach().to(DType::f32), compare);
    return compare ? out : out.to(t);
  }
  Shape s = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor ea = a.detach(), eb = b.detach();
  if (ea.dtype() != t) ea = ea.to(t);
  if (eb.dtype() != t) eb = eb.to(t);
  Tensor out = empty(s, TensorOptions(compare ? DType::b8 : t).with_device(a.device()));
  EMBER_DISPATCH(a.device(), binary, op, ea.expand(s), eb.expand(s), out);
  return out;
}

Tensor unary_op(const char* name, UnaryOp op, const Tensor& x, double a, double b,
                std::function<autograd::BackwardFn(const Tensor& x, const Tensor& out)> make_backward) {
  detail::check_defined(x, name, "input");
  detail::check_floating_or_half(x, name);
  Tensor out = unary_raw(op, x, a, b);
  if (autograd::any_requires_grad({&x})) autograd::record(name, {x}, out, make_backward(x, out));
  return out;
}

}  // namespace

// --- binary -----------------------------------------------------------------------------------

Tensor add(const Tensor& a, const Tensor& b, double alpha) {
  Tensor out = alpha == 1.0 ? binary_raw(BinaryOp::Add, "add", a, b) : binary_raw(BinaryOp::Add, "add", a, mul(b.detach(), alpha));
  if (autograd::any_requires_grad({&a, &b})) {
    Shape sa = a.shape(), sb = b.shape();
    autograd::record("add", {a, b}, out, [sa, sb, alpha](const Tensor& g) -> autograd::TensorList {
      return {sum_to(g, sa), sum_to(alpha == 1.0 ? g : mul(g, alpha), sb)};
    });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b, double alpha) {
  Tensor out = alpha == 1.0 ? binary_raw(BinaryOp::Sub, "sub", a, b) : binary_raw(BinaryOp::Sub, "sub", a, mul(b.detach(), alpha));
  if (autograd::any_requires_grad({&a, &b})) {
    Shape sa = a.shape(), sb = b.shape();
    autograd::record("sub", {a, b}, out, [sa, sb, alpha](const Tensor& g) -> autograd::TensorList {
      return {sum_to(g, sa), sum_to(mul(g, -alpha), sb)};
    });
  }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::Mul, "mul", a, b);
  if (autograd::any_requires_grad({&a, &b})) {
    Shape sa = a.shape(), sb = b.shape();
    bool need_a = a.requires_grad(), need_b = b.requires_grad();
    SavedTensor sva(need_b ? a : Tensor()), svb(need_a ? b : Tensor());
    autograd::record("mul", {a, b}, out, [=](const Tensor& g) -> autograd::TensorList {
      return {need_a ? sum_to(mul(g, svb.get("mul")), sa) : Tensor(),
              need_b ? sum_to(mul(g, sva.get("mul")), sb) : Tensor()};
    });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::Div, "div", a, b);
  if (autograd::any_requires_grad({&a, &b})) {
    Shape sa = a.shape(), sb = b.shape();
    bool need_b = b.requires_grad();
    SavedTensor sva(need_b ? a : Tensor()), svb(b);
    autograd::record("div", {a, b}, out, [=](const Tensor& g) -> autograd::TensorList {
      Tensor bb = svb.get("div");
      Tensor gb;
      if (need_b) gb = sum_to(neg(div(mul(g, sva.get("div")), mul(bb, bb))), sb);
      return {sum_to(div(g, bb), sa), gb};
    });
  }
  return out;
}

Tensor pow(const Tensor& a, const Tensor& b) {
  if (autocast_enabled() && detail::any_half({&a, &b})) return pow(detail::f32_if_half(a), detail::f32_if_half(b));
  Tensor out = binary_raw(BinaryOp::Pow, "pow", a, b);
  if (autograd::any_requires_grad({&a, &b})) {
    Shape sa = a.shape(), sb = b.shape();
    SavedTensor sva(a), svb(b), svo(out);
    autograd::record("pow", {a, b}, out, [=](const Tensor& g) -> autograd::TensorList {
      Tensor x = sva.get("pow"), y = svb.get("pow"), o = svo.get("pow");
      // d/da = b * a^(b-1) (0 where b == 0); d/db = a^b * log(a) (0 where a == 0 and b >= 0)
      Tensor ga = where(eq(y, zeros_like(y)), zeros_like(o), mul(y, pow(x, sub(y, 1.0))));
      Tensor zero_base = gt(mul(eq(x, zeros_like(x)).to(x.dtype()), ge(y, zeros_like(y)).to(x.dtype())), zeros_like(x));
      Tensor gb = where(zero_base, zeros_like(o), mul(o, log(x)));
      return {sum_to(mul(g, ga), sa), sum_to(mul(g, gb), sb)};
    });
  }
  return out;
}

namespace {
// maximum / minimum: the gradient goes to the winning input; ties split it equally (as torch).
Tensor extremum(bool is_max, const Tensor& a, const Tensor& b) {
  const char* name = is_max ? "maximum" : "minimum";
  Tensor out = binary_raw(is_max ? BinaryOp::Max : BinaryOp::Min, name, a, b);
  if (autograd::any_requires_grad({&a, &b})) {
    Shape sa = a.shape(), sb = b.shape();
    SavedTensor sva(a), svb(b);
    autograd::record(name, {a, b}, out, [=](const Tensor& g) -> autograd::TensorList {
      Tensor x = sva.get(name), y = svb.get(name);
      Tensor half = mul(g, 0.5);
      Tensor z = zeros_like(g);
      Tensor a_wins = is_max ? gt(x, y) : lt(x, y), b_wins = is_max ? lt(x, y) : gt(x, y);
      Tensor tie = eq(x, y);
      return {sum_to(where(tie, half, where(a_wins, g, z)), sa), sum_to(where(tie, half, where(b_wins, g, z)), sb)};
    });
  }
  return out;
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) { return extremum(true, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum(false, a, b); }

// --- comparisons ------------------------------------------------------------------------------

Tensor eq(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::Eq, "eq", a, b, true); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::Gt, "gt", a, b, true); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::Lt, "lt", a, b, true); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::Ge, "ge", a, b, true); }
Tensor le(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::Le, "le", a, b, true); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  detail::check_defined(cond, "where", "condition");
  EMBER_CHECK(cond.dtype() == DType::b8, "[where] condition has dtype ", dtype_name(cond.dtype()), " (expected bool)");
  detail::check_same_device(cond, a, "where");
  detail::check_same_device(a, b, "where");
  DType t = promote_types(a.dtype(), b.dtype());
  Shape s = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor ea = a.detach(), eb = b.detach();
  if (ea.dtype() != t) ea = ea.to(t);
  if (eb.dtype() != t) eb = eb.to(t);
  Tensor out = empty(s, TensorOptions(t).with_device(a.device()));
  EMBER_DISPATCH(a.device(), where, cond.expand(s), ea.expand(s), eb.expand(s), out);
  if (autograd::any_requires_grad({&a, &b})) {
    Shape sa = a.shape(), sb = b.shape();
    Tensor c = cond.detach();
    autograd::record("where", {a, b}, out, [=](const Tensor& g) -> autograd::TensorList {
      Tensor z = zeros_like(g);
      return {sum_to(where(c, g, z), sa), sum_to(where(c, z, g), sb)};
    });
  }
  return out;
}

// --- scalar variants --------------------------------------------------------------------------

Tensor add(const Tensor& a, double s) {
  return unary_op("add_scalar", UnaryOp::AddScalar, a, s, 0, [](const Tensor&, const Tensor&) {
    return [](const Tensor& g) -> autograd::TensorList { return {g}; };
  });
}
Tensor sub(const Tensor& a, double s) { return add(a, -s); }
Tensor rsub(const Tensor& a, double s) {
  return unary_op("rsub_scalar", UnaryOp::RSubScalar, a, s, 0, [](const Tensor&, const Tensor&) {
    return [](const Tensor& g) -> autograd::TensorList { return {neg(g)}; };
  });
}
Tensor mul(const Tensor& a, double s) {
  return unary_op("mul_scalar", UnaryOp::MulScalar, a, s, 0, [s](const Tensor&, const Tensor&) {
    return [s](const Tensor& g) -> autograd::TensorList { return {mul(g, s)}; };
  });
}
Tensor div(const Tensor& a, double s) {
  // x / s computed as a true division (not x * (1/s)) so results match torch bit for bit.
  detail::check_defined(a, "div_scalar", "input");
  detail::check_floating_or_half(a, "div_scalar");
  // Half inputs divide in f32 by the unrounded scalar.
  const DType ct = detail::is_half(a.dtype()) ? DType::f32 : a.dtype();
  Tensor out = binary_raw(BinaryOp::Div, "div_scalar", a.detach().to(ct), scalar_tensor(s, TensorOptions(ct).with_device(a.device())));
  if (ct != a.dtype()) out = out.to(a.dtype());
  if (autograd::any_requires_grad({&a}))
    autograd::record("div_scalar", {a}, out, [s](const Tensor& g) -> autograd::TensorList { return {div(g, s)}; });
  return out;
}
Tensor rdiv(const Tensor& a, double s) {
  return unary_op("rdiv_scalar", UnaryOp::RDivScalar, a, s, 0, [s](const Tensor& x, const Tensor&) {
    SavedTensor sx(x);
    return [s, sx](const Tensor& g) -> autograd::TensorList {
      Tensor xv = sx.get("rdiv_scalar");
      return {neg(div(mul(g, s), mul(xv, xv)))};
    };
  });
}
Tensor pow(const Tensor& a, double p) {
  if (autocast_enabled() && a.defined() && detail::is_half(a.dtype())) return pow(a.to(DType::f32), p);
  return unary_op("pow_scalar", UnaryOp::PowScalar, a, p, 0, [p](const Tensor& x, const Tensor&) {
    SavedTensor sx(x);
    return [p, sx](const Tensor& g) -> autograd::TensorList {
      if (p == 0.0) return {zeros_like(g)};
      Tensor xv = sx.get("pow_scalar");
      return {mul(g, mul(p == 2.0 ? xv : pow(xv, p - 1.0), p))};
    };
  });
}

// --- unary ------------------------------------------------------------------------------------

Tensor neg(const Tensor& x) {
  return unary_op("neg", UnaryOp::Neg, x, 0, 0, [](const Tensor&, const Tensor&) {
    return [](const Tensor& g) -> autograd::TensorList { return {neg(g)}; };
  });
}

Tensor exp(const Tensor& x) {
  if (autocast_enabled() && x.defined() && detail::is_half(x.dtype())) return exp(x.to(DType::f32));
  return unary_op("exp", UnaryOp::Exp, x, 0, 0, [](const Tensor&, const Tensor& out) {
    SavedTensor so(out);
    return [so](const Tensor& g) -> autograd::TensorList { return {mul(g, so.get("exp"))}; };
  });
}

Tensor log(const Tensor& x) {
  if (autocast_enabled() && x.defined() && detail::is_half(x.dtype())) return log(x.to(DType::f32));
  return unary_op("log", UnaryOp::Log, x, 0, 0, [](const Tensor& in, const Tensor&) {
    SavedTensor sx(in);
    return [sx](const Tensor& g) -> autograd::TensorList { return {div(g, sx.get("log"))}; };
  });
}

Tensor sqrt(const Tensor& x) {
  return unary_op("sqrt", UnaryOp::Sqrt, x, 0, 0, [](const Tensor&, const Tensor& out) {
    SavedTensor so(out);
    return [so](const Tensor& g) -> autograd::TensorList { return {div(g, mul(so.get("sqrt"), 2.0))}; };
  });
}

Tensor abs(const Tensor& x) {
  return unary_op("abs", UnaryOp::Abs, x, 0, 0, [](const Tensor& in, const Tensor&) {
    SavedTensor sx(in);
    return [sx](const Tensor& g) -> autograd::TensorList { return {mul(g, unary_raw(UnaryOp::Sign, sx.get("abs")))}; };
  });
}

Tensor sign(const Tensor& x) {
  detail::check_floating_or_half(x, "sign");
  return unary_raw(UnaryOp::Sign, x);
}

Tensor clamp(const Tensor& x, std::optional<double> lo, std::optional<double> hi) {
  double a = lo.value_or(-std::numeric_limits<double>::infinity());
  double b = hi.value_or(std::numeric_limits<double>::infinity());
  return unary_op("clamp", UnaryOp::Clamp, x, a, b, [a, b](const Tensor& in, const Tensor&) {
    SavedTensor sx(in);
    return [a, b, sx](const Tensor& g) -> autograd::TensorList {
      return {mul(g, unary_raw(UnaryOp::ClampMask, sx.get("clamp"), a, b))};
    };
  });
}

Tensor relu(const Tensor& x) {
  return unary_op("relu", UnaryOp::Relu, x, 0, 0, [](const Tensor&, const Tensor& out) {
    SavedTensor so(out);
    return [so](const Tensor& g) -> autograd::TensorList {
      return {binary_raw(BinaryOp::ReluBackward, "relu_backward", g, so.get("relu"))};
    };
  });
}

Tensor leaky_relu(const Tensor& x, double slope) {
  return unary_op("leaky_relu", UnaryOp::LeakyRelu, x, slope, 0, [slope](const Tensor& in, const Tensor&) {
    SavedTensor sx(in);
    return [slope, sx](const Tensor& g) -> autograd::TensorList {
      return {mul(g, unary_raw(UnaryOp::LeakyReluGrad, sx.get("leaky_relu"), slope))};
    };
  });
}

Tensor sigmoid(const Tensor& x) {
  return unary_op("sigmoid", UnaryOp::Sigmoid, x, 0, 0, [](const Tensor&, const Tensor& out) {
    SavedTensor so(out);
    return [so](const Tensor& g) -> autograd::TensorList {
      return {binary_raw(BinaryOp::SigmoidBackward, "sigmoid_backward", g, so.get("sigmoid"))};
    };
  });
}

Tensor tanh(const Tensor& x) {
  return unary_op("tanh", UnaryOp::Tanh, x, 0, 0, [](const Tensor&, const Tensor& out) {
    SavedTensor so(out);
    return [so](const Tensor& g) -> autograd::TensorList {
      return {binary_raw(BinaryOp::TanhBackward, "tanh_backward", g, so.get("tanh"))};
    };
  });
}

Tensor gelu(const Tensor& x, const char* approximate) {
  std::string mode = approximate ? approximate : "none";
  EMBER_CHECK(mode == "none" || mode == "tanh", "[gelu] approximate must be 'none' or 'tanh', got '", mode, "'");
  bool th = mode == "tanh";
  return unary_op("gelu", th ? UnaryOp::GeluTanh : UnaryOp::Gelu, x, 0, 0, [th](const Tensor& in, const Tensor&) {
    SavedTensor sx(in);
    return [th, sx](const Tensor& g) -> autograd::TensorList {
      return {mul(g, unary_raw(th ? UnaryOp::GeluTanhGrad : UnaryOp::GeluGrad, sx.get("gelu")))};
    };
  });
}

}  // namespace ember
