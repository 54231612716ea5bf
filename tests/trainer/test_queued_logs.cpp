// Values logged as tensors are read when something needs them, not when logged (on a GPU a read
// stops the host). The queue must be invisible: what callbacks, the progress of metrics,
// metrics.csv and checkpoints see equals reading each value at its log() call, with tensors
// changed after log(), plain numbers and tensors mixed under one name, metrics logged only on
// some steps, and rows written only every few steps.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <vector>

#include "ember/runtime/ops.h"
#include "ember/train/callbacks.h"
#include "ember/train/logger.h"
#include "ember/train/trainer.h"

namespace fs = std::filesystem;

namespace ember {
namespace {

// Logs, at global step s (0-based, before the step):
//   "acc": a tensor it changes right after logging it (the logged value is 2s),
//   "mixed": tensor s at first, then the plain number 100 + s (the later one wins),
//   "odd": only on odd steps, as a tensor,
//   "ep": per epoch, as an f32 tensor of 0.1 * s (averaged by batch size at epoch end),
//   "count": an integer tensor.
class LoggingModel : public LightningModule {
 public:
  LoggingModel() : LightningModule("LoggingModel") { w_ = register_parameter("w", full({1}, 0.5)); }
  Tensor training_step(const Batch& batch, int64_t) override {
    const double s = static_cast<double>(trainer()->global_step());
    Tensor acc = full({}, 2 * s, TensorOptions(DType::f64));
    log("acc", acc);
    acc.fill_(-1.0);  // after log(): must not change what was logged
    log("mixed", full({1}, s));
    log("mixed", 100 + s);
    if (static_cast<int64_t>(s) % 2 == 1) log("odd", full({}, s));
    log("ep", full({}, 0.1 * s), {.on_step = false, .on_epoch = true});
    log("count", full({}, s, TensorOptions(DType::i64)));
    return sum(mul(w_, batch[0]));
  }
  OptimizerConfig configure_optimizers() override {
    return OptimizerConfig(std::make_shared<optim::SGD>(named_parameters(), optim::SGDOptions{.lr = 0.01}));
  }

 private:
  Tensor w_;
};

// Reads callback_metrics() after every batch, as a callback that watches training would.
class Watcher : public Callback {
 public:
  std::string state_key() const override { return "Watcher"; }
  void on_train_batch_end(Trainer& t, LightningModule&, const Tensor&, const Batch&, int64_t) override {
    seen.push_back(t.callback_metrics());
  }
  std::vector<Metrics> seen;
};

std::shared_ptr<data::DataLoader> loader(int64_t batches) {
  std::vector<double> xs;
  for (int64_t i = 0; i < 2 * batches; ++i) xs.push_back(static_cast<double>(i + 1));
  auto ds = std::make_shared<data::TensorDataset>(std::vector<Tensor>{from_vector(xs, {2 * batches, 1})});
  return std::make_shared<data::DataLoader>(ds, data::DataLoaderOptions{.batch_size = 2});
}

std::string scratch(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("ember_queued_logs_" + std::to_string(::getpid())) / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

TEST(QueuedLogs, CallbacksSeeEachStepsValuesAsIfReadAtLogTime) {
  const std::string root = scratch("callbacks");
  auto watcher = std::make_shared<Watcher>();
  TrainerOptions o;
  o.default_root_dir = root;
  o.max_epochs = 2;
  o.enable_progress_bar = false;
  o.enable_checkpointing = false;
  o.log_every_n_steps = 50;  // no row is due inside the run: only readers empty the queue
  o.callbacks = {watcher};
  Trainer t(o);
  LoggingModel model;
  auto train = loader(3);
  t.fit(model, *train);
  ASSERT_EQ(watcher->seen.size(), 6u);
  for (size_t s = 0; s < 6; ++s) {
    SCOPED_TRACE(s);
    const Metrics& m = watcher->seen[s];
    EXPECT_EQ(m.at("acc").value, 2.0 * static_cast<double>(s));
    EXPECT_EQ(m.at("mixed").value, 100.0 + static_cast<double>(s));
    EXPECT_EQ(m.at("count").value, static_cast<double>(s));
    EXPECT_TRUE(m.at("count").is_int);
    if (s >= 1) EXPECT_EQ(m.at("odd").value, static_cast<double>(s % 2 == 1 ? s : s - 1));
    else EXPECT_EQ(m.count("odd"), 0u);
  }
  // the epoch mean of "ep", widened from f32 as Lightning does: epoch 1 logged 0.3, 0.4, 0.5
  const double expected = static_cast<double>(static_cast<float>(
      (static_cast<double>(static_cast<float>(0.1 * 3.0)) + static_cast<double>(static_cast<float>(0.1 * 4.0)) +
       static_cast<double>(static_cast<float>(0.1 * 5.0))) * 2.0 / 6.0));
  EXPECT_EQ(t.callback_metrics().at("ep").value, expected);
  fs::remove_all(fs::path(root).parent_path());
}

// Rows every 2 steps: each row holds exactly the values of its own step, never a metric that
// only an earlier step logged; logged_metrics() follows every step.
TEST(QueuedLogs, RowsHoldTheirOwnStepsValues) {
  const std::string root = scratch("rows");
  TrainerOptions o;
  o.default_root_dir = root;
  o.max_epochs = 1;
  o.enable_progress_bar = false;
  o.enable_checkpointing = false;
  o.log_every_n_steps = 2;
  Trainer t(o);
  LoggingModel model;
  auto train = loader(6);
  t.fit(model, *train);
  auto csv = read_metrics_csv(t.log_dir() + "/metrics.csv");
  ASSERT_EQ(csv.count("step"), 1u);
  // rows at global steps 2, 4, 6 (after steps 1, 3, 5 ran) and the epoch row
  const std::vector<double>& step = csv.at("step");
  std::vector<size_t> step_rows;
  for (size_t r = 0; r < step.size(); ++r)
    if (!std::isnan(csv.at("acc")[r])) step_rows.push_back(r);
  ASSERT_EQ(step_rows.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const size_t r = step_rows[i];
    const double s = static_cast<double>(2 * i + 1);  // the step that ran before the row
    EXPECT_EQ(step[r], s + 1);
    EXPECT_EQ(csv.at("acc")[r], 2 * s);
    EXPECT_EQ(csv.at("mixed")[r], 100 + s);
    EXPECT_EQ(csv.at("odd")[r], s);
  }
  EXPECT_EQ(t.logged_metrics().at("acc").value, 10.0);
  fs::remove_all(fs::path(root).parent_path());
}

// "odd" is logged only on odd steps and rows come every third step: the row after step 2 must not
// carry step 1's "odd" (each step's values are dropped from the pending row at its end).
TEST(QueuedLogs, AMetricFromAnEarlierStepIsNotWrittenIntoALaterRow) {
  const std::string root = scratch("earlier");
  TrainerOptions o;
  o.default_root_dir = root;
  o.max_epochs = 1;
  o.enable_progress_bar = false;
  o.enable_checkpointing = false;
  o.log_every_n_steps = 3;
  Trainer t(o);
  LoggingModel model;
  auto train = loader(6);
  t.fit(model, *train);
  auto csv = read_metrics_csv(t.log_dir() + "/metrics.csv");
  size_t rows_with_odd = 0, step_rows = 0;
  for (size_t r = 0; r < csv.at("step").size(); ++r) {
    if (std::isnan(csv.at("acc")[r])) continue;
    ++step_rows;
    const double s = csv.at("step")[r] - 1;
    if (!std::isnan(csv.at("odd")[r])) {
      ++rows_with_odd;
      EXPECT_EQ(static_cast<int64_t>(s) % 2, 1) << "row of step " << s;
      EXPECT_EQ(csv.at("odd")[r], s);
    }
  }
  EXPECT_EQ(step_rows, 2u);
  EXPECT_EQ(rows_with_odd, 1u);
  fs::remove_all(fs::path(root).parent_path());
}

}  // namespace
}  // namespace ember
