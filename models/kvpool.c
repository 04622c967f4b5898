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
    p->ref = loom_calloc((size_t)n_blocks, sizeof *p->ref);
    p->free_list = loom_calloc((size_t)n_blocks, sizeof *p->free_list);
    if (!p->ref || !p->free_list) {
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
    }
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
    if (--p->ref[b] == 0) p->free_list[p->n_free++] = b;
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

int loom_kvpool_append(loom_kvpool *p, int id, int n, int32_t *slots, loom_kvcopy *copies, int *n_copies) {
    loom_kvseq *s = loom_kvpool_get(p, id);
    if (!s) return -1;
    if (n < 0) return loom_err("sequence %d: cannot append %d tokens", id, n);
    if ((int64_t)s->len + n > (int64_t)p->max_blk * p->bs)
        return loom_err("sequence %d: %d tokens held + %d new exceed --ctx %d", id, s->len, n, p->max_blk * p->bs);
    int64_t need = need_one(p, s, n);
    if (need > p->n_free)
        return loom_err("KV cache full: sequence %d needs %lld more blocks of %d rows, %d of %d are free (raise --ctx "
                        "or free sequences)", id, (long long)need, p->bs, p->n_free, p->n_blocks);
    if (n > 0 && s->len % p->bs && p->ref[s->blk[s->n_blk - 1]] > 1) {
        int old = s->blk[s->n_blk - 1], nb = p->free_list[--p->n_free];
        p->ref[nb] = 1;
        p->ref[old]--; /* still owned by another sequence: never reaches 0 here */
        s->blk[s->n_blk - 1] = nb;
        copies[(*n_copies)++] = (loom_kvcopy){old, nb};
    }
    for (int i = 0; i < n; i++, s->len++) {
        if (s->len % p->bs == 0) {
            int nb = p->free_list[--p->n_free];
            p->ref[nb] = 1;
            s->blk[s->n_blk++] = nb;
        }
        slots[i] = (int32_t)s->blk[s->len / p->bs] * p->bs + s->len % p->bs;
    }
    return 0;
}

void loom_kvpool_truncate(loom_kvpool *p, int id, int len) {
    loom_kvseq *s = &p->seq[id];
    if (len < 0 || len >= s->len) return;
    int keep = (len + p->bs - 1) / p->bs;
    for (int b = s->n_blk - 1; b >= keep; b--) unref(p, s->blk[b]);
    s->n_blk = keep;
    s->len = len;
}
