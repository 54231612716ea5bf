// The CUDA entry points of a CPU-only build (EMBER_CUDA=OFF or no toolkit found): kernels/kernels.h
// defines each one here through EMBER_CUDA_ENTRY, as a stub that throws a clear error (the device
// queries report no device, frees do nothing). A CUDA build defines them in kernels/cuda/ instead.
#include "ember/config.h"

#if !EMBER_WITH_CUDA
#define EMBER_CUDA_DEFINE_STUBS
#pragma GCC diagnostic ignored "-Wunused-parameter"  // the stubs keep the declarations' parameter names
#include "kernels/kernels.h"

namespace ember::kernels {

void no_cuda_backend(const char* entry) {
  EMBER_THROW("[", entry, "] this build of Ember has no CUDA backend (configured with EMBER_CUDA=OFF or no CUDA "
              "toolkit found); use device cpu");
}

}  // namespace ember::kernels
#endif  // !EMBER_WITH_CUDA
