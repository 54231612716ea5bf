// The checkpoint writer: streams each section's tensors to a temporary file as it walks the
// section's value, then writes the index and footer and commits by fsync + rename + fsync(dir).
#include <fcntl.h>
#include <signal.h>
#include <dirent.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <unordered_map>

#include "ember/checkpoint/checkpoint.h"
#include "checkpoint/format.h"
#include "checkpoint/posix_file.h"
#include "ember/config.h"

namespace ember::checkpoint {

namespace fmt = format;

namespace {

constexpr size_t kChunk = size_t{1} << 20;  // CRC a chunk while it is in cache, then write it

uint8_t dtype_code(DType t) {
  switch (t) {
    case DType::f32: return static_cast<uint8_t>(fmt::DTypeCode::f32);
    case DType::f64: return static_cast<uint8_t>(fmt::DTypeCode::f64);
    case DType::f16: return static_cast<uint8_t>(fmt::DTypeCode::f16);
    case DType::bf16: return static_cast<uint8_t>(fmt::DTypeCode::bf16);
    case DType::i32: return static_cast<uint8_t>(fmt::DTypeCode::i32);
    case DType::i64: return static_cast<uint8_t>(fmt::DTypeCode::i64);
    case DType::u8: return static_cast<uint8_t>(fmt::DTypeCode::u8);
    case DType::b8: return static_cast<uint8_t>(fmt::DTypeCode::b8);
  }
  EMBER_THROW("[checkpoint] invalid dtype ", static_cast<int>(t));
}

std::string random_hex(size_t nbytes) {
  std::random_device rd;
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < nbytes; ++i) {
    auto b = static_cast<uint8_t>(rd());
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

}  // namespace

struct Writer::State {
  std::string path, tmp_path;
  SaveOptions opt;
  posix::File file;
  uint64_t pos = 0;
  fmt::Header header;
  std::vector<fmt::SectionSource> sections;
  Limits limits;  // the writer refuses what a default reader would refuse
  bool done = false;    // committed or abandoned
  bool failed = false;  // an error left the temporary file in an unknown state

  // Write-back started early (durable saves on Linux): every kFlushBytes written are handed to the
  // disk at once, and the writer waits for the range kFlushDepth steps back, so the disk works
  // while the next bytes are checksummed and copied, the final fsync finds little left to do, and
  // the dirty pages of a large checkpoint stay bounded instead of piling up in the page cache.
  static constexpr uint64_t kFlushBytes = uint64_t{32} << 20;
  static constexpr size_t kFlushDepth = 4;
  uint64_t flushed = 0;                // bytes before this offset were handed to write-back
  std::vector<uint64_t> flush_starts;  // ranges [start, start + kFlushBytes) in write-back

  void write(const void* p, size_t n) {
    posix::write_all(file, p, n);
    pos += n;
    if (opt.durable && pos - flushed >= kFlushBytes) start_writeback();
  }
  void start_writeback() {
#if defined(__linux__)
    while (pos - flushed >= kFlushBytes) {
      // Failures here only lose the overlap: fsync at commit is what makes the file durable.
      ::sync_file_range(file.fd(), static_cast<off_t>(flushed), static_cast<off_t>(kFlushBytes),
                        SYNC_FILE_RANGE_WRITE);
      flush_starts.push_back(flushed);
      flushed += kFlushBytes;
      if (flush_starts.size() > kFlushDepth) {
        uint64_t start = flush_starts.front();
        flush_starts.erase(flush_starts.begin());
        ::sync_file_range(file.fd(), static_cast<off_t>(start), static_cast<off_t>(kFlushBytes),
                          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
      }
    }
#else
    flushed = pos;
#endif
  }
  void pad_to(uint64_t offset) {
    static const uint8_t zeros[1 << 16] = {};
    while (pos < offset) write(zeros, static_cast<size_t>(std::min<uint64_t>(offset - pos, sizeof zeros)));
  }
  void remove_temp() {
    if (file.is_open()) {
      try {
        file.close();
      } catch (const Error&) {
      }
    }
    ::unlink(tmp_path.c_str());
  }

  // Writes one tensor's bytes at the next aligned offset and returns its index entry.
  fmt::TensorEntry write_tensor(const Tensor& t, const std::string& section, const std::string& name) {
    EMBER_CHECK(t.defined(), "[checkpoint] section '", section, "': the tensor at '", name, "' is undefined");
    Tensor c = t.device().is_cpu() ? t : t.to(kCPU);
    if (!c.is_contiguous()) c = c.contiguous();
    fmt::TensorEntry e;
    e.name = name;
    e.dtype = dtype_code(c.dtype());
    e.rank = static_cast<uint8_t>(c.dim());
    for (int d = 0; d < c.dim(); ++d) e.dims[d] = static_cast<uint64_t>(c.shape()[d]);
    e.raw_len = c.nbytes();
    pad_to(fmt::align_up(pos, header.alignment()));
    e.offset = pos;
    const auto* data = e.raw_len ? static_cast<const uint8_t*>(c.data_ptr()) : nullptr;
    if (opt.compression == Compression::zlib && e.raw_len >= opt.min_compress_bytes && e.raw_len > 0) {
      if (write_deflated(data, e)) return e;
      // Deflate did not shrink it: rewind and store it raw.
      if (::lseek(file.fd(), static_cast<off_t>(e.offset), SEEK_SET) < 0 ||
          ::ftruncate(file.fd(), static_cast<off_t>(e.offset)) != 0)
        EMBER_THROW("[checkpoint] rewinding '", tmp_path, "' failed: ", std::strerror(errno));
      pos = e.offset;
      flushed = std::min(flushed, pos);
    }
    e.codec = fmt::Codec::raw;
    uint32_t crc = 0;
    for (uint64_t done = 0; done < e.raw_len;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, e.raw_len - done));
      crc = fmt::crc32(fmt::ByteSpan(data + done, n), crc);
      write(data + done, n);
      done += n;
    }
    e.crc = crc;
    e.stored_len = e.raw_len;
    return e;
  }

  // Streams a zlib stream of the tensor; false when it would not be smaller than the raw bytes.
  bool write_deflated(const uint8_t* data, fmt::TensorEntry& e) {
    z_stream zs{};
    if (deflateInit(&zs, opt.zlib_level) != Z_OK) EMBER_THROW("[checkpoint] zlib deflateInit failed");
    struct Guard {
      z_stream* z;
      ~Guard() { deflateEnd(z); }
    } guard{&zs};
    std::vector<uint8_t> out(kChunk);
    uint64_t fed = 0, stored = 0;
    uint32_t crc = 0;
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
      if (zs.avail_in == 0 && fed < e.raw_len) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(e.raw_len - fed, size_t{1} << 30));
        zs.next_in = const_cast<Bytef*>(data + fed);
        zs.avail_in = static_cast<uInt>(n);
        fed += n;
      }
      zs.next_out = out.data();
      zs.avail_out = static_cast<uInt>(out.size());
      rc = deflate(&zs, fed == e.raw_len ? Z_FINISH : Z_NO_FLUSH);
      if (rc == Z_STREAM_ERROR) EMBER_THROW("[checkpoint] zlib deflate failed");
      size_t n = out.size() - zs.avail_out;
      if (stored + n >= e.raw_len) return false;
      crc = fmt::crc32(fmt::ByteSpan(out.data(), n), crc);
      write(out.data(), n);
      stored += n;
    }
    e.codec = fmt::Codec::zlib;
    e.crc = crc;
    e.stored_len = stored;
    return true;
  }
};

namespace {

// Walks a section's value: encodes metadata, writes tensors as they come, and records where each
// tensor reference sits so that it can be patched once the tensor order (by name) is known.
class SectionWriter {
 public:
  SectionWriter(Writer::State& w, std::string section) : w_(w), section_(std::move(section)), enc_(meta_) {}

  fmt::SectionSource finish(const Value& v) {
    walk(v, 1);
    // Sort tensors by name and patch the references (written in visiting order).
    std::vector<uint32_t> order(tensors_.size());
    for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return tensors_[a].name < tensors_[b].name; });
    std::vector<uint32_t> rank(order.size());
    for (uint32_t r = 0; r < order.size(); ++r) rank[order[r]] = r;
    for (uint32_t i = 0; i < ref_pos_.size(); ++i) {
      uint32_t r = rank[i];
      for (int k = 0; k < 4; ++k) meta_[ref_pos_[i] + k] = static_cast<uint8_t>(r >> (8 * k));
    }
    fmt::SectionSource s;
    s.name = section_;
    s.meta = std::move(meta_);
    for (uint32_t r : order) s.tensors.push_back(std::move(tensors_[r]));
    return s;
  }

 private:
  template <typename... Args>
  [[noreturn]] void fail(const Args&... args) {
    EMBER_THROW("[checkpoint] section '", section_, "' at path '", path_, "': ", args...);
  }
  void check_count(size_t n) {
    if (n > UINT32_MAX) fail("a container of ", n, " items exceeds the format's 2^32 - 1");
  }
  void walk(const Value& v, uint32_t depth) {
    if (depth > w_.limits.max_depth) fail("nesting deeper than ", w_.limits.max_depth, " levels");
    switch (v.kind()) {
      case Value::Kind::Null: enc_.null(); return;
      case Value::Kind::Bool: enc_.boolean(v.as_bool()); return;
      case Value::Kind::Int: enc_.int64(v.as_int()); return;
      case Value::Kind::Float: enc_.float64(v.as_double()); return;
      case Value::Kind::String: {
        const std::string& s = v.as_string();
        if (!fmt::valid_utf8(s)) fail("string is not valid UTF-8 (store binary data as Bytes)");
        if (s.size() > w_.limits.max_string_bytes)
          fail("string of ", s.size(), " bytes exceeds the limit of ", w_.limits.max_string_bytes);
        enc_.string(s);
        return;
      }
      case Value::Kind::Bytes: {
        const auto& b = v.as_bytes().data;
        if (b.size() > w_.limits.max_string_bytes)
          fail("bytes value of ", b.size(), " bytes exceeds the limit of ", w_.limits.max_string_bytes,
               " (store large data as a u8 tensor)");
        enc_.bytes(b);
        return;
      }
      case Value::Kind::List: {
        const ValueList& l = v.as_list();
        check_count(l.size());
        enc_.begin_list(static_cast<uint32_t>(l.size()));
        for (size_t i = 0; i < l.size(); ++i) {
          size_t saved = push(std::to_string(i));
          walk(l[i], depth + 1);
          path_.resize(saved);
        }
        return;
      }
      case Value::Kind::Map: {
        const ValueMap& m = v.as_map();
        check_count(m.size());
        enc_.begin_map(static_cast<uint32_t>(m.size()));
        for (auto& [k, item] : m) {
          std::string problem = fmt::name_problem(k, w_.limits.max_name_bytes, true);
          if (!problem.empty()) fail("key '", k, "' ", problem);
          enc_.key(k);
          size_t saved = push(k);
          walk(item, depth + 1);
          path_.resize(saved);
        }
        return;
      }
      case Value::Kind::Tensor: {
        std::string problem = fmt::name_problem(path_, w_.limits.max_name_bytes, false);
        if (!problem.empty())
          fail("a tensor needs a name made of its map keys and list indices, and this one ", problem,
               path_.empty() ? " (wrap the tensor in a map)" : "");
        if (!names_.emplace(path_, static_cast<uint32_t>(tensors_.size())).second)
          fail("two tensors map to the dotted name '", path_, "' (keys containing '.' collide with nested maps)");
        ref_pos_.push_back(meta_.size() + 1);  // after the tag byte
        enc_.tensor(0);
        tensors_.push_back(w_.write_tensor(v.as_tensor(), section_, path_));
        return;
      }
    }
    fail("unknown value kind");
  }
  size_t push(const std::string& seg) {
    size_t saved = path_.size();
    if (!path_.empty()) path_ += '.';
    path_ += seg;
    return saved;
  }

  Writer::State& w_;
  std::string section_;
  std::vector<uint8_t> meta_;
  fmt::ValueEncoder enc_;
  std::string path_;
  std::vector<fmt::TensorEntry> tensors_;
  std::vector<size_t> ref_pos_;
  std::unordered_map<std::string, uint32_t> names_;
};

}  // namespace

Writer::Writer(std::string path, SaveOptions options) : s_(std::make_unique<State>()) {
  s_->path = std::move(path);
  s_->opt = options;
  EMBER_CHECK(options.align_log2 >= fmt::kMinAlignLog2 && options.align_log2 <= fmt::kMaxAlignLog2,
              "[checkpoint] SaveOptions::align_log2 is ", options.align_log2, ", expected ", int(fmt::kMinAlignLog2),
              "..", int(fmt::kMaxAlignLog2));
  EMBER_CHECK(options.zlib_level >= -1 && options.zlib_level <= 9, "[checkpoint] SaveOptions::zlib_level is ",
              options.zlib_level, ", expected -1..9");
  std::string base = posix::base_name(s_->path);
  EMBER_CHECK(!base.empty() && base != "." && base != "..", "[checkpoint] '", s_->path, "' does not name a file");
  s_->tmp_path = str_cat(posix::dir_name(s_->path), "/.", base, ".tmp-", ::getpid(), "-", random_hex(6));
  s_->file = posix::open_file(s_->tmp_path, O_WRONLY | O_CREAT | O_EXCL, 0666);
  s_->header.align_log2 = static_cast<uint8_t>(options.align_log2);
  s_->header.optional_flags = options.weights_only ? fmt::kFlagWeightsOnly : 0;
  if (options.file_id) {
    s_->header.file_id = *options.file_id;
  } else {
    std::random_device rd;
    for (auto& b : s_->header.file_id) b = static_cast<uint8_t>(rd());
  }
  try {
    auto h = fmt::encode_header(s_->header);
    s_->write(h.data(), h.size());
  } catch (...) {
    s_->remove_temp();
    throw;
  }
}

Writer::~Writer() {
  if (s_ && !s_->done) s_->remove_temp();
}

const std::string& Writer::path() const { return s_->path; }

void Writer::abandon() {
  if (s_->done) return;
  s_->done = true;
  s_->remove_temp();
}

void Writer::add_section(const std::string& name, const Value& value) {
  EMBER_CHECK(!s_->done, "[checkpoint] the writer for '", s_->path, "' was already committed or abandoned");
  EMBER_CHECK(!s_->failed, "[checkpoint] the writer for '", s_->path, "' failed earlier; start a new Writer");
  std::string problem = fmt::name_problem(name, s_->limits.max_name_bytes, false);
  EMBER_CHECK(problem.empty(), "[checkpoint] section name '", name, "' ", problem);
  for (auto& s : s_->sections)
    EMBER_CHECK(s.name != name, "[checkpoint] section '", name, "' was added twice to '", s_->path, "'");
  if (s_->opt.weights_only) {
    auto& skip = training_sections();
    if (std::find(skip.begin(), skip.end(), name) != skip.end()) return;
  }
  try {
    s_->sections.push_back(SectionWriter(*s_, name).finish(value));
  } catch (...) {
    s_->failed = true;
    throw;
  }
  EMBER_CHECK(s_->sections.back().meta.size() <= UINT32_MAX, "[checkpoint] section '", name,
              "' metadata exceeds 4 GiB");
}

void Writer::commit() {
  EMBER_CHECK(!s_->done, "[checkpoint] the writer for '", s_->path, "' was already committed or abandoned");
  EMBER_CHECK(!s_->failed, "[checkpoint] the writer for '", s_->path, "' failed earlier; start a new Writer");
  bool has_version = false;
  for (auto& s : s_->sections) has_version |= s.name == kEmberVersion;
  if (!has_version) add_section(kEmberVersion, Value(std::string(EMBER_VERSION_STRING)));
  try {
    auto& secs = s_->sections;
    std::sort(secs.begin(), secs.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    size_t total = 0;
    for (auto& s : secs) total += s.tensors.size();
    EMBER_CHECK(total <= s_->limits.max_tensors, "[checkpoint] ", total, " tensors exceed the limit of ",
                s_->limits.max_tensors);
    s_->pad_to(fmt::align_up(s_->pos, s_->header.alignment()));
    fmt::Footer footer;
    footer.index_offset = s_->pos;
    std::vector<uint8_t> index = fmt::encode_index(secs);
    EMBER_CHECK(index.size() <= s_->limits.max_index_bytes, "[checkpoint] the index of ", index.size(),
                " bytes exceeds the reader limit of ", s_->limits.max_index_bytes);
    footer.index_length = index.size();
    footer.index_crc = fmt::crc32(index);
    footer.file_id = s_->header.file_id;
    s_->write(index.data(), index.size());
    auto f = fmt::encode_footer(footer);
    s_->write(f.data(), f.size());
    if (s_->opt.durable) posix::fsync_file(s_->file);
    s_->file.close();
    if (::rename(s_->tmp_path.c_str(), s_->path.c_str()) != 0)
      EMBER_THROW("[checkpoint] renaming '", s_->tmp_path, "' to '", s_->path, "' failed: ", std::strerror(errno));
    s_->done = true;
    if (s_->opt.durable) posix::fsync_parent_dir(s_->path);
  } catch (...) {
    if (!s_->done) {
      s_->failed = true;
      s_->done = true;
      s_->remove_temp();
    }
    throw;
  }
}

void save(const std::string& path, const Value& root, const SaveOptions& options) {
  EMBER_CHECK(root.is_map(), "[checkpoint] save('", path, "'): the root must be a map of sections, got a ",
              Value::kind_name(root.kind()));
  Writer w(path, options);
  for (auto& [name, value] : root.as_map()) w.add_section(name, value);
  w.commit();
}

size_t sweep_stale_temp_files(const std::string& target_path) {
  std::string dir = posix::dir_name(target_path);
  std::string prefix = str_cat(".", posix::base_name(target_path), ".tmp-");
  DIR* d = ::opendir(dir.c_str());
  if (!d) EMBER_THROW("[checkpoint] cannot list '", dir, "': ", std::strerror(errno));
  std::vector<std::string> stale;
  while (dirent* ent = ::readdir(d)) {
    std::string_view n = ent->d_name;
    if (!n.starts_with(prefix)) continue;
    std::string_view rest = n.substr(prefix.size());
    size_t dash = rest.find('-');
    if (dash == 0 || dash == std::string_view::npos || dash > 9) continue;
    long pid = 0;
    bool digits = true;
    for (size_t i = 0; i < dash; ++i) {
      digits &= rest[i] >= '0' && rest[i] <= '9';
      pid = pid * 10 + (rest[i] - '0');
    }
    if (digits && pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
      stale.push_back(str_cat(dir, "/", n));
  }
  ::closedir(d);
  size_t removed = 0;
  for (auto& p : stale) removed += ::unlink(p.c_str()) == 0;
  return removed;
}

}  // namespace ember::checkpoint
