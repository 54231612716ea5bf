// Everything in ember::nn: Module, layers, normalisation, containers, losses, init helpers and the
// module-type registry (describe/build of module trees).
#pragma once
#include "nn/container.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/loss.h"
#include "nn/module.h"
#include "nn/normalization.h"
#include "nn/serialize.h"
