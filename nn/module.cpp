// nn::Module: registration, traversal with dotted names, state dicts, modes, device/dtype moves
// and PyTorch-style printing.
#include "ember/nn/module.h"

#include <cxxabi.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <ostream>
#include <set>
#include <sstream>
#include <typeinfo>

#include "ember/runtime/autograd.h"
#include "ember/runtime/error.h"

namespace ember::nn {

namespace {

std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// Points every handle of `dst` at new data (same autograd identity): how to() keeps parameter
// references held elsewhere (optimizers, layer members) valid.
void replace_data(const Tensor& dst, const Tensor& src) {
  TensorImpl& d = dst.impl();
  const TensorImpl& s = src.impl();
  d.storage = s.storage;
  d.shape = s.shape;
  d.strides = s.strides;
  d.offset = s.offset;
  d.dtype = s.dtype;
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> lines;
  std::string line;
  std::istringstream is(s);
  while (std::getline(is, line)) lines.push_back(line);
  if (!s.empty() && s.back() == '\n') lines.emplace_back();
  return lines;
}

// torch.nn.modules.module._addindent: indents every line but the first.
std::string add_indent(const std::string& s, int spaces) {
  std::vector<std::string> lines = split_lines(s);
  if (lines.size() <= 1) return s;
  std::string out = lines[0];
  for (size_t i = 1; i < lines.size(); ++i) out += "\n" + std::string(spaces, ' ') + lines[i];
  return out;
}

std::string quoted_list(const std::vector<std::string>& keys) {
  std::string out;
  for (size_t i = 0; i < keys.size(); ++i) out += (i ? ", \"" : "\"") + keys[i] + "\"";
  return out;
}

}  // namespace

Module::Module(std::string type_name) : type_name_(std::move(type_name)) {}

Tensor Module::forward(const Tensor&) {
  EMBER_THROW("[", type_name(), "] this module has no single-input forward(); call its own methods");
}

void Module::check_new_name(const std::string& name, const char* what) const {
  EMBER_CHECK(!name.empty(), "[Module] ", what, " name must not be empty (in ", type_name(), ")");
  EMBER_CHECK(name.find('.') == std::string::npos, "[Module] ", what, " name '", name,
              "' must not contain '.' (in ", type_name(), ")");
  auto taken = [&](const std::vector<Slot>& slots) {
    for (const Slot& s : slots)
      if (s.name == name) return true;
    return false;
  };
  bool child = false;
  for (const auto& c : children_) child = child || c.first == name;
  EMBER_CHECK(!taken(params_) && !taken(buffers_) && !child, "[Module] ", type_name(),
              " already has a parameter, buffer or submodule named '", name, "'");
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_new_name(name, "parameter");
  EMBER_CHECK(t.defined(), "[Module] parameter '", name, "' of ", type_name(), " is an undefined tensor");
  EMBER_CHECK(!requires_grad || is_floating(t.dtype()), "[Module] parameter '", name, "' of ", type_name(),
              " has dtype ", dtype_name(t.dtype()), "; only floating-point parameters can require grad");
  if (!t.is_leaf()) t = t.detach();
  t.requires_grad_(requires_grad);
  params_.push_back({name, t, true});
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t, bool persistent) {
  check_new_name(name, "buffer");
  EMBER_CHECK(t.defined(), "[Module] buffer '", name, "' of ", type_name(), " is an undefined tensor");
  if (!t.is_leaf() || t.requires_grad()) t = t.detach();
  buffers_.push_back({name, t, persistent});
  return t;
}

void Module::add_module(const std::string& name, ModulePtr module) {
  check_new_name(name, "submodule");
  EMBER_CHECK(module != nullptr, "[Module] submodule '", name, "' of ", type_name(), " is null");
  EMBER_CHECK(module.get() != this, "[Module] ", type_name(), " cannot be its own submodule '", name, "'");
  children_.emplace_back(name, std::move(module));
}

// --- traversal ------------------------------------------------------------------------------

void Module::collect_modules(const std::string& prefix, std::vector<std::pair<std::string, const Module*>>& out) const {
  for (const auto& existing : out)
    if (existing.second == this) return;
  out.emplace_back(prefix, this);
  for (const auto& [name, child] : children_) child->collect_modules(join_name(prefix, name), out);
}

NamedTensors Module::named_slots(std::vector<Slot> Module::*slots, bool recurse) const {
  std::vector<std::pair<std::string, const Module*>> mods;
  if (recurse) collect_modules("", mods);
  else mods.emplace_back("", this);
  NamedTensors out;
  std::set<const TensorImpl*> seen;  // a tensor shared by two modules is listed once
  for (const auto& [prefix, m] : mods)
    for (const Slot& s : m->*slots)
      if (seen.insert(s.tensor.impl_ptr().get()).second) out.emplace_back(join_name(prefix, s.name), s.tensor);
  return out;
}

NamedTensors Module::named_parameters(bool recurse) const { return named_slots(&Module::params_, recurse); }

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters(recurse)) out.push_back(t);
  return out;
}

NamedTensors Module::named_buffers(bool recurse) const { return named_slots(&Module::buffers_, recurse); }

std::vector<Tensor> Module::buffers(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_buffers(recurse)) out.push_back(t);
  return out;
}

NamedModules Module::named_children() const {
  NamedModules out;
  std::set<const Module*> seen;
  for (const auto& [name, child] : children_)
    if (seen.insert(child.get()).second) out.emplace_back(name, child);
  return out;
}

std::vector<ModulePtr> Module::children() const {
  std::vector<ModulePtr> out;
  for (auto& [name, m] : named_children()) out.push_back(m);
  return out;
}

NamedModules Module::named_modules() const {
  std::vector<std::pair<std::string, const Module*>> mods;
  collect_modules("", mods);
  NamedModules out;
  for (const auto& [name, m] : mods) {
    auto* mut = const_cast<Module*>(m);
    ModulePtr owned = mut->weak_from_this().lock();
    // Not owned by a shared_ptr (a module on the stack): a non-owning alias.
    out.emplace_back(name, owned ? owned : ModulePtr(ModulePtr(), mut));
  }
  return out;
}

void Module::apply(const std::function<void(Module&)>& fn) {
  for (auto& [name, child] : children_) child->apply(fn);
  fn(*this);
}

// --- state dicts ----------------------------------------------------------------------------

void Module::collect_state(const std::string& prefix, StateDict& out) const {
  for (const Slot& s : params_) out.emplace_back(join_name(prefix, s.name), s.tensor.detach());
  for (const Slot& s : buffers_)
    if (s.persistent) out.emplace_back(join_name(prefix, s.name), s.tensor.detach());
  for (const auto& [name, child] : children_) child->collect_state(join_name(prefix, name), out);
}

StateDict Module::state_dict() const {
  StateDict out;
  collect_state("", out);
  return out;
}

Value Module::state_dict_value() const { return to_value(state_dict()); }

LoadResult Module::load_state_dict(const StateDict& sd, bool strict) {
  StateDict own = state_dict();
  std::map<std::string, size_t> given;
  std::vector<std::string> problems;
  for (size_t i = 0; i < sd.size(); ++i) {
    if (!given.emplace(sd[i].first, i).second) problems.push_back(str_cat("duplicate key \"", sd[i].first, "\""));
  }
  LoadResult result;
  std::set<std::string> own_names;
  std::vector<std::pair<Tensor, Tensor>> copies;  // (destination, source)
  std::vector<std::string> mismatches;
  for (const auto& [name, dst] : own) {
    own_names.insert(name);
    auto it = given.find(name);
    if (it == given.end()) {
      result.missing_keys.push_back(name);
      continue;
    }
    const Tensor& src = sd[it->second].second;
    if (!src.defined()) {
      mismatches.push_back(str_cat("\"", name, "\" is an undefined tensor in the state dict"));
    } else if (src.shape() != dst.shape()) {
      mismatches.push_back(str_cat("shape mismatch for \"", name, "\": state dict has ", src.shape().str(),
                                   ", model has ", dst.shape().str()));
    } else if (src.dtype() != dst.dtype()) {
      mismatches.push_back(str_cat("dtype mismatch for \"", name, "\": state dict has ", dtype_name(src.dtype()),
                                   ", model has ", dtype_name(dst.dtype())));
    } else {
      copies.emplace_back(dst, src);
    }
  }
  for (const auto& [name, t] : sd)
    if (!own_names.count(name)) result.unexpected_keys.push_back(name);

  if (strict && !result.missing_keys.empty())
    problems.push_back(str_cat("missing keys: ", quoted_list(result.missing_keys)));
  if (strict && !result.unexpected_keys.empty())
    problems.push_back(str_cat("unexpected keys: ", quoted_list(result.unexpected_keys)));
  problems.insert(problems.end(), mismatches.begin(), mismatches.end());
  if (!problems.empty()) {
    std::string msg = str_cat("[load_state_dict] ", problems.size(), " problem(s) loading a state dict into ",
                              type_name(), ":");
    for (const std::string& p : problems) msg += "\n  " + p;
    throw Error(msg);
  }
  NoGradGuard no_grad;
  for (auto& [dst, src] : copies) {
    Tensor d = dst;
    d.copy_(src);
  }
  return result;
}

LoadResult Module::load_state_dict(const Value& sd, bool strict) {
  return load_state_dict(state_dict_from_value(sd), strict);
}

Value to_value(const StateDict& sd) {
  ValueMap m;
  for (const auto& [name, t] : sd) m[name] = Value(t);
  return Value(std::move(m));
}

StateDict state_dict_from_value(const Value& v) {
  EMBER_CHECK(v.is_map(), "[load_state_dict] expected a map of name -> tensor, got a ", Value::kind_name(v.kind()));
  StateDict sd;
  for (const auto& [name, entry] : v.as_map()) {
    EMBER_CHECK(entry.is_tensor(), "[load_state_dict] entry \"", name, "\" is a ", Value::kind_name(entry.kind()),
                ", expected a tensor");
    sd.emplace_back(name, entry.as_tensor());
  }
  return sd;
}

// --- modes, placement, gradients --------------------------------------------------------------

Module& Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
  return *this;
}

Module& Module::to(Device device) {
  NoGradGuard no_grad;
  auto move = [&](const Tensor& t) {
    if (t.device() != device) replace_data(t, t.detach().to(device));
    TensorImpl& impl = t.impl();
    if (impl.grad) {
      Tensor g(impl.grad);
      if (g.device() != device) impl.grad = g.to(device).impl_ptr();
    }
  };
  for (const Tensor& t : parameters()) move(t);
  for (const Tensor& t : buffers()) move(t);
  return *this;
}

Module& Module::to(DType dtype) {
  EMBER_CHECK(is_floating(dtype), "[Module] to(dtype) needs a floating-point dtype, got ", dtype_name(dtype));
  NoGradGuard no_grad;
  auto convert = [&](const Tensor& t) {
    if (!is_floating(t.dtype())) return;
    if (t.dtype() != dtype) replace_data(t, t.detach().to(dtype));
    TensorImpl& impl = t.impl();
    if (impl.grad) {
      Tensor g(impl.grad);
      if (g.dtype() != dtype) impl.grad = g.to(dtype).impl_ptr();
    }
  };
  for (const Tensor& t : parameters()) convert(t);
  for (const Tensor& t : buffers()) convert(t);
  return *this;
}

void Module::zero_grad(bool set_to_none) {
  for (const Tensor& p : parameters()) {
    TensorImpl& impl = p.impl();
    if (!impl.grad) continue;
    if (set_to_none) {
      impl.grad.reset();
    } else {
      Tensor g(impl.grad);
      if (g.grad_fn()) impl.grad = g.detach().impl_ptr();
      Tensor(impl.grad).zero_();
    }
  }
}

int64_t Module::num_parameters(bool trainable_only) const {
  int64_t n = 0;
  for (const Tensor& p : parameters())
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

// --- printing ----------------------------------------------------------------------------------

std::string Module::type_name() const {
  if (!type_name_.empty()) return type_name_;
  const char* mangled = typeid(*this).name();
  int status = 0;
  char* demangled = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string name = status == 0 && demangled ? demangled : mangled;
  std::free(demangled);
  // Drop namespaces ("ember::nn::Linear" -> "Linear") unless inside template arguments.
  size_t angle = name.find('<');
  size_t cut = name.rfind("::", angle == std::string::npos ? std::string::npos : angle);
  return cut == std::string::npos ? name : name.substr(cut + 2);
}

std::string Module::repr() const {
  std::vector<std::string> extra_lines;
  std::string extra = extra_repr();
  if (!extra.empty()) extra_lines = split_lines(extra);
  std::vector<std::string> child_lines;
  for (const auto& [name, child] : children_)
    child_lines.push_back("(" + name + "): " + add_indent(child->repr(), 2));
  std::string out = type_name() + "(";
  if (extra_lines.size() == 1 && child_lines.empty()) {
    out += extra_lines[0];
  } else if (!extra_lines.empty() || !child_lines.empty()) {
    std::string body;
    for (const auto& l : extra_lines) body += "\n  " + l;
    for (const auto& l : child_lines) body += "\n  " + l;
    out += body + "\n";
  }
  return out + ")";
}

std::ostream& operator<<(std::ostream& os, const Module& m) { return os << m.repr(); }

std::string py_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
  char buf[64];
  for (int prec = 1; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*e", prec - 1, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  // buf is "[-]d[.ddd]e[+-]XX": split into sign, significant digits and decimal exponent.
  std::string s(buf);
  std::string sign;
  if (s[0] == '-') {
    sign = "-";
    s = s.substr(1);
  }
  size_t e = s.find('e');
  int exp10 = std::atoi(s.c_str() + e + 1);
  std::string digits;
  for (size_t i = 0; i < e; ++i)
    if (s[i] != '.') digits += s[i];
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  // Python's repr switches to exponent form below 1e-4 and from 1e16 on.
  if (exp10 < -4 || exp10 >= 16) {
    std::string mant = digits.substr(0, 1);
    if (digits.size() > 1) mant += "." + digits.substr(1);
    char ebuf[16];
    std::snprintf(ebuf, sizeof ebuf, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
    return sign + mant + ebuf;
  }
  if (exp10 < 0) return sign + "0." + std::string(static_cast<size_t>(-exp10 - 1), '0') + digits;
  size_t int_len = static_cast<size_t>(exp10) + 1;
  if (digits.size() <= int_len) return sign + digits + std::string(int_len - digits.size(), '0') + ".0";
  return sign + digits.substr(0, int_len) + "." + digits.substr(int_len);
}

std::string py_tuple(const std::vector<int64_t>& v) {
  std::string out = "(";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
  return out + (v.size() == 1 ? ",)" : ")");
}

}  // namespace ember::nn
