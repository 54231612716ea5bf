// MNIST-format datasets on disk (MNIST, Fashion-MNIST, ...): finding a split's two IDX files in a
// directory, loading them with their cross-checks, and serving them as a dataset of f32 pixels/255
// and i64 labels. The default directory is Debian's dataset-fashion-mnist.
#pragma once
#include <memory>
#include <string>

#include "ember/runtime/api.h"
#include "ember/runtime/tensor.h"
#include "ember/train/data/dataset.h"

namespace ember::data {

enum class Split { Train, Test };

// Where the MNIST-format files live: $EMBER_DATA if set and non-empty, else
// /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist package).
EMBER_API std::string default_data_dir();

struct MnistFiles {
  std::string images;  // e.g. <dir>/train-images-idx3-ubyte.gz
  std::string labels;  // e.g. <dir>/train-labels-idx1-ubyte.gz
};
// Finds a split's files: <prefix>-images-idx3-ubyte[.gz] and <prefix>-labels-idx1-ubyte[.gz], with
// prefix "train" or "t10k" (the plain file wins when both exist). Throws listing what it looked for.
EMBER_API MnistFiles find_mnist_files(const std::string& dir, Split split);

struct MnistData {
  Tensor images;  // u8 (N, rows, cols)
  Tensor labels;  // u8 (N), each < 10
  MnistFiles files;
};
// Loads a split: both files validated, and as many images as labels.
EMBER_API MnistData load_mnist(const std::string& dir, Split split);

// How a dataset presents images: (N, 1, rows, cols) for conv nets or (N, rows*cols) for MLPs.
enum class ImageLayout { NCHW, Flat };
// Examples {image f32 pixels/255 in `layout`, label i64 ()}. The pixels stay in memory as the
// files' u8 (a quarter of f32's memory: 47 MB instead of 188 MB for 60k images) and are converted
// as batches are gathered; pixels/255 rounds exactly as PyTorch's `uint8_tensor.float().div(255)`.
class EMBER_API MnistDataset : public Dataset {
 public:
  // images: u8 (N, rows, cols); labels: (N), any integer dtype.
  MnistDataset(const Tensor& images, const Tensor& labels, ImageLayout layout);
  int64_t size() const override { return n_; }
  Example get(int64_t index) const override;
  Batch get_batch(std::span<const int64_t> indices, const BatchAllocator& alloc) const override;
  // Images [start, start + count) as one f32 tensor in the dataset's layout (a new tensor).
  Tensor images(int64_t start, int64_t count) const;
  // All labels, i64 (N).
  const Tensor& labels() const { return labels_; }
  ImageLayout layout() const { return layout_; }

 private:
  Shape image_shape() const;  // one image in the layout: (1, rows, cols) or (rows * cols)
  Tensor pixels_;             // u8 (N, rows, cols), contiguous
  Tensor labels_;             // i64 (N)
  ImageLayout layout_;
  int64_t n_ = 0, rows_ = 0, cols_ = 0;
};

// The dataset of a loaded split.
EMBER_API std::shared_ptr<MnistDataset> mnist_dataset(const MnistData& data, ImageLayout layout = ImageLayout::NCHW);
// load_mnist followed by mnist_dataset.
EMBER_API std::shared_ptr<MnistDataset> load_mnist_dataset(const std::string& dir, Split split,
                                                           ImageLayout layout = ImageLayout::NCHW);

}  // namespace ember::data
