// CUDA device management: device count, allocation, copies, synchronisation, streams and events,
// and pinned host memory (a small cache of page-locked blocks, registered with the DataLoader at
// load time). Every CUDA status becomes an ember::Error naming the call that failed.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/launch.h"
#include "kernels/kernels.h"
#include "train/data/dataloader.h"

namespace ember::cu {

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

void Event::synchronize() const { EMBER_CUDA_CHECK(cudaEventSynchronize(ev_)); }

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

Scratch::Scratch(int device, size_t nbytes) : dev_(cuda_device(device)), n_(nbytes) {
  if (n_ > 0) p_ = device_alloc(dev_, n_);
}

Scratch::~Scratch() {
  if (p_) device_free(dev_, p_, n_);
}

}  // namespace ember::cu

namespace ember::kernels {

int cuda_device_count() {
  static const int n = [] {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
      cudaGetLastError();  // clear the "no device" / "no driver" error
      return 0;
    }
    return count;
  }();
  return n;
}

void* cuda_malloc(int device, size_t nbytes) {
  int n = cuda_device_count();
  EMBER_CHECK(device >= 0 && device < n, "[cuda] device cuda:", device, " is not available (", n,
              " CUDA devices visible)");
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
  if (dst_dev.is_cpu() || src_dev.is_cpu()) EMBER_CUDA_CHECK(cudaStreamSynchronize(s));
}

void cuda_synchronize(int device) {
  cu::DeviceGuard g(device);
  EMBER_CUDA_CHECK(cudaDeviceSynchronize());
}

// --- pinned host memory ------------------------------------------------------------------------

namespace {

// Page-locked blocks by rounded size; freed blocks are kept (up to kMaxCached bytes) for reuse.
// Without a usable device the blocks are ordinary aligned host memory, so a CUDA build still runs
// CPU-only code that asks for pinned memory.
struct HostCache {
  std::mutex mu;
  std::unordered_map<void*, std::pair<size_t, bool>> live;  // ptr -> (rounded size, pinned)
  std::map<size_t, std::vector<void*>> free_blocks;         // rounded size -> pinned blocks
  size_t cached_bytes = 0;
  static constexpr size_t kMaxCached = size_t{256} << 20;
};

HostCache& host_cache() {
  static HostCache* c = new HostCache;  // never destroyed: frees may come during process exit
  return *c;
}

size_t round_host(size_t n) {
  if (n <= 4096) return 4096;
  size_t p = 4096;
  while (p < n) p <<= 1;
  size_t step = std::max<size_t>(4096, p / 8);
  return (n + step - 1) / step * step;
}

}  // namespace

void* cuda_host_alloc(size_t nbytes) {
  const size_t n = round_host(nbytes);
  HostCache& c = host_cache();
  {
    std::lock_guard<std::mutex> lk(c.mu);
    auto it = c.free_blocks.find(n);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.cached_bytes -= n;
      c.live[p] = {n, true};
      return p;
    }
  }
  void* p = nullptr;
  bool pinned = false;
  if (cuda_device_count() > 0) {
    cudaError_t st = cudaHostAlloc(&p, n, cudaHostAllocPortable);
    if (st == cudaSuccess) pinned = true;
    else cudaGetLastError();
  }
  if (!pinned) {
    p = std::aligned_alloc(4096, n);
    EMBER_CHECK(p != nullptr, "[cuda] out of host memory allocating ", n, " bytes");
  }
  std::lock_guard<std::mutex> lk(c.mu);
  c.live[p] = {n, pinned};
  return p;
}

void cuda_host_free(void* p) {
  if (!p) return;
  HostCache& c = host_cache();
  std::lock_guard<std::mutex> lk(c.mu);
  auto it = c.live.find(p);
  if (it == c.live.end()) {
    // Called from storage deleters (destructors), so this reports instead of throwing.
    std::fprintf(stderr, "[cuda] cuda_host_free: pointer %p was not allocated by cuda_host_alloc; ignored\n", p);
    return;
  }
  auto [n, pinned] = it->second;
  c.live.erase(it);
  if (!pinned) {
    std::free(p);
  } else if (c.cached_bytes + n <= HostCache::kMaxCached) {
    c.free_blocks[n].push_back(p);
    c.cached_bytes += n;
  } else {
    cudaFreeHost(p);
  }
}

namespace {
// Registers the pinned allocator with the DataLoader when the library loads. This lives in the
// translation unit that defines cuda_malloc, which every program using tensors links in.
const bool g_pinned_registered = [] {
  data::set_pinned_host_allocator({[](size_t n) { return cuda_host_alloc(n); }, [](void* p) { cuda_host_free(p); }});
  return true;
}();
}  // namespace

}  // namespace ember::kernels
