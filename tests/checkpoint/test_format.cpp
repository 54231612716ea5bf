// Format-level checks: UTF-8 rules, fixed-size records, and offsets past 4 GiB (a sparse file
// holding a 4.5 GiB tensor before a small one, read at its 64-bit offset).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "ember/checkpoint/checkpoint.h"
#include "checkpoint/format.h"
#include "tests/checkpoint/raw_builder.h"
#include "tests/checkpoint/util.h"

namespace ember::test {
namespace {

namespace ck = ember::checkpoint;
namespace fmt = ember::checkpoint::format;

TEST(Format, Utf8Rules) {
  EXPECT_TRUE(fmt::valid_utf8(""));
  EXPECT_TRUE(fmt::valid_utf8("plain ascii"));
  EXPECT_TRUE(fmt::valid_utf8("\xC3\xA9"));                  // U+00E9
  EXPECT_TRUE(fmt::valid_utf8("\xE2\x9C\x93"));              // U+2713
  EXPECT_TRUE(fmt::valid_utf8("\xF0\x9F\x98\x80"));          // U+1F600
  EXPECT_TRUE(fmt::valid_utf8("\xF4\x8F\xBF\xBF"));          // U+10FFFF
  EXPECT_FALSE(fmt::valid_utf8("\x80"));                     // lone continuation
  EXPECT_FALSE(fmt::valid_utf8("\xC3"));                     // truncated
  EXPECT_FALSE(fmt::valid_utf8("\xC0\x80"));                 // overlong NUL
  EXPECT_FALSE(fmt::valid_utf8("\xE0\x80\xAF"));             // overlong '/'
  EXPECT_FALSE(fmt::valid_utf8("\xED\xA0\x80"));             // surrogate
  EXPECT_FALSE(fmt::valid_utf8("\xF4\x90\x80\x80"));         // past U+10FFFF
  EXPECT_FALSE(fmt::valid_utf8("\xFF"));
  EXPECT_EQ(fmt::name_problem("ok.name", 1024, false), "");
  EXPECT_EQ(fmt::name_problem("", 1024, true), "");
  EXPECT_EQ(fmt::name_problem("", 1024, false), "is empty");
  EXPECT_EQ(fmt::name_problem("tab\there", 1024, false), "contains control byte 9 at position 3");
  EXPECT_EQ(fmt::name_problem("\x7f", 1024, false), "contains control byte 127 at position 0");
}

TEST(Format, Crc32MatchesZlibForEveryLengthAndAlignment) {
  std::vector<uint8_t> buf(1 << 16);
  uint64_t s = 0x243F6A8885A308D3ull;
  for (auto& b : buf) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    b = static_cast<uint8_t>(s);
  }
  for (size_t len : {0, 1, 15, 16, 63, 64, 65, 79, 80, 127, 128, 1000, 4096, 65000})
    for (size_t off : {0, 1, 7, 15}) {
      uint32_t init = static_cast<uint32_t>(len * 2654435761u + off);
      uint32_t expected = static_cast<uint32_t>(::crc32_z(init, buf.data() + off, len));
      EXPECT_EQ(fmt::crc32(fmt::ByteSpan(buf.data() + off, len), init), expected) << len << " at " << off;
    }
  // Chaining: the CRC of a then b equals the CRC of the concatenation.
  uint32_t ab = fmt::crc32(fmt::ByteSpan(buf.data() + 100, 3000), fmt::crc32(fmt::ByteSpan(buf.data(), 100)));
  EXPECT_EQ(ab, fmt::crc32(fmt::ByteSpan(buf.data(), 3100)));
  EXPECT_EQ(fmt::crc32(fmt::ByteSpan(reinterpret_cast<const uint8_t*>("123456789"), 9)), 0xCBF43926u);
}

TEST(Format, HeaderAndFooterRoundTrip) {
  fmt::Header h;
  h.align_log2 = 12;
  h.optional_flags = fmt::kFlagWeightsOnly;
  for (int i = 0; i < 16; ++i) h.file_id[i] = static_cast<uint8_t>(i * 3);
  auto hb = fmt::encode_header(h);
  EXPECT_EQ(hb[0], 0x89);
  EXPECT_EQ(hb[1], 'E');
  EXPECT_EQ(hb[8], 1);   // major, little-endian
  EXPECT_EQ(hb[20], 1);  // byte-order mark
  EXPECT_EQ(hb[21], 12);
  fmt::Header back = fmt::decode_header(hb, "x");
  EXPECT_EQ(back.align_log2, 12);
  EXPECT_EQ(back.alignment(), 4096u);
  EXPECT_EQ(back.optional_flags, fmt::kFlagWeightsOnly);
  EXPECT_EQ(back.file_id, h.file_id);

  fmt::Footer f;
  f.index_offset = uint64_t{5} << 32;  // 20 GiB, a multiple of 4096
  f.index_length = 1000;
  f.index_crc = 0xDEADBEEF;
  f.file_id = h.file_id;
  auto fb = fmt::encode_footer(f);
  fmt::Footer fback = fmt::decode_footer(fb, back, f.index_offset + 1000 + 64, {}, "x");
  EXPECT_EQ(fback.index_offset, f.index_offset);
  EXPECT_EQ(fback.index_length, 1000u);
  EXPECT_EQ(fback.index_crc, 0xDEADBEEFu);
}

// An index with payloads beyond 4 GiB is decoded with exact 64-bit offsets and sizes (pure
// arithmetic: no file of that size is needed).
TEST(Format, OffsetsBeyondFourGiB) {
  const uint64_t big = (uint64_t{1} << 33) + 12;  // 8 GiB + 12 bytes of u8
  fmt::TensorEntry a;
  a.name = "a";
  a.dtype = static_cast<uint8_t>(fmt::DTypeCode::u8);
  a.rank = 1;
  a.dims[0] = big;
  a.offset = 64;
  a.stored_len = big;
  fmt::TensorEntry b;
  b.name = "b";
  b.dtype = static_cast<uint8_t>(fmt::DTypeCode::f32);
  b.rank = 2;
  b.dims[0] = uint64_t{1} << 31;  // 2^31 x 4 x 4 bytes = 32 GiB
  b.dims[1] = 4;
  b.offset = fmt::align_up(64 + big, 64);
  b.stored_len = (uint64_t{1} << 31) * 16;
  fmt::SectionSource s;
  s.name = "state_dict";
  fmt::ValueEncoder enc(s.meta);
  enc.begin_map(2);
  enc.key("a");
  enc.tensor(0);
  enc.key("b");
  enc.tensor(1);
  s.tensors = {a, b};
  std::vector<uint8_t> index = fmt::encode_index({s});
  fmt::Header h;
  fmt::Footer f;
  f.index_offset = fmt::align_up(b.offset + b.stored_len, 64);
  f.index_length = index.size();
  f.index_crc = fmt::crc32(index);
  fmt::Index idx = fmt::decode_index(index, h, f, {}, "big.ckpt");
  ASSERT_EQ(idx.tensors.size(), 2u);
  EXPECT_EQ(idx.tensors[0].raw_len, big);
  EXPECT_EQ(idx.tensors[1].offset, uint64_t{8589934656 + 64});  // 64 + 2^33 + 12 rounded up to 64
  EXPECT_EQ(idx.tensors[1].raw_len, uint64_t{34359738368});
  EXPECT_GT(f.index_offset, uint64_t{1} << 35);

  // The same index with b moved up by 2^32 leaves a 4 GiB gap: the packing rule catches it
  // (an implementation truncating offsets to 32 bits would not).
  s.tensors[1].offset += uint64_t{1} << 32;
  index = fmt::encode_index({s});
  f.index_offset = fmt::align_up(s.tensors[1].offset + b.stored_len, 64);
  f.index_length = index.size();
  f.index_crc = fmt::crc32(index);
  try {
    fmt::decode_index(index, h, f, {}, "big.ckpt");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("hidden data: a gap of 4294967348 bytes"), std::string::npos) << e.what();
  }
}

// CRC-32 of n zero bytes, by combining the CRC of 1 MiB of zeros.
uint32_t crc_of_zeros(uint64_t n) {
  const uint64_t mib = 1 << 20;
  std::vector<uint8_t> z(mib, 0);
  uLong c1 = crc32(0, z.data(), static_cast<uInt>(mib)), c = 0;
  for (uint64_t done = 0; done < n; done += mib) c = crc32_combine(c, c1, static_cast<z_off_t>(mib));
  return static_cast<uint32_t>(c);
}

TEST(Format, SparseFileWithATensorPastFourGiB) {
  ScratchDir dir;
  std::string path = dir.file("sparse.ckpt");
  const uint64_t big = uint64_t{9} << 29;  // 4.5 GiB of zeros (a hole in the file)
  const uint64_t small_off = fmt::align_up(64 + big, 64);
  const std::vector<float> small = {1.5f, -2.0f, 3.25f, 1e30f};
  raw::Bytes small_bytes(16);
  std::memcpy(small_bytes.data(), small.data(), 16);
  // Index: one section "state_dict" {"big": u8 (4.5 GiB), "small": f32 (4)}.
  raw::Bytes idx, meta = raw::map_v({{"big", raw::tensor_v(0)}, {"small", raw::tensor_v(1)}});
  raw::u32(idx, 1);
  raw::u32(idx, 2);
  raw::u16(idx, 10);
  for (char c : std::string("state_dict")) idx.push_back(static_cast<uint8_t>(c));
  raw::u32(idx, 2);
  raw::u32(idx, static_cast<uint32_t>(meta.size()));
  idx.insert(idx.end(), meta.begin(), meta.end());
  auto entry = [&](const std::string& name, uint8_t dtype, uint64_t dim, uint64_t off, uint64_t len, uint32_t crc) {
    raw::u16(idx, static_cast<uint16_t>(name.size()));
    idx.insert(idx.end(), name.begin(), name.end());
    idx.insert(idx.end(), {dtype, 0, 1, 0});
    raw::u64(idx, dim);
    raw::u64(idx, off);
    raw::u64(idx, len);
    raw::u32(idx, crc);
  };
  entry("big", 6, big, 64, big, crc_of_zeros(big));
  entry("small", 0, 4, small_off, 16, raw::crc(small_bytes));
  const uint64_t index_off = fmt::align_up(small_off + 16, 64);
  fmt::Header h;
  fmt::Footer f{index_off, idx.size(), raw::crc(idx), h.file_id};
  auto hb = fmt::encode_header(h);
  auto fb = fmt::encode_footer(f);

  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, hb.data(), 64, 0), 64);
  ASSERT_EQ(::pwrite(fd, small_bytes.data(), 16, static_cast<off_t>(small_off)), 16);
  ASSERT_EQ(::pwrite(fd, idx.data(), idx.size(), static_cast<off_t>(index_off)), static_cast<ssize_t>(idx.size()));
  ASSERT_EQ(::pwrite(fd, fb.data(), 64, static_cast<off_t>(index_off + idx.size())), 64);
  ::close(fd);
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  ASSERT_EQ(static_cast<uint64_t>(st.st_size), index_off + idx.size() + 64);
  if (static_cast<uint64_t>(st.st_blocks) * 512 > (uint64_t{1} << 30))
    GTEST_SKIP() << "the file system does not keep files sparse";

  for (bool mmap : {true, false}) {
    ck::Reader r(path, {.verify = ck::Verify::loaded, .mmap = mmap});
    const ck::TensorInfo& t = r.tensor_info("state_dict", "small");
    EXPECT_EQ(t.offset, small_off);
    EXPECT_GT(t.offset, uint64_t{1} << 32);
    EXPECT_EQ(r.tensor_info("state_dict", "big").nbytes, big);
    EXPECT_EQ(r.load_tensor("state_dict", "small").to_vector<float>(), small);
  }
}

}  // namespace
}  // namespace ember::test
