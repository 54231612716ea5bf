// Positional builders of op option structs and the list of loss reductions, shared by the op
// test tables (gradient checks, CUDA parity).
#pragma once
#include <cstdint>

#include "ember/runtime/ops.h"

namespace ember::test {

inline Conv2dOptions conv_opts(Shape stride, Shape padding, Shape dilation, int64_t groups,
                               Shape output_padding = {0, 0}) {
  Conv2dOptions o;
  o.stride = stride;
  o.padding = padding;
  o.dilation = dilation;
  o.groups = groups;
  o.output_padding = output_padding;
  return o;
}

inline Pool2dOptions pool_opts(Shape k, Shape stride, Shape padding, Shape dilation = {1, 1}, bool ceil = false,
                               bool include_pad = true) {
  Pool2dOptions o;
  o.kernel_size = k;
  o.stride = stride;
  o.padding = padding;
  o.dilation = dilation;
  o.ceil_mode = ceil;
  o.count_include_pad = include_pad;
  return o;
}

inline constexpr Reduction kReductions[] = {Reduction::None, Reduction::Mean, Reduction::Sum};
inline const char* reduction_name(Reduction r) {
  return r == Reduction::None ? "none" : r == Reduction::Mean ? "mean" : "sum";
}

}  // namespace ember::test
