#!/bin/sh
# One batched run on the GPU machine for the llama-7b-scale speed work (issue 18): checks the
# build (op tests, quant tests, model checks), writes the llama-7b shape in f16 and q4_0 and
# llama-1.1b f16, and benches them with the A/B knobs of docs/vulkan-backend.md.
# Expects the repo root as cwd, $OUT for the logs, and carried:
#   $B (default .gpu-speed/): loom, test_vulkan_ops, test_vulkan_quant, lib/ (shared libraries),
#              from a build configured with glslang 15 (cooperative-matrix shaders)
#   .gl/       the Vulkan loader + glvnd .deb files (docs/benchmarks.md)
# Usage: sh backends/vulkan/bench/gpu_speed.sh [check] [decode] [prefill] [long]   (default: all)
what=${*:-check decode prefill long}
has() { case " $what " in *" $1 "*) return 0;; esac; return 1; }
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
B=${B:-.gpu-speed}
export LD_LIBRARY_PATH=$PWD/$B/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if ! ls /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* >/dev/null 2>&1; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
O=${OUT:-/tmp}
exec >"$O/log.txt" 2>&1
set -x
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv
$B/loom devices | grep -i "cooperative matrix" || echo "WARNING: no usable cooperative matrix"
# the models are written on the CPU while the GPU runs the tests, with a tokenizer so that the
# peer (../shared/bench/peer-cuda.sh) can bench the same files
V=tests/fixtures/tokenizer/ggml-vocab-llama-spm.gguf
( time $B/loom synth --shape llama-7b --dtype f16 --vocab $V -o /tmp/l7-f16.gguf &&
  time $B/loom quantize /tmp/l7-f16.gguf /tmp/l7-q4_0.gguf --type q4_0 | tail -1 &&
  time $B/loom synth --shape llama-1.1b --dtype f16 --vocab $V -o /tmp/l11-f16.gguf ) >"$O/synth.txt" 2>&1 &
sp=$!
if has check; then
    time timeout 200 $B/test_vulkan_ops | grep -v "^ok" | tail -25
    time timeout 200 $B/test_vulkan_quant | grep -v "^ok" | tail -25
    for fx in qwen2-tiny llama-tiny qwen2-tiny-bf16; do
        tol=1e-3; [ $fx = qwen2-tiny-bf16 ] && tol=2e-2
        timeout 60 $B/loom check -m tests/fixtures/$fx --reference tests/fixtures/$fx/reference.safetensors \
            --tol $tol --device vulkan | tail -3
    done
fi
wait $sp
cat "$O/synth.txt"
b() { # b NAME MODEL ARGS... [VAR=VALUE ...]: one loom bench, env knobs last
    n=$1; m=$2; shift 2; a=""; e=""
    for x in "$@"; do case $x in LOOM_*=*) e="$e $x";; *) a="$a $x";; esac; done
    echo "== $n $m$e:$a"
    env $e timeout 150 $B/loom bench -m /tmp/$m.gguf --device vulkan $a 2>&1 | grep -E "t/s|pp|tg|rror"
}
if has decode; then
    # numerics of the 7B shapes against the CPU, node by node (f16 and q4_0 GEMVs at K = 11008)
    timeout 120 $B/loom diff -m /tmp/l7-q4_0.gguf --device cpu --device vulkan -p 1 -n 1 | tail -3
    b tg l7-q4_0 -p 0 -n 128 -r 3
    b tg l7-q4_0 -p 0 -n 128 -r 3 LOOM_VK_GEMV_LOADS=4
    b tg l7-q4_0 -p 0 -n 128 -r 3 LOOM_VK_GEMV_WGS=2048
    b tg l7-q4_0 -p 0 -n 128 -r 3 LOOM_VK_FUSE_MAX_NK=0
    b tg l7-f16 -p 0 -n 128 -r 3
    b tg l7-f16 -p 0 -n 128 -r 3 LOOM_VK_FUSE_MAX_NK=0 LOOM_VK_GEMV_WGS=2048
    b tg l11-f16 -p 0 -n 128 -r 3
    timeout 90 $B/loom profile -m /tmp/l7-q4_0.gguf --device vulkan -p 16 -n 16 --top 4 --no-peak | tail -16
fi
if has prefill; then
    b pp l7-f16 -p 512 -n 0 -r 3
    b pp l7-f16 -p 512 -n 0 -r 3 LOOM_VK_CM_BIG_TILES=1
    b pp l7-q4_0 -p 512 -n 0 -r 3
    b pp l11-f16 -p 512 -n 0 -r 3
    timeout 90 $B/loom profile -m /tmp/l7-f16.gguf --device vulkan -p 512 -n 1 --top 4 --no-peak | head -16
fi
if has long; then
    b pp l11-f16 -p 4096 -n 0 -r 2
    b pp l11-f16 -p 4096 -n 0 -r 2 LOOM_VK_NO_FA=1
    b pp l7-f16 -p 512 -n 0 -r 3 LOOM_VK_NO_FA=1
    timeout 90 $B/loom profile -m /tmp/l11-f16.gguf --device vulkan -p 4096 -n 1 --top 6 --no-peak | head -24
fi
