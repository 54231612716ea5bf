// FileSizeLimit: a process-wide file size limit (RLIMIT_FSIZE) for one scope, so that writes past
// `bytes` fail with EFBIG (SIGXFSZ, which would kill the process instead, is ignored meanwhile);
// both are restored when the scope ends, or at restore(). For tests of failed checkpoint writes.
#pragma once
#include <signal.h>
#include <sys/resource.h>

namespace ember::test {

class FileSizeLimit {
 public:
  FileSizeLimit() = default;
  explicit FileSizeLimit(rlim_t bytes) { set(bytes); }
  ~FileSizeLimit() { restore(); }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

  void set(rlim_t bytes) {
    if (active_) return;
    ::getrlimit(RLIMIT_FSIZE, &old_);
    old_handler_ = ::signal(SIGXFSZ, SIG_IGN);
    rlimit l = old_;
    l.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &l);
    active_ = true;
  }
  void restore() {
    if (!active_) return;
    ::setrlimit(RLIMIT_FSIZE, &old_);
    ::signal(SIGXFSZ, old_handler_);
    active_ = false;
  }

 private:
  bool active_ = false;
  rlimit old_{};
  sighandler_t old_handler_{};
};

}  // namespace ember::test
