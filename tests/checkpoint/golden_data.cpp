// Builds the values of the golden checkpoints (see golden_data.h). Tensors are filled from
// formulas through raw memory, so the expected bytes do not depend on any runtime kernel.
#include "tests/checkpoint/golden_data.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace ember::test::golden {

namespace {

template <typename T>
Tensor make(const Shape& shape, const std::vector<T>& values) {
  Tensor t = empty(shape, DTypeOf<T>::value);
  EMBER_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "[golden] ", values.size(), " values for shape ",
              shape.str());
  if (!values.empty()) {
    if constexpr (std::is_same_v<T, bool>) {
      auto* p = static_cast<uint8_t*>(t.data_ptr());
      for (size_t i = 0; i < values.size(); ++i) p[i] = values[i] ? 1 : 0;
    } else {
      std::memcpy(t.data_ptr(), values.data(), values.size() * sizeof(T));
    }
  }
  return t;
}

// a, a + step, ... (n floats).
Tensor ramp(const Shape& shape, float a, float step) {
  std::vector<float> v(static_cast<size_t>(shape.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = a + step * static_cast<float>(i);
  return make<float>(shape, v);
}

Bytes all_bytes() {
  Bytes b;
  for (int i = 0; i < 256; ++i) b.data.push_back(static_cast<uint8_t>(i));
  return b;
}

Value basic_root() {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  ValueMap sd;
  sd["a_f32"] = make<float>({2, 3}, {-2.5f, -1.0f, 0.0f, 1.0f / 3.0f, 1e-40f, 3.4e38f});
  sd["b_f64"] = make<double>({4}, {nan, inf, -0.0, 2.718281828459045});
  sd["c_f16"] = make<Half>({2, 2}, {Half(1.0f), Half(-0.5f), Half(65504.0f), Half(6e-8f)});
  sd["d_bf16"] = make<BFloat16>({4}, {BFloat16(1.0f), BFloat16(-3.0f), BFloat16(1e30f), BFloat16(0.1f)});
  sd["e_i32"] = make<int32_t>({2, 2}, {std::numeric_limits<int32_t>::min(), -1, 0, std::numeric_limits<int32_t>::max()});
  sd["f_i64"] = make<int64_t>({3}, {std::numeric_limits<int64_t>::min(), 7, std::numeric_limits<int64_t>::max()});
  sd["g_u8"] = make<uint8_t>({5}, {0, 1, 127, 128, 255});
  sd["h_bool"] = make<bool>({3}, {true, false, true});
  sd["scalar"] = make<float>({}, {42.5f});
  sd["empty"] = make<float>({0, 3}, {});

  ValueMap hp;
  hp["null"] = Value();
  hp["t"] = Value(true);
  hp["f"] = Value(false);
  hp["i"] = Value(int64_t{-42});
  hp["imax"] = Value(std::numeric_limits<int64_t>::max());
  hp["imin"] = Value(std::numeric_limits<int64_t>::min());
  hp["x"] = Value(0.5);
  hp["nan"] = Value(nan);
  hp["ninf"] = Value(-inf);
  hp["s"] = Value(std::string("h\xC3\xA9llo \xE2\x9C\x93"));
  hp["empty_s"] = Value(std::string());
  hp["b"] = Value(all_bytes());
  hp["empty_b"] = Value(Bytes{});
  hp["list"] = Value(ValueList{Value(1), Value("two"), Value(3.0), Value(ValueList{}), Value(ValueMap{})});
  hp["nested"] = Value(ValueMap{
      {"a", Value(ValueMap{{"b", Value(ValueMap{{"c", Value(ValueList{Value(1), Value(ValueList{Value(2)})})}})}})}});
  hp[""] = Value("empty key");

  ValueMap root;
  root[checkpoint::kStateDict] = Value(std::move(sd));
  root[checkpoint::kHyperParameters] = Value(std::move(hp));
  root[checkpoint::kEmberVersion] = Value("0.1.0");
  return Value(std::move(root));
}

Value trainer_root() {
  std::vector<std::pair<std::string, Shape>> params = {
      {"fc1.weight", {4, 3}}, {"fc1.bias", {4}}, {"fc2.weight", {2, 4}}, {"fc2.bias", {2}}, {"big.weight", {64, 64}}};
  ValueMap sd, state;
  ValueList names;
  float base = 0.0f;
  for (auto& [name, shape] : params) {
    bool big = name == "big.weight";  // constant, so that zlib shrinks it
    sd[name] = big ? ramp(shape, 0.25f, 0.0f) : ramp(shape, base, 0.125f);
    ValueMap s;
    s["step"] = Value(int64_t{40});
    s["exp_avg"] = big ? ramp(shape, 0.0f, 0.0f) : ramp(shape, -base, 0.01f);
    s["exp_avg_sq"] = big ? ramp(shape, 1e-4f, 0.0f) : ramp(shape, base * base, 0.001f);
    state[name] = Value(std::move(s));
    names.push_back(Value(name));
    base += 1.0f;
  }
  sd["bn.running_mean"] = ramp({4}, 0.5f, -0.25f);
  sd["bn.num_batches_tracked"] = make<int64_t>({}, {40});

  ValueMap group{{"lr", Value(1e-3)},
                 {"betas", Value(ValueList{Value(0.9), Value(0.999)})},
                 {"eps", Value(1e-8)},
                 {"weight_decay", Value(0.0)},
                 {"amsgrad", Value(false)},
                 {"params", Value(std::move(names))}};
  ValueMap adam{{"type", Value("Adam")},
                {"state", Value(std::move(state))},
                {"param_groups", Value(ValueList{Value(std::move(group))})}};
  ValueMap sched{{"type", Value("StepLR")},      {"step_size", Value(2)},
                 {"gamma", Value(0.5)},          {"last_epoch", Value(4)},
                 {"base_lrs", Value(ValueList{Value(1e-3)})}, {"_last_lr", Value(ValueList{Value(2.5e-4)})}};
  auto progress = [](int64_t ready, int64_t completed) {
    return Value(ValueMap{{"ready", Value(ready)}, {"started", Value(ready)}, {"processed", Value(ready)},
                          {"completed", Value(completed)}});
  };
  ValueMap loops{{"fit_loop", Value(ValueMap{{"epoch_progress", Value(ValueMap{{"total", progress(4, 3)},
                                                                             {"current", progress(4, 3)}})},
                                             {"batch_progress", Value(ValueMap{{"total", progress(40, 40)},
                                                                             {"current", progress(10, 10)}})}})}};
  ValueMap ckpt_cb{{"monitor", Value("val_loss")},
                   {"best_model_score", Value(0.25)},
                   {"best_model_path", Value("epoch=3-step=40.ckpt")},
                   {"best_k_models", Value(ValueMap{{"epoch=3-step=40.ckpt", Value(0.25)}})}};
  Bytes rng;
  for (int i = 0; i < 24; ++i) rng.data.push_back(static_cast<uint8_t>(i * 7 + 3));

  ValueMap root;
  root[checkpoint::kStateDict] = Value(std::move(sd));
  root[checkpoint::kOptimizerStates] = Value(ValueList{Value(std::move(adam))});
  root[checkpoint::kLrSchedulers] = Value(ValueList{Value(std::move(sched))});
  root[checkpoint::kLoops] = Value(std::move(loops));
  root[checkpoint::kCallbacks] = Value(ValueMap{{"ModelCheckpoint{'monitor': 'val_loss'}", Value(std::move(ckpt_cb))}});
  root[checkpoint::kRngStates] = Value(ValueMap{{"default", Value(std::move(rng))}});
  root[checkpoint::kHyperParameters] =
      Value(ValueMap{{"hidden", Value(4)}, {"lr", Value(1e-3)}, {"name", Value("mlp")}});
  root[checkpoint::kEpoch] = Value(3);
  root[checkpoint::kGlobalStep] = Value(40);
  root[checkpoint::kExtras] = Value(ValueMap{{"note", Value("golden")}});
  root[checkpoint::kEmberVersion] = Value("0.1.0");
  return Value(std::move(root));
}

std::array<uint8_t, 16> fixed_id(uint8_t seed) {
  std::array<uint8_t, 16> id;
  for (int i = 0; i < 16; ++i) id[i] = static_cast<uint8_t>(seed * 16 + i);
  return id;
}

}  // namespace

std::vector<Case> cases_v1_0() {
  std::vector<Case> cases;
  checkpoint::SaveOptions o;
  o.file_id = fixed_id(1);
  cases.push_back({"v1_0_basic.ckpt", basic_root(), o});
  o.file_id = fixed_id(2);
  cases.push_back({"v1_0_trainer.ckpt", trainer_root(), o});
  checkpoint::SaveOptions z = o;
  z.file_id = fixed_id(3);
  z.compression = checkpoint::Compression::zlib;
  z.min_compress_bytes = 0;
  cases.push_back({"v1_0_trainer_zlib.ckpt", trainer_root(), z});
  checkpoint::SaveOptions w = o;
  w.file_id = fixed_id(4);
  w.weights_only = true;
  Value weights = trainer_root();
  for (auto& name : checkpoint::training_sections()) weights.as_map().erase(name);
  cases.push_back({"v1_0_weights_only.ckpt", std::move(weights), w});
  checkpoint::SaveOptions a = o;
  a.file_id = fixed_id(5);
  a.align_log2 = 12;
  cases.push_back({"v1_0_align4k.ckpt", basic_root(), a});
  return cases;
}

}  // namespace ember::test::golden
