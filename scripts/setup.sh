#!/usr/bin/env bash
# Installs the Debian packages Ember needs, only those missing. Usage: scripts/setup.sh [test|run|bench|deploy]
# "run" (default): build + example data; "test": also GoogleTest, clang/libFuzzer; "bench": also LibTorch;
# "deploy": also PyTorch for Python, venv, GNU time and strip (scripts/bench-deploy.sh).
# Installs with --no-install-recommends, so every package a step needs is named here.
set -euo pipefail
mode="${1:-run}"
pkgs=(build-essential cmake zlib1g-dev libeigen3-dev libcli11-dev nlohmann-json3-dev libpng-dev dataset-fashion-mnist)
case "$mode" in
  run) ;;
  # libclang-rt-dev: libFuzzer + sanitizer runtimes; pkgconf, dpkg-dev and file (cpack's
  # dpkg-shlibdeps) and python3 (ctypes) for the installed-library checks of tests/consumer/.
  # libopenmpi-dev + openmpi-bin: Ember::distributed and its two-rank tests (mpirun).
  test) pkgs+=(libgtest-dev clang libclang-rt-dev pkgconf dpkg-dev file python3 libopenmpi-dev openmpi-bin) ;;
  bench) pkgs+=(libbenchmark-dev libtorch-dev libopenblas0-openmp) ;;
  deploy) pkgs+=(python3-torch python3-numpy python3-venv time binutils) ;;
  *) echo "usage: scripts/setup.sh [run|test|bench|deploy]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
