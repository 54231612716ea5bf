// IDX reader and MNIST split loading: small files written here (plain and gzip), every refusal
// (by its message), and the real Fashion-MNIST files when Debian's package is installed.
#include <cstdlib>
#include <filesystem>
#include <numeric>

#include <gtest/gtest.h>

#include "tests/data/helpers.h"
#include "tests/support/check.h"
#include "ember/train/data/idx.h"
#include "ember/train/data/mnist.h"

namespace ember {
namespace {

using data::read_idx_images;
using data::read_idx_labels;
using test::idx_bytes;
using test::TempDir;
using test::throws_with;
using test::values_f64;

constexpr uint32_t kImagesMagic = 0x00000803;
constexpr uint32_t kLabelsMagic = 0x00000801;

std::vector<uint8_t> iota_bytes(size_t n, uint8_t start = 0) {
  std::vector<uint8_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

// 3 images of 2x4 holding 0..23.
std::vector<uint8_t> small_images() { return idx_bytes(kImagesMagic, {3, 2, 4}, iota_bytes(24)); }
std::vector<uint8_t> small_labels() { return idx_bytes(kLabelsMagic, {3}, {0, 9, 5}); }

std::vector<double> iota_f64(size_t n) {
  std::vector<double> v(n);
  std::iota(v.begin(), v.end(), 0.0);
  return v;
}

TEST(Idx, ReadsPlainImagesAndLabels) {
  TempDir dir;
  test::write_bytes(dir.file("img"), small_images());
  test::write_bytes(dir.file("lab"), small_labels());
  Tensor img = read_idx_images(dir.file("img"));
  EXPECT_EQ(img.dtype(), DType::u8);
  EXPECT_EQ(img.shape(), (Shape{3, 2, 4}));
  EXPECT_EQ(values_f64(img), iota_f64(24));
  Tensor lab = read_idx_labels(dir.file("lab"));
  EXPECT_EQ(lab.shape(), (Shape{3}));
  EXPECT_EQ(values_f64(lab), (std::vector<double>{0, 9, 5}));
}

TEST(Idx, ReadsGzipLikePlain) {
  TempDir dir;
  test::write_gz(dir.file("img.gz"), small_images());
  test::write_gz(dir.file("lab.gz"), small_labels());
  Tensor img = read_idx_images(dir.file("img.gz"));
  EXPECT_EQ(img.shape(), (Shape{3, 2, 4}));
  EXPECT_EQ(values_f64(img), iota_f64(24));
  EXPECT_EQ(values_f64(read_idx_labels(dir.file("lab.gz"))), (std::vector<double>{0, 9, 5}));
}

TEST(Idx, GenericRank) {
  TempDir dir;
  test::write_bytes(dir.file("x"), idx_bytes(0x00000802, {2, 3}, iota_bytes(6, 10)));
  Tensor t = data::read_idx(dir.file("x"), 2);
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(values_f64(t), (std::vector<double>{10, 11, 12, 13, 14, 15}));
}

TEST(IdxErrors, MissingFile) {
  TempDir dir;
  const std::string p = dir.file("nope");
  EXPECT_TRUE(throws_with([&] { read_idx_images(p); }, {"[idx] " + p + ": cannot open (No such file or directory)"}));
  EXPECT_TRUE(throws_with([&] { read_idx_images(dir.str()); }, {"[idx] " + dir.str() + ": cannot read (Is a directory)"}));
}

TEST(IdxErrors, BadMagic) {
  TempDir dir;
  auto bytes = small_images();
  bytes[0] = 0x12;
  bytes[1] = 0x34;
  test::write_bytes(dir.file("img"), bytes);
  EXPECT_TRUE(throws_with([&] { read_idx_images(dir.file("img")); },
                          {"[idx] " + dir.file("img") + ": bad magic 0x12340803 (expected 0x00000803"}));
}

TEST(IdxErrors, WrongElementType) {
  TempDir dir;
  test::write_bytes(dir.file("img"), idx_bytes(0x00000D03, {1, 1, 1}, {0, 0, 0, 0}));
  EXPECT_TRUE(throws_with([&] { read_idx_images(dir.file("img")); },
                          {dir.file("img"), "element type 0x0D (float32) is not supported (expected 0x08"}));
}

TEST(IdxErrors, WrongRank) {
  TempDir dir;
  test::write_bytes(dir.file("lab"), small_labels());
  EXPECT_TRUE(throws_with([&] { read_idx_images(dir.file("lab")); },
                          {dir.file("lab"), "magic 0x00000801 declares rank 1, expected rank 3 (images, magic 0x00000803)"}));
}

TEST(IdxErrors, TruncatedHeader) {
  TempDir dir;
  test::write_bytes(dir.file("empty"), {});
  EXPECT_TRUE(throws_with([&] { read_idx_images(dir.file("empty")); },
                          {dir.file("empty"), "truncated header: the file holds 0 bytes"}));
  test::write_bytes(dir.file("two"), {0, 0});
  EXPECT_TRUE(throws_with([&] { read_idx_images(dir.file("two")); }, {"truncated header: the file holds 2 bytes"}));
  auto bytes = small_images();
  bytes.resize(10);  // magic + 1.5 dims
  test::write_bytes(dir.file("dims"), bytes);
  EXPECT_TRUE(throws_with([&] { read_idx_images(dir.file("dims")); },
                          {dir.file("dims"), "truncated header: it ends after 10 bytes, a rank-3 IDX header is 16 bytes"}));
  test::write_gz(dir.file("dims.gz"), bytes);
  EXPECT_TRUE(throws_with([&] { read_idx_images(dir.file("dims.gz")); }, {"truncated header: it ends after 10 bytes"}));
}

TEST(IdxErrors, ZeroDimension) {
  TempDir dir;
  test::write_bytes(dir.file("img"), idx_bytes(kImagesMagic, {3, 0, 4}, {}));
  EXPECT_TRUE(throws_with([&] { read_idx_images(dir.file("img")); },
                          {dir.file("img"), "dimension 1 is 0 in the header (dims (3, 0, 4))"}));
}

TEST(IdxErrors, TruncatedPayload) {
  TempDir dir;
  auto bytes = small_images();
  bytes.resize(bytes.size() - 4);
  test::write_bytes(dir.file("img"), bytes);
  test::write_gz(dir.file("img.gz"), bytes);
  for (const std::string& p : {dir.file("img"), dir.file("img.gz")})
    EXPECT_TRUE(throws_with([&] { read_idx_images(p); },
                            {"[idx] " + p + ": header says 3 images of 2x4 but the file holds 20 bytes of pixels (expected 24)"}));
  auto lab = small_labels();
  lab.pop_back();
  test::write_bytes(dir.file("lab"), lab);
  EXPECT_TRUE(throws_with([&] { read_idx_labels(dir.file("lab")); },
                          {"header says 3 labels but the file holds 2 bytes of labels (expected 3)"}));
}

TEST(IdxErrors, TrailingBytes) {
  TempDir dir;
  auto bytes = small_images();
  bytes.insert(bytes.end(), {1, 2, 3});
  test::write_bytes(dir.file("img"), bytes);
  test::write_gz(dir.file("img.gz"), bytes);
  for (const std::string& p : {dir.file("img"), dir.file("img.gz")})
    EXPECT_TRUE(throws_with([&] { read_idx_images(p); },
                            {p, "holds 27 bytes of pixels (expected 24: 3 trailing bytes)"}));
}

TEST(IdxErrors, HugeDeclaredSizeIsRefusedBeforeAllocating) {
  TempDir dir;
  // MNIST's training header over 8 bytes of pixels: plain, and gzip (far beyond deflate's 1032:1).
  auto bytes = idx_bytes(kImagesMagic, {60000, 28, 28}, iota_bytes(8));
  test::write_bytes(dir.file("img"), bytes);
  test::write_gz(dir.file("img.gz"), bytes);
  for (const std::string& p : {dir.file("img"), dir.file("img.gz")})
    EXPECT_TRUE(throws_with([&] { read_idx_images(p); },
                            {"header says 60000 images of 28x28 but the file holds 8 bytes of pixels (expected 47040000)"}));
  // Over the reader's 2 GiB limit.
  test::write_bytes(dir.file("big"), idx_bytes(kImagesMagic, {65536, 65536, 1}, {}));
  EXPECT_TRUE(throws_with([&] { read_idx_images(dir.file("big")); },
                          {dir.file("big"), "header declares dims (65536, 65536, 1), more than the 2147483648-byte limit"}));
}

TEST(IdxErrors, LabelOutOfRange) {
  TempDir dir;
  test::write_bytes(dir.file("lab"), idx_bytes(kLabelsMagic, {4}, {0, 9, 10, 3}));
  EXPECT_TRUE(throws_with([&] { read_idx_labels(dir.file("lab")); },
                          {dir.file("lab"), "label 10 at index 2 is out of range (expected 0..9)"}));
  EXPECT_EQ(read_idx_labels(dir.file("lab"), 11).numel(), 4);
}

TEST(IdxErrors, BadGzip) {
  TempDir dir;
  // 4000 pixels of varied values so the deflate stream is long enough to cut.
  std::vector<uint8_t> px(4000);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 7919) % 251);
  test::write_gz(dir.file("img.gz"), idx_bytes(kImagesMagic, {5, 20, 40}, px));
  const auto gz = test::read_bytes(dir.file("img.gz"));
  ASSERT_GT(gz.size(), 200u);

  auto cut = gz;
  cut.resize(gz.size() / 2);
  test::write_bytes(dir.file("cut.gz"), cut);
  EXPECT_TRUE(throws_with([&] { read_idx_images(dir.file("cut.gz")); },
                          {"[idx] " + dir.file("cut.gz") + ": truncated gzip stream: it ends after"}));

  auto bad_crc = gz;
  bad_crc[gz.size() - 8] ^= 0xFF;  // the CRC-32 in the gzip trailer
  test::write_bytes(dir.file("crc.gz"), bad_crc);
  EXPECT_TRUE(throws_with([&] { read_idx_images(dir.file("crc.gz")); },
                          {"[idx] " + dir.file("crc.gz") + ": corrupt gzip data", "incorrect data check"}));

  auto bad_block = gz;
  bad_block[10] = 0xFF;  // first deflate byte: block type 3 is invalid
  test::write_bytes(dir.file("block.gz"), bad_block);
  EXPECT_TRUE(throws_with([&] { read_idx_images(dir.file("block.gz")); },
                          {"[idx] " + dir.file("block.gz") + ": corrupt gzip data after 0 bytes", "invalid block type"}));
}

// --- MNIST splits ------------------------------------------------------------------------------

TEST(Mnist, FindsPlainOrGzipFilesAndListsWhatItLookedFor) {
  TempDir dir;
  EXPECT_TRUE(throws_with([&] { data::find_mnist_files(dir.str(), data::Split::Test); },
                          {"[mnist] " + dir.str() + " lacks the test split: looked for " + dir.file("t10k-images-idx3-ubyte") +
                               ", " + dir.file("t10k-images-idx3-ubyte.gz") + ", " + dir.file("t10k-labels-idx1-ubyte") +
                               ", " + dir.file("t10k-labels-idx1-ubyte.gz")}));
  test::write_bytes(dir.file("t10k-images-idx3-ubyte"), small_images());
  test::write_gz(dir.file("t10k-labels-idx1-ubyte.gz"), small_labels());
  auto files = data::find_mnist_files(dir.str(), data::Split::Test);
  EXPECT_EQ(files.images, dir.file("t10k-images-idx3-ubyte"));
  EXPECT_EQ(files.labels, dir.file("t10k-labels-idx1-ubyte.gz"));
  EXPECT_TRUE(throws_with([&] { data::find_mnist_files(dir.str(), data::Split::Train); },
                          {"lacks the training split: looked for " + dir.file("train-images-idx3-ubyte")}));
  EXPECT_TRUE(throws_with([&] { data::find_mnist_files(dir.file("missing"), data::Split::Train); },
                          {"[mnist] data directory " + dir.file("missing") + " does not exist"}));
}

TEST(Mnist, LoadsASplitIntoADataset) {
  TempDir dir;
  test::write_gz(dir.file("train-images-idx3-ubyte.gz"), small_images());
  test::write_gz(dir.file("train-labels-idx1-ubyte.gz"), small_labels());
  auto d = data::load_mnist(dir.str(), data::Split::Train);
  EXPECT_EQ(d.images.shape(), (Shape{3, 2, 4}));
  auto ds = data::mnist_dataset(d, data::ImageLayout::NCHW);
  ASSERT_EQ(ds->size(), 3);
  const Tensor px = ds->images(0, 3);
  EXPECT_EQ(px.dtype(), DType::f32);
  EXPECT_EQ(px.shape(), (Shape{3, 1, 2, 4}));
  const float* p = px.data_ptr<float>();
  for (int i = 0; i < 24; ++i) EXPECT_EQ(p[i], static_cast<float>(i) / 255.0f);
  EXPECT_EQ(ds->labels().dtype(), DType::i64);
  EXPECT_EQ(values_f64(ds->labels()), (std::vector<double>{0, 9, 5}));
  auto flat = data::mnist_dataset(d, data::ImageLayout::Flat);
  EXPECT_EQ(flat->images(0, 3).shape(), (Shape{3, 8}));
  // Examples and batches convert the stored u8 pixels the same way.
  data::Example ex = ds->get(2);
  EXPECT_EQ(ex[0].shape(), (Shape{1, 2, 4}));
  EXPECT_EQ(ex[0].to_vector<float>()[3], 19.0f / 255.0f);
  EXPECT_EQ(ex[1].item<int64_t>(), 5);
  const int64_t idx[] = {2, 0};
  data::Batch b = flat->get_batch(idx, data::default_batch_alloc);
  EXPECT_EQ(b[0].shape(), (Shape{2, 8}));
  EXPECT_EQ(b[0].to_vector<float>()[0], 16.0f / 255.0f);
  EXPECT_EQ(b[0].to_vector<float>()[8 + 7], 7.0f / 255.0f);
  EXPECT_EQ(values_f64(b[1]), (std::vector<double>{5, 0}));
  EXPECT_THROW(ds->get(3), Error);
  EXPECT_THROW(ds->images(2, 2), Error);
}

TEST(Mnist, DatasetRejectsImagesAndLabelsThatDoNotFit) {
  Tensor u8 = from_vector(std::vector<double>(24, 1.0), {3, 2, 4}, DType::u8);
  Tensor labels = from_vector(std::vector<int64_t>{0, 1, 2}, {3});
  EXPECT_TRUE(throws_with([&] { data::MnistDataset(u8.to(DType::f32), labels, data::ImageLayout::Flat); },
                          {"[mnist] images must be a u8 tensor (N, rows, cols)"}));
  EXPECT_TRUE(throws_with([&] { data::MnistDataset(u8.reshape({3, 8}), labels, data::ImageLayout::Flat); },
                          {"[mnist] images must be a u8 tensor (N, rows, cols)"}));
  EXPECT_TRUE(throws_with(
      [&] { data::MnistDataset(u8, from_vector(std::vector<int64_t>{0, 1}, {2}), data::ImageLayout::Flat); },
      {"[mnist] labels must be a tensor (N) with N = 3"}));
  data::MnistDataset ok(u8, labels, data::ImageLayout::Flat);
  const int64_t bad[] = {1, 3};
  EXPECT_TRUE(throws_with([&] { ok.get_batch(bad, data::default_batch_alloc); },
                          {"[mnist] index 3 is out of range for 3 examples"}));
}

TEST(Mnist, ImagesAndLabelsMustAgreeInCount) {
  TempDir dir;
  test::write_bytes(dir.file("t10k-images-idx3-ubyte"), small_images());
  test::write_bytes(dir.file("t10k-labels-idx1-ubyte"), idx_bytes(kLabelsMagic, {2}, {1, 2}));
  EXPECT_TRUE(throws_with([&] { data::load_mnist(dir.str(), data::Split::Test); },
                          {"[mnist] " + dir.file("t10k-images-idx3-ubyte") + " holds 3 images but " +
                           dir.file("t10k-labels-idx1-ubyte") + " holds 2 labels"}));
}

TEST(Mnist, DefaultDataDirHonoursEmberData) {
  const char* old = std::getenv("EMBER_DATA");
  const std::string saved = old ? old : "";
  ::setenv("EMBER_DATA", "/some/where", 1);
  EXPECT_EQ(data::default_data_dir(), "/some/where");
  ::setenv("EMBER_DATA", "", 1);
  EXPECT_EQ(data::default_data_dir(), "/usr/share/datasets/fashion-mnist");
  ::unsetenv("EMBER_DATA");
  EXPECT_EQ(data::default_data_dir(), "/usr/share/datasets/fashion-mnist");
  if (old) ::setenv("EMBER_DATA", saved.c_str(), 1);
}

// Debian's dataset-fashion-mnist; the expected values were computed with numpy from the same files.
constexpr const char* kFashionDir = "/usr/share/datasets/fashion-mnist";

TEST(FashionMnist, TestSplit) {
  if (!std::filesystem::is_directory(kFashionDir)) GTEST_SKIP() << kFashionDir << " is not installed";
  auto d = data::load_mnist(kFashionDir, data::Split::Test);
  EXPECT_EQ(d.images.shape(), (Shape{10000, 28, 28}));
  EXPECT_EQ(d.labels.shape(), (Shape{10000}));
  std::vector<int64_t> hist(10, 0);
  const uint8_t* lab = d.labels.data_ptr<uint8_t>();
  for (int64_t i = 0; i < 10000; ++i) ++hist[lab[i]];
  EXPECT_EQ(hist, std::vector<int64_t>(10, 1000));
  EXPECT_EQ(std::vector<int>(lab, lab + 10), (std::vector<int>{9, 2, 1, 1, 6, 1, 4, 6, 5, 7}));
  const uint8_t* px = d.images.data_ptr<uint8_t>();
  int64_t sum = 0, first = 0;
  uint8_t lo = 255, hi = 0;
  for (int64_t i = 0; i < d.images.numel(); ++i) {
    sum += px[i];
    if (i < 784) first += px[i];
    lo = std::min(lo, px[i]);
    hi = std::max(hi, px[i]);
  }
  EXPECT_EQ(lo, 0);
  EXPECT_EQ(hi, 255);
  EXPECT_EQ(sum, 573469082);
  EXPECT_EQ(first, 33456);

  auto ds = data::mnist_dataset(d, data::ImageLayout::Flat);
  Tensor all = ds->images(0, 10000);
  EXPECT_EQ(all.shape(), (Shape{10000, 784}));
  EXPECT_EQ(all.data_ptr<float>()[784 * 5 + 400], static_cast<float>(px[784 * 5 + 400]) / 255.0f);
}

TEST(FashionMnist, TrainSplit) {
  if (!std::filesystem::is_directory(kFashionDir)) GTEST_SKIP() << kFashionDir << " is not installed";
  auto d = data::load_mnist(kFashionDir, data::Split::Train);
  EXPECT_EQ(d.images.shape(), (Shape{60000, 28, 28}));
  std::vector<int64_t> hist(10, 0);
  const uint8_t* lab = d.labels.data_ptr<uint8_t>();
  for (int64_t i = 0; i < 60000; ++i) ++hist[lab[i]];
  EXPECT_EQ(hist, std::vector<int64_t>(10, 6000));
  const uint8_t* px = d.images.data_ptr<uint8_t>();
  EXPECT_EQ(std::accumulate(px, px + d.images.numel(), int64_t{0}), 3431114169);
}

}  // namespace
}  // namespace ember
