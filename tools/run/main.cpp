// ember-run: run the model stored in a self-describing checkpoint (nn::save or the Trainer) over
// a .npy file, or print its module tree. Exit codes: 0 success; 1 a failure while running (the
// output could not be written, a later batch failed); 2 bad input or usage (a missing or corrupt
// file, a wrong dtype or shape, a bad flag), each with one line "ember-run: ..." on stderr.
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "ember/runtime/error.h"
#include "ember/runtime/parallel.h"
#include "tools/run/run.h"

namespace {

// One line, whatever the message: CLI11's and the library's are single lines already.
int fail(int code, std::string message) {
  for (char& c : message)
    if (c == '\n') c = ' ';
  std::cerr << "ember-run: " << message << "\n";
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  namespace tool = ember::run_tool;
  CLI::App app{"ember-run: run the model stored in an Ember checkpoint (written by nn::save or the Trainer) "
               "over a .npy array, or describe it"};
  app.footer(
      "Examples:\n"
      "  ember-run model.ckpt --input x.npy --output y.npy\n"
      "  ember-run trainer.ckpt --module model --input images.npy --scale 1/255 --output logits.npy\n"
      "  ember-run model.ckpt --describe --input-shape 1,28,28\n"
      "Exit status: 0 success; 1 a failure while running; 2 bad input or usage.");

  std::string model, input, output, module, device = "cpu", scale, input_shape;
  int64_t batch_size = 256;
  int threads = 0;
  bool describe = false;
  app.add_option("MODEL", model, "checkpoint with a module tree (nn::save, Trainer)")->required();
  auto* in = app.add_option("--input,-i", input, ".npy input (<f4, <f8 or |u1, C order); samples on the first axis");
  auto* out = app.add_option("--output,-o", output, ".npy output (f32; f64 for an f64 model)");
  app.add_option("--batch-size,-b", batch_size, "samples per forward pass (default 256)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  app.add_option("--threads", threads, "CPU threads (default: EMBER_NUM_THREADS or every hardware thread)")
      ->check(CLI::Range(1, 4096));
  app.add_option("--device", device, "cpu (default), cuda or cuda:N");
  app.add_option("--scale", scale, "multiply inputs by a number, or divide by K with 1/K; --scale 1/255 reads u8 "
                                   "pixels as pixels / 255 (required for u8 input)");
  app.add_option("--module,-m", module,
                 "dotted name of the submodule to run or describe (e.g. model: a trainer checkpoint's network)");
  auto* desc = app.add_flag("--describe", describe, "print the module tree with parameter counts instead of running");
  app.add_option("--input-shape", input_shape, "with --describe: per-sample input shape (e.g. 1,28,28) to print "
                                               "each layer's output shape")
      ->needs(desc);
  desc->excludes(in)->excludes(out);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(2, std::string(e.what()) + " (run with --help for usage)");
  }

  try {
    if (threads > 0) ember::set_num_threads(threads);
    const ember::Device dev = tool::parse_device(device);
    if (describe) {
      tool::DescribeOptions o{.model = model, .module = module, .device = dev};
      if (!input_shape.empty()) o.input_shape = tool::parse_shape(input_shape);
      tool::describe(o, std::cout);
      return 0;
    }
    if (input.empty() || output.empty()) return fail(2, "--input and --output are required (or --describe)");
    tool::RunOptions o{.model = model, .input = input, .output = output, .module = module,
                       .batch_size = batch_size, .device = dev};
    if (!scale.empty()) o.scale = tool::parse_scale(scale);
    tool::run(o, std::cout);
    return 0;
  } catch (const tool::UsageError& e) {
    return fail(2, e.what());
  } catch (const std::exception& e) {
    return fail(1, e.what());
  }
}
