#!/usr/bin/env bash
# Installs what Ember needs, only what is missing. Usage: scripts/setup.sh [test|run|bench|deploy] [--build DIR]
# "run" (default): build + example data; "test": also GoogleTest, clang/libFuzzer; "bench": also
# LibTorch, and PyTorch 2.x with ONNX Runtime from PyPI in a virtual environment DIR/venv-torch
# (DIR: --build, default build-bench/ in the repository); "deploy": also PyTorch for Python, venv,
# GNU time and strip (scripts/bench-deploy.sh).
# Debian packages install with --no-install-recommends, so every package a step needs is named here.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mode="run" build="$root/build-bench"
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    run|test|bench|deploy) mode="$1"; shift ;;
    *) echo "usage: scripts/setup.sh [run|test|bench|deploy] [--build DIR]" >&2; exit 2 ;;
  esac
done
pkgs=(build-essential cmake zlib1g-dev libeigen3-dev libcli11-dev nlohmann-json3-dev libpng-dev dataset-fashion-mnist)
case "$mode" in
  run) ;;
  # libclang-rt-dev: libFuzzer + sanitizer runtimes; pkgconf, dpkg-dev and file (cpack's
  # dpkg-shlibdeps) and python3 (ctypes) for the installed-library checks of tests/consumer/.
  # libopenmpi-dev + openmpi-bin: Ember::distributed and its two-rank tests (mpirun).
  test) pkgs+=(libgtest-dev clang libclang-rt-dev pkgconf dpkg-dev file python3 libopenmpi-dev openmpi-bin) ;;
  # python3-venv: the PyPI side below (Debian's python3 makes venvs only with it).
  bench) pkgs+=(libbenchmark-dev libtorch-dev libopenblas0-openmp python3-venv) ;;
  deploy) pkgs+=(python3-torch python3-numpy python3-venv time binutils) ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# bench: PyTorch 2.x, ONNX Runtime and onnx from PyPI, in a venv of their own (isolated from
# Debian's python3-torch, which the deploy benchmark uses). The torch wheel is large, so an existing
# venv that imports every module is kept as it is; pip's own settings (PIP_INDEX_URL, a pip.conf)
# choose where the wheels come from.
if [ "$mode" = bench ]; then
  venv="$build/venv-torch" modules=(torch numpy onnxruntime onnx)
  lacking=()
  for m in "${modules[@]}"; do
    "$venv/bin/python" -c "import $m" 2>/dev/null || lacking+=("$m")
  done
  if [ ${#lacking[@]} -gt 0 ]; then
    echo "setup: installing ${lacking[*]} from PyPI into $venv (torch is large; once)"
    mkdir -p "$build"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "${lacking[@]}"
  fi
fi
