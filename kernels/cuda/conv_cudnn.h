// The cuDNN path of the CUDA convolution kernels (kernels/cuda/conv_cudnn.cu, the only kernel file
// that includes cuDNN). kernels/cuda/conv.cu tries it first and falls back to its direct kernels.
#pragma once
#include <cstdint>
#include <string>

#include "kernels/kernels.h"

namespace ember::cu {

enum class ConvPass { Forward, BackwardData, BackwardFilter };

// Runs one pass of the convolution g through cuDNN. Roles are fixed: x (N, C, H, W), w (K, C/g, kh,
// kw), y (N, K, OH, OW); Forward writes y, BackwardData writes x (from y = dy and w), BackwardFilter
// writes w (from x and y = dy). Returns false, having done nothing, when cuDNN is not built in, cannot
// be loaded, or cannot take this geometry/dtype; throws ember::Error naming the cuDNN call when one fails.
bool cudnn_conv2d(ConvPass pass, const kernels::ConvGeom& g, const Tensor& x, const Tensor& w, const Tensor& y);

// Whether EMBER_CUDNN_STRICT=1 (read per call). Then a convolution that cuDNN should serve but
// cannot (libcudnn does not load, no acceptable algorithm, every algorithm refused to run) throws
// instead of running on the direct kernels, so tests can tell that cuDNN served them. Geometries
// cuDNN cannot express and dtypes other than f32/f64 keep the direct kernels, and
// EMBER_DISABLE_CUDNN=1 still sends everything there.
bool cudnn_strict();
// In strict mode throws ember::Error "[cudnn] <why> (EMBER_CUDNN_STRICT=1 refuses the direct
// kernels)"; otherwise returns (the caller falls back).
void cudnn_fallback(const std::string& why);
// The number of convolution passes cuDNN has run in this process (0 in a build without cuDNN).
uint64_t cudnn_convolutions_served();

}  // namespace ember::cu
