// HParams: a module's hyperparameters, a typed string-keyed map saved in every checkpoint
// ("hyper_parameters") and given back to the module's constructor by load_from_checkpoint.
#pragma once
#include <string>
#include <type_traits>

#include "ember/runtime/api.h"
#include "ember/runtime/value.h"

namespace ember {

class EMBER_API HParams {
 public:
  HParams() = default;
  HParams(ValueMap values) : values_(std::move(values)) {}  // NOLINT
  HParams(std::initializer_list<std::pair<const std::string, Value>> init) : values_(init) {}

  bool contains(const std::string& key) const { return values_.count(key) > 0; }
  // The value under key converted to T (bool, integers, floating point, std::string, Value);
  // throws "[hparams] missing key 'k' (present: ...)" or a kind mismatch naming the key.
  template <typename T>
  T get(const std::string& key) const {
    const Value& v = at(key);
    try {
      if constexpr (std::is_same_v<T, Value>) return v;
      else if constexpr (std::is_same_v<T, bool>) return v.as_bool();
      else if constexpr (std::is_integral_v<T>) return static_cast<T>(v.as_int());
      else if constexpr (std::is_floating_point_v<T>) return static_cast<T>(v.as_double());
      else if constexpr (std::is_same_v<T, std::string>) return v.as_string();
      else static_assert(sizeof(T) == 0, "HParams::get supports bool, integers, floating point, std::string, Value");
    } catch (const Error& e) {
      throw Error("[hparams] key '" + key + "': " + e.what());
    }
  }
  // The value under key, or fallback when absent.
  template <typename T>
  T get_or(const std::string& key, T fallback) const {
    return contains(key) ? get<T>(key) : fallback;
  }
  void set(const std::string& key, Value v) { values_[key] = std::move(v); }
  const Value& at(const std::string& key) const;
  const ValueMap& values() const { return values_; }
  // Entries of `overrides` replace or extend these (load_from_checkpoint's hparam overrides).
  void update(const HParams& overrides);
  bool empty() const { return values_.empty(); }

 private:
  ValueMap values_;
};

}  // namespace ember
