// ember::Error, the one exception type of the library, and the checks that raise it.
// Messages start with the component in brackets: "[matmul] shapes (3, 4) and (5, 6) ...".
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

#include "ember/runtime/api.h"

namespace ember {

class EMBER_API Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

namespace detail {
inline void format_into(std::ostringstream&) {}
template <typename T, typename... Rest>
void format_into(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  format_into(os, rest...);
}
}  // namespace detail

// Concatenates its arguments with operator<< into a string.
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  detail::format_into(os, args...);
  return os.str();
}

}  // namespace ember

// EMBER_CHECK(cond, "[op] message parts", ...): throws ember::Error when cond is false.
#define EMBER_CHECK(cond, ...)                                   \
  do {                                                           \
    if (!(cond)) throw ::ember::Error(::ember::str_cat(__VA_ARGS__)); \
  } while (0)
#define EMBER_THROW(...) throw ::ember::Error(::ember::str_cat(__VA_ARGS__))
