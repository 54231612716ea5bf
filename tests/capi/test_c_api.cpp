// The C API (<ember/c.h>) inside the build tree, so that the sanitizer jobs run it too: the JSON of
// every Value kind, tensor listing and reading, a stored model's forward pass bit-identical to
// the C++ one, and each error path's status and message. tests/consumer/ tests the same API from
// C11 and Python against the installed library.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "ember/c.h"
#include "ember/checkpoint/checkpoint.h"
#include "ember/nn/nn.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "ember/runtime/version.h"
#include "ember/train/module_io.h"

namespace fs = std::filesystem;
using namespace ember;

namespace {

class CApi : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("ember_c_api_" + std::to_string(::getpid()) + "_" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  std::string file(const std::string& name) const { return (dir / name).string(); }
  fs::path dir;
};

std::string hparams_json(ember_checkpoint* c) {
  size_t length = 0;
  EXPECT_EQ(ember_checkpoint_hparams_json(c, nullptr, 0, &length), EMBER_ERROR_BUFFER_TOO_SMALL);
  std::string text(length + 1, '\0');
  // One byte short is still too small (the NUL needs room).
  EXPECT_EQ(ember_checkpoint_hparams_json(c, text.data(), length, &length), EMBER_ERROR_BUFFER_TOO_SMALL);
  EXPECT_EQ(ember_checkpoint_hparams_json(c, text.data(), text.size(), &length), EMBER_OK) << ember_last_error();
  text.resize(length);
  return text;
}

}  // namespace

TEST_F(CApi, VersionIsTheLibrarys) {
  int major = -1, minor = -1, patch = -1;
  ASSERT_EQ(ember_version(&major, &minor, &patch), EMBER_OK);
  EXPECT_EQ(major, version().major);
  EXPECT_EQ(minor, version().minor);
  EXPECT_EQ(patch, version().patch);
  EXPECT_EQ(ember_version(nullptr, nullptr, nullptr), EMBER_OK);
  EXPECT_STREQ(ember_last_error(), "");
}

TEST_F(CApi, HyperparametersAsJsonForEveryValueKind) {
  ValueMap hp;
  hp["int"] = Value(int64_t{-3});
  hp["float"] = Value(0.1);
  hp["integral_float"] = Value(2.0);
  hp["nan"] = Value(std::numeric_limits<double>::quiet_NaN());
  hp["inf"] = Value(-std::numeric_limits<double>::infinity());
  hp["bool"] = Value(true);
  hp["none"] = Value();
  hp["text"] = Value(std::string("a \"quoted\"\\ line\n\ttab \x01 caf\xc3\xa9"));
  hp["bytes"] = Value(Bytes{{0x00, 0xab, 0xff}});
  hp["list"] = Value(ValueList{Value(int64_t{1}), Value(std::string("x")), Value(ValueList{})});
  hp["nested"] = Value(ValueMap{{"k", Value(1e-5)}});
  hp["tensor"] = Value(zeros({2, 3}));
  Value root;
  root[checkpoint::kHyperParameters] = Value(hp);
  checkpoint::save(file("hp.ckpt"), root, {.durable = false});

  ember_checkpoint* c = nullptr;
  ASSERT_EQ(ember_checkpoint_open(file("hp.ckpt").c_str(), &c), EMBER_OK) << ember_last_error();
  // The section comes back without its tensors' data in the JSON, and keys in map order.
  EXPECT_EQ(hparams_json(c),
            "{\"bool\": true, \"bytes\": {\"$bytes\": \"00abff\"}, \"float\": 0.1, \"inf\": -Infinity, "
            "\"int\": -3, \"integral_float\": 2.0, \"list\": [1, \"x\", []], \"nan\": NaN, "
            "\"nested\": {\"k\": 1e-05}, \"none\": null, "
            "\"tensor\": {\"$tensor\": \"f32(2, 3)\"}, "
            "\"text\": \"a \\\"quoted\\\"\\\\ line\\n\\ttab \\u0001 caf\xc3\xa9\"}");
  size_t count = 99;
  ASSERT_EQ(ember_checkpoint_tensor_count(c, &count), EMBER_OK);
  EXPECT_EQ(count, 1u);  // the hyperparameters' tensor
  EXPECT_EQ(ember_checkpoint_close(c), EMBER_OK);

  // A file without hyperparameters gives "{}".
  Value weights;
  weights[checkpoint::kStateDict] = Value(ValueMap{{"w", Value(ones({2}))}});
  checkpoint::save(file("w.ckpt"), weights, {.durable = false});
  ASSERT_EQ(ember_checkpoint_open(file("w.ckpt").c_str(), &c), EMBER_OK);
  EXPECT_EQ(hparams_json(c), "{}");
  ember_checkpoint_close(c);
}

TEST_F(CApi, ListsAndReadsTensors) {
  Value root;
  root[checkpoint::kStateDict] =
      Value(ValueMap{{"fc.weight", Value(from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3}))},
                     {"steps", Value(from_vector(std::vector<int64_t>{7, -8}, {2}))}});
  checkpoint::save(file("t.ckpt"), root, {.durable = false});
  ember_checkpoint* c = nullptr;
  ASSERT_EQ(ember_checkpoint_open(file("t.ckpt").c_str(), &c), EMBER_OK);
  size_t count = 0;
  ASSERT_EQ(ember_checkpoint_tensor_count(c, &count), EMBER_OK);
  ASSERT_EQ(count, 2u);
  ember_tensor_info info{};
  ASSERT_EQ(ember_checkpoint_tensor_info(c, 0, &info), EMBER_OK);
  EXPECT_STREQ(info.name, "state_dict/fc.weight");
  EXPECT_EQ(info.dtype, EMBER_F32);
  ASSERT_EQ(info.ndim, 2);
  EXPECT_EQ(info.shape[0], 2);
  EXPECT_EQ(info.shape[1], 3);
  EXPECT_EQ(info.nbytes, 24u);
  ASSERT_EQ(ember_checkpoint_tensor_info(c, 1, &info), EMBER_OK);
  EXPECT_STREQ(info.name, "state_dict/steps");
  EXPECT_EQ(info.dtype, EMBER_I64);

  float w[6] = {};
  ASSERT_EQ(ember_checkpoint_read_tensor(c, "state_dict/fc.weight", w, sizeof w), EMBER_OK);
  EXPECT_EQ(std::vector<float>(w, w + 6), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  int64_t s[2] = {};
  ASSERT_EQ(ember_checkpoint_read_tensor(c, "state_dict/steps", s, sizeof s), EMBER_OK);
  EXPECT_EQ(s[0], 7);
  EXPECT_EQ(s[1], -8);

  EXPECT_EQ(ember_checkpoint_read_tensor(c, "state_dict/fc.weight", w, 23), EMBER_ERROR_BUFFER_TOO_SMALL);
  EXPECT_STREQ(ember_last_error(), "ember_checkpoint_read_tensor: 'state_dict/fc.weight' needs 24 bytes; the buffer has 23");
  EXPECT_EQ(ember_checkpoint_read_tensor(c, "fc.weight", w, sizeof w), EMBER_ERROR_NOT_FOUND);
  EXPECT_NE(std::string(ember_last_error()).find("has no tensor 'fc.weight'"), std::string::npos);
  EXPECT_EQ(ember_checkpoint_tensor_info(c, 2, &info), EMBER_ERROR_NOT_FOUND);
  EXPECT_NE(std::string(ember_last_error()).find("index 2 is out of range"), std::string::npos);
  EXPECT_EQ(ember_checkpoint_read_tensor(c, nullptr, w, sizeof w), EMBER_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(ember_last_error(), "ember_checkpoint_read_tensor: name is NULL");
  EXPECT_EQ(ember_checkpoint_tensor_count(nullptr, &count), EMBER_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(ember_checkpoint_close(c), EMBER_OK);
}

TEST_F(CApi, BadFilesFailWithTheirPath) {
  ember_checkpoint* c = reinterpret_cast<ember_checkpoint*>(&c);  // overwritten with NULL on failure
  EXPECT_EQ(ember_checkpoint_open(file("missing.ckpt").c_str(), &c), EMBER_ERROR_FAILED);
  EXPECT_EQ(c, nullptr);
  EXPECT_NE(std::string(ember_last_error()).find(file("missing.ckpt")), std::string::npos);
  std::ofstream(file("junk.ckpt")) << "this is not a checkpoint, just some text that is long enough";
  EXPECT_EQ(ember_checkpoint_open(file("junk.ckpt").c_str(), &c), EMBER_ERROR_FAILED);
  EXPECT_NE(std::string(ember_last_error()).find("junk.ckpt"), std::string::npos);
  ember_model* m = nullptr;
  EXPECT_EQ(ember_model_load(file("junk.ckpt").c_str(), nullptr, &m), EMBER_ERROR_FAILED);
  EXPECT_EQ(m, nullptr);
}

TEST_F(CApi, ModelForwardMatchesTheCppApiBitForBit) {
  manual_seed(3);
  auto net = std::make_shared<nn::Sequential>(std::make_shared<nn::Conv2d>(1, 4, 3, 1, 1), std::make_shared<nn::ReLU>(),
                                              std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(4 * 5 * 5, 3));
  net->eval();
  nn::save(*net, file("net.ckpt"), {.durable = false});
  const Tensor x = randn({2, 1, 5, 5});
  const std::vector<float> want = net->forward(x).to_vector<float>();

  ember_model* m = nullptr;
  ASSERT_EQ(ember_model_load(file("net.ckpt").c_str(), "cpu", &m), EMBER_OK) << ember_last_error();
  const std::vector<float> in = x.to_vector<float>();
  const int64_t shape[4] = {2, 1, 5, 5};
  std::vector<float> out(6, -1.f);
  int64_t out_shape[EMBER_MAX_NDIM] = {};
  int32_t out_ndim = 0;
  ASSERT_EQ(ember_model_forward(m, in.data(), shape, 4, out.data(), out.size(), out_shape, &out_ndim), EMBER_OK)
      << ember_last_error();
  EXPECT_EQ(out, want);
  EXPECT_EQ(out_ndim, 2);
  EXPECT_EQ(out_shape[0], 2);
  EXPECT_EQ(out_shape[1], 3);

  // Asking with no buffer reports the shape (how a caller sizes its buffer).
  out_ndim = 0;
  EXPECT_EQ(ember_model_forward(m, in.data(), shape, 4, nullptr, 0, out_shape, &out_ndim), EMBER_ERROR_BUFFER_TOO_SMALL);
  EXPECT_EQ(out_ndim, 2);
  EXPECT_STREQ(ember_last_error(), "ember_model_forward: the output (2, 3) needs 6 floats; output holds 0");

  const int64_t wrong[4] = {2, 3, 5, 5};
  const std::vector<float> wrong_input(2 * 3 * 5 * 5, 0.5f);  // the input holds what its shape says
  EXPECT_EQ(ember_model_forward(m, wrong_input.data(), wrong, 4, out.data(), out.size(), out_shape, &out_ndim),
            EMBER_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(ember_last_error()).find("input of shape (2, 3, 5, 5)"), std::string::npos) << ember_last_error();
  const int64_t negative[4] = {2, -1, 5, 5};
  EXPECT_EQ(ember_model_forward(m, in.data(), negative, 4, out.data(), out.size(), out_shape, &out_ndim),
            EMBER_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(ember_last_error(), "ember_model_forward: input_shape[1] is negative (-1)");
  EXPECT_EQ(ember_model_forward(m, in.data(), shape, 9, out.data(), out.size(), out_shape, &out_ndim),
            EMBER_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(ember_model_forward(m, in.data(), nullptr, 4, out.data(), out.size(), out_shape, &out_ndim),
            EMBER_ERROR_INVALID_ARGUMENT);

  std::string text(4096, '\0');
  size_t length = 0;
  ASSERT_EQ(ember_model_describe(m, text.data(), text.size(), &length), EMBER_OK);
  text.resize(length);
  EXPECT_EQ(text, net->repr());
  char small[8];
  EXPECT_EQ(ember_model_describe(m, small, sizeof small, &length), EMBER_ERROR_BUFFER_TOO_SMALL);
  EXPECT_EQ(length, text.size());
  EXPECT_EQ(ember_model_free(m), EMBER_OK);
  EXPECT_EQ(ember_model_free(nullptr), EMBER_OK);
}

TEST_F(CApi, ModelLoadErrors) {
  Value root;
  root[checkpoint::kStateDict] = Value(ValueMap{{"weight", Value(ones({2, 2}))}});
  checkpoint::save(file("bare.ckpt"), root, {.durable = false});
  ember_model* m = nullptr;
  EXPECT_EQ(ember_model_load(file("bare.ckpt").c_str(), nullptr, &m), EMBER_ERROR_FAILED);
  EXPECT_NE(std::string(ember_last_error()).find("module tree"), std::string::npos) << ember_last_error();

  nn::save(nn::Linear(2, 2), file("lin.ckpt"), {.durable = false});
  EXPECT_EQ(ember_model_load(file("lin.ckpt").c_str(), "tpu", &m), EMBER_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(ember_last_error()).find("tpu"), std::string::npos);
  if (!cuda_is_available()) {
    EXPECT_EQ(ember_model_load(file("lin.ckpt").c_str(), "cuda:0", &m), EMBER_ERROR_FAILED);
    EXPECT_EQ(m, nullptr);
    EXPECT_STRNE(ember_last_error(), "");
  }
  EXPECT_EQ(ember_model_load(nullptr, nullptr, &m), EMBER_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(ember_last_error(), "ember_model_load: path is NULL");
  EXPECT_EQ(ember_set_num_threads(0), EMBER_ERROR_INVALID_ARGUMENT);
}

TEST_F(CApi, LastErrorIsPerThreadAndClearedBySuccess) {
  EXPECT_EQ(ember_checkpoint_open(nullptr, nullptr), EMBER_ERROR_INVALID_ARGUMENT);
  std::string other = "unset";
  std::thread([&] { other = ember_last_error(); }).join();
  EXPECT_EQ(other, "");
  EXPECT_STRNE(ember_last_error(), "");
  EXPECT_EQ(ember_version(nullptr, nullptr, nullptr), EMBER_OK);
  EXPECT_STREQ(ember_last_error(), "");
}
