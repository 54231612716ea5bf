// Everything in ember::nn: Module, layers, normalisation, containers, losses and init helpers.
#pragma once
#include "nn/container.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/loss.h"
#include "nn/module.h"
#include "nn/normalization.h"
