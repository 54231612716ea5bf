// Value: the typed tree that state dicts, hyperparameters and checkpoint metadata are made of.
// null, bool, int64, float64, string, bytes, list, map (string keys, sorted) and tensor. Accessors
// throw ember::Error naming the expected and actual kind, and the key when looked up by key.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/runtime/error.h"
#include "ember/runtime/tensor.h"

namespace ember {

class Value;
using ValueList = std::vector<Value>;
using ValueMap = std::map<std::string, Value>;
struct Bytes {
  std::vector<uint8_t> data;
  bool operator==(const Bytes&) const = default;
};

class EMBER_API Value {
 public:
  enum class Kind : uint8_t { Null = 0, Bool = 1, Int = 2, Float = 3, String = 4, Bytes = 5, List = 6, Map = 7, Tensor = 8 };

  Value() = default;
  Value(std::nullptr_t) {}                       // NOLINT
  Value(bool b) : v_(b) {}                       // NOLINT
  Value(int v) : v_(static_cast<int64_t>(v)) {}  // NOLINT
  Value(int64_t v) : v_(v) {}                    // NOLINT
  // Stored bit for bit as int64: values >= 2^63 read back negative, and static_cast<uint64_t>
  // of as_int() recovers them exactly (seeds and generator states rely on this).
  Value(uint64_t v) : v_(static_cast<int64_t>(v)) {}  // NOLINT
  Value(double v) : v_(v) {}                     // NOLINT
  Value(const char* s) : v_(std::string(s)) {}   // NOLINT
  Value(std::string s) : v_(std::move(s)) {}     // NOLINT
  Value(Bytes b) : v_(std::move(b)) {}           // NOLINT
  Value(ValueList l) : v_(std::make_shared<ValueList>(std::move(l))) {}  // NOLINT
  Value(ValueMap m) : v_(std::make_shared<ValueMap>(std::move(m))) {}    // NOLINT
  Value(Tensor t) : v_(std::move(t)) {}          // NOLINT

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  static const char* kind_name(Kind k);
  bool is_null() const { return kind() == Kind::Null; }
  bool is_bool() const { return kind() == Kind::Bool; }
  bool is_int() const { return kind() == Kind::Int; }
  bool is_float() const { return kind() == Kind::Float; }
  bool is_number() const { return is_int() || is_float(); }
  bool is_string() const { return kind() == Kind::String; }
  bool is_bytes() const { return kind() == Kind::Bytes; }
  bool is_list() const { return kind() == Kind::List; }
  bool is_map() const { return kind() == Kind::Map; }
  bool is_tensor() const { return kind() == Kind::Tensor; }

  bool as_bool() const { return get<bool>(Kind::Bool); }
  int64_t as_int() const { return get<int64_t>(Kind::Int); }
  double as_double() const;  // int or float
  const std::string& as_string() const { return get<std::string>(Kind::String); }
  const Bytes& as_bytes() const { return get<Bytes>(Kind::Bytes); }
  const ValueList& as_list() const { return *get<std::shared_ptr<ValueList>>(Kind::List); }
  ValueList& as_list() { return *get<std::shared_ptr<ValueList>>(Kind::List); }
  const ValueMap& as_map() const { return *get<std::shared_ptr<ValueMap>>(Kind::Map); }
  ValueMap& as_map() { return *get<std::shared_ptr<ValueMap>>(Kind::Map); }
  const Tensor& as_tensor() const { return get<Tensor>(Kind::Tensor); }

  // Map access: at() throws "[value] missing key 'k'" (listing the keys present); contains().
  bool contains(const std::string& key) const;
  const Value& at(const std::string& key) const;
  Value& operator[](const std::string& key);  // makes a null value a map; inserts null

  // Deep equality; tensors compare by dtype, shape and bytes.
  bool operator==(const Value& o) const;
  bool operator!=(const Value& o) const { return !(*this == o); }
  // Short human-readable rendering (tensors as dtype+shape), for errors and inspect.
  std::string repr() const;
  // A deep copy (lists/maps duplicated; tensors cloned).
  Value deep_copy() const;

 private:
  template <typename T>
  const T& get(Kind want) const {
    if (kind() != want) throw_kind(want);
    return std::get<T>(v_);
  }
  template <typename T>
  T& get(Kind want) {
    if (kind() != want) throw_kind(want);
    return std::get<T>(v_);
  }
  [[noreturn]] void throw_kind(Kind want) const;

  std::variant<std::monostate, bool, int64_t, double, std::string, Bytes, std::shared_ptr<ValueList>,
               std::shared_ptr<ValueMap>, Tensor>
      v_;
};

}  // namespace ember
