#!/usr/bin/env bash
# Data-parallel scaling on this machine: ember_bench_ddp for mlp and conv as 1 process x 1 thread
# and as 2 ranks x 1 thread under mpirun (each rank the model's batch size), interleaved, --reps
# times; prints the medians (min-max) of samples/s over all ranks, the 2-rank/1-process ratio, and
# the time per step spent in all-reduce with the bytes reduced, with the CPU model.
# Usage: scripts/bench-distributed.sh [--reps N] [--models "mlp conv"] [--steps N] [--build DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
reps=5 models="mlp conv" steps=60 build="$root/build"
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps="$2"; shift 2 ;;
    --models) models="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    *) echo "usage: scripts/bench-distributed.sh [--reps N] [--models \"mlp conv\"] [--steps N] [--build DIR]" >&2; exit 2 ;;
  esac
done
bash "$root/scripts/setup.sh" test  # Open MPI
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"${JOBS:-2}" --target ember_bench_ddp >/dev/null
bin="$build/bin/ember_bench_ddp"
# Open MPI on this machine kind: root, ranks beyond the cores if asked, no single-copy shared memory.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
out="$(mktemp)"
for ((r = 0; r < reps; r++)); do
  for m in $models; do
    "$bin" --model "$m" --steps "$steps" | grep '^RESULT' >>"$out"
    mpirun -np 2 --bind-to core "$bin" --model "$m" --steps "$steps" | grep '^RESULT' >>"$out"
  done
done
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "CPU: $cpu ($(nproc) cores), $reps interleaved runs of $steps steps, 1 thread per process"
echo
echo "| model | 1 process samples/s | 2 ranks samples/s | 2 ranks / 1 | all-reduce ms/step (2 ranks) | bytes/step |"
echo "|---|---:|---:|---:|---:|---:|"
awk '
function med(arr, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
  return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2 }
{ k = $2 SUBSEP $3; n[k]++; sps[k, n[k]] = $4; ar[k, n[k]] = $5; by[k] = $6; models[$2] = 1 }
END {
  for (m in models) {
    k1 = m SUBSEP 1; k2 = m SUBSEP 2
    for (i = 1; i <= n[k1]; i++) a[i] = sps[k1, i]; m1 = med(a, n[k1]); lo1 = a[1]; hi1 = a[n[k1]]
    for (i = 1; i <= n[k2]; i++) b[i] = sps[k2, i]; m2 = med(b, n[k2]); lo2 = b[1]; hi2 = b[n[k2]]
    for (i = 1; i <= n[k2]; i++) c[i] = ar[k2, i]; mc = med(c, n[k2])
    printf "| %s | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | %.2fx | %.2f | %d |\n", m, m1, lo1, hi1, m2, lo2, hi2, m2 / m1, mc, by[k2]
  }
}' "$out"
rm -f "$out"
