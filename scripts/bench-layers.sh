#!/usr/bin/env bash
# Layers at scale, Ember vs PyTorch 2.x (PyPI): forward + backward of one Linear or Conv2d layer and
# a ReLU (bench/layers: ember_bench_layers and bench_layers_torch.py, the same five cases), each
# process the median of 7 steps per case after 3 warm-up steps. Installs what it needs
# (scripts/setup.sh bench), builds ember_bench_layers, runs the two interleaved (the order
# alternates each repetition) for each thread count, and prints one table: ms per step, medians
# (min-max) of the processes' medians, the ratio PyTorch/Ember (> 1: Ember faster) and GFLOP/s, with
# the CPU model.
# Usage: scripts/bench-layers.sh [--reps N] [--cases "linear1024 linear2048 conv64 conv128 conv256"]
#                                [--threads "1 2"] [--build DIR]
#        scripts/bench-layers.sh --table FILE   # only print the table of a previous run's raw results
# The raw results (one RESULT line per case and process, the CPU as a "#" line) are kept in
# DIR/bench-layers-results.txt.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
reps=5 cases="linear1024 linear2048 conv64 conv128 conv256" threads="1 2" build="$root/build-bench" table=""
usage="usage: scripts/bench-layers.sh [--reps N] [--cases \"linear1024 ...\"] [--threads \"1 2\"] [--build DIR] | --table FILE"
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps="$2"; shift 2 ;;
    --cases) cases="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    --table) table="$2"; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done

if [ -z "$table" ]; then
for c in $cases; do
  case "$c" in linear1024|linear2048|conv64|conv128|conv256) ;;
    *) echo "bench-layers: unknown case '$c' (expected linear1024, linear2048, conv64, conv128 or conv256)" >&2; exit 2 ;;
  esac
done
bash "$root/scripts/setup.sh" bench --build "$build"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DEMBER_CUDA=OFF >/dev/null
cmake --build "$build" -j"${JOBS:-2}" --target ember_bench_layers >/dev/null
out="$build/bench-layers-results.txt"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "# $(date -u +%FT%TZ) CPU: $cpu ($(nproc) CPUs), load at start: $(cut -d' ' -f1-3 /proc/loadavg), $reps interleaved runs" >"$out"
run() {  # run FW THREADS: one process over every case, its RESULT lines into the results
  local t="$2"
  # shellcheck disable=SC2086  # the case list is word-split on purpose
  case "$1" in
    ember) EMBER_NUM_THREADS="$t" OMP_NUM_THREADS="$t" "$build/bin/ember_bench_layers" --threads "$t" --cases $cases ;;
    torch) OMP_NUM_THREADS="$t" "$build/venv-torch/bin/python" "$root/bench/layers/bench_layers_torch.py" --threads "$t" --cases $cases ;;
  esac | grep '^RESULT' >>"$out"
}
for r in $(seq "$reps"); do
  for t in $threads; do
    if [ $((r % 2)) -eq 1 ]; then run ember "$t"; run torch "$t"; else run torch "$t"; run ember "$t"; fi
  done
  echo "# rep $r/$reps done, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
echo "# raw results: $out" >&2
else
  out="$table"
  [ -r "$out" ] || { echo "bench-layers: cannot read --table '$out'" >&2; exit 2; }
fi

# RESULT lines -> table: median (min-max) over the processes of (fw, case, threads, key); fw is
# ember or pt (fw=torch2.x).
awk "$(cat "$root/scripts/lib/stats.awk")"'
function medcell(k, fmt) { return stats(k) ? sprintf(fmt, med[k]) : "-" }
BEGIN {
  desc["linear1024"] = "Linear 1024->1024, batch 256"; desc["linear2048"] = "Linear 2048->2048, batch 256"
  desc["conv64"] = "Conv2d 64->64 3x3 p1, 32x32, batch 64"; desc["conv128"] = "Conv2d 128->128 3x3 p1, 16x16, batch 32"
  desc["conv256"] = "Conv2d 256->256 3x3 p1, 8x8, batch 16"
}
/^#/ { if ($0 !~ /^# (rep|raw)/) print; next }
/^RESULT/ {
  for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
  fw = f["fw"]; if (fw ~ /^torch/) { ptver = substr(fw, 6); fw = "pt" }
  c = f["case"]; t = f["threads"]; steps = f["steps"]
  if (!(c in seenc)) { seenc[c] = 1; corder[++nc] = c }
  if (!(t in seent)) { seent[t] = 1; torder[++nt] = t }
  val[fw, c, t, "ms", ++cnt[fw, c, t, "ms"]] = f["ms"]
  val[fw, c, t, "gflops", ++cnt[fw, c, t, "gflops"]] = f["gflops"]
  delete f
}
END {
  for (i = 2; i <= nt; i++) { tmp = torder[i]; for (j = i - 1; j >= 1 && torder[j] + 0 > tmp + 0; j--) torder[j + 1] = torder[j]; torder[j + 1] = tmp }
  print ""
  printf "One layer + ReLU, forward and backward (input, weight and bias gradients), ms per step: each process the median of %s steps; medians (min-max) over the processes. PyTorch %s.\n", steps, ptver
  print ""
  print "| case | threads | Ember ms | PyTorch ms | PyTorch/Ember | Ember GFLOP/s | PyTorch GFLOP/s |"
  print "|---|---:|---:|---:|---:|---:|---:|"
  for (i = 1; i <= nc; i++) for (j = 1; j <= nt; j++) {
    c = corder[i]; t = torder[j]; e = "ember" SUBSEP c SUBSEP t; p = "pt" SUBSEP c SUBSEP t
    r = (stats(e SUBSEP "ms") && stats(p SUBSEP "ms") && med[e SUBSEP "ms"] > 0) ? sprintf("%.2fx", med[p SUBSEP "ms"] / med[e SUBSEP "ms"]) : "-"
    printf "| %s (%s) | %s | %s | %s | %s | %s | %s |\n", c, (c in desc ? desc[c] : "?"), t, cell(e SUBSEP "ms", "%.2f"),
      cell(p SUBSEP "ms", "%.2f"), r, medcell(e SUBSEP "gflops", "%.1f"), medcell(p SUBSEP "gflops", "%.1f")
  }
  print ""
  print "PyTorch/Ember > 1: Ember faster. GFLOP/s: 2 FLOP per multiply-add of the forward pass, the weight gradient and the input gradient per step, medians over the processes."
}' "$out"
