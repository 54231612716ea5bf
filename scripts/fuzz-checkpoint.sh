#!/usr/bin/env bash
# Builds the checkpoint reader's libFuzzer target (tests/checkpoint/fuzz/fuzz_reader.cpp) with
# Debian's clang under ASan + UBSan, then fuzzes it for a bounded time starting from the committed
# seed corpus. Exits non-zero when the build fails or the fuzzer finds a crash, leak, timeout,
# sanitizer report or any single allocation of 64 MiB or more (inputs are at most 64 KiB, so such
# an allocation could only come from a declared length); the reproducer stays in the build dir.
#
#   scripts/fuzz-checkpoint.sh [SECONDS]
#     SECONDS                 fuzzing time (default: $EMBER_FUZZ_SECONDS, else 60)
#     EMBER_FUZZ_BUILD_DIR    where the binary and any crash files go (default: build/fuzz)
#     EMBER_FUZZ_CXX          the compiler (default: clang++)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secs=${1:-${EMBER_FUZZ_SECONDS:-60}}
build=${EMBER_FUZZ_BUILD_DIR:-$root/build/fuzz}
cxx=${EMBER_FUZZ_CXX:-clang++}
fuzz_dir=$root/tests/checkpoint/fuzz
bin=$build/fuzz_checkpoint_reader
srcs=("$root/checkpoint/format.cpp" "$root/checkpoint/crc32.cpp" "$fuzz_dir/fuzz_reader.cpp")
deps=("${srcs[@]}" "$root/checkpoint/format.h" "$root/checkpoint/limits.h" "$root/runtime/error.h" "$0")

if ! command -v "$cxx" > /dev/null; then
  echo "[fuzz] $cxx not found (apt-get install clang)" >&2
  exit 2
fi
mkdir -p "$build/include/ember"
# The <ember/...> spelling of the public headers, as the CMake build's include tree gives it: the
# reader needs only runtime/ and checkpoint/.
for d in runtime checkpoint; do ln -sfn "$root/$d" "$build/include/ember/$d"; done
stale=0
[[ -x $bin ]] || stale=1
for f in "${deps[@]}"; do [[ $f -nt $bin ]] && stale=1; done
if (( stale )); then
  echo "[fuzz] building $bin"
  "$cxx" -std=c++20 -O1 -g -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I"$root" -I"$build/include" "${srcs[@]}" -lz -o "$bin"
fi

# Work on a copy so that the committed corpus never changes.
work=$(mktemp -d "${TMPDIR:-/tmp}/ember-fuzz-XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$fuzz_dir"/corpus/* "$work"/

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
echo "[fuzz] fuzzing the checkpoint reader for ${secs}s ($(ls "$work" | wc -l) seeds)"
set +e
"$bin" "$work" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=64 -max_len=65536 \
  -dict="$fuzz_dir/checkpoint.dict" -artifact_prefix="$build/" -print_final_stats=1 2> "$build/fuzz.log"
rc=$?
set -e
grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)" "$build/fuzz.log" || true
if (( rc != 0 )); then
  tail -n 60 "$build/fuzz.log"
  echo "[fuzz] FAILED (exit $rc); reproducer and log in $build/"
  exit 1
fi
echo "[fuzz] no findings"
