// A data-parallel fit in which one rank throws from training_step (rank 1 at its 4th batch; the
// others go on into the gradient all-reduce): the Trainer must end the whole job non-zero, naming
// the rank, instead of leaving the others waiting. faults.sh runs it under mpirun.
//   usage: ember_ddp_failing_rank ROOT_DIR
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "examples/mnist_ae/module.h"
#include "ember/runtime/error.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "ember/train/trainer.h"
#include "ember/train/distributed/ddp_strategy.h"
#include "ember/train/distributed/process_group.h"

namespace {

ember::HParams mlp_hparams() {
  return ember::HParams{{"model", std::string("mlp")}, {"learning_rate", 1e-3}, {"optimizer", std::string("adam")},
                        {"scheduler", std::string("none")}};
}

class FailingRank : public ember::examples::AutoEncoderModule {
 public:
  FailingRank() : AutoEncoderModule(mlp_hparams()) {}
  ember::Tensor training_step(const ember::Batch& batch, int64_t batch_idx) override {
    if (ember::dist::rank() == 1 && batch_idx == 3) EMBER_THROW("[FailingRank] injected failure at batch ", batch_idx);
    return AutoEncoderModule::training_step(batch, batch_idx);
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: ember_ddp_failing_rank ROOT_DIR\n");
    return 2;
  }
  using namespace ember;
  TrainerOptions o;
  o.default_root_dir = argv[1];
  o.max_epochs = 2;
  o.enable_progress_bar = false;
  o.num_sanity_val_steps = 0;
  o.seed = 3;
  o.strategy = dist::ddp();
  Generator g(21);
  auto ds = std::make_shared<data::TensorDataset>(std::vector<Tensor>{rand({256, 784}, {}, &g)});
  data::DataLoader loader(ds, data::DataLoaderOptions{.batch_size = 8, .shuffle = true, .seed = 5});
  FailingRank model;
  Trainer t(o);
  t.fit(model, loader);
  std::printf("rank %d finished the fit: the failure was not noticed\n", dist::rank());
  return 0;
}
