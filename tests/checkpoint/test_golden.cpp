// Compatibility: the golden checkpoints committed under tests/checkpoint/golden/ (written by
// format 1.0) must load, verify and hold exactly the values of golden_data.cpp in every later
// version of Ember. Never regenerate these files; add new ones for new format versions.
#include "ember/checkpoint/checkpoint.h"
#include "tests/checkpoint/golden_data.h"
#include "tests/checkpoint/util.h"

namespace ember::test {
namespace {

namespace ck = ember::checkpoint;

std::string golden_path(const std::string& file) { return std::string(EMBER_CKPT_TEST_DIR) + "/golden/" + file; }

TEST(Golden, Format1_0FilesLoadWithTheirValues) {
  auto cases = golden::cases_v1_0();
  ASSERT_EQ(cases.size(), 5u);
  for (auto& c : cases) {
    SCOPED_TRACE(c.file);
    for (bool mmap : {true, false}) {
      ck::Reader r(golden_path(c.file), {.verify = ck::Verify::all, .mmap = mmap});
      EXPECT_EQ(r.format_major(), 1);
      EXPECT_EQ(r.format_minor(), 0);
      EXPECT_EQ(r.file_id(), *c.options.file_id);
      EXPECT_EQ(r.align_log2(), c.options.align_log2);
      EXPECT_EQ(r.weights_only(), c.options.weights_only);
      Value v = r.load();
      EXPECT_TRUE(v == c.root) << "loaded: " << v.repr() << "\nexpected: " << c.root.repr();
    }
  }
}

TEST(Golden, CompressedGoldenFileHoldsCompressedTensors) {
  ck::Reader r(golden_path("v1_0_trainer_zlib.ckpt"));
  size_t compressed = 0;
  for (auto& t : r.tensors()) compressed += t.compressed;
  // big.weight and its moments (constant 64x64), fc1.weight and fc2.weight (ramps) shrink.
  EXPECT_EQ(compressed, 5u);
  EXPECT_TRUE(r.tensor_info(ck::kStateDict, "big.weight").compressed);
  EXPECT_LT(r.tensor_info(ck::kStateDict, "big.weight").stored_bytes, 64u);
  EXPECT_FALSE(r.tensor_info(ck::kStateDict, "fc1.bias").compressed);  // 16 bytes: zlib cannot shrink it
}

TEST(Golden, WriterIsDeterministic) {
  // The same value and options (fixed file id) give the same bytes, so checkpoints can be
  // compared and deduplicated by hash.
  ScratchDir dir;
  for (auto& c : golden::cases_v1_0()) {
    SCOPED_TRACE(c.file);
    ck::save(dir.file("a"), c.root, c.options);
    ck::save(dir.file("b"), c.root, c.options);
    EXPECT_TRUE(read_bytes(dir.file("a")) == read_bytes(dir.file("b")));
  }
}

}  // namespace
}  // namespace ember::test
