// The commands of the `ember-ckpt` tool as functions (so tests can call them): inspect, verify,
// diff, conversion to and from the safetensors format, and the import of a PyTorch model. The
// checks return the process exit code: 0 success (or "no differences"), 1 failure (or "differences
// found"); every command throws ember::Error, naming the file, on unreadable or invalid input.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>

#include "ember/runtime/value.h"

namespace ember::ckpt_tool {

// Prints version, sizes, counters, hyperparameters, the section summary and the tensor table;
// as JSON (Lightning's key names) when json is true.
int inspect(const std::string& path, bool json, std::ostream& out);
// Checks every checksum, compressed stream and padding byte: 0 when sound, 1 with the reason.
int verify(const std::string& path, std::ostream& out);
// Metadata differences and the max |a - b| of each tensor; 0 when none exceeds atol, 1 otherwise.
int diff(const std::string& a, const std::string& b, double atol, std::ostream& out);

struct ImportOptions {
  bool compress = false;  // zlib per tensor
};
// Writes the state_dict tensors of an Ember checkpoint as a .safetensors file (atomically).
void export_safetensors(const std::string& checkpoint, const std::string& out_path);
// Writes the tensors of a .safetensors file as the state_dict of a new Ember checkpoint; its
// __metadata__ goes to extras.safetensors_metadata. Returns the number of tensors.
size_t import_safetensors(const std::string& in_path, const std::string& out_path, const ImportOptions& options = {});

// The module_tree section held by a JSON file ({"version": 1, "root": node}, as
// tools/torch_export.py writes it): JSON integers become Int, other numbers Float, objects maps.
// Throws naming the file for unreadable or malformed JSON, a wrong layout or version, and a module
// type this program does not have (naming the module's dotted path).
Value module_tree_from_json(const std::string& arch_path);

struct TorchImport {
  std::string model;  // the root module's type ("Sequential")
  size_t modules;     // the root and all its descendants
  size_t tensors;     // state_dict entries
};
// A PyTorch model exported by tools/torch_export.py (module tree as JSON, state_dict as
// .safetensors) as a self-describing weights-only checkpoint, the sections nn::save writes
// (state_dict, module_tree), written atomically. Before writing it builds the model (nn::build)
// and loads the weights strictly: a missing, unexpected or mismatched entry is an error naming
// the weights file and the key.
TorchImport import_torch(const std::string& arch_path, const std::string& weights_path, const std::string& out_path,
                         const ImportOptions& options = {});

}  // namespace ember::ckpt_tool
