// Limits a checkpoint reader enforces on what a file declares, before it allocates anything.
// Shared by the public API (checkpoint.h) and the byte-level decoders (format.h).
#pragma once
#include <cstdint>

namespace ember::checkpoint {

struct Limits {
  uint64_t max_index_bytes = 256ull << 20;  // also never more than the file holds
  uint32_t max_name_bytes = 1024;           // section names, tensor names, map keys
  uint32_t max_depth = 64;                  // metadata nesting; a section's value is depth 1 (cap 512)
  uint64_t max_string_bytes = 16ull << 20;  // one string or bytes value
  uint32_t max_tensors = 1u << 22;
  uint32_t max_sections = 1u << 16;
};

}  // namespace ember::checkpoint
