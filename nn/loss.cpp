// The loss modules: argument checks and calls into runtime/ops.h.
#include "ember/nn/loss.h"

#include "ember/runtime/error.h"

namespace ember::nn {

Tensor Loss::forward(const Tensor&) {
  EMBER_THROW("[", type_name(), "] a loss takes (input, target); call loss(input, target)");
}

Tensor Loss::optional_buffer(const std::string& name, const Tensor& t) {
  return t.defined() ? register_buffer(name, t) : Tensor();
}

Tensor MSELoss::forward(const Tensor& input, const Tensor& target) { return mse_loss(input, target, reduction); }

Tensor L1Loss::forward(const Tensor& input, const Tensor& target) { return l1_loss(input, target, reduction); }

SmoothL1Loss::SmoothL1Loss(Reduction reduction, double beta) : Loss("SmoothL1Loss", reduction), beta(beta) {
  EMBER_CHECK(beta >= 0.0, "[SmoothL1Loss] beta must be >= 0, got ", beta);
}

Tensor SmoothL1Loss::forward(const Tensor& input, const Tensor& target) {
  return smooth_l1_loss(input, target, reduction, beta);
}

BCELoss::BCELoss(const Tensor& weight, Reduction reduction) : Loss("BCELoss", reduction) {
  this->weight = optional_buffer("weight", weight);
}

Tensor BCELoss::forward(const Tensor& input, const Tensor& target) {
  return binary_cross_entropy(input, target, reduction, weight);
}

BCEWithLogitsLoss::BCEWithLogitsLoss(const Tensor& weight, Reduction reduction, const Tensor& pos_weight)
    : Loss("BCEWithLogitsLoss", reduction) {
  this->weight = optional_buffer("weight", weight);
  this->pos_weight = optional_buffer("pos_weight", pos_weight);
}

Tensor BCEWithLogitsLoss::forward(const Tensor& input, const Tensor& target) {
  return binary_cross_entropy_with_logits(input, target, reduction, weight, pos_weight);
}

CrossEntropyLoss::CrossEntropyLoss(const Tensor& weight, int64_t ignore_index, Reduction reduction,
                                   double label_smoothing)
    : Loss("CrossEntropyLoss", reduction), ignore_index(ignore_index), label_smoothing(label_smoothing) {
  EMBER_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
              "[CrossEntropyLoss] label_smoothing must be between 0.0 and 1.0, got ", label_smoothing);
  this->weight = optional_buffer("weight", weight);
}

Tensor CrossEntropyLoss::forward(const Tensor& input, const Tensor& target) {
  return cross_entropy(input, target, reduction, ignore_index, label_smoothing, weight);
}

NLLLoss::NLLLoss(const Tensor& weight, int64_t ignore_index, Reduction reduction)
    : Loss("NLLLoss", reduction), ignore_index(ignore_index) {
  this->weight = optional_buffer("weight", weight);
}

Tensor NLLLoss::forward(const Tensor& input, const Tensor& target) {
  return nll_loss(input, target, reduction, ignore_index, weight);
}

}  // namespace ember::nn
