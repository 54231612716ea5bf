// Conversion between Ember checkpoints and safetensors files (8-byte little-endian header length,
// a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then the data).
// The importer validates the header as strictly as the safetensors library does and maps the
// file, so tensors stream from the page cache into the checkpoint writer without a second copy.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "ember/checkpoint/checkpoint.h"
#include "tools/ckpt/commands.h"
#include "tools/ckpt/safetensors.h"
#include "ember/config.h"

namespace ember::ckpt_tool {

namespace ck = ember::checkpoint;
using json = nlohmann::ordered_json;

namespace {

constexpr uint64_t kMaxHeader = 100ull << 20;  // the safetensors library's limit

struct StDType {
  const char* name;
  DType dtype;
};
constexpr StDType kStDTypes[] = {{"F32", DType::f32}, {"F64", DType::f64}, {"F16", DType::f16}, {"BF16", DType::bf16},
                                 {"I32", DType::i32}, {"I64", DType::i64}, {"U8", DType::u8},   {"BOOL", DType::b8}};

const char* st_name(DType t) {
  for (auto& d : kStDTypes)
    if (d.dtype == t) return d.name;
  EMBER_THROW("[ember-ckpt] dtype ", dtype_name(t), " has no safetensors name");
}

// An owned descriptor and read-only mapping of a whole file.
struct MappedFile {
  int fd = -1;
  void* addr = nullptr;
  uint64_t size = 0;
  ~MappedFile() {
    if (addr) ::munmap(addr, size);
    if (fd >= 0) ::close(fd);
  }
  const uint8_t* data() const { return static_cast<const uint8_t*>(addr); }
};

std::shared_ptr<MappedFile> map_file(const std::string& path) {
  auto m = std::make_shared<MappedFile>();
  m->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (m->fd < 0) EMBER_THROW("[ember-ckpt] cannot open '", path, "': ", std::strerror(errno));
  struct stat st;
  if (::fstat(m->fd, &st) != 0 || !S_ISREG(st.st_mode)) EMBER_THROW("[ember-ckpt] '", path, "' is not a regular file");
  m->size = static_cast<uint64_t>(st.st_size);
  if (m->size > 0) {
    m->addr = ::mmap(nullptr, m->size, PROT_READ, MAP_PRIVATE, m->fd, 0);
    if (m->addr == MAP_FAILED) {
      m->addr = nullptr;
      EMBER_THROW("[ember-ckpt] cannot map '", path, "': ", std::strerror(errno));
    }
  }
  return m;
}

void write_all(int fd, const void* p, size_t n, const std::string& path) {
  const auto* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    ssize_t w = ::write(fd, b, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) EMBER_THROW("[ember-ckpt] writing '", path, "' failed: ", std::strerror(errno));
    b += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

void export_safetensors(const std::string& checkpoint, const std::string& out_path) {
  ck::Reader r(checkpoint);
  if (!r.has_section(ck::kStateDict))
    EMBER_THROW("[ember-ckpt] '", checkpoint, "' has no state_dict section to export");
  std::vector<const ck::TensorInfo*> ts;
  for (auto& t : r.tensors())
    if (t.section == ck::kStateDict) ts.push_back(&t);
  // Largest elements first keeps every tensor aligned to its element size (as safetensors does).
  std::stable_sort(ts.begin(), ts.end(), [](const ck::TensorInfo* a, const ck::TensorInfo* b) {
    size_t ea = dtype_size(a->dtype), eb = dtype_size(b->dtype);
    return ea != eb ? ea > eb : a->name < b->name;
  });
  json header = json::object();
  header["__metadata__"] = json{{"format", "pt"}, {"ember_version", EMBER_VERSION_STRING}};
  uint64_t off = 0;
  for (auto* t : ts) {
    json shape = json::array();
    for (int64_t d : t->shape) shape.push_back(d);
    header[t->name] = json{{"dtype", st_name(t->dtype)}, {"shape", shape}, {"data_offsets", {off, off + t->nbytes}}};
    off += t->nbytes;
  }
  std::string h = header.dump();
  h.resize((h.size() + 7) / 8 * 8, ' ');
  std::string tmp = str_cat(out_path, ".tmp-", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) EMBER_THROW("[ember-ckpt] cannot create '", tmp, "': ", std::strerror(errno));
  try {
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * i));
    write_all(fd, len, 8, tmp);
    write_all(fd, h.data(), h.size(), tmp);
    for (auto* t : ts) {
      Tensor x = r.load_tensor(ck::kStateDict, t->name);
      if (x.nbytes()) write_all(fd, x.data_ptr(), x.nbytes(), tmp);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
      fd = -1;
      EMBER_THROW("[ember-ckpt] writing '", tmp, "' failed: ", std::strerror(errno));
    }
    fd = -1;
    if (::rename(tmp.c_str(), out_path.c_str()) != 0)
      EMBER_THROW("[ember-ckpt] renaming '", tmp, "' to '", out_path, "' failed: ", std::strerror(errno));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
}

SafetensorsFile read_safetensors(const std::string& in_path) {
  auto m = map_file(in_path);
  auto bad = [&](const auto&... args) -> Error {
    return Error(str_cat("[ember-ckpt] '", in_path, "': invalid safetensors file: ", args...));
  };
  if (m->size < 8) throw bad("file too short (", m->size, " bytes)");
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= static_cast<uint64_t>(m->data()[i]) << (8 * i);
  if (hlen > kMaxHeader) throw bad("header length ", hlen, " exceeds ", kMaxHeader);
  if (hlen > m->size - 8) throw bad("header length ", hlen, " runs past the end of the file (", m->size, " bytes)");
  const char* hp = reinterpret_cast<const char*>(m->data() + 8);
  if (hlen == 0 || hp[0] != '{') throw bad("the header does not start with '{'");
  json header;
  try {
    header = json::parse(hp, hp + hlen);
  } catch (const json::exception& e) {
    throw bad("header is not valid JSON: ", e.what());
  }
  if (!header.is_object()) throw bad("header is not a JSON object");
  const uint8_t* data = m->data() + 8 + hlen;
  const uint64_t data_size = m->size - 8 - hlen;

  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  SafetensorsFile out;
  ValueMap& meta = out.metadata;
  for (auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      if (!info.is_object()) throw bad("__metadata__ is not an object");
      for (auto& [k, v] : info.items()) {
        if (!v.is_string()) throw bad("__metadata__ value for '", k, "' is not a string");
        meta.emplace(k, Value(v.get<std::string>()));
      }
      continue;
    }
    if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets"))
      throw bad("entry '", name, "' needs dtype, shape and data_offsets");
    Entry e;
    e.name = name;
    const json& dt = info["dtype"];
    if (!dt.is_string()) throw bad("dtype of '", name, "' is not a string");
    bool found = false;
    for (auto& d : kStDTypes)
      if (dt.get<std::string>() == d.name) e.dtype = d.dtype, found = true;
    if (!found)
      throw bad("tensor '", name, "' has dtype ", dt.get<std::string>(),
                ", which Ember does not support (F32, F64, F16, BF16, I32, I64, U8, BOOL)");
    const json& sh = info["shape"];
    if (!sh.is_array() || sh.size() > static_cast<size_t>(kMaxRank))
      throw bad("shape of '", name, "' is not an array of at most ", kMaxRank, " dimensions");
    uint64_t numel = 1;
    for (auto& d : sh) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        throw bad("shape of '", name, "' has an invalid dimension ", d.dump());
      if (__builtin_mul_overflow(numel, d.get<uint64_t>(), &numel)) throw bad("shape of '", name, "' overflows");
      e.shape.push_back(d.get<int64_t>());
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel, dtype_size(e.dtype), &nbytes)) throw bad("size of '", name, "' overflows");
    const json& off = info["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw bad("data_offsets of '", name, "' are not two unsigned integers");
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    if (e.begin > e.end || e.end > data_size)
      throw bad("data_offsets [", e.begin, ", ", e.end, ") of '", name, "' lie outside the ", data_size,
                " data bytes");
    if (e.end - e.begin != nbytes)
      throw bad("tensor '", name, "' has ", e.end - e.begin, " bytes but its shape and dtype need ", nbytes);
    if (e.dtype == DType::b8)
      for (uint64_t i = e.begin; i < e.end; ++i)
        if (data[i] > 1) throw bad("BOOL tensor '", name, "' holds byte ", int(data[i]), " at element ", i - e.begin);
    entries.push_back(std::move(e));
  }
  // As the safetensors library requires: the tensors tile the data buffer exactly.
  std::vector<const Entry*> by_offset;
  for (auto& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Entry* a, const Entry* b) { return a->begin != b->begin ? a->begin < b->begin : a->end < b->end; });
  uint64_t pos = 0;
  for (auto* e : by_offset) {
    if (e->begin != pos)
      throw bad("tensor '", e->name, "' starts at data byte ", e->begin, " but the previous one ends at ", pos,
                " (overlap or gap)");
    pos = e->end;
  }
  if (pos != data_size) throw bad(data_size - pos, " data bytes are not covered by any tensor");

  for (auto& e : entries) {
    // The mapping stays alive as long as any tensor refers to it.
    Tensor t = e.end == e.begin ? empty(e.shape, e.dtype)
                                : from_blob(const_cast<uint8_t*>(data + e.begin), e.shape, e.dtype, kCPU,
                                            [m](void*) {});
    out.tensors.emplace(e.name, Value(t));
  }
  return out;
}

size_t import_safetensors(const std::string& in_path, const std::string& out_path, const ImportOptions& options) {
  SafetensorsFile st = read_safetensors(in_path);
  const size_t count = st.tensors.size();
  ValueMap root;
  root.emplace(ck::kStateDict, Value(std::move(st.tensors)));
  if (!st.metadata.empty())
    root.emplace(ck::kExtras, Value(ValueMap{{"safetensors_metadata", Value(std::move(st.metadata))}}));
  ck::SaveOptions opt;
  if (options.compress) opt.compression = ck::Compression::zlib;
  ck::save(out_path, Value(std::move(root)), opt);
  return count;
}

}  // namespace ember::ckpt_tool
