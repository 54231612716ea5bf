// CSVLogger: metrics.csv and hparams.yaml in a versioned run directory.
#include "ember/train/logger.h"

#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "ember/runtime/error.h"

namespace ember {

namespace fs = std::filesystem;

std::string format_double(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, p);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

CSVLogger::CSVLogger(const std::string& root, const std::string& name, int version) {
  // Only picks the directory: it is created by the first write, so that a fit which fails before
  // logging anything (a checkpoint that cannot be restored) leaves no empty version_N behind.
  fs::path base = fs::path(root) / name;
  if (version < 0) {
    int next = 0;
    std::error_code ec;
    if (fs::is_directory(base, ec)) {
      for (auto& entry : fs::directory_iterator(base)) {
        std::string n = entry.path().filename().string();
        if (!entry.is_directory() || n.rfind("version_", 0) != 0) continue;
        int v = 0;
        auto s = n.substr(8);
        auto [p, e] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (e == std::errc() && p == s.data() + s.size()) next = std::max(next, v + 1);
      }
    }
    version = next;
  }
  version_ = version;
  dir_ = (base / ("version_" + std::to_string(version))).string();
}

void CSVLogger::create_dir() {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  EMBER_CHECK(!ec, "[CSVLogger] cannot create run directory '", dir_, "': ", ec.message());
}

CSVLogger::~CSVLogger() {
  try {
    flush();
  } catch (...) {
  }
}

void CSVLogger::log_metrics(const std::map<std::string, double>& metrics, int64_t step) {
  std::map<std::string, double> row = metrics;
  row["step"] = static_cast<double>(step);
  for (auto& [k, v] : row)
    if (std::find(columns_.begin(), columns_.end(), k) == columns_.end()) columns_.push_back(k);
  rows_.push_back(std::move(row));
  dirty_ = true;
  flush();
}

void CSVLogger::flush() {
  if (!dirty_) return;
  // epoch and step first, then the metrics in sorted order (as Lightning's CSV logger).
  std::vector<std::string> cols;
  for (const char* c : {"epoch", "step"})
    if (std::find(columns_.begin(), columns_.end(), c) != columns_.end()) cols.push_back(c);
  std::set<std::string> rest;
  for (auto& c : columns_)
    if (c != "epoch" && c != "step") rest.insert(c);
  cols.insert(cols.end(), rest.begin(), rest.end());
  create_dir();
  std::string path = (fs::path(dir_) / "metrics.csv").string();
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    EMBER_CHECK(out.good(), "[CSVLogger] cannot write '", tmp, "'");
    for (size_t i = 0; i < cols.size(); ++i) out << (i ? "," : "") << cols[i];
    out << "\n";
    for (auto& row : rows_) {
      for (size_t i = 0; i < cols.size(); ++i) {
        if (i) out << ",";
        auto it = row.find(cols[i]);
        if (it == row.end()) continue;
        double v = it->second;
        if ((cols[i] == "epoch" || cols[i] == "step") && std::floor(v) == v) out << static_cast<int64_t>(v);
        else out << format_double(v);
      }
      out << "\n";
    }
    EMBER_CHECK(out.good(), "[CSVLogger] failed writing '", tmp, "'");
  }
  fs::rename(tmp, path);
  dirty_ = false;
}

namespace {
void yaml_value(std::ostream& os, const Value& v, int indent) {
  std::string pad(indent, ' ');
  switch (v.kind()) {
    case Value::Kind::Null: os << " null\n"; break;
    case Value::Kind::Bool: os << " " << (v.as_bool() ? "true" : "false") << "\n"; break;
    case Value::Kind::Int: os << " " << v.as_int() << "\n"; break;
    case Value::Kind::Float: os << " " << format_double(v.as_double()) << "\n"; break;
    case Value::Kind::String: {
      std::string s = v.as_string();
      bool quote = s.empty() || s.find_first_of(":#{}[],&*?|<>=!%@`'\"\n") != std::string::npos ||
                   s == "true" || s == "false" || s == "null";
      if (quote) {
        os << " '";
        for (char c : s) os << (c == '\'' ? "''" : std::string(1, c));
        os << "'\n";
      } else {
        os << " " << s << "\n";
      }
      break;
    }
    case Value::Kind::List:
      os << "\n";
      for (auto& e : v.as_list()) {
        os << pad << "-";
        yaml_value(os, e, indent + 2);
      }
      break;
    case Value::Kind::Map:
      os << "\n";
      for (auto& [k, e] : v.as_map()) {
        os << pad << k << ":";
        yaml_value(os, e, indent + 2);
      }
      break;
    default: os << " " << v.repr() << "\n"; break;
  }
}
}  // namespace

void CSVLogger::log_hyperparams(const HParams& hparams) {
  create_dir();
  std::string path = (fs::path(dir_) / "hparams.yaml").string();
  std::ofstream out(path, std::ios::trunc);
  EMBER_CHECK(out.good(), "[CSVLogger] cannot write '", path, "'");
  if (hparams.empty()) {
    out << "{}\n";
    return;
  }
  for (auto& [k, v] : hparams.values()) {
    out << k << ":";
    yaml_value(out, v, 2);
  }
}

std::map<std::string, std::vector<double>> read_metrics_csv(const std::string& path) {
  std::ifstream in(path);
  EMBER_CHECK(in.good(), "[read_metrics_csv] cannot open '", path, "'");
  std::string line;
  std::vector<std::string> cols;
  std::map<std::string, std::vector<double>> out;
  if (!std::getline(in, line)) return out;
  {
    std::stringstream ss(line);
    std::string c;
    while (std::getline(ss, c, ',')) cols.push_back(c);
  }
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::string cell;
    std::stringstream ss(line);
    while (std::getline(ss, cell, ',')) cells.push_back(cell);
    for (size_t i = 0; i < cols.size(); ++i) {
      double v = std::numeric_limits<double>::quiet_NaN();
      if (i < cells.size() && !cells[i].empty()) v = std::strtod(cells[i].c_str(), nullptr);
      out[cols[i]].push_back(v);
    }
  }
  return out;
}

}  // namespace ember
