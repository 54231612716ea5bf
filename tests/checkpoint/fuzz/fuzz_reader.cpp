// libFuzzer target for the checkpoint reader's byte-level decoders (checkpoint/format.cpp), built
// and run by scripts/fuzz-checkpoint.sh under ASan + UBSan. Each input is parsed twice: as given,
// and with its header, footer, index and payload checksums repaired, so that mutations reach the
// index, metadata and zlib decoders instead of stopping at a CRC mismatch.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "checkpoint/format.h"

namespace fmt = ember::checkpoint::format;

namespace {

// Touches everything the decoder hands out, so that bad spans would be caught by ASan.
class Sink : public fmt::Visitor {
 public:
  uint64_t acc = 0;
  void on_bool(bool b) override { acc += b; }
  void on_int(int64_t v) override { acc += static_cast<uint64_t>(v); }
  void on_float(double v) override { acc += static_cast<uint64_t>(v == v); }
  void on_string(std::string_view s) override {
    for (char c : s) acc += static_cast<uint8_t>(c);
  }
  void on_bytes(fmt::ByteSpan b) override {
    for (uint8_t c : b) acc += c;
  }
  void begin_list(uint32_t n) override { acc += n; }
  void begin_map(uint32_t n) override { acc += n; }
  void on_key(std::string_view k) override { acc += k.size(); }
  void on_tensor(uint32_t i) override { acc += i; }
};

void run(fmt::ByteSpan bytes, bool repair_payload_crcs) {
  fmt::Limits limits;
  limits.max_index_bytes = 1 << 20;
  try {
    fmt::ParsedFile p = fmt::parse_file(bytes, limits, "fuzz");
    Sink sink;
    for (uint32_t s = 0; s < p.index.sections.size(); ++s)
      fmt::decode_section_value(p.index_bytes, p.index, s, limits, sink, "fuzz");
    for (const fmt::TensorEntry& t : p.index.tensors) {
      fmt::TensorEntry e = t;
      fmt::ByteSpan stored = bytes.subspan(static_cast<size_t>(t.offset), static_cast<size_t>(t.stored_len));
      if (repair_payload_crcs) e.crc = fmt::crc32(stored);
      try {
        std::vector<uint8_t> out;
        if (e.codec == fmt::Codec::zlib && e.raw_len <= (1u << 20)) out.resize(static_cast<size_t>(e.raw_len));
        fmt::check_payload(e, p.index.sections[e.section].name, stored, out.empty() ? nullptr : out.data(), "fuzz");
      } catch (const ember::Error&) {
      }
    }
    fmt::verify_payloads(bytes, p.footer, p.index, "fuzz");
  } catch (const ember::Error&) {
  }
}

// Rewrites the header, footer and index checksums of a candidate file in place.
void repair(std::vector<uint8_t>& b) {
  if (b.size() < fmt::kHeaderSize + fmt::kFooterSize) return;
  auto put32 = [&](size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
  };
  put32(60, fmt::crc32(fmt::ByteSpan(b.data(), 60)));
  size_t f = b.size() - fmt::kFooterSize;
  uint64_t off = fmt::get_u64(&b[f + 8]), len = fmt::get_u64(&b[f + 16]);
  if (off <= f && len <= f - off) put32(f + 24, fmt::crc32(fmt::ByteSpan(b.data() + off, static_cast<size_t>(len))));
  put32(f + 60, fmt::crc32(fmt::ByteSpan(b.data() + f, 60)));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  run(fmt::ByteSpan(data, size), false);
  std::vector<uint8_t> fixed(data, data + size);
  repair(fixed);
  run(fixed, true);
  return 0;
}
