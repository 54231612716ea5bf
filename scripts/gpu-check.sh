#!/usr/bin/env bash
# The GPU check in one command: builds Ember for sm_90 with the CUDA backend, runs the CUDA test
# binary, a compute-sanitizer memcheck pass over a short subset (kernels, parity of the heavy ops, a
# small training run), and the GPU benchmarks (Ember, and PyTorch eager when a python3 with torch
# is present), then prints a short summary table last. Exit status 0 only if every step passed.
#   usage: scripts/gpu-check.sh                    the check (on the machine with the GPU)
#          scripts/gpu-check.sh --fetch-sanitizer  (on a networked machine, before) puts PyPI's
#              compute-sanitizer matching nvcc's version under $BUILD_DIR/tools/, for machines that
#              lack one and cannot download: carry that folder to the GPU machine
#   env:   BUILD_DIR (default build-gpu), JOBS (default nproc), STEPS (default
#          "build,tests,memcheck,bench": the steps to run, e.g. "tests,bench" to reuse a build),
#          BENCH_STEPS (timed training steps per model, default 300), MEMCHECK_TIMEOUT (s, default 300)
set -uo pipefail
cd "$(dirname "$0")/.."
build="${BUILD_DIR:-build-gpu}"
jobs="${JOBS:-$(nproc)}"
steps="${BENCH_STEPS:-300}"
logs="$build/gpu-check-logs"
steps_to_run=",${STEPS:-build,tests,memcheck,bench},"
status=0
declare -a rows

now() { date +%s; }
want() { [[ "$steps_to_run" == *",$1,"* ]]; }
row() { rows+=("$(printf '%-22s %-8s %s' "$1" "$2" "$3")"); }

mkdir -p "$logs"

if [ "${1:-}" = "--fetch-sanitizer" ]; then
  cuda_ver=$(nvcc --version | grep -Eo 'release [0-9]+\.[0-9]+' | grep -Eo '[0-9]+\.[0-9]+')
  rm -rf "$build/tools/sanitizer" && mkdir -p "$build/tools/sanitizer"
  python3 -m pip download --no-deps "nvidia-cuda-sanitizer-api==${cuda_ver}.*" -d "$build/tools" &&
    python3 -m zipfile -e "$build"/tools/nvidia_cuda_sanitizer_api-*.whl "$build/tools/sanitizer" &&
    rm -f "$build"/tools/nvidia_cuda_sanitizer_api-*.whl &&
    chmod +x "$build"/tools/sanitizer/nvidia/*/bin/compute-sanitizer &&
    ls "$build"/tools/sanitizer/nvidia/*/bin/compute-sanitizer
  exit $?
fi

# --- build ------------------------------------------------------------------------------------
t0=$(now)
if want build; then
  if cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DEMBER_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
       >"$logs/configure.log" 2>&1 &&
     cmake --build "$build" -j"$jobs" --target ember_tests_cuda ember-bench-cuda >"$logs/build.log" 2>&1; then
    row "build (sm_90)" ok "$(( $(now) - t0 )) s"
  else
    tail -n 60 "$logs/configure.log" "$logs/build.log" 2>/dev/null
    row "build (sm_90)" FAIL "see $logs/build.log"
    printf '\n== gpu-check summary ==\n'
    printf '%s\n' "${rows[@]}"
    exit 1
  fi
else
  row "build (sm_90)" skipped "using $build"
fi
bin="$build/bin"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/GPU: /'

# --- tests ------------------------------------------------------------------------------------
if want tests; then
t0=$(now)
"$bin/ember_tests_cuda" --gtest_brief=1 2>&1 | tee "$logs/tests.log" | tail -n 40
test_rc=${PIPESTATUS[0]}
passed=$(grep -Eo '\[  PASSED  \] [0-9]+' "$logs/tests.log" | grep -Eo '[0-9]+$' || echo 0)
failed=$(grep -Eo '\[  FAILED  \] [0-9]+ test' "$logs/tests.log" | grep -Eo '[0-9]+' || echo 0)
skipped=$(grep -Eo '\[  SKIPPED \] [0-9]+ test' "$logs/tests.log" | grep -Eo '[0-9]+' || echo 0)
if [ "$test_rc" = 0 ] && [ "${skipped:-0}" = 0 ]; then
  row "ember_tests_cuda" ok "${passed} passed, 0 failed, 0 skipped ($(( $(now) - t0 )) s)"
else
  status=1
  row "ember_tests_cuda" FAIL "${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped (rc $test_rc)"
fi
fi

# --- memcheck of a short subset ---------------------------------------------------------------
if want memcheck; then
sanitizer=$(command -v compute-sanitizer || ls "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" \
  "$build"/tools/sanitizer/nvidia/*/bin/compute-sanitizer 2>/dev/null | head -n 1)
# Ember's own kernels, lightly through cuBLAS/cuDNN (instrumenting their kernels is slow), and a short
# training run (20 Adam steps of a small MLP).
subset='CudaKernels.IndexAdd*:CudaKernels.Pooling*:CudaKernels.MaxPrefers*:CudaKernels.SerialReductions*'
subset+=':CudaKernels.NllLoss*:CudaKernels.DirectConvolution*:CudaKernels.CopyConverts*:CudaRng.DrawsEqual*'
subset+=':CudaTraining.SmallModel*:CudaTraining.FusedUpdate*'
for op in add where softmax log_softmax sum max_dim argmax max_pool2d avg_pool2d cross_entropy index_select dropout; do
  subset+=":Registry/CudaParity.ForwardAndBackwardMatchCpu/$op"
done
t0=$(now)
if [ -n "$sanitizer" ] && [ -x "$sanitizer" ]; then
  timeout "${MEMCHECK_TIMEOUT:-300}" "$sanitizer" --tool memcheck --error-exitcode 86 --leak-check no \
    "$bin/ember_tests_cuda" --gtest_brief=1 --gtest_filter="$subset" >"$logs/memcheck.log" 2>&1
  mc_rc=$?
  summary=$(grep -E 'ERROR SUMMARY' "$logs/memcheck.log" | tail -n 1)
  if [ "$mc_rc" = 0 ]; then
    row "memcheck (subset)" ok "${summary:-no summary} ($(( $(now) - t0 )) s)"
  else
    status=1
    tail -n 40 "$logs/memcheck.log"
    row "memcheck (subset)" FAIL "rc $mc_rc ${summary} (see $logs/memcheck.log)"
  fi
else
  status=1
  row "memcheck (subset)" FAIL "compute-sanitizer not found (scripts/gpu-check.sh --fetch-sanitizer)"
fi
fi

# --- benchmarks -------------------------------------------------------------------------------
touch "$logs/bench.log"
if want bench; then
t0=$(now)
EMBER_BENCH_TORCH_SCRIPT="$(pwd)/bench/cuda/torch_models.py" "$bin/ember-bench-cuda" --steps "$steps" 2>&1 |
  tee "$logs/bench.log"
bench_rc=${PIPESTATUS[0]}
if [ "$bench_rc" = 0 ]; then
  row "benchmarks" ok "$(( $(now) - t0 )) s"
else
  status=1
  row "benchmarks" FAIL "rc $bench_rc"
fi
fi

# --- summary (last) ---------------------------------------------------------------------------
printf '\n== gpu-check summary ==\n'
printf '%s\n' "${rows[@]}"
printf '\n%-6s %16s %16s %12s\n' model "ember samples/s" "torch samples/s" "ember/torch"
for m in lit mlp conv; do
  e=$(awk -v m="$m" '$1 == "RESULT" && $2 == "ember" && $3 == m {print $4}' "$logs/bench.log")
  t=$(awk -v m="$m" '$1 == "RESULT" && $2 == "torch" && $3 == m {print $4}' "$logs/bench.log")
  ratio=$(awk -v e="${e:-0}" -v t="${t:-0}" 'BEGIN { if (e > 0 && t > 0) printf "%.2f", e / t; else print "-" }')
  printf '%-6s %16s %16s %12s\n' "$m" "${e:--}" "${t:--}" "$ratio"
done
exit $status
