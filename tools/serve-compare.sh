#!/bin/sh
# Side by side with llama.cpp's llama-server (docs/serving.md): the same GGUF, the same load
# (tools/serve-load.mjs: C concurrent streaming clients, the same 16 requests, the same max_tokens),
# the same threads and as many parallel sequences as clients; loom serve first, then llama-server,
# one after the other in one run (wrap the whole script in /work/quiet for a figure).
# usage: tools/serve-compare.sh MODEL.gguf CLIENTS SECONDS MAX_TOKENS SEQ_CTX [THREADS [TEMPERATURE]]
#   LOOM (default build/loom), LLAMA_SERVER (default /work/peer/build/bin/llama-server)
# Prints one JSON line per server (serve-load.mjs's, with "server" added).
set -u
model=$1 clients=$2 seconds=$3 max_tokens=$4 seq_ctx=$5 threads=${6:-2} temp=${7:-0.8}
loom=${LOOM:-build/loom}
llama=${LLAMA_SERVER:-/work/peer/build/bin/llama-server}
here=$(cd "$(dirname "$0")" && pwd)
port=$((20000 + $$ % 20000))
ctx=$((clients * seq_ctx))

run_one() { # NAME CMD...
    name=$1
    shift
    "$@" >/tmp/serve-compare-$name.log 2>&1 &
    pid=$!
    i=0
    until curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 600 ] || ! kill -0 $pid 2>/dev/null; then
            echo "{\"server\": \"$name\", \"error\": \"did not start (see /tmp/serve-compare-$name.log)\"}"
            kill $pid 2>/dev/null
            return
        fi
        sleep 0.2
    done
    out=$(node "$here/serve-load.mjs" "http://127.0.0.1:$port" --clients "$clients" --seconds "$seconds" \
        --max-tokens "$max_tokens" --temperature "$temp" --pid $pid)
    echo "{\"server\": \"$name\", $(printf '%s' "$out" | sed 's/^{//')"
    kill $pid
    wait $pid 2>/dev/null
    port=$((port + 1))
}

run_one loom "$loom" serve -m "$model" --host 127.0.0.1 --port $port -t "$threads" --device cpu \
    --parallel "$clients" --queue 256 --seq-ctx "$seq_ctx" --max-tokens "$max_tokens"
run_one llama-server "$llama" -m "$model" --host 127.0.0.1 --port $port -t "$threads" -tb "$threads" \
    -np "$clients" -c "$ctx" -n "$max_tokens" --no-webui
