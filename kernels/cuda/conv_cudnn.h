// The cuDNN path of the CUDA convolution kernels (kernels/cuda/conv_cudnn.cu, the only kernel file
// that includes cuDNN). kernels/cuda/conv.cu tries it first and falls back to its direct kernels.
#pragma once
#include "kernels/kernels.h"

namespace ember::cu {

enum class ConvPass { Forward, BackwardData, BackwardFilter };

// Runs one pass of the convolution g through cuDNN. Roles are fixed: x (N, C, H, W), w (K, C/g, kh,
// kw), y (N, K, OH, OW); Forward writes y, BackwardData writes x (from y = dy and w), BackwardFilter
// writes w (from x and y = dy). Returns false, having done nothing, when cuDNN is not built in, cannot
// be loaded, or cannot take this geometry/dtype; throws ember::Error naming the cuDNN call when one fails.
bool cudnn_conv2d(ConvPass pass, const kernels::ConvGeom& g, const Tensor& x, const Tensor& w, const Tensor& y);

}  // namespace ember::cu
