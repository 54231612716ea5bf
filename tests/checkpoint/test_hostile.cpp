// The hostile-input corpus: each test builds one malformed file (tests/checkpoint/raw_builder.h)
// and asserts the specific error the reader gives, one rule of docs/checkpoint-format.md at a time.
// Every error must start with "[checkpoint] '<file>'" and nothing may crash or over-allocate.
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>

#include "ember/checkpoint/checkpoint.h"
#include "tests/checkpoint/raw_builder.h"
#include "tests/checkpoint/util.h"

namespace ember::test {
namespace {

namespace ck = ember::checkpoint;
using raw::Bytes;

class Hostile : public ::testing::Test {
 protected:
  ::testing::AssertionResult rejects(const Bytes& b, const std::string& expected) {
    return fails_with(dir_.path(), b, expected);
  }
  ::testing::AssertionResult rejects(const raw::File& f, const std::string& expected) { return rejects(f.build(), expected); }
  ScratchDir dir_;
};

raw::Tensor& tensor(raw::File& f, const std::string& name) {
  for (auto& s : f.sections)
    for (auto& t : s.tensors)
      if (t.name == name) return t;
  throw Error("[test] no tensor " + name);
}
raw::Section& section(raw::File& f, const std::string& name) {
  for (auto& s : f.sections)
    if (s.name == name) return s;
  throw Error("[test] no section " + name);
}

// 1024 bytes that deflate only moderately (a few hundred bytes).
Bytes pattern() {
  Bytes b(1024);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>((i * i) % 251);
  return b;
}

Bytes deflate_bytes(const Bytes& in) {
  uLongf n = compressBound(static_cast<uLong>(in.size()));
  Bytes out(n);
  compress2(out.data(), &n, in.data(), static_cast<uLong>(in.size()), 6);
  out.resize(n);
  return out;
}

// A file whose one tensor "z" (f32 (256,) = 1024 bytes) is zlib-compressed from `raw_bytes`.
raw::File zlib_file(const Bytes& stored, uint64_t numel = 256) {
  raw::File f;
  raw::Section s;
  s.name = "state_dict";
  s.meta = raw::map_v({{"z", raw::tensor_v(0)}});
  s.tensors.push_back({.name = "z", .codec = 1, .dims = {numel}, .payload = stored});
  f.sections = {s};
  return f;
}

TEST_F(Hostile, ValidBaseFileLoads) {
  EXPECT_EQ(open_error(dir_.path(), raw::valid_file().build()), "");
  ck::Reader r(dir_.file("case.ckpt"));
  EXPECT_EQ(r.load_tensor("state_dict", "w").to_vector<float>(), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(r.section("hyper_parameters").at("lr").as_double(), 0.5);
}

// --- file size and magic -----------------------------------------------------------------------
TEST_F(Hostile, EmptyAndTinyFiles) {
  EXPECT_TRUE(rejects(Bytes{}, "file too short (0 bytes"));
  Bytes b = raw::valid_file().build();
  b.resize(100);
  EXPECT_TRUE(rejects(b, "file too short (100 bytes"));
}

TEST_F(Hostile, TruncatedAtEveryByte) {
  Bytes full = raw::valid_file().build();
  ASSERT_GT(full.size(), 300u);
  for (size_t cut = 0; cut < full.size(); ++cut) {
    Bytes b(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut));
    EXPECT_TRUE(rejects(b, cut < 128 ? "file too short" : "no footer at the end of the file")) << "cut at " << cut;
  }
}

TEST_F(Hostile, ForeignFormatsAreNamed) {
  auto file = [](std::initializer_list<uint8_t> prefix, uint8_t fill) {
    Bytes b(200, fill);
    std::copy(prefix.begin(), prefix.end(), b.begin());
    return b;
  };
  Bytes zip = file({'P', 'K', 3, 4}, 0);
  EXPECT_TRUE(rejects(zip, "not an Ember checkpoint: magic bytes are 50 4b 03 04 00 00 00 00"));
  EXPECT_TRUE(rejects(zip, "a zip archive"));
  EXPECT_TRUE(rejects(file({16, 0, 0, 0, 0, 0, 0, 0, '{', '"', '_', '_'}, ' '), "a safetensors file?"));
  EXPECT_TRUE(rejects(file({0x80, 0x02, ']'}, 0), "a Python pickle"));
  EXPECT_TRUE(rejects(file({'G', 'G', 'U', 'F'}, 0), "a GGUF file"));
}

TEST_F(Hostile, MagicWithConvertedLineEndings) {
  Bytes b = raw::valid_file().build();
  b.erase(b.begin() + 4);  // "\r\n" -> "\n"
  EXPECT_TRUE(rejects(b, "line endings were converted"));
}

// --- header ------------------------------------------------------------------------------------
TEST_F(Hostile, NewerMajorVersionNamesTheVersionNeeded) {
  raw::File f = raw::valid_file();
  f.major = 2;
  f.minor = 3;
  EXPECT_TRUE(rejects(f, "written in checkpoint format 2.3, but this reader understands format 1.x only; a newer "
                         "Ember that reads format 2 is needed"));
}

TEST_F(Hostile, MajorVersionZero) {
  raw::File f = raw::valid_file();
  f.major = 0;
  EXPECT_TRUE(rejects(f, "format version 0.0 is not a valid version"));
}

TEST_F(Hostile, NewerMinorVersionIsAccepted) {
  raw::File f = raw::valid_file();
  f.minor = 7;
  f.optional_flags = 0x80000000u;  // unknown optional flags are ignored
  EXPECT_EQ(open_error(dir_.path(), f.build()), "");
  EXPECT_EQ(ck::Reader(dir_.file("case.ckpt")).format_minor(), 7);
}

TEST_F(Hostile, HeaderBitFlip) {
  Bytes b = raw::valid_file().build();
  b[30] ^= 0x10;  // inside the file id
  EXPECT_TRUE(rejects(b, "header: checksum mismatch"));
}

TEST_F(Hostile, BadAlignment) {
  for (uint8_t a : {0, 5, 17}) {
    raw::File f = raw::valid_file();
    f.align_log2 = a == 0 ? 6 : a;
    Bytes b = f.build();
    if (a == 0) {  // align_log2 0 with a fixed-up header checksum
      b[21] = 0;
      raw::patch_u32(b, 60, raw::crc(Bytes(b.begin(), b.begin() + 60)));
    }
    EXPECT_TRUE(rejects(b, "bad alignment: align_log2 is " + std::to_string(a) + ", expected 6..16"));
  }
}

TEST_F(Hostile, BigEndianMark) {
  raw::File f = raw::valid_file();
  f.endian = 2;
  EXPECT_TRUE(rejects(f, "byte-order mark is 2, expected 1 (little-endian)"));
}

TEST_F(Hostile, UnknownRequiredFlag) {
  raw::File f = raw::valid_file();
  f.required_flags = 4;
  EXPECT_TRUE(rejects(f, "unknown required feature flags 0x00000004"));
}

TEST_F(Hostile, HeaderLengthAndReservedBytes) {
  raw::File f = raw::valid_file();
  f.header_len = 128;
  EXPECT_TRUE(rejects(f, "header length is 128, expected 64"));
  f = raw::valid_file();
  f.header_reserved[3] = 1;
  EXPECT_TRUE(rejects(f, "header: reserved bytes 40..59 are not zero"));
}

// --- footer ------------------------------------------------------------------------------------
TEST_F(Hostile, FooterChecksumAndTrailingData) {
  Bytes b = raw::valid_file().build();
  Bytes flipped = b;
  flipped[flipped.size() - 50] ^= 1;
  EXPECT_TRUE(rejects(flipped, "footer: checksum mismatch"));
  Bytes trailing = b;
  trailing.push_back(0);
  EXPECT_TRUE(rejects(trailing, "no footer at the end of the file"));
  Bytes doubled = b;  // a second copy of the footer: valid footer, wrong file size
  doubled.insert(doubled.end(), b.end() - 64, b.end());
  EXPECT_TRUE(rejects(doubled, "index out of bounds"));
}

TEST_F(Hostile, SplicedFiles) {
  raw::File f = raw::valid_file();
  f.footer_id = std::array<uint8_t, 16>{1};
  EXPECT_TRUE(rejects(f, "(the file was spliced from two checkpoints)"));
}

TEST_F(Hostile, IndexRangeOverflowsAndOutOfBounds) {
  raw::File f = raw::valid_file();
  f.index_offset = ~uint64_t{0} - 63;  // aligned, but offset + length wraps
  EXPECT_TRUE(rejects(f, "index range overflows"));
  f = raw::valid_file();
  f.index_length = raw::valid_file().build().size();  // past the end of the file
  EXPECT_TRUE(rejects(f, "index out of bounds"));
  f = raw::valid_file();
  f.index_length = uint64_t{1} << 40;  // 1 TiB declared in a small file: refused before allocating
  EXPECT_TRUE(rejects(f, "index out of bounds"));
  f = raw::valid_file();
  f.index_offset = 65;
  EXPECT_TRUE(rejects(f, "index offset 65 is not a multiple of the alignment 64"));
}

TEST_F(Hostile, IndexLargerThanTheLimit) {
  ck::ReadOptions opt{.verify = ck::Verify::all, .mmap = false};
  opt.limits.max_index_bytes = 16;
  EXPECT_TRUE(fails_with(dir_.path(), raw::valid_file().build(), "exceeds the limit of 16 bytes", opt));
}

// --- index structure ---------------------------------------------------------------------------
TEST_F(Hostile, IndexByteFlip) {
  raw::File f = raw::valid_file();
  Bytes b = f.build();
  b[f.built_index_offset + 12] ^= 0x01;
  EXPECT_TRUE(rejects(b, "index: checksum mismatch"));
}

TEST_F(Hostile, CountsLargerThanTheIndex) {
  raw::File f = raw::valid_file();
  f.tensor_count = 1u << 20;
  EXPECT_TRUE(rejects(f, "count exceeds available bytes: 2 sections and 1048576 tensors cannot fit"));
  f = raw::valid_file();
  f.tensor_count = 0x80000000u;
  EXPECT_TRUE(rejects(f, "2147483648 tensors exceed the limit of 4194304"));
  f = raw::valid_file();
  f.section_count = 1u << 17;
  EXPECT_TRUE(rejects(f, "131072 sections exceed the limit of 65536"));
}

TEST_F(Hostile, SectionTensorCountsDisagree) {
  raw::File f = raw::valid_file();
  section(f, "state_dict").tensor_count = 1;
  EXPECT_TRUE(rejects(f, "sections declare 1 tensors but the index holds 2"));
}

TEST_F(Hostile, TrailingBytesInIndex) {
  raw::File f = raw::valid_file();
  f.index_suffix = {0};
  EXPECT_TRUE(rejects(f, "1 trailing bytes after the tensor table"));
}

TEST_F(Hostile, SectionNames) {
  raw::File f = raw::valid_file();
  section(f, "hyper_parameters").name = "state_dict";
  EXPECT_TRUE(rejects(f, "duplicate section name 'state_dict'"));
  f = raw::valid_file();
  std::swap(f.sections[0], f.sections[1]);
  EXPECT_TRUE(rejects(f, "section names not sorted: 'hyper_parameters' follows 'state_dict'"));
  f = raw::valid_file();
  section(f, "hyper_parameters").meta_len = 0;
  section(f, "hyper_parameters").meta = {};
  EXPECT_TRUE(rejects(f, "section 'hyper_parameters' has no value"));
}

// --- tensor entries ----------------------------------------------------------------------------
TEST_F(Hostile, AbsurdRank) {
  raw::File f = raw::valid_file();
  tensor(f, "w").dims = {1, 1, 1, 1, 1, 1, 1, 1, 4};
  EXPECT_TRUE(rejects(f, "rank 9 > 8 (tensor 'w')"));
  f = raw::valid_file();
  tensor(f, "w").rank = 255;
  EXPECT_TRUE(rejects(f, "rank 255 > 8"));
}

TEST_F(Hostile, DimsRunPastTheIndex) {
  raw::File f = raw::valid_file();
  tensor(f, "w").rank = 8;  // claims 8 dims, only 2 follow: reads run into the end of the index
  EXPECT_TRUE(rejects(f, "truncated:"));
}

TEST_F(Hostile, ShapeProductOverflow) {
  raw::File f = raw::valid_file();
  tensor(f, "w").dims = {uint64_t{1} << 32, uint64_t{1} << 32};  // wraps to 0 in 64 bits
  EXPECT_TRUE(rejects(f, "shape size overflow: the product of (4294967296, 4294967296) does not fit in 64 bits"));
  f = raw::valid_file();
  tensor(f, "w").dims = {uint64_t{1} << 61, 2};  // 2^62 elements x 4 bytes wraps to 0
  EXPECT_TRUE(rejects(f, "shape size overflow: (2305843009213693952, 2) x 4 bytes does not fit in 63 bits"));
  f = raw::valid_file();
  tensor(f, "w").dims = {uint64_t{1} << 63};
  EXPECT_TRUE(rejects(f, "dimension 0 is 9223372036854775808 (larger than 2^63 - 1)"));
}

TEST_F(Hostile, ZeroElementTensorsAreStillChecked) {
  raw::File f = raw::valid_file();
  auto& sd = section(f, "state_dict");
  sd.meta = raw::map_v({{"b", raw::tensor_v(0)}, {"e", raw::tensor_v(1)}, {"w", raw::tensor_v(2)}});
  sd.tensors.insert(sd.tensors.begin() + 1, raw::Tensor{.name = "e", .dims = {0, 5}, .payload = {}, .offset = 70});
  EXPECT_TRUE(rejects(f, "offset 70 is not a multiple of the alignment 64"));
  sd.tensors[1].offset = uint64_t{1} << 40;
  EXPECT_TRUE(rejects(f, "tensor range invalid: [1099511627776, +0) is outside the data region"));
  sd.tensors[1].offset.reset();
  EXPECT_EQ(open_error(dir_.path(), f.build()), "");  // packed in place it is fine
}

TEST_F(Hostile, OffsetsOutsideTheDataRegion) {
  raw::File f = raw::valid_file();
  tensor(f, "w").offset = uint64_t{1} << 33;
  EXPECT_TRUE(rejects(f, "tensor 'state_dict/w': tensor range invalid: [8589934592, +16) is outside the data region"));
  f = raw::valid_file();
  tensor(f, "w").offset = ~uint64_t{0} - 63;  // offset + length wraps around
  EXPECT_TRUE(rejects(f, "tensor range invalid"));
  f = raw::valid_file();
  tensor(f, "w").stored_len = 1u << 20;  // runs into the index
  EXPECT_TRUE(rejects(f, "is outside the data region"));
}

TEST_F(Hostile, OverlappingRecords) {
  raw::File f = raw::valid_file();
  tensor(f, "w").offset = 64;  // the same bytes as "b"
  tensor(f, "b").payload = tensor(f, "w").payload;
  tensor(f, "b").dims = {4};
  EXPECT_TRUE(rejects(f, "overlap:"));
  f = raw::valid_file();
  tensor(f, "b").payload.assign(128, 0);  // 32 floats from 64 to 192
  tensor(f, "b").dims = {32};
  tensor(f, "w").offset = 128;
  EXPECT_TRUE(rejects(f, "overlap: bytes [128, 144) overlap tensor 'state_dict/b' which ends at byte 192"));
}

TEST_F(Hostile, HiddenDataBetweenRecords) {
  raw::File f = raw::valid_file();
  tensor(f, "w").offset = 192;  // packing puts it at 128
  EXPECT_TRUE(rejects(f, "hidden data: a gap of 120 bytes before offset 192 (the packing rule places it at 128)"));
  f = raw::valid_file();
  f.padding_byte = 0xAA;
  EXPECT_TRUE(rejects(f, "hidden data: padding byte at offset 72 is 170"));
}

TEST_F(Hostile, RawSizeMismatch) {
  raw::File f = raw::valid_file();
  tensor(f, "b").payload.push_back(0);  // 9 bytes for a (2,) f32
  EXPECT_TRUE(rejects(f, "size mismatch: stores 9 bytes but shape (2) x 4 bytes is 8"));
}

TEST_F(Hostile, DuplicateAndUnsortedTensorNames) {
  raw::File f = raw::valid_file();
  tensor(f, "b").name = "w";
  EXPECT_TRUE(rejects(f, "duplicate tensor name 'w'"));
  f = raw::valid_file();
  std::swap(section(f, "state_dict").tensors[0], section(f, "state_dict").tensors[1]);
  EXPECT_TRUE(rejects(f, "tensor names not sorted: 'b' follows 'w'"));
}

TEST_F(Hostile, BadNames) {
  struct Case {
    std::string name, error;
  };
  std::vector<Case> cases = {{"", "tensor name is empty"},
                             {std::string(1025, 'x'), "tensor name is 1025 bytes long (limit 1024)"},
                             {"\xC0\x80", "tensor name is not valid UTF-8"},       // overlong NUL
                             {"\xED\xA0\x80", "tensor name is not valid UTF-8"},   // lone surrogate
                             {"\xF4\x90\x80\x80", "tensor name is not valid UTF-8"},  // past U+10FFFF
                             {std::string("a\0b", 3), "tensor name contains control byte 0 at position 1"}};
  for (auto& c : cases) {
    raw::File f = raw::valid_file();
    tensor(f, "b").name = c.name;
    EXPECT_TRUE(rejects(f, c.error)) << c.error;
  }
}

TEST_F(Hostile, PathLikeNamesAreOpaqueKeys) {
  raw::File f = raw::valid_file();
  auto& sd = section(f, "state_dict");
  sd.meta = raw::map_v({{"../../etc/x", raw::tensor_v(0)}, {"w", raw::tensor_v(1)}});
  sd.tensors[0].name = "../../etc/x";
  EXPECT_EQ(open_error(dir_.path(), f.build()), "");
  ck::Reader r(dir_.file("case.ckpt"));
  EXPECT_EQ(r.load_tensor("state_dict", "../../etc/x").to_vector<float>(), (std::vector<float>{1.5f, -2.0f}));
  EXPECT_EQ(dir_.list(), std::vector<std::string>{"case.ckpt"});  // nothing was created from the name
}

TEST_F(Hostile, UnknownDTypeCodecAndReservedByte) {
  raw::File f = raw::valid_file();
  tensor(f, "w").dtype = 0xFF;
  EXPECT_TRUE(rejects(f, "unknown dtype code 255 (this reader knows format 1.0; the file is 1.0)"));
  f = raw::valid_file();
  tensor(f, "w").codec = 7;
  EXPECT_TRUE(rejects(f, "unknown codec 7"));
  f = raw::valid_file();
  tensor(f, "w").reserved = 1;
  EXPECT_TRUE(rejects(f, "reserved byte is 1 (must be 0)"));
}

// --- payloads ----------------------------------------------------------------------------------
TEST_F(Hostile, PayloadByteFlipInEveryLoadMode) {
  raw::File f = raw::valid_file();
  tensor(f, "w").crc = raw::crc(tensor(f, "w").payload);
  tensor(f, "w").payload[5] ^= 0x40;  // the stored CRC is of the original bytes
  EXPECT_TRUE(rejects(f, "tensor 'state_dict/w': checksum mismatch"));
  write_bytes(dir_.file("flip.ckpt"), f.build());
  for (bool mmap : {true, false}) {
    ck::Reader lazy(dir_.file("flip.ckpt"), {.verify = ck::Verify::loaded, .mmap = mmap});
    EXPECT_NO_THROW(lazy.load_tensor("state_dict", "b"));
    EXPECT_THROW(lazy.load_tensor("state_dict", "w"), Error);
    ck::Reader trusting(dir_.file("flip.ckpt"), {.verify = ck::Verify::none, .mmap = mmap});
    EXPECT_NO_THROW(trusting.load_tensor("state_dict", "w"));
  }
}

TEST_F(Hostile, BoolTensorBytes) {
  raw::File f;
  raw::Section s;
  s.name = "state_dict";
  s.meta = raw::map_v({{"m", raw::tensor_v(0)}});
  s.tensors.push_back({.name = "m", .dtype = 7, .dims = {3}, .payload = {1, 2, 0}});
  f.sections = {s};
  EXPECT_TRUE(rejects(f, "tensor 'state_dict/m': bool tensor holds byte 2 at element 1"));
}

TEST_F(Hostile, ZlibBomb) {
  EXPECT_TRUE(rejects(zlib_file(deflate_bytes(Bytes(2048, 0))),
                      "decompression size mismatch: inflates to more than the 1024 bytes its shape declares"));
}

TEST_F(Hostile, ZlibStreamEndsEarly) {
  EXPECT_TRUE(rejects(zlib_file(deflate_bytes(Bytes(512, 1))), "inflates to 512 bytes, its shape declares 1024"));
}

TEST_F(Hostile, ZlibStreamTruncated) {
  Bytes z = deflate_bytes(pattern());
  ASSERT_GT(z.size(), 100u);
  z.resize(z.size() / 2);
  EXPECT_TRUE(rejects(zlib_file(z), "the zlib stream is truncated"));
}

TEST_F(Hostile, ZlibTrailingBytes) {
  Bytes z = deflate_bytes(pattern());
  z.insert(z.end(), {1, 2, 3});
  EXPECT_TRUE(rejects(zlib_file(z), "3 bytes follow the end of the zlib stream"));
}

TEST_F(Hostile, ZlibCorruptStream) {
  Bytes z = deflate_bytes(pattern());
  z[0] ^= 1;  // bad zlib header (the stored CRC matches these bytes)
  EXPECT_TRUE(rejects(zlib_file(z), "corrupt zlib stream"));
}

TEST_F(Hostile, ZlibStreamOfAnEmptyTensorLoads) {
  raw::File f = zlib_file(deflate_bytes({}), 0);
  EXPECT_EQ(open_error(dir_.path(), f.build()), "");
  for (bool mmap : {true, false}) {
    Tensor t = ck::Reader(dir_.file("case.ckpt"), {.mmap = mmap}).load_tensor("state_dict", "z");
    EXPECT_EQ(t.numel(), 0);
    EXPECT_EQ(t.shape(), Shape({0}));
  }
  EXPECT_TRUE(rejects(zlib_file(deflate_bytes({1}), 0), "inflates to more than the 0 bytes"));
}

TEST_F(Hostile, ZlibImpossibleRatioIsRefusedBeforeAllocating) {
  EXPECT_TRUE(rejects(zlib_file(Bytes(16, 0), uint64_t{1} << 40),
                      "16 zlib bytes cannot inflate to the 4398046511104 bytes its shape declares"));
}

// --- metadata ----------------------------------------------------------------------------------
TEST_F(Hostile, BoolValueByte) {
  raw::File f = raw::valid_file();
  section(f, "hyper_parameters").meta = raw::map_v({{"flag", raw::bool_v(2)}});
  EXPECT_TRUE(rejects(f, "section 'hyper_parameters' metadata at path 'flag': bool byte is 2 (must be 0 or 1)"));
}

TEST_F(Hostile, NestingTooDeep) {
  raw::File f = raw::valid_file();
  Bytes deep;
  for (int i = 0; i < 10000; ++i) deep.insert(deep.end(), {6, 1, 0, 0, 0});
  deep.push_back(0);
  section(f, "hyper_parameters").meta = deep;
  EXPECT_TRUE(rejects(f, "nesting too deep (more than 64 levels)"));
}

TEST_F(Hostile, HugeDeclaredLengths) {
  raw::File f = raw::valid_file();
  Bytes s = {4};
  raw::u32(s, 0x00FFFFFFu);  // 16 MiB - 1 declared, 3 bytes present
  s.insert(s.end(), {'a', 'b', 'c'});
  section(f, "hyper_parameters").meta = s;
  EXPECT_TRUE(rejects(f, "length exceeds data: string of 16777215 bytes but 3 remain"));
  Bytes l = {6};
  raw::u32(l, 1u << 30);
  section(f, "hyper_parameters").meta = l;
  EXPECT_TRUE(rejects(f, "list count 1073741824 exceeds the 0 bytes that remain"));
  Bytes m = {7};
  raw::u32(m, 0xFFFFFFFFu);
  m.push_back(0);
  section(f, "hyper_parameters").meta = m;
  EXPECT_TRUE(rejects(f, "map count 4294967295 exceeds the 1 bytes that remain"));
  Bytes big = {5};
  raw::u32(big, 0xFFFFFFF0u);
  section(f, "hyper_parameters").meta = big;
  EXPECT_TRUE(rejects(f, "bytes value of 4294967280 bytes exceeds the limit of 16777216"));
}

TEST_F(Hostile, StringLimitAndUtf8) {
  raw::File f = raw::valid_file();
  section(f, "hyper_parameters").meta = raw::map_v({{"s", raw::str_v("hello")}});
  ck::ReadOptions opt{.verify = ck::Verify::all, .mmap = false};
  opt.limits.max_string_bytes = 4;
  EXPECT_TRUE(fails_with(dir_.path(), f.build(), "string of 5 bytes exceeds the limit of 4", opt));
  section(f, "hyper_parameters").meta = raw::map_v({{"s", raw::str_v("ab\xFF")}});
  EXPECT_TRUE(rejects(f, "metadata at path 's': string is not valid UTF-8"));
}

TEST_F(Hostile, DuplicateAndUnsortedKeys) {
  raw::File f = raw::valid_file();
  section(f, "hyper_parameters").meta = raw::map_v({{"lr", raw::int_v(1)}, {"lr", raw::int_v(2)}});
  EXPECT_TRUE(rejects(f, "duplicate map key 'lr'"));
  section(f, "hyper_parameters").meta = raw::map_v({{"lr", raw::int_v(1)}, {"a", raw::int_v(2)}});
  EXPECT_TRUE(rejects(f, "map keys not sorted: 'a' follows 'lr'"));
  section(f, "hyper_parameters").meta = raw::map_v({{"a\x01", raw::int_v(1)}});
  EXPECT_TRUE(rejects(f, "key #0 contains control byte 1"));
}

TEST_F(Hostile, UnknownValueTagAndTrailingBytes) {
  raw::File f = raw::valid_file();
  section(f, "hyper_parameters").meta = raw::map_v({{"x", Bytes{9}}});
  EXPECT_TRUE(rejects(f, "metadata at path 'x': unknown value tag 9"));
  Bytes m = raw::map_v({{"lr", raw::float_v(0.5)}});
  m.push_back(0);
  section(f, "hyper_parameters").meta = m;
  EXPECT_TRUE(rejects(f, "1 bytes follow the section's value"));
}

TEST_F(Hostile, TensorReferences) {
  raw::File f = raw::valid_file();
  auto& sd = section(f, "state_dict");
  sd.meta = raw::map_v({{"b", raw::tensor_v(0)}, {"w", raw::tensor_v(5)}});
  EXPECT_TRUE(rejects(f, "tensor reference #5 is out of range (the section has 2 tensors)"));
  sd.meta = raw::map_v({{"b", raw::tensor_v(1)}, {"w", raw::tensor_v(0)}});
  EXPECT_TRUE(rejects(f, "tensor reference #1 names tensor 'w' but sits at path 'b'"));
  sd.meta = raw::map_v({{"b", raw::tensor_v(0)}});
  EXPECT_TRUE(rejects(f, "section 'state_dict': tensor 'w' is not referenced by the section's metadata"));
  // "a.0" is both list item 0 of "a" and the key "a.0": one tensor referenced twice.
  sd.meta = raw::map_v({{"a", raw::list_v({raw::tensor_v(0)})}, {"a.0", raw::tensor_v(0)}, {"w", raw::tensor_v(1)}});
  sd.tensors[0].name = "a.0";
  EXPECT_TRUE(rejects(f, "tensor 'a.0' is referenced twice"));
}

// --- declared sizes never become allocations -------------------------------------------------
// Opens files that declare huge lengths in a child process whose address space is capped at
// 256 MiB above its current size: an allocation sized from a declaration would fail with
// std::bad_alloc (exit 3) instead of the expected ember::Error.
TEST_F(Hostile, HugeDeclarationsAreRefusedWithoutAllocating) {
  std::vector<raw::File> files;
  raw::File f = raw::valid_file();
  f.index_length = uint64_t{1} << 40;
  files.push_back(f);
  f = raw::valid_file();
  f.tensor_count = 1u << 20;
  files.push_back(f);
  f = raw::valid_file();
  section(f, "hyper_parameters").meta = {6, 0, 0, 0, 0x40};  // list of 2^30 items
  files.push_back(f);
  f = raw::valid_file();
  section(f, "hyper_parameters").meta = {5, 0xF0, 0xFF, 0xFF, 0xFF};  // bytes of 4 GiB
  files.push_back(f);
  f = raw::valid_file();
  tensor(f, "w").dims = {uint64_t{1} << 60};
  files.push_back(f);
  files.push_back(zlib_file(Bytes(16, 0), uint64_t{1} << 40));
  std::vector<std::string> paths;
  for (size_t i = 0; i < files.size(); ++i) {
    paths.push_back(dir_.file("huge" + std::to_string(i) + ".ckpt"));
    write_bytes(paths.back(), files[i].build());
  }
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    long pages = 0;
    if (FILE* statm = std::fopen("/proc/self/statm", "r")) {
      if (std::fscanf(statm, "%ld", &pages) != 1) pages = 0;
      std::fclose(statm);
    }
    rlim_t cap = static_cast<rlim_t>(pages) * static_cast<rlim_t>(::sysconf(_SC_PAGESIZE)) + (rlim_t{256} << 20);
    struct rlimit rl{cap, cap};
    if (pages == 0 || ::setrlimit(RLIMIT_AS, &rl) != 0) ::_exit(4);
    for (auto& p : paths) {
      try {
        ck::Reader r(p, {.verify = ck::Verify::all});
        r.load();
        ::_exit(1);  // accepted
      } catch (const Error&) {
      } catch (const std::bad_alloc&) {
        ::_exit(3);
      }
    }
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: a file was accepted, 3: an allocation failed, 4: no rlimit";
}

// --- the file changing under the reader, and non-files -----------------------------------------
TEST_F(Hostile, FileTruncatedAfterOpen) {
  std::string path = dir_.file("t.ckpt");
  write_bytes(path, raw::valid_file().build());
  ck::Reader r(path, {.mmap = false});
  ASSERT_EQ(::truncate(path.c_str(), 100), 0);
  try {
    r.load_tensor("state_dict", "w");
    ADD_FAILURE() << "read past the end of a truncated file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("file changed while reading"), std::string::npos) << e.what();
  }
}

TEST_F(Hostile, MissingFileAndDirectory) {
  try {
    ck::Reader r(dir_.file("missing.ckpt"));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open '" + dir_.file("missing.ckpt") + "': No such file"),
              std::string::npos)
        << e.what();
  }
  try {
    ck::Reader r(dir_.path());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not a regular file"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ember::test
