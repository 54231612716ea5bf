// import-torch: a PyTorch model exported by tools/torch_export.py (its module tree as JSON, its
// state_dict as .safetensors) becomes a self-describing checkpoint, the file nn::save writes. The
// model is built and the weights loaded strictly before anything is written, so every file this
// command writes loads with nn::load_module.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ember/checkpoint/checkpoint.h"
#include "ember/nn/init.h"
#include "ember/nn/serialize.h"
#include "ember/train/module_io.h"
#include "tools/ckpt/commands.h"
#include "tools/ckpt/safetensors.h"

namespace ember::ckpt_tool {

namespace ck = ember::checkpoint;
using json = nlohmann::json;

namespace {

// As deep as a checkpoint value may nest (docs/checkpoint-format.md, R25).
constexpr int kMaxDepth = 64;

std::string join_path(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) EMBER_THROW("[ember-ckpt] cannot open '", path, "': ", std::strerror(errno));
  std::ostringstream s;
  s << f.rdbuf();
  if (f.bad()) EMBER_THROW("[ember-ckpt] reading '", path, "' failed");
  return s.str();
}

// A JSON value as a Value: integers -> Int, other numbers -> Float (so 1.0 stays a float, as
// nn::describe writes it), objects -> maps. `key` is the dotted path of j, for error messages.
Value to_value(const json& j, const std::string& file, const std::string& key, int depth) {
  auto bad = [&](const auto&... why) -> Error {
    return Error(str_cat("[ember-ckpt] '", file, "': ", key.empty() ? std::string("the document") : "'" + key + "'",
                         " ", why...));
  };
  if (depth > kMaxDepth) throw bad("nests deeper than ", kMaxDepth, " levels");
  switch (j.type()) {
    case json::value_t::null: return Value();
    case json::value_t::boolean: return Value(j.get<bool>());
    case json::value_t::number_integer: return Value(j.get<int64_t>());
    case json::value_t::number_unsigned:
      if (j.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        throw bad("is ", j.dump(), ", which does not fit a 64-bit signed int");
      return Value(j.get<int64_t>());
    case json::value_t::number_float: return Value(j.get<double>());
    case json::value_t::string: return Value(j.get<std::string>());
    case json::value_t::array: {
      ValueList out;
      for (size_t i = 0; i < j.size(); ++i)
        out.push_back(to_value(j[i], file, join_path(key, std::to_string(i)), depth + 1));
      return Value(std::move(out));
    }
    case json::value_t::object: {
      ValueMap out;
      for (const auto& [k, v] : j.items()) out.emplace(k, to_value(v, file, join_path(key, k), depth + 1));
      return Value(std::move(out));
    }
    default: throw bad("has a value of JSON type ", j.type_name(), ", which a module tree cannot hold");
  }
}

// Every module type in the tree that this program has not registered, with its dotted path, so
// that an unsupported layer is reported by name before nn::build looks at its options.
void check_types(const Value& node, const std::string& path, const std::string& file) {
  if (!node.is_map() || !node.contains("type") || !node.at("type").is_string()) return;  // nn::build says why
  const std::string& type = node.at("type").as_string();
  if (!nn::is_registered_module_type(type)) {
    std::string known;
    for (const std::string& name : nn::registered_module_types()) known += (known.empty() ? "" : ", ") + name;
    EMBER_THROW("[ember-ckpt] '", file, "': the module ", path.empty() ? std::string("at the root") : "'" + path + "'",
                " has type '", type, "', which Ember does not have (its module types: ", known, ")");
  }
  if (!node.contains("modules") || !node.at("modules").is_map()) return;
  for (const auto& [name, child] : node.at("modules").as_map()) check_types(child, join_path(path, name), file);
}

}  // namespace

Value module_tree_from_json(const std::string& arch_path) {
  const std::string text = read_text(arch_path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    EMBER_THROW("[ember-ckpt] '", arch_path, "' is not valid JSON: ", e.what());
  }
  Value section = to_value(j, arch_path, "", 1);
  auto bad = [&](const auto&... why) {
    EMBER_THROW("[ember-ckpt] '", arch_path, "' is not a module tree ({\"version\": ", nn::kModuleTreeVersion,
                ", \"root\": node}, docs/checkpoint-format.md): ", why...);
  };
  if (!section.is_map()) bad("the document is a ", Value::kind_name(section.kind()), ", not an object");
  for (const auto& [key, v] : section.as_map())
    if (key != "version" && key != "root") bad("unknown key '", key, "'");
  if (!section.contains("version") || !section.at("version").is_int()) bad("'version' is missing or not an int");
  if (section.at("version").as_int() != nn::kModuleTreeVersion)
    bad("'version' is ", section.at("version").as_int(), "; this Ember reads version ", nn::kModuleTreeVersion);
  if (!section.contains("root")) bad("'root' is missing");
  check_types(section.at("root"), "", arch_path);
  return section;
}

TorchImport import_torch(const std::string& arch_path, const std::string& weights_path, const std::string& out_path,
                         const ImportOptions& options) {
  const Value section = module_tree_from_json(arch_path);
  nn::ModulePtr module;
  try {
    nn::init::SkipRandomInitGuard skip_init;  // every parameter is loaded below (strictly)
    module = nn::build(section.at("root"));
  } catch (const Error& e) {
    throw Error(str_cat("[ember-ckpt] '", arch_path, "': ", e.what()));
  }

  SafetensorsFile weights = read_safetensors(weights_path);
  nn::StateDict sd = nn::state_dict_from_value(Value(weights.tensors));
  // As nn::load_module does: a model exported after .double() or .half() is built in that dtype.
  std::set<DType> floating;
  for (const auto& [name, t] : sd)
    if (is_floating(t.dtype())) floating.insert(t.dtype());
  if (floating.size() == 1) module->to(*floating.begin());
  try {
    module->load_state_dict(sd, /*strict=*/true);
  } catch (const Error& e) {
    throw Error(str_cat("[ember-ckpt] '", weights_path, "' does not hold the weights of the model in '", arch_path,
                        "': ", e.what()));
  }

  // The sections nn::save writes: the weights as exported and the tree (which build() has checked
  // to describe as the rebuilt module does).
  ValueMap root;
  root[ck::kStateDict] = Value(std::move(weights.tensors));
  root[ck::kModuleTree] = nn::module_tree_section(*module);
  ck::SaveOptions opt;
  opt.weights_only = true;
  if (options.compress) opt.compression = ck::Compression::zlib;
  ck::save(out_path, Value(std::move(root)), opt);
  return {section.at("root").at("type").as_string(), module->named_modules().size(), sd.size()};
}

}  // namespace ember::ckpt_tool
