// Reading .safetensors files, shared by import-safetensors and import-torch. The header is
// validated as strictly as the safetensors library does it (dtypes, shapes, offsets that tile the
// data exactly, bool bytes); the tensors are views of a read-only mapping of the file.
#pragma once
#include <string>

#include "ember/runtime/value.h"

namespace ember::ckpt_tool {

struct SafetensorsFile {
  ValueMap tensors;   // name -> CPU tensor, backed by the mapping (which lives as long as they do)
  ValueMap metadata;  // the __metadata__ block: str -> str
};

// The tensors and metadata of a .safetensors file. Throws ember::Error naming the file and the
// entry for an unreadable or invalid file.
SafetensorsFile read_safetensors(const std::string& path);

}  // namespace ember::ckpt_tool
