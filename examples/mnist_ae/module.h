// AutoEncoderModule: the LightningModule of ember-mnist-ae. It wraps one of the models of
// examples/common/models.h, trains it with MSE on pixels/255, logs `train_loss` (training_step) and
// `val_loss` (validation_step) with log()'s default flags, and builds its optimizer and scheduler
// from its hyperparameters, so that load_from_checkpoint rebuilds it from a checkpoint alone.
#pragma once
#include <memory>
#include <string>

#include "ember/nn/nn.h"
#include "ember/train/lightning_module.h"

namespace ember::examples {

// Hyperparameters (all saved in checkpoints and hparams.yaml):
//   model (lit|mlp|conv), learning_rate, batch_size, optimizer (adam|adamw|sgd),
//   scheduler (none|step|cosine|onecycle|plateau), seed, max_epochs, max_steps,
//   limit_train_batches, limit_val_batches (int count or float fraction, as given to the Trainer),
//   total_steps (optimizer steps the run is planned for: the horizon of cosine and onecycle).
class AutoEncoderModule : public LightningModule {
 public:
  // Builds the model named by hp["model"]; weights come from the default generator.
  explicit AutoEncoderModule(const HParams& hp);

  Tensor forward(const Tensor& x) override;
  Tensor training_step(const Batch& batch, int64_t batch_idx) override;
  void validation_step(const Batch& batch, int64_t batch_idx) override;
  OptimizerConfig configure_optimizers() override;
  // Sequential {"encoder", "decoder"}: forward's computation from the same modules, made of
  // registered types, so the checkpoints run without this code (nn::load_module, ember-run).
  std::shared_ptr<const nn::Module> inference_module() const override;

  // The images of a batch on the model's device (batches come from the loader on the CPU).
  Tensor input(const Batch& batch) const;

  std::shared_ptr<nn::Sequential> encoder, decoder;
};

// What --scheduler does, for --help: one line per choice.
const char* scheduler_help();

}  // namespace ember::examples
