// The contents of the committed golden checkpoints (tests/checkpoint/golden/*.ckpt), built from
// formulas so that the compatibility test can compare every value a file holds. Frozen: a
// change here must come with new golden files under new names, never by rewriting old ones.
#pragma once
#include <string>
#include <vector>

#include "ember/checkpoint/checkpoint.h"
#include "ember/runtime/value.h"

namespace ember::test::golden {

struct Case {
  std::string file;  // name under tests/checkpoint/golden/
  Value root;        // what the file holds (ember_version included)
  checkpoint::SaveOptions options;
};

// Every golden case of format 1.0.
std::vector<Case> cases_v1_0();

}  // namespace ember::test::golden
