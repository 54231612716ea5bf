// <ember/ember.h>: the whole C++ API in one include -- tensors, ops and autograd, threads and
// random generators, nn modules, optimizers and learning-rate schedulers, data loading, the
// trainer with its callbacks and loggers, and checkpoints. The narrower <ember/...> headers it
// includes can be used on their own. (The C API is <ember/c.h>.)
#pragma once

#include "ember/config.h"
#include "ember/runtime/allocator.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/convert.h"
#include "ember/runtime/device.h"
#include "ember/runtime/dtype.h"
#include "ember/runtime/error.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/parallel.h"
#include "ember/runtime/rng.h"
#include "ember/runtime/shape.h"
#include "ember/runtime/tensor.h"
#include "ember/runtime/value.h"
#include "ember/runtime/version.h"

#include "ember/nn/nn.h"

#include "ember/checkpoint/checkpoint.h"

#include "ember/train/callbacks.h"
#include "ember/train/data/dataloader.h"
#include "ember/train/data/dataset.h"
#include "ember/train/data/distributed_sampler.h"
#include "ember/train/data/idx.h"
#include "ember/train/data/mnist.h"
#include "ember/train/grad_scaler.h"
#include "ember/train/hparams.h"
#include "ember/train/lightning_module.h"
#include "ember/train/logger.h"
#include "ember/train/lr_scheduler.h"
#include "ember/train/module_io.h"
#include "ember/train/optim.h"
#include "ember/train/progress.h"
#include "ember/train/trainer.h"
