#!/bin/sh
# LOOM_VK_CM2 (the VK_NV_cooperative_matrix2 prefill matmul, docs/vulkan-backend.md) on the GPU
# machine, in one device call (< 10 minutes with the defaults):
#   check  the matmul parts of the op tests against the CPU (test_vulkan_ops, test_vulkan_quant with
#          LOOM_TEST_FILTER=matmul) under LOOM_VK_CM2=V for each V in $CHECK: f16/bf16 and every
#          quantised type with a decode function, ragged M/N/K, split K, bias
#   profile  (only when asked) `loom profile -p 512 -n 0 --no-peak` of each file under each config:
#          per-op-kind time of one prefill (matmul vs the rest), into profile.txt
#   bench  `loom bench --device vulkan -p 512 -n 0 -r $REPS --json` (f16 files: -p 512,4096) on each
#          file of $FILES under each LOOM_VK_CM2 value of $CONFIGS (0 = the default path, the
#          baseline), the configs' order alternating file by file; the mean t/s drops each test's
#          first sample
# Expects the repo root as cwd and, carried:
#   .gl/                  the Vulkan loader + glvnd .debs (docs/vulkan-backend.md)
#   .gpu-cm/loom.tar.xz   `sh backends/vulkan/bench/gpu_types_pack.sh build-cm` from a build configured
#                         with glslang 15 (its configure output says "coopmat2 shaders on")
# Models: /tmp/m/NAME.gguf as gpu_types.sh's prep phase writes them (f16, q4_0, q8_0, q4_k_m,
# q4_k_m-mix, q6_k, q5_k_m, ...; 7b-f16, 7b-q4_0, 7b-q4_k_m with SEVEN_B=1); where /tmp/m/f16.gguf
# is missing this writes f16, q4_0 and q4_k_m-mix of the llama-1.1b shape itself (~1 minute).
# Environment (all optional):
#   CHECK    default "1" (LOOM_VK_CM2 values the check runs; e.g. "1 n256 m128x")
#   CONFIGS  default "0 1" (LOOM_VK_CM2 values the bench compares; m128 n256 k64 k16 w128 m128x n256x name the variants)
#   FILES    default "f16 q4_0 q8_0 q4_k_m-mix q6_k 7b-f16 7b-q4_0 7b-q4_k_m" (missing ones skipped)
#   REPS     default 4;  PP: the prompt sizes for non-f16 files (default 512), PPF16 for f16 (512,4096)
#   DEADLINE epoch seconds after which no bench starts (default: start + 540)
# $OUT gets summary.txt, check.txt, bench.txt (full outputs), bench-json.tar (and profile.txt).
what=${*:-check bench}
has() { case " $what " in *" $1 "*) return 0;; esac; return 1; }
O=${OUT:-/tmp}
START=$(date +%s)
DEADLINE=${DEADLINE:-$((START + 540))}
CHECK=${CHECK:-1}
CONFIGS=${CONFIGS:-0 1}
FILES=${FILES:-f16 q4_0 q8_0 q4_k_m-mix q6_k 7b-f16 7b-q4_0 7b-q4_k_m}
REPS=${REPS:-4}
. "$(dirname "$0")/gpu_env.sh"
. "$(dirname "$0")/gpu_cm_common.sh"
M=${MODELS_DIR:-/tmp/m}
mkdir -p $M
sum=$O/summary.txt
gpu_head

has check && knob_checks LOOM_VK_CM2 "$CHECK"

if has bench; then
    : >"$O/bench.txt"
    J=/tmp/cm2-json
    rm -rf $J && mkdir -p $J
    if [ ! -f $M/f16.gguf ]; then
        $L/loom synth --shape llama-1.1b --dtype f16 -o $M/f16.gguf >/dev/null &&
            $L/loom quantize $M/f16.gguf $M/q4_0.gguf --type q4_0 --pure >/dev/null &&
            $L/loom quantize $M/f16.gguf $M/q4_k_m-mix.gguf --type q4_k_m >/dev/null ||
            echo "writing the llama-1.1b files failed" | tee -a "$sum"
    fi
    i=0
    for m in $FILES; do
        f=$M/$m.gguf
        [ -f "$f" ] || { echo "bench $m: no $f, skipped" | tee -a "$sum"; continue; }
        case $m in *f16*) pp=${PPF16:-512,4096} ;; *) pp=${PP:-512} ;; esac
        i=$((i + 1))
        order=$CONFIGS
        [ $((i % 2)) = 0 ] && order=$(echo $CONFIGS | tr ' ' '\n' | tac | tr '\n' ' ')
        for c in $order; do
            if [ "$(date +%s)" -gt "$DEADLINE" ]; then
                echo "bench $m LOOM_VK_CM2=$c: past the deadline, skipped" | tee -a "$sum"
                continue
            fi
            LOOM_VK_CM2=$c LOOM_VK_VERBOSE=1 timeout 200 $L/loom bench -m "$f" --device vulkan -p $pp -n 0 -r "$REPS" \
                --json >"$J/bench.json.$m.$c" 2>/tmp/cm2-log.txt
            rc=$?
            { echo "== LOOM_VK_CM2=$c $m: rc $rc"; cat /tmp/cm2-log.txt "$J/bench.json.$m.$c"; } >>"$O/bench.txt"
            dev=$(grep -m1 -o "coopmat [^,]*\(, coopmat2 [a-z0-9]*\)\?" /tmp/cm2-log.txt)
            r=$(python3 - "$J/bench.json.$m.$c" <<'EOF'
import json, sys
try:
    data = json.load(open(sys.argv[1]))
except Exception as e:
    print("unreadable:", e); sys.exit(0)
out = []
for r in data:
    s = r.get("samples_ts") or []
    s = s[1:] if len(s) > 1 else s
    if r.get("n_prompt"):
        out.append("pp%d %.0f" % (r["n_prompt"], sum(s) / len(s) if s else 0))
print("  ".join(out))
EOF
)
            echo "bench $m LOOM_VK_CM2=$c: rc $rc  $r  [${dev:-?}]" | tee -a "$sum"
            grep -m1 "LOOM_VK_CM2.*\(not on\|taking\)" /tmp/cm2-log.txt | cut -c1-300 | tee -a "$sum"
        done
    done
    tar -cf "$O/bench-json.tar" -C $J .
fi

if has profile; then
    : >"$O/profile.txt"
    for m in $FILES; do
        f=$M/$m.gguf
        [ -f "$f" ] || continue
        for c in $CONFIGS; do
            [ "$(date +%s)" -gt "$DEADLINE" ] && continue
            { echo "== LOOM_VK_CM2=$c $m"; LOOM_VK_CM2=$c timeout 200 $L/loom profile -m "$f" --device vulkan -p 512 -n 0 --no-peak 2>&1; } >>"$O/profile.txt"
        done
    done
fi
echo "== summary ($(($(date +%s) - START)) s)"
cat "$sum"
