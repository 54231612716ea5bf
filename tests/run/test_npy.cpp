// The .npy reader and writer (checkpoint/npy.h): round trips of each dtype and header
// version, headers laid out as NumPy writes them (byte for byte for the fixed part), and every
// error of the strict reader, each naming the file and what it found.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"
#include "ember/checkpoint/npy.h"

namespace fs = std::filesystem;
using namespace ember;
using ember::read_npy;
using ember::write_npy;
using test::error_of;

namespace {

class Npy : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("ember_npy_" + std::to_string(::getpid()) + "_" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  std::string file(const std::string& name) const { return (dir / name).string(); }

  // Writes a file: magic, version major.0, header length (u16 for 1.x, u32 otherwise), header, data.
  std::string raw(const std::string& name, int major, const std::string& header, const std::string& data = "") {
    std::string bytes = std::string("\x93NUMPY", 6) + static_cast<char>(major) + '\0';
    const size_t len_bytes = major == 1 ? 2 : 4;
    for (size_t i = 0; i < len_bytes; ++i) bytes += static_cast<char>((header.size() >> (8 * i)) & 0xff);
    return write_bytes(name, bytes + header + data);
  }
  std::string write_bytes(const std::string& name, const std::string& bytes) {
    std::ofstream(file(name), std::ios::binary) << bytes;
    return file(name);
  }
  std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  // The error of reading path, which must name the file.
  std::string read_error(const std::string& path) {
    std::string e = error_of([&] { read_npy(path); });
    EXPECT_NE(e.find(path), std::string::npos) << e;
    return e;
  }

  fs::path dir;
};

std::string f32_bytes(std::initializer_list<float> v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), std::data(v), s.size());
  return s;
}

}  // namespace

TEST_F(Npy, RoundTripsEachDtypeAndHeaderVersion) {
  manual_seed(3);
  const Tensor f32 = randn({3, 4, 5});
  const Tensor f64 = randn({7}, DType::f64);
  Tensor u8 = empty({2, 3, 4}, DType::u8);
  for (int i = 0; i < 24; ++i) u8.data_ptr<uint8_t>()[i] = static_cast<uint8_t>(i * 11);
  for (int version : {1, 2, 3}) {
    for (const Tensor& t : {f32, f64, u8}) {
      SCOPED_TRACE(std::string(dtype_name(t.dtype())) + " version " + std::to_string(version));
      const std::string path = file("a.npy");
      write_npy(path, t, version);
      const std::string bytes = read_bytes(path);
      EXPECT_EQ(bytes[6], static_cast<char>(version));
      const size_t data_start = bytes.size() - t.nbytes();
      EXPECT_EQ(data_start % 64, 0u) << "data starts at " << data_start;
      EXPECT_EQ(bytes[data_start - 1], '\n');
      EXPECT_TRUE(test::bit_equal(read_npy(path), t));
    }
  }
  // Non-contiguous input is written in C order.
  write_npy(file("t.npy"), f32.transpose(0, 2));
  EXPECT_TRUE(test::bit_equal(read_npy(file("t.npy")), f32.transpose(0, 2).contiguous()));
}

TEST_F(Npy, ScalarEmptyAndOneDimShapes) {
  write_npy(file("s.npy"), full(Shape{}, 2.5));
  Tensor s = read_npy(file("s.npy"));
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.item<float>(), 2.5f);
  write_npy(file("e.npy"), zeros({0, 4}));
  EXPECT_EQ(read_npy(file("e.npy")).shape(), Shape({0, 4}));
  write_npy(file("v.npy"), zeros({3}, DType::f64));
  EXPECT_NE(read_bytes(file("v.npy")).find("'shape': (3,), }"), std::string::npos);
}

TEST_F(Npy, WritesNumPysHeaderLayout) {
  write_npy(file("a.npy"), zeros({2, 3}));
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  const std::string bytes = read_bytes(file("a.npy"));
  ASSERT_EQ(bytes.size(), 128u + 24u);
  EXPECT_EQ(bytes.substr(0, 10), std::string("\x93NUMPY\x01\x00\x76\x00", 10));  // header length 118
  EXPECT_EQ(bytes.substr(10, dict.size()), dict);
  EXPECT_EQ(bytes.substr(10 + dict.size(), 118 - dict.size() - 1), std::string(118 - dict.size() - 1, ' '));
  EXPECT_EQ(bytes[127], '\n');
}

TEST_F(Npy, ReadsHeadersAsNumPyWritesThem) {
  // NumPy >= 1.24 leaves spare spaces after the dict (so a shape can grow in place); older
  // versions and other writers differ in spacing, key order and quotes.
  const std::string data = f32_bytes({1, 2, 3, 4, 5, 6});
  for (const std::string& header :
       {std::string("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }") + std::string(52, ' ') + "\n",
        std::string("{'shape': (2,3), 'fortran_order': False, 'descr': '<f4'}\n"),
        std::string("{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(2, 3,)}")}) {
    SCOPED_TRACE(header);
    for (int major : {1, 2, 3}) {
      Tensor t = read_npy(raw("h.npy", major, header, data));
      EXPECT_EQ(t.shape(), Shape({2, 3}));
      EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
    }
  }
  Tensor u8 = read_npy(raw("u.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }\n", "\x01\x02\xff"));
  EXPECT_EQ(u8.dtype(), DType::u8);
  EXPECT_EQ(u8.data_ptr<uint8_t>()[2], 255);
}

TEST_F(Npy, RejectsMissingAndNonNpyFiles) {
  EXPECT_NE(read_error(file("missing.npy")).find("cannot open"), std::string::npos);
  EXPECT_NE(read_error(write_bytes("short.npy", "\x93NUM")).find("is not a .npy file"), std::string::npos);
  EXPECT_NE(read_error(write_bytes("text.npy", "hello, this is text")).find("does not start with \\x93NUMPY"),
            std::string::npos);
  EXPECT_NE(read_error(dir.string()).find("not a regular file"), std::string::npos);
}

TEST_F(Npy, RejectsOtherVersions) {
  std::string e = read_error(raw("v4.npy", 4, "{}"));
  EXPECT_NE(e.find("format version 4.0 is not supported"), std::string::npos) << e;
  std::string bytes = read_bytes(raw("v11.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n",
                                     f32_bytes({1})));
  bytes[7] = 1;
  e = read_error(write_bytes("v11.npy", bytes));
  EXPECT_NE(e.find("format version 1.1"), std::string::npos) << e;
}

TEST_F(Npy, RejectsFortranOrderBigEndianAndOtherDtypes) {
  std::string e = read_error(raw("f.npy", 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n",
                                 std::string(24, '\0')));
  EXPECT_NE(e.find("Fortran order"), std::string::npos) << e;
  e = read_error(raw("b.npy", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }\n", std::string(8, '\0')));
  EXPECT_NE(e.find("big-endian data ('>f4')"), std::string::npos) << e;
  EXPECT_NE(e.find("astype('<f4')"), std::string::npos) << e;
  for (const char* descr : {"<i8", "<f2", "|b1", "<c8", "<U3"}) {
    e = read_error(raw("d.npy", 1, std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (), }\n"));
    EXPECT_NE(e.find(std::string("dtype '") + descr + "' is not supported (expected '<f4', '<f8' or '|u1')"),
              std::string::npos)
        << e;
  }
  // A structured dtype's descr is a list, not a string.
  e = read_error(raw("s.npy", 1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (), }\n"));
  EXPECT_NE(e.find("does not parse: expected the descr string"), std::string::npos) << e;
}

TEST_F(Npy, RejectsDataOfAnotherSize) {
  const std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";
  std::string e = read_error(raw("short.npy", 1, h, std::string(20, '\0')));
  EXPECT_NE(e.find("truncated: shape (2, 3) of '<f4' needs 24 bytes of data, the file has 20"), std::string::npos)
      << e;
  e = read_error(raw("long.npy", 1, h, std::string(28, '\0')));
  EXPECT_NE(e.find("4 bytes follow the 24 bytes of data that shape (2, 3) of '<f4' describes"), std::string::npos)
      << e;
}

TEST_F(Npy, RejectsHostileShapesBeforeAllocating) {
  // A header that claims terabytes: refused by the size check, nothing is allocated.
  std::string e = read_error(raw("huge.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }\n",
                                 std::string(8, '\0')));
  EXPECT_NE(e.find("needs 8000000000000 bytes of data, the file has 8"), std::string::npos) << e;
  e = read_error(raw("overflow.npy", 1,
                     "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }\n"));
  EXPECT_NE(e.find("more bytes than fit in 64 bits"), std::string::npos) << e;
  e = read_error(raw("big_dim.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }\n"));
  EXPECT_NE(e.find("does not fit in 64 bits"), std::string::npos) << e;
  e = read_error(raw("rank.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }\n",
                     std::string(4, '\0')));
  EXPECT_NE(e.find("has rank 9; Ember's maximum rank is 8"), std::string::npos) << e;
  e = read_error(raw("neg.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }\n"));
  EXPECT_NE(e.find("not a tuple of non-negative ints"), std::string::npos) << e;
}

TEST_F(Npy, RejectsHeadersThatLieAboutTheirLength) {
  // The preamble announces more header bytes than the file holds.
  std::string bytes = read_bytes(raw("a.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n"));
  bytes[8] = '\xff';
  std::string e = read_error(write_bytes("a.npy", bytes));
  EXPECT_NE(e.find("truncated: the preamble announces a header of"), std::string::npos) << e;
  // A version 2 header length of 4 GiB in a small file, and one longer than any real header.
  e = read_error(write_bytes("b.npy", std::string("\x93NUMPY\x02\x00\xff\xff\xff\xff{}", 14)));
  EXPECT_NE(e.find("announces a header of 4294967295 bytes but only 2 follow"), std::string::npos) << e;
  std::string long_header(70002, ' ');
  long_header.front() = '{';
  long_header.back() = '}';
  e = read_error(raw("c.npy", 2, long_header));
  EXPECT_NE(e.find("the header length 70002 exceeds 65536 bytes"), std::string::npos) << e;
  e = read_error(write_bytes("d.npy", std::string("\x93NUMPY\x02\x00\x01", 9)));
  EXPECT_NE(e.find("is not a .npy file"), std::string::npos) << e;
  e = read_error(write_bytes("e.npy", std::string("\x93NUMPY\x02\x00\x01\x00\x00", 11)));
  EXPECT_NE(e.find("truncated in the preamble (11 bytes)"), std::string::npos) << e;
}

TEST_F(Npy, RejectsMalformedHeaders) {
  const std::pair<std::string, std::string> cases[] = {
      {"'descr': '<f4'", "expected '{'"},
      {"{'descr': '<f4', 'fortran_order': False}", "no 'shape' key"},
      {"{'fortran_order': False, 'shape': ()}", "no 'descr' key"},
      {"{'descr': '<f4', 'shape': ()}", "no 'fortran_order' key"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (), 'extra': 1}", "unknown key 'extra'"},
      {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': ()}", "the key 'descr' appears twice"},
      {"{'descr': '<f4', 'fortran_order': 0, 'shape': ()}", "fortran_order is not True or False"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}", "expected '('"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,)}", "expected ','"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': ()} x", "text after the closing '}'"},
      {"{'descr: '<f4', 'fortran_order': False, 'shape': ()}", "expected ':'"},
      {"{'descr': '<f\\x34', 'fortran_order': False, 'shape': ()}", "escapes in strings are not supported"},
      {"{'descr': '<f4", "unterminated string"},
      {"{'descr': '<f4' 'fortran_order': False}", "expected ','"},
      {std::string("{\x01\xfe}", 4), "the header \"{\\x01\\xfe}\" does not parse"},
  };
  for (const auto& [header, want] : cases) {
    std::string e = read_error(raw("h.npy", 1, header));
    EXPECT_NE(e.find("does not parse"), std::string::npos) << e;
    EXPECT_NE(e.find(want), std::string::npos) << "header " << header << ": " << e;
  }
}

TEST_F(Npy, WriteErrors) {
  std::string e = error_of([&] { write_npy(file("i.npy"), zeros({2}, DType::i64)); });
  EXPECT_NE(e.find("dtype i64 is not supported (f32, f64 or u8)"), std::string::npos) << e;
  e = error_of([&] { write_npy(file("no/such/dir/a.npy"), zeros({2})); });
  EXPECT_NE(e.find("cannot create"), std::string::npos) << e;
  EXPECT_NE(e.find("no/such/dir/a.npy"), std::string::npos) << e;
  e = error_of([&] { write_npy(file("v.npy"), zeros({2}), 4); });
  EXPECT_NE(e.find("version 4 is not one of 1, 2, 3"), std::string::npos) << e;
  // A failed write leaves neither the file nor the temporary one.
  EXPECT_TRUE(fs::is_empty(dir));
}
