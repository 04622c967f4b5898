#!/bin/sh
# One-call sweep of the tensor-core prefill variants (LOOM_VK_CM_VARIANT, docs/vulkan-backend.md) on
# files already on the GPU machine, sized for ~5 minutes of device time:
#   1. check: for each variant, the matmul parts of test_vulkan_ops and test_vulkan_quant against the
#      CPU (LOOM_TEST_FILTER=matmul; the variant serves every tensor-core matmul of M > 8 under the
#      knob, its in-tile builds the quantised ones), CHECK_JOBS at a time on disjoint CPUs (the GPU
#      is shared: no timing is taken here)
#   2. bench: `loom bench -m FILE --device vulkan -p $PP -n 0 -r $REPS` for each file and variant,
#      one at a time, the variant order reversed on every other file; one line per variant x file:
#        bench 7b-f16 w8k64: rc 0  pp512 8123.45 ± 12.3  [coopmat w8k64, qtile, gemv dp8]
#      and at the end a table (variants down, files across, t/s).
# A variant is NAME or NAME+ksN: the latter with LOOM_VK_CM_KSPLIT=N (N = 1..8: every tiled matmul
# split N ways along K instead of vk_record.c's choice), e.g. "sg64 sg64+ks1 w8k64+ks1".
# Expects the repo root as cwd and, carried: .gl/ (the Vulkan loader .debs) and .gpu-cm/loom.tar.xz
# (`sh backends/vulkan/bench/gpu_types_pack.sh build-cm` from a glslang-15 build: loom,
# test_vulkan_ops, test_vulkan_quant). Phase prep (not in the default) writes the default files that
# are missing, in the background on PREP_CPUS (default 8-15; the checks then keep to cores 0-7),
# while the checks run; bench waits for each (to DEADLINE): `loom synth` llama-1.1b and llama-7b f16
# with the llama SPM vocabulary, then `loom quantize` 7b q4_0 (--pure) and q4_k_m (loom's mixed
# preset) side by side, as gpu_types.sh prep / gpu_qtile.sh SEVEN_B=1 name them (several minutes
# in all: the 7B f16 file is ~13 GB).
# Environment (all optional):
#   VARIANTS    default "sg64 w8k64h w8k64 m256 sg64+ks4 w8k64h+ks4" (sg64 is the default kernel:
#               the baseline; the H100's llama-1.1b f16 pp512 of 2026-12-06, lead's notes: w8k64h
#               +14%, w8k64 +9%, m256 +1%, k64h -5%, w8 / w8db -11%, sg64+ks1 -24%)
#   FILES       default: those of $MDIR/f16.gguf (llama-1.1b) 7b-f16.gguf 7b-q4_0.gguf 7b-q4_k_m.gguf
#               that exist (MDIR default /tmp/m; gpu_types.sh prep's names, whose q4_0.gguf and
#               q4_k_m-mix.gguf are llama-1.1b's); labelled by file name less .gguf
#   PP (512), REPS (3), CHECK_JOBS (4), BENCH_CPUS (0-3: loom bench's cores), DEADLINE (epoch
#   seconds, default start + 330, + 240 with prep: no bench starts after it, so the table is
#   always written)
# Phases (arguments): prep check bench (default check bench). $OUT: summary.txt (read it first), check.txt
# (every check's output), bench.txt (every bench's output).
what=${*:-check bench}
has() { case " $what " in *" $1 "*) return 0;; esac; return 1; }
O=${OUT:-/tmp}
T0=$(date +%s)
DEADLINE=${DEADLINE:-$((T0 + 330 + $(has prep && echo 240 || echo 0)))}
. "$(dirname "$0")/gpu_env.sh"
. "$(dirname "$0")/gpu_cm_common.sh"
VARIANTS=${VARIANTS:-sg64 w8k64h w8k64 m256 sg64+ks4 w8k64h+ks4}
PP=${PP:-512}
REPS=${REPS:-3}
CHECK_JOBS=${CHECK_JOBS:-4}
M=${MDIR:-/tmp/m}
DEFAULT_FILES="$M/f16.gguf $M/7b-f16.gguf $M/7b-q4_0.gguf $M/7b-q4_k_m.gguf"
if [ -z "${FILES:-}" ]; then
    FILES=
    for f in $DEFAULT_FILES; do
        if [ -f "$f" ] || has prep; then FILES="$FILES $f"; fi
    done
fi
CHECK_CPUS=
if has prep; then
    V=tests/fixtures/tokenizer/ggml-vocab-llama-spm.gguf
    mkdir -p $M
    CHECK_CPUS=${CHECK_CPUS_PREP:-0-7}
    setsid taskset -c "${PREP_CPUS:-8-15}" sh -c "
      mk() { [ -f \$1 ] || { \$2 -o \$1.tmp >/dev/null && mv \$1.tmp \$1; }; }
      mk $M/f16.gguf '$L/loom synth --shape llama-1.1b --dtype f16 --vocab $V'
      mk $M/7b-f16.gguf '$L/loom synth --shape llama-7b --dtype f16 --vocab $V'
      [ -f $M/7b-q4_0.gguf ] || { $L/loom quantize $M/7b-f16.gguf $M/7b-q4_0.gguf.tmp --type q4_0 --pure >/dev/null &&
          mv $M/7b-q4_0.gguf.tmp $M/7b-q4_0.gguf; } &
      [ -f $M/7b-q4_k_m.gguf ] || { $L/loom quantize $M/7b-f16.gguf $M/7b-q4_k_m.gguf.tmp --type q4_k_m >/dev/null &&
          mv $M/7b-q4_k_m.gguf.tmp $M/7b-q4_k_m.gguf; } &
      wait" >/tmp/cm-sweep-prep.log 2>&1 </dev/null &
fi
sum=$O/summary.txt
gpu_head "no usable cooperative matrix: every variant is the FMA kernel"
echo "files:$FILES" | tee -a "$sum"
W=/tmp/cm-sweep
rm -rf $W && mkdir -p $W

# the environment of variant spec $1 (NAME or NAME+ksN)
venv() {
    case $1 in
    *+ks*) echo "LOOM_VK_CM_VARIANT=${1%%+*} LOOM_VK_CM_KSPLIT=${1##*+ks}" ;;
    *) echo "LOOM_VK_CM_VARIANT=$1" ;;
    esac
}

if has check; then
    ncpu=$(nproc)
    c0=0
    if [ -n "$CHECK_CPUS" ]; then # a range a-b
        c0=${CHECK_CPUS%-*}
        ncpu=$((${CHECK_CPUS#*-} - c0 + 1))
    fi
    per=$((ncpu / CHECK_JOBS))
    [ $per -ge 1 ] || per=1
    slot=0
    for v in $VARIANTS; do
        for t in test_vulkan_ops test_vulkan_quant; do
            lo=$((c0 + slot * per % ncpu))
            hi=$((lo + per - 1))
            # shellcheck disable=SC2046
            (env $(venv "$v") LOOM_TEST_FILTER=matmul timeout 240 taskset -c $lo-$hi "$L/$t" >$W/check-$v-$t.log 2>&1
             echo $? >$W/check-$v-$t.rc) &
            slot=$((slot + 1))
            if [ $((slot % CHECK_JOBS)) -eq 0 ]; then wait; fi
        done
    done
    wait
    : >"$O/check.txt"
    for v in $VARIANTS; do
        for t in test_vulkan_ops test_vulkan_quant; do
            log=$W/check-$v-$t.log
            { echo "== $(venv "$v") $t: rc $(cat $W/check-$v-$t.rc)"; cat $log; } >>"$O/check.txt"
            echo "check $v $t: rc $(cat $W/check-$v-$t.rc), $(grep -E '^[0-9]+ checks' $log | tail -1)," \
                "coopmat on $(grep -c 'cooperative-matrix matmul on' $log) of 3 configs," \
                "$(grep -m1 '^test_matmul' $log | awk '{print $2, $3}')" | tee -a "$sum"
            grep "vulkan: LOOM_VK_" $log | sort -u | head -3 | cut -c1-300 | tee -a "$sum"
            grep -m4 "CHECK(" $log | cut -c1-300 | tee -a "$sum"
        done
    done
    echo "checks took $(($(date +%s) - T0)) s" | tee -a "$sum"
fi

if has bench; then
    : >"$O/bench.txt"
    rev=
    for v in $VARIANTS; do rev="$v $rev"; done
    i=0
    for f in $FILES; do
        b=$(basename "$f" .gguf)
        # a file prep is still writing: wait for it, up to the deadline
        while has prep && [ ! -f "$f" ] && [ "$(date +%s)" -lt "$DEADLINE" ]; do sleep 3; done
        if [ ! -f "$f" ]; then
            echo "bench $b: no file $f" | tee -a "$sum"
            continue
        fi
        order=$VARIANTS
        [ $((i % 2)) -eq 1 ] && order=$rev
        i=$((i + 1))
        for v in $order; do
            if [ "$(date +%s)" -ge "$DEADLINE" ]; then
                echo "bench $b $v: skipped (past DEADLINE)" | tee -a "$sum"
                continue
            fi
            # shellcheck disable=SC2046
            env $(venv "$v") timeout 150 taskset -c "${BENCH_CPUS:-0-3}" "$L/loom" bench -m "$f" --device vulkan -p "$PP" -n 0 -r "$REPS" >$W/b.log 2>&1
            rc=$?
            { echo "== $(venv "$v") $b: rc $rc"; cat $W/b.log; } >>"$O/bench.txt"
            # "| model | size | backend | threads | test | t/s |" rows -> "pp512 1234.56 ± 1.2"
            r=$(grep -E '\| *pp[0-9]+ *\|' $W/b.log | awk -F'|' '{gsub(/ /, "", $6); printf "%s %s  ", $6, $7}')
            dev=$(grep -m1 '^device:' $W/b.log | grep -o 'coopmat[^)]*')
            echo "bench $b $v: rc $rc  $r[${dev:-no coopmat}]" | tee -a "$sum"
            echo "$v $b $(echo "$r" | awk '{print $2}')" >>$W/table
        done
    done
    echo "== pp$PP t/s (variants down, files across)" | tee -a "$sum"
    {
        printf '%-12s' variant
        for f in $FILES; do printf ' %14s' "$(basename "$f" .gguf)"; done
        echo
        for v in $VARIANTS; do
            printf '%-12s' "$v"
            for f in $FILES; do
                x=$(awk -v v="$v" -v b="$(basename "$f" .gguf)" '$1 == v && $2 == b {print $3}' $W/table 2>/dev/null)
                printf ' %14s' "${x:--}"
            done
            echo
        done
    } | tee -a "$sum"
fi
has prep && { echo "== prep log"; cat /tmp/cm-sweep-prep.log; } >>"$O/bench.txt"
echo "total $(($(date +%s) - T0)) s" | tee -a "$sum"
echo "== summary"
cat "$sum"
