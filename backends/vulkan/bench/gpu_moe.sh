#!/bin/sh
# The MoE run on the GPU machine (LOOM_VK_MOE, docs/vulkan-backend.md "MoE"): the MOE op tests and
# the MoE fixtures' model checks under each path, then `loom bench` of a Qwen3-MoE-like model per path.
# Expects the repo root as cwd and, carried: .gl/ (the Vulkan loader .debs) and .gpu-cm/loom.tar.xz
# (`sh backends/vulkan/bench/gpu_types_pack.sh build-cm`: loom, test_vulkan_ops, test_vulkan_quant).
# Phases (arguments; default: prep check bench):
#   prep   $M/moe.json (Qwen3-30B-A3B's layout scaled to fit: 16 layers, hidden 2048, 32 query / 4 kv
#          heads of 128, 64 experts, top 8 renormalised, expert FFN 768, vocabulary 151936), then
#          `loom synth` f16 (~11.5 GB) and `loom quantize --type q4_k_m`, each only where missing
#   check  for PATHS: test_vulkan_ops moe, test_vulkan_quant moe (op tests against the CPU) and
#          `loom check --device vulkan` of qwen3moe-tiny and mixtral-tiny; one line each
#   bench  `loom bench -m FILE --device vulkan -p $PP -n $TG -r $REPS` per file and path, the path
#          order reversed on every other file
# Environment: M (/tmp/m), PATHS ("auto naive gemv mm"; auto = the default: gemv for <= 16 routed
# slots, i.e. decode, else mm), FILES ($M/moe-q4_k_m.gguf $M/moe-f16.gguf), PP (512), TG (128), REPS (3).
# $OUT: summary.txt (the lines to read), log.txt (everything).
what=${*:-prep check bench}
has() { case " $what " in *" $1 "*) return 0;; esac; return 1; }
O=${OUT:-/tmp}
. "$(dirname "$0")/gpu_env.sh"
M=${M:-/tmp/m}
PATHS=${PATHS:-auto naive gemv mm}
FILES=${FILES:-$M/moe-q4_k_m.gguf $M/moe-f16.gguf}
PP=${PP:-512} TG=${TG:-128} REPS=${REPS:-3}
sum=$O/summary.txt log=$O/log.txt
: >"$sum"
say() { echo "$*" | tee -a "$sum"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >>"$sum" 2>&1
if has prep; then
    mkdir -p "$M"
    cat >"$M/moe.json" <<'JSON'
{"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 2048,
 "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
 "intermediate_size": 6144, "moe_intermediate_size": 768, "num_experts": 64, "num_experts_per_tok": 8,
 "norm_topk_prob": true, "decoder_sparse_step": 1, "mlp_only_layers": [], "vocab_size": 151936,
 "max_position_embeddings": 4096, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
 "tie_word_embeddings": false, "hidden_act": "silu", "attention_bias": false}
JSON
    t0=$(date +%s)
    [ -f "$M/moe-f16.gguf" ] || $L/loom synth --shape "$M/moe.json" --dtype f16 -o "$M/moe-f16.gguf" >>"$log" 2>&1
    [ -f "$M/moe-q4_k_m.gguf" ] || $L/loom quantize "$M/moe-f16.gguf" "$M/moe-q4_k_m.gguf" --type q4_k_m >>"$log" 2>&1
    say "prep: $(ls -s --block-size=M "$M"/moe-*.gguf 2>&1 | tr '\n' ' ') in $(($(date +%s) - t0)) s"
fi
if has check; then
    for p in $PATHS; do
        for t in "test_vulkan_ops moe" "test_vulkan_quant moe"; do
            r=$(LOOM_VK_MOE=$p $L/$t 2>&1 | tee -a "$log" | grep -E 'checks,' | tail -1)
            say "check $p $t: $r"
        done
        for fx in qwen3moe-tiny mixtral-tiny; do
            r=$(LOOM_VK_MOE=$p $L/loom check -m tests/fixtures/$fx --reference tests/fixtures/$fx/reference.safetensors \
                --device vulkan 2>&1 | tee -a "$log" | grep -E 'PASS|FAIL' | tail -1)
            say "check $p $fx: $r"
        done
    done
fi
if has bench; then
    i=0
    for f in $FILES; do
        [ -f "$f" ] || { say "bench: $f missing"; continue; }
        order=$PATHS
        [ $((i % 2)) -eq 1 ] && order=$(echo "$PATHS" | tr ' ' '\n' | tac | tr '\n' ' ')
        for p in $order; do
            LOOM_VK_MOE=$p $L/loom bench -m "$f" --device vulkan -p "$PP" -n "$TG" -r "$REPS" >"$O/b.txt" 2>&1
            rc=$?
            cat "$O/b.txt" >>"$log"
            say "bench $(basename "$f" .gguf) $p: rc $rc $(grep -E "pp$PP|tg$TG" "$O/b.txt" | awk -F'|' '{printf "%s %s  ", $6, $7}')"
        done
        i=$((i + 1))
    done
fi
