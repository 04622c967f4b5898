#!/bin/sh
# A/B of the tensor-core prefill matmul variants (LOOM_VK_CM_VARIANT, docs/vulkan-backend.md) on
# the GPU machine, in one device call: for each variant the matmul parts of the op tests against
# the CPU (test_vulkan_ops, test_vulkan_quant with LOOM_TEST_FILTER=matmul), then `loom bench
# --device vulkan -p $PP -n 0 -r 4` on each model; one summary line per variant and model at the end.
# Expects the repo root as cwd and, carried:
#   .gl/                  the Vulkan loader + glvnd .debs (docs/vulkan-backend.md)
#   .gpu-cm/loom.tar.xz   made by `sh backends/vulkan/bench/gpu_types_pack.sh build-cm` from a build
#                         configured with glslang 15 (the coopmat shaders must be in)
# Environment (all optional):
#   VARIANTS  default "base sg64 sg64db sg64h n256h m64h" (base = the default kernel)
#   MODELS    default "llama-1.1b llama-7b": `loom synth --shape S --dtype f16` writes each to /tmp/m
#             (kept there for a later call on the same warm machine); S:TYPE (e.g. llama-7b:q4_0)
#             also quantises it (`loom quantize --pure`), for the quantised prefill's f16 copy path;
#             an existing path (a GGUF file or model directory) is benchmarked as it is
#   PP        default "512,4096" (the prompt sizes loom bench runs)
# Phases (arguments): check bench (default both). About 4-6 minutes for the defaults on an H100/H200
# (the 7B f16 file is written once, ~13 GB; each variant loads it again). $OUT gets three files
# (the tool brings back at most 8): summary.txt, check.txt and bench.txt (the full outputs).
what=${*:-check bench}
has() { case " $what " in *" $1 "*) return 0;; esac; return 1; }
O=${OUT:-/tmp}
VARIANTS=${VARIANTS:-base sg64 sg64db sg64h n256h m64h}
MODELS=${MODELS:-llama-1.1b llama-7b}
PP=${PP:-512,4096}
. "$(dirname "$0")/gpu_env.sh"
. "$(dirname "$0")/gpu_cm_common.sh"
M=/tmp/m
mkdir -p $M
sum=$O/summary.txt
gpu_head "no usable cooperative matrix: every variant is the FMA kernel"

has check && knob_checks LOOM_VK_CM_VARIANT "$VARIANTS"

if has bench; then
    : >"$O/bench.txt"
    for spec in $MODELS; do
        if [ -e "$spec" ]; then
            f=$spec
        else
            shape=${spec%%:*}
            qt=$(echo "$spec" | grep -q : && echo "${spec#*:}")
            f=$M/$shape-f16.gguf
            [ -f "$f" ] || $L/loom synth --shape "$shape" --dtype f16 -o "$f" >/dev/null ||
                { echo "synth $shape failed" | tee -a "$sum"; rm -f "$f"; continue; }
            if [ -n "$qt" ]; then
                q=$M/$shape-$qt.gguf
                [ -f "$q" ] || $L/loom quantize "$f" "$q" --type "$qt" --pure >/dev/null ||
                    { echo "quantize $spec failed" | tee -a "$sum"; rm -f "$q"; continue; }
                f=$q
            fi
        fi
        for v in $VARIANTS; do
            LOOM_VK_CM_VARIANT=$v timeout 300 $L/loom bench -m "$f" --device vulkan -p "$PP" -n 0 -r 4 >/tmp/cmv-log.txt 2>&1
            rc=$?
            { echo "== LOOM_VK_CM_VARIANT=$v $spec: rc $rc"; cat /tmp/cmv-log.txt; } >>"$O/bench.txt"
            # "| model | size | backend | threads | test | t/s |" rows -> "pp512 1234.56 ± 1.2  pp4096 ..."
            r=$(grep -E '\| *pp[0-9]+ *\|' /tmp/cmv-log.txt | awk -F'|' '{gsub(/ /, "", $6); printf "%s %s  ", $6, $7}')
            dev=$(grep -m1 '^device:' /tmp/cmv-log.txt | grep -o 'coopmat[^)]*')
            echo "bench $spec $v: rc $rc  $r[${dev:-no coopmat}]" | tee -a "$sum"
        done
    done
fi
echo "== summary"
cat "$sum"
