#!/bin/sh
# Prefill attention on cooperative matrices (shaders/attn_cm.comp, LOOM_VK_FA; docs/vulkan-backend.md)
# on the GPU machine, in one device call of under 10 minutes:
#   check  test_vulkan_ops' attention parts (LOOM_TEST_FILTER=attention) under LOOM_VK_FA=cm, cms (O
#          rescaled through shared memory), cmp (K/V prefetched into registers; the default) and
#          cmp8 (cmp with 8 subgroups, head dims <= 64): each line "attn_cm.comp ran"
#          is a run the kernel took, held to tests/unit/attn_cm_bound.h's f16 bound; then `loom
#          check` over the long references (658-690 positions; head dims 16 and 32) under cmp,
#          cmp8 and fa (the f32 tiles), whose figures say what f16 attention costs at model level;
#          then `loom diff` (CPU vs Vulkan node by node) of a 128-token llama-1.1b prefill, cmp, cmp8
#   bench  `loom bench -p 512,4096 -n 0 -r $REPS` of the llama-1.1b f16 file under cmp, fa, cmp8, cm,
#          cms (cmp, fa and cmp8 twice, interleaved), and `loom profile -p 4096` under cmp, cmp8, fa
# Expects the repo root as cwd and, carried: .gl/ (the Vulkan loader .debs) and .gpu-cm/loom.tar.xz
# (`sh backends/vulkan/bench/gpu_types_pack.sh build-cm` from a glslang-15 build of this tree).
# The llama-1.1b f16 file: /tmp/m/f16.gguf when there (gpu_types.sh prep), else synthesised (~1 min).
# Environment (optional): REPS (3). $OUT: summary.txt (read it first), check.txt, bench.txt.
what=${*:-check bench}
has() { case " $what " in *" $1 "*) return 0;; esac; return 1; }
O=${OUT:-/tmp}
T0=$(date +%s)
. "$(dirname "$0")/gpu_env.sh"
M=${MDIR:-/tmp/m}
F=$M/f16.gguf
REPS=${REPS:-3}
sum=$O/summary.txt
: >"$sum"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee -a "$sum"
"$L/loom" devices | grep -E "^vulkan|cooperative" | tee -a "$sum"
for fa in cm cms cmp cmp8 fa; do
    LOOM_VK_FA=$fa LOOM_VK_VERBOSE=1 "$L/loom" run -m tests/fixtures/llama-tiny --tokens 1 -n 1 --device vulkan 2>&1 |
        grep -E "prefill attention|LOOM_VK_FA" | sed "s/^/LOOM_VK_FA=$fa: /" | cut -c1-400 | tee -a "$sum"
done

if has bench && [ ! -f $F ]; then # the model file, in the background while the checks run
    mkdir -p $M
    setsid taskset -c 2-15 sh -c "$L/loom synth --shape llama-1.1b --dtype f16 \
        --vocab tests/fixtures/tokenizer/ggml-vocab-llama-spm.gguf -o $F.tmp && mv $F.tmp $F" \
        >/tmp/attn-cm-model.log 2>&1 </dev/null &
fi

if has check; then
    : >"$O/check.txt"
    for fa in cm cms cmp cmp8; do
        log=/tmp/attn-cm-ops.txt
        LOOM_VK_FA=$fa LOOM_TEST_FILTER=attention timeout 240 taskset -c 0-1 "$L/test_vulkan_ops" >$log 2>&1
        rc=$?
        { echo "== test_vulkan_ops LOOM_VK_FA=$fa: rc $rc"; cat $log; } >>"$O/check.txt"
        echo "check test_vulkan_ops attention LOOM_VK_FA=$fa: rc $rc, $(grep -E '^[0-9]+ checks' $log | tail -1)," \
            "attn_cm.comp ran $(grep -c 'attn_cm.comp ran' $log) times," \
            "worst $(grep 'attn_cm.comp ran' $log | sed 's/.*largest error \([^ ]*\) of.*/\1/' | sort -g | tail -1) of its bound" |
            tee -a "$sum"
        grep -E "prefill attention on" $log | tee -a "$sum"
        grep -m8 "CHECK(" $log | cut -c1-300 | tee -a "$sum"
    done
    for fx in qwen2-tiny llama-tiny qwen3-tiny llama-wide; do
        for fa in cmp cmp8 fa; do
            log=/tmp/attn-cm-check.txt
            LOOM_VK_FA=$fa timeout 120 taskset -c 0-1 "$L/loom" check -m tests/fixtures/$fx \
                --reference tests/fixtures/$fx/long_reference.safetensors --tol 1 --device vulkan >$log 2>&1
            { echo "== loom check $fx long LOOM_VK_FA=$fa: rc $?"; cat $log; } >>"$O/check.txt"
            echo "check $fx long LOOM_VK_FA=$fa:" $(grep -E "max abs|top-1|mean KL" $log | sed 's/  */ /g') |
                cut -c1-300 | tee -a "$sum"
        done
    done
fi

if has bench || has diff; then # wait for the file being made (at most 3 min)
    n=0
    while [ ! -f $F ] && [ $n -lt 180 ]; do sleep 2; n=$((n + 2)); done
    [ -f /tmp/attn-cm-model.log ] && cat /tmp/attn-cm-model.log >>"$O/check.txt"
fi
if has check && [ -f $F ]; then
    for fa in cmp cmp8; do
        echo "diff llama-1.1b p128 LOOM_VK_FA=$fa:" | tee -a "$sum"
        LOOM_VK_FA=$fa timeout 120 "$L/loom" diff -m $F --device cpu --device vulkan -p 128 -n 1 2>&1 | tail -4 |
            tee -a "$sum"
    done
fi

if has bench && [ -f $F ]; then
    : >"$O/bench.txt"
    one() {
        echo "== LOOM_VK_FA=$1 $(date +%T)" >>"$O/bench.txt"
        LOOM_VK_FA=$1 timeout 150 taskset -c 0-1 "$L/loom" bench -m $F --device vulkan -p 512,4096 -n 0 -r "$REPS" \
            >>"$O/bench.txt" 2>&1
        echo "rc $?" >>"$O/bench.txt"
    }
    one cmp; one fa; one cmp8; one cm; one cms; one cmp8; one fa; one cmp
    grep -E "^== |pp(512|4096)|device" "$O/bench.txt" | cut -c1-200 | tee -a "$sum"
    for fa in cmp cmp8 fa; do
        echo "profile pp4096 LOOM_VK_FA=$fa:" | tee -a "$sum"
        LOOM_VK_FA=$fa timeout 120 taskset -c 0-1 "$L/loom" profile -m $F --device vulkan -p 4096 -n 1 --top 3 --no-peak \
            2>&1 | grep -E "^== prefill|^(matmul|attention) " | head -3 | tee -a "$sum"
    done
fi
echo "== summary ($(($(date +%s) - T0)) s)"
cat "$sum"
