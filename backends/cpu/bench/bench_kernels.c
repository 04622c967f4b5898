/* bench_kernels: time the CPU backend's MATMUL on qwen2-0.5b shapes (hidden 896, kv 128,
 * ffn 4864, vocab 151936, 24 layers) through compute_node, threads and all.
 *
 *   decode (M = 1): every layer's 7 matrices are distinct buffers (as in a real model, ~1 GB in
 *     f16), so weights stream from DRAM: reports GB/s per shape and the matmul time per token.
 *   prefill (M = 128, 512): GFLOP/s per shape and the matmul time of a 24-layer prompt.
 *
 * usage: bench_kernels [-t threads] [-i scalar|avx2|avx512|avx512bf16] [-w f16|bf16|f32|q8_0|q4_0|q4_k|q6_k|any quantised type] [-q] [-d | -p] [-c] [-f FILE [-o N] [-a hugepage|sequential|willneed|populate]]
 *   -q: quick (no LM head, 8 layers for decode, M = 128 only); -d: decode only; -p: prefill only
 *   -c: time with the thread's CPU clock (with -t 1: kernel speed on a busy machine)
 *   -s qwen2-0.5b|llama-1.1b|llama-7b: the model shape (default qwen2-0.5b; llama-1.1b: hidden 2048,
 *     kv 256, ffn 5632, vocab 32000, 22 layers, every K whole 256-blocks)
 * A benchmark, not a test: it is not registered with ctest.
 */
#include "backends/backend.h"
#include "backends/cpu/cpu.h"
#include "core/qblock.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* qwen2-0.5b's shape, or llama-7b's with -s llama-7b (hidden 4096, no GQA, ffn 11008, vocab 32000,
 * 32 layers: ~3.6 GB of decode weights in q4_0, so give -f a file that large) */
enum { MAX_LAYERS = 32 };
static int64_t HID = 896, KVD = 128, FFN = 4864, VOCAB = 151936;
static int LAYERS = 24;

/* the 7 matrices of a layer: {N, K} (set in main from the shape) */
static int64_t shapes[7][2];
static const char *const names[7] = {"attn_q", "attn_k", "attn_v", "attn_o", "ffn_gate", "ffn_up", "ffn_down"};

/* -c: time with this thread's CPU clock, which ignores time the scheduler gave to other
 * processes (meaningful with -t 1 only: for tuning kernels on a busy machine) */
static bool cpu_clock;
static double now(void) {
    if (!cpu_clock) return loom_now();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* -f FILE: carve the decode weights out of a read-only mapping of FILE (any bytes, e.g. a GGUF),
 * as a model loader does, instead of anonymous memory; -o N: offset them by N bytes */
static const char *map_file;
static size_t map_off;
static char *map_base;
static const char *map_advice; /* -a hugepage|sequential|willneed|populate: madvise/MAP_POPULATE on the mapping */
static size_t map_size, map_used;

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* The type a matrix of inner size K gets: k-quants fall back where K is not whole 256-blocks (as
 * loom quantize does; qwen2-0.5b's K = 896): Q4_K, Q2_K, Q3_K -> Q4_0, Q5_K -> Q5_1, IQ4_XS -> IQ4_NL,
 * Q6_K -> Q8_0. */
static loom_dtype fit(loom_dtype t, int64_t K) {
    if (!loom_dtype_is_quant(t) || K % loom_dtype_blck(t) == 0) return t;
    return t == LOOM_Q4_K ? LOOM_Q4_0 : t == LOOM_Q5_K ? LOOM_Q5_1 : t == LOOM_IQ4_XS ? LOOM_IQ4_NL
         : t == LOOM_Q2_K || t == LOOM_Q3_K ? LOOM_Q4_0 : LOOM_Q8_0;
}

/* Random weights with small magnitudes (bit patterns, fast to make). */
static void *make_weights(loom_dtype t, int64_t N, int64_t K) {
    size_t n = (size_t)(N * K), bytes = (size_t)N * loom_dtype_nbytes(t, K);
    if (map_base) {
        size_t at = (map_used + 63) / 64 * 64 + map_off;
        if (at + bytes > map_size) {
            fprintf(stderr, "bench: %s is too small for the weights\n", map_file);
            return NULL;
        }
        map_used = at + bytes;
        return map_base + at;
    }
    void *p = loom_malloc_aligned(bytes);
    if (!p) return NULL;
    if (loom_dtype_is_quant(t)) { /* 16 random rows quantised, repeated (fast to make) */
        size_t rb = loom_dtype_nbytes(t, K);
        float *row = malloc((size_t)K * sizeof *row);
        if (!row) return NULL;
        for (int64_t r = 0; r < N; r++) {
            if (r < 16) {
                for (int64_t k = 0; k < K; k++) row[k] = (float)((int)(rnd() & 0xffff) - 32768) * (1.0f / 262144);
                loom_quant_row(t, row, (char *)p + r * rb, K);
            } else {
                memcpy((char *)p + r * rb, (char *)p + (r % 16) * rb, rb);
            }
        }
        free(row);
        return p;
    }
    if (t == LOOM_F32) {
        float *f = p;
        for (size_t i = 0; i < n; i++) f[i] = (float)((int)(rnd() & 0xffff) - 32768) * (1.0f / 262144);
    } else {
        uint16_t *h = p;
        uint16_t keep = t == LOOM_F16 ? 0x83ff : 0x807f, set = t == LOOM_F16 ? 0x3000 : 0x3e00;
        for (size_t i = 0; i < n; i++) h[i] = (uint16_t)((rnd() & keep) | set);
    }
    return p;
}

/* A graph: inputs x896 [M, 896] and x4864 [M, 4864], weight nodes 0..7 (ids 0..7), one matmul
 * per weight into its own arena slot. Arena offsets are assigned here (no planner). */
typedef struct bench_graph {
    loom_graph g;
    loom_node nodes[32];
    loom_plan p;
    loom_weight w[8];
    int mm[8];
    loom_buffer *arena;
} bench_graph;

static int add_node(bench_graph *b, loom_op op, int64_t r, int64_t c, loom_dtype t, size_t *off) {
    int i = b->g.n++;
    loom_node *n = &b->nodes[i];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->type = t;
    n->ndim = 2;
    n->ne[0] = r;
    n->ne[1] = c;
    for (int k = 0; k < LOOM_MAX_SRC; k++) n->src[k] = -1;
    n->alias = n->replaced_by = n->group = n->state = -1;
    if (op == LOOM_OP_WEIGHT) {
        n->storage = LOOM_STORE_WEIGHT;
    } else {
        n->storage = LOOM_STORE_ARENA;
        n->offset = *off;
        *off += ((size_t)(r * c) * 4 + 63) & ~(size_t)63;
    }
    return i;
}

static int bench_graph_init(bench_graph *b, loom_backend *be, int64_t M, loom_dtype wt) {
    memset(b, 0, sizeof *b);
    b->g.nodes = b->nodes;
    b->g.cap = 32;
    b->p.g = &b->g;
    size_t off = 0;
    int x896 = add_node(b, LOOM_OP_INPUT, M, HID, LOOM_F32, &off);
    int x4864 = add_node(b, LOOM_OP_INPUT, M, FFN, LOOM_F32, &off);
    for (int j = 0; j < 8; j++) {
        int64_t N = j < 7 ? shapes[j][0] : VOCAB, K = j < 7 ? shapes[j][1] : HID;
        int wi = add_node(b, LOOM_OP_WEIGHT, N, K, fit(wt, K), &off);
        b->w[j].type = fit(wt, K);
        b->w[j].ndim = 2;
        b->w[j].ne[0] = N;
        b->w[j].ne[1] = K;
        b->w[j].id = j;
        b->nodes[wi].weight = &b->w[j];
        b->mm[j] = add_node(b, LOOM_OP_MATMUL, M, N, LOOM_F32, &off);
        b->nodes[b->mm[j]].n_src = 2;
        b->nodes[b->mm[j]].src[0] = K == HID ? x896 : x4864;
        b->nodes[b->mm[j]].src[1] = wi;
    }
    b->arena = be->ops->buf_alloc(be, off);
    if (!b->arena) return -1;
    /* inputs: small random values; the outputs' contents do not matter */
    float *tmp = malloc((size_t)(M * FFN) * 4);
    if (!tmp) return -1;
    for (int64_t i = 0; i < M * FFN; i++) tmp[i] = (float)((int)(rnd() & 0xff) - 128) / 128.0f;
    be->ops->buf_write(be, b->arena, b->nodes[x896].offset, tmp, (size_t)(M * HID) * 4);
    be->ops->buf_write(be, b->arena, b->nodes[x4864].offset, tmp, (size_t)(M * FFN) * 4);
    free(tmp);
    return 0;
}

/* Attention of a qwen2-0.5b layer (14 heads sharing 2 kv heads of 64 dims) for S query rows at
 * positions P-S+1..P over a cache of C rows. Returns seconds (best of a few) or -1. */
static double bench_attention(loom_backend *be, int64_t S, int64_t P, int64_t C) {
    loom_graph g = {0};
    loom_node nodes[5];
    loom_plan p = {.g = &g};
    g.nodes = nodes;
    g.n = 5;
    size_t off = 0;
    const int64_t H = 14, HKV = 2, HD = 64;
    int64_t cols[5] = {H * HD, HKV * HD, HKV * HD, 1, H * HD}, rows[5] = {S, C, C, S, S};
    loom_op ops[5] = {LOOM_OP_INPUT, LOOM_OP_INPUT, LOOM_OP_INPUT, LOOM_OP_INPUT, LOOM_OP_ATTENTION};
    for (int i = 0; i < 5; i++) {
        loom_node *n = &nodes[i];
        memset(n, 0, sizeof *n);
        n->op = ops[i];
        n->type = i == 3 ? LOOM_I32 : LOOM_F32;
        n->ndim = 2;
        n->ne[0] = rows[i];
        n->ne[1] = cols[i];
        for (int k = 0; k < LOOM_MAX_SRC; k++) n->src[k] = i == 4 ? k : -1;
        n->n_src = i == 4 ? 4 : 0;
        n->storage = LOOM_STORE_ARENA;
        n->offset = off;
        off += ((size_t)(rows[i] * cols[i]) * 4 + 63) & ~(size_t)63;
    }
    nodes[4].ip[0] = (int)H, nodes[4].ip[1] = (int)HKV, nodes[4].ip[2] = (int)HD;
    nodes[4].fp[0] = 0.125f;
    loom_buffer *arena = be->ops->buf_alloc(be, off);
    float *tmp = malloc(off);
    if (!arena || !tmp) return -1;
    for (size_t i = 0; i < off / 4; i++) tmp[i] = (float)((int)(rnd() & 0xff) - 128) / 256.0f;
    int32_t *pos = (int32_t *)((char *)tmp + nodes[3].offset);
    for (int64_t s = 0; s < S; s++) pos[s] = (int32_t)(P - S + 1 + s);
    be->ops->buf_write(be, arena, 0, tmp, off);
    free(tmp);
    loom_exec_ctx x = {.plan = &p, .arena = arena};
    double best = 1e30;
    /* decode reads this layer's cache from DRAM: evict it between runs */
    size_t junk_n = S == 1 ? (size_t)64 << 20 : 0;
    char *junk = junk_n ? malloc(junk_n) : NULL;
    for (int r = 0; r < (S == 1 ? 20 : 5); r++) {
        if (junk) memset(junk, r, junk_n);
        double a = now();
        if (be->ops->compute_node(be, &x, 4) < 0) {
            fprintf(stderr, "bench: %s\n", loom_last_error());
            return -1;
        }
        double d = now() - a;
        if (d < best) best = d;
    }
    be->ops->buf_free(be, arena);
    free(junk);
    return best;
}

static int run_mm(loom_backend *be, bench_graph *b, loom_buffer **wbufs, int j) {
    loom_exec_ctx x = {.plan = &b->p, .arena = b->arena, .weights = wbufs, .n_weights = 8};
    if (be->ops->compute_node(be, &x, b->mm[j]) < 0) {
        fprintf(stderr, "bench: %s\n", loom_last_error());
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    loom_backend_opts o = {0};
    const char *isa = NULL;
    loom_dtype wt = LOOM_F16;
    bool quick = false, do_decode = true, do_prefill = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) o.n_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-i") && i + 1 < argc) isa = argv[++i];
        else if (!strcmp(argv[i], "-w") && i + 1 < argc) {
            const char *s = argv[++i];
            wt = !strcmp(s, "f32") ? LOOM_F32 : !strcmp(s, "bf16") ? LOOM_BF16 : !strcmp(s, "q8_0") ? LOOM_Q8_0
                 : !strcmp(s, "q4_0") ? LOOM_Q4_0 : !strcmp(s, "q4_k") ? LOOM_Q4_K : !strcmp(s, "q6_k") ? LOOM_Q6_K
                 : loom_dtype_from_name(s) != LOOM_DTYPE_COUNT ? loom_dtype_from_name(s) : LOOM_F16;
        } else if (!strcmp(argv[i], "-q")) quick = true;
        else if (!strcmp(argv[i], "-d")) do_prefill = false;
        else if (!strcmp(argv[i], "-c")) cpu_clock = true;
        else if (!strcmp(argv[i], "-f") && i + 1 < argc) map_file = argv[++i];
        else if (!strcmp(argv[i], "-o") && i + 1 < argc) map_off = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "-a") && i + 1 < argc) map_advice = argv[++i];
        else if (!strcmp(argv[i], "-p")) do_decode = false;
        else if (!strcmp(argv[i], "-s") && i + 1 < argc && !strcmp(argv[i + 1], "llama-7b")) {
            HID = 4096, KVD = 4096, FFN = 11008, VOCAB = 32000, LAYERS = 32;
            i++;
        } else if (!strcmp(argv[i], "-s") && i + 1 < argc && !strcmp(argv[i + 1], "llama-1.1b")) {
            HID = 2048, KVD = 256, FFN = 5632, VOCAB = 32000, LAYERS = 22;
            i++;
        } else if (!strcmp(argv[i], "-s") && i + 1 < argc && !strcmp(argv[i + 1], "qwen2-0.5b")) i++;
        else {
            fprintf(stderr, "usage: %s [-t threads] [-i scalar|avx2|avx512|avx512bf16] [-w f16|bf16|f32|q8_0|q4_0|q4_k|q6_k|any quantised type] [-q] [-d | -p] [-c] [-f FILE [-o N] [-a hugepage|sequential|willneed|populate]] [-s qwen2-0.5b|llama-1.1b|llama-7b]\n", argv[0]);
            return 2;
        }
    }
    const int64_t sh[7][2] = {{HID, HID}, {KVD, HID}, {KVD, HID}, {HID, HID}, {FFN, HID}, {FFN, HID}, {HID, FFN}};
    memcpy(shapes, sh, sizeof sh);
    if (map_file) {
        int fd = open(map_file, O_RDONLY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
            fprintf(stderr, "bench: cannot open %s\n", map_file);
            return 1;
        }
        map_size = (size_t)st.st_size;
        bool populate = map_advice && !strcmp(map_advice, "populate");
        map_base = mmap(NULL, map_size, PROT_READ, MAP_PRIVATE | (populate ? MAP_POPULATE : 0), fd, 0);
        close(fd);
        if (map_base == MAP_FAILED) {
            fprintf(stderr, "bench: cannot map %s\n", map_file);
            return 1;
        }
        int adv = !map_advice || populate ? -1
                  : !strcmp(map_advice, "hugepage") ? MADV_HUGEPAGE
                  : !strcmp(map_advice, "sequential") ? MADV_SEQUENTIAL
                  : !strcmp(map_advice, "willneed") ? MADV_WILLNEED : -2;
        if (adv == -2) {
            fprintf(stderr, "bench: unknown advice %s\n", map_advice);
            return 2;
        }
        if (adv >= 0 && madvise(map_base, map_size, adv) != 0) perror("bench: madvise");
    }
    loom_backend *be = loom_cpu_backend_new_isa(&o, isa);
    if (!be) {
        fprintf(stderr, "bench: %s\n", loom_last_error());
        return 1;
    }
    char desc[128];
    be->ops->describe(be, desc, sizeof desc);
    printf("%s, weights %s\n", desc, loom_dtype_name(wt));

    /* ---- decode -------------------------------------------------------------------------- */
    int layers = !do_decode ? 1 : quick ? 8 : LAYERS;
    loom_buffer *wb[MAX_LAYERS][8] = {{0}};
    void *wmem[MAX_LAYERS][8] = {{0}};
    for (int l = 0; l < layers; l++)
        for (int j = 0; j < 8; j++) {
            if (j == 7 && (l > 0 || quick)) continue; /* one LM head */
            int64_t N = j < 7 ? shapes[j][0] : VOCAB, K = j < 7 ? shapes[j][1] : HID;
            wmem[l][j] = make_weights(fit(wt, K), N, K);
            if (!wmem[l][j]) return 1;
            wb[l][j] = be->ops->buf_from_host(be, wmem[l][j], (size_t)N * loom_dtype_nbytes(fit(wt, K), K));
        }
    for (int l = 1; l < layers; l++) wb[l][7] = wb[0][7];
    bench_graph bg;
    if (bench_graph_init(&bg, be, 1, wt) < 0) return 1;
    double t_shape[8] = {0}, best_total = 1e30;
    const int reps = quick ? 3 : 5;
    for (int r = 0; do_decode && r < reps + 1; r++) { /* the first pass warms up (page faults) */
        double ts[8] = {0}, t0 = now();
        for (int l = 0; l < layers; l++)
            for (int j = 0; j < 7; j++) {
                double a = now();
                if (run_mm(be, &bg, wb[l], j) < 0) return 1;
                ts[j] += now() - a;
            }
        if (!quick) {
            double a = now();
            if (run_mm(be, &bg, wb[0], 7) < 0) return 1;
            ts[7] += now() - a;
        }
        double total = now() - t0;
        if (r > 0 && total < best_total) {
            best_total = total;
            memcpy(t_shape, ts, sizeof ts);
        }
    }
    if (do_decode) printf("\ndecode GEMV (M = 1), %d layers, distinct weights per layer (best of %d):\n", layers, reps);
    double bytes_total = 0;
    for (int j = 0; do_decode && j < 8; j++) {
        if (j == 7 && quick) continue;
        int64_t N = j < 7 ? shapes[j][0] : VOCAB, K = j < 7 ? shapes[j][1] : HID;
        double bytes = (double)N * (double)loom_dtype_nbytes(fit(wt, K), K) * (j < 7 ? layers : 1);
        bytes_total += bytes;
        printf("  %-9s N=%-6lld K=%-5lld %8.3f ms  %6.1f GB/s\n", j < 7 ? names[j] : "lm_head",
               (long long)N, (long long)K, t_shape[j] * 1e3, bytes / t_shape[j] / 1e9);
    }
    for (int64_t P = 127; do_decode && P < 4096; P *= 4) {
        double ta = bench_attention(be, 1, P, 4096);
        if (ta < 0) return 1;
        printf("  attention (14 heads over 2, hd 64) at position %lld: %.1f us, %.1f GB/s of K/V\n",
               (long long)P, ta * 1e6, 2.0 * (P + 1) * 128 * 4 / ta / 1e9);
    }
    if (do_decode)
        printf("  all matmuls of a token: %.2f ms, %.1f GB/s -> %.1f tokens/s (matmuls only%s)\n",
           best_total * 1e3, bytes_total / best_total / 1e9, 1.0 / best_total,
           quick ? ", 8 layers, no LM head" : "");
    be->ops->buf_free(be, bg.arena);

    /* ---- prefill ------------------------------------------------------------------------- */
    static const int64_t Ms[2] = {128, 512};
    for (int mi = 0; do_prefill && mi < (quick ? 1 : 2); mi++) {
        int64_t M = Ms[mi];
        if (bench_graph_init(&bg, be, M, wt) < 0) return 1;
        printf("\nprefill GEMM (M = %lld):\n", (long long)M);
        double layer_time = 0;
        for (int j = 0; j < 7; j++) {
            int64_t N = shapes[j][0], K = shapes[j][1];
            if (run_mm(be, &bg, wb[0], j) < 0) return 1; /* warm */
            double best = 1e30, spent = 0;
            for (int r = 0; r < 20 && spent < 0.3; r++) {
                double a = now();
                if (run_mm(be, &bg, wb[0], j) < 0) return 1;
                double d = now() - a;
                spent += d;
                if (d < best) best = d;
            }
            layer_time += best;
            printf("  %-9s N=%-6lld K=%-5lld %8.3f ms  %6.1f GFLOP/s\n", names[j], (long long)N,
                   (long long)K, best * 1e3, 2.0 * M * N * K / best / 1e9);
        }
        double flops = 0;
        for (int j = 0; j < 7; j++) flops += 2.0 * M * shapes[j][0] * shapes[j][1];
        printf("  a layer: %.2f ms, %.1f GFLOP/s -> %d layers of %lld tokens: %.1f tokens/s (matmuls only)\n",
               layer_time * 1e3, flops / layer_time / 1e9, LAYERS, (long long)M,
               M / (layer_time * LAYERS));
        be->ops->buf_free(be, bg.arena);
        double ta = bench_attention(be, M, M - 1, M);
        if (ta < 0) return 1;
        double fl = 4.0 * 14 * 64 * (double)M * (M + 1) / 2;
        printf("  attention (14 heads over 2, hd 64, causal, %lld rows): %.3f ms, %.1f GFLOP/s\n",
               (long long)M, ta * 1e3, fl / ta / 1e9);
    }

    for (int l = 0; l < layers; l++)
        for (int j = 0; j < 8; j++) {
            if (j < 7 || l == 0) be->ops->buf_free(be, wb[l][j]);
            if (!map_base) loom_free_aligned(wmem[l][j]);
        }
    loom_backend_close(be);
    return 0;
}
