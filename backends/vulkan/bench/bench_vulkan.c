/* Vulkan kernel micro-benchmark on qwen2-0.5b shapes (a tool, not a test):
 *   gemv    decode matmuls (M = 1): kernel time from GPU timestamps, GB/s of weight bytes read.
 *           Each shape is run as R copies with distinct weight buffers (>= 256 MiB in all), so the
 *           weights do not sit in the GPU's L2 between runs.
 *   gemm    prefill matmuls (M = 512): GFLOP/s.
 *   attn    attention, decode (S = 1) over 1024 / 4096 cached rows, and a 512-token prefill.
 *   chain   400 dependent tiny dispatches: what one dispatch + barrier costs in a replayed plan.
 *   submit  wall time of compute_plan + sync for a one-dispatch plan (per-step host overhead).
 * Usage: bench_vulkan [--device N] [--reps R] [--quick]. Graphs go through the real builder and
 * planner and run through plan_prepare + compute_plan, as a session runs them.
 */
#include "backends/backend.h"
#include "graph/graph.h"
#include "graph/plan.h"
#include "core/qblock.h"
#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static loom_backend *be;
static int reps = 20;

typedef struct bench {
    loom_graph *g;
    loom_plan *p;
    loom_weight *w;
    int nw;
    loom_buffer **wb, *arena, *state[2];
    loom_exec_ctx x;
    double *nt;
} bench;

static uint64_t rng = 88172645463325252ull;
static float randf(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0) - 1.0);
}

/* n weights of a block-quantised type t, rows of K (loom_quant_row of small random values) */
static void *host_qweights(loom_dtype t, size_t n, int64_t K) {
    size_t rb = loom_dtype_nbytes(t, K);
    uint8_t *d = malloc(n / (size_t)K * rb);
    float *row = malloc(sizeof(float) * (size_t)K);
    for (size_t r = 0; d && row && r < n / (size_t)K; r++) {
        for (int64_t k = 0; k < K; k++) row[k] = randf() * 0.05f;
        loom_quant_row(t, row, d + r * rb, K);
    }
    free(row);
    return d;
}

static void *host_weights(loom_dtype t, size_t n) {
    size_t es = loom_dtype_size(t);
    uint8_t *d = malloc(n * es);
    if (!d) return NULL;
    for (size_t i = 0; i < n; i++) {
        float v = randf() * 0.05f;
        if (t == LOOM_F32) memcpy(d + 4 * i, &v, 4);
        else {
            uint16_t h = t == LOOM_F16 ? loom_f32_to_f16(v) : loom_f32_to_bf16(v);
            memcpy(d + 2 * i, &h, 2);
        }
    }
    return d;
}

static int bench_finish(bench *b) {
    b->p = loom_plan_build(b->g, NULL);
    b->g = NULL;
    if (!b->p) return -1;
    const loom_backend_ops *o = be->ops;
    b->wb = calloc((size_t)b->nw + 1, sizeof *b->wb);
    for (int i = 0; i < b->nw; i++) {
        b->wb[i] = o->buf_from_host(be, b->w[i].data, b->w[i].nbytes);
        if (!b->wb[i]) return -1;
    }
    b->arena = o->buf_alloc(be, b->p->arena_size ? b->p->arena_size : 64);
    if (!b->arena) return -1;
    /* inputs: random floats, positions/ids from the callers afterwards */
    size_t n = b->p->arena_size / 4;
    float *tmp = malloc(n * 4 + 4);
    for (size_t i = 0; i < n; i++) tmp[i] = randf();
    o->buf_write(be, b->arena, 0, tmp, n * 4);
    free(tmp);
    b->x = (loom_exec_ctx){.plan = b->p, .arena = b->arena, .state = b->state, .n_state = b->state[0] ? 2 : 0,
                           .weights = b->wb, .n_weights = b->nw};
    b->nt = calloc((size_t)b->p->g->n, sizeof *b->nt);
    return o->plan_prepare(be, b->p, &b->x);
}

static void bench_free(bench *b) {
    const loom_backend_ops *o = be->ops;
    if (b->p) {
        o->plan_release(be, b->p);
        loom_plan_free(b->p);
    }
    loom_graph_free(b->g);
    for (int i = 0; i < b->nw; i++) {
        if (b->wb && b->wb[i]) o->buf_free(be, b->wb[i]);
        free((void *)b->w[i].data);
    }
    o->buf_free(be, b->arena);
    for (int i = 0; i < 2; i++) o->buf_free(be, b->state[i]);
    free(b->wb);
    free(b->w);
    free(b->nt);
    memset(b, 0, sizeof *b);
}

/* Mean GPU seconds per run of the nodes of op `op` (summed), and mean wall seconds per run. */
static int bench_time(bench *b, loom_op op, double *gpu, double *wall) {
    const loom_backend_ops *o = be->ops;
    b->x.node_time = NULL;
    if (o->compute_plan(be, &b->x) < 0 || o->sync(be) < 0) return -1; /* warm up */
    double t0 = loom_now();
    for (int r = 0; r < reps; r++)
        if (o->compute_plan(be, &b->x) < 0 || o->sync(be) < 0) return -1;
    *wall = (loom_now() - t0) / reps;
    b->x.node_time = b->nt;
    double sum = 0;
    for (int r = 0; r < reps; r++) {
        if (o->compute_plan(be, &b->x) < 0) return -1;
        for (int k = 0; k < b->p->n_order; k++) {
            int i = b->p->order[k];
            if (b->p->g->nodes[i].op == op || op == LOOM_OP_COUNT) sum += b->nt[i];
        }
    }
    *gpu = sum / reps;
    return 0;
}

static void fail(const char *what) {
    fprintf(stderr, "bench_vulkan: %s: %s\n", what, loom_last_error());
    exit(1);
}

static void add_weights(bench *b, int count, loom_dtype t, int64_t N, int64_t K) {
    b->w = calloc((size_t)count, sizeof *b->w);
    void *data = NULL;
    for (int r = 0; r < count; r++) {
        loom_weight *w = &b->w[r];
        snprintf(w->name, sizeof w->name, "w%d", r);
        w->type = t;
        w->ndim = 2;
        w->ne[0] = N;
        w->ne[1] = K;
        w->nbytes = loom_dtype_nbytes(t, N * K);
        /* the same bytes in every copy: distinct device buffers are what defeats the L2 */
        if (r == 0)
            data = loom_dtype_is_quant(t) ? host_qweights(t, (size_t)(N * K), K) : host_weights(t, (size_t)(N * K));
        w->data = r == 0 ? data : memcpy(malloc(w->nbytes), data, w->nbytes);
        w->id = r;
    }
    b->nw = count;
}

static void bench_matmul(loom_dtype t, int64_t M, int64_t N, int64_t K, const char *label) {
    bench b = {0};
    size_t wbytes = loom_dtype_nbytes(t, N * K);
    int R = M <= 8 ? (int)((256u << 20) / wbytes) + 1 : 2;
    if (R > 32) R = 32;
    add_weights(&b, R, t, N, K);
    b.g = loom_graph_new();
    int x = loom_input(b.g, "x", LOOM_F32, 2, (int64_t[]){M, K});
    for (int r = 0; r < R; r++) {
        char name[32];
        snprintf(name, sizeof name, "y%d", r);
        loom_output(b.g, loom_matmul(b.g, x, loom_weight_node(b.g, &b.w[r])), name);
    }
    if (bench_finish(&b) < 0) fail(label);
    double gpu, wall;
    if (bench_time(&b, LOOM_OP_MATMUL, &gpu, &wall) < 0) fail(label);
    double per = gpu / R;
    if (M <= 8)
        printf("gemv  %-22s %-4s M=%lld N=%-6lld K=%-5lld %8.2f us  %7.1f GB/s  (%d copies, %.1f MiB each)\n", label,
               loom_dtype_name(t), (long long)M, (long long)N, (long long)K, per * 1e6, (double)wbytes / per / 1e9, R,
               (double)wbytes / 1048576.0);
    else
        printf("gemm  %-22s %-4s M=%-4lld N=%-6lld K=%-5lld %8.1f us  %7.1f GFLOP/s\n", label, loom_dtype_name(t),
               (long long)M, (long long)N, (long long)K, per * 1e6, 2.0 * M * N * K / per / 1e9);
    bench_free(&b);
}

static void bench_attention(int S, int C, int pos0) {
    const int H = 14, Hkv = 2, hd = 64, W = Hkv * hd;
    bench b = {0};
    b.g = loom_graph_new();
    int q = loom_input(b.g, "q", LOOM_F32, 2, (int64_t[]){S, H * hd});
    int pos = loom_input(b.g, "pos", LOOM_I32, 1, (int64_t[]){S});
    int kc = loom_state(b.g, 0, "k", C, W), vc = loom_state(b.g, 1, "v", C, W);
    loom_output(b.g, loom_attention(b.g, q, kc, vc, pos, H, Hkv, hd, 0.125f), "o");
    const loom_backend_ops *o = be->ops;
    for (int i = 0; i < 2; i++) {
        b.state[i] = o->buf_alloc(be, (size_t)C * W * 4);
        if (!b.state[i]) fail("attention state");
        float *tmp = malloc((size_t)C * W * 4);
        for (size_t k = 0; k < (size_t)C * W; k++) tmp[k] = randf();
        o->buf_write(be, b.state[i], 0, tmp, (size_t)C * W * 4);
        free(tmp);
    }
    if (bench_finish(&b) < 0) fail("attention");
    int32_t *pv = malloc(sizeof *pv * (size_t)S);
    for (int s = 0; s < S; s++) pv[s] = pos0 + s;
    const loom_graph *g = b.p->g;
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].op == LOOM_OP_INPUT && !strcmp(g->nodes[i].name, "pos"))
            o->buf_write(be, b.arena, g->nodes[i].offset, pv, sizeof *pv * (size_t)S);
    free(pv);
    double gpu, wall;
    if (bench_time(&b, LOOM_OP_ATTENTION, &gpu, &wall) < 0) fail("attention");
    double L = pos0 + S; /* keys of the last row */
    double bytes = 2.0 * L * W * 4;
    printf("attn  S=%-4d C=%-5d keys<=%-5.0f H=%d Hkv=%d hd=%d  %8.2f us  (%.1f GB/s of K+V)\n", S, C, L, H, Hkv,
           hd, gpu * 1e6, bytes / gpu / 1e9);
    bench_free(&b);
}

static void bench_chain(int n) {
    bench b = {0};
    b.g = loom_graph_new();
    int x = loom_input(b.g, "x", LOOM_F32, 2, (int64_t[]){1, 896});
    for (int i = 0; i < n; i++) x = loom_scale(b.g, x, 1.0f + 1e-6f * (float)i);
    loom_output(b.g, x, "y");
    if (bench_finish(&b) < 0) fail("chain");
    double gpu, wall;
    if (bench_time(&b, LOOM_OP_COUNT, &gpu, &wall) < 0) fail("chain");
    printf("chain %d dependent dispatches: %.2f us each on the GPU, %.2f us each wall (submit+wait included)\n",
           b.p->n_order, gpu / b.p->n_order * 1e6, wall / b.p->n_order * 1e6);
    bench_free(&b);
    b.g = loom_graph_new();
    x = loom_input(b.g, "x", LOOM_F32, 2, (int64_t[]){1, 896});
    loom_output(b.g, loom_scale(b.g, x, 2.0f), "y");
    if (bench_finish(&b) < 0) fail("submit");
    if (bench_time(&b, LOOM_OP_COUNT, &gpu, &wall) < 0) fail("submit");
    printf("submit one-dispatch plan: %.1f us wall per compute_plan + sync\n", wall * 1e6);
    bench_free(&b);
}

int main(int argc, char **argv) {
    loom_backend_opts o = {.device_index = -1};
    bool quick = false, quant = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) o.device_index = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--quant")) quant = true;
        else {
            fprintf(stderr, "usage: bench_vulkan [--device N] [--reps R] [--quick] [--quant]\n");
            return 2;
        }
    }
    be = loom_vulkan_backend_new(&o);
    if (!be) {
        printf("SKIP: %s\n", loom_last_error());
        return 77;
    }
    char desc[256];
    be->ops->describe(be, desc, sizeof desc);
    printf("device: %s, %d reps\n", desc, reps);
    { /* ~1 s of matmuls first, so the GPU has left its idle clocks before anything is timed */
        int saved = reps;
        reps = 200;
        printf("(warm-up) ");
        bench_matmul(LOOM_F16, 1, 151936, 896, "warm-up");
        reps = saved;
    }
    if (quant) { /* block-quantised weights; K = 896 is not whole 256-blocks: k-quants only for down */
        static const loom_dtype qs[4] = {LOOM_Q8_0, LOOM_Q4_0, LOOM_Q4_K, LOOM_Q6_K};
        for (int t = 0; t < 4; t++) {
            bool k256 = loom_dtype_blck(qs[t]) == 256;
            if (!k256) bench_matmul(qs[t], 1, 4864, 896, "gate/up 896->4864");
            bench_matmul(qs[t], 1, 896, 4864, "down 4864->896");
            if (!k256) bench_matmul(qs[t], 1, 151936, 896, "lm head 896->151936");
            if (!k256) bench_matmul(qs[t], 512, 4864, 896, "gate/up prefill");
            bench_matmul(qs[t], 512, 896, 4864, "down prefill");
        }
        loom_backend_close(be);
        return 0;
    }
    static const loom_dtype ts[3] = {LOOM_F16, LOOM_BF16, LOOM_F32};
    for (int t = 0; t < (quick ? 1 : 3); t++) {
        bench_matmul(ts[t], 1, 4864, 896, "gate/up 896->4864");
        bench_matmul(ts[t], 1, 896, 4864, "down 4864->896");
        bench_matmul(ts[t], 1, 151936, 896, "lm head 896->151936");
        if (!quick) {
            bench_matmul(ts[t], 1, 896, 896, "q/o 896->896");
            bench_matmul(ts[t], 1, 128, 896, "k/v 896->128");
        }
    }
    bench_matmul(LOOM_F16, 4, 4864, 896, "gate/up, 4 rows");
    for (int t = 0; t < (quick ? 1 : 3); t++) {
        bench_matmul(ts[t], 512, 4864, 896, "gate/up prefill");
        bench_matmul(ts[t], 512, 896, 4864, "down prefill");
    }
    bench_attention(1, 4096, 1023);
    bench_attention(1, 4096, 4095);
    bench_attention(512, 4096, 0);
    bench_chain(quick ? 50 : 400);
    loom_backend_close(be);
    return 0;
}
