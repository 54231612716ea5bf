#!/usr/bin/env bash
# Training throughput, Ember vs LibTorch: installs what it needs (scripts/setup.sh bench),
# builds ember_bench_train and ember_bench_train_torch, runs them interleaved (Ember, LibTorch, ...)
# for each model and thread count, and prints one table of medians with min-max and the ratio.
# Usage: scripts/bench-train.sh [--reps N] [--models "lit mlp conv"] [--threads "1 2"] [--build DIR]
#        scripts/bench-train.sh --table FILE   # only print the table of a previous run's raw results
# The raw results (one RESULT line per run) are kept in DIR/bench-train-results.txt.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
reps=5 models="lit mlp conv" threads="1 2" build="$root/build-bench" table=""
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps="$2"; shift 2 ;;
    --models) models="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    --table) table="$2"; shift 2 ;;
    *) echo "usage: scripts/bench-train.sh [--reps N] [--models \"lit mlp conv\"] [--threads \"1 2\"] [--build DIR]" >&2; exit 2 ;;
  esac
done

if [ -z "$table" ]; then
bash "$root/scripts/setup.sh" bench
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DEMBER_CUDA=OFF >/dev/null
targets=(ember_bench_train)
help="$(cmake --build "$build" --target help)"
if [[ "$help" == *ember_bench_train_torch* ]]; then
  targets+=(ember_bench_train_torch)
fi
cmake --build "$build" -j"${JOBS:-2}" --target "${targets[@]}" >/dev/null
ember="$build/bin/ember_bench_train" torch="$build/bin/ember_bench_train_torch"
[ -x "$torch" ] || { echo "bench-train: LibTorch not found, Ember only" >&2; torch=""; }

out="$build/bench-train-results.txt"
: >"$out"
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$reps"); do
  for t in $threads; do
    for m in $models; do
      for prog in "$ember" $torch; do
        OMP_NUM_THREADS="$t" EMBER_NUM_THREADS="$t" "$prog" --model "$m" --threads "$t" | grep '^RESULT' >>"$out"
      done
    done
  done
  echo "# rep $r/$reps done, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
# sgemm roof (1024^3 f32 matmul; LibTorch's is the BLAS it loaded), 3 interleaved runs per thread count.
for _ in 1 2 3; do
  for t in $threads; do
    for prog in "$ember" $torch; do
      OMP_NUM_THREADS="$t" EMBER_NUM_THREADS="$t" "$prog" --gemm 1024 --threads "$t" | grep '^RESULT' >>"$out"
    done
  done
done
# Start-up of a trivial program (one tensor op and a print), 11 runs each, in ms.
startup() {
  for _ in $(seq 11); do
    s=$(date +%s%N); "$1" --trivial >/dev/null; e=$(date +%s%N)
    echo "RESULT fw=$2 model=trivial threads=1 startup_us=$(( (e - s) / 1000 ))"
  done
}
startup "$ember" ember >>"$out"
[ -z "$torch" ] || startup "$torch" torch >>"$out"
  echo "# raw results: $out" >&2
else
  out="$table"
fi

# key=value lines -> table. median/min/max over the runs of (fw, model, threads, key).
awk '
function stats(fw, m, t, k,   n, i, j, v, a, tmp) {
  n = cnt[fw, m, t, k]; if (n == 0) return ""
  for (i = 1; i <= n; i++) a[i] = val[fw, m, t, k, i]
  for (i = 2; i <= n; i++) { tmp = a[i]; for (j = i - 1; j >= 1 && a[j] > tmp; j--) a[j + 1] = a[j]; a[j + 1] = tmp }
  med[fw, m, t, k] = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  lo[fw, m, t, k] = a[1]; hi[fw, m, t, k] = a[n]; return 1
}
function cell(fw, m, t, k, fmt, scale) {
  if (!stats(fw, m, t, k)) return "-"
  return sprintf(fmt " (" fmt "-" fmt ")", med[fw, m, t, k] / scale, lo[fw, m, t, k] / scale, hi[fw, m, t, k] / scale)
}
function ratio(m, t, k) {
  if (!stats("ember", m, t, k) || !stats("torch", m, t, k) || med["torch", m, t, k] == 0) return "-"
  return sprintf("%.2fx", med["ember", m, t, k] / med["torch", m, t, k])
}
function row(label, m, t, k, fmt, scale) {
  printf "| %s | %s | %s | %s | %s |\n", label, (t == "" ? m : m " " t "T"), cell("ember", m, t, k, fmt, scale), cell("torch", m, t, k, fmt, scale), ratio(m, t, k)
}
{
  fw = ""; m = ""; t = ""
  for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
  fw = f["fw"]; m = f["model"]; t = f["threads"]
  if (!(m in seenm) && m != "trivial" && m != "sgemm") { seenm[m] = 1; morder[++nm] = m }
  if (!(t in seent) && m != "trivial" && m != "sgemm") { seent[t] = 1; torder[++nt] = t }
  for (k in f) if (k != "fw" && k != "model" && k != "threads" && k != "blas") val[fw, m, t, k, ++cnt[fw, m, t, k]] = f[k]
  if (f["blas"] != "") blas[(fw == "ember" ? "Ember" : "LibTorch") ": " (f["blas"] == "-" ? "none" : f["blas"])] = 1
  delete f
}
END {
  print "| metric | model | Ember median (min-max) | LibTorch median (min-max) | Ember/LibTorch |"
  print "|---|---|---:|---:|---:|"
  for (i = 1; i <= nm; i++) for (j = 1; j <= nt; j++) row("train samples/s", morder[i], torder[j], "train_sps", "%.0f", 1)
  for (i = 1; i <= nm; i++) for (j = 1; j <= nt; j++) row("validation samples/s", morder[i], torder[j], "val_sps", "%.0f", 1)
  for (j = 1; j <= nt; j++) row("sgemm 1024^3 GFLOP/s", "sgemm", torder[j], "gflops", "%.1f", 1)
  # Training FLOPs per sample (forward 2*MACs, backward 4*MACs less the first layer input gradient).
  flop["lit"] = 504064; flop["mlp"] = 4849664; flop["conv"] = 2991744
  for (i = 1; i <= nm; i++) for (j = 1; j <= nt; j++) {
    m = morder[i]; t = torder[j]
    if (!(m in flop) || !stats("torch", "sgemm", t, "gflops")) continue
    roof = med["torch", "sgemm", t, "gflops"]; e = "-"; g = "-"
    if (stats("ember", m, t, "train_sps")) e = sprintf("%.1f (%.0f%%)", med["ember", m, t, "train_sps"] * flop[m] / 1e9, 100 * med["ember", m, t, "train_sps"] * flop[m] / 1e9 / roof)
    if (stats("torch", m, t, "train_sps")) g = sprintf("%.1f (%.0f%%)", med["torch", m, t, "train_sps"] * flop[m] / 1e9, 100 * med["torch", m, t, "train_sps"] * flop[m] / 1e9 / roof)
    printf "| train GFLOP/s (%% of LibTorch sgemm) | %s %sT | %s | %s | |\n", m, t, e, g
  }
  for (i = 1; i <= nm; i++) for (j = 1; j <= nt; j++) row("final epoch train loss", morder[i], torder[j], "loss", "%.4f", 1)
  for (i = 1; i <= nm; i++) row("heap allocations / step", morder[i], torder[1], "allocs_per_step", "%.0f", 1)
  for (i = 1; i <= nm; i++) for (j = 1; j <= nt; j++) row("peak RSS (MiB)", morder[i], torder[j], "peak_rss_kib", "%.0f", 1024)
  for (i = 1; i <= nm; i++) row("RSS after data+model load (MiB)", morder[i], torder[1], "data_rss_kib", "%.0f", 1024)
  row("executable (MB)", morder[1], torder[1], "exe_bytes", "%.2f", 1e6)
  row("shared libraries mapped (MB)", morder[1], torder[1], "libs_bytes", "%.1f", 1e6)
  row("shared libraries mapped (count)", morder[1], torder[1], "libs", "%.0f", 1)
  row("trivial program start-up (ms)", "trivial", "1", "startup_us", "%.1f", 1000)
  for (b in blas) print "BLAS mapped: " b
}' "$out"
