// BatchNorm and LayerNorm from mean/sub/mul/sqrt: (x - mean) * (1 / sqrt(var + eps)) * w + b,
// the same order of operations as torch's CPU kernels.
#include "ember/nn/normalization.h"

#include "ember/runtime/autograd.h"
#include "ember/runtime/error.h"
#include "ember/runtime/ops.h"

namespace ember::nn {

// --- BatchNorm -------------------------------------------------------------------------------------

BatchNormBase::BatchNormBase(std::string name, int64_t num_features, double eps, std::optional<double> momentum,
                             bool affine, bool track_running_stats)
    : Module(std::move(name)),
      num_features(num_features),
      eps(eps),
      momentum(momentum),
      affine(affine),
      track_running_stats(track_running_stats) {
  EMBER_CHECK(num_features > 0, "[", type_name(), "] num_features must be positive, got ", num_features);
  EMBER_CHECK(eps >= 0.0, "[", type_name(), "] eps must be >= 0, got ", eps);
  if (affine) {
    weight = register_parameter("weight", empty({num_features}));
    bias = register_parameter("bias", empty({num_features}));
  }
  if (track_running_stats) {
    running_mean = register_buffer("running_mean", zeros({num_features}));
    running_var = register_buffer("running_var", ones({num_features}));
    num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, DType::i64));
  }
  reset_parameters();
}

void BatchNormBase::reset_running_stats() {
  if (!track_running_stats) return;
  NoGradGuard no_grad;
  running_mean.zero_();
  running_var.fill_(1.0);
  num_batches_tracked.zero_();
}

void BatchNormBase::reset_parameters() {
  reset_running_stats();
  if (!affine) return;
  NoGradGuard no_grad;
  weight.fill_(1.0);
  bias.zero_();
}

Tensor BatchNormBase::forward(const Tensor& x) {
  EMBER_CHECK(x.defined(), "[", type_name(), "] the input is undefined");
  check_input(x);
  EMBER_CHECK(x.shape()[1] == num_features, "[", type_name(), "] expected ", num_features,
              " channels (dim 1), got input shape ", x.shape().str());
  const bool update_stats = is_training() && track_running_stats;
  const bool use_batch_stats = is_training() || !track_running_stats;

  std::vector<int64_t> reduce_dims{0};
  for (int d = 2; d < x.dim(); ++d) reduce_dims.push_back(d);
  Shape channel_shape(std::vector<int64_t>(static_cast<size_t>(x.dim()), 1));
  channel_shape[1] = num_features;
  const int64_t per_channel = x.numel() / num_features;

  Tensor centered, invstd;
  if (use_batch_stats) {
    EMBER_CHECK(per_channel > 1, "[", type_name(),
                "] expected more than 1 value per channel to use batch statistics, got input shape ", x.shape().str());
    Tensor batch_mean = mean(x, reduce_dims, /*keepdim=*/true);
    centered = x - batch_mean;
    Tensor batch_var = mean(centered * centered, reduce_dims, /*keepdim=*/true);
    invstd = rdiv(sqrt(batch_var + eps), 1.0);
    if (update_stats) {
      NoGradGuard no_grad;
      // Integer in-place arithmetic is not an op: count on the host, from the value this layer
      // last wrote unless the buffer was replaced or written since (load_state_dict, to()).
      const std::shared_ptr<Storage>& st = num_batches_tracked.storage();
      const bool same = !tracked_storage_.owner_before(st) && !st.owner_before(tracked_storage_) &&
                        !tracked_storage_.expired() && tracked_version_ == num_batches_tracked.version();
      const int64_t batches = (same ? tracked_value_ : num_batches_tracked.item<int64_t>()) + 1;
      num_batches_tracked.fill_(static_cast<double>(batches));
      tracked_value_ = batches;
      tracked_storage_ = st;
      tracked_version_ = num_batches_tracked.version();
      double factor = momentum ? *momentum : 1.0 / static_cast<double>(batches);
      double unbias = static_cast<double>(per_channel) / static_cast<double>(per_channel - 1);
      running_mean.mul_(1.0 - factor).add_(batch_mean.detach().reshape({num_features}), factor);
      running_var.mul_(1.0 - factor).add_(batch_var.detach().reshape({num_features}), factor * unbias);
    }
  } else {
    centered = x - running_mean.reshape(channel_shape);
    invstd = rdiv(sqrt(running_var.reshape(channel_shape) + eps), 1.0);
  }
  Tensor y = centered * invstd;
  if (affine) y = y * weight.reshape(channel_shape) + bias.reshape(channel_shape);
  return y;
}

std::string BatchNormBase::extra_repr() const {
  return str_cat(num_features, ", eps=", py_float(eps), ", momentum=", momentum ? py_float(*momentum) : "None",
                 ", affine=", py_bool(affine), ", track_running_stats=", py_bool(track_running_stats));
}

void BatchNorm1d::check_input(const Tensor& x) const {
  EMBER_CHECK(x.dim() == 2 || x.dim() == 3, "[BatchNorm1d] expected 2D or 3D input (got ", x.dim(),
              "D input of shape ", x.shape().str(), ")");
}

void BatchNorm2d::check_input(const Tensor& x) const {
  EMBER_CHECK(x.dim() == 4, "[BatchNorm2d] expected 4D input (got ", x.dim(), "D input of shape ", x.shape().str(),
              ")");
}

// --- LayerNorm -------------------------------------------------------------------------------------

LayerNorm::LayerNorm(std::vector<int64_t> normalized_shape, double eps, bool elementwise_affine)
    : Module("LayerNorm"), normalized_shape(std::move(normalized_shape)), eps(eps), elementwise_affine(elementwise_affine) {
  EMBER_CHECK(!this->normalized_shape.empty(), "[LayerNorm] normalized_shape must not be empty");
  for (int64_t s : this->normalized_shape)
    EMBER_CHECK(s > 0, "[LayerNorm] normalized_shape ", py_tuple(this->normalized_shape), " must be positive");
  if (elementwise_affine) {
    weight = register_parameter("weight", empty(Shape(this->normalized_shape)));
    bias = register_parameter("bias", empty(Shape(this->normalized_shape)));
  }
  reset_parameters();
}

void LayerNorm::reset_parameters() {
  if (!elementwise_affine) return;
  NoGradGuard no_grad;
  weight.fill_(1.0);
  bias.zero_();
}

Tensor LayerNorm::forward(const Tensor& x) {
  EMBER_CHECK(x.defined(), "[LayerNorm] the input is undefined");
  const int k = static_cast<int>(normalized_shape.size());
  bool ok = x.dim() >= k;
  for (int i = 0; ok && i < k; ++i) ok = x.shape()[x.dim() - k + i] == normalized_shape[static_cast<size_t>(i)];
  EMBER_CHECK(ok, "[LayerNorm] normalized_shape ", py_tuple(normalized_shape),
              " expects an input whose trailing dims match, got shape ", x.shape().str());
  std::vector<int64_t> dims;
  for (int i = x.dim() - k; i < x.dim(); ++i) dims.push_back(i);
  Tensor centered = x - mean(x, dims, /*keepdim=*/true);
  Tensor var = mean(centered * centered, dims, /*keepdim=*/true);
  Tensor y = centered * rdiv(sqrt(var + eps), 1.0);
  if (elementwise_affine) y = y * weight + bias;
  return y;
}

std::string LayerNorm::extra_repr() const {
  return str_cat(py_tuple(normalized_shape), ", eps=", py_float(eps), ", elementwise_affine=",
                 py_bool(elementwise_affine));
}

}  // namespace ember::nn
