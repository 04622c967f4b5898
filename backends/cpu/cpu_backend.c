/* The CPU backend: host buffers, op validation, and the drivers that split each node's work
 * over the thread pool and call the kernel flavour picked at creation (see cpu.h). */
#include "cpu.h"

#include "../../formats/source.h"
#include "../../graph/util.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct loom_buffer {
    void *data;
    size_t size;
    bool owned;
};

typedef struct cpu_backend {
    loom_backend base;
    cpu_kernels k;
    cpu_pool *pool;
    int n_threads;
    float **scratch;     /* per thread, 64-byte aligned */
    size_t scratch_n;    /* floats in each */
} cpu_backend;

static cpu_backend *CB(loom_backend *be) { return be->impl; }

/* ---- ISA detection -------------------------------------------------------------------------- */
#if defined(__x86_64__) || defined(__i386__)
bool cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
}
bool cpu_has_avx512(void) {
    __builtin_cpu_init();
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
}
bool cpu_has_avx512bf16(void) {
    __builtin_cpu_init();
    return cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
}
#else
bool cpu_has_avx2(void) { return false; }
bool cpu_has_avx512(void) { return false; }
bool cpu_has_avx512bf16(void) { return false; }
#endif

/* ---- buffers -------------------------------------------------------------------------------- */
static loom_buffer *cpu_buf_alloc(loom_backend *be, size_t nbytes) {
    (void)be;
    loom_buffer *b = loom_malloc(sizeof *b);
    if (!b) return NULL;
    b->data = loom_malloc_aligned(nbytes ? nbytes : 1);
    if (!b->data) {
        free(b);
        return loom_err_null("cpu: cannot allocate a %zu-byte buffer", nbytes);
    }
    b->size = nbytes;
    b->owned = true;
    return b;
}

static void cpu_buf_free(loom_backend *be, loom_buffer *b) {
    (void)be;
    if (!b) return;
    if (b->owned) loom_free_aligned(b->data);
    free(b);
}

static int buf_range(const loom_buffer *b, size_t off, size_t n, const char *what) {
    if (!b) return loom_err("cpu: %s: no buffer", what);
    if (off > b->size || n > b->size - off)
        return loom_err("cpu: %s of %zu bytes at offset %zu is outside a %zu-byte buffer", what, n,
                        off, b->size);
    return 0;
}

static int cpu_buf_write(loom_backend *be, loom_buffer *b, size_t off, const void *src, size_t n) {
    (void)be;
    if (buf_range(b, off, n, "write") < 0) return -1;
    if (n) memcpy((char *)b->data + off, src, n);
    return 0;
}

static int cpu_buf_read(loom_backend *be, loom_buffer *b, size_t off, void *dst, size_t n) {
    (void)be;
    if (buf_range(b, off, n, "read") < 0) return -1;
    if (n) memcpy(dst, (const char *)b->data + off, n);
    return 0;
}

static int cpu_buf_zero(loom_backend *be, loom_buffer *b, size_t off, size_t n) {
    (void)be;
    if (buf_range(b, off, n, "zero") < 0) return -1;
    if (n) memset((char *)b->data + off, 0, n);
    return 0;
}

/* Weights are mapped file bytes: wrap, never copy. */
static loom_buffer *cpu_buf_from_host(loom_backend *be, const void *host, size_t nbytes) {
    (void)be;
    if (!host && nbytes) return loom_err_null("cpu: wrapping a NULL host pointer");
    loom_buffer *b = loom_malloc(sizeof *b);
    if (!b) return NULL;
    b->data = (void *)host;
    b->size = nbytes;
    b->owned = false;
    return b;
}

/* ---- node helpers --------------------------------------------------------------------------- */
static int64_t nelem(const loom_node *n) {
    int64_t e = 1;
    for (int d = 0; d < n->ndim; d++) e *= n->ne[d];
    return e;
}
static int64_t ncols(const loom_node *n) { return n->ndim ? n->ne[n->ndim - 1] : 1; }
static int64_t nrows(const loom_node *n) {
    int64_t c = ncols(n);
    return c ? nelem(n) / c : 0;
}

static const loom_node *src_of(const loom_graph *g, const loom_node *n, int k) {
    if (k >= n->n_src || n->src[k] < 0 || n->src[k] >= g->n) return NULL;
    return &g->nodes[n->src[k]];
}

/* Node i's bytes for this run, checked against its buffer. */
static void *node_ptr(const loom_exec_ctx *x, int i) {
    const loom_node *n = &x->plan->g->nodes[i];
    size_t off = 0;
    loom_buffer *b = loom_exec_node_buffer(x, i, &off);
    if (!b || (!b->data && b->size))
        return loom_err_null("cpu: node %d '%s' has no storage", i, n->name);
    size_t need = (size_t)nelem(n) * loom_dtype_size(n->type);
    if (off > b->size || need > b->size - off)
        return loom_err_null("cpu: node %d '%s' needs %zu bytes at offset %zu of a %zu-byte buffer",
                             i, n->name, need, off, b->size);
    return (char *)b->data + off;
}

static bool is_wtype(loom_dtype t) { return t == LOOM_F32 || t == LOOM_F16 || t == LOOM_BF16; }

/* ---- supports ------------------------------------------------------------------------------- */
static bool f32n(const loom_node *n) { return n && n->type == LOOM_F32; }
static bool i32n(const loom_node *n) { return n && n->type == LOOM_I32; }

static bool cpu_supports(loom_backend *be, const loom_graph *g, int i) {
    (void)be;
    if (i < 0 || i >= g->n) return false;
    const loom_node *n = &g->nodes[i];
    const loom_node *a = src_of(g, n, 0), *b = src_of(g, n, 1), *c = src_of(g, n, 2),
                    *d = src_of(g, n, 3);
    if (n->ndim < 0 || n->ndim > LOOM_MAX_DIMS) return false;
    for (int k = 0; k < n->ndim; k++)
        if (n->ne[k] < 0) return false;
    switch (n->op) {
    case LOOM_OP_INPUT:
    case LOOM_OP_WEIGHT:
    case LOOM_OP_STATE: return true;
    case LOOM_OP_VIEW: return a != NULL;
    case LOOM_OP_EMBED:
        return f32n(n) && a && is_wtype(a->type) && a->ndim == 2 && i32n(b) &&
               ncols(n) == a->ne[1] && nrows(n) == nelem(b);
    case LOOM_OP_MATMUL: {
        if (!f32n(n) || !f32n(a) || !b || !is_wtype(b->type) || b->ndim != 2) return false;
        int64_t K = b->ne[1], N = b->ne[0];
        if (ncols(a) != K || ncols(n) != N || nrows(n) != nrows(a)) return false;
        return !c || (f32n(c) && nelem(c) == N);
    }
    case LOOM_OP_ADD:
    case LOOM_OP_MUL:
        return f32n(n) && f32n(a) && f32n(b) && nelem(n) == nelem(a) &&
               (nelem(b) == nelem(a) || nelem(b) == ncols(a));
    case LOOM_OP_SCALE:
    case LOOM_OP_SILU:
    case LOOM_OP_SOFTMAX: return f32n(n) && f32n(a) && nelem(n) == nelem(a);
    case LOOM_OP_RMSNORM:
        return f32n(n) && f32n(a) && nelem(n) == nelem(a) && (!b || (f32n(b) && nelem(b) == ncols(a)));
    case LOOM_OP_SWIGLU: return f32n(n) && f32n(a) && f32n(b) && nelem(a) == nelem(n) && nelem(b) == nelem(n);
    case LOOM_OP_ROPE: {
        int H = n->ip[0], hd = n->ip[1], rot = n->ip[3];
        if (!f32n(n) || !f32n(a) || !i32n(b) || nelem(n) != nelem(a)) return false;
        if (H <= 0 || hd <= 0 || rot <= 0 || rot > hd || (rot & 1)) return false;
        if (ncols(a) != (int64_t)H * hd || nelem(b) != nrows(a)) return false;
        if (n->ip[2] != LOOM_ROPE_NEOX && n->ip[2] != LOOM_ROPE_NORM) return false;
        return !c || (f32n(c) && nelem(c) == rot / 2);
    }
    case LOOM_OP_KV_STORE:
        return f32n(n) && f32n(a) && f32n(b) && i32n(c) && a->ndim == 2 && nelem(n) == nelem(a) &&
               ncols(b) == a->ne[1] && nelem(c) == nrows(b);
    case LOOM_OP_ATTENTION: {
        int H = n->ip[0], Hkv = n->ip[1], hd = n->ip[2];
        if (!f32n(n) || !f32n(a) || !f32n(b) || !f32n(c) || !i32n(d)) return false;
        if (H <= 0 || Hkv <= 0 || hd <= 0 || H % Hkv) return false;
        if (ncols(a) != (int64_t)H * hd || nelem(n) != nelem(a)) return false;
        if (ncols(b) != (int64_t)Hkv * hd || ncols(c) != (int64_t)Hkv * hd) return false;
        if (nrows(b) != nrows(c) || nelem(d) != nrows(a)) return false;
        return true;
    }
    case LOOM_OP_PERMUTE: {
        if (!a || n->type != a->type || n->ndim != a->ndim) return false;
        bool seen[LOOM_MAX_DIMS] = {0};
        for (int k = 0; k < n->ndim; k++) {
            int ax = n->ip[k];
            if (ax < 0 || ax >= n->ndim || seen[ax] || n->ne[k] != a->ne[ax]) return false;
            seen[ax] = true;
        }
        return true;
    }
    default: return false;
    }
}

/* ---- threading helpers ---------------------------------------------------------------------- */
/* Below this many units of work (~flops) a node runs on the calling thread: waking workers costs
 * more than it saves. */
#define CPU_GRAIN 32768.0

static int pick_threads(const cpu_backend *c, double work) {
    double t = work / CPU_GRAIN;
    if (t < 2) return 1;
    return t >= c->n_threads ? c->n_threads : (int)t;
}

/* Make sure every thread has `floats` of scratch (called on the calling thread, before a run). */
static int scratch_reserve(cpu_backend *c, size_t floats) {
    if (floats <= c->scratch_n) return 0;
    floats = floats + floats / 4 + 64;
    for (int t = 0; t < c->n_threads; t++) {
        float *p = loom_malloc_aligned(floats * sizeof(float));
        if (!p) return loom_err("cpu: out of memory for %zu bytes of scratch", floats * sizeof(float));
        loom_free_aligned(c->scratch[t]);
        c->scratch[t] = p;
    }
    c->scratch_n = floats;
    return 0;
}

static void split(int64_t n, int ith, int nth, int64_t align, int64_t *lo, int64_t *hi) {
    int64_t per = (n + nth - 1) / nth;
    per = (per + align - 1) / align * align;
    *lo = per * ith < n ? per * ith : n;
    *hi = *lo + per < n ? *lo + per : n;
}

/* ---- elementwise ops ------------------------------------------------------------------------ */
typedef struct ew_task {
    const cpu_kernels *k;
    loom_op op;
    float *y;
    const float *a, *b;
    int64_t n, rows, cols; /* cols > 0 and b of cols floats: broadcast b over rows */
    float s;
} ew_task;

static void ew_run(void *arg, int ith, int nth) {
    const ew_task *t = arg;
    const cpu_kernels *k = t->k;
    if (t->cols) { /* broadcast: split rows */
        int64_t r0, r1;
        split(t->rows, ith, nth, 1, &r0, &r1);
        for (int64_t r = r0; r < r1; r++) {
            float *y = t->y + r * t->cols;
            const float *a = t->a + r * t->cols;
            if (t->op == LOOM_OP_ADD)
                k->add(y, a, t->b, t->cols);
            else
                k->mul(y, a, t->b, t->cols);
        }
        return;
    }
    int64_t i0, i1;
    split(t->n, ith, nth, 16, &i0, &i1);
    if (i1 <= i0) return;
    float *y = t->y + i0;
    const float *a = t->a + i0, *b = t->b ? t->b + i0 : NULL;
    switch (t->op) {
    case LOOM_OP_ADD: k->add(y, a, b, i1 - i0); break;
    case LOOM_OP_MUL: k->mul(y, a, b, i1 - i0); break;
    case LOOM_OP_SCALE: k->scale(y, a, t->s, i1 - i0); break;
    case LOOM_OP_SILU: k->silu(y, a, i1 - i0); break;
    case LOOM_OP_SWIGLU: k->swiglu(y, a, b, i1 - i0); break;
    default: break;
    }
}

/* Row ops: RMSNORM, SOFTMAX. */
typedef struct row_task {
    const cpu_kernels *k;
    loom_op op;
    float *y;
    const float *x, *w;
    int64_t rows, cols;
    float p;
} row_task;

static void row_run(void *arg, int ith, int nth) {
    const row_task *t = arg;
    int64_t r0, r1;
    split(t->rows, ith, nth, 1, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        if (t->op == LOOM_OP_RMSNORM)
            t->k->rmsnorm(t->y + r * t->cols, t->x + r * t->cols, t->w, t->cols, t->p);
        else
            t->k->softmax(t->y + r * t->cols, t->x + r * t->cols, t->cols, t->p);
    }
}

/* ---- matmul --------------------------------------------------------------------------------- */
typedef struct mm_task {
    cpu_backend *c;
    float *y;
    const float *x, *bias;
    const void *w;
    loom_dtype wt;
    int64_t M, K, N, chunk, n_chunks;
    _Atomic int64_t next;
} mm_task;

/* Chunks are handed out dynamically: on a shared machine one thread may lose its core. */
static void mm_run(void *arg, int ith, int nth) {
    (void)nth;
    mm_task *t = arg;
    const cpu_kernels *k = &t->c->k;
    for (;;) {
        int64_t ci = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed);
        if (ci >= t->n_chunks) break;
        int64_t n0 = ci * t->chunk, n1 = n0 + t->chunk < t->N ? n0 + t->chunk : t->N;
        if (t->M == 1)
            k->gemv(t->y, t->x, t->w, t->wt, t->K, n0, n1, t->bias);
        else
            k->gemm(t->y, t->N, t->x, t->w, t->wt, t->M, t->K, n0, n1, t->bias, t->c->scratch[ith]);
    }
}

static int do_matmul(cpu_backend *c, float *y, const float *x, const void *w, loom_dtype wt,
                     const float *bias, int64_t M, int64_t K, int64_t N) {
    if (M == 0 || N == 0) return 0;
    mm_task t = {.c = c, .y = y, .x = x, .bias = bias, .w = w, .wt = wt, .M = M, .K = K, .N = N};
    atomic_init(&t.next, 0);
    int nth = pick_threads(c, 2.0 * (double)M * (double)N * (double)K);
    if (M == 1) {
        /* a few chunks per thread, rows a multiple of 16 */
        int64_t ch = (N + nth * 4 - 1) / (nth * 4);
        t.chunk = ch < 16 ? 16 : (ch + 15) / 16 * 16;
    } else {
        if (scratch_reserve(c, c->k.gemm_scratch(M, K)) < 0) return -1;
        int64_t per = (N + nth * 3 - 1) / (nth * 3);
        t.chunk = per <= 32 ? 32 : per <= 64 ? 64 : per <= 128 ? 128 : CPU_GEMM_MAX_COLS;
    }
    t.n_chunks = (N + t.chunk - 1) / t.chunk;
    if (nth > t.n_chunks) nth = (int)t.n_chunks;
    cpu_pool_run(c->pool, nth, mm_run, &t);
    return 0;
}

/* ---- rope ----------------------------------------------------------------------------------- */
typedef struct rope_task {
    cpu_backend *c;
    float *y;
    const float *x, *factors;
    const int32_t *pos;
    int64_t S;
    int H, hd, mode, rot;
    double theta, pscale;
} rope_task;

static void rope_run(void *arg, int ith, int nth) {
    const rope_task *t = arg;
    int half = t->rot / 2;
    float *cs = t->c->scratch[ith], *sn = cs + half;
    int64_t s0, s1;
    split(t->S, ith, nth, 1, &s0, &s1);
    int64_t D = (int64_t)t->H * t->hd;
    for (int64_t s = s0; s < s1; s++) {
        /* angles in double: positions reach thousands of radians */
        for (int i = 0; i < half; i++) {
            double a = (double)t->pos[s] * t->pscale * pow(t->theta, -2.0 * i / t->rot);
            if (t->factors) a /= t->factors[i];
            cs[i] = (float)cos(a);
            sn[i] = (float)sin(a);
        }
        float *y = t->y + s * D;
        if (y != t->x + s * D) memcpy(y, t->x + s * D, (size_t)D * sizeof(float));
        for (int h = 0; h < t->H; h++) t->c->k.rope(y + (int64_t)h * t->hd, cs, sn, t->rot, t->mode);
    }
}

/* ---- attention ------------------------------------------------------------------------------ */
typedef struct attn_task {
    cpu_backend *c;
    float *out;
    const float *q, *kc, *vc;
    const int32_t *pos;
    int64_t S, n_items, grain;
    int H, Hkv, hd;
    float scale;
    _Atomic int64_t next;
} attn_task;

static void attn_run(void *arg, int ith, int nth) {
    (void)nth;
    attn_task *t = arg;
    int64_t Dq = (int64_t)t->H * t->hd, Dkv = (int64_t)t->Hkv * t->hd;
    int group = t->H / t->Hkv;
    float *scratch = t->c->scratch[ith];
    for (;;) {
        int64_t i0 = atomic_fetch_add_explicit(&t->next, t->grain, memory_order_relaxed);
        if (i0 >= t->n_items) break;
        int64_t i1 = i0 + t->grain < t->n_items ? i0 + t->grain : t->n_items;
        for (int64_t it = i0; it < i1; it++) {
            int64_t s = it / t->H;
            int h = (int)(it % t->H), hk = h / group;
            t->c->k.attn(t->out + s * Dq + (int64_t)h * t->hd, t->q + s * Dq + (int64_t)h * t->hd,
                         t->kc + (int64_t)hk * t->hd, t->vc + (int64_t)hk * t->hd, Dkv,
                         (int64_t)t->pos[s] + 1, t->hd, t->scale, scratch);
        }
    }
}

/* ---- permute -------------------------------------------------------------------------------- */
static void do_permute(const loom_node *n, const loom_node *a, char *y, const char *x) {
    /* pad to 4 dims at the front; out axis d reads src axis ax[d] */
    int nd = n->ndim, pad = LOOM_MAX_DIMS - nd;
    int64_t one = 1, ne[4], sstride[4], st[4];
    size_t es = loom_dtype_size(n->type);
    for (int d = 0; d < 4; d++) ne[d] = one, st[d] = 0;
    sstride[3] = 1;
    int64_t acc = 1;
    for (int d = nd - 1; d >= 0; d--) {
        sstride[d] = acc;
        acc *= a->ne[d];
    }
    for (int d = 0; d < nd; d++) {
        ne[pad + d] = n->ne[d];
        st[pad + d] = sstride[n->ip[d]];
    }
    size_t o = 0;
    for (int64_t i0 = 0; i0 < ne[0]; i0++)
        for (int64_t i1 = 0; i1 < ne[1]; i1++)
            for (int64_t i2 = 0; i2 < ne[2]; i2++) {
                const char *src = x + (size_t)(i0 * st[0] + i1 * st[1] + i2 * st[2]) * es;
                if (st[3] == 1) {
                    memcpy(y + o * es, src, (size_t)ne[3] * es);
                    o += (size_t)ne[3];
                } else {
                    for (int64_t i3 = 0; i3 < ne[3]; i3++, o++)
                        memcpy(y + o * es, src + (size_t)(i3 * st[3]) * es, es);
                }
            }
}

/* ---- compute_node --------------------------------------------------------------------------- */
static int cpu_compute_node(loom_backend *be, const loom_exec_ctx *x, int i) {
    cpu_backend *c = CB(be);
    const loom_graph *g = x->plan->g;
    if (i < 0 || i >= g->n) return loom_err("cpu: node index %d out of range", i);
    const loom_node *n = &g->nodes[i];
    if (n->op == LOOM_OP_INPUT || n->op == LOOM_OP_WEIGHT || n->op == LOOM_OP_STATE ||
        n->op == LOOM_OP_VIEW)
        return 0; /* leaves and aliases: nothing to compute */

    void *src[LOOM_MAX_SRC] = {0};
    const loom_node *sn[LOOM_MAX_SRC] = {0};
    for (int k = 0; k < n->n_src && k < LOOM_MAX_SRC; k++) {
        if (n->src[k] < 0) continue;
        if (n->src[k] >= g->n) return loom_err("cpu: node %d has a bad source %d", i, n->src[k]);
        sn[k] = &g->nodes[n->src[k]];
        if (!(src[k] = node_ptr(x, n->src[k]))) return -1;
    }
    void *out = node_ptr(x, i);
    if (!out) return -1;
    const cpu_kernels *k = &c->k;

    switch (n->op) {
    case LOOM_OP_EMBED: {
        const loom_node *tab = sn[0];
        int64_t V = tab->ne[0], D = tab->ne[1], S = nelem(sn[1]);
        const int32_t *ids = src[1];
        size_t es = loom_dtype_size(tab->type);
        for (int64_t s = 0; s < S; s++) {
            if (ids[s] < 0 || ids[s] >= V)
                return loom_err("cpu: embed: token id %d at row %lld is outside the vocabulary [0, %lld)",
                                ids[s], (long long)s, (long long)V);
            k->to_f32((float *)out + s * D, (const char *)src[0] + (size_t)ids[s] * D * es, tab->type, D);
        }
        return 0;
    }
    case LOOM_OP_MATMUL: {
        const loom_node *w = sn[1];
        int64_t K = w->ne[1], N = w->ne[0], M = nrows(sn[0]);
        return do_matmul(c, out, src[0], src[1], w->type, n->n_src > 2 ? src[2] : NULL, M, K, N);
    }
    case LOOM_OP_ADD:
    case LOOM_OP_MUL:
    case LOOM_OP_SCALE:
    case LOOM_OP_SILU:
    case LOOM_OP_SWIGLU: {
        ew_task t = {.k = k, .op = n->op, .y = out, .a = src[0], .b = src[1], .n = nelem(n), .s = n->fp[0]};
        if ((n->op == LOOM_OP_ADD || n->op == LOOM_OP_MUL) && nelem(sn[1]) != nelem(n)) {
            t.cols = ncols(sn[0]);
            t.rows = nrows(sn[0]);
        }
        double cost = n->op == LOOM_OP_SILU || n->op == LOOM_OP_SWIGLU ? 8.0 : 1.0;
        cpu_pool_run(c->pool, pick_threads(c, cost * (double)t.n), ew_run, &t);
        return 0;
    }
    case LOOM_OP_RMSNORM:
    case LOOM_OP_SOFTMAX: {
        row_task t = {.k = k, .op = n->op, .y = out, .x = src[0], .w = src[1], .rows = nrows(sn[0]),
                      .cols = ncols(sn[0]), .p = n->fp[0]};
        double cost = (n->op == LOOM_OP_SOFTMAX ? 8.0 : 2.0) * (double)nelem(n);
        int nth = pick_threads(c, cost);
        if (nth > t.rows) nth = (int)t.rows;
        cpu_pool_run(c->pool, nth, row_run, &t);
        return 0;
    }
    case LOOM_OP_ROPE: {
        rope_task t = {.c = c, .y = out, .x = src[0], .factors = src[2], .pos = src[1],
                       .S = nrows(sn[0]), .H = n->ip[0], .hd = n->ip[1], .mode = n->ip[2],
                       .rot = n->ip[3], .theta = n->fp[0], .pscale = n->fp[1]};
        if (scratch_reserve(c, (size_t)t.rot) < 0) return -1;
        int nth = pick_threads(c, 4.0 * (double)nelem(n) + 40.0 * (double)t.S * t.rot);
        if (nth > t.S) nth = (int)t.S;
        cpu_pool_run(c->pool, nth, rope_run, &t);
        return 0;
    }
    case LOOM_OP_KV_STORE: {
        const loom_node *cache = sn[0];
        int64_t C = cache->ne[0], W = cache->ne[1], S = nrows(sn[1]);
        const int32_t *pos = src[2];
        for (int64_t s = 0; s < S; s++)
            if (pos[s] < 0 || pos[s] >= C)
                return loom_err("cpu: kv_store: position %d at row %lld is outside the cache [0, %lld)",
                                pos[s], (long long)s, (long long)C);
        /* the node stands for the updated cache; normally it shares the cache's storage */
        if (out != src[0]) memmove(out, src[0], (size_t)(C * W) * sizeof(float));
        for (int64_t s = 0; s < S; s++)
            memcpy((float *)out + (int64_t)pos[s] * W, (const float *)src[1] + s * W,
                   (size_t)W * sizeof(float));
        return 0;
    }
    case LOOM_OP_ATTENTION: {
        attn_task t = {.c = c, .out = out, .q = src[0], .kc = src[1], .vc = src[2], .pos = src[3],
                       .S = nrows(sn[0]), .H = n->ip[0], .Hkv = n->ip[1], .hd = n->ip[2],
                       .scale = n->fp[0]};
        int64_t C = nrows(sn[1]);
        double work = 0;
        for (int64_t s = 0; s < t.S; s++) {
            if (t.pos[s] < 0 || t.pos[s] >= C)
                return loom_err("cpu: attention: position %d at row %lld is outside the cache [0, %lld)",
                                t.pos[s], (long long)s, (long long)C);
            work += 4.0 * (t.pos[s] + 1.0) * t.H * t.hd;
        }
        if (scratch_reserve(c, CPU_ATTN_BLOCK + (size_t)t.hd) < 0) return -1;
        t.n_items = t.S * t.H;
        int nth = pick_threads(c, work);
        if (nth > t.n_items) nth = (int)t.n_items;
        t.grain = t.n_items / ((int64_t)nth * 16);
        if (t.grain < 1) t.grain = 1;
        atomic_init(&t.next, 0);
        cpu_pool_run(c->pool, nth, attn_run, &t);
        return 0;
    }
    case LOOM_OP_PERMUTE:
        if (out == src[0]) return loom_err("cpu: permute cannot run in place");
        do_permute(n, sn[0], out, src[0]);
        return 0;
    default:
        return loom_err("cpu: op %d is not supported", (int)n->op);
    }
}

/* Test hook: LOOM_TEST_PERTURB=OP (an op name, e.g. rmsnorm) makes the scalar kernels get that op
 * slightly wrong, so tests can check that `loom diff --device cpu --device cpu:scalar` finds it. */
static int cpu_compute_node_checked(loom_backend *be, const loom_exec_ctx *x, int i) {
    static const char *perturb;
    static bool perturb_read;
    if (!perturb_read) {
        perturb = getenv("LOOM_TEST_PERTURB");
        perturb_read = true;
    }
    int rc = cpu_compute_node(be, x, i);
    const loom_node *n = rc == 0 && perturb ? &x->plan->g->nodes[i] : NULL;
    if (n && n->type == LOOM_F32 && !strcmp(perturb, loom_op_name(n->op)) && !strcmp(CB(be)->k.name, "scalar")) {
        float *y = node_ptr(x, i);
        for (int64_t j = 0; y && j < nelem(n); j++) y[j] = y[j] * 1.01f + 0.01f;
    }
    return rc;
}

static int cpu_sync(loom_backend *be) {
    (void)be;
    return 0;
}

static void cpu_describe(loom_backend *be, char *buf, size_t n) {
    cpu_backend *c = CB(be);
    snprintf(buf, n, "cpu: %d thread%s, %s kernels", c->n_threads, c->n_threads == 1 ? "" : "s",
             c->k.name);
}

static void cpu_destroy(loom_backend *be) {
    if (!be) return;
    cpu_backend *c = CB(be);
    cpu_pool_free(c->pool);
    if (c->scratch)
        for (int t = 0; t < c->n_threads; t++) loom_free_aligned(c->scratch[t]);
    free(c->scratch);
    free(c);
}

static const loom_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .buf_alloc = cpu_buf_alloc,
    .buf_free = cpu_buf_free,
    .buf_write = cpu_buf_write,
    .buf_read = cpu_buf_read,
    .buf_zero = cpu_buf_zero,
    .buf_from_host = cpu_buf_from_host,
    .supports = cpu_supports,
    .compute_node = cpu_compute_node_checked,
    .sync = cpu_sync,
    .describe = cpu_describe,
};

static bool env_on(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

loom_backend *loom_cpu_backend_new_isa(const loom_backend_opts *o, const char *isa) {
    loom_backend_opts def = {0};
    if (!o) o = &def;
    if (o->n_threads < 0) return loom_err_null("cpu: bad thread count %d", o->n_threads);
    int nt = o->n_threads;
    if (nt == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nt = n > 0 ? (int)n : 1;
    }
    if (nt > 1024) nt = 1024;

    /* which kernels: the best the CPU has, unless asked otherwise */
    if (!isa) {
        const char *env = getenv("LOOM_CPU_ISA");
        if (o->force_scalar || env_on("LOOM_SCALAR"))
            isa = "scalar";
        else if (env && *env)
            isa = env;
        else
            isa = cpu_has_avx512() ? "avx512" : cpu_has_avx2() ? "avx2" : "scalar";
    }
    cpu_kernels kern;
    cpu_kernels_scalar(&kern);
    if (!strcmp(isa, "avx512")) {
        if (!cpu_has_avx512()) return loom_err_null("cpu: this CPU has no AVX-512 (F/BW/DQ/VL)");
        cpu_kernels_avx512(&kern, false);
    } else if (!strcmp(isa, "avx512bf16")) {
        /* opt-in: bf16-weight GEMMs round x to bf16 (about 10x the error of f32, 1.5x the speed) */
        if (!cpu_has_avx512bf16()) return loom_err_null("cpu: this CPU has no AVX512_BF16");
        cpu_kernels_avx512(&kern, true);
    } else if (!strcmp(isa, "avx2")) {
        if (!cpu_has_avx2()) return loom_err_null("cpu: this CPU has no AVX2+FMA+F16C");
        cpu_kernels_avx2(&kern);
    } else if (strcmp(isa, "scalar") != 0) {
        return loom_err_null("cpu: unknown kernel flavour '%s' (expected scalar, avx2, avx512 or avx512bf16)", isa);
    }

    cpu_backend *c = loom_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->base.ops = &cpu_ops;
    c->base.impl = c;
    c->k = kern;
    c->n_threads = nt;
    c->scratch = loom_calloc((size_t)nt, sizeof *c->scratch);
    if (!c->scratch || !(c->pool = cpu_pool_new(nt)) || scratch_reserve(c, 4096) < 0) {
        cpu_destroy(&c->base);
        return NULL;
    }
    if (o->verbose) fprintf(stderr, "loom: cpu backend, %d threads, %s kernels\n", nt, kern.name);
    return &c->base;
}

loom_backend *loom_cpu_backend_new(const loom_backend_opts *o) { return loom_cpu_backend_new_isa(o, NULL); }

const char *loom_cpu_backend_isa(const loom_backend *be) { return ((cpu_backend *)be->impl)->k.name; }
int loom_cpu_backend_threads(const loom_backend *be) { return ((cpu_backend *)be->impl)->n_threads; }
bool loom_cpu_backend_gemm_bf16_rounds_x(const loom_backend *be) {
    return ((cpu_backend *)be->impl)->k.gemm_bf16_rounds_x;
}
