// inspect, verify and diff for `ember-ckpt` (see commands.h). They use only the public
// checkpoint API; tensor data is read only where a command needs it (diff, verify).
#include "tools/ckpt/commands.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <map>
#include <ostream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ember/checkpoint/checkpoint.h"

namespace ember::ckpt_tool {

namespace ck = ember::checkpoint;
using json = nlohmann::ordered_json;

namespace {

std::string shape_str(const Shape& s) { return s.str(); }

json shape_json(const Shape& s) {
  json a = json::array();
  for (int64_t d : s) a.push_back(d);
  return a;
}

bool is_tensor_ref(const Value& v) {
  return v.is_map() && v.as_map().size() == 1 && v.contains("$tensor") && v.at("$tensor").is_string();
}

json float_json(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  return d;
}

// A skeleton value as JSON; tensors become {"tensor": name, "dtype": ..., "shape": [...]}.
json to_json(const ck::Reader& r, const std::string& section, const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Null: return nullptr;
    case Value::Kind::Bool: return v.as_bool();
    case Value::Kind::Int: return v.as_int();
    case Value::Kind::Float: return float_json(v.as_double());
    case Value::Kind::String: return v.as_string();
    case Value::Kind::Bytes: return json{{"bytes", v.as_bytes().data.size()}};
    case Value::Kind::List: {
      json a = json::array();
      for (auto& item : v.as_list()) a.push_back(to_json(r, section, item));
      return a;
    }
    case Value::Kind::Map: {
      if (is_tensor_ref(v)) {
        const ck::TensorInfo& t = r.tensor_info(section, v.at("$tensor").as_string());
        return json{{"tensor", t.name}, {"dtype", dtype_name(t.dtype)}, {"shape", shape_json(t.shape)}};
      }
      json o = json::object();
      for (auto& [k, item] : v.as_map()) o[k] = to_json(r, section, item);
      return o;
    }
    case Value::Kind::Tensor: break;
  }
  return nullptr;
}

// A short one-line rendering of a skeleton value for the text report.
std::string brief(const ck::Reader& r, const std::string& section, const Value& v, size_t max_len = 400) {
  std::string s = to_json(r, section, v).dump();
  if (s.size() > max_len) s = s.substr(0, max_len) + "...";
  return s;
}

std::string human_bytes(uint64_t n) {
  std::ostringstream os;
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  if (u == 0) os << n << " B";
  else os << std::fixed << std::setprecision(2) << v << " " << units[u];
  return os.str();
}

std::string version_of(const ck::Reader& r) {
  if (!r.has_section(ck::kEmberVersion)) return "unknown";
  Value v = r.skeleton(ck::kEmberVersion);
  return v.is_string() ? v.as_string() : v.repr();
}

Value counter(const ck::Reader& r, const char* name) {
  return r.has_section(name) ? r.skeleton(name) : Value();
}

std::string hex32(uint32_t v) {
  std::ostringstream os;
  os << std::hex << std::setw(8) << std::setfill('0') << v;
  return os.str();
}

}  // namespace

int inspect(const std::string& path, bool as_json, std::ostream& out) {
  ck::Reader r(path, {.verify = ck::Verify::none, .mmap = false});
  uint64_t data = 0;
  for (auto& s : r.sections()) data += s.stored_bytes;
  std::string version = str_cat(r.format_major(), ".", r.format_minor());
  if (as_json) {
    json j;
    j["format_version"] = version;
    j["ember_version"] = version_of(r);
    j["weights_only"] = r.weights_only();
    j["epoch"] = to_json(r, ck::kEpoch, counter(r, ck::kEpoch));
    j["global_step"] = to_json(r, ck::kGlobalStep, counter(r, ck::kGlobalStep));
    j["file_size"] = r.file_size();
    j["tensor_bytes"] = data;
    j["index_bytes"] = r.index_bytes();
    j["alignment"] = uint64_t{1} << r.align_log2();
    json sd = json::array();
    for (auto& t : r.tensors())
      if (t.section == ck::kStateDict)
        sd.push_back(json{{"name", t.name}, {"dtype", dtype_name(t.dtype)}, {"shape", shape_json(t.shape)}});
    j["state_dict"] = sd;
    static const std::set<std::string> reserved = {"format_version", "ember_version", "weights_only", "epoch",
                                                   "global_step", "file_size", "tensor_bytes", "index_bytes",
                                                   "alignment", "state_dict", "sections", "tensors"};
    for (const char* name : {ck::kOptimizerStates, ck::kLrSchedulers, ck::kCallbacks, ck::kHyperParameters, ck::kLoops})
      j[name] = r.has_section(name) ? to_json(r, name, r.skeleton(name)) : json(nullptr);
    for (auto& s : r.sections())
      if (!j.contains(s.name) && !reserved.count(s.name)) j[s.name] = to_json(r, s.name, r.skeleton(s.name));
    json secs = json::array();
    for (auto& s : r.sections())
      secs.push_back(json{{"name", s.name},
                          {"tensors", s.tensor_count},
                          {"tensor_bytes", s.tensor_bytes},
                          {"stored_bytes", s.stored_bytes},
                          {"metadata_bytes", s.metadata_bytes}});
    j["sections"] = secs;
    json ts = json::array();
    for (auto& t : r.tensors())
      ts.push_back(json{{"section", t.section},
                        {"name", t.name},
                        {"dtype", dtype_name(t.dtype)},
                        {"shape", shape_json(t.shape)},
                        {"offset", t.offset},
                        {"stored_bytes", t.stored_bytes},
                        {"nbytes", t.nbytes},
                        {"compressed", t.compressed},
                        {"crc32", hex32(t.crc32)}});
    j["tensors"] = ts;
    out << j.dump(2) << "\n";
    return 0;
  }
  auto label = [&](const std::string& name) -> std::ostream& {
    return out << std::left << std::setw(18) << (name + ":");
  };
  label("file") << path << "\n";
  label("format") << version << " (Ember " << version_of(r) << ")" << (r.weights_only() ? ", weights only" : "")
                  << "\n";
  label("size") << r.file_size() << " bytes (" << human_bytes(r.file_size()) << "; tensor data " << human_bytes(data)
                << ", index " << human_bytes(r.index_bytes()) << ", alignment " << (uint64_t{1} << r.align_log2())
                << ")\n";
  for (const char* c : {ck::kEpoch, ck::kGlobalStep})
    if (r.has_section(c)) label(c) << r.skeleton(c).repr() << "\n";
  for (const char* name : {ck::kHyperParameters, ck::kLoops})
    if (r.has_section(name)) label(name) << brief(r, name, r.skeleton(name)) << "\n";
  out << "\nsections:\n";
  out << "  " << std::left << std::setw(22) << "name" << std::right << std::setw(8) << "tensors" << std::setw(14)
      << "loaded" << std::setw(14) << "stored" << std::setw(12) << "metadata" << "\n";
  for (auto& s : r.sections())
    out << "  " << std::left << std::setw(22) << s.name << std::right << std::setw(8) << s.tensor_count
        << std::setw(14) << human_bytes(s.tensor_bytes) << std::setw(14) << human_bytes(s.stored_bytes)
        << std::setw(12) << human_bytes(s.metadata_bytes) << "\n";
  out << "\ntensors:\n";
  out << "  " << std::left << std::setw(18) << "section" << std::setw(44) << "name" << std::setw(6) << "dtype"
      << std::setw(22) << "shape" << std::right << std::setw(14) << "stored" << "  codec  crc32\n";
  for (auto& t : r.tensors())
    out << "  " << std::left << std::setw(18) << t.section << std::setw(44) << t.name << std::setw(6)
        << dtype_name(t.dtype) << std::setw(22) << shape_str(t.shape) << std::right << std::setw(14)
        << human_bytes(t.stored_bytes) << "  " << (t.compressed ? "zlib " : "raw  ") << "  " << hex32(t.crc32)
        << "\n";
  return 0;
}

int verify(const std::string& path, std::ostream& out) {
  try {
    ck::Reader r(path, {.verify = ck::Verify::all, .mmap = false});
    uint64_t bytes = 0;
    for (auto& t : r.tensors()) bytes += t.stored_bytes;
    out << "OK: " << path << ": format " << r.format_major() << "." << r.format_minor() << ", " << r.sections().size()
        << " sections, " << r.tensors().size() << " tensors, " << bytes << " bytes of tensor data verified\n";
    return 0;
  } catch (const Error& e) {
    out << "FAILED: " << e.what() << "\n";
    return 1;
  }
}

namespace {

struct DiffState {
  const ck::Reader& a;
  const ck::Reader& b;
  double atol;
  std::ostream& out;
  size_t differences = 0;
};

// Max |a - b| over two tensors of one shape (NaN where exactly one side is NaN).
double max_abs_diff(const Tensor& x, const Tensor& y) {
  Tensor cx = x.to(DType::f64).contiguous(), cy = y.to(DType::f64).contiguous();
  const double* p = cx.data_ptr<double>();
  const double* q = cy.data_ptr<double>();
  double m = 0;
  for (int64_t i = 0; i < cx.numel(); ++i) {
    bool na = std::isnan(p[i]), nb = std::isnan(q[i]);
    if (na || nb) {
      if (na != nb) return std::nan("");
      continue;
    }
    if (p[i] == q[i]) continue;  // also equal infinities
    m = std::max(m, std::fabs(p[i] - q[i]));
  }
  return m;
}

void diff_values(DiffState& d, const std::string& section, const std::string& path, const Value& va, const Value& vb) {
  std::string where = path.empty() ? section : section + "/" + path;
  auto child = [&](const std::string& seg) { return path.empty() ? seg : path + "." + seg; };
  if (is_tensor_ref(va) && is_tensor_ref(vb)) {
    const ck::TensorInfo& ta = d.a.tensor_info(section, va.at("$tensor").as_string());
    const ck::TensorInfo& tb = d.b.tensor_info(section, vb.at("$tensor").as_string());
    if (ta.dtype != tb.dtype || ta.shape != tb.shape) {
      d.out << "tensor   " << where << ": " << dtype_name(ta.dtype) << " " << ta.shape.str() << " vs "
            << dtype_name(tb.dtype) << " " << tb.shape.str() << "\n";
      ++d.differences;
      return;
    }
    double m = max_abs_diff(d.a.load_tensor(section, ta.name), d.b.load_tensor(section, tb.name));
    bool differs = std::isnan(m) || m > d.atol;
    d.out << "tensor   " << where << ": max |a-b| = " << std::setprecision(6) << m << (differs ? "" : "  (same)")
          << "\n";
    d.differences += differs;
    return;
  }
  if (va.kind() == Value::Kind::Map && vb.kind() == Value::Kind::Map && !is_tensor_ref(va) && !is_tensor_ref(vb)) {
    const ValueMap &ma = va.as_map(), &mb = vb.as_map();
    for (auto& [k, v] : ma) {
      auto it = mb.find(k);
      if (it == mb.end()) {
        d.out << "only in A: " << section << "/" << child(k) << "\n";
        ++d.differences;
      } else {
        diff_values(d, section, child(k), v, it->second);
      }
    }
    for (auto& [k, v] : mb)
      if (!ma.count(k)) {
        d.out << "only in B: " << section << "/" << child(k) << "\n";
        ++d.differences;
      }
    return;
  }
  if (va.kind() == Value::Kind::List && vb.kind() == Value::Kind::List) {
    const ValueList &la = va.as_list(), &lb = vb.as_list();
    if (la.size() != lb.size()) {
      d.out << "value    " << where << ": list of " << la.size() << " vs " << lb.size() << " items\n";
      ++d.differences;
    }
    for (size_t i = 0; i < std::min(la.size(), lb.size()); ++i)
      diff_values(d, section, child(std::to_string(i)), la[i], lb[i]);
    return;
  }
  if (va != vb) {
    d.out << "value    " << where << ": " << brief(d.a, section, va, 120) << " vs " << brief(d.b, section, vb, 120)
          << "\n";
    ++d.differences;
  }
}

}  // namespace

int diff(const std::string& a, const std::string& b, double atol, std::ostream& out) {
  ck::ReadOptions opt{.verify = ck::Verify::loaded};
  ck::Reader ra(a, opt), rb(b, opt);
  DiffState d{ra, rb, atol, out};
  std::set<std::string> names;
  for (auto& s : ra.sections()) names.insert(s.name);
  for (auto& s : rb.sections()) names.insert(s.name);
  for (auto& n : names) {
    bool in_a = ra.has_section(n), in_b = rb.has_section(n);
    if (!in_a || !in_b) {
      out << "only in " << (in_a ? "A" : "B") << ": section " << n << "\n";
      ++d.differences;
      continue;
    }
    diff_values(d, n, "", ra.skeleton(n), rb.skeleton(n));
  }
  out << (d.differences ? str_cat(d.differences, " difference(s)") : std::string("no differences")) << "\n";
  return d.differences ? 1 : 0;
}

}  // namespace ember::ckpt_tool
