/* The block formats added beside Q8_0/Q4_0/Q4_K/Q6_K (Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL,
 * IQ4_XS): the library's dequantiser against an independent decoder written here from the layout
 * (byte offsets of the GGUF/ggml block, scattering each byte's bits to its elements, where the
 * library gathers per element), on random blocks and on the library's own quantiser output;
 * quantise -> dequantise error bounds; a NaN/inf scale refused at load for each type; a GGUF with
 * each type loads and the CPU backend's matmul agrees with a double-precision product of the
 * decoded weights: with x rounded to 8-bit blocks as the integer rows kernel does (up to 8 rows,
 * every kernel flavour, and the AVX-512 VNNI panel GEMM past that), with x itself past that
 * elsewhere (the dequantise-to-f32 prefill path). */
#include "tests/unit/check.h"
#include "backends/cpu/cpu_quant.h"
#include "core/qblock.h"
#include "formats/gguf.h"
#include "tests/unit/test_cpu_graph.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t urand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float frand(void) { return (float)((urand() >> 8) * (1.0 / 16777216.0)) * 2 - 1; } /* [-1, 1) */
static float grand(void) { return frand() + frand() + frand(); }

static const loom_dtype types[] = {LOOM_Q4_1, LOOM_Q5_0, LOOM_Q5_1,   LOOM_Q2_K,
                                   LOOM_Q3_K, LOOM_Q5_K, LOOM_IQ4_NL, LOOM_IQ4_XS};
#define NT (int)(sizeof types / sizeof types[0])

static const int kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static float h16(const uint8_t *p) { return loom_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* 32 nibbles as Q4_0 orders them: byte j low nibble -> element j, high -> element j + 16. */
static void nibbles32(const uint8_t *qs, int *q) {
    for (int j = 0; j < 16; j++) q[j] = qs[j] & 15, q[j + 16] = qs[j] >> 4;
}

/* Q3_K's 16 scales (biased by 32) from scales[12]: low nibbles of bytes 0-7 for 0-7, high nibbles
 * for 8-15; byte 8 + k holds the top 2 bits of scales k, 4 + k, 8 + k, 12 + k. */
static void q3k_scales(const uint8_t *s, int *sc) {
    for (int i = 0; i < 16; i++) sc[i] = 0;
    for (int i = 0; i < 8; i++) sc[i] |= s[i] & 15, sc[i + 8] |= s[i] >> 4;
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 4; j++) sc[4 * j + k] |= (s[8 + k] >> (2 * j) & 3) << 4;
}

/* Q4_K / Q5_K's 8 scales and minimums from scales[12]: bytes 0-3 the low 6 bits of scales 0-3
 * (top 2 bits: of scales 4-7), bytes 4-7 the same for the minimums, bytes 8-11 the low nibbles of
 * scales 4-7 and (high nibbles) minimums 4-7. */
static void k4_scales(const uint8_t *s, int *sc, int *mn) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63, sc[j + 4] = (s[j] >> 6) << 4;
        mn[j] = s[j + 4] & 63, mn[j + 4] = (s[j + 4] >> 6) << 4;
        sc[j + 4] |= s[j + 8] & 15, mn[j + 4] |= s[j + 8] >> 4;
    }
}

/* The independent decoder: one block at b to y (blck floats). Offsets from the ggml structs:
 * q4_1 {d, m, qs[16]}, q5_0 {d, qh[4], qs[16]}, q5_1 {d, m, qh[4], qs[16]}, iq4_nl {d, qs[16]},
 * q2_K {scales[16], qs[64], d, dmin}, q3_K {hmask[32], qs[64], scales[12], d},
 * q5_K {d, dmin, scales[12], qh[32], qs[128]}, iq4_xs {d, scales_h, scales_l[4], qs[128]}. */
static void decode(loom_dtype t, const uint8_t *b, float *y) {
    int q[256];
    switch (t) {
    case LOOM_Q4_1:
        nibbles32(b + 4, q);
        for (int e = 0; e < 32; e++) y[e] = (float)q[e] * h16(b) + h16(b + 2);
        break;
    case LOOM_Q5_0:
    case LOOM_Q5_1: {
        const uint8_t *qh = b + (t == LOOM_Q5_0 ? 2 : 4);
        nibbles32(qh + 4, q);
        for (int byte = 0; byte < 4; byte++)
            for (int bit = 0; bit < 8; bit++)
                if (qh[byte] >> bit & 1) q[8 * byte + bit] += 16;
        for (int e = 0; e < 32; e++)
            y[e] = t == LOOM_Q5_0 ? (float)(q[e] - 16) * h16(b) : (float)q[e] * h16(b) + h16(b + 2);
        break;
    }
    case LOOM_IQ4_NL:
        nibbles32(b + 2, q);
        for (int e = 0; e < 32; e++) y[e] = h16(b) * (float)kv[q[e]];
        break;
    case LOOM_Q2_K:
    case LOOM_Q3_K: {
        /* 2-bit fields: byte l of half h holds elements 128h + 32k + l at bits 2k */
        const uint8_t *qs = b + (t == LOOM_Q2_K ? 16 : 32);
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++)
                for (int k = 0; k < 4; k++) q[128 * h + 32 * k + l] = qs[32 * h + l] >> (2 * k) & 3;
        if (t == LOOM_Q2_K) {
            float d = h16(b + 80), dmin = h16(b + 82);
            for (int e = 0; e < 256; e++) y[e] = d * (float)(b[e / 16] & 15) * (float)q[e] - dmin * (float)(b[e / 16] >> 4);
            break;
        }
        for (int l = 0; l < 32; l++) /* hmask byte l, bit k: element 32k + l; clear means -4 */
            for (int k = 0; k < 8; k++)
                if (!(b[l] >> k & 1)) q[32 * k + l] -= 4;
        int sc[16];
        q3k_scales(b + 96, sc);
        float d = h16(b + 108);
        for (int e = 0; e < 256; e++) y[e] = d * (float)(sc[e / 16] - 32) * (float)q[e];
        break;
    }
    case LOOM_Q5_K: {
        int sc[8], mn[8];
        const uint8_t *qh = b + 16, *qs = b + 48;
        k4_scales(b + 4, sc, mn);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) q[64 * c + l] = qs[32 * c + l] & 15, q[64 * c + 32 + l] = qs[32 * c + l] >> 4;
        for (int l = 0; l < 32; l++)
            for (int k = 0; k < 8; k++) q[32 * k + l] += (qh[l] >> k & 1) * 16;
        float d = h16(b), dmin = h16(b + 2);
        for (int e = 0; e < 256; e++) y[e] = d * (float)sc[e / 32] * (float)q[e] - dmin * (float)mn[e / 32];
        break;
    }
    case LOOM_IQ4_XS: {
        unsigned sh = (unsigned)(b[2] | b[3] << 8);
        for (int ib = 0; ib < 8; ib++) {
            int ls = (b[4 + ib / 2] >> (ib % 2 ? 4 : 0) & 15) + 16 * (int)(sh >> (2 * ib) & 3);
            nibbles32(b + 8 + 16 * ib, q);
            for (int e = 0; e < 32; e++) y[32 * ib + e] = h16(b) * (float)(ls - 32) * (float)kv[q[e]];
        }
        break;
    }
    default: break;
    }
}

/* The scale-field helpers of core/qblock.h (shared by the reference and the SIMD kernels) against
 * the decoders above, on random scale bytes. */
static void test_scale_helpers(void) {
    int bad = 0;
    for (int it = 0; it < 4000; it++) {
        uint8_t s[12], all[16];
        for (int i = 0; i < 12; i++) s[i] = (uint8_t)urand();
        int sc[16], mn[8];
        k4_scales(s, sc, mn);
        loom_k4_scales8(s, all);
        for (int j = 0; j < 8; j++) {
            uint8_t a, m;
            loom_k4_scale_min(s, j, &a, &m);
            bad += a != sc[j] || m != mn[j] || all[j] != sc[j] || all[8 + j] != mn[j];
        }
        q3k_scales(s, sc);
        for (int i = 0; i < 16; i++) bad += loom_q3k_scale(s, i) != sc[i] - 32;
        uint16_t sh = (uint16_t)urand();
        for (int j = 0; j < 8; j++)
            bad += loom_iq4xs_scale(sh, s, j) != (s[j / 2] >> (j % 2 ? 4 : 0) & 15) + 16 * (int)(sh >> (2 * j) & 3) - 32;
    }
    CHECK(bad == 0, "scale helpers: %d mismatches", bad);
}

/* Where the f16 scales of a block sit (offset of the first, how many consecutive). */
static int scale_at(loom_dtype t, int *n) {
    *n = t == LOOM_Q4_1 || t == LOOM_Q5_1 || t == LOOM_Q2_K || t == LOOM_Q5_K ? 2 : 1;
    return t == LOOM_Q2_K ? 80 : t == LOOM_Q3_K ? 108 : 0;
}

/* Library dequant vs decode() over nb blocks: max |difference| relative to the block's max |y|
 * (0 when the two agree to the last bit; a layout slip gives O(1)). */
static double compare(loom_dtype t, const uint8_t *blocks, int64_t nb) {
    int blck = loom_dtype_blck(t);
    size_t bs = loom_dtype_block_bytes(t);
    float *a = malloc((size_t)(nb * blck) * sizeof *a), b[256];
    loom_dequant_row(t, blocks, a, nb * blck);
    double worst = 0;
    for (int64_t i = 0; i < nb; i++) {
        decode(t, blocks + (size_t)i * bs, b);
        double amax = 1e-30, dmax = 0;
        for (int e = 0; e < blck; e++) {
            amax = fmax(amax, fabs(b[e]));
            dmax = fmax(dmax, fabs((double)a[i * blck + e] - b[e]));
        }
        worst = fmax(worst, dmax / amax);
    }
    free(a);
    return worst;
}

static void test_decoders(void) {
    enum { NB = 64 };
    for (int k = 0; k < NT; k++) {
        loom_dtype t = types[k];
        size_t bs = loom_dtype_block_bytes(t);
        uint8_t *blk = malloc(NB * bs);
        for (size_t i = 0; i < NB * bs; i++) blk[i] = (uint8_t)urand();
        int ns, off = scale_at(t, &ns);
        for (int i = 0; i < NB; i++) /* finite scales of either sign, magnitudes 2^-8 .. 2^3 */
            for (int f = 0; f < ns; f++) {
                uint16_t h = loom_f32_to_f16(frand() * ldexpf(1, (int)(urand() % 12) - 8));
                memcpy(blk + (size_t)i * bs + off + 2 * f, &h, 2);
            }
        /* exact up to the f32 rounding of the same products (a contracted fma may differ in the
         * last bit: measured 0 here) */
        double w = compare(t, blk, NB);
        printf("%-6s random blocks: library vs layout decoder, max rel diff %.2g\n", loom_dtype_name(t), w);
        CHECK(w <= 1e-6, "%s: library dequant differs from the layout decoder (%.3g)", loom_dtype_name(t), w);
        CHECK(loom_dtype_nbytes(t, 512) == 512 / (size_t)loom_dtype_blck(t) * bs, "%s nbytes", loom_dtype_name(t));
        free(blk);
    }
    /* block sizes from the GGUF spec */
    CHECK(loom_dtype_block_bytes(LOOM_Q4_1) == 20 && loom_dtype_block_bytes(LOOM_Q5_0) == 22 &&
              loom_dtype_block_bytes(LOOM_Q5_1) == 24 && loom_dtype_block_bytes(LOOM_IQ4_NL) == 18,
          "32-blocks");
    CHECK(loom_dtype_block_bytes(LOOM_Q2_K) == 84 && loom_dtype_block_bytes(LOOM_Q3_K) == 110 &&
              loom_dtype_block_bytes(LOOM_Q5_K) == 176 && loom_dtype_block_bytes(LOOM_IQ4_XS) == 136,
          "256-blocks");
    for (int k = 0; k < NT; k++)
        CHECK(loom_dtype_from_name(loom_dtype_name(types[k])) == types[k], "name %s", loom_dtype_name(types[k]));
    CHECK(loom_dtype_from_name("Q5_K") == LOOM_Q5_K && loom_dtype_from_name("q9_9") == LOOM_DTYPE_COUNT, "names");
    /* hand-made: Q5_0 element 17 with its qh bit: d = 1, nibble 3 + 16 -> 19 - 16 = 3 */
    uint8_t h5[22] = {0x00, 0x3c, 0, 0, 0x02, 0};
    h5[6 + 1] = 0x30;
    float y[32];
    loom_dequant_row(LOOM_Q5_0, h5, y, 32);
    CHECK(y[17] == 3 && y[1] == -16 && y[0] == -16, "q5_0 hand block: %g %g", y[17], y[1]);
}

/* Round-trip error bounds: relative RMS over a row of bell-shaped values with some loud blocks,
 * measured 2026-12-04 (see printout) with ~20% headroom; and the quantiser's bytes decode the same
 * through decode(). */
static void test_roundtrip(void) {
    /* measured: q4_1 .076, q5_0 .041, q5_1 .037, q2_K .281, q3_K .151, q5_K .035, iq4_nl .073, iq4_xs .074 */
    static const double bound[NT] = {0.09, 0.05, 0.045, 0.34, 0.18, 0.043, 0.087, 0.088};
    int64_t n = 256 * 64;
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    for (int64_t i = 0; i < n; i++) x[i] = grand() * (i % 512 < 32 ? 10 : 1);
    for (int k = 0; k < NT; k++) {
        loom_dtype t = types[k];
        uint8_t *q = malloc(loom_dtype_nbytes(t, n));
        loom_quant_row(t, x, q, n);
        loom_dequant_row(t, q, y, n);
        double e2 = 0, x2 = 0;
        for (int64_t i = 0; i < n; i++) e2 += (double)(x[i] - y[i]) * (x[i] - y[i]), x2 += (double)x[i] * x[i];
        double rms = sqrt(e2 / x2), w = compare(t, q, n / loom_dtype_blck(t));
        printf("%-6s round trip: rms rel %.4f (bound %.2f); decoder agreement %.2g\n", loom_dtype_name(t), rms,
               bound[k], w);
        CHECK(rms < bound[k], "%s round trip: rms rel error %.4f", loom_dtype_name(t), rms);
        CHECK(w <= 1e-6, "%s: quantiser output decodes differently (%.3g)", loom_dtype_name(t), w);
        CHECK(loom_quant_bad_scale(t, q, n / loom_dtype_blck(t)) < 0, "%s: finite scales", loom_dtype_name(t));
        /* zeros stay zeros */
        float z[256] = {0}, o[256];
        loom_quant_row(t, z, q, 256);
        loom_dequant_row(t, q, o, 256);
        bool ok = true;
        for (int i = 0; i < 256; i++) ok &= o[i] == 0;
        CHECK(ok, "%s: zeros round-trip to zeros", loom_dtype_name(t));
        free(q);
    }
    free(x), free(y);
}

/* A GGUF with one [N, K] matrix of type t (and, when bad >= 0, block `bad` with a NaN scale). */
static int write_one(const char *path, loom_dtype t, const float *w, int64_t N, int64_t K, int bad, uint8_t **data) {
    size_t nb = loom_dtype_nbytes(t, N * K);
    uint8_t *q = malloc(nb);
    for (int64_t r = 0; r < N; r++) loom_quant_row(t, w + r * K, q + (size_t)r * loom_dtype_nbytes(t, K), K);
    if (bad >= 0) {
        int ns, off = scale_at(t, &ns);
        uint16_t nan = 0x7e00;
        memcpy(q + (size_t)bad * loom_dtype_block_bytes(t) + off + 2 * (ns - 1), &nan, 2);
    }
    gguf_writer *g = gguf_writer_new();
    int64_t ne[2] = {N, K};
    int rc = gguf_w_str(g, "general.architecture", "llama") ||
             gguf_w_tensor(g, "blk.0.ffn_up.weight", gguf_ggml_from_dtype(t), 2, ne, q, nb) ||
             gguf_writer_save(g, path);
    gguf_writer_free(g);
    *data = q;
    return rc;
}

static void test_load_and_matmul(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/loom-test-qblock-%d.gguf", (int)getpid());
    enum { N = 70, K = 512, M = 17 };
    float *w = malloc(N * K * sizeof *w), *wd = malloc(N * K * sizeof *wd), x[M * K], y[M * N], x8[M * K];
    for (int i = 0; i < N * K; i++) w[i] = grand();
    for (int i = 0; i < M * K; i++) x[i] = grand();
    /* x as the integer kernels see it (8-bit blocks, loom_q8x) */
    for (int i = 0; i < M; i++) {
        loom_q8x xb[K / 32];
        loom_q8x_quant(x + i * K, xb, K);
        for (int j = 0; j < K; j++) x8[i * K + j] = xb[j / 32].d * (float)xb[j / 32].qs[j % 32];
    }
    for (int k = 0; k < NT; k++) {
        loom_dtype t = types[k];
        uint8_t *q;
        CHECK(write_one(path, t, w, N, K, -1, &q) == 0, "write %s: %s", loom_dtype_name(t), loom_last_error());
        loom_source *s = loom_source_open(path);
        const loom_weight *lw = s ? loom_source_find(s, "blk.0.ffn_up.weight") : NULL;
        CHECK(lw && lw->type == t && !memcmp(lw->data, q, loom_dtype_nbytes(t, N * K)), "%s file loads: %s",
              loom_dtype_name(t), loom_last_error());
        /* the CPU matmul (decode and prefill shapes, every flavour) vs the decoded weights in double */
        for (int r = 0; r < N; r++) decode(t, q + (size_t)r * loom_dtype_nbytes(t, K), wd + r * K);
        if (loom_dtype_blck(t) == 32)
            for (int r = 0; r < N; r++)
                for (int b = 1; b < K / 32; b++) decode(t, q + (size_t)r * loom_dtype_nbytes(t, K) + (size_t)b * loom_dtype_block_bytes(t), wd + r * K + 32 * b);
        else
            for (int r = 0; r < N; r++)
                for (int b = 1; b < K / 256; b++) decode(t, q + (size_t)r * loom_dtype_nbytes(t, K) + (size_t)b * loom_dtype_block_bytes(t), wd + r * K + 256 * b);
        const char *isas[] = {"scalar", "avx2", "avx512"};
        /* up to 8 rows the integer rows kernel / GEMV, then f32, or with AVX-512 VNNI the int8 panel
         * GEMM, or for IQ4_* and the k-quants on AVX2 the int16 / 8-bit GEMM (all on 8-bit x) */
        static const int Ms[] = {1, 3, 8, M};
        bool vnni = cpu_qdot_for("avx512") == cpu_qdot_avx512;
        for (int f = 0; f < 3; f++)
            for (int mi = 0; mi < 4; mi++) {
                int m = Ms[mi];
                const float *xr = m <= 8 || (f == 2 && vnni) || (f >= 1 && (cpu_qgemm_iq4_ok(cpu_qdot_avx2, t, K, m) || cpu_qgemm_k_ok(cpu_qdot_avx2, t, K, m))) ? x8 : x;
                loom_backend_opts o = {.n_threads = 2};
                loom_backend *be = loom_cpu_backend_new_isa(&o, isas[f]);
                if (!be) continue; /* the machine lacks the ISA */
                tg g;
                tg_init(&g);
                int tx = tg_input(&g, LOOM_F32, 2, (int64_t[]){m, K}, x);
                int tw = tg_weight(&g, t, 2, (int64_t[]){N, K}, q);
                g.nodes[tw].nbytes = g.w[g.nw - 1].nbytes = loom_dtype_nbytes(t, N * K);
                int ty = tg_matmul(&g, tx, tw, NULL);
                tg_run_out out;
                int rc = tg_run(&g, be, &out);
                CHECK(rc == 0, "%s %s matmul: %s", isas[f], loom_dtype_name(t), out.err);
                if (rc == 0) memcpy(y, tg_f32(&g, &out, ty), (size_t)(m * N) * sizeof(float));
                tg_out_free(&out);
                loom_backend_close(be);
                if (rc) continue;
                double worst = 0;
                for (int i = 0; i < m; i++)
                    for (int n = 0; n < N; n++) {
                        double ref = 0, mag = 0;
                        for (int j = 0; j < K; j++) ref += (double)wd[n * K + j] * xr[i * K + j], mag += fabs((double)wd[n * K + j] * xr[i * K + j]);
                        worst = fmax(worst, fabs(y[i * N + n] - ref) / mag);
                    }
                /* the exact products (integer codes times f32 scales, or f32 weights and x), f32
                 * accumulation: ~1e-7 x sqrt(K) of sum|w x| */
                CHECK(worst < 1e-5, "%s %s M=%d: matmul error %.3g of sum|w x|", isas[f], loom_dtype_name(t), m, worst);
            }
        loom_source_close(s);
        free(q);
        /* a NaN scale in block 5: refused at load, naming tensor, type and block */
        CHECK(write_one(path, t, w, N, K, 5, &q) == 0, "write bad %s", loom_dtype_name(t));
        s = loom_source_open(path);
        const char *e = loom_last_error();
        CHECK(!s && strstr(e, "blk.0.ffn_up.weight") && strstr(e, loom_dtype_name(t)) && strstr(e, "block 5") &&
                  strstr(e, "NaN or infinite scale"),
              "%s NaN scale: %s", loom_dtype_name(t), e);
        loom_source_close(s);
        free(q);
    }
    unlink(path);
    free(w), free(wd);
}

/* |x|-weighted squared error of 32 values against s * kv[nearest code of x / s] (s = 0: all zero),
 * the codes chosen here by a linear scan (the lower value on a tie). */
static double iq4_alt_err(const float *x, float s) {
    double err = 0;
    for (int j = 0; j < 32; j++) {
        int best = 8;
        if (s != 0) {
            float v = x[j] / s, bd = INFINITY;
            for (int k = 0; k < 16; k++)
                if (fabsf(v - (float)kv[k]) < bd) bd = fabsf(v - (float)kv[k]), best = k;
        }
        double e = x[j] - s * (float)kv[best];
        err += fabsf(x[j]) * e * e;
    }
    return err;
}

/* IQ4_XS's scale refinement (2026-12-05): every 32-block's 6-bit scale is locally best, i.e. its
 * stored codes' |x|-weighted error is no larger than with the scale one step up or down (codes
 * re-chosen as the nearest values), over rows of bell-shaped values with loud blocks. */
static void test_iq4xs_local(void) {
    int64_t n = 256 * 64;
    float *x = malloc((size_t)n * sizeof *x), y[256];
    for (int64_t i = 0; i < n; i++) x[i] = grand() * (i % 768 < 32 ? 8 : 1) * (i % 4096 < 256 ? 0.01f : 1);
    uint8_t *q = malloc(loom_dtype_nbytes(LOOM_IQ4_XS, n));
    loom_quant_row(LOOM_IQ4_XS, x, q, n);
    int worse = 0;
    for (int64_t sb = 0; sb < n / 256; sb++) {
        const uint8_t *b = q + 136 * sb;
        const float *xs = x + 256 * sb;
        decode(LOOM_IQ4_XS, b, y);
        unsigned sh = (unsigned)(b[2] | b[3] << 8);
        for (int ib = 0; ib < 8; ib++) {
            int l = (b[4 + ib / 2] >> (ib % 2 ? 4 : 0) & 15) + 16 * (int)(sh >> (2 * ib) & 3) - 32;
            double e0 = 0;
            for (int j = 0; j < 32; j++) {
                double e = xs[32 * ib + j] - y[32 * ib + j];
                e0 += fabsf(xs[32 * ib + j]) * e * e;
            }
            for (int dl = -1; dl <= 1; dl += 2) {
                if (l + dl < -32 || l + dl > 31) continue;
                double ea = iq4_alt_err(xs + 32 * ib, h16(b) * (float)(l + dl));
                worse += e0 > ea * (1 + 1e-6) + 1e-30;
            }
        }
    }
    printf("iq4_xs: %d of %lld block scales beaten by a neighbour\n", worse, (long long)(n / 32));
    CHECK(worse == 0, "iq4_xs: %d block scales with a better neighbour", worse);
    free(x), free(q);
}

int main(void) {
    test_scale_helpers();
    test_decoders();
    test_roundtrip();
    test_iq4xs_local();
    test_load_and_matmul();
    CHECK_DONE();
}
