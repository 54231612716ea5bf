#!/usr/bin/env bash
# Training throughput, Ember vs PyTorch 2.x (PyPI) vs LibTorch 1.13 (Debian): installs what it
# needs (scripts/setup.sh bench: LibTorch, and PyTorch 2.x in DIR/venv-torch), builds
# ember_bench_train and ember_bench_train_torch, runs them and bench_torch2.py (float32) interleaved
# (Ember, PyTorch 2.x, LibTorch, ...) for each model and thread count, then each one's 1024^3
# sgemm, and prints one table of medians with min-max and the ratios, with the CPU model, the
# machine's sgemm roof and the fraction of it each training run reaches.
# Usage: scripts/bench-train.sh [--reps N] [--models "lit mlp conv"] [--threads "1 2"] [--build DIR]
#        scripts/bench-train.sh --table FILE   # only print the table of a previous run's raw results
# The raw results (one RESULT line per run, and the CPU as a "#" line) are kept in
# DIR/bench-train-results.txt.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
reps=5 models="lit mlp conv" threads="1 2" build="$root/build-bench" table=""
usage="usage: scripts/bench-train.sh [--reps N] [--models \"lit mlp conv\"] [--threads \"1 2\"] [--build DIR] | --table FILE"
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps="$2"; shift 2 ;;
    --models) models="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    --table) table="$2"; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
for m in $models; do
  case "$m" in lit|mlp|conv) ;; *) echo "bench-train: unknown model '$m' (expected lit, mlp or conv)" >&2; exit 2 ;; esac
done

# Training FLOPs per sample, derived from the layer shapes of examples/common/models.cpp: 2 FLOP
# per multiply-add, for the forward pass, the weight gradients and the input gradients of every
# layer but the first (the images need no gradient, so no framework computes that one).
# Multiply-adds per sample: Linear(in, out) in*out; Conv2d Cin*Cout*k*k per output position;
# ConvTranspose2d Cin*Cout*k*k per input position (28x28 images; stride 2: 14x14, 7x7).
declare -A macs=(
  [lit]="784*64 64*3 3*64 64*784"
  [mlp]="784*512 512*128 128*32 32*128 128*512 512*784"
  [conv]="1*16*9*14*14 16*32*9*7*7 32*16*9*7*7 16*1*9*14*14"
)
flops=""
for m in lit mlp conv; do
  read -ra layers <<<"${macs[$m]}"
  total=$(( ${macs[$m]// /+} ))
  flops+="$m=$(( 6 * total - 2 * layers[0] )) "
done

if [ -z "$table" ]; then
bash "$root/scripts/setup.sh" bench --build "$build"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DEMBER_CUDA=OFF >/dev/null
targets=(ember_bench_train)
help="$(cmake --build "$build" --target help)"
if [[ "$help" == *ember_bench_train_torch* ]]; then
  targets+=(ember_bench_train_torch)
fi
cmake --build "$build" -j"${JOBS:-2}" --target "${targets[@]}" >/dev/null
ember=("$build/bin/ember_bench_train")
torch2=("$build/venv-torch/bin/python" "$root/bench/train_throughput/bench_torch2.py" --precision 32-true)
libtorch=("$build/bin/ember_bench_train_torch")
[ -x "${libtorch[0]}" ] || { echo "bench-train: LibTorch not found, Ember and PyTorch 2.x only" >&2; libtorch=(); }

out="$build/bench-train-results.txt"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "# $(date -u +%FT%TZ) CPU: $cpu ($(nproc) CPUs), load at start: $(cut -d' ' -f1-3 /proc/loadavg), $reps interleaved runs" >"$out"
# One process per run; OMP_NUM_THREADS and --threads set alike for all three.
run() {  # run THREADS PROGRAM ARGS...: its RESULT lines into the results
  local t="$1"; shift
  OMP_NUM_THREADS="$t" EMBER_NUM_THREADS="$t" "$@" --threads "$t" | grep '^RESULT' >>"$out"
}
for r in $(seq "$reps"); do
  for t in $threads; do
    for m in $models; do
      run "$t" "${ember[@]}" --model "$m"
      run "$t" "${torch2[@]}" --model "$m"
      [ ${#libtorch[@]} -eq 0 ] || run "$t" "${libtorch[@]}" --model "$m"
    done
  done
  echo "# rep $r/$reps done, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
# sgemm roof (1024^3 f32 matmul: Ember's own GEMM, PyTorch 2.x's MKL, LibTorch's BLAS), 3
# interleaved runs per thread count.
for _ in 1 2 3; do
  for t in $threads; do
    run "$t" "${ember[@]}" --gemm 1024
    run "$t" "${torch2[@]}" --gemm 1024
    [ ${#libtorch[@]} -eq 0 ] || run "$t" "${libtorch[@]}" --gemm 1024
  done
done
# Start-up of a trivial program (one tensor op and a print), 11 runs each, in ms.
startup() {
  for _ in $(seq 11); do
    s=$(date +%s%N); "$1" --trivial >/dev/null; e=$(date +%s%N)
    echo "RESULT fw=$2 model=trivial threads=1 startup_us=$(( (e - s) / 1000 ))"
  done
}
startup "${ember[0]}" ember >>"$out"
[ ${#libtorch[@]} -eq 0 ] || startup "${libtorch[0]}" torch >>"$out"
  echo "# raw results: $out" >&2
else
  out="$table"
  [ -r "$out" ] || { echo "bench-train: cannot read --table '$out'" >&2; exit 2; }
fi

# key=value lines -> table. median/min/max over the runs of (fw, model, threads, key); fw is
# ember, pt (PyTorch 2.x: fw=torch2.x.y) or lt (LibTorch: fw=torch).
awk -v flops="$flops" '
function stats(fw, m, t, k,   n, i, j, a, tmp) {
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
function ratio(peer, m, t, k) {
  if (!stats("ember", m, t, k) || !stats(peer, m, t, k) || med[peer, m, t, k] == 0) return "-"
  return sprintf("%.2fx", med["ember", m, t, k] / med[peer, m, t, k])
}
function row(label, m, t, k, fmt, scale) {
  printf "| %s | %s | %s | %s | %s | %s | %s |\n", label, (t == "" ? m : m " " t "T"), cell("ember", m, t, k, fmt, scale),
    cell("pt", m, t, k, fmt, scale), cell("lt", m, t, k, fmt, scale), ratio("pt", m, t, k), ratio("lt", m, t, k)
}
# 2-thread over 1-thread median of key k for fw and model m.
function scaling(fw, m, k) {
  if (!stats(fw, m, "1", k) || !stats(fw, m, "2", k) || med[fw, m, "1", k] == 0) return "-"
  return sprintf("%.2fx", med[fw, m, "2", k] / med[fw, m, "1", k])
}
# Training GFLOP/s of fw and its share of the roof.
function gflops(fw, m, t, roof,   g) {
  if (!(m in flop) || !stats(fw, m, t, "train_sps")) return "-"
  g = med[fw, m, t, "train_sps"] * flop[m] / 1e9
  return roof > 0 ? sprintf("%.1f (%.0f%%)", g, 100 * g / roof) : sprintf("%.1f", g)
}
BEGIN {
  n = split(flops, kv, " "); for (i = 1; i <= n; i++) { split(kv[i], p, "="); flop[p[1]] = p[2] }
  name["ember"] = "Ember"; name["pt"] = "PyTorch 2.x"; name["lt"] = "LibTorch"
}
/^#/ { if ($0 !~ /^# (rep|raw)/) print; next }
/^RESULT/ {
  for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
  fw = f["fw"]; m = f["model"]; t = f["threads"]
  if (fw ~ /^torch[0-9]/) { ptver = substr(fw, 6); fw = "pt" } else if (fw == "torch") fw = "lt"
  if (!(m in seenm) && m != "trivial" && m != "sgemm") { seenm[m] = 1; morder[++nm] = m }
  if (!(t in seent) && m != "trivial") { seent[t] = 1; torder[++nt] = t }
  for (k in f) if (k != "fw" && k != "model" && k != "threads" && k != "blas" && k != "precision") val[fw, m, t, k, ++cnt[fw, m, t, k]] = f[k]
  if (f["blas"] != "") blas[name[fw] ": " (f["blas"] == "-" ? "none" : f["blas"])] = 1
  delete f
}
END {
  # thread counts in increasing order
  for (i = 2; i <= nt; i++) { tmp = torder[i]; for (j = i - 1; j >= 1 && torder[j] + 0 > tmp + 0; j--) torder[j + 1] = torder[j]; torder[j + 1] = tmp }
  print ""
  printf "| metric | model | Ember median (min-max) | PyTorch %s median (min-max) | LibTorch 1.13 median (min-max) | Ember/PyTorch 2.x | Ember/LibTorch |\n", (ptver == "" ? "2.x" : ptver)
  print "|---|---|---:|---:|---:|---:|---:|"
  for (i = 1; i <= nm; i++) for (j = 1; j <= nt; j++) row("train samples/s", morder[i], torder[j], "train_sps", "%.0f", 1)
  if (("1" in seent) && ("2" in seent)) for (i = 1; i <= nm; i++)
    printf "| train 2T/1T scaling | %s | %s | %s | %s | | |\n", morder[i], scaling("ember", morder[i], "train_sps"),
      scaling("pt", morder[i], "train_sps"), scaling("lt", morder[i], "train_sps")
  for (i = 1; i <= nm; i++) for (j = 1; j <= nt; j++) row("validation samples/s", morder[i], torder[j], "val_sps", "%.0f", 1)
  for (j = 1; j <= nt; j++) row("sgemm 1024^3 GFLOP/s", "sgemm", torder[j], "gflops", "%.1f", 1)
  # The machine sgemm roof at t threads: the best median sgemm of the three.
  for (j = 1; j <= nt; j++) {
    t = torder[j]; roof[t] = 0
    for (fw in name) if (stats(fw, "sgemm", t, "gflops") && med[fw, "sgemm", t, "gflops"] > roof[t]) { roof[t] = med[fw, "sgemm", t, "gflops"]; roofby[t] = name[fw] }
  }
  for (i = 1; i <= nm; i++) for (j = 1; j <= nt; j++) {
    m = morder[i]; t = torder[j]
    printf "| train GFLOP/s (%% of sgemm roof) | %s %sT | %s | %s | %s | | |\n", m, t, gflops("ember", m, t, roof[t]),
      gflops("pt", m, t, roof[t]), gflops("lt", m, t, roof[t])
  }
  for (i = 1; i <= nm; i++) for (j = 1; j <= nt; j++) row("final epoch train loss", morder[i], torder[j], "loss", "%.4f", 1)
  for (i = 1; i <= nm; i++) row("heap allocations / step", morder[i], torder[1], "allocs_per_step", "%.0f", 1)
  for (i = 1; i <= nm; i++) for (j = 1; j <= nt; j++) row("peak RSS (MiB)", morder[i], torder[j], "peak_rss_kib", "%.0f", 1024)
  for (i = 1; i <= nm; i++) row("RSS after data+model load (MiB)", morder[i], torder[1], "data_rss_kib", "%.0f", 1024)
  row("executable (MB)", morder[1], torder[1], "exe_bytes", "%.2f", 1e6)
  row("shared libraries mapped (MB)", morder[1], torder[1], "libs_bytes", "%.1f", 1e6)
  row("shared libraries mapped (count)", morder[1], torder[1], "libs", "%.0f", 1)
  row("trivial program start-up (ms)", "trivial", "1", "startup_us", "%.1f", 1000)
  print ""
  for (j = 1; j <= nt; j++) if (roof[torder[j]] > 0)
    printf "sgemm roof %sT: %.1f GFLOP/s (%s, the best of the three 1024^3 sgemm medians)\n", torder[j], roof[torder[j]], roofby[torder[j]]
  printf "training FLOP per sample (2 per multiply-add: forward, weight and input gradients, less the first layer'"'"'s input gradient):"
  for (i = 1; i <= nm; i++) if (morder[i] in flop) printf " %s %d", morder[i], flop[morder[i]]
  print ""
  for (b in blas) print "BLAS: " b
  print "PyTorch 2.x runs a Python process: its peak RSS includes the interpreter; allocation, size and start-up rows are Ember and LibTorch only."
}' "$out"
