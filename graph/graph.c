/* Graph construction: the builder API model files call. Each function checks its sources' shapes
 * and types, appends one node and returns its index (or -1 with an error). */
#include "graph/graph.h"

#include "core/qblock.h"
#include "core/util.h"

#include <math.h>
#include <stdlib.h>
#include <xxhash.h>

/* Every per-op table asserts the op count (as here), so a new op stops the build until each
 * table (this one, the CPU's cpu_compute_fns, the Vulkan backend's switches) knows it. */
_Static_assert(LOOM_OP_COUNT == 21, "a new op: give it a name in op_names");
static const char *const op_names[LOOM_OP_COUNT] = {
    [LOOM_OP_INPUT] = "input",       [LOOM_OP_WEIGHT] = "weight",   [LOOM_OP_STATE] = "state",
    [LOOM_OP_EMBED] = "embed",       [LOOM_OP_MATMUL] = "matmul",   [LOOM_OP_ADD] = "add",
    [LOOM_OP_MUL] = "mul",           [LOOM_OP_SCALE] = "scale",     [LOOM_OP_RMSNORM] = "rmsnorm",
    [LOOM_OP_SILU] = "silu",         [LOOM_OP_SWIGLU] = "swiglu",   [LOOM_OP_SOFTMAX] = "softmax",
    [LOOM_OP_ROPE] = "rope",         [LOOM_OP_KV_STORE] = "kv_store", [LOOM_OP_ATTENTION] = "attention",
    [LOOM_OP_VIEW] = "view",         [LOOM_OP_PERMUTE] = "permute",   [LOOM_OP_GELU] = "gelu",
    [LOOM_OP_GEGLU] = "geglu",       [LOOM_OP_SOFTCAP] = "softcap",   [LOOM_OP_MOE] = "moe",
};

const char *loom_op_name(loom_op op) {
    return (op >= 0 && op < LOOM_OP_COUNT && op_names[op]) ? op_names[op] : "?";
}

loom_graph *loom_graph_new(void) {
    loom_graph *g = loom_calloc(1, sizeof *g);
    return g;
}

void loom_graph_free(loom_graph *g) {
    if (!g) return;
    free(g->nodes);
    free(g->log);
    free(g);
}

int loom_graph_count_groups(const loom_graph *g) {
    int max = -1, count = 0;
    for (int i = 0; i < g->n; i++)
        if (!(g->nodes[i].flags & LOOM_NODE_DEAD) && g->nodes[i].group > max) max = g->nodes[i].group;
    unsigned char *seen = max >= 0 ? calloc((size_t)max + 1, 1) : NULL;
    if (max >= 0 && !seen) return -1;
    for (int i = 0; i < g->n; i++) {
        const loom_node *n = &g->nodes[i];
        if ((n->flags & LOOM_NODE_DEAD) || n->group < 0 || seen[n->group]) continue;
        seen[n->group] = 1;
        count++;
    }
    free(seen);
    return count;
}

int64_t loom_node_nelem(const loom_node *n) {
    int64_t e = 1;
    for (int d = 0; d < n->ndim; d++) e *= n->ne[d];
    return e;
}

size_t loom_node_bytes(const loom_node *n) {
    return loom_dtype_nbytes(n->type, loom_node_nelem(n)); /* block types: whole blocks */
}

void loom_graph_log(loom_graph *g, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (len < 0) return;
    if ((size_t)len >= sizeof line) len = sizeof line - 1;
    if (g->log_len + (size_t)len + 2 > g->log_cap) {
        size_t cap = g->log_cap ? g->log_cap * 2 : 4096;
        while (cap < g->log_len + (size_t)len + 2) cap *= 2;
        char *p = realloc(g->log, cap);
        if (!p) return; /* the log is diagnostics only: dropping a line is acceptable */
        g->log = p;
        g->log_cap = cap;
    }
    memcpy(g->log + g->log_len, line, (size_t)len);
    g->log_len += (size_t)len;
    g->log[g->log_len++] = '\n';
    g->log[g->log_len] = 0;
}

/* Append a node; returns its index or -1. Sources must be valid (checked by callers). */
static int push(loom_graph *g, loom_op op, loom_dtype t, int ndim, const int64_t *ne, int n_src,
                const int *src) {
    for (int i = 0; i < n_src; i++)
        if (src[i] < 0 || src[i] >= g->n) return -1; /* an earlier failure: error already set */
    /* callers often pass pointers into g->nodes (a source's ne): copy before growing the array */
    int64_t shape[LOOM_MAX_DIMS];
    int srcs[LOOM_MAX_SRC];
    for (int d = 0; d < LOOM_MAX_DIMS; d++) shape[d] = d < ndim ? ne[d] : 1;
    for (int i = 0; i < LOOM_MAX_SRC; i++) srcs[i] = i < n_src ? src[i] : -1;
    if (g->n == g->cap) {
        int cap = g->cap ? g->cap * 2 : 256;
        loom_node *p = loom_realloc(g->nodes, (size_t)cap * sizeof *p);
        if (!p) return -1;
        g->nodes = p;
        g->cap = cap;
    }
    loom_node *n = &g->nodes[g->n];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->type = t;
    n->ndim = ndim;
    memcpy(n->ne, shape, sizeof shape);
    n->n_src = n_src;
    memcpy(n->src, srcs, sizeof srcs);
    n->state = -1;
    n->group = -1;
    n->replaced_by = -1;
    n->alias = -1;
    n->first_use = n->last_use = -1;
    snprintf(n->name, sizeof n->name, "%s.%d", loom_op_name(op), g->n);
    return g->n++;
}

static const loom_node *N(const loom_graph *g, int i) { return &g->nodes[i]; }

static bool valid(const loom_graph *g, int i) { return i >= 0 && i < g->n; }

/* rows x cols view of a node of ndim >= 1: all leading dims are rows */
static int64_t cols_of(const loom_node *n) { return n->ne[n->ndim - 1]; }
static int64_t rows_of(const loom_node *n) { return loom_node_nelem(n) / cols_of(n); }

static int shape_err(const loom_graph *g, const char *op, int a, int b) {
    const loom_node *x = N(g, a), *y = N(g, b);
    return loom_err("%s: shape mismatch between '%s' [%lld x %lld] and '%s' [%lld x %lld]", op,
                    x->name, (long long)rows_of(x), (long long)cols_of(x), y->name,
                    (long long)rows_of(y), (long long)cols_of(y));
}

static bool is_f32(const loom_graph *g, int i) { return N(g, i)->type == LOOM_F32; }

int loom_input(loom_graph *g, const char *name, loom_dtype t, int ndim, const int64_t *ne) {
    int i = push(g, LOOM_OP_INPUT, t, ndim, ne, 0, NULL);
    if (i >= 0) snprintf(g->nodes[i].name, sizeof g->nodes[i].name, "%s", name);
    return i;
}

int loom_weight_node(loom_graph *g, const loom_weight *w) {
    if (!w) return -1;
    int i = push(g, LOOM_OP_WEIGHT, w->type, w->ndim, w->ne, 0, NULL);
    if (i < 0) return -1;
    g->nodes[i].weight = w;
    snprintf(g->nodes[i].name, sizeof g->nodes[i].name, "%s", w->name);
    return i;
}

int loom_state(loom_graph *g, int slot, const char *name, int64_t rows, int64_t cols) {
    int64_t ne[2] = {rows, cols};
    int i = push(g, LOOM_OP_STATE, LOOM_F32, 2, ne, 0, NULL);
    if (i < 0) return -1;
    g->nodes[i].state = slot;
    snprintf(g->nodes[i].name, sizeof g->nodes[i].name, "%s", name);
    if (slot + 1 > g->n_state) g->n_state = slot + 1;
    return i;
}

int loom_embed(loom_graph *g, int table, int ids) {
    if (!valid(g, table) || !valid(g, ids)) return -1;
    const loom_node *t = N(g, table), *d = N(g, ids);
    if (t->ndim != 2 || d->type != LOOM_I32)
        return loom_err("embed: need a [vocab, dim] table and i32 ids ('%s', '%s')", t->name, d->name);
    int64_t ne[2] = {loom_node_nelem(d), t->ne[1]};
    return push(g, LOOM_OP_EMBED, LOOM_F32, 2, ne, 2, (int[]){table, ids});
}

int loom_matmul(loom_graph *g, int x, int w) {
    if (!valid(g, x) || !valid(g, w)) return -1;
    const loom_node *a = N(g, x), *b = N(g, w);
    if (b->ndim != 2 || cols_of(a) != b->ne[1] || !is_f32(g, x))
        return loom_err("matmul: '%s' [%lld x %lld] times '%s' [%lld x %lld]^T does not fit",
                        a->name, (long long)rows_of(a), (long long)cols_of(a), b->name,
                        (long long)b->ne[0], (long long)b->ne[1]);
    int64_t ne[2] = {rows_of(a), b->ne[0]};
    return push(g, LOOM_OP_MATMUL, LOOM_F32, 2, ne, 2, (int[]){x, w});
}

static int binary(loom_graph *g, loom_op op, int a, int b) {
    if (!valid(g, a) || !valid(g, b)) return -1;
    const loom_node *x = N(g, a), *y = N(g, b);
    bool same = loom_node_nelem(x) == loom_node_nelem(y) && cols_of(x) == cols_of(y);
    bool bcast = y->ndim == 1 && y->ne[0] == cols_of(x);
    if (!(same || bcast) || !is_f32(g, a) || !is_f32(g, b)) return shape_err(g, loom_op_name(op), a, b);
    return push(g, op, LOOM_F32, x->ndim, x->ne, 2, (int[]){a, b});
}

int loom_add(loom_graph *g, int a, int b) { return binary(g, LOOM_OP_ADD, a, b); }
int loom_mul(loom_graph *g, int a, int b) { return binary(g, LOOM_OP_MUL, a, b); }

static int unary(loom_graph *g, loom_op op, int a) {
    if (!valid(g, a)) return -1;
    if (!is_f32(g, a)) return loom_err("%s: '%s' is not f32", loom_op_name(op), N(g, a)->name);
    return push(g, op, LOOM_F32, N(g, a)->ndim, N(g, a)->ne, 1, (int[]){a});
}

int loom_scale(loom_graph *g, int a, float s) {
    int i = unary(g, LOOM_OP_SCALE, a);
    if (i >= 0) g->nodes[i].fp[0] = s;
    return i;
}

int loom_rmsnorm(loom_graph *g, int x, float eps) {
    int i = unary(g, LOOM_OP_RMSNORM, x);
    if (i >= 0) g->nodes[i].fp[0] = eps;
    return i;
}

int loom_silu(loom_graph *g, int x) { return unary(g, LOOM_OP_SILU, x); }

int loom_softmax(loom_graph *g, int x, float scale) {
    int i = unary(g, LOOM_OP_SOFTMAX, x);
    if (i >= 0) g->nodes[i].fp[0] = scale;
    return i;
}

static int gated(loom_graph *g, loom_op op, int gate, int up) {
    if (!valid(g, gate) || !valid(g, up)) return -1;
    if (loom_node_nelem(N(g, gate)) != loom_node_nelem(N(g, up)) || cols_of(N(g, gate)) != cols_of(N(g, up)) ||
        !is_f32(g, gate) || !is_f32(g, up))
        return shape_err(g, loom_op_name(op), gate, up);
    return push(g, op, LOOM_F32, N(g, gate)->ndim, N(g, gate)->ne, 2, (int[]){gate, up});
}

int loom_swiglu(loom_graph *g, int gate, int up) { return gated(g, LOOM_OP_SWIGLU, gate, up); }
int loom_geglu(loom_graph *g, int gate, int up) { return gated(g, LOOM_OP_GEGLU, gate, up); }
int loom_gelu(loom_graph *g, int x) { return unary(g, LOOM_OP_GELU, x); }

int loom_softcap(loom_graph *g, int x, float cap) {
    if (!(cap > 0) || !isfinite(cap)) return loom_err("softcap: cap %g must be positive and finite", (double)cap);
    int i = unary(g, LOOM_OP_SOFTCAP, x);
    if (i >= 0) g->nodes[i].fp[0] = cap;
    return i;
}

int loom_rope(loom_graph *g, int x, int pos, const loom_rope_params *p) {
    if (!valid(g, x) || !valid(g, pos)) return -1;
    const loom_node *a = N(g, x), *q = N(g, pos);
    if (p->n_head <= 0 || p->head_dim <= 0 || cols_of(a) != (int64_t)p->n_head * p->head_dim)
        return loom_err("rope: '%s' has %lld columns, expected %d heads x %d", a->name,
                        (long long)cols_of(a), p->n_head, p->head_dim);
    if (q->type != LOOM_I32 || loom_node_nelem(q) != rows_of(a))
        return loom_err("rope: positions '%s' must be i32 [%lld]", q->name, (long long)rows_of(a));
    if (p->n_rot <= 0 || p->n_rot > p->head_dim || (p->n_rot & 1))
        return loom_err("rope: rotated dims %d invalid for head_dim %d", p->n_rot, p->head_dim);
    int src[3] = {x, pos, p->freq_factors};
    int n_src = 2;
    if (p->freq_factors >= 0) {
        if (!valid(g, p->freq_factors) || loom_node_nelem(N(g, p->freq_factors)) != p->n_rot / 2)
            return loom_err("rope: frequency factors must have %d entries", p->n_rot / 2);
        n_src = 3;
    }
    int i = push(g, LOOM_OP_ROPE, LOOM_F32, a->ndim, a->ne, n_src, src);
    if (i < 0) return -1;
    loom_node *n = &g->nodes[i];
    n->ip[0] = p->n_head;
    n->ip[1] = p->head_dim;
    n->ip[2] = p->mode;
    n->ip[3] = p->n_rot;
    n->fp[0] = p->theta;
    n->fp[1] = p->pos_scale;
    return i;
}

int loom_kv_store(loom_graph *g, int cache, int rows, int pos) {
    if (!valid(g, cache) || !valid(g, rows) || !valid(g, pos)) return -1;
    const loom_node *c = N(g, cache), *r = N(g, rows), *q = N(g, pos);
    if (c->ndim != 2 || cols_of(r) != c->ne[1] || !is_f32(g, rows))
        return shape_err(g, "kv_store", cache, rows);
    if (q->type != LOOM_I32 || loom_node_nelem(q) != rows_of(r))
        return loom_err("kv_store: positions '%s' must be i32 [%lld]", q->name, (long long)rows_of(r));
    return push(g, LOOM_OP_KV_STORE, c->type, 2, c->ne, 3, (int[]){cache, rows, pos});
}

int loom_attention(loom_graph *g, int q, int k_cache, int v_cache, int pos, int n_head,
                   int n_head_kv, int head_dim, float scale) {
    if (!valid(g, q) || !valid(g, k_cache) || !valid(g, v_cache) || !valid(g, pos)) return -1;
    const loom_node *a = N(g, q), *k = N(g, k_cache), *v = N(g, v_cache), *p = N(g, pos);
    if (n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv)
        return loom_err("attention: %d heads cannot share %d kv heads", n_head, n_head_kv);
    if (cols_of(a) != (int64_t)n_head * head_dim)
        return loom_err("attention: q '%s' has %lld columns, expected %d x %d", a->name,
                        (long long)cols_of(a), n_head, head_dim);
    if (k->ndim != 2 || v->ndim != 2 || k->ne[1] != (int64_t)n_head_kv * head_dim ||
        v->ne[1] != k->ne[1] || v->ne[0] != k->ne[0])
        return loom_err("attention: caches '%s'/'%s' do not hold %d kv heads x %d", k->name, v->name,
                        n_head_kv, head_dim);
    if (p->type != LOOM_I32 || loom_node_nelem(p) != rows_of(a))
        return loom_err("attention: positions '%s' must be i32 [%lld]", p->name, (long long)rows_of(a));
    int i = push(g, LOOM_OP_ATTENTION, LOOM_F32, a->ndim, a->ne, 4, (int[]){q, k_cache, v_cache, pos});
    if (i < 0) return -1;
    loom_node *n = &g->nodes[i];
    n->ip[0] = n_head;
    n->ip[1] = n_head_kv;
    n->ip[2] = head_dim;
    n->fp[0] = scale;
    return i;
}

int loom_attention_paged(loom_graph *g, int attn, int seq, int table, int block_size) {
    if (!valid(g, attn) || !valid(g, seq) || !valid(g, table)) return -1;
    loom_node *n = &g->nodes[attn];
    const loom_node *sq = N(g, seq), *t = N(g, table);
    if (n->op != LOOM_OP_ATTENTION || n->n_src != 4)
        return loom_err("attention_paged: node '%s' is not a plain attention node", n->name);
    if (sq->type != LOOM_I32 || loom_node_nelem(sq) != rows_of(n))
        return loom_err("attention_paged: sequence ids '%s' must be i32 [%lld]", sq->name, (long long)rows_of(n));
    if (t->type != LOOM_I32 || t->ndim != 2)
        return loom_err("attention_paged: block table '%s' must be i32 [sequences, blocks]", t->name);
    if (block_size <= 0) return loom_err("attention_paged: block size %d must be positive", block_size);
    if (seq >= attn || table >= attn) /* keep the order topological */
        return loom_err("attention_paged: sources must be declared before the attention node");
    n->src[4] = seq;
    n->src[5] = table;
    n->n_src = 6;
    n->ip[3] = block_size;
    return attn;
}

int loom_attention_opts(loom_graph *g, int attn, const loom_attn_opts *o) {
    if (!valid(g, attn) || !o) return -1;
    loom_node *n = &g->nodes[attn];
    if (n->op != LOOM_OP_ATTENTION) return loom_err("attention_opts: node '%s' is not an attention node", n->name);
    if (o->window < 0) return loom_err("attention_opts: sliding window %d must be >= 0", o->window);
    if (!(o->softcap >= 0) || !isfinite(o->softcap))
        return loom_err("attention_opts: soft-cap %g must be >= 0 and finite", (double)o->softcap);
    if (o->ring) {
        int64_t C = N(g, n->src[1])->ne[0];
        if (o->window <= 0 || o->window > C || n->n_src > 4)
            return loom_err("attention_opts: a ring cache needs a window of at most its %lld rows and the "
                            "contiguous form (window %d%s)", (long long)C, o->window, n->n_src > 4 ? ", paged" : "");
    }
    n->ip[4] = o->window;
    n->ip[5] = o->ring ? 1 : 0;
    n->fp[1] = o->softcap;
    return attn;
}

int loom_moe(loom_graph *g, int x, int logits, int gate_exps, int up_exps, int down_exps, int n_used,
             bool norm_topk) {
    if (!valid(g, x) || !valid(g, logits) || !valid(g, gate_exps) || !valid(g, up_exps) || !valid(g, down_exps))
        return -1;
    const loom_node *a = N(g, x), *r = N(g, logits), *wg = N(g, gate_exps), *wu = N(g, up_exps),
                    *wd = N(g, down_exps);
    int64_t S = rows_of(a), D = cols_of(a);
    if (!is_f32(g, x) || !is_f32(g, logits) || rows_of(r) != S)
        return loom_err("moe: x '%s' and router logits '%s' must be f32 with the same rows", a->name, r->name);
    int64_t E = cols_of(r);
    if (wg->ndim != 3 || wu->ndim != 3 || wd->ndim != 3 || wg->ne[0] != E || wu->ne[0] != E || wd->ne[0] != E ||
        wg->ne[2] != D || wu->ne[1] != wg->ne[1] || wu->ne[2] != D || wd->ne[1] != D || wd->ne[2] != wg->ne[1])
        return loom_err("moe: experts '%s' [%lld,%lld,%lld], '%s', '%s' do not fit %lld experts of x width %lld "
                        "(want gate/up [E, F, D], down [E, D, F])",
                        wg->name, (long long)wg->ne[0], (long long)wg->ne[1], (long long)wg->ne[2], wu->name,
                        wd->name, (long long)E, (long long)D);
    if (n_used < 1 || n_used > E) return loom_err("moe: %d experts per token out of %lld", n_used, (long long)E);
    int i = push(g, LOOM_OP_MOE, LOOM_F32, a->ndim, a->ne, 5, (int[]){x, logits, gate_exps, up_exps, down_exps});
    if (i < 0) return -1;
    g->nodes[i].ip[0] = n_used;
    g->nodes[i].ip[1] = norm_topk ? 1 : 0;
    return i;
}

int loom_view(loom_graph *g, int x, int ndim, const int64_t *ne, size_t byte_offset) {
    if (!valid(g, x)) return -1;
    const loom_node *a = N(g, x);
    int64_t e = 1;
    for (int d = 0; d < ndim; d++) e *= ne[d];
    size_t bytes = (size_t)e * loom_dtype_size(a->type);
    if (ndim < 1 || ndim > LOOM_MAX_DIMS || byte_offset + bytes > loom_node_bytes(a))
        return loom_err("view: %zu bytes at offset %zu exceed '%s' (%zu bytes)", bytes, byte_offset,
                        a->name, loom_node_bytes(a));
    int i = push(g, LOOM_OP_VIEW, a->type, ndim, ne, 1, (int[]){x});
    if (i >= 0) g->nodes[i].view_offset = byte_offset;
    return i;
}

int loom_reshape_2d(loom_graph *g, int x, int64_t rows, int64_t cols) {
    if (!valid(g, x)) return -1;
    if (rows * cols != loom_node_nelem(N(g, x)))
        return loom_err("reshape: '%s' has %lld elements, not %lld x %lld", N(g, x)->name,
                        (long long)loom_node_nelem(N(g, x)), (long long)rows, (long long)cols);
    return loom_view(g, x, 2, (int64_t[]){rows, cols}, 0);
}

int loom_permute(loom_graph *g, int x, const int *axes) {
    if (!valid(g, x)) return -1;
    const loom_node *a = N(g, x);
    int64_t ne[LOOM_MAX_DIMS];
    unsigned seen = 0;
    for (int d = 0; d < a->ndim; d++) {
        if (axes[d] < 0 || axes[d] >= a->ndim || (seen & (1u << axes[d])))
            return loom_err("permute: invalid axes for '%s'", a->name);
        seen |= 1u << axes[d];
        ne[d] = a->ne[axes[d]];
    }
    int i = push(g, LOOM_OP_PERMUTE, a->type, a->ndim, ne, 1, (int[]){x});
    if (i >= 0)
        for (int d = 0; d < a->ndim; d++) g->nodes[i].ip[d] = axes[d];
    return i;
}

int loom_last_row(loom_graph *g, int x) {
    if (!valid(g, x)) return -1;
    const loom_node *a = N(g, x);
    int64_t rows = rows_of(a), cols = cols_of(a);
    return loom_view(g, x, 2, (int64_t[]){1, cols}, (size_t)(rows - 1) * (size_t)cols * loom_dtype_size(a->type));
}

int loom_output(loom_graph *g, int x, const char *name) {
    if (!valid(g, x)) return -1;
    g->nodes[x].flags |= LOOM_NODE_OUTPUT;
    snprintf(g->nodes[x].name, sizeof g->nodes[x].name, "%s", name);
    return x;
}

int loom_find_output(const loom_graph *g, const char *name) {
    for (int i = 0; i < g->n; i++) {
        const loom_node *n = &g->nodes[i];
        if ((n->flags & LOOM_NODE_OUTPUT) && !(n->flags & LOOM_NODE_DEAD) && !strcmp(n->name, name))
            return i;
    }
    return -1;
}

void loom_op_params(loom_op op, unsigned *ip, unsigned *fp) {
    *ip = *fp = 0;
    switch (op) {
    case LOOM_OP_SCALE: case LOOM_OP_RMSNORM: case LOOM_OP_SOFTMAX: case LOOM_OP_SOFTCAP: *fp = 1; break;
    case LOOM_OP_ROPE: *ip = 0xf, *fp = 0x3; break;
    case LOOM_OP_ATTENTION: *ip = 0x3f, *fp = 0x3; break;
    case LOOM_OP_PERMUTE: *ip = 0xf; break;
    case LOOM_OP_MOE: *ip = 0x3; break;
    default: break;
    }
}

/* what each defined parameter slot is called in errors */
static const char *param_name(loom_op op, bool is_fp, int k) {
    if (op == LOOM_OP_ATTENTION && !is_fp) {
        static const char *const n[] = {"heads", "kv heads", "head dim", "block size", "sliding window", "ring cache"};
        return k < 6 ? n[k] : "parameter";
    }
    if (op == LOOM_OP_ATTENTION && is_fp) return k == 0 ? "scale" : k == 1 ? "logit soft-cap" : "parameter";
    if (op == LOOM_OP_MOE && !is_fp) return k == 0 ? "experts per token" : k == 1 ? "norm_topk" : "parameter";
    if (op == LOOM_OP_ROPE && is_fp) return k == 0 ? "theta" : k == 1 ? "position scale" : "parameter";
    return "parameter";
}

bool loom_params_check(const loom_node *n, const char *backend, unsigned lacks_ip, unsigned lacks_fp) {
    unsigned ip, fp;
    loom_op_params(n->op, &ip, &fp);
    for (int k = 0; k < 8; k++)
        if (n->ip[k] != 0 && (!(ip >> k & 1) || (lacks_ip >> k & 1))) {
            if (!(ip >> k & 1))
                loom_err("%s: %s '%s': ip[%d] = %d is not a parameter of %s (graph.h)", backend, loom_op_name(n->op),
                         n->name, k, n->ip[k], loom_op_name(n->op));
            else
                loom_err("%s: %s '%s': %s (ip[%d] = %d) is not implemented", backend, loom_op_name(n->op), n->name,
                         param_name(n->op, false, k), k, n->ip[k]);
            return false;
        }
    for (int k = 0; k < 4; k++)
        if (n->fp[k] != 0 && (!(fp >> k & 1) || (lacks_fp >> k & 1))) {
            if (!(fp >> k & 1))
                loom_err("%s: %s '%s': fp[%d] = %g is not a parameter of %s (graph.h)", backend, loom_op_name(n->op),
                         n->name, k, (double)n->fp[k], loom_op_name(n->op));
            else
                loom_err("%s: %s '%s': %s (fp[%d] = %g) is not implemented", backend, loom_op_name(n->op), n->name,
                         param_name(n->op, true, k), k, (double)n->fp[k]);
            return false;
        }
    return true;
}

/* A node's structural key: op, type, shape, sources, parameters and leaf binding (and an input's
 * name, since two inputs of the same shape are different data). CSE merges nodes with equal keys
 * after a full comparison; the graph hash combines the keys. */
uint64_t loom_node_hash(const loom_node *n) {
    struct {
        int32_t op, type, ndim, n_src, state;
        int64_t ne[LOOM_MAX_DIMS];
        int32_t src[LOOM_MAX_SRC];
        int32_t ip[8];
        float fp[4];
        uint64_t view_offset;
        uintptr_t weight;
    } k;
    memset(&k, 0, sizeof k);
    k.op = n->op;
    k.type = n->type;
    k.ndim = n->ndim;
    k.n_src = n->n_src;
    k.state = n->state;
    memcpy(k.ne, n->ne, sizeof k.ne);
    memcpy(k.src, n->src, sizeof k.src);
    memcpy(k.ip, n->ip, sizeof k.ip);
    memcpy(k.fp, n->fp, sizeof k.fp);
    k.view_offset = n->view_offset;
    k.weight = (uintptr_t)n->weight;
    uint64_t h = XXH64(&k, sizeof k, 0);
    if (n->op == LOOM_OP_INPUT) h ^= XXH64(n->name, strlen(n->name), 1);
    return h;
}

/* The graph hash covers every node's key plus which nodes are outputs and their names: together,
 * everything that changes what the graph computes or how it is laid out. */
uint64_t loom_graph_hash(const loom_graph *g) {
    XXH64_state_t *st = XXH64_createState();
    if (!st) return 0;
    XXH64_reset(st, 0x6c6f6f6dULL);
    for (int i = 0; i < g->n; i++) {
        const loom_node *n = &g->nodes[i];
        uint64_t h = loom_node_hash(n);
        XXH64_update(st, &h, sizeof h);
        if (n->flags & LOOM_NODE_OUTPUT) XXH64_update(st, n->name, strlen(n->name) + 1);
    }
    uint64_t h = XXH64_digest(st);
    XXH64_freeState(st);
    return h;
}
