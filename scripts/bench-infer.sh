#!/usr/bin/env bash
# Inference, Ember (ember-run's code: ember_bench_infer) vs ONNX Runtime vs PyTorch 2.x no-grad eager
# (bench/inference/bench_ort.py) on the CPU: installs what it needs (scripts/setup.sh bench: PyTorch,
# onnxruntime and onnx in DIR/venv-torch), builds ember_bench_infer and ember-ckpt, exports the
# example autoencoders with fixed-seed weights (bench/deploy/export_models.py: .onnx through
# torch.onnx, .ckpt through ember-ckpt import-torch, .pt), checks that Ember's, ORT's and PyTorch's
# outputs for the first 256 test images agree, then runs the three interleaved (the order rotates
# each repetition) for each model and thread count over the 10k Fashion-MNIST test images: batch-256
# samples/s and batch-1 latency. Prints one table of medians with min-max and the ratios, with the CPU model.
# Usage: scripts/bench-infer.sh [--reps N] [--models "lit mlp conv"] [--threads "1 2"] [--build DIR]
#        scripts/bench-infer.sh --table FILE   # only print the table of a previous run's raw results
# The raw results (one RESULT line per measurement, the CPU as a "#" line) are kept in
# DIR/bench-infer-results.txt; the exported models in DIR/infer/. EMBER_DATA points all three at
# another MNIST-format folder.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
reps=5 models="lit mlp conv" threads="1 2" build="$root/build-bench" table=""
usage="usage: scripts/bench-infer.sh [--reps N] [--models \"lit mlp conv\"] [--threads \"1 2\"] [--build DIR] | --table FILE"
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

if [ -z "$table" ]; then
for m in $models; do
  case "$m" in lit|mlp|conv) ;; *) echo "bench-infer: unknown model '$m' (expected lit, mlp or conv)" >&2; exit 2 ;; esac
done
bash "$root/scripts/setup.sh" bench --build "$build"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DEMBER_CUDA=OFF >/dev/null
cmake --build "$build" -j"${JOBS:-2}" --target ember_bench_infer ember-ckpt >/dev/null
py="$build/venv-torch/bin/python" dir="$build/infer" out="$build/bench-infer-results.txt"
ember=("$build/bin/ember_bench_infer") peer=("$py" "$root/bench/inference/bench_ort.py" --dir "$dir")

# PyTorch 2.x warns that its TorchScript ONNX exporter is deprecated (export_models.py says why it is used).
# shellcheck disable=SC2086  # the model list is word-split on purpose
"$py" -W ignore::DeprecationWarning "$root/bench/deploy/export_models.py" "$dir" --ember-ckpt "$build/bin/ember-ckpt" --models $models
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "# $(date -u +%FT%TZ) CPU: $cpu ($(nproc) CPUs), load at start: $(cut -d' ' -f1-3 /proc/loadavg), $reps interleaved runs" >"$out"
# The same computation: Ember's outputs for the first batch against ORT's and PyTorch's (exits on a mismatch).
for m in $models; do
  EMBER_NUM_THREADS=1 "${ember[@]}" --model "$m" --ckpt "$dir/$m.ckpt" --threads 1 --passes 1 --latency-images 0 \
    --write-output "$dir/$m.ember.npy" >/dev/null
  for fw in ort torch; do
    if ! res="$(OMP_NUM_THREADS=1 "${peer[@]}" --fw "$fw" --model "$m" --threads 1 --check "$dir/$m.ember.npy")"; then
      echo "$res"; echo "bench-infer: $m: $fw's outputs are not Ember's (see above)" >&2; exit 1
    fi
    echo "$res" | grep '^RESULT' >>"$out"
    echo "$res" | grep -v '^RESULT' || true
  done
done

run() {  # run FW THREADS MODEL: one process, its RESULT lines into the results
  local t="$2" m="$3"
  case "$1" in
    ember) EMBER_NUM_THREADS="$t" OMP_NUM_THREADS="$t" "${ember[@]}" --model "$m" --ckpt "$dir/$m.ckpt" --threads "$t" ;;
    *) OMP_NUM_THREADS="$t" "${peer[@]}" --fw "$1" --model "$m" --threads "$t" ;;
  esac | grep '^RESULT' >>"$out"
}
fws=(ember ort torch)
for r in $(seq "$reps"); do
  for t in $threads; do
    for m in $models; do
      for i in 0 1 2; do run "${fws[(i + r) % 3]}" "$t" "$m"; done
    done
  done
  echo "# rep $r/$reps done, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
echo "# raw results: $out" >&2
else
  out="$table"
  [ -r "$out" ] || { echo "bench-infer: cannot read --table '$out'" >&2; exit 2; }
fi

# RESULT lines -> table: median (min-max) over the runs of (fw, model, threads, batch, key); fw is
# ember, ort (fw=ort1.x) or pt (fw=torch2.x).
awk "$(cat "$root/scripts/lib/stats.awk")"'
function ratio(a, b) { return (stats(a) && stats(b) && med[b] > 0) ? sprintf("%.2fx", med[a] / med[b]) : "-" }
/^#/ { if ($0 !~ /^# (rep|raw)/) print; next }
/^RESULT/ {
  for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
  fw = f["fw"]
  if (fw ~ /^ort/) { ver["ort"] = substr(fw, 4); fw = "ort" } else if (fw ~ /^torch/) { ver["pt"] = substr(fw, 6); fw = "pt" }
  m = f["model"]; t = f["threads"]
  if ("max_abs_diff" in f) { diff[fw, m] = f["max_abs_diff"]; nimg[m] = f["check_images"]; delete f; next }
  if (!(m in seenm)) { seenm[m] = 1; morder[++nm] = m }
  if (!(t in seent)) { seent[t] = 1; torder[++nt] = t }
  if (f["batch"] == 1) { val[fw, m, t, "lat", ++cnt[fw, m, t, "lat"]] = f["latency_us"] }
  else { bs = f["batch"]; val[fw, m, t, "sps", ++cnt[fw, m, t, "sps"]] = f["sps"] }
  delete f
}
END {
  for (i = 2; i <= nt; i++) { tmp = torder[i]; for (j = i - 1; j >= 1 && torder[j] + 0 > tmp + 0; j--) torder[j + 1] = torder[j]; torder[j + 1] = tmp }
  print ""
  printf "ONNX Runtime %s (CPU provider, intra-op threads = threads, inter-op 1); PyTorch %s eager, no_grad; medians (min-max) of the runs\n", ver["ort"], ver["pt"]
  print ""
  printf "| model | threads | batch %s samples/s: Ember | ORT | PyTorch | Ember/ORT | Ember/PyTorch | batch 1 latency (us): Ember | ORT | PyTorch | ORT/Ember | PyTorch/Ember |\n", bs
  print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for (i = 1; i <= nm; i++) for (j = 1; j <= nt; j++) {
    m = morder[i]; t = torder[j]
    e = "ember" SUBSEP m SUBSEP t; o = "ort" SUBSEP m SUBSEP t; p = "pt" SUBSEP m SUBSEP t
    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", m, t,
      cell(e SUBSEP "sps", "%.0f"), cell(o SUBSEP "sps", "%.0f"), cell(p SUBSEP "sps", "%.0f"),
      ratio(e SUBSEP "sps", o SUBSEP "sps"), ratio(e SUBSEP "sps", p SUBSEP "sps"),
      cell(e SUBSEP "lat", "%.1f"), cell(o SUBSEP "lat", "%.1f"), cell(p SUBSEP "lat", "%.1f"),
      ratio(o SUBSEP "lat", e SUBSEP "lat"), ratio(p SUBSEP "lat", e SUBSEP "lat")
  }
  print ""
  print "Ratios > 1: Ember faster. Same computation: largest absolute difference from Ember'"'"'s outputs for the first test images"
  for (i = 1; i <= nm; i++) {
    m = morder[i]
    printf "  %s (%s images): ORT %s, PyTorch %s\n", m, (m in nimg ? nimg[m] : "?"),
      ((("ort", m) in diff) ? diff["ort", m] : "-"), ((("pt", m) in diff) ? diff["pt", m] : "-")
  }
}' "$out"
