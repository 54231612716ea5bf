// Encoders and validating decoders for the checkpoint byte layout (see format.h and
// docs/checkpoint-format.md). Every length read from a file is checked against the bytes that
// remain before it is used; sizes are multiplied and added with overflow checks.
#include "checkpoint/format.h"
#include "ember/checkpoint/checkpoint.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>

namespace ember::checkpoint {

// Here rather than in writer.cpp: the reader needs it too, and inference programs link no writer.
const std::vector<std::string>& training_sections() {
  static const std::vector<std::string> names = {kOptimizerStates, kLrSchedulers, kCallbacks, kRngStates};
  return names;
}

}  // namespace ember::checkpoint

namespace ember::checkpoint::format {

namespace {

// Throws "[checkpoint] 'file': where: message".
template <typename... Args>
[[noreturn]] void fail(const std::string& file, std::string_view where, const Args&... args) {
  throw Error(str_cat("[checkpoint] '", file, "': ", where, ": ", args...));
}

std::string hex_bytes(ByteSpan b) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < b.size(); ++i) {
    if (i) s += ' ';
    s += digits[b[i] >> 4];
    s += digits[b[i] & 15];
  }
  return s;
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// What a wrong magic most likely is, to make the error useful.
std::string guess_format(ByteSpan b) {
  auto starts = [&](std::string_view s) {
    return b.size() >= s.size() && std::memcmp(b.data(), s.data(), s.size()) == 0;
  };
  if (starts("PK\x03\x04")) return " (a zip archive: a PyTorch torch.save file?)";
  if (starts("GGUF")) return " (a GGUF file)";
  if (b.size() >= 2 && b[0] == 0x80 && b[1] <= 5) return " (a Python pickle)";
  if (b.size() >= 9 && b[8] == '{') return " (a safetensors file? use 'ember-ckpt import-safetensors')";
  if (starts("\x89" "EMB\n")) return " (an Ember checkpoint whose line endings were converted: copy it in binary mode)";
  return "";
}

bool all_zero(ByteSpan b) {
  return std::all_of(b.begin(), b.end(), [](uint8_t x) { return x == 0; });
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }
bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_add_overflow(a, b, out); }

// A bounds-checked reader over the index bytes.
class Cursor {
 public:
  Cursor(ByteSpan bytes, size_t pos, size_t end, const std::string& file, std::string where)
      : b_(bytes), pos_(pos), end_(end), file_(file), where_(std::move(where)) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return end_ - pos_; }
  void set_where(std::string w) { where_ = std::move(w); }
  const std::string& where() const { return where_; }
  void need(uint64_t n, std::string_view what) {
    if (n > remaining())
      fail(file_, where_, "truncated: ", what, " needs ", n, " bytes at index byte ", pos_, " but only ",
           remaining(), " remain");
  }
  uint8_t u8(std::string_view what) {
    need(1, what);
    return b_[pos_++];
  }
  uint16_t u16(std::string_view what) {
    need(2, what);
    uint16_t v = get_u16(b_.data() + pos_);
    pos_ += 2;
    return v;
  }
  uint32_t u32(std::string_view what) {
    need(4, what);
    uint32_t v = get_u32(b_.data() + pos_);
    pos_ += 4;
    return v;
  }
  uint64_t u64(std::string_view what) {
    need(8, what);
    uint64_t v = get_u64(b_.data() + pos_);
    pos_ += 8;
    return v;
  }
  ByteSpan take(uint64_t n, std::string_view what) {
    need(n, what);
    ByteSpan s = b_.subspan(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }
  std::string_view str(uint64_t n, std::string_view what) {
    ByteSpan s = take(n, what);
    return {reinterpret_cast<const char*>(s.data()), s.size()};
  }

 private:
  ByteSpan b_;
  size_t pos_, end_;
  const std::string& file_;
  std::string where_;
};

}  // namespace

// --- small helpers ---------------------------------------------------------------------------

size_t dtype_code_size(uint8_t code) {
  static constexpr size_t sizes[kNumDTypeCodes] = {4, 8, 2, 2, 4, 8, 1, 1};
  return code < kNumDTypeCodes ? sizes[code] : 0;
}

const char* dtype_code_name(uint8_t code) {
  static constexpr const char* names[kNumDTypeCodes] = {"f32", "f64", "f16", "bf16", "i32", "i64", "u8", "bool"};
  return code < kNumDTypeCodes ? names[code] : "unknown";
}

void put_u16(std::vector<uint8_t>& out, uint16_t v) {
  for (int i = 0; i < 2; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint16_t get_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t get_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t get_u64(const uint8_t* p) { return get_u32(p) | (static_cast<uint64_t>(get_u32(p + 4)) << 32); }

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    uint8_t c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07;
    else return false;
    if (n - i < static_cast<size_t>(len)) return false;
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    static constexpr uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

std::string name_problem(std::string_view s, uint32_t max_bytes, bool allow_empty) {
  if (s.empty() && !allow_empty) return "is empty";
  if (s.size() > max_bytes) return str_cat("is ", s.size(), " bytes long (limit ", max_bytes, ")");
  if (!valid_utf8(s)) return "is not valid UTF-8";
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<uint8_t>(s[i]);
    if (c < 0x20 || c == 0x7F) return str_cat("contains control byte ", int(c), " at position ", i);
  }
  return "";
}

// --- header and footer -----------------------------------------------------------------------

std::array<uint8_t, kHeaderSize> encode_header(const Header& h) {
  std::vector<uint8_t> v(kMagic.begin(), kMagic.end());
  put_u16(v, h.major);
  put_u16(v, h.minor);
  put_u32(v, h.required_flags);
  put_u32(v, h.optional_flags);
  v.push_back(kLittleEndian);
  v.push_back(h.align_log2);
  put_u16(v, static_cast<uint16_t>(kHeaderSize));
  v.insert(v.end(), h.file_id.begin(), h.file_id.end());
  v.resize(60, 0);
  put_u32(v, crc32(ByteSpan(v.data(), 60)));
  std::array<uint8_t, kHeaderSize> out;
  std::copy(v.begin(), v.end(), out.begin());
  return out;
}

std::array<uint8_t, kFooterSize> encode_footer(const Footer& f) {
  std::vector<uint8_t> v(kFooterMagic.begin(), kFooterMagic.end());
  put_u64(v, f.index_offset);
  put_u64(v, f.index_length);
  put_u32(v, f.index_crc);
  put_u32(v, 0);
  v.insert(v.end(), f.file_id.begin(), f.file_id.end());
  v.resize(60, 0);
  put_u32(v, crc32(ByteSpan(v.data(), 60)));
  std::array<uint8_t, kFooterSize> out;
  std::copy(v.begin(), v.end(), out.begin());
  return out;
}

Header decode_header(ByteSpan b, const std::string& file) {
  if (b.size() < kHeaderSize) fail(file, "header", "file too short (", b.size(), " bytes)");
  if (!std::equal(kMagic.begin(), kMagic.end(), b.begin()))
    fail(file, "header", "not an Ember checkpoint: magic bytes are ", hex_bytes(b.first(8)), ", expected ",
         hex_bytes(kMagic), guess_format(b));
  Header h;
  h.major = get_u16(b.data() + 8);
  h.minor = get_u16(b.data() + 10);
  if (h.major > kMajor)
    fail(file, "header", "written in checkpoint format ", h.major, ".", h.minor, ", but this reader understands format ",
         kMajor, ".x only; a newer Ember that reads format ", h.major, " is needed");
  if (h.major == 0) fail(file, "header", "format version 0.", h.minor, " is not a valid version (the first is 1.0)");
  uint32_t stored_crc = get_u32(b.data() + 60), crc = crc32(b.first(60));
  if (stored_crc != crc)
    fail(file, "header", "checksum mismatch (stored ", hex32(stored_crc), ", computed ", hex32(crc), ")");
  h.required_flags = get_u32(b.data() + 12);
  h.optional_flags = get_u32(b.data() + 16);
  uint8_t endian = b[20];
  h.align_log2 = b[21];
  uint16_t header_len = get_u16(b.data() + 22);
  if (endian != kLittleEndian)
    fail(file, "header", "byte-order mark is ", int(endian), ", expected 1 (little-endian)");
  if (header_len != kHeaderSize) fail(file, "header", "header length is ", header_len, ", expected 64");
  if (h.align_log2 < kMinAlignLog2 || h.align_log2 > kMaxAlignLog2)
    fail(file, "header", "bad alignment: align_log2 is ", int(h.align_log2), ", expected ", int(kMinAlignLog2), "..",
         int(kMaxAlignLog2));
  if (h.required_flags & ~kKnownRequiredFlags)
    fail(file, "header", "unknown required feature flags ", hex32(h.required_flags & ~kKnownRequiredFlags),
         " (format ", h.major, ".", h.minor, "); a newer Ember is needed to read this file");
  std::copy(b.begin() + 24, b.begin() + 40, h.file_id.begin());
  if (!all_zero(b.subspan(40, 20))) fail(file, "header", "reserved bytes 40..59 are not zero");
  return h;
}

Footer decode_footer(ByteSpan b, const Header& header, uint64_t file_size, const Limits& limits,
                     const std::string& file) {
  if (b.size() < kFooterSize) fail(file, "footer", "file too short (", b.size(), " bytes)");
  if (!std::equal(kFooterMagic.begin(), kFooterMagic.end(), b.begin()))
    fail(file, "footer", "no footer at the end of the file (last 64 bytes start with ", hex_bytes(b.first(8)),
         "): the file is truncated or has trailing bytes");
  uint32_t stored_crc = get_u32(b.data() + 60), crc = crc32(b.first(60));
  if (stored_crc != crc)
    fail(file, "footer", "checksum mismatch (stored ", hex32(stored_crc), ", computed ", hex32(crc), ")");
  Footer f;
  f.index_offset = get_u64(b.data() + 8);
  f.index_length = get_u64(b.data() + 16);
  f.index_crc = get_u32(b.data() + 24);
  std::copy(b.begin() + 32, b.begin() + 48, f.file_id.begin());
  if (get_u32(b.data() + 28) != 0 || !all_zero(b.subspan(48, 12)))
    fail(file, "footer", "reserved bytes are not zero");
  if (f.file_id != header.file_id)
    fail(file, "footer", "file id ", hex_bytes(f.file_id), " differs from the header's ", hex_bytes(header.file_id),
         " (the file was spliced from two checkpoints)");
  uint64_t end;
  if (add_overflows(f.index_offset, f.index_length, &end) || add_overflows(end, kFooterSize, &end))
    fail(file, "footer", "index range overflows: offset ", f.index_offset, " + length ", f.index_length);
  if (f.index_offset < kHeaderSize || f.index_offset % header.alignment() != 0)
    fail(file, "footer", "index offset ", f.index_offset, " is not a multiple of the alignment ", header.alignment(),
         " at or after byte 64");
  if (end != file_size)
    fail(file, "footer", "index out of bounds: index [", f.index_offset, ", +", f.index_length,
         ") and the footer end at byte ", end, " but the file has ", file_size, " bytes");
  if (f.index_length < 8) fail(file, "footer", "index length ", f.index_length, " is below the minimum of 8");
  if (f.index_length > limits.max_index_bytes)
    fail(file, "footer", "index of ", f.index_length, " bytes exceeds the limit of ", limits.max_index_bytes,
         " bytes (Limits::max_index_bytes)");
  return f;
}

// --- metadata values -------------------------------------------------------------------------

void ValueEncoder::null() { out_.push_back(static_cast<uint8_t>(Tag::null)); }
void ValueEncoder::boolean(bool v) {
  out_.push_back(static_cast<uint8_t>(Tag::boolean));
  out_.push_back(v ? 1 : 0);
}
void ValueEncoder::int64(int64_t v) {
  out_.push_back(static_cast<uint8_t>(Tag::int64));
  put_u64(out_, static_cast<uint64_t>(v));
}
void ValueEncoder::float64(double v) {
  out_.push_back(static_cast<uint8_t>(Tag::float64));
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  put_u64(out_, bits);
}
void ValueEncoder::string(std::string_view s) {
  out_.push_back(static_cast<uint8_t>(Tag::string));
  put_u32(out_, static_cast<uint32_t>(s.size()));
  out_.insert(out_.end(), s.begin(), s.end());
}
void ValueEncoder::bytes(ByteSpan b) {
  out_.push_back(static_cast<uint8_t>(Tag::bytes));
  put_u32(out_, static_cast<uint32_t>(b.size()));
  out_.insert(out_.end(), b.begin(), b.end());
}
void ValueEncoder::begin_list(uint32_t count) {
  out_.push_back(static_cast<uint8_t>(Tag::list));
  put_u32(out_, count);
}
void ValueEncoder::begin_map(uint32_t count) {
  out_.push_back(static_cast<uint8_t>(Tag::map));
  put_u32(out_, count);
}
void ValueEncoder::key(std::string_view k) {
  put_u16(out_, static_cast<uint16_t>(k.size()));
  out_.insert(out_.end(), k.begin(), k.end());
}
void ValueEncoder::tensor(uint32_t index) {
  out_.push_back(static_cast<uint8_t>(Tag::tensor));
  put_u32(out_, index);
}

namespace {

// Recursive-descent decoder of one section's value.
class ValueDecoder {
 public:
  ValueDecoder(Cursor& c, const Index& idx, const SectionEntry& sec, const Limits& limits, Visitor& v,
               const std::string& file)
      : c_(c), idx_(idx), sec_(sec), limits_(limits), v_(v), file_(file), seen_(sec.tensor_count, false) {
    max_depth_ = std::min<uint32_t>(limits.max_depth, 512);  // bounded recursion whatever the limit
  }

  void run() {
    value(1);
    if (c_.remaining() != 0) fail_here("", c_.remaining(), " bytes follow the section's value");
    for (uint32_t i = 0; i < sec_.tensor_count; ++i)
      if (!seen_[i])
        fail(file_, str_cat("section '", sec_.name, "'"), "tensor '", idx_.tensors[sec_.first_tensor + i].name,
             "' is not referenced by the section's metadata");
  }

 private:
  template <typename... Args>
  [[noreturn]] void fail_here(const Args&... args) {
    fail(file_, str_cat("section '", sec_.name, "' metadata at path '", path_, "'"), args...);
  }
  void check_count(uint64_t count, uint64_t min_item_bytes, std::string_view what) {
    uint64_t need;
    if (mul_overflows(count, min_item_bytes, &need) || need > c_.remaining())
      fail_here(what, " count ", count, " exceeds the ", c_.remaining(), " bytes that remain");
  }
  void push(std::string_view seg, size_t* saved) {
    *saved = path_.size();
    if (!path_.empty()) path_ += '.';
    path_ += seg;
  }

  void value(uint32_t depth) {
    if (depth > max_depth_) fail_here("nesting too deep (more than ", max_depth_, " levels)");
    uint8_t tag = c_.u8("a value tag");
    switch (static_cast<Tag>(tag)) {
      case Tag::null: v_.on_null(); return;
      case Tag::boolean: {
        uint8_t b = c_.u8("a bool");
        if (b > 1) fail_here("bool byte is ", int(b), " (must be 0 or 1)");
        v_.on_bool(b == 1);
        return;
      }
      case Tag::int64: v_.on_int(static_cast<int64_t>(c_.u64("an int64"))); return;
      case Tag::float64: {
        uint64_t bits = c_.u64("a float64");
        double d;
        std::memcpy(&d, &bits, 8);
        v_.on_float(d);
        return;
      }
      case Tag::string: {
        uint32_t n = c_.u32("a string length");
        if (n > limits_.max_string_bytes)
          fail_here("string of ", n, " bytes exceeds the limit of ", limits_.max_string_bytes);
        if (n > c_.remaining()) fail_here("length exceeds data: string of ", n, " bytes but ", c_.remaining(), " remain");
        std::string_view s = c_.str(n, "a string");
        if (!valid_utf8(s)) fail_here("string is not valid UTF-8");
        v_.on_string(s);
        return;
      }
      case Tag::bytes: {
        uint32_t n = c_.u32("a bytes length");
        if (n > limits_.max_string_bytes)
          fail_here("bytes value of ", n, " bytes exceeds the limit of ", limits_.max_string_bytes);
        if (n > c_.remaining()) fail_here("length exceeds data: bytes value of ", n, " bytes but ", c_.remaining(), " remain");
        v_.on_bytes(c_.take(n, "a bytes value"));
        return;
      }
      case Tag::list: {
        uint32_t n = c_.u32("a list count");
        check_count(n, 1, "list");
        v_.begin_list(n);
        for (uint32_t i = 0; i < n; ++i) {
          size_t saved;
          push(std::to_string(i), &saved);
          value(depth + 1);
          path_.resize(saved);
        }
        v_.end_list();
        return;
      }
      case Tag::map: {
        uint32_t n = c_.u32("a map count");
        check_count(n, 3, "map");
        v_.begin_map(n);
        std::string prev;
        for (uint32_t i = 0; i < n; ++i) {
          uint16_t klen = c_.u16("a key length");
          std::string_view k = c_.str(klen, "a key");
          std::string problem = name_problem(k, limits_.max_name_bytes, true);
          if (!problem.empty()) fail_here("key #", i, " ", problem);
          if (i > 0 && k <= prev) {
            if (k == prev) fail_here("duplicate map key '", k, "'");
            fail_here("map keys not sorted: '", k, "' follows '", prev, "'");
          }
          prev.assign(k);
          v_.on_key(k);
          size_t saved;
          push(k, &saved);
          value(depth + 1);
          path_.resize(saved);
        }
        v_.end_map();
        return;
      }
      case Tag::tensor: {
        uint32_t i = c_.u32("a tensor reference");
        if (i >= sec_.tensor_count)
          fail_here("tensor reference #", i, " is out of range (the section has ", sec_.tensor_count, " tensors)");
        const TensorEntry& t = idx_.tensors[sec_.first_tensor + i];
        if (t.name != path_)
          fail_here("tensor reference #", i, " names tensor '", t.name, "' but sits at path '", path_, "'");
        if (seen_[i]) fail_here("tensor '", t.name, "' is referenced twice");
        seen_[i] = true;
        v_.on_tensor(i);
        return;
      }
    }
    fail_here("unknown value tag ", int(tag), " (this reader knows format ", kMajor, ".", kMinor, ")");
  }

  Cursor& c_;
  const Index& idx_;
  const SectionEntry& sec_;
  const Limits& limits_;
  Visitor& v_;
  const std::string& file_;
  std::vector<bool> seen_;
  std::string path_;
  uint32_t max_depth_;
};

}  // namespace

void decode_section_value(ByteSpan index, const Index& idx, uint32_t section, const Limits& limits, Visitor& visitor,
                          const std::string& file) {
  const SectionEntry& sec = idx.sections.at(section);
  Cursor c(index, static_cast<size_t>(sec.meta_offset), static_cast<size_t>(sec.meta_offset + sec.meta_length), file,
           str_cat("section '", sec.name, "' metadata"));
  ValueDecoder(c, idx, sec, limits, visitor, file).run();
}

// --- the index -------------------------------------------------------------------------------

std::vector<uint8_t> encode_index(const std::vector<SectionSource>& sections) {
  std::vector<uint8_t> out;
  size_t total = 0;
  for (auto& s : sections) total += s.tensors.size();
  put_u32(out, static_cast<uint32_t>(sections.size()));
  put_u32(out, static_cast<uint32_t>(total));
  for (auto& s : sections) {
    put_u16(out, static_cast<uint16_t>(s.name.size()));
    out.insert(out.end(), s.name.begin(), s.name.end());
    put_u32(out, static_cast<uint32_t>(s.tensors.size()));
    put_u32(out, static_cast<uint32_t>(s.meta.size()));
    out.insert(out.end(), s.meta.begin(), s.meta.end());
  }
  for (auto& s : sections) {
    for (auto& t : s.tensors) {
      put_u16(out, static_cast<uint16_t>(t.name.size()));
      out.insert(out.end(), t.name.begin(), t.name.end());
      out.push_back(t.dtype);
      out.push_back(static_cast<uint8_t>(t.codec));
      out.push_back(t.rank);
      out.push_back(0);
      for (int d = 0; d < t.rank; ++d) put_u64(out, t.dims[d]);
      put_u64(out, t.offset);
      put_u64(out, t.stored_len);
      put_u32(out, t.crc);
    }
  }
  return out;
}

namespace {

// Sizes a tensor entry from its shape and checks its codec's rule.
void check_tensor_entry(TensorEntry& t, const std::string& section, const Header& header, const Footer& footer,
                        const std::string& file) {
  std::string where = str_cat("tensor '", section, "/", t.name, "'");
  size_t esize = dtype_code_size(t.dtype);
  if (esize == 0)
    fail(file, where, "unknown dtype code ", int(t.dtype), " (this reader knows format ", kMajor, ".", kMinor,
         "; the file is ", header.major, ".", header.minor, ")");
  if (static_cast<uint8_t>(t.codec) >= kNumCodecs)
    fail(file, where, "unknown codec ", int(t.codec), " (this reader knows format ", kMajor, ".", kMinor,
         "; the file is ", header.major, ".", header.minor, ")");
  uint64_t numel = 1;
  std::string dims;
  for (int d = 0; d < t.rank; ++d) dims += str_cat(d ? ", " : "", t.dims[d]);
  for (int d = 0; d < t.rank; ++d) {
    if (t.dims[d] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(file, where, "dimension ", d, " is ", t.dims[d], " (larger than 2^63 - 1)");
    if (mul_overflows(numel, t.dims[d], &numel))
      fail(file, where, "shape size overflow: the product of (", dims, ") does not fit in 64 bits");
  }
  uint64_t nbytes;
  if (mul_overflows(numel, esize, &nbytes) || nbytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    fail(file, where, "shape size overflow: (", dims, ") x ", esize, " bytes does not fit in 63 bits");
  t.raw_len = nbytes;
  uint64_t end;
  if (t.offset % header.alignment() != 0)
    fail(file, where, "tensor range invalid: offset ", t.offset, " is not a multiple of the alignment ",
         header.alignment());
  if (add_overflows(t.offset, t.stored_len, &end) || t.offset < kHeaderSize || end > footer.index_offset)
    fail(file, where, "tensor range invalid: [", t.offset, ", +", t.stored_len, ") is outside the data region [64, ",
         footer.index_offset, ")");
  if (t.codec == Codec::raw && t.stored_len != nbytes)
    fail(file, where, "size mismatch: stores ", t.stored_len, " bytes but shape (", dims, ") x ", esize, " bytes is ",
         nbytes);
  if (t.codec == Codec::zlib) {
    uint64_t max_raw;
    if (t.stored_len < 8) fail(file, where, "zlib payload of ", t.stored_len, " bytes is shorter than a zlib stream");
    if (!mul_overflows(t.stored_len, kMaxDeflateRatio, &max_raw) && nbytes > max_raw)
      fail(file, where, "size mismatch: ", t.stored_len, " zlib bytes cannot inflate to the ", nbytes,
           " bytes its shape declares");
  }
}

// The packing rule: in offset order, each payload starts at the first aligned byte after the
// previous one (or after the header), and the index at the first aligned byte after the last.
void check_layout(const Index& idx, const Header& header, const Footer& footer, const std::string& file) {
  std::vector<uint32_t> order(idx.tensors.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    const TensorEntry &x = idx.tensors[a], &y = idx.tensors[b];
    return x.offset != y.offset ? x.offset < y.offset : x.stored_len < y.stored_len;
  });
  const uint64_t A = header.alignment();
  uint64_t pos = kHeaderSize;
  const TensorEntry* prev = nullptr;
  auto label = [&](const TensorEntry& t) { return str_cat("'", idx.sections[t.section].name, "/", t.name, "'"); };
  for (uint32_t i : order) {
    const TensorEntry& t = idx.tensors[i];
    uint64_t expected = align_up(pos, A);
    if (t.offset < pos)
      fail(file, str_cat("tensor ", label(t)), "overlap: bytes [", t.offset, ", ", t.offset + t.stored_len,
           ") overlap tensor ", prev ? label(*prev) : "(header)", " which ends at byte ", pos);
    if (t.offset != expected)
      fail(file, str_cat("tensor ", label(t)), "hidden data: a gap of ", t.offset - pos, " bytes before offset ",
           t.offset, " (the packing rule places it at ", expected, ")");
    pos = t.offset + t.stored_len;
    prev = &t;
  }
  uint64_t expected = align_up(pos, A);
  if (footer.index_offset != expected)
    fail(file, "index", "hidden data: the index starts at ", footer.index_offset, " but the last payload ends at ",
         pos, " (the packing rule places the index at ", expected, ")");
}

}  // namespace

Index decode_index(ByteSpan bytes, const Header& header, const Footer& footer, const Limits& limits,
                   const std::string& file) {
  uint32_t stored_crc = footer.index_crc, crc = crc32(bytes);
  if (stored_crc != crc)
    fail(file, "index", "checksum mismatch (stored ", hex32(stored_crc), ", computed ", hex32(crc), ")");
  Cursor c(bytes, 0, bytes.size(), file, "index");
  Index idx;
  uint32_t nsec = c.u32("the section count");
  uint32_t ntensor = c.u32("the tensor count");
  if (nsec > limits.max_sections) fail(file, "index", nsec, " sections exceed the limit of ", limits.max_sections);
  if (ntensor > limits.max_tensors) fail(file, "index", ntensor, " tensors exceed the limit of ", limits.max_tensors);
  // Minimum encoded sizes: a section is 2+1+4+4+1 bytes, a tensor 2+1+4+8+8+4.
  if (uint64_t{nsec} * 12 + uint64_t{ntensor} * 27 > c.remaining())
    fail(file, "index", "count exceeds available bytes: ", nsec, " sections and ", ntensor, " tensors cannot fit in ",
         c.remaining(), " bytes");
  uint64_t declared = 0;
  for (uint32_t s = 0; s < nsec; ++s) {
    c.set_where(str_cat("index: section #", s));
    SectionEntry e;
    uint16_t nlen = c.u16("a name length");
    e.name.assign(c.str(nlen, "a section name"));
    std::string problem = name_problem(e.name, limits.max_name_bytes, false);
    if (!problem.empty()) fail(file, c.where(), "section name ", problem);
    if (s > 0) {
      const std::string& p = idx.sections.back().name;
      if (e.name == p) fail(file, c.where(), "duplicate section name '", e.name, "'");
      if (e.name < p) fail(file, c.where(), "section names not sorted: '", e.name, "' follows '", p, "'");
    }
    e.tensor_count = c.u32("a tensor count");
    e.first_tensor = static_cast<uint32_t>(std::min<uint64_t>(declared, ntensor));
    declared += e.tensor_count;
    if (declared > ntensor)
      fail(file, c.where(), "sections declare more than the index's ", ntensor, " tensors");
    e.meta_length = c.u32("a metadata length");
    e.meta_offset = c.pos();
    if (e.meta_length == 0) fail(file, c.where(), "section '", e.name, "' has no value");
    c.take(e.meta_length, "the section's metadata");
    idx.sections.push_back(std::move(e));
  }
  if (declared != ntensor)
    fail(file, "index", "sections declare ", declared, " tensors but the index holds ", ntensor);
  idx.tensors.reserve(ntensor);  // bounded by the bytes checked above
  for (uint32_t s = 0; s < nsec; ++s) {
    const SectionEntry& sec = idx.sections[s];
    for (uint32_t i = 0; i < sec.tensor_count; ++i) {
      c.set_where(str_cat("index: section '", sec.name, "' tensor #", i));
      TensorEntry t;
      t.section = s;
      uint16_t nlen = c.u16("a name length");
      t.name.assign(c.str(nlen, "a tensor name"));
      std::string problem = name_problem(t.name, limits.max_name_bytes, false);
      if (!problem.empty()) fail(file, c.where(), "tensor name ", problem);
      if (i > 0) {
        const std::string& p = idx.tensors.back().name;
        if (t.name == p) fail(file, c.where(), "duplicate tensor name '", t.name, "'");
        if (t.name < p) fail(file, c.where(), "tensor names not sorted: '", t.name, "' follows '", p, "'");
      }
      t.dtype = c.u8("a dtype");
      t.codec = static_cast<Codec>(c.u8("a codec"));
      t.rank = c.u8("a rank");
      uint8_t reserved = c.u8("a reserved byte");
      if (t.rank > kMaxRank) fail(file, c.where(), "rank ", int(t.rank), " > ", kMaxRank, " (tensor '", t.name, "')");
      if (reserved != 0) fail(file, c.where(), "reserved byte is ", int(reserved), " (must be 0)");
      for (int d = 0; d < t.rank; ++d) t.dims[d] = c.u64("a dimension");
      t.offset = c.u64("an offset");
      t.stored_len = c.u64("a stored length");
      t.crc = c.u32("a checksum");
      check_tensor_entry(t, sec.name, header, footer, file);
      idx.tensors.push_back(std::move(t));
    }
  }
  if (c.remaining() != 0) fail(file, "index", c.remaining(), " trailing bytes after the tensor table");
  check_layout(idx, header, footer, file);
  Visitor validate_only;
  for (uint32_t s = 0; s < nsec; ++s) decode_section_value(bytes, idx, s, limits, validate_only, file);
  return idx;
}

// --- payloads --------------------------------------------------------------------------------

void check_payload(const TensorEntry& t, const std::string& section, ByteSpan stored, uint8_t* raw,
                   const std::string& file, const uint32_t* computed_crc) {
  std::string where = str_cat("tensor '", section, "/", t.name, "'");
  if (stored.size() != t.stored_len)
    fail(file, where, "file changed while reading: got ", stored.size(), " of ", t.stored_len, " bytes");
  uint32_t crc = computed_crc ? *computed_crc : crc32(stored);
  if (crc != t.crc) fail(file, where, "checksum mismatch (stored ", hex32(t.crc), ", computed ", hex32(crc), ")");
  bool is_bool = t.dtype == static_cast<uint8_t>(DTypeCode::b8);
  uint64_t bool_at = 0;
  auto check_bools = [&](const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i)
      if (p[i] > 1) fail(file, where, "bool tensor holds byte ", int(p[i]), " at element ", bool_at + i);
    bool_at += n;
  };
  if (t.codec == Codec::raw) {
    if (is_bool) check_bools(stored.data(), stored.size());
    return;
  }
  z_stream zs{};
  if (inflateInit(&zs) != Z_OK) fail(file, where, "zlib inflateInit failed");
  struct Guard {
    z_stream* z;
    ~Guard() { inflateEnd(z); }
  } guard{&zs};
  uint8_t scratch[16384];
  uint64_t produced = 0;
  size_t consumed = 0;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    uint8_t* out;
    size_t cap;
    if (produced < t.raw_len) {
      uint64_t left = t.raw_len - produced;
      out = raw ? raw + produced : scratch;
      cap = raw ? static_cast<size_t>(std::min<uint64_t>(left, 1u << 30)) : static_cast<size_t>(std::min<uint64_t>(left, sizeof scratch));
    } else {
      out = scratch;  // only to detect output past raw_len
      cap = 1;
    }
    size_t in_chunk = std::min<size_t>(stored.size() - consumed, 1u << 30);
    zs.next_in = const_cast<Bytef*>(stored.data() + consumed);
    zs.avail_in = static_cast<uInt>(in_chunk);
    zs.next_out = out;
    zs.avail_out = static_cast<uInt>(cap);
    rc = inflate(&zs, Z_NO_FLUSH);
    size_t got = cap - zs.avail_out;
    consumed += in_chunk - zs.avail_in;
    if (rc == Z_NEED_DICT || rc == Z_DATA_ERROR || rc == Z_MEM_ERROR || rc == Z_STREAM_ERROR)
      fail(file, where, "corrupt zlib stream: ", zs.msg ? zs.msg : "error", " (code ", rc, ")");
    if (produced >= t.raw_len && got > 0)
      fail(file, where, "decompression size mismatch: inflates to more than the ", t.raw_len,
           " bytes its shape declares");
    if (is_bool) check_bools(out, got);
    produced += got;
    if (rc == Z_BUF_ERROR || (rc == Z_OK && got == 0 && in_chunk - zs.avail_in == 0)) {
      if (consumed == stored.size())
        fail(file, where, "decompression size mismatch: the zlib stream is truncated after ", produced, " of ",
             t.raw_len, " bytes");
      fail(file, where, "corrupt zlib stream: no progress");
    }
  }
  if (produced != t.raw_len)
    fail(file, where, "decompression size mismatch: inflates to ", produced, " bytes, its shape declares ", t.raw_len);
  if (consumed != stored.size())
    fail(file, where, "decompression size mismatch: ", stored.size() - consumed,
         " bytes follow the end of the zlib stream");
}

void check_padding(ByteSpan padding, uint64_t at, const std::string& file) {
  for (size_t i = 0; i < padding.size(); ++i)
    if (padding[i] != 0)
      fail(file, "data", "hidden data: padding byte at offset ", at + i, " is ", int(padding[i]), " (must be 0)");
}

ParsedFile parse_file(ByteSpan b, const Limits& limits, const std::string& file) {
  if (b.size() < kHeaderSize + kFooterSize)
    fail(file, "file", "file too short (", b.size(), " bytes; a checkpoint has at least ", kHeaderSize + kFooterSize,
         ")");
  ParsedFile p;
  p.header = decode_header(b.first(kHeaderSize), file);
  p.footer = decode_footer(b.last(kFooterSize), p.header, b.size(), limits, file);
  p.index_bytes = b.subspan(static_cast<size_t>(p.footer.index_offset), static_cast<size_t>(p.footer.index_length));
  p.index = decode_index(p.index_bytes, p.header, p.footer, limits, file);
  return p;
}

void verify_payloads(ByteSpan b, const Footer& footer, const Index& index, const std::string& file) {
  std::vector<uint32_t> order(index.tensors.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](uint32_t x, uint32_t y) {
    const TensorEntry &a = index.tensors[x], &c = index.tensors[y];
    return a.offset != c.offset ? a.offset < c.offset : a.stored_len < c.stored_len;
  });
  uint64_t pos = kHeaderSize;
  for (uint32_t i : order) {
    const TensorEntry& t = index.tensors[i];
    check_padding(b.subspan(static_cast<size_t>(pos), static_cast<size_t>(t.offset - pos)), pos, file);
    check_payload(t, index.sections[t.section].name, b.subspan(static_cast<size_t>(t.offset), static_cast<size_t>(t.stored_len)),
                  nullptr, file);
    pos = t.offset + t.stored_len;
  }
  check_padding(b.subspan(static_cast<size_t>(pos), static_cast<size_t>(footer.index_offset - pos)), pos, file);
}

}  // namespace ember::checkpoint::format
