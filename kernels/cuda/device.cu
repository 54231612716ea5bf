// CUDA device management: device count, raw device and page-locked host allocations (the caching
// allocators of runtime/allocator.cpp sit on top), copies, synchronisation, streams and events.
// Every CUDA status becomes an ember::Error naming the call that failed.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include "kernels/cuda/launch.h"
#include "kernels/kernels.h"

namespace ember::cu {

namespace {
std::atomic<uint64_t> g_synchronizations{0}, g_device_to_host{0};
}  // namespace

void count_round_trip(bool device_to_host) {
  g_synchronizations.fetch_add(1, std::memory_order_relaxed);
  if (device_to_host) g_device_to_host.fetch_add(1, std::memory_order_relaxed);
}

void check(cudaError_t st, const char* call) {
  if (st != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so the next call starts clean
    EMBER_THROW("[cuda] ", call, " failed: ", cudaGetErrorName(st), " (", cudaGetErrorString(st), ")");
  }
}

DeviceGuard::DeviceGuard(int device) {
  int cur = 0;
  EMBER_CUDA_CHECK(cudaGetDevice(&cur));
  if (cur != device) {
    EMBER_CUDA_CHECK(cudaSetDevice(device));
    prev_ = cur;
  }
}

DeviceGuard::~DeviceGuard() {
  if (prev_ >= 0) cudaSetDevice(prev_);
}

namespace {
constexpr int kMaxDevices = 16;
thread_local cudaStream_t t_streams[kMaxDevices] = {};

int checked_index(int device) {
  EMBER_CHECK(device >= 0 && device < kMaxDevices, "[cuda] device index ", device, " is out of range");
  return device;
}
}  // namespace

cudaStream_t current_stream(int device) { return t_streams[checked_index(device)]; }

void set_current_stream(int device, cudaStream_t stream) { t_streams[checked_index(device)] = stream; }

cudaStream_t current_stream() {
  int cur = 0;
  EMBER_CUDA_CHECK(cudaGetDevice(&cur));
  return current_stream(cur);
}

StreamGuard::StreamGuard(int device, cudaStream_t stream) : device_(checked_index(device)), prev_(t_streams[device]) {
  t_streams[device_] = stream;
}

StreamGuard::~StreamGuard() { t_streams[device_] = prev_; }

Event::Event(bool timing) {
  EMBER_CUDA_CHECK(cudaEventCreateWithFlags(&ev_, timing ? cudaEventDefault : cudaEventDisableTiming));
}

Event::~Event() {
  if (ev_) cudaEventDestroy(ev_);
}

void Event::record(cudaStream_t stream) { EMBER_CUDA_CHECK(cudaEventRecord(ev_, stream)); }

void Event::synchronize() const {
  count_round_trip(false);
  EMBER_CUDA_CHECK(cudaEventSynchronize(ev_));
}

bool Event::done() const {
  cudaError_t st = cudaEventQuery(ev_);
  if (st == cudaErrorNotReady) return false;
  check(st, "cudaEventQuery");
  return true;
}

float Event::elapsed_ms(const Event& end) const {
  float ms = 0;
  EMBER_CUDA_CHECK(cudaEventElapsedTime(&ms, ev_, end.ev_));
  return ms;
}

// --- CUDA graphs --------------------------------------------------------------------------------

namespace {
thread_local GraphImpl* t_capture = nullptr;
thread_local GraphImpl* t_update = nullptr;
}  // namespace

GraphImpl* capturing_graph() { return t_capture; }
GraphImpl* updating_graph() { return t_update; }

void record_optimizer_node(GraphImpl& g, const void* func, const char* name) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  const cudaGraphNode_t* deps = nullptr;
  size_t n_deps = 0;
  // After a launch, the capturing stream's dependency set is that launch's node.
#if CUDART_VERSION >= 13000
  EMBER_CUDA_CHECK(cudaStreamGetCaptureInfo(current_stream(), &status, nullptr, nullptr, &deps, nullptr, &n_deps));
#else
  EMBER_CUDA_CHECK(cudaStreamGetCaptureInfo(current_stream(), &status, nullptr, nullptr, &deps, &n_deps));
#endif
  EMBER_CHECK(status == cudaStreamCaptureStatusActive && n_deps == 1, "[cuda graph] the node of ", name,
              " could not be found in the capture (status ", static_cast<int>(status), ", ", n_deps, " dependencies)");
  g.optimizer_nodes.push_back(GraphNodeRecord{deps[0], func});
}

void set_next_optimizer_node(GraphImpl& g, const void* func, dim3 grid, dim3 block, void** params, const char* name) {
  EMBER_CHECK(g.cursor < g.optimizer_nodes.size(), "[cuda graph] the optimizer runs more updates than the captured step (",
              g.optimizer_nodes.size(), ")");
  const GraphNodeRecord& rec = g.optimizer_nodes[g.cursor++];
  EMBER_CHECK(rec.func == func, "[cuda graph] optimizer update ", g.cursor, " (", name,
              ") runs with other options than in the captured step");
  cudaKernelNodeParams kp{};
  kp.func = const_cast<void*>(func);
  kp.gridDim = grid;
  kp.blockDim = block;
  kp.sharedMemBytes = 0;
  kp.kernelParams = params;
  kp.extra = nullptr;
  EMBER_CUDA_CHECK(cudaGraphExecKernelNodeSetParams(g.exec, rec.node, &kp));
}

Scratch::Scratch(int device, size_t nbytes) : dev_(cuda_device(device)), n_(nbytes) {
  if (n_ > 0) p_ = device_alloc(dev_, n_);
}

Scratch::~Scratch() {
  if (p_) device_free(dev_, p_, n_);
}

}  // namespace ember::cu

namespace ember::kernels {

namespace {

// The device query, once per process: the count, and why it is 0.
struct DeviceQuery {
  int count = 0;
  std::string reason;
};

const DeviceQuery& device_query() {
  static const DeviceQuery q = [] {
    DeviceQuery r;
    const cudaError_t st = cudaGetDeviceCount(&r.count);
    if (st != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no device" / "no driver" error
      r.count = 0;
      r.reason = std::string("cudaGetDeviceCount failed with ") + cudaGetErrorName(st) + " (" + cudaGetErrorString(st) + ")";
      if (st == cudaErrorInsufficientDriver)
        r.reason += ": the NVIDIA driver (libcuda.so.1) is missing or older than this build's CUDA " +
                    std::to_string(CUDART_VERSION / 1000) + " runtime";
      else if (st == cudaErrorNoDevice)
        r.reason += ": the driver sees no GPU (check nvidia-smi and CUDA_VISIBLE_DEVICES)";
    } else if (r.count == 0) {
      r.reason = "the CUDA runtime reports 0 devices (check nvidia-smi and CUDA_VISIBLE_DEVICES)";
    }
    return r;
  }();
  return q;
}

}  // namespace

int cuda_device_count() { return device_query().count; }

std::string cuda_unavailable_reason() { return device_query().reason; }

void* cuda_malloc(int device, size_t nbytes) {
  int n = cuda_device_count();
  EMBER_CHECK(device >= 0 && device < n, "[cuda] device cuda:", device, " is not available (", n,
              " CUDA devices visible", n == 0 ? ": " + cuda_unavailable_reason() : std::string(), ")");
  cu::DeviceGuard g(device);
  void* p = nullptr;
  cudaError_t st = cudaMalloc(&p, nbytes);
  if (st == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    EMBER_THROW("[cuda] out of memory on cuda:", device, " allocating ", nbytes, " bytes (", free_b, " of ", total_b,
                " bytes free)");
  }
  cu::check(st, "cudaMalloc");
  return p;
}

void cuda_free(int device, void* p) {
  // Errors are ignored: this also runs while the process exits, after the CUDA runtime unloaded.
  int cur = -1;
  cudaGetDevice(&cur);
  if (cur != device) cudaSetDevice(device);
  cudaFree(p);
  if (cur >= 0 && cur != device) cudaSetDevice(cur);
}

void cuda_memcpy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_dev.is_cuda() && src_dev.is_cuda() && dst_dev.index != src_dev.index) {
    // Across devices: finish the source's pending work, then copy synchronously.
    {
      cu::DeviceGuard g(src_dev.index);
      cu::count_round_trip(false);
      EMBER_CUDA_CHECK(cudaStreamSynchronize(cu::current_stream(src_dev.index)));
    }
    cu::DeviceGuard g(dst_dev.index);
    EMBER_CUDA_CHECK(cudaMemcpyPeer(dst, dst_dev.index, src, src_dev.index, nbytes));
    return;
  }
  const int dev = dst_dev.is_cuda() ? dst_dev.index : src_dev.index;
  cu::DeviceGuard g(dev);
  cudaStream_t s = cu::current_stream(dev);
  EMBER_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDefault, s));
  // A host buffer may be reused as soon as this returns, so copies touching the host complete here.
  if (dst_dev.is_cpu() || src_dev.is_cpu()) {
    cu::count_round_trip(dst_dev.is_cpu());
    EMBER_CUDA_CHECK(cudaStreamSynchronize(s));
  }
}

void cuda_memcpy_to_host_async(void* dst, const void* src, int device, size_t nbytes) {
  if (nbytes == 0) return;
  cu::DeviceGuard g(device);
  EMBER_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, cu::current_stream(device)));
}

void cuda_memcpy_to_device_async(void* dst, const void* src, int device, size_t nbytes) {
  if (nbytes == 0) return;
  cu::DeviceGuard g(device);
  EMBER_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, cu::current_stream(device)));
}

bool cuda_event_query(void* event) {
  const cudaError_t st = cudaEventQuery(static_cast<cudaEvent_t>(event));
  if (st == cudaErrorNotReady) return false;
  cu::check(st, "cudaEventQuery");
  return true;
}

void* cuda_event_record(int device) {
  cu::DeviceGuard g(device);
  cudaEvent_t e = nullptr;
  EMBER_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  cudaError_t st = cudaEventRecord(e, cu::current_stream(device));
  if (st != cudaSuccess) {
    cudaEventDestroy(e);
    cu::check(st, "cudaEventRecord");
  }
  return e;
}

void cuda_event_synchronize(void* event) {
  cu::count_round_trip(true);
  EMBER_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event)));
}

void cuda_event_destroy(void* event) {
  if (event) cudaEventDestroy(static_cast<cudaEvent_t>(event));  // errors ignored, as for frees
}

void cuda_synchronize(int device) {
  cu::DeviceGuard g(device);
  cu::count_round_trip(false);
  EMBER_CUDA_CHECK(cudaDeviceSynchronize());
}

CudaRoundTrips cuda_round_trips() {
  return {cu::g_synchronizations.load(std::memory_order_relaxed), cu::g_device_to_host.load(std::memory_order_relaxed)};
}

void reset_cuda_round_trips() {
  cu::g_synchronizations.store(0, std::memory_order_relaxed);
  cu::g_device_to_host.store(0, std::memory_order_relaxed);
}

// --- streams and graphs --------------------------------------------------------------------------

void* cuda_stream_create(int device) {
  cu::DeviceGuard g(device);
  cudaStream_t s = nullptr;
  // A blocking stream: work on the legacy default stream still orders with it.
  EMBER_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamDefault));
  return s;
}

void cuda_stream_destroy(int device, void* stream) {
  if (!stream) return;
  int cur = -1;
  cudaGetDevice(&cur);
  if (cur != device) cudaSetDevice(device);
  cudaStreamDestroy(static_cast<cudaStream_t>(stream));  // errors ignored, as for frees
  if (cur >= 0 && cur != device) cudaSetDevice(cur);
}

void* cuda_exchange_stream(int device, void* stream) {
  void* prev = cu::current_stream(device);
  cu::set_current_stream(device, static_cast<cudaStream_t>(stream));
  return prev;
}

void* cuda_current_stream(int device) { return cu::current_stream(device); }

int cuda_set_current_device(int device) {
  int prev = 0;
  EMBER_CUDA_CHECK(cudaGetDevice(&prev));
  if (prev != device) EMBER_CUDA_CHECK(cudaSetDevice(device));
  return prev;
}

void cuda_stream_synchronize(int device) {
  cu::DeviceGuard g(device);
  cu::count_round_trip(false);
  EMBER_CUDA_CHECK(cudaStreamSynchronize(cu::current_stream(device)));
}

void cuda_graph_begin_capture(int device) {
  EMBER_CHECK(cu::t_capture == nullptr, "[cuda graph] a capture is already in progress on this thread");
  cu::DeviceGuard g(device);
  cudaStream_t s = cu::current_stream(device);
  EMBER_CHECK(s != nullptr, "[cuda graph] capturing needs a stream of its own (the legacy default stream cannot be "
                            "captured)");
  auto impl = std::make_unique<cu::GraphImpl>();
  impl->device = device;
  // Relaxed: the caching allocator may still call cudaMalloc while the capture runs.
  EMBER_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
  cu::t_capture = impl.release();
}

void* cuda_graph_end_capture(int device) {
  EMBER_CHECK(cu::t_capture != nullptr, "[cuda graph] no capture is in progress on this thread");
  std::unique_ptr<cu::GraphImpl> impl(cu::t_capture);
  cu::t_capture = nullptr;
  cu::DeviceGuard g(device);
  EMBER_CUDA_CHECK(cudaStreamEndCapture(cu::current_stream(device), &impl->graph));
  const cudaError_t st = cudaGraphInstantiate(&impl->exec, impl->graph, 0);
  if (st != cudaSuccess) {
    cudaGraphDestroy(impl->graph);
    impl->graph = nullptr;
    cu::check(st, "cudaGraphInstantiate");
  }
  return impl.release();
}

void cuda_graph_abort_capture(int device) {
  std::unique_ptr<cu::GraphImpl> impl(cu::t_capture);
  cu::t_capture = nullptr;
  int cur = -1;
  cudaGetDevice(&cur);
  if (cur != device) cudaSetDevice(device);
  cudaGraph_t graph = nullptr;
  // Errors ignored: the capture may have been invalidated by the failure that aborts it.
  cudaStreamEndCapture(cu::current_stream(device), &graph);
  if (graph) cudaGraphDestroy(graph);
  cudaGetLastError();
  if (cur >= 0 && cur != device) cudaSetDevice(cur);
}

void cuda_graph_launch(void* graph) {
  auto* g = static_cast<cu::GraphImpl*>(graph);
  cu::DeviceGuard d(g->device);
  EMBER_CUDA_CHECK(cudaGraphLaunch(g->exec, cu::current_stream(g->device)));
}

void cuda_graph_destroy(void* graph) {
  auto* g = static_cast<cu::GraphImpl*>(graph);
  if (!g) return;
  if (cu::t_update == g) cu::t_update = nullptr;
  if (g->exec) cudaGraphExecDestroy(g->exec);  // errors ignored, as for frees
  if (g->graph) cudaGraphDestroy(g->graph);
  delete g;
}

void cuda_graph_begin_update(void* graph) {
  EMBER_CHECK(cu::t_update == nullptr, "[cuda graph] an update is already in progress on this thread");
  auto* g = static_cast<cu::GraphImpl*>(graph);
  g->cursor = 0;
  cu::t_update = g;
}

bool cuda_graph_updating() { return cu::t_update != nullptr; }

void cuda_graph_end_update(void* graph) {
  auto* g = static_cast<cu::GraphImpl*>(graph);
  cu::t_update = nullptr;
  EMBER_CHECK(g->cursor == g->optimizer_nodes.size(), "[cuda graph] the optimizer ran ", g->cursor,
              " updates but the captured step ran ", g->optimizer_nodes.size());
}

// --- pinned host memory (cached by runtime/allocator.cpp) -------------------------------------

void* cuda_host_alloc(size_t nbytes) {
  void* p = nullptr;
  EMBER_CUDA_CHECK(cudaHostAlloc(&p, nbytes, cudaHostAllocPortable));
  return p;
}

void cuda_host_free(void* p) {
  if (p) cudaFreeHost(p);  // errors ignored, as cuda_free's
}

}  // namespace ember::kernels
