// An independent, byte-level writer of checkpoint files for the hostile-input tests: it follows
// docs/checkpoint-format.md without using checkpoint/format.cpp, and lets a test override any
// field (counts, offsets, lengths, checksums) to build exactly one fault.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ember::test::raw {

using Bytes = std::vector<uint8_t>;

uint32_t crc(const Bytes& b);
void u16(Bytes& b, uint16_t v);
void u32(Bytes& b, uint32_t v);
void u64(Bytes& b, uint64_t v);
void patch_u32(Bytes& b, size_t at, uint32_t v);
void patch_u64(Bytes& b, size_t at, uint64_t v);

// Metadata values in the format's encoding.
Bytes null_v();
Bytes bool_v(uint8_t b);
Bytes int_v(int64_t v);
Bytes float_v(double v);
Bytes str_v(const std::string& s);
Bytes bytes_v(const Bytes& b);
Bytes list_v(const std::vector<Bytes>& items);
Bytes map_v(const std::vector<std::pair<std::string, Bytes>>& items);  // written in the given order
Bytes tensor_v(uint32_t index);

struct Tensor {
  std::string name{};
  uint8_t dtype = 0;  // f32
  uint8_t codec = 0;  // raw
  std::vector<uint64_t> dims{};
  Bytes payload{};  // the stored bytes
  std::optional<uint8_t> rank{};             // default dims.size()
  uint8_t reserved = 0;
  std::optional<uint64_t> offset{};         // default: packed at the next aligned byte
  std::optional<uint64_t> stored_len{};      // default payload.size()
  std::optional<uint32_t> crc{};            // default CRC of payload
};

struct Section {
  std::string name{};
  Bytes meta{};
  std::vector<Tensor> tensors{};
  std::optional<uint32_t> tensor_count{}; // default tensors.size()
  std::optional<uint32_t> meta_len{};    // default meta.size()
};

struct File {
  uint16_t major = 1, minor = 0;
  uint32_t required_flags = 0, optional_flags = 0;
  uint8_t endian = 1, align_log2 = 6;
  uint16_t header_len = 64;
  std::array<uint8_t, 16> id{9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};
  std::optional<std::array<uint8_t, 16>> footer_id;  // default id
  std::vector<Section> sections;
  std::optional<uint32_t> section_count, tensor_count;
  Bytes index_suffix;  // appended to the index
  std::optional<uint64_t> index_offset, index_length;
  std::optional<uint32_t> index_crc;
  std::optional<uint32_t> header_crc, footer_crc;
  Bytes header_reserved = Bytes(20, 0);
  uint8_t padding_byte = 0;  // value of the padding bytes between payloads

  Bytes build() const;
  // Where the index starts in the last build (after build()).
  mutable uint64_t built_index_offset = 0;
};

// A small valid file: state_dict {"b": f32 (2,), "w": f32 (2, 2)} and hyper_parameters {"lr": 0.5}.
File valid_file();

}  // namespace ember::test::raw
