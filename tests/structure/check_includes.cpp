// ember-check-includes ROOT: prints every #include under ROOT that breaks the layering rules
// (include_rules.h), one per line naming file and line, and exits 1 if there is any, 0 if none,
// 2 on a usage error.
#include <filesystem>
#include <iostream>

#include "include_rules.h"

int main(int argc, char** argv) {
  if (argc != 2 || !std::filesystem::is_directory(argv[1])) {
    std::cerr << "usage: ember-check-includes SOURCE_ROOT (a directory holding runtime/, kernels/, nn/, ...)\n";
    return 2;
  }
  const auto violations = ember::structure::check_include_rules(argv[1]);
  for (const auto& v : violations) std::cout << ember::structure::format(v) << "\n";
  if (!violations.empty()) {
    std::cout << violations.size() << " forbidden include(s); the rules are in tests/structure/include_rules.cpp\n";
    return 1;
  }
  std::cout << "include rules: no violation\n";
  return 0;
}
