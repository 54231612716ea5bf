// Model definitions shared by the training and deployment examples (see models.h).
#include "examples/common/models.h"

#include "ember/runtime/error.h"

namespace ember::examples {

using nn::Conv2d;
using nn::ConvTranspose2d;
using nn::Linear;
using nn::ReLU;
using nn::Sequential;
using nn::Sigmoid;
using std::make_shared;

namespace {

void check_name(const std::string& name) {
  for (const auto& n : model_names())
    if (n == name) return;
  EMBER_THROW("[model] unknown model '", name, "' (expected lit, mlp or conv)");
}

}  // namespace

const std::vector<std::string>& model_names() {
  static const std::vector<std::string> names = {"lit", "mlp", "conv"};
  return names;
}

AutoEncoderParts build_autoencoder(const std::string& name) {
  check_name(name);
  AutoEncoderParts p;
  if (name == "lit") {
    p.encoder = make_shared<Sequential>(make_shared<Linear>(784, 64), make_shared<ReLU>(), make_shared<Linear>(64, 3));
    p.decoder = make_shared<Sequential>(make_shared<Linear>(3, 64), make_shared<ReLU>(), make_shared<Linear>(64, 784));
  } else if (name == "mlp") {
    p.encoder = make_shared<Sequential>(make_shared<Linear>(784, 512), make_shared<ReLU>(), make_shared<Linear>(512, 128),
                                        make_shared<ReLU>(), make_shared<Linear>(128, 32));
    p.decoder = make_shared<Sequential>(make_shared<ReLU>(), make_shared<Linear>(32, 128), make_shared<ReLU>(),
                                        make_shared<Linear>(128, 512), make_shared<ReLU>(), make_shared<Linear>(512, 784),
                                        make_shared<Sigmoid>());
  } else {
    p.encoder = make_shared<Sequential>(make_shared<Conv2d>(1, 16, 3, 2, 1), make_shared<ReLU>(),
                                        make_shared<Conv2d>(16, 32, 3, 2, 1), make_shared<ReLU>());
    p.decoder = make_shared<Sequential>(make_shared<ConvTranspose2d>(32, 16, 3, 2, 1, 1), make_shared<ReLU>(),
                                        make_shared<ConvTranspose2d>(16, 1, 3, 2, 1, 1), make_shared<Sigmoid>());
  }
  return p;
}

data::ImageLayout model_layout(const std::string& name) {
  check_name(name);
  return name == "conv" ? data::ImageLayout::NCHW : data::ImageLayout::Flat;
}

int64_t default_batch_size(const std::string& name) {
  check_name(name);
  return name == "conv" ? 128 : 256;
}

AutoEncoder::AutoEncoder(const std::string& name) : nn::Module("AutoEncoder") {
  AutoEncoderParts p = build_autoencoder(name);
  encoder = register_module("encoder", p.encoder);
  decoder = register_module("decoder", p.decoder);
}

Tensor AutoEncoder::forward(const Tensor& x) { return decoder->forward(encoder->forward(x)); }

}  // namespace ember::examples
