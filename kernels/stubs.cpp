// CUDA entry points that this build does not provide throw a clear error. In a CPU-only build
// that is all of them; in a CUDA build, device management lives in kernels/cuda/device.cu and
// the op kernels listed below still lack a CUDA implementation.
#include "ember/config.h"
#include "kernels/kernels.h"

namespace ember::kernels {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  if (EMBER_WITH_CUDA) EMBER_THROW("[", what, "] has no CUDA kernel in this build of Ember yet; run it on device cpu");
  EMBER_THROW("[", what, "] this build of Ember has no CUDA backend (configured with EMBER_CUDA=OFF or no CUDA "
              "toolkit found); use device cpu");
}
}  // namespace

#if !EMBER_WITH_CUDA
int cuda_device_count() { return 0; }
void* cuda_malloc(int, size_t) { no_cuda("cuda_malloc"); }
void cuda_free(int, void*) {}
void cuda_memcpy(void*, Device, const void*, Device, size_t) { no_cuda("to(device)"); }
void cuda_synchronize(int) { no_cuda("synchronize"); }
#endif

#define EMBER_CUDA_STUB(name, ...) \
  void name##_cuda(__VA_ARGS__) { no_cuda(#name); }
EMBER_CUDA_STUB(unary, UnaryOp, const Tensor&, const Tensor&, double, double)
EMBER_CUDA_STUB(binary, BinaryOp, const Tensor&, const Tensor&, const Tensor&)
EMBER_CUDA_STUB(where, const Tensor&, const Tensor&, const Tensor&, const Tensor&)
EMBER_CUDA_STUB(copy, const Tensor&, const Tensor&)
EMBER_CUDA_STUB(fill, const Tensor&, double)
EMBER_CUDA_STUB(axpby, const Tensor&, const Tensor&, const Tensor&, double, bool)
EMBER_CUDA_STUB(reduce, ReduceOp, const Tensor&, const std::vector<int>&, const Tensor&, const Tensor&)
EMBER_CUDA_STUB(softmax, const Tensor&, int, bool, const Tensor&)
EMBER_CUDA_STUB(bmm, const Tensor&, const Tensor&, const Tensor&, double)
EMBER_CUDA_STUB(conv2d, const ConvGeom&, const Tensor&, const Tensor&, const Tensor&)
EMBER_CUDA_STUB(conv2d_backward_input, const ConvGeom&, const Tensor&, const Tensor&, const Tensor&)
EMBER_CUDA_STUB(conv2d_backward_weight, const ConvGeom&, const Tensor&, const Tensor&, const Tensor&)
EMBER_CUDA_STUB(max_pool2d, const PoolGeom&, const Tensor&, const Tensor&, const Tensor&)
EMBER_CUDA_STUB(max_pool2d_backward, const PoolGeom&, const Tensor&, const Tensor&, const Tensor&)
EMBER_CUDA_STUB(avg_pool2d, const PoolGeom&, const Tensor&, const Tensor&)
EMBER_CUDA_STUB(avg_pool2d_backward, const PoolGeom&, const Tensor&, const Tensor&)
EMBER_CUDA_STUB(index_select, const Tensor&, int, const Tensor&, const Tensor&)
EMBER_CUDA_STUB(index_add, const Tensor&, int, const Tensor&, const Tensor&)
EMBER_CUDA_STUB(nll_loss, const Tensor&, const Tensor&, const Tensor&, int64_t, const Tensor&, const Tensor&)
EMBER_CUDA_STUB(nll_loss_backward, const Tensor&, const Tensor&, const Tensor&, int64_t, const Tensor&)
EMBER_CUDA_STUB(random, RandomDist, uint64_t, uint64_t, double, double, const Tensor&)
#undef EMBER_CUDA_STUB

}  // namespace ember::kernels
