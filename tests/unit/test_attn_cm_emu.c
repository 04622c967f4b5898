/* The blocked algorithm of shaders/attn_cm.comp (prefill attention on cooperative matrices),
 * emulated on the CPU step by step: the same workgroups (one kv head, 64 (row, head) slots =
 * 64 / GW rows x GW heads), the same key tiles of 32 over the workgroup's key range, f16 queries
 * (pre-scaled), keys, values and p, f32 scores and accumulators, the online softmax with the
 * per-lane partial sums of l (LPR = subgroup size / 16 lanes per row), O rescaled by alpha before
 * each P.V. Against naive attention in double on the same f32 inputs, every output must lie within
 * tests/unit/attn_cm_bound.h's bound (the one test_vulkan_ops holds the GPU kernel to). The
 * emulation rounds to nearest (loom_f32_to_f16); the bound allows either neighbour.
 * Then the same emulation with a planted fault (O not rescaled by alpha; the window's first key
 * dropped) must break the bound somewhere, so the bound is tight enough to see such mistakes.
 * lavapipe has no cooperative matrices, so this is where the algorithm is checked without a GPU.
 */
#include "tests/unit/attn_cm_bound.h"
#include "tests/unit/check.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int S, H, Hkv, hd, C, window;
    float scale, cap;
    int sg;  /* subgroup size: 32 or 64 */
    int nsg; /* subgroups per workgroup: 4, or 8 (LOOM_VK_FA=cmp8, head dims <= 64) */
    int bug; /* 0 none; 1 O not rescaled by alpha; 2 the first key of each row's range dropped */
} acfg;

static float h16(float x) { return acm_f16(x); }

/* att_lo of common.glsl: the first key of position p with a window (0 = none) */
static int first_key(int p, int L, int window) {
    int lo = window > 0 && p + 1 > window ? p + 1 - window : 0;
    return lo < L ? lo : L;
}

/* attn_cm.comp on the CPU: q [S, H*hd], caches [C, Hkv*hd], out [S, H*hd] */
static void emu(const acfg *c, const float *q, const float *kc, const float *vc, const int32_t *pos, float *out) {
    enum { MAXR = 128, BC = 32, MAXHD = 128 };
    int R = 16 * c->nsg, hd = c->hd, G = c->H / c->Hkv, gw = G < 8 ? G : 8, ngrp = (G + gw - 1) / gw, NR = R / gw;
    int LPR = c->sg / 16, W = c->Hkv * hd;
    static float Qt[MAXR][MAXHD], Kt[BC][MAXHD], Vt[BC][MAXHD], O[MAXR][MAXHD], lp[MAXR][4], m[MAXR];
    int Lr[MAXR], Lo[MAXR];
    memset(out, 0, sizeof(float) * (size_t)c->S * c->H * hd);
    for (int wx = 0; wx < c->Hkv * ngrp; wx++)
        for (int wy = 0; wy * NR < c->S; wy++) {
            int kvh = wx / ngrp, hg = wx % ngrp, h0 = kvh * G + hg * gw, gn = gw < G - hg * gw ? gw : G - hg * gw;
            int s0 = wy * NR;
            for (int sl = 0; sl < R; sl++) {
                int rr = sl / gw, g = sl % gw, s = s0 + rr;
                bool ok = rr < NR && s < c->S && g < gn;
                for (int d = 0; d < hd; d++) Qt[sl][d] = ok ? h16(q[((size_t)s * c->H + h0 + g) * hd + d] * c->scale) : 0.0f;
            }
            for (int t = 0; t < NR; t++) {
                int s = s0 + t, p = s < c->S ? pos[s] : -1;
                int L = p < 0 ? 0 : (p + 1 < c->C ? p + 1 : c->C);
                Lr[t] = L;
                Lo[t] = first_key(p, L, c->window) + (c->bug == 2 && L > 0 ? 1 : 0);
                if (Lo[t] > L) Lo[t] = L;
            }
            int jbeg = c->C, jend = 0;
            for (int t = 0; t < NR; t++)
                if (Lr[t] > Lo[t]) {
                    jbeg = Lo[t] < jbeg ? Lo[t] : jbeg;
                    jend = Lr[t] > jend ? Lr[t] : jend;
                }
            jbeg = jbeg < jend ? jbeg : jend;
            for (int sl = 0; sl < R; sl++) {
                m[sl] = -3.0e38f;
                for (int k = 0; k < 4; k++) lp[sl][k] = 0.0f;
                for (int d = 0; d < hd; d++) O[sl][d] = 0.0f;
            }
            for (int jb = jbeg; jb < jend; jb += BC) {
                for (int kr = 0; kr < BC; kr++)
                    for (int d = 0; d < hd; d++) {
                        int key = jb + kr;
                        size_t e = (size_t)key * W + (size_t)kvh * hd + d;
                        Kt[kr][d] = key < jend ? h16(kc[e]) : 0.0f;
                        Vt[kr][d] = key < jend ? h16(vc[e]) : 0.0f;
                    }
                for (int sl = 0; sl < R; sl++) { /* a subgroup's row: sl / 16, sl % 16 */
                    int rr = sl / gw;
                    bool ok = rr < NR && sl % gw < gn;
                    int L = ok ? Lr[rr] : 0, lo = ok ? Lo[rr] : 0;
                    float sc[BC], p[BC];
                    for (int j = 0; j < BC; j++) { /* 16 x 16 x 16 products summed in f32 */
                        float a = 0.0f;
                        for (int d = 0; d < hd; d++) a += Qt[sl][d] * Kt[j][d];
                        sc[j] = a;
                    }
                    float mx = -3.0e38f; /* the lanes' partial maxima, then their maximum: the same value */
                    for (int j = 0; j < BC; j++)
                        if (jb + j >= lo && jb + j < L) {
                            if (c->cap > 0.0f) sc[j] = c->cap * tanhf(sc[j] / c->cap);
                            mx = sc[j] > mx ? sc[j] : mx;
                        }
                    float mn = m[sl] > mx ? m[sl] : mx, alpha = expf(m[sl] - mn);
                    m[sl] = mn;
                    for (int part = 0; part < LPR; part++) {
                        lp[sl][part] *= alpha;
                        for (int qd = part; qd < BC / 4; qd += LPR) /* this lane's quads of keys */
                            for (int e = 0; e < 4; e++) {
                                int j = 4 * qd + e;
                                p[j] = h16(jb + j >= lo && jb + j < L ? expf(sc[j] - mn) : 0.0f);
                                lp[sl][part] += p[j];
                            }
                    }
                    for (int d = 0; d < hd; d++) {
                        float o = c->bug == 1 ? O[sl][d] : O[sl][d] * alpha;
                        for (int j = 0; j < BC; j++) o += p[j] * Vt[j][d];
                        O[sl][d] = o;
                    }
                }
            }
            for (int sl = 0; sl < R; sl++) {
                int rr = sl / gw, g = sl % gw, s = s0 + rr;
                if (rr >= NR || s >= c->S || g >= gn) continue;
                float lt = 0.0f;
                for (int part = 0; part < LPR; part++) lt += lp[sl][part];
                float inv = lt > 0.0f ? 1.0f / lt : 0.0f;
                for (int d = 0; d < hd; d++) out[((size_t)s * c->H + h0 + g) * hd + d] = O[sl][d] * inv;
            }
        }
}

/* naive attention in double; and the bound per row */
static void naive(const acfg *c, const float *q, const float *kc, const float *vc, const int32_t *pos, double *ref,
                  double *tol) {
    int hd = c->hd, G = c->H / c->Hkv, W = c->Hkv * hd;
    double *w = malloc(sizeof(double) * (size_t)c->C);
    float *ek = malloc(sizeof(float) * (size_t)c->C * W), *ev = malloc(sizeof(float) * (size_t)c->C * W);
    acm_errs(ek, kc, (size_t)c->C * W);
    acm_errs(ev, vc, (size_t)c->C * W);
    for (int s = 0; s < c->S; s++)
        for (int h = 0; h < c->H; h++) {
            int kvh = h / G, p = pos[s], L = p < 0 ? 0 : (p + 1 < c->C ? p + 1 : c->C), lo = first_key(p, L, c->window);
            const float *qr = q + ((size_t)s * c->H + h) * hd;
            double mx = -INFINITY, sum = 0;
            for (int j = lo; j < L; j++) {
                double a = 0;
                for (int d = 0; d < hd; d++) a += (double)qr[d] * kc[(size_t)j * W + (size_t)kvh * hd + d];
                a *= c->scale;
                if (c->cap > 0) a = c->cap * tanh(a / c->cap);
                w[j] = a;
                mx = a > mx ? a : mx;
            }
            for (int j = lo; j < L; j++) sum += (w[j] = exp(w[j] - mx));
            size_t kh = (size_t)kvh * hd;
            double t = acm_row_tol(qr, c->scale, kc + kh, vc + kh, ek + kh, ev + kh, (size_t)W, hd, lo, L);
            for (int d = 0; d < hd; d++) {
                double o = 0;
                for (int j = lo; j < L; j++) o += w[j] * vc[(size_t)j * W + (size_t)kvh * hd + d];
                size_t i = ((size_t)s * c->H + h) * hd + d;
                ref[i] = sum > 0 ? o / sum : 0;
                tol[i] = t + 1e-5 * fabs(ref[i]);
            }
        }
    free(w), free(ek), free(ev);
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* One case: S query rows at positions pos0 + s (every `gap`-th one skipped past when gap > 0), the
 * cache's first `filled` rows from earlier steps; amp scales q (peakier softmax); exact: k, v and
 * q made f16 values (the GPU test's data). Returns the largest error over the bound. */
static double run_case(acfg c, int pos0, int gap, float amp, bool exact, int *n_over) {
    size_t nq = (size_t)c.S * c.H * c.hd, nc = (size_t)c.C * c.Hkv * c.hd;
    float *q = malloc(nq * 4), *kc = malloc(nc * 4), *vc = malloc(nc * 4), *out = malloc(nq * 4);
    double *ref = malloc(nq * 8), *tol = malloc(nq * 8);
    int32_t *pos = calloc((size_t)c.S, 4);
    for (size_t i = 0; i < nq; i++) q[i] = amp * frand();
    for (size_t i = 0; i < nc; i++) kc[i] = frand(), vc[i] = frand();
    if (exact) {
        for (size_t i = 0; i < nq; i++) q[i] = h16(q[i]);
        for (size_t i = 0; i < nc; i++) kc[i] = h16(kc[i]), vc[i] = h16(vc[i]);
    }
    for (int s = 0, p = pos0; s < c.S; s++, p++) {
        if (gap > 0 && s % gap == gap - 1) p++;
        pos[s] = p < c.C ? p : c.C - 1;
    }
    emu(&c, q, kc, vc, pos, out);
    naive(&c, q, kc, vc, pos, ref, tol);
    double worst = 0, maxerr = 0;
    int over = 0;
    for (size_t i = 0; i < nq; i++) {
        double e = fabs(out[i] - ref[i]);
        if (!(e <= tol[i])) over++;
        worst = e / tol[i] > worst ? e / tol[i] : worst;
        maxerr = e > maxerr ? e : maxerr;
    }
    printf("S=%d H=%d Hkv=%d hd=%d C=%d pos0=%d gap=%d window=%d cap=%g sg=%d nsg=%d amp=%g %s bug=%d: max err %.3g, "
           "%.3g of the bound, %d over\n",
           c.S, c.H, c.Hkv, c.hd, c.C, pos0, gap, c.window, (double)c.cap, c.sg, c.nsg, (double)amp, exact ? "f16-exact" : "f32",
           c.bug, maxerr, worst, over);
    *n_over = over;
    free(q), free(kc), free(vc), free(out), free(ref), free(tol), free(pos);
    return worst;
}

int main(void) {
    static const struct {
        int S, H, Hkv, hd, C, pos0, gap, window;
        float cap, amp;
    } cases[] = {
        {200, 32, 4, 64, 256, 0, 0, 0, 0, 1},     /* llama-1.1b's heads: 8 per kv head, 8 rows a workgroup */
        {160, 16, 2, 64, 400, 200, 0, 0, 0, 3},   /* after a cached prefix of 200 rows, peaky scores */
        {100, 4, 4, 128, 128, 0, 0, 0, 0, 2},     /* head dim 128, one head per kv head: 64 rows a workgroup */
        {96, 14, 2, 64, 200, 40, 0, 0, 0, 1},     /* qwen2's 7 heads per kv head: 9 rows, 63 of 64 slots */
        {100, 10, 2, 16, 160, 40, 0, 0, 0, 1},    /* head dim 16, 5 heads per kv head */
        {80, 8, 1, 32, 300, 0, 5, 0, 0, 1},       /* gaps: rows of their own lengths */
        {200, 4, 2, 64, 256, 0, 0, 50, 0.3f, 4},  /* a window (rows start in different tiles) and a soft-cap */
        {100, 20, 2, 16, 160, 40, 0, 37, 0.5f, 2}, /* 10 heads per kv head: two head groups (8 + 2) */
    };
    double worst = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int v = 0; v < 5; v++) { /* subgroup size 32/64 x f16-exact or not, 4 subgroups; 8 subgroups (hd <= 64) */
            int sg = v < 4 && v % 2 ? 64 : 32, exact = v < 4 ? v / 2 : 1, nsg = v < 4 ? 4 : 8;
            if (nsg == 8 && cases[i].hd > 64) continue;
            acfg c = {cases[i].S, cases[i].H, cases[i].Hkv, cases[i].hd, cases[i].C, cases[i].window,
                      1.0f / sqrtf((float)cases[i].hd), cases[i].cap, sg, nsg, 0};
            int over;
            double w = run_case(c, cases[i].pos0, cases[i].gap, cases[i].amp, exact, &over);
            CHECK(over == 0, "case %zu sg=%d nsg=%d exact=%d: %d outputs over the bound (worst %.3g of it)", i, sg, nsg,
                  exact, over, w);
            worst = w > worst ? w : worst;
        }
    printf("largest error: %.3g of the bound\n", worst);
    /* planted faults: each must break the bound (on the f16-exact data, where the bound is tightest) */
    for (int bug = 1; bug <= 2; bug++) {
        acfg c = {200, 4, 2, 64, 256, bug == 2 ? 50 : 0, 0.125f, 0, 32, 4, bug};
        int over;
        run_case(c, 0, 0, bug == 1 ? 3.0f : 1.0f, true, &over);
        CHECK(over > 0, "planted fault %d went unseen", bug);
    }
    CHECK_DONE();
}
