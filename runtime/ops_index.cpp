// Front ends of cat, stack, index_select and embedding.
#include "ember/config.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/device_checks.h"
#include "runtime/dispatch.h"
#include "ember/runtime/ops.h"

namespace ember {

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  EMBER_CHECK(!tensors.empty(), "[cat] expects a non-empty list of tensors");
  const Tensor& first = tensors[0];
  for (size_t i = 0; i < tensors.size(); ++i) detail::check_defined(tensors[i], "cat", "an input");
  EMBER_CHECK(first.dim() > 0, "[cat] zero-dimensional tensors cannot be concatenated");
  int d = wrap_dim(dim, first.dim(), "cat");
  DType t = first.dtype();
  Shape out_shape = first.shape();
  int64_t total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& x = tensors[i];
    detail::check_same_device(first, x, "cat");
    EMBER_CHECK(x.dim() == first.dim(), "[cat] tensor ", i, " has rank ", x.dim(), " but tensor 0 has rank ",
                first.dim());
    for (int k = 0; k < x.dim(); ++k)
      EMBER_CHECK(k == d || x.shape()[k] == first.shape()[k], "[cat] sizes of tensors must match except in dimension ",
                  d, ": tensor ", i, " has shape ", x.shape().str(), ", tensor 0 has shape ", first.shape().str());
    t = promote_types(t, x.dtype());
    total += x.shape()[d];
  }
  out_shape[d] = total;
  Tensor out = empty(out_shape, TensorOptions(t).with_device(first.device()));
  std::vector<int64_t> offsets;
  int64_t off = 0;
  for (const Tensor& x : tensors) {
    offsets.push_back(off);
    EMBER_DISPATCH(out.device(), copy, x.detach(), out.narrow(d, off, x.shape()[d]));
    off += x.shape()[d];
  }
  if (autograd::any_requires_grad(tensors)) {
    std::vector<int64_t> sizes;
    for (const Tensor& x : tensors) sizes.push_back(x.shape()[d]);
    autograd::record("cat", tensors, out, [offsets, sizes, d](const Tensor& g) -> autograd::TensorList {
      autograd::TensorList gs;
      for (size_t i = 0; i < sizes.size(); ++i) gs.push_back(g.narrow(d, offsets[i], sizes[i]));
      return gs;
    });
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  EMBER_CHECK(!tensors.empty(), "[stack] expects a non-empty list of tensors");
  int d = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  for (size_t i = 0; i < tensors.size(); ++i) {
    EMBER_CHECK(tensors[i].shape() == tensors[0].shape(), "[stack] tensor ", i, " has shape ", tensors[i].shape().str(),
                " but tensor 0 has shape ", tensors[0].shape().str());
    parts.push_back(tensors[i].unsqueeze(d));
  }
  return cat(parts, d);
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  detail::check_defined(x, "index_select", "input");
  detail::check_defined(index, "index_select", "index");
  detail::check_same_device(x, index, "index_select");
  EMBER_CHECK(index.dtype() == DType::i64 || index.dtype() == DType::i32, "[index_select] index has dtype ",
              dtype_name(index.dtype()), " (expected i64 or i32)");
  EMBER_CHECK(index.dim() <= 1, "[index_select] index must be 0-d or 1-d, got shape ", index.shape().str());
  int d = wrap_dim(dim, x.dim(), "index_select");
  Tensor idx = index.to(DType::i64).reshape({-1}).contiguous();
  Tensor xs = x.dim() == 0 ? x.reshape({1}) : x;
  int64_t n = xs.shape()[d];
  if (idx.device().is_cpu()) {
    const int64_t* p = idx.data_ptr<int64_t>();
    for (int64_t i = 0; i < idx.numel(); ++i)
      EMBER_CHECK(p[i] >= 0 && p[i] < n, "[index_select] index ", p[i], " is out of range for dimension ", d,
                  " of size ", n);
  }
#if EMBER_WITH_CUDA
  else if (idx.numel() > 0) {
    // On a device the indices out of range are counted there and the count is read with the
    // device's next read, not here (runtime/device_checks.h); the kernel writes 0 for them.
    NoGradGuard ng;
    const Tensor f = idx.to(DType::f64);
    const TensorOptions o = TensorOptions(DType::f64).with_device(f.device());
    const Tensor bad = sum(add(lt(f, zeros({}, o)).to(DType::f64), gt(f, full({}, static_cast<double>(n - 1), o)).to(DType::f64)));
    const int64_t total = idx.numel();
    check_on_device(bad, [d, n, total](const std::vector<double>& v) {
      if (v[0] == 0) return std::string();
      return str_cat("[index_select] ", static_cast<int64_t>(v[0]), " of ", total, " indices are out of range for dimension ",
                     d, " of size ", n);
    });
  }
#endif
  Shape os = xs.shape();
  os[d] = idx.numel();
  Tensor out = empty(os, TensorOptions(x.dtype()).with_device(x.device()));
  EMBER_DISPATCH(x.device(), index_select, xs.detach().contiguous(), d, idx, out);
  if (x.dim() == 0) out = out.reshape(Shape{});
  if (autograd::any_requires_grad({&x})) {
    Shape xs_shape = xs.shape(), in_shape = x.shape();
    autograd::record("index_select", {x}, out, [xs_shape, in_shape, d, idx](const Tensor& g) -> autograd::TensorList {
      // Half gradients are summed in f32 (index_add runs f32/f64) and rounded once.
      const DType acc = detail::is_half(g.dtype()) ? DType::f32 : g.dtype();
      Tensor gx = zeros(xs_shape, TensorOptions(acc).with_device(g.device()));
      Tensor gc = g.reshape([&] {
                     Shape s = xs_shape;
                     s[d] = idx.numel();
                     return s;
                   }())
                     .to(acc)
                     .contiguous();
      EMBER_DISPATCH(g.device(), index_add, gx, d, idx, gc);
      return {gx.to(g.dtype()).reshape(in_shape)};
    });
  }
  return out;
}

Tensor embedding(const Tensor& weight, const Tensor& indices) {
  EMBER_CHECK(weight.dim() == 2, "[embedding] weight must be 2-D (num_embeddings, embedding_dim), got shape ",
              weight.shape().str());
  Shape os = indices.shape();
  os.push_back(weight.size(1));
  return index_select(weight, 0, indices.reshape({-1})).reshape(os);
}

}  // namespace ember
