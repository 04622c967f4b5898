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
    if [ $rc -eq 23 ] || grep -q "LeakSanitizer" "$tmp/out"; then
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
    # failures after the model is loaded
    t run -m "$s" --ctx 2000000000 -p "Once" --device $dev
    t run -m "$fx/llama-tiny" --tokens 1,999999 -n 2 --device $dev
    t run -m "$fx/llama-tiny" --tokens 1,2,3,4,5 --ctx 4 -n 2 --device $dev
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
echo "$n commands, $([ $fail -eq 0 ] && echo 'no leaks' || echo 'LEAKS FOUND')"
exit $fail
