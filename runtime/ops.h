// The public ops. Each is declared once here; its front end (runtime/ops_*.cpp) checks inputs,
// promotes dtypes, allocates the output, dispatches to the device's kernel and records autograd.
// Shapes broadcast as in NumPy/PyTorch. Errors are ember::Error starting with "[op]".
#pragma once
#include <optional>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/runtime/tensor.h"

namespace ember {

class Generator;

enum class Reduction { None, Mean, Sum };

// --- elementwise binary (broadcasting) ---------------------------------------------------------
EMBER_API Tensor add(const Tensor& a, const Tensor& b, double alpha = 1.0);  // a + alpha*b
EMBER_API Tensor sub(const Tensor& a, const Tensor& b, double alpha = 1.0);  // a - alpha*b
EMBER_API Tensor mul(const Tensor& a, const Tensor& b);
EMBER_API Tensor div(const Tensor& a, const Tensor& b);
EMBER_API Tensor pow(const Tensor& a, const Tensor& b);  // a^b elementwise
EMBER_API Tensor maximum(const Tensor& a, const Tensor& b);
EMBER_API Tensor minimum(const Tensor& a, const Tensor& b);
// --- scalar variants -------------------------------------------------------------------------
EMBER_API Tensor add(const Tensor& a, double s);
EMBER_API Tensor sub(const Tensor& a, double s);
EMBER_API Tensor rsub(const Tensor& a, double s);  // s - a
EMBER_API Tensor mul(const Tensor& a, double s);
EMBER_API Tensor div(const Tensor& a, double s);
EMBER_API Tensor rdiv(const Tensor& a, double s);  // s / a
EMBER_API Tensor pow(const Tensor& a, double exponent);
// --- elementwise unary -----------------------------------------------------------------------
EMBER_API Tensor neg(const Tensor& x);
EMBER_API Tensor exp(const Tensor& x);
EMBER_API Tensor log(const Tensor& x);
EMBER_API Tensor sqrt(const Tensor& x);
EMBER_API Tensor abs(const Tensor& x);
EMBER_API Tensor sign(const Tensor& x);  // not differentiable (zero gradient)
EMBER_API Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max);
EMBER_API Tensor relu(const Tensor& x);
EMBER_API Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
EMBER_API Tensor sigmoid(const Tensor& x);
EMBER_API Tensor tanh(const Tensor& x);
// approximate: "none" (erf, the default) or "tanh", as torch.nn.functional.gelu.
EMBER_API Tensor gelu(const Tensor& x, const char* approximate = "none");
// --- comparisons (bool results, no gradient) --------------------------------------------------
EMBER_API Tensor eq(const Tensor& a, const Tensor& b);
EMBER_API Tensor gt(const Tensor& a, const Tensor& b);
EMBER_API Tensor lt(const Tensor& a, const Tensor& b);
EMBER_API Tensor ge(const Tensor& a, const Tensor& b);
EMBER_API Tensor le(const Tensor& a, const Tensor& b);
EMBER_API Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// --- reductions ------------------------------------------------------------------------------
EMBER_API Tensor sum(const Tensor& x);  // all elements -> 0-d
EMBER_API Tensor sum(const Tensor& x, IntList dims, bool keepdim = false);
EMBER_API Tensor mean(const Tensor& x);
EMBER_API Tensor mean(const Tensor& x, IntList dims, bool keepdim = false);
EMBER_API Tensor max(const Tensor& x);  // all elements -> 0-d
struct ValuesIndices {
  Tensor values;
  Tensor indices;  // i64
};
EMBER_API ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim = false);
EMBER_API Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
// Sums a (broadcast) gradient back to `shape` (inverse of expand).
EMBER_API Tensor sum_to(const Tensor& x, const Shape& shape);
EMBER_API Tensor softmax(const Tensor& x, int64_t dim);
EMBER_API Tensor log_softmax(const Tensor& x, int64_t dim);
// --- linear algebra --------------------------------------------------------------------------
// 1-D/2-D/batched with broadcast batch dims, as torch.matmul.
EMBER_API Tensor matmul(const Tensor& a, const Tensor& b);
// x: (..., in), weight: (out, in), bias: (out) or undefined -> (..., out)
EMBER_API Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());
// relu(linear(x, weight, bias)), the same values and gradients; on the CPU in float32/64 the ReLU
// is applied as the GEMM stores the output (no pass of its own), and one autograd node does both.
EMBER_API Tensor linear_relu(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());
// A linear weight (out_features, in_features) packed for inference on the CPU: laid out as the
// GEMM's kernel reads it, so that products with it skip repacking the weight on every call (ONNX
// Runtime prepacks constant weights alike). The layout belongs to this process's CPU kernel: not
// for saving. panels is undefined where nothing was packed (another device or dtype, or a GEMM
// that packs nothing); the product then uses weight.
struct PackedLinearWeight {
  Tensor weight;   // what was packed
  Tensor panels;   // the packed values, or undefined
  int kernel = -1; // the GEMM kernel they are for
};
EMBER_API PackedLinearWeight pack_linear_weight(const Tensor& weight);
// linear(x, w.weight, bias), or linear_relu when relu is set, bit for bit, from the packed weight:
// for inference (where nothing requires grad); otherwise, or without panels, or where the GEMM
// kernel in use is not the one packed for, it is linear on w.weight (with its gradients).
EMBER_API Tensor linear_packed(const Tensor& x, const PackedLinearWeight& w, const Tensor& bias = Tensor(),
                               bool relu = false);
// --- convolution and pooling (NCHW) ----------------------------------------------------------
// Each spatial option holds one value (both dims) or two, {h, w}; kept inline (no heap).
struct Conv2dOptions {
  Shape stride{1, 1}, padding{0, 0}, dilation{1, 1}, output_padding{0, 0};
  int64_t groups = 1;
};
// x: (N, C, H, W), weight: (K, C/groups, kh, kw), bias: (K) -> (N, K, H', W')
EMBER_API Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
                        const Conv2dOptions& opts = {});
// x: (N, C, H, W), weight: (C, K/groups, kh, kw), bias: (K) -> (N, K, H', W')
EMBER_API Tensor conv_transpose2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
                                  const Conv2dOptions& opts = {});
struct Pool2dOptions {
  Shape kernel_size{2, 2};
  Shape stride{};  // empty: equal to kernel_size
  Shape padding{0, 0};
  Shape dilation{1, 1};  // max_pool2d only
  bool ceil_mode = false;
  bool count_include_pad = true;  // avg_pool2d only
};
EMBER_API Tensor max_pool2d(const Tensor& x, const Pool2dOptions& opts);
EMBER_API Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& opts);
// --- regularisation --------------------------------------------------------------------------
// Zeroes elements with probability p and scales the rest by 1/(1-p) when training.
EMBER_API Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);
// --- losses ----------------------------------------------------------------------------------
EMBER_API Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction r = Reduction::Mean);
EMBER_API Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction r = Reduction::Mean);
EMBER_API Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, Reduction r = Reduction::Mean,
                                double beta = 1.0);
// input: probabilities in [0, 1]; log terms clamped at -100 as PyTorch.
EMBER_API Tensor binary_cross_entropy(const Tensor& input, const Tensor& target, Reduction r = Reduction::Mean,
                                      const Tensor& weight = Tensor());
EMBER_API Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target,
                                                  Reduction r = Reduction::Mean, const Tensor& weight = Tensor(),
                                                  const Tensor& pos_weight = Tensor());
// log_probs: (N, C) or (N, C, d...) ; target: i64 class indices (N) or (N, d...).
EMBER_API Tensor nll_loss(const Tensor& log_probs, const Tensor& target, Reduction r = Reduction::Mean,
                          int64_t ignore_index = -100, const Tensor& weight = Tensor());
EMBER_API Tensor cross_entropy(const Tensor& input, const Tensor& target, Reduction r = Reduction::Mean,
                               int64_t ignore_index = -100, double label_smoothing = 0.0,
                               const Tensor& weight = Tensor());
// --- joining and indexing --------------------------------------------------------------------
EMBER_API Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
EMBER_API Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
EMBER_API Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// --- embedding / normalisation helpers used by nn layers -------------------------------------
EMBER_API Tensor embedding(const Tensor& weight, const Tensor& indices);  // (V, D), i64 (...) -> (..., D)

// --- fused optimizer updates (in place, not recorded by autograd) ------------------------------
// One step of torch 1.13's single-tensor optimizer math on a parameter and its state, as torch's
// _fused_*_ ops (the optimizers of train/optim.h keep the state and call these). The gradient and
// state have the parameter's shape, dtype (f32/f64) and device, any layout; state an option leaves
// out may be undefined.
// SGD; momentum_buffer is used when momentum != 0 and set to the step's direction on the first step.
EMBER_API void fused_sgd_(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, double lr,
                          double momentum, double dampening, double weight_decay, bool nesterov, bool maximize,
                          bool first_step);
// Adam with L2 weight decay at step 1, 2, ...; max_exp_avg_sq is used with amsgrad. lowp_copy,
// when defined (a bf16/f16 tensor of an f32 param's shape and device), receives the updated param
// rounded to its dtype (the bits of param.to(dtype)): on the CPU in the same pass, while each
// chunk is in the cache (mixed precision's weight copies, Optimizer::keep_lowp_copies).
EMBER_API void fused_adam_(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                           const Tensor& max_exp_avg_sq, double step, double lr, double beta1, double beta2,
                           double eps, double weight_decay, bool amsgrad, bool maximize,
                           const Tensor& lowp_copy = Tensor());
// AdamW: fused_adam_ with decoupled weight decay (param *= 1 - lr * weight_decay).
EMBER_API void fused_adamw_(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                            const Tensor& max_exp_avg_sq, double step, double lr, double beta1, double beta2,
                            double eps, double weight_decay, bool amsgrad, bool maximize,
                            const Tensor& lowp_copy = Tensor());
// RMSprop; momentum_buffer is used when momentum > 0, grad_avg when centered.
EMBER_API void fused_rmsprop_(const Tensor& param, const Tensor& grad, const Tensor& square_avg,
                              const Tensor& momentum_buffer, const Tensor& grad_avg, double lr, double alpha,
                              double eps, double weight_decay, double momentum, bool centered, bool maximize);
// Adagrad at step 1, 2, ...: the rate is lr / (1 + (step - 1) * lr_decay).
EMBER_API void fused_adagrad_(const Tensor& param, const Tensor& grad, const Tensor& state_sum, double step,
                              double lr, double lr_decay, double weight_decay, double eps, bool maximize);

// --- operators -------------------------------------------------------------------------------
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double s) { return add(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return sub(a, s); }
inline Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return div(a, s); }
inline Tensor operator+(double s, const Tensor& a) { return add(a, s); }
inline Tensor operator-(double s, const Tensor& a) { return rsub(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
inline Tensor operator/(double s, const Tensor& a) { return rdiv(a, s); }

}  // namespace ember
