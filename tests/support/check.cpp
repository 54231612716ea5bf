// Test helpers declared in check.h: fixture loading, allclose/bit_equal and the float64
// central-difference gradient check. Tensor values are read through strides with plain C++ so
// that a broken copy or dtype-conversion kernel cannot hide itself behind these helpers.
#include "tests/support/check.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"

namespace ember::test {
namespace {

// Calls fn(flat, element_pointer) for each element of a CPU tensor in row-major order.
template <typename Fn>
void for_each_element(const Tensor& t, Fn&& fn) {
  const int64_t n = t.numel();
  if (n == 0) return;
  const char* base = static_cast<const char*>(t.data_ptr());
  const size_t es = t.element_size();
  const int rank = t.dim();
  std::vector<int64_t> idx(static_cast<size_t>(rank), 0);
  for (int64_t flat = 0; flat < n; ++flat) {
    int64_t off = 0;
    for (int d = 0; d < rank; ++d) off += idx[static_cast<size_t>(d)] * t.strides()[d];
    fn(flat, base + off * static_cast<int64_t>(es));
    for (int d = rank - 1; d >= 0; --d) {
      if (++idx[static_cast<size_t>(d)] < t.shape()[d]) break;
      idx[static_cast<size_t>(d)] = 0;
    }
  }
}

double read_as_double(DType dt, const char* p) {
  return dispatch_all(dt, [&](auto tag) -> double {
    using T = decltype(tag);
    T v;
    std::memcpy(&v, p, sizeof(T));
    if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
      return static_cast<double>(static_cast<float>(v));
    } else {
      return static_cast<double>(v);
    }
  });
}

Tensor to_cpu(const Tensor& t) { return t.device().is_cpu() ? t : t.to(kCPU); }

std::string shapes_str(const std::vector<Tensor>& ts) {
  std::string s;
  for (size_t i = 0; i < ts.size(); ++i) {
    if (i) s += ", ";
    s += ts[i].defined() ? str_cat(dtype_name(ts[i].dtype()), ts[i].shape().str()) : std::string("undefined");
  }
  return s;
}

// Deterministic weights in [-1, -0.25] U [0.25, 1] (splitmix64), so no output is weighted ~0.
std::vector<double> fixed_weights(int64_t n) {
  std::vector<double> w(static_cast<size_t>(n));
  uint64_t state = 0x9E3779B97F4A7C15ULL;
  for (auto& v : w) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    double u = static_cast<double>(z >> 11) * 0x1.0p-53;  // [0, 1)
    double mag = 0.25 + 0.75 * std::fmod(u * 2.0, 1.0);
    v = u < 0.5 ? -mag : mag;
  }
  return w;
}

struct Token {
  std::string text;
  int line;
};

[[noreturn]] void parse_error(const std::string& origin, int line, const std::string& msg) {
  throw std::runtime_error(str_cat("[fixture] ", origin, ":", line, ": ", msg));
}

int64_t parse_int(const Token& tok, const std::string& origin, const char* what) {
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(tok.text.c_str(), &end, 10);
  if (errno != 0 || end == tok.text.c_str() || *end != '\0')
    parse_error(origin, tok.line, str_cat("expected an integer ", what, ", got '", tok.text, "'"));
  return static_cast<int64_t>(v);
}

double parse_double(const Token& tok, const std::string& origin, const char* what) {
  const std::string& s = tok.text;
  if (s == "nan" || s == "NaN" || s == "-nan") return std::numeric_limits<double>::quiet_NaN();
  if (s == "inf" || s == "+inf" || s == "Infinity") return std::numeric_limits<double>::infinity();
  if (s == "-inf" || s == "-Infinity") return -std::numeric_limits<double>::infinity();
  if (s == "true" || s == "True") return 1.0;
  if (s == "false" || s == "False") return 0.0;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0' || (errno == ERANGE && std::isinf(v)))
    parse_error(origin, tok.line, str_cat("expected a number for ", what, ", got '", s, "'"));
  return v;
}

}  // namespace

const Tensor& Fixture::operator[](const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) {
    std::string have;
    int shown = 0;
    for (const auto& [k, v] : tensors) {
      if (shown++ == 20) {
        have += " ...";
        break;
      }
      have += " " + k;
    }
    throw std::runtime_error(str_cat("[fixture] no tensor named '", name, "' (", tensors.size(), " present:", have,
                                     ")"));
  }
  return it->second;
}

double Fixture::scalar(const std::string& name) const {
  auto it = scalars.find(name);
  if (it == scalars.end()) throw std::runtime_error(str_cat("[fixture] no scalar named '", name, "'"));
  return it->second;
}

std::string reference_path(const std::string& relpath) {
  return std::string(EMBER_TEST_DATA_DIR) + "/reference/" + relpath;
}

Fixture parse_fixture(const std::string& text, const std::string& origin) {
  std::vector<Token> toks;
  {
    std::istringstream in(text);
    std::string line;
    int lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      size_t first = line.find_first_not_of(" \t\r");
      if (first == std::string::npos || line[first] == '#') continue;
      std::istringstream ls(line);
      std::string w;
      while (ls >> w) toks.push_back({w, lineno});
    }
  }
  Fixture fx;
  size_t i = 0;
  auto need = [&](const char* what, int line) -> const Token& {
    if (i >= toks.size()) parse_error(origin, line, str_cat("unexpected end of file while reading ", what));
    return toks[i++];
  };
  while (i < toks.size()) {
    const Token& kw = toks[i++];
    if (kw.text == "scalar") {
      const Token& name = need("a scalar name", kw.line);
      const Token& val = need("a scalar value", kw.line);
      if (fx.scalars.count(name.text) || fx.tensors.count(name.text))
        parse_error(origin, name.line, str_cat("duplicate name '", name.text, "'"));
      fx.scalars[name.text] = parse_double(val, origin, "a scalar value");
    } else if (kw.text == "tensor") {
      const Token& name = need("a tensor name", kw.line);
      if (fx.scalars.count(name.text) || fx.tensors.count(name.text))
        parse_error(origin, name.line, str_cat("duplicate name '", name.text, "'"));
      const Token& dt = need("a dtype", kw.line);
      DType dtype;
      if (dt.text == "bool") {
        dtype = DType::b8;
      } else {
        static const std::map<std::string, DType> kNames = {{"f32", DType::f32}, {"f64", DType::f64},
                                                            {"f16", DType::f16}, {"bf16", DType::bf16},
                                                            {"i32", DType::i32}, {"i64", DType::i64},
                                                            {"u8", DType::u8}};
        auto it = kNames.find(dt.text);
        if (it == kNames.end())
          parse_error(origin, dt.line,
                      str_cat("unknown dtype '", dt.text, "' for tensor '", name.text,
                              "' (expected f32 f64 f16 bf16 i32 i64 u8 bool)"));
        dtype = it->second;
      }
      const Token& rank_tok = need("a rank", kw.line);
      int64_t rank = parse_int(rank_tok, origin, "rank");
      if (rank < 0 || rank > kMaxRank)
        parse_error(origin, rank_tok.line, str_cat("rank ", rank, " of tensor '", name.text, "' is out of range"));
      Shape shape;
      for (int64_t d = 0; d < rank; ++d) {
        const Token& dim_tok = need("a dimension", kw.line);
        int64_t v = parse_int(dim_tok, origin, "dimension");
        if (v < 0) parse_error(origin, dim_tok.line, str_cat("negative dimension ", v, " in tensor '", name.text, "'"));
        shape.push_back(v);
      }
      const int64_t n = shape.numel();
      Tensor t = empty(shape, TensorOptions(dtype));
      char* base = static_cast<char*>(t.data_ptr());
      for (int64_t k = 0; k < n; ++k) {
        if (i >= toks.size() || toks[i].text == "tensor" || toks[i].text == "scalar")
          parse_error(origin, i < toks.size() ? toks[i].line : toks.back().line,
                      str_cat("tensor '", name.text, "' ", shape.str(), " expects ", n, " values, found ", k));
        const Token& tok = toks[i++];
        char* p = base + k * static_cast<int64_t>(dtype_size(dtype));
        if (dtype == DType::i64 || dtype == DType::i32 || dtype == DType::u8) {
          int64_t v = parse_int(tok, origin, "integer tensor value");
          if (dtype == DType::i64) {
            std::memcpy(p, &v, 8);
          } else if (dtype == DType::i32) {
            int32_t v32 = static_cast<int32_t>(v);
            std::memcpy(p, &v32, 4);
          } else {
            if (v < 0 || v > 255) parse_error(origin, tok.line, str_cat("u8 value ", v, " is out of range"));
            uint8_t v8 = static_cast<uint8_t>(v);
            std::memcpy(p, &v8, 1);
          }
        } else {
          double v = parse_double(tok, origin, "tensor value");
          dispatch_all(dtype, [&](auto tag) {
            using T = decltype(tag);
            T x;
            if constexpr (std::is_same_v<T, bool>) {
              x = v != 0.0;
            } else if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
              x = T(static_cast<float>(v));
            } else {
              x = static_cast<T>(v);
            }
            std::memcpy(p, &x, sizeof(T));
          });
        }
      }
      fx.tensors[name.text] = t;
    } else {
      parse_error(origin, kw.line, str_cat("expected 'tensor' or 'scalar', got '", kw.text, "'"));
    }
  }
  return fx;
}

Fixture load_fixture(const std::string& relpath) {
  const std::string path = reference_path(relpath);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(str_cat("[fixture] cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_fixture(ss.str(), relpath);
}

std::vector<double> values_f64(const Tensor& t) {
  Tensor c = to_cpu(t);
  std::vector<double> out(static_cast<size_t>(c.numel()));
  const DType dt = c.dtype();
  for_each_element(c, [&](int64_t flat, const char* p) { out[static_cast<size_t>(flat)] = read_as_double(dt, p); });
  return out;
}

Tensor make_tensor(const std::vector<double>& values, const Shape& shape, DType dtype, bool requires_grad) {
  if (static_cast<int64_t>(values.size()) != shape.numel())
    throw std::runtime_error(str_cat("[make_tensor] ", values.size(), " values for shape ", shape.str()));
  Tensor t = empty(shape, TensorOptions(dtype));
  char* base = static_cast<char*>(t.data_ptr());
  for (size_t k = 0; k < values.size(); ++k) {
    dispatch_all(dtype, [&](auto tag) {
      using T = decltype(tag);
      T x;
      if constexpr (std::is_same_v<T, bool>) {
        x = values[k] != 0.0;
      } else if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
        x = T(static_cast<float>(values[k]));
      } else {
        x = static_cast<T>(values[k]);
      }
      std::memcpy(base + k * sizeof(T), &x, sizeof(T));
    });
  }
  if (requires_grad) t.requires_grad_(true);
  return t;
}

std::string index_str(const Shape& shape, int64_t flat) {
  std::vector<int64_t> idx(static_cast<size_t>(shape.size()));
  for (int d = shape.size() - 1; d >= 0; --d) {
    const int64_t n = shape[d] > 0 ? shape[d] : 1;
    idx[static_cast<size_t>(d)] = flat % n;
    flat /= n;
  }
  std::string s = "(";
  for (size_t d = 0; d < idx.size(); ++d) s += (d ? ", " : "") + std::to_string(idx[d]);
  return s + ")";
}

::testing::AssertionResult allclose(const Tensor& actual, const Tensor& expected, double rtol, double atol) {
  if (!actual.defined() || !expected.defined())
    return ::testing::AssertionFailure() << "allclose: " << (actual.defined() ? "expected" : "actual")
                                         << " is an undefined tensor";
  if (actual.shape() != expected.shape())
    return ::testing::AssertionFailure() << "allclose: shape mismatch: actual " << actual.shape().str()
                                         << " vs expected " << expected.shape().str();
  const std::vector<double> a = values_f64(actual), e = values_f64(expected);
  int64_t bad = 0, worst = -1;
  double worst_ratio = -1.0;
  for (size_t k = 0; k < a.size(); ++k) {
    const double x = a[k], y = e[k];
    double ratio;
    if (std::isnan(x) || std::isnan(y)) {
      ratio = (std::isnan(x) && std::isnan(y)) ? 0.0 : std::numeric_limits<double>::infinity();
    } else if (std::isinf(x) || std::isinf(y)) {
      ratio = x == y ? 0.0 : std::numeric_limits<double>::infinity();
    } else {
      const double tol = atol + rtol * std::fabs(y);
      const double diff = std::fabs(x - y);
      ratio = tol > 0 ? diff / tol : (diff == 0 ? 0.0 : std::numeric_limits<double>::infinity());
    }
    if (ratio > 1.0) ++bad;
    if (ratio > worst_ratio) {
      worst_ratio = ratio;
      worst = static_cast<int64_t>(k);
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  const double x = a[static_cast<size_t>(worst)], y = e[static_cast<size_t>(worst)];
  return ::testing::AssertionFailure()
         << "allclose: " << bad << " of " << a.size() << " elements differ (shape " << actual.shape().str()
         << ", actual dtype " << dtype_name(actual.dtype()) << ", rtol " << rtol << ", atol " << atol
         << "); worst at " << index_str(actual.shape(), worst) << " [flat " << worst << "]: actual "
         << std::setprecision(17) << x << ", expected " << y << ", |diff| " << std::fabs(x - y);
}

::testing::AssertionResult bit_equal(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined())
    return ::testing::AssertionFailure() << "bit_equal: undefined tensor";
  if (a.dtype() != b.dtype())
    return ::testing::AssertionFailure() << "bit_equal: dtype " << dtype_name(a.dtype()) << " vs "
                                         << dtype_name(b.dtype());
  if (a.shape() != b.shape())
    return ::testing::AssertionFailure() << "bit_equal: shape " << a.shape().str() << " vs " << b.shape().str();
  const Tensor ca = to_cpu(a), cb = to_cpu(b);
  const size_t es = ca.element_size();
  std::vector<char> ba(static_cast<size_t>(ca.numel()) * es), bb(ba.size());
  for_each_element(ca, [&](int64_t k, const char* p) { std::memcpy(&ba[static_cast<size_t>(k) * es], p, es); });
  for_each_element(cb, [&](int64_t k, const char* p) { std::memcpy(&bb[static_cast<size_t>(k) * es], p, es); });
  int64_t bad = 0, first = -1;
  for (int64_t k = 0; k < ca.numel(); ++k) {
    if (std::memcmp(&ba[static_cast<size_t>(k) * es], &bb[static_cast<size_t>(k) * es], es) != 0) {
      if (first < 0) first = k;
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  const std::vector<double> va = values_f64(ca), vb = values_f64(cb);
  return ::testing::AssertionFailure() << "bit_equal: " << bad << " of " << ca.numel() << " elements differ ("
                                       << dtype_name(a.dtype()) << a.shape().str() << "); first at "
                                       << index_str(a.shape(), first) << ": " << std::setprecision(17)
                                       << va[static_cast<size_t>(first)] << " vs " << vb[static_cast<size_t>(first)];
}

::testing::AssertionResult gradcheck(const std::string& context,
                                     const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                     const std::vector<Tensor>& inputs, double eps, double atol, double rtol) {
  const std::string ctx = context.empty() ? std::string("gradcheck") : "gradcheck [" + context + "]";
  std::vector<size_t> checked;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    if (x.dtype() != DType::f64 || !x.device().is_cpu() || !x.is_leaf())
      return ::testing::AssertionFailure() << ctx << ": input " << k << " must be an f64 CPU leaf, got "
                                           << dtype_name(x.dtype()) << " on " << x.device().str();
    checked.push_back(k);
  }
  if (checked.empty()) return ::testing::AssertionFailure() << ctx << ": no input requires grad";

  const bool prev_mode = grad_enabled();
  set_grad_enabled(true);
  struct Restore {
    bool mode;
    ~Restore() { set_grad_enabled(mode); }
  } restore{prev_mode};

  // Analytic gradient of sum(f(x) * w).
  Tensor out = f(inputs);
  if (!out.defined()) return ::testing::AssertionFailure() << ctx << ": f returned an undefined tensor";
  if (!is_floating(out.dtype()))
    return ::testing::AssertionFailure() << ctx << ": f returned dtype " << dtype_name(out.dtype());
  const std::string op_name = out.grad_fn() ? out.grad_fn()->name() : "(no grad_fn)";
  const std::vector<double> w = fixed_weights(out.numel());
  const Shape out_shape = out.shape();
  std::vector<Tensor> analytic(inputs.size());
  if (out.requires_grad()) {
    Tensor out64 = out.dtype() == DType::f64 ? out : out.to(DType::f64);
    Tensor loss = sum(mul(out64, make_tensor(w, out_shape, DType::f64)));
    std::vector<Tensor> wrt;
    for (size_t k : checked) wrt.push_back(inputs[k]);
    std::vector<Tensor> g = autograd::grad({loss}, wrt);
    if (g.size() != wrt.size())
      return ::testing::AssertionFailure() << ctx << ": autograd::grad returned " << g.size() << " gradients for "
                                           << wrt.size() << " inputs";
    for (size_t j = 0; j < checked.size(); ++j) analytic[checked[j]] = g[j];
  }

  auto eval = [&]() -> double {
    NoGradGuard ng;
    Tensor o = f(inputs);
    if (o.shape() != out_shape)
      throw std::runtime_error(str_cat(ctx, ": f changed its output shape from ", out_shape.str(), " to ",
                                       o.shape().str(), " under perturbation"));
    const std::vector<double> v = values_f64(o);
    double s = 0;
    for (size_t i = 0; i < v.size(); ++i) s += v[i] * w[i];
    return s;
  };

  std::ostringstream report;
  int64_t bad = 0, total = 0;
  double worst_ratio = -1.0;
  for (size_t k : checked) {
    const Tensor& x = inputs[k];
    std::vector<double> an(static_cast<size_t>(x.numel()), 0.0);
    if (analytic[k].defined()) {
      if (analytic[k].shape() != x.shape())
        return ::testing::AssertionFailure() << ctx << " (" << op_name << "): gradient of input " << k
                                             << " has shape " << analytic[k].shape().str() << ", input has "
                                             << x.shape().str();
      an = values_f64(analytic[k]);
    }
    // Perturb through the strides (leaves may be non-contiguous views of a detached base).
    std::vector<double*> ptrs;
    for_each_element(x, [&](int64_t, const char* p) { ptrs.push_back(reinterpret_cast<double*>(const_cast<char*>(p))); });
    for (size_t e = 0; e < ptrs.size(); ++e) {
      double* p = ptrs[e];
      const double orig = *p;
      *p = orig + eps;
      const double fp = eval();
      *p = orig - eps;
      const double fm = eval();
      *p = orig;
      const double numeric = (fp - fm) / (2 * eps);
      const double tol = atol + rtol * std::fabs(numeric);
      const double diff = std::fabs(an[e] - numeric);
      const double ratio = std::isfinite(diff) ? diff / tol : std::numeric_limits<double>::infinity();
      ++total;
      if (ratio > 1.0) ++bad;
      if (ratio > worst_ratio) {
        worst_ratio = ratio;
        report.str("");
        report << "input " << k << " " << x.shape().str() << " element " << index_str(x.shape(), static_cast<int64_t>(e))
               << ": analytic " << std::setprecision(12) << an[e] << ", numeric " << numeric << ", |diff| " << diff
               << " (tol " << tol << ")";
      }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << ctx << ": op " << op_name << " inputs [" << shapes_str(inputs)
                                       << "] -> " << out_shape.str() << ": " << bad << " of " << total
                                       << " gradient elements mismatch; worst " << report.str();
}

::testing::AssertionResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                     const std::vector<Tensor>& inputs, double eps, double atol, double rtol) {
  return gradcheck(std::string(), f, inputs, eps, atol, rtol);
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace ember::test
