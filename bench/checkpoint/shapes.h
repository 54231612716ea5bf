// The parameter shapes of the benchmark model: a GPT-style stack (token embedding, 5 blocks of
// attention + MLP with hidden size 1024, a head) of about 100M parameters, scaled down for quick
// runs. Shared by the Ember benchmark and its optional LibTorch companion, so both save the same
// tensors.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ember_bench {

struct Param {
  std::string name;
  std::vector<int64_t> shape;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

// scale 1.0 gives 99.9M parameters; smaller scales shrink the embedding and the widths.
inline std::vector<Param> model_params(double scale = 1.0) {
  const int64_t h = std::max<int64_t>(64, static_cast<int64_t>(1024 * scale) / 64 * 64);
  const int64_t vocab = std::max<int64_t>(256, static_cast<int64_t>(32000 * scale));
  std::vector<Param> p;
  p.push_back({"embed.weight", {vocab, h}});
  for (int l = 0; l < 5; ++l) {
    std::string b = "blocks." + std::to_string(l) + ".";
    p.push_back({b + "ln1.weight", {h}});
    p.push_back({b + "ln1.bias", {h}});
    p.push_back({b + "attn.qkv.weight", {3 * h, h}});
    p.push_back({b + "attn.qkv.bias", {3 * h}});
    p.push_back({b + "attn.proj.weight", {h, h}});
    p.push_back({b + "attn.proj.bias", {h}});
    p.push_back({b + "ln2.weight", {h}});
    p.push_back({b + "ln2.bias", {h}});
    p.push_back({b + "mlp.fc1.weight", {4 * h, h}});
    p.push_back({b + "mlp.fc1.bias", {4 * h}});
    p.push_back({b + "mlp.fc2.weight", {h, 4 * h}});
    p.push_back({b + "mlp.fc2.bias", {h}});
  }
  p.push_back({"ln_f.weight", {h}});
  p.push_back({"ln_f.bias", {h}});
  p.push_back({"head.weight", {4 * h, h}});
  return p;
}

}  // namespace ember_bench
