/* HuggingFace tokenizer.json (+ tokenizer_config.json) -> loom_tokenizer.
 *
 * Supported: model "BPE" with a ByteLevel pre-tokenizer (GPT-2 style byte-level BPE: Qwen2/3,
 * LLaMA 3, GPT-2), normalizer null/NFC/NFD/NFKC/NFKD, pre-tokenizers Split (regex or string,
 * any behaviour but Contiguous, not inverted), ByteLevel and Digits, merges as "a b" strings or
 * ["a", "b"] pairs, ignore_merges, added tokens with lstrip/rstrip. Anything else is refused
 * with a message naming it rather than tokenized differently from the reference. */
#include "tokenizer/tok_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* GPT-2's own pattern, which ByteLevel applies when use_regex is true */
static const char gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Qwen2's and LLaMA 3's Split regexes as their tokenizer.json files spell them */
static const char hf_qwen2_regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char hf_llama3_regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* The GGUF tokenizer.ggml.pre whose pipeline this one is, or NULL. */
static const char *gguf_pre_name(const loom_tokenizer *t) {
    if (t->n_steps != 1 || t->steps[0].kind != TOK_STEP_SPLIT ||
        t->steps[0].behavior != TOK_SPLIT_ISOLATED)
        return NULL;
    const char *src = t->steps[0].src;
    if (!strcmp(src, hf_qwen2_regex) && t->normalizer == TOK_NORM_NFC && !t->ignore_merges)
        return "qwen2";
    if (!strcmp(src, hf_llama3_regex) && t->normalizer == TOK_NORM_NONE && t->ignore_merges)
        return "llama-bpe";
    if (!strcmp(src, gpt2_regex) && t->normalizer == TOK_NORM_NONE && !t->ignore_merges)
        return "gpt2";
    return NULL;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = loom_fopen_regular(path);
    if (!f) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    /* start at the file's size (+1 so the read that finds EOF needs no growth): a fixed 1 MiB
     * first buffer cost every small tokenizer_config.json a megabyte; the doubling below still
     * handles pipes and files that grow while read */
    struct stat sb;
    size_t first = 64 << 10;
    if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size >= 0 &&
        (uint64_t)sb.st_size < ((uint64_t)1 << 31))
        first = (size_t)sb.st_size + 1;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : first;
            if (cap > ((size_t)1 << 31)) {
                fclose(f);
                free(buf);
                return loom_err_null("%s: larger than 2 GiB, not a tokenizer file", path);
            }
            char *q = loom_realloc(buf, cap + 1);
            if (!q) {
                fclose(f);
                free(buf);
                return NULL;
            }
            buf = q;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return loom_err_null("%s: read error", path);
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static cJSON *parse_json_file(const char *path) {
    size_t len = 0;
    char *text = read_file(path, &len);
    if (!text) return NULL;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= text && at <= text + len ? (size_t)(at - text) : 0;
        free(text);
        return loom_err_null("%s: not valid JSON (near byte %zu)", path, off);
    }
    free(text);
    return root;
}

static const char *type_of(const cJSON *o) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

static bool get_bool(const cJSON *o, const char *key, bool def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

/* A token named in tokenizer_config.json: "text" or {"content": "text", ...}. */
static const char *token_name(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(c)) return c->valuestring;
    }
    return NULL;
}

static int add_literal_split(loom_tokenizer *t, const char *s, int behavior) {
    size_t n = strlen(s);
    char *re = loom_malloc(2 * n + 1);
    if (!re) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            re[o++] = '\\';
        re[o++] = (char)c;
    }
    int rc = tok_add_split(t, re, o, behavior);
    free(re);
    return rc;
}

static int parse_behavior(loom_tokenizer *t, const cJSON *o, int *out) {
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "behavior");
    const char *s = cJSON_IsString(b) ? b->valuestring : "Isolated";
    if (!strcmp(s, "Isolated")) *out = TOK_SPLIT_ISOLATED;
    else if (!strcmp(s, "Removed")) *out = TOK_SPLIT_REMOVED;
    else if (!strcmp(s, "MergedWithPrevious")) *out = TOK_SPLIT_MERGED_PREV;
    else if (!strcmp(s, "MergedWithNext")) *out = TOK_SPLIT_MERGED_NEXT;
    else return loom_err("%s: pre-tokenizer Split behavior '%s' is not supported", t->path, s);
    return 0;
}

/* One pre-tokenizer; *byte_level is set once ByteLevel has been seen. */
static int parse_pretok(loom_tokenizer *t, const cJSON *p, bool *byte_level) {
    const char *type = type_of(p);
    if (!type) return loom_err("%s: pre_tokenizer without a type", t->path);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        if (!cJSON_IsArray(list)) return loom_err("%s: Sequence pre_tokenizer without a list", t->path);
        const cJSON *e;
        cJSON_ArrayForEach(e, list) if (parse_pretok(t, e, byte_level)) return -1;
        return 0;
    }
    /* a split after the byte map would run on GPT-2 code points, not text: refuse it */
    if (*byte_level)
        return loom_err("%s: pre-tokenizer %s after ByteLevel is not supported", t->path, type);
    if (!strcmp(type, "ByteLevel")) {
        *byte_level = true;
        if (get_bool(p, "add_prefix_space", false) && tok_add_prefix_space(t)) return -1;
        if (get_bool(p, "use_regex", true) &&
            tok_add_split(t, gpt2_regex, sizeof gpt2_regex - 1, TOK_SPLIT_ISOLATED))
            return -1;
        return 0;
    }
    if (!strcmp(type, "Split")) {
        if (get_bool(p, "invert", false))
            return loom_err("%s: inverted Split pre-tokenizer is not supported", t->path);
        int behavior = TOK_SPLIT_ISOLATED;
        if (parse_behavior(t, p, &behavior)) return -1;
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
        if (cJSON_IsString(re)) {
            return tok_add_split(t, re->valuestring, strlen(re->valuestring), behavior);
        }
        if (cJSON_IsString(str)) return add_literal_split(t, str->valuestring, behavior);
        return loom_err("%s: Split pre-tokenizer without a Regex or String pattern", t->path);
    }
    if (!strcmp(type, "Digits")) {
        const char *re = get_bool(p, "individual_digits", false) ? "\\p{N}" : "\\p{N}+";
        return tok_add_split(t, re, strlen(re), TOK_SPLIT_ISOLATED);
    }
    return loom_err("%s: pre-tokenizer type '%s' is not supported", t->path, type);
}

static int parse_normalizer(loom_tokenizer *t, const cJSON *n) {
    if (!n || cJSON_IsNull(n)) return 0;
    const char *type = type_of(n);
    if (!type) return loom_err("%s: normalizer without a type", t->path);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers"), *e;
        if (!cJSON_IsArray(list)) return loom_err("%s: Sequence normalizer without a list", t->path);
        if (cJSON_GetArraySize(list) > 1)
            return loom_err("%s: a Sequence of %d normalizers is not supported", t->path,
                            cJSON_GetArraySize(list));
        cJSON_ArrayForEach(e, list) if (parse_normalizer(t, e)) return -1;
        return 0;
    }
    static const struct { const char *name; int v; } forms[] = {
        {"NFC", TOK_NORM_NFC}, {"NFD", TOK_NORM_NFD}, {"NFKC", TOK_NORM_NFKC}, {"NFKD", TOK_NORM_NFKD}};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++)
        if (!strcmp(type, forms[i].name)) {
            t->normalizer = forms[i].v;
            return 0;
        }
    return loom_err("%s: normalizer '%s' is not supported", t->path, type);
}

static int parse_merges(loom_tokenizer *t, const cJSON *merges) {
    if (!cJSON_IsArray(merges)) return loom_err("%s: model.merges is not a list", t->path);
    uint32_t rank = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        const char *a, *b;
        size_t al, bl;
        if (cJSON_IsString(m)) { /* "a b" */
            a = m->valuestring;
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return loom_err("%s: merge %u '%s' is not two tokens separated by one space",
                                t->path, rank, a);
            al = (size_t)(sp - a);
            b = sp + 1;
            bl = strlen(b);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 1))) { /* ["a", "b"] */
            a = cJSON_GetArrayItem(m, 0)->valuestring;
            b = cJSON_GetArrayItem(m, 1)->valuestring;
            al = strlen(a);
            bl = strlen(b);
        } else {
            return loom_err("%s: merge %u is neither \"a b\" nor [\"a\", \"b\"]", t->path, rank);
        }
        if (tok_add_merge(t, a, al, b, bl, rank) < 0) return -1;
        rank++;
    }
    return 0;
}

static int32_t lookup_name(const loom_tokenizer *t, const char *s) {
    return s ? tok_map_get(t, s, strlen(s)) : -1;
}

/* tokenizer_config.json: BOS/EOS names, add_bos_token, the chat template */
static int apply_config(loom_tokenizer *t, const char *cfg_path) {
    cJSON *cfg = parse_json_file(cfg_path);
    if (!cfg) return -1;
    int rc = 0;
    if (!cJSON_IsObject(cfg)) {
        rc = loom_err("%s: not a JSON object", cfg_path);
        goto out;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "bos_token");
    if (v && !cJSON_IsNull(v)) t->bos = lookup_name(t, token_name(v));
    v = cJSON_GetObjectItemCaseSensitive(cfg, "eos_token");
    if (v && !cJSON_IsNull(v)) t->eos = lookup_name(t, token_name(v));
    v = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
    if (cJSON_IsBool(v)) t->wants_bos = cJSON_IsTrue(v);
    v = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    const char *tmpl = NULL;
    if (cJSON_IsString(v)) {
        tmpl = v->valuestring;
    } else if (cJSON_IsArray(v)) { /* [{"name": ..., "template": ...}]: take "default" */
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *tp = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (!cJSON_IsString(tp)) continue;
            if (!tmpl || (cJSON_IsString(name) && !strcmp(name->valuestring, "default")))
                tmpl = tp->valuestring;
        }
    }
    if (tmpl && !(t->chat_template = strdup(tmpl))) rc = loom_err("%s: out of memory", cfg_path);
out:
    cJSON_Delete(cfg);
    return rc;
}

loom_tokenizer *tok_load_json(const char *path, const char *config_path) {
    cJSON *root = parse_json_file(path);
    if (!root) return NULL;
    loom_tokenizer *t = NULL;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) {
        loom_err("%s: no \"model\" object (is this a tokenizer.json?)", path);
        goto fail;
    }
    const char *mtype = type_of(model);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (mtype ? strcmp(mtype, "BPE") != 0 : !merges) {
        loom_err("%s: tokenizer model type '%s' is not supported (loom reads BPE tokenizers)", path,
                 mtype ? mtype : "(none)");
        goto fail;
    }
    if (!cJSON_IsObject(vocab)) {
        loom_err("%s: model.vocab is not an object", path);
        goto fail;
    }
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
        if (cJSON_IsString(a) && a->valuestring[0]) {
            loom_err("%s: BPE %s '%s' is not supported", path, affixes[i], a->valuestring);
            goto fail;
        }
    }

    /* the id range covers the vocabulary and the added tokens */
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *e;
    double max_id = -1;
    cJSON_ArrayForEach(e, vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= (1 << 24) ||
            e->valuedouble != (int)e->valuedouble) {
            loom_err("%s: vocab entry '%s' has no valid id", path, e->string);
            goto fail;
        }
        if (e->valuedouble > max_id) max_id = e->valuedouble;
    }
    if (added && !cJSON_IsArray(added)) {
        loom_err("%s: added_tokens is not a list", path);
        goto fail;
    }
    cJSON_ArrayForEach(e, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= (1 << 24) ||
            !cJSON_IsString(content) || !content->valuestring[0]) {
            loom_err("%s: added_tokens entry without a valid id and content", path);
            goto fail;
        }
        if (id->valuedouble > max_id) max_id = id->valuedouble;
    }
    if (max_id < 0) {
        loom_err("%s: empty vocabulary", path);
        goto fail;
    }
    /* tables are sized by the largest id: a few bytes of JSON naming id 16777215 must not cost
     * a gigabyte, so ids may leave only a few holes (real vocabularies are dense) */
    int n_entries = cJSON_GetArraySize(vocab) + cJSON_GetArraySize(added);
    if (max_id >= 2.0 * n_entries + 1024) {
        loom_err("%s: token ids reach %.0f but there are only %d tokens", path, max_id, n_entries);
        goto fail;
    }

    t = tok_new(path, TOK_BPE, (int)max_id + 1);
    if (!t) goto fail;
    cJSON_ArrayForEach(e, vocab) {
        if (tok_set(t, (int32_t)e->valuedouble, e->string, strlen(e->string), 0, LOOM_TOKEN_NORMAL))
            goto fail;
    }
    cJSON_ArrayForEach(e, added) {
        int32_t id = (int32_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
        const char *content = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
        int type = get_bool(e, "special", false) ? LOOM_TOKEN_CONTROL : LOOM_TOKEN_USER_DEFINED;
        if (tok_set(t, id, content, strlen(content), 0, type)) goto fail;
        t->tok[id].lstrip = get_bool(e, "lstrip", false);
        t->tok[id].rstrip = get_bool(e, "rstrip", false);
    }

    if (parse_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"))) goto fail;
    bool byte_level = false;
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (pre && !cJSON_IsNull(pre) && parse_pretok(t, pre, &byte_level)) goto fail;
    if (!byte_level) {
        loom_err("%s: BPE without a ByteLevel pre-tokenizer (SentencePiece-style tokenizer.json) is "
                 "not supported; use the GGUF vocabulary", path);
        goto fail;
    }
    t->ignore_merges = get_bool(model, "ignore_merges", false);
    const char *pre_name = gguf_pre_name(t);
    if (pre_name && !(t->pre_name = strdup(pre_name))) {
        loom_err("%s: out of memory", path);
        goto fail;
    }
    if (tok_finish(t)) goto fail;
    if (parse_merges(t, merges)) goto fail;
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(unk)) t->unk = lookup_name(t, unk->valuestring);

    /* a TemplateProcessing post-processor that starts with a special token adds BOS */
    const cJSON *post = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    const char *ptype = post ? type_of(post) : NULL;
    if (ptype && !strcmp(ptype, "Sequence")) { /* LLaMA 3: [ByteLevel, TemplateProcessing] */
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(post, "processors"), *p;
        cJSON_ArrayForEach(p, list) {
            const char *pt = type_of(p);
            if (pt && !strcmp(pt, "TemplateProcessing")) post = p, ptype = pt;
        }
    }
    if (ptype && !strcmp(ptype, "TemplateProcessing")) {
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(post, "single");
        const cJSON *first = cJSON_GetArrayItem(single, 0);
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(first, "SpecialToken");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(sp, "id");
        if (cJSON_IsString(id)) {
            t->bos = lookup_name(t, id->valuestring);
            t->wants_bos = t->bos >= 0;
        }
    }
    if (config_path && apply_config(t, config_path)) goto fail;
    cJSON_Delete(root);
    return t;
fail:
    loom_tokenizer_free(t);
    cJSON_Delete(root);
    return NULL;
}
