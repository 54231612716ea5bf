// MNIST-format splits: file lookup, loading with the images-vs-labels check, and conversion to
// a TensorDataset.
#include "train/data/mnist.h"

#include <cstdlib>
#include <filesystem>

#include "runtime/error.h"
#include "runtime/parallel.h"
#include "train/data/idx.h"

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

std::shared_ptr<TensorDataset> mnist_dataset(const MnistData& data, ImageLayout layout) {
  const Tensor& img = data.images;
  EMBER_CHECK(img.defined() && img.dtype() == DType::u8 && img.dim() == 3,
              "[mnist] images must be a u8 tensor (N, rows, cols)");
  EMBER_CHECK(data.labels.defined() && data.labels.dim() == 1 && data.labels.size(0) == img.size(0),
              "[mnist] labels must be a tensor (N) with N = ", img.size(0));
  const int64_t n = img.size(0), h = img.size(1), w = img.size(2);
  Tensor pixels = empty(layout == ImageLayout::NCHW ? Shape{n, 1, h, w} : Shape{n, h * w}, DType::f32);
  const Tensor src = img.contiguous();
  const uint8_t* in = src.data_ptr<uint8_t>();
  float* out = pixels.data_ptr<float>();
  parallel_for(0, src.numel(), int64_t{1} << 16, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) out[i] = static_cast<float>(in[i]) / 255.0f;
  });
  return std::make_shared<TensorDataset>(std::vector<Tensor>{pixels, data.labels.to(DType::i64)});
}

std::shared_ptr<TensorDataset> load_mnist_dataset(const std::string& dir, Split split, ImageLayout layout) {
  return mnist_dataset(load_mnist(dir, split), layout);
}

}  // namespace ember::data
