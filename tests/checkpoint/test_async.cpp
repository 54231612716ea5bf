// checkpoint::AsyncSaver: its files are byte for byte what save() writes, its snapshot is not torn
// by changes made right after save() returns, and a failed background write surfaces at the next
// save() or wait() with the previous file intact and no temporary file left.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "ember/checkpoint/async_saver.h"
#include "ember/checkpoint/checkpoint.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "tests/checkpoint/util.h"
#include "tests/support/file_size_limit.h"

namespace ember::test {
namespace {

namespace ck = ember::checkpoint;

constexpr std::array<uint8_t, 16> kFileId = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

// A state with what trainer files hold and more: dtypes, a view that is not contiguous, an empty
// and a scalar tensor, nested lists and maps, bytes, strings and numbers.
Value sample_state(uint64_t seed) {
  Generator g(seed);
  Tensor w = randn({64, 48}, {}, &g);
  ValueMap sd{{"fc.weight", Value(w)},
              {"fc.bias", Value(randn({48}, {}, &g))},
              {"fc.weight_t", Value(w.t())},  // a transposed view: copied contiguous
              {"bn.num_batches_tracked", Value(full({}, 7, DType::i64))},
              {"empty", Value(zeros({0, 3}))},
              {"half", Value(randn({33}, {}, &g).to(DType::f16))},
              {"mask", Value(ones({5}, DType::b8))}};
  ValueMap moments{{"step", Value(int64_t{10})},
                   {"exp_avg", Value(randn({64, 48}, {}, &g))},
                   {"exp_avg_sq", Value(rand({64, 48}, {}, &g))}};
  ValueMap opt{{"state", Value(ValueMap{{"0", Value(moments)}})},
               {"param_groups", Value(ValueList{Value(ValueMap{{"lr", Value(0.01)}, {"params", Value(ValueList{Value(0)})}})})}};
  ValueMap root{{ck::kStateDict, Value(sd)},
                {ck::kOptimizerStates, Value(ValueList{Value(opt)})},
                {ck::kRngStates, Value(ValueMap{{"default", Value(Bytes{{1, 2, 3, 250}})}})},
                {ck::kHyperParameters, Value(ValueMap{{"name", Value("net")}, {"depth", Value(3)}})},
                {ck::kGlobalStep, Value(int64_t{10})}};
  return Value(std::move(root));
}

TEST(AsyncSaver, FilesAreByteIdenticalToSynchronousSaves) {
  ScratchDir dir;
  ck::AsyncSaver saver;
  std::vector<ck::SaveOptions> variants = {
      {.file_id = kFileId},
      {.compression = ck::Compression::zlib, .min_compress_bytes = 64, .file_id = kFileId},
      {.align_log2 = 12, .file_id = kFileId},
      {.weights_only = true, .file_id = kFileId},
  };
  int n = 0;
  for (uint64_t seed : {1u, 2u}) {
    Value state = sample_state(seed);
    for (const auto& opt : variants) {
      std::string sync_path = dir.file("sync" + std::to_string(n) + ".ckpt");
      std::string async_path = dir.file("async" + std::to_string(n) + ".ckpt");
      ++n;
      ck::save(sync_path, state, opt);
      saver.save(async_path, state, opt);
      saver.wait();
      EXPECT_EQ(read_bytes(sync_path), read_bytes(async_path)) << "variant " << n;
    }
  }
  // The buffers are reused: the same state twice allocates nothing new.
  EXPECT_EQ(saver.stats().saves, static_cast<uint64_t>(n));
  EXPECT_EQ(saver.stats().completed, static_cast<uint64_t>(n));
}

TEST(AsyncSaver, ChangesAfterSaveReturnsDoNotReachTheFile) {
  ScratchDir dir;
  ck::AsyncSaver saver;
  Value state = sample_state(3);
  const std::string expected = dir.file("expected.ckpt"), path = dir.file("async.ckpt");
  ck::save(expected, state, {.file_id = kFileId});
  Tensor w = state.at(ck::kStateDict).at("fc.weight").as_tensor();
  Tensor m = state.at(ck::kOptimizerStates).as_list()[0].at("state").at("0").at("exp_avg").as_tensor();
  for (bool deferred : {false, true}) {
    std::vector<const void*> later;
    if (deferred) later = {w.data_ptr(), m.data_ptr()};
    Tensor w0 = w.clone(), m0 = m.clone();
    saver.save(path, state, {.file_id = kFileId}, later);
    if (deferred) saver.wait_for_snapshot();  // the contract for the tensors left to the worker
    // Every element changes while the file is still being written (typically).
    w.copy_(add(w, 1.0));
    m.copy_(mul(m, -3.0));
    state.as_map()[ck::kStateDict].as_map()["added"] = Value(ones({2}));  // the tree itself changes too
    saver.wait();
    EXPECT_EQ(read_bytes(path), read_bytes(expected)) << (deferred ? "deferred copy" : "copy in save()");
    EXPECT_EQ(saver.stats().staged_later_bytes, deferred ? w.nbytes() + m.nbytes() : 0u);
    w.copy_(w0);
    m.copy_(m0);
    state.as_map()[ck::kStateDict].as_map().erase("added");
  }
}

TEST(AsyncSaver, AFailedWriteSurfacesAtTheNextSaveWithThePreviousFileIntact) {
  ScratchDir dir;
  ck::AsyncSaver saver;
  Value state = sample_state(4);
  const std::string path = dir.file("run.ckpt");
  saver.save(path, state);
  saver.wait();
  const std::vector<uint8_t> good = read_bytes(path);
  {
    FileSizeLimit limit(4096);  // far below the file's size
    saver.save(path, state);    // returns: the failure happens in the background
    while (saver.busy()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  try {
    saver.save(path, state);
    FAIL() << "the failed write was not reported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("File too large"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(".run.ckpt.tmp-"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_bytes(path), good);
  EXPECT_EQ(dir.list(), std::vector<std::string>{"run.ckpt"});
  // Reported once: the saver works again.
  saver.save(path, sample_state(5));
  saver.wait();
  EXPECT_NO_THROW(ck::Reader(path, {.verify = ck::Verify::all}).verify_all());

  // wait() reports it as well.
  {
    FileSizeLimit limit(4096);
    saver.save(path, state);
    while (saver.busy()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_THROW(saver.wait(), Error);
  EXPECT_NO_THROW(saver.wait());
  EXPECT_EQ(dir.list(), std::vector<std::string>{"run.ckpt"});
}

TEST(AsyncSaver, FilesToRemoveGoOnlyOnceTheNewFileIsCommitted) {
  ScratchDir dir;
  ck::AsyncSaver saver;
  Value state = sample_state(6);
  auto touch = [&](const std::string& name) { write_bytes(dir.file(name), {1, 2, 3}); };
  auto names = [&] {
    std::vector<std::string> n = dir.list();
    std::sort(n.begin(), n.end());
    return n;
  };
  touch("old1.ckpt");
  saver.save(dir.file("new1.ckpt"), state);
  saver.remove_after_commit(dir.file("old1.ckpt"));
  saver.wait();
  EXPECT_EQ(names(), std::vector<std::string>{"new1.ckpt"});
  // A failed write keeps them, also when the removal is asked for after the failure happened.
  touch("old2.ckpt");
  touch("old3.ckpt");
  {
    FileSizeLimit limit(4096);
    saver.save(dir.file("new2.ckpt"), state);
    saver.remove_after_commit(dir.file("old2.ckpt"));
    while (saver.busy()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    saver.remove_after_commit(dir.file("old3.ckpt"));
  }
  EXPECT_THROW(saver.wait(), Error);
  EXPECT_EQ(names(), (std::vector<std::string>{"new1.ckpt", "old2.ckpt", "old3.ckpt"}));
  // Idle: at once. A file that is already gone is no warning.
  saver.remove_after_commit(dir.file("old2.ckpt"));
  saver.remove_after_commit(dir.file("never-there.ckpt"));
  EXPECT_EQ(names(), (std::vector<std::string>{"new1.ckpt", "old3.ckpt"}));
  EXPECT_TRUE(saver.take_warnings().empty());
  // One that cannot be deleted (a directory) is a warning, collected once; the save succeeds.
  std::filesystem::create_directory(dir.file("taken.ckpt"));
  saver.save(dir.file("new3.ckpt"), state);
  saver.remove_after_commit(dir.file("taken.ckpt"));
  EXPECT_NO_THROW(saver.wait());
  std::vector<std::string> w = saver.take_warnings();
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("cannot remove " + dir.file("taken.ckpt")), std::string::npos) << w[0];
  EXPECT_TRUE(saver.take_warnings().empty());
}

TEST(AsyncSaver, BadStateIsReportedLikeSave) {
  ScratchDir dir;
  ck::AsyncSaver saver;
  EXPECT_THROW(saver.save(dir.file("x.ckpt"), Value(3)), Error);  // not a map: at once
  // An invalid key is found by the writer: at the next wait.
  saver.save(dir.file("x.ckpt"), Value(ValueMap{{"s", Value(ValueMap{{"a.b", Value(ones({1}))}, {"a", Value(ValueMap{{"b", Value(ones({1}))}})}})}}));
  try {
    saver.wait();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("two tensors map to the dotted name 'a.b'"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(dir.list().empty());
}

}  // namespace
}  // namespace ember::test
