// MNIST-format splits: file lookup, loading with the images-vs-labels check, and conversion to
// a TensorDataset.
#include "ember/train/data/mnist.h"

#include <cstdlib>
#include <filesystem>

#include "ember/runtime/convert.h"
#include "ember/runtime/error.h"
#include "ember/runtime/parallel.h"
#include "ember/train/data/idx.h"

namespace ember::data {
namespace fs = std::filesystem;

std::string default_data_dir() {
  const char* env = std::getenv("EMBER_DATA");
  if (env && *env) return env;
  return "/usr/share/datasets/fashion-mnist";
}

namespace {

// The first existing regular file among `stem` and `stem.gz` in dir, or "" after noting both.
std::string find_one(const fs::path& dir, const std::string& stem, std::string& looked_for) {
  for (const std::string& name : {stem, stem + ".gz"}) {
    const fs::path p = dir / name;
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return p.string();
    looked_for += str_cat(looked_for.empty() ? "" : ", ", p.string());
  }
  return "";
}

}  // namespace

MnistFiles find_mnist_files(const std::string& dir, Split split) {
  const std::string prefix = split == Split::Train ? "train" : "t10k";
  std::error_code ec;
  EMBER_CHECK(fs::is_directory(dir, ec), "[mnist] data directory ", dir,
              " does not exist (point --data or EMBER_DATA at a directory of MNIST-format files)");
  std::string looked_for;
  MnistFiles f;
  f.images = find_one(dir, prefix + "-images-idx3-ubyte", looked_for);
  f.labels = find_one(dir, prefix + "-labels-idx1-ubyte", looked_for);
  EMBER_CHECK(!f.images.empty() && !f.labels.empty(), "[mnist] ", dir, " lacks the ",
              split == Split::Train ? "training" : "test", " split: looked for ", looked_for,
              " (point --data or EMBER_DATA at a directory of MNIST-format files)");
  return f;
}

MnistData load_mnist(const std::string& dir, Split split) {
  MnistData d;
  d.files = find_mnist_files(dir, split);
  d.images = read_idx_images(d.files.images);
  d.labels = read_idx_labels(d.files.labels, 10);
  EMBER_CHECK(d.images.size(0) == d.labels.size(0), "[mnist] ", d.files.images, " holds ", d.images.size(0),
              " images but ", d.files.labels, " holds ", d.labels.size(0), " labels");
  return d;
}

namespace {

// dst[i] = float(src[i]) / 255 (IEEE division: the same in every ISA variant, vectorised).
void convert_row(const uint8_t* src, float* dst, int64_t n) { u8_to_f32_divided(src, dst, n, 255.0f); }

// dst[i] = src[i] / 255 for n pixels, on the thread pool for large batches.
void convert_pixels(const uint8_t* src, float* dst, int64_t n) {
  parallel_for(0, n, int64_t{1} << 16, [&](int64_t lo, int64_t hi) { convert_row(src + lo, dst + lo, hi - lo); });
}

}  // namespace

MnistDataset::MnistDataset(const Tensor& images, const Tensor& labels, ImageLayout layout) : layout_(layout) {
  EMBER_CHECK(images.defined() && images.dtype() == DType::u8 && images.dim() == 3,
              "[mnist] images must be a u8 tensor (N, rows, cols)");
  EMBER_CHECK(labels.defined() && labels.dim() == 1 && labels.size(0) == images.size(0),
              "[mnist] labels must be a tensor (N) with N = ", images.size(0));
  pixels_ = images.detach().to(kCPU).contiguous();
  labels_ = labels.detach().to(kCPU).to(DType::i64).contiguous();
  n_ = pixels_.size(0);
  rows_ = pixels_.size(1);
  cols_ = pixels_.size(2);
}

Shape MnistDataset::image_shape() const {
  return layout_ == ImageLayout::NCHW ? Shape{1, rows_, cols_} : Shape{rows_ * cols_};
}

Example MnistDataset::get(int64_t index) const {
  EMBER_CHECK(index >= 0 && index < n_, "[mnist] index ", index, " is out of range for ", n_, " examples");
  return {images(index, 1).squeeze(0), labels_.select(0, index)};
}

Batch MnistDataset::get_batch(std::span<const int64_t> indices, const BatchAllocator& alloc) const {
  const int64_t n = static_cast<int64_t>(indices.size());
  for (int64_t i : indices) EMBER_CHECK(i >= 0 && i < n_, "[mnist] index ", i, " is out of range for ", n_, " examples");
  Shape xs = image_shape();
  xs.insert(0, n);
  Tensor x = alloc(xs, DType::f32), y = alloc(Shape{n}, DType::i64);
  const int64_t px = rows_ * cols_;
  const uint8_t* src = pixels_.data_ptr<uint8_t>();
  float* dst = x.data_ptr<float>();
  const int64_t* lab = labels_.data_ptr<int64_t>();
  int64_t* out = y.data_ptr<int64_t>();
  parallel_for(0, n, std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(px, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) {
      convert_row(src + indices[k] * px, dst + k * px, px);
      out[k] = lab[indices[k]];
    }
  });
  Batch b;
  b.reserve(2);
  b.push_back(std::move(x));
  b.push_back(std::move(y));
  return b;
}

Tensor MnistDataset::images(int64_t start, int64_t count) const {
  EMBER_CHECK(start >= 0 && count >= 0 && start + count <= n_, "[mnist] images [", start, ", ", start + count,
              ") are out of range for ", n_, " examples");
  Shape s = image_shape();
  s.insert(0, count);
  Tensor out = empty(s, DType::f32);
  convert_pixels(pixels_.data_ptr<uint8_t>() + start * rows_ * cols_, out.data_ptr<float>(), count * rows_ * cols_);
  return out;
}

std::shared_ptr<MnistDataset> mnist_dataset(const MnistData& data, ImageLayout layout) {
  return std::make_shared<MnistDataset>(data.images, data.labels, layout);
}

std::shared_ptr<MnistDataset> load_mnist_dataset(const std::string& dir, Split split, ImageLayout layout) {
  return mnist_dataset(load_mnist(dir, split), layout);
}

}  // namespace ember::data
