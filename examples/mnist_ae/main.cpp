// ember-mnist-ae: trains, validates and visualises the MNIST autoencoders (lit, mlp, conv) with Ember's
// Trainer. Subcommands: fit, validate, reconstruct (see usage() below and --help). Exit codes: 0
// success, 2 bad usage (message + usage), 1 runtime error (message naming the file, flag or key),
// 128+signal when SIGTERM/SIGINT interrupted fit (after on_exception.ckpt was written).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "ember/checkpoint/checkpoint.h"
#include "examples/common/draw.h"
#include "examples/common/models.h"
#include "examples/common/png.h"
#include "examples/mnist_ae/module.h"
#if EMBER_EXAMPLES_HAVE_DISTRIBUTED
#include "ember/train/distributed/ddp_strategy.h"
#endif
#include "ember/runtime/autograd.h"
#include "ember/runtime/parallel.h"
#include "ember/runtime/rng.h"
#include "ember/train/callbacks.h"
#include "ember/train/data/dataloader.h"
#include "ember/train/data/mnist.h"
#include "ember/train/logger.h"
#include "ember/train/trainer.h"

namespace fs = std::filesystem;
using namespace ember;
using namespace ember::examples;

namespace {

constexpr const char* kProgram = "ember-mnist-ae";

const char* usage() {
  return "usage:\n"
         "  ember-mnist-ae fit [--data DIR] [--model lit|mlp|conv] [--batch-size N] [--lr F]\n"
         "      [--optimizer adam|adamw|sgd] [--scheduler none|step|cosine|onecycle|plateau] [--seed N]\n"
         "      [--max-epochs N] [--max-steps N] [--limit-train-batches N] [--limit-val-batches N]\n"
         "      [--check-val-every-n-epoch N] [--default-root-dir DIR] [--no-checkpointing]\n"
         "      [--async-checkpointing] [--cuda-graphs] [--strategy auto|ddp]\n"
         "      [--precision 32-true|bf16-mixed|16-mixed|64-true]\n"
         "      [--ckpt-dir DIR] [--ckpt-filename TEMPLATE] [--monitor KEY] [--mode min|max]\n"
         "      [--save-top-k K] [--save-last true|false|link] [--every-n-epochs N]\n"
         "      [--every-n-train-steps N] [--save-weights-only] [--no-auto-insert-metric-name]\n"
         "      [--early-stopping-patience N] [--resume PATH|last|best] [--device cpu|cuda[:N]]\n"
         "      [--threads N] [--no-progress]\n"
         "  ember-mnist-ae validate --ckpt PATH [--data DIR]        # prints \"val_loss: <value>\"\n"
         "  ember-mnist-ae reconstruct --ckpt PATH --out FILE.png [--data DIR] [--count N]\n"
         "Run 'ember-mnist-ae --help' for every option with its default.\n";
}

// A command line that parsed but does not make sense (exit code 2).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Options shared by the subcommands.
struct CommonArgs {
  std::string data;      // "" -> data::default_data_dir()
  std::string device = "cpu";
  int threads = 0;       // 0 -> EMBER_NUM_THREADS or all cores
};

struct FitArgs {
  CommonArgs common;
  std::string model = "lit";
  int64_t batch_size = 0;  // 0 -> the model's (256 lit/mlp, 128 conv)
  double lr = 1e-3;
  std::string optimizer = "adam";
  std::string scheduler = "none";
  uint64_t seed = 42;
  int64_t max_epochs = 10;
  int64_t max_steps = -1;
  std::string limit_train_batches = "1.0";
  std::string limit_val_batches = "1.0";
  int64_t check_val_every_n_epoch = 1;
  std::string default_root_dir = ".";
  bool no_checkpointing = false;
  bool async_checkpointing = false;
  bool cuda_graphs = false;
  std::string strategy = "auto";
  std::string precision = "32-true";
  std::string ckpt_dir, ckpt_filename, monitor;
  std::string mode = "min";
  int64_t save_top_k = 1;
  std::string save_last = "false";
  int64_t every_n_epochs = 0, every_n_train_steps = 0;
  bool save_weights_only = false, no_auto_insert_metric_name = false;
  int64_t early_stopping_patience = 0;
  std::string resume;
  bool no_progress = false;
};

struct EvalArgs {
  CommonArgs common;
  std::string ckpt, out;
  int64_t count = 16;
};

// The CLI11 options whose presence matters after parsing.
struct Given {
  std::vector<CLI::Option*> checkpoint;  // any of these configures a user ModelCheckpoint
  CLI::Option *model, *batch_size, *lr, *optimizer, *scheduler, *seed, *max_epochs, *max_steps, *limit_train,
      *limit_val, *every_n_epochs, *every_n_train_steps;
};

// --- small helpers ---------------------------------------------------------------------------------

// "--limit-*-batches": an int counts batches, a number with '.' or an exponent is a fraction.
BatchLimit parse_limit(const std::string& text, const char* flag) {
  bool fraction = text.find_first_of(".eE") != std::string::npos;
  try {
    size_t used = 0;
    if (fraction) {
      double f = std::stod(text, &used);
      if (used == text.size() && f >= 0.0 && f <= 1.0) return BatchLimit(f);
    } else {
      long long n = std::stoll(text, &used);
      if (used == text.size() && n >= 0) return BatchLimit(static_cast<int64_t>(n));
    }
  } catch (const std::exception&) {
  }
  throw UsageError(std::string(flag) + " " + text +
                   ": expected a batch count (int >= 0) or a fraction of the epoch in [0.0, 1.0]");
}

Value limit_value(const BatchLimit& b) { return b.is_count ? Value(b.count) : Value(b.fraction); }
std::string limit_text(const Value& v) { return v.is_int() ? std::to_string(v.as_int()) : format_double(v.as_double()); }

void apply_common(const CommonArgs& c) {
  if (c.threads > 0) set_num_threads(c.threads);
}

std::string data_dir(const CommonArgs& c) { return c.data.empty() ? data::default_data_dir() : c.data; }

std::vector<fs::path> ckpt_files_in(const fs::path& dir, const std::string& prefix = "") {
  std::vector<fs::path> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (e.path().extension() == ".ckpt" && name.rfind(prefix, 0) == 0 && !fs::is_directory(e.path(), ec))
      out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// <root>/ember_logs/version_N/checkpoints of the highest N that holds a checkpoint ("" if none).
fs::path latest_run_ckpt_dir(const fs::path& root) {
  fs::path best;
  long best_n = -1;
  std::error_code ec;
  fs::path logs = root / "ember_logs";
  if (!fs::is_directory(logs, ec)) return best;
  for (const auto& e : fs::directory_iterator(logs, ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind("version_", 0) != 0) continue;
    char* end = nullptr;
    long n = std::strtol(name.c_str() + 8, &end, 10);
    if (*end != '\0' || n <= best_n || ckpt_files_in(e.path() / "checkpoints").empty()) continue;
    best_n = n;
    best = e.path() / "checkpoints";
  }
  return best;
}

// Where OnExceptionCheckpoint writes: --ckpt-dir, else <default-root-dir>/checkpoints (a fixed
// place, so the next run finds it; ModelCheckpoint files go to the run's version directory).
fs::path exception_dir(const FitArgs& a) {
  return a.ckpt_dir.empty() ? fs::path(a.default_root_dir) / "checkpoints" : fs::path(a.ckpt_dir);
}

fs::path newest(const std::vector<fs::path>& files) {
  fs::path best;
  fs::file_time_type best_t{};
  for (const auto& f : files) {
    std::error_code ec;
    auto t = fs::last_write_time(f, ec);
    if (ec) continue;
    if (best.empty() || t > best_t) {
      best = f;
      best_t = t;
    }
  }
  return best;
}

// --resume last: the newest of on_exception.ckpt and the checkpoint directory's last*.ckpt files
// (or, if it has none, all its .ckpt files). The checkpoint directory is --ckpt-dir, else the
// latest run's version_N/checkpoints. "" when there is nothing to resume.
fs::path resolve_last(const FitArgs& a) {
  std::vector<fs::path> candidates;
  fs::path exc = exception_dir(a) / "on_exception.ckpt";
  std::error_code ec;
  if (fs::exists(exc, ec)) candidates.push_back(exc);
  fs::path dir = a.ckpt_dir.empty() ? latest_run_ckpt_dir(a.default_root_dir) : fs::path(a.ckpt_dir);
  if (!dir.empty()) {
    std::vector<fs::path> files = ckpt_files_in(dir, "last");
    if (files.empty()) files = ckpt_files_in(dir);
    for (auto& f : files)
      if (f.filename() != "on_exception.ckpt") candidates.push_back(f);
  }
  return newest(candidates);
}

// --resume best: the best_model_path recorded by a ModelCheckpoint in the newest checkpoint.
fs::path resolve_best(const FitArgs& a) {
  fs::path last = resolve_last(a);
  if (last.empty()) throw Error("[ember-mnist-ae] --resume best: no checkpoint found in " + exception_dir(a).string() +
                                " or the latest run under " + a.default_root_dir + "/ember_logs");
  checkpoint::Reader reader(last.string());
  if (reader.has_section(checkpoint::kCallbacks)) {
    Value cbs = reader.skeleton(checkpoint::kCallbacks);
    for (const auto& [key, state] : cbs.as_map()) {
      if (!state.is_map() || !state.contains("best_model_path") || !state.at("best_model_path").is_string()) continue;
      const std::string& p = state.at("best_model_path").as_string();
      std::error_code ec;
      if (!p.empty() && fs::exists(p, ec)) return p;
    }
  }
  throw Error("[ember-mnist-ae] --resume best: " + last.string() +
              " records no existing best checkpoint (its ModelCheckpoint state has no best_model_path on disk)");
}

// Replaces the options not given on the command line by the hyperparameters stored in the
// checkpoint being resumed, so `fit --resume last` continues a run with its own settings.
void adopt_checkpoint_hparams(FitArgs& a, const Given& g, const std::string& path) {
  checkpoint::Reader reader(path);
  if (!reader.has_section(checkpoint::kHyperParameters)) return;
  Value hp = reader.section(checkpoint::kHyperParameters);
  if (!hp.is_map()) return;
  auto take = [&](CLI::Option* opt, const char* key, auto&& apply) {
    if (opt->count() == 0 && hp.contains(key)) {
      try {
        apply(hp.at(key));
      } catch (const Error& e) {
        throw Error(std::string("[ember-mnist-ae] ") + path + ": hyperparameter '" + key + "': " + e.what());
      }
    }
  };
  take(g.model, "model", [&](const Value& v) { a.model = v.as_string(); });
  take(g.batch_size, "batch_size", [&](const Value& v) { a.batch_size = v.as_int(); });
  take(g.lr, "learning_rate", [&](const Value& v) { a.lr = v.as_double(); });
  take(g.optimizer, "optimizer", [&](const Value& v) { a.optimizer = v.as_string(); });
  take(g.scheduler, "scheduler", [&](const Value& v) { a.scheduler = v.as_string(); });
  take(g.seed, "seed", [&](const Value& v) { a.seed = static_cast<uint64_t>(v.as_int()); });
  take(g.max_epochs, "max_epochs", [&](const Value& v) { a.max_epochs = v.as_int(); });
  take(g.max_steps, "max_steps", [&](const Value& v) { a.max_steps = v.as_int(); });
  take(g.limit_train, "limit_train_batches", [&](const Value& v) { a.limit_train_batches = limit_text(v); });
  take(g.limit_val, "limit_val_batches", [&](const Value& v) { a.limit_val_batches = limit_text(v); });
}

// Batches for a model on `device` (pinned host memory when it is a GPU).
std::shared_ptr<data::DataLoader> make_loader(std::shared_ptr<data::MnistDataset> ds, int64_t batch_size, bool shuffle,
                                              uint64_t seed, Device device) {
  return std::make_shared<data::DataLoader>(
      ds, data::DataLoaderOptions{.batch_size = batch_size, .shuffle = shuffle, .seed = seed, .device = device});
}

// The first `count` test images and the model's reconstructions of them, as a PNG grid.
void write_reconstructions(LightningModule& model, const data::MnistDataset& test, int64_t count, const std::string& path) {
  EMBER_CHECK(count >= 1 && count <= test.size(), "[ember-mnist-ae] --count ", count, " must be in [1, ", test.size(),
              "] (the test images available)");
  Tensor x = test.images(0, count);
  bool was_training = model.is_training();
  model.eval();
  Tensor y;
  {
    NoGradGuard no_grad;
    Device d = model.parameters().front().device();
    y = model.forward(x.to(d)).to(kCPU);
  }
  if (was_training) model.train();
  write_png(path, reconstruction_grid(x, y));
}

// loss.png: train_loss (mean of its rows per epoch) and val_loss per epoch from metrics.csv.
// Returns false (writing nothing) when the run logged no loss: then there may be no metrics.csv
// at all (a resumed run with nothing left to train logs nothing).
bool write_loss_plot(const std::string& metrics_csv, const std::string& path) {
  if (!fs::exists(metrics_csv)) return false;
  auto cols = read_metrics_csv(metrics_csv);
  if (!cols.count("epoch")) return false;
  const auto& epoch = cols.at("epoch");
  auto per_epoch = [&](const char* name, bool mean) {
    Series s{name, {0, 0, 0}, {}, {}};
    if (!cols.count(name)) return s;
    const auto& v = cols.at(name);
    std::map<int64_t, std::pair<double, int>> acc;
    for (size_t i = 0; i < v.size() && i < epoch.size(); ++i) {
      if (std::isnan(v[i]) || std::isnan(epoch[i])) continue;
      auto& [sum, n] = acc[static_cast<int64_t>(epoch[i])];
      if (mean) {
        sum += v[i];
        ++n;
      } else {
        sum = v[i];
        n = 1;
      }
    }
    for (auto& [e, sn] : acc) {
      s.x.push_back(static_cast<double>(e));
      s.y.push_back(sn.first / sn.second);
    }
    return s;
  };
  Series train = per_epoch("train_loss", true), val = per_epoch("val_loss", false);
  train.color = {31, 119, 180};
  val.color = {255, 127, 14};
  if (train.x.empty() && val.x.empty()) return false;
  write_png(path, line_plot({train, val}, "loss (MSE)", "epoch"));
  return true;
}

// --- fit ---------------------------------------------------------------------------------------------

int run_fit(FitArgs a, const Given& g) {
  apply_common(a.common);
  const Device device(a.common.device);
  bool user_checkpoint = false;
  for (CLI::Option* o : g.checkpoint) user_checkpoint = user_checkpoint || o->count() > 0;
  if (a.no_checkpointing && user_checkpoint)
    throw UsageError("--no-checkpointing cannot be combined with --ckpt-*, --monitor, --mode, --save-* or --every-* options");

  // 1. what to resume (its hyperparameters fill in the options not given)
  std::string resume;
  if (a.resume == "last") {
    resume = resolve_last(a).string();
    if (resume.empty())
      std::cerr << "--resume last: no checkpoint found in " << exception_dir(a).string() << " or the latest run under "
                << (fs::path(a.default_root_dir) / "ember_logs").string() << "; training from scratch\n";
  } else if (a.resume == "best") {
    resume = resolve_best(a).string();
  } else if (!a.resume.empty()) {
    if (!fs::exists(a.resume)) throw Error("[ember-mnist-ae] --resume " + a.resume + ": checkpoint file not found");
    resume = a.resume;
  } else if (!a.no_checkpointing && fs::exists(exception_dir(a) / "on_exception.ckpt")) {
    // The Trainer resumes a file left by OnExceptionCheckpoint by itself (as Lightning): say so.
    resume = (exception_dir(a) / "on_exception.ckpt").string();
    std::cerr << "found " << resume << " from an interrupted run: resuming it (delete it to start afresh)\n";
  }
  if (!resume.empty()) adopt_checkpoint_hparams(a, g, resume);
  if (a.batch_size == 0) a.batch_size = default_batch_size(a.model);
  BatchLimit limit_train = parse_limit(a.limit_train_batches, "--limit-train-batches");
  BatchLimit limit_val = parse_limit(a.limit_val_batches, "--limit-val-batches");

  // 2. data
  const std::string dir = data_dir(a.common);
  auto train_ds = data::load_mnist_dataset(dir, data::Split::Train, model_layout(a.model));
  auto val_ds = data::load_mnist_dataset(dir, data::Split::Test, model_layout(a.model));
  auto train_loader = make_loader(train_ds, a.batch_size, true, a.seed, device);
  auto val_loader = make_loader(val_ds, a.batch_size, false, a.seed, device);

  // 3. the module and its hyperparameters
  const int64_t steps_per_epoch = limit_train.resolve(train_loader->len(), "--limit-train-batches");
  int64_t total_steps = a.max_epochs >= 0 ? a.max_epochs * steps_per_epoch : -1;
  if (a.max_steps >= 0) total_steps = total_steps < 0 ? a.max_steps : std::min(total_steps, a.max_steps);
  if ((a.scheduler == "cosine" || a.scheduler == "onecycle") && total_steps <= 0)
    throw UsageError("--scheduler " + a.scheduler + " needs a bounded run: give --max-epochs or --max-steps (> 0)");
  HParams hp{{"model", a.model},
             {"learning_rate", a.lr},
             {"batch_size", a.batch_size},
             {"optimizer", a.optimizer},
             {"scheduler", a.scheduler},
             {"seed", a.seed},
             {"max_epochs", a.max_epochs},
             {"max_steps", a.max_steps},
             {"limit_train_batches", limit_value(limit_train)},
             {"limit_val_batches", limit_value(limit_val)},
             {"total_steps", std::max<int64_t>(total_steps, 0)}};
  manual_seed(a.seed);  // the weights' initialisation
  AutoEncoderModule module(hp);
  module.to(device);

  // 4. callbacks and trainer
  TrainerOptions opts;
  opts.default_root_dir = a.default_root_dir;
  opts.max_epochs = a.max_epochs;
  opts.max_steps = a.max_steps;
  opts.limit_train_batches = limit_train;
  opts.limit_val_batches = limit_val;
  opts.check_val_every_n_epoch = a.check_val_every_n_epoch;
  opts.log_every_n_steps = std::clamp<int64_t>(steps_per_epoch, 1, 50);  // at least one train_loss row per epoch
  opts.enable_checkpointing = !a.no_checkpointing;
  opts.async_checkpointing = a.async_checkpointing;
  opts.cuda_graphs = a.cuda_graphs;
  opts.precision = a.precision;
  if (a.strategy == "ddp") {
#if EMBER_EXAMPLES_HAVE_DISTRIBUTED
    opts.strategy = dist::ddp();
#else
    throw UsageError("--strategy ddp needs Ember::distributed, which this build lacks (MPI was not found when it was "
                     "configured: install libopenmpi-dev and openmpi-bin, then rebuild)");
#endif
  }
  opts.enable_progress_bar = !a.no_progress;
  opts.seed = a.seed;
  opts.device = device;
  std::shared_ptr<OnExceptionCheckpoint> on_exception;
  try {
    if (user_checkpoint) {
      ModelCheckpointOptions mo;
      if (!a.ckpt_dir.empty()) mo.dirpath = a.ckpt_dir;
      if (!a.ckpt_filename.empty()) mo.filename = a.ckpt_filename;
      if (!a.monitor.empty()) mo.monitor = a.monitor;
      mo.mode = a.mode;
      mo.save_top_k = a.save_top_k;
      mo.save_last = a.save_last == "link" ? SaveLast("link") : SaveLast(a.save_last == "true");
      if (g.every_n_epochs->count()) mo.every_n_epochs = a.every_n_epochs;
      if (g.every_n_train_steps->count()) mo.every_n_train_steps = a.every_n_train_steps;
      mo.save_weights_only = a.save_weights_only;
      mo.auto_insert_metric_name = !a.no_auto_insert_metric_name;
      opts.callbacks.push_back(std::make_shared<ModelCheckpoint>(mo));
    }
    if (!a.no_checkpointing) {
      on_exception = std::make_shared<OnExceptionCheckpoint>(exception_dir(a).string());
      opts.callbacks.push_back(on_exception);
    }
    if (a.early_stopping_patience > 0)
      opts.callbacks.push_back(std::make_shared<EarlyStopping>(
          EarlyStoppingOptions{.monitor = "val_loss", .patience = a.early_stopping_patience}));
  } catch (const Error& e) {
    throw UsageError(std::string("invalid checkpoint options: ") + e.what());
  }
  Trainer trainer(opts);

  // 5. train
  try {
    trainer.fit(module, *train_loader, val_loader.get(), resume);
  } catch (const TrainingInterrupted& e) {
    if (!trainer.is_global_zero()) return e.exit_code();  // rank 0 says what to do next
    std::cerr << e.what() << "\n";
    if (on_exception && fs::exists(on_exception->ckpt_path()))
      std::cerr << "resumable checkpoint: " << on_exception->ckpt_path() << "\ncontinue with: " << kProgram
                << " fit --resume last" << (a.ckpt_dir.empty() ? "" : " --ckpt-dir " + a.ckpt_dir)
                << (a.default_root_dir == "." ? "" : " --default-root-dir " + a.default_root_dir) << "\n";
    return e.exit_code();
  }

  // 6. pictures and a summary of what was written (by rank 0 alone)
  if (!trainer.is_global_zero()) return 0;
  const fs::path run = fs::absolute(trainer.log_dir()).lexically_normal();
  const std::string recon = (run / "reconstructions.png").string(), loss = (run / "loss.png").string();
  write_reconstructions(module, *val_ds, std::min<int64_t>(16, val_ds->size()), recon);
  bool plotted = write_loss_plot((run / "metrics.csv").string(), loss);
  std::cout << "run directory: " << run.string() << "\n";
  for (const auto& cb : trainer.callbacks()) {
    auto* mc = dynamic_cast<ModelCheckpoint*>(cb.get());
    if (!mc || mc->dirpath().empty()) continue;
    std::cout << "checkpoints in " << mc->dirpath() << ":\n";
    for (const auto& f : ckpt_files_in(mc->dirpath())) {
      std::string note;
      if (f.string() == mc->best_model_path()) note += " (best)";
      if (f.string() == mc->last_model_path()) note += " (last)";
      std::cout << "  " << f.string() << note << "\n";
    }
  }
  std::cout << "images:\n  " << recon << "\n";
  if (plotted) std::cout << "  " << loss << "\n";
  return 0;
}

// --- validate / reconstruct ----------------------------------------------------------------------------

std::shared_ptr<AutoEncoderModule> load_module(const EvalArgs& a) {
  apply_common(a.common);
  const Device device(a.common.device);
  if (!fs::exists(a.ckpt)) throw Error("[ember-mnist-ae] --ckpt " + a.ckpt + ": checkpoint file not found");
  return LightningModule::load_from_checkpoint<AutoEncoderModule>(a.ckpt, {.device = device});
}

int run_validate(const EvalArgs& a) {
  auto module = load_module(a);
  const HParams& hp = module->hparams();
  const std::string model = hp.get<std::string>("model");
  auto val_ds = data::load_mnist_dataset(data_dir(a.common), data::Split::Test, model_layout(model));
  auto loader = make_loader(val_ds, hp.get_or<int64_t>("batch_size", default_batch_size(model)), false, 0,
                            module->parameters().front().device());
  TrainerOptions opts;
  opts.logger = false;
  opts.enable_checkpointing = false;
  opts.enable_progress_bar = false;
  // the batches fit validated on, so the value matches the val_loss logged in metrics.csv
  const Value limit = hp.contains("limit_val_batches") ? hp.at("limit_val_batches") : Value(1.0);
  opts.limit_val_batches = limit.is_int() ? BatchLimit(limit.as_int()) : BatchLimit(limit.as_double());
  Trainer trainer(opts);
  Metrics m = trainer.validate(*module, *loader);
  auto it = m.find("val_loss");
  EMBER_CHECK(it != m.end(), "[ember-mnist-ae] validation of ", a.ckpt, " logged no 'val_loss'");
  std::cout << "val_loss: " << format_double(it->second.value) << "\n";
  return 0;
}

int run_reconstruct(const EvalArgs& a) {
  auto module = load_module(a);
  const std::string model = module->hparams().get<std::string>("model");
  auto test_ds = data::load_mnist_dataset(data_dir(a.common), data::Split::Test, model_layout(model));
  write_reconstructions(*module, *test_ds, a.count, a.out);
  std::cout << "wrote " << a.out << " (" << a.count << " test images over their reconstructions)\n";
  return 0;
}

// --- command line ------------------------------------------------------------------------------------

// Integers >= min, described as such in --help.
CLI::Validator at_least(int64_t min) {
  return CLI::Validator(
      [min](std::string& s) -> std::string {
        try {
          size_t used = 0;
          long long v = std::stoll(s, &used);
          if (used == s.size() && v >= min) return "";
        } catch (const std::exception&) {
        }
        return "must be an integer >= " + std::to_string(min) + ", got '" + s + "'";
      },
      ">= " + std::to_string(min));
}

// Accepts what ember::Device parses: cpu, cuda, cuda:N.
CLI::Validator device_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        try {
          Device d(s);
        } catch (const Error& e) {
          return e.what();
        }
        return "";
      },
      "cpu|cuda[:N]");
}

void add_common(CLI::App* sub, CommonArgs& c) {
  sub->add_option("--data", c.data,
                  "Directory with the MNIST-format files (train/t10k-*-idx*-ubyte[.gz]); default: $EMBER_DATA, else "
                  "/usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist)")
      ->type_name("DIR");
  sub->add_option("--device", c.device, "Where the model runs: cpu, cuda or cuda:N")->type_name("DEVICE")
      ->check(device_validator())
      ->capture_default_str();
  sub->add_option("--threads", c.threads, "CPU threads for the kernels; 0: $EMBER_NUM_THREADS, else all cores")->type_name("N")
      ->check(at_least(0))
      ->capture_default_str();
}

void add_fit(CLI::App* fit, FitArgs& a, Given& g) {
  add_common(fit, a.common);
  g.model = fit->add_option("--model", a.model, "lit | mlp | conv (see examples/common/models.h)")->type_name("NAME")
                ->check(CLI::IsMember(model_names()))
                ->capture_default_str();
  g.batch_size = fit->add_option("--batch-size", a.batch_size, "Batch size; default: 256 for lit and mlp, 128 for conv")->type_name("N")
                     ->check(at_least(1));
  g.lr = fit->add_option("--lr", a.lr, "Learning rate")->type_name("F")->check(CLI::PositiveNumber)->capture_default_str();
  g.optimizer = fit->add_option("--optimizer", a.optimizer, "adam | adamw (weight_decay 1e-2) | sgd (momentum 0.9)")->type_name("NAME")
                    ->check(CLI::IsMember({"adam", "adamw", "sgd"}))
                    ->capture_default_str();
  g.scheduler = fit->add_option("--scheduler", a.scheduler, std::string("LR scheduler:\n") + scheduler_help())
                    ->type_name("NAME")
                    ->check(CLI::IsMember({"none", "step", "cosine", "onecycle", "plateau"}))
                    ->capture_default_str();
  g.seed = fit->add_option("--seed", a.seed, "Seeds the weights' initialisation and the shuffling")->type_name("N")->capture_default_str();
  g.max_epochs = fit->add_option("--max-epochs", a.max_epochs, "Stop after this many epochs (-1: no limit)")->type_name("N")
                     ->check(at_least(-1))
                     ->capture_default_str();
  g.max_steps = fit->add_option("--max-steps", a.max_steps, "Stop after this many optimizer steps (-1: no limit)")->type_name("N")
                    ->check(at_least(-1))
                    ->capture_default_str();
  g.limit_train = fit->add_option("--limit-train-batches", a.limit_train_batches,
                                  "Training batches per epoch: an int count, or a fraction such as 0.25")->type_name("N|F")
                      ->capture_default_str();
  g.limit_val = fit->add_option("--limit-val-batches", a.limit_val_batches,
                                "Validation batches per check: an int count, or a fraction")->type_name("N|F")
                    ->capture_default_str();
  fit->add_option("--check-val-every-n-epoch", a.check_val_every_n_epoch, "Validate every N epochs")->type_name("N")
      ->check(at_least(1))
      ->capture_default_str();
  fit->add_option("--default-root-dir", a.default_root_dir,
                  "Runs go to DIR/ember_logs/version_N (metrics.csv, hparams.yaml, checkpoints/, PNGs)")->type_name("DIR")
      ->capture_default_str();
  fit->add_flag("--no-checkpointing", a.no_checkpointing, "Write no checkpoints at all (no automatic, no on_exception)");
  fit->add_flag("--async-checkpointing", a.async_checkpointing,
                "Write checkpoints in the background: training waits only for a copy of the state");
  fit->add_option("--strategy", a.strategy,
                  "ddp: data-parallel over the ranks of `mpirun -np N ember-mnist-ae fit ...` (rank 0 writes the "
                  "run directory; see docs/distributed.md)")
      ->check(CLI::IsMember({"auto", "ddp"}))
      ->capture_default_str();
  fit->add_option("--precision", a.precision,
                  "Lightning's precision: bf16-mixed / 16-mixed run forward and loss under autocast (matmuls and "
                  "convolutions in bf16 / f16 with f32 accumulation; 16-mixed scales the loss), 64-true trains in "
                  "float64")
      ->check(CLI::IsMember({"32-true", "bf16-mixed", "16-mixed", "64-true", "32", "bf16", "16", "64"}))
      ->capture_default_str();
  fit->add_flag("--cuda-graphs", a.cuda_graphs,
                "On cuda: capture the training step into a CUDA graph after warm-up and replay it (eager, with one "
                "line saying why, where the step cannot be captured)");
  g.checkpoint.push_back(fit->add_option("--ckpt-dir", a.ckpt_dir,
                                         "ModelCheckpoint dirpath (default: <run directory>/checkpoints); also where "
                                         "on_exception.ckpt goes (default: <default-root-dir>/checkpoints)")
                             ->type_name("DIR"));
  g.checkpoint.push_back(fit->add_option("--ckpt-filename", a.ckpt_filename,
                                         "ModelCheckpoint filename template, e.g. '{epoch}-{val_loss:.4f}' "
                                         "(default: '{epoch}-{step}')")->type_name("TEMPLATE"));
  g.checkpoint.push_back(fit->add_option("--monitor", a.monitor,
                                         "Metric that ranks checkpoints: val_loss, train_loss, epoch or step "
                                         "(default: none, the newest wins)")->type_name("KEY"));
  g.checkpoint.push_back(
      fit->add_option("--mode", a.mode, "min | max: which --monitor values are better")->type_name("MODE")->check(CLI::IsMember({"min", "max"}))->capture_default_str());
  g.checkpoint.push_back(fit->add_option("--save-top-k", a.save_top_k,
                                         "Keep the K best checkpoints (-1: all, 0: none); K > 1 needs --monitor")
                             ->type_name("K")
                             ->capture_default_str());
  g.checkpoint.push_back(fit->add_option("--save-last", a.save_last,
                                         "Also keep last.ckpt: true (a copy), false, or link (a symlink)")->type_name("MODE")
                             ->check(CLI::IsMember({"true", "false", "link"}))
                             ->capture_default_str());
  g.every_n_epochs = fit->add_option("--every-n-epochs", a.every_n_epochs, "Checkpoint every N epochs (default 1)")->type_name("N")
                         ->check(at_least(0));
  g.every_n_train_steps = fit->add_option("--every-n-train-steps", a.every_n_train_steps,
                                          "Checkpoint every N optimizer steps instead of at epoch ends")->type_name("N")
                              ->check(at_least(0));
  g.checkpoint.push_back(g.every_n_epochs);
  g.checkpoint.push_back(g.every_n_train_steps);
  g.checkpoint.push_back(fit->add_flag("--save-weights-only", a.save_weights_only,
                                       "Checkpoints hold weights only (they load for inference but cannot resume)"));
  g.checkpoint.push_back(fit->add_flag("--no-auto-insert-metric-name", a.no_auto_insert_metric_name,
                                       "Do not turn '{epoch}' into 'epoch={epoch}' in --ckpt-filename"));
  fit->add_option("--early-stopping-patience", a.early_stopping_patience,
                  "Stop when val_loss has not improved for N checks (0: off)")->type_name("N")
      ->check(at_least(0))
      ->capture_default_str();
  fit->add_option("--resume", a.resume,
                  "Continue training from PATH; 'last': the newest of on_exception.ckpt and the checkpoint "
                  "directory's last*.ckpt (else its newest .ckpt); 'best': the best checkpoint recorded there. "
                  "Options not given are taken from the checkpoint's hyperparameters")
      ->type_name("PATH|last|best");
  fit->add_flag("--no-progress", a.no_progress, "No progress bar and no per-epoch summary lines");
}

void add_eval(CLI::App* sub, EvalArgs& a, bool reconstruct) {
  add_common(sub, a.common);
  sub->add_option("--ckpt", a.ckpt, "Checkpoint written by 'fit' (full or weights-only)")->type_name("PATH")->required();
  if (reconstruct) {
    sub->add_option("--out", a.out, "PNG file to write")->type_name("FILE.png")->required();
    sub->add_option("--count", a.count, "Number of test images")->type_name("N")->check(at_least(1))->capture_default_str();
  }
}

int usage_error(const std::string& message) {
  std::cerr << kProgram << ": error: " << message << "\n\n" << usage();
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Trains MNIST autoencoders with Ember's Trainer and shows what they learned.", kProgram);
  app.require_subcommand(1);
  app.footer(
      "Data: pixels/255, MSE loss; the test split (t10k) is the validation set. The module logs train_loss "
      "and val_loss; --monitor may also name epoch or step.\n"
      "Writes <default-root-dir>/ember_logs/version_N/{metrics.csv,hparams.yaml,checkpoints/,"
      "reconstructions.png,loss.png}. SIGTERM or Ctrl-C during fit saves on_exception.ckpt (see --ckpt-dir) "
      "and exits 143/130; 'fit --resume last' continues from it.\n"
      "Exit codes: 0 success, 1 runtime error, 2 bad usage.");
  FitArgs fit_args;
  Given given{};
  EvalArgs val_args, rec_args;
  CLI::App* fit = app.add_subcommand("fit", "Train a model");
  CLI::App* validate = app.add_subcommand("validate", "Print the val_loss of a checkpoint (\"val_loss: <value>\")");
  CLI::App* reconstruct = app.add_subcommand("reconstruct", "Write a PNG of test images over their reconstructions");
  add_fit(fit, fit_args, given);
  add_eval(validate, val_args, false);
  add_eval(reconstruct, rec_args, true);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    // the top-level --help documents every subcommand; "fit --help" just fit
    std::cout << (app.get_subcommands().empty() ? app.help("", CLI::AppFormatMode::All) : app.help());
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    return 0;
  } catch (const CLI::ParseError& e) {
    return usage_error(e.what());
  }

  // A file size limit (ulimit -f) then fails a write with an error naming the file, instead of
  // killing the process in the middle of it.
  std::signal(SIGXFSZ, SIG_IGN);
  try {
    if (fit->parsed()) return run_fit(fit_args, given);
    if (validate->parsed()) return run_validate(val_args);
    return run_reconstruct(rec_args);
  } catch (const UsageError& e) {
    return usage_error(e.what());
  } catch (const TrainingInterrupted& e) {
    std::cerr << kProgram << ": " << e.what() << "\n";
    return e.exit_code();
  } catch (const std::exception& e) {
    std::cerr << kProgram << ": error: " << e.what() << "\n";
    return 1;
  }
}
