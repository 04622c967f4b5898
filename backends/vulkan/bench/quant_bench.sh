#!/bin/sh
# quant_bench.sh [BUILD_DIR] [WORK_DIR]: quantised weights on the Vulkan GPU (issue 5), in one go:
# correctness first (the quantised-weight tests, which use the default Vulkan device), then
# `loom bench` pp512/tg128 of a synthetic qwen2-0.5b in f16 and each quantised type, a decode
# profile of f16 and q4_0, and the quantised GEMV/GEMM micro-benchmark.
# Note: qwen2-0.5b's 896-wide rows are not whole 256-blocks, so its q4_k_m is mostly Q4_0 (Q4_K /
# Q6_K only in ffn_down) and its q6_k mostly Q8_0; `loom quantize` prints the mix.
set -e
B=${1:-build}
W=${2:-/tmp/loom-qbench}
mkdir -p "$W"
ctest --test-dir "$B" -R 'test_vulkan_quant|_q_.*_vulkan|xcheck_q' --output-on-failure
[ -f "$W/q05-f16.gguf" ] || "$B/loom" synth --shape qwen2-0.5b --dtype f16 -o "$W/q05-f16.gguf"
for t in q8_0 q4_0 q4_k_m q6_k; do
    [ -f "$W/q05-$t.gguf" ] || "$B/loom" quantize "$W/q05-f16.gguf" "$W/q05-$t.gguf" --type $t
done
for m in f16 q8_0 q4_0 q4_k_m q6_k; do
    "$B/loom" bench -m "$W/q05-$m.gguf" --device vulkan -p 512 -n 128 -r 3
done
for m in f16 q4_0; do
    "$B/loom" profile -m "$W/q05-$m.gguf" --device vulkan -p 512 -n 32 --top 8
done
"$B/tests/bench_vulkan" --quant
