// Helpers shared by the checkpoint tests: a scratch directory per test, whole-file reads and
// writes, and an assertion that opening (and fully verifying) a file fails with a given message.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ember/checkpoint/checkpoint.h"

namespace ember::test {

// A fresh directory under the system temp dir, removed with its files at destruction.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  std::vector<std::string> list() const;  // names of the entries (hidden ones included)

 private:
  std::string path_;
};

std::vector<uint8_t> read_bytes(const std::string& path);
// Runs a shell command; returns its exit code (-1 when it did not exit) and fills out with its
// stdout and stderr.
int run_command(const std::string& command, std::string* out = nullptr);
void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes);

// Opens bytes as a checkpoint (verifying every payload) and expects an ember::Error whose message
// contains `expected`; returns the message.
std::string open_error(const std::string& dir, const std::vector<uint8_t>& bytes, const checkpoint::ReadOptions& opt = {
    .verify = checkpoint::Verify::all, .mmap = false});
::testing::AssertionResult fails_with(const std::string& dir, const std::vector<uint8_t>& bytes,
                                      const std::string& expected,
                                      const checkpoint::ReadOptions& opt = {.verify = checkpoint::Verify::all, .mmap = false});

// A tensor of dtype T from values (copied through raw memory).
template <typename T>
Tensor tensor_of(const Shape& shape, const std::vector<T>& values) {
  Tensor t = empty(shape, DTypeOf<T>::value);
  if constexpr (std::is_same_v<T, bool>) {
    auto* p = static_cast<uint8_t*>(t.data_ptr());
    for (size_t i = 0; i < values.size(); ++i) p[i] = values[i] ? 1 : 0;
  } else if (!values.empty()) {
    std::memcpy(t.data_ptr(), values.data(), values.size() * sizeof(T));
  }
  return t;
}

}  // namespace ember::test
