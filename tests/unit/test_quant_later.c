/* The later block types' CPU kernels (Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q5_K, IQ4_XS, and Q4_K /
 * Q6_K's decode GEMV without AVX512_VBMI): the decode
 * GEMV (AVX2 and AVX-512 flavours, backends/cpu/quant_later.h; on AVX2 Q4_1 / Q5_0 / Q5_1 by groups of
 * 8 blocks, two rows a pass, the last K / 32 % 8 blocks one at a time: K of 3, 8, 16, 27, 152 and
 * 520 blocks) and the int8 panel GEMM for prefill
 * (AVX-512 VNNI), against dequantise(W) . dequantise(q8(x)) in double and against the scalar
 * reference loom_quant_dot_ref; every row count 1..40 and 200 (chunks, tails, the prefetch), K of
 * one, two and 19 super-blocks and odd numbers of 32-blocks; weights both from the quantiser and
 * random bytes (every code and scale pattern); the vectorised activation quantiser byte-exact
 * against loom_q8x_quant, and the AVX2 IQ4 dequantiser against loom_dequant_row; on AVX2 the IQ4
 * int16 prefill (cpu_qgemm_i16_avx2, M > 8) through the threaded driver, for IQ4_NL / IQ4_XS and
 * (session 13) the k-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q4_1 / Q5_0 / Q5_1 (their 8-bit
 * GEMM), and called directly on a column range of a
 * wider output whose other entries must stay NaN. */
#include "tests/unit/check.h"

#include "backends/cpu/cpu_quant.h"
#include "core/qblock.h"
#include "core/util.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float frand(void) { return (float)(rnd() & 0xFFFFFF) / (float)0x800000 - 1.0f; }
static float grand(void) { return frand() + frand() + frand(); }

/* (Q4_K: its prefill takes the same panel GEMM; Q4_K and Q6_K decode take the later types' GEMV
 * where the 512-bit one is not there: AVX2 machines, and the direct calls below everywhere) */
static const loom_dtype later[] = {LOOM_Q4_1, LOOM_Q5_0, LOOM_Q5_1, LOOM_IQ4_NL, LOOM_Q2_K,
                                   LOOM_Q3_K, LOOM_Q5_K, LOOM_IQ4_XS, LOOM_Q4_K, LOOM_Q6_K};
#define NLATER 10

/* f16 bits of a small positive scale (0.0005 .. 0.03) */
static uint16_t small_f16(void) { return (uint16_t)(0x1000 + rnd() % 0x1400); }

/* Random bytes for n rows, with every f16 scale (d, m / dmin) replaced by a small finite one. */
static void random_blocks(loom_dtype t, char *w, size_t rb, int64_t N) {
    for (size_t i = 0; i < rb * (size_t)N; i++) w[i] = (char)rnd();
    size_t bb = loom_dtype_block_bytes(t);
    for (int64_t n = 0; n < N; n++)
        for (size_t o = 0; o < rb; o += bb) {
            char *b = w + (size_t)n * rb + o;
            uint16_t d = small_f16(), m = small_f16();
            switch (t) {
            case LOOM_Q4_1: case LOOM_Q5_1: case LOOM_Q5_K: case LOOM_Q4_K: memcpy(b, &d, 2), memcpy(b + 2, &m, 2); break;
            case LOOM_Q2_K: memcpy(b + 80, &d, 2), memcpy(b + 82, &m, 2); break;
            case LOOM_Q3_K: memcpy(b + 108, &d, 2); break;
            case LOOM_Q6_K: memcpy(b + 208, &d, 2); break;
            default: memcpy(b, &d, 2); break; /* Q5_0, IQ4_NL, IQ4_XS: d first */
            }
        }
}

static int have_avx512(void) { return cpu_qdot_for("avx512") == cpu_qdot_avx512; }
static int have_avx2(void) { return cpu_has_avx2(); }
/* LOOM_CPU_IQ4AVX2=0 (test_quant_later_klater0): the IQ4 code from before 2026-12-06;
 * LOOM_CPU_IQ4GEMM=0: no int16 prefill */
static int env_off(const char *name) {
    const char *e = getenv(name);
    return e && atoi(e) == 0;
}
static int iq4_off(void) { return env_off("LOOM_CPU_IQ4AVX2"); }
static int gemm_off(void) { return env_off("LOOM_CPU_IQ4GEMM"); }
static bool is_k(loom_dtype t) {
    return t == LOOM_Q2_K || t == LOOM_Q3_K || t == LOOM_Q4_K || t == LOOM_Q5_K || t == LOOM_Q6_K;
}
static bool is_q32(loom_dtype t) { return t == LOOM_Q4_1 || t == LOOM_Q5_0 || t == LOOM_Q5_1; }
static int kgemm_off(loom_dtype t) { return env_off(is_q32(t) ? "LOOM_CPU_Q32GEMM" : "LOOM_CPU_KGEMM"); }
/* Under ASan the runs with a kernel knob set (test_quant_later_klater0, _kgemm2: other kernels on the
 * same cases) take random blocks where the default run quantises weights: the quantisers, most of
 * an ASan run's time (iq4_index, make_qkx2_quants, iq4_block), run under ASan in the default run,
 * test_quant and test_qblock, and a kernel reads any block's bytes as it reads the quantiser's (random
 * blocks hold every code and scale pattern). The release build runs every case as it is. */
static bool knob_run(void) {
    static const char *knobs[] = {"LOOM_CPU_KLATER", "LOOM_CPU_IQ4AVX2", "LOOM_CPU_IQ4GEMM", "LOOM_CPU_KGEMM",
                                  "LOOM_CPU_Q32GEMM", "LOOM_CPU_Q32GEMV"};
    for (size_t i = 0; i < sizeof knobs / sizeof *knobs; i++)
        if (getenv(knobs[i])) return true;
    return false;
}

static void test_q8x_quant(void) {
    int64_t n = 32 * 64;
    float *x = malloc(sizeof(float) * n);
    loom_q8x *a = malloc(sizeof(loom_q8x) * 64), *b = malloc(sizeof(loom_q8x) * 64);
    for (int64_t i = 0; i < n; i++) x[i] = grand() * (i < 32 ? 0.0f : 1.0f); /* block 0 all zeros */
    for (int j = 0; j < 32; j++) x[32 + j] = (float)(j - 16) * 0.5f; /* ties at .5 after scaling */
    loom_q8x_quant(x, a, n);
    if (have_avx2()) {
        cpu_q8x_quant_avx2(x, b, n);
        CHECK(!memcmp(a, b, sizeof(loom_q8x) * 64), "cpu_q8x_quant_avx2 differs from loom_q8x_quant");
    }
    if (have_avx512()) {
        memset(b, 0, sizeof(loom_q8x) * 64);
        cpu_q8x_quant_avx512(x, b, n);
        CHECK(!memcmp(a, b, sizeof(loom_q8x) * 64), "cpu_q8x_quant_avx512 differs from loom_q8x_quant");
    }
    free(x), free(a), free(b);
}

/* worst error, as a fraction of sum |w x|, of outputs y[n] for rows [0, N) against the double
 * product of the dequantised rows wd and the dequantised activation rows xd (M rows, y[m * ldy + n]) */
static double rel_err(const float *y, int64_t ldy, const float *wd, const float *xd, const float *bias, int64_t M,
                      int64_t N, int64_t K) {
    double worst = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double ref = bias ? bias[n] : 0, mag = 1e-30;
            for (int64_t i = 0; i < K; i++) {
                double a = (double)wd[n * K + i] * xd[m * K + i];
                ref += a, mag += fabs(a);
            }
            double e = fabs((double)y[m * ldy + n] - ref) / mag;
            if (e != e) e = INFINITY;
            worst = fmax(worst, e);
        }
    return worst;
}

static double worst_gemv = 0, worst_gemm = 0, worst_type[LOOM_DTYPE_COUNT], worst_mm_type[LOOM_DTYPE_COUNT];
static double worst_i16_type[LOOM_DTYPE_COUNT]; /* the AVX2 int16 GEMM (M > 8), driver and direct */
static int i16_runs[LOOM_DTYPE_COUNT];
static int tile_runs[LOOM_DTYPE_COUNT][2]; /* direct calls of the AVX2 prefill GEMM: 8-bit, int16 tile */

static void test_kernels(loom_dtype t, int64_t K, int64_t N, int random, int64_t M) {
    if (CHECK_UNDER_ASAN && !random && knob_run()) random = 1;
    size_t rb = loom_dtype_nbytes(t, K);
    char *w = malloc(rb * (size_t)N);
    float *wf = malloc(sizeof(float) * N * K), *wd = malloc(sizeof(float) * N * K);
    float *x = malloc(sizeof(float) * M * K), *xd = malloc(sizeof(float) * M * K);
    float *y = malloc(sizeof(float) * M * N), *bias = malloc(sizeof(float) * N);
    loom_q8x *xq = malloc(sizeof(loom_q8x) * M * (K / 32));
    if (random) random_blocks(t, w, rb, N);
    if (random == 2) /* every code and scale byte at its maximum (0xFF), the activation below all +1:
                      * the largest integer partial sums the kernels form (maddubs pairs, madds) */
        for (int64_t n = 0; n < N; n++)
            for (size_t o = 0; o < rb; o += loom_dtype_block_bytes(t)) {
                char *b = w + (size_t)n * rb + o;
                size_t db = t == LOOM_Q2_K ? 80 : t == LOOM_Q3_K ? 108 : t == LOOM_Q6_K ? 208 : 0;
                size_t nd = t == LOOM_Q2_K || t == LOOM_Q4_1 || t == LOOM_Q5_1 || t == LOOM_Q4_K || t == LOOM_Q5_K ? 4 : 2;
                uint16_t d[2];
                memcpy(d, b + db, nd);
                memset(b, 0xFF, loom_dtype_block_bytes(t));
                memcpy(b + db, d, nd);
            }
    if (!random) {
        for (int64_t i = 0; i < N * K; i++) wf[i] = grand() * 0.05f;
        for (int64_t n = 0; n < N; n++) loom_quant_row(t, wf + n * K, w + n * rb, K);
    }
    for (int64_t n = 0; n < N; n++) loom_dequant_row(t, w + n * rb, wd + n * K, K);
    /* the vector IQ4 dequantiser (the AVX2 prefill's) gives the reference's floats exactly */
    cpu_dequant_fn dq = cpu_dequant_row_for(have_avx2() ? cpu_qdot_avx2 : cpu_qdot_scalar, t);
    CHECK(!dq == !(have_avx2() && (t == LOOM_IQ4_NL || t == LOOM_IQ4_XS) && !iq4_off()), "%s: cpu_dequant_row_for",
          loom_dtype_name(t));
    CHECK(!cpu_dequant_row_for(cpu_qdot_scalar, t), "%s: a dequantiser for the scalar flavour", loom_dtype_name(t));
    if (dq) {
        float *v = malloc(sizeof(float) * K);
        for (int64_t n = 0; n < N; n++) {
            for (int64_t i = 0; i < K; i++) v[i] = NAN;
            dq(t, w + n * rb, v, K);
            CHECK(!memcmp(v, wd + n * K, sizeof(float) * K), "%s K=%lld row %lld: vector dequantiser differs",
                  loom_dtype_name(t), (long long)K, (long long)n);
        }
        free(v);
    }
    for (int64_t i = 0; i < M * K; i++) x[i] = random == 2 ? 1.0f : grand();
    for (int64_t m = 0; m < M; m++) loom_q8x_quant(x + m * K, xq + m * (K / 32), K);
    for (int64_t b = 0; b < M * K / 32; b++)
        for (int j = 0; j < 32; j++) xd[b * 32 + j] = xq[b].qs[j] * xq[b].d;
    for (int64_t n = 0; n < N; n++) bias[n] = (float)(n % 5) - 2.0f;
    const char *tn = loom_dtype_name(t);
    /* the scalar reference itself */
    for (int64_t n = 0; n < N; n++) y[n] = loom_quant_dot_ref(t, w + n * rb, xq, K);
    double e = rel_err(y, N, wd, xd, NULL, 1, N, K);
    CHECK(e < 1e-5, "%s K=%lld N=%lld: scalar reference error %.2e", tn, (long long)K, (long long)N, e);
    /* the GEMV, per flavour: all rows, then split spans (the prefetch stops at each span's end) */
    cpu_qgemv_later_fn fl[2] = {have_avx2() ? cpu_qgemv_later_avx2 : NULL, have_avx512() ? cpu_qgemv_later_avx512 : NULL};
    const char *fn[2] = {"avx2", "avx512"};
    for (int f = 0; f < 2; f++) {
        if (!fl[f]) continue;
        for (int pf = 0; pf <= 16; pf += 3) {
            for (int64_t n = 0; n < N; n++) y[n] = NAN;
            int64_t cut = N / 3;
            fl[f](t, w, rb, xq, K, 0, cut, y, bias, pf);
            fl[f](t, w, rb, xq, K, cut, N, y, bias, pf);
            e = rel_err(y, N, wd, xd, bias, 1, N, K);
            worst_gemv = fmax(worst_gemv, e), worst_type[t] = fmax(worst_type[t], e);
            CHECK(e < 1e-6, "%s gemv %s K=%lld N=%lld pf=%d%s: error %.2e of sum|w x|", fn[f], tn, (long long)K,
                  (long long)N, pf, random ? " (random blocks)" : "", e);
        }
    }
    /* the threaded driver, every flavour, M = 1 (GEMV) and M rows (rows kernel / panel GEMM) */
    cpu_qdot_fn dots[3] = {cpu_qdot_scalar, have_avx2() ? cpu_qdot_avx2 : NULL, have_avx512() ? cpu_qdot_avx512 : NULL};
    cpu_pool *pool = cpu_pool_new(2);
    for (int f = 0; f < 3; f++) {
        if (!dots[f]) continue;
        int64_t ms[2] = {1, M};
        for (int k = 0; k < 2; k++) {
            int64_t mm = ms[k];
            for (int64_t i = 0; i < mm * N; i++) y[i] = NAN;
            CHECK(cpu_quant_matmul(pool, true, 2, dots[f], y, x, w, t, bias, mm, K, N) == 0, "matmul rc");
            e = rel_err(y, N, wd, xd, bias, mm, N, K);
            if (mm > 1) worst_gemm = fmax(worst_gemm, e), worst_mm_type[t] = fmax(worst_mm_type[t], e);
            if (mm > 1 && dots[f] == cpu_qdot_avx2 && (cpu_qgemm_iq4_ok(dots[f], t, K, mm) || cpu_qgemm_k_ok(dots[f], t, K, mm)))
                worst_i16_type[t] = fmax(worst_i16_type[t], e), i16_runs[t]++;
            CHECK(e < 1e-6, "%s matmul %s M=%lld K=%lld N=%lld%s: error %.2e of sum|w x|", cpu_qdot_name(dots[f]), tn,
                  (long long)mm, (long long)K, (long long)N, random ? " (random blocks)" : "", e);
        }
    }
    cpu_pool_free(pool);
    /* the AVX2 prefill GEMM called directly on output columns [n0, n1) of a row 3 wider than N: the
     * columns outside stay NaN (its own row ranges: panels that start mid-output, partial last
     * panels); every tile the type has (the k-quants both, whatever LOOM_CPU_KGEMM says), and a tile
     * it has not refused */
    for (int tile16 = 0; tile16 < 2 && have_avx2() && M > 8 && (cpu_qgemm_iq4_ok(cpu_qdot_avx2, t, K, M) || cpu_qgemm_k_ok(cpu_qdot_avx2, t, K, M)); tile16++) {
        int64_t ld = N + 3, n0 = N / 3, n1 = N - N / 5;
        float *yy = malloc(sizeof(float) * M * ld), *yr = malloc(sizeof(float) * M * N);
        int16_t *x16 = malloc(sizeof(int16_t) * M * K);
        for (int64_t m = 0; m < M; m++) cpu_qgemm_iq4_prep(xq + m * (K / 32), K, x16 + m * K);
        for (int64_t i = 0; i < M * ld; i++) yy[i] = NAN;
        bool has = is_k(t) || (t == LOOM_IQ4_NL || t == LOOM_IQ4_XS) == (tile16 == 1);
        CHECK(cpu_qgemm_i16_avx2(t, tile16, w, rb, xq, x16, M, K, n0, n1, yy, ld, bias) == (has ? 0 : -1), "%s i16 rc, tile16 %d",
              tn, tile16);
        if (!has) {
            int touched = 0;
            for (int64_t i = 0; i < M * ld; i++) touched += !isnan(yy[i]);
            CHECK(!touched, "%s: a refused tile wrote %d outputs", tn, touched);
            free(yy), free(yr), free(x16);
            continue;
        }
        tile_runs[t][tile16]++;
        int outside = 0;
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < ld; n++) {
                if (n >= n0 && n < n1) yr[m * N + n] = yy[m * ld + n];
                else outside += !isnan(yy[m * ld + n]);
            }
        CHECK(!outside, "%s i16 K=%lld N=%lld M=%lld [%lld, %lld): %d outputs written outside", tn, (long long)K,
              (long long)N, (long long)M, (long long)n0, (long long)n1, outside);
        /* the error over the range (rows of wd from n0; outputs at column n0 of a row of N) */
        e = rel_err(yr + n0, N, wd + n0 * K, xd, bias + n0, M, n1 - n0, K);
        worst_i16_type[t] = fmax(worst_i16_type[t], e), i16_runs[t]++;
        CHECK(e < 1e-6, "%s i16 direct tile16 %d K=%lld N=%lld M=%lld: error %.2e of sum|w x|", tn, tile16, (long long)K,
              (long long)N, (long long)M, e);
        free(yy), free(yr), free(x16);
    }
    free(w), free(wf), free(wd), free(x), free(xd), free(y), free(bias), free(xq);
}

int main(void) {
    printf("flavours: scalar%s%s\n", have_avx2() ? " avx2" : "", have_avx512() ? " avx512vnni" : "");
    test_q8x_quant();
    for (int k = 0; k < NLATER; k++) {
        loom_dtype t = later[k];
        bool kq = loom_dtype_blck(t) == 256;
        for (int random = 0; random < 2; random++) {
            test_kernels(t, 256, 40, random, 5);
            test_kernels(t, 512, 37, random, 9);
            test_kernels(t, 512, 1, random, 3);
            if (!kq) {
                test_kernels(t, 96, 17, random, 6);  /* three 32-blocks: an odd number */
                test_kernels(t, 864, 33, random, 7); /* 27 */
            }
        }
        test_kernels(t, 4864, 200, 0, 2); /* qwen2-0.5b's ffn_down width, 200 rows: chunks and tails */
        test_kernels(t, 512, 21, 2, 2);   /* every byte 0xFF, x all +1 */
        if (t == LOOM_IQ4_NL || t == LOOM_IQ4_XS) {
            test_kernels(t, 16640, 3, 1, 1); /* > 512 blocks: the old GEMV */
            /* the AVX2 int16 prefill (M > 8): 4-row tiles and 1-3 row tails, 8-row panels and
             * partial ones, every byte 0xFF */
            test_kernels(t, 512, 37, 1, 13);
            test_kernels(t, 768, 45, 0, 18); /* a 13-row panel */
            test_kernels(t, 256, 9, 2, 11);
            test_kernels(t, 2048, 64, 0, 12);
            CHECK(!have_avx2() || iq4_off() || gemm_off() || (tile_runs[t][1] > 0 && tile_runs[t][0] == 0),
                  "%s: direct tile runs %d / %d", loom_dtype_name(t), tile_runs[t][0], tile_runs[t][1]);
            CHECK(cpu_qgemm_i16_tile(t), "%s: cpu_qgemm_i16_tile", loom_dtype_name(t));
            CHECK(cpu_qgemm_iq4_ok(cpu_qdot_avx2, t, 512, 9) == (have_avx2() && !iq4_off() && !gemm_off()) &&
                      !cpu_qgemm_iq4_ok(cpu_qdot_avx2, t, 512, 8) && !cpu_qgemm_iq4_ok(cpu_qdot_scalar, t, 512, 9),
                  "%s: cpu_qgemm_iq4_ok", loom_dtype_name(t));
        }
        if (is_k(t) || is_q32(t)) {
            /* the AVX2 8-bit / int16 prefill of the k-quants and Q4_1 / Q5_0 / Q5_1 (M > 8): 1-3 row
             * tile tails, partial panels (N = 9, 37, 45: 9-, 5-, 13-row last panels), every byte
             * 0xFF, K of 1-19 super-blocks (and 3, 11, 27 32-blocks: partial groups of 8) */
            test_kernels(t, 512, 37, 1, 13);
            test_kernels(t, 768, 45, 0, 18);
            test_kernels(t, 256, 9, 2, 11);
            test_kernels(t, 2048, 64, 0, 12);
            test_kernels(t, 4864, 33, 1, 10);
            test_kernels(t, 256, 17, 1, 9);
            if (is_q32(t)) {
                test_kernels(t, 16640, 3, 1, 1); /* > 512 blocks: the AVX2 decode's allocated layout */
                test_kernels(t, 96, 21, 1, 10);
                test_kernels(t, 352, 19, 0, 14);
                test_kernels(t, 864, 35, 2, 9);
            }
            CHECK(cpu_qgemm_k_ok(cpu_qdot_avx2, t, 512, 9) == (have_avx2() && !kgemm_off(t)) &&
                      !cpu_qgemm_k_ok(cpu_qdot_avx2, t, 512, 8) && !cpu_qgemm_k_ok(cpu_qdot_scalar, t, 512, 9) &&
                      !cpu_qgemm_k_ok(cpu_qdot_avx2, t, is_q32(t) ? 100 : 480, 9) &&
                      cpu_qgemm_k_ok(cpu_qdot_avx2, t, 96, 9) == (is_q32(t) && have_avx2() && !kgemm_off(t)),
                  "%s: cpu_qgemm_k_ok", loom_dtype_name(t));
            const char *kg = getenv("LOOM_CPU_KGEMM");
            CHECK(cpu_qgemm_i16_tile(t) == (is_k(t) && kg && atoi(kg) == 2), "%s: cpu_qgemm_i16_tile", loom_dtype_name(t));
            CHECK(!have_avx2() || kgemm_off(t) || i16_runs[t] > 0, "%s: the GEMM never ran", loom_dtype_name(t));
            /* the direct calls ran both tiles of a k-quant, the 8-bit one of Q4_1 / Q5_x, whatever
             * LOOM_CPU_KGEMM chose for the driver */
            CHECK(!have_avx2() || kgemm_off(t) || (tile_runs[t][0] > 0 && (tile_runs[t][1] > 0) == is_k(t)),
                  "%s: direct tile runs %d / %d", loom_dtype_name(t), tile_runs[t][0], tile_runs[t][1]);
        } else {
            CHECK(!cpu_qgemm_k_ok(cpu_qdot_avx2, t, 512, 9), "%s: cpu_qgemm_k_ok", loom_dtype_name(t));
        }
        for (int64_t n = 2; n <= 16; n++) test_kernels(t, 256, n, 1, 1 + n % 4);
    }
    printf("worst error of sum|w x|: gemv %.2e, matmul M > 1 %.2e\n", worst_gemv, worst_gemm);
    for (int k = 0; k < NLATER; k++) printf("  gemv %s %.2e", loom_dtype_name(later[k]), worst_type[later[k]]);
    printf("\n");
    for (int k = 0; k < NLATER; k++) printf("  matmul %s %.2e", loom_dtype_name(later[k]), worst_mm_type[later[k]]);
    printf("\n");
    for (int k = 0; k < NLATER; k++)
        if (i16_runs[later[k]])
            printf("  i16 %s %.2e (%d)", loom_dtype_name(later[k]), worst_i16_type[later[k]], i16_runs[later[k]]);
    printf("\n");
    CHECK_DONE();
}
