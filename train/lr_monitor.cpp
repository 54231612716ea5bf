// LearningRateMonitor: logs each optimizer's learning rate (and optionally momentum / weight decay)
// under Lightning's names, at every training batch start ("step") or epoch start ("epoch"). The
// logger sees the exact learning rate: step values go through LightningModule::log as float64 step
// metrics, epoch values are written as a row of their own at epoch start (as Lightning does).
#include <algorithm>
#include <set>

#include "ember/runtime/error.h"
#include "ember/train/callbacks.h"
#include "train/callbacks_pyformat.h"
#include "ember/train/logger.h"
#include "ember/train/trainer.h"

namespace ember {
namespace {

const optim::Optimizer* scheduler_optimizer(const SchedulerConfig& c) {
  if (c.scheduler) return &c.scheduler->optimizer();
  if (c.plateau) return &c.plateau->optimizer();
  return nullptr;
}

std::string group_name(const optim::ParamGroup& g) {
  auto it = g.options.find("name");
  return it != g.options.end() && it->second.is_string() ? it->second.as_string() : "";
}

}  // namespace

LearningRateMonitor::LearningRateMonitor(LearningRateMonitorOptions options) : opts_(std::move(options)) {
  EMBER_CHECK(!opts_.logging_interval || *opts_.logging_interval == "step" || *opts_.logging_interval == "epoch",
              "[LearningRateMonitor] logging_interval should be `step` or `epoch` or `None`.");
}

std::vector<LearningRateMonitor::Entry> LearningRateMonitor::entries(const Trainer& trainer) const {
  const OptimizerConfig& cfg = trainer.optimizer_config();
  std::vector<Entry> out;
  std::vector<const optim::Optimizer*> seen;
  std::map<std::string, int> seen_types;  // optimizer type -> count (unnamed configs only)
  auto add = [&](const optim::Optimizer* opt, std::string name, bool named, const std::string& interval) {
    seen.push_back(opt);
    if (!named) ++seen_types[opt->type_name()];
    const auto& groups = opt->param_groups();
    std::vector<std::string> pg_names;
    for (size_t i = 0; i < groups.size(); ++i) pg_names.push_back(group_name(groups[i]).empty() ? "pg" + std::to_string(i + 1) : group_name(groups[i]));
    std::set<std::string> unique(pg_names.begin(), pg_names.end());
    if (unique.size() != pg_names.size()) {
      std::set<std::string> dup;
      for (const std::string& n : pg_names)
        if (std::count(pg_names.begin(), pg_names.end(), n) > 1) dup.insert(n);
      std::string d;
      for (const std::string& n : dup) d += (d.empty() ? "" : ", ") + py::str_repr(n);
      throw Error("[LearningRateMonitor] A single `Optimizer` cannot have multiple parameter groups with identical "
                  "`name` values. " + name + " has duplicated parameter group names {" + d + "}");
    }
    auto count = seen_types.find(opt->type_name());
    if (count != seen_types.end() && count->second > 1) name.append(1, '-').append(std::to_string(count->second - 1));
    for (size_t i = 0; i < groups.size(); ++i) {
      std::string full = name;
      if (groups.size() > 1) full.append(1, '/').append(pg_names[i]);
      else if (!group_name(groups[i]).empty()) full.append(1, '/').append(group_name(groups[i]));
      out.push_back(Entry{full, opt, i, interval});
    }
  };
  for (const SchedulerConfig& c : cfg.schedulers) {
    const optim::Optimizer* opt = scheduler_optimizer(c);
    if (!opt) continue;
    add(opt, c.name.empty() ? "lr-" + opt->type_name() : c.name, !c.name.empty(), c.interval);
  }
  for (const auto& opt : cfg.optimizers) {
    if (std::find(seen.begin(), seen.end(), opt.get()) != seen.end()) continue;
    add(opt.get(), "lr-" + opt->type_name(), false, "any");
  }
  return out;
}

std::vector<std::string> LearningRateMonitor::names(const Trainer& trainer) const {
  std::vector<std::string> out;
  for (const Entry& e : entries(trainer)) out.push_back(e.name);
  return out;
}

void LearningRateMonitor::on_train_start(Trainer& trainer, LightningModule&) {
  EMBER_CHECK(trainer.options().logger,
              "[LearningRateMonitor] Cannot use `LearningRateMonitor` callback with `Trainer` that has no logger.");
  std::vector<Entry> all = entries(trainer);
  if (opts_.log_momentum) {
    bool missing = std::any_of(all.begin(), all.end(), [](const Entry& e) {
      const ValueMap& d = e.optimizer->defaults();
      return !d.count("momentum") && !d.count("betas");
    });
    if (missing)
      trainer.print("[LearningRateMonitor] warning: You have set log_momentum=True, but some optimizers do not have "
                    "momentum. This will log a value 0 for the momentum.");
  }
  for (const Entry& e : all) lrs_.try_emplace(e.name);
}

void LearningRateMonitor::on_train_batch_start(Trainer& trainer, LightningModule& module, const Batch&, int64_t) {
  if (opts_.logging_interval && *opts_.logging_interval == "epoch") return;
  // only on the steps whose logs reach the logger (Lightning's should_update_logs)
  int64_t every = trainer.options().log_every_n_steps;
  bool update = (every > 0 && (trainer.global_step() + 1) % every == 0) || trainer.should_stop;
  if (!update) return;
  log_stats(trainer, module, opts_.logging_interval ? "any" : "step", true);
}

void LearningRateMonitor::on_train_epoch_start(Trainer& trainer, LightningModule& module) {
  if (opts_.logging_interval && *opts_.logging_interval == "step") return;
  log_stats(trainer, module, opts_.logging_interval ? "any" : "epoch", false);
}

void LearningRateMonitor::log_stats(Trainer& trainer, LightningModule& module, const std::string& interval,
                                    bool on_step) {
  // Step values join the batch's row in the logger. Epoch values reach callback_metrics through
  // log() (a float32 epoch metric) but are kept from the logger there, which would write them in
  // the epoch-end row; as Lightning, they are written at epoch start in a row of their own, below.
  LogOptions lo;
  lo.on_step = on_step;
  lo.on_epoch = !on_step;
  lo.logger = on_step;
  std::map<std::string, double> row;
  auto log = [&](const std::string& name, double v) {
    module.log(name, scalar_tensor(v, DType::f64), lo);
    row[name] = v;
  };
  for (const Entry& e : entries(trainer)) {
    // optimizers without a scheduler are logged at both intervals, as Lightning does
    if (interval != "any" && e.interval != "any" && e.interval != interval) continue;
    const optim::ParamGroup& g = e.optimizer->param_groups()[e.group];
    double lr = g.lr();
    lrs_[e.name].push_back(lr);
    log(e.name, lr);
    if (opts_.log_momentum) {
      double m = 0.0;
      if (e.optimizer->defaults().count("betas")) {
        auto it = g.options.find("betas");
        if (it != g.options.end() && it->second.is_list() && !it->second.as_list().empty())
          m = it->second.as_list()[0].as_double();
      } else if (g.options.count("momentum")) {
        m = g.number("momentum");
      }
      log(e.name + "-momentum", m);
    }
    if (opts_.log_weight_decay && g.options.count("weight_decay")) log(e.name + "-weight_decay", g.number("weight_decay"));
  }
  if (on_step || row.empty() || !trainer.logger()) return;
  // Lightning labels this row with the step its epoch's first batch logs under; the trainer labels
  // a batch's row with the optimizer step count after that batch, so that is the next step.
  row["epoch"] = static_cast<double>(trainer.current_epoch());
  trainer.logger()->log_metrics(row, trainer.global_step() + 1);
}

}  // namespace ember
