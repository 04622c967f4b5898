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
    test_corrupt();
    CHECK_DONE();
}
