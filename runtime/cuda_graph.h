// CUDA streams and graphs for the calling thread. A graph records a sequence of device work once
// (begin_capture ... end_capture, on a stream of its own) and replays it with one launch, without
// the host's per-kernel cost. Memory allocated during the capture comes from a private pool that
// the graph keeps (runtime/allocator.h); a replay writes the same addresses, so whatever the
// captured work allocated and is still referenced holds the latest replay's results. The fused
// optimizer updates are recorded too: in an UpdateScope, an optimizer's step() sets the scalars of
// the captured updates (learning rate, bias corrections) for the next replay instead of running.
// Everything here throws ember::Error in a build without CUDA.
#pragma once
#include <memory>

#include "ember/runtime/api.h"
#include "ember/runtime/device.h"

namespace ember {

// A stream of its own on a CUDA device (blocking: it still orders with the legacy default stream).
class EMBER_API CudaStream {
 public:
  explicit CudaStream(Device device);
  ~CudaStream();
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  Device device() const { return device_; }
  void* handle() const { return s_; }
  // Blocks until the work queued on it is done (a round trip).
  void synchronize() const;

 private:
  Device device_;
  void* s_ = nullptr;
};

// Makes a stream the calling thread's current stream on its device for the scope.
class EMBER_API CudaStreamGuard {
 public:
  explicit CudaStreamGuard(const CudaStream& stream);
  ~CudaStreamGuard();
  CudaStreamGuard(const CudaStreamGuard&) = delete;
  CudaStreamGuard& operator=(const CudaStreamGuard&) = delete;

 private:
  Device device_;
  void* prev_ = nullptr;
};

class EMBER_API CudaGraph {
 public:
  CudaGraph() = default;
  ~CudaGraph();
  CudaGraph(CudaGraph&& o) noexcept;
  CudaGraph& operator=(CudaGraph&& o) noexcept;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Starts capturing the calling thread's work on the device's current stream, which must be a
  // CudaStream's (the legacy default stream cannot be captured). Work is recorded, not run.
  static void begin_capture(Device device);
  // Ends the capture into a graph ready to replay. Nothing captured has run yet: replay() runs it.
  static CudaGraph end_capture(Device device);
  // Ends a capture that failed (an exception inside it) and discards it and its memory.
  static void abort_capture(Device device);

  bool valid() const { return g_ != nullptr; }
  Device device() const { return device_; }
  // Queues the captured work on the device's current stream.
  void replay() const;

  // While alive, fused optimizer updates (optimizer step()s) on this thread set the scalars of the
  // graph's captured updates, in capture order, instead of running; the count must match.
  class EMBER_API UpdateScope {
   public:
    explicit UpdateScope(const CudaGraph& graph);
    ~UpdateScope() noexcept(false);
    UpdateScope(const UpdateScope&) = delete;
    UpdateScope& operator=(const UpdateScope&) = delete;

   private:
    void* g_;
  };

 private:
  void reset();
  void* g_ = nullptr;
  std::shared_ptr<void> pool_;
  Device device_;
};

}  // namespace ember
