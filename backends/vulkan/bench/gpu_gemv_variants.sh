#!/bin/sh
# The quantised decode GEMV's variants (LOOM_VK_GEMV_Q) side by side on the GPU machine (the `run`
# tool), in one call of under ~8 minutes. Variant names:
#   default   LOOM_VK_GEMV_Q unset: vk_record.c's qb_rows_default per type and size (matvec_qb.comp
#             with 4 rows for the 32-weight types and 7B-sized Q4_K / Q6_K, matvec.comp otherwise)
#   old       shaders/matvec.comp for every type
#   blk1 blk2 blk4   shaders/matvec_qb.comp with 1 / 2 / 4 rows per invocation (blk = blk2)
#   dp1 dp2 dp4      x quantised to 8 bits (quantx.comp), then shaders/matvec_dp.comp with integer dot
#                    products, 1 / 2 / 4 rows per invocation (dp = dp4)
#   dp1n dp2n dp4n   the same without integer dot products (LOOM_VK_NO_IDOT=1: shifts and multiplies)
# Expects the repo root as cwd and, carried:
#   .gl/                   the Vulkan loader + glvnd .debs (docs/vulkan-backend.md)
#   .gpu-cm/loom.tar.xz    made by gpu_types_pack.sh: loom, test_vulkan_ops, test_vulkan_quant, lib/
# and the models that gpu_types.sh's prep phase writes in /tmp/m (this script writes none):
#   <type>.gguf (llama-1.1b shape, `loom quantize --pure`; q4_k_m the mixed preset), f16.gguf, and with
#   SEVEN_B=1 7b-q4_0.gguf / 7b-q4_k_m.gguf (llama-7b shape); missing files are reported and skipped.
# 1. correctness, per variant other than default/old: `test_vulkan_quant gemv` (the decode GEMV's edge
#    shapes on all twelve types, random x within the 8-bit bound for dp*, the fused RMSNORM / SWIGLU /
#    residual decode, against the CPU's scalar kernels), and for the variants in FULL (default "dp4") the
#    whole test_vulkan_quant (every quant shader; its decode cases go through the variant). The device's
#    `integer dot product` line from `loom devices` first.
# 2. speed, per file and variant: loom bench -m FILE --device vulkan -p 0 -n 128 -r 5, the variants' order
#    alternating file by file; tg128 as the mean of the samples after the first (the first dropped),
#    one line per (file, variant), then each variant / the first variant per file.
# Knobs: VARIANTS (default "default dp4 dp2 dp1 dp4n"), TYPES (default the 7B files, then the 1.1B
#   types K types first, f16 last as the control: its GEMV is matvec.comp whatever the knob), BUDGET
#   (seconds after the start past which no bench starts, default 450), TESTS=0 skips step 1, FULL;
#   MODELS_DIR (default /tmp/m) and PACK_DIR (where the pack is unpacked, default /tmp/loom-pack).
# Output: stdout and $OUT/gemv-variants.txt (the summary), $OUT/gemv-tests.txt, $OUT/gemv-bench.tar
# (the bench JSON).
set -u
t0=$(date +%s)
O=${OUT:-/tmp}
mkdir -p "$O"
. "$(dirname "$0")/gpu_env.sh"
M=${MODELS_DIR:-/tmp/m}
VARIANTS=${VARIANTS:-default dp4 dp2 dp1 dp4n}
TYPES=${TYPES:-7b-q4_k_m 7b-q4_0 q4_k_m q4_k q6_k q5_k q3_k q2_k q4_0 q8_0 q4_1 q5_0 q5_1 iq4_nl iq4_xs f16}
FULL=${FULL-dp4}
S="$O/gemv-variants.txt"
: >"$S"
say() { echo "$*" | tee -a "$S"; }
# vrun VARIANT CMD...: CMD with the variant's environment
vrun() {
    v=$1
    shift
    case $v in
    default) env -u LOOM_VK_GEMV_Q -u LOOM_VK_NO_IDOT "$@" ;;
    *n) env LOOM_VK_GEMV_Q="${v%n}" LOOM_VK_NO_IDOT=1 "$@" ;;
    *) env -u LOOM_VK_NO_IDOT LOOM_VK_GEMV_Q="$v" "$@" ;;
    esac
}
say "gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | head -1)"
say "variants: $VARIANTS; types: $TYPES"
say "device: $($L/loom devices 2>&1 | grep -m1 'integer dot' | sed 's/^ *//')"

if [ "${TESTS:-1}" != 0 ]; then
    for v in $VARIANTS; do
        [ "$v" = default ] || [ "$v" = old ] && continue
        runs=gemv
        for f in $FULL; do [ "$f" = "$v" ] && runs="gemv full"; done
        for a in $runs; do
            [ "$a" = full ] && a=
            echo "== $v: test_vulkan_quant $a" >>"$O/gemv-tests.txt"
            s=$(date +%s)
            vrun "$v" timeout 150 $L/test_vulkan_quant $a >/tmp/gq.out 2>&1
            rc=$?
            grep -v "^ok" /tmp/gq.out | tail -40 >>"$O/gemv-tests.txt"
            say "test $v test_vulkan_quant $a: rc $rc, $(grep -E '^[0-9]+ checks' /tmp/gq.out | tail -1)," \
                "$(($(date +%s) - s)) s; $(grep 'largest error' /tmp/gq.out | head -1 | cut -c1-72)"
            grep '^8-bit x' /tmp/gq.out | head -1 | tee -a "$S"
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
        if [ "$(date +%s)" -ge $((t0 + ${BUDGET:-450})) ]; then say "$t $v: skipped (past BUDGET)"; continue; fi
        vrun "$v" timeout 90 $L/loom bench -m "$f" --device vulkan -p 0 -n 128 -r 5 --json \
            >"$J/$t.$v.json" 2>"$J/$t.$v.err"
        rc=$?
        line=$(python3 -c '
import json, sys, statistics as st
r = [x for x in json.load(open(sys.argv[1])) if x.get("n_gen")][0]
s = r["samples_ts"]
k = s[1:] if len(s) > 1 else s
print("tg128 %7.1f t/s +- %5.1f  samples %s" % (st.mean(k), st.pstdev(k), " ".join("%.0f" % x for x in s)))
' "$J/$t.$v.json" 2>/dev/null)
        say "$(printf '%-10s %-8s' "$t" "$v") ${line:-failed (rc $rc): $(tail -1 "$J/$t.$v.err")}"
    done
done
# each variant / the first one, per file, from the lines above
base=$(echo $VARIANTS | cut -d' ' -f1)
awk -v base="$base" -v vars="$VARIANTS" '$3 == "tg128" { ts[$1 " " $2] = $4; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
     END { nv = split(vars, vs, " ")
           for (k = 1; k <= n; k++) { t = order[k]; o = ts[t " " base]; s = sprintf("%-10s", t ":")
             for (j = 1; j <= nv; j++) { key = t " " vs[j]; if (vs[j] != base && (key in ts) && o > 0) s = s sprintf(" %s/%s %.2f", vs[j], base, ts[key] / o) }
             print s } }' "$S" >/tmp/gemv-ratios.txt
tee -a "$S" </tmp/gemv-ratios.txt
tar -cf "$O/gemv-bench.tar" -C $J .
say "total $(($(date +%s) - t0)) s"
