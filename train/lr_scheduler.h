// Learning-rate schedulers with torch 1.13's behaviour, one header per family in lr_scheduler/:
// they act on an Optimizer's group options ("lr", and "momentum"/"betas" for OneCycleLR), use
// torch's recursive (chainable) get_lr formulas step to step and its closed forms for
// step_to(epoch), so the lr sequences match torch's to the bit. Each closed form is also a free
// function of the step (step_lr, cosine_annealing_lr, ...). state_dict() holds torch's __dict__
// fields (last_epoch, _step_count, base_lrs, _last_lr and every scheduler-specific field) as an
// ember::Value map; load_state_dict() checks the keys and types.
//
// Differences from torch, on purpose: no `verbose` printing and no step-order warnings (the
// `verbose` and `_get_lr_called_within_step` keys are not saved and are ignored on load);
// OneCycleLR saves "anneal_strategy" ("cos"/"linear") instead of torch's unpicklable bound method;
// LambdaLR cannot save its functions (see LambdaLR); ReduceLROnPlateau always has "_last_lr".
// A scheduler keeps a reference to its optimizer: the optimizer must outlive it.
#pragma once
// LRScheduler, the base of all but ReduceLROnPlateau.
#include "ember/train/lr_scheduler/scheduler.h"
// LambdaLR, StepLR, MultiStepLR, ConstantLR, LinearLR, ExponentialLR, PolynomialLR.
#include "ember/train/lr_scheduler/decay.h"
// CosineAnnealingLR, CosineAnnealingWarmRestarts, OneCycleLR.
#include "ember/train/lr_scheduler/cosine.h"
// SequentialLR, ChainedScheduler.
#include "ember/train/lr_scheduler/composite.h"
// ReduceLROnPlateau.
#include "ember/train/lr_scheduler/plateau.h"
