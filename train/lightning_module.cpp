// LightningModule defaults, log() forwarding to the trainer, and load_from_checkpoint's pieces.
#include "ember/train/lightning_module.h"

#include <cmath>
#include <map>

#include "ember/checkpoint/checkpoint.h"
#include "ember/train/trainer.h"

namespace ember {

LightningModule::LightningModule(std::string type_name) : nn::Module(std::move(type_name)) {}

void LightningModule::validation_step(const Batch&, int64_t) {}
void LightningModule::test_step(const Batch&, int64_t) {}

Tensor LightningModule::predict_step(const Batch& batch, int64_t) {
  EMBER_CHECK(!batch.empty(), "[predict_step] empty batch");
  return forward(batch[0]);
}

void LightningModule::log(const std::string& name, double value, LogOptions opts) {
  EMBER_CHECK(trainer_ != nullptr, "[log] '", name, "' was logged outside a Trainer run (no trainer attached)");
  EMBER_CHECK(!name.empty(), "[log] metric name is empty");
  // Lightning turns Python floats into float32 tensors.
  trainer_->record_log(name, Metric{static_cast<double>(static_cast<float>(value)), false}, opts);
}

void LightningModule::log(const std::string& name, const Tensor& value, LogOptions opts) {
  EMBER_CHECK(trainer_ != nullptr, "[log] '", name, "' was logged outside a Trainer run (no trainer attached)");
  EMBER_CHECK(value.defined() && value.numel() == 1, "[log] '", name, "' must be a one-element tensor, got ",
              value.defined() ? value.shape().str() : std::string("an undefined tensor"));
  trainer_->record_tensor_log(name, value, opts);
}

Value LightningModule::read_weights_checkpoint(const std::string& path) {
  checkpoint::ReadOptions ro;
  ro.weights_only = true;
  return checkpoint::load(path, ro);
}

HParams LightningModule::stored_hparams(const Value& ckpt, const std::string& path) {
  if (!ckpt.contains(checkpoint::kHyperParameters)) return HParams();
  const Value& hp = ckpt.at(checkpoint::kHyperParameters);
  if (hp.is_null()) return HParams();
  EMBER_CHECK(hp.is_map(), "[load_from_checkpoint] ", path, ": 'hyper_parameters' is a ", Value::kind_name(hp.kind()),
              " (expected a map)");
  return HParams(hp.as_map());
}

void LightningModule::restore_weights(const Value& ckpt, const std::string& path, const LoadOptions& opts) {
  EMBER_CHECK(ckpt.contains(checkpoint::kStateDict), "[load_from_checkpoint] ", path, " has no 'state_dict' section");
  on_load_checkpoint(ckpt.contains(checkpoint::kExtras) ? ckpt.at(checkpoint::kExtras) : Value());
  // Floating weights load into the model's own dtype, as PyTorch's load_state_dict copies them: a
  // "64-true" run's float64 file into a float32 model, or a float32 file into a model the Trainer
  // made float64.
  Value sd = ckpt.at(checkpoint::kStateDict);
  if (sd.is_map()) {
    std::map<std::string, DType> mine;
    for (const auto& [name, t] : named_parameters()) mine[name] = t.dtype();
    for (const auto& [name, t] : named_buffers()) mine[name] = t.dtype();
    ValueMap converted = sd.as_map();
    for (auto& [name, v] : converted) {
      if (!v.is_tensor()) continue;
      const auto it = mine.find(name);
      const DType from = v.as_tensor().dtype();
      if (it != mine.end() && it->second != from && is_compute_floating(from) && is_compute_floating(it->second))
        v = Value(v.as_tensor().to(it->second));
    }
    sd = Value(std::move(converted));
  }
  try {
    load_state_dict(sd, opts.strict);
  } catch (const Error& e) {
    throw Error(std::string("[load_from_checkpoint] ") + path + ": " + e.what());
  }
  to(opts.device);
}

}  // namespace ember
