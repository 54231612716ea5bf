// Progress bar rendering.
#include "ember/train/progress.h"

#include <unistd.h>

#include <cstdio>

namespace ember {

ProgressBar::ProgressBar(bool on) : enabled(on), tty(on && isatty(fileno(stderr))) {}

void ProgressBar::start_epoch(int64_t e, int64_t max_e, int64_t t) {
  epoch = e;
  max_epochs = max_e;
  total = t;
  done = 0;
  start = last_draw = std::chrono::steady_clock::now();
  drawn = false;
}

static std::string hms(double s) {
  if (s < 0 || s > 1e7) return "--:--";
  int64_t t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)(t / 3600), (long long)(t / 60 % 60), (long long)(t % 60));
  else std::snprintf(buf, sizeof buf, "%02lld:%02lld", (long long)(t / 60), (long long)(t % 60));
  return buf;
}

bool ProgressBar::wants_draw(int64_t d) const {
  if (!enabled || !tty) return false;
  return !drawn || d >= total || std::chrono::steady_clock::now() - last_draw >= std::chrono::milliseconds(100);
}

void ProgressBar::update(int64_t d, const std::string& metrics) {
  done = d;
  if (!wants_draw(d)) return;
  auto now = std::chrono::steady_clock::now();
  last_draw = now;
  drawn = true;
  double el = std::chrono::duration<double>(now - start).count();
  double rate = el > 0 ? static_cast<double>(d) / el : 0.0;
  double eta = rate > 0 && total > 0 ? static_cast<double>(total - d) / rate : -1;
  const int width = 24;
  int fill = total > 0 ? static_cast<int>(width * d / total) : 0;
  std::string bar(fill, '=');
  if (fill < width) bar += '>' + std::string(width - fill - 1, ' ');
  std::string ep = max_epochs > 0 ? std::to_string(epoch) + "/" + std::to_string(max_epochs - 1) : std::to_string(epoch);
  std::fprintf(stderr, "\r\033[KEpoch %s %lld/%lld [%s] %s %.1f it/s ETA %s", ep.c_str(), (long long)d, (long long)total,
               bar.c_str(), metrics.c_str(), rate, hms(eta).c_str());
  std::fflush(stderr);
}

void ProgressBar::end_epoch(const std::string& summary) {
  if (!enabled) return;
  if (tty) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "%s\n", summary.c_str());
  std::fflush(stderr);
  drawn = false;
}

void ProgressBar::message(const std::string& line) {
  // Messages (warnings, restore notices) print even when the bar itself is disabled.
  if (enabled && tty && drawn) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
  drawn = false;
}

}  // namespace ember
