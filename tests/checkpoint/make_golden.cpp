// Writes the golden checkpoints of golden_data.cpp into a directory (run once per format version;
// the files are committed under tests/checkpoint/golden/ and never rewritten).
#include <iostream>

#include "tests/checkpoint/golden_data.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: ember_ckpt_make_golden OUT_DIR\n";
    return 2;
  }
  try {
    for (auto& c : ember::test::golden::cases_v1_0()) {
      std::string path = std::string(argv[1]) + "/" + c.file;
      ember::checkpoint::save(path, c.root, c.options);
      std::cout << "wrote " << path << "\n";
    }
  } catch (const ember::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}
