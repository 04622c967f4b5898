/* Test helpers for the CPU backend tests: build a small graph and its memory plan by hand (no
 * builder, no planner), run it on a backend node by node, read results back.
 *
 * Every non-leaf node and every INPUT gets its own 64-byte aligned slot in the arena, except nodes
 * made in place (tg_inplace), which share their first source's slot; WEIGHT nodes wrap host
 * memory (buf_from_host), STATE nodes live in their own buffers.
 */
#ifndef LOOM_TEST_CPU_GRAPH_H
#define LOOM_TEST_CPU_GRAPH_H

#include "backends/backend.h"
#include "backends/cpu/cpu.h"
#include "formats/source.h"
#include "core/util.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define TG_MAX_NODES 64
#define TG_MAX_LEAVES 16

typedef struct tg {
    loom_graph g;
    loom_node nodes[TG_MAX_NODES];
    loom_plan p;
    int order[TG_MAX_NODES];
    size_t arena_size;
    /* leaves: host data */
    loom_weight w[TG_MAX_LEAVES];
    int nw;
    const void *input_data[TG_MAX_NODES]; /* INPUT nodes: bytes copied in before each run */
    float *state_data[TG_MAX_LEAVES];     /* STATE: initial contents (copied in per run) */
    size_t state_bytes[TG_MAX_LEAVES];
    int n_state;
    bool backend_pass; /* tg_run_plan: run the backend's planner pass first (its fusions), as
                          loom_plan_build would; the hand-made memory plan keeps every node's slot */
    int n_folded;      /* what that pass folded in the last tg_run_plan */
} tg;

static inline void tg_init(tg *t) {
    memset(t, 0, sizeof *t);
    t->g.nodes = t->nodes;
    t->g.cap = TG_MAX_NODES;
    t->p.g = &t->g;
    t->p.order = t->order;
}

static inline size_t tg_bytes(const loom_node *n) {
    size_t e = 1;
    for (int d = 0; d < n->ndim; d++) e *= (size_t)n->ne[d];
    return e * loom_dtype_size(n->type);
}

/* Append a node; sources as varargs (n_src of them). */
static inline int tg_node(tg *t, loom_op op, loom_dtype type, int ndim, const int64_t *ne, int n_src,
                          ...) {
    if (t->g.n >= TG_MAX_NODES) return -1;
    int i = t->g.n++;
    loom_node *n = &t->nodes[i];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->type = type;
    n->ndim = ndim;
    for (int d = 0; d < ndim; d++) n->ne[d] = ne[d];
    for (int k = 0; k < LOOM_MAX_SRC; k++) n->src[k] = -1;
    va_list ap;
    va_start(ap, n_src);
    for (int k = 0; k < n_src; k++) n->src[k] = va_arg(ap, int);
    va_end(ap);
    n->n_src = n_src;
    n->group = -1;
    n->replaced_by = -1;
    n->alias = -1;
    n->state = -1;
    snprintf(n->name, sizeof n->name, "n%d", i);
    if (op == LOOM_OP_WEIGHT) {
        n->storage = LOOM_STORE_WEIGHT;
    } else if (op == LOOM_OP_STATE) {
        n->storage = LOOM_STORE_STATE;
    } else {
        n->storage = LOOM_STORE_ARENA;
        n->offset = t->arena_size;
        t->arena_size += (tg_bytes(n) + 63) & ~(size_t)63;
        if (op != LOOM_OP_INPUT) t->order[t->p.n_order++] = i;
    }
    n->nbytes = tg_bytes(n);
    return i;
}

static inline int tg_input(tg *t, loom_dtype type, int ndim, const int64_t *ne, const void *data) {
    int i = tg_node(t, LOOM_OP_INPUT, type, ndim, ne, 0);
    t->input_data[i] = data;
    return i;
}

static inline int tg_weight(tg *t, loom_dtype type, int ndim, const int64_t *ne, const void *data) {
    int i = tg_node(t, LOOM_OP_WEIGHT, type, ndim, ne, 0);
    loom_weight *w = &t->w[t->nw];
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "w%d", t->nw);
    w->type = type;
    w->ndim = ndim;
    for (int d = 0; d < ndim; d++) w->ne[d] = ne[d];
    w->data = data;
    w->nbytes = tg_bytes(&t->nodes[i]);
    w->id = t->nw++;
    t->nodes[i].weight = w;
    return i;
}

/* A STATE [rows, cols] f32 leaf whose initial contents are `data` (copied in before each run). */
static inline int tg_state(tg *t, int64_t rows, int64_t cols, float *data) {
    int64_t ne[2] = {rows, cols};
    int i = tg_node(t, LOOM_OP_STATE, LOOM_F32, 2, ne, 0);
    t->nodes[i].state = t->n_state;
    t->state_data[t->n_state] = data;
    t->state_bytes[t->n_state] = (size_t)(rows * cols) * sizeof(float);
    t->n_state++;
    t->g.n_state = t->n_state;
    return i;
}

/* Make node i write over its first source (LOOM_NODE_INPLACE): it shares the source's storage. */
static inline void tg_inplace(tg *t, int i) {
    loom_node *n = &t->nodes[i], *s = &t->nodes[n->src[0]];
    n->flags |= LOOM_NODE_INPLACE;
    n->storage = s->storage;
    n->offset = s->offset;
    n->state = s->state;
    n->alias = n->src[0];
}

/* Results of one run. */
typedef struct tg_run_out {
    void *arena;           /* arena_size bytes (malloc'd) */
    float *state[TG_MAX_LEAVES];
    int rc;                /* compute_node's result (first failure) */
    char err[256];
} tg_run_out;

static inline void tg_out_free(tg_run_out *o) {
    free(o->arena);
    for (int s = 0; s < TG_MAX_LEAVES; s++) free(o->state[s]);
    memset(o, 0, sizeof *o);
}

/* A graph's buffers on one backend and the context that runs it: what tg_run and the Vulkan
 * tests' compute_plan runs (tg_run_plan) share, so both load and read back the same way. */
typedef struct tg_bufs {
    loom_buffer *arena, *wb[TG_MAX_LEAVES], *sb[TG_MAX_LEAVES];
    loom_exec_ctx x;
} tg_bufs;

/* Allocate t's buffers on be: the arena filled with a NaN pattern (so a kernel that reads storage
 * it should not is likely to show it), then the INPUT data; weights wrapped; STATE copied in.
 * Clears o. Returns -1 when the arena cannot be allocated (nothing to free then). */
static inline int tg_upload(tg *t, loom_backend *be, tg_bufs *b, tg_run_out *o) {
    memset(o, 0, sizeof *o);
    memset(b, 0, sizeof *b);
    const loom_backend_ops *ops = be->ops;
    b->arena = ops->buf_alloc(be, t->arena_size ? t->arena_size : 64);
    if (!b->arena) return -1;
    {
        size_t nf = t->arena_size / 4;
        float *tmp = malloc(t->arena_size + 4);
        uint32_t qnan = 0x7fc00000u;
        for (size_t k = 0; k < nf; k++) memcpy(&tmp[k], &qnan, 4);
        ops->buf_write(be, b->arena, 0, tmp, nf * 4);
        free(tmp);
    }
    for (int i = 0; i < t->g.n; i++)
        if (t->nodes[i].op == LOOM_OP_INPUT && t->input_data[i])
            ops->buf_write(be, b->arena, t->nodes[i].offset, t->input_data[i], tg_bytes(&t->nodes[i]));
    for (int k = 0; k < t->nw; k++) b->wb[k] = ops->buf_from_host(be, t->w[k].data, t->w[k].nbytes);
    for (int s = 0; s < t->n_state; s++) {
        b->sb[s] = ops->buf_alloc(be, t->state_bytes[s]);
        ops->buf_write(be, b->sb[s], 0, t->state_data[s], t->state_bytes[s]);
    }
    b->x = (loom_exec_ctx){.plan = &t->p, .arena = b->arena, .state = b->sb, .n_state = t->n_state,
                           .weights = b->wb, .n_weights = t->nw};
    return 0;
}

/* Read the arena and the states back into o, free b's buffers; returns o->rc. */
static inline int tg_download(tg *t, loom_backend *be, tg_bufs *b, tg_run_out *o) {
    const loom_backend_ops *ops = be->ops;
    o->arena = malloc(t->arena_size + 4);
    ops->buf_read(be, b->arena, 0, o->arena, t->arena_size);
    for (int s = 0; s < t->n_state; s++) {
        o->state[s] = malloc(t->state_bytes[s]);
        ops->buf_read(be, b->sb[s], 0, o->state[s], t->state_bytes[s]);
        ops->buf_free(be, b->sb[s]);
    }
    for (int k = 0; k < t->nw; k++) ops->buf_free(be, b->wb[k]);
    ops->buf_free(be, b->arena);
    return o->rc;
}

/* Run every planned node on be (compute_node, one at a time). */
static inline int tg_run(tg *t, loom_backend *be, tg_run_out *o) {
    tg_bufs b;
    if (tg_upload(t, be, &b, o) < 0) return -1;
    const loom_backend_ops *ops = be->ops;
    for (int k = 0; k < t->p.n_order; k++) {
        int i = t->p.order[k];
        if (!ops->supports(be, &t->g, i)) {
            o->rc = -2;
            snprintf(o->err, sizeof o->err, "node %d (%s) not supported", i, loom_op_name(t->nodes[i].op));
            break;
        }
        if (ops->compute_node(be, &b.x, i) < 0) {
            o->rc = -1;
            snprintf(o->err, sizeof o->err, "%s", loom_last_error());
            break;
        }
    }
    return tg_download(t, be, &b, o);
}

/* Run t on be through compute_plan (plan_prepare, then `steps` replays; before replay k > 0 the
 * INPUT nodes listed in upd get new data), timing nodes into node_time when not NULL. Same output
 * layout as tg_run. The Vulkan op and quant tests' second path. */
typedef struct tg_update {
    int node;
    const void *data[4]; /* data for replays 1..3 */
} tg_update;

static inline int tg_run_plan(tg *t, loom_backend *be, tg_run_out *o, int steps, const tg_update *upd, int n_upd,
                              double *node_time) {
    tg_bufs b;
    if (tg_upload(t, be, &b, o) < 0) return -1;
    const loom_backend_ops *ops = be->ops;
    b.x.node_time = node_time;
    int run_order[TG_MAX_NODES], n_all = t->p.n_order;
    t->n_folded = 0;
    for (int i = 0; i < t->g.n; i++) t->nodes[i].flags &= ~(uint32_t)LOOM_NODE_FOLDED;
    if (t->backend_pass && ops->plan_pass) { /* fold, then run the order without the folded nodes */
        const loom_plan_pass *pass = ops->plan_pass(be);
        t->n_folded = pass->run(pass, &t->g, t->order, n_all);
        free(t->g.log);
        t->g.log = NULL;
        t->g.log_len = t->g.log_cap = 0;
        if (t->n_folded < 0) {
            o->rc = -1;
            snprintf(o->err, sizeof o->err, "%s: %s", pass->name, loom_last_error());
        }
        t->p.n_order = 0;
        for (int k = 0; k < n_all; k++)
            if (!(t->nodes[t->order[k]].flags & LOOM_NODE_FOLDED)) run_order[t->p.n_order++] = t->order[k];
        t->p.order = run_order;
        t->p.n_folded = t->n_folded > 0 ? t->n_folded : 0;
        t->p.pass = pass->name;
    }
    for (int k = 0; k < t->p.n_order; k++)
        if (!ops->supports(be, &t->g, t->p.order[k])) {
            o->rc = -2;
            snprintf(o->err, sizeof o->err, "node %d not supported", t->p.order[k]);
        }
    if (o->rc == 0 && ops->plan_prepare(be, &t->p, &b.x) < 0) o->rc = -1;
    for (int step = 0; step < steps && o->rc == 0; step++) {
        for (int u = 0; u < n_upd && step > 0; u++)
            ops->buf_write(be, b.arena, t->nodes[upd[u].node].offset, upd[u].data[step - 1],
                           tg_bytes(&t->nodes[upd[u].node]));
        if (ops->compute_plan(be, &b.x) < 0) o->rc = -1;
    }
    if (o->rc == -1 && !o->err[0]) snprintf(o->err, sizeof o->err, "%s", loom_last_error());
    ops->plan_release(be, &t->p);
    t->p.order = t->order;
    t->p.n_order = n_all;
    t->p.n_folded = 0;
    t->p.pass = NULL;
    return tg_download(t, be, &b, o);
}

/* A VIEW of src (no storage of its own, not in the order) starting byte_off bytes into it. */
static inline int tg_view(tg *t, int src, int ndim, const int64_t *ne, size_t byte_off) {
    if (t->g.n >= TG_MAX_NODES) return -1;
    int i = t->g.n++;
    loom_node *n = &t->nodes[i];
    memset(n, 0, sizeof *n);
    n->op = LOOM_OP_VIEW;
    n->type = t->nodes[src].type;
    n->ndim = ndim;
    for (int d = 0; d < ndim; d++) n->ne[d] = ne[d];
    for (int k = 0; k < LOOM_MAX_SRC; k++) n->src[k] = -1;
    n->src[0] = src;
    n->n_src = 1;
    n->group = n->replaced_by = -1;
    n->alias = src;
    n->state = t->nodes[src].state;
    n->storage = t->nodes[src].storage;
    n->offset = t->nodes[src].offset + byte_off;
    n->view_offset = byte_off;
    n->nbytes = tg_bytes(n);
    snprintf(n->name, sizeof n->name, "view%d", i);
    return i;
}

/* ---- graphs several op tests build the same way ----------------------------------------------- */

/* EMBED of S ids (a new I32 input; its node in *ids_node when not NULL) from the [V, D] table node. */
static inline int tg_embed(tg *t, int table, const int32_t *ids, int64_t S, int *ids_node) {
    int ti = tg_input(t, LOOM_I32, 1, (int64_t[]){S}, ids);
    if (ids_node) *ids_node = ti;
    return tg_node(t, LOOM_OP_EMBED, LOOM_F32, 2, (int64_t[]){S, t->nodes[table].ne[1]}, 2, table, ti);
}

/* MATMUL of x [M, K] by the weight node w [N, K], plus a new [N] f32 bias weight when b != NULL. */
static inline int tg_matmul(tg *t, int x, int w, const float *b) {
    int64_t M = t->nodes[x].ne[0], N = t->nodes[w].ne[0];
    int tb = b ? tg_weight(t, LOOM_F32, 1, (int64_t[]){N}, b) : -1;
    return b ? tg_node(t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){M, N}, 3, x, w, tb)
             : tg_node(t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){M, N}, 2, x, w);
}

/* max over outputs of sum_k |x_mk w_nk| (+ |b_n| when b != NULL): what the MATMUL tolerances of the
 * Vulkan tests scale with (x [M, K], w [N, K]). */
static inline double tg_matmul_amax(const float *x, const float *w, const float *b, int64_t M, int64_t N,
                                    int64_t K) {
    double amax = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double a = b ? fabs(b[n]) : 0;
            for (int64_t k = 0; k < K; k++) a += fabs((double)x[m * K + k] * w[n * K + k]);
            if (a > amax) amax = a;
        }
    return amax;
}

/* The name a matmul case reports: "matmul TYPE M= N= K=[ +bias][ unaligned x]". */
static inline void tg_matmul_name(char *what, size_t size, loom_dtype wt, int64_t M, int64_t N, int64_t K,
                                  bool bias, int x_skip) {
    snprintf(what, size, "matmul %s M=%lld N=%lld K=%lld%s%s", loom_dtype_name(wt), (long long)M, (long long)N,
             (long long)K, bias ? " +bias" : "", x_skip ? " unaligned x" : "");
}

/* Pointer to node i's result within a run's output. */
static inline const float *tg_f32(const tg *t, const tg_run_out *o, int i) {
    const loom_node *n = &t->nodes[i];
    if (n->storage == LOOM_STORE_STATE) return o->state[n->state] + n->offset / 4;
    return (const float *)((const char *)o->arena + n->offset);
}

/* ---- random data ---------------------------------------------------------------------------- */
static uint64_t tg_rng = 0x9e3779b97f4a7c15ull;
static inline float tg_randf(void) { /* uniform in [-1, 1) */
    tg_rng ^= tg_rng << 13;
    tg_rng ^= tg_rng >> 7;
    tg_rng ^= tg_rng << 17;
    return (float)((tg_rng >> 40) * (1.0 / 8388608.0) - 1.0);
}
static inline void tg_fill(float *p, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) p[i] = tg_randf() * scale;
}

/* Random weights of type t: returns the encoded data (malloc'd) and the exact f32 values in ref. */
static inline void *tg_weights(loom_dtype t, size_t n, float scale, float *ref) {
    void *d = malloc(n * (t == LOOM_F32 ? 4 : 2) + 4);
    for (size_t i = 0; i < n; i++) {
        float v = tg_randf() * scale;
        if (t == LOOM_F32) {
            ((float *)d)[i] = v;
            ref[i] = v;
        } else if (t == LOOM_F16) {
            uint16_t h = loom_f32_to_f16(v);
            ((uint16_t *)d)[i] = h;
            ref[i] = loom_f16_to_f32(h);
        } else {
            uint16_t h = loom_f32_to_bf16(v);
            ((uint16_t *)d)[i] = h;
            ref[i] = loom_bf16_to_f32(h);
        }
    }
    return d;
}

#ifdef TG_VULKAN_BACKENDS /* defined by the Vulkan op tests, which include check.h first */
/* The Vulkan op tests' backends: the scalar CPU reference, and three Vulkan configurations of the
 * same device: as it is, without 16-bit storage or subgroups, and with weights split into 16 KiB
 * pieces (big_tiles: that one also takes coopmat's 128 x 128 tiles for every M >= 128). The third
 * also takes the other side of the speed knobs (docs/vulkan-backend.md): 4 loads in flight and
 * 4096 workgroups in the decode GEMV, and one query row per workgroup in prefill attention.
 * Returns 0, 77 (no Vulkan device: skip) or 1 (no CPU backend). */
static inline int tg_open_backends(loom_backend **cpu, loom_backend *vk[3], bool big_tiles) {
    loom_backend_opts co = {.n_threads = 1, .force_scalar = true, .device_index = -1};
    if (!(*cpu = loom_cpu_backend_new(&co))) {
        fprintf(stderr, "cpu backend: %s\n", loom_last_error());
        return 1;
    }
    loom_backend_opts vo = {.device_index = -1};
    if (!(vk[0] = loom_vulkan_backend_new(&vo))) {
        printf("SKIP: %s\n", loom_last_error());
        loom_backend_close(*cpu);
        return 77;
    }
    setenv("LOOM_VK_NO_F16S", "1", 1);
    setenv("LOOM_VK_NO_SUBGROUP", "1", 1);
    vk[1] = loom_vulkan_backend_new(&vo);
    CHECK(vk[1] != NULL, "second backend: %s", loom_last_error());
    unsetenv("LOOM_VK_NO_F16S");
    unsetenv("LOOM_VK_NO_SUBGROUP");
    setenv("LOOM_VK_MAX_WEIGHT_PIECE", "16384", 1);
    if (big_tiles) setenv("LOOM_VK_CM_BIG_TILES", "1", 1);
    setenv("LOOM_VK_GEMV_LOADS", "4", 1);
    setenv("LOOM_VK_GEMV_WGS", "4096", 1);
    setenv("LOOM_VK_NO_FA", "1", 1);
    vk[2] = loom_vulkan_backend_new(&vo);
    CHECK(vk[2] != NULL, "tiny-limits backend: %s", loom_last_error());
    unsetenv("LOOM_VK_MAX_WEIGHT_PIECE");
    unsetenv("LOOM_VK_CM_BIG_TILES");
    unsetenv("LOOM_VK_GEMV_LOADS");
    unsetenv("LOOM_VK_GEMV_WGS");
    unsetenv("LOOM_VK_NO_FA");
    return 0;
}

/* Which of the three backends run prefill matmuls on cooperative matrices (describe() says
 * "coopmat"): x, and quantised weights, are rounded to f16 there, so tests widen tolerances. */
static inline void tg_coopmat_flags(loom_backend *vk[3], const char *const names[3], bool flags[3]) {
    for (int v = 0; v < 3; v++) {
        char desc[256] = "";
        if (vk[v]) vk[v]->ops->describe(vk[v], desc, sizeof desc);
        flags[v] = strstr(desc, "coopmat") != NULL;
        /* LOOM_VK_CM2: the backend says "coopmat2 NAME" (VK_NV_cooperative_matrix2 prefill matmul) */
        if (flags[v]) printf("%s: cooperative-matrix matmul on%s\n", names[v], strstr(desc, "coopmat2") ? " (coopmat2)" : "");
    }
}

/* Whether a case compared by the Vulkan op tests (run_cmp in test_vulkan_ops / test_vulkan_quant)
 * runs on backend v through path `plan` (false: compute_node, true: compute_plan). The release build
 * runs both paths on every backend for every case. Under ASan (CHECK_UNDER_ASAN) each case takes one
 * path per backend, the first backend's alternating from case to case (vcase: the caller's case
 * counter) and the next backend's the other one, so every backend still records and runs both
 * paths, each on about half the cases (big and small, chunked and not): that build is for the host
 * code, and most of these tests' time there is lavapipe running the same shaders twice (the same
 * SPIR-V on the same driver as the release build's run, which compares both). LOOM_TEST_VK_BOTH=1
 * runs both paths under ASan too. Session 15: test_vulkan_ops 41.9 -> 28.0 ASan CPU-s,
 * test_vulkan_quant 38.3 -> 29.4 (docs/reliability.md "CI"). */
static inline bool tg_vk_path_on(unsigned vcase, int v, bool plan) {
    static int both = -1;
    if (!CHECK_UNDER_ASAN) return true;
    if (both < 0) both = getenv("LOOM_TEST_VK_BOTH") && atoi(getenv("LOOM_TEST_VK_BOTH")) > 0;
    return both || (((vcase + (unsigned)v) & 1u) != 0) == plan;
}

static inline void tg_close_backends(loom_backend *cpu, loom_backend *vk[3]) {
    for (int v = 0; v < 3; v++) loom_backend_close(vk[v]);
    loom_backend_close(cpu);
}

/* CPU seconds (user + sys) of this process so far, all its threads (lavapipe's too) */
static inline double tg_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* Run one test function and print how long it took, in wall and CPU seconds (the second barely moves
 * with a shared machine's load): the Vulkan tests' mains list their parts so, since lavapipe makes
 * some of them slow. LOOM_TEST_FILTER=text runs only the parts whose call has text in it (e.g.
 * "matmul": the GPU runs of backends/vulkan/bench/gpu_cm_variants.sh). */
#define TG_TIMED(call)                                                                             \
    do {                                                                                           \
        const char *tg_f_ = getenv("LOOM_TEST_FILTER");                                            \
        if (tg_f_ && *tg_f_ && !strstr(#call, tg_f_)) break;                                       \
        double tg_t0_ = loom_now(), tg_c0_ = tg_cpu_s();                                           \
        call;                                                                                      \
        printf("%-28s %6.2f s (%.2f CPU-s)\n", #call, loom_now() - tg_t0_, tg_cpu_s() - tg_c0_);   \
    } while (0)
#endif

#endif
