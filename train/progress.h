// The trainer's progress display: a one-line bar redrawn in place on a TTY (epoch, step/total, loss,
// it/s, ETA), or one summary line per epoch when stderr is not a terminal.
#pragma once
#include <chrono>
#include <string>

namespace ember {

struct ProgressBar {
  explicit ProgressBar(bool enabled);
  // Starts an epoch of `total` batches (total may be 0 when unknown).
  void start_epoch(int64_t epoch, int64_t max_epochs, int64_t total);
  // Whether update(done, ...) would redraw now (TTY, enabled, and not drawn in the last 100 ms).
  bool wants_draw(int64_t done) const;
  // After each batch: done batches and a short metrics text ("loss=0.0312").
  void update(int64_t done, const std::string& metrics);
  // Ends the epoch with its summary text; on a TTY the bar line is finished with it.
  void end_epoch(const std::string& summary);
  // Prints a message line without breaking the bar.
  void message(const std::string& line);

  bool enabled = true;
  bool tty = false;
  int64_t epoch = 0, max_epochs = 0, total = 0, done = 0;
  std::chrono::steady_clock::time_point start, last_draw;
  bool drawn = false;
};

}  // namespace ember
