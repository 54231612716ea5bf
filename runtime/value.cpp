// Value accessors, equality and printing.
#include "ember/runtime/value.h"

#include <cstring>
#include <sstream>

namespace ember {

const char* Value::kind_name(Kind k) {
  switch (k) {
    case Kind::Null: return "null";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "string";
    case Kind::Bytes: return "bytes";
    case Kind::List: return "list";
    case Kind::Map: return "map";
    case Kind::Tensor: return "tensor";
  }
  return "invalid";
}

void Value::throw_kind(Kind want) const {
  EMBER_THROW("[value] expected a ", kind_name(want), " but found a ", kind_name(kind()), " (", repr(), ")");
}

double Value::as_double() const {
  if (is_int()) return static_cast<double>(std::get<int64_t>(v_));
  return get<double>(Kind::Float);
}

bool Value::contains(const std::string& key) const { return is_map() && as_map().count(key) > 0; }

const Value& Value::at(const std::string& key) const {
  const ValueMap& m = as_map();
  auto it = m.find(key);
  if (it == m.end()) {
    std::string keys;
    for (auto& [k, v] : m) keys += (keys.empty() ? "" : ", ") + k;
    EMBER_THROW("[value] missing key '", key, "' (present: ", keys.empty() ? "none" : keys, ")");
  }
  return it->second;
}

Value& Value::operator[](const std::string& key) {
  if (is_null()) v_ = std::make_shared<ValueMap>();
  return as_map()[key];
}

bool Value::operator==(const Value& o) const {
  if (kind() != o.kind()) return false;
  switch (kind()) {
    case Kind::Null: return true;
    case Kind::Bool: return as_bool() == o.as_bool();
    case Kind::Int: return as_int() == o.as_int();
    case Kind::Float: {
      double a = std::get<double>(v_), b = std::get<double>(o.v_);
      return std::memcmp(&a, &b, sizeof a) == 0 || a == b;
    }
    case Kind::String: return as_string() == o.as_string();
    case Kind::Bytes: return as_bytes() == o.as_bytes();
    case Kind::List: return as_list() == o.as_list();
    case Kind::Map: return as_map() == o.as_map();
    case Kind::Tensor: {
      const Tensor &a = as_tensor(), &b = o.as_tensor();
      if (a.defined() != b.defined()) return false;
      if (!a.defined()) return true;
      if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
      Tensor ca = a.to(kCPU).contiguous(), cb = b.to(kCPU).contiguous();
      return ca.nbytes() == 0 || std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) == 0;
    }
  }
  return false;
}

std::string Value::repr() const {
  std::ostringstream os;
  switch (kind()) {
    case Kind::Null: os << "null"; break;
    case Kind::Bool: os << (std::get<bool>(v_) ? "true" : "false"); break;
    case Kind::Int: os << std::get<int64_t>(v_); break;
    case Kind::Float: os.precision(17); os << std::get<double>(v_); break;
    case Kind::String: os << '"' << std::get<std::string>(v_) << '"'; break;
    case Kind::Bytes: os << "<" << std::get<Bytes>(v_).data.size() << " bytes>"; break;
    case Kind::List: {
      os << "[";
      bool first = true;
      for (auto& v : *std::get<std::shared_ptr<ValueList>>(v_)) {
        os << (first ? "" : ", ") << v.repr();
        first = false;
      }
      os << "]";
      break;
    }
    case Kind::Map: {
      os << "{";
      bool first = true;
      for (auto& [k, v] : *std::get<std::shared_ptr<ValueMap>>(v_)) {
        os << (first ? "" : ", ") << k << ": " << v.repr();
        first = false;
      }
      os << "}";
      break;
    }
    case Kind::Tensor: {
      const Tensor& t = std::get<Tensor>(v_);
      if (!t.defined()) os << "tensor(undefined)";
      else os << "tensor(" << dtype_name(t.dtype()) << ", " << t.shape().str() << ")";
      break;
    }
  }
  return os.str();
}

Value Value::deep_copy() const {
  switch (kind()) {
    case Kind::List: {
      ValueList l;
      for (auto& v : as_list()) l.push_back(v.deep_copy());
      return Value(std::move(l));
    }
    case Kind::Map: {
      ValueMap m;
      for (auto& [k, v] : as_map()) m.emplace(k, v.deep_copy());
      return Value(std::move(m));
    }
    case Kind::Tensor: {
      const Tensor& t = as_tensor();
      return t.defined() ? Value(t.detach().clone()) : *this;
    }
    default: return *this;
  }
}

}  // namespace ember
