#!/bin/sh
# One batched run on the GPU machine for the cooperative-matrix (tensor-core) prefill matmul:
# checks it (op tests, model checks) and measures it against the FMA kernel (LOOM_VK_NO_COOPMAT=1).
# Expects the repo root as cwd, $OUT for the log, and carried:
#   .gpu-cm/   loom, test_vulkan_ops, lib/ (the shared libraries they link), from a build
#              configured with glslang 15 (tools/gpu-coopmat-pack.sh makes it)
#   .gl/       the Vulkan loader + glvnd .deb files (docs/benchmarks.md)
# About 2-4 minutes: two 1-2 GB synthetic models are written and benchmarked twice each.
# Usage: sh backends/vulkan/bench/gpu_coopmat.sh [all|check|bench]
what=${1:-all}
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
B=.gpu-cm
export LD_LIBRARY_PATH=$PWD/$B/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if ! ls /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* >/dev/null 2>&1; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
log=${OUT:-/tmp}/log.txt
exec >"$log" 2>&1
set -x
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv
$B/loom devices
# the build must have the shaders, the device must offer the shape: else nothing below means much
$B/loom devices | grep "cooperative matrix: yes" || echo "WARNING: no usable cooperative matrix"
LOOM_VK_VERBOSE=1 $B/loom run -m tests/fixtures/qwen2-tiny-bf16 --tokens 1,2,3 -n 1 --ids --device vulkan 2>&1 | grep coopmat
if [ "$what" = all ] || [ "$what" = check ]; then
    # every op on three configurations; vulkan and 16 KiB-pieces use coopmat, the second does not
    time timeout 240 $B/test_vulkan_ops | grep -v "^ok" | tail -40
    for fx in qwen2-tiny llama-tiny qwen2-tiny-bf16 stories260K-hf; do
        tol=1e-3
        [ $fx = qwen2-tiny-bf16 ] && tol=2e-2
        timeout 60 $B/loom check -m tests/fixtures/$fx --reference tests/fixtures/$fx/reference.safetensors \
            --tol $tol --device vulkan | tail -6
    done
    # the bf16 fixture is the one whose 24-token prefill takes the coopmat path: without it too
    LOOM_VK_NO_COOPMAT=1 timeout 60 $B/loom check -m tests/fixtures/qwen2-tiny-bf16 \
        --reference tests/fixtures/qwen2-tiny-bf16/reference.safetensors --tol 2e-2 --device vulkan | tail -6
fi
if [ "$what" = all ] || [ "$what" = bench ]; then
    $B/loom synth --shape qwen2-0.5b --dtype f16 -o /tmp/q05-f16.gguf
    $B/loom synth --shape llama-1.1b --dtype f16 -o /tmp/l11-f16.gguf
    for m in q05-f16 l11-f16; do
        # numerics at real shapes (K up to 5632): node by node against the CPU, 64-token prefill
        timeout 60 $B/loom diff -m /tmp/$m.gguf --device cpu --device vulkan -p 64 -n 1 | tail -3
        LOOM_VK_NO_COOPMAT=1 timeout 60 $B/loom diff -m /tmp/$m.gguf --device cpu --device vulkan -p 64 -n 1 | tail -3
        echo "== $m coopmat"
        timeout 120 $B/loom bench -m /tmp/$m.gguf --device vulkan -p 512 -n 128 -r 3
        echo "== $m LOOM_VK_NO_COOPMAT=1"
        LOOM_VK_NO_COOPMAT=1 timeout 120 $B/loom bench -m /tmp/$m.gguf --device vulkan -p 512 -n 128 -r 3
    done
    echo "== q05-f16 coopmat, 128 x 128 tiles whenever M >= 128 (LOOM_VK_CM_BIG_TILES=1)"
    LOOM_VK_CM_BIG_TILES=1 timeout 120 $B/loom bench -m /tmp/q05-f16.gguf --device vulkan -p 512 -n 0 -r 3
    echo "== q05-f16 prefill profile (coopmat)"
    timeout 90 $B/loom profile -m /tmp/q05-f16.gguf --device vulkan -p 512 -n 4 --top 6 --no-peak | head -40
    rm -f /tmp/l11-f16.gguf
    $B/loom synth --shape qwen2-0.5b --dtype bf16 -o /tmp/q05-bf16.gguf
    echo "== q05-bf16 coopmat"
    timeout 120 $B/loom bench -m /tmp/q05-bf16.gguf --device vulkan -p 512 -n 128 -r 3
fi
