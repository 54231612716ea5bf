// Reverse-mode autograd: a dynamic tape of Nodes built as ops run. Backward visits nodes in
// reverse topological order (ties broken by creation order, so results are deterministic) and
// accumulates into leaf .grad. Backward formulas are written with the public ops under no-grad,
// so they run on every device without extra kernels.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <type_traits>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/runtime/small_alloc.h"
#include "ember/runtime/tensor.h"

namespace ember {

// Whether ops record autograd history on this thread.
EMBER_API bool grad_enabled();
EMBER_API void set_grad_enabled(bool enabled);

// Disables recording for its lifetime (as torch.no_grad()).
class EMBER_API NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

namespace autograd {

class Node;

// The gradients a backward returns, one per input (undefined where the input needs none).
using TensorList = PoolVector<Tensor>;

struct Edge {
  std::shared_ptr<Node> fn;  // null: the input needs no gradient
};

// One recorded op. It has one output; apply() maps the output's gradient to one gradient per
// input (undefined where the input needs none).
class EMBER_API Node {
 public:
  Node();
  virtual ~Node() = default;
  virtual const char* name() const = 0;
  virtual TensorList apply(const Tensor& grad_output) = 0;
  // Frees saved tensors after a backward pass without retain_graph.
  virtual void release() {}

  PoolVector<Edge> next_edges;
  uint64_t sequence_nr;
};

// A tensor saved for backward. It keeps a detached alias (no reference cycle through the output's
// grad_fn) and the version counter at save time; get() throws if the data changed in place since.
class EMBER_API SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(const Tensor& t);
  Tensor get(const char* op) const;
  bool defined() const { return t_.defined(); }

 private:
  Tensor t_;
  uint32_t version_ = 0;
};

// The backward of one recorded op: a move-only callable `TensorList(const Tensor& grad_output)`
// (one returning std::vector<Tensor> is accepted too) kept in a recycled block, so recording an
// op does not call malloc (std::function would for most closures).
class BackwardFn {
 public:
  BackwardFn() = default;
  BackwardFn(std::nullptr_t) {}  // NOLINT: as std::function
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, BackwardFn> &&
                                                    std::is_invocable_v<F&, const Tensor&>>>
  BackwardFn(F&& f) {  // NOLINT: closures convert implicitly, as to std::function
    using Fn = std::decay_t<F>;
    static_assert(alignof(Fn) <= 16, "backward closures must not need more than 16-byte alignment");
    void* mem = small_alloc(sizeof(Fn));
    try {
      obj_ = new (mem) Fn(std::forward<F>(f));
    } catch (...) {
      small_free(mem, sizeof(Fn));
      throw;
    }
    call_ = [](void* o, const Tensor& g) -> TensorList {
      if constexpr (std::is_same_v<std::invoke_result_t<Fn&, const Tensor&>, TensorList>) {
        return (*static_cast<Fn*>(o))(g);
      } else {
        auto r = (*static_cast<Fn*>(o))(g);
        return TensorList(r.begin(), r.end());
      }
    };
    destroy_ = [](void* o) {
      static_cast<Fn*>(o)->~Fn();
      small_free(o, sizeof(Fn));
    };
  }
  BackwardFn(BackwardFn&& o) noexcept : obj_(o.obj_), call_(o.call_), destroy_(o.destroy_) { o.obj_ = nullptr; }
  BackwardFn& operator=(BackwardFn&& o) noexcept {
    if (this != &o) {
      reset();
      obj_ = o.obj_;
      call_ = o.call_;
      destroy_ = o.destroy_;
      o.obj_ = nullptr;
    }
    return *this;
  }
  BackwardFn& operator=(std::nullptr_t) noexcept {
    reset();
    return *this;
  }
  BackwardFn(const BackwardFn&) = delete;
  BackwardFn& operator=(const BackwardFn&) = delete;
  ~BackwardFn() { reset(); }

  explicit operator bool() const { return obj_ != nullptr; }
  bool operator==(std::nullptr_t) const { return obj_ == nullptr; }
  TensorList operator()(const Tensor& g) const { return call_(obj_, g); }

 private:
  void reset() noexcept {
    if (obj_) destroy_(obj_);
    obj_ = nullptr;
  }
  void* obj_ = nullptr;
  TensorList (*call_)(void*, const Tensor&) = nullptr;
  void (*destroy_)(void*) = nullptr;
};

// True when grad mode is on and any input requires grad.
EMBER_API bool any_requires_grad(std::initializer_list<const Tensor*> inputs);
EMBER_API bool any_requires_grad(std::span<const Tensor> inputs);  // a std::vector or TensorList

// Records `out = op(inputs)` with the given backward; marks out as requiring grad.
// Call only when any_requires_grad(inputs).
EMBER_API void record(const char* op, std::span<const Tensor> inputs, Tensor& out, BackwardFn backward);
inline void record(const char* op, std::initializer_list<Tensor> inputs, Tensor& out, BackwardFn backward) {
  record(op, std::span<const Tensor>(inputs.begin(), inputs.size()), out, std::move(backward));
}

// Hooks run by the backward pass once it has accumulated a leaf's gradient into .grad (as torch's
// Tensor.register_post_accumulate_grad_hook): each backward calls them once per leaf it reaches,
// on the thread running backward, with the leaf (its .grad final for this pass), in the order
// they were registered. autograd::grad, which leaves .grad alone, does not call them. Data-
// parallel training starts reducing a bucket of gradients from them while backward goes on.
using PostAccumulateGradHook = std::function<void(const Tensor& leaf)>;
struct PostAccumulateHooks {
  std::vector<std::pair<uint64_t, PostAccumulateGradHook>> hooks;  // (id, hook)
};

// Removes its hook when remove() is called (not on destruction, as torch's RemovableHandle).
class EMBER_API GradHookHandle {
 public:
  GradHookHandle() = default;
  GradHookHandle(std::weak_ptr<TensorImpl> leaf, uint64_t id) : leaf_(std::move(leaf)), id_(id) {}
  void remove();

 private:
  std::weak_ptr<TensorImpl> leaf_;
  uint64_t id_ = 0;
};

// Registers `hook` on a leaf that requires grad (an error otherwise: a non-leaf's gradient is
// never accumulated).
EMBER_API GradHookHandle register_post_accumulate_grad_hook(const Tensor& leaf, PostAccumulateGradHook hook);

// Runs backward from roots with the given gradients.
EMBER_API void run_backward(std::span<const Tensor> roots, std::span<const Tensor> grads, bool retain_graph);

// d(outputs)/d(inputs) without touching .grad (as torch.autograd.grad); undefined where unreachable.
EMBER_API std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                                   const std::vector<Tensor>& grad_outputs = {}, bool retain_graph = false);

}  // namespace autograd
}  // namespace ember
