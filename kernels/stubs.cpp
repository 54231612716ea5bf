// The CUDA entry points of a CPU-only build (EMBER_CUDA=OFF or no toolkit found): the device
// queries report no device and every kernel throws a clear error. A CUDA build defines all of
// them in kernels/cuda/ and compiles nothing here.
#include "ember/config.h"
#include "kernels/kernels.h"

#if !EMBER_WITH_CUDA
namespace ember::kernels {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  EMBER_THROW("[", what, "] this build of Ember has no CUDA backend (configured with EMBER_CUDA=OFF or no CUDA "
              "toolkit found); use device cpu");
}
}  // namespace

int cuda_device_count() { return 0; }
void* cuda_malloc(int, size_t) { no_cuda("cuda_malloc"); }
void cuda_free(int, void*) {}
void cuda_memcpy(void*, Device, const void*, Device, size_t) { no_cuda("to(device)"); }
void cuda_synchronize(int) { no_cuda("synchronize"); }
void* cuda_host_alloc(size_t) { no_cuda("cuda_host_alloc"); }
void cuda_host_free(void*) {}

#define EMBER_CUDA_STUB(name, ...) \
  void name##_cuda(__VA_ARGS__) { no_cuda(#name); }
EMBER_CUDA_STUB(unary, UnaryOp, const Tensor&, const Tensor&, double, double)
EMBER_CUDA_STUB(binary, BinaryOp, const Tensor&, const Tensor&, const Tensor&)
EMBER_CUDA_STUB(where, const Tensor&, const Tensor&, const Tensor&, const Tensor&)
EMBER_CUDA_STUB(copy, const Tensor&, const Tensor&)
EMBER_CUDA_STUB(fill, const Tensor&, double)
EMBER_CUDA_STUB(axpby, const Tensor&, const Tensor&, const Tensor&, double, bool)
EMBER_CUDA_STUB(reduce, ReduceOp, const Tensor&, const DimList&, const Tensor&, const Tensor&)
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
void sgd_update_cuda(const Tensor&, const Tensor&, const Tensor&, const SgdUpdate&) { no_cuda("SGD"); }
void adam_update_cuda(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const AdamUpdate&) {
  no_cuda("Adam");
}
void rmsprop_update_cuda(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                         const RmspropUpdate&) {
  no_cuda("RMSprop");
}
void adagrad_update_cuda(const Tensor&, const Tensor&, const Tensor&, const AdagradUpdate&) { no_cuda("Adagrad"); }

}  // namespace ember::kernels
#endif  // !EMBER_WITH_CUDA
