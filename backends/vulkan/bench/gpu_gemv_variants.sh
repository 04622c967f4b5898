#!/bin/sh
# The quantised decode GEMV's variants (LOOM_VK_GEMV_Q: old = shaders/matvec.comp, blk / blk1 / blk2 /
# blk4 = shaders/matvec_qb.comp with 2 / 1 / 2 / 4 rows per invocation) side by side on the GPU
# machine (the `run` tool), in one call of under ~4 minutes. Expects the repo root as cwd and, carried:
#   .gl/                   the Vulkan loader + glvnd .debs (docs/vulkan-backend.md)
#   .gpu-cm/loom.tar.xz    made by gpu_types_pack.sh: loom, test_vulkan_ops, test_vulkan_quant, lib/
# and the llama-1.1b models that gpu_types.sh's prep phase writes (`loom quantize`) in /tmp/m:
#   f16.gguf and <type>.gguf for the types below.
# 1. correctness: per variant `test_vulkan_quant gemv` (the decode GEMV's edge shapes on every type,
#    and the fused RMSNORM / SWIGLU / residual decode, against the CPU's scalar kernels), and for
#    the variants other than old the whole test_vulkan_quant (every quant shader; its decode cases
#    go through the variant; old's is the suite's usual run: FULL=0 skips these)
# 2. speed, per file and variant: loom bench -m FILE --device vulkan -p 0 -n 128 -r 4, the variants'
#    order alternating file by file; one line per (type, variant), then blk*/old per type.
# Knobs: VARIANTS (default "old blk"), TYPES (default all twelve, K types first, then f16 as the
#   control: its GEMV is matvec.comp whatever the knob), BUDGET (seconds after the start past which
#   no bench starts, default 200), TESTS=0 skips step 1; MODELS_DIR (default /tmp/m) and PACK_DIR
#   (where the pack is unpacked, default /tmp/loom-pack) for trying it elsewhere.
# Output: stdout and $OUT/gemv-variants.txt (the summary), $OUT/gemv-tests.txt, $OUT/gemv-bench.tar
# (the bench JSON).
set -u
t0=$(date +%s)
O=${OUT:-/tmp}
mkdir -p "$O"
. "$(dirname "$0")/gpu_env.sh"
M=${MODELS_DIR:-/tmp/m}
VARIANTS=${VARIANTS:-old blk}
TYPES=${TYPES:-q4_k_m q5_k_m q6_k q3_k_m q4_0 q8_0 q2_k q4_1 q5_0 q5_1 iq4_nl iq4_xs f16}
S="$O/gemv-variants.txt"
: >"$S"
say() { echo "$*" | tee -a "$S"; }
say "gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | head -1)"
say "variants: $VARIANTS; types: $TYPES"

if [ "${TESTS:-1}" != 0 ]; then
    for v in $VARIANTS; do
        runs=gemv
        [ "$v" != old ] && [ "${FULL:-1}" != 0 ] && runs="gemv full"
        for a in $runs; do
            [ "$a" = full ] && a=
            echo "== LOOM_VK_GEMV_Q=$v test_vulkan_quant $a" >>"$O/gemv-tests.txt"
            s=$(date +%s)
            LOOM_VK_GEMV_Q=$v timeout 120 $L/test_vulkan_quant $a >/tmp/gq.out 2>&1
            rc=$?
            grep -v "^ok" /tmp/gq.out | tail -40 >>"$O/gemv-tests.txt"
            say "test $v test_vulkan_quant $a: rc $rc, $(grep -E '^[0-9]+ checks' /tmp/gq.out | tail -1)," \
                "$(($(date +%s) - s)) s; $(grep 'largest error' /tmp/gq.out | head -1 | cut -c1-72)"
        done
    done
fi

J=/tmp/gemv-json
rm -rf $J && mkdir -p $J
i=0
for t in $TYPES; do
    f=$M/$t.gguf
    [ -f "$f" ] || { say "$t: no $f"; continue; }
    i=$((i + 1))
    order=$VARIANTS
    [ $((i % 2)) = 0 ] && order=$(for v in $VARIANTS; do echo $v; done | tac | tr '\n' ' ')
    for v in $order; do
        if [ "$(date +%s)" -ge $((t0 + ${BUDGET:-200})) ]; then say "$t $v: skipped (past BUDGET)"; continue; fi
        LOOM_VK_GEMV_Q=$v timeout 60 $L/loom bench -m "$f" --device vulkan -p 0 -n 128 -r 4 --json \
            >"$J/$t.$v.json" 2>"$J/$t.$v.err"
        rc=$?
        line=$(python3 -c '
import json, sys
r = [x for x in json.load(open(sys.argv[1])) if x.get("n_gen")][0]
s = r["samples_ts"]
print("tg128 %7.1f t/s +- %5.1f  samples %s" % (r["avg_ts"], r["stddev_ts"], " ".join("%.0f" % x for x in s)))
' "$J/$t.$v.json" 2>/dev/null)
        say "$(printf '%-7s %-5s' "$t" "$v") ${line:-failed (rc $rc): $(tail -1 "$J/$t.$v.err")}"
    done
done
# blk*/old per type, from the lines above
awk '$3 == "tg128" { ts[$1 " " $2] = $4; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
     END { for (k = 1; k <= n; k++) { t = order[k]; o = ts[t " old"]; s = t ":"
             for (key in ts) { split(key, p, " "); if (p[1] == t && p[2] != "old" && o > 0) s = s sprintf(" %s/old %.2f", p[2], ts[key] / o) }
             print s } }' "$S" >/tmp/gemv-ratios.txt
tee -a "$S" </tmp/gemv-ratios.txt
tar -cf "$O/gemv-bench.tar" -C $J .
say "total $(($(date +%s) - t0)) s"
