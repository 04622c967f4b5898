/* The error bound of prefill attention with f16 inputs (shaders/attn_cm.comp: Q.K^T and P.V on
 * cooperative matrices, f32 accumulation, online softmax in f32), per output row (s, h), against
 * exact attention of the same f32 inputs. Used by test_attn_cm_emu (the CPU emulation of the
 * kernel's blocked algorithm) and by test_vulkan_ops on devices where the kernel runs.
 *
 * Derivation. Every conversion to f16 returns a neighbour of x (round to nearest or toward zero:
 * the Vulkan spec leaves OpFConvert's rounding to the implementation), so it is off by at most
 * err(x) = 0 when x is an f16 value, else the f16 spacing at x (2^(e-11) for x in [2^(e-1), 2^e),
 * 2^-24 below 2^-14, <= 2^-10 |x|). For key j of the row:
 *   score   s~_j = sum_d f16(qh_d) f16(k_jd), qh = scale q (f32), summed in f32:
 *           |s~_j - s_j| <= E_j = sum_d (|qh_d| err(k_jd) + |k_jd| err(qh_d) + err err)
 *                                 + hd 2^-22 sum_d |qh_d k_jd|   (f32 sums, generously);
 *           a soft-cap (cap tanh(s / cap), slope <= 1) does not grow it. E = max_j E_j.
 *   weight  p~_j = f16(exp(s~_j - m)) (exp within eps = 2^-15 relative, f16 within u = 2^-10
 *           relative, or 2^-24 absolute below 2^-14), normalised by l = the sum of the same p~'s:
 *           w'_j / w_j lies within t_max / t_min <= exp(2E + 2.01 (u + eps)) of 1, whence
 *           sum_j |w'_j - w_j| <= T = exp(2E + 2.01 (u + eps)) - 1, plus n 2^-24 (1.01) for the
 *           subnormal p's (l >= 1 - u - eps: the row's largest key has p = exp(0) = 1).
 *   values  |f16(v) - v| <= EV = max err(v_jd); the output is a convex combination of the f16 V
 *           rows, so that adds at most EV.
 *   f32     accumulating n products and n / 32 rescales, the division by l: n 2^-20 max|v|.
 *   |out - exact| <= (T + n 2^-20) max|v| + EV + 2e-5 + 1e-5 |exact| (the last two: the f32
 *   attention tolerance test_vulkan_ops gives attn_fa.comp, for the GPU's exp and the CPU
 *   reference's own f32 error).
 * With f16-exact k, v and qh (scale a power of two) E is the f32 term alone and the bound is about
 * 2u max|v| = 2e-3 max|v|: the rounding of p. */
#ifndef LOOM_TEST_ATTN_CM_BOUND_H
#define LOOM_TEST_ATTN_CM_BOUND_H
#include "core/util.h"

#include <math.h>
#include <stdint.h>

/* the most a conversion of x to f16 (to either neighbour) can be off */
static inline double acm_f16_err(float x) {
    float ax = fabsf(x);
    if (ax == 0.0f) return 0.0;
    if (ax > 65504.0f) return INFINITY;
    if (loom_f16_to_f32(loom_f32_to_f16(x)) == x) return 0.0;
    if (ax < 6.103515625e-05f) return ldexp(1.0, -24);
    int e;
    frexp((double)ax, &e); /* ax in [2^(e-1), 2^e) */
    return ldexp(1.0, e - 11);
}

/* x rounded to the nearest f16 (what the test data use to be exact in f16) */
static inline float acm_f16(float x) { return loom_f16_to_f32(loom_f32_to_f16(x)); }

/* The bound for one output row: query q[hd] (unscaled), keys [lo, L) of a cache whose rows are
 * `stride` floats apart, k and v pointing at this kv head's first dim of row 0, ek and ev at the
 * same place in arrays of acm_f16_err of each cache element. Adds the f32 terms but the |exact|
 * one (the caller's: 1e-5 |exact|). */
static inline double acm_row_tol(const float *q, float scale, const float *k, const float *v, const float *ek,
                                 const float *ev, size_t stride, int hd, int lo, int L) {
    const double u = ldexp(1.0, -10), eps = ldexp(1.0, -15);
    double E = 0, V = 0, EV = 0, qh[256], eq[256];
    for (int d = 0; d < hd && d < 256; d++) qh[d] = (double)(q[d] * scale), eq[d] = acm_f16_err(q[d] * scale);
    for (int j = lo; j < L; j++) {
        double a = 0, e = 0;
        const float *kr = k + (size_t)j * stride, *vr = v + (size_t)j * stride, *ekr = ek + (size_t)j * stride,
                    *evr = ev + (size_t)j * stride;
        for (int d = 0; d < hd; d++) {
            a += fabs(qh[d] * kr[d]);
            e += fabs(qh[d]) * ekr[d] + fabs((double)kr[d]) * eq[d] + eq[d] * ekr[d];
            V = fabs((double)vr[d]) > V ? fabs((double)vr[d]) : V;
            EV = evr[d] > EV ? evr[d] : EV;
        }
        e += hd * ldexp(1.0, -22) * a;
        E = e > E ? e : E;
    }
    int n = L > lo ? L - lo : 0;
    double T = expm1(2 * E + 2.01 * (u + eps));
    return (T + n * ldexp(1.0, -20)) * V + EV + 2e-5;
}

/* err[i] = acm_f16_err(x[i]) (a cache's, for acm_row_tol) */
static inline void acm_errs(float *err, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) err[i] = (float)acm_f16_err(x[i]);
}
#endif
