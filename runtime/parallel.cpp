// The CPU thread pool behind parallel_for: persistent workers; the caller runs chunk 0 and waits
// until every chunk has run. A step of a small model issues thousands of short parallel_for calls,
// each a few microseconds of work, so a futex sleep + wake per call would cost as much as the work
// itself: workers and the caller first spin (briefly, with `pause`) on an atomic and only then
// sleep on a condition variable. Who runs which chunk:
// - grad mode (training): chunk i on worker i, every call, so the thread-local scratch buffers and
//   free lists each thread grows in the first steps fit every later step (no allocation per step);
//   the backward pass, which runs with grad mode off, keeps that assignment (FixedChunksGuard);
// - no-grad mode (inference): the caller and the workers claim chunks from one atomic counter, so
//   a worker that is late, asleep or descheduled on a busy machine does not hold the call up: the
//   caller runs the chunks nobody took.
// The chunk bounds depend only on the chunk count, never on who runs them. A call from inside a
// parallel region runs serially.
#include "ember/runtime/parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include <pthread.h>

#include "ember/runtime/autograd.h"
#include "ember/runtime/error.h"
#include "runtime/parallel_detail.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define EMBER_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define EMBER_CPU_RELAX() asm volatile("yield" ::: "memory")
#else
#define EMBER_CPU_RELAX() ((void)0)
#endif

namespace ember {
namespace {

thread_local bool t_in_parallel = false;

// How long a worker waiting for the next call, or the caller waiting for the workers, spins
// before it sleeps. Long enough to bridge the gap between the ops of a training step, short
// enough not to matter when the pool is idle.
constexpr std::chrono::microseconds kSpin{200};

int default_threads() {
  if (const char* env = std::getenv("EMBER_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

// Spins until pred() holds or kSpin has passed; returns pred(). After the first microseconds it
// yields the CPU between checks, so that on an oversubscribed machine the thread it waits for
// (or any other) can run instead of being starved by the spinning.
template <typename Pred>
bool spin_until(Pred pred) {
  for (int i = 0; i < 2048; ++i) {
    if (pred()) return true;
    EMBER_CPU_RELAX();
  }
  auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 16; ++i) {
      if (pred()) return true;
      EMBER_CPU_RELAX();
    }
    std::this_thread::yield();
    if (std::chrono::steady_clock::now() >= deadline) return pred();
  }
}

class ThreadPool {
 public:
  explicit ThreadPool(int n) { resize(n); }
  ~ThreadPool() { stop(); }

  // Restarts the workers for n threads; n_ is read and written under call_mu_ only, so concurrent
  // set_num_threads calls and parallel_for calls never race on it.
  void resize(int n) {
    std::lock_guard<std::mutex> call_lock(call_mu_);
    if (n == n_) return;
    stop();
    n_ = n;
    shutdown_.store(false);
    for (int i = 1; i < n; ++i) {
      workers_.emplace_back([this, i, g = call_.load() >> kNumberShift] { worker_loop(i, g); });
    }
  }

  void run(int64_t begin, int64_t end, int64_t grain, ChunkFnRef fn) {
    std::lock_guard<std::mutex> call_lock(call_mu_);
    int64_t range = end - begin;
    int64_t chunks = std::min<int64_t>(n_, (range + grain - 1) / std::max<int64_t>(grain, 1));
    chunks = std::clamp<int64_t>(chunks, 1, kCountMask);  // the chunk count must fit its bits in call_
    if (chunks == 1) {  // not worth waking anyone
      run_serial(begin, end, fn);
      return;
    }
    fn_ = &fn;
    begin_ = begin;
    end_ = end;
    chunks_ = chunks;
    error_ = nullptr;
    done_.store(0, std::memory_order_relaxed);
    {
      // Under mu_, so that a worker between its last check and its sleep cannot miss the call.
      // The release publishes fn_, begin_, end_, chunks_ and done_ to whoever claims a chunk.
      std::lock_guard<std::mutex> lk(mu_);
      const uint64_t number = (call_.load(std::memory_order_relaxed) >> kNumberShift) + 1;
      const uint64_t mode = grad_enabled() || detail::fixed_chunks() ? 0 : kClaimBit;
      call_.store(number << kNumberShift | mode | static_cast<uint64_t>(chunks) << kChunkBits,
                  std::memory_order_release);
      if (sleepers_ > 0) cv_.notify_all();
    }
    const uint64_t word = call_.load(std::memory_order_relaxed);
    if (word & kClaimBit) {
      run_claimed_chunks(word >> kNumberShift);
    } else {
      run_chunk(0);
      chunk_done();
    }
    if (!spin_until([this] { return done_.load(std::memory_order_acquire) == chunks_; })) {
      std::unique_lock<std::mutex> lk(mu_);
      caller_sleeping_ = true;
      done_cv_.wait(lk, [this] { return done_.load(std::memory_order_acquire) == chunks_; });
      caller_sleeping_ = false;
    }
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  static void run_serial(int64_t begin, int64_t end, ChunkFnRef fn) {
    t_in_parallel = true;
    try {
      fn(begin, end);
    } catch (...) {
      t_in_parallel = false;
      throw;
    }
    t_in_parallel = false;
  }

  // call_ packs the call's number (bits 32..63), whether its chunks are claimed (bit 31), its chunk
  // count (16..30) and the next unclaimed chunk (0..15). A claim is a compare-exchange on the whole
  // word, so it only succeeds while the call is still `call` with chunks left, and a worker decides
  // from the word alone: it reads fn_, begin_, end_ and chunks_ only for a chunk it holds (claimed
  // or its own), and the caller rewrites them only once every chunk has run.
  static constexpr int kChunkBits = 16, kNumberShift = 32;
  static constexpr uint64_t kChunkMask = (uint64_t{1} << kChunkBits) - 1;
  static constexpr uint64_t kCountMask = (uint64_t{1} << 15) - 1;
  static constexpr uint64_t kClaimBit = uint64_t{1} << 31;
  static int64_t chunk_count(uint64_t word) { return static_cast<int64_t>((word >> kChunkBits) & kCountMask); }

  // Read chunks_ before the increment: the last one lets the caller return and reuse it.
  void chunk_done() {
    const int64_t chunks = chunks_;
    if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == chunks) {
      std::lock_guard<std::mutex> lk(mu_);
      if (caller_sleeping_) done_cv_.notify_one();
    }
  }

  // Runs chunks of call number `call` until none is left to claim.
  void run_claimed_chunks(uint64_t call) {
    uint64_t word = call_.load(std::memory_order_acquire);
    for (;;) {
      const int64_t c = static_cast<int64_t>(word & kChunkMask);
      if ((word >> kNumberShift) != call || c >= chunk_count(word)) return;
      if (!call_.compare_exchange_weak(word, word + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      run_chunk(c);
      chunk_done();
      word = call_.load(std::memory_order_acquire);
    }
  }

  void run_chunk(int64_t c) {
    int64_t range = end_ - begin_;
    int64_t b = begin_ + range * c / chunks_, e = begin_ + range * (c + 1) / chunks_;
    bool prev = t_in_parallel;
    t_in_parallel = true;
    try {
      if (b < e) (*fn_)(b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu_);
      if (!error_) error_ = std::current_exception();
    }
    t_in_parallel = prev;
  }

  void worker_loop(int index, uint64_t seen) {
    for (;;) {
      auto called = [&] {
        return shutdown_.load(std::memory_order_acquire) || (call_.load(std::memory_order_acquire) >> kNumberShift) != seen;
      };
      if (!spin_until(called)) {
        std::unique_lock<std::mutex> lk(mu_);
        ++sleepers_;
        cv_.wait(lk, called);
        --sleepers_;
      }
      if (shutdown_.load(std::memory_order_acquire)) return;
      const uint64_t word = call_.load(std::memory_order_acquire);
      seen = word >> kNumberShift;
      if (word & kClaimBit) {
        run_claimed_chunks(seen);
      } else if (index < chunk_count(word)) {
        run_chunk(index);
        chunk_done();
      }
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      shutdown_.store(true, std::memory_order_release);
      cv_.notify_all();
    }
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::mutex call_mu_;  // one parallel_for at a time
  std::mutex mu_;       // guards sleeping and waking (sleepers_, caller_sleeping_, error_)
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  // The current call, written by the caller before it bumps the call number in call_ (release)
  // and read by whoever claims one of its chunks (acquire).
  const ChunkFnRef* fn_ = nullptr;
  int64_t begin_ = 0, end_ = 0, chunks_ = 0;
  std::atomic<uint64_t> call_{0};   // call number, chunk count, next chunk to claim (see kChunkBits)
  std::atomic<int64_t> done_{0};    // chunks of the current call that have run
  std::atomic<bool> shutdown_{false};
  int sleepers_ = 0;
  bool caller_sleeping_ = false;
  int n_ = 1;
  std::exception_ptr error_;
};

std::atomic<int> g_num_threads{0};

// The pool is never destroyed (workers may outlive static destruction order). After fork() the
// child has none of the parent's workers, so it starts a fresh pool on first use.
std::atomic<ThreadPool*> g_pool{nullptr};
std::once_flag g_atfork_once;

ThreadPool& pool() {
  if (ThreadPool* p = g_pool.load(std::memory_order_acquire)) return *p;
  std::call_once(g_atfork_once, [] { pthread_atfork(nullptr, nullptr, [] { g_pool.store(nullptr); }); });
  static std::mutex create_mu;
  std::lock_guard<std::mutex> lk(create_mu);
  if (!g_pool.load()) g_pool.store(new ThreadPool(get_num_threads()), std::memory_order_release);
  return *g_pool.load();
}

}  // namespace

void set_num_threads(int n) {
  EMBER_CHECK(n >= 1, "[set_num_threads] thread count must be >= 1, got ", n);
  g_num_threads = n;
  pool().resize(n);
}

int get_num_threads() {
  int n = g_num_threads.load();
  if (n == 0) {
    n = default_threads();
    g_num_threads = n;
  }
  return n;
}

void parallel_for_impl(int64_t begin, int64_t end, int64_t grain, ChunkFnRef fn) {
  if (t_in_parallel) {
    fn(begin, end);
    return;
  }
  pool().run(begin, end, grain, fn);
}

namespace detail {
namespace {
thread_local int g_fixed_chunks = 0;
}  // namespace

FixedChunksGuard::FixedChunksGuard() { ++g_fixed_chunks; }
FixedChunksGuard::~FixedChunksGuard() { --g_fixed_chunks; }
bool fixed_chunks() { return g_fixed_chunks > 0; }
}  // namespace detail

}  // namespace ember
