// Positional builders of op option structs and the list of loss reductions, shared by the op
// test tables (gradient checks, CUDA parity).
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "runtime/ops.h"

namespace ember::test {

inline Conv2dOptions conv_opts(std::vector<int64_t> stride, std::vector<int64_t> padding, std::vector<int64_t> dilation,
                               int64_t groups, std::vector<int64_t> output_padding = {0, 0}) {
  Conv2dOptions o;
  o.stride = std::move(stride);
  o.padding = std::move(padding);
  o.dilation = std::move(dilation);
  o.groups = groups;
  o.output_padding = std::move(output_padding);
  return o;
}

inline Pool2dOptions pool_opts(std::vector<int64_t> k, std::vector<int64_t> stride, std::vector<int64_t> padding,
                               std::vector<int64_t> dilation = {1, 1}, bool ceil = false, bool include_pad = true) {
  Pool2dOptions o;
  o.kernel_size = std::move(k);
  o.stride = std::move(stride);
  o.padding = std::move(padding);
  o.dilation = std::move(dilation);
  o.ceil_mode = ceil;
  o.count_include_pad = include_pad;
  return o;
}

inline constexpr Reduction kReductions[] = {Reduction::None, Reduction::Mean, Reduction::Sum};
inline const char* reduction_name(Reduction r) {
  return r == Reduction::None ? "none" : r == Reduction::Mean ? "mean" : "sum";
}

}  // namespace ember::test
