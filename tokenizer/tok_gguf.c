/* GGUF tokenizer.ggml.* metadata -> loom_tokenizer, following llama.cpp's llama_vocab::load.
 *
 * tokenizer.ggml.model "llama": SentencePiece-style BPE (tokens, scores, token_type).
 * tokenizer.ggml.model "gpt2":  byte-level BPE (tokens, merges, token_type) with the pre-tokenizer
 * regex chosen by tokenizer.ggml.pre. */
#include "tokenizer/tok_internal.h"

#include "formats/gguf.h"

#include <stdlib.h>

/* llama.cpp's regexes for the pre-tokenizers it names (llama-vocab.cpp) */
static const char re_gpt2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char re_llama3[] =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char re_qwen2[] =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Qwen2 normalises to NFC in its tokenizer.json; llama.cpp skips that, loom keeps it so that
 * both files of a model tokenize alike (they differ from llama.cpp only on non-NFC input). */
static const struct {
    const char *name;
    const char *re;
    bool ignore_merges, add_bos, nfc;
} pre_types[] = {
    {"default", re_gpt2, false, false, false},   {"gpt2", re_gpt2, false, false, false},
    {"llama3", re_llama3, true, true, false},    {"llama-v3", re_llama3, true, true, false},
    {"llama-bpe", re_llama3, true, true, false}, {"qwen2", re_qwen2, false, false, true},
    {"deepseek-r1-qwen", re_qwen2, false, false, true},
};

static int key(const gguf_ctx *g, const char *k) { return gguf_find_key(g, k); }

/* Optional token id: -1 when absent or outside the vocabulary (llama.cpp only warns there).
 * Without the key, def is used when that token's text is def_text (SPM's <s>, </s>, <unk>). */
static int32_t get_id(const gguf_ctx *g, const loom_tokenizer *t, const char *k, int32_t def,
                      const char *def_text) {
    int i = key(g, k);
    int64_t v;
    if (i < 0 || !gguf_get_int(g, i, &v))
        v = def >= 0 && def < t->n_vocab && def_text && !strcmp(t->tok[def].text, def_text) ? def : -1;
    return v >= 0 && v < t->n_vocab ? (int32_t)v : -1;
}

static bool get_bool(const gguf_ctx *g, const char *k, bool def) {
    int i = key(g, k);
    bool v;
    return i >= 0 && gguf_get_bool(g, i, &v) ? v : def;
}

loom_tokenizer *loom_tokenizer_from_gguf(const struct gguf_ctx *g) {
    const char *path = gguf_path(g);
    int ki = key(g, "tokenizer.ggml.model");
    const char *model = ki >= 0 ? gguf_get_str(g, ki, NULL) : NULL;
    if (!model) return loom_err_null("%s: no tokenizer.ggml.model: the file carries no tokenizer", path);
    int kind;
    if (!strcmp(model, "llama")) kind = TOK_SPM;
    else if (!strcmp(model, "gpt2")) kind = TOK_BPE;
    else if (!strcmp(model, "none") || !strcmp(model, "no_vocab"))
        return loom_err_null("%s: tokenizer.ggml.model is '%s': the file carries no tokenizer", path,
                             model);
    else
        return loom_err_null("%s: tokenizer.ggml.model '%s' is not supported (loom reads 'llama' "
                             "and 'gpt2')", path, model);

    int kt = key(g, "tokenizer.ggml.tokens");
    if (kt < 0 || gguf_arr_type(g, kt) != GGUF_TYPE_STRING)
        return loom_err_null("%s: tokenizer.ggml.tokens missing or not a string array", path);
    size_t n = gguf_arr_n(g, kt);
    if (n == 0 || n > (1 << 24))
        return loom_err_null("%s: tokenizer.ggml.tokens holds %zu tokens", path, n);

    const float *scores = NULL;
    const int32_t *types = NULL;
    int ks = key(g, "tokenizer.ggml.scores"), ky = key(g, "tokenizer.ggml.token_type");
    if (ks >= 0) {
        if (gguf_arr_type(g, ks) != GGUF_TYPE_FLOAT32 || gguf_arr_n(g, ks) != n)
            return loom_err_null("%s: tokenizer.ggml.scores is not %zu float32 values", path, n);
        scores = gguf_arr_data(g, ks);
    }
    if (ky >= 0) {
        if (gguf_arr_type(g, ky) != GGUF_TYPE_INT32 || gguf_arr_n(g, ky) != n)
            return loom_err_null("%s: tokenizer.ggml.token_type is not %zu int32 values", path, n);
        types = gguf_arr_data(g, ky);
    }

    loom_tokenizer *t = tok_new(path, kind, (int)n);
    if (!t) return NULL;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *s = gguf_arr_str(g, kt, i, &len);
        float score = 0;
        int32_t type = LOOM_TOKEN_NORMAL;
        if (scores) memcpy(&score, (const char *)scores + 4 * i, 4); /* may be unaligned */
        if (types) memcpy(&type, (const char *)types + 4 * i, 4);
        if (type < LOOM_TOKEN_UNDEFINED || type > LOOM_TOKEN_BYTE) {
            loom_err("%s: token %zu has unknown token_type %d", path, i, type);
            goto fail;
        }
        if (!s || tok_set(t, (int32_t)i, s, len, score, type)) goto fail;
    }

    if (kind == TOK_BPE) {
        int kp = key(g, "tokenizer.ggml.pre");
        const char *pre = kp >= 0 ? gguf_get_str(g, kp, NULL) : NULL;
        if (!pre) pre = "default";
        size_t p = 0;
        while (p < sizeof pre_types / sizeof pre_types[0] && strcmp(pre_types[p].name, pre)) p++;
        if (p == sizeof pre_types / sizeof pre_types[0]) {
            loom_err("%s: pre-tokenizer tokenizer.ggml.pre = '%s' is not supported (loom knows "
                     "default, gpt2, llama-bpe/llama3, qwen2)", path, pre);
            goto fail;
        }
        if (tok_add_split(t, pre_types[p].re, strlen(pre_types[p].re), TOK_SPLIT_ISOLATED))
            goto fail;
        t->ignore_merges = pre_types[p].ignore_merges;
        t->wants_bos = pre_types[p].add_bos;
        t->normalizer = pre_types[p].nfc ? TOK_NORM_NFC : TOK_NORM_NONE;
        if (!(t->pre_name = strdup(pre))) {
            loom_err("%s: out of memory", path);
            goto fail;
        }
    } else {
        t->wants_bos = true;
        t->add_space_prefix = get_bool(g, "tokenizer.ggml.add_space_prefix", true);
    }
    if (tok_finish(t)) goto fail;

    if (kind == TOK_BPE) {
        int km = key(g, "tokenizer.ggml.merges");
        if (km < 0 || gguf_arr_type(g, km) != GGUF_TYPE_STRING) {
            loom_err("%s: tokenizer.ggml.merges missing or not a string array", path);
            goto fail;
        }
        size_t nm = gguf_arr_n(g, km);
        for (size_t i = 0; i < nm && i < UINT32_MAX; i++) {
            size_t len;
            const char *m = gguf_arr_str(g, km, i, &len);
            const char *sp = m ? memchr(m, ' ', len) : NULL;
            if (!sp) {
                loom_err("%s: merge %zu is not two tokens separated by a space", path, i);
                goto fail;
            }
            if (tok_add_merge(t, m, (size_t)(sp - m), sp + 1, len - (size_t)(sp - m) - 1,
                              (uint32_t)i) < 0)
                goto fail;
        }
    }

    bool spm = kind == TOK_SPM;
    t->bos = get_id(g, t, "tokenizer.ggml.bos_token_id", 1, spm ? "<s>" : NULL);
    t->eos = get_id(g, t, "tokenizer.ggml.eos_token_id", 2, spm ? "</s>" : NULL);
    t->unk = get_id(g, t, "tokenizer.ggml.unknown_token_id", 0, spm ? "<unk>" : NULL);
    t->pad = get_id(g, t, "tokenizer.ggml.padding_token_id", -1, NULL);
    t->eot = get_id(g, t, "tokenizer.ggml.eot_token_id", -1, NULL);
    t->wants_bos = get_bool(g, "tokenizer.ggml.add_bos_token", t->wants_bos);

    int kc = key(g, "tokenizer.chat_template");
    const char *tmpl = kc >= 0 ? gguf_get_str(g, kc, NULL) : NULL;
    if (tmpl && !(t->chat_template = strdup(tmpl))) {
        loom_err("%s: out of memory", path);
        goto fail;
    }
    return t;
fail:
    loom_tokenizer_free(t);
    return NULL;
}
