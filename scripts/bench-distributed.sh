#!/usr/bin/env bash
# Data-parallel scaling on this machine: ember_bench_ddp for mlp and conv as 1 process x 1 thread
# and as 2 ranks x 1 thread under mpirun (each rank the model's batch size), the 2-rank runs as
# the Trainer runs them on the CPU (buckets reduced after backward, in host-shared memory) and, for
# comparison, through MPI_Allreduce after backward and started from the hooks during backward;
# interleaved, --reps times. Prints the medians (min-max) of samples/s over all ranks, each 2-rank
# way's ratio to the 1-process run beside it, the all-reduce time per step (for the buckets started during backward,
# the time still spent waiting after it), and the bytes reduced, with the CPU.
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
# Open MPI on this machine kind: root, ranks beyond the cores if asked. Shared memory copies once
# (cross-memory attach) where the kernel allows it, which halves an all-reduce's copying; where it
# does not (containers often refuse process_vm_readv), through shared buffers.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=cma
if ! timeout 60 mpirun -np 2 "$bin" --allreduce-mb 1 >/dev/null 2>&1; then
  export OMPI_MCA_btl_vader_single_copy_mechanism=none
fi
out="$(mktemp)"
for ((r = 0; r < reps; r++)); do
  for m in $models; do
    "$bin" --model "$m" --steps "$steps" | grep '^RESULT' >>"$out"
    mpirun -np 2 --bind-to core "$bin" --model "$m" --steps "$steps" --overlap 0 --shm 1 | grep '^RESULT' >>"$out"
    mpirun -np 2 --bind-to core "$bin" --model "$m" --steps "$steps" --overlap 0 --shm 0 | grep '^RESULT' >>"$out"
    mpirun -np 2 --bind-to core "$bin" --model "$m" --steps "$steps" --overlap 1 | grep '^RESULT' >>"$out"
  done
done
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "CPU: $cpu ($(nproc) cores), $reps interleaved runs of $steps steps, 1 thread per process, shared-memory single copy: $OMPI_MCA_btl_vader_single_copy_mechanism"
echo
echo "| model | 1 process samples/s | 2 ranks, host-shared | / 1 | all-reduce ms/step | 2 ranks, MPI_Allreduce | / 1 | all-reduce ms/step | 2 ranks, during backward (MPI) | / 1 | wait after backward ms/step | bytes/step |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
# A ratio "/ 1" is the median (min-max) over the runs of each 2-rank run's samples/s over those of
# the 1-process run just before it: this VM's speed drifts by 10-20% within minutes, which a ratio
# of medians taken over the whole set would mix in.
awk '
function med(arr, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
  return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2 }
# RESULT model ranks samples/s allreduce-ms bytes overlap shm; one process counts as its own kind
{ k = $2 SUBSEP ($3 == 1 ? "one" : ($7 == 1 ? "overlap" : ($8 == 1 ? "shm" : "mpi"))); n[k]++; sps[k, n[k]] = $4; ar[k, n[k]] = $5; if ($3 > 1) by[$2] = $6; models[$2] = 1 }
function col(k, what,   i, a) { for (i = 1; i <= n[k]; i++) a[i] = (what == "sps" ? sps[k, i] : ar[k, i]); m = med(a, n[k]); lo = a[1]; hi = a[n[k]]; return m }
function ratio(m0, kind,   i, a, c) { c = 0; for (i = 1; i <= n[m0 SUBSEP kind]; i++) a[++c] = sps[m0 SUBSEP kind, i] / sps[m0 SUBSEP "one", i]
  m = med(a, c); return sprintf("%.2fx (%.2f-%.2f)", m, a[1], a[c]) }
END {
  for (m0 in models) {
    one = col(m0 SUBSEP "one", "sps"); lo1 = lo; hi1 = hi
    sh = col(m0 SUBSEP "shm", "sps"); lo2 = lo; hi2 = hi; arsh = col(m0 SUBSEP "shm", "ar")
    mp = col(m0 SUBSEP "mpi", "sps"); lo3 = lo; hi3 = hi; armp = col(m0 SUBSEP "mpi", "ar")
    ov = col(m0 SUBSEP "overlap", "sps"); lo4 = lo; hi4 = hi; wait = col(m0 SUBSEP "overlap", "ar")
    printf "| %s | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | %s | %.2f | %.0f (%.0f-%.0f) | %s | %.2f | %.0f (%.0f-%.0f) | %s | %.2f | %d |\n", m0, one, lo1, hi1, sh, lo2, hi2, ratio(m0, "shm"), arsh, mp, lo3, hi3, ratio(m0, "mpi"), armp, ov, lo4, hi4, ratio(m0, "overlap"), wait, by[m0]
  }
}' "$out"
rm -f "$out"
