// Input checks whose verdict is computed on a device (an out-of-range class target or index, an
// input outside [0, 1]): reading the verdict back at once would stop the host at every such op,
// so on a CUDA device it is queued and read with the next read from the device (item(),
// to(kCPU), which the trainer's logging and progress bar do), every queued check of the device in
// one copy. The op itself still leaves memory safe: its kernel skips what the check rejects. The
// error then names the op that failed, later than the op ran, as a device-side assert would.
// EMBER_SYNC_DEVICE_CHECKS=1 (or set_sync_device_checks(true)) reads each verdict at its op,
// which stops exactly there (for debugging, like CUDA_LAUNCH_BLOCKING). CPU checks run at once.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/runtime/tensor.h"

namespace ember {

// The verdict of a check from the values read back: "" when the check passed, else the error
// message (starting with "[op]").
using DeviceCheckVerdict = std::function<std::string(const std::vector<double>& values)>;

// Queues a check of `values` (a few numbers computed by the op, on its device; any dtype, read as
// double). A CPU tensor is judged at once, throwing ember::Error with the verdict's message.
EMBER_API void check_on_device(const Tensor& values, DeviceCheckVerdict verdict);
// Reads every queued check and throws the first failure (in the order they were queued); the
// queue is empty afterwards either way. Called by Tensor::to(kCPU) from a device.
EMBER_API void run_device_checks();
EMBER_API size_t queued_device_checks();
// For CUDA graphs: the checks an op queues while a graph is captured read values that every replay
// rewrites. take_since() moves the checks queued since `mark` (queued_device_checks() when the
// capture began) out of the queue; requeue() queues a copy of each one's values as they are now
// (in stream order, after a replay) with its verdict.
class EMBER_API CapturedDeviceChecks {
 public:
  static CapturedDeviceChecks take_since(size_t mark);
  void requeue() const;
  size_t size() const { return checks_.size(); }

 private:
  std::vector<std::pair<Tensor, DeviceCheckVerdict>> checks_;
};

// Whether checks are read at their op (default: the EMBER_SYNC_DEVICE_CHECKS environment variable).
EMBER_API void set_sync_device_checks(bool on);
EMBER_API bool sync_device_checks();

}  // namespace ember
