// The ember-run binary, run as a process: outputs bit-identical to the C++ forward pass (an MLP
// and a small conv net saved with nn::save), batching, dtypes and --scale, --module on a model
// whose root type is not registered, --describe, and every error path's exit code and one-line
// message.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "ember/checkpoint/checkpoint.h"
#include "ember/config.h"
#include "ember/nn/nn.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/device.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "ember/train/module_io.h"
#include "ember/train/trainer.h"
#include "tests/support/check.h"
#include "ember/checkpoint/npy.h"

namespace fs = std::filesystem;
using namespace ember;
using ember::read_npy;
using ember::write_npy;

namespace {

std::shared_ptr<nn::Sequential> make_mlp() {
  return std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(20, 32), std::make_shared<nn::ReLU>(),
                                          std::make_shared<nn::Linear>(32, 5));
}

std::shared_ptr<nn::Sequential> make_convnet() {
  return std::make_shared<nn::Sequential>(
      std::make_shared<nn::Conv2d>(1, 4, 3, 1, 1), std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2),
      std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(64, 3));
}

// A Lightning-style wrapper whose type is not registered: only its submodules can be rebuilt.
class Head : public nn::Module {
 public:
  Head() : Module("Head") { proj = register_module("proj", std::make_shared<nn::Linear>(5, 2)); }
  Tensor forward(const Tensor& x) override { return proj->forward(x); }
  std::shared_ptr<nn::Linear> proj;
};

class LitClassifier : public nn::Module {
 public:
  LitClassifier() : Module("LitClassifier") {
    net = register_module("net", make_mlp());
    head = register_module("head", std::make_shared<Head>());
  }
  Tensor forward(const Tensor& x) override { return head->forward(net->forward(x)); }
  std::shared_ptr<nn::Sequential> net;
  std::shared_ptr<Head> head;
};

// A LightningModule as users write them: not registered, its network under "net".
class TinyLit : public LightningModule {
 public:
  TinyLit() : LightningModule("TinyLit") {
    net = register_module("net", std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(6, 8),
                                                                  std::make_shared<nn::BatchNorm1d>(8),
                                                                  std::make_shared<nn::ReLU>(),
                                                                  std::make_shared<nn::Linear>(8, 6)));
  }
  Tensor forward(const Tensor& x) override { return net->forward(x); }
  Tensor training_step(const Batch& b, int64_t) override { return mse_loss(forward(b[0]), b[0]); }
  OptimizerConfig configure_optimizers() override {
    return std::make_shared<optim::SGD>(named_parameters(), optim::SGDOptions{.lr = 0.1});
  }
  std::shared_ptr<nn::Sequential> net;
};

struct Result {
  int code = -1;
  std::string out, err;
};

class Run : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("ember_run_" + std::to_string(::getpid()) + "_" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
    manual_seed(11);
  }
  void TearDown() override { fs::remove_all(dir); }
  std::string file(const std::string& name) const { return (dir / name).string(); }

  static std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  // Runs ember-run with args; a failure must print exactly one line "ember-run: ..." on stderr.
  Result run(const std::string& args) {
    const std::string out = file("stdout.txt"), err = file("stderr.txt");
    const std::string cmd = std::string(EMBER_RUN_TOOL) + " " + args + " >" + out + " 2>" + err;
    const int status = std::system(cmd.c_str());
    Result r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    if (r.code != 0) {
      EXPECT_EQ(r.err.rfind("ember-run: ", 0), 0u) << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    }
    return r;
  }
  // Expects exit code `code` and a message containing every string of `want`.
  void expect_failure(const std::string& args, int code, std::initializer_list<std::string> want) {
    Result r = run(args);
    EXPECT_EQ(r.code, code) << args << "\n" << r.err;
    for (const auto& w : want) EXPECT_NE(r.err.find(w), std::string::npos) << "missing '" << w << "' in: " << r.err;
  }
  // Saves model, writes x, runs ember-run with extra flags; returns the output array.
  Tensor run_model(const nn::Module& model, const Tensor& x, const std::string& flags = "") {
    nn::save(model, file("model.ckpt"));
    write_npy(file("x.npy"), x);
    Result r = run(file("model.ckpt") + " --input " + file("x.npy") + " --output " + file("y.npy") + " " + flags);
    EXPECT_EQ(r.code, 0) << r.err;
    last_out = r.out;
    return r.code == 0 ? read_npy(file("y.npy")) : Tensor();
  }
  static Tensor forward(nn::Module& model, const Tensor& x) {
    model.eval();
    NoGradGuard no_grad;
    return model.forward(x);
  }
  // A .npy file with the given header dict and data, written by hand.
  std::string raw_npy(const std::string& name, const std::string& dict, const std::string& data) {
    std::string header = dict + "\n";
    std::string bytes = std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(header.size() & 0xff) +
                        static_cast<char>(header.size() >> 8) + header + data;
    std::ofstream(file(name), std::ios::binary) << bytes;
    return file(name);
  }

  fs::path dir;
  std::string last_out;
};

// The line of text that contains `what`.
std::string line_with(const std::string& text, const std::string& what) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.find(what) != std::string::npos) return line;
  return "(no line with " + what + ")";
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

TEST_F(Run, MlpOutputIsBitIdenticalToTheForwardPass) {
  auto mlp = make_mlp();
  Tensor x = randn({10, 20});
  Tensor y = run_model(*mlp, x);
  EXPECT_TRUE(test::bit_equal(y, forward(*mlp, x)));
  EXPECT_NE(last_out.find("(10, 5) f32 (10 samples in 1 batch)"), std::string::npos) << last_out;
}

TEST_F(Run, ConvNetOutputIsBitIdenticalToTheForwardPass) {
  auto net = make_convnet();
  Tensor x = randn({9, 1, 8, 8});
  Tensor y = run_model(*net, x);
  EXPECT_TRUE(test::bit_equal(y, forward(*net, x)));
}

TEST_F(Run, BatchesThatDoNotDivideTheInputGiveTheSameResult) {
  auto mlp = make_mlp();
  Tensor x = randn({10, 20});
  Tensor y = run_model(*mlp, x, "--batch-size 3");
  EXPECT_NE(last_out.find("10 samples in 4 batches"), std::string::npos) << last_out;
  EXPECT_TRUE(test::bit_equal(y, forward(*mlp, x)));
  EXPECT_TRUE(test::bit_equal(run_model(*mlp, x, "--batch-size 10 --threads 1"), y));

  auto net = make_convnet();
  Tensor xc = randn({7, 1, 8, 8});
  EXPECT_TRUE(test::bit_equal(run_model(*net, xc, "-b 2"), forward(*net, xc)));
}

TEST_F(Run, EmptyInputGivesAnEmptyOutput) {
  auto mlp = make_mlp();
  Tensor y = run_model(*mlp, zeros({0, 20}));
  EXPECT_EQ(y.shape(), Shape({0, 5}));
}

TEST_F(Run, ScaleReadsU8AsPixelsOver255) {
  auto net = make_convnet();
  Tensor u8 = empty({5, 1, 8, 8}, DType::u8);
  Tensor pixels = empty({5, 1, 8, 8});
  for (int64_t i = 0; i < u8.numel(); ++i) {
    u8.data_ptr<uint8_t>()[i] = static_cast<uint8_t>((i * 37) % 256);
    pixels.data_ptr<float>()[i] = static_cast<float>((i * 37) % 256) / 255.0f;  // torchvision's ToTensor
  }
  Tensor y = run_model(*net, u8, "--scale 1/255");
  EXPECT_TRUE(test::bit_equal(y, forward(*net, pixels)));
  // Without --scale, u8 input is refused; a bad --scale too.
  expect_failure(file("model.ckpt") + " -i " + file("x.npy") + " -o " + file("y.npy"), 2,
                 {file("x.npy"), "u8 data", "pass --scale 1/255"});
  expect_failure(file("model.ckpt") + " -i " + file("x.npy") + " -o " + file("y.npy") + " --scale 1/0", 2,
                 {"--scale '1/0'"});
  // A plain number multiplies.
  auto mlp = make_mlp();
  Tensor x = randn({4, 20});
  EXPECT_TRUE(test::bit_equal(run_model(*mlp, x, "--scale 0.5"), forward(*mlp, x * 0.5)));
}

TEST_F(Run, F64InputIsConvertedAndAnF64ModelWritesF64) {
  auto mlp = make_mlp();
  Tensor x64 = randn({6, 20}, DType::f64);
  Tensor y = run_model(*mlp, x64);
  EXPECT_EQ(y.dtype(), DType::f32);
  EXPECT_TRUE(test::bit_equal(y, forward(*mlp, x64.to(DType::f32))));

  mlp->to(DType::f64);
  Tensor x32 = randn({6, 20});
  y = run_model(*mlp, x32);
  EXPECT_EQ(y.dtype(), DType::f64);
  EXPECT_TRUE(test::bit_equal(y, forward(*mlp, x32.to(DType::f64))));
}

TEST_F(Run, ModuleSelectsARegisteredSubmodule) {
  LitClassifier lit;
  nn::save(lit, file("lit.ckpt"));
  Tensor x = randn({4, 20});
  write_npy(file("x.npy"), x);
  const std::string io = " -i " + file("x.npy") + " -o " + file("y.npy");
  // The root cannot be rebuilt: the message names the submodules --module may give.
  expect_failure(file("lit.ckpt") + io, 2,
                 {file("lit.ckpt"), "the module at the root (LitClassifier) cannot be rebuilt here",
                  "not registered when the file was written",
                  "pass --module with one of its registered submodules: net, head.proj"});
  expect_failure(file("lit.ckpt") + io + " --module head", 2, {"(Head)", "registered submodules: head.proj"});
  expect_failure(file("lit.ckpt") + io + " --module nope", 2, {"has no child 'nope'"});

  Result r = run(file("lit.ckpt") + io + " --module net");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(test::bit_equal(read_npy(file("y.npy")), forward(*lit.net, x)));
  r = run(file("lit.ckpt") + " -i " + file("y.npy") + " -o " + file("z.npy") + " -m head.proj");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(test::bit_equal(read_npy(file("z.npy")), forward(*lit.head->proj, forward(*lit.net, x))));

  r = run(file("lit.ckpt") + " --describe --module net");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Sequential(", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("total: 837 parameters"), std::string::npos) << r.out;
}

TEST_F(Run, DescribePrintsParameterCountsAndOutputShapes) {
  auto mlp = make_mlp();
  nn::save(*mlp, file("mlp.ckpt"));
  Result r = run(file("mlp.ckpt") + " --describe");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(ends_with(line_with(r.out, "Sequential("), "837 params")) << r.out;
  EXPECT_TRUE(ends_with(line_with(r.out, "(0): Linear(in_features=20, out_features=32, bias=True)"), "672 params"))
      << r.out;
  EXPECT_TRUE(ends_with(line_with(r.out, "(1): ReLU()"), " 0 params")) << r.out;
  EXPECT_TRUE(ends_with(line_with(r.out, "(2): Linear(in_features=32, out_features=5, bias=True)"), "165 params"))
      << r.out;
  EXPECT_NE(r.out.find("\n)\ntotal: 837 parameters (837 trainable), f32\n"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("->"), std::string::npos) << r.out;

  auto net = make_convnet();
  nn::save(*net, file("conv.ckpt"));
  r = run(file("conv.ckpt") + " --describe --input-shape 1,8,8");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::pair<const char*, const char*> rows[] = {
      {"Sequential(", "235 params  -> (1, 3)"},
      {"(0): Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))", " 40 params  -> (1, 4, 8, 8)"},
      {"(1): ReLU()", " 0 params  -> (1, 4, 8, 8)"},
      {"(2): MaxPool2d(", " 0 params  -> (1, 4, 4, 4)"},
      {"(3): Flatten(start_dim=1, end_dim=-1)", " 0 params  -> (1, 64)"},
      {"(4): Linear(in_features=64, out_features=3, bias=True)", "195 params  -> (1, 3)"},
  };
  for (const auto& [module, tail] : rows) EXPECT_TRUE(ends_with(line_with(r.out, module), tail)) << r.out;
  EXPECT_NE(r.out.find("total: 235 parameters (235 trainable), f32\noutput: (1, 3) for an input of shape (1, 1, 8, 8)"),
            std::string::npos)
      << r.out;

  // An input shape the model rejects names the layer and the shape it got.
  expect_failure(file("conv.ckpt") + " --describe --input-shape 3,8,8", 2,
                 {"--input-shape", "'0' (Conv2d) rejects its input of shape (1, 3, 8, 8)"});
  expect_failure(file("conv.ckpt") + " --describe --input-shape 1,x", 2, {"--input-shape '1,x'"});
}

TEST_F(Run, WrongInputShapesNameWhatTheModelExpects) {
  auto mlp = make_mlp();
  nn::save(*mlp, file("mlp.ckpt"));
  write_npy(file("x.npy"), zeros({10, 7}));
  expect_failure(file("mlp.ckpt") + " -i " + file("x.npy") + " -o " + file("y.npy"), 2,
                 {file("x.npy"), "rejects inputs of shape (10, 7)", "the model expects (N, 20) inputs"});

  auto net = make_convnet();
  nn::save(*net, file("conv.ckpt"));
  for (const Shape& shape : {Shape{10, 8, 8}, Shape{10, 3, 8, 8}, Shape{10}}) {
    write_npy(file("x.npy"), zeros(shape));
    expect_failure(file("conv.ckpt") + " -i " + file("x.npy") + " -o " + file("y.npy"), 2,
                   {"rejects inputs of shape " + shape.str(), "the model expects (N, 1, H, W) inputs"});
  }
  // A Flatten in front of the first Linear: the expectation is the flattened size.
  auto flat = std::make_shared<nn::Sequential>(std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(12, 2));
  nn::save(*flat, file("flat.ckpt"));
  write_npy(file("x.npy"), zeros({2, 5, 5}));
  expect_failure(file("flat.ckpt") + " -i " + file("x.npy") + " -o " + file("y.npy"), 2,
                 {"(2, 5, 5)", "expects inputs of 12 values per sample"});
  // A 0-d array has no sample axis.
  write_npy(file("x.npy"), zeros(Shape{}));
  expect_failure(file("mlp.ckpt") + " -i " + file("x.npy") + " -o " + file("y.npy"), 2, {"0-d array"});
  EXPECT_FALSE(fs::exists(file("y.npy")));
}

TEST_F(Run, BadFilesExitWithCode2) {
  auto mlp = make_mlp();
  nn::save(*mlp, file("mlp.ckpt"));
  write_npy(file("x.npy"), zeros({2, 20}));
  const std::string io = " -i " + file("x.npy") + " -o " + file("y.npy");
  // Missing model, corrupt model (text; a truncated checkpoint), a checkpoint without a module tree.
  expect_failure(file("missing.ckpt") + io, 2, {file("missing.ckpt")});
  std::ofstream(file("text.ckpt")) << "not a checkpoint at all, just text";
  expect_failure(file("text.ckpt") + io, 2, {file("text.ckpt")});
  const std::string bytes = slurp(file("mlp.ckpt"));
  std::ofstream(file("half.ckpt"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  expect_failure(file("half.ckpt") + io, 2, {file("half.ckpt")});
  checkpoint::save(file("weights.ckpt"), Value(ValueMap{{checkpoint::kStateDict, mlp->state_dict_value()}}));
  expect_failure(file("weights.ckpt") + io, 2, {file("weights.ckpt"), "without a module tree"});
  // Missing input, wrong dtype, a non-.npy input.
  expect_failure(file("mlp.ckpt") + " -i " + file("none.npy") + " -o " + file("y.npy"), 2, {file("none.npy")});
  raw_npy("i8.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 20), }", std::string(320, '\0'));
  expect_failure(file("mlp.ckpt") + " -i " + file("i8.npy") + " -o " + file("y.npy"), 2,
                 {file("i8.npy"), "dtype '<i8' is not supported"});
  expect_failure(file("mlp.ckpt") + " -i " + file("mlp.ckpt") + " -o " + file("y.npy"), 2,
                 {file("mlp.ckpt"), "is not a .npy file"});
  EXPECT_FALSE(fs::exists(file("y.npy")));
}

TEST_F(Run, UsageErrorsExitWithCode2) {
  auto mlp = make_mlp();
  nn::save(*mlp, file("mlp.ckpt"));
  write_npy(file("x.npy"), zeros({2, 20}));
  const std::string m = file("mlp.ckpt"), io = " -i " + file("x.npy") + " -o " + file("y.npy");
  expect_failure("", 2, {"MODEL is required"});
  expect_failure(m + " -i " + file("x.npy"), 2, {"--input and --output are required"});
  expect_failure(m + io + " --batch-size 0", 2, {"--batch-size"});
  expect_failure(m + io + " --threads 0", 2, {"--threads"});
  expect_failure(m + io + " --device gpu", 2, {"--device 'gpu'"});
  expect_failure(m + io + " --bogus", 2, {"--bogus"});
  expect_failure(m + io + " --describe", 2, {"--input excludes --describe"});
  expect_failure(m + io + " --input-shape 1,2", 2, {"--input-shape requires --describe"});
  if (!EMBER_WITH_CUDA) expect_failure(m + io + " --device cuda", 2, {"--device cuda", "built without CUDA"});
  // A CUDA build on a machine without a device (or without a driver: the runtime is static and
  // opens the driver itself) says so and runs nothing.
  if (EMBER_WITH_CUDA && !cuda_is_available())
    expect_failure(m + io + " --device cuda", 2,
                   {"--device cuda", "no such CUDA device (0 visible: " + cuda_unavailable_reason() + ")"});
  EXPECT_EQ(run("--help").code, 0);
}

TEST_F(Run, AnUnwritableOutputExitsWithCode1) {
  auto mlp = make_mlp();
  nn::save(*mlp, file("mlp.ckpt"));
  write_npy(file("x.npy"), zeros({2, 20}));
  expect_failure(file("mlp.ckpt") + " -i " + file("x.npy") + " -o " + file("no/dir/y.npy"), 1,
                 {file("no/dir/y.npy")});
}

TEST_F(Run, TrainerCheckpointRunsItsNetworkWithModule) {
  TrainerOptions opts;
  opts.default_root_dir = dir.string();
  opts.max_epochs = 1;
  opts.enable_progress_bar = false;
  opts.seed = 1;
  Trainer trainer(opts);
  auto ds = std::make_shared<data::TensorDataset>(std::vector<Tensor>{rand({16, 6})});
  data::DataLoader loader(ds, data::DataLoaderOptions{.batch_size = 4});
  TinyLit lit;
  trainer.fit(lit, loader);
  trainer.save_checkpoint(file("fit.ckpt"));

  Tensor x = randn({5, 6});
  write_npy(file("x.npy"), x);
  const std::string io = " -i " + file("x.npy") + " -o " + file("y.npy");
  expect_failure(file("fit.ckpt") + io, 2, {"(TinyLit)", "pass --module with one of its registered submodules: net"});
  Result r = run(file("fit.ckpt") + io + " --module net");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(test::bit_equal(read_npy(file("y.npy")), forward(*lit.net, x)));  // eval mode: running statistics
}
