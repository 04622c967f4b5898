/* Every op of graph/graph.h on the CPU backend:
 *  (a) the scalar kernels against naive double-precision references written here, and
 *  (b) every SIMD flavour this machine supports (avx2, avx512) against the same references and
 *      against the scalar result,
 * on awkward shapes (sizes not multiples of 16/32, M = 1/3/17/64, broadcasting, in place, GQA,
 * positions with a gap), for f32/f16/bf16 weights.
 *
 * Tolerances (per element, stated where each check is made):
 *  - exact ops (EMBED, ADD, MUL, SCALE, KV_STORE, PERMUTE): bit-exact; float + and * of two floats
 *    equals the double result rounded to float.
 *  - MATMUL: |y - ref| <= 2^-16 * sum_k |x_k w_k| (f32 accumulation, any order); for the bf16
 *    vdpbf16ps path, where x is rounded to bf16: 2^-8 * sum_k |x_k w_k| (each product then errs
 *    by at most 2^-9 of itself).
 *  - transcendental ops (SILU, SWIGLU, SOFTMAX, RMSNORM): 4e-6 relative + a tiny absolute floor.
 *  - GELU, GEGLU: 4e-7 * (1 + |2u|) relative (the exponent's rounding; measured 1.6e-7 units) +
 *    1e-36 (results near FLT_MIN); SOFTCAP 8e-7 relative (measured 3.5e-7). Inputs reach
 *    |x| = 12, where GELU in the naive form 0.5 x (1 + tanh(u)) cancels to 0.
 *  - ROPE: 2e-6 * |x| of the head (cos/sin are rounded to float).
 *  - MOE: the MATMUL bound carried through gate, up, silu and down (test_moe_case).
 *  - ATTENTION: 2e-5 * max|v|; the paged form (block table) too; with a sliding window and a
 *    score soft-cap too (tanh' <= 1: the cap does not magnify score errors).
 */
#include "tests/unit/check.h"
#include "tests/unit/test_cpu_graph.h"

#include "core/qblock.h"

#include <math.h>

#define MAX_FLAV 4
static loom_backend *flav[MAX_FLAV];
static int n_flav;

/* Scratch output of the scalar run, for comparing the SIMD flavours with it. */
static float *scalar_out;

/* Check got against ref within tol[i] (tol == NULL: exact). */
static void expect(const char *what, const char *fl, const float *got, const double *ref,
                   const double *tol, size_t n) {
    size_t bad = 0, at = 0;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        double lim = tol ? tol[i] : 0.0;
        if (!tol) d = got[i] == (float)ref[i] ? 0 : INFINITY;
        if (!(d <= lim)) {
            if (!bad || d - lim > worst) worst = d - lim, at = i;
            bad++;
        }
    }
    CHECK(bad == 0, "%s [%s]: %zu of %zu values off; e.g. [%zu] got %.9g want %.9g (tol %.3g)",
          what, fl, bad, n, at, got[at], ref[at], tol ? tol[at] : 0.0);
}

/* Run t on every flavour; compare node `out` (n floats) with ref/tol and with the scalar run. */
static void run_all(tg *t, int out, const double *ref, const double *tol, size_t n, const char *what) {
    for (int f = 0; f < n_flav; f++) {
        const char *fl = loom_cpu_backend_isa(flav[f]);
        tg_run_out o;
        int rc = tg_run(t, flav[f], &o);
        CHECK(rc == 0, "%s [%s]: run failed: %s", what, fl, o.err);
        if (rc == 0) {
            const float *got = tg_f32(t, &o, out);
            expect(what, fl, got, ref, tol, n);
            if (f == 0) {
                memcpy(scalar_out, got, n * sizeof(float));
            } else {
                /* SIMD vs scalar: within the sum of both tolerances */
                double *s = malloc(n * sizeof(double)), *tt = malloc(n * sizeof(double));
                for (size_t i = 0; i < n; i++) {
                    s[i] = scalar_out[i];
                    tt[i] = tol ? 2 * tol[i] : 0;
                }
                char w2[160];
                snprintf(w2, sizeof w2, "%s vs scalar", what);
                expect(w2, fl, got, s, tol ? tt : NULL, n);
                free(s);
                free(tt);
            }
        }
        tg_out_free(&o);
    }
}

/* A run that must fail cleanly (rc -1 with a message containing `needle`), on every flavour. */
static void run_fails(tg *t, const char *needle, const char *what) {
    for (int f = 0; f < n_flav; f++) {
        tg_run_out o;
        int rc = tg_run(t, flav[f], &o);
        CHECK(rc == -1 && strstr(o.err, needle), "%s [%s]: expected a failure mentioning '%s', got rc %d '%s'",
              what, loom_cpu_backend_isa(flav[f]), needle, rc, o.err);
        tg_out_free(&o);
    }
}

static const loom_dtype wtypes[3] = {LOOM_F32, LOOM_F16, LOOM_BF16};

/* ---- EMBED ---------------------------------------------------------------------------------- */
static void test_embed(void) {
    const int64_t V = 37, D = 45, S = 6;
    int32_t ids[6] = {0, 36, 5, 5, 17, 36};
    float *tab = malloc(V * D * sizeof(float));
    for (int wi = 0; wi < 3; wi++) {
        void *w = tg_weights(wtypes[wi], (size_t)(V * D), 2.0f, tab);
        tg t;
        tg_init(&t);
        int ti;
        int e = tg_embed(&t, tg_weight(&t, wtypes[wi], 2, (int64_t[]){V, D}, w), ids, S, &ti);
        double ref[6 * 45];
        for (int s = 0; s < S; s++)
            for (int d = 0; d < D; d++) ref[s * D + d] = tab[ids[s] * D + d];
        char what[64];
        snprintf(what, sizeof what, "embed %s", loom_dtype_name(wtypes[wi]));
        run_all(&t, e, ref, NULL, (size_t)(S * D), what);

        int32_t bad[6] = {0, 1, 2, 37, 4, 5};
        t.input_data[ti] = bad;
        run_fails(&t, "vocabulary", "embed id 37 of 37");
        bad[3] = -1;
        run_fails(&t, "vocabulary", "embed id -1");
        free(w);
    }
    free(tab);
}

/* ---- MATMUL --------------------------------------------------------------------------------- */
static void test_matmul_case(loom_dtype wt, int64_t M, int64_t N, int64_t K, bool bias) {
    float *x = malloc(M * K * sizeof(float)), *wf = malloc(N * K * sizeof(float));
    float *b = malloc(N * sizeof(float));
    tg_fill(x, (size_t)(M * K), 1.0f);
    tg_fill(b, (size_t)N, 0.5f);
    void *w = tg_weights(wt, (size_t)(N * K), 0.5f, wf);
    tg t;
    tg_init(&t);
    int tx = tg_input(&t, LOOM_F32, 2, (int64_t[]){M, K}, x);
    int tw = tg_weight(&t, wt, 2, (int64_t[]){N, K}, w);
    int y = tg_matmul(&t, tx, tw, bias ? b : NULL);
    double *ref = malloc(M * N * sizeof(double)), *tol = malloc(M * N * sizeof(double));
    double *tol_bf = malloc(M * N * sizeof(double));
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = bias ? b[n] : 0, a = bias ? fabs(b[n]) : 0;
            for (int64_t k = 0; k < K; k++) {
                s += (double)x[m * K + k] * wf[n * K + k];
                a += fabs((double)x[m * K + k] * wf[n * K + k]);
            }
            ref[m * N + n] = s;
            tol[m * N + n] = ldexp(a, -16) + 1e-30;
            tol_bf[m * N + n] = ldexp(a, -8) + 1e-30;
        }
    char what[96];
    tg_matmul_name(what, sizeof what, wt, M, N, K, bias, 0);
    /* the bf16-rounding path only applies to bf16 weights with M > 1; run those flavours apart */
    for (int f = 0; f < n_flav; f++) {
        bool lossy = wt == LOOM_BF16 && M > 1 && loom_cpu_backend_gemm_bf16_rounds_x(flav[f]);
        tg_run_out o;
        int rc = tg_run(&t, flav[f], &o);
        CHECK(rc == 0, "%s [%s]: %s", what, loom_cpu_backend_isa(flav[f]), o.err);
        if (rc == 0) {
            const float *got = tg_f32(&t, &o, y);
            expect(what, loom_cpu_backend_isa(flav[f]), got, ref, lossy ? tol_bf : tol, (size_t)(M * N));
            if (lossy) { /* typical error should be far below the bound: catch a sloppy kernel */
                double e2 = 0, a2 = 0;
                for (int64_t i = 0; i < M * N; i++) {
                    e2 += (got[i] - ref[i]) * (got[i] - ref[i]);
                    a2 += ref[i] * ref[i];
                }
                CHECK(sqrt(e2 / a2) < 4e-3, "%s [%s]: rms relative error %.3g", what,
                      loom_cpu_backend_isa(flav[f]), sqrt(e2 / a2));
            }
        }
        tg_out_free(&o);
    }
    free(x), free(wf), free(b), free(w), free(ref), free(tol), free(tol_bf);
}

static void test_matmul(void) {
    static const int64_t shapes[][2] = {{37, 45}, {130, 100}, {16, 32}, {300, 600}, {33, 896}};
    static const int64_t Ms[] = {1, 3, 12, 17, 64}; /* 3 and 12: gemv_rows (one and two passes) */
    for (int wi = 0; wi < 3; wi++)
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
            for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++) {
                int64_t N = shapes[si][0], K = shapes[si][1], M = Ms[mi];
                if (N * K > 100000 && M == 3) continue; /* keep the suite fast */
                test_matmul_case(wtypes[wi], M, N, K, (si + mi) % 2 == 0);
            }
    /* every row count gemv_rows takes (2..CPU_GEMV_MAX_ROWS = 16): M = 9 once split as 8 + 1 and
     * the 1-row rest recursed past y (a batched prefill of 9 tokens crashed `loom run`) */
    for (int64_t M = 2; M <= 16; M++) test_matmul_case(wtypes[M % 3], M, 37, 45, M % 2 == 0);
    /* decode GEMV row ranges: the AVX-512 gemv cuts its rows into 4 parts, computes one row of each
     * a step and the (n1 - n0) % 4 rest one by one: every rest 0..3 with parts of 0..2 rows, K with
     * and without a 16-lane tail, and (N = 203 on 2 threads: chunks of 32) ranges that start past
     * row 0 and end in a rest of 3 */
    for (int64_t N = 1; N <= 11; N++) test_matmul_case(wtypes[N % 3], 1, N, N % 2 ? 45 : 64, N % 3 == 0);
    for (int wi = 0; wi < 3; wi++) test_matmul_case(wtypes[wi], 1, 203, 333, wi == 1);
    /* a single row and column */
    test_matmul_case(LOOM_F16, 2, 1, 1, true);
    test_matmul_case(LOOM_F32, 1, 1, 7, false);
    /* K = 0: an empty sum, y is the bias */
    test_matmul_case(LOOM_F16, 3, 5, 0, true);
    test_matmul_case(LOOM_F32, 1, 5, 0, true);
}

/* ---- elementwise ---------------------------------------------------------------------------- */
static void set_tol_rel(double *tol, const double *ref, size_t n, double rel, double abs_) {
    for (size_t i = 0; i < n; i++) tol[i] = rel * fabs(ref[i]) + abs_;
}

static double silu_d(double v) { return v / (1.0 + exp(-v)); }

static void test_elementwise_shape(int64_t M, int64_t N) {
    size_t n = (size_t)(M * N);
    float *a = malloc(n * 4), *b = malloc(n * 4), *brow = malloc(N * 4);
    double *ref = malloc(n * 8), *tol = malloc(n * 8);
    tg_fill(a, n, 8.0f);
    tg_fill(b, n, 8.0f);
    tg_fill(brow, (size_t)N, 3.0f);
    /* saturating values for exp */
    a[0] = -100.0f;
    if (n > 1) a[1] = 100.0f;
    if (n > 2) a[2] = 0.0f;
    if (n > 3) a[3] = -20.0f;
    int64_t ne[2] = {M, N};
    char what[96];

    for (int op = 0; op < 2; op++) {
        loom_op lop = op ? LOOM_OP_MUL : LOOM_OP_ADD;
        for (int bc = 0; bc < 2; bc++)
            for (int inp = 0; inp < 2; inp++) {
                tg t;
                tg_init(&t);
                int ta = tg_input(&t, LOOM_F32, 2, ne, a);
                /* in place: the op must consume a computed node, so copy a with SCALE 1 first */
                int src = inp ? tg_node(&t, LOOM_OP_SCALE, LOOM_F32, 2, ne, 1, ta) : ta;
                if (inp) t.nodes[src].fp[0] = 1.0f;
                int tb = bc ? tg_input(&t, LOOM_F32, 1, &N, brow) : tg_input(&t, LOOM_F32, 2, ne, b);
                int y = tg_node(&t, lop, LOOM_F32, 2, ne, 2, src, tb);
                if (inp) tg_inplace(&t, y);
                for (size_t i = 0; i < n; i++) {
                    double bv = bc ? brow[i % N] : b[i];
                    ref[i] = op ? (double)a[i] * bv : (double)a[i] + bv;
                }
                snprintf(what, sizeof what, "%s [%lld,%lld]%s%s", op ? "mul" : "add", (long long)M,
                         (long long)N, bc ? " broadcast" : "", inp ? " in place" : "");
                run_all(&t, y, ref, NULL, n, what);
            }
    }
    for (int kind = 0; kind < 3; kind++) { /* SCALE, SILU, SWIGLU; each also in place */
        for (int inp = 0; inp < 2; inp++) {
            tg t;
            tg_init(&t);
            int ta = tg_input(&t, LOOM_F32, 2, ne, a), tb = tg_input(&t, LOOM_F32, 2, ne, b);
            int src = ta;
            if (inp) {
                src = tg_node(&t, LOOM_OP_SCALE, LOOM_F32, 2, ne, 1, ta);
                t.nodes[src].fp[0] = 1.0f;
            }
            int y;
            const char *name;
            if (kind == 0) {
                y = tg_node(&t, LOOM_OP_SCALE, LOOM_F32, 2, ne, 1, src);
                t.nodes[y].fp[0] = 0.37f;
                for (size_t i = 0; i < n; i++) ref[i] = (double)a[i] * 0.37f;
                name = "scale";
            } else if (kind == 1) {
                y = tg_node(&t, LOOM_OP_SILU, LOOM_F32, 2, ne, 1, src);
                for (size_t i = 0; i < n; i++) ref[i] = silu_d(a[i]);
                name = "silu";
            } else {
                y = tg_node(&t, LOOM_OP_SWIGLU, LOOM_F32, 2, ne, 2, src, tb);
                for (size_t i = 0; i < n; i++) ref[i] = silu_d(a[i]) * b[i];
                name = "swiglu";
            }
            if (inp) tg_inplace(&t, y);
            snprintf(what, sizeof what, "%s [%lld,%lld]%s", name, (long long)M, (long long)N,
                     inp ? " in place" : "");
            set_tol_rel(tol, ref, n, 4e-6, 1e-30);
            run_all(&t, y, ref, kind == 0 ? NULL : tol, n, what);
        }
    }
    free(a), free(b), free(brow), free(ref), free(tol);
}

static void test_elementwise(void) {
    test_elementwise_shape(1, 1);
    test_elementwise_shape(3, 45);
    test_elementwise_shape(17, 37);
    test_elementwise_shape(64, 601); /* big enough to be split across threads */
}

/* ---- GELU, GEGLU, SOFTCAP ------------------------------------------------------------------- */
/* gelu_tanh(x) = 0.5 x (1 + tanh(u)) in long double where 1 + tanh(u) keeps its digits (u > -8,
 * i.e. x > -5.5); below, 1 + tanh(u) = 2 e^(2u) / (1 + e^(2u)) in double, the exact identity
 * without the cancellation. The kernels compute x / (1 + e^(-2u)), a third arrangement. */
static double gelu_ref(double x) {
    long double u = 0.79788456080286535587989L * ((long double)x + 0.044715L * x * x * x);
    if (u > -8) return (double)(0.5L * x * (1.0L + tanhl(u)));
    double e = exp(2.0 * (double)u);
    return x * e / (1.0 + e);
}

/* Inputs for the tanh-shaped ops: a grid over [-lim, lim] that includes 0, +-1e-3, and the far
 * tails (for GELU: |x| > 6, where 0.5 x (1 + tanh(u)) in float is exactly 0 for x < -6), then
 * random values. */
static void act_inputs(float *a, size_t n, float lim) {
    for (size_t i = 0; i < n; i++) a[i] = (tg_randf() * 2.0f - 1.0f) * lim;
    size_t g = n < 400 ? n : 400;
    for (size_t i = 0; i < g; i++) a[i] = -lim + 2.0f * lim * (float)i / (float)(g > 1 ? g - 1 : 1);
    if (n > 3) a[n - 1] = 0.0f, a[n - 2] = 1e-3f, a[n - 3] = -1e-3f;
}

#define GELU_REL 4e-7 /* measured 1.6e-7 (all flavours) */
#define SOFTCAP_REL 8e-7 /* measured 3.5e-7 (avx2/avx512 tanh), 2.5e-7 (scalar tanhf) */
static void test_activations_shape(int64_t M, int64_t N) {
    size_t n = (size_t)(M * N);
    int64_t ne[2] = {M, N};
    float *a = malloc(n * 4), *b = malloc(n * 4);
    double *ref = malloc(n * 8), *tol = malloc(n * 8);
    tg_fill(b, n, 2.0f);
    for (int kind = 0; kind < 3; kind++) /* GELU, GEGLU, SOFTCAP; each also in place */
        for (int inp = 0; inp < 2; inp++) {
            const float cap = 30.0f;
            act_inputs(a, n, kind == 2 ? 8 * cap : 12.0f);
            tg t;
            tg_init(&t);
            int ta = tg_input(&t, LOOM_F32, 2, ne, a), tb = tg_input(&t, LOOM_F32, 2, ne, b);
            int src = ta;
            if (inp) {
                src = tg_node(&t, LOOM_OP_SCALE, LOOM_F32, 2, ne, 1, ta);
                t.nodes[src].fp[0] = 1.0f;
            }
            int y;
            const char *name;
            if (kind == 0) {
                y = tg_node(&t, LOOM_OP_GELU, LOOM_F32, 2, ne, 1, src);
                for (size_t i = 0; i < n; i++) ref[i] = gelu_ref(a[i]);
                name = "gelu";
            } else if (kind == 1) {
                y = tg_node(&t, LOOM_OP_GEGLU, LOOM_F32, 2, ne, 2, src, tb);
                for (size_t i = 0; i < n; i++) ref[i] = gelu_ref(a[i]) * b[i];
                name = "geglu";
            } else {
                y = tg_node(&t, LOOM_OP_SOFTCAP, LOOM_F32, 2, ne, 1, src);
                t.nodes[y].fp[0] = cap;
                for (size_t i = 0; i < n; i++) ref[i] = cap * tanh((double)a[i] / cap);
                name = "softcap";
            }
            if (inp) tg_inplace(&t, y);
            char what[96];
            snprintf(what, sizeof what, "%s [%lld,%lld]%s", name, (long long)M, (long long)N, inp ? " in place" : "");
            /* GELU for x < 0 is x / (1 + e^(-2u)): float rounding of the exponent -2u (|2u| up to
             * ~88) becomes a relative error of |2u| ulps in e^(-2u) and the result, so the
             * tolerance is GELU_REL * (1 + |2u|) relative; the floor covers results near
             * FLT_MIN (x ~ -10, where e^(-2u) overflows to a 0 result). SOFTCAP: SOFTCAP_REL. */
            set_tol_rel(tol, ref, n, SOFTCAP_REL, 1e-30);
            if (kind < 2)
                for (size_t i = 0; i < n; i++) {
                    double u2 = 2 * 0.7978845608 * fabs(a[i] + 0.044715 * a[i] * a[i] * a[i]);
                    tol[i] = GELU_REL * (1 + u2) * fabs(ref[i]) + 1e-36;
                }
            if (getenv("LOOM_TEST_MEASURE")) { /* the error each kernel makes, in units of the tolerance model */
                tg_run_out o;
                for (int f = 0; f < n_flav && tg_run(&t, flav[f], &o) == 0; f++) {
                    const float *got = tg_f32(&t, &o, y);
                    double w = 0;
                    for (size_t i = 0; i < n; i++) {
                        double e = fabs(got[i] - ref[i]) - (kind < 2 ? 1e-36 : 1e-30);
                        double unit = (tol[i] - (kind < 2 ? 1e-36 : 1e-30)) / (kind < 2 ? GELU_REL : SOFTCAP_REL);
                        if (unit > 0 && e / unit > w) w = e / unit;
                    }
                    printf("measure %s [%s]: %.3g\n", what, loom_cpu_backend_isa(flav[f]), w);
                    tg_out_free(&o);
                }
            }
            run_all(&t, y, ref, tol, n, what);
        }
    free(a), free(b), free(ref), free(tol);
}

static void test_activations(void) {
    /* the reference's two branches agree where both are accurate */
    for (double x = -5.4; x < 3; x += 0.37) {
        long double u = 0.79788456080286535587989L * ((long double)x + 0.044715L * x * x * x);
        double e = exp(2.0 * (double)u);
        CHECK(fabs(gelu_ref(x) - x * e / (1.0 + e)) <= 1e-13 * fabs(gelu_ref(x)) + 1e-300,
              "gelu reference branches disagree at %g", x);
    }
    CHECK(gelu_ref(-8.0) < -1e-22 && gelu_ref(-8.0) > -1e-19, "gelu_ref(-8) = %g", gelu_ref(-8.0));
    test_activations_shape(1, 1);
    test_activations_shape(1, 7);
    test_activations_shape(3, 45);
    test_activations_shape(17, 601);
}

/* ---- RMSNORM, SOFTMAX ----------------------------------------------------------------------- */
static void test_rows(void) {
    static const int64_t shapes[][2] = {{1, 7}, {3, 45}, {17, 896}, {64, 600}};
    for (size_t si = 0; si < 4; si++) {
        int64_t M = shapes[si][0], N = shapes[si][1];
        size_t n = (size_t)(M * N);
        int64_t ne[2] = {M, N};
        float *a = malloc(n * 4), *w = malloc(N * 4);
        double *ref = malloc(n * 8), *tol = malloc(n * 8);
        tg_fill(w, (size_t)N, 2.0f);
        for (int64_t m = 0; m < M; m++) /* rows of very different magnitude, one tiny (eps matters) */
            tg_fill(a + m * N, (size_t)N, m % 3 == 1 ? 1e-4f : (float)(m + 1) * 3.0f);
        char what[96];
        for (int withw = 0; withw < 2; withw++)
            for (int inp = 0; inp < 2; inp++) {
                const float eps = 1e-6f;
                tg t;
                tg_init(&t);
                int ta = tg_input(&t, LOOM_F32, 2, ne, a);
                int src = ta;
                if (inp) {
                    src = tg_node(&t, LOOM_OP_SCALE, LOOM_F32, 2, ne, 1, ta);
                    t.nodes[src].fp[0] = 1.0f;
                }
                int tw = withw ? tg_weight(&t, LOOM_F32, 1, &N, w) : -1;
                int y = withw ? tg_node(&t, LOOM_OP_RMSNORM, LOOM_F32, 2, ne, 2, src, tw)
                              : tg_node(&t, LOOM_OP_RMSNORM, LOOM_F32, 2, ne, 1, src);
                t.nodes[y].fp[0] = eps;
                if (inp) tg_inplace(&t, y);
                for (int64_t m = 0; m < M; m++) {
                    double ss = 0;
                    for (int64_t k = 0; k < N; k++) ss += (double)a[m * N + k] * a[m * N + k];
                    double r = 1.0 / sqrt(ss / N + (double)eps);
                    for (int64_t k = 0; k < N; k++)
                        ref[m * N + k] = a[m * N + k] * r * (withw ? w[k] : 1.0);
                }
                set_tol_rel(tol, ref, n, 4e-6, 1e-30);
                snprintf(what, sizeof what, "rmsnorm [%lld,%lld]%s%s", (long long)M, (long long)N,
                         withw ? " *w" : "", inp ? " in place" : "");
                run_all(&t, y, ref, tol, n, what);
            }
        for (int sc = 0; sc < 2; sc++) {
            float scale = sc ? 0.125f : 1.0f;
            for (size_t i = 0; i < n; i++) a[i] = tg_randf() * 50.0f; /* large: needs max-subtraction */
            tg t;
            tg_init(&t);
            int ta = tg_input(&t, LOOM_F32, 2, ne, a);
            int y = tg_node(&t, LOOM_OP_SOFTMAX, LOOM_F32, 2, ne, 1, ta);
            t.nodes[y].fp[0] = scale;
            for (int64_t m = 0; m < M; m++) {
                double mx = -INFINITY, s = 0;
                for (int64_t k = 0; k < N; k++) mx = fmax(mx, (double)a[m * N + k] * scale);
                for (int64_t k = 0; k < N; k++) s += exp((double)a[m * N + k] * scale - mx);
                for (int64_t k = 0; k < N; k++) ref[m * N + k] = exp((double)a[m * N + k] * scale - mx) / s;
            }
            set_tol_rel(tol, ref, n, 4e-6, 1e-12);
            snprintf(what, sizeof what, "softmax [%lld,%lld] scale %g", (long long)M, (long long)N, scale);
            run_all(&t, y, ref, tol, n, what);
        }
        free(a), free(w), free(ref), free(tol);
    }
}

/* ---- ROPE ----------------------------------------------------------------------------------- */
static void test_rope_case(int mode, int H, int hd, int rot, bool factors, float theta, float pscale,
                           bool inplace) {
    enum { S = 5 };
    int32_t pos[S] = {0, 1, 7, 1000, 4095};
    int64_t D = (int64_t)H * hd, ne[2] = {S, D};
    size_t n = (size_t)(S * D);
    float *x = malloc(n * 4), fac[64];
    double *ref = malloc(n * 8), *tol = malloc(n * 8);
    tg_fill(x, n, 2.0f);
    for (int i = 0; i < rot / 2; i++) fac[i] = 1.0f + (float)i * 0.75f;
    tg t;
    tg_init(&t);
    int tx = tg_input(&t, LOOM_F32, 2, ne, x), tp = tg_input(&t, LOOM_I32, 1, (int64_t[]){S}, pos);
    int src = tx;
    if (inplace) {
        src = tg_node(&t, LOOM_OP_SCALE, LOOM_F32, 2, ne, 1, tx);
        t.nodes[src].fp[0] = 1.0f;
    }
    int tf = factors ? tg_weight(&t, LOOM_F32, 1, (int64_t[]){rot / 2}, fac) : -1;
    int y = factors ? tg_node(&t, LOOM_OP_ROPE, LOOM_F32, 2, ne, 3, src, tp, tf)
                    : tg_node(&t, LOOM_OP_ROPE, LOOM_F32, 2, ne, 2, src, tp);
    loom_node *nd = &t.nodes[y];
    nd->ip[0] = H, nd->ip[1] = hd, nd->ip[2] = mode, nd->ip[3] = rot;
    nd->fp[0] = theta, nd->fp[1] = pscale;
    if (inplace) tg_inplace(&t, y);
    for (int s = 0; s < S; s++)
        for (int h = 0; h < H; h++) {
            const float *xh = x + s * D + h * hd;
            double *r = ref + s * D + h * hd, amax = 0;
            for (int d = 0; d < hd; d++) r[d] = xh[d], amax = fmax(amax, fabs(xh[d]));
            for (int i = 0; i < rot / 2; i++) {
                double ang = pos[s] * (double)pscale * pow((double)theta, -2.0 * i / rot);
                if (factors) ang /= fac[i];
                int ia = mode == LOOM_ROPE_NORM ? 2 * i : i, ib = mode == LOOM_ROPE_NORM ? 2 * i + 1 : i + rot / 2;
                double a = xh[ia], b = xh[ib];
                r[ia] = a * cos(ang) - b * sin(ang);
                r[ib] = a * sin(ang) + b * cos(ang);
            }
            for (int d = 0; d < hd; d++) tol[s * D + h * hd + d] = 2e-6 * amax;
        }
    char what[128];
    snprintf(what, sizeof what, "rope %s H=%d hd=%d rot=%d%s theta=%g pscale=%g%s",
             mode == LOOM_ROPE_NORM ? "norm" : "neox", H, hd, rot, factors ? " factors" : "", theta,
             pscale, inplace ? " in place" : "");
    run_all(&t, y, ref, tol, n, what);
    free(x), free(ref), free(tol);
}

/* Three ropes over the same positions in one graph: the second with another theta, the third
 * like the first (the backend caches angles per step; the cache must key on the parameters). */
static void test_rope_cache(void) {
    enum { S = 4, H = 2, HD = 16 };
    int32_t pos[S] = {3, 900, 901, 17};
    float x[S * H * HD];
    double ref[3][S * H * HD], tol[S * H * HD];
    const float thetas[3] = {10000.0f, 1e6f, 10000.0f};
    tg_fill(x, S * H * HD, 1.0f);
    tg t;
    tg_init(&t);
    int64_t ne[2] = {S, H * HD};
    int tx = tg_input(&t, LOOM_F32, 2, ne, x), tp = tg_input(&t, LOOM_I32, 1, (int64_t[]){S}, pos);
    int y[3];
    for (int r = 0; r < 3; r++) {
        y[r] = tg_node(&t, LOOM_OP_ROPE, LOOM_F32, 2, ne, 2, tx, tp);
        loom_node *nd = &t.nodes[y[r]];
        nd->ip[0] = H, nd->ip[1] = HD, nd->ip[2] = LOOM_ROPE_NEOX, nd->ip[3] = HD;
        nd->fp[0] = thetas[r], nd->fp[1] = 1.0f;
        for (int s = 0; s < S; s++)
            for (int h = 0; h < H; h++) {
                const float *xh = x + (s * H + h) * HD;
                double *o = ref[r] + (s * H + h) * HD;
                for (int i = 0; i < HD / 2; i++) {
                    double a = pos[s] * pow((double)thetas[r], -2.0 * i / HD);
                    o[i] = xh[i] * cos(a) - xh[i + HD / 2] * sin(a);
                    o[i + HD / 2] = xh[i] * sin(a) + xh[i + HD / 2] * cos(a);
                }
            }
    }
    for (int i = 0; i < S * H * HD; i++) tol[i] = 2e-6;
    run_all(&t, y[0], ref[0], tol, S * H * HD, "rope cache: first");
    run_all(&t, y[1], ref[1], tol, S * H * HD, "rope cache: other theta");
    run_all(&t, y[2], ref[2], tol, S * H * HD, "rope cache: first again");
    pos[1] = 901; /* same parameters, new positions in the next run */
    for (int s = 1; s < 2; s++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < HD / 2; i++) {
                const float *xh = x + (s * H + h) * HD;
                double a = pos[s] * pow(10000.0, -2.0 * i / HD);
                ref[0][(s * H + h) * HD + i] = xh[i] * cos(a) - xh[i + HD / 2] * sin(a);
                ref[0][(s * H + h) * HD + i + HD / 2] = xh[i] * sin(a) + xh[i + HD / 2] * cos(a);
            }
    run_all(&t, y[0], ref[0], tol, S * H * HD, "rope cache: new positions");
}

static void test_rope(void) {
    test_rope_cache();
    for (int mode = 0; mode < 2; mode++) {
        test_rope_case(mode, 3, 8, 8, false, 10000.0f, 1.0f, false);
        test_rope_case(mode, 3, 8, 6, true, 10000.0f, 1.0f, true);
        test_rope_case(mode, 2, 64, 64, false, 1e6f, 0.25f, false);
        test_rope_case(mode, 5, 40, 32, true, 500000.0f, 1.0f, true);
    }
}

/* ---- KV_STORE + ATTENTION ------------------------------------------------------------------- */
/* Attention options of the cases below (graph.h ATTENTION ip[4], fp[1]): a sliding window of
 * att_window keys (0: none) and a score soft-cap (0: none). */
static int att_window;
static float att_softcap;

/* The first key position p sees (graph.h: p - W < j <= p), and a score after the soft-cap. */
static int att_first(int p) { return att_window > 0 && p + 1 > att_window ? p + 1 - att_window : 0; }
static double att_cap(double x) { return att_softcap > 0 ? att_softcap * tanh(x / att_softcap) : x; }

/* The reference attention of every (row s, head h) over logical keys j (k, v: [P, Hkv*hd], row j
 * = key j), in double, with the window and soft-cap options above; tol = 2e-5 * vmax. */
static void att_ref(const float *q, const float *k, const float *v, const int32_t *pos, int S, int H, int Hkv,
                    int hd, double scale, double vmax, double *sc, double *ref, double *tol) {
    int64_t Dq = (int64_t)H * hd, Dkv = (int64_t)Hkv * hd;
    for (int s = 0; s < S; s++)
        for (int h = 0; h < H; h++) {
            int hk = h / (H / Hkv), lo = att_first(pos[s]);
            double mx = -INFINITY, l = 0;
            for (int j = lo; j <= pos[s]; j++) {
                double d = 0;
                for (int e = 0; e < hd; e++) d += (double)q[s * Dq + h * hd + e] * k[j * Dkv + hk * hd + e];
                sc[j] = att_cap(d * scale);
                mx = fmax(mx, sc[j]);
            }
            for (int j = lo; j <= pos[s]; j++) l += sc[j] = exp(sc[j] - mx);
            for (int e = 0; e < hd; e++) {
                double o = 0;
                for (int j = lo; j <= pos[s]; j++) o += sc[j] * v[j * Dkv + hk * hd + e];
                ref[s * Dq + h * hd + e] = o / l;
                tol[s * Dq + h * hd + e] = 2e-5 * vmax;
            }
        }
}

/* Store S new rows at positions base.. (or the given pos) into K/V caches whose earlier rows were
 * written by an "earlier step" and whose later rows hold NaN (never to be read), then attend.
 * With a window, the rows before every query's window hold NaN too. */
static void test_attention_case(int H, int Hkv, int hd, int S, const int32_t *pos, int64_t C) {
    int64_t Dq = (int64_t)H * hd, Dkv = (int64_t)Hkv * hd;
    float *q = malloc(S * Dq * 4), *kr = malloc(S * Dkv * 4), *vr = malloc(S * Dkv * 4);
    float *kc = malloc(C * Dkv * 4), *vc = malloc(C * Dkv * 4);
    float *kref = malloc(C * Dkv * 4), *vref = malloc(C * Dkv * 4);
    double *ref = malloc(S * Dq * 8), *tol = malloc(S * Dq * 8), *sc = malloc(C * 8);
    tg_fill(q, (size_t)(S * Dq), 3.0f); /* peaky softmax */
    tg_fill(kr, (size_t)(S * Dkv), 1.0f);
    tg_fill(vr, (size_t)(S * Dkv), 2.0f);
    int32_t pmax = 0, lomin = INT32_MAX;
    for (int s = 0; s < S; s++) pmax = pos[s] > pmax ? pos[s] : pmax;
    for (int s = 0; s < S; s++) lomin = att_first(pos[s]) < lomin ? att_first(pos[s]) : lomin;
    uint32_t qnan = 0x7fc00000u;
    for (int64_t j = 0; j < C; j++)
        for (int64_t d = 0; d < Dkv; d++) {
            if (j <= pmax && j >= lomin) {
                kc[j * Dkv + d] = tg_randf();
                vc[j * Dkv + d] = tg_randf() * 2.0f;
            } else {
                memcpy(&kc[j * Dkv + d], &qnan, 4);
                memcpy(&vc[j * Dkv + d], &qnan, 4);
            }
        }
    memcpy(kref, kc, C * Dkv * 4);
    memcpy(vref, vc, C * Dkv * 4);
    for (int s = 0; s < S; s++) {
        memcpy(kref + pos[s] * Dkv, kr + s * Dkv, Dkv * 4);
        memcpy(vref + pos[s] * Dkv, vr + s * Dkv, Dkv * 4);
    }
    float scale = 1.0f / sqrtf((float)hd);
    double vmax = 0;
    for (int64_t i = (int64_t)lomin * Dkv; i < (pmax + 1) * Dkv; i++) vmax = fmax(vmax, fabs(vref[i]));
    att_ref(q, kref, vref, pos, S, H, Hkv, hd, scale, vmax, sc, ref, tol);

    tg t;
    tg_init(&t);
    int tq = tg_input(&t, LOOM_F32, 2, (int64_t[]){S, Dq}, q);
    int tk = tg_input(&t, LOOM_F32, 2, (int64_t[]){S, Dkv}, kr);
    int tv = tg_input(&t, LOOM_F32, 2, (int64_t[]){S, Dkv}, vr);
    int tp = tg_input(&t, LOOM_I32, 1, (int64_t[]){S}, pos);
    int ks = tg_state(&t, C, Dkv, kc), vs = tg_state(&t, C, Dkv, vc);
    int k2 = tg_node(&t, LOOM_OP_KV_STORE, LOOM_F32, 2, (int64_t[]){C, Dkv}, 3, ks, tk, tp);
    int v2 = tg_node(&t, LOOM_OP_KV_STORE, LOOM_F32, 2, (int64_t[]){C, Dkv}, 3, vs, tv, tp);
    tg_inplace(&t, k2);
    tg_inplace(&t, v2);
    int att = tg_node(&t, LOOM_OP_ATTENTION, LOOM_F32, 2, (int64_t[]){S, Dq}, 4, tq, k2, v2, tp);
    t.nodes[att].ip[0] = H, t.nodes[att].ip[1] = Hkv, t.nodes[att].ip[2] = hd, t.nodes[att].ip[4] = att_window;
    t.nodes[att].fp[0] = scale, t.nodes[att].fp[1] = att_softcap;

    char what[160];
    snprintf(what, sizeof what, "attention H=%d Hkv=%d hd=%d S=%d pos0=%d C=%lld window=%d softcap=%g", H, Hkv, hd, S,
             pos[0], (long long)C, att_window, (double)att_softcap);
    run_all(&t, att, ref, tol, (size_t)(S * Dq), what);
    /* the caches after the store: exact (NaN rows compare as NaN == NaN bitwise) */
    for (int f = 0; f < n_flav; f++) {
        tg_run_out o;
        if (tg_run(&t, flav[f], &o) == 0) {
            CHECK(!memcmp(o.state[0], kref, C * Dkv * 4) && !memcmp(o.state[1], vref, C * Dkv * 4),
                  "kv_store for %s [%s]: cache contents differ", what, loom_cpu_backend_isa(flav[f]));
        }
        tg_out_free(&o);
    }
    free(q), free(kr), free(vr), free(kc), free(vc), free(kref), free(vref), free(ref), free(tol), free(sc);
}

static void test_attention(void) {
    static const int ratios[][2] = {{4, 4}, {4, 2}, {8, 2}};
    int32_t pos[80];
    for (int r = 0; r < 3; r++)
        for (int hdi = 0; hdi < 2; hdi++) {
            int hd = hdi ? 40 : 64;
            int H = ratios[r][0], Hkv = ratios[r][1];
            /* decode: one row at a position past earlier rows */
            pos[0] = 37;
            test_attention_case(H, Hkv, hd, 1, pos, 80);
            /* first prefill from 0 */
            for (int s = 0; s < 3; s++) pos[s] = s;
            test_attention_case(H, Hkv, hd, 3, pos, 80);
            /* a continued prefill: 17 rows from 50, rows 0..49 from an earlier step */
            for (int s = 0; s < 17; s++) pos[s] = 50 + s;
            test_attention_case(H, Hkv, hd, 17, pos, 80);
        }
    /* long enough for several key blocks of the online softmax, not in order */
    for (int s = 0; s < 70; s++) pos[s] = 129 + (s * 7) % 70;
    test_attention_case(8, 2, 64, 70, pos, 200);

    /* options: windows that cut (decode, a prefill whose rows all start elsewhere, several key
     * blocks), one that cuts nothing (the grouped kernels stay in use), a soft-cap low enough to
     * bend the peaky scores (|score| up to ~10), and both together */
    static const struct { int window; float softcap; } opts[] = {{16, 0}, {1, 0}, {100, 0}, {1000, 0}, {0, 4.0f}, {30, 2.5f}};
    for (size_t o = 0; o < sizeof opts / sizeof *opts; o++) {
        att_window = opts[o].window, att_softcap = opts[o].softcap;
        pos[0] = 37;
        test_attention_case(4, 2, 64, 1, pos, 80);
        test_attention_case(4, 4, 40, 1, pos, 80);
        for (int s = 0; s < 17; s++) pos[s] = 50 + s;
        test_attention_case(8, 2, 64, 17, pos, 80);
        test_attention_case(4, 4, 40, 17, pos, 80);
        for (int s = 0; s < 70; s++) pos[s] = 129 + (s * 7) % 70;
        test_attention_case(8, 2, 64, 70, pos, 200);
    }
    att_window = 0, att_softcap = 0;
}

/* A windowed layer's ring cache (graph.h ATTENTION ip[5]): C = W + S - 1 rows, the tightest ring
 * that keeps every row's window through a step of S rows. Keys 0..pos0-1 were stored by earlier
 * steps at j % C (the newest wins), this step's rows go to (pos0 + s) % C; the reference attends
 * over the logical keys in each row's window. */
static void test_attention_ring_case(int H, int Hkv, int hd, int W, int S, int pos0, float softcap) {
    int64_t Dq = (int64_t)H * hd, Dkv = (int64_t)Hkv * hd, C = W + S - 1, P = pos0 + S;
    float *q = malloc(S * Dq * 4), *kl = malloc(P * Dkv * 4), *vl = malloc(P * Dkv * 4);
    float *kc = malloc(C * Dkv * 4), *vc = malloc(C * Dkv * 4);
    double *ref = malloc(S * Dq * 8), *tol = malloc(S * Dq * 8), *sc = malloc(P * 8);
    int32_t *pos = malloc(S * 4), *row = malloc(S * 4);
    tg_fill(q, (size_t)(S * Dq), 3.0f);
    tg_fill(kl, (size_t)(P * Dkv), 1.0f);
    tg_fill(vl, (size_t)(P * Dkv), 2.0f);
    tg_fill(kc, (size_t)(C * Dkv), 1.0f), tg_fill(vc, (size_t)(C * Dkv), 1.0f); /* rows never stored */
    for (int64_t j = 0; j < pos0; j++) {
        memcpy(kc + (j % C) * Dkv, kl + j * Dkv, Dkv * 4);
        memcpy(vc + (j % C) * Dkv, vl + j * Dkv, Dkv * 4);
    }
    for (int s = 0; s < S; s++) pos[s] = pos0 + s, row[s] = (int32_t)((pos0 + s) % C);
    float scale = 0.11f;
    att_window = W, att_softcap = softcap;
    att_ref(q, kl, vl, pos, S, H, Hkv, hd, scale, 2.0, sc, ref, tol); /* |v| <= 2 */
    att_window = 0, att_softcap = 0;
    tg t;
    tg_init(&t);
    int tq = tg_input(&t, LOOM_F32, 2, (int64_t[]){S, Dq}, q);
    int tk = tg_input(&t, LOOM_F32, 2, (int64_t[]){S, Dkv}, kl + (int64_t)pos0 * Dkv);
    int tv = tg_input(&t, LOOM_F32, 2, (int64_t[]){S, Dkv}, vl + (int64_t)pos0 * Dkv);
    int tp = tg_input(&t, LOOM_I32, 1, (int64_t[]){S}, pos), tr = tg_input(&t, LOOM_I32, 1, (int64_t[]){S}, row);
    int ks = tg_state(&t, C, Dkv, kc), vs = tg_state(&t, C, Dkv, vc);
    int k2 = tg_node(&t, LOOM_OP_KV_STORE, LOOM_F32, 2, (int64_t[]){C, Dkv}, 3, ks, tk, tr);
    int v2 = tg_node(&t, LOOM_OP_KV_STORE, LOOM_F32, 2, (int64_t[]){C, Dkv}, 3, vs, tv, tr);
    tg_inplace(&t, k2);
    tg_inplace(&t, v2);
    int att = tg_node(&t, LOOM_OP_ATTENTION, LOOM_F32, 2, (int64_t[]){S, Dq}, 4, tq, k2, v2, tp);
    loom_node *an = &t.nodes[att];
    an->ip[0] = H, an->ip[1] = Hkv, an->ip[2] = hd, an->ip[4] = W, an->ip[5] = 1;
    an->fp[0] = scale, an->fp[1] = softcap;
    char what[160];
    snprintf(what, sizeof what, "ring attention H=%d Hkv=%d hd=%d W=%d C=%lld S=%d pos0=%d softcap=%g", H, Hkv, hd, W,
             (long long)C, S, pos0, (double)softcap);
    run_all(&t, att, ref, tol, (size_t)(S * Dq), what);
    free(q), free(kl), free(vl), free(kc), free(vc), free(ref), free(tol), free(sc), free(pos), free(row);
}

static void test_attention_ring(void) {
    test_attention_ring_case(4, 2, 64, 16, 1, 37, 0);    /* decode, window wrapped around the ring */
    test_attention_ring_case(4, 2, 64, 16, 1, 47, 0);    /* decode, window ends at the ring's end */
    test_attention_ring_case(8, 2, 40, 8, 17, 50, 0);    /* prefill: C = W + S - 1 exactly */
    test_attention_ring_case(4, 4, 64, 100, 70, 129, 2.0f); /* several key blocks, soft-capped */
    test_attention_ring_case(4, 1, 64, 20, 5, 0, 0);     /* the first steps: nothing wraps yet */
}

/* Paged attention: B sequences of different lengths whose keys are scattered over a pool of
 * blocks in a shuffled order (blocks shared by two sequences, as after a fork, included); unused
 * pool rows hold NaN. The reference attends over each sequence's logical keys. */
static void test_attention_paged_case(int H, int Hkv, int hd, int bs) {
    enum { B = 3, NB = 12, MB = 4 };
    int64_t Dq = (int64_t)H * hd, Dkv = (int64_t)Hkv * hd, C = (int64_t)NB * bs;
    /* sequence b holds len[b] keys in blocks table[b][..]; sequence 2 shares sequence 0's first block */
    int32_t table[B][MB] = {{7, 2, 9, -1}, {0, 11, 3, 5}, {7, 4, -1, -1}};
    int len[B] = {2 * bs + (bs + 1) / 2, 4 * bs, bs + 1};
    int32_t seqs[] = {0, 1, 1, 2, 0, 1}, pos[6];
    int S = 6;
    pos[0] = len[0] - 1, pos[1] = 0, pos[2] = len[1] - 1, pos[3] = len[2] - 1, pos[4] = bs, pos[5] = bs + 2;
    float *q = malloc(S * Dq * 4), *pool = malloc(C * Dkv * 4), *vpool = malloc(C * Dkv * 4);
    double *ref = malloc(S * Dq * 8), *tol = malloc(S * Dq * 8), *sc = malloc(MB * bs * 8);
    uint32_t qnan = 0x7fc00000u;
    for (int64_t i = 0; i < C * Dkv; i++) memcpy(&pool[i], &qnan, 4), memcpy(&vpool[i], &qnan, 4);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < len[b]; j++) {
            int64_t r = (int64_t)table[b][j / bs] * bs + j % bs;
            if (b == 2 && j < bs) continue; /* shared with sequence 0: same rows */
            for (int64_t d = 0; d < Dkv; d++) pool[r * Dkv + d] = tg_randf(), vpool[r * Dkv + d] = 2.0f * tg_randf();
        }
    tg_fill(q, (size_t)(S * Dq), 3.0f);
    float scale = 1.0f / sqrtf((float)hd);
    double vmax = 0;
    for (int64_t i = 0; i < C * Dkv; i++)
        if (vpool[i] == vpool[i]) vmax = fmax(vmax, fabs(vpool[i]));
    for (int s = 0; s < S; s++)
        for (int h = 0; h < H; h++) {
            int hk = h / (H / Hkv), lo = att_first(pos[s]);
            const int32_t *row = table[seqs[s]];
            double mx = -INFINITY, l = 0;
            for (int j = lo; j <= pos[s]; j++) {
                int64_t r = (int64_t)row[j / bs] * bs + j % bs;
                double d = 0;
                for (int e = 0; e < hd; e++) d += (double)q[s * Dq + h * hd + e] * pool[r * Dkv + hk * hd + e];
                sc[j] = att_cap(d * scale);
                mx = fmax(mx, sc[j]);
            }
            for (int j = lo; j <= pos[s]; j++) l += sc[j] = exp(sc[j] - mx);
            for (int e = 0; e < hd; e++) {
                double o = 0;
                for (int j = lo; j <= pos[s]; j++)
                    o += sc[j] * vpool[((int64_t)row[j / bs] * bs + j % bs) * Dkv + hk * hd + e];
                ref[s * Dq + h * hd + e] = o / l;
                tol[s * Dq + h * hd + e] = 2e-5 * vmax;
            }
        }
    tg t;
    tg_init(&t);
    int tq = tg_input(&t, LOOM_F32, 2, (int64_t[]){S, Dq}, q);
    int tp = tg_input(&t, LOOM_I32, 1, (int64_t[]){S}, pos);
    int tsq = tg_input(&t, LOOM_I32, 1, (int64_t[]){S}, seqs);
    int ttb = tg_input(&t, LOOM_I32, 2, (int64_t[]){B, MB}, table);
    int ks = tg_state(&t, C, Dkv, pool), vs = tg_state(&t, C, Dkv, vpool);
    int att = tg_node(&t, LOOM_OP_ATTENTION, LOOM_F32, 2, (int64_t[]){S, Dq}, 6, tq, ks, vs, tp, tsq, ttb);
    t.nodes[att].ip[0] = H, t.nodes[att].ip[1] = Hkv, t.nodes[att].ip[2] = hd, t.nodes[att].ip[3] = bs;
    t.nodes[att].ip[4] = att_window;
    t.nodes[att].fp[0] = scale, t.nodes[att].fp[1] = att_softcap;
    char what[160];
    snprintf(what, sizeof what, "paged attention H=%d Hkv=%d hd=%d bs=%d window=%d softcap=%g", H, Hkv, hd, bs,
             att_window, (double)att_softcap);
    run_all(&t, att, ref, tol, (size_t)(S * Dq), what);
    /* a table entry pointing past the pool, and a sequence id past the table, are refused */
    table[0][1] = NB;
    run_fails(&t, "outside the", "paged attention with a block past the pool");
    table[0][1] = 2;
    seqs[5] = B;
    run_fails(&t, "outside the block table", "paged attention with an unknown sequence");
    free(q), free(pool), free(vpool), free(ref), free(tol), free(sc);
}

static void test_attention_paged(void) {
    test_attention_paged_case(4, 4, 64, 16);
    test_attention_paged_case(8, 2, 40, 5);
    test_attention_paged_case(14, 2, 64, 16);
    test_attention_paged_case(4, 1, 64, 1);
    /* a window that starts inside a later block (sequence 1 has 4 blocks), and one with a soft-cap */
    att_window = 5, att_softcap = 0;
    test_attention_paged_case(8, 2, 40, 5);
    test_attention_paged_case(4, 1, 64, 16);
    att_window = 20, att_softcap = 3.0f;
    test_attention_paged_case(14, 2, 64, 16);
    att_window = 0, att_softcap = 0;
}

/* ---- MOE ----------------------------------------------------------------------------------- */
/* The reference routes in double (softmax, top-k by a full sort of the logits, optional
 * renormalisation) and runs each chosen expert's SwiGLU MLP on the exact weight values. Its
 * tolerance follows the matmul bound through the MLP: 2^-16 * sum |terms| for each of gate, up
 * and down (2^-8 where the avx512bf16 GEMM rounds x to bf16), silu's 4e-6, and 1e-6 relative for
 * the routing weights. */
/* Random weights of a block-quantised type (or tg_weights for f32/f16/bf16): the encoded data, and
 * the exact values it decodes to in ref. */
static void *moe_weights(loom_dtype t, size_t n, float scale, float *ref) {
    if (!loom_dtype_is_quant(t)) return tg_weights(t, n, scale, ref);
    tg_fill(ref, n, scale);
    void *d = malloc(loom_dtype_nbytes(t, (int64_t)n));
    loom_quant_row(t, ref, d, (int64_t)n);
    loom_dequant_row(t, d, ref, (int64_t)n);
    return d;
}

/* For a quantised matmul the CPU rounds x to 8 bits per 32-element block (d = max|x| / 127): its
 * error is at most sum_k |w_k| d_block(k) / 2, returned here for row x against weight row w. */
static double q8_err(const float *x, const float *w, int64_t K) {
    double e = 0;
    for (int64_t b = 0; b < K; b += 32) {
        double mx = 0, sw = 0;
        for (int64_t i = b; i < b + 32 && i < K; i++) mx = fmax(mx, fabs(x[i])), sw += fabs(w[i]);
        e += sw * mx / 127 / 2;
    }
    return e;
}

static void test_moe_case(loom_dtype wt, int64_t S, int64_t E, int k, bool norm, int64_t D, int64_t F) {
    float *x = malloc(S * D * 4), *lg = malloc(S * E * 4);
    float *fg = malloc(E * F * D * 4), *fu = malloc(E * F * D * 4), *fd = malloc(E * D * F * 4);
    tg_fill(x, (size_t)(S * D), 1.0f);
    tg_fill(lg, (size_t)(S * E), 3.0f);
    void *wg = moe_weights(wt, (size_t)(E * F * D), 0.3f, fg), *wu = moe_weights(wt, (size_t)(E * F * D), 0.3f, fu);
    void *wd = moe_weights(wt, (size_t)(E * D * F), 0.3f, fd);
    bool q = loom_dtype_is_quant(wt);
    float *hf = malloc(F * 4);
    double *ref = calloc((size_t)(S * D), 8), *tol = calloc((size_t)(S * D), 8), *tol_bf = calloc((size_t)(S * D), 8);
    double *h = malloc(F * 8), *hb = malloc(F * 8);
    for (int64_t s = 0; s < S; s++) {
        const float *l = lg + s * E;
        int chosen[64];
        double mx = -INFINITY, sum = 0, csum = 0;
        for (int64_t e = 0; e < E; e++) mx = fmax(mx, l[e]), chosen[e] = (int)e;
        for (int64_t e = 0; e < E; e++) sum += exp(l[e] - mx);
        for (int64_t a = 0; a < E; a++) /* sort experts by logit, descending (insertion sort) */
            for (int64_t b = a; b > 0 && l[chosen[b]] > l[chosen[b - 1]]; b--) {
                int t = chosen[b];
                chosen[b] = chosen[b - 1], chosen[b - 1] = t;
            }
        for (int i = 0; i < k; i++) csum += exp(l[chosen[i]] - mx);
        for (int i = 0; i < k; i++) {
            int e = chosen[i];
            double w = exp(l[e] - mx) / (norm ? csum : sum);
            for (int64_t f = 0; f < F; f++) {
                double g = 0, u = 0, ga = 0, ua = 0;
                for (int64_t d = 0; d < D; d++) {
                    double xv = x[s * D + d];
                    g += xv * fg[(e * F + f) * D + d], ga += fabs(xv * fg[(e * F + f) * D + d]);
                    u += xv * fu[(e * F + f) * D + d], ua += fabs(xv * fu[(e * F + f) * D + d]);
                }
                double sg = g / (1 + exp(-g));
                h[f] = sg * u;
                hf[f] = (float)h[f];
                /* error of h: gate and up each off by 2^-16 of their abs sums (silu' <= 1.1), plus
                 * the 8-bit rounding of x for quantised weights (scaled by 2^16 like the rest) */
                double eg = q ? q8_err(x + s * D, fg + (e * F + f) * D, D) * 65536 : 0;
                double eu = q ? q8_err(x + s * D, fu + (e * F + f) * D, D) * 65536 : 0;
                hb[f] = 1.1 * (ga + eg) * fabs(u) + fabs(sg) * (ua + eu) + fabs(h[f]) * 65536 * 4e-6;
            }
            for (int64_t d = 0; d < D; d++) {
                double y = 0, ya = 0, yb = 0;
                for (int64_t f = 0; f < F; f++) {
                    double wv = fd[(e * D + d) * F + f];
                    y += wv * h[f], ya += fabs(wv * h[f]), yb += fabs(wv) * hb[f];
                }
                if (q) ya += q8_err(hf, fd + (e * D + d) * F, F) * 65536 * 1.01; /* h rounded to 8 bits */
                ref[s * D + d] += w * y;
                tol[s * D + d] += w * (ldexp(ya + yb, -16) + 1e-6 * fabs(y));
                tol_bf[s * D + d] += w * (ldexp(ya + yb, -8) + 1e-6 * fabs(y));
            }
        }
    }
    tg t;
    tg_init(&t);
    int tx = tg_input(&t, LOOM_F32, 2, (int64_t[]){S, D}, x), tl = tg_input(&t, LOOM_F32, 2, (int64_t[]){S, E}, lg);
    int tgw = tg_weight(&t, wt, 3, (int64_t[]){E, F, D}, wg), tuw = tg_weight(&t, wt, 3, (int64_t[]){E, F, D}, wu);
    int tdw = tg_weight(&t, wt, 3, (int64_t[]){E, D, F}, wd);
    for (int w = 0; w < t.nw; w++) /* the harness sizes weights by element size: blocks for quantised ones */
        t.w[w].nbytes = loom_dtype_nbytes(t.w[w].type, t.w[w].ne[0] * t.w[w].ne[1] * t.w[w].ne[2]);
    int y = tg_node(&t, LOOM_OP_MOE, LOOM_F32, 2, (int64_t[]){S, D}, 5, tx, tl, tgw, tuw, tdw);
    t.nodes[y].ip[0] = k, t.nodes[y].ip[1] = norm;
    char what[128];
    snprintf(what, sizeof what, "moe %s S=%lld E=%lld k=%d%s D=%lld F=%lld", loom_dtype_name(wt), (long long)S,
             (long long)E, k, norm ? " norm" : "", (long long)D, (long long)F);
    for (size_t i = 0; i < (size_t)(S * D); i++) tol[i] += 1e-30, tol_bf[i] += 1e-30;
    for (int f = 0; f < n_flav; f++) {
        bool lossy = wt == LOOM_BF16 && loom_cpu_backend_gemm_bf16_rounds_x(flav[f]);
        tg_run_out o;
        int rc = tg_run(&t, flav[f], &o);
        CHECK(rc == 0, "%s [%s]: %s", what, loom_cpu_backend_isa(flav[f]), o.err);
        if (rc == 0) expect(what, loom_cpu_backend_isa(flav[f]), tg_f32(&t, &o, y), ref, lossy ? tol_bf : tol, (size_t)(S * D));
        tg_out_free(&o);
    }
    free(x), free(lg), free(fg), free(fu), free(fd), free(wg), free(wu), free(wd);
    free(ref), free(tol), free(tol_bf), free(h), free(hb), free(hf);
}

static void test_moe(void) {
    for (int wi = 0; wi < 3; wi++) {
        test_moe_case(wtypes[wi], 1, 8, 2, true, 45, 37);   /* Mixtral-like decode */
        test_moe_case(wtypes[wi], 17, 8, 2, true, 45, 37);  /* prefill: rows grouped per expert */
        test_moe_case(wtypes[wi], 3, 16, 4, false, 64, 96); /* Qwen3-MoE without norm_topk_prob */
    }
    test_moe_case(LOOM_F32, 33, 6, 6, true, 32, 20); /* every expert chosen: plain weighted sum */
    test_moe_case(LOOM_F16, 5, 7, 1, false, 40, 17); /* top-1, weight = the softmax probability */
    /* block-quantised stacks (rows whole blocks): the quantised matmuls on slices of the stack */
    test_moe_case(LOOM_Q8_0, 1, 8, 2, true, 64, 96);
    test_moe_case(LOOM_Q8_0, 9, 8, 2, true, 64, 96);
    test_moe_case(LOOM_Q4_0, 9, 4, 2, false, 64, 32);
}

static void test_kv_errors(void) {
    enum { C = 10, W = 12, S = 3 };
    float cache[C * W], rows[S * W], q[S * W];
    tg_fill(cache, C * W, 1.0f);
    tg_fill(rows, S * W, 1.0f);
    tg_fill(q, S * W, 1.0f);
    int32_t pos[S] = {7, 2, 10};
    tg t;
    tg_init(&t);
    int tr = tg_input(&t, LOOM_F32, 2, (int64_t[]){S, W}, rows);
    int tp = tg_input(&t, LOOM_I32, 1, (int64_t[]){S}, pos);
    int ks = tg_state(&t, C, W, cache);
    int k2 = tg_node(&t, LOOM_OP_KV_STORE, LOOM_F32, 2, (int64_t[]){C, W}, 3, ks, tr, tp);
    tg_inplace(&t, k2);
    run_fails(&t, "outside the cache", "kv_store at position 10 of 10");
    pos[2] = -3;
    run_fails(&t, "outside the cache", "kv_store at position -3");

    tg_init(&t);
    pos[2] = 10;
    int tq = tg_input(&t, LOOM_F32, 2, (int64_t[]){S, W}, q);
    tp = tg_input(&t, LOOM_I32, 1, (int64_t[]){S}, pos);
    ks = tg_state(&t, C, W, cache);
    int att = tg_node(&t, LOOM_OP_ATTENTION, LOOM_F32, 2, (int64_t[]){S, W}, 4, tq, ks, ks, tp);
    t.nodes[att].ip[0] = 2, t.nodes[att].ip[1] = 2, t.nodes[att].ip[2] = 6;
    t.nodes[att].fp[0] = 0.5f;
    run_fails(&t, "outside the cache", "attention at position 10 of 10");
}

/* ---- PERMUTE -------------------------------------------------------------------------------- */
static void test_permute_case(int nd, const int64_t *ne, const int *axes) {
    int64_t n = 1, one[4] = {1, 1, 1, 1}, out_ne[4];
    for (int d = 0; d < nd; d++) n *= ne[d], out_ne[d] = ne[axes[d]];
    float *x = malloc(n * 4);
    double *ref = malloc(n * 8);
    tg_fill(x, (size_t)n, 1.0f);
    /* strides of the source; walk the output in order */
    int64_t st[4], acc = 1;
    for (int d = nd - 1; d >= 0; d--) st[d] = acc, acc *= ne[d];
    int64_t ix[4] = {0}, e4[4];
    for (int d = 0; d < 4; d++) e4[d] = d < nd ? out_ne[d] : one[d];
    for (int64_t o = 0; o < n; o++) {
        int64_t src = 0;
        for (int d = 0; d < nd; d++) src += ix[d] * st[axes[d]];
        ref[o] = x[src];
        for (int d = nd - 1; d >= 0; d--) {
            if (++ix[d] < e4[d]) break;
            ix[d] = 0;
        }
    }
    tg t;
    tg_init(&t);
    int tx = tg_input(&t, LOOM_F32, nd, ne, x);
    int y = tg_node(&t, LOOM_OP_PERMUTE, LOOM_F32, nd, out_ne, 1, tx);
    for (int d = 0; d < nd; d++) t.nodes[y].ip[d] = axes[d];
    char what[64];
    snprintf(what, sizeof what, "permute %dD (%d %d %d %d)", nd, axes[0], nd > 1 ? axes[1] : -1,
             nd > 2 ? axes[2] : -1, nd > 3 ? axes[3] : -1);
    run_all(&t, y, ref, NULL, (size_t)n, what);
    free(x), free(ref);
}

static void test_permute(void) {
    test_permute_case(2, (int64_t[]){7, 13}, (int[]){1, 0});
    test_permute_case(3, (int64_t[]){5, 3, 17}, (int[]){1, 0, 2});
    test_permute_case(3, (int64_t[]){5, 3, 17}, (int[]){2, 0, 1});
    test_permute_case(4, (int64_t[]){2, 3, 4, 5}, (int[]){0, 2, 1, 3});
    test_permute_case(4, (int64_t[]){2, 3, 4, 5}, (int[]){3, 1, 0, 2});
}

/* ---- supports ------------------------------------------------------------------------------- */
static void test_supports(void) {
    loom_backend *be = flav[0];
    tg t;
    tg_init(&t);
    float dummy[64] = {0};
    int tx = tg_input(&t, LOOM_F32, 2, (int64_t[]){2, 4}, dummy);
    int wi = tg_weight(&t, LOOM_I32, 2, (int64_t[]){3, 4}, dummy);
    int wf = tg_weight(&t, LOOM_F16, 2, (int64_t[]){3, 4}, dummy);
    int wk = tg_weight(&t, LOOM_F16, 2, (int64_t[]){3, 5}, dummy);
    int ok = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){2, 3}, 2, tx, wf);
    int bad_t = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){2, 3}, 2, tx, wi);
    int bad_k = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){2, 3}, 2, tx, wk);
    CHECK(be->ops->supports(be, &t.g, ok), "matmul f16 should be supported");
    CHECK(!be->ops->supports(be, &t.g, bad_t), "matmul with an i32 weight should not be supported");
    CHECK(!be->ops->supports(be, &t.g, bad_k), "matmul with mismatched K should not be supported");
    int r = tg_node(&t, LOOM_OP_ROPE, LOOM_F32, 2, (int64_t[]){2, 4}, 2, tx, tx);
    t.nodes[r].ip[0] = 1, t.nodes[r].ip[1] = 4, t.nodes[r].ip[3] = 4;
    CHECK(!be->ops->supports(be, &t.g, r), "rope with f32 positions should not be supported");
    int a = tg_node(&t, LOOM_OP_ATTENTION, LOOM_F32, 2, (int64_t[]){2, 4}, 4, tx, tx, tx, tx);
    t.nodes[a].ip[0] = 3, t.nodes[a].ip[1] = 2, t.nodes[a].ip[2] = 4;
    CHECK(!be->ops->supports(be, &t.g, a), "attention with 3 heads over 2 kv heads should not be supported");
    /* parameters: one graph.h does not define is refused by every flavour, naming the op and slot;
     * a defined one a backend lacks is refused naming the parameter (loom_params_check) */
    int32_t pos[2] = {0, 1};
    int tp = tg_input(&t, LOOM_I32, 1, (int64_t[]){2}, pos);
    int a2 = tg_node(&t, LOOM_OP_ATTENTION, LOOM_F32, 2, (int64_t[]){2, 4}, 4, tx, tx, tx, tp);
    t.nodes[a2].ip[0] = 1, t.nodes[a2].ip[1] = 1, t.nodes[a2].ip[2] = 4, t.nodes[a2].fp[0] = 0.5f;
    t.nodes[a2].ip[4] = 3, t.nodes[a2].fp[1] = 20.0f;
    for (int f = 0; f < n_flav; f++)
        CHECK(flav[f]->ops->supports(flav[f], &t.g, a2), "attention with a window and a soft-cap [%s]: %s",
              loom_cpu_backend_isa(flav[f]), loom_last_error());
    t.nodes[a2].ip[6] = 7;
    for (int f = 0; f < n_flav; f++) {
        loom_err_clear();
        CHECK(!flav[f]->ops->supports(flav[f], &t.g, a2) && strstr(loom_last_error(), "ip[6] = 7") &&
                  strstr(loom_last_error(), "attention"),
              "an undefined attention parameter must be refused by name [%s]: '%s'", loom_cpu_backend_isa(flav[f]),
              loom_last_error());
    }
    t.nodes[a2].ip[6] = 0;
    CHECK(!loom_params_check(&t.nodes[a2], "test", 0, 1u << 1) && strstr(loom_last_error(), "logit soft-cap") &&
              strstr(loom_last_error(), "not implemented"),
          "a backend lacking the soft-cap must say so: '%s'", loom_last_error());
    CHECK(loom_params_check(&t.nodes[a2], "test", 1u << 3, 0), "a lacking parameter left at 0 is no reason to refuse");
    { /* planning a step with such a node fails with the backend's reason (loom_plan_check) */
        tg t2;
        tg_init(&t2);
        int x2 = tg_input(&t2, LOOM_F32, 2, (int64_t[]){2, 4}, dummy);
        int g2 = tg_node(&t2, LOOM_OP_GELU, LOOM_F32, 2, (int64_t[]){2, 4}, 1, x2);
        t2.nodes[g2].ip[3] = 5;
        CHECK(loom_plan_check(be, &t2.p, "cpu") < 0 && strstr(loom_last_error(), "cannot compute node") &&
                  strstr(loom_last_error(), "ip[3] = 5"),
              "plan check must name the parameter: '%s'", loom_last_error());
    }
    int sc = tg_node(&t, LOOM_OP_GELU, LOOM_F32, 2, (int64_t[]){2, 4}, 1, tx);
    t.nodes[sc].fp[0] = 2.0f; /* GELU has no parameters */
    CHECK(!be->ops->supports(be, &t.g, sc) && strstr(loom_last_error(), "fp[0]"), "gelu with fp[0] set: '%s'",
          loom_last_error());
}

int main(void) {
    loom_backend_opts o = {.n_threads = 2};
    flav[n_flav++] = loom_cpu_backend_new_isa(&o, "scalar");
    if (cpu_has_avx2()) flav[n_flav++] = loom_cpu_backend_new_isa(&o, "avx2");
    if (cpu_has_avx512()) flav[n_flav++] = loom_cpu_backend_new_isa(&o, "avx512");
    if (cpu_has_avx512bf16()) flav[n_flav++] = loom_cpu_backend_new_isa(&o, "avx512bf16");
    for (int f = 0; f < n_flav; f++)
        if (!flav[f]) {
            fprintf(stderr, "cannot create a cpu backend: %s\n", loom_last_error());
            return 1;
        }
    printf("flavours:");
    for (int f = 0; f < n_flav; f++) printf(" %s", loom_cpu_backend_isa(flav[f]));
    printf("\n");
    /* forcing the scalar switch must give the scalar kernels */
    loom_backend_opts fs = {.n_threads = 1, .force_scalar = true};
    loom_backend *be = loom_cpu_backend_new(&fs);
    CHECK(be && !strcmp(loom_cpu_backend_isa(be), "scalar"), "force_scalar must select scalar kernels");
    loom_backend_close(be);
    CHECK(loom_cpu_backend_new_isa(&o, "sse9") == NULL && strstr(loom_last_error(), "sse9"),
          "an unknown flavour must fail with a message");

    scalar_out = malloc(4 << 20);
    test_embed();
    test_matmul();
    test_elementwise();
    test_activations();
    test_rows();
    test_rope();
    test_attention();
    test_attention_paged();
    test_attention_ring();
    test_kv_errors();
    test_moe();
    test_permute();
    test_supports();
    free(scalar_out);
    for (int f = 0; f < n_flav; f++) loom_backend_close(flav[f]);
    CHECK_DONE();
}
