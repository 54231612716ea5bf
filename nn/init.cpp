// torch.nn.init's rules on Ember's generator.
#include "ember/nn/init.h"

#include <cmath>
#include <string>

#include "ember/runtime/autograd.h"
#include "ember/runtime/error.h"

namespace ember::nn::init {

namespace {

int64_t correct_fan(const Tensor& t, std::string_view mode, const char* fn) {
  Fans f = calculate_fan_in_and_fan_out(t);
  if (mode == "fan_in") return f.fan_in;
  if (mode == "fan_out") return f.fan_out;
  EMBER_THROW("[", fn, "] mode '", std::string(mode), "' is not supported (expected 'fan_in' or 'fan_out')");
}

void check_defined(const Tensor& t, const char* fn) {
  EMBER_CHECK(t.defined(), "[", fn, "] the tensor is undefined");
}

}  // namespace

Fans calculate_fan_in_and_fan_out(const Tensor& t) {
  check_defined(t, "calculate_fan_in_and_fan_out");
  EMBER_CHECK(t.dim() >= 2, "[calculate_fan_in_and_fan_out] fan in and fan out need a tensor of rank >= 2, got shape ",
              t.shape().str());
  int64_t receptive = 1;
  for (int d = 2; d < t.dim(); ++d) receptive *= t.shape()[d];
  return {t.shape()[1] * receptive, t.shape()[0] * receptive};
}

double calculate_gain(std::string_view nl, std::optional<double> param) {
  if (nl == "linear" || nl == "conv1d" || nl == "conv2d" || nl == "conv3d" || nl == "conv_transpose1d" ||
      nl == "conv_transpose2d" || nl == "conv_transpose3d" || nl == "sigmoid")
    return 1.0;
  if (nl == "tanh") return 5.0 / 3.0;
  if (nl == "relu") return std::sqrt(2.0);
  if (nl == "leaky_relu") {
    double slope = param.value_or(0.01);
    return std::sqrt(2.0 / (1.0 + slope * slope));
  }
  if (nl == "selu") return 3.0 / 4.0;
  EMBER_THROW("[calculate_gain] unsupported nonlinearity '", std::string(nl),
              "' (expected linear, conv1d/2d/3d, conv_transpose1d/2d/3d, sigmoid, tanh, relu, leaky_relu, selu)");
}

namespace {
thread_local bool skip_random_init = false;
}  // namespace

SkipRandomInitGuard::SkipRandomInitGuard() : previous_(skip_random_init) { skip_random_init = true; }
SkipRandomInitGuard::~SkipRandomInitGuard() { skip_random_init = previous_; }
bool random_init_skipped() { return skip_random_init; }

Tensor uniform_(Tensor t, double a, double b, Generator* gen) {
  check_defined(t, "uniform_");
  if (skip_random_init) return t;
  NoGradGuard no_grad;
  ember::uniform_(t, a, b, gen);
  return t;
}

Tensor normal_(Tensor t, double mean, double std, Generator* gen) {
  check_defined(t, "normal_");
  EMBER_CHECK(std >= 0.0, "[normal_] std must be >= 0, got ", std);
  if (skip_random_init) return t;
  NoGradGuard no_grad;
  ember::normal_(t, mean, std, gen);
  return t;
}

Tensor constant_(Tensor t, double value) {
  check_defined(t, "constant_");
  NoGradGuard no_grad;
  t.fill_(value);
  return t;
}

Tensor zeros_(Tensor t) { return constant_(std::move(t), 0.0); }
Tensor ones_(Tensor t) { return constant_(std::move(t), 1.0); }

Tensor xavier_uniform_(Tensor t, double gain, Generator* gen) {
  Fans f = calculate_fan_in_and_fan_out(t);
  double std = gain * std::sqrt(2.0 / static_cast<double>(f.fan_in + f.fan_out));
  double a = std::sqrt(3.0) * std;
  return uniform_(std::move(t), -a, a, gen);
}

Tensor xavier_normal_(Tensor t, double gain, Generator* gen) {
  Fans f = calculate_fan_in_and_fan_out(t);
  double std = gain * std::sqrt(2.0 / static_cast<double>(f.fan_in + f.fan_out));
  return normal_(std::move(t), 0.0, std, gen);
}

Tensor kaiming_uniform_(Tensor t, double a, std::string_view mode, std::string_view nonlinearity, Generator* gen) {
  check_defined(t, "kaiming_uniform_");
  if (t.numel() == 0) return t;
  int64_t fan = correct_fan(t, mode, "kaiming_uniform_");
  double std = calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(fan));
  double bound = std::sqrt(3.0) * std;
  return uniform_(std::move(t), -bound, bound, gen);
}

Tensor kaiming_normal_(Tensor t, double a, std::string_view mode, std::string_view nonlinearity, Generator* gen) {
  check_defined(t, "kaiming_normal_");
  if (t.numel() == 0) return t;
  int64_t fan = correct_fan(t, mode, "kaiming_normal_");
  double std = calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(fan));
  return normal_(std::move(t), 0.0, std, gen);
}

}  // namespace ember::nn::init
