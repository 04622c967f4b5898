/* SentencePiece-style BPE (LLaMA 1/2), as llama.cpp's llm_tokenizer_spm does it: spaces become
 * "▁", the text starts as one symbol per UTF-8 character, and the adjacent pair whose
 * concatenation is the highest-scoring vocabulary entry merges first (ties: leftmost). Symbols
 * left that are not tokens fall back to <0xNN> byte tokens. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>

typedef struct spm_sym {
    size_t off;        /* into the escaped text */
    size_t n;          /* bytes; 0 once merged into its left neighbour */
    int64_t prev, next;
} spm_sym;

typedef struct spm_bigram {
    float score;
    int64_t left, right;
    size_t size;
} spm_bigram;

typedef struct spm_state {
    const loom_tokenizer *t;
    const char *text;
    spm_sym *sym;
    spm_bigram *heap;
    size_t heap_n, heap_cap;
} spm_state;

/* max-heap on score, ties to the smaller left index */
static bool before(const spm_bigram *a, const spm_bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(spm_state *st, spm_bigram v) {
    if (st->heap_n == st->heap_cap) {
        size_t cap = st->heap_cap ? st->heap_cap * 2 : 256;
        spm_bigram *h = loom_realloc(st->heap, cap * sizeof *h);
        if (!h) return -1;
        st->heap = h;
        st->heap_cap = cap;
    }
    size_t i = st->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(&v, &st->heap[p])) break;
        st->heap[i] = st->heap[p];
        i = p;
    }
    st->heap[i] = v;
    return 0;
}

static spm_bigram heap_pop(spm_state *st) {
    spm_bigram *h = st->heap, top = h[0], v = h[--st->heap_n];
    size_t n = st->heap_n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(&h[c + 1], &h[c])) c++;
        if (!before(&h[c], &v)) break;
        h[i] = h[c];
        i = c;
    }
    if (n) h[i] = v;
    return top;
}

static int try_bigram(spm_state *st, int64_t left, int64_t right) {
    if (left < 0 || right < 0) return 0;
    size_t size = st->sym[left].n + st->sym[right].n;
    int32_t id = tok_map_get(st->t, st->text + st->sym[left].off, size);
    if (id < 0) return 0;
    return heap_push(st, (spm_bigram){st->t->tok[id].score, left, right, size});
}

static bool is_space(const char *s, size_t n, size_t i) { /* "▁" at s[i]? */
    return i + 3 <= n && !memcmp(s + i, "\xe2\x96\x81", 3);
}

/* Merge esc[from..to) and append its tokens. */
static int spm_word(spm_state *st, size_t from, size_t to, tok_ids *out) {
    const loom_tokenizer *t = st->t;
    const char *esc = st->text;
    size_t n_sym = 0;
    for (size_t off = from; off < to; n_sym++) {
        size_t l = (size_t)tok_utf8_len((uint8_t)esc[off]);
        if (l > to - off) l = to - off;
        st->sym[n_sym] = (spm_sym){off, l, (int64_t)n_sym - 1, off + l < to ? (int64_t)n_sym + 1 : -1};
        off += l;
    }
    st->heap_n = 0;
    int rc = 0;
    for (size_t i = 1; !rc && i < n_sym; i++) rc = try_bigram(st, (int64_t)i - 1, (int64_t)i);
    while (!rc && st->heap_n) {
        spm_bigram b = heap_pop(st);
        spm_sym *l = &st->sym[b.left], *r = &st->sym[b.right];
        if (!l->n || !r->n || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) st->sym[r->next].prev = b.left;
        rc = try_bigram(st, l->prev, b.left);
        if (!rc) rc = try_bigram(st, b.left, l->next);
    }
    for (int64_t i = n_sym ? 0 : -1; !rc && i >= 0; i = st->sym[i].next) {
        const spm_sym *y = &st->sym[i];
        int32_t id = tok_map_get(t, esc + y->off, y->n);
        if (id >= 0) {
            rc = tok_ids_push(out, id);
            continue;
        }
        for (size_t j = 0; !rc && j < y->n; j++) { /* byte fallback */
            int32_t b = t->byte_tok[(uint8_t)esc[y->off + j]];
            if (b < 0) b = t->unk;
            if (b < 0)
                rc = loom_err("%s: encode: byte 0x%02x has no token and there is no <unk>", t->path,
                              (uint8_t)esc[y->off + j]);
            else
                rc = tok_ids_push(out, b);
        }
    }
    return rc;
}

int tok_spm_encode(const loom_tokenizer *t, tok_scratch *scratch, const char *text, size_t len,
                   bool prefix_space, tok_ids *out) {
    (void)scratch;
    /* escape: optional leading space, then ' ' -> "▁" (3 bytes) */
    size_t spaces = prefix_space;
    for (size_t i = 0; i < len; i++) spaces += text[i] == ' ';
    size_t n, cap;
    if (!loom_mul_ok(spaces, 2, &n) || !loom_add_ok(n, len + prefix_space, &cap))
        return loom_err("%s: encode: text too long", t->path);
    char *esc = loom_malloc(cap + 1);
    if (!esc) return -1;
    n = 0;
    if (prefix_space) {
        memcpy(esc, "\xe2\x96\x81", 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(esc + n, "\xe2\x96\x81", 3);
            n += 3;
        } else {
            esc[n++] = text[i];
        }
    }

    spm_state st = {.t = t, .text = esc};
    st.sym = loom_malloc((n ? n : 1) * sizeof *st.sym);
    int rc = st.sym ? 0 : -1;
    /* When no token has "▁" after another character (t->spm_words), no token spans the start
     * of a "▁" that follows a non-"▁" character, so the text can be merged word by word with
     * the same result and far smaller heaps. */
    size_t w0 = 0;
    if (t->spm_words)
        for (size_t i = 1; !rc && i < n; i++)
            if (is_space(esc, n, i) && !(i >= 3 && is_space(esc, n, i - 3))) {
                rc = spm_word(&st, w0, i, out);
                w0 = i;
            }
    if (!rc && w0 < n) rc = spm_word(&st, w0, n, out);
    free(st.sym);
    free(st.heap);
    free(esc);
    return rc;
}
