// The commands of the `ember-run` tool: run a self-describing checkpoint's model (nn::save or the
// Trainer) over the first axis of a .npy array in batches and write the result as .npy, or print
// the module tree with parameter counts and output shapes. main.cpp parses the command line.
// Errors: UsageError for bad input or usage (exit code 2: a missing or corrupt file, a wrong dtype
// or shape, an unusable flag), any other ember::Error for a failure while running (exit code 1).
#pragma once
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "ember/nn/module.h"
#include "ember/runtime/device.h"
#include "ember/runtime/error.h"

namespace ember::run_tool {

class UsageError : public Error {
 public:
  using Error::Error;
};

// --scale: inputs are multiplied by `value`, or divided by it when given as 1/value ("1/255"
// divides by 255 in the model's dtype, as torchvision's ToTensor does, so results match it bit for bit).
struct Scale {
  double value = 1;
  bool divide = false;
};
// Parses a positive number ("0.5") or 1/K ("1/255"); throws UsageError naming --scale otherwise.
Scale parse_scale(const std::string& text);
// Parses "1,28,28" (or "(1, 28, 28)") into non-negative dims; throws UsageError naming --input-shape.
std::vector<int64_t> parse_shape(const std::string& text);
// Parses --device ("cpu", "cuda", "cuda:N") and checks that this build and machine have it.
Device parse_device(const std::string& text);

// Rebuilds the module at the dotted path `submodule` of the checkpoint at path ("" for the root),
// in eval mode on the CPU (nn::load_module). Every failure is a UsageError; when the module's type
// is not registered, the message lists the registered submodules that --module could name.
nn::ModulePtr load_model(const std::string& path, const std::string& submodule);

struct RunOptions {
  std::string model, input, output;
  std::string module;          // dotted path of the submodule to run; "" for the root
  int64_t batch_size = 256;
  Device device = kCPU;
  std::optional<Scale> scale;  // required for u8 input
};
// Runs the model over options.input in batches (eval mode, no autograd) and writes the
// concatenated outputs to options.output: f64 when the model is f64, f32 otherwise. Prints one
// summary line to log. Returns the number of batches run.
int64_t run(const RunOptions& options, std::ostream& log);

struct DescribeOptions {
  std::string model;
  std::string module;
  std::optional<std::vector<int64_t>> input_shape;  // per sample, without the batch axis
  Device device = kCPU;
};
// Prints the module tree in Module::repr()'s layout, each module's line ending with its parameter
// count and, given input_shape, its output shape for a zero batch of one sample (the children of
// a Sequential are run one by one; other modules report their own output only), then the totals.
void describe(const DescribeOptions& options, std::ostream& out);

}  // namespace ember::run_tool
