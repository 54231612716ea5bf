#!/usr/bin/env bash
# Newcomer command 1: installs what is missing (scripts/setup.sh run), configures a Release build in
# build/, builds ember-mnist-ae (and the deployment tools ember-run, ember-ckpt and ember-deploy that
# the README's deployment section uses next) and trains the `lit` autoencoder for 3 epochs on
# Fashion-MNIST.
# It ends with the paths of the checkpoints and pictures it wrote (under build/runs/).
# Usage: scripts/train.sh [extra ember-mnist-ae fit options]   (env: JOBS, default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${JOBS:-2}"
bash scripts/setup.sh run
log="$(mktemp)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >"$log" 2>&1 || { cat "$log"; rm -f "$log"; exit 1; }
grep -E "^-- Ember:" "$log" || true
rm -f "$log"
cmake --build build -j"$jobs" --target ember-mnist-ae ember-run ember-ckpt ember-deploy
echo "training: build/bin/ember-mnist-ae fit --model lit --max-epochs 3 --default-root-dir build/runs $*"
build/bin/ember-mnist-ae fit --model lit --max-epochs 3 --default-root-dir build/runs "$@"
