// OnExceptionCheckpoint and Python timedelta rendering for ModelCheckpoint's state key. The
// exception checkpoint is a full, resumable file that the trainer's ckpt_path="last" (or "") finds;
// a successful fit removes it at teardown, so a stale one never shadows newer checkpoints.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "ember/runtime/error.h"
#include "ember/train/callbacks.h"
#include "ember/train/trainer.h"

namespace ember {
namespace fs = std::filesystem;

OnExceptionCheckpoint::OnExceptionCheckpoint(std::string dirpath, std::string filename)
    : filename_(std::move(filename)) {
  EMBER_CHECK(!filename_.empty(), "[OnExceptionCheckpoint] The filename cannot be empty");
  EMBER_CHECK(!dirpath.empty(), "[OnExceptionCheckpoint] dirpath cannot be empty");
  // fixed now: an exception can come at any moment, before any setup
  fs::path d = fs::absolute(fs::path(dirpath)).lexically_normal();
  if (d.has_relative_path() && d.filename().empty()) d = d.parent_path();
  dirpath_ = d.string();
  ckpt_path_ = (d / (filename_ + ".ckpt")).string();
}

void OnExceptionCheckpoint::on_exception(Trainer& trainer, LightningModule&, const std::exception&) {
  // The original exception keeps propagating; a failure to write is reported, not thrown over it.
  try {
    fs::create_directories(dirpath_);
    trainer.save_checkpoint(ckpt_path_);
  } catch (const std::exception& e) {
    trainer.print("[OnExceptionCheckpoint] could not write " + ckpt_path_ + ": " + e.what());
  }
}

void OnExceptionCheckpoint::teardown(Trainer& trainer, LightningModule&, const std::string& stage) {
  if (stage != "fit" || !trainer.is_global_zero()) return;  // only rank 0 writes (and removes)
  std::error_code ec;
  fs::remove(ckpt_path_, ec);
  if (ec) trainer.print("[OnExceptionCheckpoint] warning: cannot remove " + ckpt_path_ + ": " + ec.message());
}

namespace detail {
namespace {

struct TimeDelta {
  int64_t days = 0, seconds = 0, microseconds = 0;
};

// datetime.timedelta(seconds=s): rounded to microseconds (half to even), then normalized so that
// 0 <= seconds < 86400 and 0 <= microseconds < 10^6.
TimeDelta to_timedelta(std::chrono::duration<double> d) {
  double us = std::nearbyint(d.count() * 1e6);
  EMBER_CHECK(std::isfinite(us) && std::fabs(us) < 8.64e19, "[ModelCheckpoint] train_time_interval ", d.count(),
              " s is out of range");
  int64_t total = static_cast<int64_t>(us);
  const int64_t per_day = 86400LL * 1000000LL;
  TimeDelta t;
  t.days = total / per_day;
  int64_t rem = total % per_day;
  if (rem < 0) {
    rem += per_day;
    --t.days;
  }
  t.seconds = rem / 1000000;
  t.microseconds = rem % 1000000;
  return t;
}

}  // namespace

std::string timedelta_repr(std::chrono::duration<double> d) {
  TimeDelta t = to_timedelta(d);
  std::string parts;
  auto add = [&](const char* name, int64_t v) {
    if (v) parts += (parts.empty() ? "" : ", ") + std::string(name) + "=" + std::to_string(v);
  };
  add("days", t.days);
  add("seconds", t.seconds);
  add("microseconds", t.microseconds);
  return "datetime.timedelta(" + (parts.empty() ? std::string("0") : parts) + ")";
}

std::string timedelta_str(std::chrono::duration<double> d) {
  TimeDelta t = to_timedelta(d);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(t.seconds / 3600),
                static_cast<long long>(t.seconds / 60 % 60), static_cast<long long>(t.seconds % 60));
  std::string s = buf;
  if (t.days) s = std::to_string(t.days) + " day" + (std::llabs(t.days) != 1 ? "s" : "") + ", " + s;
  if (t.microseconds) {
    std::snprintf(buf, sizeof buf, ".%06lld", static_cast<long long>(t.microseconds));
    s += buf;
  }
  return s;
}

}  // namespace detail
}  // namespace ember
