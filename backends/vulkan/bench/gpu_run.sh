#!/bin/sh
# One batched run of the Vulkan backend on the GPU machine (the `run` tool): op tests, model
# checks, kernel micro-benchmark, and a profile + bench of a synthetic qwen2-0.5b. Expects the
# repo root as cwd, build-vk/ and .gl/ carried (see docs/vulkan-backend.md), $OUT for logs.
# Usage: sh backends/vulkan/bench/gpu_run.sh [all|bench|profile|quick]
what=${1:-all}
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export LD_LIBRARY_PATH=$PWD/build-vk/rt${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if ! ls /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* >/dev/null 2>&1; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
B=build-vk
log=${OUT:-/tmp}/log.txt
exec >"$log" 2>&1
set -x
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv
$B/loom devices
if [ "$what" = all ]; then
    time $B/tests/test_vulkan_ops | tail -25
    for fx in qwen2-tiny llama-tiny qwen2-tiny-bf16 stories260K-hf; do
        $B/loom check -m tests/fixtures/$fx --reference tests/fixtures/$fx/reference.safetensors --device vulkan | tail -3
    done
fi
if [ "$what" = quick ]; then
    time $B/tests/test_vulkan_ops | tail -14
    $B/loom check -m tests/fixtures/qwen2-tiny --reference tests/fixtures/qwen2-tiny/reference.safetensors --device vulkan | tail -2
    $B/loom synth --shape qwen2-0.5b --dtype f16 -o /tmp/q05-f16.gguf
    $B/loom bench -m /tmp/q05-f16.gguf --device vulkan -p 512 -n 128 -r 3
    $B/loom profile -m /tmp/q05-f16.gguf --device vulkan -p 512 -n 16 --top 2 --no-peak | grep -A12 "== decode"
fi
if [ "$what" = all ] || [ "$what" = bench ]; then
    $B/tests/bench_vulkan --reps 20
    echo "== f16 weights unpacked from uint instead of 16-bit storage"
    LOOM_VK_NO_F16S=1 $B/tests/bench_vulkan --reps 20 --quick
fi
if [ "$what" = all ] || [ "$what" = profile ]; then
    for dt in f16 bf16; do
        $B/loom synth --shape qwen2-0.5b --dtype $dt -o /tmp/q05-$dt.gguf
        $B/loom bench -m /tmp/q05-$dt.gguf --device vulkan -p 512 -n 128 -r 3
    done
    $B/loom profile -m /tmp/q05-f16.gguf --device vulkan -p 512 -n 32 --top 8 --no-peak
    echo "== without the recorder's fusions"
    LOOM_VK_NO_FUSE=1 $B/loom bench -m /tmp/q05-f16.gguf --device vulkan -p 512 -n 128 -r 3
fi
