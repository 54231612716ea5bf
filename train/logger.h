// Loggers. CSVLogger keeps Lightning's CSVLogger layout: <root>/ember_logs/version_N/metrics.csv
// (one row per logging call: epoch, step and the metrics logged then; the header grows as new
// metric names appear; no file until something is logged) and hparams.yaml.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/train/hparams.h"

namespace ember {

class EMBER_API Logger {
 public:
  virtual ~Logger() = default;
  // The run's directory (it may not exist before the first write).
  virtual const std::string& log_dir() const = 0;
  // metrics: name -> value; integers (epoch, step) are written without a fraction.
  virtual void log_metrics(const std::map<std::string, double>& metrics, int64_t step) = 0;
  virtual void log_hyperparams(const HParams& hparams) = 0;
  virtual void flush() {}
};

class EMBER_API CSVLogger : public Logger {
 public:
  // Logs to <root>/<name>/version_<N>, N the next free number (or `version` when given). The
  // directory is created by the first write (hyperparameters or metrics), not here.
  explicit CSVLogger(const std::string& root, const std::string& name = "ember_logs", int version = -1);
  ~CSVLogger() override;
  const std::string& log_dir() const override { return dir_; }
  int version() const { return version_; }
  void log_metrics(const std::map<std::string, double>& metrics, int64_t step) override;
  void log_hyperparams(const HParams& hparams) override;
  void flush() override;

 private:
  void create_dir();

  std::string dir_;
  int version_ = 0;
  std::vector<std::string> columns_;
  std::vector<std::map<std::string, double>> rows_;
  bool dirty_ = false;
};

// Reads a metrics.csv written by CSVLogger: column name -> values per row (NaN where empty).
EMBER_API std::map<std::string, std::vector<double>> read_metrics_csv(const std::string& path);

// Python-style repr of a double ("0.1", "1e-05", "3.0"), used in logs and YAML.
EMBER_API std::string format_double(double v);

}  // namespace ember
