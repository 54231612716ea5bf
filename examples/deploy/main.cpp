// ember-deploy: the data side of deploying a model with ember-run. ember-run takes arrays in and
// gives arrays out (.npy); this program makes the input array from MNIST-format test images and
// turns an autoencoder's output array back into a picture. It never builds a model itself: the
// model comes from the checkpoint's module tree, in ember-run.
//   ember-deploy images OUT.npy [--for CKPT | --layout flat|nchw] [--first I] [--count N]
//                       [--labels LABELS.npy] [--data DIR]
//   ember-deploy show IMAGES.npy OUTPUTS.npy OUT.png [--columns C]
// Exit codes: 0 success, 1 error (a message naming the file), 2 bad usage.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include "ember/checkpoint/checkpoint.h"
#include "ember/checkpoint/npy.h"
#include "ember/runtime/ops.h"
#include "ember/train/data/mnist.h"
#include "examples/common/draw.h"
#include "examples/common/models.h"
#include "examples/common/png.h"

using namespace ember;

namespace {

struct ImagesArgs {
  std::string out, like, layout, labels, dir;
  int64_t first = 0, count = 16;
};

struct ShowArgs {
  std::string images, outputs, png;
  int columns = 8;
};

// The image layout of the model in an ember-mnist-ae checkpoint, from its "model" hyperparameter.
data::ImageLayout layout_of_checkpoint(const std::string& path) {
  checkpoint::Reader reader(path);
  EMBER_CHECK(reader.has_section(checkpoint::kHyperParameters), "[ember-deploy] --for '", path,
              "': the file has no hyperparameters (expected a checkpoint written by ember-mnist-ae; use --layout)");
  const Value hp = reader.section(checkpoint::kHyperParameters);
  EMBER_CHECK(hp.is_map() && hp.contains("model") && hp.at("model").is_string(), "[ember-deploy] --for '", path,
              "': the hyperparameters have no string 'model' (expected a checkpoint written by ember-mnist-ae; "
              "use --layout)");
  return examples::model_layout(hp.at("model").as_string());
}

// Writes test images [first, first + count) as u8 pixels in the chosen layout (ember-run's
// --scale 1/255 turns them into the f32 pixels/255 the models were trained on), and their labels.
int run_images(const ImagesArgs& a) {
  data::ImageLayout layout = data::ImageLayout::Flat;
  if (!a.like.empty()) layout = layout_of_checkpoint(a.like);
  else if (a.layout == "nchw") layout = data::ImageLayout::NCHW;
  data::MnistData test = data::load_mnist(a.dir.empty() ? data::default_data_dir() : a.dir, data::Split::Test);
  const int64_t n = test.images.shape()[0], rows = test.images.shape()[1], cols = test.images.shape()[2];
  EMBER_CHECK(a.first < n && a.count <= n - a.first, "[ember-deploy] --first ", a.first, " --count ", a.count,
              ": the test split of ", test.files.images, " has ", n, " images");
  Tensor images = test.images.narrow(0, a.first, a.count).contiguous();
  images = layout == data::ImageLayout::Flat ? images.reshape({a.count, rows * cols})
                                             : images.reshape({a.count, 1, rows, cols});
  write_npy(a.out, images);
  std::printf("wrote %s: test images %lld..%lld of %s, u8 %s\n", a.out.c_str(), static_cast<long long>(a.first),
              static_cast<long long>(a.first + a.count - 1), test.files.images.c_str(),
              images.shape().str().c_str());
  if (!a.labels.empty()) {
    write_npy(a.labels, test.labels.narrow(0, a.first, a.count).contiguous());
    std::printf("wrote %s: their labels, u8 (%lld)\n", a.labels.c_str(), static_cast<long long>(a.count));
  }
  return 0;
}

// The images of a .npy as f32 values in [0, 1] with one row per image: u8 pixels are divided by 255.
Tensor pictures(const std::string& path, const char* what) {
  Tensor t = read_npy(path);
  EMBER_CHECK(t.dim() >= 2 && t.shape()[0] > 0, "[ember-deploy] ", what, " '", path, "' holds ", t.shape().str(),
              ": expected one image per row (N, 784) or (N, 1, 28, 28)");
  Tensor f = t.dtype() == DType::u8 ? div(t.to(DType::f32), 255.0) : t.to(DType::f32);
  return f.reshape({t.shape()[0], -1});
}

// Draws each image above the model's output for it and prints the mean squared error per image.
int run_show(const ShowArgs& a) {
  Tensor x = pictures(a.images, "IMAGES"), y = pictures(a.outputs, "OUTPUTS");
  EMBER_CHECK(x.shape() == y.shape(), "[ember-deploy] '", a.images, "' holds ", x.shape().str(), " pixels but '",
              a.outputs, "' ", y.shape().str(), ": expected an autoencoder's output for each image");
  Tensor err = mean(mul(sub(y, x), sub(y, x)), {1});
  for (int64_t i = 0; i < err.shape()[0]; ++i)
    std::printf("image %lld: reconstruction MSE %.6f\n", static_cast<long long>(i), err.select(0, i).item_double());
  std::printf("mean MSE %.6f over %lld images\n", mean(err).item_double(), static_cast<long long>(err.shape()[0]));
  examples::write_png(a.png, examples::reconstruction_grid(x, y, a.columns, 2));
  std::printf("wrote %s: each image above its reconstruction\n", a.png.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ember-deploy: the arrays around ember-run for the MNIST examples: test images in, pictures out"};
  app.require_subcommand(1);
  ImagesArgs ia;
  CLI::App* images = app.add_subcommand("images", "write MNIST-format test images as a u8 .npy for ember-run");
  images->add_option("OUT.npy", ia.out, "output file")->required();
  CLI::Option* like = images->add_option("--for", ia.like, "an ember-mnist-ae checkpoint: the layout of its model");
  images->add_option("--layout", ia.layout, "flat: (N, 784); nchw: (N, 1, 28, 28)")
      ->check(CLI::IsMember({"flat", "nchw"}))
      ->excludes(like)
      ->default_str("flat");
  images->add_option("--first", ia.first, "index of the first test image")->check(CLI::NonNegativeNumber);
  images->add_option("--count", ia.count, "number of images")->check(CLI::PositiveNumber)->capture_default_str();
  images->add_option("--labels", ia.labels, "also write their labels (u8) to this .npy");
  images->add_option("--data", ia.dir, "MNIST-format data directory (default: $EMBER_DATA, else Fashion-MNIST)");
  ShowArgs sa;
  CLI::App* show = app.add_subcommand("show", "draw images above an autoencoder's outputs for them (ember-run's .npy)");
  show->add_option("IMAGES.npy", sa.images, "the input array (u8 pixels or f32 in [0, 1])")->required();
  show->add_option("OUTPUTS.npy", sa.outputs, "ember-run's output for it")->required();
  show->add_option("OUT.png", sa.png, "the picture to write")->required();
  show->add_option("--columns", sa.columns, "images per row")->check(CLI::Range(1, 64))->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    return images->parsed() ? run_images(ia) : run_show(sa);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ember-deploy: error: %s\n", e.what());
    return 1;
  }
}
