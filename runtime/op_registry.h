// The op registry: every public op of runtime/ops.h, by name, with whether it is differentiable.
// Tests enumerate it so that an op without a gradient check (or, on CUDA, a parity test) fails
// the suite; adding an op to ops.h means adding it to op_registry() in runtime/op_registry.cpp.
#pragma once
#include <vector>

#include "ember/runtime/api.h"

namespace ember {

struct OpInfo {
  const char* name;
  bool differentiable;
};
EMBER_API const std::vector<OpInfo>& op_registry();

}  // namespace ember
