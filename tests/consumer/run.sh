#!/usr/bin/env bash
# Checks Ember as an installed library, from outside its source tree, the ways a user consumes it:
#   1. `cmake --install` into a temporary prefix; every installed header compiles on its own, pulls
#      in no Eigen, zlib or CUDA header, defines only EMBER_ macros, has no file-scope
#      `using namespace`; no private header is installed; libember.so exports only ember::
#      symbols and the C API's ember_ functions.
#   2. This folder's project built with find_package(Ember): the consumer (shared and static), the
#      C API from C11 and from Python ctypes, and (where Ember has it) Ember::distributed as one
#      process and as two ranks under mpirun; find_package(Ember 99) fails with CMake's message.
#   3. A one-file program built with pkg-config alone, shared and --static.
#   4. `cpack -G DEB`: the three packages' names and Depends; the consumer built against their
#      contents unpacked into a temporary root.
#   5. The consumer built from Ember's source tree with FetchContent (add_subdirectory), with no
#      build type chosen: Ember forces none, builds no tests, writes nothing outside its own
#      binary folder and passes no warning flags on.
# Usage: tests/consumer/run.sh BUILD_DIR   (a built Release build of Ember with its tools)
#        env JOBS (default 2)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
[ $# -eq 1 ] && [ -f "$1/CMakeCache.txt" ] || { echo "usage: tests/consumer/run.sh BUILD_DIR (a configured, built Ember build)" >&2; exit 2; }
build="$(cd "$1" && pwd)"
jobs="${JOBS:-2}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
say() { echo "[consumer] $*"; }
fail() { echo "[consumer] FAILED: $*" >&2; exit 1; }
kib() { echo $(( ($(stat -c %s "$1") + 1023) / 1024 )); }

# --- 1. install ------------------------------------------------------------------------------
prefix="$work/prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" || { cat "$work/install.log"; fail "cmake --install"; }
lib="$(readlink -f "$prefix/lib/libember.so")"
[ -f "$lib" ] || fail "no lib/libember.so installed"
[ -f "$prefix/lib/libember.a" ] || fail "no lib/libember.a installed"
soname="$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
[ "$soname" = "libember.so.0" ] || fail "SONAME is '$soname', expected libember.so.0"
strip -o "$work/libember.stripped.so" "$lib"
headers_kib="$(find "$prefix/include/ember" -type f -printf '%s\n' | awk '{ s += $1 } END { print int((s + 1023) / 1024) }')"
say "installed: $(basename "$lib") $(kib "$lib") KiB ($(kib "$work/libember.stripped.so") KiB stripped), libember.a $(kib "$prefix/lib/libember.a") KiB, headers $(find "$prefix/include/ember" -name '*.h' | wc -l) files $headers_kib KiB"

for private in kernels runtime/dispatch.h runtime/block_cache.h runtime/op_registry.h checkpoint/format.h \
               checkpoint/posix_file.h train/callbacks_pyformat.h train/lr_scheduler/detail.h; do
  [ ! -e "$prefix/include/ember/$private" ] || fail "private header ember/$private is installed"
done
for want in ember.h c.h config.h runtime/tensor.h nn/nn.h train/trainer.h checkpoint/checkpoint.h; do
  [ -f "$prefix/include/ember/$want" ] || fail "ember/$want is not installed"
done
! grep -rn "^\s*using namespace" "$prefix/include/ember" || fail "an installed header has a file-scope 'using namespace'"

# Each header alone, one translation unit each (in parallel); the C API header also as C11.
(cd "$prefix/include" && find ember -name '*.h' | sort) >"$work/headers"
check_header() {  # $1: ember/... ; writes $work/deps/<name>.d
  local d="$work/deps/$(echo "$1" | tr / _).d"
  echo "#include <$1>" | g++ -std=c++20 -fsyntax-only -Wall -Wextra -Werror -I"$prefix/include" \
      -x c++ - -MD -MF "$d" -MT x 2>&1 | sed "s|^|$1: |"
}
export -f check_header; export prefix work
mkdir -p "$work/deps"
errors="$(xargs -P "$jobs" -I{} bash -c 'check_header {}' <"$work/headers")"
[ -z "$errors" ] || { echo "$errors" >&2; fail "installed headers do not compile on their own"; }
echo '#include <ember/c.h>' | gcc -std=c11 -pedantic -Wall -Wextra -Werror -fsyntax-only -I"$prefix/include" -x c - \
  || fail "<ember/c.h> is not C11"
# (Ember's own headers are not third-party, whatever their names: ember/runtime/cuda_graph.h.)
bad_deps="$(cat "$work"/deps/*.d | tr ' \\' '\n\n' | grep -v "^$prefix/include/ember/" |
  grep -E 'eigen3|/zlib\.h|/cuda|cudnn|cublas' | sort -u || true)"
[ -z "$bad_deps" ] || fail "installed headers include third-party headers: $bad_deps"
# Macros: those of <ember/ember.h> and <ember/c.h> minus those of the standard headers they include.
grep -rhoE '^#include <[a-z_/.0-9]+>' "$prefix/include/ember" | grep -v '<ember/' | sort -u >"$work/std_includes.h"
g++ -std=c++20 -dM -E -x c++ "$work/std_includes.h" | awk '{print $2}' | sed 's/(.*//' | sort -u >"$work/std_macros"
printf '#include <ember/ember.h>\n#include <ember/c.h>\n' >"$work/all.h"
cat "$work/std_includes.h" >>"$work/all.h"
g++ -std=c++20 -dM -E -I"$prefix/include" -x c++ "$work/all.h" | awk '{print $2}' | sed 's/(.*//' | sort -u >"$work/all_macros"
foreign="$(comm -13 "$work/std_macros" "$work/all_macros" | grep -v '^EMBER_' || true)"
[ -z "$foreign" ] || fail "installed headers define macros without the EMBER_ prefix: $foreign"

# Exported symbols: ember:: (with its type information, vtables, thunks, guards) and ember_ only.
nm -D --defined-only "$lib" | awk '{ $1 = ""; $2 = ""; sub(/^  /, ""); print }' | c++filt >"$work/symbols"
allowed='^(ember::|ember_|(typeinfo|typeinfo name|vtable|VTT|guard variable|TLS init function|TLS wrapper function) for ember::|(non-virtual |virtual |covariant return )?thunk to ember::|construction vtable for .*ember::)'
outside="$(grep -vE "$allowed" "$work/symbols" || true)"
[ -z "$outside" ] || { echo "$outside" | head -20 >&2; fail "libember.so exports $(echo "$outside" | wc -l) symbols outside ember:: and ember_"; }
for want in 'vtable for ember::nn::Module' 'typeinfo for ember::Error' 'ember::matmul(ember::Tensor const&, ember::Tensor const&)' 'ember_model_forward'; do
  grep -qxF "$want" "$work/symbols" || fail "libember.so does not export '$want'"
done
say "libember.so exports $(wc -l <"$work/symbols") symbols, all ember:: or ember_ ($(grep -c '^ember_' "$work/symbols") C API functions)"

# --- 2. find_package ----------------------------------------------------------------------------
cfg() { cmake -S "$1" -B "$2" "${@:3}" >"$2.log" 2>&1 || { cat "$2.log"; fail "configure $2"; }; }
bld() { cmake --build "$1" -j"$jobs" "${@:2}" >"$1.build.log" 2>&1 || { tail -50 "$1.build.log"; fail "build $1"; }; }
run_consumer() {  # $1: build folder, $2: label
  local out="$work/out-$2"
  mkdir -p "$out"
  "$1/consumer" "$out" | sed "s/^/[consumer:$2] /"
  "$1/consumer_static" "$out" >/dev/null
  "$1/c_api_test" "$out" | sed "s/^/[consumer:$2] /"
  if [ -x "$1/consumer_ddp" ]; then  # Ember::distributed: a world of one, and two ranks under mpirun
    "$1/consumer_ddp" | sed "s/^/[consumer:$2:distributed] /"
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
      OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_mpi_yield_when_idle=1 \
      mpirun -np 2 "$1/consumer_ddp" | sort | sed "s/^/[consumer:$2:distributed] /"
  fi
}
cfg "$here" "$work/pkg" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release
bld "$work/pkg"
if [ -f "$prefix/lib/libember_distributed.a" ]; then
  [ -x "$work/pkg/consumer_ddp" ] || fail "Ember::distributed is installed but find_package(Ember COMPONENTS distributed) did not give it"
fi
run_consumer "$work/pkg" find_package
readelf -d "$work/pkg/consumer" | grep -q 'NEEDED.*\[libember.so.0\]' || fail "consumer does not link libember.so.0"
! readelf -d "$work/pkg/consumer_static" | grep -q 'NEEDED.*libember' || fail "consumer_static needs libember.so"
# A CUDA build's programs start without CUDA's libraries (static runtime, cuBLAS/cuDNN opened on use).
for exe in consumer consumer_static; do
  ! readelf -d "$work/pkg/$exe" | grep -qE 'NEEDED.*lib(cudart|cublas|cudnn|cuda\.)' || fail "$exe needs a CUDA library"
done
strip -o "$work/consumer.stripped" "$work/pkg/consumer"
strip -o "$work/consumer_static.stripped" "$work/pkg/consumer_static"
say "consumer executable: $(kib "$work/consumer.stripped") KiB stripped (shared libember), consumer_static $(kib "$work/consumer_static.stripped") KiB stripped"
/usr/bin/python3 "$here/c_api_test.py" "$prefix/lib/libember.so.0" "$work/out-find_package" | sed 's/^/[consumer:ctypes] /'

mkdir -p "$work/v99"
cat >"$work/v99/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.25)
project(WantsEmber99 LANGUAGES CXX)
find_package(Ember 99 REQUIRED)
CMAKE
if cmake -S "$work/v99" -B "$work/v99/build" -DCMAKE_PREFIX_PATH="$prefix" >"$work/v99.log" 2>&1; then
  fail "find_package(Ember 99) succeeded"
fi
grep -q 'requested version "99"' "$work/v99.log" || { cat "$work/v99.log"; fail "find_package(Ember 99) failed without CMake's version message"; }

# --- 3. pkg-config ------------------------------------------------------------------------------
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
[ "$(pkg-config --modversion ember)" = "$(sed -n 's/^#define EMBER_VERSION_STRING "\(.*\)"/\1/p' "$prefix/include/ember/config.h")" ] \
  || fail "ember.pc's version differs from EMBER_VERSION_STRING"
# shellcheck disable=SC2046
g++ -std=c++20 "$here/pkgconfig_main.cpp" -o "$work/pc_shared" $(pkg-config --cflags --libs ember) -Wl,-rpath,"$prefix/lib" \
  || fail "pkg-config build (shared)"
"$work/pc_shared" | sed 's/^/[consumer:pkg-config] /'
# Static: libember.a with what Libs.private adds. Fully static (-static, as the README shows) in a
# CPU-only build; a CUDA build's static runtime opens the driver, cuBLAS and cuDNN with dlopen,
# which a fully static program cannot rely on, so there only libember is taken statically.
with_cuda="$(sed -n 's/^#define EMBER_WITH_CUDA \([01]\)$/\1/p' "$prefix/include/ember/config.h")"
static_libs="$(pkg-config --static --libs ember)"
if [ "$with_cuda" = 1 ]; then
  static_libs="${static_libs/-lember/-Wl,-Bstatic -lember -Wl,-Bdynamic}"
else
  static_libs="$static_libs -static"
fi
# shellcheck disable=SC2046,SC2086
g++ -std=c++20 "$here/pkgconfig_main.cpp" -o "$work/pc_static" $(pkg-config --cflags ember) $static_libs \
  2>"$work/pc_static.log" || { cat "$work/pc_static.log"; fail "pkg-config build (--static)"; }
"$work/pc_static" | sed 's/^/[consumer:pkg-config --static] /'
! readelf -d "$work/pc_static" 2>/dev/null | grep -q 'NEEDED.*libember' || fail "the --static build needs libember.so"
[ "$with_cuda" = 1 ] || ! readelf -d "$work/pc_static" 2>/dev/null | grep -q NEEDED || fail "the -static build has NEEDED entries"
! readelf -d "$work/pc_static" 2>/dev/null | grep -qE 'NEEDED.*lib(cudart|cublas|cudnn|cuda\.)' \
  || fail "the --static build needs a CUDA library"
# The README's C API program, as written there.
awk '/^```c$/ { on = 1; next } /^```$/ { on = 0 } on' "$repo/README.md" >"$work/readme_app.c"
grep -q 'ember_model_load' "$work/readme_app.c" || fail "README.md has no C API example"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror "$work/readme_app.c" -o "$work/readme_app" $(pkg-config --cflags --libs ember) \
  || fail "the README's C API example does not build"
unset PKG_CONFIG_PATH

# --- 4. Debian packages -------------------------------------------------------------------------
(cd "$build" && cpack -G DEB -B "$work/deb" >"$work/cpack.log" 2>&1) || { cat "$work/cpack.log"; fail "cpack -G DEB"; }
version="$(pkg-config --modversion "$prefix/lib/pkgconfig/ember.pc")"
deb_field() { dpkg-deb -f "$(ls "$work"/deb/"$1"_*.deb)" "$2"; }
for p in libember0 libember-dev ember-tools; do
  ls "$work"/deb/"$p"_*.deb >/dev/null 2>&1 || fail "cpack made no $p package (made: $(ls "$work/deb"/*.deb))"
  say "$p: Depends: $(deb_field "$p" Depends)"
done
deps="$(deb_field libember0 Depends)"
for d in libc6 libstdc++6 zlib1g; do [[ "$deps" == *"$d"* ]] || fail "libember0 does not depend on $d: $deps"; done
[[ "$(deb_field libember-dev Depends)" == *"libember0 (= $version)"* ]] || fail "libember-dev must depend on libember0 (= $version)"
[[ "$(deb_field libember-dev Depends)" == *"zlib1g-dev"* ]] || fail "libember-dev must depend on zlib1g-dev"
[[ "$(deb_field ember-tools Depends)" == *"libc6"* ]] || fail "ember-tools has no shared-library Depends"
for p in libember0 libember-dev ember-tools; do dpkg-deb -x "$(ls "$work"/deb/"$p"_*.deb)" "$work/root"; done
[ -x "$work/root/usr/bin/ember-ckpt" ] || fail "ember-tools has no usr/bin/ember-ckpt"
[ -x "$work/root/usr/bin/ember-run" ] || fail "ember-tools has no usr/bin/ember-run"
cfg "$here" "$work/debroot" -DCMAKE_PREFIX_PATH="$work/root/usr" -DCMAKE_BUILD_TYPE=Release
grep -q "$work/root/usr/lib/libember.so" "$work/debroot/CMakeFiles/consumer.dir/link.txt" \
  || fail "the consumer did not find Ember in the unpacked packages"
bld "$work/debroot"
run_consumer "$work/debroot" deb

# --- 5. FetchContent / add_subdirectory ---------------------------------------------------------
# (CPU only: the CUDA kernels compiled once more would double this step's time.)
cfg "$here" "$work/fc" -DEMBER_CONSUMER_SOURCE="$repo" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DEMBER_CUDA=OFF
[ -z "$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$work/fc/CMakeCache.txt")" ] || fail "Ember set CMAKE_BUILD_TYPE when embedded"
for t in ember_tests_runtime ember-mnist-ae ember_bench_train; do
  ! grep -q "$t" "$work/fc/Makefile" "$work/fc/_deps/ember-build/Makefile" || fail "embedded Ember defines $t"
done
for f in include generated bin lib; do [ ! -e "$work/fc/$f" ] || fail "embedded Ember wrote $f/ outside its binary folder"; done
flags="$(/usr/bin/python3 -c 'import json,sys; print("\n".join(c["command"] for c in json.load(open(sys.argv[1])) if c["file"].endswith("consumer.cpp")))' "$work/fc/compile_commands.json")"
for leak in -Werror -Wall -ffp-contract -fvisibility "$repo/runtime" "-I$repo "; do
  [[ "$flags" != *"$leak"* ]] || fail "embedded Ember passes '$leak' to the consumer: $flags"
done
start=$SECONDS
bld "$work/fc" --target consumer consumer_static c_api_test
run_consumer "$work/fc" FetchContent
say "FetchContent build (Ember unoptimised, no build type) took $((SECONDS - start)) s"
say "all checks passed"
