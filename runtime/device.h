// Where a tensor lives: the CPU or CUDA device N. Chosen per tensor.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "ember/runtime/api.h"

namespace ember {

enum class DeviceType : uint8_t { CPU = 0, CUDA = 1 };

struct EMBER_API Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  constexpr Device() = default;
  constexpr Device(DeviceType t, int i = 0) : type(t), index(i) {}  // NOLINT
  // Parses "cpu", "cuda", "cuda:1"; throws ember::Error naming the string otherwise.
  explicit Device(std::string_view spec);

  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  std::string str() const;  // "cpu" or "cuda:N"
  bool operator==(const Device&) const = default;
};

inline constexpr Device kCPU{DeviceType::CPU, 0};
inline Device cuda_device(int index = 0) { return Device(DeviceType::CUDA, index); }

// True when this build has the CUDA backend and at least one device is visible.
EMBER_API bool cuda_is_available();
EMBER_API int cuda_device_count();
// Why no CUDA device can be used, for messages: "" when cuda_device_count() > 0; otherwise the CUDA
// runtime's error for the device query (a missing or too old driver, no device) with a hint, or
// that this build has no CUDA backend.
EMBER_API std::string cuda_unavailable_reason();

// The CUDA backend's host-device round trips since the process started or the last reset: how often
// the host waited for a device (stream, device and event synchronisations, the waits that end every
// copy touching host memory included) and how many of those waits ended a copy into host memory
// (item(), to(kCPU), a kernel's status read back). All zero in a build without CUDA. A steady
// training step should add none; tests and benchmarks read these.
struct CudaRoundTrips {
  uint64_t synchronizations = 0;
  uint64_t device_to_host_copies = 0;
};
EMBER_API CudaRoundTrips cuda_round_trips();
EMBER_API void reset_cuda_round_trips();

// Snapshots out of a CUDA device that do not stop it: cuda_copy_to_host_async queues a copy of
// nbytes from device memory at src into host memory at dst (page-locked for a truly asynchronous
// copy) on the device's current stream and returns at once; the copy sees every kernel queued
// before it and none queued after. A CudaEvent recorded afterwards lets any thread wait for it.
// Both throw in a build without CUDA.
EMBER_API void cuda_copy_to_host_async(void* dst, const void* src, Device device, size_t nbytes);
// For libraries that queue work of their own in Ember's order (NCCL): the calling thread's current
// stream on a CUDA device (a cudaStream_t; nullptr is the legacy default stream), and making a
// device the CUDA runtime's current one (returns the previous index). Both throw without CUDA.
EMBER_API void* cuda_current_stream(Device device);
EMBER_API int cuda_set_current_device(int device);
class EMBER_API CudaEvent {
 public:
  CudaEvent() = default;
  static CudaEvent record(Device device);  // on the device's current stream
  ~CudaEvent();
  CudaEvent(CudaEvent&& o) noexcept : e_(o.e_) { o.e_ = nullptr; }
  CudaEvent& operator=(CudaEvent&& o) noexcept;
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  // Blocks the calling thread until the work queued before the event is done (a round trip).
  void synchronize() const;

 private:
  void* e_ = nullptr;
};

}  // namespace ember
