// CUDA streams and graphs (runtime/cuda_graph.h) over the kernels' entries (kernels/cuda/device.cu).
#include "ember/runtime/cuda_graph.h"

#include <exception>
#include <utility>

#include "kernels/kernels.h"
#include "ember/runtime/allocator.h"
#include "ember/runtime/error.h"

namespace ember {

namespace {
void require_cuda(Device d, const char* who) {
  EMBER_CHECK(d.is_cuda(), "[", who, "] needs a CUDA device, got ", d.str());
}
}  // namespace

CudaStream::CudaStream(Device device) : device_(device) {
  require_cuda(device, "CudaStream");
  s_ = kernels::cuda_stream_create(device.index);
}

CudaStream::~CudaStream() { kernels::cuda_stream_destroy(device_.index, s_); }

void CudaStream::synchronize() const {
  CudaStreamGuard g(*this);
  kernels::cuda_stream_synchronize(device_.index);
}

CudaStreamGuard::CudaStreamGuard(const CudaStream& stream)
    : device_(stream.device()), prev_(kernels::cuda_exchange_stream(stream.device().index, stream.handle())) {}

CudaStreamGuard::~CudaStreamGuard() {
  try {
    kernels::cuda_exchange_stream(device_.index, prev_);
  } catch (...) {
  }
}

CudaGraph::~CudaGraph() { reset(); }

CudaGraph::CudaGraph(CudaGraph&& o) noexcept
    : g_(std::exchange(o.g_, nullptr)), pool_(std::move(o.pool_)), device_(o.device_) {}

CudaGraph& CudaGraph::operator=(CudaGraph&& o) noexcept {
  if (this != &o) {
    reset();
    g_ = std::exchange(o.g_, nullptr);
    pool_ = std::move(o.pool_);
    device_ = o.device_;
  }
  return *this;
}

void CudaGraph::reset() {
  if (g_) {
    // A replay may still be running: wait for it before its graph and memory go.
    try {
      kernels::cuda_synchronize(device_.index);
    } catch (...) {
    }
    kernels::cuda_graph_destroy(g_);
    g_ = nullptr;
  }
  pool_.reset();
}

void CudaGraph::begin_capture(Device device) {
  require_cuda(device, "CudaGraph");
  begin_capture_pool(device);
  try {
    kernels::cuda_graph_begin_capture(device.index);
  } catch (...) {
    end_capture_pool(device).reset();
    throw;
  }
}

CudaGraph CudaGraph::end_capture(Device device) {
  require_cuda(device, "CudaGraph");
  CudaGraph g;
  g.device_ = device;
  try {
    g.g_ = kernels::cuda_graph_end_capture(device.index);
  } catch (...) {
    end_capture_pool(device).reset();
    throw;
  }
  g.pool_ = end_capture_pool(device);
  return g;
}

void CudaGraph::abort_capture(Device device) {
  require_cuda(device, "CudaGraph");
  kernels::cuda_graph_abort_capture(device.index);
  try {
    end_capture_pool(device).reset();
  } catch (...) {
  }
}

void CudaGraph::replay() const {
  EMBER_CHECK(g_ != nullptr, "[CudaGraph] replay of an empty graph");
  kernels::cuda_graph_launch(g_);
}

CudaGraph::UpdateScope::UpdateScope(const CudaGraph& graph) : g_(graph.g_) {
  EMBER_CHECK(g_ != nullptr, "[CudaGraph] update of an empty graph");
  kernels::cuda_graph_begin_update(g_);
}

CudaGraph::UpdateScope::~UpdateScope() noexcept(false) {
  // The count check throws only when no other exception is on its way out.
  if (std::uncaught_exceptions() > 0) {
    try {
      kernels::cuda_graph_end_update(g_);
    } catch (...) {
    }
    return;
  }
  kernels::cuda_graph_end_update(g_);
}

}  // namespace ember
