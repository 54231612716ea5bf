// Reverse-mode autograd: a dynamic tape of Nodes built as ops run. Backward visits nodes in
// reverse topological order (ties broken by creation order, so results are deterministic) and
// accumulates into leaf .grad. Backward formulas are written with the public ops under no-grad,
// so they run on every device without extra kernels.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/api.h"
#include "runtime/tensor.h"

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
  virtual std::vector<Tensor> apply(const Tensor& grad_output) = 0;
  // Frees saved tensors after a backward pass without retain_graph.
  virtual void release() {}

  std::vector<Edge> next_edges;
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

using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

// True when grad mode is on and any input requires grad.
EMBER_API bool any_requires_grad(std::initializer_list<const Tensor*> inputs);
EMBER_API bool any_requires_grad(const std::vector<Tensor>& inputs);

// Records `out = op(inputs)` with the given backward; marks out as requiring grad.
// Call only when any_requires_grad(inputs).
EMBER_API void record(const char* op, const std::vector<Tensor>& inputs, Tensor& out, BackwardFn backward);

// Runs backward from roots with the given gradients.
EMBER_API void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph);

// d(outputs)/d(inputs) without touching .grad (as torch.autograd.grad); undefined where unreachable.
EMBER_API std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                                   const std::vector<Tensor>& grad_outputs = {}, bool retain_graph = false);

}  // namespace autograd
}  // namespace ember
