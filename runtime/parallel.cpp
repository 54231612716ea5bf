// The CPU thread pool behind parallel_for: persistent workers woken per call; the caller runs
// chunk 0 and waits for the rest. A call from inside a parallel region runs serially.
#include "runtime/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>

#include <pthread.h>
#include <thread>
#include <vector>

#include "runtime/error.h"

namespace ember {
namespace {

thread_local bool t_in_parallel = false;

int default_threads() {
  if (const char* env = std::getenv("EMBER_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

class ThreadPool {
 public:
  explicit ThreadPool(int n) { resize(n); }
  ~ThreadPool() { stop(); }

  int size() const { return n_; }

  void resize(int n) {
    std::lock_guard<std::mutex> call_lock(call_mu_);
    stop();
    n_ = n;
    shutdown_ = false;
    uint64_t start_generation;
    {
      std::lock_guard<std::mutex> lk(mu_);
      start_generation = generation_;
    }
    // New workers must not pick up a job that finished before they existed.
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, start_generation] { worker_loop(i, start_generation); });
  }

  void run(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    std::lock_guard<std::mutex> call_lock(call_mu_);
    int64_t range = end - begin;
    int64_t chunks = std::min<int64_t>(n_, (range + grain - 1) / std::max<int64_t>(grain, 1));
    chunks = std::max<int64_t>(chunks, 1);
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = &fn;
      begin_ = begin;
      end_ = end;
      chunks_ = chunks;
      pending_ = static_cast<int>(chunks - 1);
      error_ = nullptr;
      ++generation_;
    }
    cv_.notify_all();
    run_chunk(0);
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [this] { return pending_ == 0; });
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
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
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return shutdown_ || generation_ != seen; });
      if (shutdown_) return;
      seen = generation_;
      if (index >= chunks_) continue;
      lk.unlock();
      run_chunk(index);
      lk.lock();
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      shutdown_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::mutex call_mu_;  // one parallel_for at a time
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t begin_ = 0, end_ = 0, chunks_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool shutdown_ = false;
  int n_ = 1;
  std::exception_ptr error_;
};

std::atomic<int> g_num_threads{0};

// The pool is never destroyed (workers may outlive static destruction order). After fork() the
// child has none of the parent's workers, so it starts a fresh pool on first use.
ThreadPool* g_pool = nullptr;
std::once_flag g_atfork_once;

ThreadPool& pool() {
  std::call_once(g_atfork_once, [] { pthread_atfork(nullptr, nullptr, [] { g_pool = nullptr; }); });
  static std::mutex create_mu;
  std::lock_guard<std::mutex> lk(create_mu);
  if (!g_pool) g_pool = new ThreadPool(get_num_threads());
  return *g_pool;
}

}  // namespace

void set_num_threads(int n) {
  EMBER_CHECK(n >= 1, "[set_num_threads] thread count must be >= 1, got ", n);
  g_num_threads = n;
  if (pool().size() != n) pool().resize(n);
}

int get_num_threads() {
  int n = g_num_threads.load();
  if (n == 0) {
    n = default_threads();
    g_num_threads = n;
  }
  return n;
}

void parallel_for_impl(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (t_in_parallel) {
    fn(begin, end);
    return;
  }
  pool().run(begin, end, grain, fn);
}

}  // namespace ember
