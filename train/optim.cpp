// Optimizer base (groups, zero_grad, state dicts and their validation), each optimizer's option
// checks (torch 1.13's ranges and messages), and gradient clipping. The update rules themselves are
// in optim_update.cpp.
#include "ember/train/optim.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <set>

#include "ember/runtime/autocast.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"

namespace ember::optim {
namespace {

std::string fmt_num(double v) { return str_cat(v); }

// Grad mode on for a scope (closures compute a loss that needs a graph).
class EnableGradGuard {
 public:
  EnableGradGuard() : prev_(grad_enabled()) { set_grad_enabled(true); }
  ~EnableGradGuard() { set_grad_enabled(prev_); }
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool prev_;
};

// Reads a numeric option (int or float) and stores it back as a float.
double take_number(ValueMap& o, const std::string& key, const std::string& who, const std::string& where) {
  auto it = o.find(key);
  EMBER_CHECK(it != o.end() && !it->second.is_null(), "[", who, "] ", where, " has no value for option '", key, "'");
  EMBER_CHECK(it->second.is_number(), "[", who, "] ", where, ": option '", key, "' must be a number, got ",
              it->second.repr());
  double v = it->second.as_double();
  it->second = Value(v);
  return v;
}

bool take_bool(ValueMap& o, const std::string& key, const std::string& who, const std::string& where) {
  auto it = o.find(key);
  EMBER_CHECK(it != o.end() && it->second.is_bool(), "[", who, "] ", where, ": option '", key,
              "' must be a bool, got ", it == o.end() ? std::string("nothing") : it->second.repr());
  return it->second.as_bool();
}

// torch's implementation switches: recorded for layout fidelity. foreach may be null.
void check_switches(ValueMap& o, std::initializer_list<const char*> keys, const std::string& who,
                    const std::string& where) {
  for (const char* k : keys) {
    auto it = o.find(k);
    if (it == o.end()) continue;
    if (std::string(k) == "foreach" && it->second.is_null()) continue;
    take_bool(o, k, who, where);
  }
  auto d = o.find("differentiable");
  EMBER_CHECK(d == o.end() || !d->second.as_bool(), "[", who, "] ", where,
              ": differentiable=true (autograd through the update) is not supported");
}

void check_nonnegative(double v, const char* what, const std::string& who, const std::string& where) {
  EMBER_CHECK(v >= 0.0, "[", who, "] ", where, ": invalid ", what, " value: ", fmt_num(v), " (must be >= 0)");
}

std::array<double, 2> take_betas(ValueMap& o, const std::string& who, const std::string& where) {
  auto it = o.find("betas");
  EMBER_CHECK(it != o.end() && it->second.is_list() && it->second.as_list().size() == 2 &&
                  it->second.as_list()[0].is_number() && it->second.as_list()[1].is_number(),
              "[", who, "] ", where, ": option 'betas' must be a list of two numbers, got ",
              it == o.end() ? std::string("nothing") : it->second.repr());
  std::array<double, 2> b{it->second.as_list()[0].as_double(), it->second.as_list()[1].as_double()};
  for (int i = 0; i < 2; ++i) {
    EMBER_CHECK(b[i] >= 0.0 && b[i] < 1.0, "[", who, "] ", where, ": invalid beta parameter at index ", i, ": ",
                fmt_num(b[i]), " (must be in [0, 1))");
  }
  it->second = Value(ValueList{b[0], b[1]});
  return b;
}

std::string group_where(size_t i) { return str_cat("parameter group ", i); }

}  // namespace

// --- ParamGroup --------------------------------------------------------------------------------

double ParamGroup::lr() const { return number("lr"); }

void ParamGroup::set_lr(double lr) { options["lr"] = Value(lr); }

double ParamGroup::number(const std::string& key) const {
  auto it = options.find(key);
  EMBER_CHECK(it != options.end(), "[optim] parameter group has no option '", key, "'");
  EMBER_CHECK(it->second.is_number(), "[optim] parameter group option '", key, "' is not a number: ",
              it->second.repr());
  return it->second.as_double();
}

// --- Optimizer -------------------------------------------------------------------------------

Optimizer::Optimizer(std::string type_name, ValueMap defaults)
    : type_name_(std::move(type_name)), defaults_(std::move(defaults)) {}

void Optimizer::init_groups(std::vector<ParamGroup> groups) {
  EMBER_CHECK(!groups.empty(), "[", type_name_, "] optimizer got an empty parameter list");
  for (auto& g : groups) add_param_group(std::move(g));
}

void Optimizer::add_param_group(ParamGroup group) {
  const std::string where = group_where(groups_.size());
  std::set<std::string> names;
  std::set<const TensorImpl*> impls;
  for (const auto& g : groups_) {
    for (const auto& [name, t] : g.params) {
      names.insert(name);
      impls.insert(t.impl_ptr().get());
    }
  }
  for (const auto& [name, t] : group.params) {
    EMBER_CHECK(!name.empty(), "[", type_name_, "] ", where, ": a parameter has an empty name");
    EMBER_CHECK(t.defined(), "[", type_name_, "] ", where, ": parameter '", name, "' is an undefined tensor");
    EMBER_CHECK(is_floating(t.dtype()), "[", type_name_, "] ", where, ": parameter '", name, "' has dtype ",
                dtype_name(t.dtype()), "; only floating-point tensors can be optimized");
    EMBER_CHECK(t.is_leaf(), "[", type_name_, "] ", where, ": can't optimize a non-leaf tensor ('", name, "')");
    EMBER_CHECK(names.insert(name).second, "[", type_name_, "] ", where, ": parameter name '", name,
                "' appears more than once in the optimizer");
    EMBER_CHECK(impls.insert(t.impl_ptr().get()).second, "[", type_name_, "] ", where, ": parameter '", name,
                "' is the same tensor as another parameter of the optimizer");
  }
  ValueMap merged = defaults_;
  for (auto& [k, v] : group.options) merged[k] = v;
  check_options(merged, where);
  group.options = std::move(merged);
  groups_.push_back(std::move(group));
  group_added(groups_.back());
}

void Optimizer::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (auto& g : groups_) {
    for (auto& [name, p] : g.params) {
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      if (set_to_none) {
        p.set_grad(Tensor());
      } else if (grad.grad_fn()) {
        Tensor d = grad.detach();  // as torch: drop the history, then zero
        d.zero_();
        p.set_grad(d);
      } else {
        grad.zero_();
      }
    }
  }
}

void Optimizer::step() {
  NoGradGuard no_grad;
  for (auto& g : groups_) {
    step_group(g);
    if (!lowp_dtype_) continue;
    // The copies step_group did not write (optimizers without a fused copy): cast after the update.
    for (auto& [name, p] : g.params) {
      if (!p.grad().defined()) continue;
      LowpCopy* c = lowp_copy_for(name, p);
      if (c == nullptr || c->version == p.version()) continue;
      c->copy.copy_(p);
      c->version = p.version();
    }
  }
}

void Optimizer::keep_lowp_copies(std::optional<DType> dtype) {
  EMBER_CHECK(!dtype || *dtype == DType::bf16 || *dtype == DType::f16, "[", type_name_,
              "] keep_lowp_copies takes bf16 or f16 (or nullopt), got ", dtype_name(*dtype));
  if (dtype != lowp_dtype_) lowp_.clear();
  lowp_dtype_ = dtype;
}

void Optimizer::use_lowp_copies() const {
  if (!autocast_enabled()) return;
  for (const auto& [name, c] : lowp_)
    if (c.version == c.param.version() && c.copy.dtype() == autocast_dtype()) autocast_use_lowp_copy(c.param, c.copy);
}

Optimizer::LowpCopy* Optimizer::lowp_copy_for(const std::string& name, const Tensor& p) {
  if (!lowp_dtype_ || p.dtype() != DType::f32 || !p.device().is_cpu()) return nullptr;
  auto it = lowp_.find(name);
  if (it != lowp_.end() && it->second.param.impl_ptr() == p.impl_ptr()) return &it->second;
  // A new parameter under this name: the version never matches p's, so the copy counts as stale.
  LowpCopy c{p, empty(p.shape(), TensorOptions(*lowp_dtype_)), p.version() + 1};
  return &(lowp_[name] = std::move(c));
}

Tensor Optimizer::step(const std::function<Tensor()>& closure) {
  Tensor loss;
  {
    EnableGradGuard enable;
    loss = closure();
  }
  step();
  return loss;
}

const ValueMap* Optimizer::state(const std::string& param_name) const {
  auto it = state_.find(param_name);
  return it == state_.end() ? nullptr : &it->second;
}

Value Optimizer::state_dict() const {
  ValueMap state;
  ValueList groups;
  int64_t index = 0;
  for (const auto& g : groups_) {
    ValueMap packed = g.options;
    ValueList indices, names;
    for (const auto& [name, t] : g.params) {
      indices.emplace_back(index);
      names.emplace_back(name);
      auto it = state_.find(name);
      if (it != state_.end()) state[std::to_string(index)] = Value(it->second);
      ++index;
    }
    packed["params"] = Value(std::move(indices));
    packed["param_names"] = Value(std::move(names));
    groups.emplace_back(std::move(packed));
  }
  ValueMap out;
  out["state"] = Value(std::move(state));
  out["param_groups"] = Value(std::move(groups));
  return Value(std::move(out));
}

void Optimizer::load_state_dict(const Value& sd) {
  const std::string pre = str_cat("[", type_name_, "] load_state_dict: ");
  EMBER_CHECK(sd.is_map(), pre, "expected a map with 'state' and 'param_groups', got ", sd.repr());
  EMBER_CHECK(sd.contains("state") && sd.at("state").is_map(), pre, "'state' is missing or not a map");
  EMBER_CHECK(sd.contains("param_groups") && sd.at("param_groups").is_list(), pre,
              "'param_groups' is missing or not a list");
  const ValueList& saved_groups = sd.at("param_groups").as_list();
  EMBER_CHECK(saved_groups.size() == groups_.size(), pre, "the state dict has ", saved_groups.size(),
              " parameter groups but the optimizer has ", groups_.size());

  std::vector<std::string> problems;
  std::map<int64_t, std::pair<size_t, size_t>> by_index;  // saved index -> (group, position)
  std::vector<ValueMap> new_options(groups_.size());
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& group = groups_[gi];
    const Value& saved = saved_groups[gi];
    const std::string where = group_where(gi);
    EMBER_CHECK(saved.is_map() && saved.contains("params") && saved.at("params").is_list(), pre, where,
                " is not a map with a 'params' list");
    const ValueList& idx = saved.at("params").as_list();
    EMBER_CHECK(idx.size() == group.params.size(), pre, where, " has ", idx.size(),
                " parameters in the state dict but ", group.params.size(), " in the optimizer");
    for (size_t j = 0; j < idx.size(); ++j) {
      EMBER_CHECK(idx[j].is_int(), pre, where, ": 'params' entry ", j, " is not an integer index: ", idx[j].repr());
      EMBER_CHECK(by_index.emplace(idx[j].as_int(), std::make_pair(gi, j)).second, pre, where,
                  ": parameter index ", idx[j].as_int(), " appears more than once");
    }
    if (saved.contains("param_names")) {
      const Value& names = saved.at("param_names");
      EMBER_CHECK(names.is_list() && names.as_list().size() == idx.size(), pre, where,
                  ": 'param_names' must be a list as long as 'params' (", idx.size(), ")");
      for (size_t j = 0; j < idx.size(); ++j) {
        const Value& n = names.as_list()[j];
        const std::string& have = group.params[j].first;
        if (!n.is_string()) {
          problems.push_back(str_cat(where, " position ", j, ": name is not a string: ", n.repr()));
        } else if (n.as_string() != have) {
          problems.push_back(str_cat(where, " position ", j, ": the state dict has '", n.as_string(),
                                     "', the optimizer has '", have, "'"));
        }
      }
    }
    ValueMap merged = defaults();
    for (const auto& [k, v] : saved.as_map()) {
      if (k != "params" && k != "param_names") merged[k] = v;
    }
    try {
      check_options(merged, where);
    } catch (const Error& e) {
      problems.push_back(e.what());
    }
    new_options[gi] = std::move(merged);
  }

  std::map<std::string, ValueMap> new_state;
  for (const auto& [key, entry] : sd.at("state").as_map()) {
    char* end = nullptr;
    long long index = std::strtoll(key.c_str(), &end, 10);
    auto hit = (key.empty() || *end != '\0') ? by_index.end() : by_index.find(index);
    if (hit == by_index.end()) {
      problems.push_back(str_cat("state entry '", key, "' refers to no parameter of the saved groups"));
      continue;
    }
    const auto [gi, pos] = hit->second;
    const auto& [name, param] = groups_[gi].params[pos];
    if (!entry.is_map()) {
      problems.push_back(str_cat("state of '", name, "' is not a map: ", entry.repr()));
      continue;
    }
    ValueMap loaded;
    std::set<std::string> known;
    for (const StateField& f : state_fields(new_options[gi])) {
      known.insert(f.key);
      if (!entry.contains(f.key)) {
        if (f.required) problems.push_back(str_cat("state of '", name, "' lacks '", f.key, "'"));
        continue;
      }
      const Value& v = entry.at(f.key);
      const std::string what = str_cat("state of '", name, "': '", f.key, "'");
      switch (f.kind) {
        case Field::ParamTensor:
        case Field::NullableParamTensor: {
          if (v.is_null() && f.kind == Field::NullableParamTensor) {
            loaded[f.key] = Value();
            break;
          }
          if (!v.is_tensor()) {
            problems.push_back(str_cat(what, " must be a tensor, got ", v.repr()));
            break;
          }
          const Tensor& t = v.as_tensor();
          if (t.shape() != param.shape()) {
            problems.push_back(str_cat(what, " has shape ", t.shape().str(), " but the parameter has shape ",
                                       param.shape().str()));
          } else if (t.dtype() != param.dtype()) {
            problems.push_back(str_cat(what, " has dtype ", dtype_name(t.dtype()), " but the parameter has dtype ",
                                       dtype_name(param.dtype())));
          } else {
            Tensor c = empty(param.shape(), TensorOptions(param.dtype()).with_device(param.device()));
            c.copy_(t);
            loaded[f.key] = Value(c);
          }
          break;
        }
        case Field::FloatStep:
        case Field::IntStep: {
          double s = 0.0;
          if (v.is_number()) {
            s = v.as_double();
          } else if (v.is_tensor() && v.as_tensor().numel() == 1) {
            s = v.as_tensor().item_double();
          } else {
            problems.push_back(str_cat(what, " must be a number, got ", v.repr()));
            break;
          }
          if (!(s >= 0.0) || s != std::floor(s)) {
            problems.push_back(str_cat(what, " must be a non-negative whole number, got ", fmt_num(s)));
            break;
          }
          loaded[f.key] = f.kind == Field::FloatStep ? Value(s) : Value(static_cast<int64_t>(s));
          break;
        }
      }
    }
    for (const auto& [k, v] : entry.as_map()) {
      if (!known.count(k)) problems.push_back(str_cat("state of '", name, "' has unexpected key '", k, "'"));
    }
    new_state[name] = std::move(loaded);
  }

  if (!problems.empty()) {
    std::string msg = str_cat(pre, problems.size(), problems.size() == 1 ? " problem: " : " problems: ");
    for (size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
    throw Error(msg);
  }
  for (size_t gi = 0; gi < groups_.size(); ++gi) groups_[gi].options = std::move(new_options[gi]);
  state_ = std::move(new_state);
  lowp_.clear();
}

// --- option checks (torch 1.13's constructor checks, applied to every group) ------------------

namespace {
ValueMap sgd_defaults(const SGDOptions& o) {
  return ValueMap{{"lr", o.lr ? Value(*o.lr) : Value()},
                  {"momentum", o.momentum},
                  {"dampening", o.dampening},
                  {"weight_decay", o.weight_decay},
                  {"nesterov", o.nesterov},
                  {"maximize", o.maximize},
                  {"foreach", Value()},
                  {"differentiable", false}};
}
ValueMap adam_defaults(double lr, std::array<double, 2> betas, double eps, double wd, bool amsgrad, bool maximize,
                       bool with_torch_adam_switches) {
  ValueMap m{{"lr", lr},
             {"betas", ValueList{betas[0], betas[1]}},
             {"eps", eps},
             {"weight_decay", wd},
             {"amsgrad", amsgrad},
             {"maximize", maximize},
             {"foreach", Value()},
             {"capturable", false}};
  if (with_torch_adam_switches) {  // torch 1.13's Adam has these two more than its AdamW
    m["differentiable"] = false;
    m["fused"] = false;
  }
  return m;
}
}  // namespace

SGD::SGD(NamedParams params, SGDOptions options) : SGD(std::vector<ParamGroup>{ParamGroup{std::move(params), {}}}, options) {
  EMBER_CHECK(!param_groups()[0].params.empty(), "[SGD] optimizer got an empty parameter list");
}

SGD::SGD(std::vector<ParamGroup> groups, SGDOptions options) : Optimizer("SGD", sgd_defaults(options)) {
  init_groups(std::move(groups));
}

void SGD::check_options(ValueMap& o, const std::string& where) const {
  auto lr = o.find("lr");
  EMBER_CHECK(lr != o.end() && !lr->second.is_null(), "[SGD] ", where,
              " doesn't specify lr, and SGDOptions has no default lr (lr is required)");
  check_nonnegative(take_number(o, "lr", "SGD", where), "learning rate", "SGD", where);
  double momentum = take_number(o, "momentum", "SGD", where);
  check_nonnegative(momentum, "momentum", "SGD", where);
  double dampening = take_number(o, "dampening", "SGD", where);
  check_nonnegative(take_number(o, "weight_decay", "SGD", where), "weight_decay", "SGD", where);
  bool nesterov = take_bool(o, "nesterov", "SGD", where);
  take_bool(o, "maximize", "SGD", where);
  check_switches(o, {"foreach", "differentiable"}, "SGD", where);
  EMBER_CHECK(!nesterov || (momentum > 0.0 && dampening == 0.0), "[SGD] ", where,
              ": Nesterov momentum requires a momentum and zero dampening (momentum ", fmt_num(momentum),
              ", dampening ", fmt_num(dampening), ")");
}

std::vector<Optimizer::StateField> SGD::state_fields(const ValueMap&) const {
  return {{"momentum_buffer", Field::NullableParamTensor, true}};
}

Adam::Adam(NamedParams params, AdamOptions options)
    : Adam(std::vector<ParamGroup>{ParamGroup{std::move(params), {}}}, options) {
  EMBER_CHECK(!param_groups()[0].params.empty(), "[Adam] optimizer got an empty parameter list");
}

Adam::Adam(std::vector<ParamGroup> groups, AdamOptions o)
    : Adam("Adam", adam_defaults(o.lr, o.betas, o.eps, o.weight_decay, o.amsgrad, o.maximize, true), false) {
  init_groups(std::move(groups));
}

Adam::Adam(std::string type_name, ValueMap defaults, bool decoupled)
    : Optimizer(std::move(type_name), std::move(defaults)), decoupled_(decoupled) {}

AdamW::AdamW(NamedParams params, AdamWOptions options)
    : AdamW(std::vector<ParamGroup>{ParamGroup{std::move(params), {}}}, options) {
  EMBER_CHECK(!param_groups()[0].params.empty(), "[AdamW] optimizer got an empty parameter list");
}

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions o)
    : Adam("AdamW", adam_defaults(o.lr, o.betas, o.eps, o.weight_decay, o.amsgrad, o.maximize, false), true) {
  init_groups(std::move(groups));
}

void Adam::check_options(ValueMap& o, const std::string& where) const {
  const std::string& who = type_name();
  check_nonnegative(take_number(o, "lr", who, where), "learning rate", who, where);
  check_nonnegative(take_number(o, "eps", who, where), "epsilon", who, where);
  take_betas(o, who, where);
  check_nonnegative(take_number(o, "weight_decay", who, where), "weight_decay", who, where);
  take_bool(o, "amsgrad", who, where);
  take_bool(o, "maximize", who, where);
  check_switches(o, {"foreach", "capturable", "differentiable", "fused"}, who, where);
}

std::vector<Optimizer::StateField> Adam::state_fields(const ValueMap& o) const {
  bool amsgrad = o.at("amsgrad").as_bool();
  return {{"step", Field::FloatStep, true},
          {"exp_avg", Field::ParamTensor, true},
          {"exp_avg_sq", Field::ParamTensor, true},
          {"max_exp_avg_sq", Field::ParamTensor, amsgrad}};
}

RMSprop::RMSprop(NamedParams params, RMSpropOptions options)
    : RMSprop(std::vector<ParamGroup>{ParamGroup{std::move(params), {}}}, options) {
  EMBER_CHECK(!param_groups()[0].params.empty(), "[RMSprop] optimizer got an empty parameter list");
}

RMSprop::RMSprop(std::vector<ParamGroup> groups, RMSpropOptions o)
    : Optimizer("RMSprop", ValueMap{{"lr", o.lr},
                                    {"alpha", o.alpha},
                                    {"eps", o.eps},
                                    {"weight_decay", o.weight_decay},
                                    {"momentum", o.momentum},
                                    {"centered", o.centered},
                                    {"maximize", o.maximize},
                                    {"foreach", Value()},
                                    {"differentiable", false}}) {
  init_groups(std::move(groups));
}

void RMSprop::check_options(ValueMap& o, const std::string& where) const {
  check_nonnegative(take_number(o, "lr", "RMSprop", where), "learning rate", "RMSprop", where);
  check_nonnegative(take_number(o, "eps", "RMSprop", where), "epsilon", "RMSprop", where);
  check_nonnegative(take_number(o, "momentum", "RMSprop", where), "momentum", "RMSprop", where);
  check_nonnegative(take_number(o, "weight_decay", "RMSprop", where), "weight_decay", "RMSprop", where);
  check_nonnegative(take_number(o, "alpha", "RMSprop", where), "alpha", "RMSprop", where);
  take_bool(o, "centered", "RMSprop", where);
  take_bool(o, "maximize", "RMSprop", where);
  check_switches(o, {"foreach", "differentiable"}, "RMSprop", where);
}

std::vector<Optimizer::StateField> RMSprop::state_fields(const ValueMap& o) const {
  return {{"step", Field::IntStep, true},
          {"square_avg", Field::ParamTensor, true},
          {"momentum_buffer", Field::ParamTensor, o.at("momentum").as_double() > 0.0},
          {"grad_avg", Field::ParamTensor, o.at("centered").as_bool()}};
}

Adagrad::Adagrad(NamedParams params, AdagradOptions options)
    : Adagrad(std::vector<ParamGroup>{ParamGroup{std::move(params), {}}}, options) {
  EMBER_CHECK(!param_groups()[0].params.empty(), "[Adagrad] optimizer got an empty parameter list");
}

Adagrad::Adagrad(std::vector<ParamGroup> groups, AdagradOptions o)
    : Optimizer("Adagrad", ValueMap{{"lr", o.lr},
                                    {"lr_decay", o.lr_decay},
                                    {"eps", o.eps},
                                    {"weight_decay", o.weight_decay},
                                    {"initial_accumulator_value", o.initial_accumulator_value},
                                    {"maximize", o.maximize},
                                    {"foreach", Value()}}) {
  init_groups(std::move(groups));
}

void Adagrad::check_options(ValueMap& o, const std::string& where) const {
  check_nonnegative(take_number(o, "lr", "Adagrad", where), "learning rate", "Adagrad", where);
  check_nonnegative(take_number(o, "lr_decay", "Adagrad", where), "lr_decay", "Adagrad", where);
  check_nonnegative(take_number(o, "weight_decay", "Adagrad", where), "weight_decay", "Adagrad", where);
  check_nonnegative(take_number(o, "initial_accumulator_value", "Adagrad", where), "initial_accumulator_value",
                    "Adagrad", where);
  check_nonnegative(take_number(o, "eps", "Adagrad", where), "epsilon", "Adagrad", where);
  take_bool(o, "maximize", "Adagrad", where);
  check_switches(o, {"foreach"}, "Adagrad", where);
}

std::vector<Optimizer::StateField> Adagrad::state_fields(const ValueMap&) const {
  return {{"step", Field::FloatStep, true}, {"sum", Field::ParamTensor, true}};
}

void Adagrad::group_added(ParamGroup& group) {
  const double init = group.number("initial_accumulator_value");
  for (const auto& [name, p] : group.params) init_state(name, p, init);
}

void Adagrad::init_state(const std::string& name, const Tensor& param, double initial_value) {
  ValueMap s;
  s["step"] = Value(0.0);
  s["sum"] = Value(full(param.shape(), initial_value, TensorOptions(param.dtype()).with_device(param.device())));
  state_[name] = std::move(s);
}

// --- gradient clipping -----------------------------------------------------------------------

namespace {

std::vector<Tensor> grads_of(const std::vector<Tensor>& params) {
  std::vector<Tensor> grads;
  for (const auto& p : params) {
    EMBER_CHECK(p.defined(), "[clip_grad] a parameter is an undefined tensor");
    Tensor g = p.grad();
    if (g.defined()) grads.push_back(g);
  }
  return grads;
}

// sum |g|^p (p finite) or max |g| (p inf) of one gradient, accumulated in double.
double grad_norm_part(const Tensor& g, double p) {
  const bool inf_norm = std::isinf(p);
  if (g.numel() == 0) return 0.0;
  if (g.device().is_cpu() && is_compute_floating(g.dtype()) && g.is_contiguous()) {
    return dispatch_floating(g.dtype(), "clip_grad_norm_", [&](auto tag) {
      using T = decltype(tag);
      const T* x = g.data_ptr<T>();
      const int64_t n = g.numel();
      double acc = 0.0;
      if (inf_norm) {
        for (int64_t i = 0; i < n; ++i) {
          double a = std::fabs(static_cast<double>(x[i]));
          if (std::isnan(a)) return a;
          acc = a > acc ? a : acc;
        }
      } else if (p == 2.0) {
        for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(x[i]) * static_cast<double>(x[i]);
      } else if (p == 1.0) {
        for (int64_t i = 0; i < n; ++i) acc += std::fabs(static_cast<double>(x[i]));
      } else {
        for (int64_t i = 0; i < n; ++i) acc += std::pow(std::fabs(static_cast<double>(x[i])), p);
      }
      return acc;
    });
  }
  Tensor a = abs(g.detach().to(DType::f64));
  if (inf_norm) return max(a).item_double();
  if (p == 2.0) return sum(mul(a, a)).item_double();
  if (p == 1.0) return sum(a).item_double();
  return sum(pow(a, p)).item_double();
}

double clip_norm_impl(const std::vector<Tensor>& params, double max_norm, double norm_type, bool error_if_nonfinite) {
  EMBER_CHECK(norm_type > 0.0, "[clip_grad_norm_] norm_type must be a positive number or inf, got ",
              fmt_num(norm_type));
  std::vector<Tensor> grads = grads_of(params);
  if (grads.empty()) return 0.0;
  NoGradGuard no_grad;
  const bool inf_norm = std::isinf(norm_type);
  double acc = 0.0;
  bool nan = false;
  for (const auto& g : grads) {
    double part = grad_norm_part(g, norm_type);
    if (std::isnan(part)) nan = true;
    acc = inf_norm ? (part > acc ? part : acc) : acc + part;
  }
  double total = nan ? std::numeric_limits<double>::quiet_NaN()
                     : (inf_norm || norm_type == 1.0) ? acc
                     : norm_type == 2.0                ? std::sqrt(acc)
                                                       : std::pow(acc, 1.0 / norm_type);
  // torch computes the norm and the coefficient in the gradients' dtype: round to float when all
  // gradients are float32 so that the coefficient matches torch's.
  bool all_f32 = true;
  for (const auto& g : grads) all_f32 = all_f32 && g.dtype() == DType::f32;
  if (all_f32) total = static_cast<float>(total);
  EMBER_CHECK(!error_if_nonfinite || std::isfinite(total), "[clip_grad_norm_] the total norm of order ",
              fmt_num(norm_type), " of the gradients is ", fmt_num(total),
              ", so it cannot be clipped (pass error_if_nonfinite = false to scale by it anyway)");
  double coef;
  if (all_f32) {
    float c = static_cast<float>(max_norm) / (static_cast<float>(total) + static_cast<float>(1e-6));
    coef = c > 1.0f ? 1.0 : static_cast<double>(c);  // NaN stays NaN, as torch.clamp
  } else {
    double c = max_norm / (total + 1e-6);
    coef = c > 1.0 ? 1.0 : c;
  }
  for (auto& g : grads) g.mul_(coef);  // torch multiplies even by 1 (no device sync on the branch)
  return total;
}

std::vector<Tensor> tensors_of(const NamedParams& params) {
  std::vector<Tensor> ts;
  ts.reserve(params.size());
  for (const auto& [name, t] : params) ts.push_back(t);
  return ts;
}

}  // namespace

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type, bool error_if_nonfinite) {
  return clip_norm_impl(params, max_norm, norm_type, error_if_nonfinite);
}

double clip_grad_norm_(const NamedParams& params, double max_norm, double norm_type, bool error_if_nonfinite) {
  return clip_norm_impl(tensors_of(params), max_norm, norm_type, error_if_nonfinite);
}

void clip_grad_value_(const std::vector<Tensor>& params, double clip_value) {
  NoGradGuard no_grad;
  for (auto& g : grads_of(params)) g.clamp_(-clip_value, clip_value);
}

void clip_grad_value_(const NamedParams& params, double clip_value) { clip_grad_value_(tensors_of(params), clip_value); }

}  // namespace ember::optim
