// The checkpoint reader: validates header, footer and index at open (reading only those), then
// loads tensors on demand from a private mapping or with pread, verifying their checksums.
#include <fcntl.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <functional>

#include "ember/checkpoint/checkpoint.h"
#include "checkpoint/format.h"
#include "checkpoint/posix_file.h"
#include "ember/runtime/parallel.h"

namespace ember::checkpoint {

namespace fmt = format;

namespace {

DType dtype_of(uint8_t code) {
  switch (static_cast<fmt::DTypeCode>(code)) {
    case fmt::DTypeCode::f32: return DType::f32;
    case fmt::DTypeCode::f64: return DType::f64;
    case fmt::DTypeCode::f16: return DType::f16;
    case fmt::DTypeCode::bf16: return DType::bf16;
    case fmt::DTypeCode::i32: return DType::i32;
    case fmt::DTypeCode::i64: return DType::i64;
    case fmt::DTypeCode::u8: return DType::u8;
    case fmt::DTypeCode::b8: return DType::b8;
  }
  EMBER_THROW("[checkpoint] unknown dtype code ", int(code));  // excluded by decode_index
}

// Builds Values bottom-up from the decoder's events.
class ValueBuilder : public fmt::Visitor {
 public:
  explicit ValueBuilder(std::function<Value(uint32_t)> tensor) : tensor_(std::move(tensor)) {}
  Value take() { return std::move(result_); }

  void on_null() override { emit(Value()); }
  void on_bool(bool b) override { emit(Value(b)); }
  void on_int(int64_t v) override { emit(Value(v)); }
  void on_float(double v) override { emit(Value(v)); }
  void on_string(std::string_view s) override { emit(Value(std::string(s))); }
  void on_bytes(fmt::ByteSpan b) override { emit(Value(Bytes{std::vector<uint8_t>(b.begin(), b.end())})); }
  void begin_list(uint32_t) override { stack_.emplace_back(false); }
  void begin_map(uint32_t) override { stack_.emplace_back(true); }
  void on_key(std::string_view k) override { stack_.back().key.assign(k); }
  void end_list() override { pop(); }
  void end_map() override { pop(); }
  void on_tensor(uint32_t i) override { emit(tensor_(i)); }

 private:
  struct Frame {
    explicit Frame(bool m) : is_map(m) {}
    bool is_map;
    ValueList list;
    ValueMap map;
    std::string key;
  };
  void pop() {
    Frame& f = stack_.back();
    Value v = f.is_map ? Value(std::move(f.map)) : Value(std::move(f.list));
    stack_.pop_back();
    emit(std::move(v));
  }
  void emit(Value v) {
    if (stack_.empty()) {
      result_ = std::move(v);
    } else if (stack_.back().is_map) {
      ValueMap& m = stack_.back().map;
      m.emplace_hint(m.end(), stack_.back().key, std::move(v));
    } else {
      stack_.back().list.push_back(std::move(v));
    }
  }
  std::function<Value(uint32_t)> tensor_;
  std::vector<Frame> stack_;
  Value result_;
};

// CRC of mapped bytes: large ranges are split into 8 MiB chunks that are mapped in and summed on
// the thread pool, then combined (the result equals a sequential CRC).
uint32_t mapped_crc(const posix::Mapping& m, uint64_t offset, uint64_t n) {
  constexpr uint64_t kChunk = uint64_t{8} << 20;
  if (n <= 2 * kChunk || get_num_threads() == 1) {
    m.will_need(offset, n);
    return fmt::crc32(fmt::ByteSpan(m.data() + offset, static_cast<size_t>(n)));
  }
  const int64_t chunks = static_cast<int64_t>((n + kChunk - 1) / kChunk);
  std::vector<uint32_t> crcs(static_cast<size_t>(chunks));
  auto len = [&](int64_t i) { return std::min(kChunk, n - static_cast<uint64_t>(i) * kChunk); };
  parallel_for(0, chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      uint64_t off = offset + static_cast<uint64_t>(i) * kChunk;
      m.will_need(off, len(i));
      crcs[static_cast<size_t>(i)] = fmt::crc32(fmt::ByteSpan(m.data() + off, static_cast<size_t>(len(i))));
    }
  });
  uLong crc = crcs[0];
  for (int64_t i = 1; i < chunks; ++i) crc = crc32_combine(crc, crcs[static_cast<size_t>(i)], static_cast<z_off_t>(len(i)));
  return static_cast<uint32_t>(crc);
}

}  // namespace

struct Reader::State {
  std::string path;
  ReadOptions opt;
  posix::File file;
  uint64_t size = 0;
  fmt::Header header;
  fmt::Footer footer;
  std::vector<uint8_t> index_bytes;
  fmt::Index index;
  std::vector<SectionInfo> sections;
  std::vector<TensorInfo> tensors;
  std::shared_ptr<posix::Mapping> map;
  mutable std::atomic<uint64_t> loaded{0};

  uint32_t section_id(const std::string& name) const {
    auto it = std::lower_bound(sections.begin(), sections.end(), name,
                               [](const SectionInfo& s, const std::string& n) { return s.name < n; });
    if (it == sections.end() || it->name != name) {
      std::string present;
      for (auto& s : sections) present += (present.empty() ? "" : ", ") + s.name;
      EMBER_THROW("[checkpoint] '", path, "': no section '", name, "' (present: ", present, ")");
    }
    return static_cast<uint32_t>(it - sections.begin());
  }

  uint32_t tensor_id(const std::string& section, const std::string& name) const {
    const fmt::SectionEntry& s = index.sections[section_id(section)];
    auto first = index.tensors.begin() + s.first_tensor, last = first + s.tensor_count;
    auto it = std::lower_bound(first, last, name, [](const fmt::TensorEntry& t, const std::string& n) { return t.name < n; });
    if (it == last || it->name != name)
      EMBER_THROW("[checkpoint] '", path, "': section '", section, "' has no tensor '", name, "'");
    return static_cast<uint32_t>(it - index.tensors.begin());
  }

  Tensor load(uint32_t id) const {
    const fmt::TensorEntry& e = index.tensors[id];
    const TensorInfo& info = tensors[id];
    const std::string& section = index.sections[e.section].name;
    bool check = opt.verify != Verify::none;
    loaded.fetch_add(e.stored_len, std::memory_order_relaxed);
    Tensor t;
    if (e.stored_len == 0) {
      if (check) fmt::check_payload(e, section, {}, nullptr, path);
      t = empty(info.shape, info.dtype);
    } else if (map && e.codec == fmt::Codec::raw) {
      uint8_t* p = map->data() + e.offset;
      if (check) {
        uint32_t crc = mapped_crc(*map, e.offset, e.stored_len);
        fmt::check_payload(e, section, fmt::ByteSpan(p, e.stored_len), nullptr, path, &crc);
      }
      std::shared_ptr<posix::Mapping> keep = map;
      t = from_blob(p, info.shape, info.dtype, kCPU, [keep](void*) {});
    } else {
      t = empty(info.shape, info.dtype);
      auto* out = e.raw_len ? static_cast<uint8_t*>(t.data_ptr()) : nullptr;
      if (e.codec == fmt::Codec::raw) {
        posix::pread_all(file, out, e.stored_len, e.offset);
        if (check) fmt::check_payload(e, section, fmt::ByteSpan(out, e.stored_len), nullptr, path);
      } else {
        std::vector<uint8_t> stored;
        fmt::ByteSpan span;
        if (map) {
          span = fmt::ByteSpan(map->data() + e.offset, e.stored_len);
        } else {
          stored.resize(e.stored_len);  // within the file, checked at open
          posix::pread_all(file, stored.data(), stored.size(), e.offset);
          span = stored;
        }
        // Inflating is part of loading, so a zlib tensor is always checked.
        fmt::check_payload(e, section, span, out, path);
      }
    }
    if (opt.device != kCPU) t = t.to(opt.device);
    return t;
  }

  Value build(uint32_t s, bool skeleton) const {
    const fmt::SectionEntry& sec = index.sections[s];
    ValueBuilder b([&](uint32_t i) -> Value {
      uint32_t id = sec.first_tensor + i;
      if (skeleton) return Value(ValueMap{{"$tensor", Value(index.tensors[id].name)}});
      return Value(load(id));
    });
    fmt::decode_section_value(index_bytes, index, s, opt.limits, b, path);
    return b.take();
  }
};

Reader::Reader(std::string path, ReadOptions options) : s_(std::make_unique<State>()) {
  State& s = *s_;
  s.path = std::move(path);
  s.opt = std::move(options);
  s.file = posix::open_file(s.path, O_RDONLY);
  s.size = posix::file_size(s.file);
  constexpr uint64_t kMin = fmt::kHeaderSize + fmt::kFooterSize;
  if (s.size < kMin)
    EMBER_THROW("[checkpoint] '", s.path, "': file: file too short (", s.size, " bytes; a checkpoint has at least ",
                kMin, ")");
  uint8_t buf[fmt::kHeaderSize];
  posix::pread_all(s.file, buf, sizeof buf, 0);
  s.header = fmt::decode_header(buf, s.path);
  posix::pread_all(s.file, buf, sizeof buf, s.size - fmt::kFooterSize);
  s.footer = fmt::decode_footer(buf, s.header, s.size, s.opt.limits, s.path);
  s.index_bytes.resize(s.footer.index_length);  // bounded by the file size and the limit
  posix::pread_all(s.file, s.index_bytes.data(), s.index_bytes.size(), s.footer.index_offset);
  s.index = fmt::decode_index(s.index_bytes, s.header, s.footer, s.opt.limits, s.path);
  for (auto& sec : s.index.sections) {
    SectionInfo si;
    si.name = sec.name;
    si.tensor_count = sec.tensor_count;
    si.metadata_bytes = sec.meta_length;
    for (uint32_t i = 0; i < sec.tensor_count; ++i) {
      const fmt::TensorEntry& e = s.index.tensors[sec.first_tensor + i];
      si.tensor_bytes += e.raw_len;
      si.stored_bytes += e.stored_len;
    }
    s.sections.push_back(std::move(si));
  }
  for (auto& e : s.index.tensors) {
    TensorInfo t;
    t.section = s.index.sections[e.section].name;
    t.name = e.name;
    t.dtype = dtype_of(e.dtype);
    for (int d = 0; d < e.rank; ++d) t.shape.push_back(static_cast<int64_t>(e.dims[d]));
    t.offset = e.offset;
    t.stored_bytes = e.stored_len;
    t.nbytes = e.raw_len;
    t.compressed = e.codec == fmt::Codec::zlib;
    t.crc32 = e.crc;
    s.tensors.push_back(std::move(t));
  }
  if (s.opt.mmap) s.map = std::make_shared<posix::Mapping>(s.file, s.size, true);
  if (s.opt.verify == Verify::all) verify_all();
}

Reader::~Reader() = default;
Reader::Reader(Reader&&) noexcept = default;
Reader& Reader::operator=(Reader&&) noexcept = default;

const std::string& Reader::path() const { return s_->path; }
uint16_t Reader::format_major() const { return s_->header.major; }
uint16_t Reader::format_minor() const { return s_->header.minor; }
bool Reader::weights_only() const { return (s_->header.optional_flags & fmt::kFlagWeightsOnly) != 0; }
uint64_t Reader::file_size() const { return s_->size; }
uint64_t Reader::index_bytes() const { return s_->footer.index_length; }
int Reader::align_log2() const { return s_->header.align_log2; }
std::array<uint8_t, 16> Reader::file_id() const { return s_->header.file_id; }
const std::vector<SectionInfo>& Reader::sections() const { return s_->sections; }
const std::vector<TensorInfo>& Reader::tensors() const { return s_->tensors; }
uint64_t Reader::payload_bytes_loaded() const { return s_->loaded.load(); }

bool Reader::has_section(const std::string& name) const {
  auto& secs = s_->sections;
  auto it = std::lower_bound(secs.begin(), secs.end(), name,
                             [](const SectionInfo& s, const std::string& n) { return s.name < n; });
  return it != secs.end() && it->name == name;
}

const TensorInfo& Reader::tensor_info(const std::string& section, const std::string& name) const {
  return s_->tensors[s_->tensor_id(section, name)];
}

Value Reader::section(const std::string& name) const { return s_->build(s_->section_id(name), false); }
Value Reader::skeleton(const std::string& name) const { return s_->build(s_->section_id(name), true); }
Tensor Reader::load_tensor(const std::string& section, const std::string& name) const {
  return s_->load(s_->tensor_id(section, name));
}

Value Reader::load() const {
  std::vector<std::string> names;
  if (s_->opt.sections.empty()) {
    for (auto& s : s_->sections) names.push_back(s.name);
  } else {
    for (auto& n : s_->opt.sections) {
      s_->section_id(n);  // throws naming the sections present
      names.push_back(n);
    }
  }
  if (s_->opt.weights_only) {
    auto& skip = training_sections();
    std::erase_if(names, [&](const std::string& n) { return std::find(skip.begin(), skip.end(), n) != skip.end(); });
  }
  ValueMap root;
  for (auto& n : names) root.emplace(n, section(n));
  return Value(std::move(root));
}

void Reader::verify_all() const {
  const State& s = *s_;
  std::shared_ptr<posix::Mapping> map = s.map ? s.map : std::make_shared<posix::Mapping>(s.file, s.size, false);
  fmt::verify_payloads(fmt::ByteSpan(map->data(), s.size), s.footer, s.index, s.path);
}

Value load(const std::string& path, const ReadOptions& options) { return Reader(path, options).load(); }

}  // namespace ember::checkpoint
