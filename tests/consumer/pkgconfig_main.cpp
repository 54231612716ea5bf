// One file built with pkg-config alone (no CMake):
//   g++ -std=c++20 pkgconfig_main.cpp $(pkg-config --cflags --libs ember)
//   g++ -std=c++20 pkgconfig_main.cpp $(pkg-config --static --cflags --libs ember) -static
// It runs a forward and backward pass and prints the gradient's sum.
#include <ember/ember.h>

#include <cstdio>

int main() {
  ember::manual_seed(1);
  ember::nn::Linear layer(3, 2);
  ember::Tensor x = ember::ones({4, 3});
  ember::Tensor loss = ember::sum(layer.forward(x));
  loss.backward();
  const double g = ember::sum(layer.weight.grad()).item<double>();
  std::printf("pkgconfig_main: Ember %s, weight gradient sum %.1f\n", ember::version_string(), g);
  return g == 24.0 ? 0 : 1;  // d(sum(xW^T+b))/dW = column sums of x, 4 per entry, 6 entries
}
