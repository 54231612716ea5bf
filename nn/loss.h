// Losses as modules, thin wrappers over the loss ops in runtime/ops.h: call loss(input, target).
// Constructor arguments follow PyTorch's order (without the deprecated size_average/reduce);
// class weights are registered as buffers, so they follow to() and appear in state_dict().
#pragma once
#include <cstdint>
#include <string>

#include "ember/nn/module.h"
#include "ember/runtime/ops.h"

namespace ember::nn {

// Base of the losses: a two-input forward and the reduction (mean, sum or none).
class EMBER_API Loss : public Module {
 public:
  virtual Tensor forward(const Tensor& input, const Tensor& target) = 0;
  // Losses need a target: the single-input form throws.
  Tensor forward(const Tensor& x) override;
  // Calls forward(input, target).
  Tensor operator()(const Tensor& input, const Tensor& target) { return forward(input, target); }

  Reduction reduction;

 protected:
  Loss(std::string name, Reduction reduction) : Module(std::move(name)), reduction(reduction) {}
  // Registers t as buffer `name` when defined; returns it.
  Tensor optional_buffer(const std::string& name, const Tensor& t);
};

// mean((input - target)^2).
class EMBER_API MSELoss : public Loss {
 public:
  explicit MSELoss(Reduction reduction = Reduction::Mean) : Loss("MSELoss", reduction) {}
  Tensor forward(const Tensor& input, const Tensor& target) override;
  using Loss::forward;
};

// mean(|input - target|).
class EMBER_API L1Loss : public Loss {
 public:
  explicit L1Loss(Reduction reduction = Reduction::Mean) : Loss("L1Loss", reduction) {}
  Tensor forward(const Tensor& input, const Tensor& target) override;
  using Loss::forward;
};

// 0.5 d^2 / beta where |d| < beta, |d| - 0.5 beta elsewhere (d = input - target).
class EMBER_API SmoothL1Loss : public Loss {
 public:
  explicit SmoothL1Loss(Reduction reduction = Reduction::Mean, double beta = 1.0);
  Tensor forward(const Tensor& input, const Tensor& target) override;
  using Loss::forward;

  double beta;
};

// Binary cross entropy on probabilities; weight (broadcast to input) rescales each element.
class EMBER_API BCELoss : public Loss {
 public:
  explicit BCELoss(const Tensor& weight = Tensor(), Reduction reduction = Reduction::Mean);
  Tensor forward(const Tensor& input, const Tensor& target) override;
  using Loss::forward;

  Tensor weight;
};

// Binary cross entropy on logits (numerically stable); pos_weight scales the positive term per class.
class EMBER_API BCEWithLogitsLoss : public Loss {
 public:
  explicit BCEWithLogitsLoss(const Tensor& weight = Tensor(), Reduction reduction = Reduction::Mean,
                             const Tensor& pos_weight = Tensor());
  Tensor forward(const Tensor& input, const Tensor& target) override;
  using Loss::forward;

  Tensor weight, pos_weight;
};

// log_softmax + NLL over dim 1 with per-class weight, ignore_index and label smoothing.
class EMBER_API CrossEntropyLoss : public Loss {
 public:
  explicit CrossEntropyLoss(const Tensor& weight = Tensor(), int64_t ignore_index = -100,
                            Reduction reduction = Reduction::Mean, double label_smoothing = 0.0);
  Tensor forward(const Tensor& input, const Tensor& target) override;
  using Loss::forward;

  Tensor weight;
  int64_t ignore_index;
  double label_smoothing;
};

// Negative log likelihood on log-probabilities (N, C, ...) with per-class weight and ignore_index.
class EMBER_API NLLLoss : public Loss {
 public:
  explicit NLLLoss(const Tensor& weight = Tensor(), int64_t ignore_index = -100, Reduction reduction = Reduction::Mean);
  Tensor forward(const Tensor& input, const Tensor& target) override;
  using Loss::forward;

  Tensor weight;
  int64_t ignore_index;
};

}  // namespace ember::nn
