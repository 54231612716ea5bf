#!/usr/bin/env bash
# Mixed-precision training throughput: Ember's ember_bench_train in 32-true and bf16-mixed next to
# PyTorch 2.x from PyPI (bench/train_throughput/bench_torch2.py, float32 and CPU autocast bf16, in
# a virtual environment under the build folder, installed once), for lit, mlp and conv, one
# epoch of Fashion-MNIST each, interleaved --reps times. Prints medians (min-max) of training
# samples/s, the bf16/f32 ratios, Ember bf16 against PyTorch bf16, and each run's last-epoch
# validation MSE, with the CPU model and whether it has AVX512-BF16.
# Usage: scripts/bench-amp.sh [--reps N] [--models "lit mlp conv"] [--threads "1 2"] [--build DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
reps=5 models="lit mlp conv" threads="1 2" build="$root/build-bench"
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps="$2"; shift 2 ;;
    --models) models="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    *) echo "usage: scripts/bench-amp.sh [--reps N] [--models \"lit mlp conv\"] [--threads \"1 2\"] [--build DIR]" >&2; exit 2 ;;
  esac
done
bash "$root/scripts/setup.sh" run  # the data set
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DEMBER_CUDA=OFF >/dev/null
cmake --build "$build" -j"${JOBS:-2}" --target ember_bench_train >/dev/null
venv="$build/venv-torch"
if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  echo "bench-amp: installing PyTorch from PyPI into $venv (large, once)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch numpy
fi
ember="$build/bin/ember_bench_train" torch=("$venv/bin/python" "$root/bench/train_throughput/bench_torch2.py")
out="$build/bench-amp-results.txt"
: >"$out"
for r in $(seq "$reps"); do
  for t in $threads; do
    for m in $models; do
      for p in 32-true bf16-mixed; do
        EMBER_NUM_THREADS="$t" "$ember" --model "$m" --threads "$t" --precision "$p" | grep '^RESULT' >>"$out"
        OMP_NUM_THREADS="$t" "${torch[@]}" --model "$m" --threads "$t" --precision "$p" | grep '^RESULT' >>"$out"
      done
    done
  done
  echo "# rep $r/$reps done, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
bf16="$(grep -qw avx512_bf16 /proc/cpuinfo && echo "with AVX512-BF16" || echo "without AVX512-BF16")"
tv="$(grep -m1 -o 'fw=torch[0-9.]*' "$out" | cut -d= -f2)"
echo "CPU: $cpu ($(nproc) cores, $bf16); PyTorch ${tv#torch}; $reps interleaved runs; one epoch of 60k images"
echo
echo "| model | threads | Ember f32 | Ember bf16-mixed | bf16/f32 | PyTorch f32 | PyTorch autocast bf16 | Ember bf16 / PyTorch bf16 | val MSE Ember f32 / bf16 | val MSE PyTorch f32 / bf16 |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
awk '
function med(k,   n, i, j, a, t) { n = cnt[k]; for (i = 1; i <= n; i++) a[i] = v[k, i]
  for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  lo = a[1]; hi = a[n]; return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
function cell(k,   m) { if (!cnt[k]) return "-"; m = med(k); return sprintf("%.0f (%.0f-%.0f)", m, lo, hi) }
function r(a, b) { return (cnt[a] && cnt[b]) ? sprintf("%.2fx", med(a) / med(b)) : "-" }
{ for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
  fw = (f["fw"] == "ember") ? "ember" : "torch"; k = fw SUBSEP f["precision"] SUBSEP f["model"] SUBSEP f["threads"]
  v[k, ++cnt[k]] = f["train_sps"]; vl[k] = f["val_loss"]
  if (!(f["model"] in sm)) { sm[f["model"]] = 1; mo[++nm] = f["model"] }
  if (!(f["threads"] in st)) { st[f["threads"]] = 1; to[++nt] = f["threads"] }
  delete f }
END { for (i = 1; i <= nm; i++) for (j = 1; j <= nt; j++) { m = mo[i]; t = to[j]
    e32 = "ember" SUBSEP "32-true" SUBSEP m SUBSEP t; e16 = "ember" SUBSEP "bf16-mixed" SUBSEP m SUBSEP t
    t32 = "torch" SUBSEP "32-true" SUBSEP m SUBSEP t; t16 = "torch" SUBSEP "bf16-mixed" SUBSEP m SUBSEP t
    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %.5f / %.5f | %.5f / %.5f |\n", m, t, cell(e32), cell(e16), r(e16, e32), cell(t32), cell(t16), r(e16, t16), vl[e32], vl[e16], vl[t32], vl[t16] } }' "$out"
echo
echo "raw results: $out"
