// The CPU elementwise loops (kernels/cpu/loops.h): for_each_row hands every element to exactly one
// row call, cutting rows longer than the grain into pieces so that a contiguous tensor (one row
// once coalesced) spreads over the threads; the elementwise ops give the same bits at 1 and 2
// threads, for contiguous, strided and broadcast operands.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "ember/runtime/ops.h"
#include "ember/runtime/parallel.h"
#include "ember/runtime/rng.h"
#include "kernels/cpu/loops.h"
#include "tests/support/check.h"

namespace ember {
namespace {

class Threads {
 public:
  explicit Threads(int n) : prev_(get_num_threads()) { set_num_threads(n); }
  ~Threads() { set_num_threads(prev_); }

 private:
  int prev_;
};

// Every element offset for_each_row hands out, as (offset, count of visits), and the pieces.
struct Visits {
  std::vector<int> count;
  std::vector<std::pair<int64_t, int64_t>> pieces;  // (first offset, length)
  std::set<std::thread::id> threads;
};

Visits visit(const Tensor& t, int64_t grain) {
  Visits v;
  v.count.assign(static_cast<size_t>(t.storage()->nbytes() / sizeof(float)), 0);
  std::mutex mu;
  auto g = kernels::make_geometry<1>(t.shape(), {&t});
  kernels::for_each_row<1>(
      g, t.numel(),
      [&](const std::array<int64_t, 1>& off, int64_t n, const std::array<int64_t, 1>& s) {
        std::lock_guard<std::mutex> lk(mu);
        v.pieces.emplace_back(t.offset() + off[0], n);
        v.threads.insert(std::this_thread::get_id());
        for (int64_t k = 0; k < n; ++k) ++v.count[static_cast<size_t>(t.offset() + off[0] + k * s[0])];
      },
      grain);
  return v;
}

TEST(ForEachRow, EveryElementOnceAndLongRowsInPieces) {
  Threads two(2);
  {
    // Contiguous: one row of 100000 once coalesced, cut into pieces of the grain.
    const Tensor t = zeros({10, 10000});
    const Visits v = visit(t, 32768);
    for (int c : v.count) ASSERT_EQ(c, 1);
    std::vector<std::pair<int64_t, int64_t>> pieces = v.pieces;
    std::sort(pieces.begin(), pieces.end());
    EXPECT_EQ(pieces, (std::vector<std::pair<int64_t, int64_t>>{{0, 25000}, {25000, 25000}, {50000, 25000}, {75000, 25000}}));
  }
  {
    // Rows of a transposed view (strided inner dim) longer than the grain, and short rows.
    const Tensor base = zeros({70000, 3});
    const Visits v = visit(base.t(), 30000);  // 3 rows of 70000, stride 3: 4 pieces of 17500 each
    for (int c : v.count) ASSERT_EQ(c, 1);
    EXPECT_EQ(v.pieces.size(), 12u);
    for (const auto& [at, n] : v.pieces) EXPECT_EQ(n, 17500);
    const Visits shortrows = visit(zeros({7, 5, 3}).narrow(2, 0, 2), 8);  // 35 rows of 2
    size_t visited = 0;
    for (int c : shortrows.count) {
      ASSERT_LE(c, 1);
      visited += static_cast<size_t>(c);
    }
    EXPECT_EQ(visited, 70u);
    EXPECT_EQ(shortrows.pieces.size(), 35u);
  }
  EXPECT_TRUE(visit(zeros({0, 5}), 4).pieces.empty());
  // A row whose length has no divisor in range stays whole (100003 is prime).
  EXPECT_EQ(visit(zeros({100003}), 32768).pieces.size(), 1u);
}

TEST(ForEachRow, RowPiecesAreTheFewestEqualOnesWithinTheGrain) {
  EXPECT_EQ(kernels::row_pieces(1000, 1000), 1);
  EXPECT_EQ(kernels::row_pieces(1001, 1000), 7);       // 2..6 do not divide 1001 = 7 * 11 * 13
  EXPECT_EQ(kernels::row_pieces(401408, 32768), 14);   // a conv activation: 128 x 16 x 14 x 14
  EXPECT_EQ(kernels::row_pieces(100003, 32768), 1);    // prime: no cut
  EXPECT_EQ(kernels::row_pieces(5, 0), 1);
}

TEST(ForEachRow, AContiguousTensorSpreadsOverTheThreads) {
  Threads two(2);
  // Each piece holds its thread for a while, so that the caller cannot run every chunk before the
  // worker claims one.
  const Tensor t = zeros({1 << 16});
  std::mutex mu;
  std::set<std::thread::id> threads;
  auto g = kernels::make_geometry<1>(t.shape(), {&t});
  kernels::for_each_row<1>(
      g, t.numel(),
      [&](const std::array<int64_t, 1>&, int64_t, const std::array<int64_t, 1>&) {
        {
          std::lock_guard<std::mutex> lk(mu);
          threads.insert(std::this_thread::get_id());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      },
      1024);
  EXPECT_EQ(threads.size(), 2u);
}

TEST(ForEachRow, ElementwiseOpsGiveTheSameBitsAtOneAndTwoThreads) {
  Generator gen(3);
  const Tensor x = randn({3, 50000}, {}, &gen), y = randn({3, 50000}, {}, &gen), row = randn({50000}, {}, &gen);
  auto run = [&] {
    return std::vector<Tensor>{relu(x),         sigmoid(x),         exp(x),        add(x, y),
                               mul(x.t(), y.t()), sub(x, row),        div(x, 3.0),   maximum(x, y),
                               x.t().contiguous(), where(gt(x, y), x, y)};
  };
  std::vector<Tensor> one, two;
  {
    Threads t1(1);
    one = run();
  }
  {
    Threads t2(2);
    two = run();
  }
  ASSERT_EQ(one.size(), two.size());
  for (size_t i = 0; i < one.size(); ++i) EXPECT_TRUE(test::bit_equal(one[i], two[i])) << "op " << i;
  // and the values are the ops' (spot checks against the scalar definitions)
  EXPECT_EQ(relu(x).to_vector<float>()[70001], std::max(0.0f, x.to_vector<float>()[70001]));
  EXPECT_EQ(add(x, y).to_vector<float>()[123456], x.to_vector<float>()[123456] + y.to_vector<float>()[123456]);
}

}  // namespace
}  // namespace ember
