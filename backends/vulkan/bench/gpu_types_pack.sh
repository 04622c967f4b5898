#!/bin/sh
# Packs what backends/vulkan/bench/gpu_types.sh runs on the GPU machine, small enough to travel
# beside the working tree (the device tool's limit is 64 MiB in all, and the tree is ~50 MiB):
#   .gpu-cm/loom.tar.xz       loom, test_vulkan_ops, test_vulkan_quant from build-cm/ (configured with
#                             glslang 15 so the cooperative-matrix shaders are in; see
#                             docs/vulkan-backend.md), stripped, and every shared library they link
#                             apart from glibc's and the Vulkan loader (a bare machine lacks them)
#   .gpu-cm/loom-only.tar.xz  the same without the two test programs (for the bench call, which
#                             also carries the peer's ~11 MB pack)
#   .gpu-cm/peer-cuda.sh      $SHARED/bench/peer-cuda.sh (SHARED default ../shared, which does not travel)
# Usage: sh backends/vulkan/bench/gpu_types_pack.sh [BUILD_DIR]   (default build-cm)
set -eu
B=${1:-build-cm}
grep -q "LOOM_GLSLANG_COOPMAT_OK:INTERNAL=ON" "$B/CMakeCache.txt" ||
    { echo "$B was not configured with a glslang that compiles cooperative matrices" >&2; exit 1; }
t=$(mktemp -d)
mkdir -p "$t/lib" .gpu-cm
cp "$B/loom" "$B/tests/test_vulkan_ops" "$B/tests/test_vulkan_quant" "$t/"
strip "$t/loom" "$t/test_vulkan_ops" "$t/test_vulkan_quant"
for x in "$t/loom" "$t/test_vulkan_ops" "$t/test_vulkan_quant"; do ldd "$x"; done |
    awk '$3 ~ /^\// {print $1, $3}' | sort -u |
    grep -v -E '^(libc|libm|libpthread|libdl|librt|libvulkan|ld-linux)[.-]' |
    while read -r _ path; do cp -L "$path" "$t/lib/"; done
tar -cJf .gpu-cm/loom.tar.xz -C "$t" .
rm "$t/test_vulkan_ops" "$t/test_vulkan_quant"
tar -cJf .gpu-cm/loom-only.tar.xz -C "$t" .
rm -rf "$t"
S=${SHARED:-../shared}; if [ -f "$S/bench/peer-cuda.sh" ]; then cp "$S/bench/peer-cuda.sh" .gpu-cm/; fi
ls -la .gpu-cm
