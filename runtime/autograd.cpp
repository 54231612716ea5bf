// The autograd engine: recording, saved-tensor version checks, and the backward pass.
#include "ember/runtime/autograd.h"

#include <atomic>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "ember/runtime/ops.h"
#include "runtime/parallel_detail.h"

namespace ember {

namespace {
thread_local bool t_grad_enabled = true;
std::atomic<uint64_t> g_next_sequence_nr{0};
}  // namespace

bool grad_enabled() { return t_grad_enabled; }
void set_grad_enabled(bool enabled) { t_grad_enabled = enabled; }

namespace autograd {

Node::Node() : sequence_nr(g_next_sequence_nr.fetch_add(1, std::memory_order_relaxed)) {}

namespace {

// A recorded op: backward closure plus the metadata of its inputs (to validate gradients).
class FunctionNode final : public Node {
 public:
  FunctionNode(const char* op, BackwardFn fn) : op_(op), fn_(std::move(fn)) {}
  const char* name() const override { return op_; }
  TensorList apply(const Tensor& g) override {
    EMBER_CHECK(fn_ != nullptr, "[autograd] trying to backward through the graph of ", op_,
                " a second time (its saved tensors were freed after the first backward); pass retain_graph=true to "
                "the first backward");
    TensorList grads = fn_(g);
    EMBER_CHECK(grads.size() == input_shapes.size(), "[autograd] backward of ", op_, " returned ", grads.size(),
                " gradients for ", input_shapes.size(), " inputs");
    for (size_t i = 0; i < grads.size(); ++i) {
      if (!grads[i].defined()) continue;
      EMBER_CHECK(grads[i].shape() == input_shapes[i], "[autograd] backward of ", op_, " returned a gradient of shape ",
                  grads[i].shape().str(), " for input ", i, " of shape ", input_shapes[i].str());
      if (grads[i].dtype() != input_dtypes[i] && is_floating(input_dtypes[i])) grads[i] = grads[i].to(input_dtypes[i]);
    }
    return grads;
  }
  void release() override { fn_ = nullptr; }

  PoolVector<Shape> input_shapes;
  PoolVector<DType> input_dtypes;

 private:
  const char* op_;
  BackwardFn fn_;
};

// Sink for a leaf: adds incoming gradients into leaf.grad.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : leaf_(std::move(leaf)) {}
  const char* name() const override { return "AccumulateGrad"; }
  TensorList apply(const Tensor& g) override {
    Tensor leaf(leaf_);
    // The backward pass's buffer is the only owner of g's memory (no view, saved tensor or user
    // handle shares it): the leaf takes it over instead of a copy, as torch's AccumulateGrad.
    const bool sole_owner = g.impl_ptr().use_count() == 1 && g.storage().use_count() == 1 &&
                            g.dtype() == leaf.dtype() && g.device() == leaf.device() && g.is_contiguous() &&
                            g.offset() == 0 && g.nbytes() == g.storage()->nbytes();
    Tensor grad = g.dtype() == leaf.dtype() ? g : g.to(leaf.dtype());
    EMBER_CHECK(grad.shape() == leaf.shape(), "[autograd] gradient of shape ", grad.shape().str(),
                " for a leaf of shape ", leaf.shape().str());
    Tensor cur = leaf.grad();
    if (!cur.defined()) leaf.set_grad(sole_owner ? grad.detach() : grad.detach().clone());
    else cur.add_(grad);
    if (const auto hooks = leaf_->post_accumulate_hooks)  // a copy: a hook may remove itself
      for (const auto& [id, hook] : hooks->hooks) hook(leaf);
    return {};
  }
  const std::shared_ptr<TensorImpl>& leaf() const { return leaf_; }

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

std::shared_ptr<Node> grad_accumulator(const Tensor& t) {
  TensorImpl& impl = t.impl();
  if (auto acc = impl.grad_accumulator.lock()) return acc;
  auto acc = make_pooled<AccumulateGrad>(t.impl_ptr());
  impl.grad_accumulator = acc;
  return acc;
}

Edge edge_for(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return Edge{nullptr};
  if (t.grad_fn()) return Edge{t.grad_fn()};
  return Edge{grad_accumulator(t)};
}

// The backward pass's bookkeeping, in recycled blocks.
template <typename V>
using NodeMap = std::unordered_map<Node*, V, std::hash<Node*>, std::equal_to<Node*>, PoolAllocator<std::pair<Node* const, V>>>;
using NodeSet = std::unordered_set<Node*, std::hash<Node*>, std::equal_to<Node*>, PoolAllocator<Node*>>;

struct BySequence {
  bool operator()(const Node* a, const Node* b) const { return a->sequence_nr < b->sequence_nr; }
};

// Runs the backward pass. With `capture`, gradients reaching the captured nodes are stored there
// instead of being accumulated into leaves (autograd::grad).
void execute(std::span<const Tensor> roots, std::span<const Tensor> grads, bool retain_graph,
             std::unordered_map<Node*, Tensor>* capture) {
  EMBER_CHECK(roots.size() == grads.size(), "[backward] got ", roots.size(), " tensors but ", grads.size(),
              " gradients");
  NoGradGuard no_grad;
  detail::FixedChunksGuard fixed_chunks;  // chunk i on worker i, as the forward pass's grad mode has it
  NodeMap<Tensor> buffers;
  PoolVector<std::shared_ptr<Node>> root_nodes;
  auto accumulate = [&](Node* n, const Tensor& g) {
    auto it = buffers.find(n);
    if (it == buffers.end()) buffers.emplace(n, g);
    else it->second = add(it->second, g);
  };
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    EMBER_CHECK(r.defined(), "[backward] called on an undefined tensor");
    EMBER_CHECK(r.requires_grad(), "[backward] tensor of shape ", r.shape().str(),
                " does not require grad and has no grad_fn");
    Tensor g = grads[i];
    if (!g.defined()) {
      EMBER_CHECK(r.numel() == 1, "[backward] grad can be implicitly created only for one-element outputs; got shape ",
                  r.shape().str(), " (pass a gradient)");
      g = ones(r.shape(), TensorOptions(r.dtype()).with_device(r.device()));
    } else {
      EMBER_CHECK(g.shape() == r.shape(), "[backward] gradient shape ", g.shape().str(), " does not match output shape ",
                  r.shape().str());
    }
    std::shared_ptr<Node> n = edge_for(r).fn;
    accumulate(n.get(), g);
    root_nodes.push_back(n);
  }

  // Count, for every reachable node, how many edges point to it.
  NodeMap<int> deps;
  NodeSet seen;
  PoolVector<Node*> stack;
  for (auto& n : root_nodes)
    if (seen.insert(n.get()).second) stack.push_back(n.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& e : n->next_edges) {
      if (!e.fn) continue;
      deps[e.fn.get()]++;
      if (seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
    }
  }

  std::priority_queue<Node*, PoolVector<Node*>, BySequence> ready;
  NodeSet queued;
  for (auto& n : root_nodes)
    if (deps[n.get()] == 0 && queued.insert(n.get()).second) ready.push(n.get());

  while (!ready.empty()) {
    Node* n = ready.top();
    ready.pop();
    Tensor g;
    if (auto it = buffers.find(n); it != buffers.end()) {
      g = std::move(it->second);
      buffers.erase(it);
    }
    TensorList outs;
    bool captured = false;
    if (capture) {
      if (auto it = capture->find(n); it != capture->end()) {
        it->second = g;
        captured = true;
      }
    }
    bool is_sink = dynamic_cast<AccumulateGrad*>(n) != nullptr;
    if (g.defined() && !(is_sink && capture)) outs = n->apply(g);
    (void)captured;
    if (!retain_graph && !is_sink && g.defined()) n->release();
    for (size_t i = 0; i < n->next_edges.size(); ++i) {
      Node* next = n->next_edges[i].fn.get();
      if (!next) continue;
      if (i < outs.size() && outs[i].defined()) accumulate(next, outs[i]);
      if (--deps[next] == 0 && queued.insert(next).second) ready.push(next);
    }
  }
}

}  // namespace

SavedTensor::SavedTensor(const Tensor& t) {
  if (!t.defined()) return;
  t_ = t.detach();
  version_ = t.version();
}

Tensor SavedTensor::get(const char* op) const {
  if (t_.defined())
    EMBER_CHECK(t_.version() == version_, "[autograd] a tensor saved for the backward of ", op,
                " was modified by an inplace operation (its version is ", t_.version(), ", expected ", version_,
                "); clone it before modifying it");
  return t_;
}

bool any_requires_grad(std::initializer_list<const Tensor*> inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

bool any_requires_grad(std::span<const Tensor> inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(const char* op, std::span<const Tensor> inputs, Tensor& out, BackwardFn backward) {
  auto node = make_pooled<FunctionNode>(op, std::move(backward));
  node->next_edges.reserve(inputs.size());
  node->input_shapes.reserve(inputs.size());
  node->input_dtypes.reserve(inputs.size());
  for (const Tensor& t : inputs) {
    node->next_edges.push_back(edge_for(t));
    node->input_shapes.push_back(t.defined() ? t.shape() : Shape{});
    node->input_dtypes.push_back(t.defined() ? t.dtype() : DType::f32);
  }
  out.impl().grad_fn = std::move(node);
  out.impl().requires_grad = true;
}

GradHookHandle register_post_accumulate_grad_hook(const Tensor& leaf, PostAccumulateGradHook hook) {
  EMBER_CHECK(leaf.defined(), "[register_post_accumulate_grad_hook] the tensor is undefined");
  EMBER_CHECK(leaf.requires_grad() && !leaf.grad_fn(), "[register_post_accumulate_grad_hook] the tensor of shape ",
              leaf.shape().str(), " is not a leaf that requires grad (its gradient is never accumulated)");
  EMBER_CHECK(hook != nullptr, "[register_post_accumulate_grad_hook] the hook is empty");
  static std::atomic<uint64_t> next_id{1};
  const uint64_t id = next_id.fetch_add(1, std::memory_order_relaxed);
  TensorImpl& impl = leaf.impl();
  // Copy on write: a backward pass running the hooks keeps its own list.
  auto hooks = impl.post_accumulate_hooks ? std::make_shared<PostAccumulateHooks>(*impl.post_accumulate_hooks)
                                          : std::make_shared<PostAccumulateHooks>();
  hooks->hooks.emplace_back(id, std::move(hook));
  impl.post_accumulate_hooks = std::move(hooks);
  return GradHookHandle(leaf.impl_ptr(), id);
}

void GradHookHandle::remove() {
  auto impl = leaf_.lock();
  if (!impl || !impl->post_accumulate_hooks) return;
  auto hooks = std::make_shared<PostAccumulateHooks>(*impl->post_accumulate_hooks);
  std::erase_if(hooks->hooks, [&](const auto& h) { return h.first == id_; });
  impl->post_accumulate_hooks = hooks->hooks.empty() ? nullptr : std::move(hooks);
  leaf_.reset();
}

void run_backward(std::span<const Tensor> roots, std::span<const Tensor> grads, bool retain_graph) {
  execute(roots, grads, retain_graph, nullptr);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, bool retain_graph) {
  std::vector<Tensor> gos = grad_outputs;
  if (gos.empty()) gos.resize(outputs.size());
  std::unordered_map<Node*, Tensor> capture;
  std::vector<std::shared_ptr<Node>> nodes;
  for (const Tensor& t : inputs) {
    EMBER_CHECK(t.defined() && t.requires_grad(), "[autograd::grad] every input must require grad");
    nodes.push_back(edge_for(t).fn);
    capture[nodes.back().get()] = Tensor();
  }
  execute(outputs, gos, retain_graph, &capture);
  std::vector<Tensor> result;
  for (auto& n : nodes) result.push_back(capture[n.get()]);
  return result;
}

}  // namespace autograd
}  // namespace ember
