/* Tokenizer core: the vocabulary table and its hash maps, loading dispatch, the added-token pass
 * of encode, decode and the streaming decoder. The merge engines live in tok_bpe.c/tok_spm.c. */
#include "tokenizer/tok_internal.h"

#include "formats/gguf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <xxhash.h>

/* ---- small helpers ---------------------------------------------------------------------------- */

int tok_ids_push(tok_ids *a, int32_t id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = loom_realloc(a->v, cap * sizeof *v);
        if (!v) return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return 0;
}

/* GPT-2's reversible byte -> code point map: printable Latin-1 bytes stand for themselves, the
 * other 68 (controls, space, 0x7f-0xa0, soft hyphen) move to U+0100.. in byte order. */
static bool byte_is_self(unsigned b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

uint32_t tok_byte_to_cp(uint8_t b) {
    if (byte_is_self(b)) return b;
    if (b <= 32) return 256u + b;
    if (b >= 127 && b <= 160) return 256u + 33 + (b - 127u);
    return 256u + 67; /* 173 */
}

int tok_cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_self(cp) ? (int)cp : -1;
    if (cp < 256 + 33) return (int)(cp - 256);
    if (cp < 256 + 67) return (int)(127 + cp - (256 + 33));
    if (cp == 256 + 67) return 173;
    return -1;
}

int tok_utf8_len(uint8_t c) {
    if (c < 0x80) return 1;
    if ((c & 0xe0) == 0xc0) return 2;
    if ((c & 0xf0) == 0xe0) return 3;
    if ((c & 0xf8) == 0xf0) return 4;
    return 1; /* continuation or invalid: treat as one byte */
}

int tok_utf8_put(char *dst, uint32_t cp) {
    if (cp < 0x80) {
        dst[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        dst[0] = (char)(0xc0 | (cp >> 6));
        dst[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xe0 | (cp >> 12));
        dst[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        dst[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    dst[0] = (char)(0xf0 | (cp >> 18));
    dst[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    dst[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Valid range of the second byte after lead c (RFC 3629: no overlongs, surrogates, > U+10FFFF). */
static bool utf8_second_ok(uint8_t c, uint8_t c1) {
    switch (c) {
    case 0xe0: return c1 >= 0xa0 && c1 <= 0xbf;
    case 0xed: return c1 >= 0x80 && c1 <= 0x9f;
    case 0xf0: return c1 >= 0x90 && c1 <= 0xbf;
    case 0xf4: return c1 >= 0x80 && c1 <= 0x8f;
    default: return (c1 & 0xc0) == 0x80;
    }
}

static bool utf8_lead_ok(uint8_t c) { return c < 0x80 || (c >= 0xc2 && c <= 0xf4); }

/* Decode one code point at s (valid UTF-8 assumed). */
static uint32_t utf8_cp(const uint8_t *s, int *n) {
    int l = tok_utf8_len(s[0]);
    uint32_t cp = l == 1 ? s[0] : l == 2 ? s[0] & 0x1fu : l == 3 ? s[0] & 0x0fu : s[0] & 0x07u;
    for (int i = 1; i < l; i++) cp = (cp << 6) | (s[i] & 0x3fu);
    *n = l;
    return cp;
}

size_t tok_utf8_valid(const char *str, size_t n) {
    const uint8_t *s = (const uint8_t *)str;
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        if (!utf8_lead_ok(c)) return i;
        int l = tok_utf8_len(c);
        if (i + (size_t)l > n || !utf8_second_ok(c, s[i + 1])) return i;
        for (int k = 2; k < l; k++)
            if ((s[i + k] & 0xc0) != 0x80) return i;
        i += (size_t)l;
    }
    return n;
}

/* Rust's char::is_whitespace, which HF uses for added tokens' lstrip/rstrip. */
static bool cp_is_space(uint32_t cp) {
    return (cp >= 9 && cp <= 13) || cp == 32 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
           cp == 0x205f || cp == 0x3000;
}

/* ---- hash maps -------------------------------------------------------------------------------- */

static size_t pow2_at_least(size_t n) {
    size_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

int32_t tok_map_get(const loom_tokenizer *t, const char *s, size_t len) {
    if (!t->map.slots) return -1;
    uint64_t h = XXH3_64bits(s, len);
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t i = h & t->map.mask;; i = (i + 1) & t->map.mask) {
        uint64_t v = t->map.slots[i];
        if (!v) return -1;
        if ((uint32_t)(v >> 32) == tag) {
            int32_t id = (int32_t)(uint32_t)v - 1;
            const tok_token *k = &t->tok[id];
            if (k->text_len == len && !memcmp(k->text, s, len)) return id;
        }
    }
}

static int map_build(loom_tokenizer *t) {
    size_t cap = pow2_at_least((size_t)t->n_vocab * 2 + 1);
    t->map.slots = loom_calloc(cap, sizeof *t->map.slots);
    if (!t->map.slots) return -1;
    t->map.mask = cap - 1;
    for (int id = 0; id < t->n_vocab; id++) {
        const tok_token *k = &t->tok[id];
        if (!k->text_len) continue;
        uint64_t h = XXH3_64bits(k->text, k->text_len);
        uint32_t tag = (uint32_t)(h >> 32);
        size_t i = h & t->map.mask;
        bool dup = false;
        for (;; i = (i + 1) & t->map.mask) {
            uint64_t v = t->map.slots[i];
            if (!v) break;
            const tok_token *o = &t->tok[(uint32_t)v - 1];
            if ((uint32_t)(v >> 32) == tag && o->text_len == k->text_len &&
                !memcmp(o->text, k->text, k->text_len)) {
                dup = true; /* the lower id keeps the string */
                break;
            }
        }
        if (!dup) t->map.slots[i] = ((uint64_t)tag << 32) | (uint32_t)(id + 1);
    }
    return 0;
}

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static int pairmap_grow(tok_pairmap *m) {
    size_t cap = m->keys ? (m->mask + 1) * 2 : 1024;
    uint64_t *keys = loom_malloc(cap * sizeof *keys), *vals = loom_malloc(cap * sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    memset(keys, 0xff, cap * sizeof *keys);
    for (size_t i = 0; m->keys && i <= m->mask; i++) {
        if (m->keys[i] == UINT64_MAX) continue;
        size_t j = mix64(m->keys[i]) & (cap - 1);
        while (keys[j] != UINT64_MAX) j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->mask = cap - 1;
    return 0;
}

int tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t merged) {
    if (!m->keys || (m->n + 1) * 2 > m->mask + 1)
        if (pairmap_grow(m)) return -1;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = mix64(key) & m->mask;
    for (; m->keys[i] != UINT64_MAX; i = (i + 1) & m->mask)
        if (m->keys[i] == key) return 0; /* first (lowest rank) wins, as in llama.cpp */
    m->keys[i] = key;
    m->vals[i] = ((uint64_t)rank << 32) | (uint32_t)merged;
    m->n++;
    return 1;
}

bool tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, uint32_t *rank, int32_t *merged) {
    if (!m->keys) return false;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (size_t i = mix64(key) & m->mask; m->keys[i] != UINT64_MAX; i = (i + 1) & m->mask) {
        if (m->keys[i] == key) {
            *rank = (uint32_t)(m->vals[i] >> 32);
            *merged = (int32_t)(uint32_t)m->vals[i];
            return true;
        }
    }
    return false;
}

int tok_add_merge(loom_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                  uint32_t rank) {
    int32_t ia = tok_map_get(t, a, alen), ib = tok_map_get(t, b, blen);
    if (ia < 0 || ib < 0)
        return loom_err("%s: merge %u '%.*s %.*s': '%.*s' is not in the vocabulary", t->path, rank,
                        (int)alen, a, (int)blen, b, ia < 0 ? (int)alen : (int)blen,
                        ia < 0 ? a : b);
    char stackbuf[256];
    char *cat = alen + blen <= sizeof stackbuf ? stackbuf : loom_malloc(alen + blen);
    if (!cat) return -1;
    memcpy(cat, a, alen);
    memcpy(cat + alen, b, blen);
    int32_t im = tok_map_get(t, cat, alen + blen);
    if (cat != stackbuf) free(cat);
    if (im < 0)
        return loom_err("%s: merge %u '%.*s %.*s': the merged token is not in the vocabulary",
                        t->path, rank, (int)alen, a, (int)blen, b);
    return tok_pairmap_put(&t->merges, ia, ib, rank, im);
}

/* ---- construction ----------------------------------------------------------------------------- */

loom_tokenizer *tok_new(const char *path, int kind, int n_vocab) {
    if (n_vocab <= 0 || n_vocab > (1 << 24))
        return loom_err_null("%s: implausible vocabulary size %d", path, n_vocab);
    loom_tokenizer *t = loom_calloc(1, sizeof *t);
    if (!t) return NULL;
    t->path = strdup(path);
    t->tok = loom_calloc((size_t)n_vocab, sizeof *t->tok);
    if (!t->path || !t->tok) {
        loom_tokenizer_free(t);
        return loom_err_null("%s: out of memory for %d tokens", path, n_vocab);
    }
    t->kind = kind;
    t->n_vocab = n_vocab;
    t->bos = t->eos = t->eot = t->unk = t->pad = -1;
    for (int i = 0; i < 256; i++) t->byte_tok[i] = -1;
    return t;
}

int tok_set(loom_tokenizer *t, int32_t id, const char *text, size_t len, float score, int type) {
    if (id < 0 || id >= t->n_vocab)
        return loom_err("%s: token id %d out of range (vocabulary of %d)", t->path, id, t->n_vocab);
    if (len > UINT32_MAX / 2) return loom_err("%s: token %d is too long", t->path, id);
    tok_token *k = &t->tok[id];
    char *s = loom_malloc(len + 1);
    if (!s) return -1;
    memcpy(s, text, len);
    s[len] = 0;
    if (k->piece != k->text) free(k->piece);
    free(k->text);
    k->text = s;
    k->piece = NULL;
    k->text_len = (uint32_t)len;
    k->score = score;
    k->type = (uint8_t)type;
    return 0;
}

/* What a token decodes to; see llama.cpp's token_to_piece for the SPM rules. */
static int make_piece(loom_tokenizer *t, tok_token *k) {
    k->piece = k->text;
    k->piece_len = k->text_len;
    if (k->type == LOOM_TOKEN_CONTROL || k->type == LOOM_TOKEN_USER_DEFINED ||
        k->type == LOOM_TOKEN_UNKNOWN || k->added)
        return 0;
    if (k->type == LOOM_TOKEN_UNUSED) {
        k->piece_len = 0;
        return 0;
    }
    if (t->kind == TOK_SPM && k->type == LOOM_TOKEN_BYTE) {
        unsigned v;
        char tail;
        if (k->text_len == 6 && sscanf(k->text, "<0x%2x>%c", &v, &tail) == 1) {
            char *p = loom_malloc(1);
            if (!p) return -1;
            p[0] = (char)v;
            k->piece = p;
            k->piece_len = 1;
        }
        return 0;
    }
    char *p = loom_malloc(k->text_len + 1);
    if (!p) return -1;
    size_t n = 0;
    const uint8_t *s = (const uint8_t *)k->text;
    if (t->kind == TOK_SPM) { /* "▁" (e2 96 81) -> ' ' */
        for (size_t i = 0; i < k->text_len;) {
            if (i + 3 <= k->text_len && s[i] == 0xe2 && s[i + 1] == 0x96 && s[i + 2] == 0x81) {
                p[n++] = ' ';
                i += 3;
            } else {
                p[n++] = (char)s[i++];
            }
        }
    } else { /* byte-level: every char maps back to one byte, else the token is taken as is */
        size_t valid = tok_utf8_valid(k->text, k->text_len);
        for (size_t i = 0; i < k->text_len;) {
            int l, b = -1;
            if (i < valid) b = tok_cp_to_byte(utf8_cp(s + i, &l));
            if (b < 0) {
                free(p);
                return 0;
            }
            p[n++] = (char)b;
            i += (size_t)l;
        }
    }
    p[n] = 0;
    k->piece = p;
    k->piece_len = (uint32_t)n;
    return 0;
}

static int cmp_added(const void *a, const void *b, void *base) {
    const tok_token *tok = base;
    const tok_token *x = &tok[*(const int32_t *)a], *y = &tok[*(const int32_t *)b];
    uint8_t bx = (uint8_t)x->text[0], by = (uint8_t)y->text[0];
    if (bx != by) return bx < by ? -1 : 1;
    if (x->text_len != y->text_len) return x->text_len > y->text_len ? -1 : 1;
    return *(const int32_t *)a < *(const int32_t *)b ? -1 : 1;
}

int tok_finish(loom_tokenizer *t) {
    static const char empty[1] = "";
    for (int id = 0; id < t->n_vocab; id++) {
        tok_token *k = &t->tok[id];
        if (!k->text) { /* a hole in the id range */
            if (tok_set(t, id, empty, 0, 0, LOOM_TOKEN_UNUSED)) return -1;
        }
        if (t->kind == TOK_SPM && k->type == LOOM_TOKEN_UNDEFINED) k->type = LOOM_TOKEN_NORMAL;
        if (t->kind == TOK_BPE && k->type == LOOM_TOKEN_UNDEFINED) k->type = LOOM_TOKEN_NORMAL;
        if (k->type == LOOM_TOKEN_CONTROL || k->type == LOOM_TOKEN_USER_DEFINED ||
            k->type == LOOM_TOKEN_UNKNOWN)
            k->added = k->text_len > 0;
        if (make_piece(t, k)) return -1;
    }
    if (map_build(t)) return -1;

    /* SPM: can the text be merged word by word? Only if "▁" never follows another character
     * inside a token (SentencePiece's split_by_whitespace vocabularies). */
    t->spm_words = true;
    for (int id = 0; t->kind == TOK_SPM && id < t->n_vocab && t->spm_words; id++) {
        const tok_token *k = &t->tok[id];
        const char *p = k->text, *end = k->text + k->text_len;
        while (p + 3 <= end && !memcmp(p, "\xe2\x96\x81", 3)) p += 3; /* leading run */
        if (p < end && memmem(p, (size_t)(end - p), "\xe2\x96\x81", 3)) t->spm_words = false;
    }

    for (int b = 0; b < 256; b++) {
        char s[16];
        int n;
        if (t->kind == TOK_BPE) {
            n = tok_utf8_put(s, tok_byte_to_cp((uint8_t)b));
        } else {
            n = snprintf(s, sizeof s, "<0x%02X>", b);
        }
        t->byte_tok[b] = tok_map_get(t, s, (size_t)n);
        if (t->kind == TOK_SPM && t->byte_tok[b] < 0 && b < 128) {
            s[0] = (char)b;
            t->byte_tok[b] = tok_map_get(t, s, 1);
        }
    }

    size_t n_added = 0;
    for (int id = 0; id < t->n_vocab; id++) n_added += t->tok[id].added;
    t->added = loom_malloc((n_added ? n_added : 1) * sizeof *t->added);
    if (!t->added) return -1;
    n_added = 0;
    for (int id = 0; id < t->n_vocab; id++)
        if (t->tok[id].added) t->added[n_added++] = id;
    qsort_r(t->added, n_added, sizeof *t->added, cmp_added, t->tok);
    size_t j = 0;
    for (int b = 0; b < 256; b++) {
        t->added_start[b] = (int)j;
        while (j < n_added && (uint8_t)t->tok[t->added[j]].text[0] == b) j++;
    }
    t->added_start[256] = (int)j;
    return 0;
}

void loom_tokenizer_free(loom_tokenizer *t) {
    if (!t) return;
    for (int i = 0; t->tok && i < t->n_vocab; i++) {
        if (t->tok[i].piece != t->tok[i].text) free(t->tok[i].piece);
        free(t->tok[i].text);
    }
    for (int i = 0; i < t->n_steps; i++) {
        pcre2_code_free(t->steps[i].re);
        free(t->steps[i].src);
    }
    free(t->pre_name);
    free(t->tok);
    free(t->map.slots);
    free(t->merges.keys);
    free(t->merges.vals);
    free(t->added);
    free(t->chat_template);
    free(t->path);
    free(t);
}

/* ---- loading dispatch ------------------------------------------------------------------------- */

static bool path_is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool path_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

loom_tokenizer *loom_tokenizer_from_json_file(const char *json_path) {
    /* tokenizer_config.json beside it carries BOS/EOS and the chat template */
    char cfg[4096];
    const char *slash = strrchr(json_path, '/');
    int dirlen = slash ? (int)(slash - json_path) : 1;
    const char *dir = slash ? json_path : ".";
    if (snprintf(cfg, sizeof cfg, "%.*s/tokenizer_config.json", dirlen, dir) >= (int)sizeof cfg)
        return loom_err_null("%s: path too long", json_path);
    return tok_load_json(json_path, path_exists(cfg) ? cfg : NULL);
}

loom_tokenizer *loom_tokenizer_load(const char *path) {
    if (!path) return loom_err_null("tokenizer: no path given");
    if (path_is_dir(path)) {
        char js[4096];
        if (snprintf(js, sizeof js, "%s/tokenizer.json", path) >= (int)sizeof js)
            return loom_err_null("%s: path too long", path);
        if (!path_exists(js))
            return loom_err_null("%s: no tokenizer.json in this directory (loom reads HF "
                                 "tokenizers only from tokenizer.json)", path);
        return loom_tokenizer_from_json_file(js);
    }
    FILE *f = loom_fopen_regular(path);
    if (!f) return NULL;
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    if (got == 4 && !memcmp(magic, "GGUF", 4)) {
        gguf_ctx *g = gguf_open(path);
        if (!g) return NULL;
        loom_tokenizer *t = loom_tokenizer_from_gguf(g);
        gguf_close(g);
        return t;
    }
    return loom_tokenizer_from_json_file(path);
}

/* ---- encode ------------------------------------------------------------------------------------ */

static bool added_allowed(const tok_token *k, unsigned flags) {
    if (k->type == LOOM_TOKEN_USER_DEFINED) return true;
    return (flags & LOOM_TOK_PARSE_SPECIAL) != 0;
}

/* Longest added token starting at text[pos], or -1. */
static int32_t match_added(const loom_tokenizer *t, const char *text, size_t len, size_t pos,
                           unsigned flags) {
    uint8_t b = (uint8_t)text[pos];
    for (int j = t->added_start[b]; j < t->added_start[b + 1]; j++) {
        const tok_token *k = &t->tok[t->added[j]];
        if (k->text_len <= len - pos && !memcmp(text + pos, k->text, k->text_len) &&
            added_allowed(k, flags))
            return t->added[j];
    }
    return -1;
}

static int encode_fragment(const loom_tokenizer *t, tok_scratch *s, const char *text, size_t len,
                           bool after_special, tok_ids *out) {
    if (t->kind == TOK_SPM)
        return tok_spm_encode(t, s, text, len, t->add_space_prefix && after_special, out);
    return tok_bpe_encode(t, s, text, len, out);
}

int loom_tokenizer_encode(const loom_tokenizer *t, const char *text, size_t len, unsigned flags,
                          int32_t **ids_out) {
    *ids_out = NULL;
    if (!text && len) return loom_err("%s: encode: NULL text", t->path);
    size_t valid = tok_utf8_valid(text, len);
    if (valid != len)
        return loom_err("%s: encode: input is not valid UTF-8 (byte 0x%02x at offset %zu)", t->path,
                        (uint8_t)text[valid], valid);
    tok_ids out = {0};
    tok_scratch *s = tok_scratch_new(t);
    if (!s) return -1;
    tok_scratch_budget(s, len);
    int rc = 0;
    if ((flags & LOOM_TOK_ADD_BOS) && t->bos >= 0) rc = tok_ids_push(&out, t->bos);

    /* Added tokens are cut out first (leftmost, then longest); the text between them goes to the
     * model. The SPM dummy prefix goes on text at the start and after each added token, as in
     * llama.cpp. */
    size_t frag = 0, pos = 0;
    bool after_special = true;
    while (!rc && pos < len) {
        if (((uint8_t)text[pos] & 0xc0) == 0x80) { /* added tokens start on a character */
            pos++;
            continue;
        }
        int32_t id = match_added(t, text, len, pos, flags);
        if (id < 0) {
            pos++;
            continue;
        }
        const tok_token *k = &t->tok[id];
        size_t start = pos, end = pos + k->text_len;
        if (k->lstrip) {
            while (start > frag) {
                size_t p = start - 1;
                while (p > frag && ((uint8_t)text[p] & 0xc0) == 0x80) p--;
                int l;
                if (!cp_is_space(utf8_cp((const uint8_t *)text + p, &l))) break;
                start = p;
            }
        }
        if (k->rstrip) {
            while (end < len) {
                int l;
                if (!cp_is_space(utf8_cp((const uint8_t *)text + end, &l))) break;
                end += (size_t)l;
            }
        }
        if (start > frag) rc = encode_fragment(t, s, text + frag, start - frag, after_special, &out);
        if (!rc) rc = tok_ids_push(&out, id);
        after_special = true;
        frag = pos = end;
    }
    if (!rc && frag < len) rc = encode_fragment(t, s, text + frag, len - frag, after_special, &out);
    tok_scratch_free(s);
    if (!rc && out.n > INT32_MAX) rc = loom_err("%s: encode: too many tokens", t->path);
    if (rc) {
        free(out.v);
        return -1;
    }
    if (!out.v) out.v = loom_malloc(sizeof *out.v);
    if (!out.v) return -1;
    *ids_out = out.v;
    return (int)out.n;
}

/* ---- decode ------------------------------------------------------------------------------------ */

static bool skip_token(const tok_token *k, unsigned flags) {
    return (flags & LOOM_TOK_SKIP_SPECIAL) &&
           (k->type == LOOM_TOKEN_CONTROL || k->type == LOOM_TOKEN_UNKNOWN);
}

char *loom_tokenizer_decode(const loom_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                            size_t *len) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return loom_err_null("%s: decode: token id %d at position %zu is out of range "
                                 "(vocabulary of %d)", t->path, ids[i], i, t->n_vocab);
        total += t->tok[ids[i]].piece_len;
    }
    char *buf = loom_malloc(total + 1);
    if (!buf) return NULL;
    size_t o = 0;
    bool strip = t->kind == TOK_SPM && t->add_space_prefix; /* undo the dummy prefix */
    for (size_t i = 0; i < n; i++) {
        const tok_token *k = &t->tok[ids[i]];
        bool is_bos = i == 0 && ids[i] == t->bos;
        if (!skip_token(k, flags)) {
            const char *p = k->piece;
            size_t l = k->piece_len;
            if (strip && !is_bos && l && p[0] == ' ') {
                p++;
                l--;
            }
            memcpy(buf + o, p, l);
            o += l;
        }
        if (!is_bos) strip = false;
    }
    buf[o] = 0;
    if (len) *len = o;
    return buf;
}

const char *loom_tokenizer_piece(const loom_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) {
        if (len) *len = 0;
        return loom_err_null("%s: token id %d out of range (vocabulary of %d)", t->path, id,
                             t->n_vocab);
    }
    if (len) *len = t->tok[id].piece_len;
    return t->tok[id].piece;
}

const char *loom_tokenizer_token_text(const loom_tokenizer *t, int32_t id, size_t *len) {
    if (len) *len = 0;
    if (id < 0 || id >= t->n_vocab)
        return loom_err_null("%s: token id %d out of range (vocabulary of %d)", t->path, id,
                             t->n_vocab);
    if (len) *len = t->tok[id].text_len;
    return t->tok[id].text;
}

int32_t loom_tokenizer_find(const loom_tokenizer *t, const char *text, size_t len) {
    return tok_map_get(t, text, len);
}

/* ---- streaming decode -------------------------------------------------------------------------- */

struct loom_tokenizer_stream {
    const loom_tokenizer *t;
    unsigned flags;
    char *buf;
    size_t held, cap; /* buf[0..held) are bytes kept back from the last call */
    char *out;        /* what the last call returned (a copy, so the held bytes can move) */
    size_t out_cap;
};

loom_tokenizer_stream *loom_tokenizer_stream_new(const loom_tokenizer *t, unsigned flags) {
    loom_tokenizer_stream *s = loom_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->t = t;
    s->flags = flags;
    return s;
}

void loom_tokenizer_stream_free(loom_tokenizer_stream *s) {
    if (!s) return;
    free(s->buf);
    free(s->out);
    free(s);
}

/* Bytes at the end of b[0..n) that start a character still waiting for continuation bytes. */
static size_t incomplete_tail(const uint8_t *b, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        uint8_t c = b[n - k];
        if ((c & 0xc0) == 0x80) continue;
        if (c < 0xc2 || c > 0xf4) return 0;
        if ((size_t)tok_utf8_len(c) <= k) return 0; /* complete (or over-long run) */
        if (k >= 2 && !utf8_second_ok(c, b[n - k + 1])) return 0;
        return k;
    }
    return 0;
}

static int stream_reserve(char **p, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    char *q = loom_realloc(*p, c);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

const char *loom_tokenizer_stream_put(loom_tokenizer_stream *s, int32_t id, size_t *len) {
    *len = 0;
    const loom_tokenizer *t = s->t;
    if (id < 0 || id >= t->n_vocab)
        return loom_err_null("%s: stream: token id %d out of range (vocabulary of %d)", t->path,
                             id, t->n_vocab);
    const tok_token *k = &t->tok[id];
    size_t add = skip_token(k, s->flags) ? 0 : k->piece_len;
    if (stream_reserve(&s->buf, &s->cap, s->held + add)) return NULL;
    if (add) memcpy(s->buf + s->held, k->piece, add);
    size_t n = s->held + add;
    size_t hold = incomplete_tail((const uint8_t *)s->buf, n);
    size_t ready = n - hold;
    if (stream_reserve(&s->out, &s->out_cap, ready + 1)) return NULL;
    if (ready) memcpy(s->out, s->buf, ready);
    s->out[ready] = 0;
    if (hold) memmove(s->buf, s->buf + ready, hold);
    s->held = hold;
    *len = ready;
    return s->out;
}

const char *loom_tokenizer_stream_finish(loom_tokenizer_stream *s, size_t *len) {
    if (stream_reserve(&s->out, &s->out_cap, s->held + 1)) {
        *len = 0;
        return NULL;
    }
    if (s->held) memcpy(s->out, s->buf, s->held);
    s->out[s->held] = 0;
    *len = s->held;
    s->held = 0;
    return s->out;
}

/* ---- facts ------------------------------------------------------------------------------------- */

int loom_tokenizer_n_vocab(const loom_tokenizer *t) { return t->n_vocab; }
int32_t loom_tokenizer_bos(const loom_tokenizer *t) { return t->bos; }
int32_t loom_tokenizer_eos(const loom_tokenizer *t) { return t->eos; }
bool loom_tokenizer_wants_bos(const loom_tokenizer *t) { return t->wants_bos && t->bos >= 0; }
const char *loom_tokenizer_chat_template(const loom_tokenizer *t) { return t->chat_template; }
const char *loom_tokenizer_kind(const loom_tokenizer *t) { return t->kind == TOK_SPM ? "spm" : "bpe"; }
const char *loom_tokenizer_path(const loom_tokenizer *t) { return t->path; }

loom_token_type loom_tokenizer_token_type(const loom_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return LOOM_TOKEN_UNDEFINED;
    return (loom_token_type)t->tok[id].type;
}

bool loom_tokenizer_is_special(const loom_tokenizer *t, int32_t id) {
    return loom_tokenizer_token_type(t, id) == LOOM_TOKEN_CONTROL;
}

bool loom_tokenizer_is_eog(const loom_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return false;
    if (id == t->eos || id == t->eot) return true;
    /* the end-of-turn markers llama.cpp also treats as end of generation */
    static const char *const names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                        "<|endoftext|>", "<|eom_id|>", "<EOT>", "</s>"};
    const tok_token *k = &t->tok[id];
    if (k->type != LOOM_TOKEN_CONTROL) return false;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(k->text, names[i])) return true;
    return false;
}

/* ---- GGUF export ------------------------------------------------------------------------------- */

typedef struct merge_rec {
    uint32_t rank;
    int32_t a, b;
} merge_rec;

static int cmp_merge(const void *x, const void *y) {
    uint32_t a = ((const merge_rec *)x)->rank, b = ((const merge_rec *)y)->rank;
    return a < b ? -1 : a > b;
}

static int write_merges(const loom_tokenizer *t, gguf_writer *w) {
    const tok_pairmap *m = &t->merges;
    merge_rec *recs = loom_malloc((m->n ? m->n : 1) * sizeof *recs);
    char **strs = loom_calloc(m->n ? m->n : 1, sizeof *strs);
    int rc = recs && strs ? 0 : -1;
    size_t n = 0;
    for (size_t i = 0; !rc && m->keys && i <= m->mask; i++) {
        if (m->keys[i] == UINT64_MAX) continue;
        recs[n++] = (merge_rec){(uint32_t)(m->vals[i] >> 32), (int32_t)(m->keys[i] >> 32),
                                (int32_t)(uint32_t)m->keys[i]};
    }
    if (!rc) qsort(recs, n, sizeof *recs, cmp_merge); /* rank order is the merge order */
    for (size_t i = 0; !rc && i < n; i++) {
        const tok_token *a = &t->tok[recs[i].a], *b = &t->tok[recs[i].b];
        if (!(strs[i] = loom_malloc((size_t)a->text_len + b->text_len + 2))) rc = -1;
        else sprintf(strs[i], "%s %s", a->text, b->text);
    }
    if (!rc) rc = gguf_w_arr_str(w, "tokenizer.ggml.merges", (const char *const *)strs, n);
    for (size_t i = 0; strs && i < n; i++) free(strs[i]);
    free(strs);
    free(recs);
    return rc;
}

int loom_tokenizer_to_gguf(const loom_tokenizer *t, gguf_writer *w, bool special_ids) {
    return loom_tokenizer_to_gguf_pad(t, w, special_ids, 0);
}

int loom_tokenizer_to_gguf_pad(const loom_tokenizer *t, gguf_writer *w, bool special_ids, int pad_to) {
    bool bpe = t->kind == TOK_BPE;
    if (bpe && !t->pre_name)
        return loom_err("%s: this tokenizer's pre-tokenizer has no GGUF equivalent "
                        "(tokenizer.ggml.pre)", t->path);
    int n = pad_to > t->n_vocab ? pad_to : t->n_vocab, np = n - t->n_vocab;
    enum { PAD_LEN = 24 }; /* "<|pad_" + up to 10 digits + "|>" */
    const char **texts = loom_malloc((size_t)n * sizeof *texts);
    float *scores = loom_malloc((size_t)n * sizeof *scores);
    int32_t *types = loom_malloc((size_t)n * sizeof *types);
    char *pads = np ? loom_malloc((size_t)np * PAD_LEN) : NULL;
    int rc = texts && scores && types && (pads || !np) ? 0 : -1;
    for (int i = 0; !rc && i < n; i++) {
        if (i < t->n_vocab) {
            texts[i] = t->tok[i].text;
            scores[i] = t->tok[i].score;
            types[i] = t->tok[i].type;
        } else {
            char *p = pads + (size_t)(i - t->n_vocab) * PAD_LEN;
            snprintf(p, PAD_LEN, "<|pad_%d|>", i - t->n_vocab);
            texts[i] = p;
            scores[i] = 0.0f;
            types[i] = LOOM_TOKEN_USER_DEFINED;
        }
    }
    rc = rc ? rc : gguf_w_str(w, "tokenizer.ggml.model", bpe ? "gpt2" : "llama");
    if (!rc && bpe) rc = gguf_w_str(w, "tokenizer.ggml.pre", t->pre_name);
    if (!rc) rc = gguf_w_arr_str(w, "tokenizer.ggml.tokens", texts, (size_t)n);
    if (!rc && !bpe) rc = gguf_w_arr_f32(w, "tokenizer.ggml.scores", scores, (size_t)n);
    if (!rc) rc = gguf_w_arr_i32(w, "tokenizer.ggml.token_type", types, (size_t)n);
    if (!rc && bpe) rc = write_merges(t, w);
    static const char *const id_keys[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                          "tokenizer.ggml.unknown_token_id",
                                          "tokenizer.ggml.padding_token_id", "tokenizer.ggml.eot_token_id"};
    const int32_t ids[] = {t->bos, t->eos, t->unk, t->pad, t->eot};
    for (int i = special_ids ? 0 : 2; !rc && i < 5; i++)
        if (ids[i] >= 0) rc = gguf_w_u32(w, id_keys[i], (uint32_t)ids[i]);
    if (!rc) rc = gguf_w_bool(w, "tokenizer.ggml.add_bos_token", t->wants_bos);
    if (!rc && !bpe) rc = gguf_w_bool(w, "tokenizer.ggml.add_space_prefix", t->add_space_prefix);
    if (!rc && t->chat_template) rc = gguf_w_str(w, "tokenizer.chat_template", t->chat_template);
    free(texts);
    free(scores);
    free(types);
    free(pads);
    if (rc) loom_err_prefix("%s: writing the tokenizer to GGUF", t->path);
    return rc ? -1 : 0;
}
