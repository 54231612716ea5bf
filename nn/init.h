// Parameter initialisation as torch.nn.init: fan computation, gains, and the uniform/normal/
// xavier/kaiming fills, drawn from Ember's seeded generator (the default one unless given).
// All fills run without recording autograd and return their (modified) argument.
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

#include "ember/runtime/api.h"
#include "ember/runtime/rng.h"
#include "ember/runtime/tensor.h"

namespace ember::nn::init {

struct Fans {
  int64_t fan_in = 0;
  int64_t fan_out = 0;
};
// fan_in = size(1) * receptive field, fan_out = size(0) * receptive field (rank >= 2), as torch.
EMBER_API Fans calculate_fan_in_and_fan_out(const Tensor& t);
// Recommended gain for a nonlinearity: linear/conv*/sigmoid 1, tanh 5/3, relu sqrt(2),
// leaky_relu sqrt(2 / (1 + slope^2)) (slope = param, default 0.01), selu 3/4.
EMBER_API double calculate_gain(std::string_view nonlinearity, std::optional<double> param = std::nullopt);

// t ~ U[a, b).
EMBER_API Tensor uniform_(Tensor t, double a = 0.0, double b = 1.0, Generator* gen = nullptr);
// t ~ N(mean, std).
EMBER_API Tensor normal_(Tensor t, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
EMBER_API Tensor constant_(Tensor t, double value);
EMBER_API Tensor zeros_(Tensor t);
EMBER_API Tensor ones_(Tensor t);
// U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)).
EMBER_API Tensor xavier_uniform_(Tensor t, double gain = 1.0, Generator* gen = nullptr);
// N(0, std) with std = gain * sqrt(2 / (fan_in + fan_out)).
EMBER_API Tensor xavier_normal_(Tensor t, double gain = 1.0, Generator* gen = nullptr);
// U(-bound, bound) with bound = calculate_gain(nonlinearity, a) * sqrt(3 / fan); mode "fan_in" or "fan_out".
EMBER_API Tensor kaiming_uniform_(Tensor t, double a = 0.0, std::string_view mode = "fan_in",
                                  std::string_view nonlinearity = "leaky_relu", Generator* gen = nullptr);
// N(0, std) with std = calculate_gain(nonlinearity, a) / sqrt(fan).
EMBER_API Tensor kaiming_normal_(Tensor t, double a = 0.0, std::string_view mode = "fan_in",
                                 std::string_view nonlinearity = "leaky_relu", Generator* gen = nullptr);

// While one is alive on this thread, uniform_ and normal_ (and the xavier/kaiming fills built on
// them) leave their tensor as it is and draw nothing from any generator: for modules built only to
// receive stored weights (nn::load_module), where random values would be overwritten at once.
// The deterministic fills (constant_, zeros_, ones_) still run. Guards nest.
class EMBER_API SkipRandomInitGuard {
 public:
  SkipRandomInitGuard();
  ~SkipRandomInitGuard();
  SkipRandomInitGuard(const SkipRandomInitGuard&) = delete;
  SkipRandomInitGuard& operator=(const SkipRandomInitGuard&) = delete;

 private:
  bool previous_;
};
// Whether a SkipRandomInitGuard is alive on this thread.
EMBER_API bool random_init_skipped();

}  // namespace ember::nn::init
