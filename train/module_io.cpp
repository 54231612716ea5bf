// nn::save and nn::load_module: a state_dict section plus a module_tree section in one checkpoint.
#include "ember/train/module_io.h"

#include <set>

#include "ember/nn/init.h"
#include "ember/nn/serialize.h"

namespace ember::nn {

namespace {

// The root node of a module_tree section, after checking the section's layout version.
const Value& tree_root(const Value& section, const std::string& path) {
  auto bad = [&](const std::string& why) {
    EMBER_THROW("[nn::load_module] '", path, "': the '", checkpoint::kModuleTree, "' section ", why);
  };
  if (!section.is_map()) bad(str_cat("is a ", Value::kind_name(section.kind()), ", expected a map"));
  for (const auto& [key, v] : section.as_map())
    if (key != "version" && key != "root") bad(str_cat("has an unknown key '", key, "' (expected version, root)"));
  if (!section.contains("version") || !section.at("version").is_int()) bad("has no int 'version'");
  int64_t version = section.at("version").as_int();
  if (version < 1 || version > kModuleTreeVersion)
    bad(str_cat("has layout version ", version, "; this Ember reads versions 1 to ", kModuleTreeVersion,
                version > kModuleTreeVersion ? " (a newer Ember wrote it)" : ""));
  if (!section.contains("root")) bad("has no 'root'");
  return section.at("root");
}

}  // namespace

Value module_tree_section(const Module& module) {
  return Value(ValueMap{{"version", kModuleTreeVersion}, {"root", describe(module)}});
}

void save(const Module& module, const std::string& path, const checkpoint::SaveOptions& options) {
  ValueMap root;
  root[checkpoint::kStateDict] = module.state_dict_value();
  root[checkpoint::kModuleTree] = module_tree_section(module);
  checkpoint::SaveOptions so = options;
  so.weights_only = true;
  checkpoint::save(path, Value(std::move(root)), so);
}

ModulePtr load_module(const std::string& path, const std::string& submodule) {
  checkpoint::Reader reader(path);
  EMBER_CHECK(reader.has_section(checkpoint::kModuleTree), "[nn::load_module] '", path,
              "' was written without a module tree (it has no '", checkpoint::kModuleTree,
              "' section: an older file, or one not written by nn::save or the Trainer), so the model cannot be "
              "rebuilt from the file alone; build it with the code that made it and load the weights with "
              "load_state_dict (LightningModule::load_from_checkpoint for a trainer checkpoint)");
  EMBER_CHECK(reader.has_section(checkpoint::kStateDict), "[nn::load_module] '", path, "' has no '",
              checkpoint::kStateDict, "' section");
  const Value section = reader.section(checkpoint::kModuleTree);
  const Value& root = tree_root(section, path);

  ModulePtr module;
  try {
    // Every parameter is then loaded (strictly), so random initial values would only cost time
    // (a quarter of ember-run's start-up for a 1M-parameter model) and draws from the generator.
    init::SkipRandomInitGuard skip_init;
    module = build(subtree(root, submodule), submodule);
  } catch (const Error& e) {
    throw Error(str_cat("[nn::load_module] '", path, "': ", e.what()));
  }

  // The entries of this module: all of them, or those under "submodule." with the prefix removed.
  StateDict sd;
  const std::string prefix = submodule.empty() ? "" : submodule + ".";
  for (auto& [name, t] : state_dict_from_value(reader.section(checkpoint::kStateDict)))
    if (name.compare(0, prefix.size(), prefix) == 0) sd.emplace_back(name.substr(prefix.size()), t);
  std::set<DType> floating;
  for (const auto& [name, t] : sd)
    if (is_floating(t.dtype())) floating.insert(t.dtype());
  if (floating.size() == 1) module->to(*floating.begin());  // a model saved after to(f64), say
  try {
    module->load_state_dict(sd, /*strict=*/true);
  } catch (const Error& e) {
    throw Error(str_cat("[nn::load_module] '", path, "'",
                        submodule.empty() ? std::string() : " (module '" + submodule + "')", ": ", e.what()));
  }
  module->eval();
  return module;
}

}  // namespace ember::nn
