// Tensor: a reference-counted handle to (shared storage, shape, strides, offset, dtype, device)
// plus autograd metadata. Copies of a Tensor alias the same data; views share storage.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/runtime/device.h"
#include "ember/runtime/dtype.h"
#include "ember/runtime/shape.h"

namespace ember {

namespace autograd {
class Node;
struct PostAccumulateHooks;
}

// A block of device memory shared by a tensor and all its views. It also carries the version
// counter that in-place ops bump, so autograd can detect that saved tensors were modified.
class EMBER_API Storage {
 public:
  Storage(size_t nbytes, Device device);  // allocates through the caching allocator
  // Wraps external memory; deleter (may be empty) runs when the storage dies.
  Storage(void* data, size_t nbytes, Device device, std::function<void(void*)> deleter);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  uint32_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  std::function<void(void*)> deleter_;
  bool owned_ = true;
  std::atomic<uint32_t> version_{0};
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Strides strides;
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;
  // autograd
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<autograd::Node> grad_fn;
  std::weak_ptr<autograd::Node> grad_accumulator;  // for leaves; the node holds the leaf
  // for leaves: run after backward accumulated into grad (autograd::register_post_accumulate_grad_hook)
  std::shared_ptr<autograd::PostAccumulateHooks> post_accumulate_hooks;
};

struct TensorOptions {
  DType dtype = DType::f32;
  Device device = kCPU;
  bool requires_grad = false;
  TensorOptions() = default;
  TensorOptions(DType t) : dtype(t) {}  // NOLINT: lets zeros({2}, DType::f64) read naturally
  TensorOptions(Device d) : device(d) {}  // NOLINT
  TensorOptions& with_dtype(DType t) { dtype = t; return *this; }
  TensorOptions& with_device(Device d) { device = d; return *this; }
  TensorOptions& with_requires_grad(bool r = true) { requires_grad = r; return *this; }
};

class EMBER_API Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // --- metadata -------------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Strides& strides() const { return impl().strides; }
  int dim() const { return impl().shape.size(); }
  int64_t size(int64_t d) const;    // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const { return impl().shape.numel(); }
  int64_t offset() const { return impl().offset; }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  size_t element_size() const { return dtype_size(dtype()); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  bool is_alias_of(const Tensor& o) const { return storage() == o.storage(); }
  uint32_t version() const { return storage()->version(); }
  void bump_version() const { storage()->bump_version(); }

  // Pointer to the first element. The typed form checks that T matches the dtype.
  void* data_ptr() const;
  template <typename T>
  T* data_ptr() const {
    check_dtype(DTypeOf<T>::value, "data_ptr");
    return static_cast<T*>(data_ptr());
  }
  // Value of a one-element tensor (any device), converted to T.
  template <typename T = double>
  T item() const { return static_cast<T>(item_double()); }
  double item_double() const;
  // Elements in row-major order, converted to T (copies from the device if needed).
  template <typename T>
  std::vector<T> to_vector() const;

  // --- views (share storage; differentiable) ---------------------------------------------------
  Tensor view(const Shape& shape) const;     // requires compatible strides; one dim may be -1
  Tensor reshape(const Shape& shape) const;  // view when possible, copy otherwise
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const;  // transpose of a rank-2 tensor
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;  // -1 keeps a dim; new leading dims allowed
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor contiguous() const;  // this if already contiguous, else a copy
  Tensor clone() const;       // always a contiguous copy (differentiable)
  Tensor detach() const;      // same data, no autograd history
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  // With non_blocking, a copy from page-locked host memory (pinned_host_alloc, e.g. a DataLoader
  // batch bound for CUDA) to a CUDA device is queued on the device's stream and returns at once;
  // the host block is not reused until the copy ran. Any other copy behaves as to(device).
  Tensor to(Device device, bool non_blocking) const;

  // --- autograd --------------------------------------------------------------------------------
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& requires_grad_(bool r = true);  // only on leaves
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  Tensor grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }
  void set_grad(const Tensor& g) const;
  const std::shared_ptr<autograd::Node>& grad_fn() const { return impl().grad_fn; }
  // Backpropagates from this tensor. Without a gradient it must hold one element.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;

  // --- in-place (bump the version counter; not recorded by autograd on leaves needing grad) --
  Tensor& zero_();
  Tensor& fill_(double value);
  Tensor& copy_(const Tensor& src);  // broadcasts src, converts dtype, crosses devices
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& add_(double value);
  Tensor& sub_(const Tensor& other) { return add_(other, -1.0); }
  Tensor& mul_(const Tensor& other);
  Tensor& mul_(double value);
  Tensor& div_(const Tensor& other);
  Tensor& div_(double value) { return mul_(1.0 / value); }
  Tensor& clamp_(double lo, double hi);
  Tensor& addcmul_(const Tensor& a, const Tensor& b, double value = 1.0);  // this += value*a*b
  Tensor& addcdiv_(const Tensor& a, const Tensor& b, double value = 1.0);  // this += value*a/b

  std::string str() const;  // PyTorch-like printing
  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  void check_dtype(DType expected, const char* what) const;
  std::shared_ptr<TensorImpl> impl_;
};

EMBER_API std::ostream& operator<<(std::ostream& os, const Tensor& t);

// --- factories ------------------------------------------------------------------------------
EMBER_API Tensor empty(const Shape& shape, TensorOptions opts = {});
EMBER_API Tensor zeros(const Shape& shape, TensorOptions opts = {});
EMBER_API Tensor ones(const Shape& shape, TensorOptions opts = {});
EMBER_API Tensor full(const Shape& shape, double value, TensorOptions opts = {});
EMBER_API Tensor scalar_tensor(double value, TensorOptions opts = {});
EMBER_API Tensor zeros_like(const Tensor& t);
EMBER_API Tensor ones_like(const Tensor& t);
EMBER_API Tensor empty_like(const Tensor& t);
EMBER_API Tensor arange(int64_t n, TensorOptions opts = {});
// Copies values (converted to opts.dtype) into a new CPU tensor, then moves it to opts.device.
EMBER_API Tensor from_vector(const std::vector<double>& values, const Shape& shape, TensorOptions opts = {});
EMBER_API Tensor from_vector(const std::vector<float>& values, const Shape& shape, TensorOptions opts = {});
EMBER_API Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape, TensorOptions opts = {DType::i64});
// A tensor over existing memory (not owned; deleter may release it).
EMBER_API Tensor from_blob(void* data, const Shape& shape, DType dtype, Device device = kCPU,
                           std::function<void(void*)> deleter = {});

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = to(kCPU).to(DTypeOf<T>::value).contiguous();
  const T* p = c.data_ptr<T>();
  return std::vector<T>(p, p + c.numel());
}

}  // namespace ember
