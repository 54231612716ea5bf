// The process group (train/distributed/process_group.h): ranks and sizes, all-reduce (sum, mean,
// max) and broadcast for every dtype, empty and odd-sized tensors, barrier, and clear errors. The
// same binary runs as a world of one and under `mpirun -np 2`; every rank checks the results.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ember/runtime/ops.h"
#include "ember/train/distributed/process_group.h"
#include "train/distributed/host_buffers.h"

namespace fs = std::filesystem;

namespace ember {
namespace {

class DistEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { dist::init(); }
};
::testing::Environment* const g_env = ::testing::AddGlobalTestEnvironment(new DistEnvironment);

const DType kAll[] = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8, DType::b8};
const int64_t kSizes[] = {0, 1, 7, 1000};

// Element i on rank r: (r + 1) * (i % 5); for b8: whether rank 0 holds it (i % 3 == 0).
Tensor values(DType dt, int64_t n, int r) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[static_cast<size_t>(i)] = dt == DType::b8 ? (r == 0 && i % 3 == 0 ? 1.0 : 0.0) : (r + 1) * static_cast<double>(i % 5);
  return from_vector(v, {n}).to(dt);
}

std::vector<double> as_doubles(const Tensor& t) {
  const Tensor d = t.to(DType::f64).contiguous();
  const double* p = d.data_ptr<double>();
  return std::vector<double>(p, p + d.numel());
}

TEST(ProcessGroup, RanksAndSizes) {
  const int n = dist::world_size(), r = dist::rank();
  ASSERT_GE(n, 1);
  EXPECT_GE(r, 0);
  EXPECT_LT(r, n);
  if (dist::launched()) {
    if (const char* s = std::getenv("OMPI_COMM_WORLD_SIZE")) {
      EXPECT_EQ(n, std::atoi(s));
    }
    if (const char* s = std::getenv("OMPI_COMM_WORLD_RANK")) {
      EXPECT_EQ(r, std::atoi(s));
    }
    EXPECT_EQ(dist::backend(), "mpi");
  } else {
    EXPECT_EQ(n, 1);
    EXPECT_EQ(dist::backend(), "single");
  }
  // every rank on this one host
  EXPECT_EQ(dist::local_world_size(), n);
  EXPECT_EQ(dist::local_rank(), r);
  Tensor ranks = full({1}, static_cast<double>(r), TensorOptions(DType::i64));
  dist::all_reduce(ranks);
  EXPECT_EQ(ranks.item<int64_t>(), int64_t{n} * (n - 1) / 2) << "the ranks are distinct";
}

TEST(ProcessGroup, AllReduceEveryDtypeAndSize) {
  const int n = dist::world_size(), r = dist::rank();
  for (DType dt : kAll) {
    for (int64_t size : kSizes) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " x " + std::to_string(size));
      Tensor sum = values(dt, size, r), mx = values(dt, size, r);
      dist::all_reduce(sum, dist::ReduceOp::Sum);
      dist::all_reduce(mx, dist::ReduceOp::Max);
      EXPECT_EQ(sum.dtype(), dt);
      const std::vector<double> s = as_doubles(sum), m = as_doubles(mx);
      ASSERT_EQ(static_cast<int64_t>(s.size()), size);
      for (int64_t i = 0; i < size; ++i) {
        const double k = static_cast<double>(i % 5);
        if (dt == DType::b8) {
          EXPECT_EQ(s[static_cast<size_t>(i)], i % 3 == 0 ? 1.0 : 0.0) << i;  // any
          EXPECT_EQ(m[static_cast<size_t>(i)], i % 3 == 0 ? 1.0 : 0.0) << i;
        } else {
          EXPECT_EQ(s[static_cast<size_t>(i)], k * n * (n + 1) / 2) << i;
          EXPECT_EQ(m[static_cast<size_t>(i)], k * n) << i;
        }
      }
      if (is_floating(dt)) {
        Tensor mean = values(dt, size, r);
        dist::all_reduce(mean, dist::ReduceOp::Mean);
        const std::vector<double> a = as_doubles(mean);
        for (int64_t i = 0; i < size; ++i)
          EXPECT_EQ(a[static_cast<size_t>(i)], static_cast<double>(i % 5) * (n + 1) / 2) << i;
      }
    }
  }
}

TEST(ProcessGroup, BroadcastFromEveryRoot) {
  const int n = dist::world_size(), r = dist::rank();
  for (int root = 0; root < n; ++root) {
    for (DType dt : kAll) {
      for (int64_t size : kSizes) {
        SCOPED_TRACE(std::to_string(root) + " " + dtype_name(dt) + " x " + std::to_string(size));
        Tensor t = values(dt, size, r);
        dist::broadcast(t, root);
        EXPECT_EQ(as_doubles(t), as_doubles(values(dt, size, root)));
      }
    }
  }
}

// Each rank writes a file, then waits at the barrier: after it every rank's file is there.
TEST(ProcessGroup, BarrierWaitsForEveryRank) {
  const int n = dist::world_size(), r = dist::rank();
  Tensor job = full({1}, static_cast<double>(::getpid()), TensorOptions(DType::i64));
  dist::broadcast(job, 0);  // one name for the whole job
  const fs::path dir = fs::temp_directory_path() / ("ember_dist_barrier_" + std::to_string(job.item<int64_t>()));
  fs::create_directories(dir);
  if (r == n - 1) ::usleep(200 * 1000);  // the last rank comes late
  std::ofstream(dir / std::to_string(r)) << r;
  dist::barrier();
  for (int k = 0; k < n; ++k) EXPECT_TRUE(fs::exists(dir / std::to_string(k))) << k;
  dist::barrier();
  if (r == 0) fs::remove_all(dir);
}

TEST(ProcessGroup, MisuseIsAClearError) {
  auto message = [](auto fn) -> std::string {
    try {
      fn();
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  Tensor grid = zeros({3, 4});
  EXPECT_NE(message([&] { dist::all_reduce(grid.t()); }).find("is not contiguous"), std::string::npos);
  EXPECT_NE(message([&] { dist::all_reduce(zeros({2}, DType::i64), dist::ReduceOp::Mean); })
                .find("Mean needs a floating tensor, got i64"),
            std::string::npos);
  EXPECT_NE(message([&] { dist::broadcast(grid, dist::world_size()); }).find("is not a rank of a world of"),
            std::string::npos);
  EXPECT_NE(message([&] { dist::all_reduce(Tensor()); }).find("undefined"), std::string::npos);
}

TEST(ProcessGroup, HostSharedBuffersSumRangesInPlace) {
  // Buffers every rank on the host maps (the ranks of this test share one host): a range's sum,
  // times the scale, lands in every rank's buffer; the rest stays as it was.
  const int n = dist::world_size(), r = dist::rank();
  std::string why;
  if (n == 1) {
    EXPECT_EQ(dist::detail::HostBuffers::create(10, DType::f32, &why), nullptr);
    EXPECT_EQ(why, "a world of one");
    return;
  }
  EXPECT_EQ(dist::detail::HostBuffers::create(10, DType::bf16, &why), nullptr);
  EXPECT_EQ(why, "dtype bf16");
  for (const DType dt : {DType::f32, DType::f64}) {
    for (const int64_t size : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{100003}}) {
      auto hb = dist::detail::HostBuffers::create(size, dt, &why);
      ASSERT_NE(hb, nullptr) << why;
      ASSERT_EQ(hb->mine().numel(), size);
      hb->mine().copy_(values(dt, size, r));
      const int64_t offset = size > 3 ? 3 : 0, len = size - offset - (size > 5 ? 2 : 0);
      hb->all_reduce_sum(offset, len, 0.5);
      hb->all_reduce_sum(0, 0);  // an empty range is a no-op
      const std::vector<double> got = as_doubles(hb->mine());
      for (int64_t i = 0; i < size; ++i) {
        const double own = (r + 1) * static_cast<double>(i % 5);
        const double sum = n * (n + 1) / 2.0 * static_cast<double>(i % 5) * 0.5;
        EXPECT_EQ(got[static_cast<size_t>(i)], i >= offset && i < offset + len ? sum : own)
            << dtype_name(dt) << " size " << size << " element " << i;
      }
      EXPECT_THROW(hb->all_reduce_sum(size - 1, 2), Error);  // checked before any rank waits
    }
  }
  // More than the host's shared memory holds: refused on every rank, saying why, nothing reserved.
  bool no_memory = false;
  EXPECT_EQ(dist::detail::HostBuffers::create(int64_t{1} << 50, DType::f32, &why, &no_memory), nullptr);
  EXPECT_TRUE(no_memory);
  EXPECT_NE(why.find(r == 0 ? "bytes of shared memory" : "another rank could not map the shared memory"),
            std::string::npos)
      << why;
  // The buffer outlives the object that made it as long as a tensor holds it.
  Tensor kept;
  {
    auto hb = dist::detail::HostBuffers::create(16, DType::f32, &why);
    ASSERT_NE(hb, nullptr) << why;
    kept = hb->mine();
    kept.fill_(2.0);
  }
  EXPECT_EQ(sum(kept).item_double(), 32.0);
}

}  // namespace
}  // namespace ember
