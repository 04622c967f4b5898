/* Block pool of the paged KV cache: free list, reference counts, copy on write (kvpool.h). */
#include "models/kvpool.h"

#include "core/util.h"

#include <stdlib.h>
#include <string.h>

int loom_kvpool_init(loom_kvpool *p, int n_blocks, int bs) {
    memset(p, 0, sizeof *p);
    if (bs <= 0 || n_blocks <= 0)
        return loom_err("KV cache: %d blocks of %d rows is not a pool (raise --ctx)", n_blocks, bs);
    p->bs = bs;
    p->n_blocks = p->max_blk = n_blocks;
    size_t nb = (size_t)n_blocks;
    p->n_bucket = 1;
    while (p->n_bucket < 2 * n_blocks) p->n_bucket *= 2;
    p->ref = loom_calloc(nb, sizeof *p->ref);
    p->free_list = loom_calloc(nb, sizeof *p->free_list);
    p->tok = loom_calloc(nb * (size_t)bs, sizeof *p->tok);
    p->hash = loom_calloc(nb, sizeof *p->hash);
    p->parent = loom_calloc(nb, sizeof *p->parent);
    p->cached = loom_calloc(nb, sizeof *p->cached);
    p->bucket = loom_calloc((size_t)p->n_bucket, sizeof *p->bucket);
    p->hnext = loom_calloc(nb, sizeof *p->hnext);
    p->lprev = loom_calloc(nb, sizeof *p->lprev);
    p->lnext = loom_calloc(nb, sizeof *p->lnext);
    if (!p->ref || !p->free_list || !p->tok || !p->hash || !p->parent || !p->cached || !p->bucket || !p->hnext ||
        !p->lprev || !p->lnext) {
        loom_kvpool_free(p);
        return -1;
    }
    loom_kvpool_clear(p);
    return 0;
}

void loom_kvpool_free(loom_kvpool *p) {
    for (int i = 0; i < p->n_seq; i++) free(p->seq[i].blk);
    free(p->seq);
    free(p->ref);
    free(p->free_list);
    free(p->tok), free(p->hash), free(p->parent), free(p->cached), free(p->bucket), free(p->hnext);
    free(p->lprev), free(p->lnext);
    memset(p, 0, sizeof *p);
}

void loom_kvpool_clear(loom_kvpool *p) {
    for (int i = 0; i < p->n_seq; i++) {
        p->seq[i].live = false;
        p->seq[i].len = p->seq[i].n_blk = 0;
    }
    /* lowest block on top of the stack, so a lone sequence gets blocks 0, 1, 2, ... */
    p->n_free = p->n_blocks;
    for (int b = 0; b < p->n_blocks; b++) {
        p->ref[b] = 0;
        p->free_list[b] = p->n_blocks - 1 - b;
        p->cached[b] = false;
    }
    for (int i = 0; i < p->n_bucket; i++) p->bucket[i] = -1;
    p->lru_head = p->lru_tail = -1;
    p->n_lru = p->n_cached = 0;
}

int loom_kvpool_available(const loom_kvpool *p) { return p->n_free + p->n_lru; }

/* ---- the prefix cache: a hash table of full blocks, and an LRU list of the unowned ones -------- */
#define CHAIN_SEED 0x9e3779b97f4a7c15ull

/* The chain hash of a block of bs tokens following a block whose hash is parent (FNV-1a over the
 * ids, then a final mix so that the low bits index the table well). */
static uint64_t chain_hash(uint64_t parent, const int32_t *t, int bs) {
    uint64_t h = parent ^ 0xcbf29ce484222325ull;
    for (int i = 0; i < bs; i++) {
        uint32_t v = (uint32_t)t[i];
        for (int k = 0; k < 4; k++, v >>= 8) h = (h ^ (v & 0xff)) * 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static void lru_remove(loom_kvpool *p, int b) {
    if (p->lprev[b] >= 0) p->lnext[p->lprev[b]] = p->lnext[b];
    else p->lru_head = p->lnext[b];
    if (p->lnext[b] >= 0) p->lprev[p->lnext[b]] = p->lprev[b];
    else p->lru_tail = p->lprev[b];
    p->n_lru--;
}

static void lru_push(loom_kvpool *p, int b) { /* newest at the tail */
    p->lprev[b] = p->lru_tail;
    p->lnext[b] = -1;
    if (p->lru_tail >= 0) p->lnext[p->lru_tail] = b;
    else p->lru_head = b;
    p->lru_tail = b;
    p->n_lru++;
}

/* The registered block with this hash, parent and tokens, or -1. */
static int table_find(const loom_kvpool *p, uint64_t h, uint64_t parent, const int32_t *t) {
    for (int b = p->bucket[h & (uint64_t)(p->n_bucket - 1)]; b >= 0; b = p->hnext[b])
        if (p->hash[b] == h && p->parent[b] == parent && !memcmp(p->tok + (size_t)b * p->bs, t, (size_t)p->bs * sizeof *t))
            return b;
    return -1;
}

static void table_remove(loom_kvpool *p, int b) {
    int *link = &p->bucket[p->hash[b] & (uint64_t)(p->n_bucket - 1)];
    while (*link != b) link = &p->hnext[*link];
    *link = p->hnext[b];
    p->cached[b] = false;
    p->n_cached--;
}

/* Block b (held by one sequence, at index k of its table) has just filled up: give it its chain
 * hash (0 when a row's token id is unknown, or its parent's hash is: such a block is never
 * looked up) and register it unless an equal block is registered already. */
static void block_filled(loom_kvpool *p, const loom_kvseq *s, int k) {
    int b = s->blk[k];
    const int32_t *t = p->tok + (size_t)b * p->bs;
    uint64_t parent = k ? p->hash[s->blk[k - 1]] : CHAIN_SEED;
    if (p->cached[b]) table_remove(p, b); /* never happens: truncate forgets a block it leaves partly filled */
    p->parent[b] = parent;
    p->hash[b] = 0;
    if (!parent) return;
    for (int i = 0; i < p->bs; i++)
        if (t[i] < 0) return;
    uint64_t h = chain_hash(parent, t, p->bs);
    p->hash[b] = h ? h : 1;
    if (!p->prefix || table_find(p, p->hash[b], parent, t) >= 0) return;
    int *head = &p->bucket[p->hash[b] & (uint64_t)(p->n_bucket - 1)];
    p->hnext[b] = *head;
    *head = b;
    p->cached[b] = true;
    p->n_cached++;
}

/* A block for writing: from the free list, else the least recently used cached block. */
static int take_block(loom_kvpool *p) {
    int b;
    if (p->n_free) {
        b = p->free_list[--p->n_free];
    } else {
        b = p->lru_head;
        lru_remove(p, b);
        table_remove(p, b);
        p->evictions++;
    }
    p->ref[b] = 1;
    p->hash[b] = 0;
    return b;
}

void loom_kvpool_prefix(loom_kvpool *p, bool on) {
    if (!on) { /* forget every cached block: unowned ones go back to the free list */
        while (p->lru_head >= 0) {
            int b = p->lru_head;
            lru_remove(p, b);
            p->free_list[p->n_free++] = b;
        }
        for (int b = 0; b < p->n_blocks; b++)
            if (p->cached[b]) table_remove(p, b);
    }
    p->prefix = on;
}

int loom_kvpool_n_live(const loom_kvpool *p) {
    int n = 0;
    for (int i = 0; i < p->n_seq; i++) n += p->seq[i].live;
    return n;
}

loom_kvseq *loom_kvpool_get(loom_kvpool *p, int id) {
    if (id < 0 || id >= p->n_seq || !p->seq[id].live) return loom_err_null("unknown sequence id %d", id);
    return &p->seq[id];
}

/* A free sequence slot (reusing freed ids first, so ids stay small). */
static int seq_slot(loom_kvpool *p) {
    for (int i = 0; i < p->n_seq; i++)
        if (!p->seq[i].live) return i;
    if (p->n_seq == p->cap_seq) {
        int cap = p->cap_seq ? 2 * p->cap_seq : 16;
        loom_kvseq *s = loom_realloc(p->seq, (size_t)cap * sizeof *s);
        if (!s) return -1;
        p->seq = s;
        p->cap_seq = cap;
    }
    loom_kvseq *s = &p->seq[p->n_seq];
    memset(s, 0, sizeof *s);
    if (!(s->blk = loom_calloc((size_t)p->max_blk, sizeof *s->blk))) return -1;
    return p->n_seq++;
}

int loom_kvpool_seq_new(loom_kvpool *p) {
    int id = seq_slot(p);
    if (id < 0) return -1;
    p->seq[id].live = true;
    p->seq[id].len = p->seq[id].n_blk = 0;
    return id;
}

int loom_kvpool_seq_fork(loom_kvpool *p, int id) {
    if (!loom_kvpool_get(p, id)) return -1;
    int nid = seq_slot(p); /* may move p->seq: look the source up again after */
    if (nid < 0) return -1;
    loom_kvseq *s = &p->seq[id], *d = &p->seq[nid];
    d->live = true;
    d->len = s->len;
    d->n_blk = s->n_blk;
    memcpy(d->blk, s->blk, (size_t)s->n_blk * sizeof *d->blk);
    for (int b = 0; b < s->n_blk; b++) p->ref[s->blk[b]]++;
    return nid;
}

static void unref(loom_kvpool *p, int b) {
    if (--p->ref[b] > 0) return;
    if (p->cached[b]) lru_push(p, b);
    else p->free_list[p->n_free++] = b;
}

int loom_kvpool_seq_new_prefix(loom_kvpool *p, const int32_t *tokens, int n) {
    int id = loom_kvpool_seq_new(p);
    if (id < 0 || !p->prefix) return id;
    loom_kvseq *s = &p->seq[id];
    uint64_t h = CHAIN_SEED;
    for (int k = 0; (k + 1) * p->bs <= n - 1 && k < p->max_blk; k++) {
        const int32_t *t = tokens + (size_t)k * p->bs;
        uint64_t hb = chain_hash(h, t, p->bs);
        int b = table_find(p, hb ? hb : 1, h, t);
        if (b < 0) break;
        if (p->ref[b]++ == 0) lru_remove(p, b);
        s->blk[s->n_blk++] = b;
        s->len += p->bs;
        h = p->hash[b];
    }
    return id;
}

int loom_kvpool_seq_free(loom_kvpool *p, int id) {
    loom_kvseq *s = loom_kvpool_get(p, id);
    if (!s) return -1;
    for (int b = s->n_blk - 1; b >= 0; b--) unref(p, s->blk[b]);
    s->live = false;
    s->len = s->n_blk = 0;
    return 0;
}

/* Blocks one append of n tokens takes: new blocks, plus one when the shared last block is copied. */
static int64_t need_one(const loom_kvpool *p, const loom_kvseq *s, int n) {
    int64_t end = (int64_t)s->len + n, blocks = (end + p->bs - 1) / p->bs - s->n_blk;
    bool cow = n > 0 && s->len % p->bs && p->ref[s->blk[s->n_blk - 1]] > 1;
    return blocks + cow;
}

int loom_kvpool_blocks_needed(const loom_kvpool *p, const int *ids, const int *need, int n) {
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += need_one(p, &p->seq[ids[i]], need[i]);
    return total > p->n_blocks ? p->n_blocks + 1 : (int)total;
}

int loom_kvpool_append(loom_kvpool *p, int id, int n, const int32_t *tokens, int32_t *slots, loom_kvcopy *copies,
                       int *n_copies) {
    loom_kvseq *s = loom_kvpool_get(p, id);
    if (!s) return -1;
    if (n < 0) return loom_err("sequence %d: cannot append %d tokens", id, n);
    if ((int64_t)s->len + n > (int64_t)p->max_blk * p->bs)
        return loom_err("sequence %d: %d tokens held + %d new exceed --ctx %d", id, s->len, n, p->max_blk * p->bs);
    int64_t need = need_one(p, s, n);
    if (need > loom_kvpool_available(p))
        return loom_err("KV cache full: sequence %d needs %lld more blocks of %d rows, %d of %d are free (raise --ctx "
                        "or free sequences)", id, (long long)need, p->bs, loom_kvpool_available(p), p->n_blocks);
    if (n > 0 && s->len % p->bs && p->ref[s->blk[s->n_blk - 1]] > 1) {
        int old = s->blk[s->n_blk - 1], nb = take_block(p);
        p->ref[old]--; /* still owned by another sequence: never reaches 0 here */
        s->blk[s->n_blk - 1] = nb;
        memcpy(p->tok + (size_t)nb * p->bs, p->tok + (size_t)old * p->bs, (size_t)(s->len % p->bs) * sizeof *p->tok);
        copies[(*n_copies)++] = (loom_kvcopy){old, nb};
    }
    for (int i = 0; i < n; i++, s->len++) {
        if (s->len % p->bs == 0) s->blk[s->n_blk++] = take_block(p);
        slots[i] = (int32_t)s->blk[s->len / p->bs] * p->bs + s->len % p->bs;
        p->tok[slots[i]] = tokens ? tokens[i] : -1;
        if ((s->len + 1) % p->bs == 0) block_filled(p, s, s->len / p->bs);
    }
    return 0;
}

void loom_kvpool_truncate(loom_kvpool *p, int id, int len) {
    loom_kvseq *s = &p->seq[id];
    if (len < 0 || len >= s->len) return;
    int keep = (len + p->bs - 1) / p->bs;
    for (int k = s->n_blk - 1; k >= keep; k--) { /* blocks appended by the undone batch: never written */
        int b = s->blk[k];
        if (p->ref[b] == 1 && p->cached[b]) table_remove(p, b);
        unref(p, b);
    }
    /* a last block left partly filled was registered if the undone batch filled it */
    if (len % p->bs && p->cached[s->blk[keep - 1]] && p->ref[s->blk[keep - 1]] == 1) table_remove(p, s->blk[keep - 1]);
    s->n_blk = keep;
    s->len = len;
}
