// Lightning's strategy="ddp" for the Trainer (TrainerOptions::strategy), on the MPI process group:
//   ember::TrainerOptions o{.max_epochs = 3, .strategy = ember::dist::ddp()};
// and the program started by `mpirun -np N`. What the Trainer then does is described at
// TrainerOptions::strategy (train/trainer.h) and in docs/distributed.md.
#pragma once
#include <memory>

#include "ember/train/strategy.h"
#include "ember/train/distributed/ddp.h"

namespace ember::dist {

// Joins the launcher's world (dist::init()) and returns the strategy; a world of one without a
// launcher (the Trainer then runs as without a strategy).
std::shared_ptr<Strategy> ddp(GradReducerOptions options = {});

}  // namespace ember::dist
