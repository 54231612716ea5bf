// Front ends of the losses and dropout. Most are compositions of differentiable ops; nll_loss
// and binary_cross_entropy_with_logits have explicit backward formulas (as torch). Losses of
// f16/bf16 inputs compute in f32 (autocast's f32 list: inside a scope the loss is f32, outside it is
// rounded to the input's dtype); dropout of half inputs too, keeping their dtype.
#include <cmath>

#include "ember/config.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/device_checks.h"
#include "runtime/dispatch.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"

namespace ember {

using autograd::SavedTensor;

namespace {

Tensor reduce(const Tensor& losses, Reduction r) {
  switch (r) {
    case Reduction::None: return losses;
    case Reduction::Sum: return sum(losses);
    case Reduction::Mean: return mean(losses);
  }
  return losses;
}

void check_same_shape(const Tensor& input, const Tensor& target, const char* op) {
  detail::check_defined(input, op, "input");
  detail::check_defined(target, op, "target");
  detail::check_same_device(input, target, op);
  EMBER_CHECK(input.shape() == target.shape(), "[", op, "] input shape ", input.shape().str(),
              " differs from target shape ", target.shape().str());
  detail::check_floating(input, op);
}

}  // namespace

// One node with torch's mse_loss_backward, (norm * (input - target)) * grad, from the saved
// difference: two passes over the data instead of the composed sub/mul/mean chain's five.
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction r) {
  if (detail::any_half({&input, &target}))
    return detail::from_f32(mse_loss(detail::f32_if_half(input), detail::f32_if_half(target), r),
                            input.dtype(), true);
  check_same_shape(input, target, "mse_loss");
  const bool needs_grad = autograd::any_requires_grad({&input, &target});
  Tensor d, out;
  {
    NoGradGuard ng;
    if (r != Reduction::None && input.device().is_cpu() && input.dtype() == target.dtype() &&
        input.is_contiguous() && target.is_contiguous()) {
      // One pass: the difference (kept for backward only) and the sum of its squares.
      if (needs_grad) d = empty(input.shape(), input.dtype());
      Tensor s = empty({}, input.dtype());
      kernels::squared_error_sum_cpu(input.detach(), target.detach(), d, s);
      out = r == Reduction::Mean ? div(s, static_cast<double>(input.numel())) : s;
    } else {
      d = sub(input, target);
      out = reduce(mul(d, d), r);
    }
  }
  if (needs_grad) {
    const bool need_input = input.requires_grad(), need_target = target.requires_grad();
    const double norm = r == Reduction::Mean ? 2.0 / static_cast<double>(d.numel()) : 2.0;
    SavedTensor sd(d);
    autograd::record("mse_loss", {input, target}, out, [=](const Tensor& g) -> autograd::TensorList {
      Tensor gi = mul(mul(sd.get("mse_loss"), norm), g);
      return {need_input ? gi : Tensor(), need_target ? neg(gi) : Tensor()};
    });
  }
  return out;
}

Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction r) {
  if (detail::any_half({&input, &target}))
    return detail::from_f32(l1_loss(detail::f32_if_half(input), detail::f32_if_half(target), r),
                            input.dtype(), true);
  check_same_shape(input, target, "l1_loss");
  return reduce(abs(sub(input, target)), r);
}

Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, Reduction r, double beta) {
  if (detail::any_half({&input, &target}))
    return detail::from_f32(smooth_l1_loss(detail::f32_if_half(input), detail::f32_if_half(target), r, beta),
                            input.dtype(), true);
  check_same_shape(input, target, "smooth_l1_loss");
  EMBER_CHECK(beta >= 0, "[smooth_l1_loss] beta must be >= 0, got ", beta);
  Tensor d = abs(sub(input, target));
  if (beta == 0.0) return reduce(d, r);
  Tensor quad = div(mul(mul(d, d), 0.5), beta);
  Tensor lin = sub(d, 0.5 * beta);
  Tensor cond = lt(d, full({}, beta, TensorOptions(d.dtype()).with_device(d.device())));
  return reduce(where(cond, quad, lin), r);
}

Tensor binary_cross_entropy(const Tensor& input, const Tensor& target, Reduction r, const Tensor& weight) {
  if (detail::any_half({&input, &target, &weight}))
    return detail::from_f32(binary_cross_entropy(detail::f32_if_half(input), detail::f32_if_half(target), r, detail::f32_if_half(weight)),
                            input.dtype(), true);
  check_same_shape(input, target, "binary_cross_entropy");
  {
    NoGradGuard ng;
    // the bounds live where the input does: CPU 0-d tensors would be "different devices" on CUDA
    const TensorOptions o = TensorOptions(input.dtype()).with_device(input.device());
    Tensor bad = sum(add(lt(input.detach(), zeros({}, o)).to(input.dtype()),
                         gt(input.detach(), ones({}, o)).to(input.dtype())));
    // read at once on the CPU, with the device's next read on a GPU (runtime/device_checks.h)
    check_on_device(bad, [](const std::vector<double>& v) {
      return v[0] == 0.0 ? std::string() : std::string("[binary_cross_entropy] all elements of input should be between 0 and 1");
    });
  }
  // -(t*log(x) + (1-t)*log(1-x)), log terms clamped at -100 as torch
  Tensor lx = clamp(log(input), -100.0, std::nullopt);
  Tensor l1x = clamp(log(rsub(input, 1.0)), -100.0, std::nullopt);
  Tensor loss = neg(add(mul(target, lx), mul(rsub(target, 1.0), l1x)));
  if (weight.defined()) loss = mul(loss, weight);
  return reduce(loss, r);
}

Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target, Reduction r, const Tensor& weight,
                                        const Tensor& pos_weight) {
  if (detail::any_half({&input, &target, &weight, &pos_weight}))
    return detail::from_f32(binary_cross_entropy_with_logits(detail::f32_if_half(input), detail::f32_if_half(target), r,
                                                             detail::f32_if_half(weight), detail::f32_if_half(pos_weight)),
                            input.dtype(), true);
  check_same_shape(input, target, "binary_cross_entropy_with_logits");
  Tensor loss;
  Tensor x = input.detach(), t = target.detach();
  {
    NoGradGuard ng;
    // softplus(-x) = log(1 + exp(-|x|)) + max(-x, 0), stable for large |x|
    Tensor sp = add(log(add(exp(neg(abs(x))), 1.0)), relu(neg(x)));
    if (pos_weight.defined()) {
      Tensor lw = add(mul(sub(pos_weight, 1.0), t), 1.0);
      loss = add(mul(rsub(t, 1.0), x), mul(lw, sp));
    } else {
      loss = add(mul(rsub(t, 1.0), x), sp);
    }
    if (weight.defined()) loss = mul(loss, weight);
  }
  if (autograd::any_requires_grad({&input, &target})) {
    SavedTensor sx(input), st(target);
    Tensor w = weight.defined() ? weight.detach() : Tensor();
    Tensor pw = pos_weight.defined() ? pos_weight.detach() : Tensor();
    Shape in_shape = input.shape();
    autograd::record("binary_cross_entropy_with_logits", {input, target}, loss,
                     [sx, st, w, pw, in_shape](const Tensor& g) -> autograd::TensorList {
                       Tensor xv = sx.get("binary_cross_entropy_with_logits");
                       Tensor tv = st.get("binary_cross_entropy_with_logits");
                       Tensor s = sigmoid(xv);
                       Tensor gx, gt_;
                       if (pw.defined()) {
                         // d/dx = (1-t) - lw*(1-sigmoid(x)); d/dt = -x + (pw-1)*softplus(-x)
                         Tensor lw = add(mul(sub(pw, 1.0), tv), 1.0);
                         gx = sub(rsub(tv, 1.0), mul(lw, rsub(s, 1.0)));
                         Tensor sp = add(log(add(exp(neg(abs(xv))), 1.0)), relu(neg(xv)));
                         gt_ = add(neg(xv), mul(sub(pw, 1.0), sp));
                       } else {
                         gx = sub(s, tv);
                         gt_ = neg(xv);
                       }
                       if (w.defined()) {
                         gx = mul(gx, w);
                         gt_ = mul(gt_, w);
                       }
                       return {sum_to(mul(g, gx), in_shape), sum_to(mul(g, gt_), in_shape)};
                     });
  }
  return reduce(loss, r);
}

namespace {

// Moves the class dim of (N, C, d...) to the end: returns (M, C) and the target as (M).
struct FlatClasses {
  Tensor logp;    // (M, C)
  Tensor target;  // (M) i64 contiguous CPU-or-device
  Shape target_shape;
};

FlatClasses flatten_classes(const Tensor& x, const Tensor& target, const char* op) {
  detail::check_defined(x, op, "input");
  detail::check_defined(target, op, "target");
  detail::check_floating(x, op);
  detail::check_same_device(x, target, op);
  EMBER_CHECK(target.dtype() == DType::i64, "[", op, "] target must hold class indices of dtype i64, got ",
              dtype_name(target.dtype()));
  EMBER_CHECK(x.dim() >= 1, "[", op, "] input must have at least 1 dimension");
  FlatClasses f;
  if (x.dim() == 1) {
    EMBER_CHECK(target.dim() == 0, "[", op, "] for 1-D input (C) the target must be 0-d, got shape ",
                target.shape().str());
    f.logp = x.unsqueeze(0);
    f.target = target.reshape({1});
    f.target_shape = target.shape();
    return f;
  }
  Shape expect;
  expect.push_back(x.size(0));
  for (int d = 2; d < x.dim(); ++d) expect.push_back(x.size(d));
  EMBER_CHECK(target.shape() == expect, "[", op, "] input shape ", x.shape().str(), " expects target shape ",
              expect.str(), ", got ", target.shape().str());
  Tensor t = x;
  if (x.dim() > 2) {
    std::vector<int64_t> perm{0};
    for (int d = 2; d < x.dim(); ++d) perm.push_back(d);
    perm.push_back(1);
    t = x.permute(perm);
  }
  f.logp = t.reshape({-1, x.size(1)});
  f.target = target.reshape({-1}).contiguous();
  f.target_shape = target.shape();
  return f;
}

// Per-element -w[t]*logp[t] (M) with autograd, and the per-element weights (M, no grad).
std::pair<Tensor, Tensor> nll_elements(const Tensor& logp, const Tensor& target, const Tensor& weight,
                                       int64_t ignore_index) {
  int64_t M = logp.size(0), C = logp.size(1);
  if (weight.defined()) {
    EMBER_CHECK(weight.dim() == 1 && weight.size(0) == C, "[nll_loss] weight shape ", weight.shape().str(),
                " does not match ", C, " classes");
    // the kernel reads the weights through a raw pointer on the input's device
    EMBER_CHECK(weight.device() == logp.device(), "[nll_loss] weight is on ", weight.device().str(),
                " but the input is on ", logp.device().str());
  }
  Tensor lc = logp.detach().contiguous();
  Tensor w = weight.defined() ? weight.detach().to(logp.dtype()).contiguous() : Tensor();
  TensorOptions o = TensorOptions(logp.dtype()).with_device(logp.device());
  Tensor losses = empty({M}, o), weights = empty({M}, o);
#if EMBER_WITH_CUDA
  if (logp.device().is_cuda()) {
    // The kernel flags a target out of [0, C) (skipping it) and keeps one; the flag is read with
    // the device's next read, not here (runtime/device_checks.h).
    Tensor status = zeros({2}, TensorOptions(DType::i64).with_device(logp.device()));
    kernels::nll_loss_cuda(lc, target, w, ignore_index, losses, weights, status);
    check_on_device(status, [C](const std::vector<double>& v) {
      return v[0] == 0 ? std::string()
                       : str_cat("[nll_loss] target ", static_cast<int64_t>(v[1]), " is out of bounds for ", C, " classes");
    });
  } else {
    kernels::nll_loss_cpu(lc, target, w, ignore_index, losses, weights);
  }
#else
  kernels::nll_loss_cpu(lc, target, w, ignore_index, losses, weights);  // no other device here
#endif
  if (autograd::any_requires_grad({&logp})) {
    autograd::record("nll_loss", {logp}, losses, [target, w, ignore_index, M, C, o](const Tensor& g) -> autograd::TensorList {
      Tensor d = zeros({M, C}, o);
      Tensor gc = g.contiguous();
      EMBER_DISPATCH(g.device(), nll_loss_backward, gc, target, w, ignore_index, d);
      return {d};
    });
  }
  return {losses, weights};
}

}  // namespace

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, Reduction r, int64_t ignore_index, const Tensor& weight) {
  if (detail::any_half({&log_probs, &weight}))
    return detail::from_f32(nll_loss(detail::f32_if_half(log_probs), target, r, ignore_index, detail::f32_if_half(weight)),
                            log_probs.dtype(), true);
  FlatClasses f = flatten_classes(log_probs, target, "nll_loss");
  auto [losses, weights] = nll_elements(f.logp, f.target, weight, ignore_index);
  switch (r) {
    case Reduction::None: return losses.reshape(f.target_shape);
    case Reduction::Sum: return sum(losses);
    case Reduction::Mean: return div(sum(losses), sum(weights));
  }
  return losses;
}

Tensor cross_entropy(const Tensor& input, const Tensor& target, Reduction r, int64_t ignore_index,
                     double label_smoothing, const Tensor& weight) {
  if (detail::any_half({&input, &weight}))
    return detail::from_f32(cross_entropy(detail::f32_if_half(input), target, r, ignore_index, label_smoothing,
                                          detail::f32_if_half(weight)),
                            input.dtype(), true);
  EMBER_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0, "[cross_entropy] label_smoothing must be in [0, 1], got ",
              label_smoothing);
  detail::check_defined(input, "cross_entropy", "input");
  int64_t class_dim = input.dim() == 1 ? 0 : 1;
  Tensor logp = log_softmax(input, class_dim);
  Tensor nll = nll_loss(logp, target, r, ignore_index, weight);
  if (label_smoothing == 0.0) return nll;
  // torch 1.13: (1-eps)*nll + eps/C * smooth, smooth = -sum_c w_c*logp_c, masked at ignore_index
  FlatClasses f = flatten_classes(logp, target, "cross_entropy");
  int64_t C = f.logp.size(1);
  Tensor wl = weight.defined() ? mul(f.logp, weight.detach().to(logp.dtype())) : f.logp;
  Tensor smooth = neg(sum(wl, {1}));  // (M)
  Tensor keep;
  {
    NoGradGuard ng;
    Tensor ign = full({}, static_cast<double>(ignore_index), TensorOptions(DType::i64).with_device(input.device()));
    keep = lt(eq(f.target, ign).to(input.dtype()), full({}, 0.5, TensorOptions(input.dtype()).with_device(input.device())))
               .to(input.dtype());
  }
  smooth = mul(smooth, keep);
  Tensor ret;
  switch (r) {
    case Reduction::None: ret = smooth.reshape(f.target_shape); break;
    case Reduction::Sum: ret = sum(smooth); break;
    case Reduction::Mean: {
      Tensor denom;
      {
        NoGradGuard ng;
        if (weight.defined()) {
          Tensor safe_t = mul(f.target.to(DType::f64), keep.to(DType::f64)).to(DType::i64);
          denom = sum(mul(index_select(weight.detach().to(input.dtype()), 0, safe_t), keep));
        } else {
          denom = sum(keep);
        }
      }
      ret = div(sum(smooth), denom);
      break;
    }
  }
  return add(mul(nll, 1.0 - label_smoothing), mul(ret, label_smoothing / static_cast<double>(C)));
}

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  if (x.defined() && detail::is_half(x.dtype()))
    return detail::via_f32(x, false, [&](const Tensor& f) { return dropout(f, p, training, gen); });
  EMBER_CHECK(p >= 0.0 && p <= 1.0, "[dropout] probability must be in [0, 1], got ", p);
  detail::check_floating(x, "dropout");
  if (!training || p == 0.0) return x;
  if (p == 1.0) return mul(x, zeros_like(x.detach()));
  Tensor mask = bernoulli(x.shape(), 1.0 - p, TensorOptions(x.dtype()).with_device(x.device()), gen);
  mask.mul_(1.0 / (1.0 - p));
  return mul(x, mask);
}

}  // namespace ember
