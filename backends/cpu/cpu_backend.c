/* The CPU backend: host buffers, op validation, and the drivers that split each node's work
 * over the thread pool and call the kernel flavour picked at creation (see cpu.h). */
#include "backends/cpu/cpu.h"
#include "backends/cpu/cpu_quant.h"

#include "core/util.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct loom_buffer {
    void *data;
    size_t size;
    bool owned;
    bool locked; /* wrapped host memory we mlock'ed */
};

/* RoPE angles of the last positions seen: q and k of every layer rotate by the same angles, so a
 * step computes them once (keyed on everything they depend on). */
typedef struct rope_cache {
    int32_t *pos;
    float *factors, *cs; /* cs: [S][rot/2] cos, then [S][rot/2] sin */
    int64_t S, cap_rows;
    int rot, cap_rot;
    double theta, pscale;
    bool has_factors, valid;
} rope_cache;

typedef struct cpu_backend {
    loom_backend base;
    cpu_kernels k;
    cpu_pool *pool;
    int n_threads;
    float **scratch;     /* per thread, 64-byte aligned */
    size_t scratch_n;    /* floats in each */

    rope_cache rope;
    void *moe_buf;       /* MOE's routing and per-expert rows (do_moe), grown on demand */
    size_t moe_bytes;
    cpu_qdot_fn qdot;    /* quantised-weight dot products (quant.h) */
    const char *perturb; /* LOOM_TEST_PERTURB, read at creation (see cpu_compute_node_checked) */
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
/* The whole pages covering [p, p + n): mlock/munlock work on pages. */
static void page_span(const void *p, size_t n, void **start, size_t *len) {
    uintptr_t ps = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)p & ~(ps - 1);
    *start = (void *)a;
    *len = (((uintptr_t)p + n + ps - 1) & ~(ps - 1)) - a;
}

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
    b->locked = false;
    return b;
}

static void cpu_buf_free(loom_backend *be, loom_buffer *b) {
    (void)be;
    if (!b) return;
    if (b->owned) loom_free_aligned(b->data);
    if (b->locked) {
        /* not reference counted: a page shared with a neighbouring weight is unlocked too */
        void *start;
        size_t len;
        page_span(b->data, b->size, &start, &len);
        munlock(start, len);
    }
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

static int cpu_buf_copy(loom_backend *be, loom_buffer *dst, size_t doff, loom_buffer *src, size_t soff, size_t n) {
    (void)be;
    if (buf_range(dst, doff, n, "copy to") < 0 || buf_range(src, soff, n, "copy from") < 0) return -1;
    if (n) memmove((char *)dst->data + doff, (const char *)src->data + soff, n);
    return 0;
}

static int cpu_buf_zero(loom_backend *be, loom_buffer *b, size_t off, size_t n) {
    (void)be;
    if (buf_range(b, off, n, "zero") < 0) return -1;
    if (n) memset((char *)b->data + off, 0, n);
    return 0;
}

/* Weights are mapped file bytes: wrap, never copy. Large ones are also locked in memory (best
 * effort, LOOM_MLOCK=0 to skip): clean file pages are what the kernel reclaims first, and a VM
 * with proactive reclaim (DAMON pageout) evicts them between tokens, stalling decode for hundreds
 * of ms while they are read back. Locking also takes the page faults at load, not in the first
 * prefill. Without the privilege (RLIMIT_MEMLOCK) this quietly does nothing. */
static loom_buffer *cpu_buf_from_host(loom_backend *be, const void *host, size_t nbytes) {
    (void)be;
    if (!host && nbytes) return loom_err_null("cpu: wrapping a NULL host pointer");
    loom_buffer *b = loom_malloc(sizeof *b);
    if (!b) return NULL;
    b->data = (void *)host;
    b->size = nbytes;
    b->owned = false;
    b->locked = false;
    const char *env = getenv("LOOM_MLOCK");
    if (nbytes >= (1u << 16) && !(env && !strcmp(env, "0"))) {
        void *start;
        size_t len;
        page_span(host, nbytes, &start, &len);
        b->locked = mlock(start, len) == 0;
    }
    return b;
}

/* ---- node helpers --------------------------------------------------------------------------- */
static int64_t nelem(const loom_node *n) {
    int64_t e = 1;
    for (int d = 0; d < n->ndim; d++) e *= n->ne[d];
    return e;
}
static int64_t ncols(const loom_node *n) { return n->ndim ? n->ne[n->ndim - 1] : 1; }
static int64_t nrows(const loom_node *n) { /* all dimensions but the last */
    int64_t r = 1;
    for (int d = 0; d + 1 < n->ndim; d++) r *= n->ne[d];
    return r;
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
    size_t need = loom_node_bytes(n);
    if (off > b->size || need > b->size - off)
        return loom_err_null("cpu: node %d '%s' needs %zu bytes at offset %zu of a %zu-byte buffer",
                             i, n->name, need, off, b->size);
    return (char *)b->data + off;
}

static bool is_wtype(loom_dtype t) {
    return t == LOOM_F32 || t == LOOM_F16 || t == LOOM_BF16 || loom_dtype_is_quant(t);
}
/* A quantised matrix's rows must be whole blocks. */
static bool wrows_ok(const loom_node *w) { return w->ne[w->ndim - 1] % loom_dtype_blck(w->type) == 0; }

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
    if (!loom_params_check(n, "cpu", 0, 0)) return false; /* every parameter graph.h defines is implemented */
    switch (n->op) {
    case LOOM_OP_INPUT:
    case LOOM_OP_WEIGHT:
    case LOOM_OP_STATE: return true;
    case LOOM_OP_VIEW: return a != NULL;
    case LOOM_OP_EMBED:
        return f32n(n) && a && is_wtype(a->type) && a->ndim == 2 && wrows_ok(a) && i32n(b) &&
               ncols(n) == a->ne[1] && nrows(n) == nelem(b);
    case LOOM_OP_MATMUL: {
        if (!f32n(n) || !f32n(a) || !b || !is_wtype(b->type) || b->ndim != 2 || !wrows_ok(b)) return false;
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
    case LOOM_OP_GELU:
    case LOOM_OP_SOFTMAX: return f32n(n) && f32n(a) && nelem(n) == nelem(a);
    case LOOM_OP_SOFTCAP: return f32n(n) && f32n(a) && nelem(n) == nelem(a) && n->fp[0] > 0;
    case LOOM_OP_RMSNORM:
        return f32n(n) && f32n(a) && nelem(n) == nelem(a) && (!b || (f32n(b) && nelem(b) == ncols(a)));
    case LOOM_OP_SWIGLU:
    case LOOM_OP_GEGLU: return f32n(n) && f32n(a) && f32n(b) && nelem(a) == nelem(n) && nelem(b) == nelem(n);
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
        if (H <= 0 || Hkv <= 0 || hd <= 0 || H % Hkv || n->ip[4] < 0 || !(n->fp[1] >= 0)) return false;
        if (n->ip[5] && (n->ip[5] != 1 || n->ip[4] <= 0 || n->ip[4] > nrows(b) || n->n_src > 4)) return false;
        if (ncols(a) != (int64_t)H * hd || nelem(n) != nelem(a)) return false;
        if (ncols(b) != (int64_t)Hkv * hd || ncols(c) != (int64_t)Hkv * hd) return false;
        if (nrows(b) != nrows(c) || nelem(d) != nrows(a)) return false;
        if (n->n_src <= 4) return true;
        const loom_node *sq = src_of(g, n, 4), *tb = src_of(g, n, 5);
        return i32n(sq) && i32n(tb) && tb->ndim == 2 && nelem(sq) == nrows(a) && n->ip[3] > 0;
    }
    case LOOM_OP_MOE: {
        const loom_node *wu = d, *wd = src_of(g, n, 4), *wg = c;
        if (!f32n(n) || !f32n(a) || !f32n(b) || !wg || !wu || !wd || nrows(b) != nrows(a) || nelem(n) != nelem(a))
            return false;
        int64_t E = ncols(b), D = ncols(a);
        for (int k = 2; k < 5; k++) {
            const loom_node *w = src_of(g, n, k);
            if (!is_wtype(w->type) || w->ndim != 3 || !wrows_ok(w) || w->ne[0] != E) return false;
        }
        if (wg->ne[2] != D || wu->ne[2] != D || wu->ne[1] != wg->ne[1] || wd->ne[1] != D || wd->ne[2] != wg->ne[1])
            return false;
        return n->ip[0] >= 1 && n->ip[0] <= E && (n->ip[1] == 0 || n->ip[1] == 1);
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

static bool worth_threads(const cpu_backend *c, double work) {
    return c->n_threads > 1 && work >= 2 * CPU_GRAIN;
}

/* Items per chunk: about 4 chunks per thread, at least `min`, a multiple of `align`. */
static int64_t grain_for(const cpu_backend *c, int64_t n, int64_t min, int64_t align) {
    int64_t g = (n + c->n_threads * 4 - 1) / (c->n_threads * 4);
    if (g < min) g = min;
    return (g + align - 1) / align * align;
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

/* ---- elementwise ops ------------------------------------------------------------------------ */
typedef struct ew_task {
    const cpu_kernels *k;
    loom_op op;
    float *y;
    const float *a, *b;
    int64_t cols; /* > 0: items are rows and b (cols floats) is broadcast over them */
    float s;
} ew_task;

static void ew_run(void *arg, int64_t i0, int64_t i1, int ith) {
    (void)ith;
    const ew_task *t = arg;
    const cpu_kernels *k = t->k;
    if (t->cols) {
        for (int64_t r = i0; r < i1; r++) {
            float *y = t->y + r * t->cols;
            const float *a = t->a + r * t->cols;
            if (t->op == LOOM_OP_ADD)
                k->add(y, a, t->b, t->cols);
            else
                k->mul(y, a, t->b, t->cols);
        }
        return;
    }
    float *y = t->y + i0;
    const float *a = t->a + i0, *b = t->b ? t->b + i0 : NULL;
    switch (t->op) {
    case LOOM_OP_ADD: k->add(y, a, b, i1 - i0); break;
    case LOOM_OP_MUL: k->mul(y, a, b, i1 - i0); break;
    case LOOM_OP_SCALE: k->scale(y, a, t->s, i1 - i0); break;
    case LOOM_OP_SILU: k->silu(y, a, i1 - i0); break;
    case LOOM_OP_SWIGLU: k->swiglu(y, a, b, i1 - i0); break;
    case LOOM_OP_GELU: k->gelu(y, a, i1 - i0); break;
    case LOOM_OP_GEGLU: k->geglu(y, a, b, i1 - i0); break;
    case LOOM_OP_SOFTCAP: k->softcap(y, a, t->s, i1 - i0); break;
    default: break;
    }
}

/* Row ops: RMSNORM, SOFTMAX. */
typedef struct row_task {
    const cpu_kernels *k;
    loom_op op;
    float *y;
    const float *x, *w;
    int64_t cols;
    float p;
} row_task;

static void row_run(void *arg, int64_t r0, int64_t r1, int ith) {
    (void)ith;
    const row_task *t = arg;
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
    int64_t M, K, N, chunk; /* items are chunks of `chunk` output columns */
    bool rows;              /* 1 < M <= CPU_GEMV_MAX_ROWS through gemv_rows */
} mm_task;

static void mm_run(void *arg, int64_t c0, int64_t c1, int ith) {
    const mm_task *t = arg;
    const cpu_kernels *k = &t->c->k;
    for (int64_t ci = c0; ci < c1; ci++) {
        int64_t n0 = ci * t->chunk, n1 = n0 + t->chunk < t->N ? n0 + t->chunk : t->N;
        if (t->M == 1)
            k->gemv(t->y, t->x, t->w, t->wt, t->K, n0, n1, t->bias);
        else if (t->rows)
            k->gemv_rows(t->y, t->N, t->x, (int)t->M, t->w, t->wt, t->K, n0, n1, t->bias);
        else
            k->gemm(t->y, t->N, t->x, t->w, t->wt, t->M, t->K, n0, n1, t->bias, t->c->scratch[ith]);
    }
}

/* GEMM column chunk: a multiple of 32 up to CPU_GEMM_MAX_COLS that splits N most evenly over the
 * threads (larger on ties: fewer re-reads of x). E.g. N = 896 on 2 threads: 4 chunks of 224. */
static int64_t gemm_chunk(int64_t N, int nth) {
    int64_t best = 32, best_span = INT64_MAX;
    for (int64_t c = 32; c <= CPU_GEMM_MAX_COLS; c += 32) {
        int64_t chunks = (N + c - 1) / c, span = (chunks + nth - 1) / nth * c;
        if (span <= best_span) best = c, best_span = span;
        if (c >= N) break;
    }
    return best;
}

/* Prefill with the later quantised types (cpu_qtype_native false): per chunk of output columns,
 * the weight rows are dequantised (loom_dequant_row, the scalar reference) into the thread's buffer
 * and the f32 kernels run on them. Exact f32 weights, f32 activations. */
typedef struct dq_task {
    cpu_backend *c;
    float *y;
    const float *x, *bias;
    const char *w;
    loom_dtype wt;
    size_t row_bytes;
    float **wf; /* per thread: chunk x K floats */
    cpu_dequant_fn dq; /* the vector dequantiser (IQ4_* with AVX2), or NULL: loom_dequant_row */
    int64_t M, K, N, chunk;
} dq_task;

static void dq_run(void *arg, int64_t c0, int64_t c1, int ith) {
    const dq_task *t = arg;
    const cpu_kernels *k = &t->c->k;
    float *wf = t->wf[ith];
    for (int64_t ci = c0; ci < c1; ci++) {
        int64_t n0 = ci * t->chunk, n1 = n0 + t->chunk < t->N ? n0 + t->chunk : t->N, nn = n1 - n0;
        for (int64_t n = n0; n < n1; n++) {
            if (t->dq) t->dq(t->wt, t->w + (size_t)n * t->row_bytes, wf + (n - n0) * t->K, t->K);
            else loom_dequant_row(t->wt, t->w + (size_t)n * t->row_bytes, wf + (n - n0) * t->K, t->K);
        }
        const float *b = t->bias ? t->bias + n0 : NULL;
        if (t->M == 1)
            k->gemv(t->y + n0, t->x, wf, LOOM_F32, t->K, 0, nn, b);
        else
            k->gemm(t->y + n0, t->N, t->x, wf, LOOM_F32, t->M, t->K, 0, nn, b, t->c->scratch[ith]);
    }
}

static int matmul_dequant(cpu_backend *c, float *y, const float *x, const void *w, loom_dtype wt,
                          const float *bias, int64_t M, int64_t K, int64_t N) {
    bool par = worth_threads(c, 2.0 * (double)M * (double)N * (double)K);
    dq_task t = {.c = c, .y = y, .x = x, .bias = bias, .w = w, .wt = wt, .row_bytes = loom_dtype_nbytes(wt, K),
                 .dq = cpu_dequant_row_for(c->qdot, wt), .M = M, .K = K, .N = N};
    /* ~256 KB of f32 weights per chunk (they stay in L2 while the x rows pass), 32-column steps */
    t.chunk = ((int64_t)1 << 16) / K / 32 * 32;
    if (t.chunk < 32) t.chunk = 32;
    if (t.chunk > CPU_GEMM_MAX_COLS) t.chunk = CPU_GEMM_MAX_COLS;
    if (M > 1 && scratch_reserve(c, c->k.gemm_scratch(M, K)) < 0) return -1;
    int nth = c->n_threads, rc = 0;
    float **bufs = calloc((size_t)nth, sizeof *bufs);
    if (!bufs) return loom_err("cpu: out of memory dequantising %s weights", loom_dtype_name(wt));
    for (int i = 0; i < nth && !rc; i++)
        if (!(bufs[i] = loom_malloc_aligned((size_t)(t.chunk * K) * sizeof(float)))) rc = -1;
    if (!rc) {
        t.wf = bufs;
        cpu_pool_for(c->pool, par, (N + t.chunk - 1) / t.chunk, 1, dq_run, &t);
    }
    for (int i = 0; i < nth; i++) loom_free_aligned(bufs[i]);
    free(bufs);
    return rc;
}

static int do_matmul(cpu_backend *c, float *y, const float *x, const void *w, loom_dtype wt,
                     const float *bias, int64_t M, int64_t K, int64_t N) {
    if (M == 0 || N == 0) return 0;
    if (K == 0) { /* an empty sum: just the bias */
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) y[m * N + n] = bias ? bias[n] : 0.0f;
        return 0;
    }
    /* the later types: with AVX-512 VNNI their int8 panel GEMM (cpu_qgemm_later_ok); otherwise the
     * integer rows kernel for decode (few rows), the f32 GEMM on dequantised chunks for prefill
     * (where the chunk's dequantisation is shared by every x row) */
    const bool kgemm = cpu_qgemm_k_ok(c->qdot, wt, K, M); /* the AVX2 8-bit / int16 prefill GEMM takes wt */
    if (loom_dtype_is_quant(wt) && !cpu_qtype_native(wt) && M > CPU_QDEQUANT_MIN_ROWS &&
        !cpu_qgemm_later_ok(c->qdot, wt, K) && !cpu_qgemm_iq4_ok(c->qdot, wt, K, M) && !kgemm)
        return matmul_dequant(c, y, x, w, wt, bias, M, K, N);
    if (M > CPU_QDEQUANT_MIN_ROWS && cpu_kdequant_ok(c->qdot, wt, K) && !kgemm) /* Q4_K / Q6_K on AVX2 */
        return matmul_dequant(c, y, x, w, wt, bias, M, K, N);
    if (loom_dtype_is_quant(wt))
        return cpu_quant_matmul(c->pool, worth_threads(c, 2.0 * (double)M * (double)N * (double)K), c->n_threads,
                                c->qdot, y, x, w, wt, bias, M, K, N);
    mm_task t = {.c = c, .y = y, .x = x, .bias = bias, .w = w, .wt = wt, .M = M, .K = K, .N = N};
    bool par = worth_threads(c, 2.0 * (double)M * (double)N * (double)K);
    t.rows = M > 1 && M <= CPU_GEMV_MAX_ROWS && c->k.gemv_rows;
    if (M == 1 || t.rows) {
        /* rows a multiple of 16, about 4 chunks per thread but at most ~512 KB of weights each,
         * so a thread that finishes early never waits long for the last chunk (LM head: 272 MB) */
        int64_t cap = ((int64_t)1 << 19) / (K * (wt == LOOM_F32 ? 4 : 2) + 1);
        t.chunk = par ? grain_for(c, N, 16, 16) : N;
        if (par && t.chunk > cap) t.chunk = cap < 16 ? 16 : cap / 16 * 16;
    } else {
        if (scratch_reserve(c, c->k.gemm_scratch(M, K)) < 0) return -1;
        t.chunk = gemm_chunk(N, par ? c->n_threads : 1);
    }
    cpu_pool_for(c->pool, par, (N + t.chunk - 1) / t.chunk, 1, mm_run, &t);
    return 0;
}

/* ---- moe ------------------------------------------------------------------------------------ */
/* Route each row to its k experts (graph.h MOE): sel[s * k + i] = expert, wt[...] = weight. */
static void moe_route(const float *logits, int64_t S, int64_t E, int k, bool norm, int32_t *sel, float *wt) {
    for (int64_t s = 0; s < S; s++) {
        const float *l = logits + s * E;
        double mx = -INFINITY, sum = 0, chosen = 0;
        for (int64_t e = 0; e < E; e++) mx = l[e] > mx ? l[e] : mx;
        for (int64_t e = 0; e < E; e++) sum += exp((double)l[e] - mx);
        int32_t *se = sel + s * k;
        for (int i = 0; i < k; i++) { /* the i-th largest logit; ties go to the lower expert */
            int64_t best = -1;
            for (int64_t e = 0; e < E; e++) {
                bool taken = false;
                for (int j = 0; j < i && !taken; j++) taken = se[j] == e;
                if (!taken && (best < 0 || l[e] > l[best])) best = e;
            }
            se[i] = (int32_t)best;
            chosen += exp((double)l[best] - mx);
        }
        for (int i = 0; i < k; i++)
            wt[s * k + i] = (float)(exp((double)l[se[i]] - mx) / (norm ? chosen : sum));
    }
}

/* Experts one at a time, each over the rows routed to it (gathered), so a prefill reads each
 * expert's weights once; the matmuls are the ordinary threaded ones on a slice of the stack. */
static int do_moe(cpu_backend *c, const loom_node *n, const loom_node *const *sn, void *const *src, float *out) {
    const loom_node *wg = sn[2], *wd = sn[4];
    int64_t S = nrows(sn[0]), D = ncols(sn[0]), E = ncols(sn[1]), F = wg->ne[1];
    int k = n->ip[0];
    size_t slots = (size_t)(S * k);
    size_t need = slots * (2 * sizeof(int32_t) + sizeof(float)) + (size_t)(E + 1) * sizeof(int64_t) + 64 +
                  (size_t)S * (size_t)(2 * D + 2 * F) * sizeof(float);
    if (need > c->moe_bytes) {
        void *p = loom_malloc_aligned(need);
        if (!p) return loom_err("cpu: moe: out of memory for %zu bytes of routing buffers", need);
        loom_free_aligned(c->moe_buf);
        c->moe_buf = p, c->moe_bytes = need;
    }
    float *xe = c->moe_buf, *ge = xe + S * D, *ue = ge + S * F, *ye = ue + S * F;
    int32_t *sel = (int32_t *)(ye + S * D), *order = sel + slots;
    float *wt = (float *)(order + slots);
    int64_t *start = (int64_t *)(((uintptr_t)(wt + slots) + 7) & ~(uintptr_t)7);
    moe_route(src[1], S, E, k, n->ip[1] != 0, sel, wt);
    /* slots grouped by expert (counting sort, stable: rows ascending within an expert) */
    memset(start, 0, (size_t)(E + 1) * sizeof *start);
    for (size_t i = 0; i < slots; i++) start[sel[i] + 1]++;
    for (int64_t e = 0; e < E; e++) start[e + 1] += start[e];
    for (size_t i = 0; i < slots; i++) order[start[sel[i]]++] = (int32_t)i;
    for (int64_t e = E; e > 0; e--) start[e] = start[e - 1];
    start[0] = 0;
    memset(out, 0, (size_t)(S * D) * sizeof(float));
    size_t gbytes = loom_dtype_nbytes(wg->type, F * D), dbytes = loom_dtype_nbytes(wd->type, D * F);
    for (int64_t e = 0; e < E; e++) {
        int64_t m = start[e + 1] - start[e];
        if (!m) continue;
        const int32_t *ord = order + start[e];
        for (int64_t r = 0; r < m; r++)
            memcpy(xe + r * D, (const float *)src[0] + (ord[r] / k) * D, (size_t)D * sizeof(float));
        if (do_matmul(c, ge, xe, (const char *)src[2] + e * gbytes, wg->type, NULL, m, D, F) < 0 ||
            do_matmul(c, ue, xe, (const char *)src[3] + e * gbytes, sn[3]->type, NULL, m, D, F) < 0)
            return -1;
        c->k.swiglu(ge, ge, ue, m * F);
        if (do_matmul(c, ye, ge, (const char *)src[4] + e * dbytes, wd->type, NULL, m, F, D) < 0) return -1;
        for (int64_t r = 0; r < m; r++) {
            float *o = out + (ord[r] / k) * D, w = wt[ord[r]];
            const float *y = ye + r * D;
            for (int64_t d = 0; d < D; d++) o[d] += w * y[d];
        }
    }
    return 0;
}

/* ---- rope ----------------------------------------------------------------------------------- */
typedef struct rope_task {
    cpu_backend *c;
    float *y;
    const float *x, *cs, *sn; /* angle tables [S][rot/2] */
    int H, hd, mode, rot;
} rope_task;

static void rope_run(void *arg, int64_t s0, int64_t s1, int ith) {
    (void)ith;
    const rope_task *t = arg;
    int half = t->rot / 2;
    int64_t D = (int64_t)t->H * t->hd;
    for (int64_t s = s0; s < s1; s++) {
        float *y = t->y + s * D;
        if (y != t->x + s * D) memcpy(y, t->x + s * D, (size_t)D * sizeof(float));
        for (int h = 0; h < t->H; h++)
            t->c->k.rope(y + (int64_t)h * t->hd, t->cs + s * half, t->sn + s * half, t->rot, t->mode);
    }
}

/* cos/sin of every (row, pair) angle, from the cache when the same positions and parameters were
 * seen last (the other projections of this step). Angles in double: positions reach thousands of
 * radians. */
static int rope_angles(cpu_backend *c, const int32_t *pos, int64_t S, int rot, double theta,
                       double pscale, const float *factors, const float **cs, const float **sn) {
    int half = rot / 2;
    rope_cache *r = &c->rope;
    bool same = r->valid && r->S == S && r->rot == rot && r->theta == theta && r->pscale == pscale &&
                r->has_factors == (factors != NULL) &&
                !memcmp(r->pos, pos, (size_t)S * sizeof *pos) &&
                (!factors || !memcmp(r->factors, factors, (size_t)half * sizeof *factors));
    if (!same) {
        r->valid = false;
        if (S > r->cap_rows || rot > r->cap_rot) {
            int64_t rows = S > r->cap_rows ? S : r->cap_rows;
            int rr = rot > r->cap_rot ? rot : r->cap_rot;
            int32_t *np = loom_malloc((size_t)rows * sizeof *np);
            float *nf = loom_malloc((size_t)rr * sizeof *nf);
            float *ncs = loom_malloc((size_t)rows * rr * sizeof *ncs);
            if (!np || !nf || !ncs) {
                free(np), free(nf), free(ncs);
                return -1;
            }
            free(r->pos), free(r->factors), free(r->cs);
            r->pos = np, r->factors = nf, r->cs = ncs;
            r->cap_rows = rows, r->cap_rot = rr;
        }
        double inv[512];
        double *freq = half <= 512 ? inv : malloc((size_t)half * sizeof *freq);
        if (!freq) return loom_err("cpu: out of memory for rope frequencies");
        for (int i = 0; i < half; i++) {
            freq[i] = pscale * pow(theta, -2.0 * i / rot);
            if (factors) freq[i] /= factors[i];
        }
        float *tc = r->cs, *ts = r->cs + S * half;
        for (int64_t s = 0; s < S; s++)
            for (int i = 0; i < half; i++) {
                double a = (double)pos[s] * freq[i];
                tc[s * half + i] = (float)cos(a);
                ts[s * half + i] = (float)sin(a);
            }
        if (freq != inv) free(freq);
        memcpy(r->pos, pos, (size_t)S * sizeof *pos);
        if (factors) memcpy(r->factors, factors, (size_t)half * sizeof *factors);
        r->S = S, r->rot = rot, r->theta = theta, r->pscale = pscale;
        r->has_factors = factors != NULL;
        r->valid = true;
    }
    *cs = r->cs;
    *sn = r->cs + S * half;
    return 0;
}

/* ---- attention ------------------------------------------------------------------------------ */
#define AG_MAXQ_PAGED 64
typedef struct attn_task {
    cpu_backend *c;
    float *out;
    const float *q, *kc, *vc;
    const int32_t *pos;
    int64_t C;  /* cache rows */
    int H, Hkv, hd, window;
    bool ring;  /* key j at cache row j % C (graph.h ATTENTION ip[5]) */
    float scale, softcap;
} attn_task;

/* First key row s sees: pos - W + 1 with a sliding window of W keys (graph.h), else 0. */
static int64_t attn_lo(int32_t pos, int window) {
    return window > 0 && pos + 1 > window ? (int64_t)pos + 1 - window : 0;
}

/* items are (query row, head) pairs */
static void attn_run(void *arg, int64_t i0, int64_t i1, int ith) {
    const attn_task *t = arg;
    int64_t Dq = (int64_t)t->H * t->hd, Dkv = (int64_t)t->Hkv * t->hd;
    int group = t->H / t->Hkv;
    float *scratch = t->c->scratch[ith];
    for (int64_t it = i0; it < i1; it++) {
        int64_t s = it / t->H;
        int h = (int)(it % t->H), hk = h / group;
        int64_t lo = attn_lo(t->pos[s], t->window), nk = (int64_t)t->pos[s] + 1 - lo;
        if (t->ring && lo % t->C + nk > t->C) { /* the window wraps: gather it in order */
            float *kb = scratch, *vb = kb + nk * t->hd, *work = vb + nk * t->hd;
            work = (float *)(((uintptr_t)work + 63) & ~(uintptr_t)63);
            for (int64_t j = 0; j < nk; j++) {
                int64_t r = (lo + j) % t->C;
                memcpy(kb + j * t->hd, t->kc + r * Dkv + (int64_t)hk * t->hd, (size_t)t->hd * sizeof(float));
                memcpy(vb + j * t->hd, t->vc + r * Dkv + (int64_t)hk * t->hd, (size_t)t->hd * sizeof(float));
            }
            t->c->k.attn(t->out + s * Dq + (int64_t)h * t->hd, t->q + s * Dq + (int64_t)h * t->hd, kb, vb, t->hd,
                         nk, t->hd, t->scale, t->softcap, work);
            continue;
        }
        if (t->ring) lo %= t->C;
        t->c->k.attn(t->out + s * Dq + (int64_t)h * t->hd, t->q + s * Dq + (int64_t)h * t->hd,
                     t->kc + lo * Dkv + (int64_t)hk * t->hd, t->vc + lo * Dkv + (int64_t)hk * t->hd, Dkv,
                     nk, t->hd, t->scale, t->softcap, scratch);
    }
}

/* Paged: items are (query row, kv head). The row's keys are scattered over cache blocks, so they
 * are gathered into per-thread scratch first and the contiguous kernels run on the copy: the
 * gather reads what attention reads anyway, and every kernel flavour works unchanged. */
typedef struct attn_paged_task {
    cpu_backend *c;
    float *out;
    const float *q, *kc, *vc;
    const int32_t *pos, *seq, *table;
    int64_t max_blocks, C;
    int H, Hkv, hd, bs, window;
    float scale, softcap;
} attn_paged_task;

static void attn_paged_run(void *arg, int64_t i0, int64_t i1, int ith) {
    const attn_paged_task *t = arg;
    int64_t Dq = (int64_t)t->H * t->hd, Dkv = (int64_t)t->Hkv * t->hd;
    int group = t->H / t->Hkv;
    for (int64_t it = i0; it < i1; it++) {
        int64_t s = it / t->Hkv, lo = attn_lo(t->pos[s], t->window), nk = (int64_t)t->pos[s] + 1 - lo;
        int hk = (int)(it % t->Hkv);
        const int32_t *row = t->table + (int64_t)t->seq[s] * t->max_blocks;
        float *kb = t->c->scratch[ith], *vb = kb + nk * t->hd, *work = vb + nk * t->hd;
        work = (float *)(((uintptr_t)work + 63) & ~(uintptr_t)63); /* kernels want 64-byte alignment */
        for (int64_t j = 0; j < nk; j++) { /* the keys in the window, lo + j, gathered from 0 */
            int64_t r = (int64_t)row[(lo + j) / t->bs] * t->bs + (lo + j) % t->bs;
            memcpy(kb + j * t->hd, t->kc + r * Dkv + (int64_t)hk * t->hd, (size_t)t->hd * sizeof(float));
            memcpy(vb + j * t->hd, t->vc + r * Dkv + (int64_t)hk * t->hd, (size_t)t->hd * sizeof(float));
        }
        if (t->softcap == 0 && t->c->k.attn_group && t->c->k.attn_group_ok(t->hd)) {
            float *outp[AG_MAXQ_PAGED];
            const float *qp[AG_MAXQ_PAGED];
            int64_t nks[AG_MAXQ_PAGED];
            for (int h0 = hk * group; h0 < (hk + 1) * group; h0 += AG_MAXQ_PAGED) {
                int nq = 0;
                for (int h = h0; h < (hk + 1) * group && nq < AG_MAXQ_PAGED; h++, nq++) {
                    outp[nq] = t->out + s * Dq + (int64_t)h * t->hd;
                    qp[nq] = t->q + s * Dq + (int64_t)h * t->hd;
                    nks[nq] = nk;
                }
                t->c->k.attn_group(outp, qp, nks, nq, kb, vb, t->hd, t->hd, t->scale, work);
            }
        } else {
            for (int h = hk * group; h < (hk + 1) * group; h++)
                t->c->k.attn(t->out + s * Dq + (int64_t)h * t->hd, t->q + s * Dq + (int64_t)h * t->hd, kb, vb,
                             t->hd, nk, t->hd, t->scale, t->softcap, work);
        }
    }
}

/* Check a paged attention node's table against the cache before any thread reads through it. */
static int paged_check(const attn_paged_task *t, int64_t S, int64_t B) {
    for (int64_t s = 0; s < S; s++) {
        if (t->seq[s] < 0 || t->seq[s] >= B)
            return loom_err("cpu: attention: sequence %d at row %lld is outside the block table [0, %lld)", t->seq[s],
                            (long long)s, (long long)B);
        if (t->pos[s] < 0 || (int64_t)t->pos[s] >= t->max_blocks * t->bs)
            return loom_err("cpu: attention: position %d at row %lld is beyond the block table (%lld blocks of %d)",
                            t->pos[s], (long long)s, (long long)t->max_blocks, t->bs);
        const int32_t *row = t->table + (int64_t)t->seq[s] * t->max_blocks;
        for (int64_t b = attn_lo(t->pos[s], t->window) / t->bs; b <= t->pos[s] / t->bs; b++)
            if (row[b] < 0 || ((int64_t)row[b] + 1) * t->bs > t->C)
                return loom_err("cpu: attention: block %d (entry %lld of sequence %d) is outside the %lld-row cache",
                                row[b], (long long)b, t->seq[s], (long long)t->C);
    }
    return 0;
}

/* Grouped: items are (kv head, block of query rows); the queries of an item are its rows x the
 * heads sharing that kv head, handed to the kernel in batches of up to AG_MAXQ. */
#define AG_MAXQ 64

typedef struct attn_group_task {
    cpu_backend *c;
    float *out;
    const float *q, *kc, *vc;
    const int32_t *pos;
    int64_t S, rows; /* rows per item */
    int H, Hkv, hd;
    float scale;
} attn_group_task;

static void attn_group_run(void *arg, int64_t i0, int64_t i1, int ith) {
    const attn_group_task *t = arg;
    int64_t Dq = (int64_t)t->H * t->hd, Dkv = (int64_t)t->Hkv * t->hd;
    int group = t->H / t->Hkv;
    int64_t blocks = (t->S + t->rows - 1) / t->rows;
    float *outp[AG_MAXQ];
    const float *qp[AG_MAXQ];
    int64_t nk[AG_MAXQ];
    for (int64_t it = i0; it < i1; it++) {
        int hk = (int)(it / blocks);
        int64_t s0 = (it % blocks) * t->rows, s1 = s0 + t->rows < t->S ? s0 + t->rows : t->S;
        int nq = 0;
        for (int64_t s = s0; s < s1; s++)
            for (int h = hk * group; h < (hk + 1) * group; h++) {
                outp[nq] = t->out + s * Dq + (int64_t)h * t->hd;
                qp[nq] = t->q + s * Dq + (int64_t)h * t->hd;
                nk[nq] = (int64_t)t->pos[s] + 1;
                if (++nq == AG_MAXQ || (s == s1 - 1 && h == (hk + 1) * group - 1)) {
                    t->c->k.attn_group(outp, qp, nk, nq, t->kc + (int64_t)hk * t->hd,
                                       t->vc + (int64_t)hk * t->hd, Dkv, t->hd, t->scale,
                                       t->c->scratch[ith]);
                    nq = 0;
                }
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

/* ---- one compute function per op ------------------------------------------------------------ */
/* What every op's compute function gets: the node, its sources' nodes and bytes, its output. */
typedef struct cpu_node {
    cpu_backend *c;
    const loom_node *n;
    const loom_node *sn[LOOM_MAX_SRC]; /* NULL where a source is unused */
    void *src[LOOM_MAX_SRC];
    void *out;
} cpu_node;

/* Leaves (input, weight, state) and views: their bytes are already where the plan put them. */
static int cpu_compute_nop(const cpu_node *a) {
    (void)a;
    return 0;
}

static int cpu_compute_embed(const cpu_node *a) {
    const loom_node *tab = a->sn[0];
    int64_t V = tab->ne[0], D = tab->ne[1], S = nelem(a->sn[1]);
    const int32_t *ids = a->src[1];
    float *out = a->out;
    size_t es = loom_dtype_size(tab->type);
    for (int64_t s = 0; s < S; s++) {
        if (ids[s] < 0 || ids[s] >= V)
            return loom_err("cpu: embed: token id %d at row %lld is outside the vocabulary [0, %lld)",
                            ids[s], (long long)s, (long long)V);
        if (loom_dtype_is_quant(tab->type)) /* dequantise just the selected rows */
            loom_dequant_row(tab->type, (const char *)a->src[0] + (size_t)ids[s] * loom_dtype_nbytes(tab->type, D),
                             out + s * D, D);
        else
            a->c->k.to_f32(out + s * D, (const char *)a->src[0] + (size_t)ids[s] * D * es, tab->type, D);
    }
    return 0;
}

static int cpu_compute_matmul(const cpu_node *a) {
    const loom_node *w = a->sn[1];
    int64_t K = w->ne[1], N = w->ne[0], M = nrows(a->sn[0]);
    return do_matmul(a->c, a->out, a->src[0], a->src[1], w->type, a->n->n_src > 2 ? a->src[2] : NULL, M, K, N);
}

/* ADD, MUL, SCALE, SILU, SWIGLU, GELU, GEGLU, SOFTCAP: one pass over the elements (ADD/MUL
 * broadcast b over rows). */
static int cpu_compute_elementwise(const cpu_node *a) {
    cpu_backend *c = a->c;
    const loom_node *n = a->n;
    ew_task t = {.k = &c->k, .op = n->op, .y = a->out, .a = a->src[0], .b = a->src[1], .s = n->fp[0]};
    int64_t items = nelem(n);
    if ((n->op == LOOM_OP_ADD || n->op == LOOM_OP_MUL) && nelem(a->sn[1]) != nelem(n)) {
        t.cols = ncols(a->sn[0]);
        items = nrows(a->sn[0]);
    }
    double cost = (n->op == LOOM_OP_ADD || n->op == LOOM_OP_MUL || n->op == LOOM_OP_SCALE ? 1.0 : 8.0) * (double)nelem(n);
    int64_t grain = t.cols ? grain_for(c, items, 1, 1) : grain_for(c, items, 4096, 16);
    cpu_pool_for(c->pool, worth_threads(c, cost), items, grain, ew_run, &t);
    return 0;
}

/* RMSNORM, SOFTMAX: one row at a time. */
static int cpu_compute_rows(const cpu_node *a) {
    cpu_backend *c = a->c;
    const loom_node *n = a->n;
    row_task t = {.k = &c->k, .op = n->op, .y = a->out, .x = a->src[0], .w = a->src[1],
                  .cols = ncols(a->sn[0]), .p = n->fp[0]};
    double cost = (n->op == LOOM_OP_SOFTMAX ? 8.0 : 2.0) * (double)nelem(n);
    int64_t rows = nrows(a->sn[0]);
    cpu_pool_for(c->pool, worth_threads(c, cost), rows, grain_for(c, rows, 1, 1), row_run, &t);
    return 0;
}

static int cpu_compute_rope(const cpu_node *a) {
    cpu_backend *c = a->c;
    const loom_node *n = a->n;
    rope_task t = {.c = c, .y = a->out, .x = a->src[0], .H = n->ip[0], .hd = n->ip[1],
                   .mode = n->ip[2], .rot = n->ip[3]};
    int64_t S = nrows(a->sn[0]);
    if (rope_angles(c, a->src[1], S, t.rot, n->fp[0], n->fp[1], a->src[2], &t.cs, &t.sn) < 0) return -1;
    cpu_pool_for(c->pool, worth_threads(c, 4.0 * (double)nelem(n)), S, grain_for(c, S, 1, 1), rope_run, &t);
    return 0;
}

static int cpu_compute_kv_store(const cpu_node *a) {
    const loom_node *cache = a->sn[0];
    int64_t C = cache->ne[0], W = cache->ne[1], S = nrows(a->sn[1]);
    const int32_t *pos = a->src[2];
    for (int64_t s = 0; s < S; s++)
        if (pos[s] < 0 || pos[s] >= C)
            return loom_err("cpu: kv_store: position %d at row %lld is outside the cache [0, %lld)",
                            pos[s], (long long)s, (long long)C);
    /* the node stands for the updated cache; normally it shares the cache's storage */
    if (a->out != a->src[0]) memmove(a->out, a->src[0], (size_t)(C * W) * sizeof(float));
    for (int64_t s = 0; s < S; s++)
        memcpy((float *)a->out + (int64_t)pos[s] * W, (const float *)a->src[1] + s * W, (size_t)W * sizeof(float));
    return 0;
}

/* Paged attention (src4 seq, src5 block table): per (row, kv head), keys gathered first. */
static int cpu_compute_attention_paged(const cpu_node *a) {
    cpu_backend *c = a->c;
    const loom_node *n = a->n;
    const cpu_kernels *k = &c->k;
    int64_t S = nrows(a->sn[0]), C = nrows(a->sn[1]);
    attn_paged_task pt = {.c = c, .out = a->out, .q = a->src[0], .kc = a->src[1], .vc = a->src[2],
                          .pos = a->src[3], .seq = a->src[4], .table = a->src[5], .max_blocks = a->sn[5]->ne[1],
                          .C = C, .H = n->ip[0], .Hkv = n->ip[1], .hd = n->ip[2], .bs = n->ip[3],
                          .window = n->ip[4], .scale = n->fp[0], .softcap = n->fp[1]};
    if (paged_check(&pt, S, a->sn[5]->ne[0]) < 0) return -1;
    int64_t max_nk = 1;
    double pwork = 0;
    for (int64_t s = 0; s < S; s++) {
        if (pt.pos[s] + 1 > max_nk) max_nk = pt.pos[s] + 1;
        pwork += 4.0 * (pt.pos[s] + 1.0) * pt.H * pt.hd;
    }
    int group = pt.H / pt.Hkv, nq = group < AG_MAXQ_PAGED ? group : AG_MAXQ_PAGED;
    size_t kern = CPU_ATTN_BLOCK + (size_t)pt.hd;
    if (k->attn_group && k->attn_group_ok(pt.hd) && k->attn_group_scratch(nq, pt.hd) > kern)
        kern = k->attn_group_scratch(nq, pt.hd);
    if (scratch_reserve(c, 2 * (size_t)max_nk * (size_t)pt.hd + 16 + kern) < 0) return -1;
    cpu_pool_for(c->pool, worth_threads(c, pwork), S * pt.Hkv, 1, attn_paged_run, &pt);
    return 0;
}

/* Contiguous cache: the grouped kernel (queries sharing a kv head read each K/V block once) when
 * the flavour has one for this head size and nothing calls for the general one (window, soft-cap),
 * else one (row, head) at a time. */
static int cpu_compute_attention(const cpu_node *a) {
    if (a->n->n_src > 4) return cpu_compute_attention_paged(a);
    cpu_backend *c = a->c;
    const loom_node *n = a->n;
    const cpu_kernels *k = &c->k;
    attn_task t = {.c = c, .out = a->out, .q = a->src[0], .kc = a->src[1], .vc = a->src[2], .pos = a->src[3],
                   .H = n->ip[0], .Hkv = n->ip[1], .hd = n->ip[2], .window = n->ip[4],
                   .ring = n->ip[5] != 0, .scale = n->fp[0], .softcap = n->fp[1]};
    int64_t S = nrows(a->sn[0]), C = nrows(a->sn[1]);
    double work = 0;
    t.C = C;
    for (int64_t s = 0; s < S; s++) {
        if (t.pos[s] < 0 || (t.pos[s] >= C && !t.ring))
            return loom_err("cpu: attention: position %d at row %lld is outside the cache [0, %lld)",
                            t.pos[s], (long long)s, (long long)C);
        work += 4.0 * (t.pos[s] + 1.0 - attn_lo(t.pos[s], t.window)) * t.H * t.hd;
    }
    /* the grouped kernel reads keys from 0 and has no soft-cap: use it while the window cuts
     * nothing off (every pos < W) */
    bool cut = false;
    for (int64_t s = 0; s < S && t.window > 0; s++) cut |= attn_lo(t.pos[s], t.window) > 0;
    if (k->attn_group && k->attn_group_ok(t.hd) && t.softcap == 0 && !cut) {
        int group = t.H / t.Hkv;
        attn_group_task ag = {.c = c, .out = t.out, .q = t.q, .kc = t.kc, .vc = t.vc, .pos = t.pos, .S = S,
                              .H = t.H, .Hkv = t.Hkv, .hd = t.hd, .scale = t.scale};
        /* rows per item: enough queries to share each K/V block, enough items for threads */
        ag.rows = group >= AG_MAXQ ? 1 : AG_MAXQ / group;
        int64_t want = (int64_t)c->n_threads * 4;
        while (ag.rows > 1 && t.Hkv * ((S + ag.rows - 1) / ag.rows) < want) ag.rows /= 2;
        int nq = (int)(ag.rows * group < AG_MAXQ ? ag.rows * group : AG_MAXQ);
        if (scratch_reserve(c, k->attn_group_scratch(nq, t.hd)) < 0) return -1;
        int64_t items = t.Hkv * ((S + ag.rows - 1) / ag.rows);
        cpu_pool_for(c->pool, worth_threads(c, work), items, 1, attn_group_run, &ag);
        return 0;
    }
    size_t need = CPU_ATTN_BLOCK + (size_t)t.hd + (t.ring ? 2 * (size_t)t.window * (size_t)t.hd + 16 : 0);
    if (scratch_reserve(c, need) < 0) return -1;
    int64_t items = S * t.H, grain = items / ((int64_t)c->n_threads * 16);
    cpu_pool_for(c->pool, worth_threads(c, work), items, grain < 1 ? 1 : grain, attn_run, &t);
    return 0;
}

static int cpu_compute_moe(const cpu_node *a) { return do_moe(a->c, a->n, a->sn, a->src, a->out); }

static int cpu_compute_permute(const cpu_node *a) {
    if (a->out == a->src[0]) return loom_err("cpu: permute cannot run in place");
    do_permute(a->n, a->sn[0], a->out, a->src[0]);
    return 0;
}

/* The dispatch table, one entry per op. A new op changes LOOM_OP_COUNT and stops the build here
 * until it has an entry (as in every other per-op table: graph.c's names, the Vulkan backend). */
typedef int (*cpu_compute_fn)(const cpu_node *a);
_Static_assert(LOOM_OP_COUNT == 21, "a new op: give it a compute function in cpu_compute_fns");
static const cpu_compute_fn cpu_compute_fns[LOOM_OP_COUNT] = {
    [LOOM_OP_INPUT] = cpu_compute_nop,
    [LOOM_OP_WEIGHT] = cpu_compute_nop,
    [LOOM_OP_STATE] = cpu_compute_nop,
    [LOOM_OP_EMBED] = cpu_compute_embed,
    [LOOM_OP_MATMUL] = cpu_compute_matmul,
    [LOOM_OP_ADD] = cpu_compute_elementwise,
    [LOOM_OP_MUL] = cpu_compute_elementwise,
    [LOOM_OP_SCALE] = cpu_compute_elementwise,
    [LOOM_OP_RMSNORM] = cpu_compute_rows,
    [LOOM_OP_SILU] = cpu_compute_elementwise,
    [LOOM_OP_SWIGLU] = cpu_compute_elementwise,
    [LOOM_OP_SOFTMAX] = cpu_compute_rows,
    [LOOM_OP_ROPE] = cpu_compute_rope,
    [LOOM_OP_KV_STORE] = cpu_compute_kv_store,
    [LOOM_OP_ATTENTION] = cpu_compute_attention,
    [LOOM_OP_VIEW] = cpu_compute_nop,
    [LOOM_OP_PERMUTE] = cpu_compute_permute,
    [LOOM_OP_GELU] = cpu_compute_elementwise,
    [LOOM_OP_GEGLU] = cpu_compute_elementwise,
    [LOOM_OP_SOFTCAP] = cpu_compute_elementwise,
    [LOOM_OP_MOE] = cpu_compute_moe,
};

static int cpu_compute_node(loom_backend *be, const loom_exec_ctx *x, int i) {
    const loom_graph *g = x->plan->g;
    if (i < 0 || i >= g->n) return loom_err("cpu: node index %d out of range", i);
    const loom_node *n = &g->nodes[i];
    cpu_compute_fn fn = n->op >= 0 && n->op < LOOM_OP_COUNT ? cpu_compute_fns[n->op] : NULL;
    if (!fn) return loom_err("cpu: op %d is not supported", (int)n->op);
    if (fn == cpu_compute_nop) return 0; /* leaves and aliases: nothing to compute */

    cpu_node a = {.c = CB(be), .n = n};
    for (int k = 0; k < n->n_src && k < LOOM_MAX_SRC; k++) {
        if (n->src[k] < 0) continue;
        if (n->src[k] >= g->n) return loom_err("cpu: node %d has a bad source %d", i, n->src[k]);
        a.sn[k] = &g->nodes[n->src[k]];
        if (!(a.src[k] = node_ptr(x, n->src[k]))) return -1;
    }
    if (!(a.out = node_ptr(x, i))) return -1;
    return fn(&a);
}

/* Test hook: LOOM_TEST_PERTURB=OP (an op name, e.g. rmsnorm) makes the scalar kernels get that op
 * slightly wrong, so tests can check that `loom diff --device cpu --device cpu:scalar` finds it. */
static int cpu_compute_node_checked(loom_backend *be, const loom_exec_ctx *x, int i) {
    const char *perturb = CB(be)->perturb;
    int rc = cpu_compute_node(be, x, i);
    const loom_node *n = rc == 0 && perturb ? &x->plan->g->nodes[i] : NULL;
    if (n && n->type == LOOM_F32 && !strcmp(perturb, loom_op_name(n->op)) && !strcmp(CB(be)->k.name, "scalar")) {
        float *y = node_ptr(x, i);
        for (int64_t j = 0; y && j < nelem(n); j++) y[j] = y[j] * 1.01f + 0.01f;
    }
    return rc;
}

/* Arena slots start on cache lines (the SIMD kernels load rows from them). */
static size_t cpu_alignment(loom_backend *be) {
    (void)be;
    return 64;
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
    free(c->rope.pos), free(c->rope.factors), free(c->rope.cs);
    free(c->moe_buf);
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
    .buf_copy = cpu_buf_copy,
    .buf_from_host = cpu_buf_from_host,
    .alignment = cpu_alignment,
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
    cpu_kernels kern = {0}; /* optional entries (attn_group, gemv_rows) stay NULL unless a flavour sets them */
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
    c->qdot = cpu_qdot_for(kern.name);
    c->n_threads = nt;
    c->perturb = getenv("LOOM_TEST_PERTURB");
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
