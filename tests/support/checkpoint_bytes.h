// A checkpoint file's bytes with what legitimately differs between two saves of the same state
// removed: the random file id (header bytes 24..39, footer bytes 32..47) and the header's and
// footer's CRCs over it (bytes 60..63 of each). Two such byte strings are equal when the files
// are byte for byte the same save. For tests comparing synchronous and asynchronous saves.
#pragma once
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

namespace ember::test {

inline std::vector<char> file_bytes(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

inline std::vector<char> without_file_id(std::vector<char> b) {
  if (b.size() < 128) return b;
  std::fill(b.begin() + 24, b.begin() + 40, 0);
  std::fill(b.begin() + 60, b.begin() + 64, 0);
  std::fill(b.end() - 64 + 32, b.end() - 64 + 48, 0);
  std::fill(b.end() - 4, b.end(), 0);
  return b;
}

}  // namespace ember::test
