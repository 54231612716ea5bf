// The basic layers: construction with torch's default initialisation, forward passes over
// runtime/ops.h, and torch's extra_repr strings.
#include "ember/nn/layers.h"

#include <cmath>

#include "ember/nn/init.h"
#include "ember/runtime/autocast.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/error.h"

namespace ember::nn {

namespace {

void check_positive(int64_t v, const char* layer, const char* what) {
  EMBER_CHECK(v > 0, "[", layer, "] ", what, " must be positive, got ", v);
}

void check_positive(const Size2& v, const char* layer, const char* what) {
  EMBER_CHECK(v.h > 0 && v.w > 0, "[", layer, "] ", what, " must be positive, got ", v.py());
}

void check_non_negative(const Size2& v, const char* layer, const char* what) {
  EMBER_CHECK(v.h >= 0 && v.w >= 0, "[", layer, "] ", what, " must be non-negative, got ", v.py());
}

// Convolutions split their channels into `groups` groups: both channel counts must divide.
void check_groups(const char* layer, int64_t in_channels, int64_t out_channels, int64_t groups) {
  check_positive(groups, layer, "groups");
  EMBER_CHECK(in_channels % groups == 0, "[", layer, "] in_channels (", in_channels, ") must be divisible by groups (",
              groups, ")");
  EMBER_CHECK(out_channels % groups == 0, "[", layer, "] out_channels (", out_channels,
              ") must be divisible by groups (", groups, ")");
}

// Conv/pool layers take (N, C, H, W) or an unbatched (C, H, W) input, as torch's.
template <typename Fn>
Tensor batched_4d(const Tensor& x, const char* layer, Fn&& fn) {
  EMBER_CHECK(x.defined(), "[", layer, "] the input is undefined");
  EMBER_CHECK(x.dim() == 3 || x.dim() == 4, "[", layer, "] expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape ",
              x.shape().str());
  if (x.dim() == 4) return fn(x);
  return fn(x.unsqueeze(0)).squeeze(0);
}

// Linear/conv default init: weight ~ kaiming_uniform(a=sqrt(5)) (i.e. U(+-1/sqrt(fan_in))), bias
// ~ U(+-1/sqrt(fan_in)) with fan_in taken from the weight as torch's _calculate_fan_in_and_fan_out.
void reset_weight_and_bias(const Tensor& weight, const Tensor& bias) {
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    int64_t fan_in = init::calculate_fan_in_and_fan_out(weight).fan_in;
    double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    init::uniform_(bias, -bound, bound);
  }
}

// torch's conv extra_repr: optional parts appear only when they differ from the defaults.
std::string conv_repr(int64_t in, int64_t out, const Size2& k, const Size2& s, const Size2& p, const Size2& d,
                      const Size2* output_padding, int64_t groups, bool has_bias) {
  std::string r = str_cat(in, ", ", out, ", kernel_size=", py_tuple(k.vec()), ", stride=", py_tuple(s.vec()));
  if (p.h != 0 || p.w != 0) r += ", padding=" + py_tuple(p.vec());
  if (d.h != 1 || d.w != 1) r += ", dilation=" + py_tuple(d.vec());
  if (output_padding && (output_padding->h != 0 || output_padding->w != 0))
    r += ", output_padding=" + py_tuple(output_padding->vec());
  if (groups != 1) r += str_cat(", groups=", groups);
  if (!has_bias) r += ", bias=False";
  return r;
}

}  // namespace

std::string Size2::py() const { return scalar ? std::to_string(h) : py_tuple({h, w}); }

// --- Linear -------------------------------------------------------------------------------------

Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias)
    : Module("Linear"), in_features(in_features), out_features(out_features) {
  EMBER_CHECK(in_features >= 0 && out_features >= 0, "[Linear] in_features and out_features must be >= 0, got ",
              in_features, " and ", out_features);
  weight = register_parameter("weight", empty({out_features, in_features}));
  if (has_bias) bias = register_parameter("bias", empty({out_features}));
  reset_parameters();
}

void Linear::reset_parameters() { reset_weight_and_bias(weight, bias); }

Tensor Linear::forward(const Tensor& x) { return forward_impl(x, false); }

Tensor Linear::forward_relu(const Tensor& x) { return forward_impl(x, true); }

Tensor Linear::forward_impl(const Tensor& x, bool relu) {
  auto op = [relu](const Tensor& in, const Tensor& w, const Tensor& b) {
    return relu ? linear_relu(in, w, b) : linear(in, w, b);
  };
  // Autocast casts the weight on every call anyway (it caches casts in grad mode only).
  if (grad_enabled() || autocast_enabled() || !weight.defined() || weight.dim() != 2 || weight.numel() == 0)
    return op(x, weight, bias);
  // Up to this many rows the GEMM reads the weight unpacked (its few-row path); past it, it packs.
  constexpr int64_t kFewRows = 4;
  if (x.dim() >= 1 && x.size(-1) == in_features && in_features > 0 && x.numel() / in_features > kFewRows) {
    if (const std::optional<PackedLinearWeight> packed = packed_weight()) return linear_packed(x, *packed, bias, relu);
    return op(x, weight, bias);
  }
  // The (out, in) view of the transposed copy: linear's weight.t() is then row-major. Each output
  // gets the same sums in the same order, so the result is bitwise the grad-mode one.
  const Tensor wt = inference_weight();
  return wt.defined() ? op(x, wt.t(), bias) : op(x, weight, bias);
}

// Forgets both inference forms when the weight is another tensor or was changed in place.
void Linear::check_inference_cache() {
  const bool same = weight_t_src_.impl_ptr() == weight.impl_ptr() && weight_t_version_ == weight.version() &&
                    weight_t_src_.dtype() == weight.dtype() && weight_t_src_.device() == weight.device();
  if (same) return;
  weight_t_src_ = weight;
  weight_t_version_ = weight.version();
  weight_t_ = Tensor();
  weight_packed_ = PackedLinearWeight();
  weight_t_wanted_ = weight_packed_wanted_ = false;
}

// Each form is made on the second no-grad call that wants it with the same weight: making it costs
// about what one call's packing of the weight costs, so a single forward (ember-run on one image)
// skips it.
Tensor Linear::inference_weight() {
  std::lock_guard<std::mutex> lock(weight_t_mu_);
  check_inference_cache();
  if (!weight_t_.defined() && weight_t_wanted_) weight_t_ = weight.detach().t().contiguous();
  weight_t_wanted_ = true;
  return weight_t_;
}

std::optional<PackedLinearWeight> Linear::packed_weight() {
  std::lock_guard<std::mutex> lock(weight_t_mu_);
  check_inference_cache();
  if (!weight_packed_.weight.defined() && weight_packed_wanted_) weight_packed_ = pack_linear_weight(weight);
  weight_packed_wanted_ = true;
  if (!weight_packed_.panels.defined()) return std::nullopt;
  return weight_packed_;
}

std::string Linear::extra_repr() const {
  return str_cat("in_features=", in_features, ", out_features=", out_features, ", bias=", py_bool(bias.defined()));
}

// --- Conv1d ---------------------------------------------------------------------------------------

Conv1d::Conv1d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride, int64_t padding,
               int64_t dilation, int64_t groups, bool has_bias)
    : Module("Conv1d"),
      in_channels(in_channels),
      out_channels(out_channels),
      kernel_size(kernel_size),
      stride(stride),
      padding(padding),
      dilation(dilation),
      groups(groups) {
  check_groups("Conv1d", in_channels, out_channels, groups);
  check_positive(kernel_size, "Conv1d", "kernel_size");
  check_positive(stride, "Conv1d", "stride");
  check_positive(dilation, "Conv1d", "dilation");
  EMBER_CHECK(padding >= 0, "[Conv1d] padding must be non-negative, got ", padding);
  weight = register_parameter("weight", empty({out_channels, in_channels / groups, kernel_size}));
  if (has_bias) bias = register_parameter("bias", empty({out_channels}));
  reset_parameters();
}

void Conv1d::reset_parameters() { reset_weight_and_bias(weight, bias); }

Tensor Conv1d::forward(const Tensor& x) {
  EMBER_CHECK(x.defined(), "[Conv1d] the input is undefined");
  EMBER_CHECK(x.dim() == 2 || x.dim() == 3, "[Conv1d] expected a 2-D (C, L) or 3-D (N, C, L) input, got shape ",
              x.shape().str());
  Conv2dOptions o;
  o.stride = {1, stride};
  o.padding = {0, padding};
  o.dilation = {1, dilation};
  o.groups = groups;
  // (N, C, L) -> (N, C, 1, L): the kernel (K, C/g, k) becomes (K, C/g, 1, k).
  const Tensor x3 = x.dim() == 3 ? x : x.unsqueeze(0);
  Tensor y = conv2d(x3.unsqueeze(2), weight.unsqueeze(2), bias, o).squeeze(2);
  return x.dim() == 3 ? y : y.squeeze(0);
}

std::string Conv1d::extra_repr() const {
  std::string r = str_cat(in_channels, ", ", out_channels, ", kernel_size=", py_tuple({kernel_size}),
                          ", stride=", py_tuple({stride}));
  if (padding != 0) r += ", padding=" + py_tuple({padding});
  if (dilation != 1) r += ", dilation=" + py_tuple({dilation});
  if (groups != 1) r += str_cat(", groups=", groups);
  if (!bias.defined()) r += ", bias=False";
  return r;
}

// --- Conv2d ---------------------------------------------------------------------------------------

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, Size2 kernel_size, Size2 stride, Size2 padding,
               Size2 dilation, int64_t groups, bool has_bias)
    : Module("Conv2d"),
      in_channels(in_channels),
      out_channels(out_channels),
      kernel_size(kernel_size),
      stride(stride),
      padding(padding),
      dilation(dilation),
      groups(groups) {
  check_groups("Conv2d", in_channels, out_channels, groups);
  check_positive(kernel_size, "Conv2d", "kernel_size");
  check_positive(stride, "Conv2d", "stride");
  check_positive(dilation, "Conv2d", "dilation");
  check_non_negative(padding, "Conv2d", "padding");
  weight = register_parameter("weight", empty({out_channels, in_channels / groups, kernel_size.h, kernel_size.w}));
  if (has_bias) bias = register_parameter("bias", empty({out_channels}));
  reset_parameters();
}

void Conv2d::reset_parameters() { reset_weight_and_bias(weight, bias); }

Tensor Conv2d::forward(const Tensor& x) {
  Conv2dOptions o;
  o.stride = stride.shape();
  o.padding = padding.shape();
  o.dilation = dilation.shape();
  o.groups = groups;
  return batched_4d(x, "Conv2d", [&](const Tensor& x4) { return conv2d(x4, weight, bias, o); });
}

std::string Conv2d::extra_repr() const {
  return conv_repr(in_channels, out_channels, kernel_size, stride, padding, dilation, nullptr, groups,
                   bias.defined());
}

// --- ConvTranspose2d ------------------------------------------------------------------------------

ConvTranspose2d::ConvTranspose2d(int64_t in_channels, int64_t out_channels, Size2 kernel_size, Size2 stride,
                                 Size2 padding, Size2 output_padding, int64_t groups, bool has_bias,
                                 Size2 dilation)
    : Module("ConvTranspose2d"),
      in_channels(in_channels),
      out_channels(out_channels),
      kernel_size(kernel_size),
      stride(stride),
      padding(padding),
      output_padding(output_padding),
      dilation(dilation),
      groups(groups) {
  check_groups("ConvTranspose2d", in_channels, out_channels, groups);
  check_positive(kernel_size, "ConvTranspose2d", "kernel_size");
  check_positive(stride, "ConvTranspose2d", "stride");
  check_positive(dilation, "ConvTranspose2d", "dilation");
  check_non_negative(padding, "ConvTranspose2d", "padding");
  check_non_negative(output_padding, "ConvTranspose2d", "output_padding");
  EMBER_CHECK(output_padding.h < std::max(stride.h, dilation.h) && output_padding.w < std::max(stride.w, dilation.w),
              "[ConvTranspose2d] output_padding ", output_padding.py(), " must be smaller than stride ", stride.py(),
              " or dilation ", dilation.py());
  weight = register_parameter("weight", empty({in_channels, out_channels / groups, kernel_size.h, kernel_size.w}));
  if (has_bias) bias = register_parameter("bias", empty({out_channels}));
  reset_parameters();
}

void ConvTranspose2d::reset_parameters() { reset_weight_and_bias(weight, bias); }

Tensor ConvTranspose2d::forward(const Tensor& x) {
  Conv2dOptions o;
  o.stride = stride.shape();
  o.padding = padding.shape();
  o.dilation = dilation.shape();
  o.output_padding = output_padding.shape();
  o.groups = groups;
  return batched_4d(x, "ConvTranspose2d", [&](const Tensor& x4) { return conv_transpose2d(x4, weight, bias, o); });
}

std::string ConvTranspose2d::extra_repr() const {
  return conv_repr(in_channels, out_channels, kernel_size, stride, padding, dilation, &output_padding, groups,
                   bias.defined());
}

// --- pooling --------------------------------------------------------------------------------------

MaxPool2d::MaxPool2d(Size2 kernel_size, std::optional<Size2> stride, Size2 padding, Size2 dilation,
                     bool ceil_mode)
    : Module("MaxPool2d"),
      kernel_size(kernel_size),
      stride(stride.value_or(kernel_size)),
      padding(padding),
      dilation(dilation),
      ceil_mode(ceil_mode) {
  check_positive(kernel_size, "MaxPool2d", "kernel_size");
  check_positive(this->stride, "MaxPool2d", "stride");
  check_positive(dilation, "MaxPool2d", "dilation");
  check_non_negative(padding, "MaxPool2d", "padding");
  EMBER_CHECK(padding.h * 2 <= kernel_size.h && padding.w * 2 <= kernel_size.w, "[MaxPool2d] padding ", padding.py(),
              " must be at most half of kernel_size ", kernel_size.py());
}

Tensor MaxPool2d::forward(const Tensor& x) {
  Pool2dOptions o;
  o.kernel_size = kernel_size.shape();
  o.stride = stride.shape();
  o.padding = padding.shape();
  o.dilation = dilation.shape();
  o.ceil_mode = ceil_mode;
  return batched_4d(x, "MaxPool2d", [&](const Tensor& x4) { return max_pool2d(x4, o); });
}

std::string MaxPool2d::extra_repr() const {
  return str_cat("kernel_size=", kernel_size.py(), ", stride=", stride.py(), ", padding=", padding.py(),
                 ", dilation=", dilation.py(), ", ceil_mode=", py_bool(ceil_mode));
}

AvgPool2d::AvgPool2d(Size2 kernel_size, std::optional<Size2> stride, Size2 padding, bool ceil_mode,
                     bool count_include_pad)
    : Module("AvgPool2d"),
      kernel_size(kernel_size),
      stride(stride.value_or(kernel_size)),
      padding(padding),
      ceil_mode(ceil_mode),
      count_include_pad(count_include_pad) {
  check_positive(kernel_size, "AvgPool2d", "kernel_size");
  check_positive(this->stride, "AvgPool2d", "stride");
  check_non_negative(padding, "AvgPool2d", "padding");
  EMBER_CHECK(padding.h * 2 <= kernel_size.h && padding.w * 2 <= kernel_size.w, "[AvgPool2d] padding ", padding.py(),
              " must be at most half of kernel_size ", kernel_size.py());
}

Tensor AvgPool2d::forward(const Tensor& x) {
  Pool2dOptions o;
  o.kernel_size = kernel_size.shape();
  o.stride = stride.shape();
  o.padding = padding.shape();
  o.ceil_mode = ceil_mode;
  o.count_include_pad = count_include_pad;
  return batched_4d(x, "AvgPool2d", [&](const Tensor& x4) { return avg_pool2d(x4, o); });
}

std::string AvgPool2d::extra_repr() const {
  return str_cat("kernel_size=", kernel_size.py(), ", stride=", stride.py(), ", padding=", padding.py());
}

// --- Dropout --------------------------------------------------------------------------------------

Dropout::Dropout(double p) : Module("Dropout"), p(p) {
  EMBER_CHECK(p >= 0.0 && p <= 1.0, "[Dropout] probability p must be between 0 and 1, got ", p);
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p, is_training()); }

std::string Dropout::extra_repr() const { return "p=" + py_float(p) + ", inplace=False"; }

// --- Embedding ------------------------------------------------------------------------------------

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, std::optional<int64_t> padding_idx)
    : Module("Embedding"), num_embeddings(num_embeddings), embedding_dim(embedding_dim) {
  EMBER_CHECK(num_embeddings >= 0 && embedding_dim >= 0,
              "[Embedding] num_embeddings and embedding_dim must be >= 0, got ", num_embeddings, " and ",
              embedding_dim);
  if (padding_idx) {
    int64_t idx = *padding_idx;
    EMBER_CHECK(idx < num_embeddings && idx >= -num_embeddings, "[Embedding] padding_idx ", idx,
                " must be within num_embeddings (", num_embeddings, ")");
    this->padding_idx = idx < 0 ? idx + num_embeddings : idx;
  }
  weight = register_parameter("weight", empty({num_embeddings, embedding_dim}));
  reset_parameters();
}

void Embedding::reset_parameters() {
  init::normal_(weight);
  if (padding_idx) {
    NoGradGuard no_grad;
    weight.select(0, *padding_idx).fill_(0.0);
  }
}

Tensor Embedding::forward(const Tensor& indices) {
  EMBER_CHECK(indices.defined(), "[Embedding] the indices are undefined");
  EMBER_CHECK(!is_floating(indices.dtype()) && indices.dtype() != DType::b8, "[Embedding] indices must be integers, got ",
              dtype_name(indices.dtype()));
  Tensor idx = indices.dtype() == DType::i64 ? indices : indices.to(DType::i64);
  Tensor out = embedding(weight, idx);
  if (padding_idx && out.requires_grad()) {
    // The padding row gets no gradient: route those positions through a detached copy.
    Tensor pad = eq(idx, scalar_tensor(static_cast<double>(*padding_idx), TensorOptions(DType::i64).with_device(idx.device())));
    out = where(pad.unsqueeze(-1), out.detach(), out);
  }
  return out;
}

std::string Embedding::extra_repr() const {
  std::string r = str_cat(num_embeddings, ", ", embedding_dim);
  if (padding_idx) r += str_cat(", padding_idx=", *padding_idx);
  return r;
}

// --- Flatten / Unflatten --------------------------------------------------------------------------

Flatten::Flatten(int64_t start_dim, int64_t end_dim) : Module("Flatten"), start_dim(start_dim), end_dim(end_dim) {}

Tensor Flatten::forward(const Tensor& x) { return x.flatten(start_dim, end_dim); }

std::string Flatten::extra_repr() const { return str_cat("start_dim=", start_dim, ", end_dim=", end_dim); }

Unflatten::Unflatten(int64_t dim, std::vector<int64_t> unflattened_size)
    : Module("Unflatten"), dim(dim), unflattened_size(std::move(unflattened_size)) {
  EMBER_CHECK(!this->unflattened_size.empty(), "[Unflatten] unflattened_size must not be empty");
  int inferred = 0;
  for (int64_t s : this->unflattened_size) {
    EMBER_CHECK(s >= 0 || s == -1, "[Unflatten] sizes must be >= 0 or -1, got ", py_tuple(this->unflattened_size));
    inferred += s == -1;
  }
  EMBER_CHECK(inferred <= 1, "[Unflatten] at most one size may be -1, got ", py_tuple(this->unflattened_size));
}

Tensor Unflatten::forward(const Tensor& x) {
  int d = wrap_dim(dim, x.dim(), "Unflatten");
  int64_t known = 1;
  int infer_at = -1;
  for (size_t i = 0; i < unflattened_size.size(); ++i) {
    if (unflattened_size[i] == -1) infer_at = static_cast<int>(i);
    else known *= unflattened_size[i];
  }
  int64_t n = x.shape()[d];
  bool ok = infer_at >= 0 ? (known > 0 && n % known == 0) : known == n;
  EMBER_CHECK(ok, "[Unflatten] sizes ", py_tuple(unflattened_size), " do not multiply to dim ", dim, " of size ", n,
              " (input shape ", x.shape().str(), ")");
  std::vector<int64_t> shape;
  for (int i = 0; i < d; ++i) shape.push_back(x.shape()[i]);
  for (size_t i = 0; i < unflattened_size.size(); ++i)
    shape.push_back(static_cast<int>(i) == infer_at ? n / known : unflattened_size[i]);
  for (int i = d + 1; i < x.dim(); ++i) shape.push_back(x.shape()[i]);
  return x.reshape(Shape(shape));
}

std::string Unflatten::extra_repr() const {
  return str_cat("dim=", dim, ", unflattened_size=", py_tuple(unflattened_size));
}

// --- activations ----------------------------------------------------------------------------------

GELU::GELU(std::string approximate) : Module("GELU"), approximate(std::move(approximate)) {
  EMBER_CHECK(this->approximate == "none" || this->approximate == "tanh",
              "[GELU] approximate must be 'none' or 'tanh', got '", this->approximate, "'");
}

}  // namespace ember::nn
