#!/bin/sh
# Builds what backends/vulkan/bench/gpu_coopmat.sh runs, here (Debian 12), and packs it for the
# GPU machine: build-cm/ is configured with glslang 15 (tools/build-glslang.sh) so the coopmat
# shaders are in; .gpu-cm/ gets loom, test_vulkan_ops and the shared libraries they link that a
# bare machine lacks; .gl/ the Vulkan loader + glvnd .debs (copied from GL_DEBS, default
# /work/main/.gl). Then carry [".gpu-cm", ".gl"] and run `sh backends/vulkan/bench/gpu_coopmat.sh`.
set -eu
glslang=${LOOM_GLSLANG:-/work/glslang15/bin/glslangValidator}
[ -x "$glslang" ] || { echo "no $glslang: run tools/build-glslang.sh first" >&2; exit 1; }
cmake -S . -B build-cm -DCMAKE_BUILD_TYPE=Release -DLOOM_GLSLANG="$glslang" >/dev/null
grep -q "LOOM_GLSLANG_COOPMAT_OK:INTERNAL=ON" build-cm/CMakeCache.txt ||
    { echo "$glslang cannot compile GL_KHR_cooperative_matrix" >&2; exit 1; }
cmake --build build-cm -j"${JOBS:-2}" --target loom-cli test_vulkan_ops
rm -rf .gpu-cm
mkdir -p .gpu-cm/lib
cp build-cm/loom build-cm/tests/test_vulkan_ops .gpu-cm/
for so in libcjson libpcre2-8 libutf8proc libxxhash; do
    ldd build-cm/loom | awk -v s="$so" '$1 ~ "^"s"\\." {print $3}' | xargs -r -I{} cp -L {} .gpu-cm/lib/
done
if [ ! -d .gl ]; then mkdir -p .gl && cp "${GL_DEBS:-/work/main/.gl}"/*.deb .gl/; fi
ls -la .gpu-cm .gpu-cm/lib .gl
