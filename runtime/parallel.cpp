// The CPU thread pool behind parallel_for: persistent workers, the caller runs chunk 0 and waits
// for the rest. A step of a small model issues thousands of short parallel_for calls, each a few
// microseconds of work, so a futex sleep + wake per call would cost as much as the work itself:
// workers and the caller first spin (briefly, with `pause`) on an atomic generation / pending
// counter and only then sleep on a condition variable. Every worker takes part in every call
// (workers without a chunk just check in), so no worker can lag behind into the next call.
// A call from inside a parallel region runs serially.
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

#include "ember/runtime/error.h"

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
      workers_.emplace_back([this, i, g = generation_.load()] { worker_loop(i, g); });
    }
  }

  void run(int64_t begin, int64_t end, int64_t grain, ChunkFnRef fn) {
    std::lock_guard<std::mutex> call_lock(call_mu_);
    int64_t range = end - begin;
    int64_t chunks = std::min<int64_t>(n_, (range + grain - 1) / std::max<int64_t>(grain, 1));
    chunks = std::max<int64_t>(chunks, 1);
    if (chunks == 1) {  // not worth waking anyone
      run_serial(begin, end, fn);
      return;
    }
    fn_ = &fn;
    begin_ = begin;
    end_ = end;
    chunks_ = chunks;
    error_ = nullptr;
    pending_.store(n_ - 1, std::memory_order_relaxed);
    {
      // Under mu_, so that a worker between its last check and its sleep cannot miss the call.
      std::lock_guard<std::mutex> lk(mu_);
      generation_.fetch_add(1, std::memory_order_release);
      if (sleepers_ > 0) cv_.notify_all();
    }
    run_chunk(0);
    if (!spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lk(mu_);
      caller_sleeping_ = true;
      done_cv_.wait(lk, [this] { return pending_.load(std::memory_order_acquire) == 0; });
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
        return shutdown_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen;
      };
      if (!spin_until(called)) {
        std::unique_lock<std::mutex> lk(mu_);
        ++sleepers_;
        cv_.wait(lk, called);
        --sleepers_;
      }
      if (shutdown_.load(std::memory_order_acquire)) return;
      seen = generation_.load(std::memory_order_acquire);
      if (index < chunks_) run_chunk(index);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(mu_);
        if (caller_sleeping_) done_cv_.notify_one();
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
  // The current call, written by the caller before it bumps generation_ (release) and read by
  // workers after they see the new generation (acquire).
  const ChunkFnRef* fn_ = nullptr;
  int64_t begin_ = 0, end_ = 0, chunks_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};  // workers that have not checked in for the current call
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

}  // namespace ember
