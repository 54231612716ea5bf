#!/usr/bin/env bash
# Sets up, builds (Release, into build/) and runs every Ember test: the GoogleTest suites through
# CTest, then the bounded checkpoint-reader fuzz run. Usage: scripts/test.sh   (env: JOBS, default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${JOBS:-2}"
bash scripts/setup.sh test
log="$(mktemp)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >"$log" 2>&1 || { cat "$log"; rm -f "$log"; exit 1; }
grep -E "^-- Ember:" "$log" || true
rm -f "$log"
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs" --timeout 600
if [ -x scripts/fuzz-checkpoint.sh ] || [ -f scripts/fuzz-checkpoint.sh ]; then
  bash scripts/fuzz-checkpoint.sh
fi
