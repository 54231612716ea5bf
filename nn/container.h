// Containers: Sequential (children named "0", "1", ..., forward chains them) and ModuleList
// (an indexable list of submodules with no forward of its own).
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ember/nn/module.h"

namespace ember::nn {

class EMBER_API Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  // Sequential(make_shared<Linear>(4, 8), make_shared<ReLU>(), ...).
  template <typename... Ms>
    requires(sizeof...(Ms) > 0)
  explicit Sequential(std::shared_ptr<Ms>... modules) : Module("Sequential") {
    (push_back(std::move(modules)), ...);
  }
  explicit Sequential(const std::vector<ModulePtr>& modules);
  // Children with chosen names (as an OrderedDict in PyTorch).
  explicit Sequential(const std::vector<std::pair<std::string, ModulePtr>>& named);

  // Appends a child named by its position.
  void push_back(ModulePtr module);
  // Number of children.
  size_t size() const { return modules_.size(); }
  // The i-th child; throws when i is out of range.
  const ModulePtr& operator[](size_t i) const;
  // The i-th child cast to M; throws when it is not an M.
  template <typename M>
  std::shared_ptr<M> at(size_t i) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[i]);
    EMBER_CHECK(m != nullptr, "[Sequential] child ", i, " is a ", (*this)[i]->type_name(), ", not the requested type");
    return m;
  }
  // Feeds x through every child in order.
  Tensor forward(const Tensor& x) override;

 private:
  std::vector<ModulePtr> modules_;
};

class EMBER_API ModuleList : public Module {
 public:
  ModuleList() : Module("ModuleList") {}
  explicit ModuleList(const std::vector<ModulePtr>& modules);

  // Appends a child named by its position.
  void push_back(ModulePtr module);
  // Number of children.
  size_t size() const { return modules_.size(); }
  // The i-th child; throws when i is out of range.
  const ModulePtr& operator[](size_t i) const;
  // The i-th child cast to M; throws when it is not an M.
  template <typename M>
  std::shared_ptr<M> at(size_t i) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[i]);
    EMBER_CHECK(m != nullptr, "[ModuleList] child ", i, " is a ", (*this)[i]->type_name(), ", not the requested type");
    return m;
  }
  // Iteration over the children in order.
  std::vector<ModulePtr>::const_iterator begin() const { return modules_.begin(); }
  std::vector<ModulePtr>::const_iterator end() const { return modules_.end(); }

 private:
  std::vector<ModulePtr> modules_;
};

// Submodules by name, in insertion order (torch.nn.ModuleDict). Like ModuleList it only holds
// modules: it has no forward of its own.
class EMBER_API ModuleDict : public Module {
 public:
  ModuleDict() : Module("ModuleDict") {}
  explicit ModuleDict(const std::vector<std::pair<std::string, ModulePtr>>& modules);

  // Adds a child under name (a new, non-empty name without '.').
  void insert(const std::string& name, ModulePtr module);
  // Number of children.
  size_t size() const { return named_children().size(); }
  // Whether a child has this name.
  bool contains(const std::string& name) const;
  // The child called name; throws naming the keys when there is none.
  ModulePtr operator[](const std::string& name) const;
  // The child called name cast to M; throws when it is not an M.
  template <typename M>
  std::shared_ptr<M> at(const std::string& name) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[name]);
    EMBER_CHECK(m != nullptr, "[ModuleDict] '", name, "' is a ", (*this)[name]->type_name(), ", not the requested type");
    return m;
  }
  // The names in insertion order.
  std::vector<std::string> keys() const;
};

}  // namespace ember::nn
