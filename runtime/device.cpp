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

void* cuda_current_stream(Device device) {
  EMBER_CHECK(device.is_cuda(), "[cuda_current_stream] ", device.str(), " is not a CUDA device");
  return kernels::cuda_current_stream(device.index);
}

int cuda_set_current_device(int device) { return kernels::cuda_set_current_device(device); }

void cuda_copy_to_host_async(void* dst, const void* src, Device device, size_t nbytes) {
  EMBER_CHECK(device.is_cuda(), "[cuda_copy_to_host_async] the source must be on a CUDA device, got ", device.str());
  kernels::cuda_memcpy_to_host_async(dst, src, device.index, nbytes);
}

CudaEvent CudaEvent::record(Device device) {
  EMBER_CHECK(device.is_cuda(), "[CudaEvent] events are recorded on a CUDA device, got ", device.str());
  CudaEvent e;
  e.e_ = kernels::cuda_event_record(device.index);
  return e;
}

CudaEvent::~CudaEvent() { kernels::cuda_event_destroy(e_); }

CudaEvent& CudaEvent::operator=(CudaEvent&& o) noexcept {
  if (this != &o) {
    kernels::cuda_event_destroy(e_);
    e_ = o.e_;
    o.e_ = nullptr;
  }
  return *this;
}

void CudaEvent::synchronize() const {
  if (e_) kernels::cuda_event_synchronize(e_);
}

}  // namespace ember
