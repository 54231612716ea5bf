// Tensor metadata, views, conversions, in-place ops, factories and printing.
#include "ember/runtime/tensor.h"

#include <cmath>
#include <cstring>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "ember/config.h"
#include "kernels/kernels.h"
#include "ember/runtime/allocator.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/device_checks.h"
#include "ember/runtime/small_alloc.h"
#include "runtime/dispatch.h"
#include "ember/runtime/ops.h"

namespace ember {

// --- Storage --------------------------------------------------------------------------------------

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  data_ = device_alloc(device, nbytes);
}

Storage::Storage(void* data, size_t nbytes, Device device, std::function<void(void*)> deleter)
    : data_(data), nbytes_(nbytes), device_(device), deleter_(std::move(deleter)), owned_(false) {}

Storage::~Storage() {
  if (owned_) device_free(device_, data_, nbytes_);
  else if (deleter_) deleter_(data_);
}

// --- helpers ----------------------------------------------------------------------------------

namespace {

std::shared_ptr<TensorImpl> make_impl(std::shared_ptr<Storage> storage, const Shape& shape, const Strides& strides,
                                      int64_t offset, DType dtype) {
  auto impl = make_pooled<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = dtype;
  return impl;
}

// A view of t's storage with new geometry, recorded for autograd with the given backward. The
// closure becomes a BackwardFn (a pooled allocation) only when a node is recorded, so views
// without grad (inference, no-grad mode) cost no autograd bookkeeping.
template <typename Backward>
Tensor make_view(const Tensor& t, const Shape& shape, const Strides& strides, int64_t offset, const char* op,
                 Backward&& backward) {
  Tensor out(make_impl(t.storage(), shape, strides, offset, t.dtype()));
  if (autograd::any_requires_grad({&t}))
    autograd::record(op, {t}, out, autograd::BackwardFn(std::forward<Backward>(backward)));
  return out;
}

void check_shape_valid(const Shape& shape, const char* op) {
  for (int i = 0; i < shape.size(); ++i)
    EMBER_CHECK(shape[i] >= 0, "[", op, "] negative dimension ", shape[i], " in shape ", shape.str());
}

// Infers one -1 in `shape` for numel elements.
Shape infer_shape(const Shape& shape, int64_t numel, const char* op) {
  Shape out = shape;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      EMBER_CHECK(infer < 0, "[", op, "] only one dimension can be -1 in ", shape.str());
      infer = i;
    } else {
      EMBER_CHECK(shape[i] >= 0, "[", op, "] invalid dimension ", shape[i], " in ", shape.str());
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    EMBER_CHECK(known != 0 && numel % known == 0, "[", op, "] shape ", shape.str(), " is invalid for input of size ",
                numel);
    out[infer] = numel / known;
  }
  EMBER_CHECK(out.numel() == numel, "[", op, "] shape ", shape.str(), " is invalid for input of size ", numel);
  return out;
}

// PyTorch's computeStride: strides for viewing (old_shape, old_strides) as new_shape, if possible.
bool view_strides(const Shape& old_shape, const Strides& old_strides, const Shape& new_shape, Strides* out) {
  Strides ns;
  ns.resize(new_shape.size());
  if (old_shape.numel() == 0 || old_shape.size() == 0) {
    *out = contiguous_strides(new_shape);
    return true;
  }
  int64_t view_d = new_shape.size() - 1;
  int64_t chunk_base_stride = old_strides.size() ? old_strides.back() : 1;
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t tensor_d = old_shape.size() - 1; tensor_d >= 0; tensor_d--) {
    tensor_numel *= old_shape[tensor_d];
    if (tensor_d == 0 || (old_shape[tensor_d - 1] != 1 && old_strides[tensor_d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        ns[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        view_d--;
      }
      if (view_numel != tensor_numel) return false;
      if (tensor_d > 0) {
        chunk_base_stride = old_strides[tensor_d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return false;
  *out = ns;
  return true;
}

}  // namespace

// --- metadata ---------------------------------------------------------------------------------

TensorImpl& Tensor::impl() const {
  EMBER_CHECK(impl_ != nullptr, "[tensor] operation on an undefined tensor");
  return *impl_;
}

void Tensor::check_dtype(DType expected, const char* what) const {
  EMBER_CHECK(dtype() == expected, "[", what, "] tensor has dtype ", dtype_name(dtype()), " but ",
              dtype_name(expected), " was requested");
}

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride")]; }

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;  // as torch: no element is out of place
  int64_t expected = 1;
  for (int i = dim() - 1; i >= 0; --i) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

void* Tensor::data_ptr() const {
  return static_cast<char*>(storage()->data()) + offset() * static_cast<int64_t>(element_size());
}

double Tensor::item_double() const {
  EMBER_CHECK(numel() == 1, "[item] tensor with ", numel(), " elements (shape ", shape().str(),
              ") cannot be converted to a scalar");
  Tensor c = device().is_cpu() ? *this : to(kCPU);
  return dispatch_all(c.dtype(), [&](auto tag) -> double {
    using T = decltype(tag);
    return static_cast<double>(*static_cast<const T*>(c.data_ptr()));
  });
}

// --- views ------------------------------------------------------------------------------------

Tensor Tensor::view(const Shape& shape_in) const {
  Shape shape = infer_shape(shape_in, numel(), "view");
  Strides st;
  EMBER_CHECK(view_strides(this->shape(), strides(), shape, &st), "[view] cannot view a tensor of shape ",
              this->shape().str(), " with strides ", strides().str(), " as ", shape.str(),
              " (not compatible with its memory layout; use reshape)");
  Shape in_shape = this->shape();
  return make_view(*this, shape, st, offset(), "view", [in_shape](const Tensor& g) -> autograd::TensorList {
    return {g.reshape(in_shape)};
  });
}

Tensor Tensor::reshape(const Shape& shape_in) const {
  Shape shape = infer_shape(shape_in, numel(), "reshape");
  Strides st;
  if (view_strides(this->shape(), strides(), shape, &st)) return view(shape);
  return contiguous().view(shape);
}

namespace {

// permute with the dims in an inline Shape (no heap), shared by permute, transpose and their backward.
Tensor permute_dims(const Tensor& t, const Shape& dims) {
  EMBER_CHECK(dims.size() == t.dim(), "[permute] got ", dims.size(), " dims for a tensor of rank ", t.dim());
  Shape s, inverse;
  Strides st;
  inverse.resize(dims.size(), -1);
  for (int i = 0; i < dims.size(); ++i) {
    int d = wrap_dim(dims[i], t.dim(), "permute");
    EMBER_CHECK(inverse[d] < 0, "[permute] dim ", d, " repeated");
    inverse[d] = i;
    s.push_back(t.shape()[d]);
    st.push_back(t.strides()[d]);
  }
  return make_view(t, s, st, t.offset(), "permute", [inverse](const Tensor& g) -> autograd::TensorList {
    return {permute_dims(g, inverse)};
  });
}

}  // namespace

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  EMBER_CHECK(static_cast<int>(dims.size()) == dim(), "[permute] got ", dims.size(), " dims for a tensor of rank ",
              dim());
  return permute_dims(*this, Shape(dims));
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  if (dim() == 0) return *this;
  int a = wrap_dim(d0, dim(), "transpose"), b = wrap_dim(d1, dim(), "transpose");
  Shape p;
  for (int i = 0; i < dim(); ++i) p.push_back(i);
  std::swap(p[a], p[b]);
  return permute_dims(*this, p);
}

Tensor Tensor::t() const {
  EMBER_CHECK(dim() <= 2, "[t] expects a tensor of rank <= 2, got shape ", shape().str());
  return dim() < 2 ? *this : transpose(0, 1);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  int dd = wrap_dim(d, dim(), "slice");
  EMBER_CHECK(step > 0, "[slice] step must be positive, got ", step);
  int64_t n = shape()[dd];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = shape();
  Strides st = strides();
  s[dd] = (end - start + step - 1) / step;
  st[dd] *= step;
  Shape in_shape = shape();
  DType dt = dtype();
  return make_view(*this, s, st, offset() + start * strides()[dd], "slice",
                   [in_shape, dt, dd, start, end, step](const Tensor& g) -> autograd::TensorList {
                     Tensor gi = zeros(in_shape, TensorOptions(dt).with_device(g.device()));
                     gi.slice(dd, start, end, step).copy_(g);
                     return {gi};
                   });
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  int dd = wrap_dim(d, dim(), "narrow");
  int64_t n = shape()[dd];
  if (start < 0) start += n;
  EMBER_CHECK(start >= 0 && length >= 0 && start + length <= n, "[narrow] start ", start, " + length ", length,
              " exceeds dimension ", dd, " of size ", n, " (shape ", shape().str(), ")");
  return slice(dd, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  int dd = wrap_dim(d, dim(), "select");
  int64_t n = shape()[dd];
  EMBER_CHECK(index >= -n && index < n, "[select] index ", index, " is out of range for dimension ", dd,
              " of size ", n);
  if (index < 0) index += n;
  return narrow(dd, index, 1).squeeze(dd);
}

Tensor Tensor::expand(const Shape& target) const {
  EMBER_CHECK(target.size() >= dim(), "[expand] cannot expand shape ", shape().str(), " to ", target.str(),
              " (fewer dimensions)");
  Shape s;
  Strides st;
  s.resize(target.size());
  st.resize(target.size());
  int lead = target.size() - dim();
  for (int i = 0; i < target.size(); ++i) {
    if (i < lead) {
      EMBER_CHECK(target[i] >= 0, "[expand] new leading dimension ", i, " cannot be ", target[i]);
      s[i] = target[i];
      st[i] = 0;
      continue;
    }
    int64_t cur = shape()[i - lead];
    int64_t want = target[i] == -1 ? cur : target[i];
    EMBER_CHECK(cur == want || cur == 1, "[expand] cannot expand shape ", shape().str(), " to ", target.str(),
                " (dimension ", i, ": ", cur, " vs ", want, ")");
    s[i] = want;
    st[i] = (cur == want) ? strides()[i - lead] : 0;
  }
  if (s == shape()) return *this;
  Shape in_shape = shape();
  return make_view(*this, s, st, offset(), "expand", [in_shape](const Tensor& g) -> autograd::TensorList {
    return {sum_to(g, in_shape)};
  });
}

Tensor Tensor::squeeze() const {
  Shape s;
  Strides st;
  for (int i = 0; i < dim(); ++i)
    if (shape()[i] != 1) {
      s.push_back(shape()[i]);
      st.push_back(strides()[i]);
    }
  Shape in_shape = shape();
  return make_view(*this, s, st, offset(), "squeeze", [in_shape](const Tensor& g) -> autograd::TensorList {
    return {g.reshape(in_shape)};
  });
}

Tensor Tensor::squeeze(int64_t d) const {
  if (dim() == 0) return *this;
  int dd = wrap_dim(d, dim(), "squeeze");
  if (shape()[dd] != 1) return *this;
  Shape s = shape();
  Strides st = strides();
  s.erase(dd);
  st.erase(dd);
  Shape in_shape = shape();
  return make_view(*this, s, st, offset(), "squeeze", [in_shape](const Tensor& g) -> autograd::TensorList {
    return {g.reshape(in_shape)};
  });
}

Tensor Tensor::unsqueeze(int64_t d) const {
  int dd = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape s = shape();
  Strides st = strides();
  int64_t new_stride = dd < dim() ? strides()[dd] * shape()[dd] : 1;
  s.insert(dd, 1);
  st.insert(dd, new_stride);
  Shape in_shape = shape();
  return make_view(*this, s, st, offset(), "unsqueeze", [in_shape](const Tensor& g) -> autograd::TensorList {
    return {g.reshape(in_shape)};
  });
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  int a = wrap_dim(start_dim, dim(), "flatten"), b = wrap_dim(end_dim, dim(), "flatten");
  EMBER_CHECK(a <= b, "[flatten] start_dim ", a, " is after end_dim ", b);
  Shape s;
  for (int i = 0; i < a; ++i) s.push_back(shape()[i]);
  int64_t m = 1;
  for (int i = a; i <= b; ++i) m *= shape()[i];
  s.push_back(m);
  for (int i = b + 1; i < dim(); ++i) s.push_back(shape()[i]);
  return reshape(s);
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), TensorOptions(dtype()).with_device(device()));
  EMBER_DISPATCH(device(), copy, *this, out);
  if (autograd::any_requires_grad({this}))
    autograd::record("clone", {*this}, out, [](const Tensor& g) -> autograd::TensorList { return {g}; });
  return out;
}

Tensor Tensor::detach() const { return Tensor(make_impl(storage(), shape(), strides(), offset(), dtype())); }

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  Tensor out = empty(shape(), TensorOptions(t).with_device(device()));
  EMBER_DISPATCH(device(), copy, *this, out);
  if (is_floating(t) && autograd::any_requires_grad({this})) {
    DType src = dtype();
    autograd::record("to_dtype", {*this}, out, [src](const Tensor& g) -> autograd::TensorList { return {g.to(src)}; });
  }
  return out;
}

Tensor Tensor::to(Device d) const { return to(d, false); }

Tensor Tensor::to(Device d, bool non_blocking) const {
  if (d == device()) return *this;
#if EMBER_WITH_CUDA
  if (non_blocking && d.is_cuda() && device().is_cpu() && is_contiguous() && nbytes() > 0 &&
      !autograd::any_requires_grad({this})) {
    // Only a block that pinned_host_alloc handed out (a live page-locked one) is copied
    // asynchronously; ordinary memory takes the synchronous copy below.
    void* block = storage()->data();
    if (pinned_host_owns(block)) {
      Tensor out = empty(shape(), TensorOptions(dtype()).with_device(d));
      kernels::cuda_memcpy_to_device_async(out.data_ptr(), data_ptr(), d.index, nbytes());
      pinned_host_record_use(block, d);
      return out;
    }
  }
#else
  (void)non_blocking;  // a CPU-only build has no device to copy to asynchronously
#endif
  Tensor src = contiguous();
  Tensor out = empty(shape(), TensorOptions(dtype()).with_device(d));
  if (nbytes() > 0) kernels::cuda_memcpy(out.data_ptr(), d, src.data_ptr(), src.device(), nbytes());
#if EMBER_WITH_CUDA
  // The host waited for the device anyway: read the queued device-side input checks now.
  if (d.is_cpu() && device().is_cuda()) run_device_checks();
#endif
  if (autograd::any_requires_grad({this})) {
    Device back = device();
    autograd::record("to_device", {*this}, out, [back](const Tensor& g) -> autograd::TensorList { return {g.to(back)}; });
  }
  return out;
}

// --- autograd ---------------------------------------------------------------------------------

Tensor& Tensor::requires_grad_(bool r) {
  EMBER_CHECK(is_leaf(), "[requires_grad_] can only change requires_grad of leaf tensors (this tensor is the result of ",
              "an op; use detach() to get a leaf)");
  EMBER_CHECK(!r || is_floating(dtype()), "[requires_grad_] only floating-point tensors can require gradients, got ",
              dtype_name(dtype()));
  impl().requires_grad = r;
  return *this;
}

void Tensor::set_grad(const Tensor& g) const {
  if (g.defined()) {
    EMBER_CHECK(g.shape() == shape(), "[set_grad] gradient shape ", g.shape().str(), " does not match tensor shape ",
                shape().str());
    EMBER_CHECK(g.dtype() == dtype(), "[set_grad] gradient dtype ", dtype_name(g.dtype()), " does not match tensor dtype ",
                dtype_name(dtype()));
    EMBER_CHECK(g.device() == device(), "[set_grad] gradient is on ", g.device().str(), " but the tensor is on ",
                device().str());
  }
  impl().grad = g.defined() ? g.impl_ptr() : nullptr;
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  autograd::run_backward(std::span<const Tensor>(this, 1), std::span<const Tensor>(&gradient, 1), retain_graph);
}

// --- in-place ---------------------------------------------------------------------------------

namespace {
void check_inplace(const Tensor& self, const char* op) {
  EMBER_CHECK(!(grad_enabled() && self.requires_grad()), "[", op,
              "] in-place ops on a tensor that requires grad are not recorded by autograd; use the out-of-place op ",
              "or run under NoGradGuard");
}
Tensor expand_for_inplace(const Tensor& self, const Tensor& other, const char* op) {
  detail::check_same_device(self, other, op);
  Shape b = broadcast_shapes(self.shape(), other.shape(), op);
  EMBER_CHECK(b == self.shape(), "[", op, "] cannot broadcast shape ", other.shape().str(), " into ",
              self.shape().str(), " in place");
  Tensor o = other.dtype() == self.dtype() ? other : other.to(self.dtype());
  return o.detach().expand(self.shape());
}
}  // namespace

Tensor& Tensor::zero_() { return fill_(0.0); }

Tensor& Tensor::fill_(double value) {
  check_inplace(*this, "fill_");
  EMBER_DISPATCH(device(), fill, *this, value);
  bump_version();
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace(*this, "copy_");
  EMBER_CHECK(src.defined(), "[copy_] source is an undefined tensor");
  Shape b = broadcast_shapes(shape(), src.shape(), "copy_");
  EMBER_CHECK(b == shape(), "[copy_] cannot copy shape ", src.shape().str(), " into ", shape().str());
  Tensor s = src.detach();
  if (s.device() != device()) s = s.to(device());
  s = s.expand(shape());
  EMBER_DISPATCH(device(), copy, s, *this);
  bump_version();
  return *this;
}

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  check_inplace(*this, "add_");
  Tensor o = expand_for_inplace(*this, other, "add_");
  if (alpha == 1.0) EMBER_DISPATCH(device(), binary, kernels::BinaryOp::Add, *this, o, *this);
  else EMBER_DISPATCH(device(), axpby, *this, o, Tensor(), alpha, false);
  bump_version();
  return *this;
}

Tensor& Tensor::add_(double value) {
  check_inplace(*this, "add_");
  EMBER_DISPATCH(device(), unary, kernels::UnaryOp::AddScalar, *this, *this, value, 0.0);
  bump_version();
  return *this;
}

Tensor& Tensor::mul_(const Tensor& other) {
  check_inplace(*this, "mul_");
  Tensor o = expand_for_inplace(*this, other, "mul_");
  EMBER_DISPATCH(device(), binary, kernels::BinaryOp::Mul, *this, o, *this);
  bump_version();
  return *this;
}

Tensor& Tensor::mul_(double value) {
  check_inplace(*this, "mul_");
  EMBER_DISPATCH(device(), unary, kernels::UnaryOp::MulScalar, *this, *this, value, 0.0);
  bump_version();
  return *this;
}

Tensor& Tensor::div_(const Tensor& other) {
  check_inplace(*this, "div_");
  Tensor o = expand_for_inplace(*this, other, "div_");
  EMBER_DISPATCH(device(), binary, kernels::BinaryOp::Div, *this, o, *this);
  bump_version();
  return *this;
}

Tensor& Tensor::clamp_(double lo, double hi) {
  check_inplace(*this, "clamp_");
  EMBER_DISPATCH(device(), unary, kernels::UnaryOp::Clamp, *this, *this, lo, hi);
  bump_version();
  return *this;
}

Tensor& Tensor::addcmul_(const Tensor& a, const Tensor& b, double value) {
  check_inplace(*this, "addcmul_");
  Tensor ea = expand_for_inplace(*this, a, "addcmul_"), eb = expand_for_inplace(*this, b, "addcmul_");
  EMBER_DISPATCH(device(), axpby, *this, ea, eb, value, false);
  bump_version();
  return *this;
}

Tensor& Tensor::addcdiv_(const Tensor& a, const Tensor& b, double value) {
  check_inplace(*this, "addcdiv_");
  Tensor ea = expand_for_inplace(*this, a, "addcdiv_"), eb = expand_for_inplace(*this, b, "addcdiv_");
  EMBER_DISPATCH(device(), axpby, *this, ea, eb, value, true);
  bump_version();
  return *this;
}

// --- factories --------------------------------------------------------------------------------

Tensor empty(const Shape& shape, TensorOptions opts) {
  check_shape_valid(shape, "empty");
  int64_t n = 1;
  for (int64_t d : shape) {
    EMBER_CHECK(d == 0 || n <= (int64_t{1} << 62) / d, "[empty] shape ", shape.str(), " has too many elements");
    n *= d;
  }
  auto storage = make_pooled<Storage>(static_cast<size_t>(n) * dtype_size(opts.dtype), opts.device);
  Tensor t(make_impl(std::move(storage), shape, contiguous_strides(shape), 0, opts.dtype));
  if (opts.requires_grad) t.requires_grad_(true);
  return t;
}

Tensor full(const Shape& shape, double value, TensorOptions opts) {
  bool rg = opts.requires_grad;
  opts.requires_grad = false;
  Tensor t = empty(shape, opts);
  EMBER_DISPATCH(t.device(), fill, t, value);
  if (rg) t.requires_grad_(true);
  return t;
}

Tensor zeros(const Shape& shape, TensorOptions opts) { return full(shape, 0.0, opts); }
Tensor ones(const Shape& shape, TensorOptions opts) { return full(shape, 1.0, opts); }
Tensor scalar_tensor(double value, TensorOptions opts) { return full(Shape{}, value, opts); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), TensorOptions(t.dtype()).with_device(t.device())); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), TensorOptions(t.dtype()).with_device(t.device())); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), TensorOptions(t.dtype()).with_device(t.device())); }

Tensor arange(int64_t n, TensorOptions opts) {
  std::vector<double> v(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<double>(i);
  return from_vector(v, Shape{static_cast<int64_t>(v.size())}, opts);
}

namespace {
template <typename S>
Tensor from_values(const std::vector<S>& values, const Shape& shape, TensorOptions opts) {
  EMBER_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), "[from_vector] ", values.size(),
              " values do not fill shape ", shape.str(), " (", shape.numel(), " elements)");
  bool rg = opts.requires_grad;
  Tensor t = empty(shape, TensorOptions(opts.dtype));
  dispatch_all(opts.dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = static_cast<T*>(t.data_ptr());
    for (size_t i = 0; i < values.size(); ++i) {
      if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) p[i] = T(static_cast<float>(values[i]));
      else p[i] = static_cast<T>(values[i]);
    }
  });
  if (!opts.device.is_cpu()) t = t.to(opts.device);
  if (rg) t.requires_grad_(true);
  return t;
}
}  // namespace

Tensor from_vector(const std::vector<double>& v, const Shape& s, TensorOptions o) { return from_values(v, s, o); }
Tensor from_vector(const std::vector<float>& v, const Shape& s, TensorOptions o) { return from_values(v, s, o); }
Tensor from_vector(const std::vector<int64_t>& v, const Shape& s, TensorOptions o) { return from_values(v, s, o); }

Tensor from_blob(void* data, const Shape& shape, DType dtype, Device device, std::function<void(void*)> deleter) {
  check_shape_valid(shape, "from_blob");
  size_t nbytes = static_cast<size_t>(shape.numel()) * dtype_size(dtype);
  auto storage = make_pooled<Storage>(data, nbytes, device, std::move(deleter));
  return Tensor(make_impl(std::move(storage), shape, contiguous_strides(shape), 0, dtype));
}

// --- printing ---------------------------------------------------------------------------------

namespace {
void print_rec(std::ostream& os, const std::vector<double>& v, const Shape& s, int d, int64_t& idx, bool is_float,
               int indent) {
  if (s.size() == 0) {
    os << v[idx++];
    return;
  }
  os << "[";
  int64_t n = s[d];
  for (int64_t i = 0; i < n; ++i) {
    if (i) {
      os << ",";
      if (d + 1 < s.size()) os << "\n" << std::string(indent + 1, ' ');
      else os << " ";
    }
    if (d + 1 == s.size()) {
      double x = v[idx++];
      if (is_float) os << std::fixed << std::setprecision(4) << x;
      else os << static_cast<int64_t>(x);
    } else {
      print_rec(os, v, s, d + 1, idx, is_float, indent + 1);
    }
  }
  os << "]";
}
}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::ostringstream os;
  std::vector<double> v = to_vector<double>();
  os << "tensor(";
  int64_t idx = 0;
  if (dim() == 0) {
    if (is_floating(dtype())) os << std::fixed << std::setprecision(4);
    os << v[0];
  } else {
    print_rec(os, v, shape(), 0, idx, is_floating(dtype()), 7);
  }
  if (dtype() != DType::f32) os << ", dtype=" << dtype_name(dtype());
  if (!device().is_cpu()) os << ", device=" << device().str();
  if (requires_grad()) os << (grad_fn() ? ", grad_fn=" : ", requires_grad=true");
  if (grad_fn()) os << "<" << grad_fn()->name() << "Backward>";
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace ember
