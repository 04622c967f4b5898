/* Block-quantised weights (all twelve types: Q8_0, Q4_0, Q4_K, Q6_K, Q4_1, Q5_0, Q5_1, Q2_K,
 * Q3_K, Q5_K, IQ4_NL, IQ4_XS) on the Vulkan backend (lavapipe on CI): EMBED, MATMUL and MOE's
 * expert stacks (test_moe says how) against the CPU backend's scalar quant kernels, through compute_node and
 * compute_plan (under ASan one of them per config and case, alternating: tg_vk_path_on), on three
 * device configs (default; no 16-bit storage and no subgroup ops, so decode takes the tiled shader;
 * 16 KiB weight pieces, so weights are chunked at row offsets that are not word aligned).
 *
 * The CPU multiplies quantised W by x quantised to 8 bits (loom_q8x; the types without integer
 * kernels by f32 x and the dequantised W), the GPU by f32 x. The test
 * x is made exactly representable in q8x (every 32-block is integers in [-127, 127] times a power
 * of two, with one element at +-127), so both compute the same products and only the summation
 * order differs: MATMUL within 2^-15 * sum_k |x_k w_k| + 1e-6. A device with cooperative
 * matrices (describe() says "coopmat") runs the prefill matmul (M > 8) on tensor cores with each
 * dequantised weight rounded to f16 (x stays exact: small integers times a power of two), so
 * there the bound is 2^-10 * sum_k |x_k w_k| + 1e-6 (f16's 2^-11 per product, and the order).
 * EMBED dequantises the same way as loom_dequant_row and must match bit for bit.
 *
 * The decode fusions (RMSNORM / SWIGLU folded into the matvec, the residual ADD after it) see
 * arbitrary x, so they are checked against a double-precision product of the dequantised W.
 * No Vulkan device at all: SKIP (exit 77).
 */
#include "tests/unit/check.h"
#include "core/qblock.h"
#define TG_VULKAN_BACKENDS
#include "tests/unit/test_cpu_graph.h"

#include <math.h>
#include <unistd.h>

#define NVK 3
static loom_backend *cpu, *vk[NVK];
static const char *vk_name[NVK] = {"vulkan", "vulkan(no f16 storage, no subgroup)", "vulkan(16 KiB weight pieces)"};
static const loom_dtype qtypes[] = {LOOM_Q8_0, LOOM_Q4_0, LOOM_Q4_K, LOOM_Q6_K, LOOM_Q4_1,   LOOM_Q5_0,
                                    LOOM_Q5_1, LOOM_Q2_K, LOOM_Q3_K, LOOM_Q5_K, LOOM_IQ4_NL, LOOM_IQ4_XS};
#define NQ (int)(sizeof qtypes / sizeof qtypes[0])
static bool vk_coopmat[NVK]; /* the backend runs prefill matmuls on cooperative matrices */
static bool vk_cm2;          /* the default one on VK_NV_cooperative_matrix2 (LOOM_VK_CM2) */

/* A quantised weight leaf (tg_weight sizes leaves by loom_dtype_size, 0 for block types). */
static int q_weight(tg *t, loom_dtype type, int64_t rows, int64_t cols, const void *data) {
    int i = tg_weight(t, type, 2, (int64_t[]){rows, cols}, data);
    t->nodes[i].nbytes = t->w[t->nw - 1].nbytes = loom_dtype_nbytes(type, rows * cols);
    return i;
}

/* N x K random weights quantised to t; the dequantised values in deq (N * K). */
static void *q_make(loom_dtype t, int64_t N, int64_t K, float scale, float *deq) {
    float *w = malloc(sizeof(float) * N * K);
    tg_fill(w, (size_t)(N * K), scale);
    size_t rb = loom_dtype_nbytes(t, K);
    char *q = malloc(rb * N + 4);
    for (int64_t n = 0; n < N; n++) {
        loom_quant_row(t, w + n * K, q + n * rb, K);
        loom_dequant_row(t, q + n * rb, deq + n * K, K);
    }
    free(w);
    return q;
}

/* n values (n a multiple of 32) that loom_q8x_quant represents exactly */
static void q8_exact(float *x, size_t n) {
    for (size_t b = 0; b < n / 32; b++) {
        float s = ldexpf(1.0f, (int)(b % 5) - 6);
        for (int j = 0; j < 32; j++) x[32 * b + j] = s * (float)(int)(tg_randf() * 127.0f);
        x[32 * b + (b * 7) % 32] = (b % 2 ? -127.0f : 127.0f) * s;
    }
}

/* The decode GEMV cases' largest error as a fraction of their bound's sum_k |x_k w_k| (reported at
 * the end: the measured margin under the 2^-15 bound). gemv_amax: that sum for the case running,
 * 0 outside the GEMV cases. */
static double gemv_amax, gemv_worst, fused_worst;
static char gemv_worst_what[160];

/* LOOM_VK_GEMV_Q=dp*: the decode GEMV quantises x to 8 bits per 32-block (shaders/quantx.comp: d =
 * max |x| / 127, q = round(x / d)), so |x - d q| <= d / 2 and an output may be off by up to
 * sum_b (d_b / 2) sum_{k in b} |w_k| beside f32 rounding: qx_bound is that sum for row n of w (x of
 * length K). The q8-exact x of matmul_case is quantised exactly (d = the block's power of two); the
 * random x of gemv_rand_case and the fusions are not, and are held to this bound (plus the f32 one). */
static bool dp_on;
static double qx_worst;     /* largest error / qx_bound seen (the measured share of the bound) */
static double qx_rel_worst; /* ... and / sum|x w| in the random-x GEMV cases */
static double qx_bound(const double *x, const float *w, int64_t K) {
    double e = 0;
    for (int64_t b = 0; b < K / 32; b++) {
        double am = 0, sw = 0;
        for (int k = 0; k < 32; k++) {
            am = fmax(am, fabs(x[32 * b + k]));
            sw += fabs(w[32 * b + k]);
        }
        e += am / 127 / 2 * sw;
    }
    return e;
}

static void cmp(const char *what, const char *be, const float *got, const float *ref, size_t n, double atol) {
    size_t bad = 0, at = 0;
    double worst = -1;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (gemv_amax > 0 && d / gemv_amax > gemv_worst) {
            gemv_worst = d / gemv_amax;
            snprintf(gemv_worst_what, sizeof gemv_worst_what, "%s [%s]", what, be);
        }
        bool ok = atol < 0 ? memcmp(&got[i], &ref[i], 4) == 0 : d <= atol;
        if (!ok) {
            if (!(d <= worst)) worst = d, at = i;
            bad++;
        }
    }
    CHECK(bad == 0, "%s [%s]: %zu of %zu values off; e.g. [%zu] got %.9g want %.9g", what, be, bad, n, at, got[at],
          ref[at]);
}

static unsigned vcase; /* cases compared by run_cmp / moe_q_case: under ASan one path per backend (tg_vk_path_on) */

/* Run t on the CPU (reference) and on the Vulkan backends (mask: which) through both paths;
 * atol_cm replaces atol on a cooperative-matrix backend. */
static void run_cmp(tg *t, int out, const char *what, double atol, double atol_cm, unsigned mask) {
    tg_run_out ro;
    int rc = tg_run(t, cpu, &ro);
    CHECK(rc == 0, "%s [cpu]: %s", what, ro.err);
    size_t n = loom_node_bytes(&t->nodes[out]) / 4;
    vcase++;
    for (int v = 0; v < NVK && rc == 0; v++) {
        if (!vk[v] || !(mask & (1u << v))) continue;
        for (int mode = 0; mode < 2; mode++) {
            if (!tg_vk_path_on(vcase, v, mode)) continue;
            char name[96];
            snprintf(name, sizeof name, "%s %s", vk_name[v], mode ? "plan" : "node");
            tg_run_out o;
            int r2 = mode ? tg_run_plan(t, vk[v], &o, 1, NULL, 0, NULL) : tg_run(t, vk[v], &o);
            CHECK(r2 == 0, "%s [%s]: %s", what, name, o.err);
            if (r2 == 0) cmp(what, name, tg_f32(t, &o, out), tg_f32(t, &ro, out), n, vk_coopmat[v] ? atol_cm : atol);
            tg_out_free(&o);
        }
    }
    tg_out_free(&ro);
}

/* ---- EMBED ------------------------------------------------------------------------------------ */
static void test_embed(void) {
    const int64_t V = 300, S = 7;
    int32_t ids[7] = {0, 299, 5, 5, 170, 298, 1};
    for (int qi = 0; qi < NQ; qi++) {
        loom_dtype qt = qtypes[qi];
        int64_t D = loom_dtype_blck(qt) == 32 ? 96 : 512; /* 300 rows: 40-150 KB, chunked at 16 KiB */
        float *deq = malloc(sizeof(float) * V * D);
        void *w = q_make(qt, V, D, 2.0f, deq);
        tg t;
        tg_init(&t);
        int e = tg_embed(&t, q_weight(&t, qt, V, D, w), ids, S, NULL);
        char what[64];
        snprintf(what, sizeof what, "embed %s", loom_dtype_name(qt));
        run_cmp(&t, e, what, -1, -1, qi < 4 ? 7 : 1); /* the later types: the default config */
        free(w), free(deq);
    }
}

/* ---- MATMUL ----------------------------------------------------------------------------------- */
static void matmul_case(loom_dtype qt, int64_t M, int64_t N, int64_t K, bool bias, int x_skip, unsigned mask) {
    /* x_skip > 0: x is a view starting x_skip floats into a bigger tensor (unaligned binding) */
    float *x = malloc((M * K + x_skip) * sizeof(float)), *deq = malloc(N * K * sizeof(float));
    float *b = malloc(N * sizeof(float));
    for (int i = 0; i < x_skip; i++) x[i] = 1e30f;
    q8_exact(x + x_skip, (size_t)(M * K));
    tg_fill(b, (size_t)N, 0.5f);
    void *w = q_make(qt, N, K, 0.5f, deq);
    tg t;
    tg_init(&t);
    int tx = x_skip ? tg_input(&t, LOOM_F32, 1, (int64_t[]){M * K + x_skip}, x)
                    : tg_input(&t, LOOM_F32, 2, (int64_t[]){M, K}, x);
    int xv = x_skip ? tg_view(&t, tx, 2, (int64_t[]){M, K}, (size_t)x_skip * 4) : tx;
    int tw = q_weight(&t, qt, N, K, w);
    int y = tg_matmul(&t, xv, tw, bias ? b : NULL);
    double amax = tg_matmul_amax(x + x_skip, deq, bias ? b : NULL, M, N, K);
    char what[128];
    tg_matmul_name(what, sizeof what, qt, M, N, K, bias, x_skip);
    gemv_amax = M <= 8 ? amax : 0;
    run_cmp(&t, y, what, ldexp(amax, -15) + 1e-6, M > 8 ? ldexp(amax, -10) + 1e-6 : ldexp(amax, -15) + 1e-6, mask);
    gemv_amax = 0;
    free(x), free(deq), free(b), free(w);
}

/* A decode GEMV on random x (not q8-exact: the dp* GEMVs round it), M x K by N x K, against a double
 * product of the dequantised W: within 2^-15 sum|x w| + 1e-6 (f32 rounding), plus qx_bound under dp*. */
static void gemv_rand_case(loom_dtype qt, int64_t M, int64_t N, int64_t K) {
    float *x = malloc(M * K * sizeof(float)), *deq = malloc(N * K * sizeof(float));
    tg_fill(x, (size_t)(M * K), 1.0f);
    for (int64_t i = 0; i < M * K; i += 7) x[i] *= 9.0f; /* uneven blocks: some d set by an outlier */
    void *w = q_make(qt, N, K, 0.5f, deq);
    tg t;
    tg_init(&t);
    int tx = tg_input(&t, LOOM_F32, 2, (int64_t[]){M, K}, x);
    int y = tg_matmul(&t, tx, q_weight(&t, qt, N, K, w), NULL);
    char what[128];
    snprintf(what, sizeof what, "gemv random x %s M=%lld N=%lld K=%lld", loom_dtype_name(qt), (long long)M,
             (long long)N, (long long)K);
    double *xd = malloc(K * sizeof(double));
    tg_run_out o;
    int rc = tg_run_plan(&t, vk[0], &o, 1, NULL, 0, NULL);
    CHECK(rc == 0, "%s: %s", what, o.err);
    size_t bad = 0;
    char first[200] = "";
    for (int64_t m = 0; rc == 0 && m < M; m++) {
        for (int64_t k = 0; k < K; k++) xd[k] = x[m * K + k];
        for (int64_t n = 0; n < N; n++) {
            double ref = 0, mag = 0;
            for (int64_t k = 0; k < K; k++) ref += xd[k] * deq[n * K + k], mag += fabs(xd[k] * deq[n * K + k]);
            double qb = dp_on ? qx_bound(xd, deq + n * K, K) : 0, e = fabs(tg_f32(&t, &o, y)[m * N + n] - ref);
            if (qb > 0) qx_worst = fmax(qx_worst, e / qb), qx_rel_worst = fmax(qx_rel_worst, e / mag);
            if (!dp_on && e / mag > gemv_worst) {
                gemv_worst = e / mag;
                snprintf(gemv_worst_what, sizeof gemv_worst_what, "%s [%s]", what, vk_name[0]);
            }
            if (!(e <= ldexp(mag, -15) + 1e-6 + qb) && bad++ == 0)
                snprintf(first, sizeof first, "[%lld, %lld] got %.9g want %.9g (bound %.3g + %.3g)", (long long)m,
                         (long long)n, tg_f32(&t, &o, y)[m * N + n], ref, ldexp(mag, -15) + 1e-6, qb);
        }
    }
    CHECK(bad == 0, "%s [%s]: %zu values off; e.g. %s", what, vk_name[0], bad, first);
    tg_out_free(&o);
    free(x), free(deq), free(w), free(xd);
}

/* The decode GEMV (M <= 8) on every type and on the shapes its work split has edges at: K of one
 * block, K not a multiple of 64 or of the units per invocation, long K over few rows (a row group
 * spans several subgroups), rows not a multiple of the rows per workgroup or fewer than one
 * group, many workgroups, unaligned x; the two largest also on 16 KiB weight pieces (chunks of rows
 * at byte offsets that are not word aligned; the other cases fit one piece). Whichever GEMV LOOM_VK_GEMV_Q selects (ctest
 * runs `test_vulkan_quant gemv` under each of blk1, blk2, blk4: tests/vulkan_quant.cmake). */
static void test_gemv(int nq) {
    for (int qi = 0; qi < nq; qi++) {
        loom_dtype qt = qtypes[qi];
        int64_t b = loom_dtype_blck(qt);
        matmul_case(qt, 1, 37, b, false, 0, 1);
        matmul_case(qt, 1, 130, b == 32 ? 160 : 768, true, 0, 5); /* 16 KiB pieces: chunked */
        matmul_case(qt, 3, 33, b == 32 ? 96 : 512, true, 0, 1);
        if (qi < 4) matmul_case(qt, 8, 5, b, qi % 2 == 0, 0, 1); /* M = 8: the slowest lavapipe compiles */
        matmul_case(qt, 1, 40, b == 32 ? 64 : 256, true, 3, 1);
        matmul_case(qt, 1, 9, b == 32 ? 32 * 70 : 256 * 9, false, 0, 1);
        matmul_case(qt, 1, 2100, b == 32 ? 64 : 256, qi % 2 == 1, 0, 5); /* chunked */
        if (b == 256) matmul_case(qt, 2, 35, 2560, true, 0, 1); /* K > 2048: Q4_K/Q5_K/Q6_K's 2-sub-block units */
        gemv_rand_case(qt, 2, 37, b == 32 ? 96 : 512);
    }
}

static void test_matmul(void) {
    static const int64_t Ms[] = {1, 3, 8, 17, 70};
    for (int qi = 0; qi < NQ; qi++) {
        loom_dtype qt = qtypes[qi];
        bool k256 = loom_dtype_blck(qt) == 256;
        /* K: one block, several, and (32-blocks) not a multiple of 64 or 256 */
        int64_t shapes[3][2] = {{37, k256 ? 256 : 32}, {130, k256 ? 512 : 96}, {33, k256 ? 768 : 160}};
        if (qi >= 4) {
            /* the later types share every shader but the block decoder (wload8) with the first
             * four: their decoder through the GEMV (M = 1, default config), the 64 x 64 tiles (17,
             * the no-subgroup config) and the 128 x 128 tiles or, on a coopmat device, the f16
             * copy (130, the third config); one config per case: on lavapipe the pipeline
             * compiles of 8 more types x 3 configs dominate the time */
            matmul_case(qt, 1, shapes[1][0], shapes[1][1], true, 0, 1);
            matmul_case(qt, 17, shapes[2][0], shapes[2][1], false, 0, 2);
            matmul_case(qt, 130, 150, k256 ? 256 : 96, false, 0, 4);
            /* LOOM_VK_CM2 on the default config: the later types' decode functions of
             * matmul_cm2.comp (ragged M and N, several K steps, bias, split K), which the 16 KiB
             * pieces config mostly leaves to the KHR kernel (chunks not 16-byte aligned) */
            if (vk_cm2) {
                matmul_case(qt, 70, 33, k256 ? 768 : 160, true, 0, 1);
                matmul_case(qt, 130, 150, k256 ? 512 : 96, false, 0, 1);
                matmul_case(qt, 20, 40, 1280, true, 0, 1);
            }
            continue;
        }
        for (int si = 0; si < 3; si++)
            for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
                matmul_case(qt, Ms[mi], shapes[si][0], shapes[si][1], (si + mi) % 2 == 0, 0, 7);
        /* few output tiles and a long K: split K, partial products summed by a second dispatch */
        matmul_case(qt, 20, 40, 1280, qi % 2 == 0, 0, 7);
        /* many rows: the GEMV puts several rows in a workgroup */
        matmul_case(qt, 1, 2100, k256 ? 256 : 64, true, 0, 7);
        /* unaligned x (the scalar weight loads of the GEMV) */
        matmul_case(qt, 2, 40, k256 ? 256 : 64, true, 3, 7);
        /* unaligned x in the tiled kernels (scalar x tile loads), and on a coopmat device the
         * third config's 128 x 128 tensor-core tiles (it takes them for every M >= 128) */
        matmul_case(qt, 19, 40, k256 ? 256 : 64, false, 3, 7);
        matmul_case(qt, 130, 150, k256 ? 256 : 96, qi % 2 == 1, 0, 4);
    }
    /* the 128 x 128 tile shader: >= 128 tiles of 128 x 128 (default device only: lavapipe is slow) */
    matmul_case(LOOM_Q8_0, 130, 8200, 32, true, 0, 1);
    matmul_case(LOOM_Q4_0, 129, 8193, 32, false, 0, 1);
}

/* `test_vulkan_quant qtile` (ctest runs it under LOOM_VK_CM_QTILE=1): the tiled prefill cases that
 * reach the in-tile decoders (shaders/qtile.glsl; on lavapipe through matmul_q.comp's QTILE build)
 * on every type, fewer than test_matmul's so that lavapipe's pipeline compiles stay short: 64 x 64
 * tiles with ragged M and N (default config), chunked weights at unaligned row offsets (16 KiB
 * pieces), a split K and unaligned x (the first four types), and the 128 x 128 tiles (Q4_0). */
static void test_qtile(void) {
    for (int qi = 0; qi < NQ; qi++) {
        loom_dtype qt = qtypes[qi];
        bool k256 = loom_dtype_blck(qt) == 256;
        matmul_case(qt, 17, 33, k256 ? 512 : 160, qi % 2 == 0, 0, 1);
        matmul_case(qt, 130, 150, k256 ? 256 : 96, qi % 2 == 1, 0, 4);
        if (qi < 4) {
            matmul_case(qt, 20, 40, 1280, qi % 2 == 0, 0, 1);
            matmul_case(qt, 19, 40, k256 ? 256 : 64, false, 3, 2);
        }
    }
    matmul_case(LOOM_Q4_0, 129, 8193, 32, false, 0, 1);
}

/* ---- decode fusions: RMSNORM -> matvec -> residual ADD; SWIGLU -> matvec ---------------------- */
static void test_fused(int nq) {
    for (int qi = 0; qi < nq; qi++) { /* the fusions do not depend on the block decoder */
        loom_dtype qt = qtypes[qi];
        int64_t K = loom_dtype_blck(qt) == 32 ? 96 : 256, N = K, M = 2;
        float *x = malloc(sizeof(float) * M * K), *g = malloc(sizeof(float) * M * K), *u = malloc(sizeof(float) * M * K);
        float *nw = malloc(sizeof(float) * K), *deq = malloc(sizeof(float) * N * K);
        tg_fill(x, (size_t)(M * K), 1.0f);
        tg_fill(g, (size_t)(M * K), 2.0f);
        tg_fill(u, (size_t)(M * K), 1.0f);
        for (int64_t k = 0; k < K; k++) nw[k] = 1.0f + 0.5f * tg_randf();
        void *w = q_make(qt, N, K, 0.5f, deq);
        for (int sw = 0; sw < 2; sw++) {
            tg t;
            tg_init(&t);
            int tx = tg_input(&t, LOOM_F32, 2, (int64_t[]){M, K}, x), tin, y, out;
            if (!sw) {
                int tn = tg_weight(&t, LOOM_F32, 1, (int64_t[]){K}, nw);
                tin = tg_node(&t, LOOM_OP_RMSNORM, LOOM_F32, 2, (int64_t[]){M, K}, 2, tx, tn);
                t.nodes[tin].fp[0] = 1e-5f;
            } else {
                int tu = tg_input(&t, LOOM_F32, 2, (int64_t[]){M, K}, u);
                t.input_data[tx] = g;
                tin = tg_node(&t, LOOM_OP_SWIGLU, LOOM_F32, 2, (int64_t[]){M, K}, 2, tx, tu);
            }
            int tw = q_weight(&t, qt, N, K, w);
            y = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){M, N}, 2, tin, tw);
            out = sw ? y : tg_node(&t, LOOM_OP_ADD, LOOM_F32, 2, (int64_t[]){M, N}, 2, y, tx);
            t.nodes[out].flags |= LOOM_NODE_OUTPUT;
            /* reference in double from the dequantised weights */
            double *ref = malloc(sizeof(double) * M * N), *qb = malloc(sizeof(double) * M * N), amax = 0;
            for (int64_t m = 0; m < M; m++) {
                double xi[256], ss = 0;
                for (int64_t k = 0; k < K; k++) ss += (double)x[m * K + k] * x[m * K + k];
                for (int64_t k = 0; k < K; k++) {
                    double gv = g[m * K + k];
                    xi[k] = sw ? gv / (1 + exp(-gv)) * u[m * K + k] : x[m * K + k] / sqrt(ss / K + 1e-5) * nw[k];
                }
                for (int64_t n = 0; n < N; n++) {
                    double a = sw ? 0 : x[m * K + n], mag = fabs(a);
                    for (int64_t k = 0; k < K; k++) a += xi[k] * deq[n * K + k], mag += fabs(xi[k] * deq[n * K + k]);
                    ref[m * N + n] = a;
                    qb[m * N + n] = dp_on ? qx_bound(xi, deq + n * K, K) : 0;
                    if (mag > amax) amax = mag;
                }
            }
            for (int v = 0; v < NVK; v++) {
                if (!vk[v]) continue;
                tg_run_out o;
                int rc = tg_run_plan(&t, vk[v], &o, 1, NULL, 0, NULL);
                CHECK(rc == 0, "fused %s [%s]: %s", loom_dtype_name(qt), vk_name[v], o.err);
                const float *got = rc == 0 ? tg_f32(&t, &o, out) : NULL;
                double worst = 0, over = 0; /* over: the largest error past its bound (<= 0: within) */
                for (int64_t i = 0; got && i < M * N; i++) {
                    double e = fabs(got[i] - ref[i]);
                    worst = fmax(worst, e);
                    over = fmax(over, e - (1e-5 * amax + qb[i]));
                    if (qb[i] > 0) qx_worst = fmax(qx_worst, e / qb[i]);
                }
                if (got && worst / amax > fused_worst) fused_worst = worst / amax;
                CHECK(over <= 0, "fused %s %s [%s]: error %.3g of %.3g (%.3g past the bound%s)",
                      sw ? "swiglu" : "rmsnorm+add", loom_dtype_name(qt), vk_name[v], worst, amax, over,
                      dp_on ? ", with x's 8-bit rounding" : "");
                tg_out_free(&o);
            }
            free(ref), free(qb);
        }
        free(x), free(g), free(u), free(nw), free(deq), free(w);
    }
}

/* ---- decode chain: the decode folds of LOOM_VK_QX_FOLD (the 8-bit x by its producer, the attention
 * splits merged by the attention) ------------------------------------------------------------------ */
/* Two llama decoder layers (sharing weights, each with its own 256-key cache holding 150 keys, so
 * attention splits its keys in two) at S = 1 and 2 rows (and S = 1 at position 40: one split with keys;
 * and S = 1 at position 100 of a 128-row cache: no splits at all, attention_cq's direct branch all the same),
 * then a final RMSNORM read through a VIEW and two GEMVs in a row, with block-quantised
 * W (of the first nq types, chain_type), through the plan path with vulkan-fuse. The last split to
 * finish merges them (attention_c; no attn_combine.comp); under dp* it also writes the o projection's
 * 8-bit x (attention_cq), the o and down GEMVs with their residual ADD the next RMSNORM's x times its
 * weight (matvec_dp.comp EPI 2), gate and up take one dispatch writing silu(gate) * up for down (DP_GU),
 * the first tail GEMV writes the second's x (EPI 1); the 16 KiB-pieces config chunks the weights, so
 * there the GEMVs fall back to quantx.comp; and once more with LOOM_VK_ACOMB=0 (attn_combine.comp, which
 * then writes the 8-bit x: attn_combine_q). Checked (a) against the same run under LOOM_VK_QX_FOLD=0
 * (attn_combine.comp, every x quantised by quantx.comp): the same arithmetic on the same f32 values, so
 * the outputs agree to f32 reordering (bound 1e-6 x max |y|; lavapipe: 0, bit for bit), and (b)
 * against the CPU on f32 weights holding the dequantised values (exact x): under dp* the 8-bit
 * rounding of x through two layers, bound CHAIN_TOL x max |y| (measured 0.013-0.015 on lavapipe),
 * else CHAIN_TOL_F32. */
#define CHAIN_TOL 0.05
#define CHAIN_TOL_F32 1e-5 /* without dp* (x in f32): the summation order only (measured 3.7e-7 on lavapipe) */
/* the matrices' types (indices into qtypes, mod nq): q, k, v, o, gate, up, down, the two tail GEMVs;
 * gate and up of one type, so that they take one dispatch (DP_GU) */
static const int chain_type[9] = {0, 1, 2, 3, 2, 2, 3, 1, 0};
static double chain_worst_a, chain_worst_b;
static int chain_graph(tg *t, bool quant, int nq, int64_t S, int64_t C, void *const *wq, float *const *wf, float *const *nrm,
                       float **cache, const float *x, const int32_t *pos, int *out) {
    const int64_t D = 256, F = 512, V = 96;
    const int H = 4, Hkv = 2, hd = 64, W = Hkv * hd;
    static const int64_t wshape[8][2] = {{H * hd, D}, {W, D}, {W, D}, {D, H * hd}, {F, D}, {F, D}, {D, F}, {D, D}};
    tg_init(t);
    t->backend_pass = true;
    int tx = tg_input(t, LOOM_F32, 2, (int64_t[]){S, D}, x), tpos = tg_input(t, LOOM_I32, 1, (int64_t[]){S}, pos);
    int tw[9];
    for (int j = 0; j < 9; j++) {
        int64_t r = j == 8 ? V : wshape[j][0], c = j == 8 ? D : wshape[j][1];
        tw[j] = quant ? q_weight(t, qtypes[chain_type[j] % nq], r, c, wq[j]) : tg_weight(t, LOOM_F32, 2, (int64_t[]){r, c}, wf[j]);
    }
    int tn1 = tg_weight(t, LOOM_F32, 1, (int64_t[]){D}, nrm[0]), tn2 = tg_weight(t, LOOM_F32, 1, (int64_t[]){D}, nrm[1]);
    int64_t row[2] = {S, D};
    int h = tx;
    for (int l = 0; l < 2; l++) {
        int sk = tg_state(t, C, W, cache[2 * l]), sv = tg_state(t, C, W, cache[2 * l + 1]);
        int xn = tg_node(t, LOOM_OP_RMSNORM, LOOM_F32, 2, row, 2, h, tn1);
        t->nodes[xn].fp[0] = 1e-5f;
        int q = tg_node(t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){S, H * hd}, 2, xn, tw[0]);
        int k = tg_node(t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){S, W}, 2, xn, tw[1]);
        int v = tg_node(t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){S, W}, 2, xn, tw[2]);
        int qr = tg_node(t, LOOM_OP_ROPE, LOOM_F32, 2, (int64_t[]){S, H * hd}, 2, q, tpos);
        t->nodes[qr].ip[0] = H, t->nodes[qr].ip[1] = hd, t->nodes[qr].ip[2] = 0, t->nodes[qr].ip[3] = hd;
        t->nodes[qr].fp[0] = 10000.0f, t->nodes[qr].fp[1] = 1.0f;
        int kr = tg_node(t, LOOM_OP_ROPE, LOOM_F32, 2, (int64_t[]){S, W}, 2, k, tpos);
        t->nodes[kr].ip[0] = Hkv, t->nodes[kr].ip[1] = hd, t->nodes[kr].ip[2] = 0, t->nodes[kr].ip[3] = hd;
        t->nodes[kr].fp[0] = 10000.0f, t->nodes[kr].fp[1] = 1.0f;
        int k2 = tg_node(t, LOOM_OP_KV_STORE, LOOM_F32, 2, t->nodes[sk].ne, 3, sk, kr, tpos);
        tg_inplace(t, k2);
        int v2 = tg_node(t, LOOM_OP_KV_STORE, LOOM_F32, 2, t->nodes[sv].ne, 3, sv, v, tpos);
        tg_inplace(t, v2);
        int o = tg_node(t, LOOM_OP_ATTENTION, LOOM_F32, 2, (int64_t[]){S, H * hd}, 4, qr, k2, v2, tpos);
        t->nodes[o].ip[0] = H, t->nodes[o].ip[1] = Hkv, t->nodes[o].ip[2] = hd;
        t->nodes[o].fp[0] = 0.125f;
        int op = tg_node(t, LOOM_OP_MATMUL, LOOM_F32, 2, row, 2, o, tw[3]);
        int h2 = tg_node(t, LOOM_OP_ADD, LOOM_F32, 2, row, 2, h, op);
        int fn = tg_node(t, LOOM_OP_RMSNORM, LOOM_F32, 2, row, 2, h2, tn2);
        t->nodes[fn].fp[0] = 1e-5f;
        int g = tg_node(t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){S, F}, 2, fn, tw[4]);
        int u = tg_node(t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){S, F}, 2, fn, tw[5]);
        int sw = tg_node(t, LOOM_OP_SWIGLU, LOOM_F32, 2, (int64_t[]){S, F}, 2, g, u);
        int dn = tg_node(t, LOOM_OP_MATMUL, LOOM_F32, 2, row, 2, sw, tw[6]);
        h = tg_node(t, LOOM_OP_ADD, LOOM_F32, 2, row, 2, h2, dn);
    }
    /* the final norm reads the rows through a VIEW, as a model's reads the last row (all of a one-row
     * step): the last down GEMV folds into its ADD all the same and (dp*) writes that norm's 8-bit x */
    int hv = tg_view(t, h, 2, row, 0);
    int fin = tg_node(t, LOOM_OP_RMSNORM, LOOM_F32, 2, row, 2, hv, tn1);
    t->nodes[fin].fp[0] = 1e-5f;
    int p = tg_node(t, LOOM_OP_MATMUL, LOOM_F32, 2, row, 2, fin, tw[7]);
    *out = tg_node(t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){S, V}, 2, p, tw[8]);
    t->nodes[*out].flags |= LOOM_NODE_OUTPUT;
    return 0;
}

static void test_chain(int nq) {
    const int64_t D = 256, F = 512, C = 256, V = 96, W = 128;
    static const int64_t wshape[9][2] = {{256, 256}, {128, 256}, {128, 256}, {256, 256}, {512, 256},
                                         {512, 256}, {256, 512}, {256, 256}, {96, 256}};
    (void)F, (void)V;
    void *wq[9];
    float *wf[9], *nrm[2], *cache[4];
    for (int j = 0; j < 9; j++) {
        wf[j] = malloc(sizeof(float) * wshape[j][0] * wshape[j][1]);
        wq[j] = q_make(qtypes[chain_type[j] % nq], wshape[j][0], wshape[j][1], 0.08f, wf[j]);
    }
    for (int j = 0; j < 2; j++) {
        nrm[j] = malloc(sizeof(float) * D);
        for (int64_t k = 0; k < D; k++) nrm[j][k] = 1.0f + 0.5f * tg_randf();
    }
    for (int j = 0; j < 4; j++) {
        cache[j] = calloc((size_t)(C * W), sizeof(float));
        tg_fill(cache[j], (size_t)(150 * W), 1.0f); /* 150 keys cached: 3 key splits */
    }
    float x[2 * 256];
    tg_fill(x, 2 * 256, 1.0f);
    /* S = 1 and 2 rows at positions 150 (, 151): two key splits merged; S = 1 at 40: one split with keys
     * (written directly by attention_c*) */
    for (int cs = 0; cs < 4; cs++) {
        int64_t S = cs == 1 ? 2 : 1, Cc = cs == 3 ? 128 : C; /* cs 3: a 128-row cache, too short for splits */
        int32_t pos[2] = {cs == 2 ? 40 : cs == 3 ? 100 : 150, 151};
        tg tq, tf;
        int oq, of;
        chain_graph(&tq, true, nq, S, Cc, wq, wf, nrm, cache, x, pos, &oq);
        chain_graph(&tf, false, nq, S, Cc, wq, wf, nrm, cache, x, pos, &of);
        tg_run_out ro;
        int rc = tg_run(&tf, cpu, &ro);
        CHECK(rc == 0, "chain S=%lld p=%d [cpu]: %s", (long long)S, pos[0], ro.err);
        const float *ref = rc == 0 ? tg_f32(&tf, &ro, of) : NULL;
        double amax = 0;
        for (int64_t i = 0; ref && i < S * V; i++) amax = fmax(amax, fabs(ref[i]));
        for (int v = 0; v < NVK && ref; v += 2) { /* the default and the 16 KiB-pieces configs */
            if (!vk[v]) continue;
            /* 0: every fold; 1: none (LOOM_VK_QX_FOLD=0); 2: attn_combine.comp (and its 8-bit x) again */
            static const char *const knob[3] = {"", "LOOM_VK_QX_FOLD", "LOOM_VK_ACOMB"};
            tg_run_out o[3];
            for (int old = 0; old < 3; old++) {
                if (old) setenv(knob[old], "0", 1);
                int r2 = tg_run_plan(&tq, vk[v], &o[old], 1, NULL, 0, NULL);
                if (old) unsetenv(knob[old]);
                CHECK(r2 == 0, "chain S=%lld p=%d [%s%s%s]: %s", (long long)S, pos[0], vk_name[v], old ? ", =0 " : "", knob[old],
                      o[old].err);
            }
            if (o[0].rc == 0 && o[1].rc == 0 && o[2].rc == 0) {
                const float *y = tg_f32(&tq, &o[0], oq), *y0 = tg_f32(&tq, &o[1], oq), *y2 = tg_f32(&tq, &o[2], oq);
                double ea = 0, eb = 0, eb0 = 0;
                for (int64_t i = 0; i < S * V; i++) {
                    ea = fmax(ea, fmax(fabs((double)y[i] - y0[i]), fabs((double)y2[i] - y0[i])));
                    eb = fmax(eb, fabs((double)y[i] - ref[i]));
                    eb0 = fmax(eb0, fabs((double)y0[i] - ref[i]));
                }
                chain_worst_a = fmax(chain_worst_a, ea / amax);
                chain_worst_b = fmax(chain_worst_b, fmax(eb, eb0) / amax);
                CHECK(ea <= 1e-6 * amax, "chain S=%lld p=%d [%s]: LOOM_VK_QX_FOLD on (or LOOM_VK_ACOMB=0) vs off: error %.3g of max %.3g",
                      (long long)S, pos[0], vk_name[v], ea, amax);
                double tol = dp_on ? CHAIN_TOL : CHAIN_TOL_F32;
                CHECK(eb <= tol * amax && eb0 <= tol * amax,
                      "chain S=%lld p=%d [%s]: vs the CPU on exact x: error %.3g (LOOM_VK_QX_FOLD=0: %.3g) of max %.3g",
                      (long long)S, pos[0], vk_name[v], eb, eb0, amax);
            }
            tg_out_free(&o[0]), tg_out_free(&o[1]), tg_out_free(&o[2]);
        }
        tg_out_free(&ro);
    }
    for (int j = 0; j < 9; j++) free(wq[j]), free(wf[j]);
    for (int j = 0; j < 2; j++) free(nrm[j]);
    for (int j = 0; j < 4; j++) free(cache[j]);
}

/* ---- MOE with block-quantised expert stacks --------------------------------------------------- */
/* The Vulkan MOE (moe_mm.comp through wquant.glsl) on quantised [E, F, D] / [E, D, F] stacks against
 * the CPU's scalar MOE on f32 stacks holding the same dequantised values: the same routing and the
 * same products, so only the f32 summation order (and the GPU's exp in the routing softmax) differ.
 * Tolerance 4e-6 + 2e-5 x max |ref| (test_vulkan_ops' f32 MOE bound). A stack larger than the third
 * config's 16 KiB allocations is refused by name there (one binding reads a stack). */
/* The expert stacks of the last moe_q_case (quantised, and their dequantised values): the decode and
 * prefill cases of a type share them (the quantisers take ~40% of test_moe's time under ASan). */
static struct {
    loom_dtype qt;
    int64_t E, D, F;
    float *dg, *du, *dd;
    void *qg, *qu, *qd;
} moe_w;

static void moe_w_free(void) {
    free(moe_w.dg), free(moe_w.du), free(moe_w.dd), free(moe_w.qg), free(moe_w.qu), free(moe_w.qd);
    memset(&moe_w, 0, sizeof moe_w);
}

static void moe_q_case(loom_dtype qt, int64_t S, int64_t E, int k, bool norm, int64_t D, int64_t F, unsigned mask) {
    float *x = malloc(sizeof(float) * S * D), *lg = malloc(sizeof(float) * S * E);
    if (!moe_w.dg || moe_w.qt != qt || moe_w.E != E || moe_w.D != D || moe_w.F != F) {
        moe_w_free();
        moe_w.qt = qt, moe_w.E = E, moe_w.D = D, moe_w.F = F;
        moe_w.dg = malloc(sizeof(float) * E * F * D), moe_w.du = malloc(sizeof(float) * E * F * D);
        moe_w.dd = malloc(sizeof(float) * E * D * F);
        moe_w.qg = q_make(qt, E * F, D, 0.3f, moe_w.dg), moe_w.qu = q_make(qt, E * F, D, 0.3f, moe_w.du);
        moe_w.qd = q_make(qt, E * D, F, 0.3f, moe_w.dd);
    }
    float *dg = moe_w.dg, *du = moe_w.du, *dd = moe_w.dd;
    void *qg = moe_w.qg, *qu = moe_w.qu, *qd = moe_w.qd;
    tg_fill(x, (size_t)(S * D), 1.0f);
    tg_fill(lg, (size_t)(S * E), 3.0f);
    tg tr, tq; /* f32 stacks of the dequantised values (CPU), quantised stacks (Vulkan) */
    int yr = -1, yq = -1;
    for (int q = 0; q < 2; q++) {
        tg *t = q ? &tq : &tr;
        tg_init(t);
        int tx = tg_input(t, LOOM_F32, 2, (int64_t[]){S, D}, x), tl = tg_input(t, LOOM_F32, 2, (int64_t[]){S, E}, lg);
        loom_dtype wt = q ? qt : LOOM_F32;
        int w[3];
        const int64_t ne[3][3] = {{E, F, D}, {E, F, D}, {E, D, F}};
        void *data[3] = {q ? qg : (void *)dg, q ? qu : (void *)du, q ? qd : (void *)dd};
        for (int j = 0; j < 3; j++) {
            w[j] = tg_weight(t, wt, 3, ne[j], data[j]);
            if (q) t->nodes[w[j]].nbytes = t->w[t->nw - 1].nbytes = loom_dtype_nbytes(qt, E * F * D);
        }
        int y = tg_node(t, LOOM_OP_MOE, LOOM_F32, 2, (int64_t[]){S, D}, 5, tx, tl, w[0], w[1], w[2]);
        t->nodes[y].ip[0] = k, t->nodes[y].ip[1] = norm;
        *(q ? &yq : &yr) = y;
    }
    char what[128];
    snprintf(what, sizeof what, "moe %s S=%lld E=%lld k=%d D=%lld F=%lld", loom_dtype_name(qt), (long long)S,
             (long long)E, k, (long long)D, (long long)F);
    tg_run_out ro;
    int rc = tg_run(&tr, cpu, &ro);
    CHECK(rc == 0, "%s [cpu f32]: %s", what, ro.err);
    size_t n = (size_t)(S * D);
    double amax = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (fabs(tg_f32(&tr, &ro, yr)[i]) > amax) amax = fabs(tg_f32(&tr, &ro, yr)[i]);
    vcase++;
    for (int v = 0; v < NVK && rc == 0; v++) {
        if (!vk[v] || !(mask & (1u << v))) continue;
        loom_err_clear();
        if (!vk[v]->ops->supports(vk[v], &tq.g, yq)) {
            CHECK(v == 2 && strstr(loom_last_error(), "larger than one device allocation"), "%s [%s] refused: '%s'",
                  what, vk_name[v], loom_last_error());
            continue;
        }
        for (int mode = 0; mode < 2; mode++) {
            if (!tg_vk_path_on(vcase, v, mode)) continue;
            char name[96];
            snprintf(name, sizeof name, "%s %s", vk_name[v], mode ? "plan" : "node");
            tg_run_out o;
            int r2 = mode ? tg_run_plan(&tq, vk[v], &o, 1, NULL, 0, NULL) : tg_run(&tq, vk[v], &o);
            CHECK(r2 == 0, "%s [%s]: %s", what, name, o.err);
            if (r2 == 0) cmp(what, name, tg_f32(&tq, &o, yq), tg_f32(&tr, &ro, yr), n, 4e-6 + 2e-5 * amax);
            tg_out_free(&o);
        }
    }
    tg_out_free(&ro);
    free(x), free(lg);
}

static void test_moe(void) {
    for (int qi = 0; qi < NQ; qi++) {
        loom_dtype qt = qtypes[qi];
        int64_t b = loom_dtype_blck(qt), D = b == 32 ? 64 : 256, F = b == 32 ? 96 : 256;
        /* decode and prefill (9 rows, 2 of 8 experts, renormalised); the first four types on every
         * config, the rest (same shader, other block decoder) on the default one. rec_moe records
         * the same dispatches for any row count (a workgroup per output row and routed slot), so
         * 9 rows (17 until session 14) still route several tokens to different experts; on lavapipe
         * moe_mm.comp's per-element block decode made the 17-row cases 13.5 of test_moe's 17.4 CPU-s (release) */
        moe_q_case(qt, 1, 8, 2, true, D, F, qi < 4 ? 7 : 1);
        moe_q_case(qt, 9, 8, 2, true, D, F, qi < 4 ? 7 : 1);
    }
    moe_q_case(LOOM_Q8_0, 5, 6, 6, false, 64, 32, 7); /* every expert chosen, not renormalised */
    moe_w_free();
}

/* ---- `test_vulkan_quant knobs`: the decode GEMV's A/B knobs, and quantised operands whose binding
 * is not 16-byte aligned ------------------------------------------------------------------------ */
/* Weights sit at offset 0 of their own buffers and chunks of rows start at whole rows (144 / 176 bytes,
 * multiples of 16, for Q4_K / Q5_K) in 256-aligned pieces, so the models never bind a Q4_K / Q5_K
 * operand off 16-byte alignment; the decoders of both block GEMVs (shaders/qbunit.glsl: khead, ld32k,
 * ld16k when kal16() is false; matvec_dp.comp DP_GU: gate's and up's offsets apart, W_OFF_CUR) still
 * take any MATMUL operand supports() accepts, such as a quantised view into the arena. These cases put
 * W there, `skip` bytes into an INPUT of raw bytes, at skip 0 (aligned), 6 (not word aligned) and 8
 * (word but not 16-byte aligned): each against the CPU (q8-exact x, so within the GEMV bound of
 * matmul_case), and the unaligned runs bit for bit against the aligned one (the same words reach the
 * same arithmetic). Each runs on a backend made under one of the knob settings below, which also take
 * the LOOM_VK_GEMV_Q values blk2, dp (4 rows on integer dot products), dp2 and dpa and the LOOM_VK_KUNIT
 * values 1, 2 and hp through lavapipe, which no other ctest run does (blk / blk1 / qb: by hand). Every
 * unit computes the same y, so the knobs' choices are checked where they show: the GEMV dispatch's shader
 * and spec constant 3 (rows R in bits 2-4, bit 7 one-sub-block units, 8 half-pair units, 9 two of them a
 * pass), read from the recorder's trace (LOOM_VK_VERBOSE=2, which these backends are made with). */
#define KSPEC_MASK 0x39cu /* R, bits 7, 8, 9 */
static const struct {
    const char *name;
    const char *env[8];  /* name, value pairs */
    const char *shader;  /* the GEMV's shader name starts so (NULL: no GEMV case) */
    uint32_t spec;       /* its spec constant 3 & KSPEC_MASK */
} knob_cfg[] = {
    /* matvec_qb.comp, 2 rows, 2-sub-block units (auto: 1 at K <= 2048) */
    {"blk2 kunit=2", {"LOOM_VK_GEMV_Q", "blk2", "LOOM_VK_KUNIT", "2"}, "matvec_qb_", 2u << 2},
    /* matvec_dp(i), 4 rows, unit() of 1 sub-block (auto: half-pair units on these small matrices) */
    {"dp kunit=1", {"LOOM_VK_GEMV_Q", "dp", "LOOM_VK_KUNIT", "1"}, "matvec_dp", 4u << 2 | 1u << 7},
    /* matvec_dp(i), 2 rows, unit_hp() two a pass */
    {"dp2 kunit=hp u2", {"LOOM_VK_GEMV_Q", "dp2", "LOOM_VK_KUNIT", "hp", "LOOM_VK_GEMV_U2", "1"}, "matvec_dp",
     2u << 2 | 1u << 8 | 1u << 9},
    /* rows by the row count: 4 from 4096 */
    {"dpa kunit=1", {"LOOM_VK_GEMV_Q", "dpa", "LOOM_VK_KUNIT", "1"}, "matvec_dp", 4u << 2 | 1u << 7},
    /* the same as "dp2 kunit=hp u2" with SWIGLU kept out of the GEMVs above 4096 weights: gate, up,
     * SWIGLU and down each a dispatch (no DP_GU) */
    {"dp2 kunit=hp u2 fuse_max_nk=4096",
     {"LOOM_VK_GEMV_Q", "dp2", "LOOM_VK_KUNIT", "hp", "LOOM_VK_GEMV_U2", "1", "LOOM_VK_FUSE_MAX_NK", "4096"}, NULL, 0},
};
#define NKCFG (int)(sizeof knob_cfg / sizeof knob_cfg[0])

static loom_backend *knob_backend(int c) {
    const char *old = getenv("LOOM_VK_VERBOSE");
    char *keep = old ? strdup(old) : NULL;
    setenv("LOOM_VK_VERBOSE", "2", 1);
    for (int k = 0; k < 8 && knob_cfg[c].env[k]; k += 2) setenv(knob_cfg[c].env[k], knob_cfg[c].env[k + 1], 1);
    loom_backend_opts vo = {.device_index = -1};
    loom_backend *be = loom_vulkan_backend_new(&vo);
    for (int k = 0; k < 8 && knob_cfg[c].env[k]; k += 2) unsetenv(knob_cfg[c].env[k]);
    if (keep) setenv("LOOM_VK_VERBOSE", keep, 1);
    else unsetenv("LOOM_VK_VERBOSE");
    free(keep);
    CHECK(be != NULL, "backend under %s: %s", knob_cfg[c].name, loom_last_error());
    return be;
}

/* stderr into a temporary file while a backend made by knob_backend records (its "vk-rec" lines) */
typedef struct {
    int saved;
    FILE *f;
} err_cap;
static void cap_begin(err_cap *c) {
    fflush(stderr);
    c->f = tmpfile();
    c->saved = c->f ? dup(2) : -1;
    if (c->saved >= 0) dup2(fileno(c->f), 2);
}
/* Ends the capture: the other lines go on to stderr; returns spec constant 3 of the first dispatch whose
 * shader name starts with prefix (-1: none), the name in name. */
static int64_t cap_end(err_cap *c, const char *prefix, char *name, size_t nn) {
    fflush(stderr);
    if (c->saved >= 0) dup2(c->saved, 2), close(c->saved);
    int64_t spec3 = -1;
    if (!c->f) return -1;
    rewind(c->f);
    char line[512];
    while (fgets(line, sizeof line, c->f)) {
        const char *p = strstr(line, "vk-rec node"), *q = p ? strstr(p, ": ") : NULL;
        char sh[96];
        unsigned g[3], sp[4];
        if (!q) {
            fputs(line, stderr);
        } else if (spec3 < 0 &&
                   sscanf(q + 2, "%95s grid %u x %u x %u spec %u %u %u %x", sh, &g[0], &g[1], &g[2], &sp[0], &sp[1],
                          &sp[2], &sp[3]) == 8 &&
                   !strncmp(sh, prefix, strlen(prefix))) {
            spec3 = sp[3];
            snprintf(name, nn, "%s", sh);
        }
    }
    fclose(c->f);
    return spec3;
}

/* W (N x K of type qt, blocks q) as a view `skip` bytes into an arena INPUT of raw bytes (the bytes
 * before it 0xa5, so that a read from the wrong place shows); *hold: the INPUT's data, to free */
static int q_arena(tg *t, loom_dtype qt, int64_t N, int64_t K, const void *q, size_t skip, void **hold) {
    size_t nb = loom_dtype_nbytes(qt, N * K), nf = (skip + nb + 3) / 4;
    char *raw = malloc(nf * 4);
    memset(raw, 0xa5, nf * 4);
    memcpy(raw + skip, q, nb);
    int in = tg_input(t, LOOM_F32, 1, (int64_t[]){(int64_t)nf}, raw);
    int v = tg_view(t, in, 2, (int64_t[]){N, K}, skip);
    t->nodes[v].type = qt;
    t->nodes[v].nbytes = nb;
    *hold = raw;
    return v;
}

/* y = x W^T (+ bias) on `be` (its plan path) and the CPU, W at `skip` bytes into the arena (skip < 0:
 * a weight of its own); the GEMV bound of matmul_case (x q8-exact: the dp GEMVs round nothing). The
 * output in got (M * N). */
static void knob_gemv(loom_backend *be, int c, loom_dtype qt, int64_t M, int64_t N, int64_t K, int skip, bool bias,
                      float *got) {
    const char *cfg = knob_cfg[c].name;
    float *x = malloc(M * K * sizeof(float)), *deq = malloc(N * K * sizeof(float)), *b = malloc(N * sizeof(float));
    q8_exact(x, (size_t)(M * K));
    tg_fill(b, (size_t)N, 0.5f);
    void *w = q_make(qt, N, K, 0.5f, deq), *hold = NULL;
    tg t;
    tg_init(&t);
    int tx = tg_input(&t, LOOM_F32, 2, (int64_t[]){M, K}, x);
    int tw = skip < 0 ? q_weight(&t, qt, N, K, w) : q_arena(&t, qt, N, K, w, (size_t)skip, &hold);
    int y = tg_matmul(&t, tx, tw, bias ? b : NULL);
    double amax = tg_matmul_amax(x, deq, bias ? b : NULL, M, N, K);
    char what[160], at[32] = "a weight";
    if (skip >= 0) snprintf(at, sizeof at, "at arena byte %d", skip);
    snprintf(what, sizeof what, "%s, W %s: %s M=%lld N=%lld K=%lld%s", cfg, at, loom_dtype_name(qt), (long long)M,
             (long long)N, (long long)K, bias ? " +bias" : "");
    tg_run_out ro, o;
    int rc = tg_run(&t, cpu, &ro);
    CHECK(rc == 0, "%s [cpu]: %s", what, ro.err);
    err_cap ec;
    cap_begin(&ec);
    int r2 = tg_run_plan(&t, be, &o, 1, NULL, 0, NULL);
    char sh[96] = "";
    int64_t spec3 = cap_end(&ec, knob_cfg[c].shader ? knob_cfg[c].shader : "matvec", sh, sizeof sh);
    CHECK(r2 == 0, "%s: %s", what, o.err);
    uint32_t want = knob_cfg[c].spec;
    CHECK(spec3 >= 0 && ((uint32_t)spec3 & KSPEC_MASK) == want,
          "%s: the GEMV dispatch '%s' has spec 3 %#llx, want %#x under %#x", what, sh, (long long)spec3, want,
          KSPEC_MASK);
    if (rc == 0 && r2 == 0) {
        cmp(what, "vulkan plan", tg_f32(&t, &o, y), tg_f32(&t, &ro, y), (size_t)(M * N), ldexp(amax, -15) + 1e-6);
        memcpy(got, tg_f32(&t, &o, y), sizeof(float) * M * N);
    } else {
        memset(got, 0xff, sizeof(float) * M * N); /* NaN: fails the bit-for-bit comparison too */
    }
    tg_out_free(&ro), tg_out_free(&o);
    free(x), free(deq), free(b), free(w), free(hold);
}

/* knob_gemv at skip 0, 6 and 8; the unaligned outputs bit for bit the aligned one's */
static void knob_unaligned(loom_backend *be, int c, loom_dtype qt, int64_t M, int64_t N, int64_t K) {
    const char *cfg = knob_cfg[c].name;
    static const int skips[3] = {0, 6, 8};
    float *y[3];
    uint64_t seed = tg_rng;
    for (int s = 0; s < 3; s++) { /* the same x and W each time */
        y[s] = malloc(sizeof(float) * M * N);
        tg_rng = seed;
        knob_gemv(be, c, qt, M, N, K, skips[s], true, y[s]);
    }
    for (int s = 1; s < 3; s++)
        CHECK(!memcmp(y[s], y[0], sizeof(float) * M * N), "%s: %s W at arena byte %d differs from byte 0 (bit for bit)",
              cfg, loom_dtype_name(qt), skips[s]);
    for (int s = 0; s < 3; s++) free(y[s]);
}

/* Gate and up GEMVs of one x, SWIGLU, down (M x D -> F -> D, K-type W) through the plan with the
 * backend's pass, so that under dp* one dispatch computes gate and up (matvec_dp.comp DP_GU, gate's W at
 * binding 2, up's at 3, each with its own offset): gate (which = 0) or up (1) at arena byte 8, the
 * other a weight (16-byte aligned). Against the CPU: gate and up within the GEMV bound (x q8-exact),
 * down within twice the 8-bit rounding bound of its x (silu(gate) up, rounded by both sides) plus the
 * f32 one; and bit for bit against the same graph with both weights aligned (ref NULL: this is it). */
static double gu_worst; /* knob_gu's largest down error / its bound */
#define GU_M 1
#define GU_D 256
#define GU_F 256
static void knob_gu(loom_backend *be, const char *cfg, loom_dtype qt, int which, bool fused, float *ref, float *got) {
    const int64_t M = GU_M, D = GU_D, F = GU_F;
    float *x = malloc(sizeof(float) * M * D), *dq[3];
    void *wq[3], *hold = NULL;
    uint64_t seed = tg_rng;
    tg_rng = 0x1234567ull; /* the same weights and x in every call */
    q8_exact(x, (size_t)(M * D));
    for (int j = 0; j < 3; j++) {
        int64_t r = j == 2 ? D : F, c = j == 2 ? F : D;
        dq[j] = malloc(sizeof(float) * r * c);
        wq[j] = q_make(qt, r, c, 0.3f, dq[j]);
    }
    tg_rng = seed;
    tg t;
    tg_init(&t);
    t.backend_pass = true;
    int tx = tg_input(&t, LOOM_F32, 2, (int64_t[]){M, D}, x), tw[3];
    for (int j = 0; j < 3; j++) {
        int64_t r = j == 2 ? D : F, c = j == 2 ? F : D;
        tw[j] = j == which ? q_arena(&t, qt, r, c, wq[j], 8, &hold) : q_weight(&t, qt, r, c, wq[j]);
    }
    int g = tg_matmul(&t, tx, tw[0], NULL), u = tg_matmul(&t, tx, tw[1], NULL);
    int sw = tg_node(&t, LOOM_OP_SWIGLU, LOOM_F32, 2, (int64_t[]){M, F}, 2, g, u);
    int y = tg_matmul(&t, sw, tw[2], NULL);
    t.nodes[y].flags |= LOOM_NODE_OUTPUT;
    char what[128];
    snprintf(what, sizeof what, "%s: gate/up/down %s, %s at arena byte 8", cfg, loom_dtype_name(qt),
             which < 0 ? "neither" : which ? "up" : "gate");
    tg_run_out ro, o;
    int rc = tg_run(&t, cpu, &ro);
    CHECK(rc == 0, "%s [cpu]: %s", what, ro.err);
    err_cap ec; /* (the trace's lines dropped) */
    cap_begin(&ec);
    int r2 = tg_run_plan(&t, be, &o, 1, NULL, 0, NULL);
    char sh[96];
    cap_end(&ec, "-", sh, sizeof sh);
    CHECK(r2 == 0, "%s: %s", what, o.err);
    memset(got, 0xff, sizeof(float) * M * (2 * F + D));
    if (rc == 0 && r2 == 0) {
        CHECK(fused ? t.n_folded >= 1 : t.n_folded == 0, "%s: %d folds (the SWIGLU into down: %s)", what, t.n_folded,
              fused ? "expected" : "not expected");
        const float *cg = tg_f32(&t, &ro, g), *cu = tg_f32(&t, &ro, u), *cy = tg_f32(&t, &ro, y);
        const float *vg = tg_f32(&t, &o, g), *vu = tg_f32(&t, &o, u), *vy = tg_f32(&t, &o, y);
        double ag = tg_matmul_amax(x, dq[0], NULL, M, F, D), au = tg_matmul_amax(x, dq[1], NULL, M, F, D);
        cmp(what, "gate", vg, cg, (size_t)(M * F), ldexp(ag, -15) + 1e-6);
        cmp(what, "up", vu, cu, (size_t)(M * F), ldexp(au, -15) + 1e-6);
        size_t bad = 0;
        double worst = 0;
        double *s = malloc(sizeof(double) * F);
        for (int64_t m = 0; m < M; m++) {
            for (int64_t f = 0; f < F; f++) {
                double gv = cg[m * F + f];
                s[f] = gv / (1 + exp(-gv)) * cu[m * F + f];
            }
            for (int64_t n = 0; n < D; n++) {
                double mag = 0;
                for (int64_t f = 0; f < F; f++) mag += fabs(s[f] * dq[2][n * F + f]);
                double e = fabs((double)vy[m * D + n] - cy[m * D + n]);
                double bound = 2 * qx_bound(s, dq[2] + n * F, F) + ldexp(mag, -15) + 1e-6;
                worst = fmax(worst, e / bound);
                if (!(e <= bound)) bad++;
            }
        }
        free(s);
        CHECK(bad == 0, "%s: down: %zu of %lld values past 2 x the 8-bit bound (worst %.3g x)", what, bad,
              (long long)(M * D), worst);
        gu_worst = fmax(gu_worst, worst);
        memcpy(got, vg, sizeof(float) * M * F);
        memcpy(got + M * F, vu, sizeof(float) * M * F);
        memcpy(got + 2 * M * F, vy, sizeof(float) * M * D);
    }
    if (ref)
        CHECK(!memcmp(got, ref, sizeof(float) * M * (2 * F + D)),
              "%s: gate / up / down differ from both aligned (bit for bit)", what);
    tg_out_free(&ro), tg_out_free(&o);
    for (int j = 0; j < 3; j++) free(dq[j]), free(wq[j]);
    free(x), free(hold);
}

static void test_knobs(void) {
    static const loom_dtype kq[2] = {LOOM_Q4_K, LOOM_Q5_K}; /* the types whose decoders test kal16() */
    for (int c = 0; c < NKCFG; c++) {
        loom_backend *be = knob_backend(c);
        if (!be) continue;
        const char *cfg = knob_cfg[c].name, *gq = knob_cfg[c].env[1];
        char desc[256] = "";
        be->ops->describe(be, desc, sizeof desc);
        bool dp = !strncmp(gq, "dp", 2), nofuse = strstr(cfg, "fuse_max_nk") != NULL;
        CHECK((strstr(desc, "gemv dp8") != NULL) == dp, "%s: describe() says '%s'", cfg, desc);
        float *y = malloc(sizeof(float) * 4100);
        if (!strcmp(gq, "dpa")) { /* from 4096 rows 4 an invocation (the pipeline of "dp kunit=1"'s cases) */
            knob_gemv(be, c, LOOM_Q4_K, 1, 4100, 256, -1, true, y);
        } else if (!nofuse) {
            for (int qi = 0; qi < 2; qi++) knob_unaligned(be, c, kq[qi], 1, 37, 256);
        }
        /* LOOM_VK_GEMV_U2: 80 units a row over 64 invocations, so the second unit of a pass is in the row
         * for some invocations and past its end for the rest; 2 rows of x, so that a unit past the end,
         * were it summed, would read the next row's x */
        if (!strcmp(gq, "dp2") && !nofuse) knob_gemv(be, c, LOOM_Q4_K, 2, 9, 2560, -1, true, y);
        free(y);
        if (!strcmp(gq, "dp2")) { /* DP_GU, gate's and up's offsets apart (W_OFF_CUR: the same for every type) */
            size_t n = (size_t)GU_M * (2 * GU_F + GU_D);
            float *r0 = malloc(sizeof(float) * n), *r1 = malloc(sizeof(float) * n);
            knob_gu(be, cfg, LOOM_Q4_K, -1, !nofuse, NULL, r0);
            knob_gu(be, cfg, LOOM_Q4_K, 1, !nofuse, r0, r1);
            knob_gu(be, cfg, LOOM_Q4_K, 0, !nofuse, r0, r1);
            free(r0), free(r1);
        }
        loom_backend_close(be);
    }
    printf("knobs: gate/up/down's down, largest error %.3g x its bound (2 x the 8-bit x bound + f32)\n", gu_worst);
}

/* supports(): quantised EMBED/MATMUL accepted; other ops still refuse block types */
static void test_supports(void) {
    tg t;
    tg_init(&t);
    static char w[34 * 4];
    memset(w, 0, sizeof w);
    int tw = q_weight(&t, LOOM_Q8_0, 2, 64, w);
    int tx = tg_input(&t, LOOM_F32, 2, (int64_t[]){1, 64}, NULL);
    int mm = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){1, 2}, 2, tx, tw);
    int ad = tg_node(&t, LOOM_OP_ADD, LOOM_F32, 2, (int64_t[]){2, 64}, 2, tw, tw);
    CHECK(vk[0]->ops->supports(vk[0], &t.g, mm), "quantised matmul refused");
    CHECK(!vk[0]->ops->supports(vk[0], &t.g, ad), "ADD of a quantised tensor accepted");
}

/* `test_vulkan_quant gemv [NTYPES]`: the decode GEMV cases only (test_gemv, and the fusions) on the
 * first NTYPES of qtypes (default all); `test_vulkan_quant qtile`: test_qtile only; `test_vulkan_quant
 * knobs`: test_knobs only */
int main(int argc, char **argv) {
    bool gemv_only = argc > 1 && !strcmp(argv[1], "gemv");
    bool qtile_only = argc > 1 && !strcmp(argv[1], "qtile");
    bool knobs_only = argc > 1 && !strcmp(argv[1], "knobs");
    bool moe_only = argc > 1 && !strcmp(argv[1], "moe"); /* the MOE cases alone (under LOOM_VK_MOE: gpu_moe.sh) */
    int gemv_nq = argc > 2 && atoi(argv[2]) > 0 && atoi(argv[2]) < NQ ? atoi(argv[2]) : NQ;
    int orc = tg_open_backends(&cpu, vk, true);
    if (orc) return orc;
    tg_coopmat_flags(vk, vk_name, vk_coopmat);
    char desc[256] = "";
    vk[0]->ops->describe(vk[0], desc, sizeof desc);
    vk_cm2 = strstr(desc, "coopmat2") != NULL;

    const char *gq = getenv("LOOM_VK_GEMV_Q");
    dp_on = strstr(desc, "gemv dp8") != NULL; /* forced (LOOM_VK_GEMV_Q=dp*) or a GPU's default */
    printf("decode GEMV: LOOM_VK_GEMV_Q=%s%s\n", gq ? gq : "(unset)", dp_on && getenv("LOOM_VK_NO_IDOT") ? ", LOOM_VK_NO_IDOT" : "");
    if (moe_only) {
        const char *mo = getenv("LOOM_VK_MOE");
        printf("moe: LOOM_VK_MOE=%s\n", mo ? mo : "(unset)");
        TG_TIMED(test_moe());
        tg_close_backends(cpu, vk);
        CHECK_DONE();
    }
    if (knobs_only) {
        TG_TIMED(test_knobs());
        tg_close_backends(cpu, vk);
        CHECK_DONE();
    }
    if (qtile_only) {
        const char *qk = getenv("LOOM_VK_CM_QTILE");
        printf("prefill: LOOM_VK_CM_QTILE=%s\n", qk ? qk : "(unset)");
        TG_TIMED(test_qtile());
        tg_close_backends(cpu, vk);
        CHECK_DONE();
    }
    if (!gemv_only) {
        TG_TIMED(test_supports());
        TG_TIMED(test_embed());
        TG_TIMED(test_matmul());
    } else {
        TG_TIMED(test_gemv(gemv_nq));
    }
    TG_TIMED(test_fused(gemv_only ? gemv_nq : 4));
    /* the decode chain: in the default run (the attention's split merge) and under dp* (the 8-bit x);
     * the other GEMV runs (old, blk4) add nothing it checks */
    if (!gemv_only || dp_on) {
        TG_TIMED(test_chain(gemv_nq < 4 ? gemv_nq : 4));
        printf("decode chain%s: LOOM_VK_QX_FOLD on vs off %.3g x max |y| (bound 1e-6); vs the CPU on exact x %.3g x "
               "max |y| (bound %g)\n",
               dp_on ? " (dp*)" : "", chain_worst_a, chain_worst_b, dp_on ? CHAIN_TOL : CHAIN_TOL_F32);
    }
    if (gemv_worst_what[0])
        printf("decode GEMV: largest error %.3g x sum|x w| (2^%.1f; bound 2^-15), at %s\n", gemv_worst,
               log2(gemv_worst > 0 ? gemv_worst : 1e-300), gemv_worst_what);
    printf("decode fusions: largest error %.3g x max sum|x w| (bound 1e-5%s)\n", fused_worst,
           dp_on ? " + the 8-bit x bound" : "");
    /* the random-x cases' 8-bit rounding is far above f32's: unseen, the dp GEMV did not run */
    if (dp_on && gemv_only)
        CHECK(qx_rel_worst > ldexp(1.0, -15), "LOOM_VK_GEMV_Q=%s: no 8-bit rounding seen (%.3g): the dp GEMV did not run",
              gq, qx_rel_worst);
    if (dp_on)
        printf("8-bit x (dp*): largest error on random x %.3g x its bound sum_b d_b/2 sum|w| (random x cases, "
               "fusions); %.3g x sum|x w| (random x GEMV cases)\n",
               qx_worst, qx_rel_worst);
    if (!gemv_only) TG_TIMED(test_moe());

    tg_close_backends(cpu, vk);
    CHECK_DONE();
}
