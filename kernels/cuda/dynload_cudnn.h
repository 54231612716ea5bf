// cuDNN opened with dlopen on first use (see dynload.h): its table, in a header of its own so
// that only the files that need cuDNN include <cudnn.h> (conv_cudnn.cu and dynload.cpp).
// Built only where cudnn.h was found at configure time (EMBER_WITH_CUDNN).
#pragma once
#include <cudnn.h>

#include "kernels/cuda/dynload.h"

namespace ember::cu {

// The cuDNN functions Ember calls (kernels/cuda/conv_cudnn.cu): X(member, function).
#define EMBER_CUDNN_FUNCTIONS(X)                                                               \
  X(GetErrorString, cudnnGetErrorString)                                                       \
  X(Create, cudnnCreate)                                                                       \
  X(Destroy, cudnnDestroy)                                                                     \
  X(SetStream, cudnnSetStream)                                                                 \
  X(CreateTensorDescriptor, cudnnCreateTensorDescriptor)                                       \
  X(DestroyTensorDescriptor, cudnnDestroyTensorDescriptor)                                     \
  X(SetTensor4dDescriptor, cudnnSetTensor4dDescriptor)                                         \
  X(CreateFilterDescriptor, cudnnCreateFilterDescriptor)                                       \
  X(DestroyFilterDescriptor, cudnnDestroyFilterDescriptor)                                     \
  X(SetFilter4dDescriptor, cudnnSetFilter4dDescriptor)                                         \
  X(CreateConvolutionDescriptor, cudnnCreateConvolutionDescriptor)                             \
  X(DestroyConvolutionDescriptor, cudnnDestroyConvolutionDescriptor)                           \
  X(SetConvolution2dDescriptor, cudnnSetConvolution2dDescriptor)                               \
  X(SetConvolutionGroupCount, cudnnSetConvolutionGroupCount)                                   \
  X(SetConvolutionMathType, cudnnSetConvolutionMathType)                                       \
  X(GetConvolution2dForwardOutputDim, cudnnGetConvolution2dForwardOutputDim)                   \
  X(GetConvolutionForwardAlgorithm_v7, cudnnGetConvolutionForwardAlgorithm_v7)                 \
  X(GetConvolutionBackwardDataAlgorithm_v7, cudnnGetConvolutionBackwardDataAlgorithm_v7)       \
  X(GetConvolutionBackwardFilterAlgorithm_v7, cudnnGetConvolutionBackwardFilterAlgorithm_v7)   \
  X(FindConvolutionForwardAlgorithm, cudnnFindConvolutionForwardAlgorithm)                     \
  X(FindConvolutionBackwardDataAlgorithm, cudnnFindConvolutionBackwardDataAlgorithm)           \
  X(FindConvolutionBackwardFilterAlgorithm, cudnnFindConvolutionBackwardFilterAlgorithm)       \
  X(GetConvolutionForwardWorkspaceSize, cudnnGetConvolutionForwardWorkspaceSize)               \
  X(GetConvolutionBackwardDataWorkspaceSize, cudnnGetConvolutionBackwardDataWorkspaceSize)     \
  X(GetConvolutionBackwardFilterWorkspaceSize, cudnnGetConvolutionBackwardFilterWorkspaceSize) \
  X(ConvolutionForward, cudnnConvolutionForward)                                               \
  X(ConvolutionBackwardData, cudnnConvolutionBackwardData)                                     \
  X(ConvolutionBackwardFilter, cudnnConvolutionBackwardFilter)

// cuDNN's entry points: cudnn().ConvolutionForward(...) calls cudnnConvolutionForward.
struct Cudnn {
  EMBER_CUDNN_FUNCTIONS(EMBER_DYNLOAD_FIELD)
};

// The process's cuDNN table, loaded on the first call (thread-safe); a load that failed throws the
// same ember::Error on every call. EMBER_CUDNN_LIBRARY names a file to load instead of
// libcudnn.so.<CUDNN_MAJOR> / libcudnn.so.
const Cudnn& cudnn();
// Loads a fresh table, reading EMBER_CUDNN_LIBRARY now and caching nothing (for tests).
Cudnn load_cudnn();

}  // namespace ember::cu
