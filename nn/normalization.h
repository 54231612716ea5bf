// Normalisation layers: BatchNorm1d/2d (running statistics with momentum or a cumulative average,
// eval mode) and LayerNorm. Both are composed from differentiable ops, so their gradients come
// from autograd; running statistics are updated without recording history.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ember/nn/module.h"

namespace ember::nn {

// Shared by BatchNorm1d and BatchNorm2d (torch's _BatchNorm). Channels are dim 1.
// Training (or track_running_stats=false): normalise with the batch mean and biased variance, and
// (when tracking) update running_mean/var with the unbiased variance:
//   running = (1 - m) * running + m * batch, m = momentum, or 1/num_batches_tracked when momentum is nullopt.
// Eval with tracking: normalise with the running statistics.
class EMBER_API BatchNormBase : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  // running_mean = 0, running_var = 1, num_batches_tracked = 0.
  void reset_running_stats();
  // reset_running_stats(), weight = 1, bias = 0.
  void reset_parameters();

  int64_t num_features;
  double eps;
  std::optional<double> momentum;
  bool affine, track_running_stats;
  Tensor weight, bias;                                      // (C) when affine
  Tensor running_mean, running_var, num_batches_tracked;    // (C), (C), i64 () when tracking

 protected:
  BatchNormBase(std::string name, int64_t num_features, double eps, std::optional<double> momentum, bool affine,
                bool track_running_stats);
  // Throws unless x has a rank this layer accepts.
  virtual void check_input(const Tensor& x) const = 0;

 private:
  // num_batches_tracked's value as this layer last wrote it, valid while the buffer is the same
  // storage at the same version (nothing else wrote it): counting then needs no read from a
  // device, which would stop the host every training step on a GPU.
  int64_t tracked_value_ = 0;
  std::weak_ptr<Storage> tracked_storage_;
  uint32_t tracked_version_ = 0;
};

// x: (N, C) or (N, C, L).
class EMBER_API BatchNorm1d : public BatchNormBase {
 public:
  explicit BatchNorm1d(int64_t num_features, double eps = 1e-5, std::optional<double> momentum = 0.1,
                       bool affine = true, bool track_running_stats = true)
      : BatchNormBase("BatchNorm1d", num_features, eps, momentum, affine, track_running_stats) {}

 protected:
  void check_input(const Tensor& x) const override;
};

// x: (N, C, H, W).
class EMBER_API BatchNorm2d : public BatchNormBase {
 public:
  explicit BatchNorm2d(int64_t num_features, double eps = 1e-5, std::optional<double> momentum = 0.1,
                       bool affine = true, bool track_running_stats = true)
      : BatchNormBase("BatchNorm2d", num_features, eps, momentum, affine, track_running_stats) {}

 protected:
  void check_input(const Tensor& x) const override;
};

// Normalises over the trailing dims given by normalized_shape (biased variance), then applies
// an elementwise weight and bias of that shape.
class EMBER_API LayerNorm : public Module {
 public:
  explicit LayerNorm(std::vector<int64_t> normalized_shape, double eps = 1e-5, bool elementwise_affine = true);
  explicit LayerNorm(int64_t normalized_size, double eps = 1e-5, bool elementwise_affine = true)
      : LayerNorm(std::vector<int64_t>{normalized_size}, eps, elementwise_affine) {}
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  // weight = 1, bias = 0.
  void reset_parameters();

  std::vector<int64_t> normalized_shape;
  double eps;
  bool elementwise_affine;
  Tensor weight, bias;  // normalized_shape, when elementwise_affine
};

}  // namespace ember::nn
