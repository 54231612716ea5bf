// Self-describing modules: a registry of module types (a stable name plus two functions, one that
// writes a module's constructor options to a Value map and one that builds the module from such a
// map) and the module tree built on it. describe() records a module's type, options and children;
// build() makes a runnable module with fresh weights from that tree. Every built-in layer,
// container and loss is registered under PyTorch's class name; a user module registers itself
// once with EMBER_REGISTER_MODULE. Files with weights and tree: train/module_io.h.
//
// A tree node (a Value map; docs/checkpoint-format.md, section `module_tree`):
//   type      string: the registered type name ("Linear"), or type_name() when not registered
//   options   map: the constructor options ({"in_features": 4, ...}); null when not registered
//   children  list of strings: the child names in registration order ("0", "1", ...)
//   modules   map: child name -> that child's node
#pragma once
#include <concepts>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <typeindex>
#include <vector>

#include "ember/nn/layers.h"
#include "ember/nn/module.h"
#include "ember/runtime/api.h"
#include "ember/runtime/value.h"

namespace ember::nn {

// The types ModuleOptions::get<T>() reads. An int option is an Int, a float option a Float (an Int
// is refused, so options read back exactly as written), a Size2 an Int or a list [h, w], and an
// optional one may be null.
template <typename T>
concept ModuleOptionType =
    std::same_as<T, bool> || std::same_as<T, int64_t> || std::same_as<T, double> || std::same_as<T, std::string> ||
    std::same_as<T, std::vector<int64_t>> || std::same_as<T, Size2> || std::same_as<T, std::optional<int64_t>> ||
    std::same_as<T, std::optional<double>> || std::same_as<T, std::optional<Size2>> ||
    std::same_as<T, std::optional<std::vector<int64_t>>>;

// What a read function gets: the options and children of one node of a tree being built. Each
// option must be read exactly as the type expects: a missing key, a value of the wrong kind, and
// a key that the read function never asked for are each an ember::Error naming the module's path
// in the tree, its type and the key.
class EMBER_API ModuleOptions {
 public:
  // The option `key`, converted to T (see ModuleOptionType).
  template <ModuleOptionType T>
  T get(const std::string& key) const;
  // The option `key` as stored, counted as read; throws when it is missing.
  const Value& value(const std::string& key) const;
  // Every option as stored, all counted as read (for a module whose options are a map of its own,
  // such as hyperparameters).
  const ValueMap& all() const;

  // The child names in the order they were registered.
  const std::vector<std::string>& child_names() const { return child_names_; }
  // The child `name` built from its own node (once; later calls return the same module). A read
  // function that builds its children itself (from its options) need not call this: the built
  // children are then checked against the tree.
  ModulePtr child(const std::string& name) const;
  // Every child built from its node, in order, with its name: what a container is made of.
  NamedModules children() const;

  // The node's type name and its dotted path in the tree ("" for the root), for error messages.
  const std::string& type() const { return type_; }
  const std::string& path() const { return path_; }
  // Throws ember::Error "[nn::build] <type> at <path>: <message>".
  [[noreturn]] void fail(const std::string& message) const;

 private:
  friend struct BuildAccess;
  ModuleOptions(const ValueMap& options, const ValueMap& modules, std::vector<std::string> child_names,
                std::string type, std::string path);
  const Value& fetch(const std::string& key, const char* expected) const;
  [[noreturn]] void fail_kind(const std::string& key, const Value& v, const char* expected) const;

  const ValueMap& options_;
  const ValueMap& modules_;
  std::vector<std::string> child_names_;
  std::string type_, path_;
  mutable std::set<std::string> read_;                 // options asked for
  mutable std::map<std::string, ModulePtr> built_;     // children built from the tree
  mutable bool child_failed_ = false;                  // a child's error already names its path
};

// Writes the constructor options of a module of the registered type (a map of option name -> value).
using WriteOptionsFn = std::function<ValueMap(const Module&)>;
// Builds a module of the registered type from its options (and, for containers, its children).
using ReadOptionsFn = std::function<ModulePtr(const ModuleOptions&)>;

// Registers the C++ type `type` under `name`. Registering the same type under the same name again
// replaces its functions; a name already taken by another type, or a type already registered under
// another name, is an ember::Error.
EMBER_API void register_module_type(std::type_index type, const std::string& name, WriteOptionsFn write,
                                    ReadOptionsFn read);
// Typed form: write receives an M, read returns one.
template <typename M>
  requires std::derived_from<M, Module>
void register_module_type(const std::string& name, std::function<ValueMap(const M&)> write,
                          std::function<std::shared_ptr<M>(const ModuleOptions&)> read) {
  register_module_type(
      std::type_index(typeid(M)), name,
      [write = std::move(write)](const Module& m) { return write(static_cast<const M&>(m)); },
      [read = std::move(read)](const ModuleOptions& o) -> ModulePtr { return read(o); });
}
// The registered type names, sorted (the built-ins and whatever the program registered).
EMBER_API std::vector<std::string> registered_module_types();
// Whether a type of this name is registered.
EMBER_API bool is_registered_module_type(const std::string& name);

// The module tree of `module` (see the top of this file). A module whose exact C++ type is not
// registered is recorded with its type_name(), null options and its children, so that building it
// fails naming that type and where it sits, while its registered descendants stay buildable.
EMBER_API Value describe(const Module& module);
// A new module (fresh weights, training mode) built from a tree made by describe(). Throws
// ember::Error naming the module's dotted path and type for an unregistered type, a missing,
// mistyped or unknown option, a malformed node, and a rebuilt module that does not describe as its
// node does. `at` is the tree's dotted path in a larger tree, used in error messages only.
EMBER_API ModulePtr build(const Value& tree, const std::string& at = "");
// The node of the descendant at the dotted path `path` ("encoder.0"; "" is the tree itself).
EMBER_API const Value& subtree(const Value& tree, const std::string& path);

// [v0, v1, ...] as a Value list: the form of an int-list option.
EMBER_API Value int_list(const std::vector<int64_t>& v);

namespace detail {
// EMBER_REGISTER_MODULE's registration at program start: an error is kept (not thrown before main)
// and reported by every later describe() and build().
EMBER_API bool register_module_type_at_startup(std::type_index type, const char* name, WriteOptionsFn write,
                                               ReadOptionsFn read) noexcept;
template <typename M>
bool register_at_startup(const char* name, std::function<ValueMap(const M&)> write,
                         std::function<std::shared_ptr<M>(const ModuleOptions&)> read) noexcept {
  return register_module_type_at_startup(
      std::type_index(typeid(M)), name,
      [write = std::move(write)](const Module& m) { return write(static_cast<const M&>(m)); },
      [read = std::move(read)](const ModuleOptions& o) -> ModulePtr { return read(o); });
}
}  // namespace detail

}  // namespace ember::nn

// EMBER_REGISTER_MODULE(Type, "Name", write, read): registers Type under "Name" when the program
// starts. write: ValueMap(const Type&); read: std::shared_ptr<Type>(const ember::nn::ModuleOptions&)
// (functions or lambdas). Use it once per type, at namespace scope in a .cpp file.
#define EMBER_REGISTER_MODULE(Type, name, ...) EMBER_REGISTER_MODULE_AT_(Type, name, __COUNTER__, __VA_ARGS__)
#define EMBER_REGISTER_MODULE_AT_(Type, name, n, ...) EMBER_REGISTER_MODULE_VAR_(Type, name, n, __VA_ARGS__)
#define EMBER_REGISTER_MODULE_VAR_(Type, name, n, ...)                                 \
  [[maybe_unused]] static const bool ember_module_registered_##n =                     \
      ::ember::nn::detail::register_at_startup<Type>(name, __VA_ARGS__)
