/* Quantised weights: block layouts against hand-computed blocks, round-trip error bounds on random
 * data and on the stories260K fixture's weights, every dot-product flavour against a dequantise-
 * then-double reference, the threaded matmul driver, and corrupt files refused at load. */
#include "tests/unit/check.h"

#include "backends/cpu/cpu_quant.h"
#include "formats/gguf.h"
#include "core/qblock.h"
#include "formats/source.h"
#include "core/util.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1;
}
static float grand(void) { return frand() + frand() + frand(); } /* roughly bell-shaped */

static const loom_dtype types[] = {LOOM_Q8_0, LOOM_Q4_0, LOOM_Q4_K, LOOM_Q6_K};

static void test_layouts(void) {
    CHECK(loom_dtype_nbytes(LOOM_Q8_0, 64) == 68 && loom_dtype_nbytes(LOOM_Q4_0, 64) == 36, "32-blocks");
    CHECK(loom_dtype_nbytes(LOOM_Q4_K, 512) == 288 && loom_dtype_nbytes(LOOM_Q6_K, 256) == 210, "k-blocks");
    CHECK(loom_dtype_nbytes(LOOM_F16, 10) == 20 && loom_dtype_blck(LOOM_F32) == 1, "plain types");

    float x[32], y[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    /* Q8_0: d = 16/127, q = round(x * 127/16) */
    loom_block_q8_0 b8;
    loom_quant_row(LOOM_Q8_0, x, &b8, 32);
    uint8_t raw8[34];
    memcpy(raw8, &b8, 34);
    CHECK(raw8[0] == (loom_f32_to_f16(16.0f / 127) & 0xff) && raw8[1] == loom_f32_to_f16(16.0f / 127) >> 8, "q8_0 d bytes");
    CHECK((int8_t)raw8[2] == -127 && (int8_t)raw8[2 + 31] == 119 && raw8[2 + 16] == 0, "q8_0 qs %d %d",
          (int8_t)raw8[2], (int8_t)raw8[33]);
    /* Q4_0: the largest magnitude is -16, so d = -16 / -8 = 2; q = (int)(x/2 + 8.5), capped at 15 */
    loom_block_q4_0 b4;
    loom_quant_row(LOOM_Q4_0, x, &b4, 32);
    uint8_t raw4[18];
    memcpy(raw4, &b4, 18);
    CHECK(raw4[0] == 0x00 && raw4[1] == 0x40, "q4_0 d = 2.0 (f16 0x4000): %02x %02x", raw4[0], raw4[1]);
    CHECK(raw4[2] == 0x80, "q4_0 qs[0]: element 0 low nibble 0, element 16 high nibble 8: %02x", raw4[2]);
    CHECK(raw4[2 + 15] == 0xF8, "q4_0 qs[15]: element 15 (-1/2 + 8.5) -> 8, element 31 (16.0) capped at 15: %02x", raw4[17]);
    /* hand-made blocks, dequantised */
    uint8_t h4[18] = {0x00, 0x3c, 0x21}; /* d = 1, element 0 = 1 - 8, element 16 = 2 - 8 */
    loom_dequant_row(LOOM_Q4_0, h4, y, 32);
    CHECK(y[0] == -7 && y[16] == -6 && y[1] == -8, "q4_0 dequant %g %g", y[0], y[16]);

    loom_block_q4_k k4;
    memset(&k4, 0, sizeof k4);
    k4.d = 0x3c00, k4.dmin = 0x3800;          /* 1.0, 0.5 */
    k4.scales[0] = 2 | (1 << 6), k4.scales[4] = 3; /* sub-block 0: sc 2, m 3; high bits of sub-block 4's sc */
    k4.scales[1] = 1, k4.scales[5] = 0;       /* sub-block 1: sc 1, m 0 */
    k4.scales[8] = 0x13;                      /* sub-block 4: sc 3 | 16 = 19, m 1 */
    k4.qs[0] = 0x75, k4.qs[64] = 0x02;
    float yk[256];
    loom_dequant_row(LOOM_Q4_K, &k4, yk, 256);
    CHECK(yk[0] == 8.5f && yk[32] == 7.0f && yk[128] == 37.5f, "q4_K dequant %g %g %g", yk[0], yk[32], yk[128]);

    loom_block_q6_k k6;
    memset(&k6, 0, sizeof k6);
    k6.d = 0x3c00, k6.scales[0] = 3, k6.scales[4] = 1, k6.ql[0] = 0x05, k6.qh[0] = 0x02;
    loom_dequant_row(LOOM_Q6_K, &k6, yk, 256);
    CHECK(yk[0] == 15.0f && yk[64] == -32.0f, "q6_K dequant %g %g", yk[0], yk[64]);

    /* Q6_K quantisation of values on its own grid comes back exactly: every sub-block holds -32
     * and +31 steps of 0.25 (and 14 levels between), so its scale is 0.25 and every level of
     * [-32, 31] is used at the ends (a quantiser that loses the top level, 31, fails here) */
    float g[256], gy[256];
    for (int l = 0; l < 256; l++) {
        int k = l % 16, lvl = k == 0 ? -32 : k == 1 ? 31 : (int)((l * 37 + 11) % 64) - 32;
        g[l] = 0.25f * (float)lvl;
    }
    loom_quant_row(LOOM_Q6_K, g, &k6, 256);
    loom_dequant_row(LOOM_Q6_K, &k6, gy, 256);
    int off_grid = 0;
    for (int l = 0; l < 256; l++) off_grid += gy[l] != g[l];
    CHECK(off_grid == 0, "q6_K: %d of 256 on-grid values did not come back exactly (e.g. %g -> %g)", off_grid, g[1], gy[1]);
}

/* RMS of the round-trip error relative to the RMS of x, and (32-blocks) the per-element bound. */
static double roundtrip(loom_dtype t, const float *x, int64_t n, double *worst_rel_blk) {
    void *q = malloc(loom_dtype_nbytes(t, n));
    float *y = malloc((size_t)n * sizeof *y);
    loom_quant_row(t, x, q, n);
    loom_dequant_row(t, q, y, n);
    double e2 = 0, x2 = 0;
    *worst_rel_blk = 0;
    for (int64_t b = 0; b < n / 32; b++) {
        double amax = 0, emax = 0;
        for (int j = 0; j < 32; j++) {
            double e = fabs((double)x[32 * b + j] - y[32 * b + j]);
            e2 += e * e, x2 += (double)x[32 * b + j] * x[32 * b + j];
            amax = fmax(amax, fabs(x[32 * b + j])), emax = fmax(emax, e);
        }
        if (amax > 0 && emax / amax > *worst_rel_blk) *worst_rel_blk = emax / amax;
    }
    free(q), free(y);
    return sqrt(e2 / (x2 > 0 ? x2 : 1));
}

/* bounds on relative RMS error (measured: q8_0 ~0.004, q4_0 ~0.07-0.09, q4_K ~0.06-0.08, q6_K ~0.015-0.02) */
static const double rms_bound[] = {0.008, 0.12, 0.10, 0.03};
/* per-block max error / max|x|: q8_0 d/2 with d = amax/127 (plus f16 rounding of d); q4_0 d = amax/8,
 * the clamped top code errs by up to d */
static const double blk_bound[] = {0.6 / 127, 1.05 / 8, 1, 1};

static void test_roundtrip(void) {
    int64_t n = 256 * 64;
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = grand() * (i % 512 < 32 ? 10 : 1); /* some loud blocks */
    for (int k = 0; k < 4; k++) {
        double blk, rms = roundtrip(types[k], x, n, &blk);
        printf("random %-5s rms rel %.4f, worst block %.4f\n", loom_dtype_name(types[k]), rms, blk);
        CHECK(rms < rms_bound[k], "%s random: rms rel error %.4f", loom_dtype_name(types[k]), rms);
        CHECK(blk <= blk_bound[k], "%s random: block max error %.4f of max|x|", loom_dtype_name(types[k]), blk);
    }
    /* all-zero and tiny blocks quantise to zeros without NaN */
    float z[256] = {0}, out[256];
    for (int k = 0; k < 4; k++) {
        char q[256 * 2];
        loom_quant_row(types[k], z, q, 256);
        loom_dequant_row(types[k], q, out, 256);
        bool ok = true;
        for (int i = 0; i < 256; i++) ok &= out[i] == 0;
        CHECK(ok, "%s: zeros round-trip to zeros", loom_dtype_name(types[k]));
    }
    free(x);

    /* real weights: the trained stories260K matrices (inner dim 64: the k-quants get a 256-multiple
     * by flattening, which keeps the statistics of the weights) */
    char path[4096];
    const char *fx = getenv("LOOM_FIXTURES");
    snprintf(path, sizeof path, "%s/stories260K.gguf", fx ? fx : "tests/fixtures");
    loom_source *s = loom_source_open(path);
    CHECK(s, "open %s: %s", path, loom_last_error());
    if (!s) return;
    int tested = 0;
    for (int i = 0; i < loom_source_n_tensors(s); i++) {
        const loom_weight *w = loom_source_tensor(s, i);
        int64_t ne = w->ne[0] * w->ne[1];
        if (w->ndim != 2 || ne % 256) continue;
        float *f = malloc((size_t)ne * sizeof *f);
        loom_to_f32(f, w->data, w->type, (size_t)ne);
        for (int k = 0; k < 4; k++) {
            double blk, rms = roundtrip(types[k], f, ne, &blk);
            CHECK(rms < rms_bound[k], "%s %s: rms rel error %.4f", w->name, loom_dtype_name(types[k]), rms);
            CHECK(blk <= blk_bound[k], "%s %s: block error %.4f", w->name, loom_dtype_name(types[k]), blk);
        }
        free(f);
        tested++;
    }
    CHECK(tested >= 5, "fixture matrices tested: %d", tested);
    loom_source_close(s);
}

/* y = W . x through each kernel, against dequantise(W) . dequantise(q8(x)) in double (tight: only f32
 * rounding differs) and against dequantise(W) . x (loose: the activation's 8-bit rounding). */
/* fmax that keeps a NaN: fmax(e, NaN) is e, so a NaN output (a row the kernel never wrote) would
 * pass an error bound */
static double nan_max(double a, double b) { return isnan(a) || isnan(b) ? NAN : fmax(a, b); }

static void test_dots_k(int64_t K, int64_t N) {
    cpu_qdot_fn fns[3] = {cpu_qdot_scalar, NULL, NULL};
    const char *names[3] = {"scalar", "avx2", "avx512vnni"};
    if (cpu_has_avx2()) fns[1] = cpu_qdot_avx2;
    if (cpu_qdot_for("avx512") == cpu_qdot_avx512) fns[2] = cpu_qdot_avx512;
    printf("dot flavours: scalar%s%s\n", fns[1] ? " avx2" : "", fns[2] ? " avx512vnni" : "");
    const int64_t M = 6;
    float *x = malloc(sizeof(float) * M * K), *w = malloc(sizeof(float) * N * K), *wd = malloc(sizeof(float) * N * K);
    float *xd = malloc(sizeof(float) * M * K);
    for (int64_t i = 0; i < M * K; i++) x[i] = grand();
    for (int64_t i = 0; i < N * K; i++) w[i] = grand() * 0.05f;
    loom_q8x *xq = malloc(sizeof(loom_q8x) * M * (K / 32));
    for (int64_t m = 0; m < M; m++) loom_q8x_quant(x + m * K, xq + m * (K / 32), K);
    for (int64_t b = 0; b < M * K / 32; b++)
        for (int j = 0; j < 32; j++) xd[b * 32 + j] = xq[b].qs[j] * xq[b].d;
    cpu_pool *pool = cpu_pool_new(2);
    for (int k = 0; k < 4; k++) {
        loom_dtype t = types[k];
        if (K % loom_dtype_blck(t)) continue;
        size_t rb = loom_dtype_nbytes(t, K);
        char *wq = malloc(rb * N);
        for (int64_t n = 0; n < N; n++) loom_quant_row(t, w + n * K, wq + n * rb, K);
        for (int64_t n = 0; n < N; n++) loom_dequant_row(t, wq + n * rb, wd + n * K, K);
        for (int f = 0; f < 3; f++) {
            if (!fns[f]) continue;
            double worst = 0, worst_loose = 0;
            for (int64_t n = 0; n < N; n++) {
                const loom_q8x *xr[CPU_QROWS];
                float o[CPU_QROWS];
                for (int64_t m0 = 0; m0 < M; m0 += CPU_QROWS) {
                    int nr = (int)(M - m0 < CPU_QROWS ? M - m0 : CPU_QROWS);
                    for (int r = 0; r < nr; r++) xr[r] = xq + (m0 + r) * (K / 32);
                    fns[f](t, wq + n * rb, xr, nr, K, o);
                    for (int r = 0; r < nr; r++) {
                        double ref = 0, mag = 0, refx = 0, magx = 0;
                        for (int64_t i = 0; i < K; i++) {
                            double a = (double)wd[n * K + i] * xd[(m0 + r) * K + i];
                            ref += a, mag += fabs(a);
                            refx += (double)wd[n * K + i] * x[(m0 + r) * K + i];
                            magx += fabs((double)wd[n * K + i] * x[(m0 + r) * K + i]);
                        }
                        worst = nan_max(worst, fabs(o[r] - ref) / mag);
                        worst_loose = nan_max(worst_loose, fabs(o[r] - refx) / magx);
                    }
                }
            }
            CHECK(worst < 1e-5, "%s %s: error %.2e of sum|w x| against the exact block product", names[f],
                  loom_dtype_name(t), worst);
            CHECK(worst_loose < 2e-2, "%s %s: error %.2e of sum|w x| against f32 x", names[f], loom_dtype_name(t),
                  worst_loose);
            /* the threaded driver (1 to 6 x rows: decode and prefill paths; with avx512vnni, Q8_0/Q4_0
             * and K a multiple of 64 take the tiled GEMM: 4 x 4 tiles and every edge), with a bias */
            float *y = malloc(sizeof(float) * M * N), *bias = malloc(sizeof(float) * N);
            for (int64_t n = 0; n < N; n++) bias[n] = (float)(n % 7) - 2.5f;
            for (int64_t mm = 1; mm <= M; mm++) {
                /* NaN first: malloc may hand back the last flavour's y, right values and all, which
                 * hid a kernel that skipped rows */
                for (int64_t i = 0; i < M * N; i++) y[i] = NAN;
                int rc = cpu_quant_matmul(pool, true, 2, fns[f], y, x, wq, t, bias, mm, K, N);
                CHECK(rc == 0, "matmul rc");
                double werr = 0;
                for (int64_t m = 0; m < mm; m++)
                    for (int64_t n = 0; n < N; n++) {
                        double ref = bias[n], mag = 1e-30;
                        for (int64_t i = 0; i < K; i++) {
                            ref += (double)wd[n * K + i] * xd[m * K + i];
                            mag += fabs((double)wd[n * K + i] * xd[m * K + i]);
                        }
                        werr = nan_max(werr, fabs(y[m * N + n] - ref) / mag);
                    }
                CHECK(werr < 1e-5, "%s %s matmul M=%lld K=%lld: error %.2e", names[f], loom_dtype_name(t), (long long)mm,
                      (long long)K, werr);
            }
            free(y), free(bias);
        }
        free(wq);
    }
    cpu_pool_free(pool);
    free(x), free(w), free(wd), free(xd), free(xq);
}

/* K = 1024: every type; 320: Q8_0/Q4_0 pairs of blocks (the tiled GEMM) but no k-quant; 96: an odd
 * number of blocks (the rows kernel); N = 7 except where said */
static void test_dots(void) {
    test_dots_k(1024, 7);
    test_dots_k(320, 7);
    test_dots_k(96, 7);
    /* decode GEMV (M = 1, Q8_0/Q4_0 with AVX512_VBMI): 4-row groups and single-row tails in several
     * 16- and 32-row chunks, with the prefetch of rows 16 ahead inside the 32-row ones */
    test_dots_k(320, 37);
    test_dots_k(128, 200);
    /* chunks of 16 then 7 (no 8-row group: 4 + 3 rows) and 16 then 14 (8 + 4 + 2) */
    test_dots_k(128, 23);
    test_dots_k(128, 30);
    test_dots_k(512, 37); /* the same for Q4_K (two super-blocks per row) */
}

/* The AVX2 Q8_0 / Q4_0 kernels (quant_q01_avx2.c) called directly, against the exact block product in
 * double: the decode GEMV over row ranges of every parity (2-row pairs and the 1-row tail), with and
 * without the prefetch; the prefill tile GEMM with every tile shape (1..4 weight rows x 1..2 x rows:
 * M and N from 1 to 11) and an ldy wider than the rows written; weights from the quantiser and random
 * bytes (every code, Q8_0's -128 included); K of 1, 3, 9 (a tail after the 8-block correction loop)
 * and 64 blocks. Outputs outside the range must stay NaN. */
static uint64_t q01_rng = 0x2545F4914F6CDD1Dull;
static uint32_t q01_rnd(void) {
    q01_rng ^= q01_rng << 13, q01_rng ^= q01_rng >> 7, q01_rng ^= q01_rng << 17;
    return (uint32_t)(q01_rng >> 16);
}

/* the exact product of a weight row with a loom_q8x row in double, and sum |w x| (the error's scale) */
static double q01_ref(loom_dtype t, const char *row, const loom_q8x *x, int64_t K, double *mag) {
    double s = 0, m = 1e-30;
    for (int64_t b = 0; b < K / 32; b++) {
        int8_t c[32];
        uint16_t h;
        if (t == LOOM_Q8_0) {
            const loom_block_q8_0 *q = (const loom_block_q8_0 *)row + b;
            memcpy(c, q->qs, 32), h = q->d;
        } else {
            const loom_block_q4_0 *q = (const loom_block_q4_0 *)row + b;
            for (int j = 0; j < 16; j++) c[j] = (int8_t)((q->qs[j] & 15) - 8), c[j + 16] = (int8_t)((q->qs[j] >> 4) - 8);
            h = q->d;
        }
        long dot = 0, ad = 0;
        for (int j = 0; j < 32; j++) dot += (long)c[j] * x[b].qs[j], ad += labs((long)c[j] * x[b].qs[j]);
        double sc = (double)loom_f16_to_f32(h) * x[b].d;
        s += sc * (double)dot, m += fabs(sc) * (double)ad;
    }
    *mag = m;
    return s;
}

static void test_q01_avx2(void) {
    if (!cpu_has_avx2()) {
        printf("no AVX2: the Q8_0 / Q4_0 AVX2 kernels not tested\n");
        return;
    }
    const int64_t Ks[] = {32, 96, 288, 2048};
    const loom_dtype q01[] = {LOOM_Q8_0, LOOM_Q4_0};
    double worst_gemv = 0, worst_gemm = 0;
    for (int ki = 0; ki < 4; ki++)
        for (int ti = 0; ti < 2; ti++)
            for (int rnd = 0; rnd < 2; rnd++) {
                loom_dtype t = q01[ti];
                int64_t K = Ks[ki], nb = K / 32, N = 11, M = 11, ldy = N + 3;
                size_t rb = loom_dtype_nbytes(t, K);
                char *wq = malloc(rb * N);
                float *x = malloc(sizeof(float) * M * K), *wf = malloc(sizeof(float) * K);
                for (int64_t i = 0; i < M * K; i++) x[i] = grand() * (i % 5 ? 1.0f : 4.0f);
                for (int64_t n = 0; n < N; n++) {
                    if (rnd) { /* random bytes, a small finite scale per block */
                        for (size_t i = 0; i < rb; i++) wq[n * rb + i] = (char)q01_rnd();
                        for (int64_t b = 0; b < nb; b++) {
                            uint16_t d = (uint16_t)(0x1000 + q01_rnd() % 0x1400);
                            memcpy(wq + n * rb + (size_t)b * loom_dtype_block_bytes(t), &d, 2);
                        }
                    } else {
                        for (int64_t i = 0; i < K; i++) wf[i] = grand() * 0.05f;
                        loom_quant_row(t, wf, wq + n * rb, K);
                    }
                }
                loom_q8x *xq = malloc(sizeof(loom_q8x) * M * nb);
                for (int64_t m = 0; m < M; m++) loom_q8x_quant(x + m * K, xq + m * nb, K);
                double *ref = malloc(sizeof(double) * M * N), *mag = malloc(sizeof(double) * M * N);
                for (int64_t m = 0; m < M; m++)
                    for (int64_t n = 0; n < N; n++) ref[m * N + n] = q01_ref(t, wq + n * rb, xq + m * nb, K, &mag[m * N + n]);
                float bias[11], y[11 * 14];
                for (int n = 0; n < 11; n++) bias[n] = 0.25f * (float)(n % 5) - 0.5f;
                /* decode: ranges [n0, n1) of every length 1..N - n0, with prefetch 0, 1, 3 rows */
                for (int pf = 0; pf < 3; pf++)
                    for (int64_t n0 = 0; n0 < 3; n0++)
                        for (int64_t n1 = n0 + 1; n1 <= N; n1++) {
                            for (int i = 0; i < 11; i++) y[i] = NAN;
                            const float *bs = pf == 1 ? bias : NULL;
                            cpu_qgemv_q01_avx2(t, wq, rb, xq, K, n0, n1, y, bs, pf == 2 ? 3 : pf);
                            for (int64_t n = 0; n < N; n++) {
                                bool in = n >= n0 && n < n1;
                                if (!in) {
                                    CHECK(isnan(y[n]), "%s gemv K=%lld [%lld, %lld) wrote row %lld", loom_dtype_name(t),
                                          (long long)K, (long long)n0, (long long)n1, (long long)n);
                                    continue;
                                }
                                double e = fabs(y[n] - (ref[n] + (bs ? bs[n] : 0))) / mag[n];
                                worst_gemv = nan_max(worst_gemv, e);
                            }
                        }
                /* prefill: every M x N from 1 x 1 to 11 x 11 over rows [n0, n0 + N'), ldy = 14 */
                size_t xb = cpu_qgemm_q01_xbytes(t, K);
                char *xp = loom_malloc_aligned(xb * (size_t)M);
                for (int64_t m = 0; m < M; m++) cpu_qgemm_q01_prep(t, x + m * K, K, xp + (size_t)m * xb);
                for (int64_t mm = 1; mm <= M; mm++)
                    for (int64_t n0 = 0; n0 < 2; n0++)
                        for (int64_t n1 = n0 + 1; n1 <= N; n1++) {
                            for (int i = 0; i < 11 * 14; i++) y[i] = NAN;
                            const float *bs = (mm + n1) % 2 ? bias : NULL;
                            int rc = cpu_qgemm_q01_avx2(t, wq, rb, xp, mm, K, n0, n1, y, ldy, bs);
                            CHECK(rc == 0, "gemm rc");
                            for (int64_t m = 0; m < M; m++)
                                for (int64_t n = 0; n < ldy; n++) {
                                    bool in = m < mm && n >= n0 && n < n1;
                                    if (!in) {
                                        if (!isnan(y[m * ldy + n])) {
                                            CHECK(0, "%s gemm K=%lld M=%lld [%lld, %lld) wrote (%lld, %lld)",
                                                  loom_dtype_name(t), (long long)K, (long long)mm, (long long)n0,
                                                  (long long)n1, (long long)m, (long long)n);
                                            n = ldy, m = M;
                                        }
                                        continue;
                                    }
                                    double e = fabs(y[m * ldy + n] - (ref[m * N + n] + (bs ? bs[n] : 0))) / mag[m * N + n];
                                    worst_gemm = nan_max(worst_gemm, e);
                                }
                        }
                loom_free_aligned(xp);
                free(wq), free(x), free(wf), free(xq), free(ref), free(mag);
            }
    printf("q8_0 / q4_0 avx2: worst error of sum|w x|: gemv %.2e, gemm %.2e\n", worst_gemv, worst_gemm);
    CHECK(worst_gemv < 1e-6, "avx2 q8_0 / q4_0 gemv: error %.2e of sum|w x|", worst_gemv);
    CHECK(worst_gemm < 1e-6, "avx2 q8_0 / q4_0 gemm: error %.2e of sum|w x|", worst_gemm);

    /* the threaded driver with the AVX2 rows flavour: the GEMV (M = 1) and the tiles (M = 2, 3, 37) over
     * 2 threads, N = 300 (several chunks with tails), against the same reference */
    cpu_pool *pool = cpu_pool_new(2);
    for (int ti = 0; ti < 2; ti++) {
        loom_dtype t = q01[ti];
        int64_t K = 320, nb = K / 32, N = 300, M = 37;
        size_t rb = loom_dtype_nbytes(t, K);
        char *wq = malloc(rb * N);
        float *x = malloc(sizeof(float) * M * K), *wf = malloc(sizeof(float) * K), *y = malloc(sizeof(float) * M * N);
        float *bias = malloc(sizeof(float) * N);
        for (int64_t n = 0; n < N; n++) {
            for (int64_t i = 0; i < K; i++) wf[i] = grand() * 0.05f;
            loom_quant_row(t, wf, wq + n * rb, K);
            bias[n] = (float)(n % 3) - 1.0f;
        }
        for (int64_t i = 0; i < M * K; i++) x[i] = grand();
        loom_q8x *xq = malloc(sizeof(loom_q8x) * M * nb);
        for (int64_t m = 0; m < M; m++) loom_q8x_quant(x + m * K, xq + m * nb, K);
        const int64_t Ms[] = {1, 2, 3, 37};
        for (int mi = 0; mi < 4; mi++) {
            int64_t mm = Ms[mi];
            for (int64_t i = 0; i < M * N; i++) y[i] = NAN;
            CHECK(cpu_quant_matmul(pool, true, 2, cpu_qdot_avx2, y, x, wq, t, bias, mm, K, N) == 0, "matmul rc");
            double werr = 0;
            for (int64_t m = 0; m < mm; m++)
                for (int64_t n = 0; n < N; n++) {
                    double mg, r = q01_ref(t, wq + n * rb, xq + m * nb, K, &mg) + bias[n];
                    werr = nan_max(werr, fabs(y[m * N + n] - r) / mg);
                }
            CHECK(werr < 1e-6, "avx2 %s matmul M=%lld N=300 2 threads: error %.2e", loom_dtype_name(t), (long long)mm, werr);
        }
        free(wq), free(x), free(wf), free(y), free(bias), free(xq);
    }
    cpu_pool_free(pool);
}

/* A GGUF holding one Q8_0 matrix [2, 32]; scale of block 1 replaced by `bad_d` when nonzero, and
 * the inner dim rewritten to `inner` in the file when nonzero (the writer refuses such shapes). */
static int write_q8(const char *path, uint16_t bad_d, uint64_t inner) {
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = frand();
    loom_block_q8_0 b[2];
    loom_quant_row(LOOM_Q8_0, x, b, 64);
    if (bad_d) b[1].d = bad_d;
    gguf_writer *w = gguf_writer_new();
    int64_t ne[2] = {2, 32};
    int rc = gguf_w_str(w, "general.architecture", "llama") ||
             gguf_w_tensor(w, "blk.0.attn_q.weight", GGML_TYPE_Q8_0, 2, ne, b, sizeof b) || gguf_writer_save(w, path);
    gguf_writer_free(w);
    if (rc || !inner) return rc;
    /* patch the record: name, u32 ndim = 2, u64 ne0 = 32 */
    FILE *f = fopen(path, "r+b");
    char buf[512];
    size_t got = fread(buf, 1, sizeof buf, f);
    const char *name = "blk.0.attn_q.weight";
    for (size_t i = 0; i + strlen(name) + 12 < got; i++)
        if (!memcmp(buf + i, name, strlen(name))) {
            fseek(f, (long)(i + strlen(name) + 4), SEEK_SET);
            fwrite(&inner, 8, 1, f);
            break;
        }
    fclose(f);
    return 0;
}

static void test_corrupt(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/loom-test-quant-%d.gguf", (int)getpid());
    CHECK(write_q8(path, 0, 0) == 0, "write: %s", loom_last_error());
    loom_source *s = loom_source_open(path);
    CHECK(s && loom_source_find(s, "blk.0.attn_q.weight")->type == LOOM_Q8_0, "a good q8_0 file loads: %s",
          loom_last_error());
    loom_source_close(s);
    uint16_t bads[2] = {0x7e00, 0x7c00}; /* NaN, +inf */
    for (int i = 0; i < 2; i++) {
        write_q8(path, bads[i], 0);
        s = loom_source_open(path);
        CHECK(!s && strstr(loom_last_error(), "blk.0.attn_q.weight") && strstr(loom_last_error(), "block 1") &&
                  strstr(loom_last_error(), "NaN or infinite scale"),
              "bad scale: %s", loom_last_error());
        loom_source_close(s);
    }
    write_q8(path, 0, 31);
    s = loom_source_open(path);
    CHECK(!s && strstr(loom_last_error(), "blk.0.attn_q.weight") && strstr(loom_last_error(), "31"),
          "inner dim 31: %s", loom_last_error());
    loom_source_close(s);
    unlink(path);
}

int main(void) {
    test_layouts();
    test_roundtrip();
    test_dots();
    test_q01_avx2();
    test_corrupt();
    CHECK_DONE();
}
