/* Quantised MATMUL: the portable rows kernel, the flavour choice, and the driver that quantises x
 * and splits the output columns over the thread pool (see quant.h). */
#include "backends/cpu/cpu_quant.h"

#include "core/util.h"

#include <stdlib.h>
#include <string.h>

void cpu_qdot_scalar(loom_dtype t, const void *w, const loom_q8x *const *x, int nr, int64_t K, float *out) {
    for (int r = 0; r < nr; r++) out[r] = loom_quant_dot_ref(t, w, x[r], K);
}

static bool has_vnni(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni");
#else
    return false;
#endif
}

cpu_qdot_fn cpu_qdot_for(const char *isa) {
    if (!strncmp(isa, "avx512", 6) && has_vnni()) return cpu_qdot_avx512;
    if (!strncmp(isa, "avx", 3) && cpu_has_avx2()) return cpu_qdot_avx2;
    return cpu_qdot_scalar;
}

const char *cpu_qdot_name(cpu_qdot_fn f) {
    return f == cpu_qdot_avx512 ? "avx512vnni" : f == cpu_qdot_avx2 ? "avx2" : "scalar";
}

cpu_qgemv_later_fn cpu_qgemv_later_for(cpu_qdot_fn dot) {
    return dot == cpu_qdot_avx512 ? cpu_qgemv_later_avx512 : dot == cpu_qdot_avx2 ? cpu_qgemv_later_avx2 : NULL;
}

cpu_dequant_fn cpu_dequant_row_for(cpu_qdot_fn dot, loom_dtype t) {
    static _Atomic int env = INT_MIN;
    if ((t != LOOM_IQ4_NL && t != LOOM_IQ4_XS) || (dot != cpu_qdot_avx2 && dot != cpu_qdot_avx512)) return NULL;
    return cpu_env_int_once(&env, "LOOM_CPU_IQ4AVX2", 1) != 0 ? cpu_dequant_iq4_avx2 : NULL;
}

/* The later types' decode GEMV and panel GEMM take K whole blocks of the type (whole super-blocks for
 * the k-quants). LOOM_CPU_QLATER=0 switches both off (the rows kernel and the f32 prefill, as before
 * them: A/B timing). */
static bool later_on(void) {
    static _Atomic int env = INT_MIN;
    return cpu_env_int_once(&env, "LOOM_CPU_QLATER", 1) != 0;
}
static bool qgemv_later_ok(loom_dtype t, int64_t K) {
    return loom_dtype_is_quant(t) && !cpu_qtype_native(t) && K > 0 && K % loom_dtype_blck(t) == 0 && later_on();
}

/* Q4_K / Q6_K decode without the 512-bit GEMV (no AVX512_VBMI: AVX2 machines) through the later
 * types' GEMV too (quant_later.h; 2026-12-06). LOOM_CPU_KLATER=0 (or LOOM_CPU_QLATER=0) sends them
 * back to the rows kernel, for A/B timing. */
static bool klater_ok(loom_dtype t, int64_t K) {
    static _Atomic int env = INT_MIN;
    return (t == LOOM_Q4_K || t == LOOM_Q6_K) && K > 0 && K % 256 == 0 && later_on() &&
           cpu_env_int_once(&env, "LOOM_CPU_KLATER", 1) != 0;
}

bool cpu_qgemm_later_ok(cpu_qdot_fn dot, loom_dtype t, int64_t K) {
    /* Q4_K too: its pair tile ran ffn_down (K = 4864) at ~110 GFLOP/s a core, the panel at ~500
     * (LOOM_CPU_Q4K_PANEL=0: the pair tile again) */
    static _Atomic int q4k_env = INT_MIN;
    if (t == LOOM_Q4_K)
        return dot == cpu_qdot_avx512 && K > 0 && K % 256 == 0 && cpu_env_int_once(&q4k_env, "LOOM_CPU_Q4K_PANEL", 1) != 0;
    return dot == cpu_qdot_avx512 && qgemv_later_ok(t, K);
}

/* Q4_K / Q6_K prefill on AVX2 (no VNNI panel): the f32 GEMM on rows dequantised per chunk
 * (cpu_backend.c matmul_dequant) instead of the rows kernel's pair tile, which ran llama-1.1b's
 * q4_k_m pp128 at 0.44x the peer on the AVX2 box (session 12). LOOM_CPU_KDEQ=0: the pair tile. */
bool cpu_kdequant_ok(cpu_qdot_fn dot, loom_dtype t, int64_t K) {
    static _Atomic int env = INT_MIN;
    return dot == cpu_qdot_avx2 && (t == LOOM_Q4_K || t == LOOM_Q6_K) && K > 0 && K % 256 == 0 &&
           cpu_env_int_once(&env, "LOOM_CPU_KDEQ", 1) != 0;
}

bool cpu_q01_avx2_ok(cpu_qdot_fn dot, loom_dtype t, int64_t K) {
    static _Atomic int env = INT_MIN;
    return dot == cpu_qdot_avx2 && (t == LOOM_Q8_0 || t == LOOM_Q4_0) && K > 0 && K % 32 == 0 &&
           cpu_env_int_once(&env, "LOOM_CPU_QAVX2", 1) != 0;
}

bool cpu_qgemm_iq4_ok(cpu_qdot_fn dot, loom_dtype t, int64_t K, int64_t M) {
    static _Atomic int env = INT_MIN;
    return dot == cpu_qdot_avx2 && M > CPU_QDEQUANT_MIN_ROWS && qgemv_later_ok(t, K) &&
           (t == LOOM_IQ4_NL || t == LOOM_IQ4_XS) && cpu_dequant_row_for(dot, t) &&
           cpu_env_int_once(&env, "LOOM_CPU_IQ4GEMM", 1) != 0;
}

bool cpu_qgemm_k_ok(cpu_qdot_fn dot, loom_dtype t, int64_t K, int64_t M) {
    static _Atomic int env = INT_MIN, env32 = INT_MIN;
    if (dot != cpu_qdot_avx2 || M <= CPU_QDEQUANT_MIN_ROWS || K <= 0) return false;
    if (t == LOOM_Q4_1 || t == LOOM_Q5_0 || t == LOOM_Q5_1) /* (LOOM_CPU_Q32GEMM=0: the f32 path again) */
        return K % 32 == 0 && cpu_env_int_once(&env32, "LOOM_CPU_Q32GEMM", 1) != 0;
    return K % 256 == 0 && (t == LOOM_Q2_K || t == LOOM_Q3_K || t == LOOM_Q4_K || t == LOOM_Q5_K || t == LOOM_Q6_K) &&
           cpu_env_int_once(&env, "LOOM_CPU_KGEMM", 1) != 0;
}

bool cpu_qgemm_i16_tile(loom_dtype t) {
    static _Atomic int env = INT_MIN; /* LOOM_CPU_KGEMM=2: the k-quants through the int16 tile */
    if (t == LOOM_IQ4_NL || t == LOOM_IQ4_XS) return true;
    return loom_dtype_blck(t) == 256 && cpu_env_int_once(&env, "LOOM_CPU_KGEMM", 1) == 2;
}

typedef struct qmm_task {
    cpu_qdot_fn dot;
    cpu_qgemv_later_fn later; /* M = 1 of a later type through its GEMV, or NULL */
    bool later_gemm;          /* M > 1 of a later type through cpu_qgemm_later_avx512 */
    bool q01_gemm;            /* M > 1 of Q8_0 / Q4_0 through cpu_qgemm_q01_avx2 (xp its rows) */
    bool i16_gemm;            /* IQ4_* / k-quant / Q4_1 / Q5_x prefill through cpu_qgemm_i16_avx2 */
    bool x16_prep;            /* ... by its int16 tile, reading x16 (cpu_qgemm_i16_tile; else the
                               * 8-bit tile, which reads xq only) */
    int16_t *x16;             /* then x's codes as int16, else NULL */
    _Atomic int failed;       /* a chunk could not allocate its panel */
    int pf_rows;
    float *y;
    const float *x;
    loom_q8x *xq;
    char *xp; /* prepared rows for the tiled GEMM, or NULL */
    bool gemv; /* M = 1 through cpu_qgemv_avx512 */
    size_t xp_bytes;
    const char *w;
    loom_dtype wt;
    size_t row_bytes;
    const float *bias;
    int64_t M, K, N, chunk, xblocks;
} qmm_task;

/* Quantise (and prepare, for the tiled GEMM) x rows [m0, m1). */
static void qmm_quant(void *arg, int64_t m0, int64_t m1, int ith) {
    (void)ith;
    const qmm_task *t = arg;
    if (t->gemv && t->wt != LOOM_Q4_K && t->wt != LOOM_Q6_K) { /* M = 1: fused and vectorised */
        cpu_qgemv_prep(t->wt, t->x, t->K, t->xp);
        return;
    }
    if (t->later) { /* M = 1: vectorised, the same bytes as loom_q8x_quant */
        if (t->dot == cpu_qdot_avx512) cpu_q8x_quant_avx512(t->x, t->xq, t->K);
        else cpu_q8x_quant_avx2(t->x, t->xq, t->K);
        return;
    }
    if (t->q01_gemm) {
        for (int64_t m = m0; m < m1; m++) cpu_qgemm_q01_prep(t->wt, t->x + m * t->K, t->K, t->xp + (size_t)m * t->xp_bytes);
        return;
    }
    if (t->later_gemm) {
        for (int64_t m = m0; m < m1; m++) cpu_q8x_quant_avx512(t->x + m * t->K, t->xq + m * t->xblocks, t->K);
        return;
    }
    if (t->xp && (t->wt == LOOM_Q8_0 || t->wt == LOOM_Q4_0)) { /* prefill tiles read only xp: the same */
        for (int64_t m = m0; m < m1; m++)                        /* fused pass per row */
            cpu_qgemv_prep(t->wt, t->x + m * t->K, t->K, t->xp + (size_t)m * t->xp_bytes);
        return;
    }
    for (int64_t m = m0; m < m1; m++) {
        if (t->i16_gemm) { /* (AVX2: the vectorised quantiser, the same bytes) */
            cpu_q8x_quant_avx2(t->x + m * t->K, t->xq + m * t->xblocks, t->K);
            if (t->x16_prep) cpu_qgemm_iq4_prep(t->xq + m * t->xblocks, t->K, t->x16 + m * t->K);
            continue;
        }
        loom_q8x_quant(t->x + m * t->K, t->xq + m * t->xblocks, t->K);
        if (t->xp) cpu_qgemm_prep(t->wt, t->xq + m * t->xblocks, t->K, t->xp + (size_t)m * t->xp_bytes);
    }
}

static void qmm_run(void *arg, int64_t c0, int64_t c1, int ith) {
    (void)ith;
    const qmm_task *t = arg;
    const loom_q8x *xr[CPU_QROWS];
    float o[CPU_QROWS];
    for (int64_t ci = c0; ci < c1; ci++) {
        int64_t n0 = ci * t->chunk, n1 = n0 + t->chunk < t->N ? n0 + t->chunk : t->N;
        if (t->i16_gemm) {
            if (cpu_qgemm_i16_avx2(t->wt, t->x16_prep, t->w, t->row_bytes, t->xq, t->x16, t->M, t->K, n0, n1, t->y, t->N,
                                   t->bias))
                atomic_store(&((qmm_task *)arg)->failed, 1);
            continue;
        }
        if (t->later_gemm) {
            if (cpu_qgemm_later_avx512(t->wt, t->w, t->row_bytes, t->xq, t->M, t->K, n0, n1, t->y, t->N, t->bias))
                atomic_store(&((qmm_task *)arg)->failed, 1);
            continue;
        }
        if (t->q01_gemm) {
            if (cpu_qgemm_q01_avx2(t->wt, t->w, t->row_bytes, t->xp, t->M, t->K, n0, n1, t->y, t->N, t->bias))
                atomic_store(&((qmm_task *)arg)->failed, 1);
            continue;
        }
        if (t->later) {
            t->later(t->wt, t->w, t->row_bytes, t->xq, t->K, n0, n1, t->y, t->bias, t->pf_rows);
            continue;
        }
        if (t->xp && t->gemv) {
            cpu_qgemv_avx512(t->wt, t->w, t->row_bytes, t->xp, t->K, n0, n1, t->y, t->bias);
            continue;
        }
        if (t->xp) {
            cpu_qgemm_avx512(t->wt, t->w, t->row_bytes, t->xp, t->M, t->K, n0, n1, t->y, t->N, t->bias);
            continue;
        }
        /* x rows in groups of CPU_QROWS share each weight block load; the chunk's weight rows stay in
         * cache across the groups */
        for (int64_t m0 = 0; m0 < t->M; m0 += CPU_QROWS) {
            int nr = (int)(t->M - m0 < CPU_QROWS ? t->M - m0 : CPU_QROWS);
            for (int r = 0; r < nr; r++) xr[r] = t->xq + (m0 + r) * t->xblocks;
            for (int64_t n = n0; n < n1; n++) {
                t->dot(t->wt, t->w + (size_t)n * t->row_bytes, xr, nr, t->K, o);
                float b = t->bias ? t->bias[n] : 0.0f;
                for (int r = 0; r < nr; r++) t->y[(m0 + r) * t->N + n] = o[r] + b;
            }
        }
    }
}

int cpu_quant_matmul(cpu_pool *pool, bool parallel, int n_threads, cpu_qdot_fn dot, float *y, const float *x,
                     const void *w, loom_dtype wt, const float *bias, int64_t M, int64_t K, int64_t N) {
    int64_t xb = K / LOOM_QK;
    /* LOOM_CPU_QTILED=0: the rows kernel only; LOOM_CPU_QGEMV=0: M = 1 through the tiled GEMM (both
     * for A/B timing) */
    static _Atomic int tiled_env = INT_MIN, gemv_env = INT_MIN;
    bool no_tiles = cpu_env_int_once(&tiled_env, "LOOM_CPU_QTILED", 1) == 0;
    bool no_gemv = cpu_env_int_once(&gemv_env, "LOOM_CPU_QGEMV", 1) == 0;
    bool tiled = !no_tiles && dot == cpu_qdot_avx512 && cpu_qgemm_ok(wt, K);
    /* decode through cpu_qgemv_avx512: the four native types where the tiled GEMM takes them, and
     * IQ4_NL / IQ4_XS (K whole pairs / super-blocks) unless LOOM_CPU_QLATER=0 or LOOM_CPU_IQ4GEMV=0
     * (their 256-bit GEMV in quant_later.h then, for A/B timing) */
    static _Atomic int iq4_env = INT_MIN;
    bool iq4 = wt == LOOM_IQ4_NL || wt == LOOM_IQ4_XS;
    bool gemv = M == 1 && !no_gemv && !no_tiles && dot == cpu_qdot_avx512 && cpu_qgemv_ok(wt, K) &&
                (!iq4 || (qgemv_later_ok(wt, K) && cpu_env_int_once(&iq4_env, "LOOM_CPU_IQ4GEMV", 1) != 0));
    /* Q8_0 / Q4_0 with the AVX2 rows kernel: their GEMV (M = 1) and tile GEMM (quant_q01_avx2.c) */
    bool q01 = !no_tiles && cpu_q01_avx2_ok(dot, wt, K), q01_gemm = q01 && (M > 1 || no_gemv);
    size_t xpb = tiled || gemv ? cpu_qgemm_xbytes(K) : q01_gemm ? cpu_qgemm_q01_xbytes(wt, K) : 0;
    loom_q8x *xq = malloc((size_t)(M * xb) * sizeof *xq + 1);
    char *xp = xpb ? loom_malloc_aligned((size_t)M * xpb) : NULL;
    if (!xq || (xpb && !xp)) {
        free(xq);
        loom_free_aligned(xp);
        return loom_err("cpu: out of memory quantising a %lld x %lld activation", (long long)M, (long long)K);
    }
    qmm_task t = {.dot = dot, .y = y, .x = x, .xq = xq, .xp = xp, .xp_bytes = xpb, .w = w, .wt = wt,
                  .row_bytes = loom_dtype_nbytes(wt, K), .bias = bias, .M = M, .K = K, .N = N, .xblocks = xb,
                  .gemv = gemv, .q01_gemm = q01_gemm};
    if (M == 1 && !no_gemv && !gemv && (qgemv_later_ok(wt, K) || klater_ok(wt, K) || q01)) {
        /* LOOM_CPU_QGEMV_PF: prefetch distance in rows, as the Q8_0/Q4_0 GEMV */
        static _Atomic int pf_env = INT_MIN;
        t.later = cpu_qgemv_later_for(dot);
        t.pf_rows = cpu_env_int_once(&pf_env, "LOOM_CPU_QGEMV_PF", 16);
        if (t.pf_rows < 0) t.pf_rows = 0;
        if (q01) t.later = cpu_qgemv_q01_avx2;
    }
    t.later_gemm = M > 1 && !no_tiles && cpu_qgemm_later_ok(dot, wt, K);
    if (t.later_gemm) t.xp = NULL; /* (Q4_K: the panel reads the loom_q8x rows, not the pair tile's) */
    t.i16_gemm = !no_tiles && (cpu_qgemm_iq4_ok(dot, wt, K, M) || cpu_qgemm_k_ok(dot, wt, K, M));
    t.x16_prep = t.i16_gemm && cpu_qgemm_i16_tile(wt); /* which tile: decided here once, passed down */
    if (t.x16_prep && !(t.x16 = malloc(sizeof(int16_t) * (size_t)(M * K)))) {
        free(xq);
        loom_free_aligned(xp);
        return loom_err("cpu: out of memory preparing a %lld x %lld activation", (long long)M, (long long)K);
    }
    /* the activation quantisation is split over rows too (prefill: M rows of K) */
    cpu_pool_for(pool, parallel && M >= 8, M, (M + 4 * n_threads - 1) / (4 * n_threads), qmm_quant, &t);
    /* ~4 chunks per thread, whole 16-row groups (decode) or 32-row groups (prefill). Every chunk
     * reads all of x (prefill, K = 4864, M = 512: 7.5 MB prepared), so chunks are kept few: capping
     * them at 256 KB of weights (19 chunks for ffn_down) halved the tiled GEMM's speed at M = 512 */
    int64_t align = M == 1 ? 16 : 32, want = parallel ? (int64_t)n_threads * 4 : 1;
    t.chunk = (N + want - 1) / want;
    t.chunk = (t.chunk + align - 1) / align * align;
    /* decode: at most ~512 KB of weights per chunk (as the f16 GEMV), so a thread that finishes
     * early never waits long for the last one (the LM head: 145 MB in Q8_0 made 8 chunks of 18 MB) */
    static int64_t cap_kb = -1; /* LOOM_CPU_QGEMV_CHUNK_KB: the cap (0: none), for A/B timing */
    if (cap_kb < 0) {
        const char *e = getenv("LOOM_CPU_QGEMV_CHUNK_KB");
        cap_kb = e ? atoll(e) : 512;
    }
    if (M == 1 && parallel && cap_kb > 0) {
        int64_t cap = cap_kb * 1024 / (int64_t)t.row_bytes / align * align;
        if (t.chunk > cap) t.chunk = cap < align ? align : cap;
    }
    cpu_pool_for(pool, parallel, (N + t.chunk - 1) / t.chunk, 1, qmm_run, &t);
    loom_free_aligned(xp);
    free(xq);
    free(t.x16);
    if (atomic_load(&t.failed)) return loom_err("cpu: out of memory unpacking %s weight panels", loom_dtype_name(wt));
    return 0;
}
