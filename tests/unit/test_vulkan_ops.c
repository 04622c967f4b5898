/* Every op of graph/graph.h on the Vulkan backend (lavapipe on CI) against the CPU backend's
 * portable scalar kernels, on awkward shapes, for f32/f16/bf16 weights, through both paths:
 * compute_node (one submission per node) and compute_plan (the recorded, replayed command buffer);
 * under ASan a case takes one of them per backend, alternating (tg_vk_path_on, test_cpu_graph.h).
 *
 * Three Vulkan backends are opened: the default one; one with 16-bit storage and subgroup ops
 * turned off (f16 weights unpacked from uint, decode through the tiled matmul); and one whose
 * weights are split into 16 KiB overlapping pieces so matmul/embed are chunked, the path a weight
 * larger than the device's largest allocation or storage binding takes on a real GPU.
 *
 * Tolerances: exact ops (EMBED, ADD, MUL, SCALE, KV_STORE, PERMUTE) must match bit for bit;
 * MATMUL within 2^-15 * sum_k |x_k w_k| of its row plus 1e-6; transcendental ops (SILU, SWIGLU,
 * SOFTMAX, RMSNORM, ROPE) within 2e-5 relative + 2e-6 absolute (GPU exp/sin/cos are not
 * correctly rounded); ATTENTION within 2e-5 * max|v| + 1e-5 * |ref|.
 * A device with cooperative matrices (describe() says "coopmat") runs the prefill MATMUL of f16/bf16
 * weights on them with x rounded to f16: there MATMUL gets 2^-10 * sum_k |x_k w_k| + K 2^-24 + 1e-6
 * (f16 rounding of x, its subnormal spacing). The second backend turns them off (no subgroups),
 * so the FMA kernel stays tested on such a device too; the third takes the 128 x 128 coopmat tiles
 * for every M >= 128 (LOOM_VK_CM_BIG_TILES=1), the default one only for very large products.
 * LOOM_VK_CM_VARIANT=<name> in the environment puts the first and third on that tensor-core variant
 * (vk_record.c's cm_variants) for every coopmat matmul: test_matmul's shapes cover its edges.
 * Prefill ATTENTION on cooperative matrices (attn_cm.comp, describe() says "attn-cm"; the default
 * where there are cooperative matrices): f16 queries, keys, values and p, so its outputs are held to
 * tests/unit/attn_cm_bound.h's bound per row (derived there; about 2e-3 max|v| on these f16-exact
 * test values) instead of the f32 one; the cases it must take (S >= 64 rows, head dim 16, 32, 64 or
 * 128) fail if its dispatch count (in describe()) did not grow, and a line per case says it ran.
 * No Vulkan device at all: SKIP (exit 77).
 */
#include "tests/unit/attn_cm_bound.h"
#include "tests/unit/check.h"
#define TG_VULKAN_BACKENDS
#include "tests/unit/test_cpu_graph.h"

#include <math.h>

#define NVK 3
static loom_backend *cpu, *vk[NVK];
static const char *vk_name[NVK] = {"vulkan", "vulkan(no f16 storage, no subgroup)", "vulkan(16 KiB weight pieces)"};
static bool vk_coopmat[NVK]; /* the backend runs f16/bf16 prefill matmuls on cooperative matrices */
static bool vk_attn_cm[NVK]; /* the backend runs prefill attention on attn_cm.comp (describe: "attn-cm") */

/* Compare got with ref: |got - ref| <= atol (or atolv[i] when atolv) + rtol |ref| (atol < 0: bit-exact).
 * Returns the largest error in units of the tolerance. */
static double cmp_v(const char *what, const char *be, const float *got, const float *ref, size_t n, double atol,
                    double rtol, const double *atolv) {
    size_t bad = 0, at = 0;
    double worst = -1, w = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]), tl = (atolv ? atolv[i] : atol) + rtol * fabs((double)ref[i]);
        bool ok = atol < 0 && !atolv ? memcmp(&got[i], &ref[i], 4) == 0 : d <= tl;
        if (!ok) {
            if (!(d <= worst)) worst = d, at = i;
            bad++;
        }
        if (atol >= 0 || atolv) w = d / tl > w || d != d ? d / tl : w;
    }
    CHECK(bad == 0, "%s [%s]: %zu of %zu values off; e.g. [%zu] got %.9g want %.9g", what, be, bad, n, at,
          got[at], ref[at]);
    if (getenv("LOOM_TEST_MEASURE") && (atol >= 0 || atolv)) /* the largest error in units of the tolerance */
        printf("measure %s [%s]: %.3g of the tolerance\n", what, be, w);
    return w;
}

static void cmp(const char *what, const char *be, const float *got, const float *ref, size_t n, double atol,
                double rtol) {
    cmp_v(what, be, got, ref, n, atol, rtol, NULL);
}

/* attn_cm.comp dispatches recorded by backend be so far (describe: "attn-cm (N recorded)") */
static unsigned long long attn_cm_count(loom_backend *be) {
    char desc[512] = "";
    be->ops->describe(be, desc, sizeof desc);
    const char *p = strstr(desc, "attn-cm (");
    return p ? strtoull(p + 9, NULL, 10) : 0;
}

/* Run t on the CPU (reference) and on every Vulkan backend through both paths (node by node, then
 * planned); compare `out`. Backends with cooperative matrices use atol_cm when it is >= 0.
 * attn >= 0: out is an ATTENTION output; where a backend ran attn_cm.comp (its count grew) the
 * tolerance is tol_cm[i] + rtol |ref| per element (attn_cm_bound.h; NULL: the case is not for that
 * kernel, and its running there is an error); attn = 1: the backends that have it must run it here. */
/* Set around the matmul cases whose point is a tensor-core tile (the 128 x 128 tiles, the
 * LOOM_VK_CM_VARIANT shapes): where the third backend has no cooperative matrices (lavapipe) it runs
 * them as the 64 x 64 FMA kernel over chunks of a few rows of W, the chunked path of test_matmul's
 * other cases, at ~14x the work of the unchunked run (16 KiB pieces: 3-7 rows a chunk at K ~ 1100),
 * so there they skip it (session 14: 4.1 of test_matmul's 16 release CPU-s). */
static bool skip_chunked_fma;

static void run_cmp_all(tg *t, int out, const char *what, double atol, double rtol, double atol_cm, int attn,
                        const double *tol_cm) {
    tg_run_out ro;
    int rc = tg_run(t, cpu, &ro);
    CHECK(rc == 0, "%s [cpu]: %s", what, ro.err);
    if (rc) {
        tg_out_free(&ro);
        return;
    }
    size_t n = tg_bytes(&t->nodes[out]) / 4;
    const float *ref = tg_f32(t, &ro, out);
    static unsigned vcase; /* under ASan a case takes one path per backend (tg_vk_path_on) */
    vcase++;
    for (int v = 0; v < NVK; v++) {
        if (!vk[v] || (v == 2 && skip_chunked_fma && !vk_coopmat[2])) continue;
        for (int mode = 0; mode < 2; mode++) {
            if (!tg_vk_path_on(vcase, v, mode)) continue;
            char name[96];
            snprintf(name, sizeof name, "%s %s", vk_name[v], mode ? "plan" : "node");
            unsigned long long c0 = attn >= 0 && vk_attn_cm[v] ? attn_cm_count(vk[v]) : 0;
            tg_run_out o;
            rc = mode ? tg_run_plan(t, vk[v], &o, 1, NULL, 0, NULL) : tg_run(t, vk[v], &o);
            CHECK(rc == 0, "%s [%s]: %s", what, name, o.err);
            bool ran = false;
            if (attn >= 0) {
                ran = vk_attn_cm[v] && attn_cm_count(vk[v]) > c0;
                CHECK(ran == (vk_attn_cm[v] && attn), "%s [%s]: attn_cm.comp %s", what, name,
                      ran ? "ran where this test did not expect it" : "did not run");
            }
            if (rc == 0) {
                double tol = vk_coopmat[v] && atol_cm >= 0 ? atol_cm : atol;
                double w = cmp_v(what, name, tg_f32(t, &o, out), ref, n, tol, rtol, ran && tol_cm ? tol_cm : NULL);
                if (ran) printf("%s [%s]: attn_cm.comp ran, largest error %.3g of its f16 bound\n", what, name, w);
            }
            tg_out_free(&o);
        }
    }
    tg_out_free(&ro);
}

static void run_cmp2(tg *t, int out, const char *what, double atol, double rtol, double atol_cm) {
    run_cmp_all(t, out, what, atol, rtol, atol_cm, -1, NULL);
}

static void run_cmp(tg *t, int out, const char *what, double atol, double rtol) { run_cmp2(t, out, what, atol, rtol, -1); }

/* run_cmp for an ATTENTION output (run_cmp_all's attn, tol_cm) */
static void run_cmp_attn(tg *t, int out, const char *what, double atol, double rtol, const double *tol_cm,
                         bool cm_expected) {
    run_cmp_all(t, out, what, atol, rtol, -1, cm_expected ? 1 : 0, tol_cm);
}

static const loom_dtype wtypes[3] = {LOOM_F32, LOOM_F16, LOOM_BF16};

/* ---- EMBED ------------------------------------------------------------------------------------ */
static void test_embed(void) {
    const int64_t V = 300, D = 45, S = 7; /* 300 x 45 f32 = 54 KB: split under tiny limits */
    int32_t ids[7] = {0, 299, 5, 5, 170, 298, 1};
    float *tab = malloc(V * D * sizeof(float));
    for (int wi = 0; wi < 3; wi++) {
        void *w = tg_weights(wtypes[wi], (size_t)(V * D), 2.0f, tab);
        tg t;
        tg_init(&t);
        int e = tg_embed(&t, tg_weight(&t, wtypes[wi], 2, (int64_t[]){V, D}, w), ids, S, NULL);
        char what[64];
        snprintf(what, sizeof what, "embed %s", loom_dtype_name(wtypes[wi]));
        run_cmp(&t, e, what, -1, 0);
        free(w);
    }
    free(tab);
}

/* ---- MATMUL ----------------------------------------------------------------------------------- */
static void test_matmul_case(loom_dtype wt, int64_t M, int64_t N, int64_t K, bool bias, int x_skip) {
    /* x_skip > 0: x is a view starting x_skip floats into a bigger tensor (unaligned binding) */
    float *x = malloc((M * K + x_skip) * sizeof(float)), *wf = malloc(N * K * sizeof(float));
    float *b = malloc(N * sizeof(float));
    tg_fill(x, (size_t)(M * K + x_skip), 1.0f);
    tg_fill(b, (size_t)N, 0.5f);
    void *w = tg_weights(wt, (size_t)(N * K), 0.5f, wf);
    tg t;
    tg_init(&t);
    int tx = tg_input(&t, LOOM_F32, 1, (int64_t[]){M * K + x_skip}, x);
    int xv = tg_view(&t, tx, 2, (int64_t[]){M, K}, (size_t)x_skip * 4);
    int tw = tg_weight(&t, wt, 2, (int64_t[]){N, K}, w);
    int y = tg_matmul(&t, xv, tw, bias ? b : NULL);
    double amax = tg_matmul_amax(x + x_skip, wf, bias ? b : NULL, M, N, K);
    char what[128];
    tg_matmul_name(what, sizeof what, wt, M, N, K, bias, x_skip);
    /* cooperative matrices: f16/bf16 weights, M > 8 (M <= 8 is the GEMV or the FMA kernel) */
    double cm = wt != LOOM_F32 && M > 8 ? ldexp(amax, -10) + (double)K * ldexp(1.0, -24) + 1e-6 : -1;
    run_cmp2(&t, y, what, ldexp(amax, -15) + 1e-6, 0, cm);
    free(x), free(wf), free(b), free(w);
}

static void test_matmul(void) {
    static const int64_t shapes[][2] = {{37, 19}, {130, 64}, {33, 200}, {300, 96}, {5, 1}};
    static const int64_t Ms[] = {1, 3, 8, 17, 70};
    for (int wi = 0; wi < 3; wi++)
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
            for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++) {
                int64_t N = shapes[si][0], K = shapes[si][1], M = Ms[mi];
                test_matmul_case(wtypes[wi], M, N, K, (si + mi) % 2 == 0, 0);
            }
    for (int wi = 0; wi < 3; wi++)
        test_matmul_case(wtypes[wi], 130, 520, 40, wi != 1, 0);
    test_matmul_case(LOOM_BF16, 257, 600, 33, false, 0);
    /* the 128 x 128 tile kernels (M >= 128 and >= 128 such tiles): vector loads (K = 24),
     * scalar loads (K = 33, rows not 16-byte aligned), ragged edges in M and N */
    skip_chunked_fma = true;
    for (int wi = 0; wi < 2; wi++) test_matmul_case(wtypes[wi], 257, 8200, 24, wi != 0, 0);
    test_matmul_case(LOOM_BF16, 131, 8250, 33, true, 0);
    skip_chunked_fma = false;
    /* several 64 x 64 tiles with every edge ragged, unaligned x, K over several 32-wide steps */
    test_matmul_case(LOOM_F16, 100, 150, 200, true, 1);
    /* few output tiles and a long K: split K, partial products summed by a second dispatch */
    for (int wi = 0; wi < 3; wi++) test_matmul_case(wtypes[wi], 20, 40, 1100, wi != 2, 0);
    test_matmul_case(LOOM_F16, 1, 70, 2500, true, 0); /* split K on the tiled path without subgroups */
    /* many rows: the GEMV puts several rows in a workgroup */
    test_matmul_case(LOOM_F16, 1, 2100, 64, true, 0);
    test_matmul_case(LOOM_BF16, 2, 5000, 24, false, 0);
    test_matmul_case(LOOM_F32, 3, 4100, 13, true, 0);
    test_matmul_case(LOOM_F32, 1, 40, 64, false, 1);
    test_matmul_case(LOOM_F16, 2, 40, 64, true, 3);
    test_matmul_case(LOOM_BF16, 20, 40, 64, true, 5);
    /* the LOOM_VK_CM_VARIANT tiles (128 x 128, 128 x 256, 256 x 128, 64 x 128) and their K steps of
     * 32 or 64 (K = 60 under one step of 64, 200 = 3 x 64 + 8; M = 257 above: a 256-row tile and one
     * of a single row):
     * ragged M and N for each, K % 32 != 0 with vector loads of f32 x (K % 4 == 0) but scalar ones
     * of the f16 x copy (K % 8 != 0), an x offset that is vec4-aligned, and a split K (few tiles,
     * K >= 1024) whose second part ends in a partial step, with K % 8 == 0 (vector loads of f16 x) */
    test_matmul_case(LOOM_F16, 140, 200, 60, true, 0);
    test_matmul_case(LOOM_BF16, 136, 264, 200, false, 4);
    skip_chunked_fma = true;
    test_matmul_case(LOOM_F16, 130, 40, 1096, true, 0);
    skip_chunked_fma = false;
}

/* ---- element-wise and row ops ---------------------------------------------------------------- */
static void test_eltwise(void) {
    static const int64_t shapes[][2] = {{1, 7}, {3, 300}, {17, 1000}};
    for (size_t si = 0; si < 3; si++) {
        int64_t M = shapes[si][0], Nn = shapes[si][1];
        size_t n = (size_t)(M * Nn);
        float *a = malloc(n * 4), *b = malloc(n * 4), *row = malloc(Nn * 4);
        tg_fill(a, n, 6.0f);
        tg_fill(b, n, 2.0f);
        tg_fill(row, (size_t)Nn, 2.0f);
        for (int op = 0; op < 7; op++) {
            for (int inplace = 0; inplace < 2; inplace++) {
                tg t;
                tg_init(&t);
                int64_t ne[2] = {M, Nn};
                int ta = tg_input(&t, LOOM_F32, 2, ne, a);
                int tb = tg_input(&t, LOOM_F32, 2, ne, b);
                int tr = tg_weight(&t, LOOM_F32, 1, (int64_t[]){Nn}, row);
                int y = -1;
                const char *name = "";
                double atol = -1, rtol = 0;
                switch (op) {
                case 0: y = tg_node(&t, LOOM_OP_ADD, LOOM_F32, 2, ne, 2, ta, tb), name = "add"; break;
                case 1: y = tg_node(&t, LOOM_OP_MUL, LOOM_F32, 2, ne, 2, ta, tr), name = "mul bcast"; break;
                case 2: y = tg_node(&t, LOOM_OP_ADD, LOOM_F32, 2, ne, 2, ta, tr), name = "add bcast"; break;
                case 3:
                    y = tg_node(&t, LOOM_OP_SCALE, LOOM_F32, 2, ne, 1, ta), name = "scale";
                    t.nodes[y].fp[0] = 0.37f;
                    break;
                case 4: y = tg_node(&t, LOOM_OP_SILU, LOOM_F32, 2, ne, 1, ta), name = "silu", atol = 2e-6, rtol = 2e-5; break;
                case 5: y = tg_node(&t, LOOM_OP_SWIGLU, LOOM_F32, 2, ne, 2, ta, tb), name = "swiglu", atol = 2e-6, rtol = 2e-5; break;
                case 6:
                    y = tg_node(&t, LOOM_OP_SOFTMAX, LOOM_F32, 2, ne, 1, ta), name = "softmax", atol = 2e-6, rtol = 2e-5;
                    t.nodes[y].fp[0] = 0.8f;
                    break;
                }
                if (inplace) tg_inplace(&t, y);
                char what[96];
                snprintf(what, sizeof what, "%s %lldx%lld%s", name, (long long)M, (long long)Nn,
                         inplace ? " in place" : "");
                run_cmp(&t, y, what, atol, rtol);
            }
        }
        for (int hw = 0; hw < 2; hw++) {
            tg t;
            tg_init(&t);
            int64_t ne[2] = {M, Nn};
            int ta = tg_input(&t, LOOM_F32, 2, ne, a);
            int tr = tg_weight(&t, LOOM_F32, 1, (int64_t[]){Nn}, row);
            int y = hw ? tg_node(&t, LOOM_OP_RMSNORM, LOOM_F32, 2, ne, 2, ta, tr)
                       : tg_node(&t, LOOM_OP_RMSNORM, LOOM_F32, 2, ne, 1, ta);
            t.nodes[y].fp[0] = 1e-5f;
            char what[96];
            snprintf(what, sizeof what, "rmsnorm %lldx%lld%s", (long long)M, (long long)Nn, hw ? " *w" : "");
            run_cmp(&t, y, what, 2e-6, 2e-5);
        }
        free(a), free(b), free(row);
    }
}

/* ---- GELU, GEGLU, SOFTCAP ---------------------------------------------------------------------- */
/* Inputs over [-12, 12] (GELU's tails, where its naive form cancels) and [-240, 240] for a cap of
 * 30. GELU for x < 0 is x / (1 + e^(-2u)): the GPU's exp errs by a few ulps of its argument
 * (|2u| up to ~88 here), a relative error that grows with |2u|, hence rtol 4e-5 (measured 1.7e-5);
 * 1e-36 absolute for results near FLT_MIN. SOFTCAP: 2e-6 relative + 1e-6 absolute (measured a third of it). */
static void test_activations(void) {
    static const int64_t shapes[][2] = {{1, 7}, {3, 300}, {17, 1000}};
    for (size_t si = 0; si < 3; si++) {
        int64_t M = shapes[si][0], Nn = shapes[si][1];
        size_t n = (size_t)(M * Nn);
        float *a = malloc(n * 4), *b = malloc(n * 4);
        tg_fill(b, n, 2.0f);
        for (int op = 0; op < 3; op++)
            for (int inplace = 0; inplace < 2; inplace++) {
                float lim = op == 2 ? 240.0f : 12.0f;
                for (size_t i = 0; i < n; i++) a[i] = -lim + 2 * lim * (float)i / (float)(n > 1 ? n - 1 : 1);
                if (n > 3) a[1] = 0.0f, a[2] = 1e-3f;
                tg t;
                tg_init(&t);
                int64_t ne[2] = {M, Nn};
                int ta = tg_input(&t, LOOM_F32, 2, ne, a), tb = tg_input(&t, LOOM_F32, 2, ne, b);
                int y;
                const char *name;
                double atol = 1e-36, rtol = 4e-5;
                if (op == 0) {
                    y = tg_node(&t, LOOM_OP_GELU, LOOM_F32, 2, ne, 1, ta), name = "gelu";
                } else if (op == 1) {
                    y = tg_node(&t, LOOM_OP_GEGLU, LOOM_F32, 2, ne, 2, ta, tb), name = "geglu";
                } else {
                    y = tg_node(&t, LOOM_OP_SOFTCAP, LOOM_F32, 2, ne, 1, ta), name = "softcap";
                    t.nodes[y].fp[0] = 30.0f;
                    atol = 1e-6, rtol = 2e-6;
                }
                if (inplace) tg_inplace(&t, y);
                char what[96];
                snprintf(what, sizeof what, "%s %lldx%lld%s", name, (long long)M, (long long)Nn, inplace ? " in place" : "");
                run_cmp(&t, y, what, atol, rtol);
            }
        free(a), free(b);
    }
}

/* ---- ROPE ------------------------------------------------------------------------------------- */
static void test_rope(void) {
    const int64_t S = 5, H = 3;
    int32_t pos[5] = {0, 1, 2, 7, 300}; /* a gap and a large position */
    static const int cfg[][3] = {{64, 64, 0}, {64, 64, 1}, {40, 24, 0}, {40, 24, 1}, {18, 18, 0}};
    for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++) {
        int hd = cfg[c][0], rot = cfg[c][1], mode = cfg[c][2];
        for (int ff = 0; ff < 2; ff++)
            for (int inplace = 0; inplace < 2; inplace++) {
                size_t n = (size_t)(S * H * hd);
                float *x = malloc(n * 4), *fac = malloc(rot / 2 * 4);
                tg_fill(x, n, 1.0f);
                for (int i = 0; i < rot / 2; i++) fac[i] = 1.0f + (float)i * 0.37f;
                tg t;
                tg_init(&t);
                int tx = tg_input(&t, LOOM_F32, 2, (int64_t[]){S, H * hd}, x);
                int tp = tg_input(&t, LOOM_I32, 1, (int64_t[]){S}, pos);
                int tf = tg_weight(&t, LOOM_F32, 1, (int64_t[]){rot / 2}, fac);
                int y = ff ? tg_node(&t, LOOM_OP_ROPE, LOOM_F32, 2, (int64_t[]){S, H * hd}, 3, tx, tp, tf)
                           : tg_node(&t, LOOM_OP_ROPE, LOOM_F32, 2, (int64_t[]){S, H * hd}, 2, tx, tp);
                loom_node *nd = &t.nodes[y];
                nd->ip[0] = (int)H, nd->ip[1] = hd, nd->ip[2] = mode, nd->ip[3] = rot;
                nd->fp[0] = 10000.0f, nd->fp[1] = ff ? 1.0f : 0.5f;
                if (inplace) tg_inplace(&t, y);
                char what[96];
                snprintf(what, sizeof what, "rope %s hd=%d rot=%d%s%s", mode ? "norm" : "neox", hd, rot,
                         ff ? " factors" : " scaled", inplace ? " in place" : "");
                /* position 300 makes angles ~300 rad: sin/cos of a float argument, 1e-4 absolute */
                run_cmp(&t, y, what, 1e-4, 2e-5);
                free(x), free(fac);
            }
    }
}

/* ---- KV_STORE + ATTENTION -------------------------------------------------------------------- */
/* The attention tests' step inputs: q [S, QW], this step's k and v rows [S, W], positions [S]. */
typedef struct vt_step { int q, k, v, pos; } vt_step;
static vt_step vt_step_inputs(tg *t, int64_t S, int64_t QW, int64_t W, const float *q, const float *k,
                              const float *v, const int32_t *pos) {
    vt_step r;
    r.q = tg_input(t, LOOM_F32, 2, (int64_t[]){S, QW}, q);
    r.k = tg_input(t, LOOM_F32, 2, (int64_t[]){S, W}, k);
    r.v = tg_input(t, LOOM_F32, 2, (int64_t[]){S, W}, v);
    r.pos = tg_input(t, LOOM_I32, 1, (int64_t[]){S}, pos);
    return r;
}

/* KV_STORE of `rows` at `idx` into the STATE cache node, in place: every attention graph here
 * writes its K and V caches so. */
static int vt_kv_store(tg *t, int cache, int rows, int idx) {
    int i = tg_node(t, LOOM_OP_KV_STORE, LOOM_F32, 2, t->nodes[cache].ne, 3, cache, rows, idx);
    tg_inplace(t, i);
    return i;
}

/* Attention options of the next cases (graph.h ATTENTION ip[4] window, fp[1] soft-cap; 0: off). */
static int vt_window;
static float vt_softcap;

/* attn_cm.comp's bound (attn_cm_bound.h) per output of attention over caches kc/vc after this
 * step's rows kr/vr are stored at pos */
static double *attn_cm_tols(int64_t S, int64_t C, int H, int Hkv, int hd, const int32_t *pos, const float *q,
                            const float *kr, const float *vr, const float *kc, const float *vc, float scale, int window) {
    size_t W = (size_t)Hkv * hd, nc = (size_t)C * W;
    float *k = malloc(nc * 4), *v = malloc(nc * 4), *ek = malloc(nc * 4), *ev = malloc(nc * 4);
    double *tol = malloc((size_t)S * H * hd * sizeof(double));
    memcpy(k, kc, nc * 4), memcpy(v, vc, nc * 4);
    for (int64_t s = 0; s < S; s++)
        if (pos[s] >= 0 && pos[s] < C) memcpy(k + pos[s] * W, kr + s * W, W * 4), memcpy(v + pos[s] * W, vr + s * W, W * 4);
    acm_errs(ek, k, nc), acm_errs(ev, v, nc);
    for (int64_t s = 0; s < S; s++)
        for (int h = 0; h < H; h++) {
            int p = pos[s], L = p < 0 ? 0 : (p + 1 < C ? p + 1 : (int)C);
            int lo = window > 0 && p + 1 > window ? p + 1 - window : 0;
            lo = lo < L ? lo : L;
            size_t kh = (size_t)(h / (H / Hkv)) * hd;
            double t = acm_row_tol(q + (s * H + h) * hd, scale, k + kh, v + kh, ek + kh, ev + kh, W, hd, lo, L);
            for (int d = 0; d < hd; d++) tol[(s * H + h) * hd + d] = t;
        }
    free(k), free(v), free(ek), free(ev);
    return tol;
}

static void attn_case(int64_t S, int64_t C, int H, int Hkv, int hd, const int32_t *pos, int n_filled) {
    int W = Hkv * hd;
    float *q = malloc(S * H * hd * 4), *kr = malloc(S * W * 4), *vr = malloc(S * W * 4);
    float *kc = calloc((size_t)(C * W), 4), *vc = calloc((size_t)(C * W), 4);
    tg_fill(q, (size_t)(S * H * hd), 1.0f);
    tg_fill(kr, (size_t)(S * W), 1.0f);
    tg_fill(vr, (size_t)(S * W), 1.0f);
    tg_fill(kc, (size_t)(n_filled * W), 1.0f); /* earlier steps' rows */
    tg_fill(vc, (size_t)(n_filled * W), 1.0f);
    bool any_cm = false;
    for (int v = 0; v < NVK; v++) any_cm |= vk[v] && vk_attn_cm[v];
    /* the cases attn_cm.comp takes where a backend has it (rec_attention) */
    bool cm_case = S >= 64 && (hd == 16 || hd == 32 || hd == 64 || hd == 128);
    if (any_cm && cm_case) { /* f16 values, so the bound keeps only p's rounding (attn_cm_bound.h) */
        for (int64_t i = 0; i < S * H * hd; i++) q[i] = acm_f16(q[i]);
        for (int64_t i = 0; i < S * W; i++) kr[i] = acm_f16(kr[i]), vr[i] = acm_f16(vr[i]);
        for (int64_t i = 0; i < C * W; i++) kc[i] = acm_f16(kc[i]), vc[i] = acm_f16(vc[i]);
    }
    tg t;
    tg_init(&t);
    vt_step in = vt_step_inputs(&t, S, H * hd, W, q, kr, vr, pos);
    int sk = tg_state(&t, C, W, kc), sv = tg_state(&t, C, W, vc);
    int k2 = vt_kv_store(&t, sk, in.k, in.pos);
    int v2 = vt_kv_store(&t, sv, in.v, in.pos);
    int o = tg_node(&t, LOOM_OP_ATTENTION, LOOM_F32, 2, (int64_t[]){S, H * hd}, 4, in.q, k2, v2, in.pos);
    t.nodes[o].ip[0] = H, t.nodes[o].ip[1] = Hkv, t.nodes[o].ip[2] = hd, t.nodes[o].ip[4] = vt_window;
    t.nodes[o].fp[0] = 1.0f / sqrtf((float)hd), t.nodes[o].fp[1] = vt_softcap;
    char what[160];
    snprintf(what, sizeof what, "attention S=%lld C=%lld H=%d Hkv=%d hd=%d pos0=%d window=%d softcap=%g", (long long)S,
             (long long)C, H, Hkv, hd, pos[0], vt_window, (double)vt_softcap);
    double *tol_cm = any_cm && cm_case ? attn_cm_tols(S, C, H, Hkv, hd, pos, q, kr, vr, kc, vc, t.nodes[o].fp[0], vt_window)
                                       : NULL;
    run_cmp_attn(&t, o, what, 2e-5, 1e-5, tol_cm, cm_case);
    free(tol_cm);
    snprintf(what + strlen(what), sizeof what - strlen(what), " (cache)");
    run_cmp(&t, k2, what, -1, 0);
    free(q), free(kr), free(vr), free(kc), free(vc);
}

static void test_attention(void) {
    int32_t p5[5] = {0, 1, 2, 3, 4}, pg[5] = {3, 4, 5, 9, 10}, p1[1] = {650}, p0[1] = {0};
    attn_case(5, 16, 4, 4, 64, p5, 0);
    attn_case(5, 16, 6, 2, 40, pg, 3);    /* GQA, gap in positions, rows already in the cache */
    attn_case(1, 700, 6, 2, 64, p1, 650); /* decode with key splits */
    attn_case(1, 700, 2, 1, 160, p1, 650); /* head_dim over the workgroup size, splits */
    attn_case(1, 300, 4, 2, 32, p0, 0);    /* first token: one key */
    int32_t p200[200];
    for (int i = 0; i < 200; i++) p200[i] = i;
    attn_case(200, 256, 2, 1, 64, p200, 0); /* more keys than one tile */
    attn_case(3, 64, 20, 2, 16, pg, 4);     /* 10 query heads per kv head: two head groups */
    attn_case(1, 4096, 14, 2, 64, p1, 650); /* qwen2-0.5b decode: 7 heads per kv head, 32 splits */
    attn_case(2, 40, 3, 3, 18, pg, 2);      /* head_dim not a multiple of 4 */
    int32_t p150[1] = {150};
    attn_case(1, 200, 4, 1, 256, p150, 150); /* the largest head_dim */
    /* prefill tiles (attn_fa.comp: S >= 64, head_dim <= 128 and a multiple of 4) */
    int32_t pp[100];
    for (int i = 0; i < 100; i++) pp[i] = 40 + i;
    attn_case(100, 160, 10, 2, 16, pp, 40);  /* 5 heads per kv head, rows after a cached prefix */
    attn_case(70, 128, 4, 4, 128, p200, 0);  /* head_dim 128, one head: 32 rows a tile, last one 6 */
    attn_case(96, 200, 14, 2, 64, pp, 40);   /* qwen2-0.5b's 7 heads per kv head: 4 rows a tile */
    attn_case(64, 80, 6, 2, 40, p200, 0);    /* head_dim 40: a partial group of 8 vec4 */
    for (int i = 0; i < 100; i++) pp[i] = 3 * i + (i % 5 == 0);
    attn_case(80, 300, 8, 1, 32, pp, 0);     /* 8 heads per kv head, gaps: every row its own length */
    /* options: a window over key splits (decode), one that cuts nothing, a prefill where every
     * row's window starts elsewhere, with a soft-cap; q scaled up so the cap bends the scores */
    vt_window = 100;
    attn_case(1, 700, 6, 2, 64, p1, 650);
    vt_window = 1000;
    attn_case(1, 700, 6, 2, 64, p1, 650);
    vt_window = 50, vt_softcap = 0.3f;
    attn_case(200, 256, 2, 1, 64, p200, 0);
    vt_window = 0;
    attn_case(5, 16, 6, 2, 40, pg, 3);
    vt_softcap = 0;
    /* the prefill tiles with both: rows whose windows start in different key tiles */
    for (int i = 0; i < 100; i++) pp[i] = 40 + i;
    vt_window = 37, vt_softcap = 0.5f;
    attn_case(100, 160, 10, 2, 16, pp, 40);
    vt_window = 0, vt_softcap = 0;
}

/* A ring cache of C rows (graph.h ATTENTION ip[5]): this step's rows stored at pos % C, keys read
 * at j % C; the cache holds earlier rows (random: the scalar path is the reference). */
static void ring_case(int64_t S, int64_t C, int H, int Hkv, int hd, int W, int pos0, float softcap) {
    int Wd = Hkv * hd;
    float *q = malloc(S * H * hd * 4), *kr = malloc(S * Wd * 4), *vr = malloc(S * Wd * 4);
    float *kc = malloc(C * Wd * 4), *vc = malloc(C * Wd * 4);
    int32_t *pos = malloc(S * 4), *row = malloc(S * 4);
    tg_fill(q, (size_t)(S * H * hd), 1.0f);
    tg_fill(kr, (size_t)(S * Wd), 1.0f), tg_fill(vr, (size_t)(S * Wd), 1.0f);
    tg_fill(kc, (size_t)(C * Wd), 1.0f), tg_fill(vc, (size_t)(C * Wd), 1.0f);
    for (int s = 0; s < S; s++) pos[s] = pos0 + s, row[s] = (int32_t)((pos0 + s) % C);
    tg t;
    tg_init(&t);
    vt_step in = vt_step_inputs(&t, S, H * hd, Wd, q, kr, vr, pos);
    int tr = tg_input(&t, LOOM_I32, 1, (int64_t[]){S}, row);
    int sk = tg_state(&t, C, Wd, kc), sv = tg_state(&t, C, Wd, vc);
    int k2 = vt_kv_store(&t, sk, in.k, tr), v2 = vt_kv_store(&t, sv, in.v, tr);
    int o = tg_node(&t, LOOM_OP_ATTENTION, LOOM_F32, 2, (int64_t[]){S, H * hd}, 4, in.q, k2, v2, in.pos);
    t.nodes[o].ip[0] = H, t.nodes[o].ip[1] = Hkv, t.nodes[o].ip[2] = hd, t.nodes[o].ip[4] = W, t.nodes[o].ip[5] = 1;
    t.nodes[o].fp[0] = 1.0f / sqrtf((float)hd), t.nodes[o].fp[1] = softcap;
    char what[160];
    snprintf(what, sizeof what, "ring attention S=%lld C=%lld H=%d Hkv=%d hd=%d W=%d pos0=%d softcap=%g", (long long)S,
             (long long)C, H, Hkv, hd, W, pos0, (double)softcap);
    run_cmp(&t, o, what, 2e-5, 1e-5);
    free(q), free(kr), free(vr), free(kc), free(vc), free(pos), free(row);
}

static void test_attention_ring(void) {
    ring_case(1, 512, 6, 2, 64, 512, 1300, 0);  /* decode over key splits, the window wraps */
    ring_case(17, 40, 4, 2, 40, 24, 100, 0.3f); /* prefill, C = W + S - 1 */
    ring_case(3, 20, 2, 1, 64, 18, 5, 0);       /* early: nothing wraps */
    ring_case(70, 100, 4, 2, 32, 31, 200, 0);   /* a prefill of 64+ rows past the ring's end: not for the tile kernels */
}

/* Paged attention (several sequences, graph.h): rows stored to slots through the block tables,
 * then attention through them, against the CPU's scalar kernels. nb blocks of bs rows, shuffled;
 * sequence b holds len[b] keys before this step and takes the step's rows at its next positions. */
static void paged_case(int B, const int *len, const int *new_rows, int nb, int bs, int H, int Hkv, int hd) {
    int W = Hkv * hd, M = nb, S = 0;
    int64_t C = (int64_t)nb * bs;
    for (int b = 0; b < B; b++) S += new_rows[b];
    int32_t *table = malloc((size_t)B * M * 4), *pos = malloc((size_t)S * 4), *slot = malloc((size_t)S * 4),
            *seq = malloc((size_t)S * 4), *perm = malloc((size_t)nb * 4);
    for (int i = 0; i < nb; i++) perm[i] = i;
    for (int i = nb - 1; i > 0; i--) { /* a fixed shuffle of the pool */
        int j = (i * 7 + 3) % (i + 1), tmp = perm[i];
        perm[i] = perm[j], perm[j] = tmp;
    }
    int used = 0, s = 0;
    for (int b = 0; b < B; b++) {
        int need = (len[b] + new_rows[b] + bs - 1) / bs;
        for (int k = 0; k < M; k++) table[b * M + k] = k < need ? perm[used + k] : 0;
        used += need;
        for (int r = 0; r < new_rows[b]; r++, s++) {
            int j = len[b] + r;
            pos[s] = j, seq[s] = b, slot[s] = table[b * M + j / bs] * bs + j % bs;
        }
    }
    CHECK(used <= nb, "paged_case: %d blocks needed, %d in the pool", used, nb);
    float *q = malloc((size_t)S * H * hd * 4), *kr = malloc((size_t)S * W * 4), *vr = malloc((size_t)S * W * 4);
    float *kc = malloc((size_t)C * W * 4), *vc = malloc((size_t)C * W * 4);
    tg_fill(q, (size_t)S * H * hd, 1.0f);
    tg_fill(kr, (size_t)S * W, 1.0f);
    tg_fill(vr, (size_t)S * W, 1.0f);
    tg_fill(kc, (size_t)C * W, 1.0f);
    tg_fill(vc, (size_t)C * W, 1.0f);
    tg t;
    tg_init(&t);
    vt_step in = vt_step_inputs(&t, S, H * hd, W, q, kr, vr, pos);
    int tsl = tg_input(&t, LOOM_I32, 1, (int64_t[]){S}, slot);
    int tsq = tg_input(&t, LOOM_I32, 1, (int64_t[]){S}, seq);
    int ttb = tg_input(&t, LOOM_I32, 2, (int64_t[]){B, M}, table);
    int sk = tg_state(&t, C, W, kc), sv = tg_state(&t, C, W, vc);
    int k2 = vt_kv_store(&t, sk, in.k, tsl);
    int v2 = vt_kv_store(&t, sv, in.v, tsl);
    int o = tg_node(&t, LOOM_OP_ATTENTION, LOOM_F32, 2, (int64_t[]){S, H * hd}, 6, in.q, k2, v2, in.pos, tsq, ttb);
    t.nodes[o].ip[0] = H, t.nodes[o].ip[1] = Hkv, t.nodes[o].ip[2] = hd, t.nodes[o].ip[3] = bs;
    t.nodes[o].ip[4] = vt_window;
    t.nodes[o].fp[0] = 1.0f / sqrtf((float)hd), t.nodes[o].fp[1] = vt_softcap;
    char what[160];
    snprintf(what, sizeof what, "paged attention B=%d S=%d pool=%dx%d H=%d Hkv=%d hd=%d window=%d softcap=%g", B, S,
             nb, bs, H, Hkv, hd, vt_window, (double)vt_softcap);
    run_cmp(&t, o, what, 2e-5, 1e-5);
    free(q), free(kr), free(vr), free(kc), free(vc), free(table), free(pos), free(slot), free(seq), free(perm);
}

static void test_attention_paged(void) {
    int l3[3] = {5, 0, 37}, n3[3] = {1, 9, 1};
    paged_case(3, l3, n3, 12, 16, 4, 2, 64);        /* a prefill packed with two decode rows */
    int l4[4] = {700, 3, 260, 31}, n4[4] = {1, 1, 1, 1};
    paged_case(4, l4, n4, 70, 16, 14, 2, 64);       /* qwen2-0.5b-like decode of 4: key splits */
    int l1[1] = {20}, n1[1] = {5};
    paged_case(1, l1, n1, 10, 5, 3, 3, 18);         /* odd block size, head_dim not a multiple of 4 */
    vt_window = 40, vt_softcap = 0.3f;              /* options: windows starting mid-block */
    paged_case(4, l4, n4, 70, 16, 14, 2, 64);
    vt_window = 3, vt_softcap = 0;
    paged_case(3, l3, n3, 12, 16, 4, 2, 64);
    vt_window = 0;
}

/* ---- MOE ---------------------------------------------------------------------------------------- */
/* Mixture of experts against the CPU's scalar path: routing (softmax, top-k, renormalisation) and
 * the chosen experts' SwiGLU MLPs, f32/f16/bf16 stacks. 4e-6 absolute + 2e-5 relative (f32 sums in
 * another order and the GPU's exp; measured 6% of it). rec_moe's paths (vk_record.c): the expert
 * GEMVs for at most 16 routed slots (S x k) where there are subgroups, else the slots grouped by
 * expert into 64-row tiles (the second config, without subgroups, takes those for every case); the
 * ctests test_vulkan_ops_moe_{gemv,naive} run these cases under LOOM_VK_MOE=gemv / naive.
 * hot >= 0: that expert's logits raised by 20, so every row routes to it (with k = 1, the others get
 * no rows). */
static void moe_case(loom_dtype wt, int64_t S, int64_t E, int k, bool norm, int64_t D, int64_t F, int hot) {
    float *x = malloc(S * D * 4), *lg = malloc(S * E * 4), *ref = malloc(E * F * D * 4);
    tg_fill(x, (size_t)(S * D), 1.0f);
    tg_fill(lg, (size_t)(S * E), 3.0f);
    for (int64_t s = 0; hot >= 0 && s < S; s++) lg[s * E + hot] += 20.0f;
    void *wg = tg_weights(wt, (size_t)(E * F * D), 0.3f, ref), *wu = tg_weights(wt, (size_t)(E * F * D), 0.3f, ref);
    void *wd = tg_weights(wt, (size_t)(E * D * F), 0.3f, ref);
    tg t;
    tg_init(&t);
    int tx = tg_input(&t, LOOM_F32, 2, (int64_t[]){S, D}, x), tl = tg_input(&t, LOOM_F32, 2, (int64_t[]){S, E}, lg);
    int tgw = tg_weight(&t, wt, 3, (int64_t[]){E, F, D}, wg), tuw = tg_weight(&t, wt, 3, (int64_t[]){E, F, D}, wu);
    int tdw = tg_weight(&t, wt, 3, (int64_t[]){E, D, F}, wd);
    int y = tg_node(&t, LOOM_OP_MOE, LOOM_F32, 2, (int64_t[]){S, D}, 5, tx, tl, tgw, tuw, tdw);
    t.nodes[y].ip[0] = k, t.nodes[y].ip[1] = norm;
    char what[128];
    snprintf(what, sizeof what, "moe %s S=%lld E=%lld k=%d%s D=%lld F=%lld", loom_dtype_name(wt), (long long)S,
             (long long)E, k, norm ? " norm" : "", (long long)D, (long long)F);
    /* a stack larger than one device allocation (the 16 KiB pieces backend) is refused by name */
    loom_backend *keep[NVK];
    memcpy(keep, vk, sizeof keep);
    for (int v = 0; v < NVK; v++) {
        loom_err_clear();
        if (v > 0 && vk[v] && !vk[v]->ops->supports(vk[v], &t.g, y)) {
            CHECK(strstr(loom_last_error(), "larger than one device allocation"), "%s [%s] refused: '%s'", what,
                  vk_name[v], loom_last_error());
            vk[v] = NULL;
        }
    }
    run_cmp(&t, y, what, 4e-6, 2e-5);
    memcpy(vk, keep, sizeof keep);
    free(x), free(lg), free(ref), free(wg), free(wu), free(wd);
}

static void test_moe(void) {
    for (int wi = 0; wi < 3; wi++) {
        moe_case(wtypes[wi], 1, 8, 2, true, 45, 37, -1);   /* decode */
        moe_case(wtypes[wi], 17, 8, 2, true, 64, 40, -1);  /* prefill */
    }
    moe_case(LOOM_F32, 3, 16, 4, false, 64, 96, -1); /* Qwen3-MoE without norm_topk_prob */
    moe_case(LOOM_F16, 5, 6, 6, true, 32, 20, -1);   /* every expert chosen */
    moe_case(LOOM_F32, 1, 8, 1, false, 40, 24, -1);  /* one row, top-1 */
    /* 120 slots over 5 experts: several tiles, none full, rows gathered from everywhere */
    moe_case(LOOM_BF16, 40, 5, 3, true, 48, 40, -1);
    /* every row to expert 3 (70 rows: a full tile and a partial one), the others none; K = 40 and 24
     * are not multiples of 16 (the last K step short) */
    moe_case(LOOM_F32, 70, 8, 1, true, 40, 24, 3);
    /* parameters graph.h does not define, or limits of the shaders, are refused by name */
    float dummy[64] = {0};
    tg t;
    tg_init(&t);
    int tx = tg_input(&t, LOOM_F32, 2, (int64_t[]){2, 4}, dummy), tl = tg_input(&t, LOOM_F32, 2, (int64_t[]){2, 40}, dummy);
    int w = tg_weight(&t, LOOM_F32, 3, (int64_t[]){40, 1, 4}, dummy), wd = tg_weight(&t, LOOM_F32, 3, (int64_t[]){40, 4, 1}, dummy);
    int y = tg_node(&t, LOOM_OP_MOE, LOOM_F32, 2, (int64_t[]){2, 4}, 5, tx, tl, w, w, wd);
    t.nodes[y].ip[0] = 33;
    int ge = tg_node(&t, LOOM_OP_GELU, LOOM_F32, 2, (int64_t[]){2, 4}, 1, tx);
    t.nodes[ge].ip[2] = 1;
    for (int v = 0; v < NVK; v++) {
        if (!vk[v]) continue;
        loom_err_clear();
        CHECK(!vk[v]->ops->supports(vk[v], &t.g, y) && strstr(loom_last_error(), "32"), "moe with 33 experts per token [%s]: '%s'",
              vk_name[v], loom_last_error());
        loom_err_clear();
        CHECK(!vk[v]->ops->supports(vk[v], &t.g, ge) && strstr(loom_last_error(), "ip[2] = 1"), "gelu with ip[2] set [%s]: '%s'",
              vk_name[v], loom_last_error());
    }
}

/* ---- PERMUTE ---------------------------------------------------------------------------------- */
static void test_permute(void) {
    float *x = malloc(3 * 5 * 7 * 2 * 4);
    tg_fill(x, 3 * 5 * 7 * 2, 1.0f);
    static const int perms3[][3] = {{1, 0, 2}, {2, 1, 0}, {0, 2, 1}};
    for (int p = 0; p < 3; p++) {
        tg t;
        tg_init(&t);
        int64_t ne[3] = {3, 5, 14};
        int tx = tg_input(&t, LOOM_F32, 3, ne, x);
        int64_t on[3] = {ne[perms3[p][0]], ne[perms3[p][1]], ne[perms3[p][2]]};
        int y = tg_node(&t, LOOM_OP_PERMUTE, LOOM_F32, 3, on, 1, tx);
        for (int d = 0; d < 3; d++) t.nodes[y].ip[d] = perms3[p][d];
        run_cmp(&t, y, "permute 3d", -1, 0);
    }
    tg t;
    tg_init(&t);
    int64_t ne[4] = {3, 5, 7, 2};
    int tx = tg_input(&t, LOOM_F32, 4, ne, x);
    int y = tg_node(&t, LOOM_OP_PERMUTE, LOOM_F32, 4, (int64_t[]){7, 3, 2, 5}, 1, tx);
    int ax[4] = {2, 0, 3, 1};
    for (int d = 0; d < 4; d++) t.nodes[y].ip[d] = ax[d];
    run_cmp(&t, y, "permute 4d", -1, 0);
    free(x);
}

/* ---- replay: one recorded decode layer, four steps with new tokens and positions --------------- */
/* A whole decoder layer at S = 1, so the plan path exercises every producer the recorder folds
 * into a consumer: RMSNORM into the q/k/v and gate/up GEMVs, ROPE into KV_STORE, SWIGLU into the
 * down GEMV, and the residual ADDs (one in place) into the o and down GEMVs. */
static void test_replay(void) {
    const int64_t V = 50, D = 64, C = 40, F = 96;
    const int H = 4, Hkv = 2, hd = 16, W = Hkv * hd;
    float *emb = malloc(V * D * 4), *wq = malloc(H * hd * D * 4), *wk = malloc(W * D * 4), *wv = malloc(W * D * 4);
    float *wo = malloc(D * H * hd * 4), *wg = malloc(F * D * 4), *wu = malloc(F * D * 4), *wd = malloc(D * F * 4);
    float *n1 = malloc(D * 4), *n2 = malloc(D * 4);
    float *kc = calloc((size_t)(C * W), 4), *vc = calloc((size_t)(C * W), 4);
    tg_fill(emb, (size_t)(V * D), 1.0f);
    tg_fill(wq, (size_t)(H * hd * D), 0.2f);
    tg_fill(wk, (size_t)(W * D), 0.2f);
    tg_fill(wv, (size_t)(W * D), 0.2f);
    tg_fill(wo, (size_t)(D * H * hd), 0.2f);
    tg_fill(wg, (size_t)(F * D), 0.2f);
    tg_fill(wu, (size_t)(F * D), 0.2f);
    tg_fill(wd, (size_t)(D * F), 0.2f);
    for (int i = 0; i < D; i++) n1[i] = 1.0f + 0.5f * tg_randf(), n2[i] = 1.0f + 0.5f * tg_randf();
    tg_fill(kc, (size_t)(7 * W), 1.0f); /* 7 tokens already cached */
    tg_fill(vc, (size_t)(7 * W), 1.0f);
    int32_t tok[4][1] = {{3}, {17}, {49}, {0}}, pos[4][1] = {{7}, {8}, {9}, {10}};
    tg t;
    tg_init(&t);
    int ttok = tg_input(&t, LOOM_I32, 1, (int64_t[]){1}, tok[0]);
    int tpos = tg_input(&t, LOOM_I32, 1, (int64_t[]){1}, pos[0]);
    int te = tg_weight(&t, LOOM_F32, 2, (int64_t[]){V, D}, emb);
    int tq = tg_weight(&t, LOOM_F32, 2, (int64_t[]){H * hd, D}, wq);
    int tk = tg_weight(&t, LOOM_F32, 2, (int64_t[]){W, D}, wk);
    int tv = tg_weight(&t, LOOM_F32, 2, (int64_t[]){W, D}, wv);
    int two = tg_weight(&t, LOOM_F32, 2, (int64_t[]){D, H * hd}, wo);
    int twg = tg_weight(&t, LOOM_F32, 2, (int64_t[]){F, D}, wg);
    int twu = tg_weight(&t, LOOM_F32, 2, (int64_t[]){F, D}, wu);
    int twd = tg_weight(&t, LOOM_F32, 2, (int64_t[]){D, F}, wd);
    int tn1 = tg_weight(&t, LOOM_F32, 1, (int64_t[]){D}, n1), tn2 = tg_weight(&t, LOOM_F32, 1, (int64_t[]){D}, n2);
    int sk = tg_state(&t, C, W, kc), sv = tg_state(&t, C, W, vc);
    int64_t row[2] = {1, D};
    int x = tg_node(&t, LOOM_OP_EMBED, LOOM_F32, 2, row, 2, te, ttok);
    int xn = tg_node(&t, LOOM_OP_RMSNORM, LOOM_F32, 2, row, 2, x, tn1);
    t.nodes[xn].fp[0] = 1e-6f;
    int q = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){1, H * hd}, 2, xn, tq);
    int k = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){1, W}, 2, xn, tk);
    int v = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){1, W}, 2, xn, tv);
    int qr = tg_node(&t, LOOM_OP_ROPE, LOOM_F32, 2, (int64_t[]){1, H * hd}, 2, q, tpos);
    t.nodes[qr].ip[0] = H, t.nodes[qr].ip[1] = hd, t.nodes[qr].ip[2] = 0, t.nodes[qr].ip[3] = hd;
    t.nodes[qr].fp[0] = 10000.0f, t.nodes[qr].fp[1] = 1.0f;
    tg_inplace(&t, qr);
    int kr = tg_node(&t, LOOM_OP_ROPE, LOOM_F32, 2, (int64_t[]){1, W}, 2, k, tpos);
    t.nodes[kr].ip[0] = Hkv, t.nodes[kr].ip[1] = hd, t.nodes[kr].ip[2] = 1, t.nodes[kr].ip[3] = hd - 4;
    t.nodes[kr].fp[0] = 10000.0f, t.nodes[kr].fp[1] = 1.0f;
    int k2 = vt_kv_store(&t, sk, kr, tpos);
    int v2 = vt_kv_store(&t, sv, v, tpos);
    int o = tg_node(&t, LOOM_OP_ATTENTION, LOOM_F32, 2, (int64_t[]){1, H * hd}, 4, qr, k2, v2, tpos);
    t.nodes[o].ip[0] = H, t.nodes[o].ip[1] = Hkv, t.nodes[o].ip[2] = hd;
    t.nodes[o].fp[0] = 0.25f;
    int op = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, row, 2, o, two);
    int x2 = tg_node(&t, LOOM_OP_ADD, LOOM_F32, 2, row, 2, x, op);
    tg_inplace(&t, x2);
    int h = tg_node(&t, LOOM_OP_RMSNORM, LOOM_F32, 2, row, 2, x2, tn2);
    t.nodes[h].fp[0] = 1e-5f;
    int g = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){1, F}, 2, h, twg);
    int u = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){1, F}, 2, h, twu);
    int sw = tg_node(&t, LOOM_OP_SWIGLU, LOOM_F32, 2, (int64_t[]){1, F}, 2, g, u);
    int dn = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, row, 2, sw, twd);
    int y = tg_node(&t, LOOM_OP_ADD, LOOM_F32, 2, row, 2, dn, x2);

    /* reference: the CPU, one step at a time, carrying the cache forward */
    float ref[4][64];
    float *kc2 = malloc(C * W * 4), *vc2 = malloc(C * W * 4);
    memcpy(kc2, kc, C * W * 4);
    memcpy(vc2, vc, C * W * 4);
    bool ok = true;
    for (int s = 0; s < 4 && ok; s++) {
        t.input_data[ttok] = tok[s];
        t.input_data[tpos] = pos[s];
        t.state_data[0] = kc2;
        t.state_data[1] = vc2;
        tg_run_out ro;
        ok = tg_run(&t, cpu, &ro) == 0;
        CHECK(ok, "replay reference step %d: %s", s, ro.err);
        if (ok) {
            memcpy(ref[s], tg_f32(&t, &ro, y), sizeof ref[s]);
            memcpy(kc2, ro.state[0], C * W * 4);
            memcpy(vc2, ro.state[1], C * W * 4);
        }
        tg_out_free(&ro);
    }
    t.input_data[ttok] = tok[0];
    t.input_data[tpos] = pos[0];
    t.state_data[0] = kc;
    t.state_data[1] = vc;
    t.backend_pass = true; /* vulkan-fuse, as the planner runs it (vk_fuse.c) */
    for (int nofuse = 0; nofuse < 2; nofuse++) {
        if (nofuse) setenv("LOOM_VK_NO_FUSE", "1", 1);
        for (int nsteps = 1; nsteps <= 4 && ok; nsteps++)
            for (int bi = 0; bi < NVK; bi++) {
                if (!vk[bi]) continue;
                tg_update upd[2] = {{ttok, {tok[1], tok[2], tok[3]}}, {tpos, {pos[1], pos[2], pos[3]}}};
                tg_run_out ro;
                double nt[TG_MAX_NODES] = {0};
                int rc = tg_run_plan(&t, vk[bi], &ro, nsteps, upd, 2, nsteps == 4 ? nt : NULL);
                CHECK(rc == 0, "replay %d steps [%s]: %s", nsteps, vk_name[bi], ro.err);
                /* every rule fires once here: rmsnorm-gemv twice (q/k/v, gate/up), swiglu-gemv,
                 * gemv-add twice (attention out, down), rope-kv; without subgroups only rope-kv */
                int want = nofuse ? 0 : bi == 1 ? 1 : 6;
                CHECK(t.n_folded == want, "replay [%s]: vulkan-fuse folded %d nodes, expected %d", vk_name[bi],
                      t.n_folded, want);
                if (rc == 0) {
                    char what[64];
                    snprintf(what, sizeof what, "replay after %d steps%s", nsteps, nofuse ? " (no fusion)" : "");
                    cmp(what, vk_name[bi], tg_f32(&t, &ro, y), ref[nsteps - 1], (size_t)D, 5e-5, 5e-5);
                    snprintf(what, sizeof what, "replay K cache after %d steps", nsteps);
                    if (nsteps == 1) { /* the cache row the fused rope + kv_store wrote */
                        tg_run_out r1;
                        t.state_data[0] = kc, t.state_data[1] = vc;
                        if (tg_run(&t, cpu, &r1) == 0)
                            cmp(what, vk_name[bi], ro.state[0], r1.state[0], (size_t)(C * W), 1e-5, 1e-5);
                        tg_out_free(&r1);
                    }
                }
                if (rc == 0 && nsteps == 4) { /* timestamps filled every computed node */
                    double sum = 0;
                    bool neg = false;
                    for (int k2i = 0; k2i < t.p.n_order; k2i++) {
                        sum += nt[t.p.order[k2i]];
                        neg |= nt[t.p.order[k2i]] < 0;
                    }
                    CHECK(sum > 0 && sum < 10 && !neg, "replay node times [%s]: sum %g", vk_name[bi], sum);
                }
                tg_out_free(&ro);
            }
        unsetenv("LOOM_VK_NO_FUSE");
    }
    free(emb), free(wq), free(wk), free(wv), free(wo), free(wg), free(wu), free(wd), free(n1), free(n2);
    free(kc), free(vc), free(kc2), free(vc2);
}

/* vulkan-fuse's guards: a decode step where each rule's producer has a second reader (or is read
 * the wrong way), so none may fold; only the last GEMV folds into the ADD right after it. A rule that
 * folds anyway leaves its other reader with the NaN-filled slot it never wrote: every computed node
 * is compared with the CPU's, and the fold count with the one legal fold. */
static void test_fuse_guards(void) {
    enum { D = 32, F = 48, Hkv = 2, hd = 8, W = Hkv * hd, C = 8 };
    float *wq = malloc(D * D * 4), *wk = malloc(W * D * 4), *wg = malloc(F * D * 4), *wu = malloc(F * D * 4);
    float *wd = malloc(D * F * 4), *n1 = malloc(D * 4), *xin = malloc(D * 4), *kc = malloc(C * W * 4);
    tg_fill(wq, D * D, 0.2f), tg_fill(wk, W * D, 0.2f), tg_fill(wg, F * D, 0.2f), tg_fill(wu, F * D, 0.2f);
    tg_fill(wd, D * F, 0.2f), tg_fill(n1, D, 1.0f), tg_fill(xin, D, 1.0f), tg_fill(kc, C * W, 1.0f);
    int32_t pos[1] = {3};
    tg t;
    tg_init(&t);
    int64_t row[2] = {1, D};
    int x = tg_input(&t, LOOM_F32, 2, row, xin);
    int tpos = tg_input(&t, LOOM_I32, 1, (int64_t[]){1}, pos);
    int tq = tg_weight(&t, LOOM_F32, 2, (int64_t[]){D, D}, wq), tk = tg_weight(&t, LOOM_F32, 2, (int64_t[]){W, D}, wk);
    int twg = tg_weight(&t, LOOM_F32, 2, (int64_t[]){F, D}, wg), twu = tg_weight(&t, LOOM_F32, 2, (int64_t[]){F, D}, wu);
    int twd = tg_weight(&t, LOOM_F32, 2, (int64_t[]){D, F}, wd), tn1 = tg_weight(&t, LOOM_F32, 1, (int64_t[]){D}, n1);
    int sk = tg_state(&t, C, W, kc);
    int xn = tg_node(&t, LOOM_OP_RMSNORM, LOOM_F32, 2, row, 2, x, tn1); /* rmsnorm-gemv: also read by an ADD */
    t.nodes[xn].fp[0] = 1e-6f;
    int q = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, row, 2, xn, tq);
    int a = tg_node(&t, LOOM_OP_ADD, LOOM_F32, 2, row, 2, q, x); /* gemv-add: q also read by a MUL */
    int r1 = tg_node(&t, LOOM_OP_ADD, LOOM_F32, 2, row, 2, xn, x);
    int m = tg_node(&t, LOOM_OP_MUL, LOOM_F32, 2, row, 2, q, r1);
    int k = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){1, W}, 2, a, tk);
    int kr = tg_node(&t, LOOM_OP_ROPE, LOOM_F32, 2, (int64_t[]){1, W}, 2, k, tpos); /* rope-kv: also scaled */
    t.nodes[kr].ip[0] = Hkv, t.nodes[kr].ip[1] = hd, t.nodes[kr].ip[2] = 0, t.nodes[kr].ip[3] = hd;
    t.nodes[kr].fp[0] = 10000.0f, t.nodes[kr].fp[1] = 1.0f;
    int ks = vt_kv_store(&t, sk, kr, tpos);
    int ksc = tg_node(&t, LOOM_OP_SCALE, LOOM_F32, 2, (int64_t[]){1, W}, 1, kr);
    t.nodes[ksc].fp[0] = 0.5f;
    int g = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){1, F}, 2, m, twg);
    int u = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){1, F}, 2, m, twu);
    int sw = tg_node(&t, LOOM_OP_SWIGLU, LOOM_F32, 2, (int64_t[]){1, F}, 2, g, u); /* swiglu-gemv: also scaled */
    int dn = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, row, 2, sw, twd);
    int y = tg_node(&t, LOOM_OP_ADD, LOOM_F32, 2, row, 2, dn, m); /* the one legal fold: dn into y */
    int ssc = tg_node(&t, LOOM_OP_SCALE, LOOM_F32, 2, (int64_t[]){1, F}, 1, sw);
    t.nodes[ssc].fp[0] = 0.5f;
    (void)ks;
    tg_run_out ref;
    int rc = tg_run(&t, cpu, &ref);
    CHECK(rc == 0, "fuse guards [cpu]: %s", ref.err);
    t.backend_pass = true;
    for (int bi = 0; bi < NVK && rc == 0; bi++) {
        if (!vk[bi]) continue;
        tg_run_out ro;
        int r = tg_run_plan(&t, vk[bi], &ro, 1, NULL, 0, NULL);
        CHECK(r == 0, "fuse guards [%s]: %s", vk_name[bi], ro.err);
        int want = bi == 1 ? 0 : 1;
        CHECK(t.n_folded == want, "fuse guards [%s]: vulkan-fuse folded %d nodes, expected %d", vk_name[bi],
              t.n_folded, want);
        for (int o = 0; r == 0 && o < t.p.n_order; o++) {
            int i = t.p.order[o];
            if (i == dn && t.n_folded) continue; /* folded: never written */
            char what[64];
            snprintf(what, sizeof what, "fuse guards: node %d (%s)", i, loom_op_name(t.nodes[i].op));
            cmp(what, vk_name[bi], tg_f32(&t, &ro, i), tg_f32(&t, &ref, i), tg_bytes(&t.nodes[i]) / 4, 2e-5, 2e-5);
        }
        if (r == 0) cmp("fuse guards: K cache", vk_name[bi], ro.state[0], ref.state[0], (size_t)(C * W), 1e-5, 1e-5);
        tg_out_free(&ro);
    }
    (void)y;
    tg_out_free(&ref);
    free(wq), free(wk), free(wg), free(wu), free(wd), free(n1), free(xin), free(kc);
}

/* ---- buffers and errors ---------------------------------------------------------------------- */
static void test_buffers(loom_backend *be, const char *name) {
    const loom_backend_ops *ops = be->ops;
    /* bigger than one staging half, odd size and offset: exercises chunking and unaligned paths */
    size_t n = (40u << 20) + 7;
    uint8_t *src = malloc(n), *dst = malloc(n);
    for (size_t i = 0; i < n; i++) src[i] = (uint8_t)(i * 2654435761u >> 13);
    loom_buffer *b = ops->buf_alloc(be, n + 5);
    CHECK(b != NULL, "[%s] buf_alloc: %s", name, loom_last_error());
    if (b) {
        CHECK(ops->buf_write(be, b, 3, src, n) == 0, "[%s] big write: %s", name, loom_last_error());
        CHECK(ops->buf_read(be, b, 3, dst, n) == 0, "[%s] big read: %s", name, loom_last_error());
        CHECK(memcmp(src, dst, n) == 0, "[%s] big write/read round trip differs", name);
        CHECK(ops->buf_zero(be, b, 1001, 13) == 0, "[%s] zero: %s", name, loom_last_error());
        CHECK(ops->buf_zero(be, b, 2048, 4096) == 0, "[%s] zero aligned: %s", name, loom_last_error());
        CHECK(ops->buf_write(be, b, 8, "abcd", 4) == 0, "[%s] small write", name);
        CHECK(ops->buf_read(be, b, 0, dst, 8192) == 0, "[%s] read", name);
        bool ok = !memcmp(dst + 8, "abcd", 4) && dst[1000] == src[997] && dst[1014] == src[1011];
        for (int i = 1001; i < 1014; i++) ok &= dst[i] == 0;
        for (int i = 2048; i < 2048 + 4096; i++) ok &= dst[i] == 0;
        CHECK(ok, "[%s] zero/small write contents wrong", name);
        CHECK(ops->buf_read(be, b, n, dst, 6) == -1 && strstr(loom_last_error(), "outside"),
              "[%s] read past the end: rc/err '%s'", name, loom_last_error());
        CHECK(ops->buf_write(be, b, (size_t)-8, src, 16) == -1, "[%s] overflowing offset accepted", name);
        ops->buf_free(be, b);
    }
    /* a weight split into pieces (under tiny limits) reads back whole */
    loom_buffer *w = ops->buf_from_host(be, src, 300000);
    CHECK(w != NULL, "[%s] buf_from_host: %s", name, loom_last_error());
    if (w) {
        memset(dst, 0, 300000);
        CHECK(ops->buf_read(be, w, 0, dst, 300000) == 0 && !memcmp(src, dst, 300000),
              "[%s] weight round trip differs", name);
        ops->buf_free(be, w);
    }
    free(src);
    free(dst);
}

static void test_errors(void) {
    loom_backend_opts o = {.device_index = 99};
    loom_backend *be = loom_vulkan_backend_new(&o);
    CHECK(be == NULL && strstr(loom_last_error(), "not found"), "device 99: got '%s'", loom_last_error());
    if (be) loom_backend_close(be);
    /* an allocation larger than the device is refused with a message naming the device and sizes */
    loom_buffer *b = vk[0]->ops->buf_alloc(vk[0], (size_t)1 << 46);
    CHECK(b == NULL && strstr(loom_last_error(), "vulkan") && strstr(loom_last_error(), "MiB"),
          "64 TiB alloc: got '%s'", loom_last_error());
    loom_buffer *w = vk[0]->ops->buf_from_host(vk[0], "x", (size_t)1 << 46);
    CHECK(w == NULL && strstr(loom_last_error(), "out of device memory"), "64 TiB weight: got '%s'",
          loom_last_error());
    char desc[256] = "";
    vk[0]->ops->describe(vk[0], desc, sizeof desc);
    CHECK(strlen(desc) > 5, "describe: '%s'", desc);
    printf("device: %s\n", desc);
}

int main(int argc, char **argv) {
    int orc = tg_open_backends(&cpu, vk, true);
    if (orc) return orc;
    if (argc > 1 && !strcmp(argv[1], "moe")) { /* `test_vulkan_ops moe`: the MOE cases alone (under LOOM_VK_MOE) */
        const char *mo = getenv("LOOM_VK_MOE");
        printf("moe: LOOM_VK_MOE=%s\n", mo ? mo : "(unset)");
        fflush(stdout); /* before the trace lines on stderr */
        TG_TIMED(test_moe());
        tg_close_backends(cpu, vk);
        CHECK_DONE();
    }

    tg_coopmat_flags(vk, vk_name, vk_coopmat);
    for (int v = 0; v < NVK; v++) {
        char desc[512] = "";
        if (vk[v]) vk[v]->ops->describe(vk[v], desc, sizeof desc);
        vk_attn_cm[v] = strstr(desc, "attn-cm") != NULL;
        printf("%s: prefill attention on %s\n", vk_name[v], vk_attn_cm[v] ? "attn_cm.comp (cooperative matrices)" : "attn_fa.comp / attention.comp");
    }
    TG_TIMED(test_errors());
    TG_TIMED(test_buffers(vk[0], vk_name[0]));
    if (vk[2]) TG_TIMED(test_buffers(vk[2], vk_name[2]));
    TG_TIMED(test_embed());
    TG_TIMED(test_matmul());
    TG_TIMED(test_eltwise());
    TG_TIMED(test_activations());
    TG_TIMED(test_rope());
    TG_TIMED(test_attention());
    TG_TIMED(test_attention_paged());
    TG_TIMED(test_attention_ring());
    TG_TIMED(test_moe());
    TG_TIMED(test_permute());
    TG_TIMED(test_replay());
    TG_TIMED(test_fuse_guards());

    tg_close_backends(cpu, vk);
    CHECK_DONE();
}
