#!/usr/bin/env python3
"""Regenerate fuzz/vocab/ and fuzz/corpus/ from tests/fixtures (run from the repository root:
`python3 fuzz/make_seeds.py build-rel/loom`; the loom binary converts the tiny HF seeds to GGUF).

Everything here is small on purpose (libFuzzer mutates faster on small inputs; the whole corpus
stays well under 2 MB):
  vocab/qwen-small, vocab/llama3-small   byte-level BPE tokenizer.json cut down from the Qwen3 and
                                         LLaMA 3 vocabularies (all 256 byte tokens, the first ids,
                                         the merges among them, the added tokens), for fuzz_tokenize
  corpus/safetensors/*   config.json + SEP + model.safetensors [+ SEP + index.json], tiny models
  corpus/gguf/*          the same models converted to GGUF, stories260K's vocabulary alone and
                         merged into a tiny model, a GGUF with a gpt2 (BPE) tokenizer, and
                         qblocks: one [2, 256] tensor of each quantised type loom reads, random
                         bytes with finite f16 scales (for the block decoders)
  corpus/tokenizer_json/*  tokenizer.json [+ SEP + tokenizer_config.json]
  corpus/tokenize/*      selector byte + text: llama.cpp's tokenizer test cases
"""
import json
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tempfile

SEP = b"\n#loom-fuzz-part#\n"  # must match fuzz/fuzz_util.h
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(ROOT, "fuzz")


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


# ---- small byte-level BPE vocabularies --------------------------------------------------------
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def small_bpe(name, keep_ids, n_added):
    t = json.loads(lzma.open(os.path.join(FX, "tokenizer", name, "tokenizer.json.xz")).read())
    vocab = t["model"]["vocab"]
    byte_chars = set(bytes_to_unicode())
    kept = sorted((i, s) for s, i in vocab.items() if i < keep_ids or s in byte_chars)
    new = {s: k for k, (i, s) in enumerate(kept)}
    merges = []
    for m in t["model"]["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ", 1)
        if a in new and b in new and a + b in new:
            merges.append(m)
    t["model"]["vocab"] = new
    t["model"]["merges"] = merges
    added = t["added_tokens"][:n_added]
    for k, a in enumerate(added):
        a["id"] = len(new) + k
    t["added_tokens"] = added
    # the post-processor may name ids of the big vocabulary (TemplateProcessing): renumber by content
    pp = json.dumps(t.get("post_processor"))
    for a in added:
        pp = pp.replace('"ids": [%d]' % vocab.get(a["content"], -1), '"ids": [%d]' % a["id"])
    t["post_processor"] = json.loads(pp)
    return t


def tok_config(name, added):
    c = json.load(open(os.path.join(FX, "tokenizer", name, "tokenizer_config.json")))
    keep = {k: c[k] for k in ("bos_token", "eos_token", "add_bos_token", "chat_template") if k in c}
    if isinstance(keep.get("chat_template"), str):
        keep["chat_template"] = keep["chat_template"][:400]
    names = {a["content"] for a in added}
    for k in ("bos_token", "eos_token"):
        if isinstance(keep.get(k), str) and keep[k] not in names:
            keep[k] = added[0]["content"]
    return keep


# ---- tiny models -------------------------------------------------------------------------------
def st_bytes(tensors):
    """safetensors: [(name, dtype, shape, bytes)]"""
    hdr, off = {"__metadata__": {"format": "pt"}}, 0
    for name, dt, shape, data in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(t[3] for t in tensors)


def floats(n, seed, dt="F32"):
    x, out = seed * 2654435761 % 2**32, []
    for _ in range(n):
        x = (x * 1103515245 + 12345) % 2**31
        out.append((x / 2**31 - 0.5) * 0.2)
    if dt == "F32":
        return struct.pack("<%df" % n, *out)
    return b"".join(struct.pack("<f", v)[2:] for v in out)  # bf16: the high half


def tiny_model(kind, dtype="F32", tied=False, rope=None, vocab=32):
    E, F, H, KV, L = 8, 16, 2, 1, 1
    hd = E // H
    cfg = {"architectures": [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[kind]],
           "model_type": kind, "hidden_size": E, "intermediate_size": F, "num_hidden_layers": L,
           "num_attention_heads": H, "num_key_value_heads": KV, "vocab_size": vocab, "rms_norm_eps": 1e-6,
           "max_position_embeddings": 64, "rope_theta": 10000.0, "tie_word_embeddings": tied,
           "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32" if dtype == "F32" else "bfloat16"}
    if kind == "qwen3":
        cfg["head_dim"] = hd
    if rope:
        cfg["rope_scaling"] = rope
    ts, seed = [], 1

    def add(name, shape, norm=False):
        nonlocal seed
        n = 1
        for d in shape:
            n *= d
        seed += 1
        data = struct.pack("<%df" % n, *([1.0] * n)) if norm else floats(n, seed)
        dt = "F32"
        if dtype == "BF16":
            dt = "BF16"
            data = b"".join(data[i + 2:i + 4] for i in range(0, len(data), 4))
        ts.append((name, dt, shape, data))

    add("model.embed_tokens.weight", [vocab, E])
    add("model.norm.weight", [E], norm=True)
    if not tied:
        add("lm_head.weight", [vocab, E])
    for l in range(L):
        p = "model.layers.%d." % l
        add(p + "input_layernorm.weight", [E], norm=True)
        add(p + "post_attention_layernorm.weight", [E], norm=True)
        add(p + "self_attn.q_proj.weight", [H * hd, E])
        add(p + "self_attn.k_proj.weight", [KV * hd, E])
        add(p + "self_attn.v_proj.weight", [KV * hd, E])
        add(p + "self_attn.o_proj.weight", [E, H * hd])
        if kind == "qwen2":
            add(p + "self_attn.q_proj.bias", [H * hd])
            add(p + "self_attn.k_proj.bias", [KV * hd])
            add(p + "self_attn.v_proj.bias", [KV * hd])
        if kind == "qwen3":
            add(p + "self_attn.q_norm.weight", [hd], norm=True)
            add(p + "self_attn.k_norm.weight", [hd], norm=True)
        add(p + "mlp.gate_proj.weight", [F, E])
        add(p + "mlp.up_proj.weight", [F, E])
        add(p + "mlp.down_proj.weight", [E, F])
    return cfg, st_bytes(ts)


# ---- GGUF (just enough to cut and merge key/value sections) --------------------------------------
SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def gguf_split(d):
    """-> (n_tensors, [kv bytes...], tensor-info bytes, data section bytes, alignment)"""
    magic, ver, nt, nkv = struct.unpack_from("<IIQQ", d, 0)
    p, kvs = 24, []

    def skip_val(p, t):
        if t in SCALAR:
            return p + SCALAR[t]
        if t == 8:
            return p + 8 + struct.unpack_from("<Q", d, p)[0]
        at, n = struct.unpack_from("<IQ", d, p)
        p += 12
        for _ in range(n):
            p = skip_val(p, at)
        return p

    align = 32
    for _ in range(nkv):
        s = p
        kl = struct.unpack_from("<Q", d, p)[0]
        key = d[p + 8:p + 8 + kl].decode()
        p += 8 + kl
        t = struct.unpack_from("<I", d, p)[0]
        p = skip_val(p + 4, t)
        if key == "general.alignment":
            align = struct.unpack_from("<I", d, p - 4)[0]
        kvs.append((key, d[s:p]))
    s = p
    for _ in range(nt):
        nl = struct.unpack_from("<Q", d, p)[0]
        p += 8 + nl
        nd = struct.unpack_from("<I", d, p)[0]
        p += 4 + 8 * nd + 4 + 8
    tinfo = d[s:p]
    data_off = (p + align - 1) // align * align
    return nt, kvs, tinfo, d[data_off:], align


def gguf_join(nt, kvs, tinfo, data, align=32):
    h = struct.pack("<IIQQ", 0x46554747, 3, nt, len(kvs)) + b"".join(kv for _, kv in kvs) + tinfo
    h += b"\0" * ((align - len(h) % align) % align)
    return h + data


# ggml type id -> (bytes per 256 elements, byte offsets of the f16 scales in a block, block bytes)
QTYPES = {8: (272, (0,), 34), 2: (144, (0,), 18), 12: (144, (0, 2), 144), 14: (210, (208,), 210),
          3: (160, (0, 2), 20), 6: (176, (0,), 22), 7: (192, (0, 2), 24), 10: (84, (80, 82), 84),
          11: (110, (108,), 110), 13: (176, (0, 2), 176), 20: (144, (0,), 18), 23: (136, (0,), 136)}


def qblocks_seed():
    import random
    rnd = random.Random(17)
    kv = struct.pack("<Q", 20) + b"general.architecture" + struct.pack("<IQ", 8, 5) + b"llama"
    tinfo, data = b"", b""
    for k, (t, (b256, scales, bb)) in enumerate(sorted(QTYPES.items())):
        name = ("blk.0.q%d.weight" % t).encode()
        tinfo += struct.pack("<Q", len(name)) + name + struct.pack("<IQQIQ", 2, 256, 2, t, len(data))
        blob = bytearray(rnd.getrandbits(8) for _ in range(2 * b256))
        for b0 in range(0, len(blob), bb):
            for o in scales:  # finite f16: exponent below 31
                blob[b0 + o + 1] &= 0x7b
        data += bytes(blob) + b"\0" * ((32 - len(blob) % 32) % 32)
    return gguf_join(len(QTYPES), [("general.architecture", kv)], tinfo, data)


def main():
    loom = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build-rel", "loom")
    corpus = os.path.join(OUT, "corpus")
    shutil.rmtree(corpus, ignore_errors=True)

    # vocabularies
    vocabs = {}
    for name, dst, keep, n_added in (("qwen3", "qwen-small", 600, 26), ("llama3", "llama3-small", 600, 12)):
        t = small_bpe(name, keep, n_added)
        cfg = tok_config(name, t["added_tokens"])
        tj = json.dumps(t, ensure_ascii=False, separators=(",", ":")).encode()
        cj = json.dumps(cfg, ensure_ascii=False).encode()
        write(os.path.join(OUT, "vocab", dst, "tokenizer.json"), tj)
        write(os.path.join(OUT, "vocab", dst, "tokenizer_config.json"), cj)
        write(os.path.join(corpus, "tokenizer_json", dst), tj + SEP + cj)
        write(os.path.join(corpus, "tokenizer_json", dst + "-alone"), tj)
        vocabs[dst] = (tj, cj, len(t["model"]["vocab"]) + len(t["added_tokens"]))
    # minimal hand-written tokenizer.json files: every pre-tokenizer and normalizer kind
    bu = bytes_to_unicode()
    base_vocab = {c: i for i, c in enumerate(bu)}
    base_vocab.update({"Ġt": 256, "he": 257, "Ġthe": 258, "in": 259})
    variants = [
        {"normalizer": None, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}},
        {"normalizer": {"type": "NFKC"}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}},
        {"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFD"}]}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\s+|\\p{N}+"}, "behavior": "Removed", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}},
    ]
    for k, v in enumerate(variants):
        t = {"version": "1.0", "added_tokens": [
                {"id": 260, "content": "<|end|>", "special": True, "lstrip": False, "rstrip": False},
                {"id": 261, "content": "<tool>", "special": False, "lstrip": True, "rstrip": True}],
             "normalizer": v["normalizer"], "pre_tokenizer": v["pre_tokenizer"],
             "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|end|>", "type_id": 0}},
                                {"Sequence": {"id": "A", "type_id": 0}}], "pair": [],
                                "special_tokens": {"<|end|>": {"id": "<|end|>", "ids": [260], "tokens": ["<|end|>"]}}},
             "decoder": {"type": "ByteLevel"},
             "model": {"type": "BPE", "ignore_merges": k == 1, "vocab": base_vocab,
                       "merges": (["Ġ t", "h e", "Ġt he", "i n"] if k != 2 else [["Ġ", "t"], ["h", "e"], ["Ġt", "he"], ["i", "n"]])}}
        write(os.path.join(corpus, "tokenizer_json", "mini-%d" % k),
              json.dumps(t, ensure_ascii=False).encode() + SEP + b'{"add_bos_token": true, "eos_token": "<|end|>"}')

    # tiny HF models -> safetensors seeds, and (through loom convert) GGUF seeds
    models = {
        "llama": tiny_model("llama"),
        "llama-bf16": tiny_model("llama", dtype="BF16"),
        "llama-rope3": tiny_model("llama", rope={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
        "llama-linear": tiny_model("llama", tied=True, rope={"type": "linear", "factor": 2.0}),
        "qwen2": tiny_model("qwen2", tied=True),
        "qwen3": tiny_model("qwen3"),
        "qwen2-bpe": tiny_model("qwen2", tied=True, vocab=vocabs["qwen-small"][2]),
    }
    tmp = tempfile.mkdtemp()
    try:
        for name, (cfg, st) in models.items():
            cj = json.dumps(cfg, indent=1).encode()
            write(os.path.join(corpus, "safetensors", name), cj + SEP + st)
            d = os.path.join(tmp, name)
            os.makedirs(d)
            write(os.path.join(d, "config.json"), cj)
            write(os.path.join(d, "model.safetensors"), st)
            if name == "qwen2-bpe":
                write(os.path.join(d, "tokenizer.json"), vocabs["qwen-small"][0])
                write(os.path.join(d, "tokenizer_config.json"), vocabs["qwen-small"][1])
            if name == "qwen3":
                continue  # loom convert writes llama and qwen2 only
            g = os.path.join(tmp, name + ".gguf")
            subprocess.run([loom, "convert", d, g], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            write(os.path.join(corpus, "gguf", name), open(g, "rb").read())
        # a sharded checkpoint: the index names the one shard
        cfg, st = models["llama"]
        idx = {"metadata": {"total_size": len(st)}, "weight_map": {n: "model.safetensors" for n in json.loads(st[8:8 + struct.unpack("<Q", st[:8])[0]]) if n != "__metadata__"}}
        write(os.path.join(corpus, "safetensors", "llama-index"), json.dumps(cfg).encode() + SEP + st + SEP + json.dumps(idx).encode())
    finally:
        shutil.rmtree(tmp)
    # stories260K: its vocabulary alone, and merged into the tiny llama
    nt, kvs, tinfo, data, align = gguf_split(open(os.path.join(FX, "stories260K.gguf"), "rb").read())
    tok_kvs = [kv for kv in kvs if kv[0].startswith("tokenizer.") or kv[0] == "general.architecture"]
    write(os.path.join(corpus, "gguf", "stories-vocab"), gguf_join(0, tok_kvs, b"", b""))
    nt, kvs, tinfo, data, align = gguf_split(open(os.path.join(corpus, "gguf", "llama"), "rb").read())
    kvs = [kv for kv in kvs if not kv[0].startswith("tokenizer.")] + [kv for kv in tok_kvs if kv[0] != "general.architecture"]
    write(os.path.join(corpus, "gguf", "llama-stories-vocab"), gguf_join(nt, kvs, tinfo, data, align))
    write(os.path.join(corpus, "gguf", "qblocks"), qblocks_seed())

    # tokenize: selector byte (vocabulary in bits 0-1, flags in bits 2-4) + one test case
    for inp, sel in (("ggml-vocab-llama-spm.gguf.inp", (0, 1)), ("ggml-vocab-qwen2.gguf.inp", (2,)),
                     ("ggml-vocab-llama-bpe.gguf.inp", (3,))):
        cases = open(os.path.join(FX, "tokenizer", inp), "rb").read().split(b"\n__ggml_vocab_test__\n")
        for k, c in enumerate(cases):
            if not c:
                continue
            for v in sel:
                flags = (k % 8) << 2
                write(os.path.join(corpus, "tokenize", "%s-%d-%02d" % (inp.split(".")[0][11:], v, k)), bytes([v | flags]) + c)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print("fuzz/: %d bytes in all" % total)


if __name__ == "__main__":
    main()
