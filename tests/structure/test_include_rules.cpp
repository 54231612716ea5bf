// The include-rule checker on small trees written by the test: every rule fires on a file that
// breaks it (naming file and line) and allowed includes pass. CTest runs the checker program
// (ember-check-includes) over the real source tree as the test IncludeRules.SourceTree.
#include <gtest/gtest.h>

#include <fstream>

#include "include_rules.h"

namespace fs = std::filesystem;
using ember::structure::check_include_rules;
using ember::structure::Violation;

namespace {

class IncludeRules : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(EMBER_TEST_BINARY_DIR) / "include_rules_fixture" /
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(root_);
  }
  void write(const std::string& path, const std::string& text) {
    fs::create_directories((root_ / path).parent_path());
    std::ofstream(root_ / path) << text;
  }
  std::vector<Violation> check() { return check_include_rules(root_); }
  fs::path root_;
};

std::string joined(const std::vector<Violation>& vs) {
  std::string s;
  for (const auto& v : vs) s += ember::structure::format(v) + "\n";
  return s;
}

}  // namespace

TEST_F(IncludeRules, AllowedIncludesPass) {
  write("runtime/ops.cpp", "#include \"kernels/kernels.h\"\n#include \"runtime/tensor.h\"\n#include <vector>\n");
  write("kernels/kernels.h", "#include \"runtime/tensor.h\"\n#include \"ember/config.h\"\n");
  write("kernels/cpu/gemm.cpp", "#include \"gemm_blocked.inc\"\n#include \"kernels/common/functors.h\"\n"
                                "#include \"runtime/parallel.h\"\n#include <immintrin.h>\n");
  write("kernels/cpu/gemm_blocked.inc", "// body\n");
  write("kernels/cuda/gemm.cu", "#include <cublas_v2.h>\n#include \"kernels/common/functors.h\"\n");
  write("nn/layers.cpp", "#include \"runtime/ops.h\"\n");
  write("checkpoint/format.cpp", "#include \"runtime/value.h\"\n");
  write("train/trainer.cpp", "#include \"nn/module.h\"\n#include \"checkpoint/checkpoint.h\"\n");
  EXPECT_TRUE(check().empty()) << joined(check());
}

TEST_F(IncludeRules, EveryRuleFiresWithFileAndLine) {
  write("runtime/a.cpp", "// layer\n#include \"train/trainer.h\"\n");
  write("runtime/b.h", "#include \"nn/module.h\"\n");
  write("runtime/c.cpp", "#include  \"checkpoint/checkpoint.h\"\n");
  write("nn/a.cpp", "#include \"train/trainer.h\"\n#include \"checkpoint/format.h\"\n");
  write("checkpoint/a.cpp", "#include \"nn/module.h\"\n#include \"train/hparams.h\"\n");
  write("kernels/a.h", "#include \"runtime/ops.h\"\n");
  write("kernels/cuda/device.cu", "#pragma once\n#include \"train/data/dataloader.h\"\n");
  write("kernels/cuda/elementwise.cu", "#include \"kernels/cpu/loops.h\"\n");
  write("kernels/cpu/x.cpp", "   #  include <kernels/cuda/launch.h>\n");
  write("kernels/cpu/rng.inc", "#include \"runtime/rng.h\"\n");
  write("kernels/cuda/d.cuh", "#include \"runtime/autograd.h\"\n");
  write("train/optim.cpp", "#include \"kernels/kernels.h\"\n");
  write("nn/b.cpp", "#include \"tests/support/check.h\"\n");
  const auto vs = check();
  const std::vector<std::pair<std::string, int>> expected = {
      {"checkpoint/a.cpp", 1}, {"checkpoint/a.cpp", 2}, {"kernels/a.h", 1}, {"kernels/cpu/rng.inc", 1},
      {"kernels/cpu/x.cpp", 1}, {"kernels/cuda/d.cuh", 1}, {"kernels/cuda/device.cu", 2},
      {"kernels/cuda/elementwise.cu", 1}, {"nn/a.cpp", 1}, {"nn/a.cpp", 2}, {"nn/b.cpp", 1}, {"runtime/a.cpp", 2},
      {"runtime/b.h", 1}, {"runtime/c.cpp", 1}, {"train/optim.cpp", 1}};
  ASSERT_EQ(vs.size(), expected.size()) << joined(vs);
  for (size_t i = 0; i < vs.size(); ++i) {
    EXPECT_EQ(vs[i].file, expected[i].first) << joined(vs);
    EXPECT_EQ(vs[i].line, expected[i].second) << joined(vs);
  }
  EXPECT_EQ(ember::structure::format(vs[6]),
            "kernels/cuda/device.cu:2: includes \"train/data/dataloader.h\": kernels/ may include only kernels/ and "
            "the runtime's low-level headers (api, device, dtype, shape, error, tensor, small_alloc, allocator, "
            "parallel, half, host_device)");
  EXPECT_NE(vs[7].rule.find("may not include each other"), std::string::npos);
  EXPECT_NE(vs[11].rule.find("runtime/ may not include train/"), std::string::npos);
}

TEST_F(IncludeRules, EmberPrefixedIncludesAreCheckedToo) {
  write("nn/a.h", "#include <ember/train/trainer.h>\n#include <ember/config.h>\n");
  const auto vs = check();
  ASSERT_EQ(vs.size(), 1u) << joined(vs);
  EXPECT_EQ(vs[0].line, 1);
}
