// ember-deploy: the inference side of the MNIST example without the training stack's moving parts.
// Loads only the weights of a checkpoint written by ember-mnist-ae (weights_only: optimizer state,
// loops and callbacks are never read), rebuilds the model from its "model" hyperparameter with
// plain nn modules, reconstructs one test image and writes it, above its reconstruction, as a PNG.
// usage: ember-deploy CKPT OUT.png [--data DIR] [--index I]
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "ember/checkpoint/checkpoint.h"
#include "examples/common/draw.h"
#include "examples/common/models.h"
#include "examples/common/png.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/train/data/mnist.h"

using namespace ember;

namespace {

const char* kUsage =
    "usage: ember-deploy CKPT OUT.png [--data DIR] [--index I]\n"
    "  Reconstructs test image I (default 0) of the MNIST-format data in DIR (default: $EMBER_DATA, else\n"
    "  /usr/share/datasets/fashion-mnist) with the autoencoder in CKPT (from ember-mnist-ae fit) and writes\n"
    "  the image above its reconstruction to OUT.png. Exit codes: 0 success, 1 error, 2 bad usage.\n";

int usage_error(const std::string& message) {
  std::fprintf(stderr, "ember-deploy: error: %s\n%s", message.c_str(), kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string ckpt, out, dir;
  long index = 0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (arg == "--data" || arg == "--index") {
      if (i + 1 >= argc) return usage_error(arg + " needs a value");
      std::string v = argv[++i];
      if (arg == "--data") {
        dir = v;
      } else {
        char* end = nullptr;
        index = std::strtol(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0' || index < 0) return usage_error("--index " + v + ": expected an integer >= 0");
      }
    } else if (!arg.empty() && arg[0] == '-') {
      return usage_error("unknown option " + arg);
    } else if (ckpt.empty()) {
      ckpt = arg;
    } else if (out.empty()) {
      out = arg;
    } else {
      return usage_error("unexpected argument " + arg);
    }
  }
  if (out.empty()) return usage_error("CKPT and OUT.png are required");

  try {
    checkpoint::ReadOptions ro;
    ro.weights_only = true;
    Value weights = checkpoint::load(ckpt, ro);
    EMBER_CHECK(weights.contains(checkpoint::kHyperParameters) && weights.at(checkpoint::kHyperParameters).contains("model"),
                "[ember-deploy] ", ckpt, " has no 'model' hyperparameter (was it written by ember-mnist-ae?)");
    const std::string model_name = weights.at(checkpoint::kHyperParameters).at("model").as_string();
    examples::AutoEncoder model(model_name);
    model.load_state_dict(weights.at(checkpoint::kStateDict));
    model.eval();

    auto test = data::load_mnist_dataset(dir.empty() ? data::default_data_dir() : dir, data::Split::Test,
                                         examples::model_layout(model_name));
    EMBER_CHECK(index < test->size(), "[ember-deploy] --index ", index, " is out of range: the test split has ",
                test->size(), " images");
    Tensor x = test->images(index, 1);
    NoGradGuard no_grad;
    Tensor y = model.forward(x);
    double mse = mse_loss(y, x).item_double();
    examples::write_png(out, examples::reconstruction_grid(x, y, 1, 4));
    std::printf("model %s, test image %ld: reconstruction MSE %.6f; wrote %s\n", model_name.c_str(), index, mse, out.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ember-deploy: error: %s\n", e.what());
    return 1;
  }
}
