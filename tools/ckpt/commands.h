// The commands of the `ember-ckpt` tool as functions (so tests can call them): inspect, verify,
// diff, and conversion to and from the safetensors format. Each returns the process exit code:
// 0 success (or "no differences"), 1 failure (or "differences found"), and throws ember::Error on
// unreadable input, which main() turns into exit code 2 with the message.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>

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

}  // namespace ember::ckpt_tool
