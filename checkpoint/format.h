// The byte layout of an Ember checkpoint (docs/checkpoint-format.md) as encoders and validating
// decoders over memory spans: no tensors, no files, only bytes, so that the libFuzzer target can
// build it alone. Used by the reader, the writer and the tests; not a stable API. Every decoder
// throws ember::Error and never allocates more than the bytes it was given justify.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ember/checkpoint/limits.h"
#include "ember/runtime/api.h"
#include "ember/runtime/error.h"

namespace ember::checkpoint::format {

using ByteSpan = std::span<const uint8_t>;

inline constexpr uint16_t kMajor = 1;
inline constexpr uint16_t kMinor = 0;
inline constexpr size_t kHeaderSize = 64;
inline constexpr size_t kFooterSize = 64;
inline constexpr std::array<uint8_t, 8> kMagic = {0x89, 'E', 'M', 'B', 0x0D, 0x0A, 0x1A, 0x0A};
inline constexpr std::array<uint8_t, 8> kFooterMagic = {0x89, 'E', 'N', 'D', 0x0D, 0x0A, 0x1A, 0x0A};
inline constexpr uint8_t kLittleEndian = 1;
inline constexpr uint8_t kMinAlignLog2 = 6;
inline constexpr uint8_t kMaxAlignLog2 = 16;
inline constexpr uint32_t kKnownRequiredFlags = 0;         // none defined in 1.0
inline constexpr uint32_t kFlagWeightsOnly = 1u << 0;      // optional flag: training state was left out
inline constexpr int kMaxRank = 8;
inline constexpr uint64_t kMaxDeflateRatio = 1032;         // deflate cannot expand a stream by more

// Dtype codes of the file (stable; independent of the runtime's enum values).
enum class DTypeCode : uint8_t { f32 = 0, f64 = 1, f16 = 2, bf16 = 3, i32 = 4, i64 = 5, u8 = 6, b8 = 7 };
inline constexpr int kNumDTypeCodes = 8;
// Bytes per element of a dtype code; 0 for an unknown code.
EMBER_API size_t dtype_code_size(uint8_t code);
// "f32", ... for a known code; "unknown" otherwise.
EMBER_API const char* dtype_code_name(uint8_t code);

enum class Codec : uint8_t { raw = 0, zlib = 1 };
inline constexpr int kNumCodecs = 2;

// Value tags of the metadata encoding.
enum class Tag : uint8_t { null = 0, boolean = 1, int64 = 2, float64 = 3, string = 4, bytes = 5, list = 6, map = 7, tensor = 8 };

using Limits = ember::checkpoint::Limits;

struct Header {
  uint16_t major = kMajor;
  uint16_t minor = kMinor;
  uint32_t required_flags = 0;
  uint32_t optional_flags = 0;
  uint8_t align_log2 = kMinAlignLog2;
  std::array<uint8_t, 16> file_id{};
  uint64_t alignment() const { return uint64_t{1} << align_log2; }
};

struct Footer {
  uint64_t index_offset = 0;
  uint64_t index_length = 0;
  uint32_t index_crc = 0;
  std::array<uint8_t, 16> file_id{};
};

struct TensorEntry {
  std::string name;  // dotted path inside its section
  uint32_t section = 0;
  uint8_t dtype = 0;  // DTypeCode
  Codec codec = Codec::raw;
  uint8_t rank = 0;
  std::array<uint64_t, kMaxRank> dims{};
  uint64_t offset = 0;      // absolute file offset of the stored bytes
  uint64_t stored_len = 0;  // bytes in the file
  uint64_t raw_len = 0;     // numel x dtype size (derived, validated)
  uint32_t crc = 0;         // CRC-32 of the stored bytes
};

struct SectionEntry {
  std::string name;
  uint32_t first_tensor = 0;  // tensors of a section are consecutive in Index::tensors
  uint32_t tensor_count = 0;
  uint64_t meta_offset = 0;  // offset of the encoded value inside the index bytes
  uint64_t meta_length = 0;
};

struct Index {
  std::vector<SectionEntry> sections;  // sorted by name
  std::vector<TensorEntry> tensors;    // grouped by section, sorted by name inside one
};

// --- checksums and little-endian helpers ----------------------------------------------------
// CRC-32 as zlib computes it (crc32.cpp: PCLMULQDQ folding where the CPU has it); chains like
// zlib: crc32(b, crc32(a)) is the CRC of a followed by b.
EMBER_API uint32_t crc32(ByteSpan bytes, uint32_t crc = 0);
EMBER_API void put_u16(std::vector<uint8_t>& out, uint16_t v);
EMBER_API void put_u32(std::vector<uint8_t>& out, uint32_t v);
EMBER_API void put_u64(std::vector<uint8_t>& out, uint64_t v);
EMBER_API uint16_t get_u16(const uint8_t* p);
EMBER_API uint32_t get_u32(const uint8_t* p);
EMBER_API uint64_t get_u64(const uint8_t* p);
// True when s is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
EMBER_API bool valid_utf8(std::string_view s);
// Why s cannot be a section name, tensor name or map key ("" when it can).
EMBER_API std::string name_problem(std::string_view s, uint32_t max_bytes, bool allow_empty);
// Rounds v up to a multiple of the power of two a (v is at most 2^63).
inline uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

// --- fixed-size records ----------------------------------------------------------------------
EMBER_API std::array<uint8_t, kHeaderSize> encode_header(const Header& h);
EMBER_API std::array<uint8_t, kFooterSize> encode_footer(const Footer& f);
// Validate and decode; `file` names the file in error messages.
EMBER_API Header decode_header(ByteSpan bytes, const std::string& file);
EMBER_API Footer decode_footer(ByteSpan bytes, const Header& header, uint64_t file_size, const Limits& limits,
                     const std::string& file);

// --- metadata values -------------------------------------------------------------------------
// Receives a decoded value tree in document order (SAX style). Keys and strings are only valid
// during the call.
class Visitor {
 public:
  virtual ~Visitor() = default;
  virtual void on_null() {}
  virtual void on_bool(bool) {}
  virtual void on_int(int64_t) {}
  virtual void on_float(double) {}
  virtual void on_string(std::string_view) {}
  virtual void on_bytes(ByteSpan) {}
  virtual void begin_list(uint32_t /*count*/) {}
  virtual void end_list() {}
  virtual void begin_map(uint32_t /*count*/) {}
  virtual void on_key(std::string_view) {}
  virtual void end_map() {}
  virtual void on_tensor(uint32_t /*index inside the section*/) {}
};

// Decodes one section's value: checks tags, lengths, depth, UTF-8, key order, and that every
// tensor reference names a tensor of the section whose name equals the reference's dotted path,
// each exactly once. Calls the visitor as it goes.
EMBER_API void decode_section_value(ByteSpan index, const Index& idx, uint32_t section, const Limits& limits,
                          Visitor& visitor, const std::string& file);

// Appends encoded values (used by the writer).
class EMBER_API ValueEncoder {
 public:
  explicit ValueEncoder(std::vector<uint8_t>& out) : out_(out) {}
  void null();
  void boolean(bool v);
  void int64(int64_t v);
  void float64(double v);
  void string(std::string_view s);
  void bytes(ByteSpan b);
  void begin_list(uint32_t count);
  void begin_map(uint32_t count);
  void key(std::string_view k);
  void tensor(uint32_t index);

 private:
  std::vector<uint8_t>& out_;
};

// --- the index -------------------------------------------------------------------------------
// Serialises sections (with their encoded metadata) and tensors into index bytes.
struct SectionSource {
  std::string name;
  std::vector<uint8_t> meta;
  std::vector<TensorEntry> tensors;  // sorted by name
};
EMBER_API std::vector<uint8_t> encode_index(const std::vector<SectionSource>& sections);

// Decodes and validates the index bytes: structure, names, dtypes, codecs, shapes (overflow-safe),
// payload ranges, the packing rule (no overlap, no hidden gaps), and every section's metadata.
EMBER_API Index decode_index(ByteSpan index, const Header& header, const Footer& footer, const Limits& limits,
                   const std::string& file);

// --- payloads --------------------------------------------------------------------------------
// Checks a tensor's stored bytes against its CRC and, for zlib, inflates them into `raw`
// (exactly raw_len bytes). Also checks that bool tensors hold only 0 and 1. `raw` may be empty for
// a zlib tensor when only verification is wanted (it then inflates through a small buffer).
// `computed_crc`, when given, is the caller's CRC of `stored` (e.g. computed in parallel).
EMBER_API void check_payload(const TensorEntry& t, const std::string& section, ByteSpan stored, uint8_t* raw,
                             const std::string& file, const uint32_t* computed_crc = nullptr);
// Checks that `padding` (the bytes between payloads) is all zero.
EMBER_API void check_padding(ByteSpan padding, uint64_t at, const std::string& file);

// A whole file in memory: header, footer and index validated (for tests and the fuzzer).
struct ParsedFile {
  Header header;
  Footer footer;
  Index index;
  ByteSpan index_bytes;
};
EMBER_API ParsedFile parse_file(ByteSpan file_bytes, const Limits& limits, const std::string& file);
// Every payload's checksum and decoding plus all padding bytes of an in-memory file.
EMBER_API void verify_payloads(ByteSpan file_bytes, const Footer& footer, const Index& index, const std::string& file);

}  // namespace ember::checkpoint::format
