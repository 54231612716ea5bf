// DistributedSampler and torch_randperm against PyTorch 1.13 (fixtures/sampler_distributed.txt from
// tests/reference/gen_sampler.py): every index list for dataset sizes 1..101, world sizes 1..16,
// every rank, shuffle on and off, drop_last on and off, several seeds and epochs; randperm for
// sizes up to 4097 and a seed above 2^32. Plus: the ranks of an epoch partition the (padded)
// dataset, the option checks, and the state dict round trip with its world-size check.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ember/runtime/error.h"
#include "ember/train/data/distributed_sampler.h"

namespace ember::data {
namespace {

struct Line {
  std::string kind;
  std::vector<int64_t> params, values;
};

std::vector<Line> fixture() {
  std::ifstream f(std::string(EMBER_TEST_DATA_DIR) + "/reference/fixtures/sampler_distributed.txt");
  EXPECT_TRUE(f.good()) << "missing fixture";
  std::vector<Line> out;
  std::string text;
  while (std::getline(f, text)) {
    if (text.empty() || text[0] == '#') continue;
    std::istringstream is(text);
    Line l;
    is >> l.kind;
    std::string tok;
    bool after = false;
    while (is >> tok) {
      if (tok == ":") {
        after = true;
        continue;
      }
      (after ? l.values : l.params).push_back(std::stoll(tok));
    }
    out.push_back(std::move(l));
  }
  return out;
}

TEST(DistributedSampler, MatchesPyTorchIndexForIndex) {
  int samplers = 0, perms = 0;
  for (const Line& l : fixture()) {
    if (l.kind == "randperm") {
      ASSERT_EQ(l.params.size(), 2u);
      EXPECT_EQ(torch_randperm(l.params[0], static_cast<uint64_t>(l.params[1])), l.values)
          << "randperm(" << l.params[0] << ", seed " << l.params[1] << ")";
      ++perms;
      continue;
    }
    ASSERT_EQ(l.kind, "sampler");
    ASSERT_EQ(l.params.size(), 7u);
    const int64_t n = l.params[0];
    DistributedSampler s(n, {.num_replicas = l.params[1], .rank = l.params[2], .shuffle = l.params[3] != 0,
                             .seed = static_cast<uint64_t>(l.params[5]), .drop_last = l.params[4] != 0});
    s.set_epoch(l.params[6]);
    std::vector<int64_t> got = s.indices();
    EXPECT_EQ(got, l.values) << "n " << n << " world " << l.params[1] << " rank " << l.params[2] << " shuffle "
                             << l.params[3] << " drop_last " << l.params[4] << " seed " << l.params[5] << " epoch "
                             << l.params[6];
    EXPECT_EQ(static_cast<int64_t>(got.size()), s.num_samples());
    ++samplers;
  }
  EXPECT_GT(samplers, 1500);
  EXPECT_EQ(perms, 8);
}

TEST(DistributedSampler, RanksPartitionAnEpoch) {
  const int64_t n = 103, world = 4;
  std::multiset<int64_t> seen;
  for (int64_t r = 0; r < world; ++r) {
    DistributedSampler s(n, {.num_replicas = world, .rank = r, .seed = 9});
    s.set_epoch(5);
    for (int64_t i : s.indices()) seen.insert(i);
  }
  // 104 slots: every index once, and one repeated to pad.
  EXPECT_EQ(seen.size(), 104u);
  for (int64_t i = 0; i < n; ++i) EXPECT_GE(seen.count(i), 1u) << i;
}

TEST(DistributedSampler, OptionsAreChecked) {
  EXPECT_THROW(DistributedSampler(10, {.num_replicas = 0}), Error);
  try {
    DistributedSampler(10, {.num_replicas = 2, .rank = 2});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("invalid rank 2, rank should be in the interval [0, 1]"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(DistributedSampler(-1, {}), Error);
}

TEST(DistributedSampler, StateDictRoundTripAndWorldSizeCheck) {
  DistributedSampler a(50, {.num_replicas = 2, .rank = 1, .seed = 3});
  a.set_epoch(7);
  DistributedSampler b(50, {.num_replicas = 2, .rank = 1, .seed = 3});
  b.load_state_dict(a.state_dict());
  EXPECT_EQ(b.epoch(), 7);
  EXPECT_EQ(b.indices(), a.indices());
  DistributedSampler c(50, {.num_replicas = 4, .rank = 1, .seed = 3});
  try {
    c.load_state_dict(a.state_dict());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("saved with 2 replicas but this sampler has 4"), std::string::npos) << e.what();
  }
  DistributedSampler d(51, {.num_replicas = 2, .rank = 1, .seed = 3});
  EXPECT_THROW(d.load_state_dict(a.state_dict()), Error);
}

}  // namespace
}  // namespace ember::data
