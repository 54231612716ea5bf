// The three MNIST autoencoders of the examples, defined once for training (examples/mnist_ae)
// and the benchmarks (bench/train_throughput). Fixed once for every framework, so that benchmarks against
// other frameworks compare like with like:
//   lit  (default): Linear(784,64)-ReLU-Linear(64,3) / Linear(3,64)-ReLU-Linear(64,784); batch 256
//   mlp : 784-512-128-32 / ReLU-32-128-512-784-Sigmoid, ReLU between layers; batch 256
//   conv: Conv2d(1,16,3,s2,p1)-ReLU-Conv2d(16,32,3,s2,p1)-ReLU /
//         ConvTranspose2d(32,16,3,s2,p1,op1)-ReLU-ConvTranspose2d(16,1,3,s2,p1,op1)-Sigmoid; batch 128
// Parameters are registered as "encoder.<i>.weight" / "decoder.<i>.bias" everywhere.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "ember/nn/nn.h"
#include "ember/train/data/mnist.h"

namespace ember::examples {

struct AutoEncoderParts {
  std::shared_ptr<nn::Sequential> encoder, decoder;
};

// The model names, in the order --help lists them.
const std::vector<std::string>& model_names();
// Builds model `name` (lit, mlp or conv) with freshly initialised weights (from the default
// generator); throws naming the model otherwise.
AutoEncoderParts build_autoencoder(const std::string& name);
// How the model takes images: flat (N, 784) for lit and mlp, (N, 1, 28, 28) for conv.
data::ImageLayout model_layout(const std::string& name);
// The batch size fixed for the model: 256 (lit, mlp) or 128 (conv).
int64_t default_batch_size(const std::string& name);

// encoder and decoder registered under those names, forward = decoder(encoder(x)): the training
// example's module layout as a plain nn::Module (its checkpoints' weights load into it).
class AutoEncoder : public nn::Module {
 public:
  explicit AutoEncoder(const std::string& name);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<nn::Sequential> encoder, decoder;
};

}  // namespace ember::examples
