// Everything in ember::nn: Module, layers, normalisation, containers, losses, init helpers and the
// module-type registry (describe/build of module trees).
#pragma once
#include "ember/nn/container.h"
#include "ember/nn/init.h"
#include "ember/nn/layers.h"
#include "ember/nn/loss.h"
#include "ember/nn/module.h"
#include "ember/nn/normalization.h"
#include "ember/nn/serialize.h"
