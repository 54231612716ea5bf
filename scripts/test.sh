#!/usr/bin/env bash
# Sets up, builds and runs every Ember test job in turn, stopping at the first failure: the
# Release build (into build/; the test executables' own code at -O1, which compiles in two thirds
# of -O3's time) with its GoogleTest suites through CTest; Ember installed from that
# build and used from outside (tests/consumer/run.sh: find_package, FetchContent, pkg-config, the
# C API from C and Python, the Debian packages); the CPU tests under
# ASan + UBSan and the multi-threaded ones under TSan (scripts/sanitize.sh, into build-asan/ and
# build-tsan/); then the bounded checkpoint-reader fuzz run. Prints each job's wall time.
# Usage: scripts/test.sh   (env: JOBS, default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${JOBS:-2}"
bash scripts/setup.sh test
step_start=$SECONDS
step_done() { echo "[test] $1 passed in $((SECONDS - step_start)) s"; step_start=$SECONDS; }

log="$(mktemp)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DEMBER_TEST_CXX_FLAGS=-O1 >"$log" 2>&1 || { cat "$log"; rm -f "$log"; exit 1; }
grep -E "^-- Ember:" "$log" || true
rm -f "$log"
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs" --timeout 600
step_done "Release build + tests"
JOBS="$jobs" bash tests/consumer/run.sh build
step_done "install + consumer projects + Debian packages"
JOBS="$jobs" bash scripts/sanitize.sh asan
step_done "ASan + UBSan build + tests"
JOBS="$jobs" bash scripts/sanitize.sh tsan
step_done "TSan build + tests"
bash scripts/fuzz-checkpoint.sh
step_done "checkpoint fuzzing"
