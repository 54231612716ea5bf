// ember-ckpt: inspect, verify, diff and convert Ember checkpoints from the command line, and
// import PyTorch models exported by tools/torch_export.py.
// Exit codes: 0 success; 1 failure (unsound file, differences found, unreadable input);
// 2 usage error, a diff that could not be completed, or input that import-torch refuses.
#include <iostream>

#include <CLI/CLI.hpp>

#include "tools/ckpt/commands.h"
#include "ember/runtime/error.h"

int main(int argc, char** argv) {
  namespace tool = ember::ckpt_tool;
  CLI::App app{"ember-ckpt: inspect, verify, compare and convert Ember checkpoints (.ckpt)"};
  app.footer(
      "Exit status: 0 success; 1 unsound file, differences found or a command failed; 2 usage error, a diff "
      "that could not run, or input that import-torch refuses.");
  app.require_subcommand(1);

  std::string file, other, out;
  bool as_json = false, compress = false;
  double atol = 0;
  auto* inspect = app.add_subcommand("inspect", "Print version, sizes, counters, hyperparameters, sections and tensors");
  inspect->add_option("FILE", file, "checkpoint")->required();
  inspect->add_flag("--json", as_json, "JSON output with Lightning's checkpoint key names");
  auto* verify = app.add_subcommand("verify", "Check every checksum; exit 0 if the file is sound, 1 with the reason if not");
  verify->add_option("FILE", file, "checkpoint")->required();
  auto* diff = app.add_subcommand("diff", "Metadata differences and max |a-b| per tensor; exit 1 when they differ");
  diff->add_option("A", file, "first checkpoint")->required();
  diff->add_option("B", other, "second checkpoint")->required();
  diff->add_option("--atol", atol, "tensors whose max |a-b| is at most this count as equal (default 0)");
  auto* exp = app.add_subcommand("export-safetensors", "Write the model weights (state_dict) as a .safetensors file");
  exp->add_option("FILE", file, "checkpoint")->required();
  exp->add_option("OUT", out, "output .safetensors file")->required();
  auto* imp = app.add_subcommand("import-safetensors", "Write a .safetensors file's tensors as an Ember checkpoint");
  imp->add_option("IN", file, ".safetensors file (e.g. from safetensors.torch.save_file)")->required();
  imp->add_option("OUT", out, "output checkpoint")->required();
  imp->add_flag("--zlib", compress, "compress each tensor with zlib where that makes it smaller");
  auto* torch = app.add_subcommand(
      "import-torch", "Build a self-describing checkpoint (nn::load_module) from tools/torch_export.py's output");
  torch->add_option("ARCH", file, "the module tree as JSON (ARCH.json)")->required();
  torch->add_option("WEIGHTS", other, "the state_dict as .safetensors")->required();
  torch->add_option("OUT", out, "output checkpoint")->required();
  torch->add_flag("--zlib", compress, "compress each tensor with zlib where that makes it smaller");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }

  try {
    if (*inspect) return tool::inspect(file, as_json, std::cout);
    if (*verify) return tool::verify(file, std::cout);
    if (*exp) {
      tool::export_safetensors(file, out);
      std::cout << "wrote " << out << "\n";
      return 0;
    }
    if (*imp) {
      size_t n = tool::import_safetensors(file, out, {.compress = compress});
      std::cout << "wrote " << out << " (" << n << " tensors)\n";
      return 0;
    }
    if (*torch) {
      try {
        tool::TorchImport r = tool::import_torch(file, other, out, {.compress = compress});
        std::cout << "wrote " << out << " (" << r.model << ", " << r.modules << " modules, " << r.tensors
                  << " tensors)\n";
        return 0;
      } catch (const ember::Error& e) {
        std::cerr << "ember-ckpt: " << e.what() << "\n";
        return 2;
      }
    }
    if (*diff) {
      try {
        return tool::diff(file, other, atol, std::cout);
      } catch (const ember::Error& e) {
        std::cerr << "ember-ckpt: " << e.what() << "\n";
        return 2;
      }
    }
  } catch (const ember::Error& e) {
    std::cerr << "ember-ckpt: " << e.what() << "\n";
    return 1;
  }
  return 2;
}
