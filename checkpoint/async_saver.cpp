// The asynchronous saver (see async_saver.h): a copy of the state on the caller's thread (or, for
// the tensors the caller names, first thing on the worker), the write on a worker thread that
// lives as long as the saver.
#include "ember/checkpoint/async_saver.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "ember/runtime/allocator.h"
#include "ember/runtime/device.h"
#include "ember/runtime/error.h"
#include "ember/runtime/parallel.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace ember::checkpoint {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A host tensor to copy `src` into: page-locked memory for a CUDA source (the copy then runs at the
// bus's full rate), ordinary memory otherwise.
Tensor host_buffer_for(const Tensor& src) {
  if (src.device().is_cuda() && pinned_host_memory_available()) {
    size_t n = std::max<size_t>(src.nbytes(), 1);
    void* p = pinned_host_alloc(n);
    return from_blob(p, src.shape(), src.dtype(), kCPU, [n](void* q) { pinned_host_free(q, n); });
  }
  return empty(src.shape(), src.dtype());
}

// Copies n bytes into a buffer that will not be read again soon (the writer reads it once, much
// later): with non-temporal stores where the CPU has AVX-512, which skip reading the destination
// into the cache first and so move a large state about 1.5x faster than memcpy here.
#if defined(__x86_64__)
__attribute__((target("avx512f"))) void stream_copy_avx512(char* dst, const char* src, size_t n) {
  size_t head = (64 - (reinterpret_cast<uintptr_t>(dst) & 63)) & 63;
  head = std::min(head, n);
  std::memcpy(dst, src, head);
  size_t i = head;
  for (; i + 256 <= n; i += 256) {
    __m512i a = _mm512_loadu_si512(src + i), b = _mm512_loadu_si512(src + i + 64);
    __m512i c = _mm512_loadu_si512(src + i + 128), d = _mm512_loadu_si512(src + i + 192);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i), a);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i + 64), b);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i + 128), c);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i + 192), d);
  }
  _mm_sfence();
  std::memcpy(dst + i, src + i, n - i);
}
#endif

void stream_copy(void* dst, const void* src, size_t n) {
#if defined(__x86_64__)
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  if (avx512 && n >= (size_t{1} << 16)) {
    stream_copy_avx512(static_cast<char*>(dst), static_cast<const char*>(src), n);
    return;
  }
#endif
  std::memcpy(dst, src, n);
}

// The same, split over the CPU thread pool: a memory-bound copy of a large state runs near the
// machine's bandwidth only with several threads.
void parallel_copy(void* dst, const void* src, size_t n) {
  constexpr int64_t kPiece = int64_t{1} << 22;  // 4 MiB
  const int64_t pieces = static_cast<int64_t>((n + kPiece - 1) / kPiece);
  parallel_for(0, pieces, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      size_t off = static_cast<size_t>(i * kPiece);
      stream_copy(static_cast<char*>(dst) + off, static_cast<const char*>(src) + off,
                  std::min<size_t>(static_cast<size_t>(kPiece), n - off));
    }
  });
}

}  // namespace

struct AsyncSaver::State {
  struct Deferred {
    Tensor src, dst;
  };

  // Worker hand-off, guarded by mu.
  mutable std::mutex mu;
  std::condition_variable cv;
  bool queued = false;   // a job waits for the worker or is being written
  bool staged = true;    // the worker has copied the job's deferred tensors
  bool stopping = false;
  std::string path;
  Value root;
  SaveOptions options;
  std::vector<Deferred> deferred;
  std::vector<CudaEvent> events;  // after the asynchronous copies out of CUDA devices
  std::vector<std::string> removals;  // deleted once the file is committed
  std::vector<std::string> warnings;
  std::exception_ptr error;
  double write_s = 0;
  uint64_t finished = 0;
  AsyncSaveStats stats;
  std::thread worker;

  // The caller's side only.
  std::vector<Tensor> buffers;  // reused by position in the walk when dtype and shape match
  size_t next_buffer = 0;
  std::unordered_set<const void*> later;
  std::vector<Device> cuda_sources;  // devices with copies queued by this walk

  void run() {
    std::unique_lock lock(mu);
    for (;;) {
      cv.wait(lock, [&] { return queued || stopping; });
      if (!queued) return;
      std::string p = path;
      Value r = root;
      SaveOptions o = options;
      std::vector<Deferred> copies = std::move(deferred);
      std::vector<CudaEvent> device_copies = std::move(events);
      deferred.clear();
      events.clear();
      lock.unlock();
      double t0 = now_s();
      std::exception_ptr err;
      // The copies out of CUDA devices land in the host buffers; then the deferred host copies,
      // on this thread alone (the pool belongs to the training thread).
      try {
        for (const CudaEvent& e : device_copies) e.synchronize();
      } catch (...) {
        err = std::current_exception();
      }
      device_copies.clear();
      for (auto& c : copies) stream_copy(c.dst.data_ptr(), c.src.data_ptr(), c.src.nbytes());
      copies.clear();  // no reference to the caller's tensors remains
      lock.lock();
      staged = true;
      cv.notify_all();
      lock.unlock();
      if (!err) {
        try {
          checkpoint::save(p, r, o);
        } catch (...) {
          err = std::current_exception();
        }
      }
      r = Value();  // drop the worker's references before the caller reuses the buffers
      // Deletions asked for until the job ends (the caller may add some while it runs); none
      // when the write failed: the files it was to replace stay.
      std::vector<std::string> failed;
      lock.lock();
      while (!err && !removals.empty()) {
        std::vector<std::string> remove = std::move(removals);
        removals.clear();
        lock.unlock();
        for (const std::string& f : remove) failed_removal(f, failed);
        lock.lock();
      }
      removals.clear();
      double t = now_s() - t0;
      warnings.insert(warnings.end(), failed.begin(), failed.end());
      root = Value();
      error = err;
      write_s = t;
      ++finished;
      queued = false;
      cv.notify_all();
    }
  }

  static void failed_removal(const std::string& path, std::vector<std::string>& out) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      out.push_back(str_cat("cannot remove ", path, ": ", std::strerror(errno)));
  }

  // The copy of v: containers rebuilt (the caller may change its own afterwards), tensors copied
  // into the host buffers, or queued for the worker to copy.
  Value copy(const Value& v, std::vector<Deferred>& out_deferred) {
    switch (v.kind()) {
      case Value::Kind::List: {
        ValueList out;
        out.reserve(v.as_list().size());
        for (const Value& item : v.as_list()) out.push_back(copy(item, out_deferred));
        return Value(std::move(out));
      }
      case Value::Kind::Map: {
        ValueMap out;
        for (const auto& [k, item] : v.as_map()) out.emplace_hint(out.end(), k, copy(item, out_deferred));
        return Value(std::move(out));
      }
      case Value::Kind::Tensor: return Value(copy_tensor(v.as_tensor(), out_deferred));
      default: return v;
    }
  }

  Tensor copy_tensor(const Tensor& src, std::vector<Deferred>& out_deferred) {
    if (!src.defined()) return src;  // the writer reports it, naming its place
    size_t i = next_buffer++;
    if (i == buffers.size()) buffers.emplace_back();
    Tensor& buf = buffers[i];
    bool fits = buf.defined() && buf.dtype() == src.dtype() && buf.shape() == src.shape() &&
                buf.storage().use_count() == 1;
    if (!fits) buf = host_buffer_for(src);
    bool contiguous_cpu = src.device().is_cpu() && src.is_contiguous();
    if (contiguous_cpu && src.nbytes() > 0 && later.count(src.data_ptr())) {
      out_deferred.push_back({src, buf});
    } else if (contiguous_cpu) {
      parallel_copy(buf.data_ptr(), src.data_ptr(), src.nbytes());
    } else if (src.device().is_cuda() && src.is_contiguous()) {
      // Queued behind the kernels already issued, ahead of any issued later: a consistent copy
      // while the device goes on (the worker waits for it before writing).
      cuda_copy_to_host_async(buf.data_ptr(), src.data_ptr(), src.device(), src.nbytes());
      if (std::find(cuda_sources.begin(), cuda_sources.end(), src.device()) == cuda_sources.end())
        cuda_sources.push_back(src.device());
    } else {
      buf.copy_(src);
    }
    return buf;
  }

  void wait_locked(std::unique_lock<std::mutex>& lock) {
    cv.wait(lock, [&] { return !queued; });
    stats.completed = finished;
    stats.last_write_s = write_s;
  }

  void rethrow_error_locked() {
    if (!error) return;
    std::exception_ptr e = error;
    error = nullptr;
    std::rethrow_exception(e);
  }
};

AsyncSaver::AsyncSaver() : s_(std::make_unique<State>()) {}

AsyncSaver::~AsyncSaver() {
  {
    std::unique_lock lock(s_->mu);
    s_->wait_locked(lock);
    s_->stopping = true;
    s_->cv.notify_all();
    if (s_->error) {
      try {
        std::rethrow_exception(s_->error);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "[checkpoint] the asynchronous save of '%s' failed: %s\n", s_->path.c_str(), e.what());
      }
    }
  }
  if (s_->worker.joinable()) s_->worker.join();
}

void AsyncSaver::save(const std::string& path, const Value& root, const SaveOptions& options,
                      const std::vector<const void*>& stage_later) {
  EMBER_CHECK(root.is_map(), "[checkpoint] save('", path, "'): the root must be a map of sections, got a ",
              Value::kind_name(root.kind()));
  double t0 = now_s();
  {
    std::unique_lock lock(s_->mu);
    s_->wait_locked(lock);
    s_->rethrow_error_locked();
  }
  double t1 = now_s();
  // The worker is idle and holds no reference to the buffers: copy into them.
  s_->later.clear();
  s_->later.insert(stage_later.begin(), stage_later.end());
  s_->next_buffer = 0;
  s_->cuda_sources.clear();
  std::vector<State::Deferred> deferred;
  Value snapshot = s_->copy(root, deferred);
  std::vector<CudaEvent> events;
  for (Device d : s_->cuda_sources) events.push_back(CudaEvent::record(d));
  s_->buffers.resize(s_->next_buffer);
  s_->later.clear();
  uint64_t bytes = 0, later_bytes = 0;
  for (const Tensor& b : s_->buffers) bytes += b.nbytes();
  for (const auto& d : deferred) later_bytes += d.dst.nbytes();
  double t2 = now_s();
  std::lock_guard lock(s_->mu);
  s_->path = path;
  s_->root = std::move(snapshot);
  s_->options = options;
  s_->deferred = std::move(deferred);
  s_->events = std::move(events);
  s_->staged = false;
  s_->queued = true;
  AsyncSaveStats& st = s_->stats;
  ++st.saves;
  st.last_wait_s = t1 - t0;
  st.last_snapshot_s = t2 - t1;
  st.last_snapshot_wait_s = 0;
  st.last_blocked_s = t2 - t0;
  st.total_blocked_s += t2 - t0;
  st.snapshot_bytes = bytes;
  st.staged_later_bytes = later_bytes;
  if (!s_->worker.joinable()) s_->worker = std::thread([state = s_.get()] { state->run(); });
  s_->cv.notify_all();
}

void AsyncSaver::wait_for_snapshot() {
  std::unique_lock lock(s_->mu);
  if (s_->staged) return;
  double t0 = now_s();
  s_->cv.wait(lock, [&] { return s_->staged; });
  double t = now_s() - t0;
  s_->stats.last_snapshot_wait_s += t;
  s_->stats.last_blocked_s += t;
  s_->stats.total_blocked_s += t;
}

void AsyncSaver::remove_after_commit(const std::string& path) {
  std::unique_lock lock(s_->mu);
  if (s_->queued) {
    s_->removals.push_back(path);
    return;
  }
  if (s_->error) return;  // the write that was to replace it failed (not yet collected)
  State::failed_removal(path, s_->warnings);
}

std::vector<std::string> AsyncSaver::take_warnings() {
  std::lock_guard lock(s_->mu);
  std::vector<std::string> out = std::move(s_->warnings);
  s_->warnings.clear();
  return out;
}

void AsyncSaver::wait() {
  wait_for_snapshot();
  std::unique_lock lock(s_->mu);
  s_->wait_locked(lock);
  s_->rethrow_error_locked();
}

bool AsyncSaver::busy() const {
  std::lock_guard lock(s_->mu);
  return s_->queued;
}

std::string AsyncSaver::current_path() const {
  std::lock_guard lock(s_->mu);
  return s_->path;
}

AsyncSaveStats AsyncSaver::stats() const {
  std::lock_guard lock(s_->mu);
  AsyncSaveStats st = s_->stats;
  st.completed = s_->finished;
  if (!s_->queued) st.last_write_s = s_->write_s;
  return st;
}

}  // namespace ember::checkpoint
