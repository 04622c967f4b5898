#!/bin/sh
# Per-type GPU run for the GGUF quantisation types (issue 17), on the GPU machine (the `run` tool),
# in phases so that it fits the tool's 10-minute calls. Expects the repo root as cwd and, carried:
#   .gl/                        the Vulkan loader + glvnd .debs (docs/vulkan-backend.md)
#   .gpu-cm/loom.tar.xz         made by gpu_types_pack.sh: loom [test_vulkan_ops test_vulkan_quant] lib/
#   .gpu-cm/peer-src.tar.xz     (phase prep) the peer's source, trimmed to what llama-bench and
#                               llama-quantize need (gpu_types_pack.sh says how)
#   .gpu-cm/peer-vk.tar.xz      (phase bench) ../shared/bench/peer-vulkan.sh's pack (or $PEERVK)
# Phases (any order on one warm machine; each says what it needs):
#   prep   start the CUDA peer build and write the models (detached: they outlive the call)
#   check  correctness on the GPU: op and quant tests, model checks on Vulkan, the quantised
#          fixtures on Vulkan, and transformers' check of the numpy-written family fixtures
#   bench  loom (Vulkan) beside the Vulkan peer with tensor cores and the CUDA peer, same files,
#          -p "${PP:-512}" -n "${TG:-128}" -r "${REPS:-4}", which engine goes first alternating file by file; the table drops
#          each test's first sample. ROUNDS=N (default 1), MODELS="f16 q4_0 ...", ENGINES="loom peervk peercuda",
#          DEADLINE=epoch seconds after which no test starts; engines pinned to BENCH_CPUS (default 0-3)
#          PP/TG/REPS override -p 512 -n 128 -r 4 (TAG=name marks such runs in the table)
#          check: FIXTURES / PEERQ (lists) narrow it, TRANSFORMERS=0 skips transformers' check
#          SEVEN_B=1 (prep and bench): the llama-7b shape too, as 7b-f16 / 7b-q4_0 / 7b-q4_k_m
# Models: llama-1.1b shape (hidden 2048, ffn 5632: every row is whole 256-blocks, so every K type
# is really written), f16 with the llama SPM vocabulary, and `loom quantize --pure` of each type
# (plus the mixed q4_k_m preset people download). Logs go to $OUT, at most 8 files (the tool's limit).
what=${*:-prep check bench}
has() { case " $what " in *" $1 "*) return 0;; esac; return 1; }
O=${OUT:-/tmp}
. "$(dirname "$0")/gpu_env.sh"
M=/tmp/m
TYPES="q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k_m q4_k_m q5_k_m q6_k iq4_nl iq4_xs"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv >"$O/gpu.txt" 2>&1

if has prep; then
    # the CUDA peer (llama-bench, llama-quantize), detached so that it outlives the call, on
    # BUILD_CPUS (default 2-15: cores 0-1 stay free for whatever runs beside it)
    if [ -f .gpu-cm/peer-src.tar.xz ] && [ ! -f /tmp/peer-cuda/started ]; then
        mkdir -p /tmp/peer-cuda && tar xJf .gpu-cm/peer-src.tar.xz -C /tmp/peer-cuda && touch /tmp/peer-cuda/started
        (cd /tmp/peer-cuda/llamacpp && setsid taskset -c "${BUILD_CPUS:-2-15}" sh -c '
            cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
              -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
              -DLLAMA_BUILD_EXAMPLES=OFF && cmake --build build -j"${BUILD_JOBS:-14}" --target llama-bench llama-quantize
            echo $? >../done' >/tmp/peer-cuda/build.log 2>&1 </dev/null &)
    fi
    # the models: f16, then `loom quantize --pure` of every type but the IQ4 ones (loom's IQ4 search
    # is single-threaded and took over 6 minutes for this shape: the bench phase makes those with the
    # peer's multi-threaded llama-quantize), and the mixed q4_k_m preset
    if [ ! -f $M/done ]; then
        mkdir -p $M
        setsid taskset -c "${BUILD_CPUS:-2-15}" sh -c "
          cd '$PWD'
          $L/loom synth --shape llama-1.1b --dtype f16 --vocab tests/fixtures/tokenizer/ggml-vocab-llama-spm.gguf -o $M/f16.gguf
          ( for t in $TYPES q4_k_m-mix; do echo \$t; done | grep -v iq4 |
              xargs -P 6 -I{} sh -c 'case {} in *-mix) $L/loom quantize $M/f16.gguf $M/{}.gguf --type q4_k_m;;
                                      *) $L/loom quantize $M/f16.gguf $M/{}.gguf --type {} --pure;; esac 2>&1 | tail -2' )
          ls -la $M; touch $M/done
          # SEVEN_B=1: the llama-7b shape too (hidden 4096, 32 layers, ffn 11008), f16 and q4_0 by loom;
          # its q4_k_m (the file most people download) by the peer's llama-quantize in the bench phase
          if [ '${SEVEN_B:-0}' = 1 ]; then
            $L/loom synth --shape llama-7b --dtype f16 --vocab tests/fixtures/tokenizer/ggml-vocab-llama-spm.gguf -o $M/7b-f16.gguf &&
            $L/loom quantize $M/7b-f16.gguf $M/7b-q4_0.gguf --type q4_0 --pure 2>&1 | tail -1; touch $M/done7
          fi" >/tmp/models.log 2>&1 </dev/null &
    fi
fi

if has check; then
    (
    set -x
    $L/loom devices
    time timeout 240 $L/test_vulkan_ops | grep -v "^ok" | tail -20
    time timeout 240 $L/test_vulkan_quant | grep -v "^ok" | tail -20
    for fx in ${FIXTURES:-qwen2-tiny llama-tiny qwen3-tiny stories260K-hf mistral-tiny gemma2-tiny gemma3-tiny phi3-tiny olmo2-tiny mixtral-tiny qwen3moe-tiny llama-wide}; do
        timeout 60 $L/loom check -m tests/fixtures/$fx --reference tests/fixtures/$fx/reference.safetensors \
            --device vulkan 2>&1 | tail -2
    done
    timeout 60 $L/loom check -m tests/fixtures/qwen2-tiny-bf16 --reference tests/fixtures/qwen2-tiny-bf16/reference.safetensors \
        --tol 2e-2 --device vulkan 2>&1 | tail -2
    # the peer-written quantised fixtures against the long references: top-1 and mean KL per type
    for f in ${PEERQ:-tests/fixtures/peer-quant/*.gguf}; do
        ref=tests/fixtures/llama-wide/long_reference.safetensors
        case $f in *stories260K*) ref=tests/fixtures/stories260K-hf/long_reference.safetensors;; esac
        echo "== $f"
        timeout 60 $L/loom check -m "$f" --reference $ref --min-top1 0 --max-kl 100 --device vulkan 2>&1 | tail -4 | head -2
    done
    ) >"$O/check.txt" 2>&1
    if [ "${TRANSFORMERS:-1}" = 1 ]; then
        ( cd tests/fixtures && CUDA_VISIBLE_DEVICES= PYTHONUNBUFFERED=1 timeout 300 python3 gen_families.py --check . ) \
            >"$O/transformers-check.txt" 2>&1
        echo "transformers check exit $?" >>"$O/transformers-check.txt"
    fi
fi

if has bench; then
    P=/tmp/peer-vk
    J=/tmp/bench-json  # the device tool returns at most 8 files: the JSON goes back as one tar
    mkdir -p $J
    # PEERVK: where the Vulkan peer's pack was carried (a call may carry it alone: the tool's limit)
    PV=${PEERVK:-.gpu-cm/peer-vk.tar.xz}
    if [ -f "$PV" ] && [ ! -x $P/llama-bench ]; then mkdir -p $P && tar xJf "$PV" -C $P; fi
    C=/tmp/peer-cuda/llamacpp/build/bin/llama-bench
    for _ in $(seq 1 60); do [ -f $M/done ] && break; sleep 5; done
    [ -f /tmp/peer-cuda/done ] || for _ in $(seq 1 24); do [ -f /tmp/peer-cuda/done ] && break; sleep 5; done
    Q=$P/llama-quantize; [ -x $Q ] || Q=/tmp/peer-cuda/llamacpp/build/bin/llama-quantize
    [ -x $P/llama-quantize ] && export LD_LIBRARY_PATH=$P/lib:$L/lib
    for t in iq4_nl iq4_xs; do
        [ -f $M/$t.gguf ] || [ ! -x $Q ] || taskset -c "${BUILD_CPUS:-2-15}" $Q --pure $M/f16.gguf $M/$t.gguf "$(echo $t | tr a-z A-Z)" "$(nproc)" \
            >>/tmp/models.log 2>&1
    done
    if [ "${SEVEN_B:-0}" = 1 ] && [ ! -f $M/7b-q4_k_m.gguf ] && [ -x $Q ]; then
        for _ in $(seq 1 60); do [ -f $M/done7 ] && break; sleep 5; done
        taskset -c "${BUILD_CPUS:-2-15}" $Q $M/7b-f16.gguf $M/7b-q4_k_m.gguf Q4_K_M "$(nproc)" >>/tmp/models.log 2>&1
    fi
    export LD_LIBRARY_PATH=$L/lib
    cat /tmp/models.log >"$O/models.txt" 2>&1
    tail -3 /tmp/peer-cuda/build.log >>"$O/bench.txt" 2>&1
    eng() { # eng ENGINE NAME ROUND: one side-by-side test of one engine on one file
        f=$M/$2.gguf; j="$J/bench.json.$2${TAG:+-$TAG}.$1.$3"
        # DEADLINE (epoch seconds): start nothing after it, so the table below is always written
        if [ -n "${DEADLINE:-}" ] && [ "$(date +%s)" -ge "$DEADLINE" ]; then return; fi
        echo "== $2 $1 round $3 $(date +%T)" >>"$O/bench.txt"
        case $1 in
        loom) timeout 120 taskset -c "${BENCH_CPUS:-0-3}" $L/loom bench -m "$f" --device vulkan -p "${PP:-512}" -n "${TG:-128}" -r "${REPS:-4}" --json >"$j" 2>>"$O/bench.txt" ;;
        peervk) [ -x $P/llama-bench ] && LD_LIBRARY_PATH=$P/lib timeout 120 taskset -c "${BENCH_CPUS:-0-3}" $P/llama-bench -m "$f" -ngl 99 -fa 1 \
                    -p "${PP:-512}" -n "${TG:-128}" -r "${REPS:-4}" -o json >"$j" 2>>"$O/bench.txt" ;;
        peercuda) [ -x $C ] && LD_LIBRARY_PATH= timeout 120 taskset -c "${BENCH_CPUS:-0-3}" $C -m "$f" -ngl 99 -fa 1 \
                    -p "${PP:-512}" -n "${TG:-128}" -r "${REPS:-4}" -o json >"$j" 2>>"$O/bench.txt" ;;
        esac
    }
    i=0
    for round in $(seq 1 "${ROUNDS:-1}"); do
        for m in ${MODELS:-f16 $TYPES q4_k_m-mix}; do
            [ -f "$M/$m.gguf" ] || { echo "== $m: no file" >>"$O/bench.txt"; continue; }
            i=$((i + 1))
            # alternate which engine goes first, file by file
            if [ $((i % 2)) = 1 ]; then order="loom peervk peercuda"; else order="peercuda peervk loom"; fi
            for e in $order; do case " ${ENGINES:-loom peervk peercuda} " in *" $e "*) eng $e $m $round;; esac; done
        done
    done
    # one compact table: mean t/s without each test's first sample
    tar -cf "$O/bench-json.tar" -C $J .
    python3 - "$J" >"$O/bench-table.txt" 2>&1 <<'EOF'
import glob, json, os, sys
o = sys.argv[1]; rows = {}
for p in sorted(glob.glob(os.path.join(o, "bench.json.*"))):
    _, _, m, eng, rnd = os.path.basename(p).split(".", 4)
    try:
        data = json.load(open(p))
    except Exception as e:
        print("unreadable", p, e); continue
    for r in data:
        s = r.get("samples_ts") or []
        s = s[1:] if len(s) > 1 else s
        test = "pp%d" % r["n_prompt"] if r.get("n_prompt") else "tg%d" % r["n_gen"]
        rows.setdefault((m, test), {}).setdefault(eng, []).append(sum(s) / len(s) if s else 0)
for (m, test), e in sorted(rows.items()):
    f = lambda k: "/".join("%.0f" % v for v in e.get(k, [])) or "-"
    lo = e.get("loom", [0]); pv = e.get("peervk", [0]); pc = e.get("peercuda", [0])
    r1 = "%.2f" % (max(lo) / max(pv)) if max(pv) else "-"
    r2 = "%.2f" % (max(lo) / max(pc)) if max(pc) else "-"
    print("%-12s %-6s loom %-14s peer-vk %-14s peer-cuda %-14s loom/vk %s loom/cuda %s" % (m, test, f("loom"), f("peervk"), f("peercuda"), r1, r2))
EOF
fi
ls -la $M >>"$O/gpu.txt" 2>&1
