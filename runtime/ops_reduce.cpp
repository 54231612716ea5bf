// Front ends of reductions (sum, mean, max, argmax, sum_to) and (log_)softmax.
#include <algorithm>

#include "ember/runtime/autograd.h"
#include "runtime/dispatch.h"
#include "ember/runtime/ops.h"

namespace ember {

using autograd::SavedTensor;

namespace {

// Sorted unique wrapped dims; empty input means all dims.
DimList reduce_dims(const Tensor& x, IntList dims, const char* op) {
  DimList out;
  if (dims.empty()) {
    for (int d = 0; d < x.dim(); ++d) out.push_back(d);
    return out;
  }
  for (int64_t d : dims) {
    int w = wrap_dim(d, x.dim(), op);
    if (x.dim() == 0) continue;
    EMBER_CHECK(std::find(out.begin(), out.end(), w) == out.end(), "[", op, "] dim ", w, " appears more than once");
    out.push_back(w);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Shape keepdim_shape(const Shape& s, const DimList& dims) {
  Shape k = s;
  for (int d : dims) k[d] = 1;
  return k;
}

Shape squeezed_shape(const Shape& s, const DimList& dims) {
  Shape out;
  for (int d = 0; d < s.size(); ++d)
    if (std::find(dims.begin(), dims.end(), d) == dims.end()) out.push_back(s[d]);
  return out;
}

// Raw sum over dims (no autograd), keepdim shape. Half inputs are summed in f32 and rounded.
Tensor sum_raw(const Tensor& x, const DimList& dims) {
  if (detail::is_half(x.dtype())) return sum_raw(x.detach().to(DType::f32), dims).to(x.dtype());
  Tensor out = empty(keepdim_shape(x.shape(), dims), TensorOptions(x.dtype()).with_device(x.device()));
  EMBER_DISPATCH(x.device(), reduce, kernels::ReduceOp::Sum, x, dims, out, Tensor());
  return out;
}

Tensor sum_impl(const Tensor& x, const DimList& dims, bool keepdim, const char* op) {
  detail::check_defined(x, op, "input");
  detail::check_floating(x, op);
  Tensor out = sum_raw(x, dims);
  if (!keepdim) out = out.detach().reshape(squeezed_shape(x.shape(), dims));
  if (autograd::any_requires_grad({&x})) {
    Shape in_shape = x.shape(), k = keepdim_shape(x.shape(), dims);
    autograd::record(op, {x}, out, [in_shape, k](const Tensor& g) -> autograd::TensorList {
      return {g.reshape(k).expand(in_shape)};
    });
  }
  return out;
}

}  // namespace

// sum, mean, softmax and log_softmax of f16/bf16 inputs compute in f32; the result is f32 inside an
// autocast scope (they are on its f32 list), else rounded to the input's dtype. max is exact in any
// dtype and keeps the input's.
Tensor sum(const Tensor& x) {
  if (x.defined() && detail::is_half(x.dtype())) return detail::via_f32(x, true, [](const Tensor& f) { return sum(f); });
  return sum_impl(x, reduce_dims(x, {}, "sum"), false, "sum");
}

Tensor sum(const Tensor& x, IntList dims, bool keepdim) {
  if (x.defined() && detail::is_half(x.dtype()) && x.device().is_cpu() && x.dim() == 2 && dims.size() == 1 &&
      (dims[0] == 0 || dims[0] == -2) && x.is_contiguous() && !x.requires_grad()) {
    // Column sums (a linear layer's bias gradient): widened row by row, not as a float32 copy.
    Tensor f = empty({x.size(1)}, TensorOptions(DType::f32));
    kernels::sum_rows_half_cpu(x, f);
    if (keepdim) f = f.unsqueeze(0);
    return detail::from_f32(f, x.dtype(), true);
  }
  if (x.defined() && detail::is_half(x.dtype()))
    return detail::via_f32(x, true, [&](const Tensor& f) { return sum(f, dims, keepdim); });
  return sum_impl(x, reduce_dims(x, dims, "sum"), keepdim, "sum");
}

Tensor mean(const Tensor& x) { return mean(x, {}, false); }

Tensor mean(const Tensor& x, IntList dims, bool keepdim) {
  if (x.defined() && detail::is_half(x.dtype()))
    return detail::via_f32(x, true, [&](const Tensor& f) { return mean(f, dims, keepdim); });
  DimList d = reduce_dims(x, dims, "mean");
  int64_t count = 1;
  for (int i : d) count *= x.shape()[i];
  return div(sum_impl(x, d, keepdim, "mean"), static_cast<double>(count));
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  int lead = x.dim() - shape.size();
  EMBER_CHECK(lead >= 0, "[sum_to] cannot sum shape ", x.shape().str(), " to ", shape.str());
  DimList dims;
  for (int d = 0; d < x.dim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
      continue;
    }
    int64_t want = shape[d - lead];
    EMBER_CHECK(want == x.shape()[d] || want == 1, "[sum_to] cannot sum shape ", x.shape().str(), " to ", shape.str());
    if (want == 1 && x.shape()[d] != 1) dims.push_back(d);
  }
  Tensor out = sum_raw(x, dims).detach().reshape(shape);
  if (autograd::any_requires_grad({&x})) {
    Shape in_shape = x.shape();
    autograd::record("sum_to", {x}, out, [in_shape](const Tensor& g) -> autograd::TensorList {
      return {g.expand(in_shape)};
    });
  }
  return out;
}

Tensor max(const Tensor& x) {
  if (x.defined() && detail::is_half(x.dtype())) return detail::via_f32(x, false, [](const Tensor& f) { return max(f); });
  detail::check_floating(x, "max");
  EMBER_CHECK(x.numel() > 0, "[max] cannot reduce an empty tensor of shape ", x.shape().str());
  DimList dims = reduce_dims(x, {}, "max");
  Tensor out = empty(keepdim_shape(x.shape(), dims), TensorOptions(x.dtype()).with_device(x.device()));
  EMBER_DISPATCH(x.device(), reduce, kernels::ReduceOp::Max, x, dims, out, Tensor());
  out = out.reshape(Shape{});
  if (autograd::any_requires_grad({&x})) {
    SavedTensor sx(x), so(out);
    autograd::record("max", {x}, out, [sx, so](const Tensor& g) -> autograd::TensorList {
      // evenly distributed among the maximal elements, as torch
      Tensor xv = sx.get("max");
      Tensor mask = eq(xv, so.get("max")).to(xv.dtype());
      return {mul(div(g, sum(mask)), mask)};
    });
  }
  return out;
}

ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim) {
  if (x.defined() && detail::is_half(x.dtype())) {
    ValuesIndices r = max(x.to(DType::f32), dim, keepdim);
    r.values = r.values.to(x.dtype());
    return r;
  }
  detail::check_floating(x, "max");
  int d = wrap_dim(dim, x.dim(), "max");
  DimList dims;
  if (x.dim() > 0) dims.push_back(d);
  EMBER_CHECK(x.dim() == 0 || x.shape()[d] > 0, "[max] cannot reduce dimension ", d, " of size 0");
  Shape k = keepdim_shape(x.shape(), dims);
  Tensor values = empty(k, TensorOptions(x.dtype()).with_device(x.device()));
  Tensor indices = empty(k, TensorOptions(DType::i64).with_device(x.device()));
  EMBER_DISPATCH(x.device(), reduce, kernels::ReduceOp::Max, x, dims, values, indices);
  if (!keepdim) {
    Shape sq = squeezed_shape(x.shape(), dims);
    values = values.reshape(sq);
    indices = indices.reshape(sq);
  }
  if (autograd::any_requires_grad({&x})) {
    Shape in_shape = x.shape();
    Tensor idx = indices.reshape(k);
    int rank = x.dim();
    autograd::record("max_dim", {x}, values, [in_shape, k, idx, d, rank](const Tensor& g) -> autograd::TensorList {
      if (rank == 0) return {g.reshape(in_shape)};
      // one-hot of the argmax along d, times the gradient
      Shape pos_shape;
      pos_shape.resize(rank, 1);
      pos_shape[d] = in_shape[d];
      Tensor pos = arange(in_shape[d], TensorOptions(DType::i64).with_device(g.device())).reshape(pos_shape);
      Tensor onehot = eq(idx, pos).to(g.dtype());
      return {mul(g.reshape(k), onehot)};
    });
  }
  return {values, indices};
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  NoGradGuard ng;
  return max(x, dim, keepdim).indices;
}

Tensor softmax(const Tensor& x, int64_t dim) {
  if (x.defined() && detail::is_half(x.dtype()))
    return detail::via_f32(x, true, [&](const Tensor& f) { return softmax(f, dim); });
  detail::check_floating(x, "softmax");
  int d = wrap_dim(dim, x.dim(), "softmax");
  Tensor xc = x.detach().contiguous();
  Tensor out = empty(x.shape(), TensorOptions(x.dtype()).with_device(x.device()));
  if (x.dim() == 0) out.fill_(1.0);
  else EMBER_DISPATCH(x.device(), softmax, xc, d, false, out);
  if (autograd::any_requires_grad({&x})) {
    SavedTensor so(out);
    int64_t dd = x.dim() == 0 ? 0 : d;
    autograd::record("softmax", {x}, out, [so, dd](const Tensor& g) -> autograd::TensorList {
      Tensor y = so.get("softmax");
      return {mul(y, sub(g, sum(mul(g, y), {dd}, true)))};
    });
  }
  return out;
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  if (x.defined() && detail::is_half(x.dtype()))
    return detail::via_f32(x, true, [&](const Tensor& f) { return log_softmax(f, dim); });
  detail::check_floating(x, "log_softmax");
  int d = wrap_dim(dim, x.dim(), "log_softmax");
  Tensor xc = x.detach().contiguous();
  Tensor out = empty(x.shape(), TensorOptions(x.dtype()).with_device(x.device()));
  if (x.dim() == 0) out.fill_(0.0);
  else EMBER_DISPATCH(x.device(), softmax, xc, d, true, out);
  if (autograd::any_requires_grad({&x})) {
    SavedTensor so(out);
    int64_t dd = x.dim() == 0 ? 0 : d;
    autograd::record("log_softmax", {x}, out, [so, dd](const Tensor& g) -> autograd::TensorList {
      Tensor y = so.get("log_softmax");
      return {sub(g, mul(exp(y), sum(g, {dd}, true)))};
    });
  }
  return out;
}

}  // namespace ember
