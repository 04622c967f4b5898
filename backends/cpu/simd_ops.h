/* The vector kernels written once over the per-ISA layer (simd.h): activations, the element-wise
 * ops, RMSNorm, softmax, RoPE and one query row of attention. Included by cpu_avx2.c and
 * cpu_avx512.c after simd.h, each instantiating them for its ISA (static functions v_*, which the
 * flavour's cpu_kernels_* puts in its table). Each computes what its scalar counterpart in
 * cpu_scalar.c does; the op tests compare the two. GEMV, GEMM, the grouped attention and the
 * conversions stay in the flavour files: their tiling differs with the register count.
 */
#ifndef LOOM_CPU_SIMD_OPS_H
#define LOOM_CPU_SIMD_OPS_H

#include "backends/cpu/cpu.h"
#include "backends/cpu/simd.h"

#include <math.h>

/* ---- activations ------------------------------------------------------------------------------ */
AI vf silu_v(vf x) { return vdiv(x, vadd(vset1(1.0f), vexp(vsub(vzero(), x)))); }

/* gelu_tanh(x) = x / (1 + exp(-2u)), u = sqrt(2/pi) x (1 + 0.044715 x^2) (graph.h) */
AI vf gelu_v(vf x) {
    vf x2 = vmul(x, x);
    vf u = vmul(vmul(x, vset1(-2.0f * 0.7978845608028654f)), vfmadd(x2, vset1(0.044715f), vset1(1.0f)));
    return vdiv(x, vadd(vset1(1.0f), vexp(u)));
}

/* tanh: (1 - e) / (1 + e) with e = exp(-2|y|), sign restored; below |y| = 1/8, where 1 - e
 * cancels, the odd Taylor polynomial to y^7 (truncation < 2e-9 relative). */
AI vf tanh_v(vf y) {
    vf a = vabs(y);
    vf e = vexp(vmul(a, vset1(-2.0f)));
    vf r = vor_sign(vdiv(vsub(vset1(1.0f), e), vadd(vset1(1.0f), e)), y);
    vf y2 = vmul(y, y);
    vf p = vfmadd(y2, vset1(-17.0f / 315.0f), vset1(2.0f / 15.0f));
    p = vfmadd(y2, p, vset1(-1.0f / 3.0f));
    p = vfmadd(vmul(y2, y), p, y);
    return vsel_lt(a, vset1(0.125f), p, r);
}

/* ---- element-wise ------------------------------------------------------------------------------
 * y[i] = EXPR over vectors of VL; LD(p) is p's vector at i (c = lanes left, all of them but at the
 * tail). y may be one of the inputs. */
#define EW_LOOP(EXPR_V)                                                                            \
    for (int64_t i = 0; i < n; i += VL) {                                                          \
        const int64_t c = n - i;                                                                   \
        vstore_n(y + i, EXPR_V, c);                                                                \
    }
#define LD(p) vload_n((p) + i, c)

static void v_add(float *y, const float *a, const float *b, int64_t n) { EW_LOOP(vadd(LD(a), LD(b))) }
static void v_mul(float *y, const float *a, const float *b, int64_t n) { EW_LOOP(vmul(LD(a), LD(b))) }
static void v_scale(float *y, const float *a, float s, int64_t n) {
    const vf vs = vset1(s);
    EW_LOOP(vmul(LD(a), vs))
}
static void v_silu(float *y, const float *x, int64_t n) { EW_LOOP(silu_v(LD(x))) }
static void v_swiglu(float *y, const float *g, const float *u, int64_t n) { EW_LOOP(vmul(silu_v(LD(g)), LD(u))) }
static void v_gelu(float *y, const float *x, int64_t n) { EW_LOOP(gelu_v(LD(x))) }
static void v_geglu(float *y, const float *g, const float *u, int64_t n) { EW_LOOP(vmul(gelu_v(LD(g)), LD(u))) }
static void v_softcap(float *y, const float *x, float cap, int64_t n) {
    const vf vc = vset1(cap), vi = vset1(1.0f / cap);
    EW_LOOP(vmul(vc, tanh_v(vmul(LD(x), vi))))
}

/* ---- row ops ---------------------------------------------------------------------------------- */
static void v_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    vf s0 = vzero(), s1 = vzero();
    int64_t j = 0;
    for (; j + 2 * VL <= n; j += 2 * VL) {
        vf a = vload(x + j), b = vload(x + j + VL);
        s0 = vfmadd(a, a, s0);
        s1 = vfmadd(b, b, s1);
    }
    for (; j < n; j += VL) {
        vf a = vload_n(x + j, n - j);
        s0 = vfmadd(a, a, s0);
    }
    double ss = vhsum(vadd(s0, s1));
    const vf r = vset1((float)(1.0 / sqrt(ss / (double)n + eps)));
    if (w) {
        EW_LOOP(vmul(vmul(LD(x), r), LD(w)))
    } else {
        EW_LOOP(vmul(LD(x), r))
    }
}

static void v_softmax(float *y, const float *x, int64_t n, float scale) {
    const vf vs = vset1(scale);
    vf mx = vset1(-INFINITY);
    for (int64_t i = 0; i < n; i += VL) mx = vmax_tail(mx, vmul(vload_n(x + i, n - i), vs), n - i);
    const vf vm = vset1(vhmax(mx));
    vf sum = vzero();
    for (int64_t i = 0; i < n; i += VL) {
        vf e = vzero_tail(vexp(vfmsub(vload_n(x + i, n - i), vs, vm)), n - i);
        vstore_n(y + i, e, n - i);
        sum = vadd(sum, e);
    }
    const vf inv = vset1(1.0f / vhsum(sum));
    EW_LOOP(vmul(LD(y), inv))
}

/* NEOX pairs are contiguous halves: vectorised; the interleaved NORM mode stays scalar. */
static void v_rope(float *x, const float *cs, const float *sn, int rot, int mode) {
    int half = rot / 2;
    if (mode != LOOM_ROPE_NEOX) {
        for (int i = 0; i < half; i++) {
            float a = x[2 * i], b = x[2 * i + 1];
            x[2 * i] = a * cs[i] - b * sn[i];
            x[2 * i + 1] = a * sn[i] + b * cs[i];
        }
        return;
    }
    float *xa = x, *xb = x + half;
    for (int i = 0; i < half; i += VL) {
        int64_t c = half - i;
        vf a = vload_n(xa + i, c), b = vload_n(xb + i, c), co = vload_n(cs + i, c), si = vload_n(sn + i, c);
        vstore_n(xa + i, vfmsub(a, co, vmul(b, si)), c);
        vstore_n(xb + i, vfmadd(a, si, vmul(b, co)), c);
    }
}

/* ---- attention: one query row, online softmax over blocks of keys ---------------------------- */
AI float dot_hd(const float *a, const float *b, int hd) {
    vf s0 = vzero(), s1 = vzero();
    int d = 0;
    for (; d + 2 * VL <= hd; d += 2 * VL) {
        s0 = vfmadd(vload(a + d), vload(b + d), s0);
        s1 = vfmadd(vload(a + d + VL), vload(b + d + VL), s1);
    }
    for (; d < hd; d += VL) s0 = vfmadd(vload_n(a + d, hd - d), vload_n(b + d, hd - d), s0);
    return vhsum(vadd(s0, s1));
}

/* Scores of a block of keys go to scratch; the running max is updated once per block and the
 * accumulator rescaled when it grows; P.V keeps hd in registers when it fits in 8 vectors. */
static void v_attn(float *out, const float *q, const float *k, const float *v, int64_t ld, int64_t n_keys, int hd,
                   float scale, float softcap, float *scratch) {
    float *sc = scratch, *acc = scratch + CPU_ATTN_BLOCK;
    float mx = -INFINITY, l = 0;
    for (int d = 0; d < hd; d++) acc[d] = 0;
    for (int64_t j0 = 0; j0 < n_keys; j0 += CPU_ATTN_BLOCK) {
        int nb = (int)(n_keys - j0 < CPU_ATTN_BLOCK ? n_keys - j0 : CPU_ATTN_BLOCK);
        for (int j = 0; j < nb; j++) {
            if (j + 2 < nb) vprefetch(k + (j0 + j + 2) * ld);
            sc[j] = scale * dot_hd(q, k + (j0 + j) * ld, hd);
        }
        if (softcap > 0) v_softcap(sc, sc, softcap, nb);
        vf bm = vset1(-INFINITY);
        for (int j = 0; j < nb; j += VL) bm = vmax_tail(bm, vload_n(sc + j, nb - j), nb - j);
        float bmax = vhmax(bm);
        if (bmax > mx) {
            float c = expf(mx - bmax); /* 0 on the first block */
            for (int d = 0; d < hd; d += VL) vstore_n(acc + d, vmul(vload_n(acc + d, hd - d), vset1(c)), hd - d);
            l *= c;
            mx = bmax;
        }
        vf ls = vzero();
        for (int j = 0; j < nb; j += VL) {
            vf p = vzero_tail(vexp(vsub(vload_n(sc + j, nb - j), vset1(mx))), nb - j);
            vstore_n(sc + j, p, nb - j);
            ls = vadd(ls, p);
        }
        l += vhsum(ls);
        if (hd % VL == 0 && hd <= 8 * VL) { /* acc in registers (hd 64 and 128 on AVX-512, 64 on AVX2) */
            vf a[8];
            int nv = hd / VL;
            for (int r = 0; r < nv; r++) a[r] = vload(acc + VL * r);
            for (int j = 0; j < nb; j++) {
                const float *vj = v + (j0 + j) * ld;
                vf p = vset1(sc[j]);
                for (int r = 0; r < nv; r++) a[r] = vfmadd(p, vload(vj + VL * r), a[r]);
            }
            for (int r = 0; r < nv; r++) vstore(acc + VL * r, a[r]);
        } else {
            for (int j = 0; j < nb; j++) {
                const float *vj = v + (j0 + j) * ld;
                vf p = vset1(sc[j]);
                for (int d = 0; d < hd; d += VL)
                    vstore_n(acc + d, vfmadd(p, vload_n(vj + d, hd - d), vload_n(acc + d, hd - d)), hd - d);
            }
        }
    }
    const vf inv = vset1(1.0f / l);
    for (int d = 0; d < hd; d += VL) vstore_n(out + d, vmul(vload_n(acc + d, hd - d), inv), hd - d);
}

#undef EW_LOOP
#undef LD

#endif
