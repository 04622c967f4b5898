#!/bin/sh
# rel_adversarial.sh LOOM FIXTURES: the adversarial pass of issue 15 (docs/reliability.md), by hand:
# each case prints its exit status and the first line of stderr. Not a CTest test (the regressions
# are in test_rel_inputs); kept so the pass can be re-run and its table regenerated.
L="$1"; F="$2"; S="$F/stories260K.gguf"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
n=0
case_() { # case_ DESCRIPTION CMD...
    n=$((n + 1)); d="$1"; shift
    err=$(timeout 30 "$@" 2>&1 >/dev/null </dev/null); rc=$?
    printf '| %d | %s | %s | %s |\n' "$n" "$d" "$rc" "$(printf '%s' "$err" | grep -v '^$' | grep -v 'using device\|backend,' | tail -1 | sed 's|^\(.\{70\}\).*\(.\{90\}\)$|\1 ... \2|' | sed 's/|/\\|/g')"
}
py() { python3 -c "$1"; }
# ---- malformed GGUF ----
py "open('$T/v1.gguf','wb').write(b'GGUF'+(1).to_bytes(4,'little')+bytes(16))"
py "open('$T/v4.gguf','wb').write(b'GGUF'+(4).to_bytes(4,'little')+bytes(16))"
py "open('$T/t23.gguf','wb').write(b'GGUF'+(3).to_bytes(4,'little')+bytes(15))"
py "open('$T/empty.gguf','wb').write(b'GGUF'+(3).to_bytes(4,'little')+bytes(16))"
py "open('$T/nkv.gguf','wb').write(b'GGUF'+(3).to_bytes(4,'little')+bytes(8)+(2**63).to_bytes(8,'little'))"
py "import struct; open('$T/klen.gguf','wb').write(b'GGUF'+struct.pack('<IQQQ',3,0,1,2**62)+b'ab')"
py "import struct; k=b'general.alignment'; open('$T/align0.gguf','wb').write(b'GGUF'+struct.pack('<IQQ',3,0,1)+struct.pack('<Q',len(k))+k+struct.pack('<II',4,0))"
py "import struct; open('$T/ndim5.gguf','wb').write(b'GGUF'+struct.pack('<IQQ',3,1,0)+struct.pack('<Q',1)+b'a'+struct.pack('<I',5)+struct.pack('<5Q',1,1,1,1,1)+struct.pack('<IQ',0,0)+bytes(64))"
py "import struct; open('$T/ne0.gguf','wb').write(b'GGUF'+struct.pack('<IQQ',3,1,0)+struct.pack('<Q',1)+b'a'+struct.pack('<I',2)+struct.pack('<2Q',0,4)+struct.pack('<IQ',0,0)+bytes(64))"
py "import struct; open('$T/type99.gguf','wb').write(b'GGUF'+struct.pack('<IQQ',3,1,0)+struct.pack('<Q',1)+b'a'+struct.pack('<I',1)+struct.pack('<Q',4)+struct.pack('<IQ',99,0)+bytes(64))"
for f in v1 v4 t23 empty nkv klen align0 ndim5 ne0 type99; do case_ "GGUF: $f" "$L" run -m "$T/$f.gguf" -p x --device cpu; done
head -c 600000 "$S" > "$T/half.gguf"; case_ "GGUF cut at 600000 of 1.18 MB" "$L" run -m "$T/half.gguf" -p x --device cpu
# ---- malformed safetensors / config ----
mkdir -p "$T/hf"; cp "$F/llama-tiny/config.json" "$T/hf/"
py "open('$T/hf/model.safetensors','wb').write((0).to_bytes(8,'little'))"; case_ "safetensors: header length 0" "$L" run -m "$T/hf" --tokens 1 --device cpu
py "open('$T/hf/model.safetensors','wb').write((1<<40).to_bytes(8,'little')+b'{}')"; case_ "safetensors: header length 2^40" "$L" run -m "$T/hf" --tokens 1 --device cpu
py "h=b'[1,2]'; open('$T/hf/model.safetensors','wb').write(len(h).to_bytes(8,'little')+h)"; case_ "safetensors: header a JSON array" "$L" run -m "$T/hf" --tokens 1 --device cpu
py "h=b'{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}'; open('$T/hf/model.safetensors','wb').write(len(h).to_bytes(8,'little')+h+bytes(8))"; case_ "safetensors: negative shape" "$L" run -m "$T/hf" --tokens 1 --device cpu
cp "$F/llama-tiny/model.safetensors" "$T/hf/"
echo '{}' > "$T/hf/config.json"; case_ "config.json: {}" "$L" run -m "$T/hf" --tokens 1 --device cpu
echo 'null' > "$T/hf/config.json"; case_ "config.json: null" "$L" run -m "$T/hf" --tokens 1 --device cpu
: > "$T/hf/config.json"; case_ "config.json: empty file" "$L" run -m "$T/hf" --tokens 1 --device cpu
sed 's/"hidden_size": 128/"hidden_size": 1e308/' "$F/llama-tiny/config.json" > "$T/hf/config.json"; case_ "config.json: hidden_size 1e308" "$L" run -m "$T/hf" --tokens 1 --device cpu
sed 's/"num_attention_heads": 8/"num_attention_heads": 0/' "$F/llama-tiny/config.json" > "$T/hf/config.json"; case_ "config.json: num_attention_heads 0" "$L" run -m "$T/hf" --tokens 1 --device cpu
sed 's/"num_key_value_heads": 4/"num_key_value_heads": 3/' "$F/llama-tiny/config.json" > "$T/hf/config.json"; case_ "config.json: 8 heads, 3 kv heads" "$L" run -m "$T/hf" --tokens 1 --device cpu
sed 's/"head_dim": 16/"head_dim": 15/' "$F/llama-tiny/config.json" > "$T/hf/config.json"; case_ "config.json: head_dim 15 (odd)" "$L" run -m "$T/hf" --tokens 1 --device cpu
sed 's/"rms_norm_eps": 1e-05/"rms_norm_eps": "x"/' "$F/llama-tiny/config.json" > "$T/hf/config.json"; case_ "config.json: rms_norm_eps a string" "$L" run -m "$T/hf" --tokens 1 --device cpu
cp "$F/llama-tiny/config.json" "$T/hf/"
: > "$T/hf/tokenizer.json"; case_ "tokenizer.json: empty" "$L" tokenize -m "$T/hf" -p hi
echo '{"model":{"type":"BPE","vocab":{"a":-1},"merges":[]}}' > "$T/hf/tokenizer.json"; case_ "tokenizer.json: id -1" "$L" tokenize -m "$T/hf" -p hi
echo '{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":{"type":"Split","pattern":{"Regex":"(("},"behavior":"Isolated"}}' > "$T/hf/tokenizer.json"; case_ "tokenizer.json: regex '(('" "$L" tokenize -m "$T/hf" -p hi
echo '{"model":{"type":"WordPiece","vocab":{"a":0}}}' > "$T/hf/tokenizer.json"; case_ "tokenizer.json: WordPiece model" "$L" tokenize -m "$T/hf" -p hi
# ---- options ----
case_ "run --ctx 1 with a 2-token prompt" "$L" run -m "$S" --tokens 1,403 --ctx 1 --device cpu
case_ "run --ctx 0" "$L" run -m "$S" --tokens 1 --ctx 0 --device cpu
case_ "run -n 0" "$L" run -m "$S" --tokens 1,403 -n 0 --device cpu
case_ "run -n -1" "$L" run -m "$S" --tokens 1 -n -1 --device cpu
case_ "run --temp -1"  "$L" run -m "$S" --tokens 1 --temp -1 -n 4 --device cpu
case_ "run --temp inf" "$L" run -m "$S" --tokens 1 --temp inf -n 4 --device cpu
case_ "run --temp nan" "$L" run -m "$S" --tokens 1 --temp nan -n 4 --device cpu
case_ "run --temp 1e-30 (overflowing exp)" "$L" run -m "$S" --tokens 1 --temp 1e-30 -n 4 --device cpu
case_ "run --top-k -1" "$L" run -m "$S" --tokens 1 --top-k -1 --device cpu
case_ "run --top-p 0" "$L" run -m "$S" --tokens 1 --top-p 0 --temp 1 -n 4 --device cpu
case_ "run --seed -1" "$L" run -m "$S" --tokens 1 --seed -1 --device cpu
case_ "run -t 0" "$L" run -m "$S" --tokens 1 -t 0 --device cpu
case_ "run -t 100000" "$L" run -m "$S" --tokens 1 -t 100000 --device cpu
case_ "run --tokens ''" "$L" run -m "$S" --tokens "" --device cpu
case_ "run --tokens 1,,2" "$L" run -m "$S" --tokens 1,,2 --device cpu
case_ "run --tokens 600 (vocab 512)" "$L" run -m "$S" --tokens 600 --device cpu
case_ "run --tokens 99999999999" "$L" run -m "$S" --tokens 99999999999 --device cpu
case_ "run -p invalid UTF-8" "$L" run -m "$S" -p "$(printf 'a\377b')" --device cpu
case_ "run -p 100 KB > --ctx 512" "$L" run -m "$S" -p "$(head -c 100000 /dev/zero | tr '\0' 'a')" --ctx 512 --device cpu
: > "$T/empty.txt"; case_ "run --prompts-file empty" "$L" run -m "$S" --prompts-file "$T/empty.txt" --device cpu
seq 1 300 > "$T/many.txt"; case_ "run --prompts-file of 300 prompts" "$L" run -m "$S" --prompts-file "$T/many.txt" --device cpu
case_ "run --prompts-file a directory" "$L" run -m "$S" --prompts-file "$T" --device cpu
case_ "run --device nonsense" "$L" run -m "$S" --tokens 1 --device nonsense
case_ "run --parallel 0" "$L" run -m "$S" --tokens 1 --parallel 0 --device cpu
case_ "run --beams 65" "$L" run -m "$S" --tokens 1 --beams 65 --device cpu
case_ "run --ctx-shift --keep 0 --ctx 4" "$L" run -m "$S" --tokens 1,403 --ctx 4 --ctx-shift --keep 0 -n 20 --device cpu
case_ "run -m a path of 5000 characters" "$L" run -m "$(head -c 5000 /dev/zero | tr '\0' 'a')" -p x --device cpu
case_ "run -m /dev/zero" "$L" run -m /dev/zero -p x --device cpu
ln -s loop2 "$T/loop1"; ln -s loop1 "$T/loop2"; case_ "run -m a symlink loop" "$L" run -m "$T/loop1" -p x --device cpu
mkdir -p "$T/sp ace é"; cp "$S" "$T/sp ace é/m.gguf"; case_ "run -m a path with a space and é" "$L" run -m "$T/sp ace é/m.gguf" --tokens 1 -n 2 --device cpu
case_ "bench -b 0" "$L" bench -m "$S" -b 0 --device cpu
# ---- outputs ----
cp "$S" "$T/same.gguf"; case_ "quantize IN onto itself" "$L" quantize "$T/same.gguf" "$T/same.gguf" --type q8_0
case_ "  ... and the result loads" "$L" run -m "$T/same.gguf" --tokens 1 -n 2 --device cpu
case_ "quantize to a missing folder" "$L" quantize "$S" "$T/no/such/out.gguf" --type q8_0
mkdir -p "$T/ro"; chmod 555 "$T/ro"; case_ "quantize into a read-only folder (as root: allowed)" "$L" quantize "$S" "$T/ro/out.gguf" --type q8_0
case_ "convert to a folder" "$L" convert "$F/llama-tiny" "$T"
case_ "quantize --type q2_k" "$L" quantize "$S" "$T/x.gguf" --type q2_k
# ---- signals and pipes ----
# (a background job of a non-interactive sh ignores SIGINT, so SIGTERM stands for ^C here)
"$L" run -m "$S" --tokens 1 -n 10000000 --ctx-shift --ctx 64 --device cpu >/dev/null 2>&1 & p=$!; sleep 1; kill -TERM $p; wait $p; rc=$?
n=$((n + 1)); printf '| %d | %s | %s | %s |\n' "$n" "SIGTERM during a long run" "$rc" "(143 = killed by SIGTERM, no output lost: stdout is flushed per token)"
cp "$S" "$T/q.gguf"
"$L" quantize "$T/q.gguf" "$T/q8.gguf" --type q8_0 >/dev/null 2>&1 & p=$!; kill -TERM $p; wait $p; rc=$?
n=$((n + 1)); printf '| %d | %s | %s | %s |\n' "$n" "SIGTERM at once during quantize" "$rc" "leftover temporary files: $(ls "$T" | grep -c 'q8.gguf.tmp-')"
( timeout 20 "$L" run -m "$S" --tokens 1 -n 100000 --device cpu 2>/dev/null; echo $? > "$T/pipe.rc" ) | head -c 1 >/dev/null
n=$((n + 1)); printf '| %d | %s | %s | %s |\n' "$n" "run piped into head -c 1" "$(cat "$T/pipe.rc")" "(141 = SIGPIPE, as any CLI writing to a closed pipe)"
printf 'a\0b' | timeout 10 "$L" tokenize -m "$S" --ids >/dev/null 2>"$T/err"; rc=$?
n=$((n + 1)); printf '| %d | %s | %s | %s |\n' "$n" "tokenize stdin holding a NUL byte" "$rc" "$(head -1 "$T/err")"
