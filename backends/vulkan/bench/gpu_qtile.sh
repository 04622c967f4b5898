#!/bin/sh
# LOOM_VK_CM_QTILE=1 (quantised prefill matmul dequantised in the tile loads of the sg64 tensor-core
# variant; docs/vulkan-backend.md) on the GPU machine, in one device call of under 10 minutes:
#   check  the quantised matmul cases of test_vulkan_quant against the CPU (LOOM_TEST_FILTER=matmul),
#          first with LOOM_VK_CM_QTILE=1 alone (the default variant choice: sg64, so the in-tile
#          build, from 128 rows; below that matmul_cm.comp on the f16 copy), then with
#          LOOM_VK_CM_VARIANT=sg64 as well (every M > 8 case on the in-tile build: the 17/19/20/70-row
#          shapes, split-K, unaligned x), every block type; test_vulkan_ops' matmuls under the knob
#          as a control (f16/bf16 must not change)
#   bench  `loom bench -p $PP -n 0 -r $REPS --json` per file, without the knob and with it, which
#          goes first alternating file by file; the table drops each test's first sample
# Expects the repo root as cwd and, carried: .gl/ (the Vulkan loader .debs) and .gpu-cm/loom.tar.xz
# (`sh backends/vulkan/bench/gpu_types_pack.sh build-cm` from a glslang-15 build). Files: what
# gpu_types.sh prep wrote to /tmp/m on this machine (llama-1.1b shape: <type>.gguf, q4_k_m-mix.gguf;
# 7b-q4_0.gguf, 7b-q4_k_m.gguf with SEVEN_B=1) is used as it is; where /tmp/m/f16.gguf is missing
# the llama-1.1b f16 file is synthesised and the 1.1b files of MODELS quantised from it (--pure;
# q4_k_m-mix: the mixed preset), about a minute. 7B files: SEVEN_B=1 writes the missing ones in the
# background (`loom synth --shape llama-7b`, then 7b-q4_0 --pure and 7b-q4_k_m with loom's mixed
# preset, not the peer's file gpu_types.sh uses; detached, so they outlive the call: on a fresh
# machine `SEVEN_B=1 sh gpu_qtile.sh check` starts them and a later `gpu_qtile.sh bench` on the same
# warm machine finds them), benchmarked last if they are ready by then.
# Environment (optional): MODELS (default "q4_0 q8_0 q4_k_m q6_k q4_k_m-mix 7b-q4_0 7b-q4_k_m";
# q4_k_m is the pure Q4_K file, q3_k_m / q5_k_m pure Q3_K / Q5_K; add q5_0 q4_1 q5_1 q2_k q3_k_m
# q5_k_m iq4_nl iq4_xs for the rest), PP (512), REPS (5), DEADLINE (epoch seconds; default start +
# 540: no bench starts after it, so the table is always written). $OUT: summary.txt (read it first),
# check.txt, bench.txt, bench-json.tar.
what=${*:-check bench}
has() { case " $what " in *" $1 "*) return 0;; esac; return 1; }
O=${OUT:-/tmp}
T0=$(date +%s)
DEADLINE=${DEADLINE:-$((T0 + 540))}
. "$(dirname "$0")/gpu_env.sh"
. "$(dirname "$0")/gpu_cm_common.sh"
M=${MDIR:-/tmp/m}
MODELS=${MODELS:-q4_0 q8_0 q4_k_m q6_k q4_k_m-mix 7b-q4_0 7b-q4_k_m}
PP=${PP:-512}
REPS=${REPS:-5}
sum=$O/summary.txt
gpu_head "no usable cooperative matrix: the knob takes matmul_q.comp's QTILE build, not the tensor cores"

# the 1.1b files, in the background while the checks run (cores 2-15; the checks and benches use 0-1)
if has bench && [ ! -f $M/f16.gguf ]; then
    mkdir -p $M
    need=$(for m in $MODELS; do case $m in 7b-*) ;; *) echo $m;; esac; done)
    setsid taskset -c 2-15 sh -c "
      $L/loom synth --shape llama-1.1b --dtype f16 --vocab tests/fixtures/tokenizer/ggml-vocab-llama-spm.gguf -o $M/f16.gguf.tmp &&
      mv $M/f16.gguf.tmp $M/f16.gguf &&
      for t in $need; do echo \$t; done | xargs -P 6 -I{} sh -c 'case {} in
          *-mix) $L/loom quantize $M/f16.gguf $M/{}.gguf.tmp --type q4_k_m;;
          *) $L/loom quantize $M/f16.gguf $M/{}.gguf.tmp --type {} --pure;; esac >/dev/null 2>&1 && mv $M/{}.gguf.tmp $M/{}.gguf'
      touch $M/made" >/tmp/qtile-models.log 2>&1 </dev/null &
fi

if [ "${SEVEN_B:-0}" = 1 ] && { [ ! -f $M/7b-q4_0.gguf ] || [ ! -f $M/7b-q4_k_m.gguf ]; }; then
    mkdir -p $M
    setsid taskset -c 2-15 sh -c "
      [ -f $M/7b-f16.gguf ] || { $L/loom synth --shape llama-7b --dtype f16 --vocab tests/fixtures/tokenizer/ggml-vocab-llama-spm.gguf \
          -o $M/7b-f16.gguf.tmp && mv $M/7b-f16.gguf.tmp $M/7b-f16.gguf; }
      [ -f $M/7b-q4_0.gguf ] || $L/loom quantize $M/7b-f16.gguf $M/7b-q4_0.gguf.tmp --type q4_0 --pure >/dev/null 2>&1 &&
          mv $M/7b-q4_0.gguf.tmp $M/7b-q4_0.gguf
      [ -f $M/7b-q4_k_m.gguf ] || $L/loom quantize $M/7b-f16.gguf $M/7b-q4_k_m.gguf.tmp --type q4_k_m >/dev/null 2>&1 &&
          mv $M/7b-q4_k_m.gguf.tmp $M/7b-q4_k_m.gguf" >/tmp/qtile-7b.log 2>&1 </dev/null &
fi

if has check; then
    : >"$O/check.txt"
    CHECK_CPUS=0-1 # cores 2-15 may be writing the model files
    matmul_check qtile test_vulkan_quant LOOM_VK_CM_QTILE=1
    matmul_check qtile+sg64 test_vulkan_quant LOOM_VK_CM_QTILE=1 LOOM_VK_CM_VARIANT=sg64
    matmul_check qtile test_vulkan_ops LOOM_VK_CM_QTILE=1
fi

if has bench; then
    : >"$O/bench.txt"
    J=/tmp/qt-json
    rm -rf $J && mkdir -p $J
    if [ -f /tmp/qtile-models.log ] && [ ! -f $M/made ]; then # wait for the files being made (at most 3 min)
        n=0
        while [ ! -f $M/made ] && [ $n -lt 180 ]; do sleep 2; n=$((n + 2)); done
        cat /tmp/qtile-models.log >>"$O/bench.txt"
    fi
    one() { # one MODEL ARM: ARM base (knob unset) or qtile
        [ "$(date +%s)" -ge "$DEADLINE" ] && { echo "== $1 $2: past the deadline, not run" >>"$O/bench.txt"; return; }
        echo "== $1 $2 $(date +%T)" >>"$O/bench.txt"
        if [ $2 = qtile ]; then q=1; else q=; fi
        LOOM_VK_CM_QTILE=$q timeout 150 taskset -c 0-1 $L/loom bench -m $M/$1.gguf --device vulkan -p "$PP" -n 0 \
            -r "$REPS" --json >$J/$1.$2.json 2>>"$O/bench.txt"
        echo "rc $?" >>"$O/bench.txt"
    }
    i=0
    for m in $MODELS; do
        case $m in 7b-*) # SEVEN_B=1: wait for the file being written, up to a minute before the deadline
            while [ "${SEVEN_B:-0}" = 1 ] && [ ! -f $M/$m.gguf ] && [ "$(date +%s)" -lt $((DEADLINE - 60)) ]; do sleep 5; done ;;
        esac
        [ -f $M/$m.gguf ] || { echo "bench $m: no file $M/$m.gguf" | tee -a "$sum"; continue; }
        i=$((i + 1))
        if [ $((i % 2)) = 1 ]; then one $m base; one $m qtile; else one $m qtile; one $m base; fi
    done
    tar -cf "$O/bench-json.tar" -C $J .
    python3 - $J "$MODELS" <<'EOF' | tee -a "$sum"
import json, os, sys
d, models = sys.argv[1], sys.argv[2].split()
def mean(m, arm):
    try:
        rows = json.load(open(os.path.join(d, "%s.%s.json" % (m, arm))))
    except Exception:
        return None, ""
    for r in rows:
        if r.get("n_prompt"):
            s = r.get("samples_ts") or []
            s = s[1:] if len(s) > 1 else s
            dev = str(r.get("device", "")).rsplit("(", 1)[-1].rstrip(")")
            return (sum(s) / len(s) if s else None), dev
    return None, ""
print("bench (pp t/s, mean without the first sample): model  base  qtile  qtile/base")
for m in models:
    b, _ = mean(m, "base")
    q, dev = mean(m, "qtile")
    r = "%.2fx" % (q / b) if b and q else "-"
    f = lambda v: "%.0f" % v if v else "-"
    print("bench %-12s base %8s  qtile %8s  %-6s [qtile run: %s]" % (m, f(b), f(q), r, dev))
EOF
fi
echo "== summary ($(($(date +%s) - T0)) s)"
cat "$sum"
