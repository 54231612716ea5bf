#!/usr/bin/env bash
# The GPU check in one command: builds Ember for sm_90 with the CUDA backend, probes the device
# (stopping with the reason when none is usable), runs the CUDA test binary, a compute-sanitizer
# memcheck pass over a short subset (Ember's kernels, a small training run), and the GPU benchmarks
# (Ember, and PyTorch eager when a python3 with torch is present), then prints a short summary table
# last. Exit status 0 only if every step that could run passed. Every step on the device has a
# time limit, so the whole check stays within about 8 minutes.
#   usage: scripts/gpu-check.sh
#   env:   BUILD_DIR (default build-gpu), JOBS (default nproc), STEPS (default
#          "build,tests,memcheck,bench"). The two-machine way (kernels/cuda/README.md): STEPS=build
#          here fills $BUILD_DIR/gpu-bin with the stripped binaries the check runs (at most 60 MiB,
#          the size that can be carried to the device machine); STEPS=tests,memcheck,bench there
#          runs them. BENCH_STEPS (timed training steps per model, default 300), TESTS_TIMEOUT
#          (default 180 s), MEMCHECK_TIMEOUT (default 120 s), BENCH_TIMEOUT (default 150 s).
# When the build fails (an image without GTest or Eigen, say) and $BUILD_DIR/gpu-bin already holds
# the binaries, those are used. cuBLAS and cuDNN, which the binaries open at run time, are looked up
# in the system's loader path, the toolkit's folder and the python3 packages of the nvidia
# namespace (the cuDNN and cuBLAS wheels), whichever are present.
set -uo pipefail
cd "$(dirname "$0")/.."
build="${BUILD_DIR:-build-gpu}"
bin="$build/gpu-bin"  # what the steps after the build run: stripped copies, carried as one folder
carry_limit=$((60 * 1024 * 1024))
jobs="${JOBS:-$(nproc)}"
bench_steps="${BENCH_STEPS:-300}"
steps=",${STEPS:-build,tests,memcheck,bench},"
logs="$build/gpu-check-logs"
status=0
declare -a rows

now() { date +%s; }
want() { [[ "$steps" == *",$1,"* ]]; }
row() { rows+=("$(printf '%-20s %-5s %s' "$1" "$2" "$3")"); }
summary() {
  printf '\n== gpu-check summary ==\n'
  printf '%s\n' "${rows[@]}"
  if [ -s "$logs/bench.log" ]; then
    printf '\n%-6s %16s %16s %16s %12s %12s\n' model "ember samples/s" "graphs samples/s" "torch samples/s" \
      "ember/torch" "graphs/torch"
    for m in lit mlp conv; do
      e=$(awk -v m="$m" '$1 == "RESULT" && $2 == "ember" && $3 == m {print $4}' "$logs/bench.log")
      g=$(awk -v m="$m" '$1 == "RESULT" && $2 == "ember-graphs" && $3 == m {print $4}' "$logs/bench.log")
      t=$(awk -v m="$m" '$1 == "RESULT" && $2 == "torch" && $3 == m {print $4}' "$logs/bench.log")
      r=$(awk -v e="${e:-0}" -v t="${t:-0}" 'BEGIN { if (e > 0 && t > 0) printf "%.2f", e / t; else print "-" }')
      rg=$(awk -v e="${g:-0}" -v t="${t:-0}" 'BEGIN { if (e > 0 && t > 0) printf "%.2f", e / t; else print "-" }')
      printf '%-6s %16s %16s %16s %12s %12s\n' "$m" "${e:--}" "${g:--}" "${t:--}" "$r" "$rg"
    done
  fi
}

mkdir -p "$logs"
: >"$logs/bench.log"

# Directories of the python3 nvidia packages (cuDNN, cuBLAS wheels) that hold shared libraries.
nvidia_lib_dirs() {
  local root
  root=$(python3 -c 'import nvidia, os; print(list(nvidia.__path__)[0])' 2>/dev/null) || return 0
  find "$root" -name 'lib*.so*' -printf '%h\n' 2>/dev/null | sort -u | paste -sd: -
}

# --- build ------------------------------------------------------------------------------------
if want build; then
  t0=$(now)
  extra=()
  cuda_home="${CUDA_HOME:-/usr/local/cuda}"
  if [ ! -e "$cuda_home/include/cudnn.h" ] && ! ls /usr/include/cudnn.h /usr/include/*/cudnn.h >/dev/null 2>&1; then
    root=$(python3 -c 'import nvidia, os; print(list(nvidia.__path__)[0])' 2>/dev/null || true)
    inc=$( [ -n "$root" ] && find "$root" -name cudnn.h -printf '%h\n' 2>/dev/null | head -n 1)
    # Only the header is needed to build; the library is opened at run time (found below).
    [ -n "$inc" ] && extra+=("-DEMBER_CUDNN_INCLUDE=$inc")
  fi
  if cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DEMBER_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
       -DEMBER_BUILD_EXAMPLES=OFF "${extra[@]}" >"$logs/configure.log" 2>&1 &&
     cmake --build "$build" -j"$jobs" --target ember_tests_cuda ember-bench-cuda >"$logs/build.log" 2>&1; then
    rm -rf "$bin" && mkdir -p "$bin"
    for b in ember_tests_cuda ember-bench-cuda; do strip -o "$bin/$b" "$build/bin/$b"; done
    size=$(du -cb "$bin"/* | tail -n 1 | cut -f1)
    if [ "$size" -gt "$carry_limit" ]; then
      row "build (sm_90)" FAIL "$bin holds $size bytes, over the 60 MiB that can be carried"
      summary
      exit 1
    fi
    row "build (sm_90)" ok "$(grep -m1 -E '^-- Ember: CUDA' "$logs/configure.log" | sed 's/^-- Ember: //'); $bin: $((size / 1048576)) MiB ($(( $(now) - t0 )) s)"
  elif [ -x "$bin/ember_tests_cuda" ] && [ -x "$bin/ember-bench-cuda" ]; then
    tail -n 15 "$logs/configure.log" "$logs/build.log" 2>/dev/null
    row "build (sm_90)" n/a "could not build here (see $logs); using the binaries already in $bin"
  else
    tail -n 60 "$logs/configure.log" "$logs/build.log" 2>/dev/null
    row "build (sm_90)" FAIL "see $logs/build.log"
    summary
    exit 1
  fi
fi

# cuBLAS and cuDNN are opened at run time through the loader's search path (kernels/cuda/README.md):
# the toolkit's own folder where the system's path lacks them, and the python3 nvidia packages'
# folders (the cuDNN wheel) whenever present.
dirs=""
if ! ldconfig -p | grep -q 'libcublas\.so\.' || ! ldconfig -p | grep -q 'libcudnn\.so\.'; then
  dirs="${CUDA_HOME:-/usr/local/cuda}/lib64"
fi
nv="$(nvidia_lib_dirs)"
[ -n "$nv" ] && dirs="${dirs:+$dirs:}$nv"
[ -n "$dirs" ] && export LD_LIBRARY_PATH="$dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/GPU: /'

# --- device probe: one kernel on cuda:0, or the reason there is none --------------------------
if want tests || want memcheck || want bench; then
  if [ ! -x "$bin/ember_tests_cuda" ]; then
    row "device probe" FAIL "no $bin/ember_tests_cuda (run STEPS=build first)"
    summary
    exit 1
  fi
  timeout 60 "$bin/ember_tests_cuda" --gtest_filter='CudaProbe.*' >"$logs/probe.log" 2>&1
  rc=$?
  if [ "$rc" = 0 ] && grep -q '^cuda probe: ' "$logs/probe.log"; then
    row "device probe" ok "$(grep -m1 '^cuda probe: ' "$logs/probe.log" | sed 's/^cuda probe: //')"
  else
    reason=$(grep -m1 -o 'no CUDA device: .*' "$logs/probe.log")
    tail -n 20 "$logs/probe.log"
    row "device probe" FAIL "${reason:-rc $rc (124: timeout; see $logs/probe.log)}"
    summary
    exit 1
  fi
fi

# --- tests ------------------------------------------------------------------------------------
if want tests; then
  t0=$(now)
  timeout "${TESTS_TIMEOUT:-180}" "$bin/ember_tests_cuda" --gtest_brief=1 >"$logs/tests.log" 2>&1
  rc=$?
  tail -n 40 "$logs/tests.log"
  passed=$(grep -Eo '\[  PASSED  \] [0-9]+' "$logs/tests.log" | grep -Eo '[0-9]+$' || echo 0)
  failed=$(grep -Eo '\[  FAILED  \] [0-9]+ test' "$logs/tests.log" | grep -Eo '[0-9]+' || echo 0)
  skipped=$(grep -Eo '\[  SKIPPED \] [0-9]+ test' "$logs/tests.log" | grep -Eo '[0-9]+' || echo 0)
  if [ "$rc" = 0 ] && [ "${skipped:-0}" = 0 ]; then
    row "ember_tests_cuda" ok "${passed} passed, 0 failed, 0 skipped ($(( $(now) - t0 )) s)"
  else
    status=1
    row "ember_tests_cuda" FAIL "${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped (rc $rc; 124: timeout)"
  fi
fi

# --- memcheck of a short subset ---------------------------------------------------------------
if want memcheck; then
  # Ember's own kernels, cuBLAS/cuDNN only lightly (instrumenting their kernels is slow), and a
  # short training run (20 Adam steps of a small MLP).
  subset='CudaKernels.IndexAdd*:CudaKernels.Pooling*:CudaKernels.MaxPrefers*:CudaKernels.SerialReductions*'
  subset+=':CudaKernels.NllLoss*:CudaKernels.DirectConvolution*:CudaKernels.CopyConverts*:CudaRng.DrawsEqual*'
  subset+=':CudaTraining.SmallModel*:CudaTraining.FusedUpdate*:CudaSteadyStep.DeviceSideChecks*:CudaKernels.StridedReductions*'
  for op in add where softmax log_softmax sum max_dim argmax max_pool2d avg_pool2d cross_entropy index_select dropout; do
    subset+=":Registry/CudaParity.ForwardAndBackwardMatchCpu/$op"
  done
  sanitizer=$(command -v compute-sanitizer || ls "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" 2>/dev/null)
  t0=$(now)
  if [ -n "$sanitizer" ] && [ -x "$sanitizer" ]; then
    timeout "${MEMCHECK_TIMEOUT:-120}" "$sanitizer" --tool memcheck --error-exitcode 86 --leak-check no \
      "$bin/ember_tests_cuda" --gtest_brief=1 --gtest_filter="$subset" >"$logs/memcheck.log" 2>&1
    rc=$?
    errors=$(grep -E 'ERROR SUMMARY' "$logs/memcheck.log" | tail -n 1 | sed 's/^=* *//')
    if [ "$rc" = 0 ]; then
      row "memcheck (subset)" ok "${errors:-no summary} ($(( $(now) - t0 )) s)"
    elif [ "$rc" != 124 ] && ! grep -q '^\[==========\]' "$logs/memcheck.log"; then
      # The tests never started: compute-sanitizer refused this machine (some drivers and GPUs,
      # e.g. the H200 machines, do not allow it), which is not a finding about Ember.
      why=$(grep -m1 -iE 'error|not supported|refused' "$logs/memcheck.log" | sed 's/^=* *//')
      row "memcheck (subset)" n/a "compute-sanitizer refused to run here${why:+: $why}"
    else
      status=1
      tail -n 40 "$logs/memcheck.log"
      row "memcheck (subset)" FAIL "rc $rc${errors:+, $errors} (124: timeout; see $logs/memcheck.log)"
    fi
  else
    status=1
    row "memcheck (subset)" FAIL "compute-sanitizer not found"
  fi
fi

# --- benchmarks -------------------------------------------------------------------------------
if want bench; then
  t0=$(now)
  EMBER_BENCH_TORCH_SCRIPT="$(pwd)/bench/cuda/torch_models.py" timeout "${BENCH_TIMEOUT:-150}" \
    "$bin/ember-bench-cuda" --steps "$bench_steps" >"$logs/bench.log" 2>&1
  rc=$?
  cat "$logs/bench.log"
  if [ "$rc" = 0 ]; then
    row "benchmarks" ok "$(( $(now) - t0 )) s"
  else
    status=1
    row "benchmarks" FAIL "rc $rc (124: timeout)"
  fi
fi

summary
exit $status
