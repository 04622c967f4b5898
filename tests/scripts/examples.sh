#!/bin/sh
# examples/simple.c and simple.cpp built the way a user would: against a copy of loom installed
# (cmake --install) into a prefix inside the build directory, found through pkg-config. Each must
# print exactly what `loom run` prints for the same greedy generation. Also checks that the
# installed libraries export nothing outside the loom_ prefix.
# usage: examples.sh BUILD_DIR SOURCE_DIR LOOM_BIN MODEL
set -u
build=$1 src=$2 loom=$3 model=$4
prefix=$build/test-prefix
work=$build/examples-test
rm -rf "$prefix" "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
cmake --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 || { cat "$work/install.log"; fail "cmake --install"; }
for f in include/loom.h lib/libloom.a lib/libloom.so lib/pkgconfig/loom.pc; do
    [ -e "$prefix/$f" ] || fail "cmake --install did not install $f"
done
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
pkg-config --exists loom || fail "pkg-config does not find loom.pc"
cflags=$(pkg-config --cflags loom) libs=$(pkg-config --libs loom) static_libs=$(pkg-config --libs --static loom)
libdir=$(pkg-config --variable=libdir loom)

# exported symbols: only loom_* (the peer's gguf.h has gguf_find_key, gguf_find_tensor, ...)
leak=$(nm -D --defined-only "$prefix/lib/libloom.so" | awk 'NF == 3 && $3 !~ /^loom_/ {print $3}')
[ -z "$leak" ] || fail "libloom.so exports symbols outside loom_: $(echo $leak | head -c 300)"
leak=$(nm -g --defined-only "$prefix/lib/libloom.a" | awk 'NF == 3 && $3 !~ /^loom_/ {print $3}')
[ -z "$leak" ] || fail "libloom.a exports symbols outside loom_: $(echo $leak | head -c 300)"

# a program with its own gguf_find_key links against the static library without a clash
cat >"$work/clash.c" <<'C'
#include <loom.h>
int gguf_find_key(void) { return 7; }
int main(void) { return loom_dtype_size(LOOM_F32) == 4 && gguf_find_key() == 7 ? 0 : 1; }
C
cc -Wall -Wextra -Werror $cflags ${LOOM_SAN_FLAGS:-} "$work/clash.c" "$prefix/lib/libloom.a" $static_libs -Wl,-rpath,"$libdir" -o "$work/clash" 2>"$work/clash.log" ||
    { cat "$work/clash.log"; fail "a program defining gguf_find_key does not link with libloom.a"; }
"$work/clash" || fail "clash program"

prompt="Once upon a time"
want=$("$loom" run -m "$model" -p "$prompt" -n 40 --temp 0 --device cpu 2>/dev/null) || fail "loom run"
[ -n "$want" ] || fail "loom run printed nothing"
cc -std=c11 -Wall -Wextra -Werror $cflags ${LOOM_SAN_FLAGS:-} "$src/examples/simple.c" $libs -Wl,-rpath,"$libdir" -o "$work/simple" ||
    fail "examples/simple.c does not build against the installed libloom.so"
c++ -std=c++17 -Wall -Wextra -Werror $cflags ${LOOM_SAN_FLAGS:-} "$src/examples/simple.cpp" "$prefix/lib/libloom.a" $static_libs -Wl,-rpath,"$libdir" -o "$work/simple_cpp" ||
    fail "examples/simple.cpp does not build against the installed libloom.a"
so=$(ldd "$work/simple" | awk '$1 ~ /^libloom\.so/ {print $3}')
[ -n "$so" ] && [ "$(readlink -f "$so")" = "$(readlink -f "$prefix/lib/libloom.so")" ] ||
    fail "simple is not linked to the installed libloom.so (ldd: ${so:-none})"
for exe in simple simple_cpp; do
    got=$("$work/$exe" "$model" "$prompt" 40) || fail "$exe failed"
    [ "$got" = "$want" ] || fail "$exe printed
[$got]
but loom run printed
[$want]"
done
echo "PASS: installed libloom (.so and .a, loom.pc) builds examples/simple.c and simple.cpp; both print loom run's text"
