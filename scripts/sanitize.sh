#!/usr/bin/env bash
# Builds Ember's CPU code (no CUDA, no benchmarks, no MPI: Open MPI's own allocations and threads
# would be reported) with the compiler's sanitizers and runs the
# tests under them, each job in its own build folder at -O1 -g1 (line tables only: reports still
# name file and line, and the builds compile about a third faster than with full -g); in the
# ASan job the test executables' own code at -O0 (EMBER_TEST_CXX_FLAGS: it compiles in about 60%
# of the time and is mostly assertions; the library and tests/support/ keep -O1; under TSan, which
# instruments every memory access, -O0 test loops cost more run time than they save in compiling):
#   asan  AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer included): every CPU test,
#         in build-asan/.
#   tsan  ThreadSanitizer: the test areas that run code on several threads (thread pool and the
#         kernels on it, DataLoader workers, cross-thread frees, the trainer's signal handling),
#         in build-tsan/.
# A sanitizer report aborts the test process with a non-zero status, so it fails the test and the
# job. Usage: scripts/sanitize.sh [asan|tsan]...   (default: both; env: JOBS, default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${JOBS:-2}"
jobs_to_run=("$@")
if [ ${#jobs_to_run[@]} -eq 0 ]; then jobs_to_run=(asan tsan); fi

# configure DIR SANITIZERS [CMAKE ARGS...]: a CPU-only -O1 -g1 build of the tests and examples.
configure() {
  local dir=$1 san=$2 log
  shift 2
  log="$(mktemp)"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1" -DEMBER_CUDA=OFF -DEMBER_BUILD_BENCH=OFF -DEMBER_BUILD_SHARED=OFF \
    -DEMBER_DISTRIBUTED=OFF \
    -DEMBER_SANITIZE="$san" "$@" >"$log" 2>&1 || { cat "$log"; rm -f "$log"; exit 1; }
  grep -E "^-- Ember:" "$log" || true
  rm -f "$log"
}

# The sanitizers' run-time options (settings already in the environment win).
# exitcode / halt_on_error make a report fail the process; UBSan prints the stack of each report.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=0:check_initialization_order=1:strict_init_order=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:exitcode=66:second_deadlock_stack=1}"

for job in "${jobs_to_run[@]}"; do
  case "$job" in
    asan)
      echo "[sanitize] ASan + UBSan: every CPU test (build-asan/)"
      configure build-asan address,undefined -DEMBER_TEST_CXX_FLAGS=-O0
      cmake --build build-asan -j"$jobs"
      ctest --test-dir build-asan --output-on-failure -j"$jobs" --timeout 600
      ;;
    tsan)
      echo "[sanitize] TSan: the multi-threaded tests (build-tsan/)"
      configure build-tsan thread -DEMBER_BUILD_EXAMPLES=OFF -DEMBER_TEST_CXX_FLAGS=
      # runtime: the pool, parallel kernels, cross-thread small_free; data: loader workers;
      # train: the fused optimizer loops on the pool; trainer: SIGTERM mid-fit; checkpoint: the
      # reader's chunked CRC on the pool. The other areas add no threads of their own.
      areas=(runtime data train trainer checkpoint)
      cmake --build build-tsan -j"$jobs" --target "${areas[@]/#/ember_tests_}"
      label="^($(IFS='|'; echo "${areas[*]}"))\$"
      # g++ 12's TSan fails with "unexpected memory mapping" on kernels that randomise mmap with
      # more than 28 bits (vm.mmap_rnd_bits = 32 on some distributions); so the tests run without
      # address randomisation where setarch allows it.
      norandom=()
      if setarch "$(uname -m)" -R true 2>/dev/null; then norandom=(setarch "$(uname -m)" -R); fi
      # Gemm.SpansEveryCacheBlock is left to the other jobs: its time is a naive single-threaded
      # reference product in the test's own code (220M multiply-adds), which TSan instruments
      # access by access; the GEMM's threads are covered by the other Gemm tests here.
      "${norandom[@]}" ctest --test-dir build-tsan --output-on-failure -j"$jobs" --timeout 600 -L "$label" \
        -E '^Gemm\.SpansEveryCacheBlock$'
      ;;
    *) echo "usage: scripts/sanitize.sh [asan|tsan]..." >&2; exit 2 ;;
  esac
done
