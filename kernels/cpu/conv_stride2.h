// Direct AVX-512 kernels for float32 stride-2 convolutions of narrow images
// (kernels/cpu/conv_stride2.cpp): the forward pass and the input gradient (conv_transpose2d's
// forward). They give the bits of conv.cpp's phase-plane GEMMs; conv.cpp calls them where
// stride2_conv_applies says so. Private to the library.
#pragma once
#include <atomic>

#include "kernels/cpu/conv_winograd.h"
#include "kernels/kernels.h"

namespace ember::kernels {

// How conv.cpp's phase-plane GEMMs batch their work, which decides the order of their sums: about
// kChunkColumns GEMM columns (images x plane size) per chunk, and the weight gradient's batch cut
// into at most kMaxSlices slices whose partials take at most kPartialBudget elements.
constexpr int64_t kChunkColumns = 512;
constexpr int64_t kPartialBudget = int64_t(1) << 22;
constexpr int64_t kMaxSlices = 16;

// On by default; tests switch it off to compare against the phase-plane GEMM kernels.
inline std::atomic<bool>& conv_stride2_enabled() {
  static std::atomic<bool> on{true};
  return on;
}

// True where the direct kernel handles this pass of g: stride 2 both ways, an output row (forward,
// weight gradient) or a phase row of dx (input gradient) that fits one 16-lane vector with its
// shifts, padding at most 16, an AVX-512 CPU, and the path enabled.
bool stride2_conv_applies(const ConvGeom& g, ConvPass pass);

// y (N, K, OH, OW) = conv(x (N, C, H, W), w (K, C/groups, kh, kw)) + bias (K values; nullptr: none)
void conv2d_stride2(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y);
// dx (N, C, H, W) = conv2d's input gradient for dy (N, K, OH, OW) + bias (C values; nullptr: none)
void conv2d_backward_input_stride2(const ConvGeom& g, const float* dy, const float* w, const float* bias, float* dx);
// dw (K, C/groups, kh, kw) = conv2d's weight gradient (the GEMM path's bits for finite x)
void conv2d_backward_weight_stride2(const ConvGeom& g, const float* x, const float* dy, float* dw);

}  // namespace ember::kernels
