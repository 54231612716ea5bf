// nn::Module: the base of layers and models. It owns named parameters, buffers and submodules in
// registration order, and derives PyTorch's dotted names (`encoder.0.weight`) from that tree for
// named_parameters(), state_dict() and load_state_dict(). Modules are held by std::shared_ptr.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/runtime/tensor.h"
#include "ember/runtime/value.h"

namespace ember::nn {

class Module;
using ModulePtr = std::shared_ptr<Module>;
// (name, tensor) pairs in PyTorch's state_dict order.
using StateDict = std::vector<std::pair<std::string, Tensor>>;
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using NamedModules = std::vector<std::pair<std::string, ModulePtr>>;

// Keys that load_state_dict(strict=false) skipped (as torch's _IncompatibleKeys).
struct LoadResult {
  std::vector<std::string> missing_keys;
  std::vector<std::string> unexpected_keys;
};

class EMBER_API Module : public std::enable_shared_from_this<Module> {
 public:
  // type_name is what print() shows ("Linear"); empty: the demangled C++ class name.
  explicit Module(std::string type_name = "");
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The single-input forward pass; the base class throws (containers and losses override).
  virtual Tensor forward(const Tensor& x);
  // Calls forward(x).
  Tensor operator()(const Tensor& x) { return forward(x); }

  // --- registration (names must be non-empty, without '.', and unused in this module) ---------
  // Adds a parameter (a leaf; requires_grad set as given) and returns it.
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  // Adds a buffer (state that is not trained); non-persistent buffers stay out of state_dict().
  Tensor register_buffer(const std::string& name, Tensor t, bool persistent = true);
  // Adds a submodule and returns it, typed as given.
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_module(name, module);
    return module;
  }
  // Untyped form of register_module().
  void add_module(const std::string& name, ModulePtr module);

  // --- traversal (registration order, pre-order; shared tensors/modules listed once) ----------
  // Parameters with dotted names ("encoder.0.weight"); recurse=false: this module's own only.
  NamedTensors named_parameters(bool recurse = true) const;
  // The tensors of named_parameters(), e.g. for an optimizer.
  std::vector<Tensor> parameters(bool recurse = true) const;
  // Buffers (persistent or not) with dotted names ("bn.running_mean").
  NamedTensors named_buffers(bool recurse = true) const;
  // The tensors of named_buffers().
  std::vector<Tensor> buffers(bool recurse = true) const;
  // Direct submodules with their registration names.
  NamedModules named_children() const;
  // The modules of named_children().
  std::vector<ModulePtr> children() const;
  // This module (name "") and all descendants with dotted names. A module not owned by a
  // shared_ptr is returned through a non-owning pointer, valid while it lives.
  NamedModules named_modules() const;
  // Calls fn on every submodule (post-order) and then on this module, as torch's apply().
  void apply(const std::function<void(Module&)>& fn);

  // --- state ----------------------------------------------------------------------------------
  // Parameters and persistent buffers with dotted names, as detached aliases of the live data
  // (clone them for a snapshot). A tensor shared by two modules appears under both names.
  StateDict state_dict() const;
  // The same entries as a Value map (name -> tensor), the form checkpoints store.
  Value state_dict_value() const;
  // Copies sd into the existing tensors (references held by optimizers stay valid). Throws one
  // ember::Error listing every missing key, unexpected key, shape and dtype mismatch; nothing is
  // copied when it throws. strict=false tolerates missing/unexpected keys and returns them.
  LoadResult load_state_dict(const StateDict& sd, bool strict = true);
  // As above, from a Value map of name -> tensor.
  LoadResult load_state_dict(const Value& sd, bool strict = true);

  // --- modes, placement, gradients -------------------------------------------------------------
  // Sets training mode here and in all descendants.
  Module& train(bool on = true);
  // Same as train(false).
  Module& eval() { return train(false); }
  // Whether this module is in training mode (Dropout drops, BatchNorm uses batch statistics).
  bool is_training() const { return training_; }
  // Moves parameters, buffers and gradients in place (every handle to them sees the move).
  Module& to(Device device);
  // Converts floating-point parameters, buffers and gradients in place; integer buffers stay.
  Module& to(DType dtype);
  // Clears parameter gradients: to undefined (set_to_none, default as torch >= 2.0) or to zeros.
  void zero_grad(bool set_to_none = true);
  // Number of parameter elements (shared parameters counted once); trainable_only: requires_grad.
  int64_t num_parameters(bool trainable_only = false) const;

  // --- printing ---------------------------------------------------------------------------------
  // The class name shown by print() ("Linear").
  std::string type_name() const;
  // The text inside the parentheses of this module's line ("in_features=4, ..."), as torch's.
  virtual std::string extra_repr() const { return ""; }
  // The module tree in PyTorch's repr format.
  std::string repr() const;

 protected:
  bool training_ = true;

 private:
  struct Slot {
    std::string name;
    Tensor tensor;
    bool persistent = true;
  };
  void check_new_name(const std::string& name, const char* what) const;
  // named_parameters()/named_buffers(): the slots of this module (and descendants), deduplicated.
  NamedTensors named_slots(std::vector<Slot> Module::*slots, bool recurse) const;
  void collect_modules(const std::string& prefix, std::vector<std::pair<std::string, const Module*>>& out) const;
  void collect_state(const std::string& prefix, StateDict& out) const;

  std::string type_name_;
  std::vector<Slot> params_;
  std::vector<Slot> buffers_;
  std::vector<std::pair<std::string, ModulePtr>> children_;
};

// Writes m.repr().
EMBER_API std::ostream& operator<<(std::ostream& os, const Module& m);

// Converts a state dict to a Value map (name -> tensor) and back (the latter checks that every
// entry is a tensor and names the first that is not).
EMBER_API Value to_value(const StateDict& sd);
EMBER_API StateDict state_dict_from_value(const Value& v);

// --- repr helpers shared by the layers ------------------------------------------------------
// A double as Python's repr() prints it: "0.1", "1e-05", "1.0", "inf".
EMBER_API std::string py_float(double v);
// "True"/"False".
inline const char* py_bool(bool b) { return b ? "True" : "False"; }
// A Python tuple of ints: "(3, 3)", "(10,)".
EMBER_API std::string py_tuple(const std::vector<int64_t>& v);

}  // namespace ember::nn
