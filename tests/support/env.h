// ScopedEnv: sets (or unsets) an environment variable for one scope and restores its previous
// value, or its absence, when the scope ends. For tests of behaviour that reads the environment.
#pragma once
#include <cstdlib>
#include <string>

namespace ember::test {

class ScopedEnv {
 public:
  // value nullptr unsets the variable for the scope.
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_)
      ::setenv(name_, old_.c_str(), 1);
    else
      ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

}  // namespace ember::test
