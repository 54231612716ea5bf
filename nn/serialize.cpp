// The module-type registry (with every built-in layer, container and loss under PyTorch's class
// name and constructor argument names), describe() and build().
#include "ember/nn/serialize.h"

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <typeinfo>
#include <utility>

#include "ember/nn/container.h"
#include "ember/nn/loss.h"
#include "ember/nn/normalization.h"
#include "ember/runtime/error.h"

namespace ember::nn {

namespace {

constexpr const char* kType = "type";
constexpr const char* kOptions = "options";
constexpr const char* kChildren = "children";
constexpr const char* kModules = "modules";

std::string join_path(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// "at the root" / "at 'encoder.0'": where a node sits, for error messages.
std::string where(const std::string& path) { return path.empty() ? "at the root" : "at '" + path + "'"; }

std::string join_names(const std::vector<std::string>& names) {
  std::string out = "[";
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
  return out + "]";
}

// A value and its kind, for error messages: "int 3", "string \"a\"", "a list".
std::string describe_value(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Null: return "null";
    case Value::Kind::Bool:
    case Value::Kind::Int:
    case Value::Kind::Float:
    case Value::Kind::String: return std::string(Value::kind_name(v.kind())) + " " + v.repr();
    default: return std::string("a ") + Value::kind_name(v.kind());
  }
}

struct Entry {
  std::string name;
  std::type_index type;
  WriteOptionsFn write;
  ReadOptionsFn read;
};
using EntryPtr = std::shared_ptr<const Entry>;

class Registry;
void add_builtins(Registry& r);

// The demangled name of a C++ type ("MyNet", "ember::nn::Linear"), for error messages.
std::string cpp_name(std::type_index type) {
  int status = 0;
  char* demangled = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
  std::string name = status == 0 && demangled ? demangled : type.name();
  std::free(demangled);
  return name;
}

// Type name <-> C++ type, with the built-ins added on first use. Lookups hand out shared
// pointers to immutable entries, so a registration racing with a build is safe.
class Registry {
 public:
  Registry() { add_builtins(*this); }

  void add(std::type_index type, const std::string& name, WriteOptionsFn write, ReadOptionsFn read) {
    EMBER_CHECK(!name.empty(), "[nn::register_module_type] the type name is empty");
    EMBER_CHECK(write && read, "[nn::register_module_type] '", name, "' needs both a write and a read function");
    std::lock_guard<std::mutex> lock(mu_);
    auto by_name = by_name_.find(name);
    EMBER_CHECK(by_name == by_name_.end() || by_name->second->type == type, "[nn::register_module_type] '", name,
                "' is already registered for another C++ type (",
                by_name == by_name_.end() ? "" : cpp_name(by_name->second->type), ")");
    auto by_type = by_type_.find(type);
    EMBER_CHECK(by_type == by_type_.end() || by_type->second->name == name, "[nn::register_module_type] C++ type ",
                cpp_name(type), " is already registered as '", by_type == by_type_.end() ? "" : by_type->second->name,
                "', cannot register it as '", name, "'");
    auto entry = std::make_shared<const Entry>(Entry{name, type, std::move(write), std::move(read)});
    by_name_[name] = entry;
    by_type_.insert_or_assign(type, entry);
  }

  EntryPtr find(std::type_index type) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_type_.find(type);
    return it == by_type_.end() ? nullptr : it->second;
  }

  EntryPtr find(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
  }

  std::vector<std::string> names() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (const auto& [name, e] : by_name_) out.push_back(name);
    return out;
  }

  void add_startup_error(const std::string& message) {
    std::lock_guard<std::mutex> lock(mu_);
    startup_errors_.push_back(message);
  }

  // Throws the first registration that failed at program start, if any.
  void check_startup() const {
    std::lock_guard<std::mutex> lock(mu_);
    if (!startup_errors_.empty())
      EMBER_THROW("[nn] a module type registration failed when the program started (EMBER_REGISTER_MODULE): ",
                  startup_errors_.front());
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, EntryPtr> by_name_;
  std::map<std::type_index, EntryPtr> by_type_;
  std::vector<std::string> startup_errors_;
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

// --- ModuleOptions ----------------------------------------------------------------------------------

// build()'s access to ModuleOptions' private parts.
struct BuildAccess {
  static ModuleOptions make(const ValueMap& options, const ValueMap& modules, std::vector<std::string> child_names,
                            std::string type, std::string path) {
    return ModuleOptions(options, modules, std::move(child_names), std::move(type), std::move(path));
  }
  static const std::set<std::string>& read(const ModuleOptions& o) { return o.read_; }
  static const std::map<std::string, ModulePtr>& built(const ModuleOptions& o) { return o.built_; }
  static bool child_failed(const ModuleOptions& o) { return o.child_failed_; }
};

ModuleOptions::ModuleOptions(const ValueMap& options, const ValueMap& modules, std::vector<std::string> child_names,
                             std::string type, std::string path)
    : options_(options), modules_(modules), child_names_(std::move(child_names)), type_(std::move(type)),
      path_(std::move(path)) {}

void ModuleOptions::fail(const std::string& message) const {
  // Marked so that build() passes it on as it is instead of prefixing the path a second time.
  child_failed_ = true;
  EMBER_THROW("[nn::build] ", type_, " ", where(path_), ": ", message);
}

void ModuleOptions::fail_kind(const std::string& key, const Value& v, const char* expected) const {
  fail(str_cat("option '", key, "' is ", describe_value(v), ", expected ", expected));
}

const Value& ModuleOptions::fetch(const std::string& key, const char* expected) const {
  auto it = options_.find(key);
  if (it == options_.end()) fail(str_cat("option '", key, "' is missing (expected ", expected, ")"));
  read_.insert(key);
  return it->second;
}

const Value& ModuleOptions::value(const std::string& key) const { return fetch(key, "a value"); }

const ValueMap& ModuleOptions::all() const {
  for (const auto& [key, v] : options_) read_.insert(key);
  return options_;
}

namespace {

// The conversions of ModuleOptions::get<T>: what T accepts, and how it is described in errors.
template <typename T>
struct OptionConv;

template <>
struct OptionConv<bool> {
  static constexpr const char* kExpected = "a bool";
  static std::optional<bool> from(const Value& v) {
    return v.is_bool() ? std::optional<bool>(v.as_bool()) : std::nullopt;
  }
};
template <>
struct OptionConv<int64_t> {
  static constexpr const char* kExpected = "an int";
  static std::optional<int64_t> from(const Value& v) {
    return v.is_int() ? std::optional<int64_t>(v.as_int()) : std::nullopt;
  }
};
template <>
struct OptionConv<double> {
  static constexpr const char* kExpected = "a float";
  static std::optional<double> from(const Value& v) {
    return v.is_float() ? std::optional<double>(v.as_double()) : std::nullopt;
  }
};
template <>
struct OptionConv<std::string> {
  static constexpr const char* kExpected = "a string";
  static std::optional<std::string> from(const Value& v) {
    return v.is_string() ? std::optional<std::string>(v.as_string()) : std::nullopt;
  }
};
template <>
struct OptionConv<std::vector<int64_t>> {
  static constexpr const char* kExpected = "a list of ints";
  static std::optional<std::vector<int64_t>> from(const Value& v) {
    if (!v.is_list()) return std::nullopt;
    std::vector<int64_t> out;
    for (const Value& e : v.as_list()) {
      if (!e.is_int()) return std::nullopt;
      out.push_back(e.as_int());
    }
    return out;
  }
};
template <>
struct OptionConv<Size2> {
  static constexpr const char* kExpected = "an int or a list of 2 ints";
  static std::optional<Size2> from(const Value& v) {
    if (v.is_int()) return Size2(v.as_int());
    auto pair = OptionConv<std::vector<int64_t>>::from(v);
    if (pair && pair->size() == 2) return Size2((*pair)[0], (*pair)[1]);
    return std::nullopt;
  }
};

template <typename T>
struct IsOptional : std::false_type {};
template <typename T>
struct IsOptional<std::optional<T>> : std::true_type {};

}  // namespace

template <ModuleOptionType T>
T ModuleOptions::get(const std::string& key) const {
  if constexpr (IsOptional<T>::value) {
    using Inner = typename T::value_type;
    const std::string expected = str_cat(OptionConv<Inner>::kExpected, " or null");
    const Value& v = fetch(key, expected.c_str());
    if (v.is_null()) return std::nullopt;
    auto out = OptionConv<Inner>::from(v);
    if (!out) fail_kind(key, v, expected.c_str());
    return T(std::move(*out));
  } else {
    const Value& v = fetch(key, OptionConv<T>::kExpected);
    auto out = OptionConv<T>::from(v);
    if (!out) fail_kind(key, v, OptionConv<T>::kExpected);
    return std::move(*out);
  }
}

template bool ModuleOptions::get<bool>(const std::string&) const;
template int64_t ModuleOptions::get<int64_t>(const std::string&) const;
template double ModuleOptions::get<double>(const std::string&) const;
template std::string ModuleOptions::get<std::string>(const std::string&) const;
template std::vector<int64_t> ModuleOptions::get<std::vector<int64_t>>(const std::string&) const;
template Size2 ModuleOptions::get<Size2>(const std::string&) const;
template std::optional<int64_t> ModuleOptions::get<std::optional<int64_t>>(const std::string&) const;
template std::optional<double> ModuleOptions::get<std::optional<double>>(const std::string&) const;
template std::optional<Size2> ModuleOptions::get<std::optional<Size2>>(const std::string&) const;
template std::optional<std::vector<int64_t>>
ModuleOptions::get<std::optional<std::vector<int64_t>>>(const std::string&) const;

namespace {
ModulePtr build_node(const Value& node, const std::string& path);
}  // namespace

ModulePtr ModuleOptions::child(const std::string& name) const {
  auto done = built_.find(name);
  if (done != built_.end()) return done->second;
  auto it = modules_.find(name);
  if (it == modules_.end()) fail(str_cat("has no child '", name, "' (children: ", join_names(child_names_), ")"));
  ModulePtr m;
  try {
    m = build_node(it->second, join_path(path_, name));
  } catch (...) {
    child_failed_ = true;
    throw;
  }
  built_.emplace(name, m);
  return m;
}

NamedModules ModuleOptions::children() const {
  NamedModules out;
  for (const std::string& name : child_names_) out.emplace_back(name, child(name));
  return out;
}

// --- registration -------------------------------------------------------------------------------------

void register_module_type(std::type_index type, const std::string& name, WriteOptionsFn write, ReadOptionsFn read) {
  registry().add(type, name, std::move(write), std::move(read));
}

bool detail::register_module_type_at_startup(std::type_index type, const char* name, WriteOptionsFn write,
                                             ReadOptionsFn read) noexcept {
  try {
    registry().add(type, name, std::move(write), std::move(read));
    return true;
  } catch (const std::exception& e) {
    try {
      registry().add_startup_error(e.what());
    } catch (...) {
    }
    return false;
  }
}

std::vector<std::string> registered_module_types() { return registry().names(); }

bool is_registered_module_type(const std::string& name) { return registry().find(name) != nullptr; }

Value int_list(const std::vector<int64_t>& v) {
  ValueList out;
  for (int64_t x : v) out.emplace_back(x);
  return Value(std::move(out));
}

// --- describe ------------------------------------------------------------------------------------------

namespace {

Value describe_node(const Module& m, const std::string& path) {
  EntryPtr entry = registry().find(std::type_index(typeid(m)));
  ValueMap node;
  node[kType] = entry ? entry->name : m.type_name();
  if (entry) {
    try {
      node[kOptions] = Value(entry->write(m));
    } catch (const std::exception& e) {
      EMBER_THROW("[nn::describe] writing the options of ", entry->name, " ", where(path), " failed: ", e.what());
    }
  } else {
    node[kOptions] = Value();
  }
  ValueList names;
  ValueMap modules;
  for (const auto& [name, child] : m.named_children()) {
    names.emplace_back(name);
    modules[name] = describe_node(*child, join_path(path, name));
  }
  node[kChildren] = Value(std::move(names));
  node[kModules] = Value(std::move(modules));
  return Value(std::move(node));
}

}  // namespace

Value describe(const Module& module) {
  registry().check_startup();
  return describe_node(module, "");
}

// --- build ---------------------------------------------------------------------------------------------

namespace {

[[noreturn]] void fail_node(const std::string& path, const std::string& message) {
  EMBER_THROW("[nn::build] the module tree node ", where(path), " ", message);
}

// Checks a node's shape (exactly type, options, children and modules, each of its kind; the child
// names unique and matching the keys of modules) and returns its child names in order.
std::vector<std::string> check_node(const Value& node, const std::string& path) {
  if (!node.is_map()) fail_node(path, str_cat("is ", describe_value(node), ", expected a map"));
  for (const auto& [key, v] : node.as_map())
    if (key != kType && key != kOptions && key != kChildren && key != kModules)
      fail_node(path, str_cat("has an unknown key '", key, "' (expected type, options, children, modules)"));
  for (const char* key : {kType, kOptions, kChildren, kModules})
    if (!node.contains(key)) fail_node(path, str_cat("has no '", key, "'"));
  const Value& type = node.at(kType);
  if (!type.is_string()) fail_node(path, str_cat("has a 'type' that is ", describe_value(type), ", expected a string"));
  auto bad = [&](const std::string& what) { fail_node(path, str_cat("(", type.as_string(), ") ", what)); };
  const Value& options = node.at(kOptions);
  const Value& children = node.at(kChildren);
  const Value& modules = node.at(kModules);
  if (!options.is_map() && !options.is_null())
    bad(str_cat("has 'options' that is ", describe_value(options), ", expected a map or null"));
  if (!children.is_list()) bad(str_cat("has 'children' that is ", describe_value(children), ", expected a list"));
  if (!modules.is_map()) bad(str_cat("has 'modules' that is ", describe_value(modules), ", expected a map"));
  std::vector<std::string> names;
  for (const Value& n : children.as_list()) {
    if (!n.is_string()) bad(str_cat("has a child name that is ", describe_value(n), ", expected a string"));
    if (std::find(names.begin(), names.end(), n.as_string()) != names.end())
      bad(str_cat("lists the child '", n.as_string(), "' twice"));
    if (!modules.contains(n.as_string()))
      bad(str_cat("lists the child '", n.as_string(), "' but 'modules' has no node for it"));
    names.push_back(n.as_string());
  }
  for (const auto& [name, child] : modules.as_map())
    if (std::find(names.begin(), names.end(), name) == names.end())
      bad(str_cat("has a node for '", name, "' in 'modules' that 'children' does not list"));
  return names;
}

ModulePtr build_node(const Value& node, const std::string& path) {
  const std::vector<std::string> names = check_node(node, path);
  const std::string& type = node.at(kType).as_string();
  const ValueMap& modules = node.at(kModules).as_map();

  // The type: registered when the tree was written (options recorded) and in this program.
  const Value& options_v = node.at(kOptions);
  if (options_v.is_null())
    EMBER_THROW("[nn::build] module type '", type, "' ", where(path),
                " was not registered when its tree was written, so its options were not recorded; register it with "
                "EMBER_REGISTER_MODULE (nn/serialize.h) and save again, or rebuild it with the code that made it",
                names.empty() ? "" : " (its children " + join_names(names) + " can be built on their own)");
  EntryPtr entry = registry().find(type);
  if (!entry)
    EMBER_THROW("[nn::build] module type '", type, "' ", where(path),
                " is not registered in this program; register it with EMBER_REGISTER_MODULE (nn/serialize.h) "
                "before building");

  ModuleOptions opts = BuildAccess::make(options_v.as_map(), modules, names, type, path);
  ModulePtr m;
  try {
    m = entry->read(opts);
  } catch (const std::exception& e) {
    if (BuildAccess::child_failed(opts)) throw;  // names its own path already
    EMBER_THROW("[nn::build] ", type, " ", where(path), ": ", e.what());
  }
  if (!m) EMBER_THROW("[nn::build] ", type, " ", where(path), ": the read function returned no module");
  if (std::type_index(typeid(*m)) != entry->type)
    EMBER_THROW("[nn::build] ", type, " ", where(path), ": the read function returned a ", m->type_name(),
                ", not the registered C++ type");
  for (const auto& [key, v] : options_v.as_map())
    if (!BuildAccess::read(opts).count(key)) {
      std::vector<std::string> known(BuildAccess::read(opts).begin(), BuildAccess::read(opts).end());
      EMBER_THROW("[nn::build] ", type, " ", where(path), ": unknown option '", key, "' (the ", type,
                  " reader uses ", known.empty() ? std::string("no options") : join_names(known), ")");
    }

  // The rebuilt module must be what the node describes: the same children, and the same options
  // when written back. Children the read function made itself are compared with their nodes.
  std::vector<std::string> built_names;
  NamedModules built_children = m->named_children();
  for (const auto& [name, child] : built_children) built_names.push_back(name);
  if (built_names != names)
    EMBER_THROW("[nn::build] ", type, " ", where(path), ": the rebuilt module has the children ",
                join_names(built_names), " but the tree lists ", join_names(names));
  for (const auto& [name, child] : built_children) {
    auto from_tree = BuildAccess::built(opts).find(name);
    if (from_tree != BuildAccess::built(opts).end() && from_tree->second == child) continue;
    Value made = describe_node(*child, join_path(path, name));
    if (made != modules.at(name))
      EMBER_THROW("[nn::build] ", type, " ", where(path), " made its child '", name,
                  "' differently from the tree: the tree has ", modules.at(name).repr(), ", the rebuilt child is ",
                  made.repr());
  }
  Value written(entry->write(*m));
  if (written != options_v)
    EMBER_THROW("[nn::build] ", type, " ", where(path), ": the rebuilt module writes the options ", written.repr(),
                ", not the tree's ", options_v.repr(), " (its read and write functions disagree)");
  return m;
}

}  // namespace

ModulePtr build(const Value& tree, const std::string& at) {
  registry().check_startup();
  return build_node(tree, at);
}

const Value& subtree(const Value& tree, const std::string& path) {
  const Value* node = &tree;
  std::string walked;
  size_t pos = 0;
  while (!path.empty() && pos <= path.size()) {
    size_t dot = std::min(path.find('.', pos), path.size());
    std::string name = path.substr(pos, dot - pos);
    pos = dot + 1;
    EMBER_CHECK(!name.empty(), "[nn::subtree] '", path, "' is not a dotted module path (it has an empty name)");
    EMBER_CHECK(node->is_map() && node->contains(kModules) && node->at(kModules).is_map(),
                "[nn::subtree] the module tree node ", where(walked), " is malformed (no 'modules' map)");
    const ValueMap& modules = node->at(kModules).as_map();
    auto it = modules.find(name);
    if (it == modules.end()) {
      std::vector<std::string> names;
      for (const auto& [n, v] : modules) names.push_back(n);
      std::string type = node->contains(kType) && node->at(kType).is_string() ? node->at(kType).as_string() : "?";
      EMBER_THROW("[nn::subtree] ", type, " ", where(walked), " has no child '", name, "' (its children: ",
                  join_names(names), ")");
    }
    node = &it->second;
    walked = join_path(walked, name);
  }
  return *node;
}

// --- the built-in types ---------------------------------------------------------------------------------

namespace {

Value size2(const Size2& s) { return s.scalar ? Value(s.h) : int_list({s.h, s.w}); }

const char* reduction_name(Reduction r) {
  switch (r) {
    case Reduction::None: return "none";
    case Reduction::Mean: return "mean";
    case Reduction::Sum: return "sum";
  }
  return "mean";
}

Reduction reduction_option(const ModuleOptions& o) {
  std::string r = o.get<std::string>("reduction");
  if (r == "none") return Reduction::None;
  if (r == "mean") return Reduction::Mean;
  if (r == "sum") return Reduction::Sum;
  o.fail("option 'reduction' is '" + r + "', expected 'none', 'mean' or 'sum'");
}

// A loss's class-weight option: the buffer's shape (its values are in the state dict), or null.
Value weight_shape(const Tensor& t) { return t.defined() ? int_list(t.shape().vec()) : Value(); }
Tensor weight_placeholder(const ModuleOptions& o, const std::string& key) {
  auto shape = o.get<std::optional<std::vector<int64_t>>>(key);
  return shape ? zeros(Shape(*shape)) : Tensor();
}

template <typename M>
void add(Registry& r, const std::string& name, std::function<ValueMap(const M&)> write,
         std::function<std::shared_ptr<M>(const ModuleOptions&)> read) {
  r.add(
      std::type_index(typeid(M)), name,
      [write = std::move(write)](const Module& m) { return write(static_cast<const M&>(m)); },
      [read = std::move(read)](const ModuleOptions& o) -> ModulePtr { return read(o); });
}

// A layer without options.
template <typename M>
void add_plain(Registry& r, const std::string& name) {
  add<M>(r, name, [](const M&) { return ValueMap{}; }, [](const ModuleOptions&) { return std::make_shared<M>(); });
}

template <typename M>
void add_batch_norm(Registry& r, const std::string& name) {
  add<M>(
      r, name,
      [](const M& m) {
        return ValueMap{{"num_features", m.num_features},
                        {"eps", m.eps},
                        {"momentum", m.momentum ? Value(*m.momentum) : Value()},
                        {"affine", m.affine},
                        {"track_running_stats", m.track_running_stats}};
      },
      [](const ModuleOptions& o) {
        return std::make_shared<M>(o.get<int64_t>("num_features"), o.get<double>("eps"),
                                   o.get<std::optional<double>>("momentum"), o.get<bool>("affine"),
                                   o.get<bool>("track_running_stats"));
      });
}

void add_builtins(Registry& r) {
  // --- layers.h
  add_plain<Identity>(r, "Identity");
  add<Linear>(
      r, "Linear",
      [](const Linear& m) {
        return ValueMap{{"in_features", m.in_features}, {"out_features", m.out_features}, {"bias", m.bias.defined()}};
      },
      [](const ModuleOptions& o) {
        return std::make_shared<Linear>(o.get<int64_t>("in_features"), o.get<int64_t>("out_features"),
                                        o.get<bool>("bias"));
      });
  add<Conv1d>(
      r, "Conv1d",
      [](const Conv1d& m) {
        return ValueMap{{"in_channels", m.in_channels}, {"out_channels", m.out_channels},
                        {"kernel_size", m.kernel_size}, {"stride", m.stride}, {"padding", m.padding},
                        {"dilation", m.dilation}, {"groups", m.groups}, {"bias", m.bias.defined()}};
      },
      [](const ModuleOptions& o) {
        return std::make_shared<Conv1d>(o.get<int64_t>("in_channels"), o.get<int64_t>("out_channels"),
                                        o.get<int64_t>("kernel_size"), o.get<int64_t>("stride"),
                                        o.get<int64_t>("padding"), o.get<int64_t>("dilation"),
                                        o.get<int64_t>("groups"), o.get<bool>("bias"));
      });
  add<Conv2d>(
      r, "Conv2d",
      [](const Conv2d& m) {
        return ValueMap{{"in_channels", m.in_channels}, {"out_channels", m.out_channels},
                        {"kernel_size", size2(m.kernel_size)}, {"stride", size2(m.stride)},
                        {"padding", size2(m.padding)}, {"dilation", size2(m.dilation)},
                        {"groups", m.groups}, {"bias", m.bias.defined()}};
      },
      [](const ModuleOptions& o) {
        return std::make_shared<Conv2d>(o.get<int64_t>("in_channels"), o.get<int64_t>("out_channels"),
                                        o.get<Size2>("kernel_size"), o.get<Size2>("stride"), o.get<Size2>("padding"),
                                        o.get<Size2>("dilation"), o.get<int64_t>("groups"), o.get<bool>("bias"));
      });
  add<ConvTranspose2d>(
      r, "ConvTranspose2d",
      [](const ConvTranspose2d& m) {
        return ValueMap{{"in_channels", m.in_channels}, {"out_channels", m.out_channels},
                        {"kernel_size", size2(m.kernel_size)}, {"stride", size2(m.stride)},
                        {"padding", size2(m.padding)}, {"output_padding", size2(m.output_padding)},
                        {"groups", m.groups}, {"bias", m.bias.defined()}, {"dilation", size2(m.dilation)}};
      },
      [](const ModuleOptions& o) {
        return std::make_shared<ConvTranspose2d>(
            o.get<int64_t>("in_channels"), o.get<int64_t>("out_channels"), o.get<Size2>("kernel_size"),
            o.get<Size2>("stride"), o.get<Size2>("padding"), o.get<Size2>("output_padding"), o.get<int64_t>("groups"),
            o.get<bool>("bias"), o.get<Size2>("dilation"));
      });
  // Pooling stores the stride it resolved (kernel_size when none was given), as torch's modules do.
  add<MaxPool2d>(
      r, "MaxPool2d",
      [](const MaxPool2d& m) {
        return ValueMap{{"kernel_size", size2(m.kernel_size)}, {"stride", size2(m.stride)},
                        {"padding", size2(m.padding)}, {"dilation", size2(m.dilation)}, {"ceil_mode", m.ceil_mode}};
      },
      [](const ModuleOptions& o) {
        return std::make_shared<MaxPool2d>(o.get<Size2>("kernel_size"), o.get<Size2>("stride"),
                                           o.get<Size2>("padding"), o.get<Size2>("dilation"), o.get<bool>("ceil_mode"));
      });
  add<AvgPool2d>(
      r, "AvgPool2d",
      [](const AvgPool2d& m) {
        return ValueMap{{"kernel_size", size2(m.kernel_size)}, {"stride", size2(m.stride)},
                        {"padding", size2(m.padding)}, {"ceil_mode", m.ceil_mode},
                        {"count_include_pad", m.count_include_pad}};
      },
      [](const ModuleOptions& o) {
        return std::make_shared<AvgPool2d>(o.get<Size2>("kernel_size"), o.get<Size2>("stride"),
                                           o.get<Size2>("padding"), o.get<bool>("ceil_mode"),
                                           o.get<bool>("count_include_pad"));
      });
  add<Dropout>(
      r, "Dropout", [](const Dropout& m) { return ValueMap{{"p", m.p}}; },
      [](const ModuleOptions& o) { return std::make_shared<Dropout>(o.get<double>("p")); });
  add<Embedding>(
      r, "Embedding",
      [](const Embedding& m) {
        return ValueMap{{"num_embeddings", m.num_embeddings}, {"embedding_dim", m.embedding_dim},
                        {"padding_idx", m.padding_idx ? Value(*m.padding_idx) : Value()}};
      },
      [](const ModuleOptions& o) {
        return std::make_shared<Embedding>(o.get<int64_t>("num_embeddings"), o.get<int64_t>("embedding_dim"),
                                           o.get<std::optional<int64_t>>("padding_idx"));
      });
  add<Flatten>(
      r, "Flatten", [](const Flatten& m) { return ValueMap{{"start_dim", m.start_dim}, {"end_dim", m.end_dim}}; },
      [](const ModuleOptions& o) {
        return std::make_shared<Flatten>(o.get<int64_t>("start_dim"), o.get<int64_t>("end_dim"));
      });
  add<Unflatten>(
      r, "Unflatten",
      [](const Unflatten& m) { return ValueMap{{"dim", m.dim}, {"unflattened_size", int_list(m.unflattened_size)}}; },
      [](const ModuleOptions& o) {
        return std::make_shared<Unflatten>(o.get<int64_t>("dim"), o.get<std::vector<int64_t>>("unflattened_size"));
      });
  add_plain<ReLU>(r, "ReLU");
  add<LeakyReLU>(
      r, "LeakyReLU", [](const LeakyReLU& m) { return ValueMap{{"negative_slope", m.negative_slope}}; },
      [](const ModuleOptions& o) { return std::make_shared<LeakyReLU>(o.get<double>("negative_slope")); });
  add_plain<Sigmoid>(r, "Sigmoid");
  add_plain<Tanh>(r, "Tanh");
  add<GELU>(
      r, "GELU", [](const GELU& m) { return ValueMap{{"approximate", m.approximate}}; },
      [](const ModuleOptions& o) { return std::make_shared<GELU>(o.get<std::string>("approximate")); });
  add<Softmax>(
      r, "Softmax", [](const Softmax& m) { return ValueMap{{"dim", m.dim}}; },
      [](const ModuleOptions& o) { return std::make_shared<Softmax>(o.get<int64_t>("dim")); });

  // --- normalization.h
  add_batch_norm<BatchNorm1d>(r, "BatchNorm1d");
  add_batch_norm<BatchNorm2d>(r, "BatchNorm2d");
  add<LayerNorm>(
      r, "LayerNorm",
      [](const LayerNorm& m) {
        return ValueMap{{"normalized_shape", int_list(m.normalized_shape)}, {"eps", m.eps},
                        {"elementwise_affine", m.elementwise_affine}};
      },
      [](const ModuleOptions& o) {
        return std::make_shared<LayerNorm>(o.get<std::vector<int64_t>>("normalized_shape"), o.get<double>("eps"),
                                           o.get<bool>("elementwise_affine"));
      });

  // --- container.h: no options; the children come from the tree.
  add<Sequential>(
      r, "Sequential", [](const Sequential&) { return ValueMap{}; },
      [](const ModuleOptions& o) { return std::make_shared<Sequential>(o.children()); });
  add<ModuleList>(
      r, "ModuleList", [](const ModuleList&) { return ValueMap{}; },
      [](const ModuleOptions& o) {
        std::vector<ModulePtr> modules;
        for (auto& [name, m] : o.children()) modules.push_back(m);
        return std::make_shared<ModuleList>(modules);
      });

  add<ModuleDict>(
      r, "ModuleDict", [](const ModuleDict&) { return ValueMap{}; },
      [](const ModuleOptions& o) { return std::make_shared<ModuleDict>(o.children()); });

  // --- loss.h: a class-weight option holds the buffer's shape (its values are in the state dict).
  add<MSELoss>(
      r, "MSELoss", [](const MSELoss& m) { return ValueMap{{"reduction", reduction_name(m.reduction)}}; },
      [](const ModuleOptions& o) { return std::make_shared<MSELoss>(reduction_option(o)); });
  add<L1Loss>(
      r, "L1Loss", [](const L1Loss& m) { return ValueMap{{"reduction", reduction_name(m.reduction)}}; },
      [](const ModuleOptions& o) { return std::make_shared<L1Loss>(reduction_option(o)); });
  add<SmoothL1Loss>(
      r, "SmoothL1Loss",
      [](const SmoothL1Loss& m) { return ValueMap{{"reduction", reduction_name(m.reduction)}, {"beta", m.beta}}; },
      [](const ModuleOptions& o) {
        return std::make_shared<SmoothL1Loss>(reduction_option(o), o.get<double>("beta"));
      });
  add<BCELoss>(
      r, "BCELoss",
      [](const BCELoss& m) {
        return ValueMap{{"weight", weight_shape(m.weight)}, {"reduction", reduction_name(m.reduction)}};
      },
      [](const ModuleOptions& o) {
        return std::make_shared<BCELoss>(weight_placeholder(o, "weight"), reduction_option(o));
      });
  add<BCEWithLogitsLoss>(
      r, "BCEWithLogitsLoss",
      [](const BCEWithLogitsLoss& m) {
        return ValueMap{{"weight", weight_shape(m.weight)}, {"reduction", reduction_name(m.reduction)},
                        {"pos_weight", weight_shape(m.pos_weight)}};
      },
      [](const ModuleOptions& o) {
        return std::make_shared<BCEWithLogitsLoss>(weight_placeholder(o, "weight"), reduction_option(o),
                                                   weight_placeholder(o, "pos_weight"));
      });
  add<CrossEntropyLoss>(
      r, "CrossEntropyLoss",
      [](const CrossEntropyLoss& m) {
        return ValueMap{{"weight", weight_shape(m.weight)}, {"ignore_index", m.ignore_index},
                        {"reduction", reduction_name(m.reduction)}, {"label_smoothing", m.label_smoothing}};
      },
      [](const ModuleOptions& o) {
        return std::make_shared<CrossEntropyLoss>(weight_placeholder(o, "weight"), o.get<int64_t>("ignore_index"),
                                                  reduction_option(o), o.get<double>("label_smoothing"));
      });
  add<NLLLoss>(
      r, "NLLLoss",
      [](const NLLLoss& m) {
        return ValueMap{{"weight", weight_shape(m.weight)}, {"ignore_index", m.ignore_index},
                        {"reduction", reduction_name(m.reduction)}};
      },
      [](const ModuleOptions& o) {
        return std::make_shared<NLLLoss>(weight_placeholder(o, "weight"), o.get<int64_t>("ignore_index"),
                                         reduction_option(o));
      });
}

}  // namespace

}  // namespace ember::nn
