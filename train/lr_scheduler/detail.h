// Private to the scheduler sources: Python's flooring integer arithmetic (torch's formulas see the
// negative epochs SequentialLR creates) and the typed state-dict reads every scheduler's
// load_state_dict() uses. Not part of the public headers.
#pragma once
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "ember/runtime/error.h"
#include "ember/runtime/value.h"

namespace ember::optim::detail {

// Python's a % b: the result takes the sign of b.
inline int64_t pymod(int64_t a, int64_t b) {
  int64_t r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}

// Python's a // b: rounds toward negative infinity.
inline int64_t pyfloordiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

inline ValueList to_list(const std::vector<double>& v) { return ValueList(v.begin(), v.end()); }

// Typed reads from a state dict, with errors naming the scheduler and the key.
struct Reader {
  const ValueMap& m;
  std::string who;

  const Value& at(const std::string& key) const {
    auto it = m.find(key);
    EMBER_CHECK(it != m.end(), "[", who, "] load_state_dict: missing key '", key, "'");
    return it->second;
  }
  double num(const std::string& key) const {
    const Value& v = at(key);
    EMBER_CHECK(v.is_number(), "[", who, "] load_state_dict: '", key, "' must be a number, got ", v.repr());
    return v.as_double();
  }
  int64_t integer(const std::string& key) const {
    const Value& v = at(key);
    if (v.is_int()) return v.as_int();
    EMBER_CHECK(v.is_float() && std::isfinite(v.as_double()) && v.as_double() == std::floor(v.as_double()), "[", who,
                "] load_state_dict: '", key, "' must be an integer, got ", v.repr());
    return static_cast<int64_t>(v.as_double());
  }
  bool boolean(const std::string& key) const {
    const Value& v = at(key);
    EMBER_CHECK(v.is_bool(), "[", who, "] load_state_dict: '", key, "' must be a bool, got ", v.repr());
    return v.as_bool();
  }
  std::string str(const std::string& key) const {
    const Value& v = at(key);
    EMBER_CHECK(v.is_string(), "[", who, "] load_state_dict: '", key, "' must be a string, got ", v.repr());
    return v.as_string();
  }
  std::vector<double> nums(const std::string& key, size_t expected) const {
    const Value& v = at(key);
    EMBER_CHECK(v.is_list(), "[", who, "] load_state_dict: '", key, "' must be a list of numbers, got ", v.repr());
    std::vector<double> out;
    for (const Value& x : v.as_list()) {
      EMBER_CHECK(x.is_number(), "[", who, "] load_state_dict: '", key, "' must be a list of numbers, got ", v.repr());
      out.push_back(x.as_double());
    }
    EMBER_CHECK(out.size() == expected, "[", who, "] load_state_dict: '", key, "' has ", out.size(),
                " values but the optimizer has ", expected, " parameter groups");
    return out;
  }
};

// Checks that `sd` is a map with exactly the keys of `reference` (minus `optional`, plus torch's
// `verbose`/`_get_lr_called_within_step`, which are ignored) and returns it.
const ValueMap& check_keys(const Value& sd, const Value& reference, const std::string& who,
                           const std::set<std::string>& optional = {});

}  // namespace ember::optim::detail
