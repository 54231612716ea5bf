// Sequential, ModuleList and ModuleDict.
#include "ember/nn/container.h"

#include <typeinfo>

#include "ember/nn/layers.h"
#include "ember/runtime/error.h"

namespace ember::nn {

Sequential::Sequential(const std::vector<ModulePtr>& modules) : Module("Sequential") {
  for (const ModulePtr& m : modules) push_back(m);
}

Sequential::Sequential(const std::vector<std::pair<std::string, ModulePtr>>& named) : Module("Sequential") {
  for (const auto& [name, m] : named) {
    add_module(name, m);
    modules_.push_back(m);
  }
}

void Sequential::push_back(ModulePtr module) {
  add_module(std::to_string(modules_.size()), module);
  modules_.push_back(std::move(module));
}

const ModulePtr& Sequential::operator[](size_t i) const {
  EMBER_CHECK(i < modules_.size(), "[Sequential] index ", i, " is out of range for ", modules_.size(), " modules");
  return modules_[i];
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  const size_t n = modules_.size();
  for (size_t i = 0; i < n; ++i) {
    Module& m = *modules_[i];
    // A Linear followed by a ReLU (these exact classes: a subclass may change forward) runs as
    // one op, the ReLU applied as the matrix product is stored: the same values and gradients
    // without a pass over the output of its own.
    if (i + 1 < n && typeid(m) == typeid(Linear) && typeid(*modules_[i + 1]) == typeid(ReLU)) {
      h = static_cast<Linear&>(m).forward_relu(h);
      ++i;
      continue;
    }
    h = m.forward(h);
  }
  return h;
}

ModuleList::ModuleList(const std::vector<ModulePtr>& modules) : Module("ModuleList") {
  for (const ModulePtr& m : modules) push_back(m);
}

void ModuleList::push_back(ModulePtr module) {
  add_module(std::to_string(modules_.size()), module);
  modules_.push_back(std::move(module));
}

const ModulePtr& ModuleList::operator[](size_t i) const {
  EMBER_CHECK(i < modules_.size(), "[ModuleList] index ", i, " is out of range for ", modules_.size(), " modules");
  return modules_[i];
}

ModuleDict::ModuleDict(const std::vector<std::pair<std::string, ModulePtr>>& modules) : Module("ModuleDict") {
  for (const auto& [name, m] : modules) insert(name, m);
}

void ModuleDict::insert(const std::string& name, ModulePtr module) { add_module(name, std::move(module)); }

bool ModuleDict::contains(const std::string& name) const {
  for (const auto& [n, m] : named_children())
    if (n == name) return true;
  return false;
}

ModulePtr ModuleDict::operator[](const std::string& name) const {
  for (const auto& [n, m] : named_children())
    if (n == name) return m;
  std::string keys;
  for (const std::string& k : this->keys()) keys += (keys.empty() ? "'" : ", '") + k + "'";
  EMBER_THROW("[ModuleDict] no module '", name, "' (keys: ", keys.empty() ? "none" : keys, ")");
}

std::vector<std::string> ModuleDict::keys() const {
  std::vector<std::string> out;
  for (const auto& [n, m] : named_children()) out.push_back(n);
  return out;
}

}  // namespace ember::nn
