// Crash safety: a child process saves checkpoint after checkpoint to one path and is killed with
// SIGKILL at random instants; after every kill the path must hold a complete checkpoint that
// verifies, of a version no older than the one seen before; with synchronous saves and with
// AsyncSaver (the write on a background thread). Temporary files of the dead writers
// are then swept away.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

#include "ember/checkpoint/checkpoint.h"
#include "tests/checkpoint/util.h"

namespace ember::test {
namespace {

namespace ck = ember::checkpoint;

constexpr int64_t kNumel = 1 << 20;  // 4 MiB per checkpoint, so kills often land mid-write

// Checks that path holds a sound checkpoint written by the crash writer; returns its version.
int64_t check_complete(const std::string& path) {
  ck::Reader r(path, {.verify = ck::Verify::all});
  Value root = r.load();
  int64_t v = root.at(ck::kGlobalStep).as_int();
  EXPECT_EQ(root.at(ck::kStateDict).at("version").as_tensor().item<int64_t>(), v);
  Tensor w = root.at(ck::kStateDict).at("w").as_tensor();
  EXPECT_EQ(w.numel(), kNumel);
  const float* p = w.data_ptr<float>();
  for (int64_t i = 0; i < kNumel; i += 4099) EXPECT_EQ(p[i], static_cast<float>(v)) << "element " << i;
  EXPECT_EQ(p[kNumel - 1], static_cast<float>(v));
  return v;
}

class CrashSafety : public ::testing::TestWithParam<bool> {};  // asynchronous saves?

TEST_P(CrashSafety, SigkillAtRandomInstantsNeverLeavesATornFile) {
  const bool async = GetParam();
  ScratchDir dir;
  std::string path = dir.file("run.ckpt");
  // Version 0, written by this process, so the path exists before the first kill. Its duration
  // scales the kill delays, so that kills land before, during and after commits on any machine.
  auto t0 = std::chrono::steady_clock::now();
  {
    Tensor w = zeros({kNumel});
    Tensor v = zeros({}, DType::i64);
    ck::save(path, Value(ValueMap{{ck::kStateDict, Value(ValueMap{{"w", Value(w)}, {"version", Value(v)}})},
                                 {ck::kGlobalStep, Value(int64_t{0})}}));
  }
  auto save_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int64_t> delay_us(0, std::max<int64_t>(20000, 4 * save_us + 10000));
  const int rounds = 40;
  int64_t last = 0;
  int mid_write = 0, progressed = 0;
  for (int round = 1; round <= rounds; ++round) {
    std::string start = std::to_string(int64_t{round} * 1000000);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::execl(EMBER_CKPT_CRASH_WRITER, EMBER_CKPT_CRASH_WRITER, path.c_str(), start.c_str(),
              std::to_string(kNumel).c_str(), async ? "async" : static_cast<char*>(nullptr),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "writer exited on its own: " << status;

    int64_t v = check_complete(path);
    EXPECT_GE(v, last) << "round " << round << ": an older version reappeared";
    progressed += v > last;
    last = v;
    // A killed writer leaves its temporary file: sweep it (its pid is gone).
    mid_write += static_cast<int>(ck::sweep_stale_temp_files(path));
    EXPECT_EQ(dir.list(), std::vector<std::string>{"run.ckpt"}) << "round " << round;
  }
  RecordProperty("kills_mid_write", mid_write);
  RecordProperty("kills_after_progress", progressed);
  // The random delays must exercise both cases, or the test proves little (typically about half
  // the kills land mid-write and most rounds commit at least one new version).
  EXPECT_GE(mid_write, 3);
  EXPECT_GE(progressed, 3);
  std::printf("[crash] %s saves: %d kills, %d left a temporary file (killed mid-write), %d after new versions\n",
              async ? "asynchronous" : "synchronous", rounds, mid_write, progressed);
}

INSTANTIATE_TEST_SUITE_P(Saves, CrashSafety, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Async" : "Sync"; });

}  // namespace
}  // namespace ember::test
