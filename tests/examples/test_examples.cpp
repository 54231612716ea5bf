// End-to-end tests of ember-mnist-ae and ember-deploy (with ember-run): the built binaries run on a
// small synthetic MNIST-format data set (640 train / 192 test images, batches of 64) with few batches per epoch,
// and the tests check what they write: checkpoint names, metrics.csv, PNG headers, exit codes,
// resumption (also after SIGTERM) and that `validate` reproduces the logged val_loss.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ember/checkpoint/checkpoint.h"
#include "ember/checkpoint/npy.h"
#include "ember/nn/nn.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/train/logger.h"
#include "ember/train/module_io.h"
#include "tests/support/check.h"

namespace fs = std::filesystem;

namespace {

const std::string kAe = EMBER_MNIST_AE;
const std::string kDeploy = EMBER_DEPLOY;
const std::string kRun = EMBER_RUN;

struct Result {
  int code = -1;
  std::string out, err;
};

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs `binary args` through the shell; stdout and stderr are captured separately.
Result run(const std::string& binary, const std::string& args, const fs::path& scratch) {
  fs::path err = scratch / "stderr.txt";
  std::string cmd = "'" + binary + "' " + args + " 2>'" + err.string() + "'";
  Result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = read_file(err);
  return r;
}

void put_be32(std::ofstream& f, uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
  f.write(b, 4);
}

// <dir>/<prefix>-images-idx3-ubyte and -labels-idx1-ubyte: n images of a bright rectangle of
// pseudo-random position, size and brightness on black (something an autoencoder can learn).
void write_split(const fs::path& dir, const std::string& prefix, uint32_t n, uint32_t seed) {
  std::ofstream img(dir / (prefix + "-images-idx3-ubyte"), std::ios::binary);
  std::ofstream lab(dir / (prefix + "-labels-idx1-ubyte"), std::ios::binary);
  put_be32(img, 0x803);
  put_be32(img, n);
  put_be32(img, 28);
  put_be32(img, 28);
  put_be32(lab, 0x801);
  put_be32(lab, n);
  uint32_t s = seed;
  auto next = [&] {
    s = s * 1664525u + 1013904223u;
    return s >> 8;
  };
  std::vector<char> pixels(28 * 28);
  for (uint32_t i = 0; i < n; ++i) {
    int x0 = next() % 14, y0 = next() % 14, w = 6 + next() % 9, h = 6 + next() % 9;
    char v = static_cast<char>(128 + next() % 128);
    for (int y = 0; y < 28; ++y)
      for (int x = 0; x < 28; ++x) pixels[y * 28 + x] = (x >= x0 && x < x0 + w && y >= y0 && y < y0 + h) ? v : 0;
    img.write(pixels.data(), static_cast<std::streamsize>(pixels.size()));
    char label = static_cast<char>(next() % 10);
    lab.write(&label, 1);
  }
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Width and height from a PNG's IHDR chunk, after checking the signature and the chunk's type.
std::pair<uint32_t, uint32_t> png_size(const fs::path& p) {
  std::string b = read_file(p);
  EXPECT_GE(b.size(), 33u) << p;
  if (b.size() < 33) return {0, 0};
  EXPECT_EQ(b.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << p;
  EXPECT_EQ(b.substr(12, 4), "IHDR") << p;
  auto be = [&](size_t at) {
    return (static_cast<uint32_t>(static_cast<uint8_t>(b[at])) << 24) | (static_cast<uint32_t>(static_cast<uint8_t>(b[at + 1])) << 16) |
           (static_cast<uint32_t>(static_cast<uint8_t>(b[at + 2])) << 8) | static_cast<uint32_t>(static_cast<uint8_t>(b[at + 3]));
  };
  return {be(16), be(20)};
}

// The finite values of a metrics.csv column with their epochs and steps.
struct Logged {
  std::vector<double> epoch, step, value;
};
Logged logged(const fs::path& csv, const std::string& column) {
  auto cols = ember::read_metrics_csv(csv.string());
  Logged l;
  if (!cols.count(column)) return l;
  for (size_t i = 0; i < cols[column].size(); ++i) {
    if (std::isnan(cols[column][i])) continue;
    l.epoch.push_back(cols["epoch"][i]);
    l.step.push_back(cols["step"][i]);
    l.value.push_back(cols[column][i]);
  }
  return l;
}

class ExamplesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new fs::path(fs::temp_directory_path() / ("ember_examples_data_" + std::to_string(::getpid())));
    fs::create_directories(*data_);
    write_split(*data_, "train", 640, 1);
    write_split(*data_, "t10k", 192, 2);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*data_);
    delete data_;
    data_ = nullptr;
  }
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("ember_examples_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // fit with the small limits every test uses (3 training batches, 2 validation batches of 64).
  Result fit(const std::string& extra) {
    return run(kAe, "fit --data '" + data_->string() + "' --default-root-dir '" + root_.string() +
                        "' --batch-size 64 --limit-train-batches 3 --limit-val-batches 2 --threads 1 " + extra,
               root_);
  }
  Result ae(const std::string& args) { return run(kAe, args + " --data '" + data_->string() + "' --threads 1", root_); }
  fs::path run_dir(int version) const { return root_ / "ember_logs" / ("version_" + std::to_string(version)); }

  static fs::path* data_;
  fs::path root_;
};
fs::path* ExamplesTest::data_ = nullptr;

TEST_F(ExamplesTest, FitWritesAutomaticCheckpointLogsAndPictures) {
  Result r = fit("--max-epochs 2");
  ASSERT_EQ(r.code, 0) << r.err;
  fs::path run_path = run_dir(0);
  // the automatic ModelCheckpoint keeps the newest epoch: epoch 1 ends at step 2 * 3
  EXPECT_EQ(names_in(run_path / "checkpoints"), std::vector<std::string>{"epoch=1-step=6.ckpt"});
  EXPECT_FALSE(fs::exists(root_ / "checkpoints" / "on_exception.ckpt"));
  Logged val = logged(run_path / "metrics.csv", "val_loss");
  EXPECT_EQ(val.epoch, (std::vector<double>{0, 1}));
  EXPECT_EQ(val.step, (std::vector<double>{3, 6}));
  EXPECT_FALSE(logged(run_path / "metrics.csv", "train_loss").value.empty());
  // hyperparameters as the issue lists them
  std::string yaml = read_file(run_path / "hparams.yaml");
  for (const char* key : {"model: lit", "learning_rate: 0.001", "batch_size: 64", "optimizer: adam", "scheduler: none", "seed: 42"})
    EXPECT_NE(yaml.find(key), std::string::npos) << key << " in\n" << yaml;
  // 16 test images in rows of 8, each 28 px scaled 2x with 4 px gaps: 8*(56+4)+4 by 2*(2*56+12)+4
  EXPECT_EQ(png_size(run_path / "reconstructions.png"), (std::pair<uint32_t, uint32_t>{484, 252}));
  EXPECT_EQ(png_size(run_path / "loss.png"), (std::pair<uint32_t, uint32_t>{640, 400}));
  // per-epoch summary lines (stderr is not a TTY) and the closing list of files
  EXPECT_NE(r.err.find("epoch 1  train_loss="), std::string::npos) << r.err;
  EXPECT_NE(r.out.find((run_path / "checkpoints" / "epoch=1-step=6.ckpt").string()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find((run_path / "loss.png").string()), std::string::npos) << r.out;
}

TEST_F(ExamplesTest, FilenameTemplateTopKAndSaveLast) {
  fs::path ck = root_ / "ck";
  Result r = fit("--max-epochs 4 --ckpt-dir '" + ck.string() +
                 "' --ckpt-filename '{epoch}-{val_loss:.4f}' --monitor val_loss --save-top-k 2 --save-last true");
  ASSERT_EQ(r.code, 0) << r.err;
  // expected: the two epochs with the lowest logged val_loss, named by the template, and last.ckpt
  Logged val = logged(run_dir(0) / "metrics.csv", "val_loss");
  ASSERT_EQ(val.value.size(), 4u);
  std::vector<size_t> order = {0, 1, 2, 3};
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return val.value[a] < val.value[b]; });
  std::vector<std::string> expected = {"last.ckpt"};
  for (size_t k = 0; k < 2; ++k) {
    char name[64];
    std::snprintf(name, sizeof name, "epoch=%d-val_loss=%.4f.ckpt", static_cast<int>(val.epoch[order[k]]), val.value[order[k]]);
    expected.push_back(name);
  }
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names_in(ck), expected);
  // last.ckpt was saved at the end of the final epoch (index 3, as Lightning records it)
  ember::Value last = ember::checkpoint::load((ck / "last.ckpt").string(), {.sections = {"epoch", "global_step"}});
  EXPECT_EQ(last.at("global_step").as_int(), 12);
  EXPECT_EQ(last.at("epoch").as_int(), 3);
}

TEST_F(ExamplesTest, EveryNTrainStepsKeepsAllWithLinkedLast) {
  fs::path ck = root_ / "ck";
  Result r = fit("--max-epochs 2 --ckpt-dir '" + ck.string() + "' --every-n-train-steps 2 --save-top-k -1 --save-last link");
  ASSERT_EQ(r.code, 0) << r.err;
  // steps 2 (epoch 0), 4 and 6 (epoch 1); last.ckpt links the newest
  EXPECT_EQ(names_in(ck), (std::vector<std::string>{"epoch=0-step=2.ckpt", "epoch=1-step=4.ckpt", "epoch=1-step=6.ckpt",
                                                    "last.ckpt"}));
  ASSERT_TRUE(fs::is_symlink(ck / "last.ckpt"));
  EXPECT_EQ(fs::read_symlink(ck / "last.ckpt").filename(), "epoch=1-step=6.ckpt");
}

TEST_F(ExamplesTest, AsyncCheckpointingWritesTheSameCheckpoints) {
  fs::path sync_ck = root_ / "sync", async_ck = root_ / "async";
  const std::string opts = " --max-epochs 2 --every-n-train-steps 2 --save-top-k 2 --monitor train_loss --save-last true";
  Result s = fit("--ckpt-dir '" + sync_ck.string() + "'" + opts);
  ASSERT_EQ(s.code, 0) << s.err;
  Result a = fit("--async-checkpointing --ckpt-dir '" + async_ck.string() + "'" + opts);
  ASSERT_EQ(a.code, 0) << a.err;
  std::vector<std::string> names = names_in(sync_ck);
  EXPECT_EQ(names_in(async_ck), names);
  EXPECT_EQ(names.size(), 3u);
  for (const std::string& n : names) {
    // The files record their own directory; the training state in them is the same.
    ember::Value x = ember::checkpoint::load((sync_ck / n).string(), {.sections = {"state_dict", "optimizer_states"}});
    ember::Value y = ember::checkpoint::load((async_ck / n).string(), {.sections = {"state_dict", "optimizer_states"}});
    EXPECT_EQ(x, y) << n;
  }
}

TEST_F(ExamplesTest, AFailedAsyncCheckpointWriteExitsOneWithTheMessage) {
  // 64 KiB per file (bash's ulimit -f counts KiB): the first checkpoint cannot be written.
  fs::path ck = root_ / "ck";
  Result r = run("/bin/bash", "-c \"ulimit -f 64; exec '" + kAe + "' fit --data '" + data_->string() +
                                 "' --default-root-dir '" + root_.string() + "' --ckpt-dir '" + ck.string() +
                                 "' --batch-size 64 --limit-train-batches 3 --limit-val-batches 2 --threads 1"
                                 " --max-epochs 2 --async-checkpointing --no-progress\"",
                 root_);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("asynchronous checkpoint save to '" + (ck / "epoch=0-step=3.ckpt").string() + "' failed"),
            std::string::npos) << r.err;
  EXPECT_NE(r.err.find("File too large"), std::string::npos) << r.err;
  // No partial or temporary file is left behind.
  for (const std::string& n : names_in(ck)) EXPECT_EQ(n.find(".tmp-"), std::string::npos) << n;
  EXPECT_FALSE(fs::exists(ck / "epoch=0-step=3.ckpt"));
}

TEST_F(ExamplesTest, ResumeLastContinuesTheRun) {
  ASSERT_EQ(fit("--max-epochs 2").code, 0);
  // no --batch-size/--limit-*: they come from the checkpoint's hyperparameters
  Result r = run(kAe, "fit --data '" + data_->string() + "' --default-root-dir '" + root_.string() +
                          "' --threads 1 --resume last --max-epochs 4", root_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("Restored training state from " + (run_dir(0) / "checkpoints" / "epoch=1-step=6.ckpt").string()),
            std::string::npos) << r.err;
  EXPECT_EQ(names_in(run_dir(1) / "checkpoints"), std::vector<std::string>{"epoch=3-step=12.ckpt"});
  Logged val = logged(run_dir(1) / "metrics.csv", "val_loss");
  EXPECT_EQ(val.epoch, (std::vector<double>{2, 3}));
  EXPECT_EQ(val.step, (std::vector<double>{9, 12}));
}

TEST_F(ExamplesTest, ResumeWithNothingLeftToTrainSucceeds) {
  ASSERT_EQ(fit("--max-epochs 2").code, 0);
  // max epochs (2) come from the checkpoint's hyperparameters: both epochs are done
  const fs::path ckpt = run_dir(0) / "checkpoints" / "epoch=1-step=6.ckpt";
  Result r = run(kAe, "fit --data '" + data_->string() + "' --default-root-dir '" + root_.string() +
                          "' --threads 1 --resume '" + ckpt.string() + "'", root_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("[Trainer.fit] nothing left to train: max_epochs=2 reached (2 epochs completed)\n"),
            std::string::npos) << r.err;
  // nothing trained, logged or saved; the restored model's reconstructions are still drawn
  EXPECT_EQ(names_in(run_dir(1)), (std::vector<std::string>{"hparams.yaml", "reconstructions.png"}));
  EXPECT_EQ(r.out.find("loss.png"), std::string::npos) << r.out;

  // the same for max steps: 4 steps end in epoch 1 (3 batches per epoch), and `--resume last`
  ASSERT_EQ(fit("--max-epochs 5 --max-steps 4").code, 0);
  ASSERT_EQ(names_in(run_dir(2) / "checkpoints"), std::vector<std::string>{"epoch=1-step=4.ckpt"});
  r = run(kAe, "fit --data '" + data_->string() + "' --default-root-dir '" + root_.string() +
                   "' --threads 1 --resume last", root_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("[Trainer.fit] nothing left to train: max_steps=4 reached (global step 4)\n"), std::string::npos)
      << r.err;
  EXPECT_EQ(names_in(run_dir(3)), (std::vector<std::string>{"hparams.yaml", "reconstructions.png"}));
}

TEST_F(ExamplesTest, FailedResumeLeavesNoRunDirectory) {
  ASSERT_EQ(fit("--max-epochs 1").code, 0);
  const fs::path ckpt = run_dir(0) / "checkpoints" / "epoch=0-step=3.ckpt";
  ASSERT_TRUE(fs::exists(ckpt));
  const auto top = names_in(root_), logs = names_in(root_ / "ember_logs"), run0 = names_in(run_dir(0));
  // a checkpoint of the lit model cannot be restored into the mlp model
  Result r = fit("--max-epochs 2 --model mlp --resume '" + ckpt.string() + "'");
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("[load_state_dict]"), std::string::npos) << r.err;
  EXPECT_EQ(names_in(root_), top);
  EXPECT_EQ(names_in(root_ / "ember_logs"), logs);
  EXPECT_EQ(names_in(run_dir(0)), run0);
}

TEST_F(ExamplesTest, SigtermLeavesOnExceptionCheckpointThatResumeLastFinds) {
  int err_pipe[2];
  ASSERT_EQ(::pipe(err_pipe), 0);
  std::vector<std::string> args = {kAe, "fit", "--data", data_->string(), "--default-root-dir", root_.string(),
                                   "--batch-size", "64", "--limit-train-batches", "3", "--limit-val-batches", "1",
                                   "--threads", "1", "--max-epochs", "1000000"};
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::dup2(err_pipe[1], 2);
    ::close(err_pipe[0]);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(err_pipe[1]);
  // wait for the first epoch's summary line, then stop the run the way a scheduler would
  std::string seen;
  char buf[512];
  while (seen.find("epoch 0 ") == std::string::npos) {
    ssize_t n = ::read(err_pipe[0], buf, sizeof buf);
    if (n <= 0) break;
    seen.append(buf, static_cast<size_t>(n));
  }
  ::kill(pid, SIGTERM);
  while (::read(err_pipe[0], buf, sizeof buf) > 0) {
  }
  ::close(err_pipe[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << seen;
  EXPECT_EQ(WEXITSTATUS(status), 143) << seen;

  fs::path exc = root_ / "checkpoints" / "on_exception.ckpt";
  ASSERT_TRUE(fs::exists(exc));
  ember::Value saved = ember::checkpoint::load(exc.string(), {.sections = {"epoch", "global_step"}});
  const int64_t epochs_done = saved.at("epoch").as_int(), step = saved.at("global_step").as_int();
  EXPECT_GE(epochs_done, 1);
  EXPECT_GE(step, 3 * epochs_done);
  EXPECT_LE(step, 3 * (epochs_done + 1));

  // resume: the epoch it was in is finished, then one more
  const int64_t target = epochs_done + 2;
  Result r = run(kAe, "fit --data '" + data_->string() + "' --default-root-dir '" + root_.string() +
                          "' --threads 1 --resume last --max-epochs " + std::to_string(target), root_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("Restored training state from " + exc.string()), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(exc));  // removed after the successful run
  Logged val = logged(run_dir(1) / "metrics.csv", "val_loss");
  ASSERT_FALSE(val.step.empty());
  EXPECT_EQ(val.step.back(), static_cast<double>(3 * target));
}

TEST_F(ExamplesTest, ValidateReproducesTheLoggedValLoss) {
  ASSERT_EQ(fit("--max-epochs 3 --ckpt-dir '" + (root_ / "ck").string() + "' --save-top-k -1").code, 0);
  Logged val = logged(run_dir(0) / "metrics.csv", "val_loss");
  ASSERT_EQ(val.value.size(), 3u);
  for (int epoch : {0, 2}) {
    std::string ckpt = (root_ / "ck" / ("epoch=" + std::to_string(epoch) + "-step=" + std::to_string(3 * (epoch + 1)) + ".ckpt")).string();
    Result r = ae("validate --ckpt '" + ckpt + "'");
    ASSERT_EQ(r.code, 0) << r.err;
    ASSERT_EQ(r.out.rfind("val_loss: ", 0), 0u) << r.out;
    EXPECT_EQ(std::stod(r.out.substr(10)), val.value[epoch]) << r.out;
  }
}

TEST_F(ExamplesTest, ReconstructWritesPng) {
  ASSERT_EQ(fit("--max-epochs 1 --save-weights-only --ckpt-dir '" + (root_ / "ck").string() + "'").code, 0);
  std::string ckpt = (root_ / "ck" / "epoch=0-step=3.ckpt").string();
  Result r = ae("reconstruct --ckpt '" + ckpt + "' --out '" + (root_ / "r.png").string() + "' --count 5");
  ASSERT_EQ(r.code, 0) << r.err;
  // one row of 5 originals over 5 reconstructions: 5*(56+4)+4 by (2*56+12)+4
  EXPECT_EQ(png_size(root_ / "r.png"), (std::pair<uint32_t, uint32_t>{304, 128}));
}

// The deployment path: ember-mnist-ae's checkpoint runs in ember-run without the example's code
// (its module tree is a Sequential of encoder and decoder), on test images that ember-deploy
// writes as a u8 .npy in the model's layout, and ember-deploy draws ember-run's output.
TEST_F(ExamplesTest, CheckpointsDeployWithEmberRun) {
  using namespace ember;
  for (const std::string model : {"lit", "conv"}) {
    SCOPED_TRACE(model);
    const fs::path dir = root_ / model;
    ASSERT_EQ(fit("--model " + model + " --max-epochs 1 --ckpt-dir '" + dir.string() + "'").code, 0);
    const std::string ckpt = (dir / "epoch=0-step=3.ckpt").string();
    const Value tree = ember::checkpoint::Reader(ckpt).section(ember::checkpoint::kModuleTree).at("root");
    EXPECT_EQ(tree.at("type"), Value("Sequential"));
    EXPECT_EQ(tree.at("children"), Value(ValueList{"encoder", "decoder"}));

    const fs::path x = dir / "x.npy", labels = dir / "labels.npy", y = dir / "y.npy", png = dir / "d.png";
    Result d = run(kDeploy, "images '" + x.string() + "' --for '" + ckpt + "' --first 7 --count 5 --labels '" +
                                labels.string() + "' --data '" + data_->string() + "'",
                   root_);
    ASSERT_EQ(d.code, 0) << d.err;
    EXPECT_NE(d.out.find("test images 7..11"), std::string::npos) << d.out;
    Tensor images = read_npy(x.string());
    EXPECT_EQ(images.dtype(), DType::u8);
    EXPECT_EQ(images.shape(), model == "lit" ? Shape({5, 784}) : Shape({5, 1, 28, 28}));
    EXPECT_EQ(read_npy(labels.string()).shape(), Shape({5}));

    Result r = run(kRun, "'" + ckpt + "' --input '" + x.string() + "' --scale 1/255 --output '" + y.string() +
                             "' --threads 1",
                   root_);
    ASSERT_EQ(r.code, 0) << r.err;
    // the same numbers as the model rebuilt from the file in this process
    nn::ModulePtr net = nn::load_module(ckpt);
    NoGradGuard no_grad;
    Tensor expected = net->forward(div(images.to(DType::f32), 255.0));
    EXPECT_TRUE(test::bit_equal(read_npy(y.string()), expected));

    Result show = run(kDeploy, "show '" + x.string() + "' '" + y.string() + "' '" + png.string() + "'", root_);
    ASSERT_EQ(show.code, 0) << show.err;
    EXPECT_NE(show.out.find("image 4: reconstruction MSE "), std::string::npos) << show.out;
    EXPECT_NE(show.out.find("mean MSE "), std::string::npos) << show.out;
    EXPECT_EQ(png_size(png), (std::pair<uint32_t, uint32_t>{304, 128}));
  }
}

TEST_F(ExamplesTest, DeployErrors) {
  using namespace ember;
  const std::string x = (root_ / "x.npy").string();
  for (const char* args : {"", "images", "images a.npy --layout square", "images a.npy --count 0",
                           "images a.npy --for c.ckpt --layout flat", "show a.npy b.npy", "bogus"}) {
    Result r = run(kDeploy, args, root_);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.err;
  }
  Result range = run(kDeploy, "images '" + x + "' --first 190 --count 5 --data '" + data_->string() + "'", root_);
  EXPECT_EQ(range.code, 1);
  EXPECT_NE(range.err.find("--first 190 --count 5: the test split of"), std::string::npos) << range.err;
  EXPECT_NE(range.err.find("has 192 images"), std::string::npos) << range.err;

  Result missing = run(kDeploy, "images '" + x + "' --for '" + (root_ / "absent.ckpt").string() + "'", root_);
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.err.find("absent.ckpt"), std::string::npos) << missing.err;

  ASSERT_EQ(run(kDeploy, "images '" + x + "' --count 3 --data '" + data_->string() + "'", root_).code, 0);
  write_npy((root_ / "y.npy").string(), zeros({2, 784}));
  Result mismatch = run(kDeploy, "show '" + x + "' '" + (root_ / "y.npy").string() + "' '" + (root_ / "p.png").string() + "'", root_);
  EXPECT_EQ(mismatch.code, 1);
  EXPECT_NE(mismatch.err.find("holds (3, 784) pixels but"), std::string::npos) << mismatch.err;
  EXPECT_NE(mismatch.err.find("(2, 784): expected an autoencoder's output for each image"), std::string::npos)
      << mismatch.err;
  EXPECT_FALSE(fs::exists(root_ / "p.png"));
}

TEST_F(ExamplesTest, BadUsageExitsTwoWithUsage) {
  for (const char* args : {"fit --bogus", "fit --model resnet", "fit --limit-train-batches many", "fit --save-last maybe",
                           "fit --device tpu", "fit --save-top-k 3", "fit --no-checkpointing --save-last true",
                           "validate", "reconstruct --ckpt x.ckpt", ""}) {
    Result r = ae(args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.err;
    EXPECT_NE(r.err.find("error: "), std::string::npos) << args << "\n" << r.err;
    EXPECT_NE(r.err.find("usage:\n  ember-mnist-ae fit"), std::string::npos) << args << "\n" << r.err;
  }
  Result bogus = ae("fit --bogus");
  EXPECT_NE(bogus.err.find("--bogus"), std::string::npos) << bogus.err;
  Result help = run(kAe, "--help", root_);
  EXPECT_EQ(help.code, 0);
  for (const char* text : {"--every-n-train-steps", "--max-epochs N:>= -1=10", "--lr F:POSITIVE=0.001", "reconstruct", "--count"})
    EXPECT_NE(help.out.find(text), std::string::npos) << text;
}

TEST_F(ExamplesTest, RuntimeErrorsExitOneNamingTheCulprit) {
  Result r = run(kAe, "fit --threads 1 --data '" + (root_ / "no_such_dir").string() + "'", root_);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find((root_ / "no_such_dir").string()), std::string::npos) << r.err;

  Result missing = ae("validate --ckpt '" + (root_ / "absent.ckpt").string() + "'");
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.err.find("absent.ckpt"), std::string::npos) << missing.err;

  Result monitor = fit("--max-epochs 1 --monitor val_los");
  EXPECT_EQ(monitor.code, 1);
  EXPECT_NE(monitor.err.find("val_los"), std::string::npos) << monitor.err;
}

}  // namespace
