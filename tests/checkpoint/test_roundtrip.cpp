// Round trips through the checkpoint writer and reader: every dtype, 0-d, empty and
// non-contiguous tensors, zlib or raw, mmap or pread, every metadata kind; weights-only loading,
// atomic replacement, file permissions, and the writer's refusals.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>

#include "ember/checkpoint/checkpoint.h"
#include "tests/checkpoint/golden_data.h"
#include "tests/checkpoint/util.h"
#include "tests/support/check.h"

namespace ember::test {
namespace {

namespace ck = ember::checkpoint;

Value basic_root() { return golden::cases_v1_0()[0].root; }
Value trainer_root() { return golden::cases_v1_0()[1].root; }

// 64x64 constant (compressible) and 4096 pseudo-random bytes (not compressible).
Value with_large_tensors(Value root) {
  std::vector<float> c(64 * 64, 0.5f);
  std::vector<uint8_t> noise(4096);
  uint64_t s = 88172645463325252ull;
  for (auto& b : noise) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    b = static_cast<uint8_t>(s);
  }
  root.as_map().at(ck::kStateDict).as_map()["big_const"] = Value(tensor_of<float>({64, 64}, c));
  root.as_map().at(ck::kStateDict).as_map()["big_noise"] = Value(tensor_of<uint8_t>({4096}, noise));
  return root;
}

struct Mode {
  bool zlib;
  bool mmap;
  int align_log2;
};

class RoundTrip : public ::testing::TestWithParam<Mode> {};

TEST_P(RoundTrip, EveryDTypeAndMetadataKind) {
  ScratchDir dir;
  Mode m = GetParam();
  Value root = with_large_tensors(basic_root());
  ck::SaveOptions so;
  so.compression = m.zlib ? ck::Compression::zlib : ck::Compression::none;
  so.align_log2 = m.align_log2;
  std::string path = dir.file("rt.ckpt");
  ck::save(path, root, so);

  ck::Reader r(path, {.verify = ck::Verify::all, .mmap = m.mmap});
  EXPECT_EQ(r.format_major(), 1);
  EXPECT_EQ(r.format_minor(), 0);
  EXPECT_EQ(r.align_log2(), m.align_log2);
  for (auto& t : r.tensors()) EXPECT_EQ(t.offset % (uint64_t{1} << m.align_log2), 0u) << t.name;
  Value back = r.load();
  EXPECT_TRUE(back == root) << back.repr() << "\n vs \n" << root.repr();

  const ck::TensorInfo& c = r.tensor_info(ck::kStateDict, "big_const");
  const ck::TensorInfo& n = r.tensor_info(ck::kStateDict, "big_noise");
  EXPECT_EQ(c.compressed, m.zlib);
  EXPECT_FALSE(n.compressed);  // zlib cannot shrink noise, so it is stored raw
  EXPECT_EQ(n.stored_bytes, 4096u);
  if (m.zlib) EXPECT_LT(c.stored_bytes, 200u);
  else EXPECT_EQ(c.stored_bytes, 64u * 64 * 4);

  // Spot checks of kinds and special values that == alone would not explain.
  const Value& sd = back.at(ck::kStateDict);
  EXPECT_EQ(sd.at("scalar").as_tensor().dim(), 0);
  EXPECT_EQ(sd.at("scalar").as_tensor().item<double>(), 42.5);
  EXPECT_EQ(sd.at("empty").as_tensor().shape(), Shape({0, 3}));
  EXPECT_EQ(sd.at("h_bool").as_tensor().dtype(), DType::b8);
  const double* b = sd.at("b_f64").as_tensor().data_ptr<double>();
  EXPECT_TRUE(std::isnan(b[0]));
  EXPECT_TRUE(std::isinf(b[1]));
  EXPECT_TRUE(std::signbit(b[2]));
  const Value& hp = back.at(ck::kHyperParameters);
  EXPECT_TRUE(hp.at("null").is_null());
  EXPECT_EQ(hp.at("imin").as_int(), std::numeric_limits<int64_t>::min());
  EXPECT_TRUE(std::isnan(hp.at("nan").as_double()));
  EXPECT_EQ(hp.at("b").as_bytes().data.size(), 256u);
  EXPECT_TRUE(hp.at("empty_b").as_bytes().data.empty());
  EXPECT_EQ(hp.at("s").as_string(), "h\xC3\xA9llo \xE2\x9C\x93");
  EXPECT_EQ(hp.at("").as_string(), "empty key");
  EXPECT_EQ(hp.at("list").as_list().size(), 5u);
}

INSTANTIATE_TEST_SUITE_P(Modes, RoundTrip,
                         ::testing::Values(Mode{false, true, 6}, Mode{false, false, 6}, Mode{true, true, 6},
                                           Mode{true, false, 6}, Mode{false, true, 12}, Mode{true, false, 16}),
                         [](const auto& info) {
                           return std::string(info.param.zlib ? "zlib" : "raw") + (info.param.mmap ? "_mmap" : "_pread") +
                                  "_align" + std::to_string(info.param.align_log2);
                         });

TEST(RoundTripTensors, NonContiguousTensorsAreStoredInLogicalOrder) {
  ScratchDir dir;
  std::vector<float> v(12);
  for (int i = 0; i < 12; ++i) v[i] = static_cast<float>(i);
  Tensor base = tensor_of<float>({3, 4}, v);
  Tensor transposed = base.t();                 // (4, 3), strides (1, 4)
  Tensor stepped = base.slice(1, 0, 4, 2);      // (3, 2), strides (4, 2)
  Tensor broadcast = base.select(0, 1).unsqueeze(0).expand({2, 4});  // stride 0
  ASSERT_FALSE(transposed.is_contiguous());
  ASSERT_FALSE(stepped.is_contiguous());
  ValueMap sd{{"t", Value(transposed)}, {"s", Value(stepped)}, {"b", Value(broadcast)}};
  std::string path = dir.file("nc.ckpt");
  ck::save(path, Value(ValueMap{{ck::kStateDict, Value(sd)}}));
  Value back = ck::load(path);
  Tensor t = back.at(ck::kStateDict).at("t").as_tensor();
  Tensor s = back.at(ck::kStateDict).at("s").as_tensor();
  Tensor b = back.at(ck::kStateDict).at("b").as_tensor();
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{0, 2, 4, 6, 8, 10}));
  EXPECT_EQ(b.to_vector<float>(), (std::vector<float>{4, 5, 6, 7, 4, 5, 6, 7}));
  EXPECT_TRUE(bit_equal(t, transposed.contiguous()));
}

TEST(RoundTripTensors, LargeTensorChecksumsAreSplitAcrossThreads) {
  // 40 MiB: above the 16 MiB at which mapped CRCs are computed in 8 MiB chunks and combined.
  ScratchDir dir;
  std::string path = dir.file("big.ckpt");
  const int64_t n = 10 << 20;
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<float>(i % 1000) * 0.5f;
  ck::save(path, Value(ValueMap{{ck::kStateDict, Value(ValueMap{{"w", Value(tensor_of<float>({n}, v))}})}}));
  for (bool mmap : {true, false}) {
    Tensor w = ck::Reader(path, {.mmap = mmap}).load_tensor(ck::kStateDict, "w");
    EXPECT_EQ(w.to_vector<float>(), v);
  }
  uint64_t off = ck::Reader(path).tensor_info(ck::kStateDict, "w").offset + (uint64_t{25} << 20);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(off));
    f.put(static_cast<char>(0x7F));
  }
  for (bool mmap : {true, false}) {
    try {
      ck::Reader(path, {.mmap = mmap}).load_tensor(ck::kStateDict, "w");
      ADD_FAILURE() << "a flipped byte in the fourth 8 MiB chunk went unnoticed";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("tensor 'state_dict/w': checksum mismatch"), std::string::npos) << e.what();
    }
  }
}

TEST(RoundTripTensors, MmapTensorsAreCopyOnWrite) {
  ScratchDir dir;
  std::string path = dir.file("cow.ckpt");
  ck::save(path, Value(ValueMap{{ck::kStateDict, Value(ValueMap{{"w", Value(tensor_of<float>({2}, {1, 2}))}})}}));
  {
    ck::Reader r(path, {.mmap = true});
    Tensor w = r.load_tensor(ck::kStateDict, "w");
    w.data_ptr<float>()[0] = 100.0f;  // private mapping: the file is untouched
    EXPECT_EQ(w.to_vector<float>(), (std::vector<float>{100, 2}));
  }
  ck::Reader again(path, {.verify = ck::Verify::all});
  EXPECT_EQ(again.load_tensor(ck::kStateDict, "w").to_vector<float>(), (std::vector<float>{1, 2}));
}

TEST(RoundTripTensors, TensorsOutliveTheReader) {
  ScratchDir dir;
  std::string path = dir.file("live.ckpt");
  ck::save(path, Value(ValueMap{{ck::kStateDict, Value(ValueMap{{"w", Value(tensor_of<int32_t>({3}, {7, 8, 9}))}})}}));
  Tensor w;
  {
    ck::Reader r(path, {.mmap = true});
    w = r.load_tensor(ck::kStateDict, "w");
  }
  EXPECT_EQ(w.to_vector<int64_t>(), (std::vector<int64_t>{7, 8, 9}));
}

TEST(Sections, WeightsOnlyLoadNeverReadsOptimizerData) {
  ScratchDir dir;
  std::string path = dir.file("trainer.ckpt");
  Value root = trainer_root();
  ck::save(path, root);
  // Corrupt the first byte of an optimizer moment: a full load must notice, a weights-only load
  // must not (it never reads those bytes).
  {
    ck::Reader r(path);
    const ck::TensorInfo& m = r.tensor_info(ck::kOptimizerStates, "0.state.fc1.weight.exp_avg");
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(m.offset));
    f.put(static_cast<char>(0x5A));
  }
  try {
    ck::load(path);
    ADD_FAILURE() << "corrupt optimizer state was loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'optimizer_states/0.state.fc1.weight.exp_avg': checksum mismatch"),
              std::string::npos)
        << e.what();
  }
  for (bool mmap : {true, false}) {
    ck::Reader r(path, {.mmap = mmap, .weights_only = true});
    Value w = r.load();
    EXPECT_FALSE(w.contains(ck::kOptimizerStates));
    EXPECT_FALSE(w.contains(ck::kLrSchedulers));
    EXPECT_FALSE(w.contains(ck::kCallbacks));
    EXPECT_FALSE(w.contains(ck::kRngStates));
    EXPECT_TRUE(w.at(ck::kStateDict) == root.at(ck::kStateDict));
    EXPECT_EQ(w.at(ck::kEpoch).as_int(), 3);
    EXPECT_EQ(w.at(ck::kGlobalStep).as_int(), 40);
    uint64_t weights = 0;
    for (auto& s : r.sections())
      if (s.name == ck::kStateDict) weights = s.stored_bytes;
    EXPECT_EQ(r.payload_bytes_loaded(), weights);
  }
  // Choosing sections explicitly.
  ck::Reader r(path, {.sections = {ck::kLoops, ck::kHyperParameters}});
  Value two = r.load();
  EXPECT_EQ(two.as_map().size(), 2u);
  EXPECT_EQ(two.at(ck::kHyperParameters).at("name").as_string(), "mlp");
  EXPECT_EQ(r.payload_bytes_loaded(), 0u);
}

TEST(Sections, WeightsOnlySaveLeavesTrainingStateOut) {
  ScratchDir dir;
  std::string path = dir.file("w.ckpt");
  ck::save(path, trainer_root(), {.weights_only = true});
  ck::Reader r(path);
  EXPECT_TRUE(r.weights_only());
  std::vector<std::string> names;
  for (auto& s : r.sections()) names.push_back(s.name);
  EXPECT_EQ(names, (std::vector<std::string>{"ember_version", "epoch", "extras", "global_step", "hyper_parameters",
                                             "loops", "state_dict"}));
  ck::save(dir.file("full.ckpt"), trainer_root());
  EXPECT_FALSE(ck::Reader(dir.file("full.ckpt")).weights_only());
}

TEST(Sections, SkeletonAndLookups) {
  ScratchDir dir;
  std::string path = dir.file("t.ckpt");
  ck::save(path, trainer_root());
  ck::Reader r(path);
  EXPECT_TRUE(r.has_section(ck::kOptimizerStates));
  EXPECT_FALSE(r.has_section("nope"));
  Value sk = r.skeleton(ck::kOptimizerStates);
  EXPECT_EQ(sk.as_list()[0].at("state").at("fc2.bias").at("exp_avg").at("$tensor").as_string(),
            "0.state.fc2.bias.exp_avg");
  EXPECT_EQ(sk.as_list()[0].at("state").at("fc2.bias").at("step").as_int(), 40);
  EXPECT_EQ(r.payload_bytes_loaded(), 0u);
  const ck::TensorInfo& t = r.tensor_info(ck::kStateDict, "fc1.weight");
  EXPECT_EQ(t.shape, Shape({4, 3}));
  EXPECT_EQ(t.dtype, DType::f32);
  EXPECT_EQ(t.nbytes, 48u);
  Tensor w = r.load_tensor(ck::kStateDict, "fc1.weight");
  EXPECT_EQ(w.to_vector<float>()[11], 11 * 0.125f);
  try {
    r.section("nope");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no section 'nope' (present: callbacks, ember_version, epoch"), std::string::npos)
        << e.what();
  }
  try {
    r.load_tensor(ck::kStateDict, "fc9.weight");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("section 'state_dict' has no tensor 'fc9.weight'"), std::string::npos);
  }
  // The writer adds ember_version when the caller did not.
  ck::save(dir.file("v.ckpt"), Value(ValueMap{{"x", Value(1)}}));
  EXPECT_TRUE(ck::Reader(dir.file("v.ckpt")).section(ck::kEmberVersion).is_string());
}

TEST(Atomicity, ReplacingAFileKeepsOpenReadersOnTheOldOne) {
  ScratchDir dir;
  std::string path = dir.file("a.ckpt");
  auto root = [](float v) {
    return Value(ValueMap{{ck::kStateDict, Value(ValueMap{{"w", Value(tensor_of<float>({2}, {v, v}))}})}});
  };
  ck::save(path, root(1));
  ck::Reader old(path, {.mmap = true});
  ck::save(path, root(2));
  EXPECT_EQ(old.load_tensor(ck::kStateDict, "w").to_vector<float>(), (std::vector<float>{1, 1}));
  EXPECT_EQ(ck::Reader(path).load_tensor(ck::kStateDict, "w").to_vector<float>(), (std::vector<float>{2, 2}));
  EXPECT_EQ(dir.list(), std::vector<std::string>{"a.ckpt"});  // no temporary left behind
}

TEST(Atomicity, UncommittedWritersLeaveNothing) {
  ScratchDir dir;
  std::string path = dir.file("u.ckpt");
  {
    ck::Writer w(path);
    w.add_section(ck::kStateDict, Value(ValueMap{{"w", Value(tensor_of<float>({1}, {1}))}}));
    EXPECT_EQ(dir.list().size(), 1u);  // the temporary file
    EXPECT_EQ(dir.list()[0].rfind(".u.ckpt.tmp-", 0), 0u) << dir.list()[0];
  }
  EXPECT_TRUE(dir.list().empty());
  {
    ck::Writer w(path);
    EXPECT_THROW(w.add_section(ck::kStateDict, Value(ValueMap{{"w", Value(Tensor())}})), Error);
    EXPECT_THROW(w.commit(), Error);  // a failed writer cannot commit
  }
  EXPECT_TRUE(dir.list().empty());
  ck::Writer w(path);
  w.abandon();
  EXPECT_TRUE(dir.list().empty());
}

TEST(Atomicity, FilesRespectTheUmask) {
  ScratchDir dir;
  for (mode_t mask : {mode_t{022}, mode_t{077}, mode_t{002}}) {
    mode_t old = ::umask(mask);
    std::string path = dir.file("m" + std::to_string(mask) + ".ckpt");
    ck::save(path, Value(ValueMap{{"x", Value(1)}}));
    ::umask(old);
    struct stat st;
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0666 & ~mask) << "umask " << mask;
  }
}

TEST(Atomicity, SweepRemovesOnlyTempFilesOfDeadWriters) {
  ScratchDir dir;
  std::string path = dir.file("s.ckpt");
  write_bytes(dir.file(".s.ckpt.tmp-999999999-abc"), {1});                          // no such pid
  write_bytes(dir.file(".s.ckpt.tmp-" + std::to_string(::getpid()) + "-abc"), {1});  // alive (us)
  write_bytes(dir.file(".other.ckpt.tmp-999999999-abc"), {1});                      // another target
  EXPECT_EQ(ck::sweep_stale_temp_files(path), 1u);
  auto names = dir.list();
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{".other.ckpt.tmp-999999999-abc",
                                             ".s.ckpt.tmp-" + std::to_string(::getpid()) + "-abc"}));
}

std::string save_error(const Value& root, const ck::SaveOptions& o = {}) {
  ScratchDir dir;
  try {
    ck::save(dir.file("e.ckpt"), root, o);
  } catch (const Error& e) {
    EXPECT_TRUE(dir.list().empty()) << "a failed save left files behind";
    return e.what();
  }
  return "";
}

TEST(WriterErrors, NamesTheProblem) {
  Tensor t = tensor_of<float>({1}, {1});
  EXPECT_NE(save_error(Value(ValueMap{{"sd", Value(ValueMap{{"a.b", Value(t)}, {"a", Value(ValueMap{{"b", Value(t)}})}})}}))
                .find("two tensors map to the dotted name 'a.b'"),
            std::string::npos);
  EXPECT_NE(save_error(Value(ValueMap{{"sd", Value(ValueMap{{"w", Value(Tensor())}})}})).find("the tensor at 'w' is undefined"),
            std::string::npos);
  EXPECT_NE(save_error(Value(ValueMap{{"hp", Value(ValueMap{{"s", Value(std::string("\xff"))}})}}))
                .find("section 'hp' at path 's': string is not valid UTF-8"),
            std::string::npos);
  EXPECT_NE(save_error(Value(ValueMap{{"bare", Value(t)}})).find("wrap the tensor in a map"), std::string::npos);
  EXPECT_NE(save_error(Value(ValueMap{{"hp", Value(ValueMap{{"a\nb", Value(1)}})}})).find("contains control byte 10"),
            std::string::npos);
  EXPECT_NE(save_error(Value(ValueList{})).find("the root must be a map of sections"), std::string::npos);
  Value deep = Value(1);
  for (int i = 0; i < 70; ++i) deep = Value(ValueList{deep});
  EXPECT_NE(save_error(Value(ValueMap{{"d", deep}})).find("nesting deeper than 64 levels"), std::string::npos);
  EXPECT_NE(save_error(Value(ValueMap{{"x", Value(1)}}), {.align_log2 = 5}).find("align_log2 is 5"), std::string::npos);
  ScratchDir dir;
  ck::Writer w(dir.file("d.ckpt"));
  w.add_section("x", Value(1));
  EXPECT_THROW(w.add_section("x", Value(2)), Error);
  EXPECT_THROW(ck::Writer(dir.path() + "/no/such/dir/x.ckpt"), Error);
}

}  // namespace
}  // namespace ember::test
