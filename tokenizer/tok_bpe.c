/* Byte-level BPE: normalise (utf8proc), split into words with the pre-tokenizer regexes (PCRE2),
 * then merge each word's bytes by rank.
 *
 * The merge loop keeps the word as a linked list of symbols and a min-heap of candidate pairs
 * keyed (rank, position): the lowest rank merges first and equal ranks (the same pair) merge
 * left to right, as HF tokenizers and llama.cpp do. Stale heap entries are recognised on pop
 * by re-checking the pair. A word of n bytes costs O(n log n), so long runs stay cheap. */
#include "tokenizer/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <utf8proc.h>

/* Bounds on the pre-tokenizer regexes, which come from the tokenizer file (an untrusted input):
 * PCRE2 resets its match limit at every start position of a search, so one pcre2_match over a
 * long text can backtrack for minutes ((\p{L}+)+$ on 11.5 KB: 22 s). Each call is therefore
 * limited to REGEX_SCAN start positions (pcre2_set_offset_limit), each to REGEX_MATCH_LIMIT
 * backtracking steps and REGEX_HEAP_KIB of memory, and a whole encode call to
 * 1 s + 10 us per byte of CPU time (checked between calls). Real tokenizer regexes need a few
 * steps per start and microseconds per kilobyte. */
#define REGEX_SCAN 32
#define REGEX_MATCH_LIMIT 1000000u
#define REGEX_HEAP_KIB (256u * 1024u)

typedef struct span {
    size_t off, len;
    int match; /* while splitting: a regex match rather than the text between */
} span;

struct tok_scratch {
    pcre2_match_data *md[TOK_MAX_STEPS];
    pcre2_match_context *mc;
    double deadline, budget; /* CPU seconds (this thread): when regex matching gives up, and the budget */
    unsigned calls;
    char *buf[2];
    size_t buf_cap[2];
    span *sp[2];
    size_t sp_n[2], sp_cap[2];
    /* merge loop */
    int32_t *sym, *prev, *next;
    size_t sym_cap;
    uint64_t *heap;
    size_t heap_n, heap_cap;
    char *word;
    size_t word_cap;
};

tok_scratch *tok_scratch_new(const loom_tokenizer *t) {
    tok_scratch *s = loom_calloc(1, sizeof *s);
    if (!s) return NULL;
    if (!(s->mc = pcre2_match_context_create(NULL))) {
        tok_scratch_free(s);
        return loom_err_null("%s: out of memory for a regex match context", t->path);
    }
    pcre2_set_match_limit(s->mc, REGEX_MATCH_LIMIT);
    pcre2_set_depth_limit(s->mc, REGEX_MATCH_LIMIT);
    pcre2_set_heap_limit(s->mc, REGEX_HEAP_KIB);
    tok_scratch_budget(s, 0);
    for (int i = 0; i < t->n_steps; i++) {
        if (!t->steps[i].re) continue;
        s->md[i] = pcre2_match_data_create_from_pattern(t->steps[i].re, NULL);
        if (!s->md[i]) {
            tok_scratch_free(s);
            return loom_err_null("%s: out of memory for regex match data", t->path);
        }
    }
    return s;
}

static double cpu_now(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void tok_scratch_budget(tok_scratch *s, size_t len) {
    s->budget = 1.0 + 1e-5 * (double)len;
    s->deadline = cpu_now() + s->budget;
}

void tok_scratch_free(tok_scratch *s) {
    if (!s) return;
    pcre2_match_context_free(s->mc);
    for (int i = 0; i < TOK_MAX_STEPS; i++) pcre2_match_data_free(s->md[i]);
    for (int i = 0; i < 2; i++) {
        free(s->buf[i]);
        free(s->sp[i]);
    }
    free(s->sym);
    free(s->prev);
    free(s->next);
    free(s->heap);
    free(s->word);
    free(s);
}

static int grow(void **p, size_t *cap, size_t need, size_t item) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    size_t bytes;
    if (!loom_mul_ok(c, item, &bytes)) return loom_err("tokenizer: buffer size overflow");
    void *q = loom_realloc(*p, bytes);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* ---- pre-tokenizer setup ---------------------------------------------------------------------- */

/* Unicode White_Space, which is what \s means to Oniguruma (HF tokenizers) and llama.cpp.
 * PCRE2's UCP \s adds U+180E (a format character since Unicode 6.3), so patterns get this
 * class in place of \s, and its complement for \S outside brackets. */
#define TOK_WS "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}" \
               "\\x{202F}\\x{205F}\\x{3000}"

char *tok_regex_rewrite(const char *p, size_t n, size_t *out_len) {
    size_t cap = n * (sizeof TOK_WS + 3) + 1, o = 0;
    char *r = loom_malloc(cap);
    if (!r) return NULL;
    bool in_class = false;
    for (size_t i = 0; i < n;) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            if (d == 's' || (d == 'S' && !in_class)) {
                const char *open = in_class ? "" : d == 's' ? "[" : "[^";
                o += (size_t)sprintf(r + o, "%s%s%s", open, TOK_WS, in_class ? "" : "]");
                i += 2;
                continue;
            }
            if (d == 'Q') { /* literal up to \E */
                size_t e = i + 2;
                while (e < n && !(p[e] == '\\' && e + 1 < n && p[e + 1] == 'E')) e++;
                e = e < n ? e + 2 : n;
                memcpy(r + o, p + i, e - i);
                o += e - i;
                i = e;
                continue;
            }
            r[o++] = c;
            r[o++] = d;
            i += 2;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            r[o++] = p[i++];
            if (i < n && p[i] == '^') r[o++] = p[i++];
            if (i < n && p[i] == ']') r[o++] = p[i++]; /* a literal ] first in the class */
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') { /* [:alpha:] */
            const char *e = strstr(p + i, ":]");
            size_t end = e && (size_t)(e - p) < n ? (size_t)(e - p) + 2 : n;
            memcpy(r + o, p + i, end - i);
            o += end - i;
            i = end;
            continue;
        }
        if (in_class && c == ']') in_class = false;
        r[o++] = p[i++];
    }
    r[o] = 0;
    *out_len = o;
    return r;
}

int tok_add_split(loom_tokenizer *t, const char *pattern, size_t len, int behavior) {
    if (t->n_steps >= TOK_MAX_STEPS)
        return loom_err("%s: more than %d pre-tokenizer steps", t->path, TOK_MAX_STEPS);
    int errcode;
    PCRE2_SIZE erroff;
    size_t rlen;
    char *rewritten = tok_regex_rewrite(pattern, len, &rlen);
    if (!rewritten) return -1;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)rewritten, rlen, PCRE2_UTF | PCRE2_UCP | PCRE2_USE_OFFSET_LIMIT, &errcode,
                                   &erroff, NULL);
    free(rewritten);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        (void)erroff; /* an offset into the rewritten pattern would only confuse */
        /* the pattern is not NUL-terminated (literal splits build it in place) */
        return loom_err("%s: pre-tokenizer regex '%.*s' does not compile: %s", t->path,
                        (int)(len < 80 ? len : 80), pattern, (const char *)msg);
    }
    char *src = loom_malloc(len + 1);
    if (!src) {
        pcre2_code_free(re);
        return -1;
    }
    memcpy(src, pattern, len);
    src[len] = 0;
    tok_step *st = &t->steps[t->n_steps++];
    st->kind = TOK_STEP_SPLIT;
    st->behavior = behavior;
    st->re = re;
    st->src = src;
    /* JIT is an optimisation only: without it (or when it fails) the interpreter runs */
    st->jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}

int tok_add_prefix_space(loom_tokenizer *t) {
    if (t->n_steps >= TOK_MAX_STEPS)
        return loom_err("%s: more than %d pre-tokenizer steps", t->path, TOK_MAX_STEPS);
    tok_step *st = &t->steps[t->n_steps++];
    memset(st, 0, sizeof *st);
    st->kind = TOK_STEP_PREFIX_SPACE;
    return 0;
}

/* ---- pre-tokenization ------------------------------------------------------------------------- */

static int push_span(tok_scratch *s, int w, size_t off, size_t len, int match) {
    if (!len) return 0; /* HF drops empty splits */
    if (grow((void **)&s->sp[w], &s->sp_cap[w], s->sp_n[w] + 1, sizeof(span))) return -1;
    s->sp[w][s->sp_n[w]++] = (span){off, len, match};
    return 0;
}

/* One match at or after pos in subject[0..n); false when there is none. Searched REGEX_SCAN start
 * positions at a time (same result as one unlimited search), with the CPU budget checked between. */
static int find_match(const loom_tokenizer *t, const tok_step *st, tok_scratch *s, pcre2_match_data *md,
                      const char *subject, size_t n, size_t pos, size_t *ms, size_t *me) {
    for (;;) {
        size_t last = n - pos > REGEX_SCAN ? pos + REGEX_SCAN : n; /* the last start tried */
        pcre2_set_offset_limit(s->mc, last < n ? (PCRE2_SIZE)last : PCRE2_UNSET);
        if ((++s->calls & 31) == 0 && cpu_now() > s->deadline)
            return loom_err("%s: pre-tokenizer regex '%.60s' used up its CPU time (%.2f s for this text): "
                            "it backtracks catastrophically", t->path, st->src, s->budget);
        int rc = pcre2_match(st->re, (PCRE2_SPTR)subject, n, pos, PCRE2_NO_UTF_CHECK, md, s->mc);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(st->re, (PCRE2_SPTR)subject, n, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, s->mc);
        if (rc == PCRE2_ERROR_NOMATCH) {
            if (last >= n) return 0;
            pos = last + 1; /* on to the next character */
            while (pos < n && ((uint8_t)subject[pos] & 0xc0) == 0x80) pos++;
            continue;
        }
        if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT)
            return loom_err("%s: pre-tokenizer regex '%.60s' needs more than %u backtracking steps (or %u MiB) "
                            "near byte %zu of the text: it backtracks catastrophically",
                            t->path, st->src, REGEX_MATCH_LIMIT, REGEX_HEAP_KIB / 1024, pos);
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return loom_err("%s: pre-tokenizer regex failed: %s", t->path, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        *ms = ov[0];
        *me = ov[1];
        return 1;
    }
}

/* Split every span of `buf` (list r) into list w with the step's regex and behaviour, following
 * HF's SplitDelimiterBehavior. Pieces are first listed as gaps and matches, then folded. */
static int apply_split(const loom_tokenizer *t, tok_scratch *s, int si, const char *buf, int r,
                       int w) {
    const tok_step *st = &t->steps[si];
    s->sp_n[w] = 0;
    for (size_t k = 0; k < s->sp_n[r]; k++) {
        span in = s->sp[r][k];
        const char *sub = buf + in.off;
        size_t pos = 0, gap = 0; /* gap: start of the text not yet listed */
        size_t base = s->sp_n[w];
        while (pos <= in.len) {
            size_t ms, me;
            int rc = find_match(t, st, s, s->md[si], sub, in.len, pos, &ms, &me);
            if (rc < 0) return -1;
            if (!rc) break;
            if (me == ms) { /* empty match: no delimiter here, step over one character */
                pos = ms + (ms < in.len ? (size_t)tok_utf8_len((uint8_t)sub[ms]) : 1);
                continue;
            }
            if (push_span(s, w, in.off + gap, ms - gap, 0) ||
                push_span(s, w, in.off + ms, me - ms, 1))
                return -1;
            gap = pos = me;
        }
        if (push_span(s, w, in.off + gap, in.len - gap, 0)) return -1;

        /* fold pieces [base, end) in place */
        span *p = s->sp[w];
        size_t end = s->sp_n[w], o = base;
        bool prev_match = false;
        switch (st->behavior) {
        case TOK_SPLIT_ISOLATED: o = end; break;
        case TOK_SPLIT_REMOVED:
            for (size_t i = base; i < end; i++)
                if (!p[i].match) p[o++] = p[i];
            break;
        case TOK_SPLIT_MERGED_PREV: /* a match joins the piece before it unless that is a match */
            for (size_t i = base; i < end; i++) {
                if (p[i].match && !prev_match && o > base)
                    p[o - 1].len = p[i].off + p[i].len - p[o - 1].off;
                else
                    p[o++] = p[i];
                prev_match = p[i].match;
            }
            break;
        case TOK_SPLIT_MERGED_NEXT: { /* a match joins the piece after it unless that is a match */
            size_t top = end; /* fold right to left, packing towards the end */
            for (size_t i = end; i-- > base;) {
                if (p[i].match && !prev_match && top < end) {
                    p[top].len += p[top].off - p[i].off;
                    p[top].off = p[i].off;
                } else {
                    p[--top] = p[i];
                }
                prev_match = p[i].match;
            }
            for (size_t i = top; i < end; i++) p[o++] = p[i];
            break;
        }
        }
        s->sp_n[w] = o;
    }
    return 0;
}

/* ' ' before every span that does not start with one (HF ByteLevel add_prefix_space). */
static int apply_prefix(tok_scratch *s, const char *in, int r, int w, int bw) {
    size_t need = 0;
    for (size_t k = 0; k < s->sp_n[r]; k++) need += s->sp[r][k].len + 1;
    if (grow((void **)&s->buf[bw], &s->buf_cap[bw], need + 1, 1)) return -1;
    char *out = s->buf[bw];
    size_t o = 0;
    s->sp_n[w] = 0;
    for (size_t k = 0; k < s->sp_n[r]; k++) {
        span sp = s->sp[r][k];
        size_t start = o;
        if (in[sp.off] != ' ') out[o++] = ' ';
        memcpy(out + o, in + sp.off, sp.len);
        o += sp.len;
        if (push_span(s, w, start, o - start, 0)) return -1;
    }
    return 0;
}

/* ---- the merge loop ---------------------------------------------------------------------------- */

static void heap_push(tok_scratch *s, uint64_t v) {
    uint64_t *h = s->heap;
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static uint64_t heap_pop(tok_scratch *s) {
    uint64_t *h = s->heap, top = h[0], v = h[--s->heap_n];
    size_t n = s->heap_n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    if (n) h[i] = v;
    return top;
}

static void try_pair(const loom_tokenizer *t, tok_scratch *s, int32_t left) {
    int32_t right = s->next[left];
    if (left < 0 || right < 0) return;
    uint32_t rank;
    int32_t merged;
    if (tok_pairmap_get(&t->merges, s->sym[left], s->sym[right], &rank, &merged))
        heap_push(s, ((uint64_t)rank << 32) | (uint32_t)left);
}

static int bpe_word(const loom_tokenizer *t, tok_scratch *s, const uint8_t *w, size_t n,
                    tok_ids *out) {
    for (size_t i = 0; i < n; i++)
        if (t->byte_tok[w[i]] < 0)
            return loom_err("%s: encode: byte 0x%02x has no token in the vocabulary", t->path, w[i]);
    if (n == 1) return tok_ids_push(out, t->byte_tok[w[0]]);
    if (t->ignore_merges) { /* LLaMA 3: a word that is a token is taken whole */
        if (grow((void **)&s->word, &s->word_cap, n * 2, 1)) return -1;
        size_t l = 0;
        for (size_t i = 0; i < n; i++) l += (size_t)tok_utf8_put(s->word + l, tok_byte_to_cp(w[i]));
        int32_t id = tok_map_get(t, s->word, l);
        if (id >= 0) return tok_ids_push(out, id);
    }
    if (n > INT32_MAX) return loom_err("%s: encode: a %zu-byte word is too long", t->path, n);
    if (n > s->sym_cap) { /* sym, prev and next share one capacity */
        size_t c0 = s->sym_cap, c1 = s->sym_cap, c2 = s->sym_cap;
        if (grow((void **)&s->sym, &c0, n, sizeof(int32_t)) ||
            grow((void **)&s->prev, &c1, n, sizeof(int32_t)) ||
            grow((void **)&s->next, &c2, n, sizeof(int32_t)))
            return -1;
        s->sym_cap = c0;
    }
    /* at most n-1 initial pairs, plus two per merge (n-1 merges) */
    if (grow((void **)&s->heap, &s->heap_cap, 3 * n, sizeof(uint64_t))) return -1;
    for (size_t i = 0; i < n; i++) {
        s->sym[i] = t->byte_tok[w[i]];
        s->prev[i] = (int32_t)i - 1;
        s->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    s->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++) try_pair(t, s, (int32_t)i);
    while (s->heap_n) {
        uint64_t top = heap_pop(s);
        int32_t left = (int32_t)(uint32_t)top, right = s->next[left];
        uint32_t rank;
        int32_t merged;
        if (s->sym[left] < 0 || right < 0) continue;
        if (!tok_pairmap_get(&t->merges, s->sym[left], s->sym[right], &rank, &merged) ||
            rank != (uint32_t)(top >> 32))
            continue; /* stale: one side has merged since */
        s->sym[left] = merged;
        s->sym[right] = -1;
        s->next[left] = s->next[right];
        if (s->next[right] >= 0) s->prev[s->next[right]] = left;
        if (s->prev[left] >= 0) try_pair(t, s, s->prev[left]);
        try_pair(t, s, left);
    }
    for (int32_t i = 0; i >= 0; i = s->next[i])
        if (tok_ids_push(out, s->sym[i])) return -1;
    return 0;
}

/* ---- one fragment ------------------------------------------------------------------------------ */

static bool has_non_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((uint8_t)s[i] >= 0x80) return true;
    return false;
}

int tok_bpe_encode(const loom_tokenizer *t, tok_scratch *s, const char *text, size_t len,
                   tok_ids *out) {
    utf8proc_uint8_t *norm = NULL;
    if (t->normalizer != TOK_NORM_NONE && has_non_ascii(text, len)) {
        int opt = UTF8PROC_STABLE;
        switch (t->normalizer) {
        case TOK_NORM_NFC: opt |= UTF8PROC_COMPOSE; break;
        case TOK_NORM_NFD: opt |= UTF8PROC_DECOMPOSE; break;
        case TOK_NORM_NFKC: opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
        case TOK_NORM_NFKD: opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
        }
        utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)len,
                                          &norm, (utf8proc_option_t)opt);
        if (n < 0)
            return loom_err("%s: encode: normalisation failed: %s", t->path, utf8proc_errmsg(n));
        text = (const char *)norm;
        len = (size_t)n;
    }

    /* spans over `cur`; each step reads list r and writes list 1-r */
    const char *cur = text;
    int r = 0, bw = 0;
    s->sp_n[0] = 0;
    int rc = push_span(s, 0, 0, len, 0);
    for (int i = 0; !rc && i < t->n_steps; i++) {
        if (t->steps[i].kind == TOK_STEP_SPLIT) {
            rc = apply_split(t, s, i, cur, r, 1 - r);
        } else {
            rc = apply_prefix(s, cur, r, 1 - r, bw);
            cur = s->buf[bw];
            bw = 1 - bw;
        }
        r = 1 - r;
    }
    for (size_t k = 0; !rc && k < s->sp_n[r]; k++)
        rc = bpe_word(t, s, (const uint8_t *)cur + s->sp[r][k].off, s->sp[r][k].len, out);
    free(norm);
    return rc;
}
