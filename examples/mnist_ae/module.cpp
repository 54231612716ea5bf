// AutoEncoderModule: steps, logging and the optimizer/scheduler choices of ember-mnist-ae.
#include "examples/mnist_ae/module.h"

#include "examples/common/models.h"
#include "ember/runtime/ops.h"

namespace ember::examples {

AutoEncoderModule::AutoEncoderModule(const HParams& hp) : LightningModule("AutoEncoderModule") {
  save_hyperparameters(hp);
  AutoEncoderParts parts = build_autoencoder(hp.get<std::string>("model"));
  encoder = register_module("encoder", parts.encoder);
  decoder = register_module("decoder", parts.decoder);
}

Tensor AutoEncoderModule::forward(const Tensor& x) { return decoder->forward(encoder->forward(x)); }

std::shared_ptr<const nn::Module> AutoEncoderModule::inference_module() const {
  return std::make_shared<nn::Sequential>(
      std::vector<std::pair<std::string, nn::ModulePtr>>{{"encoder", encoder}, {"decoder", decoder}});
}

Tensor AutoEncoderModule::input(const Batch& batch) const {
  EMBER_CHECK(!batch.empty() && batch[0].defined(), "[AutoEncoderModule] a batch needs its images as first tensor");
  Device d = encoder->parameters().front().device();
  return batch[0].device() == d ? batch[0] : batch[0].to(d);
}

Tensor AutoEncoderModule::training_step(const Batch& batch, int64_t) {
  Tensor x = input(batch);
  Tensor loss = mse_loss(forward(x), x);
  log("train_loss", loss);
  return loss;
}

void AutoEncoderModule::validation_step(const Batch& batch, int64_t) {
  Tensor x = input(batch);
  log("val_loss", mse_loss(forward(x), x));
}

const char* scheduler_help() {
  return "none: constant lr\n"
         "step: StepLR(step_size=1 epoch, gamma=0.7)\n"
         "cosine: CosineAnnealingLR(T_max=planned steps), stepped per step\n"
         "onecycle: OneCycleLR(max_lr=--lr, total_steps=planned steps), stepped per step\n"
         "plateau: ReduceLROnPlateau(val_loss, factor=0.5, patience=2), per epoch";
}

OptimizerConfig AutoEncoderModule::configure_optimizers() {
  const std::string opt_name = hparams().get<std::string>("optimizer");
  const std::string sched = hparams().get<std::string>("scheduler");
  const double lr = hparams().get<double>("learning_rate");
  std::shared_ptr<optim::Optimizer> opt;
  if (opt_name == "adam") opt = std::make_shared<optim::Adam>(named_parameters(), optim::AdamOptions{.lr = lr});
  else if (opt_name == "adamw") opt = std::make_shared<optim::AdamW>(named_parameters(), optim::AdamWOptions{.lr = lr});
  else if (opt_name == "sgd")
    opt = std::make_shared<optim::SGD>(named_parameters(), optim::SGDOptions{.lr = lr, .momentum = 0.9});
  else EMBER_THROW("[AutoEncoderModule] hyperparameter optimizer='", opt_name, "' is not one of adam, adamw, sgd");

  OptimizerConfig config(opt);
  const int64_t total_steps = hparams().get_or<int64_t>("total_steps", 0);
  auto need_total = [&] {
    EMBER_CHECK(total_steps > 0, "[AutoEncoderModule] scheduler '", sched,
                "' needs a bounded run (hyperparameter total_steps=", total_steps, ")");
  };
  if (sched == "none") {
  } else if (sched == "step") {
    config.schedulers.push_back(SchedulerConfig{.scheduler = std::make_shared<optim::StepLR>(*opt, 1, 0.7)});
  } else if (sched == "cosine") {
    need_total();
    config.schedulers.push_back(
        SchedulerConfig{.scheduler = std::make_shared<optim::CosineAnnealingLR>(*opt, total_steps), .interval = "step"});
  } else if (sched == "onecycle") {
    need_total();
    config.schedulers.push_back(SchedulerConfig{
        .scheduler = std::make_shared<optim::OneCycleLR>(*opt, optim::OneCycleLROptions{.max_lr = {lr}, .total_steps = total_steps}),
        .interval = "step"});
  } else if (sched == "plateau") {
    // strict=false: epochs without validation (--check-val-every-n-epoch > 1) leave it unchanged
    config.schedulers.push_back(SchedulerConfig{
        .plateau = std::make_shared<optim::ReduceLROnPlateau>(*opt, optim::ReduceLROnPlateauOptions{.factor = 0.5, .patience = 2}),
        .monitor = "val_loss",
        .strict = false});
  } else {
    EMBER_THROW("[AutoEncoderModule] hyperparameter scheduler='", sched,
                "' is not one of none, step, cosine, onecycle, plateau");
  }
  return config;
}

}  // namespace ember::examples
