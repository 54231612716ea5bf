// Everything in ember::nn: Module, layers, normalisation, containers, losses and init helpers.
#pragma once
#include "ember/nn/container.h"
#include "ember/nn/init.h"
#include "ember/nn/layers.h"
#include "ember/nn/loss.h"
#include "ember/nn/module.h"
#include "ember/nn/normalization.h"
