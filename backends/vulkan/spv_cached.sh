#!/bin/sh
# spv_cached.sh CACHE OUT SHADER_DIR GLSLANG ARGS...: run `GLSLANG -o OUT ARGS...` unless CACHE holds
# the SPIR-V of the very same compile, then copy that instead. The key is the SHA-256 of the
# arguments, of GLSLANG's path, size and modification time, and of every file in SHADER_DIR (the
# shader and every header it could include), so any change to one of them is a new compile: builds
# that share CACHE (`make asan` and `make test`: the Makefile's LOOM_SPV_CACHE) compile each shader
# once. Used by vulkan.cmake when LOOM_SPV_CACHE is set.
set -eu
cache=$1 out=$2 dir=$3 glslang=$4
shift 4
key=$({
    printf '%s\n' "$@"
    ls -lL --time-style=+%s "$glslang"
    cat "$dir"/*
} | sha256sum | cut -c1-64)
if [ -f "$cache/$key.spv" ]; then
    cp "$cache/$key.spv" "$out"
    exit 0
fi
"$glslang" -o "$out" "$@"
mkdir -p "$cache"
tmp="$cache/$key.spv.$$"
cp "$out" "$tmp" && mv -f "$tmp" "$cache/$key.spv"
