// A consumer of the installed Ember: trains a small regression MLP for a few steps, checks that
// the loss fell, saves it as a self-describing checkpoint (with hyperparameters), loads it back
// both ways (the module tree alone, and weights into the consumer's own model) and checks that
// the outputs are identical. Then it writes, for the C and Python tests of the C API, the input
// and the model's output as raw f32 files next to the checkpoint.
// Usage: consumer OUT_DIR
#include <ember/ember.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "consumer: FAILED: %s\n", what.c_str());
    ++failures;
  }
}

void write_raw(const std::string& path, const ember::Tensor& t) {
  const std::vector<float> v = t.to_vector<float>();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
}

bool same(const ember::Tensor& a, const ember::Tensor& b) {
  return a.shape() == b.shape() && a.to_vector<float>() == b.to_vector<float>();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: consumer OUT_DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  try {
    const ember::Version v = ember::version();
    check(v.major == EMBER_VERSION_MAJOR && v.minor == EMBER_VERSION_MINOR && v.patch == EMBER_VERSION_PATCH,
          "ember::version() agrees with EMBER_VERSION_*");
    check(std::string(ember::version_string()) == EMBER_VERSION_STRING, "ember::version_string()");

    ember::manual_seed(7);
    using namespace ember::nn;
    auto model = std::make_shared<Sequential>(std::make_shared<Linear>(4, 16), std::make_shared<Tanh>(),
                                              std::make_shared<Linear>(16, 2));
    ember::optim::Adam opt(model->named_parameters(), {.lr = 0.01});
    const ember::Tensor x = ember::randn({64, 4});
    const ember::Tensor w = ember::randn({4, 2});
    const ember::Tensor y = ember::matmul(x, w);
    double first = 0, last = 0;
    for (int step = 0; step < 50; ++step) {
      opt.zero_grad();
      ember::Tensor loss = ember::mse_loss(model->forward(x), y);
      loss.backward();
      opt.step();
      (step == 0 ? first : last) = loss.item<double>();
    }
    std::printf("consumer: loss %.5f -> %.5f after 50 Adam steps\n", first, last);
    check(last < 0.5 * first, "training lowers the loss");

    model->eval();
    const ember::Tensor probe = ember::randn({5, 4});
    const ember::Tensor expected = model->forward(probe);

    const std::string ckpt = dir + "/model.ckpt";
    ember::ValueMap hparams;
    hparams["hidden"] = ember::Value(int64_t{16});
    hparams["lr"] = ember::Value(0.01);
    hparams["activation"] = ember::Value(std::string("tanh"));
    // nn::save() writes the weights and the module tree; with hyperparameters, the same sections
    // go through the checkpoint API.
    ember::Value root;
    root[ember::checkpoint::kStateDict] = model->state_dict_value();
    root[ember::checkpoint::kModuleTree] = ember::nn::module_tree_section(*model);
    root[ember::checkpoint::kHyperParameters] = ember::Value(hparams);
    ember::checkpoint::save(ckpt, root, {.weights_only = true});
    ember::nn::save(*model, dir + "/model_only.ckpt");
    check(same(ember::nn::load_module(dir + "/model_only.ckpt")->forward(probe), expected),
          "nn::save + nn::load_module give the same outputs");

    // The module tree alone rebuilds the model.
    ember::nn::ModulePtr loaded = ember::nn::load_module(ckpt);
    check(same(loaded->forward(probe), expected), "load_module gives the same outputs");

    // Weights into the consumer's own model, through the checkpoint API.
    auto again = std::make_shared<Sequential>(std::make_shared<Linear>(4, 16), std::make_shared<Tanh>(),
                                              std::make_shared<Linear>(16, 2));
    again->load_state_dict(ember::checkpoint::load(ckpt).at(ember::checkpoint::kStateDict));
    again->eval();
    check(same(again->forward(probe), expected), "load_state_dict gives the same outputs");
    check(ember::checkpoint::load(ckpt).at(ember::checkpoint::kHyperParameters).at("hidden").as_int() == 16,
          "hyperparameters round-trip");

    write_raw(dir + "/probe_input.f32", probe);
    write_raw(dir + "/probe_output.f32", expected);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "consumer: error: %s\n", e.what());
    return 1;
  }
  if (failures == 0) std::printf("consumer: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
