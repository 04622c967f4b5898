#!/bin/sh
# Packs what backends/vulkan/bench/gpu_types.sh runs on the GPU machine, small enough to travel
# beside the working tree (the device tool's limit is 64 MiB in all, and the tree is ~50 MiB):
#   .gpu-cm/loom.tar.xz       loom, test_vulkan_ops, test_vulkan_quant from build-cm/ (configured with
#                             glslang 15 so the cooperative-matrix shaders are in; see
#                             docs/vulkan-backend.md), stripped, and every shared library they link
#                             apart from glibc's and the Vulkan loader (a bare machine lacks them)
#   .gpu-cm/loom-only.tar.xz  the same without the two test programs (for the bench call, which
#                             also carries the peer's ~11 MB pack)
#   .gpu-cm/peer-src.tar.xz   with PEER_GIT=<the git dir `fetch github:ngxson/llama.cpp` printed>: the
#                             peer's source trimmed to what its CUDA llama-bench and llama-quantize
#                             need (~2 MB instead of ~7; its tools/CMakeLists.txt and vendor list are
#                             cut down to match), built there by gpu_types.sh's prep phase
# Usage: [PEER_GIT=DIR] sh backends/vulkan/bench/gpu_types_pack.sh [BUILD_DIR]   (default build-cm)
set -eu
B=${1:-build-cm}
grep -q "LOOM_GLSLANG_COOPMAT_OK:INTERNAL=ON" "$B/CMakeCache.txt" ||
    { echo "$B was not configured with a glslang that compiles cooperative matrices" >&2; exit 1; }
grep -q "LOOM_GLSLANG_CM2_OK:INTERNAL=ON" "$B/CMakeCache.txt" ||
    echo "note: $B has no coopmat2 shaders (matmul_cm2.comp): LOOM_VK_CM2 will say so and fall back" >&2
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
if [ -n "${PEER_GIT:-}" ]; then
    p=$(mktemp -d)
    git -C "$PEER_GIT" archive --prefix=llamacpp/ HEAD -- . ':(exclude)models' ':(exclude)docs' \
        ':(exclude)examples' ':(exclude)gguf-py' ':(exclude)tests' ':(exclude).github' ':(exclude)media' \
        ':(exclude)benches' ':(exclude)conversion' ':(exclude)tools' ':(exclude)vendor/miniaudio' \
        ':(exclude)vendor/stb' ':(exclude)ggml/src/ggml-vulkan' ':(exclude)ggml/src/ggml-sycl' \
        ':(exclude)ggml/src/ggml-metal' ':(exclude)ggml/src/ggml-cann' ':(exclude)ggml/src/ggml-opencl' \
        ':(exclude)ggml/src/ggml-hexagon' ':(exclude)ggml/src/ggml-webgpu' ':(exclude)ggml/src/ggml-openvino' \
        ':(exclude)ggml/src/ggml-et' ':(exclude)ggml/src/ggml-zdnn' ':(exclude)ggml/src/ggml-musa' | tar -x -C "$p"
    git -C "$PEER_GIT" archive --prefix=llamacpp/ HEAD -- tools/llama-bench tools/quantize | tar -x -C "$p"
    printf '%s\n' "# cut down for loom's GPU-machine comparison: llama-bench and llama-quantize only" \
        'find_package(Threads REQUIRED)' 'llama_add_compile_flags()' \
        'add_subdirectory(llama-bench)' 'add_subdirectory(quantize)' >"$p/llamacpp/tools/CMakeLists.txt"
    sed -i '/add_subdirectory(miniaudio)/d; /add_subdirectory(stb)/d' "$p/llamacpp/vendor/CMakeLists.txt"
    tar -cJf .gpu-cm/peer-src.tar.xz -C "$p" llamacpp
    rm -rf "$p"
fi
ls -la .gpu-cm
