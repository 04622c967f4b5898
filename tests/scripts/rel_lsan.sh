#!/bin/sh
# rel_lsan.sh LOOM FIXTURES: run the loom commands a user runs -- successful ones and ones that
# fail on bad input -- under LeakSanitizer (LOOM built with -fsanitize=leak, `make lsan`), on the
# CPU and, when there is a device, on Vulkan (lavapipe counts). Fails if any leaks.
loom=$1
fx=$2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
export LSAN_OPTIONS="exitcode=23:report_objects=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
fail=0
n=0
# each command: any exit status but LSan's 23 (errors are expected for the bad-input cases)
t() {
    n=$((n + 1))
    "$loom" "$@" > "$tmp/out" 2>&1
    rc=$?
    # a crash under LSan prints "LeakSanitizer:DEADLYSIGNAL" and exits 23 as well: not a leak
    if grep -q "DEADLYSIGNAL\|ERROR: LeakSanitizer: SEGV\|ERROR: LeakSanitizer: [A-Z]" "$tmp/out" &&
        ! grep -q "detected memory leaks" "$tmp/out"; then
        echo "CRASH: loom $*"
        grep -A14 "ERROR:" "$tmp/out" | head -30
        fail=1
    elif [ $rc -eq 23 ] || grep -q "LeakSanitizer" "$tmp/out"; then
        echo "LEAK: loom $*"
        grep -A12 "LeakSanitizer\|Direct leak\|Indirect leak" "$tmp/out" | head -40
        fail=1
    elif [ $rc -ge 124 ]; then
        echo "CRASH (exit $rc): loom $*"
        tail -5 "$tmp/out"
        fail=1
    else
        echo "ok (exit $rc): loom $*"
    fi
}
s=$fx/stories260K.gguf
# quantised models for the runs below (loom quantize is a command users run too): q8_0 and q4_0
# blocks, the K-quant fallback mix of the tiny fixtures (q4_k_m: f16, q8_0, q4_0), q6_k, and a
# quantised model dequantised back to f32
t quantize "$fx/llama-tiny" "$tmp/llama-q8_0.gguf" --type q8_0
t quantize "$fx/llama-tiny" "$tmp/llama-q4_0.gguf" --type q4_0
t quantize "$fx/qwen2-tiny" "$tmp/qwen2-q4_k_m.gguf" --type q4_k_m
t quantize "$s" "$tmp/stories-q6_k.gguf" --type q6_k
t quantize "$tmp/llama-q4_0.gguf" "$tmp/llama-deq.gguf" --type f32
printf 'Once upon a time\nThe dog\nA cat sat\n' > "$tmp/prompts.txt"
for dev in cpu vulkan; do
    if [ $dev = vulkan ] && ! "$loom" devices 2>/dev/null | grep -q '^vulkan:[0-9]'; then
        echo "SKIP: no Vulkan device for the --device vulkan runs"
        continue
    fi
    t run -m "$s" -p "Once upon a time" -n 24 --device $dev
    t run -m "$s" --tokens 1,403 -n 40 --ctx 32 --ctx-shift --temp 0.8 --top-k 40 --top-p 0.9 --device $dev
    t run -m "$fx/llama-tiny" --tokens 1,2,3 -n 8 --device $dev --ids
    for m in qwen2-tiny llama-tiny qwen2-tiny-bf16 qwen3-tiny stories260K-hf; do
        tol=1e-3
        [ $m = qwen2-tiny-bf16 ] && tol=2e-2
        t check -m "$fx/$m" --reference "$fx/$m/reference.safetensors" --tol $tol --device $dev
    done
    t check -m "$s" --reference "$fx/stories260K-hf/reference.safetensors" --device $dev
    printf 'Once upon a time\nThe dog\n' > "$tmp/chat.txt"
    t chat -m "$s" -n 8 --temp 0 --device $dev < "$tmp/chat.txt"
    t bench -m "$fx/qwen2-tiny" -p 8 -n 4 -r 1 --device $dev
    # several sequences at once (docs/batching.md): repeated -p, --prompts-file, --parallel, --beams, bench -b
    t run -m "$s" -p "Once upon a time" -p "The dog" -p "A cat sat" -n 16 --device $dev
    t run -m "$s" --prompts-file "$tmp/prompts.txt" -n 8 --temp 0.8 --top-k 40 --device $dev
    t run -m "$s" -p "Once upon a time" --parallel 3 -n 16 --temp 0.8 --top-p 0.9 --device $dev
    # 9 rows at once (5 + 4 prompt tokens, then 9 sequences decoding): the CPU's gemv_rows once
    # split 9 as 8 + 1 and wrote past its output (found by this script, 2026-11-23)
    t run -m "$s" -p "Once upon a time" -p "The dog" -n 16 --device $dev
    t run -m "$s" -p "Once" --parallel 9 -n 8 --temp 0.8 --device $dev
    t run -m "$fx/stories260K-hf" --tokens 1,403,407,261,378 -n 12 --beams 4 --ids --device $dev
    t run -m "$s" -p "Once" --beams 3 --length-penalty 0.8 --early-stopping -n 24 --device $dev
    t bench -m "$s" -p 8 -n 4 -b 1,3 -r 1 --device $dev
    # quantised weights: check against the f32 reference, and generate
    for q in llama-q8_0 llama-q4_0 llama-deq; do
        t check -m "$tmp/$q.gguf" --reference "$fx/llama-tiny/reference.safetensors" --min-top1 50 --max-kl 0.1 --device $dev
    done
    t check -m "$tmp/qwen2-q4_k_m.gguf" --reference "$fx/qwen2-tiny/reference.safetensors" --min-top1 50 --max-kl 0.1 --device $dev
    t check -m "$tmp/stories-q6_k.gguf" --reference "$fx/stories260K-hf/reference.safetensors" --min-top1 95 --max-kl 2e-3 --device $dev
    t run -m "$tmp/stories-q6_k.gguf" -p "Once upon a time" -p "The dog" -n 16 --device $dev
    t run -m "$tmp/llama-q4_0.gguf" --tokens 1,2,3 --parallel 2 -n 8 --temp 0.8 --ids --device $dev
    # failures after the model is loaded
    t run -m "$s" --ctx 2000000000 -p "Once" --device $dev
    t run -m "$fx/llama-tiny" --tokens 1,999999 -n 2 --device $dev
    t run -m "$fx/llama-tiny" --tokens 1,2,3,4,5 --ctx 4 -n 2 --device $dev
    t run -m "$s" -p "Once upon a time" -n 40 --beams 4 --ctx 32 --device $dev
    t run -m "$s" -p "Once" -p "The dog" -n 40 --ctx 16 --device $dev
done
# formats and tools, and failures while loading
t tokenize -m "$s" -p "Once upon a time"
t convert "$fx/llama-tiny" "$tmp/c.gguf"
t synth --shape "$fx/llama-tiny/config.json" --dtype bf16 -o "$tmp/s.gguf"
t run -m "$tmp/s.gguf" --tokens 1,2 -n 4 --device cpu
head -c 100000 "$fx/stories260K.gguf" > "$tmp/cut.gguf"
t run -m "$tmp/cut.gguf" -p "Once" --device cpu
t run -m "$tmp/no-such-model" -p "Once" --device cpu
t run -m "$s" -p "Once" --device tpu
t convert "$fx/no-such-dir" "$tmp/x.gguf"
t quantize "$tmp/no-such.gguf" "$tmp/x.gguf" --type q8_0
head -c 3000 "$tmp/llama-q8_0.gguf" > "$tmp/cut-q.gguf"
t quantize "$tmp/cut-q.gguf" "$tmp/x.gguf" --type q4_0
t run -m "$s" -p "Hi" --parallel 2 --ctx-shift --device cpu
echo "$n commands, $([ $fail -eq 0 ] && echo 'no leaks' || echo 'LEAKS FOUND')"
exit $fail
