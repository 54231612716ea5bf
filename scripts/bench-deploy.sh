#!/usr/bin/env bash
# Deploying the example autoencoders, ember-run vs ONNX Runtime (Python): installs what it needs
# (scripts/setup.sh deploy, and onnxruntime from PyPI into build-bench/venv-ort, a venv that sees
# Debian's torch and numpy), exports the three models with fixed-seed weights to .onnx and .ckpt
# (bench/deploy/export_models.py), then runs bench/deploy/compare.py: one image each, interleaved,
# and prints one table of medians with min-max. It builds nothing: ember-run and ember-ckpt come
# from an existing Release build.
# Usage: scripts/bench-deploy.sh [--build DIR] [--reps N] [--models "lit mlp conv"] [--threads "1 0"]
#        scripts/bench-deploy.sh --table FILE   # only print the table of a previous run's results
# DIR (default: EMBER_BUILD, else build/) holds bin/ember-run and bin/ember-ckpt; a -DEMBER_CUDA=OFF
# build for a CPU-to-CPU comparison (a CUDA build's ember-run loads the CUDA libraries on every
# start). Threads 0: each runtime's default. The raw results (one RESULT line per run) are kept in
# build-bench/deploy/results.txt. ORT_VERSION picks the onnxruntime release (default below).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${EMBER_BUILD:-$root/build}" reps=15 models="lit mlp conv" threads="1 0" table=""
ort_version="${ORT_VERSION:-1.32.0}"
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --models) models="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --table) table="$2"; shift 2 ;;
    *) echo "usage: scripts/bench-deploy.sh [--build DIR] [--reps N] [--models \"lit mlp conv\"] [--threads \"1 0\"]" >&2
       exit 2 ;;
  esac
done

venv="$root/build-bench/venv-ort" out="$root/build-bench/deploy"
if [ -n "$table" ]; then
  exec "$venv/bin/python" "$root/bench/deploy/compare.py" --table "$table"
fi

tool() {  # the binary of a top-level build (bin/), else of a build where Ember is a subproject
  for p in "$build/bin/$1" "$build/tools/$2/$1"; do
    if [ -x "$p" ]; then echo "$p"; return; fi
  done
  echo "bench-deploy: no $1 in $build/bin or $build/tools/$2 (build Ember first, Release, or pass --build DIR)" >&2
  exit 2
}
ember_run="$(tool ember-run run)" ember_ckpt="$(tool ember-ckpt ckpt)"

bash "$root/scripts/setup.sh" deploy
# Debian's Python: python3-torch is installed for it. The venv adds onnxruntime and its
# pure-Python dependencies; numpy is held at Debian's version, which torch was built against.
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
if ! "$venv/bin/python" -c "import onnxruntime, sys; sys.exit(onnxruntime.__version__ != '$ort_version')" 2>/dev/null; then
  numpy_version="$("$venv/bin/python" -c 'import numpy; print(numpy.__version__)')"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "onnxruntime==$ort_version" "numpy==$numpy_version"
fi

"$venv/bin/python" "$root/bench/deploy/export_models.py" "$out" --ember-ckpt "$ember_ckpt" --models $models
# shellcheck disable=SC2086  # the lists are word-split on purpose
"$venv/bin/python" "$root/bench/deploy/compare.py" --ember-run "$ember_run" --dir "$out" --reps "$reps" \
  --models $models --threads $threads
