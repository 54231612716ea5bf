// The basic layers: Linear, Conv2d, ConvTranspose2d, pooling, Dropout, Embedding, Flatten,
// Unflatten and the activations. Constructors take PyTorch's positional arguments and defaults,
// parameters are public members (as LibTorch's), and default initialisation follows torch's rules.
#pragma once
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ember/nn/module.h"
#include "ember/runtime/ops.h"

namespace ember::nn {

// A kernel size, stride, padding or dilation: one int for both spatial dims, or {h, w}.
// Remembers which form it came in, because pooling layers print it as given (as torch does).
struct EMBER_API Size2 {
  int64_t h = 0;
  int64_t w = 0;
  bool scalar = true;
  Size2(int64_t v) : h(v), w(v), scalar(true) {}  // NOLINT: Conv2d(3, 16, 3) reads as in Python
  Size2(int64_t h_, int64_t w_) : h(h_), w(w_), scalar(false) {}
  std::vector<int64_t> vec() const { return {h, w}; }
  Shape shape() const { return {h, w}; }  // the {h, w} pair of the conv/pool option structs
  std::string py() const;  // "2" or "(2, 3)"
};

// y = x: a placeholder layer.
class EMBER_API Identity : public Module {
 public:
  Identity() : Module("Identity") {}
  Tensor forward(const Tensor& x) override { return x; }
};

// y = x W^T + b. x: (..., in_features) -> (..., out_features).
class EMBER_API Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& x) override;
  // relu(forward(x)), the same values and gradients, with the ReLU applied as the matrix product
  // is stored (linear_relu). Sequential runs a Linear followed by a ReLU this way.
  Tensor forward_relu(const Tensor& x);
  std::string extra_repr() const override;
  // weight ~ kaiming_uniform(a=sqrt(5)), bias ~ U(-1/sqrt(in_features), 1/sqrt(in_features)).
  void reset_parameters();

  int64_t in_features, out_features;
  Tensor weight;  // (out_features, in_features)
  Tensor bias;    // (out_features), undefined without bias

 private:
  // Without grad mode, two forms of the weight made for inference, each on the second call that
  // would use it with the same weight (undefined before), both dropped when `weight` is replaced
  // or written by an in-place op (its version counter). For products of a few rows (batch 1):
  // the weight transposed into a contiguous (in_features, out_features) copy, which the GEMM's
  // few-row path streams as it is instead of packing the whole weight on every call. For more
  // rows: the weight packed into the GEMM kernel's panels (pack_linear_weight), so that no call
  // packs it again.
  Tensor inference_weight();
  std::optional<PackedLinearWeight> packed_weight();
  void check_inference_cache();  // weight_t_mu_ held
  Tensor forward_impl(const Tensor& x, bool relu);
  std::mutex weight_t_mu_;
  Tensor weight_t_, weight_t_src_;
  uint32_t weight_t_version_ = 0;
  PackedLinearWeight weight_packed_;
  bool weight_t_wanted_ = false, weight_packed_wanted_ = false;
};

// 1-D convolution. x: (N, C_in, L) or (C_in, L) -> (N, C_out, L'), computed as a 2-D convolution
// over a height of one, L' = (L + 2 * padding - dilation * (kernel_size - 1) - 1) / stride + 1.
class EMBER_API Conv1d : public Module {
 public:
  Conv1d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride = 1, int64_t padding = 0,
         int64_t dilation = 1, int64_t groups = 1, bool bias = true);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  // weight ~ kaiming_uniform(a=sqrt(5)), bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  void reset_parameters();

  int64_t in_channels, out_channels, kernel_size, stride, padding, dilation, groups;
  Tensor weight;  // (out_channels, in_channels / groups, kernel_size)
  Tensor bias;    // (out_channels)
};

// 2-D convolution. x: (N, C_in, H, W) or (C_in, H, W) -> (N, C_out, H', W').
class EMBER_API Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, Size2 kernel_size, Size2 stride = 1, Size2 padding = 0,
         Size2 dilation = 1, int64_t groups = 1, bool bias = true);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  // weight ~ kaiming_uniform(a=sqrt(5)), bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  void reset_parameters();

  int64_t in_channels, out_channels;
  Size2 kernel_size, stride, padding, dilation;
  int64_t groups;
  Tensor weight;  // (out_channels, in_channels / groups, kh, kw)
  Tensor bias;    // (out_channels)
};

// Transposed 2-D convolution (the gradient of Conv2d w.r.t. its input).
// x: (N, C_in, H, W) or (C_in, H, W) -> (N, C_out, H', W'),
// H' = (H - 1) * stride - 2 * padding + dilation * (kh - 1) + output_padding + 1.
class EMBER_API ConvTranspose2d : public Module {
 public:
  ConvTranspose2d(int64_t in_channels, int64_t out_channels, Size2 kernel_size, Size2 stride = 1,
                  Size2 padding = 0, Size2 output_padding = 0, int64_t groups = 1, bool bias = true,
                  Size2 dilation = 1);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  // As Conv2d; fan_in is computed from the weight as torch does: (out_channels / groups) * kh * kw.
  void reset_parameters();

  int64_t in_channels, out_channels;
  Size2 kernel_size, stride, padding, output_padding, dilation;
  int64_t groups;
  Tensor weight;  // (in_channels, out_channels / groups, kh, kw)
  Tensor bias;    // (out_channels)
};

// Max pooling over (kh, kw) windows; stride defaults to the kernel size.
class EMBER_API MaxPool2d : public Module {
 public:
  MaxPool2d(Size2 kernel_size, std::optional<Size2> stride = std::nullopt, Size2 padding = 0, Size2 dilation = 1,
            bool ceil_mode = false);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  Size2 kernel_size, stride, padding, dilation;
  bool ceil_mode;
};

// Average pooling over (kh, kw) windows; stride defaults to the kernel size.
class EMBER_API AvgPool2d : public Module {
 public:
  AvgPool2d(Size2 kernel_size, std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
            bool ceil_mode = false, bool count_include_pad = true);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  Size2 kernel_size, stride, padding;
  bool ceil_mode, count_include_pad;
};

// Zeroes elements with probability p and scales the rest by 1/(1-p) in training; identity in eval.
class EMBER_API Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  double p;
};

// A lookup table: i64 indices (...) -> (..., embedding_dim). The padding_idx row gets no gradient
// and is initialised to zeros.
class EMBER_API Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, std::optional<int64_t> padding_idx = std::nullopt);
  Tensor forward(const Tensor& indices) override;
  std::string extra_repr() const override;
  // weight ~ N(0, 1), padding row zeroed.
  void reset_parameters();

  int64_t num_embeddings, embedding_dim;
  std::optional<int64_t> padding_idx;  // normalised to [0, num_embeddings)
  Tensor weight;                       // (num_embeddings, embedding_dim)
};

// Flattens dims start_dim..end_dim into one.
class EMBER_API Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  int64_t start_dim, end_dim;
};

// Splits dim into unflattened_size (one entry may be -1).
class EMBER_API Unflatten : public Module {
 public:
  Unflatten(int64_t dim, std::vector<int64_t> unflattened_size);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  int64_t dim;
  std::vector<int64_t> unflattened_size;
};

// --- activations -------------------------------------------------------------------------------
class EMBER_API ReLU : public Module {
 public:
  ReLU() : Module("ReLU") {}
  Tensor forward(const Tensor& x) override { return relu(x); }
};

class EMBER_API LeakyReLU : public Module {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : Module("LeakyReLU"), negative_slope(negative_slope) {}
  Tensor forward(const Tensor& x) override { return leaky_relu(x, negative_slope); }
  std::string extra_repr() const override { return "negative_slope=" + py_float(negative_slope); }

  double negative_slope;
};

class EMBER_API Sigmoid : public Module {
 public:
  Sigmoid() : Module("Sigmoid") {}
  Tensor forward(const Tensor& x) override { return sigmoid(x); }
};

class EMBER_API Tanh : public Module {
 public:
  Tanh() : Module("Tanh") {}
  Tensor forward(const Tensor& x) override { return tanh(x); }
};

// approximate: "none" (exact, erf) or "tanh".
class EMBER_API GELU : public Module {
 public:
  explicit GELU(std::string approximate = "none");
  Tensor forward(const Tensor& x) override { return gelu(x, approximate.c_str()); }
  std::string extra_repr() const override { return "approximate='" + approximate + "'"; }

  std::string approximate;
};

// softmax along dim (required: torch's implicit-dim legacy rule is not supported).
class EMBER_API Softmax : public Module {
 public:
  explicit Softmax(int64_t dim) : Module("Softmax"), dim(dim) {}
  Tensor forward(const Tensor& x) override { return softmax(x, dim); }
  std::string extra_repr() const override { return "dim=" + std::to_string(dim); }

  int64_t dim;
};

}  // namespace ember::nn
