// The list behind op_registry() (runtime/op_registry.h): one entry per public op of runtime/ops.h,
// so that the gradient-check and CUDA parity suites know every op they must cover.
#include "runtime/op_registry.h"

namespace ember {

const std::vector<OpInfo>& op_registry() {
  static const std::vector<OpInfo> ops = {
      {"add", true}, {"sub", true}, {"mul", true}, {"div", true}, {"pow", true}, {"maximum", true}, {"minimum", true},
      {"add_scalar", true}, {"sub_scalar", true}, {"rsub_scalar", true}, {"mul_scalar", true}, {"div_scalar", true},
      {"rdiv_scalar", true}, {"pow_scalar", true}, {"neg", true}, {"exp", true}, {"log", true}, {"sqrt", true},
      {"abs", true}, {"sign", false}, {"clamp", true}, {"relu", true}, {"leaky_relu", true}, {"sigmoid", true},
      {"tanh", true}, {"gelu", true}, {"eq", false}, {"gt", false}, {"lt", false}, {"ge", false}, {"le", false},
      {"where", true}, {"sum", true}, {"mean", true}, {"max", true}, {"max_dim", true}, {"argmax", false},
      {"sum_to", true}, {"softmax", true}, {"log_softmax", true}, {"matmul", true}, {"linear", true},
      {"linear_relu", true}, {"linear_packed", true},
      {"conv2d", true}, {"conv_transpose2d", true}, {"max_pool2d", true}, {"avg_pool2d", true}, {"dropout", true},
      {"mse_loss", true}, {"l1_loss", true}, {"smooth_l1_loss", true}, {"binary_cross_entropy", true},
      {"binary_cross_entropy_with_logits", true}, {"nll_loss", true}, {"cross_entropy", true}, {"cat", true},
      {"stack", true}, {"index_select", true}, {"embedding", true}, {"view", true}, {"reshape", true},
      {"permute", true}, {"transpose", true}, {"narrow", true}, {"slice", true}, {"select", true}, {"expand", true},
      {"squeeze", true}, {"unsqueeze", true}, {"flatten", true}, {"contiguous", true}, {"clone", true},
      {"to_dtype", true},
  };
  return ops;
}

}  // namespace ember
