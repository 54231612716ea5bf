// A trainer checkpoint against the layout docs/checkpoint-format.md documents for the trainer's
// sections ("The trainer's sections"), key for key: a change to what the trainer writes has to
// change the specification too, and the reverse.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "ember/checkpoint/checkpoint.h"
#include "ember/nn/nn.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "ember/train/trainer.h"

namespace fs = std::filesystem;
using namespace ember;

namespace {

class Net : public LightningModule {
 public:
  explicit Net(const HParams& hp) : LightningModule("Net") {
    save_hyperparameters(hp);
    net = register_module("net", std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(6, 5),
                                                                   std::make_shared<nn::ReLU>(),
                                                                   std::make_shared<nn::Linear>(5, 6)));
  }
  Tensor forward(const Tensor& x) override { return net->forward(x); }
  Tensor training_step(const Batch& b, int64_t) override {
    Tensor loss = mse_loss(forward(b[0]), b[0]);
    log("train_loss", loss, LogOptions{.on_step = false, .on_epoch = true});
    return loss;
  }
  void validation_step(const Batch& b, int64_t) override { log("val_loss", mse_loss(forward(b[0]), b[0])); }
  OptimizerConfig configure_optimizers() override {
    auto opt = std::make_shared<optim::Adam>(named_parameters(), optim::AdamOptions{.lr = 0.01});
    OptimizerConfig c(opt);
    c.schedulers.push_back(SchedulerConfig{.scheduler = std::make_shared<optim::StepLR>(*opt, 1, 0.5)});
    return c;
  }
  std::shared_ptr<nn::Sequential> net;
};

std::set<std::string> keys(const Value& map) {
  std::set<std::string> out;
  for (const auto& [k, v] : map.as_map()) out.insert(k);
  return out;
}

}  // namespace

TEST(SectionLayout, TrainerCheckpointHoldsWhatTheSpecificationSays) {
  const fs::path root = fs::temp_directory_path() / ("ember_section_layout_" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root);
  Generator g(4);
  auto ds = std::make_shared<data::TensorDataset>(std::vector<Tensor>{rand({24, 6}, {}, &g)});
  data::DataLoader train(ds, data::DataLoaderOptions{.batch_size = 8, .shuffle = true, .seed = 5});
  data::DataLoader val(ds, data::DataLoaderOptions{.batch_size = 8});
  TrainerOptions o;
  o.default_root_dir = root.string();
  o.max_epochs = 2;
  o.enable_progress_bar = false;
  o.seed = 1;
  Trainer trainer(o);
  Net model(HParams{{"width", int64_t{5}}});
  trainer.fit(model, train, &val);
  // The automatic ModelCheckpoint's file, written inside fit (the data loader attached).
  const std::string path = (root / "ember_logs" / "version_0" / "checkpoints" / "epoch=1-step=6.ckpt").string();
  ASSERT_TRUE(fs::exists(path));
  const Value ckpt = checkpoint::load(path);

  for (const char* s : {"epoch", "global_step", "state_dict", "hyper_parameters", "optimizer_states", "lr_schedulers",
                        "loops", "callbacks", "rng_states", "module_tree", "ember_version", "precision"})
    EXPECT_TRUE(ckpt.contains(s)) << s;
  EXPECT_EQ(ckpt.at("precision"), Value(std::string("32-true")));
  EXPECT_FALSE(ckpt.contains("MixedPrecision"));  // only "16-mixed" has a gradient scaler
  EXPECT_EQ(ckpt.at("epoch"), Value(int64_t{1}));         // the index of the epoch being finished
  EXPECT_EQ(ckpt.at("global_step"), Value(int64_t{6}));   // 2 epochs x 3 batches
  EXPECT_EQ(ckpt.at("hyper_parameters").at("width"), Value(int64_t{5}));

  // optimizer_states: PyTorch's layout, numbered parameters with their names
  const Value& opts = ckpt.at("optimizer_states");
  ASSERT_TRUE(opts.is_list());
  ASSERT_EQ(opts.as_list().size(), 1u);
  const Value& adam = opts.as_list()[0];
  EXPECT_EQ(keys(adam), (std::set<std::string>{"state", "param_groups"}));
  ASSERT_EQ(adam.at("param_groups").as_list().size(), 1u);
  const Value& group = adam.at("param_groups").as_list()[0];
  ValueList indices, names;
  std::set<std::string> state_keys;
  int64_t i = 0;
  for (const auto& [name, t] : model.named_parameters()) {
    indices.emplace_back(i);
    names.emplace_back(name);
    state_keys.insert(std::to_string(i++));
  }
  EXPECT_EQ(group.at("params"), Value(indices));
  EXPECT_EQ(group.at("param_names"), Value(names));
  for (const char* option : {"lr", "betas", "eps", "weight_decay", "amsgrad", "initial_lr"})
    EXPECT_TRUE(group.contains(option)) << option;
  EXPECT_EQ(keys(adam.at("state")), state_keys);
  for (const auto& [index, moments] : adam.at("state").as_map()) {
    EXPECT_EQ(keys(moments), (std::set<std::string>{"step", "exp_avg", "exp_avg_sq"})) << index;
    EXPECT_TRUE(moments.at("step").is_float()) << index;
    EXPECT_TRUE(moments.at("exp_avg").is_tensor()) << index;
  }
  checkpoint::Reader reader(path);
  std::set<std::string> stored;
  for (const auto& t : reader.tensors())
    if (t.section == "optimizer_states") stored.insert(t.name);
  EXPECT_TRUE(stored.count("0.state.0.exp_avg"));
  EXPECT_TRUE(stored.count("0.state.3.exp_avg_sq"));
  EXPECT_EQ(stored.size(), 2 * state_keys.size());

  // lr_schedulers: one state_dict per scheduler, PyTorch's keys
  const Value& scheds = ckpt.at("lr_schedulers");
  ASSERT_EQ(scheds.as_list().size(), 1u);
  for (const char* k : {"base_lrs", "last_epoch", "_step_count", "_last_lr", "step_size", "gamma"})
    EXPECT_TRUE(scheds.as_list()[0].contains(k)) << k;

  // loops
  const Value& loops = ckpt.at("loops");
  EXPECT_EQ(keys(loops),
            (std::set<std::string>{"fit_loop", "train_dataloader", "epoch_accumulators", "callback_metrics"}));
  EXPECT_EQ(keys(loops.at("fit_loop")),
            (std::set<std::string>{"epochs_started", "epochs_processed", "epochs_completed", "batches_completed",
                                   "total_batches", "global_step", "accumulated"}));
  // written at the end of epoch index 1, before that epoch counts as completed (Lightning's order)
  EXPECT_EQ(loops.at("fit_loop").at("epochs_processed"), Value(int64_t{2}));
  EXPECT_EQ(loops.at("fit_loop").at("epochs_completed"), Value(int64_t{1}));
  EXPECT_EQ(loops.at("fit_loop").at("batches_completed"), Value(int64_t{3}));
  EXPECT_EQ(loops.at("fit_loop").at("global_step"), Value(int64_t{6}));
  EXPECT_EQ(keys(loops.at("train_dataloader")),
            (std::set<std::string>{"seed", "epoch", "batches_seen", "batch_size", "shuffle", "drop_last",
                                   "dataset_size", "generator"}));
  EXPECT_TRUE(loops.at("train_dataloader").at("generator").is_bytes());
  for (const auto& [metric, entry] : loops.at("epoch_accumulators").as_map())
    EXPECT_EQ(keys(entry), (std::set<std::string>{"sum", "weight", "both", "logger", "is_int", "group"})) << metric;
  ASSERT_TRUE(loops.at("callback_metrics").contains("val_loss"));
  for (const auto& [metric, entry] : loops.at("callback_metrics").as_map())
    EXPECT_EQ(keys(entry), (std::set<std::string>{"value", "is_int"})) << metric;

  // callbacks by Lightning's state_key; the default generator's state
  bool found = false;
  for (const auto& [key, state] : ckpt.at("callbacks").as_map()) found |= key.rfind("ModelCheckpoint{", 0) == 0;
  EXPECT_TRUE(found);
  EXPECT_EQ(keys(ckpt.at("rng_states")), (std::set<std::string>{"default"}));
  EXPECT_TRUE(ckpt.at("rng_states").at("default").is_bytes());

  // save_checkpoint after fit returned: the same, less the data loader's position (no loader is
  // attached any more).
  const std::string after = (root / "after_fit.ckpt").string();
  trainer.save_checkpoint(after);
  const Value late = checkpoint::load(after);
  EXPECT_EQ(keys(late.at("loops")), (std::set<std::string>{"fit_loop", "epoch_accumulators", "callback_metrics"}));
  EXPECT_EQ(keys(late.at("loops").at("fit_loop")), keys(loops.at("fit_loop")));
  EXPECT_EQ(late.at("loops").at("fit_loop").at("epochs_completed"), Value(int64_t{2}));
  EXPECT_EQ(late.at("epoch"), Value(int64_t{2}));  // current_epoch after fit: the epochs run

  // "16-mixed": the gradient scaler's state under Lightning's plugin key, torch's keys
  o.precision = "16-mixed";
  o.default_root_dir = (root / "f16").string();
  Trainer mixed(o);
  Net model16(HParams{{"width", int64_t{5}}});
  mixed.fit(model16, train, &val);
  const Value ck16 = checkpoint::load((root / "f16" / "ember_logs" / "version_0" / "checkpoints" / "epoch=1-step=6.ckpt").string());
  EXPECT_EQ(ck16.at("precision"), Value(std::string("16-mixed")));
  EXPECT_EQ(keys(ck16.at("MixedPrecision")),
            (std::set<std::string>{"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}));
  fs::remove_all(root);
}
