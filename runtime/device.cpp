// Device parsing and printing.
#include "ember/runtime/device.h"

#include <charconv>

#include "kernels/kernels.h"
#include "ember/runtime/error.h"

namespace ember {

Device::Device(std::string_view spec) {
  if (spec == "cpu") return;
  if (spec.substr(0, 4) == "cuda") {
    type = DeviceType::CUDA;
    if (spec.size() == 4) return;
    if (spec[4] == ':' && spec.size() > 5) {
      auto rest = spec.substr(5);
      auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), index);
      if (ec == std::errc() && p == rest.data() + rest.size() && index >= 0) return;
    }
  }
  EMBER_THROW("[device] cannot parse device '", spec, "' (expected cpu, cuda or cuda:N)");
}

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

int cuda_device_count() { return kernels::cuda_device_count(); }
std::string cuda_unavailable_reason() { return kernels::cuda_unavailable_reason(); }
CudaRoundTrips cuda_round_trips() { return kernels::cuda_round_trips(); }
void reset_cuda_round_trips() { kernels::reset_cuda_round_trips(); }
bool cuda_is_available() { return cuda_device_count() > 0; }

}  // namespace ember
