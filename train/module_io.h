// Self-describing model files: nn::save() writes a module's state_dict together with its module
// tree (nn/serialize.h) as one checkpoint, and nn::load_module() rebuilds a runnable module from
// such a file alone, or any registered submodule of it by its dotted name. These live in train/
// because they join nn/ (modules) and checkpoint/ (files), which may not include each other.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "ember/checkpoint/checkpoint.h"
#include "ember/nn/module.h"
#include "ember/runtime/api.h"
#include "ember/runtime/error.h"
#include "ember/runtime/value.h"

namespace ember::nn {

// The layout version of the module_tree section this Ember writes and the newest it reads.
inline constexpr int64_t kModuleTreeVersion = 1;

// The module_tree section of a checkpoint: {"version": 1, "root": describe(module)}.
EMBER_API Value module_tree_section(const Module& module);

// Writes module's state_dict and module tree to path, atomically, as a weights-only checkpoint
// (options are passed on to checkpoint::save; weights_only is always set).
EMBER_API void save(const Module& module, const std::string& path, const checkpoint::SaveOptions& options = {});

// Rebuilds a module from a checkpoint written by nn::save or the Trainer: builds the module at the
// dotted path `submodule` of the stored tree ("" for the root; "net" or "net.0" for a child),
// loads the state_dict entries under that prefix (strictly, prefix removed; converted to the
// floating dtype of the stored weights when they all share one), and returns it on the CPU in eval
// mode. Throws ember::Error naming the file for a file without a module tree (rebuild such a model
// with the code that made it and load_state_dict), and for every error of nn::build().
EMBER_API ModulePtr load_module(const std::string& path, const std::string& submodule = "");

// load_module() cast to M; throws when the stored module is of another type.
template <typename M>
std::shared_ptr<M> load_module_as(const std::string& path, const std::string& submodule = "") {
  ModulePtr m = load_module(path, submodule);
  auto typed = std::dynamic_pointer_cast<M>(m);
  EMBER_CHECK(typed != nullptr, "[nn::load_module] '", path, "': the module ",
              submodule.empty() ? std::string("at the root") : "'" + submodule + "'", " is a ", m->type_name(),
              ", not the requested type");
  return typed;
}

}  // namespace ember::nn
