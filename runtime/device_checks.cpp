// The queue of device-side input checks (runtime/device_checks.h).
#include "ember/runtime/device_checks.h"

#include "ember/config.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "ember/runtime/autograd.h"
#include "ember/runtime/error.h"
#include "ember/runtime/ops.h"

namespace ember {
namespace {

// A queue longer than this is read at once: a bound on what a loop that never reads holds.
constexpr size_t kMaxQueued = 256;

struct Queued {
  Tensor values;  // f64, flat, on the device
  DeviceCheckVerdict verdict;
};

std::mutex g_mu;
std::vector<Queued>& queue() {
  static auto* q = new std::vector<Queued>;  // never destroyed: tensors may outlive statics
  return *q;
}

std::atomic<int> g_sync{-1};  // -1: not read from the environment yet
thread_local bool t_running = false;

void run_queued(bool at_op);

}  // namespace

void set_sync_device_checks(bool on) { g_sync.store(on ? 1 : 0); }

bool sync_device_checks() {
  int v = g_sync.load();
  if (v < 0) {
    const char* e = std::getenv("EMBER_SYNC_DEVICE_CHECKS");
    v = e != nullptr && std::strcmp(e, "") != 0 && std::strcmp(e, "0") != 0 ? 1 : 0;
    g_sync.store(v);
  }
  return v == 1;
}

size_t queued_device_checks() {
  std::lock_guard<std::mutex> lk(g_mu);
  return queue().size();
}

void check_on_device(const Tensor& values, DeviceCheckVerdict verdict) {
  if (!values.defined()) throw Error("[check_on_device] values are undefined");
  NoGradGuard ng;
  Tensor flat = values.detach().reshape({-1}).to(DType::f64);
#if EMBER_WITH_CUDA
  if (flat.device().is_cpu()) {
#else
  {  // a CPU-only build has nothing to queue: every check is judged at once
#endif
    flat = flat.contiguous();
    const double* p = flat.data_ptr<double>();
    const std::string msg = verdict(std::vector<double>(p, p + flat.numel()));
    if (!msg.empty()) throw Error(msg);
    return;
  }
#if EMBER_WITH_CUDA
  if (flat.is_alias_of(values)) flat = flat.clone();  // the values as they are now
  size_t n = 0;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    queue().push_back(Queued{flat, std::move(verdict)});
    n = queue().size();
  }
  if (sync_device_checks()) run_queued(true);
  else if (n >= kMaxQueued) run_queued(false);
#endif
}

void run_device_checks() { run_queued(false); }

CapturedDeviceChecks CapturedDeviceChecks::take_since(size_t mark) {
  CapturedDeviceChecks out;
  std::lock_guard<std::mutex> lk(g_mu);
  std::vector<Queued>& q = queue();
  for (size_t i = mark; i < q.size(); ++i) out.checks_.emplace_back(q[i].values, q[i].verdict);
  if (mark < q.size()) q.erase(q.begin() + static_cast<std::ptrdiff_t>(mark), q.end());
  return out;
}

void CapturedDeviceChecks::requeue() const {
  for (const auto& [values, verdict] : checks_) check_on_device(values, verdict);  // copies the values
}

namespace {

void run_queued(bool at_op) {
  if (t_running) return;  // the copies below are reads from the device too
  std::vector<Queued> q;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    if (queue().empty()) return;
    q.swap(queue());
  }
  t_running = true;
  std::string failure;
  try {
    NoGradGuard ng;
    // One copy per device, in queue order within it; verdicts in queue order overall.
    std::vector<std::vector<double>> read(q.size());
    std::vector<bool> done(q.size(), false);
    for (size_t i = 0; i < q.size(); ++i) {
      if (done[i]) continue;
      const Device d = q[i].values.device();
      std::vector<size_t> idx;
      std::vector<Tensor> parts;
      for (size_t j = i; j < q.size(); ++j)
        if (!done[j] && q[j].values.device() == d) {
          idx.push_back(j);
          parts.push_back(q[j].values);
          done[j] = true;
        }
      Tensor host = (parts.size() == 1 ? parts[0] : cat(parts, 0)).to(kCPU);
      const double* p = host.data_ptr<double>();
      for (size_t j : idx) {
        const int64_t n = q[j].values.numel();
        read[j].assign(p, p + n);
        p += n;
      }
    }
    for (size_t i = 0; i < q.size() && failure.empty(); ++i) {
      failure = q[i].verdict(read[i]);
      if (!failure.empty() && !at_op)
        failure += " (a check computed on " + q[i].values.device().str() +
                   " and read later; set EMBER_SYNC_DEVICE_CHECKS=1 to stop at the op itself)";
    }
  } catch (...) {
    t_running = false;
    throw;
  }
  t_running = false;
  if (!failure.empty()) throw Error(failure);
}

}  // namespace
}  // namespace ember
