#!/bin/sh
# fuzz/pack.sh [PACK.tar.xz]: build every libFuzzer target (clang, ASan + UBSan, as fuzz/Makefile
# does) for another x86-64 Linux machine and pack them, with their seeds, dictionaries and the
# vocabularies fuzz_tokenize reads, into one xz tarball (default build-pack-fuzz/fuzz-pack.tar.xz).
# Unpack and run it there with fuzz/run-pack.sh (packed too): see fuzz/README.md, "Fuzzing on
# another machine".
#
# What makes the binaries portable: PCRE2, utf8proc and xxHash are linked statically, cJSON (Debian
# has no static library) is shipped in lib/ and found through an $ORIGIN rpath; the sanitizer and
# libFuzzer runtimes are static already (clang's default). Only glibc, libstdc++ and libgcc_s stay
# dynamic. Debug info is line tables only (-gline-tables-only): reports name function, file and
# line wherever an llvm-symbolizer is found; without one they give module+offset, which
# `llvm-symbolizer --obj=bin/fuzz_T 0xOFFSET` resolves here from the same binaries (kept in
# build-pack-fuzz/pack/bin).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/build-pack-fuzz
PACK=${1:-$B/fuzz-pack.tar.xz}
JOBS=${JOBS:-2}
TARGETS="gguf safetensors tokenizer_json tokenize model serve_req"

make -s -C "$ROOT/fuzz" check-clang || { echo "fuzz/pack.sh: clang with libFuzzer does not work here" >&2; exit 1; }
make -C "$ROOT/fuzz" -j"$JOBS" OUT="$B" DEBUG=-gline-tables-only PORTABLE=1 AVX512_OPT= build

P=$B/pack/loom-fuzz
rm -rf "$B/pack"
mkdir -p "$P/bin" "$P/lib" "$P/fuzz" "$P/tests/fixtures/tokenizer" "$P/regress"
for t in $TARGETS; do cp "$B/fuzz_$t" "$P/bin/"; done
# shared libraries the targets need that a bare machine may lack: everything but glibc's own,
# libstdc++ and libgcc_s (in every Debian/Ubuntu image), and the vDSO
for t in $TARGETS; do ldd "$B/fuzz_$t"; done | awk '$3 ~ /^\// {print $1, $3}' | sort -u |
while read -r name path; do
    case $name in
        linux-vdso*|libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
        *) cp -L "$path" "$P/lib/$name" ;;
    esac
done
cp -r "$ROOT/fuzz/corpus" "$ROOT/fuzz/dict" "$ROOT/fuzz/vocab" "$P/fuzz/"
cp "$ROOT/fuzz/run-pack.sh" "$P/"
cp "$ROOT/tests/fixtures/stories260K.gguf" "$P/tests/fixtures/"
cp "$ROOT/tests/fixtures/tokenizer/ggml-vocab-llama-spm.gguf" "$P/tests/fixtures/tokenizer/"
# every input that ever failed is a seed too
for d in "$ROOT"/tests/fixtures/fuzz-regress/*/; do
    t=$(basename "$d"); mkdir -p "$P/regress/$t"
    find "$d" -maxdepth 1 -type f ! -name 'README*' -exec cp {} "$P/regress/$t/" \;
done
git -C "$ROOT" rev-parse HEAD > "$P/COMMIT" 2>/dev/null || echo unknown > "$P/COMMIT"
git -C "$ROOT" status --porcelain --untracked-files=no | grep -q . && echo "(with uncommitted changes)" >> "$P/COMMIT" || true

# the binaries must need no library the pack lacks (other than the system's)
fail=0
for t in $TARGETS; do
    missing=$(LD_LIBRARY_PATH= ldd "$P/bin/fuzz_$t" | awk '$3 ~ /^\// {print $3}' | while read -r f; do f=$(readlink -f "$f")
        case $f in "$P"/lib/*|/lib*/libc.so*|/lib*/libm.so*|/lib*/libpthread.so*|/lib*/libdl.so*|/lib*/librt.so*|/lib*/libstdc++.so*|/lib*/libgcc_s.so*|/usr/lib*/libc.so*|/usr/lib*/libm.so*|/usr/lib*/libstdc++.so*|/usr/lib*/libgcc_s.so*|/usr/lib*/libpthread.so*|/usr/lib*/libdl.so*|/usr/lib*/librt.so*) ;; *) echo "$f" ;; esac; done)
    [ -z "$missing" ] || { echo "fuzz/pack.sh: fuzz_$t needs $missing, not in the pack" >&2; fail=1; }
done
[ $fail = 0 ] || exit 1
glibc=$(for t in $TARGETS; do objdump -T "$P/bin/fuzz_$t"; done | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
echo "$glibc" > "$P/NEEDS_GLIBC"

tar -C "$B/pack" -cf - loom-fuzz | xz -9e -T"$JOBS" > "$PACK.part"
mv "$PACK.part" "$PACK"
echo "fuzz/pack.sh: $PACK: $(stat -c %s "$PACK") bytes; the binaries need glibc >= ${glibc#GLIBC_}"
