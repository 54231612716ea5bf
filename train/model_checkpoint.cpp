// ModelCheckpoint: Lightning's triggers, file naming, top-k bookkeeping, `last` handling and
// checkpointed state (reference: shared/reference/lightning-checkpointing.md, section 1), with
// last.ckpt refreshed at every save trigger (Lightning 2.5) rather than only after ranked saves.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <regex>
#include <system_error>

#include "ember/runtime/error.h"
#include "ember/train/callbacks.h"
#include "train/callbacks_pyformat.h"
#include "ember/train/trainer.h"

namespace ember {
namespace fs = std::filesystem;

namespace {

constexpr const char* kJoinChar = "-";
constexpr const char* kEqualsChar = "=";
constexpr const char* kExtension = ".ckpt";

std::string expanduser(const std::string& p) {
  if (p.empty() || p[0] != '~' || (p.size() > 1 && p[1] != '/')) return p;
  const char* home = std::getenv("HOME");
  return home ? std::string(home) + p.substr(1) : p;
}

// Absolute and lexically normalized, without a trailing separator.
fs::path abs_norm(const std::string& p) {
  fs::path out = fs::absolute(fs::path(p)).lexically_normal();
  if (out.has_relative_path() && out.filename().empty()) out = out.parent_path();
  return out;
}

// Python's os.path.realpath(os.path.expanduser(p)).
std::string realpath(const std::string& p) {
  std::error_code ec;
  fs::path out = fs::weakly_canonical(fs::absolute(fs::path(expanduser(p))), ec);
  if (ec) return abs_norm(expanduser(p)).string();
  if (out.has_relative_path() && out.filename().empty()) out = out.parent_path();
  return out.string();
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
}

bool lexists(const std::string& p) {
  std::error_code ec;
  return fs::exists(fs::symlink_status(p, ec));
}

std::string py_list_repr(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + py::str_repr(items[i]);
  return out + "]";
}

Value optional_double(const std::optional<double>& v) { return v ? Value(*v) : Value(); }

}  // namespace

SaveLast::SaveLast(const char* mode) {
  std::string m = mode ? mode : "";
  EMBER_CHECK(m == "link", "[ModelCheckpoint] save_last must be true, false or \"link\", got ", py::str_repr(m));
  kind = Kind::Link;
}

ModelCheckpoint::ModelCheckpoint(ModelCheckpointOptions options) : opts_(std::move(options)) {
  EMBER_CHECK(opts_.mode == "min" || opts_.mode == "max", "[ModelCheckpoint] `mode` can be min, max but got ",
              opts_.mode);
  kth_value_ = opts_.mode == "min" ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();
  if (opts_.dirpath && opts_.dirpath->empty()) opts_.dirpath.reset();
  if (opts_.filename && opts_.filename->empty()) opts_.filename.reset();
  if (opts_.dirpath) dirpath_ = realpath(*opts_.dirpath);

  if (!opts_.every_n_train_steps && !opts_.every_n_epochs && !opts_.train_time_interval) {
    every_n_epochs_ = 1;
    every_n_train_steps_ = 0;
  } else {
    every_n_epochs_ = opts_.every_n_epochs.value_or(0);
    every_n_train_steps_ = opts_.every_n_train_steps.value_or(0);
  }

  EMBER_CHECK(opts_.save_top_k >= -1, "[ModelCheckpoint] Invalid value for save_top_k=", opts_.save_top_k,
              ". Must be >= -1");
  EMBER_CHECK(every_n_train_steps_ >= 0, "[ModelCheckpoint] Invalid value for every_n_train_steps=",
              every_n_train_steps_, ". Must be >= 0");
  EMBER_CHECK(every_n_epochs_ >= 0, "[ModelCheckpoint] Invalid value for every_n_epochs=", every_n_epochs_,
              ". Must be >= 0");
  int triggers = (every_n_train_steps_ >= 1) + (every_n_epochs_ >= 1) + (opts_.train_time_interval.has_value());
  EMBER_CHECK(triggers <= 1, "[ModelCheckpoint] Combination of parameters every_n_train_steps=", every_n_train_steps_,
              ", every_n_epochs=", every_n_epochs_, " and train_time_interval=",
              opts_.train_time_interval ? detail::timedelta_str(*opts_.train_time_interval) : "None",
              " should be mutually exclusive.");
  EMBER_CHECK(opts_.monitor || opts_.save_top_k == -1 || opts_.save_top_k == 0 || opts_.save_top_k == 1,
              "[ModelCheckpoint] ModelCheckpoint(save_top_k=", opts_.save_top_k,
              ", monitor=None) is not a valid configuration. No quantity for top_k to track.");
}

std::string ModelCheckpoint::state_key() const {
  return str_cat("ModelCheckpoint{'monitor': ", opts_.monitor ? py::str_repr(*opts_.monitor) : "None",
                 ", 'mode': ", py::str_repr(opts_.mode), ", 'every_n_train_steps': ", every_n_train_steps_,
                 ", 'every_n_epochs': ", every_n_epochs_, ", 'train_time_interval': ",
                 opts_.train_time_interval ? detail::timedelta_repr(*opts_.train_time_interval) : "None", "}");
}

Value ModelCheckpoint::state_dict() const {
  ValueMap best_k;
  ValueList order;
  for (const auto& [path, score] : best_k_models_) {
    best_k[path] = score;
    order.emplace_back(path);
  }
  ValueMap s;
  s["monitor"] = opts_.monitor ? Value(*opts_.monitor) : Value();
  s["best_model_score"] = optional_double(best_model_score_);
  s["best_model_path"] = best_model_path_;
  s["current_score"] = optional_double(current_score_);
  s["dirpath"] = dirpath_;
  s["best_k_models"] = std::move(best_k);
  // Python dicts keep insertion order and ties in the ranking depend on it; Value maps are sorted.
  s["best_k_models_order"] = std::move(order);
  s["kth_best_model_path"] = kth_best_model_path_;
  s["kth_value"] = kth_value_;
  s["last_model_path"] = last_model_path_;
  return Value(std::move(s));
}

void ModelCheckpoint::load_state_dict(const Value& state) {
  std::string saved_dir = state.contains("dirpath") && state.at("dirpath").is_string()
                              ? state.at("dirpath").as_string()
                              : dirpath_;
  if (saved_dir == dirpath_) {
    const Value& score = state.at("best_model_score");
    best_model_score_ = score.is_null() ? std::nullopt : std::optional<double>(score.as_double());
    if (state.contains("kth_best_model_path")) kth_best_model_path_ = state.at("kth_best_model_path").as_string();
    if (state.contains("kth_value")) kth_value_ = state.at("kth_value").as_double();
    if (state.contains("best_k_models")) {
      const ValueMap& m = state.at("best_k_models").as_map();
      std::vector<std::pair<std::string, double>> restored;
      if (state.contains("best_k_models_order")) {
        for (const Value& p : state.at("best_k_models_order").as_list()) {
          auto it = m.find(p.as_string());
          EMBER_CHECK(it != m.end(), "[ModelCheckpoint] best_k_models_order names ", py::str_repr(p.as_string()),
                      " which is not in best_k_models");
          restored.emplace_back(it->first, it->second.as_double());
        }
        EMBER_CHECK(restored.size() == m.size(), "[ModelCheckpoint] best_k_models has ", m.size(),
                    " entries but best_k_models_order lists ", restored.size());
      } else {
        for (const auto& [path, score] : m) restored.emplace_back(path, score.as_double());
      }
      best_k_models_ = std::move(restored);
    }
    if (state.contains("last_model_path")) last_model_path_ = state.at("last_model_path").as_string();
  } else {
    // load_state_dict has no trainer to print through: the warning is printed at on_train_start.
    warning_ = str_cat("[ModelCheckpoint] The dirpath has changed from ", py::str_repr(saved_dir), " to ",
                       py::str_repr(dirpath_),
                       ", therefore `best_model_score`, `kth_best_model_path`, `kth_value`, `last_model_path` and"
                       " `best_k_models` won't be reloaded. Only `best_model_path` will be reloaded.");
  }
  best_model_path_ = state.at("best_model_path").as_string();
}

// --- hooks ---------------------------------------------------------------------------------------

void ModelCheckpoint::setup(Trainer& trainer, LightningModule&, const std::string& stage) {
  dirpath_ = resolve_dirpath(trainer);
  if (stage == "fit") {
    last_global_step_saved_ = 0;
    last_checkpoint_saved_.clear();
    defer_save_until_validation_ = false;
    saved_this_run_ = false;
    std::error_code ec;
    if (opts_.save_top_k != 0 && fs::is_directory(dirpath_, ec) && !fs::is_empty(dirpath_, ec))
      trainer.print("[ModelCheckpoint] warning: Checkpoint directory " + dirpath_ + " exists and is not empty.");
  }
}

void ModelCheckpoint::on_train_start(Trainer& trainer, LightningModule&) {
  last_time_checked_ = std::chrono::steady_clock::now();
  if (!warning_.empty()) {
    trainer.print(warning_);
    warning_.clear();
  }
}

void ModelCheckpoint::on_train_batch_end(Trainer& trainer, LightningModule&, const Tensor&, const Batch&, int64_t) {
  if (should_skip_saving(trainer)) return;
  bool skip_batch = every_n_train_steps_ < 1 || trainer.global_step() % every_n_train_steps_ != 0;
  bool skip_time = true;
  auto now = std::chrono::steady_clock::now();
  if (opts_.train_time_interval) {
    skip_time = !last_time_checked_ ||
                std::chrono::duration<double>(now - *last_time_checked_) < *opts_.train_time_interval;
  }
  if (skip_batch && skip_time) return;
  if (!skip_time) last_time_checked_ = now;

  NameMetrics metrics = monitor_candidates(trainer);
  // A monitored value that is not there yet, or that the validation right after this batch is about
  // to refresh, is saved at validation end instead (Lightning 2.6).
  if (opts_.monitor && (!metrics.count(*opts_.monitor) ||
                        (!should_save_on_train_epoch_end(trainer) && validation_follows_this_batch(trainer)))) {
    defer_save_until_validation_ = true;
    return;
  }
  save_topk(trainer, metrics);
  save_last(trainer, metrics);
}

void ModelCheckpoint::on_train_epoch_end(Trainer& trainer, LightningModule&) {
  if (!should_save_on_train_epoch_end(trainer)) return;
  defer_save_until_validation_ = false;  // deferred saves happen at validation end only
  if (should_skip_saving(trainer)) return;
  save_epoch_end(trainer);
}

void ModelCheckpoint::on_validation_end(Trainer& trainer, LightningModule&) {
  if (should_skip_saving(trainer) || should_save_on_train_epoch_end(trainer)) return;
  if (defer_save_until_validation_) {
    defer_save_until_validation_ = false;
    NameMetrics metrics = monitor_candidates(trainer);
    save_topk(trainer, metrics);
    save_last(trainer, metrics);
    return;
  }
  save_epoch_end(trainer);
}

void ModelCheckpoint::on_train_end(Trainer& trainer, LightningModule&) {
  if (!opts_.save_last || saved_this_run_ || should_skip_saving(trainer)) return;
  save_last(trainer, monitor_candidates(trainer));
}

void ModelCheckpoint::save_epoch_end(Trainer& trainer) {
  NameMetrics metrics = monitor_candidates(trainer);
  if (every_n_epochs_ >= 1 && (trainer.current_epoch() + 1) % every_n_epochs_ == 0) save_topk(trainer, metrics);
  save_last(trainer, metrics);
}

bool ModelCheckpoint::should_skip_saving(const Trainer& trainer) const {
  return trainer.stage() != "fit" || trainer.sanity_checking() || last_global_step_saved_ == trainer.global_step();
}

bool ModelCheckpoint::should_save_on_train_epoch_end(const Trainer& trainer) const {
  if (opts_.save_on_train_epoch_end) return *opts_.save_on_train_epoch_end;
  const TrainerOptions& o = trainer.options();
  if (o.check_val_every_n_epoch != 1) return false;
  if (trainer.num_val_batches() == 0) return true;
  const BatchLimit& v = o.val_check_interval;
  return v.is_count ? v.count == 1 : v.fraction == 1.0;
}

bool ModelCheckpoint::validation_follows_this_batch(const Trainer& trainer) const {
  if (!trainer.is_last_batch() || trainer.num_val_batches() == 0) return false;
  int64_t every = trainer.options().check_val_every_n_epoch;
  return every <= 0 || (trainer.current_epoch() + 1) % every == 0;
}

// --- saving --------------------------------------------------------------------------------------

void ModelCheckpoint::save_topk(Trainer& trainer, const NameMetrics& metrics) {
  if (opts_.save_top_k == 0) return;
  if (!opts_.monitor) {
    save_none_monitor(trainer, metrics);
    return;
  }
  if (!metrics.count(*opts_.monitor)) {
    std::vector<std::string> keys;
    for (const auto& [k, v] : trainer.callback_metrics()) keys.push_back(k);
    for (const char* k : {"epoch", "step"})
      if (!trainer.callback_metrics().count(k)) keys.emplace_back(k);
    std::string msg = str_cat("`ModelCheckpoint(monitor=", py::str_repr(*opts_.monitor),
                              ")` could not find the monitored key in the returned metrics: ", py_list_repr(keys),
                              ". HINT: Did you call `log(", py::str_repr(*opts_.monitor),
                              ", value)` in the `LightningModule`?");
    if (trainer.validation_ran()) throw Error("[ModelCheckpoint] " + msg);
    if (!warned_missing_monitor_) trainer.print("[ModelCheckpoint] warning: " + msg);
    warned_missing_monitor_ = true;
  }
  save_monitor(trainer, metrics);
}

void ModelCheckpoint::save_monitor(Trainer& trainer, const NameMetrics& metrics) {
  auto it = metrics.find(*opts_.monitor);
  bool accept = false;
  double current = 0.0;
  if (it != metrics.end()) {
    current = it->second.as_double();
    if (opts_.save_top_k == -1 || static_cast<int64_t>(best_k_models_.size()) < opts_.save_top_k) {
      accept = true;
    } else {
      double kth = 0.0;
      bool found = false;
      for (const auto& [path, score] : best_k_models_)
        if (path == kth_best_model_path_) { kth = score; found = true; break; }
      EMBER_CHECK(found, "[ModelCheckpoint] kth_best_model_path ", py::str_repr(kth_best_model_path_),
                  " is not among best_k_models");
      accept = opts_.mode == "min" ? current < kth : current > kth;  // strict: ties and NaN lose
    }
  }
  if (accept) {
    update_best_and_save(current, trainer, metrics);
  } else if (opts_.verbose) {
    trainer.print(str_cat("Epoch ", metrics.at("epoch").as_int(), ", global step ", metrics.at("step").as_int(), ": ",
                          py::str_repr(*opts_.monitor), " was not in top ", opts_.save_top_k));
  }
}

void ModelCheckpoint::save_none_monitor(Trainer& trainer, const NameMetrics& metrics) {
  trainer.wait_for_checkpoint();  // names depend on the files on disk: the write in flight lands first
  std::string path = unique_name(metrics, "", best_model_path_);
  std::string previous = best_model_path_;
  best_model_path_ = path;  // before writing: the file records itself
  save_file(trainer, path);
  if (opts_.save_top_k == 1 && !previous.empty() && should_remove(trainer, previous, path))
    remove_file(trainer, previous);
}

void ModelCheckpoint::update_best_and_save(double current, Trainer& trainer, const NameMetrics& metrics) {
  size_t k = opts_.save_top_k == -1 ? best_k_models_.size() + 1 : static_cast<size_t>(opts_.save_top_k);
  std::string del_path;
  if (best_k_models_.size() == k && k > 0) {
    del_path = kth_best_model_path_;
    std::erase_if(best_k_models_, [&](const auto& e) { return e.first == del_path; });
  }
  if (std::isnan(current))
    current = opts_.mode == "min" ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();

  trainer.wait_for_checkpoint();  // names depend on the files on disk: the write in flight lands first
  std::string path = unique_name(metrics, "", del_path);
  current_score_ = current;
  auto slot = std::find_if(best_k_models_.begin(), best_k_models_.end(), [&](const auto& e) { return e.first == path; });
  if (slot != best_k_models_.end()) slot->second = current;
  else best_k_models_.emplace_back(path, current);

  // Python's max/min over the dict: the first entry (insertion order) with the extreme score.
  auto first_extreme = [&](bool largest) {
    auto best = best_k_models_.begin();
    for (auto e = best_k_models_.begin(); e != best_k_models_.end(); ++e)
      if (largest ? e->second > best->second : e->second < best->second) best = e;
    return best;
  };
  if (best_k_models_.size() == k) {
    auto kth = first_extreme(opts_.mode == "min");
    kth_best_model_path_ = kth->first;
    kth_value_ = kth->second;
  }
  auto best = first_extreme(opts_.mode != "min");
  best_model_path_ = best->first;
  best_model_score_ = best->second;

  if (opts_.verbose) {
    trainer.print(str_cat("Epoch ", metrics.at("epoch").as_int(), ", global step ", metrics.at("step").as_int(), ": ",
                          py::str_repr(*opts_.monitor), " reached ", py::format_number(py::Number::of_float(current), "0.5f"),
                          " (best ", py::format_number(py::Number::of_float(*best_model_score_), "0.5f"),
                          "), saving model to ", py::str_repr(path), " as top ", k));
  }
  save_file(trainer, path);
  if (!del_path.empty() && should_remove(trainer, del_path, path)) remove_file(trainer, del_path);
}

void ModelCheckpoint::save_last(Trainer& trainer, const NameMetrics& metrics) {
  if (!opts_.save_last) return;
  trainer.wait_for_checkpoint();  // names depend on the files on disk: the write in flight lands first
  std::string path = unique_name(metrics, opts_.checkpoint_name_last, last_model_path_);
  std::string previous = last_model_path_;
  last_model_path_ = path;  // before writing: the file records itself
  // A link to itself (the last save was this very file) would dangle: write a copy then.
  if (opts_.save_last.kind == SaveLast::Kind::Link && !last_checkpoint_saved_.empty() && opts_.save_top_k != 0 &&
      last_checkpoint_saved_ != path) {
    link_file(trainer, last_checkpoint_saved_, path);
  } else {
    save_file(trainer, path);
  }
  if (!previous.empty() && should_remove(trainer, previous, path)) remove_file(trainer, previous);
}

void ModelCheckpoint::save_file(Trainer& trainer, const std::string& path) {
  fs::path parent = fs::path(path).parent_path();
  if (!parent.empty() && trainer.is_global_zero()) fs::create_directories(parent);  // only rank 0 writes
  trainer.save_checkpoint(path, opts_.save_weights_only);
  last_global_step_saved_ = trainer.global_step();
  last_checkpoint_saved_ = path;
  saved_this_run_ = true;
}

void ModelCheckpoint::link_file(Trainer& trainer, const std::string& target, const std::string& link) {
  // The target may still be being written (asynchronous checkpointing): link once it is committed.
  trainer.after_checkpoint_commit([&trainer, target, link] { make_link(trainer, target, link); });
}

void ModelCheckpoint::make_link(Trainer& trainer, const std::string& target, const std::string& link) {
  if (!trainer.is_global_zero()) return;  // only rank 0 writes
  std::error_code ec;
  fs::file_status st = fs::symlink_status(link, ec);
  if (fs::is_directory(st)) fs::remove_all(link, ec);
  else if (fs::exists(st)) fs::remove(link, ec);
  fs::path parent = fs::path(link).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  fs::path rel = fs::path(target).lexically_relative(parent);
  ec.clear();
  fs::create_symlink(rel.empty() ? fs::path(target) : rel, link, ec);
  if (ec) {
    trainer.print("[ModelCheckpoint] warning: cannot create the symlink " + link + " (" + ec.message() +
                  "); copying " + target + " instead");
    fs::copy_file(target, link, fs::copy_options::overwrite_existing);
  }
}

std::string ModelCheckpoint::unique_name(const NameMetrics& metrics, const std::string& filename,
                                         const std::string& replaceable) const {
  std::string path = format_checkpoint_name(metrics, filename);
  if (opts_.enable_version_counter) {
    int64_t ver = opts_.starting_version;
    while (lexists(path) && path != replaceable) path = format_checkpoint_name(metrics, filename, ver++);
  }
  return path;
}

bool ModelCheckpoint::should_remove(const Trainer& trainer, const std::string& previous,
                                    const std::string& current) const {
  if (previous == current) return false;
  fs::path prev = abs_norm(previous);
  // the file being resumed from, however it was spelled (relative, through symlinks)
  auto canonical = [](const std::string& p) {
    std::error_code ec;
    fs::path c = fs::weakly_canonical(fs::absolute(fs::path(p)), ec);
    return ec ? abs_norm(p) : c;
  };
  if (!trainer.ckpt_path().empty() && canonical(previous) == canonical(trainer.ckpt_path())) return false;
  fs::path dir = abs_norm(dirpath_);
  for (fs::path p = prev.parent_path(); !p.empty(); p = p.parent_path()) {
    if (p == dir) return true;
    if (p == p.parent_path()) break;
  }
  return false;
}

void ModelCheckpoint::remove_file(Trainer& trainer, const std::string& path) const {
  // Only once the file replacing it is committed (at once unless a write is in flight).
  trainer.remove_checkpoint_file(path);
}

// --- naming --------------------------------------------------------------------------------------

std::string ModelCheckpoint::format_checkpoint_name(const NameMetrics& metrics, const std::string& filename,
                                                    std::optional<int64_t> ver) const {
  std::string templ = filename.empty() ? opts_.filename.value_or("") : filename;
  std::string name = format_filename(templ, metrics, opts_.auto_insert_metric_name);
  if (ver) name += str_cat(kJoinChar, "v", *ver);
  name += kExtension;
  return dirpath_.empty() ? name : (fs::path(dirpath_) / name).string();
}

std::string ModelCheckpoint::format_filename(const std::string& templ, const NameMetrics& metrics,
                                             bool auto_insert_metric_name) {
  std::map<std::string, py::Number> numbers;
  for (const auto& [name, v] : metrics) {
    EMBER_CHECK(v.is_number(), "[ModelCheckpoint] metric ", py::str_repr(name),
                " for the checkpoint name must be an int or a float, got ", v.repr());
    numbers[name] = v.is_int() ? py::Number::of_int(v.as_int()) : py::Number::of_float(v.as_double());
  }
  std::string text = templ.empty() ? str_cat("{epoch}", kJoinChar, "{step}") : templ;
  // Every "{name" up to the first ':' or '}', longest first so "{epoch_test}" survives "{epoch}".
  static const std::regex field(R"((\{.*?)[:\}])");
  std::vector<std::string> groups;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), field); it != std::sregex_iterator(); ++it)
    groups.push_back((*it)[1].str());
  std::stable_sort(groups.begin(), groups.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  for (const std::string& group : groups) {
    std::string name = group.substr(1);
    if (auto_insert_metric_name) replace_all(text, group, name + kEqualsChar + "{" + name);
    replace_all(text, group, "{0[" + name + "]");
    if (!numbers.count(name)) numbers[name] = py::Number::of_int(0);
  }
  try {
    return py::format_indexed(text, [&](const std::string& key) {
      auto it = numbers.find(key);
      if (it == numbers.end()) throw Error("[pyformat] KeyError: " + py::str_repr(key));
      return it->second;
    });
  } catch (const Error& e) {
    std::string what = e.what();
    const std::string prefix = "[pyformat] ";
    if (what.rfind(prefix, 0) == 0) what = what.substr(prefix.size());
    throw Error("[ModelCheckpoint] filename template " + py::str_repr(templ) + ": " + what);
  }
}

NameMetrics ModelCheckpoint::monitor_candidates(const Trainer& trainer) {
  NameMetrics out;
  const Metrics& logged = trainer.callback_metrics();
  for (const auto& [name, m] : logged)
    out[name] = m.is_int ? Value(static_cast<int64_t>(m.value)) : Value(m.value);
  auto as_int = [&](const char* key, int64_t fallback) {
    auto it = logged.find(key);
    if (it == logged.end() || !std::isfinite(it->second.value)) return Value(fallback);
    return Value(static_cast<int64_t>(std::trunc(it->second.value)));
  };
  out["epoch"] = as_int("epoch", trainer.current_epoch());
  out["step"] = as_int("step", trainer.global_step());
  return out;
}

// --- "last" lookup -------------------------------------------------------------------------------

std::string ModelCheckpoint::resolve_dirpath(const Trainer& trainer) const {
  if (opts_.dirpath) return realpath(*opts_.dirpath);
  fs::path base = trainer.log_dir().empty() ? fs::path(trainer.default_root_dir()) : fs::path(trainer.log_dir());
  return realpath((base / "checkpoints").string());
}

std::vector<std::string> ModelCheckpoint::last_checkpoint_candidates(const Trainer& trainer) const {
  return find_last_checkpoints(resolve_dirpath(trainer), opts_.checkpoint_name_last);
}

std::vector<std::string> ModelCheckpoint::find_last_checkpoints(const std::string& dir, const std::string& name_last) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    fs::path p = e.path();
    if (p.extension() != kExtension || p.stem().string().rfind(name_last, 0) != 0) continue;
    out.push_back(p.lexically_normal().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace ember
