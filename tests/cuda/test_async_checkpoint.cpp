// Asynchronous checkpoints of CUDA tensors: AsyncSaver's copies out of the device are queued on its
// stream (no wait in save()), the file is byte for byte what a synchronous save of the same state
// writes, and kernels queued right after save() returns do not reach it; a Trainer run on the
// device with async_checkpointing writes the files of the same run with synchronous saves.
#include <unistd.h>

#include <array>
#include <filesystem>

#include <gtest/gtest.h>

#include "ember/checkpoint/async_saver.h"
#include "ember/checkpoint/checkpoint.h"
#include "ember/nn/nn.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/device.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "ember/train/callbacks.h"
#include "ember/train/trainer.h"
#include "tests/support/checkpoint_bytes.h"

namespace fs = std::filesystem;

namespace ember {
namespace {

#define REQUIRE_CUDA() \
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason()

using test::file_bytes;

struct Scratch {
  fs::path dir = fs::temp_directory_path() / ("ember_cuda_async_" + std::to_string(::getpid()) + "_" +
                                              ::testing::UnitTest::GetInstance()->current_test_info()->name());
  Scratch() {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~Scratch() { fs::remove_all(dir); }
};

TEST(CudaAsyncCheckpoint, DeviceTensorsAreCopiedWithoutStoppingTheDevice) {
  REQUIRE_CUDA();
  Scratch s;
  const Device gpu = cuda_device(0);
  Generator g(1);
  Tensor w = randn({512, 1024}, {}, &g).to(gpu), m = rand({512, 1024}, {}, &g).to(gpu);
  Tensor wt = w.t();  // not contiguous: copied synchronously
  Value root(ValueMap{{checkpoint::kStateDict, Value(ValueMap{{"w", Value(w)}, {"wt", Value(wt)}})},
                      {checkpoint::kOptimizerStates, Value(ValueList{Value(ValueMap{{"m", Value(m)}})})}});
  const std::array<uint8_t, 16> id{7};
  const std::string sync_path = (s.dir / "sync.ckpt").string(), async_path = (s.dir / "async.ckpt").string();
  checkpoint::save(sync_path, root, {.file_id = id});
  checkpoint::AsyncSaver saver;
  {
    NoGradGuard ng;
    saver.save(async_path, root, {.file_id = id});
    // Queued after the copies on the same stream: must not reach the file.
    w.copy_(add(w, 1.0));
    m.copy_(mul(m, 2.0));
  }
  saver.wait();
  EXPECT_EQ(file_bytes(async_path), file_bytes(sync_path));
}

class Net : public LightningModule {
 public:
  Net() : LightningModule("Net") {
    net = register_module("net", std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(16, 64),
                                                                   std::make_shared<nn::Tanh>(),
                                                                   std::make_shared<nn::Linear>(64, 16)));
  }
  Tensor forward(const Tensor& x) override { return net->forward(x); }
  Tensor training_step(const Batch& b, int64_t) override { return mse_loss(forward(b[0]), b[0]); }
  OptimizerConfig configure_optimizers() override {
    return OptimizerConfig(std::make_shared<optim::Adam>(named_parameters(), optim::AdamOptions{.lr = 0.01}));
  }
  std::shared_ptr<nn::Sequential> net;
};

TEST(CudaAsyncCheckpoint, TrainerRunWritesTheFilesOfASynchronousRun) {
  REQUIRE_CUDA();
  Scratch s;
  Generator g(2);
  auto ds = std::make_shared<data::TensorDataset>(std::vector<Tensor>{rand({64, 16}, {}, &g)});
  std::vector<std::vector<char>> files;
  for (bool async : {false, true}) {
    const fs::path dir = s.dir / "run";
    fs::remove_all(dir);
    data::DataLoader loader(ds, data::DataLoaderOptions{.batch_size = 8, .shuffle = true, .seed = 3});
    TrainerOptions o;
    o.default_root_dir = dir.string();
    o.max_epochs = 2;
    o.enable_progress_bar = false;
    o.logger = false;
    o.seed = 4;
    o.device = cuda_device(0);
    o.async_checkpointing = async;
    o.callbacks = {std::make_shared<ModelCheckpoint>(
        ModelCheckpointOptions{.dirpath = (dir / "ck").string(), .save_top_k = -1, .every_n_train_steps = 3})};
    manual_seed(5);
    Net model;
    Trainer trainer(o);
    trainer.fit(model, loader);
    std::vector<char> all;
    for (const char* f : {"epoch=0-step=3.ckpt", "epoch=0-step=6.ckpt", "epoch=1-step=9.ckpt", "epoch=1-step=12.ckpt",
                          "epoch=1-step=15.ckpt"}) {
      ASSERT_TRUE(fs::exists(dir / "ck" / f)) << f;
      std::vector<char> b = test::without_file_id(file_bytes(dir / "ck" / f));
      all.insert(all.end(), b.begin(), b.end());
    }
    files.push_back(std::move(all));
  }
  EXPECT_EQ(files[0], files[1]);
}

}  // namespace
}  // namespace ember
