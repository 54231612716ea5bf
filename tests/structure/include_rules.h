// The include rules of Ember's source tree: which top-level folders may include which. The library
// is layered runtime -> nn -> train, with checkpoint beside nn, and kernels below runtime reaching
// only the runtime's low-level headers; the checker reads every #include of every source file.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace ember::structure {

struct Violation {
  std::string file;     // path relative to the checked root, '/'-separated
  int line = 0;         // 1-based
  std::string include;  // the included path as written
  std::string rule;     // why it is forbidden
};

// Reads every C/C++/CUDA source and header (.h .hpp .c .cc .cpp .cu .cuh .inc) under the library's
// folders of `root` (runtime/, kernels/, nn/, train/, checkpoint/) and returns each #include that
// breaks a rule, in file order. A missing folder is skipped; an unreadable file is a violation.
std::vector<Violation> check_include_rules(const std::filesystem::path& root);

// "runtime/x.cpp:12: includes \"train/y.h\": <rule>"
std::string format(const Violation& v);

}  // namespace ember::structure
