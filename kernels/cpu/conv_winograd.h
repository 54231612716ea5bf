// Winograd convolution for 3x3, stride-1, undilated, ungrouped float32 convolutions with many
// channels (kernels/cpu/conv_winograd.cpp); conv.cpp calls it where winograd_conv_applies says so.
// Private to the library.
#pragma once
#include <atomic>

#include "kernels/kernels.h"

namespace ember::kernels {

// On by default; tests switch it off to compare against the direct (phase-plane GEMM) kernels.
inline std::atomic<bool>& conv_winograd_enabled() {
  static std::atomic<bool> on{true};
  return on;
}

// Which pass of a convolution a shape check is for.
enum class ConvPass { Forward, Input, Weight };

// True where the Winograd kernel handles this pass of g (3x3, stride 1, dilation 1, groups 1,
// padding at most 2, channel counts where it beats the direct kernel) and it is enabled.
bool winograd_conv_applies(const ConvGeom& g, ConvPass pass);

// y (N, K, OH, OW) = conv(x (N, C, H, W), w (K, C, 3, 3))
void conv2d_winograd(const ConvGeom& g, const float* x, const float* w, float* y);
// dx (N, C, H, W) = conv2d's input gradient for dy (N, K, OH, OW)
void conv2d_backward_input_winograd(const ConvGeom& g, const float* dy, const float* w, float* dx);
// dw (K, C, 3, 3) = conv2d's weight gradient
void conv2d_backward_weight_winograd(const ConvGeom& g, const float* x, const float* dy, float* dw);

}  // namespace ember::kernels
