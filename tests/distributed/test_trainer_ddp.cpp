// The Trainer with dist::ddp() (TrainerOptions::strategy), in every rank of the world this binary
// runs in (one, or two under mpirun): the ranks train as one process on the union of their
// batches (the mlp autoencoder, Adam, 2 epochs); a train loader without `distributed` is rebuilt
// with it and trains the same (in a world of one too); log(..., sync_dist) gives every rank the
// mean over ranks; only rank 0 writes files; a run stopped mid-epoch and resumed with the same
// ranks ends bit-identical to the uninterrupted one.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "examples/mnist_ae/module.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "ember/train/callbacks.h"
#include "ember/train/trainer.h"
#include "tests/support/check.h"
#include "ember/train/distributed/ddp_strategy.h"
#include "ember/train/distributed/process_group.h"

namespace fs = std::filesystem;

namespace ember {
namespace {

constexpr int64_t kExamples = 64, kBatch = 8;

HParams hparams() {
  return HParams{{"model", std::string("mlp")}, {"learning_rate", 1e-3}, {"optimizer", std::string("adam")},
                 {"scheduler", std::string("none")}};
}

std::shared_ptr<data::TensorDataset> dataset() {
  Generator g(21);
  return std::make_shared<data::TensorDataset>(std::vector<Tensor>{rand({kExamples, 784}, {}, &g)});
}

data::DataLoaderOptions loader_options(bool with_distributed) {
  data::DataLoaderOptions o;
  o.batch_size = kBatch;
  o.seed = 5;
  o.shuffle = !with_distributed;
  if (with_distributed)
    o.distributed = data::DistributedSamplerOptions{.num_replicas = dist::world_size(), .rank = dist::rank(),
                                                    .shuffle = true, .seed = 5};
  return o;
}

// One directory for the whole job (rank 0's process id), or one per rank.
fs::path job_dir(const std::string& name, bool per_rank) {
  Tensor id = full({1}, static_cast<double>(::getpid()), TensorOptions(DType::i64));
  dist::broadcast(id, 0);
  fs::path p = fs::temp_directory_path() / ("ember_ddp_" + std::to_string(id.item<int64_t>())) / name;
  if (per_rank) p /= "rank" + std::to_string(dist::rank());
  return p;
}

TrainerOptions options(const fs::path& root, int64_t max_epochs) {
  TrainerOptions o;
  o.default_root_dir = root.string();
  o.max_epochs = max_epochs;
  o.enable_progress_bar = false;
  o.num_sanity_val_steps = 0;
  o.seed = 3;
  o.strategy = dist::ddp();
  return o;
}

double max_abs_diff(const nn::Module& a, const nn::Module& b) {
  double m = 0;
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  for (size_t i = 0; i < pa.size(); ++i) m = std::max(m, max(abs(sub(pa[i].second, pb[i].second))).item_double());
  return m;
}

TEST(TrainerDdp, RanksTrainAsOneProcessOnTheUnionOfTheirBatches) {
  const fs::path root = job_dir("union", true);
  auto ds = dataset();
  manual_seed(3);
  examples::AutoEncoderModule model(hparams());
  {
    Trainer t(options(root, 2));
    data::DataLoader loader(ds, loader_options(true));
    t.fit(model, loader);
  }
  // The reference: one process, global batch k = every rank's batch k, in rank order.
  const int n = dist::world_size();
  manual_seed(3);
  examples::AutoEncoderModule single(hparams());
  optim::Adam opt(single.named_parameters(), optim::AdamOptions{.lr = 1e-3});
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    std::vector<std::vector<int64_t>> slices;
    for (int r = 0; r < n; ++r) {
      data::DistributedSampler s(kExamples, {.num_replicas = n, .rank = r, .shuffle = true, .seed = 5});
      s.set_epoch(epoch);
      slices.push_back(s.indices());
    }
    for (size_t b = 0; b * kBatch < slices[0].size(); ++b) {
      std::vector<int64_t> rows;
      for (int r = 0; r < n; ++r)
        for (size_t i = b * kBatch; i < std::min(slices[r].size(), (b + 1) * kBatch); ++i) rows.push_back(slices[r][i]);
      Tensor x = index_select(ds->tensors()[0], 0, from_vector(rows, {static_cast<int64_t>(rows.size())}));
      opt.zero_grad();
      Tensor loss = mse_loss(single.forward(x), x);
      loss.backward();
      opt.step();
    }
  }
  const double diff = max_abs_diff(model, single);
  EXPECT_LE(diff, 1e-5);
  if (dist::rank() == 0) std::printf("[ddp trainer] %d rank(s): max |w - w_single| = %.3g\n", n, diff);
  // Only rank 0 wrote files.
  if (dist::rank() == 0) {
    std::vector<std::string> files;
    for (const auto& e : fs::recursive_directory_iterator(root)) files.push_back(e.path().lexically_relative(root).string());
    auto has = [&](const std::string& suffix) {
      return std::any_of(files.begin(), files.end(),
                         [&](const std::string& f) { return f.size() >= suffix.size() && f.ends_with(suffix); });
    };
    EXPECT_TRUE(has("hparams.yaml")) << ::testing::PrintToString(files);
    EXPECT_TRUE(has(".ckpt")) << ::testing::PrintToString(files);
  } else {
    EXPECT_FALSE(fs::exists(root)) << "rank " << dist::rank() << " wrote into " << root;
  }
  dist::barrier();
  if (dist::rank() == 0) fs::remove_all(root.parent_path().parent_path());
}

TEST(TrainerDdp, ALoaderWithoutDistributedIsRebuiltWithIt) {
  const fs::path root = job_dir("rebuilt", false);
  auto ds = dataset();
  auto fit = [&](bool with_distributed) {
    manual_seed(3);
    auto model = std::make_unique<examples::AutoEncoderModule>(hparams());
    TrainerOptions o = options(root / (with_distributed ? "given" : "rebuilt"), 1);
    o.enable_checkpointing = false;
    Trainer t(o);
    data::DataLoader loader(ds, loader_options(with_distributed));
    t.fit(*model, loader);
    return model;
  };
  auto given = fit(true), rebuilt = fit(false);
  EXPECT_EQ(max_abs_diff(*given, *rebuilt), 0.0);
  dist::barrier();
  if (dist::rank() == 0) fs::remove_all(root.parent_path());
}

// Logs values that differ by rank, with and without sync_dist, from training_step (a tensor and a
// number, every step) and from on_train_epoch_end.
HParams mlp_hparams() { return hparams(); }  // inside a module, hparams() is its own

class RankLogger : public examples::AutoEncoderModule {
 public:
  RankLogger() : AutoEncoderModule(mlp_hparams()) {}
  Tensor training_step(const Batch& batch, int64_t batch_idx) override {
    const double r = dist::rank() + 1.0;
    log("synced_tensor", full({}, r * (batch_idx + 1)), LogOptions{.on_epoch = true, .sync_dist = true});
    log("synced_number", r, LogOptions{.sync_dist = true});
    log("own_number", r);
    return AutoEncoderModule::training_step(batch, batch_idx);
  }
  void on_train_epoch_end() override { log("synced_epoch_end", 10.0 * (dist::rank() + 1), LogOptions{.sync_dist = true}); }
};

TEST(TrainerDdp, SyncDistLogsTheMeanOverRanks) {
  const fs::path root = job_dir("sync_dist", false);
  auto ds = dataset();
  manual_seed(3);
  RankLogger model;
  TrainerOptions o = options(root, 1);
  o.enable_checkpointing = false;
  Trainer t(o);
  data::DataLoader loader(ds, loader_options(true));
  t.fit(model, loader);
  const int n = dist::world_size();
  const double mean_r = (n + 1) / 2.0;  // the mean of 1..n
  const Metrics& m = t.callback_metrics();
  ASSERT_TRUE(m.count("synced_number") && m.count("own_number") && m.count("synced_epoch_end"));
  EXPECT_DOUBLE_EQ(m.at("synced_number").value, mean_r);
  EXPECT_DOUBLE_EQ(m.at("own_number").value, dist::rank() + 1.0);
  EXPECT_DOUBLE_EQ(m.at("synced_epoch_end").value, 10.0 * mean_r);
  // The epoch value of the tensor log: the mean over this rank's batches of the synced means.
  const int64_t batches = (kExamples / n + kBatch - 1) / kBatch;
  ASSERT_TRUE(m.count("synced_tensor_epoch")) << ::testing::PrintToString(m.size());
  EXPECT_NEAR(m.at("synced_tensor_epoch").value, mean_r * (batches + 1) / 2.0, 1e-6);
  dist::barrier();
  if (dist::rank() == 0) fs::remove_all(root.parent_path());
}

// A 2-rank run stopped at step 3 of 4 (mid-epoch) or after its first epoch, then resumed with the
// same ranks, ends bit-identical to the uninterrupted run.
void resume_case(const std::string& name, bool mid_epoch) {
  const fs::path root = job_dir(name, false);
  auto ds = dataset();
  auto run = [&](const std::string& dir, int64_t max_epochs, int64_t max_steps, const std::string& ckpt) {
    manual_seed(3);
    auto model = std::make_unique<examples::AutoEncoderModule>(hparams());
    TrainerOptions o = options(root / dir, max_epochs);
    o.max_steps = max_steps;
    ModelCheckpointOptions mo;
    mo.dirpath = (root / "ckpt").string();
    mo.filename = "stop";
    if (mid_epoch) mo.every_n_train_steps = 3;
    o.callbacks = {std::make_shared<ModelCheckpoint>(mo)};
    Trainer t(o);
    data::DataLoader loader(ds, loader_options(true));
    t.fit(*model, loader, nullptr, ckpt);
    return model;
  };
  auto whole = run("whole", 2, -1, "");
  dist::barrier();
  if (dist::rank() == 0) fs::remove_all(root / "ckpt");
  dist::barrier();
  if (mid_epoch) run("first", 2, 3, "");  // stops at step 3 of 4 in epoch 0, after saving stop.ckpt there
  else run("first", 1, -1, "");           // stops after epoch 0, saving stop.ckpt at its end
  auto resumed = run("second", 2, -1, (root / "ckpt" / "stop.ckpt").string());
  for (const auto& [name_, p] : whole->named_parameters()) {
    Tensor q;
    for (const auto& [n2, p2] : resumed->named_parameters())
      if (n2 == name_) q = p2;
    EXPECT_TRUE(test::bit_equal(p, q)) << name_;
  }
  dist::barrier();
  if (dist::rank() == 0) fs::remove_all(root.parent_path());
}

TEST(TrainerDdp, MidEpochResumeEndsBitIdentical) { resume_case("resume_mid", true); }
TEST(TrainerDdp, EpochBoundaryResumeEndsBitIdentical) { resume_case("resume_epoch", false); }

}  // namespace
}  // namespace ember
