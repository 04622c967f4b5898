/* A session: one model on one backend, with its KV cache, arena and plan cache.
 *
 * Each eval builds the step's graph (cheap: a few hundred nodes), hashes it and looks the plan up;
 * only a new shape (a new prompt length) runs the planner. Decode steps reuse one plan. */
#include "loom.h"

#include "backends/backend.h"
#include "core/util.h"
#include "models/kvpool.h"
#include "models/model.h"
#include "models/session_internal.h"
#include "models/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct loom_session {
    loom_model *m;
    loom_backend *be;
    loom_session_opts o;
    char device[32];

    loom_weight_bufs weights;
    loom_buffer **state;   /* 2 per layer: K and V caches */
    int n_state;
    loom_runner run;       /* the arena, and preparing plans on the backend (backends/backend.h) */
    loom_plan_cache *plans;

    int pos, n_ctx;
    /* windowed layers' caches are rings of ring_rows (< n_ctx) rows while the session holds one
     * sequence; 0 = no rings (no window, a window near the context, or the session went paged).
     * A step then stores at most ring_step tokens: longer evals run in chunks of that many. */
    int ring_rows, ring_step;
    float *logits;         /* [logit_rows, n_vocab] of the last eval */
    int logit_rows;
    float **hidden;        /* [n_layer + 1] host copies, want_hidden only */
    int last_n;
    double *node_time;     /* per node, when profiling */
    loom_plan *last_plan;
    /* The graph of a step depends only on the model, the session options and the token count,
     * so the graph hash of the last shapes seen is remembered: a decode step skips building and
     * hashing its graph and goes straight to the plan cache. */
    struct { int n_tokens, n_seq, n_out; uint64_t key; } memo[8];
    int memo_next;

    /* several sequences: the cache's block pool (kvpool.h), live once loom_seq_new was called */
    loom_kvpool pool;
    bool paged;
    bool prefix_cache; /* loom_session_prefix_cache */
    float *copy_buf; /* one block of one layer's rows, for copy on write */
};

/* Rows per cache block of the paged layout. */
#define KV_BLOCK 16
/* Tokens per step with ring caches (LOOM_RING_STEP overrides it for tests; 0 turns rings off). */
#define RING_STEP 512

loom_session_opts loom_session_default_opts(void) {
    loom_session_opts o = {.device = "auto", .n_threads = 0, .n_ctx = 0};
    return o;
}

static void release_plan(loom_plan *p, void *ud) {
    loom_session *s = ud;
    loom_runner_release(&s->run, p);
}

void loom_session_free(loom_session *s) {
    if (!s) return;
    if (s->plans) loom_plan_cache_free(s->plans, release_plan, s);
    if (s->be) {
        loom_weights_free(&s->weights, s->be);
        for (int i = 0; i < s->n_state; i++)
            if (s->state[i]) s->be->ops->buf_free(s->be, s->state[i]);
        loom_runner_free(&s->run);
        loom_backend_close(s->be);
    }
    if (s->hidden)
        for (int i = 0; i <= s->m->hp.n_layer; i++) free(s->hidden[i]);
    free(s->hidden);
    free(s->state);
    free(s->logits);
    free(s->node_time);
    free(s->copy_buf);
    loom_kvpool_free(&s->pool);
    free(s);
}

/* Large models take a while to reach a GPU (or to be paged in and locked on the CPU): show how far
 * loading has got on an interactive terminal, in whole percent steps. */
typedef struct load_shown { const loom_session *s; int shown; } load_shown;

static void load_progress(void *ud, size_t done, size_t total) {
    load_shown *l = ud;
    if (!l->s->o.verbose || total < ((size_t)256 << 20) || !isatty(2)) return;
    int pct = (int)(100.0 * (double)done / (double)total);
    if (pct == l->shown) return;
    l->shown = pct;
    fprintf(stderr, "\rloom: loading weights onto %s: %3d%% of %.0f MiB", l->s->device, pct, (double)total / 1048576.0);
    if (done == total) fprintf(stderr, "\n");
}

static int upload_weights(loom_session *s) {
    load_shown l = {s, -1};
    int rc = loom_weights_upload(&s->weights, s->be, s->m, s->device, load_progress, &l);
    if (rc < 0 && l.shown >= 0 && l.shown < 100) fprintf(stderr, "\n");
    return rc;
}

/* Memory the host can give us: physical RAM, or less under a cgroup (v2 or v1) limit. 0 = unknown. */
static uint64_t host_memory_bytes(void) {
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    uint64_t mem = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
    const char *limits[] = {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(limits[i], "r");
        unsigned long long v;
        if (!f) continue;
        if (fscanf(f, "%llu", &v) == 1 && v > 0 && (!mem || v < mem)) mem = v; /* "max" reads as no limit */
        fclose(f);
    }
    return mem;
}

/* Refuse a KV cache that cannot exist before allocating any of it: CPU buffers are allocated
 * lazily by the kernel, so a cache larger than memory would "succeed" and the process would be
 * OOM-killed later, as the context fills. (A GPU reports its own allocation failures.) */
static int kv_check(loom_session *s, const size_t *layer_bytes) {
    const loom_hparams *hp = &s->m->hp;
    size_t total = 0;
    for (int l = 0; l < hp->n_layer; l++) {
        size_t two;
        if (layer_bytes[l] == SIZE_MAX || !loom_mul_ok(layer_bytes[l], 2, &two) || total + two < total)
            return loom_err("KV cache for --ctx %d overflows the address space", s->n_ctx);
        total += two;
    }
    uint64_t mem = strcmp(s->device, "cpu") ? 0 : host_memory_bytes();
    if (mem && total > mem)
        return loom_err("KV cache for --ctx %d needs %zu bytes (%d layers, K and V), more than the %llu bytes of "
                        "memory on this machine: lower --ctx",
                        s->n_ctx, total, hp->n_layer, (unsigned long long)mem);
    return 0;
}

/* Bytes of layer l's K (or V) cache: loom_kv_rows x loom_kv_width f32, SIZE_MAX on overflow. */
static size_t layer_kv_bytes(const loom_session *s, int l, int ring_step) {
    const loom_hparams *hp = &s->m->hp;
    size_t cells;
    if (!loom_mul_ok((size_t)loom_kv_rows(hp, l, s->n_ctx, ring_step), (size_t)loom_kv_width(hp, l), &cells) ||
        !loom_mul_ok(cells, sizeof(float), &cells))
        return SIZE_MAX;
    return cells;
}

loom_session *loom_session_new(loom_model *m, const loom_session_opts *opts) {
    loom_session_opts o = opts ? *opts : loom_session_default_opts();
    loom_session *s = loom_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->m = m;
    s->o = o;
    const loom_hparams *hp = &m->hp;
    s->n_ctx = o.n_ctx > 0 ? o.n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    /* only an automatic choice needs announcing; an explicit --device is what the user asked for */
    bool auto_dev = !o.device || !strcmp(o.device, "auto");
    loom_backend_opts bo = {.n_threads = o.n_threads, .device_index = -1, .verbose = o.verbose && auto_dev};
    const char *env = getenv("LOOM_SCALAR");
    bo.force_scalar = env && *env && strcmp(env, "0");
    s->be = loom_backend_open(o.device, &bo);
    if (!s->be) goto fail;
    snprintf(s->device, sizeof s->device, "%s", s->be->ops->name);
    s->run = (loom_runner){.be = s->be, .device = s->device};
    /* the KV cache: one K and one V tensor per layer, f32 [rows, kv_dim], rows = n_ctx or, for
     * a windowed layer, a ring (loom_kv_rows); checked before the weights are uploaded so an
     * impossible --ctx fails at once */
    const char *rs = getenv("LOOM_RING_STEP");
    s->ring_step = rs && *rs ? atoi(rs) : RING_STEP;
    if (s->ring_step < 0) s->ring_step = 0;
    for (int l = 0; l < hp->n_layer && s->ring_step > 0; l++)
        if (loom_kv_rows(hp, l, s->n_ctx, s->ring_step) < s->n_ctx) s->ring_rows = (int)loom_kv_rows(hp, l, s->n_ctx, s->ring_step);
    size_t *layer_bytes = loom_malloc((size_t)hp->n_layer * sizeof *layer_bytes);
    if (!layer_bytes) goto fail;
    for (int l = 0; l < hp->n_layer; l++) layer_bytes[l] = layer_kv_bytes(s, l, s->ring_rows ? s->ring_step : 0);
    if (kv_check(s, layer_bytes) < 0 || upload_weights(s) < 0) {
        free(layer_bytes);
        goto fail;
    }
    s->n_state = 2 * hp->n_layer;
    s->state = loom_calloc((size_t)s->n_state, sizeof *s->state);
    for (int i = 0; s->state && i < s->n_state; i++) {
        s->state[i] = s->be->ops->buf_alloc(s->be, layer_bytes[i / 2]);
        if (!s->state[i]) {
            loom_err_prefix("KV cache for --ctx %d (%zu bytes for layer %d's K) does not fit on %s", s->n_ctx,
                            layer_bytes[i / 2], i / 2, s->device);
            free(layer_bytes);
            goto fail;
        }
    }
    free(layer_bytes);
    if (!s->state) goto fail;
    if (o.verbose && s->ring_rows) {
        size_t full = 0;
        for (int l = 0; l < hp->n_layer; l++) full += 2 * layer_kv_bytes(s, l, 0);
        fprintf(stderr, "loom: KV cache %.1f MiB: windowed layers keep rings of %d rows (full-length: %.1f MiB)\n",
                (double)loom_session_kv_bytes(s) / 1048576.0, s->ring_rows, (double)full / 1048576.0);
    }
    s->plans = loom_plan_cache_new();
    s->logits = NULL;
    if (!s->plans) goto fail;
    if (o.want_hidden) {
        s->hidden = loom_calloc((size_t)hp->n_layer + 1, sizeof *s->hidden);
        if (!s->hidden) goto fail;
    }
    return s;
fail:
    loom_session_free(s);
    return NULL;
}

static loom_plan *cached_plan(loom_session *s, loom_graph *g, uint64_t key);

/* Find or build the plan for a step of n tokens; n_seq > 0: a paged step of n_seq sequences
 * keeping n_out logit rows (the memo key holds all three, so each batch shape has its plan). */
static loom_plan *step_plan(loom_session *s, int n, int n_seq, int n_out) {
    for (int i = 0; i < 8; i++) {
        if (s->memo[i].n_tokens != n || s->memo[i].n_seq != n_seq || s->memo[i].n_out != n_out) continue;
        loom_plan *p = loom_plan_cache_get(s->plans, s->memo[i].key);
        if (p) return p;
    }
    loom_graph *g = loom_graph_new();
    if (!g) return NULL;
    loom_build_opts bo = {.n_tokens = n, .n_ctx = s->n_ctx, .all_logits = s->o.all_logits, .want_hidden = s->o.want_hidden,
                          .ring_step = s->ring_rows ? s->ring_step : 0};
    if (n_seq > 0) {
        bo.ring_step = 0;
        bo.all_logits = bo.want_hidden = false;
        bo.n_seq = n_seq;
        bo.n_out = n_out;
        bo.block_size = s->pool.bs;
        bo.max_blocks = s->pool.max_blk;
    }
    if (s->m->arch->build(g, s->m, &bo) < 0) {
        loom_graph_free(g);
        return NULL;
    }
    uint64_t key = loom_graph_hash(g);
    s->memo[s->memo_next].n_seq = n_seq;
    s->memo[s->memo_next].n_out = n_out;
    s->memo[s->memo_next].n_tokens = n;
    s->memo[s->memo_next].key = key;
    s->memo_next = (s->memo_next + 1) % 8;
    return cached_plan(s, g, key);
}

/* The plan of graph g (whose hash is key) from the cache, or planned, checked and cached; g is
 * the plan's from then on, or freed. */
static loom_plan *cached_plan(loom_session *s, loom_graph *g, uint64_t key) {
    loom_plan *p = loom_plan_cache_get(s->plans, key);
    if (p) {
        loom_graph_free(g);
        return p;
    }
    p = loom_runner_plan(&s->run, g, NULL); /* support checked once per plan: it is cached below */
    if (!p) return NULL;
    loom_plan *evicted = loom_plan_cache_put_evict(s->plans, p);
    if (evicted) {
        release_plan(evicted, s);
        loom_plan_free(evicted);
    }
    return p;
}

static int write_input(loom_session *s, const loom_exec_ctx *x, const char *name, const int32_t *v, size_t n) {
    return loom_exec_write(s->be, x, loom_plan_input(x->plan, name), v, n * sizeof *v);
}

static int read_output(loom_session *s, const loom_exec_ctx *x, const char *name, float **dst, int *rows) {
    int i = loom_plan_output(x->plan, name);
    if (i < 0) return -1;
    const loom_node *nd = &x->plan->g->nodes[i];
    size_t bytes = loom_node_bytes(nd);
    float *buf = realloc(*dst, bytes);
    if (!buf) return loom_err("out of memory reading output '%s'", name);
    *dst = buf;
    if (rows) *rows = (int)(loom_node_nelem(nd) / nd->ne[nd->ndim - 1]);
    return loom_exec_read(s->be, x, i, 0, buf, bytes);
}

/* An output's rows into rows [off, off + its rows) of *dst, which holds `total` rows (allocated
 * when off is 0): the pieces of an eval run in chunks. */
static int read_output_rows(loom_session *s, const loom_exec_ctx *x, const char *name, float **dst, int off,
                            int total) {
    int i = loom_plan_output(x->plan, name);
    if (i < 0) return -1;
    const loom_node *nd = &x->plan->g->nodes[i];
    size_t bytes = loom_node_bytes(nd), rows = loom_node_nelem(nd) / (size_t)nd->ne[nd->ndim - 1];
    size_t row_bytes = bytes / rows;
    if (off == 0) {
        float *buf = realloc(*dst, (size_t)total * row_bytes);
        if (!buf) return loom_err("out of memory reading output '%s'", name);
        *dst = buf;
    }
    return loom_exec_read(s->be, x, i, 0, (char *)*dst + (size_t)off * row_bytes, bytes);
}

/* Ready the plan's arena and backend recording for a run. */
static int prepare_run(loom_session *s, loom_plan *p, loom_exec_ctx *x) {
    loom_exec_ctx bind = {.state = s->state, .n_state = s->n_state};
    loom_weights_bind(&s->weights, &bind);
    if (s->node_time) {
        double *nt = realloc(s->node_time, (size_t)p->g->n * sizeof *nt);
        if (!nt) return loom_err("out of memory for node timings");
        memset(nt, 0, (size_t)p->g->n * sizeof *nt);
        s->node_time = bind.node_time = nt;
    }
    return loom_runner_bind(&s->run, p, &bind, x);
}

/* Tokens [off, off + n) of an eval of `total`, at position s->pos. */
static int eval_step(loom_session *s, const int32_t *tokens, int n, int off, int total) {
    const loom_hparams *hp = &s->m->hp;
    loom_plan *p = step_plan(s, n, 0, 0);
    loom_exec_ctx x;
    if (!p || prepare_run(s, p, &x) < 0) return -1;
    int32_t *pos = loom_malloc(2 * (size_t)n * sizeof *pos);
    if (!pos) return -1;
    for (int i = 0; i < n; i++) pos[i] = s->pos + i;
    for (int i = 0; s->ring_rows && i < n; i++) pos[n + i] = (s->pos + i) % s->ring_rows;
    int rc = write_input(s, &x, "tokens", tokens, (size_t)n);
    if (rc == 0) rc = write_input(s, &x, "pos", pos, (size_t)n);
    if (rc == 0 && s->ring_rows) rc = write_input(s, &x, "ring_rows", pos + n, (size_t)n);
    free(pos);
    if (rc == 0) rc = loom_execute(s->be, &x);
    if (rc == 0) /* all_logits: every row, else the last token's (the last chunk's is the one kept) */
        rc = s->o.all_logits ? read_output_rows(s, &x, "logits", &s->logits, off, total)
                             : read_output_rows(s, &x, "logits", &s->logits, 0, 1);
    for (int l = 0; rc == 0 && s->hidden && l <= hp->n_layer; l++) {
        char name[32];
        snprintf(name, sizeof name, "hidden.%d", l);
        rc = read_output_rows(s, &x, name, &s->hidden[l], off, total);
    }
    if (rc < 0) return -1;
    s->pos += n;
    s->last_plan = p;
    return 0;
}

int loom_session_eval(loom_session *s, const int32_t *tokens, int n) {
    const loom_hparams *hp = &s->m->hp;
    if (n <= 0) return loom_err("nothing to evaluate (0 tokens)");
    if (s->paged && loom_kvpool_n_live(&s->pool) == 0) loom_session_reset(s); /* all freed: single again */
    if (s->paged)
        return loom_err("the session holds %d sequences: evaluate them with loom_session_eval_batch (or reset it)",
                        loom_kvpool_n_live(&s->pool));
    if (n > s->n_ctx - s->pos) /* not pos + n: n may be near INT_MAX */
        return loom_err("context full: %d tokens held + %d new exceed --ctx %d", s->pos, n, s->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= hp->n_vocab)
            return loom_err("token id %d at position %d is out of range (vocabulary has %d tokens)", tokens[i], i,
                            hp->n_vocab);
    /* with ring caches a step stores at most ring_step tokens: a longer prompt runs in chunks
     * (if one fails, the cache keeps the chunks before it) */
    int step = s->ring_rows ? s->ring_step : n;
    for (int off = 0; off < n; off += step)
        if (eval_step(s, tokens + off, n - off < step ? n - off : step, off, n) < 0) return -1;
    s->logit_rows = s->o.all_logits ? n : 1;
    s->last_n = n;
    return 0;
}

const float *loom_session_logits(const loom_session *s, int *n_rows) {
    if (n_rows) *n_rows = s->logit_rows;
    return s->logits;
}

const float *loom_session_hidden(const loom_session *s, int layer) {
    if (!s->hidden || layer < 0 || layer > s->m->hp.n_layer) return NULL;
    return s->hidden[layer];
}

int loom_session_pos(const loom_session *s) { return s->pos; }
int loom_session_ctx(const loom_session *s) { return s->n_ctx; }
void loom_session_reset(loom_session *s) {
    s->pos = 0;
    s->paged = false;
    if (s->pool.n_blocks) loom_kvpool_clear(&s->pool);
}
const char *loom_session_device(const loom_session *s) { return s->device; }

int loom_session_truncate(loom_session *s, int n) {
    if (s->paged) return loom_err("truncate: the session holds sequences (only a single-sequence cache truncates)");
    if (s->ring_rows) return loom_err("truncate: the model's windowed layers keep ring caches, whose older rows are gone");
    if (n < 0 || n > s->pos) return loom_err("truncate: %d is not between 0 and the %d tokens held", n, s->pos);
    s->pos = n; /* rows past n are written again before any attention reads them */
    return 0;
}

/* ---- several sequences (docs/batching.md) ------------------------------------------------------ */

/* Enter the paged mode: the cache rows become a pool of blocks. */
static int ensure_paged(loom_session *s) {
    if (s->paged) return 0;
    if (s->pos > 0)
        return loom_err("the session's single-sequence cache holds %d tokens: reset it before creating sequences",
                        s->pos);
    if (s->ring_rows) { /* the paged form has no rings: windowed layers get full caches from now on */
        const loom_hparams *hp = &s->m->hp;
        for (int l = 0; l < hp->n_layer; l++) {
            if (loom_kv_rows(hp, l, s->n_ctx, s->ring_step) == s->n_ctx) continue;
            size_t bytes = layer_kv_bytes(s, l, 0);
            for (int i = 2 * l; i < 2 * l + 2; i++) {
                loom_buffer *b = s->be->ops->buf_alloc(s->be, bytes);
                if (!b) {
                    loom_err_prefix("KV cache for --ctx %d (%zu bytes for layer %d) does not fit on %s", s->n_ctx,
                                    bytes, l, s->device);
                    return -1;
                }
                s->be->ops->buf_free(s->be, s->state[i]);
                s->state[i] = b;
            }
        }
        s->ring_rows = 0;
    }
    if (!s->pool.n_blocks) {
        int bs = s->n_ctx < KV_BLOCK ? s->n_ctx : KV_BLOCK;
        if (loom_kvpool_init(&s->pool, s->n_ctx / bs, bs) < 0) return -1;
        size_t w = (size_t)loom_kv_width(&s->m->hp, 0);
        if (!(s->copy_buf = loom_malloc((size_t)bs * w * sizeof(float)))) return -1;
    }
    loom_kvpool_clear(&s->pool);
    loom_kvpool_prefix(&s->pool, s->prefix_cache);
    s->paged = true;
    return 0;
}

void loom_session_prefix_cache(loom_session *s, bool on) {
    s->prefix_cache = on;
    if (s->pool.n_blocks) loom_kvpool_prefix(&s->pool, on);
}

int loom_seq_new_cached(loom_session *s, const int32_t *tokens, int n) {
    if (ensure_paged(s) < 0) return -1;
    return loom_kvpool_seq_new_prefix(&s->pool, tokens, n);
}

loom_prefix_stats loom_session_prefix_stats(const loom_session *s) {
    return (loom_prefix_stats){.blocks = s->pool.n_cached, .blocks_unused = s->pool.n_lru,
                               .block_tokens = s->pool.bs, .evictions = s->pool.evictions};
}

int loom_seq_new(loom_session *s) {
    if (ensure_paged(s) < 0) return -1;
    return loom_kvpool_seq_new(&s->pool);
}

int loom_seq_fork(loom_session *s, int id) {
    if (!s->paged) return loom_err("unknown sequence id %d (the session holds no sequences)", id);
    return loom_kvpool_seq_fork(&s->pool, id);
}

int loom_seq_free(loom_session *s, int id) {
    if (!s->paged) return loom_err("unknown sequence id %d (the session holds no sequences)", id);
    return loom_kvpool_seq_free(&s->pool, id);
}

int loom_seq_pos(const loom_session *s, int id) {
    if (!s->paged) return loom_err("unknown sequence id %d (the session holds no sequences)", id);
    loom_kvseq *q = loom_kvpool_get((loom_kvpool *)&s->pool, id);
    return q ? q->len : -1;
}

/* Copy on write: block src's rows to block dst, in every layer's K and V cache (on the device
 * when the backend can, else through the host). */
static int copy_block(loom_session *s, loom_kvcopy c) {
    size_t bytes = (size_t)s->pool.bs * (size_t)loom_kv_width(&s->m->hp, 0) * sizeof(float);
    for (int i = 0; i < s->n_state; i++)
        if (s->be->ops->buf_copy) {
            if (s->be->ops->buf_copy(s->be, s->state[i], (size_t)c.dst * bytes, s->state[i], (size_t)c.src * bytes,
                                     bytes) < 0)
                return -1;
        } else if (s->be->ops->buf_read(s->be, s->state[i], (size_t)c.src * bytes, s->copy_buf, bytes) < 0 ||
            s->be->ops->buf_write(s->be, s->state[i], (size_t)c.dst * bytes, s->copy_buf, bytes) < 0)
            return -1;
    return 0;
}

/* The per-token inputs of a batch, and the sequences it touches. */
typedef struct batch_plan {
    int n_seq, n_out;
    int *ids, *cnt, *old_len, *first; /* per sequence in the batch: id, tokens, length before, first slot */
    int32_t *local, *pos, *slot, *rows, *table, *slots_by_seq;
} batch_plan;

static void batch_plan_free(batch_plan *bp) {
    free(bp->ids), free(bp->cnt), free(bp->old_len), free(bp->first);
    free(bp->local), free(bp->pos), free(bp->slot), free(bp->rows), free(bp->table), free(bp->slots_by_seq);
}

/* Check the batch and group its tokens by sequence (in order of first appearance). */
static int batch_group(loom_session *s, const loom_batch *b, batch_plan *bp) {
    int n = b->n;
    bp->ids = loom_malloc((size_t)n * sizeof(int));
    bp->cnt = loom_calloc((size_t)n, sizeof(int));
    bp->old_len = loom_malloc((size_t)n * sizeof(int));
    bp->first = loom_malloc((size_t)n * sizeof(int));
    bp->local = loom_malloc((size_t)n * sizeof(int32_t));
    bp->pos = loom_malloc((size_t)n * sizeof(int32_t));
    bp->slot = loom_malloc((size_t)n * sizeof(int32_t));
    bp->rows = loom_malloc((size_t)n * sizeof(int32_t));
    bp->slots_by_seq = loom_malloc((size_t)n * sizeof(int32_t));
    if (!bp->ids || !bp->cnt || !bp->old_len || !bp->first || !bp->local || !bp->pos || !bp->slot || !bp->rows ||
        !bp->slots_by_seq)
        return -1;
    for (int i = 0; i < n; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= s->m->hp.n_vocab)
            return loom_err("token id %d at batch row %d is out of range (vocabulary has %d tokens)", b->tokens[i], i,
                            s->m->hp.n_vocab);
        if (!loom_kvpool_get(&s->pool, b->seq[i])) return loom_err_prefix("batch row %d", i), -1;
        int k = 0;
        while (k < bp->n_seq && bp->ids[k] != b->seq[i]) k++;
        if (k == bp->n_seq) {
            bp->ids[k] = b->seq[i];
            bp->old_len[k] = s->pool.seq[b->seq[i]].len;
            bp->n_seq++;
        }
        bp->local[i] = k;
        bp->pos[i] = bp->old_len[k] + bp->cnt[k]++;
    }
    for (int i = 0; i < n; i++) { /* logit rows: as asked, or each sequence's last token */
        bool last = true;
        for (int j = i + 1; j < n && last; j++) last = b->seq[j] != b->seq[i];
        if (b->logits ? b->logits[i] : last) bp->rows[bp->n_out++] = i;
    }
    return 0;
}

/* Take the batch's cache rows from the pool (all or nothing) and do the copies on write. */
static int batch_reserve(loom_session *s, const loom_batch *b, batch_plan *bp) {
    loom_kvpool *pl = &s->pool;
    int need = loom_kvpool_blocks_needed(pl, bp->ids, bp->cnt, bp->n_seq);
    if (need > loom_kvpool_available(pl))
        return loom_err("KV cache full: the batch needs %d more blocks of %d rows, %d of %d are free (raise --ctx or "
                        "free sequences)", need, pl->bs, loom_kvpool_available(pl), pl->n_blocks);
    /* the tokens grouped by sequence (their ids go into the prefix cache) */
    int32_t *tok = loom_malloc((size_t)b->n * sizeof *tok);
    int *used = loom_calloc((size_t)bp->n_seq, sizeof *used);
    if (!tok || !used) {
        free(tok), free(used);
        return -1;
    }
    for (int k = 0, off = 0; k < bp->n_seq; k++) bp->first[k] = off, off += bp->cnt[k];
    for (int i = 0; i < b->n; i++) tok[bp->first[bp->local[i]] + used[bp->local[i]]++] = b->tokens[i];
    free(used);
    loom_kvcopy copy;
    int off = 0, k = 0;
    for (; k < bp->n_seq; k++) {
        int nc = 0;
        if (loom_kvpool_append(pl, bp->ids[k], bp->cnt[k], tok + off, bp->slots_by_seq + off, &copy, &nc) < 0) break;
        if (nc && copy_block(s, copy) < 0) {
            k++;
            break;
        }
        off += bp->cnt[k];
    }
    free(tok);
    if (k == bp->n_seq) return 0;
    while (k-- > 0) loom_kvpool_truncate(pl, bp->ids[k], bp->old_len[k]);
    return -1;
}

/* Fill slot[] and the [n_seq, max_blocks] block table for the graph. */
static int batch_tables(loom_session *s, const loom_batch *b, batch_plan *bp) {
    int M = s->pool.max_blk;
    bp->table = loom_calloc((size_t)bp->n_seq * (size_t)M, sizeof(int32_t));
    if (!bp->table) return -1;
    int *used = loom_calloc((size_t)bp->n_seq, sizeof(int));
    if (!used) return -1;
    for (int i = 0; i < b->n; i++) {
        int k = bp->local[i];
        bp->slot[i] = bp->slots_by_seq[bp->first[k] + used[k]++];
    }
    free(used);
    for (int k = 0; k < bp->n_seq; k++) {
        const loom_kvseq *q = &s->pool.seq[bp->ids[k]];
        memcpy(bp->table + (size_t)k * (size_t)M, q->blk, (size_t)q->n_blk * sizeof(int32_t));
    }
    return 0;
}

static int batch_run(loom_session *s, const loom_batch *b, batch_plan *bp) {
    int n_out = bp->n_out ? bp->n_out : 1; /* a graph needs an output; none asked: compute one, return none */
    if (!bp->n_out) bp->rows[0] = b->n - 1;
    loom_plan *p = step_plan(s, b->n, bp->n_seq, n_out);
    loom_exec_ctx x;
    if (!p || prepare_run(s, p, &x) < 0) return -1;
    size_t n = (size_t)b->n;
    if (write_input(s, &x, "tokens", b->tokens, n) < 0 || write_input(s, &x, "pos", bp->pos, n) < 0 ||
        write_input(s, &x, "slot", bp->slot, n) < 0 || write_input(s, &x, "seq", bp->local, n) < 0 ||
        write_input(s, &x, "table", bp->table, (size_t)bp->n_seq * (size_t)s->pool.max_blk) < 0 ||
        write_input(s, &x, "out_rows", bp->rows, (size_t)n_out) < 0)
        return -1;
    if (loom_execute(s->be, &x) < 0 || read_output(s, &x, "logits", &s->logits, &s->logit_rows) < 0) return -1;
    s->logit_rows = bp->n_out;
    s->last_n = b->n;
    s->last_plan = p;
    return 0;
}

int loom_session_eval_batch(loom_session *s, const loom_batch *b) {
    if (!b || b->n <= 0 || !b->tokens || !b->seq) return loom_err("nothing to evaluate (an empty batch)");
    if (!s->paged) return loom_err("unknown sequence id %d (the session holds no sequences: loom_seq_new)", b->seq[0]);
    batch_plan bp = {0};
    int rc = batch_group(s, b, &bp);
    if (rc == 0) rc = batch_reserve(s, b, &bp);
    if (rc == 0) {
        if (batch_tables(s, b, &bp) < 0 || batch_run(s, b, &bp) < 0) {
            for (int k = 0; k < bp.n_seq; k++) loom_kvpool_truncate(&s->pool, bp.ids[k], bp.old_len[k]);
            rc = -1;
        }
    }
    batch_plan_free(&bp);
    return rc;
}

/* Context shift: the cache holds hist[0..*n); keep the first n_keep tokens and drop half of the
 * rest (the oldest). A loom_build_decoder model moves the cache rows that stay down and re-rotates
 * their keys by the number of dropped positions (loom_build_kshift): RoPE rotations compose, so a
 * key rotated for position p and then by -d is the key of position p - d. Other graphs (none
 * today) re-evaluate what is left from position 0, as LOOM_CTX_SHIFT=reeval does for every model. */
bool loom_session_shift_rotates(const loom_session *s) {
    const char *e = getenv("LOOM_CTX_SHIFT");
    /* ring caches (windowed layers) hold their rows at pos % ring: moving them is not wired, so
     * such a session re-evaluates */
    return s->m->arch->build == loom_build_decoder && !s->ring_rows && !(e && !strcmp(e, "reeval"));
}

static int shift_rotate(loom_session *s, int keep, int d, int rest) {
    loom_graph *g = loom_graph_new();
    if (!g) return -1;
    if (loom_build_kshift(g, s->m, s->n_ctx, keep, d, rest) < 0) {
        loom_graph_free(g);
        return -1;
    }
    loom_plan *p = cached_plan(s, g, loom_graph_hash(g));
    loom_exec_ctx x;
    if (!p || prepare_run(s, p, &x) < 0) return -1;
    int32_t *v = loom_malloc(2 * (size_t)rest * sizeof *v);
    if (!v) return -1;
    for (int i = 0; i < rest; i++) {
        v[i] = -d;
        v[rest + i] = keep + i;
    }
    int rc = write_input(s, &x, "shift_pos", v, (size_t)rest);
    if (rc == 0) rc = write_input(s, &x, "shift_rows", v + rest, (size_t)rest);
    free(v);
    if (rc == 0) rc = loom_execute(s->be, &x);
    if (rc < 0) return -1;
    s->pos = keep + rest;
    s->last_plan = p;
    return 0;
}

int loom_session_ctx_shift(loom_session *s, int32_t *hist, int *n, int n_keep) {
    if (s->paged) return loom_err("context shift: the session holds sequences (only a single-sequence cache shifts)");
    if (*n != s->pos) return loom_err("context shift: %d tokens given but the cache holds %d", *n, s->pos);
    if (n_keep < 0) n_keep = 0;
    if (n_keep > *n) n_keep = *n;
    int n_discard = (*n - n_keep) / 2;
    if (n_discard == 0) return loom_err("context shift: nothing to discard (--keep %d of %d tokens)", n_keep, *n);
    int rest = *n - n_keep - n_discard;
    if (loom_session_shift_rotates(s)) {
        if (shift_rotate(s, n_keep, n_discard, rest) < 0) { /* rest >= 1: n_discard >= 1 needs 2 past keep */
            loom_err_prefix("context shift");
            return -1;
        }
        memmove(hist + n_keep, hist + n_keep + n_discard, (size_t)rest * sizeof *hist);
        *n -= n_discard;
        return n_discard;
    }
    memmove(hist + n_keep, hist + n_keep + n_discard, (size_t)rest * sizeof *hist);
    *n -= n_discard;
    s->pos = 0;
    for (int i = 0; i < *n; i += 512) { /* chunks bound the prefill arena */
        int k = *n - i < 512 ? *n - i : 512;
        if (loom_session_eval(s, hist + i, k) < 0) return -1;
    }
    return n_discard;
}

/* ---- internal hooks for tools (profile, dump, bench) -------------------------------------------- */
void loom_session_set_profiling(loom_session *s, bool on) {
    if (on && !s->node_time) s->node_time = calloc(1, sizeof *s->node_time);
    if (!on) {
        free(s->node_time);
        s->node_time = NULL;
    }
}

const loom_plan *loom_session_last_plan(const loom_session *s, const double **node_time) {
    if (node_time) *node_time = s->node_time;
    return s->last_plan;
}

loom_backend *loom_session_backend(const loom_session *s) { return s->be; }

size_t loom_session_kv_bytes(const loom_session *s) {
    size_t total = 0;
    for (int l = 0; l < s->m->hp.n_layer; l++) total += 2 * layer_kv_bytes(s, l, s->ring_rows ? s->ring_step : 0);
    return total;
}

int loom_session_read_state(const loom_session *s, int slot, int row, int n_rows, float *dst) {
    if (slot < 0 || slot >= s->n_state || row < 0 || n_rows < 0 ||
        n_rows > loom_kv_rows(&s->m->hp, slot / 2, s->n_ctx, s->ring_rows ? s->ring_step : 0) - row)
        return loom_err("state slot %d rows [%d, +%d) are outside the session's cache", slot, row, n_rows);
    size_t w = (size_t)loom_kv_width(&s->m->hp, slot / 2) * sizeof(float);
    return s->be->ops->buf_read(s->be, s->state[slot], (size_t)row * w, dst, (size_t)n_rows * w);
}

int loom_session_n_vocab(const loom_session *s) { return s->m->hp.n_vocab; }
