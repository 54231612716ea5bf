// The .npy reader and writer (npy.h). A file is: the magic "\x93NUMPY", the version (major, minor
// bytes), the header length (u16 little-endian for 1.0, u32 for 2.0 and 3.0), the header (a Python
// dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with spaces and
// ended by '\n'), then the raw data.
#include "ember/checkpoint/npy.h"

#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include "ember/runtime/error.h"

namespace ember {

static_assert(std::endian::native == std::endian::little, "the .npy reader copies little-endian data as it is");

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
// Real headers are well under a kilobyte (NumPy's own reader refuses more than 10000 bytes by
// default); a longer one is a corrupt or hostile file.
constexpr uint64_t kMaxHeaderLen = 65536;

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

struct Header {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// The header text for an error message: printable ASCII as it is, the rest as \xNN, cut short.
std::string quoted(std::string_view text) {
  std::string out;
  for (unsigned char c : text.substr(0, 200)) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return text.size() > 200 ? out + "..." : out;
}

// A parser for exactly the dict literal NumPy writes: the keys descr (a string), fortran_order
// (True or False) and shape (a tuple of non-negative ints), each once, in any order.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& path) : text_(text), path_(path) {}

  Header parse() {
    Header h;
    bool seen_descr = false, seen_order = false, seen_shape = false;
    skip_ws();
    expect('{');
    while (true) {
      skip_ws();
      if (eat('}')) break;
      std::string key = string_literal("a key");
      skip_ws();
      expect(':');
      skip_ws();
      auto once = [&](bool& seen) {
        if (seen) fail("the key '" + key + "' appears twice");
        seen = true;
      };
      if (key == "descr") {
        once(seen_descr);
        h.descr = string_literal("the descr string (a structured dtype?)");
      } else if (key == "fortran_order") {
        once(seen_order);
        h.fortran_order = bool_literal();
      } else if (key == "shape") {
        once(seen_shape);
        h.shape = int_tuple();
      } else {
        fail("unknown key '" + key + "' (expected descr, fortran_order, shape)");
      }
      skip_ws();
      if (eat('}')) break;
      expect(',');
    }
    skip_ws();
    if (pos_ != text_.size()) fail("text after the closing '}'");
    if (!seen_descr || !seen_order || !seen_shape)
      fail(std::string("no '") + (!seen_descr ? "descr" : !seen_order ? "fortran_order" : "shape") + "' key");
    return h;
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    EMBER_THROW("[npy] '", path_, "': the header \"", quoted(text_), "\" does not parse: ", why, " (at byte ", pos_,
                ")");
  }
  void skip_ws() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }
  bool eat(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(std::string("expected '") + c + "'");
  }
  // A Python string literal in single or double quotes, without escapes.
  std::string string_literal(const char* what) {
    char q = pos_ < text_.size() ? text_[pos_] : '\0';
    if (q != '\'' && q != '"') fail(std::string("expected ") + what);
    size_t end = text_.find(q, pos_ + 1);
    if (end == std::string_view::npos) fail("unterminated string");
    std::string s(text_.substr(pos_ + 1, end - pos_ - 1));
    if (s.find('\\') != std::string::npos) fail("escapes in strings are not supported");
    pos_ = end + 1;
    return s;
  }
  bool bool_literal() {
    if (text_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (text_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    fail("fortran_order is not True or False");
  }
  std::vector<int64_t> int_tuple() {
    std::vector<int64_t> dims;
    expect('(');
    while (true) {
      skip_ws();
      if (eat(')')) break;
      if (pos_ >= text_.size() || text_[pos_] < '0' || text_[pos_] > '9')
        fail("the shape is not a tuple of non-negative ints");
      int64_t v = 0;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
        int digit = text_[pos_++] - '0';
        if (v > (INT64_MAX - digit) / 10) fail("a dimension of the shape does not fit in 64 bits");
        v = v * 10 + digit;
      }
      dims.push_back(v);
      skip_ws();
      if (eat(')')) break;
      expect(',');
    }
    return dims;
  }

  std::string_view text_;
  const std::string& path_;
  size_t pos_ = 0;
};

DType dtype_of_descr(const std::string& descr, const std::string& path) {
  if (descr == "<f4") return DType::f32;
  if (descr == "<f8") return DType::f64;
  if (descr == "|u1") return DType::u8;
  if (!descr.empty() && descr[0] == '>')
    EMBER_THROW("[npy] '", path, "': big-endian data ('", descr, "') is not supported; convert it with a.astype('<",
                descr.substr(1), "')");
  EMBER_THROW("[npy] '", path, "': dtype '", descr, "' is not supported (expected '<f4', '<f8' or '|u1')");
}

const char* descr_of_dtype(DType t) {
  switch (t) {
    case DType::f32: return "<f4";
    case DType::f64: return "<f8";
    case DType::u8: return "|u1";
    default: return nullptr;
  }
}

}  // namespace

Tensor read_npy(const std::string& path) {
  FilePtr f(std::fopen(path.c_str(), "rb"));
  if (!f) EMBER_THROW("[npy] cannot open '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(::fileno(f.get()), &st) != 0) EMBER_THROW("[npy] cannot stat '", path, "': ", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) EMBER_THROW("[npy] '", path, "' is not a regular file");
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  auto read_exact = [&](void* dst, size_t n, const char* what) {
    if (n > 0 && std::fread(dst, 1, n, f.get()) != n)
      EMBER_THROW("[npy] '", path, "': reading ", what, " failed: ",
                  std::ferror(f.get()) ? std::strerror(errno) : "the file ended early");
  };

  // Preamble: magic, version, header length.
  unsigned char pre[12];
  auto not_npy = [&] {
    EMBER_THROW("[npy] '", path, "' is not a .npy file (it does not start with \\x93NUMPY; ", size, " bytes)");
  };
  if (size < 10) not_npy();
  read_exact(pre, 10, "the preamble");
  if (std::memcmp(pre, kMagic, kMagicLen) != 0) not_npy();
  const int major = pre[6], minor = pre[7];
  if (major < 1 || major > 3 || minor != 0)
    EMBER_THROW("[npy] '", path, "': format version ", major, ".", minor,
                " is not supported (this reader knows 1.0, 2.0 and 3.0)");
  uint64_t prefix = 10, header_len = pre[8] | (uint64_t{pre[9]} << 8);
  if (major >= 2) {
    if (size < 12) EMBER_THROW("[npy] '", path, "': truncated in the preamble (", size, " bytes)");
    read_exact(pre + 10, 2, "the preamble");
    prefix = 12;
    header_len = pre[8] | (uint64_t{pre[9]} << 8) | (uint64_t{pre[10]} << 16) | (uint64_t{pre[11]} << 24);
  }
  if (header_len > size - prefix)
    EMBER_THROW("[npy] '", path, "': truncated: the preamble announces a header of ", header_len,
                " bytes but only ", size - prefix, " follow");
  if (header_len > kMaxHeaderLen)
    EMBER_THROW("[npy] '", path, "': the header length ", header_len, " exceeds ", kMaxHeaderLen,
                " bytes (a corrupt file?)");
  std::string text(header_len, '\0');
  read_exact(text.data(), text.size(), "the header");

  // Header: dtype, order and shape, checked against the data that follows.
  const Header h = HeaderParser(text, path).parse();
  const DType dtype = dtype_of_descr(h.descr, path);
  if (h.fortran_order)
    EMBER_THROW("[npy] '", path, "': the array is in Fortran order (fortran_order: True); save a C-order copy, "
                "e.g. np.save(path, np.ascontiguousarray(a))");
  if (h.shape.size() > static_cast<size_t>(kMaxRank))
    EMBER_THROW("[npy] '", path, "': shape ", shape_str(h.shape), " has rank ", h.shape.size(),
                "; Ember's maximum rank is ", kMaxRank);
  uint64_t nbytes = dtype_size(dtype);
  for (int64_t d : h.shape)
    if (__builtin_mul_overflow(nbytes, static_cast<uint64_t>(d), &nbytes))
      EMBER_THROW("[npy] '", path, "': shape ", shape_str(h.shape), " of '", h.descr,
                  "' describes more bytes than fit in 64 bits");
  const uint64_t have = size - prefix - header_len;
  if (nbytes > have)
    EMBER_THROW("[npy] '", path, "': truncated: shape ", shape_str(h.shape), " of '", h.descr, "' needs ", nbytes,
                " bytes of data, the file has ", have);
  if (nbytes < have)
    EMBER_THROW("[npy] '", path, "': ", have - nbytes, " bytes follow the ", nbytes, " bytes of data that shape ",
                shape_str(h.shape), " of '", h.descr, "' describes");

  Tensor t = empty(Shape(h.shape), dtype);
  read_exact(t.data_ptr(), nbytes, "the data");
  return t;
}

void write_npy(const std::string& path, const Tensor& t, int version) {
  EMBER_CHECK(version >= 1 && version <= 3, "[npy] writing '", path, "': version ", version,
              " is not one of 1, 2, 3");
  const char* descr = descr_of_dtype(t.dtype());
  EMBER_CHECK(descr != nullptr, "[npy] writing '", path, "': dtype ", dtype_name(t.dtype()),
              " is not supported (f32, f64 or u8)");
  const Tensor c = t.to(kCPU).contiguous();

  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " +
                       shape_str(c.shape().vec()) + ", }";
  const size_t prefix = version == 1 ? 10 : 12;
  header.append((64 - (prefix + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string pre(kMagic, kMagicLen);
  pre += static_cast<char>(version);
  pre += '\0';
  for (size_t i = 0; i < prefix - 8; ++i) pre += static_cast<char>((header.size() >> (8 * i)) & 0xff);

  // Written beside the target and renamed over it, so readers never see a partial file.
  const std::string tmp = path + "." + std::to_string(::getpid()) + ".tmp";
  FilePtr f(std::fopen(tmp.c_str(), "wbx"));
  if (!f) EMBER_THROW("[npy] cannot create '", tmp, "': ", std::strerror(errno));
  bool ok = std::fwrite(pre.data(), 1, pre.size(), f.get()) == pre.size() &&
            std::fwrite(header.data(), 1, header.size(), f.get()) == header.size() &&
            (c.nbytes() == 0 || std::fwrite(c.data_ptr(), 1, c.nbytes(), f.get()) == c.nbytes());
  int err = ok ? 0 : errno;
  if (std::fclose(f.release()) != 0 && ok) {  // a delayed write error
    ok = false;
    err = errno;
  }
  if (ok && std::rename(tmp.c_str(), path.c_str()) == 0) return;
  if (ok) err = errno;
  std::remove(tmp.c_str());
  EMBER_THROW("[npy] writing '", path, "' failed: ", std::strerror(err));
}

}  // namespace ember
