// IDX reading through zlib's gz* functions, which read gzip and plain files alike. The header's
// declared size is trusted for an allocation only once it is plausible: equal to the data in a
// plain file, or within deflate's maximum expansion (1032:1) of a gzip file's size.
#include "ember/train/data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "ember/runtime/error.h"

namespace ember::data {
namespace {

// Deflate cannot expand data by more than 1032:1; gzip adds at least 18 bytes of framing.
constexpr uint64_t kMaxDeflateRatio = 1032;

const char* idx_type_name(uint8_t code) {
  switch (code) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "not an IDX type";
  }
}

std::string hex(uint32_t v, int digits) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%0*X", digits, v);
  return buf;
}

// An open IDX file (gzip or plain). read() returns fewer bytes than asked only at the end of the
// data; gzip and I/O errors throw naming the file.
class IdxFile {
 public:
  explicit IdxFile(std::string path) : path_(std::move(path)) {
    errno = 0;
    f_ = gzopen(path_.c_str(), "rb");
    if (!f_) EMBER_THROW("[idx] ", path_, ": cannot open (", errno ? std::strerror(errno) : "out of memory", ")");
    gzbuffer(f_, 1u << 17);  // fewer, larger reads than zlib's 8 KiB default
  }
  ~IdxFile() { gzclose(f_); }
  IdxFile(const IdxFile&) = delete;
  IdxFile& operator=(const IdxFile&) = delete;

  size_t read(void* dst, size_t n) {
    size_t got = 0;
    while (got < n) {
      unsigned want = static_cast<unsigned>(std::min<size_t>(n - got, size_t{1} << 30));
      int r = gzread(f_, static_cast<char*>(dst) + got, want);
      if (r < 0) fail();
      got += static_cast<size_t>(r);
      total_ += static_cast<uint64_t>(r);
      if (static_cast<unsigned>(r) < want) {
        int err = Z_OK;
        gzerror(f_, &err);
        if (err != Z_OK) fail();  // Z_BUF_ERROR: the gzip stream ended early
        break;
      }
    }
    return got;
  }
  // Reads to the end of the data and returns how many bytes that was.
  uint64_t count_rest() {
    std::vector<char> scratch(size_t{1} << 16);
    uint64_t n = 0;
    for (size_t r; (r = read(scratch.data(), scratch.size())) > 0;) n += r;
    return n;
  }
  bool is_gzip() { return gzdirect(f_) == 0; }

 private:
  [[noreturn]] void fail() {
    int err = Z_OK;
    const char* msg = gzerror(f_, &err);
    if (err == Z_ERRNO) EMBER_THROW("[idx] ", path_, ": read error (", std::strerror(errno), ")");
    if (err == Z_BUF_ERROR)
      EMBER_THROW("[idx] ", path_, ": truncated gzip stream: it ends after ", total_, " bytes of data (", msg, ")");
    EMBER_THROW("[idx] ", path_, ": corrupt gzip data after ", total_, " bytes (", msg, ")");
  }

  std::string path_;
  gzFile f_ = nullptr;
  uint64_t total_ = 0;
};

// "60000 images of 28x28" / "60000 labels" / "dims (2, 3)", and what the payload holds.
std::string describe(const std::vector<int64_t>& dims, const char** unit) {
  if (dims.size() == 3) {
    *unit = "pixels";
    return str_cat(dims[0], " images of ", dims[1], "x", dims[2]);
  }
  if (dims.size() == 1) {
    *unit = "labels";
    return str_cat(dims[0], " labels");
  }
  *unit = "data";
  return str_cat("dims ", Shape(dims).str());
}

[[noreturn]] void throw_size_mismatch(const std::string& path, const std::vector<int64_t>& dims, uint64_t declared,
                                      uint64_t actual) {
  const char* unit = nullptr;
  std::string what = describe(dims, &unit);
  std::string detail = actual > declared ? str_cat("expected ", declared, ": ", actual - declared, " trailing bytes")
                                         : str_cat("expected ", declared);
  EMBER_THROW("[idx] ", path, ": header says ", what, " but the file holds ", actual, " bytes of ", unit, " (", detail,
              ")");
}

const char* kind_of_rank(int rank) { return rank == 3 ? "images" : rank == 1 ? "labels" : "data"; }

}  // namespace

Tensor read_idx(const std::string& path, int rank) {
  EMBER_CHECK(rank >= 1 && rank <= kMaxRank, "[idx] rank ", rank, " is not supported (1..", kMaxRank, ")");
  IdxFile f(path);
  std::error_code ec;
  const uint64_t file_bytes = std::filesystem::file_size(path, ec);
  EMBER_CHECK(!ec, "[idx] ", path, ": cannot read (", ec.message(), ")");

  const uint32_t want_magic = 0x0800u | static_cast<uint32_t>(rank);
  uint8_t magic[4];
  size_t got = f.read(magic, 4);
  EMBER_CHECK(got == 4, "[idx] ", path, ": truncated header: the file holds ", got,
              " bytes, an IDX header needs at least 4 (magic)");
  const uint32_t m = (uint32_t{magic[0]} << 24) | (uint32_t{magic[1]} << 16) | (uint32_t{magic[2]} << 8) | magic[3];
  EMBER_CHECK(magic[0] == 0 && magic[1] == 0, "[idx] ", path, ": bad magic ", hex(m, 8), " (expected ",
              hex(want_magic, 8), "; an IDX file starts with two zero bytes, the element type and the rank)");
  EMBER_CHECK(magic[2] == 0x08, "[idx] ", path, ": element type ", hex(magic[2], 2), " (", idx_type_name(magic[2]),
              ") is not supported (expected 0x08, unsigned byte, as in MNIST)");
  EMBER_CHECK(magic[3] == rank, "[idx] ", path, ": magic ", hex(m, 8), " declares rank ", int{magic[3]},
              ", expected rank ", rank, " (", kind_of_rank(rank), ", magic ", hex(want_magic, 8), ")");

  const size_t header_bytes = 4 + 4 * static_cast<size_t>(rank);
  std::vector<uint8_t> raw(4 * static_cast<size_t>(rank));
  got = f.read(raw.data(), raw.size());
  EMBER_CHECK(got == raw.size(), "[idx] ", path, ": truncated header: it ends after ", 4 + got,
              " bytes, a rank-", rank, " IDX header is ", header_bytes, " bytes");
  std::vector<int64_t> dims(rank);
  uint64_t declared = 1;
  for (int i = 0; i < rank; ++i) {
    const uint8_t* b = raw.data() + 4 * i;
    dims[i] = (int64_t{b[0]} << 24) | (int64_t{b[1]} << 16) | (int64_t{b[2]} << 8) | b[3];
  }
  for (int i = 0; i < rank; ++i) {
    EMBER_CHECK(dims[i] > 0, "[idx] ", path, ": dimension ", i, " is 0 in the header (dims ", Shape(dims).str(), ")");
    declared *= static_cast<uint64_t>(dims[i]);  // each factor < 2^32 and the running product <= 2^31
    EMBER_CHECK(declared <= static_cast<uint64_t>(kMaxIdxBytes), "[idx] ", path, ": header declares dims ",
                Shape(dims).str(), ", more than the ", kMaxIdxBytes, "-byte limit of this reader");
  }

  // Plausibility before allocating: exact for plain files, deflate's bound for gzip.
  if (!f.is_gzip()) {
    const uint64_t actual = file_bytes >= header_bytes ? file_bytes - header_bytes : 0;
    if (actual != declared) throw_size_mismatch(path, dims, declared, actual);
  } else if (declared > kMaxDeflateRatio * file_bytes) {
    throw_size_mismatch(path, dims, declared, f.count_rest());
  }
  Tensor out = empty(Shape(dims), DType::u8);
  got = f.read(out.data_ptr(), declared);
  const uint64_t trailing = f.count_rest();
  if (got != declared || trailing != 0) throw_size_mismatch(path, dims, declared, got + trailing);
  return out;
}

Tensor read_idx_images(const std::string& path) { return read_idx(path, 3); }

Tensor read_idx_labels(const std::string& path, int64_t num_classes) {
  EMBER_CHECK(num_classes >= 1 && num_classes <= 256, "[idx] num_classes must be in 1..256, got ", num_classes);
  Tensor labels = read_idx(path, 1);
  const uint8_t* p = labels.data_ptr<uint8_t>();
  for (int64_t i = 0; i < labels.numel(); ++i)
    EMBER_CHECK(p[i] < num_classes, "[idx] ", path, ": label ", int{p[i]}, " at index ", i,
                " is out of range (expected 0..", num_classes - 1, ")");
  return labels;
}

}  // namespace ember::data
