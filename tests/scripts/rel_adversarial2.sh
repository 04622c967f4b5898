#!/bin/sh
# rel_adversarial2.sh LOOM FIXTURES: the second adversarial pass of issue 15 (session 6,
# docs/reliability.md): cases not in the issue nor in rel_adversarial.sh. Each prints its exit
# status and the last line of stderr. Not a CTest test (the regressions it led to are in
# test_rel_inputs / rel_* tests); kept so the pass can be re-run and its table regenerated.
L="$1"; F="$2"; S="$F/stories260K.gguf"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
n=0
last() { grep -v '^$' | grep -v 'using device\|backend,' | tail -1 | sed 's|^\(.\{70\}\).*\(.\{90\}\)$|\1 ... \2|' | sed 's/|/\\|/g'; }
case_() { # case_ DESCRIPTION CMD...
    n=$((n + 1)); d="$1"; shift
    err=$(timeout 30 "$@" 2>&1 >/dev/null </dev/null); rc=$?
    printf '| %d | %s | %s | %s |\n' "$n" "$d" "$rc" "$(printf '%s' "$err" | last)"
}
row() { n=$((n + 1)); printf '| %d | %s | %s | %s |\n' "$n" "$1" "$2" "$(printf '%s' "$3" | sed 's/|/\\|/g')"; }
py() { python3 -c "$1"; }

# ---- GGUF metadata (a valid stories260K header with one key added or changed) ----
# gguf.py-free: append key/values to the header of a minimal model-less GGUF
G="import struct,sys
def s(b): return struct.pack('<Q',len(b))+b
def kv(k,t,v): return s(k)+struct.pack('<I',t)+v
def g(path, kvs, ntens=0, tens=b'', data=b''):
    h=b'GGUF'+struct.pack('<IQQ',3,ntens,len(kvs))+b''.join(kvs)+tens
    h+=bytes((-len(h))%32)
    open(path,'wb').write(h+data)
arch=kv(b'general.architecture',8,s(b'llama'))
"
py "$G
g('$T/arr2.gguf',[arch,kv(b'x',9,struct.pack('<IQ',9,2)+struct.pack('<IQ',4,1)+struct.pack('<I',7)+struct.pack('<IQ',4,0))])"
case_ "GGUF: an array of arrays as a value" "$L" run -m "$T/arr2.gguf" --tokens 1 -n 2 --device cpu
py "$G
g('$T/arrhuge.gguf',[arch,kv(b'x',9,struct.pack('<IQ',0,2**62))])"
case_ "GGUF: array of 2^62 u8 in a small file" "$L" run -m "$T/arrhuge.gguf" --tokens 1 -n 2 --device cpu
py "$G
g('$T/key0.gguf',[arch,kv(b'',4,struct.pack('<I',1))])"
case_ "GGUF: a key of length 0" "$L" run -m "$T/key0.gguf" --tokens 1 -n 2 --device cpu
py "$G
g('$T/dupkey.gguf',[arch,kv(b'general.architecture',8,s(b'qwen2'))])"
case_ "GGUF: general.architecture twice" "$L" run -m "$T/dupkey.gguf" --tokens 1 -n 2 --device cpu
py "$G
g('$T/alignstr.gguf',[arch,kv(b'general.alignment',8,s(b'32'))])"
case_ "GGUF: general.alignment a string" "$L" run -m "$T/alignstr.gguf" --tokens 1 -n 2 --device cpu
py "$G
g('$T/alignbig.gguf',[arch,kv(b'general.alignment',4,struct.pack('<I',2**31))])"
case_ "GGUF: general.alignment 2^31" "$L" run -m "$T/alignbig.gguf" --tokens 1 -n 2 --device cpu
py "$G
g('$T/strhuge.gguf',[kv(b'general.architecture',8,struct.pack('<Q',2**63)+b'llama')])"
case_ "GGUF: a string of length 2^63" "$L" run -m "$T/strhuge.gguf" --tokens 1 -n 2 --device cpu
py "$G
g('$T/type13.gguf',[arch,kv(b'x',13,b'\0'*8)])"
case_ "GGUF: value type 13" "$L" run -m "$T/type13.gguf" --tokens 1 -n 2 --device cpu
py "$G
t=lambda name,off: s(name)+struct.pack('<IQIQ',1,8,0,off)
g('$T/duptensor.gguf',[arch],2,t(b'a',0)+t(b'a',32),bytes(64))"
case_ "GGUF: two tensors named 'a'" "$L" run -m "$T/duptensor.gguf" --tokens 1 -n 2 --device cpu
py "$G
t=lambda name,off: s(name)+struct.pack('<IQIQ',1,8,0,off)
g('$T/unaligned.gguf',[arch],1,t(b'a',4),bytes(64))"
case_ "GGUF: tensor offset 4 (alignment 32)" "$L" run -m "$T/unaligned.gguf" --tokens 1 -n 2 --device cpu
py "$G
g('$T/archint.gguf',[kv(b'general.architecture',4,struct.pack('<I',7))])"
case_ "GGUF: general.architecture a u32" "$L" run -m "$T/archint.gguf" --tokens 1 -n 2 --device cpu
py "$G
g('$T/toku32.gguf',[arch,kv(b'tokenizer.ggml.model',8,s(b'llama')),kv(b'tokenizer.ggml.tokens',9,struct.pack('<IQ',4,3)+bytes(12))])"
case_ "GGUF: tokenizer.ggml.tokens an array of u32" "$L" tokenize -m "$T/toku32.gguf" -p hi
py "$G
g('$T/scores.gguf',[arch,kv(b'tokenizer.ggml.model',8,s(b'llama')),kv(b'tokenizer.ggml.tokens',9,struct.pack('<IQ',8,3)+s(b'<unk>')+s(b'a')+s(b'b')),kv(b'tokenizer.ggml.scores',9,struct.pack('<IQ',6,1)+struct.pack('<f',0))])"
case_ "GGUF: 3 tokens, 1 score" "$L" tokenize -m "$T/scores.gguf" -p ab
py "$G
g('$T/merges.gguf',[arch,kv(b'tokenizer.ggml.model',8,s(b'gpt2')),kv(b'tokenizer.ggml.tokens',9,struct.pack('<IQ',8,2)+s(b'a')+s(b'b')),kv(b'tokenizer.ggml.merges',9,struct.pack('<IQ',8,2)+s(b'ab')+s(b'x y'))])"
case_ "GGUF: BPE merges 'ab' (no space) and 'x y' (unknown)" "$L" tokenize -m "$T/merges.gguf" -p ab

# ---- safetensors ----
mkdir -p "$T/hf"; cp "$F/llama-tiny/config.json" "$T/hf/"
st() { py "import json,struct; h=json.dumps($1).encode(); open('$T/hf/model.safetensors','wb').write(struct.pack('<Q',len(h))+h+bytes($2))"; }
st '{"a":{"dtype":"X9","shape":[2],"data_offsets":[0,8]}}' 8; case_ "safetensors: dtype X9" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
st '{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}' 8; case_ "safetensors: F32 [3] in 8 bytes" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
st '{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}' 8; case_ "safetensors: shape [2.5]" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
st '{"a":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,8]}}' 8; case_ "safetensors: shape [2^62, 2^62] (product overflows)" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
st '{"__metadata__":7,"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}' 8; case_ "safetensors: __metadata__ a number" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
st '{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}' 8; case_ "safetensors: data_offsets [8, 0]" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
py "open('$T/hf/model.safetensors','wb').write((20).to_bytes(8,'little')+b'{\"a\":{\"dtype\":\"F32\"\xff')"; case_ "safetensors: header cut, not UTF-8" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
# a real checkpoint with one tensor dropped / transposed
py "
import json,struct
b=open('$F/llama-tiny/model.safetensors','rb').read(); n=struct.unpack('<Q',b[:8])[0]; h=json.loads(b[8:8+n]); d=b[8+n:]
def w(path,h2,d2):
    hb=json.dumps(h2).encode(); open(path,'wb').write(struct.pack('<Q',len(hb))+hb+d2)
# drop: move the last tensor out, keep the data contiguous by cutting it
last=max((k for k in h if k!='__metadata__'),key=lambda k:h[k]['data_offsets'][1]); e=h.pop(last)
w('$T/hf/drop.safetensors',h,d[:e['data_offsets'][0]]); open('$T/dropped','w').write(last)
h=json.loads(b[8:8+n]); q='model.layers.0.self_attn.q_proj.weight'; h[q]['shape']=h[q]['shape'][::-1]
w('$T/hf/transp.safetensors',h,d)
"
mv "$T/hf/drop.safetensors" "$T/hf/model.safetensors"; case_ "safetensors: tensor '$(cat "$T/dropped")' missing" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
cp "$F/llama-tiny/model.safetensors" "$T/hf/"; sed 's/"dtype"/"xdtype"/' "$F/llama-tiny/config.json" >/dev/null
py "
import json,struct
b=open('$F/llama-tiny/model.safetensors','rb').read(); n=struct.unpack('<Q',b[:8])[0]; h=json.loads(b[8:8+n]); d=b[8+n:]
q='model.layers.0.self_attn.k_proj.weight'; h[q]['shape']=h[q]['shape'][::-1]
hb=json.dumps(h).encode(); open('$T/hf/model.safetensors','wb').write(struct.pack('<Q',len(hb))+hb+d)"
case_ "safetensors: k_proj [64,128] stored as [128,64]" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
cp "$F/llama-tiny/model.safetensors" "$T/hf/"

# ---- config.json ----
cfg() { py "import json; c=json.load(open('$F/llama-tiny/config.json')); $1; json.dump(c,open('$T/hf/config.json','w'))"; }
cfg "c['rope_scaling']={'rope_type':'yarn','factor':4.0,'original_max_position_embeddings':256}"; case_ "config: rope_scaling yarn" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
cfg "c['rope_scaling']={'type':'dynamic','factor':2.0}"; case_ "config: rope_scaling dynamic (old 'type' key)" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
cfg "c['rope_scaling']={'rope_type':'llama3','factor':8.0}"; case_ "config: llama3 rope_scaling without its frequencies" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
cfg "c['rope_scaling']=[1,2]"; case_ "config: rope_scaling an array" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
cfg "c['tie_word_embeddings']=True"; case_ "config: tie_word_embeddings true, lm_head.weight present" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
cfg "c['num_hidden_layers']='2'"; case_ "config: num_hidden_layers \"2\" (a string)" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
cfg "c['vocab_size']=100"; case_ "config: vocab_size 100 (embedding has 512 rows)" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
cfg "c['architectures']=[]; c['model_type']='bert'"; case_ "config: model_type bert, no architectures" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
cfg "del c['head_dim']; c['hidden_size']=120; c['num_attention_heads']=7"; case_ "config: hidden 120 over 7 heads" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
cfg "c['max_position_embeddings']=-1"; case_ "config: max_position_embeddings -1" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
cfg "c['layer_types']=['full_attention']"; case_ "config: layer_types of length 1 (2 layers)" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
cfg "c['layer_types']=['full_attention','bogus_attention']"; case_ "config: layer_types 'bogus_attention'" "$L" run -m "$T/hf" --tokens 1 -n 2 --device cpu
cp "$F/llama-tiny/config.json" "$T/hf/"
mkdir -p "$T/hfdir"; cp "$F/llama-tiny/model.safetensors" "$T/hfdir/"; mkdir "$T/hfdir/config.json"
case_ "config.json a directory" "$L" run -m "$T/hfdir" --tokens 1 -n 2 --device cpu
# ---- tokenizer.json (on tests/fixtures/rel/tokenizer-mini.json, 260 tokens) ----
tok() { py "import json; t=json.load(open('$F/rel/tokenizer-mini.json')); $1; json.dump(t,open('$T/hf/tokenizer.json','w'))"; }
tok "t['model']['merges'].append('zzq qqz')"; case_ "tokenizer.json: a merge of unknown tokens" "$L" tokenize -m "$T/hf" -p hello
tok "t['added_tokens']=[{'id':300,'content':'<a>','special':True},{'id':301,'content':'<a><b>','special':True}]"
case_ "tokenizer.json: added tokens '<a>' and '<a><b>' (--special)" "$L" tokenize -m "$T/hf" -p "x<a><b>y<a>"
tok "t['added_tokens']=[{'id':2147483647,'content':'<big>','special':True}]"; case_ "tokenizer.json: added token id 2^31-1" "$L" tokenize -m "$T/hf" -p hi
tok "t['added_tokens']=[{'id':5,'content':'<five>','special':True}]"; case_ "tokenizer.json: added token reusing vocab id 5" "$L" tokenize -m "$T/hf" -p "<five>"
tok "v=t['model']['vocab']; k=list(v)[10]; v['dupe']=v[k]"; case_ "tokenizer.json: two vocab strings with one id" "$L" tokenize -m "$T/hf" -p hi
tok "t['model']['merges']=[['h','e'],7]"; case_ "tokenizer.json: merges [['h','e'], 7]" "$L" tokenize -m "$T/hf" -p he
tok "t['normalizer']={'type':'Precompiled','precompiled_charsmap':'AAAA'}"; case_ "tokenizer.json: normalizer Precompiled" "$L" tokenize -m "$T/hf" -p hi
mkdir -p "$T/tokdir"; cp "$T/hf/config.json" "$F/llama-tiny/model.safetensors" "$T/tokdir/"; mkdir "$T/tokdir/tokenizer.json"
case_ "tokenizer.json a directory" "$L" tokenize -m "$T/tokdir" -p hi
rm -f "$T/hf/tokenizer.json"

# ---- options ----
case_ "run --keep 100 --ctx 32 --ctx-shift" "$L" run -m "$S" --tokens 1,403 --ctx 32 --ctx-shift --keep 100 --device cpu
case_ "run --keep 100 without --ctx-shift" "$L" run -m "$S" --tokens 1,403 --ctx 32 --keep 100 -n 2 --device cpu
case_ "run --seed 2147483648" "$L" run -m "$S" --tokens 1 --seed 2147483648 --device cpu
case_ "run --seed 1e3" "$L" run -m "$S" --tokens 1 --seed 1e3 --device cpu
case_ "run --repeat-penalty 0" "$L" run -m "$S" --tokens 1 --repeat-penalty 0 -n 4 --device cpu
case_ "run --repeat-penalty -1" "$L" run -m "$S" --tokens 1 --repeat-penalty -1 -n 4 --device cpu
case_ "run --frequency-penalty nan" "$L" run -m "$S" --tokens 1 --frequency-penalty nan -n 4 --device cpu
case_ "run --presence-penalty -1e38 (logit overflow)" "$L" run -m "$S" --tokens 1,403 --presence-penalty -3e38 --temp 1 -n 8 --device cpu
case_ "run --presence-penalty inf" "$L" run -m "$S" --tokens 1 --presence-penalty inf -n 4 --device cpu
case_ "run --repeat-last-n -2" "$L" run -m "$S" --tokens 1 --repeat-last-n -2 -n 4 --device cpu
case_ "run --min-p 2" "$L" run -m "$S" --tokens 1 --min-p 2 -n 4 --device cpu
case_ "run --stop ''" "$L" run -m "$S" -p "Once" --stop "" -n 4 --device cpu
case_ "run --stop x9 (limit 8)" "$L" run -m "$S" -p "Once" --stop a --stop b --stop c --stop d --stop e --stop f --stop g --stop h --stop i -n 4 --device cpu
case_ "run -p '' (empty prompt)" "$L" run -m "$S" -p "" -n 4 --device cpu
case_ "run -p '<s></s>' --special (only special tokens)" "$L" run -m "$S" -p "<s></s>" --special -n 4 --device cpu
case_ "run -p and --tokens together" "$L" run -m "$S" -p "Once" --tokens 1 -n 2 --device cpu
case_ "run --beams 2 --parallel 2" "$L" run -m "$S" --tokens 1 --beams 2 --parallel 2 -n 2 --device cpu
case_ "run --beams 2 --temp 1" "$L" run -m "$S" --tokens 1 --beams 2 --temp 1 -n 2 --device cpu
case_ "run --ctx 1 --tokens 1 -n 5" "$L" run -m "$S" --tokens 1 --ctx 1 -n 5 --device cpu
case_ "run --ctx 2 --ctx-shift --keep 0 -n 20" "$L" run -m "$S" --tokens 1 --ctx 2 --ctx-shift --keep 0 -n 20 --device cpu
case_ "run --json on an error" "$L" run -m "$S" --tokens 600 --json --device cpu
case_ "run -n 16777216 --ctx 8 (stops: context full)" "$L" run -m "$S" --tokens 1 -n 16777216 --ctx 8 --device cpu
case_ "run -n 16777217" "$L" run -m "$S" --tokens 1 -n 16777217 --device cpu
case_ "run --threads 1.5" "$L" run -m "$S" --tokens 1 -t 1.5 --device cpu
case_ "run --unknown-option" "$L" run -m "$S" --tokens 1 --frobnicate --device cpu
case_ "run -m (missing value)" "$L" run -m
case_ "run -m a directory without config.json" "$L" run -m "$T/tokdir/tokenizer.json" --tokens 1 --device cpu
mkdir -p "$T/d.gguf"; case_ "run -m a directory named x.gguf" "$L" run -m "$T/d.gguf" --tokens 1 --device cpu

# ---- outputs ----
case_ "quantize to 'a file/out.gguf' (a parent that is a file)" "$L" quantize "$S" "$S/out.gguf" --type q8_0
ln -s "$T/q-in.gguf" "$T/q-link.gguf"; cp "$S" "$T/q-in.gguf"
case_ "quantize IN to a symlink to IN" "$L" quantize "$T/q-in.gguf" "$T/q-link.gguf" --type q8_0
case_ "  ... the link is kept and its target loads" sh -c "test -L '$T/q-link.gguf' && '$L' run -m '$T/q-in.gguf' --tokens 1 -n 2 --device cpu"
echo older > "$T/fsz.gguf"
err=$(sh -c "ulimit -f 100; exec '$L' quantize '$S' '$T/fsz.gguf' --type q8_0" 2>&1 >/dev/null); rc=$?
left=$(ls "$T" | grep -c 'fsz.gguf.tmp-'); kept=$(cat "$T/fsz.gguf")
row "quantize under ulimit -f 100 (50 KiB)" "$rc" "$(printf '%s' "$err" | last) [temporary files left: $left; OUT: '$kept']"
rm -f "$T"/fsz.gguf.tmp-*
echo older > "$T/fsz.gguf"
err=$(sh -c "ulimit -f 100; exec '$L' convert '$F/llama-tiny' '$T/fsz.gguf'" 2>&1 >/dev/null); rc=$?
left=$(ls "$T" | grep -c 'fsz.gguf.tmp-'); kept=$(cat "$T/fsz.gguf")
row "convert under ulimit -f 100" "$rc" "$(printf '%s' "$err" | last) [temporary files left: $left; OUT: '$kept']"
rm -f "$T"/fsz.gguf.tmp-*
if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
    err=$(unshare -m sh -c "mkdir -p '$T/small' && mount -t tmpfs -o size=160k tmpfs '$T/small' && echo older > '$T/small/o.gguf' && '$L' quantize '$S' '$T/small/o.gguf' --type q8_0; rc=\$?; echo \"[left: \$(ls '$T/small' | tr '\n' ' ')]\" >&2; exit \$rc" 2>&1 >/dev/null); rc=$?
    row "quantize onto a full 160 KiB tmpfs" "$rc" "$(printf '%s' "$err" | tail -2 | tr '\n' ' ')"
fi
mkdir -p "$T/ro"; chmod 555 "$T/ro"
if command -v setpriv >/dev/null && [ "$(id -u)" = 0 ]; then
    chmod 755 "$T"; cp "$S" "$T/ro-in.gguf"; chmod 644 "$T/ro-in.gguf"
    case_ "quantize into a read-only folder (as nobody)" setpriv --reuid=65534 --regid=65534 --clear-groups "$L" quantize "$T/ro-in.gguf" "$T/ro/out.gguf" --type q8_0
    cp "$S" "$T/unreadable.gguf"; chmod 000 "$T/unreadable.gguf"
    case_ "run -m an unreadable file (as nobody)" setpriv --reuid=65534 --regid=65534 --clear-groups "$L" run -m "$T/unreadable.gguf" --tokens 1 --device cpu
fi

# ---- signals ----
# (a non-interactive shell starts background jobs with SIGINT ignored: restore the default first)
/usr/bin/python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
    "$L" run -m "$S" --tokens 1 -n 10000000 --ctx 64 --ctx-shift --device cpu >/dev/null 2>"$T/sigint.err" & p=$!
sleep 1; kill -INT $p; wait $p; rc=$?
row "SIGINT during a long run" "$rc" "$(last < "$T/sigint.err") (130 = killed by SIGINT)"
"$L" run -m "$S" --tokens 1 -n 10000000 --ctx 64 --ctx-shift --device cpu >/dev/null 2>"$T/sighup.err" & p=$!
sleep 1; kill -HUP $p; wait $p; rc=$?
row "SIGHUP during a long run" "$rc" "$(last < "$T/sighup.err") (129 = killed by SIGHUP)"

# ---- loom serve ----
"$L" serve -m "$S" --port 0 --device cpu --parallel 2 --max-connections 8 --max-tokens 64 >"$T/serve.out" 2>"$T/serve.err" & sp=$!
for i in $(seq 1 100); do grep -q 'listening on' "$T/serve.err" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/serve.err" | head -1)
/usr/bin/python3 - "$port" "$n" <<'EOF'
import socket, sys, json, time, threading
port, n = int(sys.argv[1]), int(sys.argv[2])
def raw(data, wait=5.0, shut=True):
    s = socket.create_connection(('127.0.0.1', port), timeout=wait)
    try:
        s.sendall(data)
        if shut: s.shutdown(socket.SHUT_WR)
        out = b''
        while True:
            try: c = s.recv(65536)
            except socket.timeout: return out + b'[timeout]'
            if not c: return out
            out += c
    finally: s.close()
def status(r):
    line = r.split(b'\r\n', 1)[0].decode('latin1')
    body = r.split(b'\r\n\r\n', 1)[1] if b'\r\n\r\n' in r else b''
    msg = ''
    try: msg = json.loads(body)['error']['message']
    except Exception: msg = body[:80].decode('latin1', 'replace').replace('\n', ' ')
    return (line + ' ' + msg).strip() or '(no answer)'
def post(body, path='/v1/completions', extra=b''):
    if isinstance(body, str): body = body.encode()
    return raw(b'POST ' + path.encode() + b' HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' + extra +
               b'Content-Length: ' + str(len(body)).encode() + b'\r\nConnection: close\r\n\r\n' + body)
def row(d, r):
    global n
    n += 1
    print('| %d | serve: %s | - | %s |' % (n, d, status(r).replace('|', '\\|')))
def healthy():
    return b'200' in raw(b'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n').split(b'\r\n')[0]
row('Content-Length 2^63', raw(b'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 9223372036854775808\r\n\r\n{}'))
row('Content-Length -5', raw(b'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}'))
big = b'{"prompt":"' + b'a' * 1100000 + b'"}'
chunks = b''.join(b'%x\r\n' % len(big[i:i+60000]) + big[i:i+60000] + b'\r\n' for i in range(0, len(big), 60000)) + b'0\r\n\r\n'
row('a chunked body of 1.1 MB (limit 1 MiB)', raw(b'POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n' + chunks, wait=20))
row('chunked, a bad chunk size', raw(b'POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n'))
row('body shorter than Content-Length (client half-closes)', raw(b'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"prompt":"a"', wait=10))
# slowloris: hold every connection with a partial header; then a normal request
held = []
for i in range(8):
    s = socket.create_connection(('127.0.0.1', port)); s.sendall(b'GET /health HTTP/1.1\r\nHost: x\r\n'); held.append(s)
t0 = time.time()
try: r = raw(b'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', wait=3)
except Exception as e: r = ('[%s]' % e).encode()
n += 1
print('| %d | serve: 8 connections (the limit) held open by partial headers, then /health | - | %s |' % (n, (status(r) if r.startswith(b'HTTP') else r.decode()) + ' after %.1f s' % (time.time() - t0)))
for s in held: s.close()
time.sleep(0.5)
row('invalid JSON', post('{"prompt": "a",'))
row('n 1000', post('{"prompt":"Once","n":1000,"max_tokens":2}'))
row('max_tokens 1e18', post('{"prompt":"Once","max_tokens":1e18}'))
row('max_tokens -1', post('{"prompt":"Once","max_tokens":-1}'))
row('temperature NaN (bare NaN token)', post('{"prompt":"Once","temperature":NaN}'))
row('non-UTF-8 bytes in a chat message', post(b'{"messages":[{"role":"user","content":"a\xff\xfeb"}],"max_tokens":2}', '/v1/chat/completions'))
row('escaped lone surrogate \\ud800 in a prompt', post('{"prompt":"a\\ud800b","max_tokens":2}'))
row('messages: []', post('{"messages":[],"max_tokens":2}', '/v1/chat/completions'))
row('JSON nested 100000 deep', post('[' * 100000 + ']' * 100000))
row('prompt a list of 100000 token ids', post('{"prompt":[' + ','.join(['1'] * 100000) + ']}'))
row('stop: 100 strings', post(json.dumps({'prompt': 'Once', 'max_tokens': 2, 'stop': ['x%d' % i for i in range(100)]})))
# 24 streaming requests that hang up at once, 24 plain ones that hang up mid-wait
def hang(stream):
    try:
        s = socket.create_connection(('127.0.0.1', port))
        b = json.dumps({'prompt': 'Once upon', 'max_tokens': 60, 'stream': stream}).encode()
        s.sendall(b'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n' % len(b) + b)
        time.sleep(0.05); s.close()
    except Exception: pass
ths = [threading.Thread(target=hang, args=(i % 2 == 0,)) for i in range(48)]
[t.start() for t in ths]; [t.join() for t in ths]
time.sleep(2)
r = post('{"prompt":"Once upon a time","max_tokens":4}')
row('48 requests cancelled at once (6 at a time: the connection limit), then a normal one', r)
print('HEALTHY' if healthy() else 'UNHEALTHY', file=sys.stderr)
EOF
n=$((n + 18))
kill -TERM $sp; wait $sp; rc=$?
row "serve: SIGTERM after all that" "$rc" "$(last < "$T/serve.err")"

# slowloris: a server of 2 connections, both held by partial headers; the idle timeout (60 s) frees them
"$L" serve -m "$S" --port 0 --device cpu --max-connections 2 >/dev/null 2>"$T/serve2.err" & sp=$!
for i in $(seq 1 100); do grep -q 'listening on' "$T/serve2.err" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/serve2.err" | head -1)
r=$(/usr/bin/python3 - "$port" <<'EOF2'
import socket, sys, time
port = int(sys.argv[1])
held = [socket.create_connection(('127.0.0.1', port)) for _ in range(2)]
for s in held: s.sendall(b'GET /health HTTP/1.1\r\nHost: x\r\n')
def health():
    try:
        s = socket.create_connection(('127.0.0.1', port), timeout=5)
        s.sendall(b'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
        r = s.recv(100); s.close(); return r.split(b'\r\n')[0].decode() or '(closed)'
    except Exception as e: return '[%s]' % e.__class__.__name__
a = health(); time.sleep(65); b = health()
closed = sum(1 for s in held if s.recv(10) == b'')
print('while held: %s; after 65 s: %s (%d of 2 held connections closed by the server)' % (a, b, closed))
EOF2
)
kill -TERM $sp; wait $sp
row "serve --max-connections 2, both held by partial headers, then /health" "-" "$r"
