/* AVX2 + FMA + F16C kernels. This file is compiled with -mavx2 -mfma -mf16c; cpu_backend.c calls
 * cpu_kernels_avx2 only after CPUID says they are there. Same structure as cpu_avx512.c with
 * 8-lane vectors: gemv streams 4 weight rows at a time; gemm packs KC x 16 f32 panels (8x8
 * register transposes) and runs a 6 x 16 micro-kernel (12 ymm accumulators). AVX2 has no masked
 * 16-bit loads, so partial vectors go through a small zero-padded buffer.
 */
#include "backends/cpu/cpu.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))

/* ---- helpers -------------------------------------------------------------------------------- */
static const int32_t mask_tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
/* lanes [0, n) on, n in [0, 8] */
AI __m256i lane_mask(int64_t n) { return _mm256_loadu_si256((const __m256i *)(mask_tab + 8 - n)); }

AI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
AI float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI __m256 exp8(__m256 x) {
    /* Cephes expf; 2^n built in the exponent field, so clamp to where that stays finite. The
     * min/max operand order keeps NaN. */
    x = _mm256_max_ps(_mm256_set1_ps(-87.3f), _mm256_min_ps(_mm256_set1_ps(88.3f), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

AI __m256 silu8(__m256 x) {
    __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* gelu_tanh(x) = x / (1 + exp(-2u)), u = sqrt(2/pi) x (1 + 0.044715 x^2) (graph.h) */
AI __m256 gelu8(__m256 x) {
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 u = _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(-2.0f * 0.7978845608028654f)),
                             _mm256_fmadd_ps(x2, _mm256_set1_ps(0.044715f), _mm256_set1_ps(1.0f)));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(u)));
}

/* tanh: (1 - e) / (1 + e) with e = exp(-2|y|), sign restored; below |y| = 1/8, where 1 - e
 * cancels, the odd Taylor polynomial to y^7 (truncation < 2e-9 relative). */
AI __m256 tanh8(__m256 y) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 a = _mm256_andnot_ps(sign, y);
    __m256 e = exp8(_mm256_mul_ps(a, _mm256_set1_ps(-2.0f)));
    __m256 r = _mm256_div_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), e), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    r = _mm256_or_ps(r, _mm256_and_ps(sign, y));
    __m256 y2 = _mm256_mul_ps(y, y);
    __m256 p = _mm256_fmadd_ps(y2, _mm256_set1_ps(-17.0f / 315.0f), _mm256_set1_ps(2.0f / 15.0f));
    p = _mm256_fmadd_ps(y2, p, _mm256_set1_ps(-1.0f / 3.0f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(y2, y), p, y);
    return _mm256_blendv_ps(r, p, _mm256_cmp_ps(a, _mm256_set1_ps(0.125f), _CMP_LT_OQ));
}

/* 8 weights at element i of type t converted to f32. */
AI __m256 ldw(const void *w, int t, int64_t i) {
    if (t == LOOM_F32) return _mm256_loadu_ps((const float *)w + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (t == LOOM_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
/* The first n (0..8) of them, the rest 0; touches nothing past element i + n. */
AI __m256 ldw_n(const void *w, int t, int64_t i, int64_t n) {
    if (n >= 8) return ldw(w, t, i);
    if (t == LOOM_F32) return _mm256_maskload_ps((const float *)w + i, lane_mask(n));
    uint16_t tmp[8] = {0};
    memcpy(tmp, (const uint16_t *)w + i, (size_t)n * 2);
    return ldw(tmp, t, 0);
}
AI __m256 ld_n(const float *p, int64_t n) {
    return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lane_mask(n));
}
AI void st_n(float *p, __m256 v, int64_t n) {
    if (n >= 8)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, lane_mask(n), v);
}

/* ---- conversion ----------------------------------------------------------------------------- */
static void v_to_f32(float *dst, const void *src, loom_dtype t, int64_t n) {
    if (t == LOOM_F32) {
        memcpy(dst, src, (size_t)n * 4);
        return;
    }
    if (t == LOOM_I32) {
        for (int64_t i = 0; i < n; i++) dst[i] = (float)((const int32_t *)src)[i];
        return;
    }
    for (int64_t i = 0; i < n; i += 8) {
        if (t == LOOM_F16)
            st_n(dst + i, ldw_n(src, LOOM_F16, i, n - i), n - i);
        else
            st_n(dst + i, ldw_n(src, LOOM_BF16, i, n - i), n - i);
    }
}

/* ---- elementwise ---------------------------------------------------------------------------- */
#define EW_LOOP(EXPR_V)                                                                            \
    for (int64_t i = 0; i < n; i += 8) {                                                           \
        const int64_t c = n - i;                                                                   \
        st_n(y + i, EXPR_V, c);                                                                    \
    }
#define LD(p) ld_n((p) + i, c)

static void v_add(float *y, const float *a, const float *b, int64_t n) { EW_LOOP(_mm256_add_ps(LD(a), LD(b))) }
static void v_mul(float *y, const float *a, const float *b, int64_t n) { EW_LOOP(_mm256_mul_ps(LD(a), LD(b))) }
static void v_scale(float *y, const float *a, float s, int64_t n) {
    const __m256 vs = _mm256_set1_ps(s);
    EW_LOOP(_mm256_mul_ps(LD(a), vs))
}
static void v_silu(float *y, const float *x, int64_t n) { EW_LOOP(silu8(LD(x))) }
static void v_swiglu(float *y, const float *g, const float *u, int64_t n) {
    EW_LOOP(_mm256_mul_ps(silu8(LD(g)), LD(u)))
}

static void v_gelu(float *y, const float *x, int64_t n) { EW_LOOP(gelu8(LD(x))) }
static void v_geglu(float *y, const float *g, const float *u, int64_t n) {
    EW_LOOP(_mm256_mul_ps(gelu8(LD(g)), LD(u)))
}
static void v_softcap(float *y, const float *x, float cap, int64_t n) {
    const __m256 vc = _mm256_set1_ps(cap), vi = _mm256_set1_ps(1.0f / cap);
    EW_LOOP(_mm256_mul_ps(vc, tanh8(_mm256_mul_ps(LD(x), vi))))
}

/* ---- row ops -------------------------------------------------------------------------------- */
static void v_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256 a = _mm256_loadu_ps(x + j), b = _mm256_loadu_ps(x + j + 8);
        s0 = _mm256_fmadd_ps(a, a, s0);
        s1 = _mm256_fmadd_ps(b, b, s1);
    }
    for (; j < n; j += 8) {
        __m256 a = ld_n(x + j, n - j);
        s0 = _mm256_fmadd_ps(a, a, s0);
    }
    double ss = hsum8(_mm256_add_ps(s0, s1));
    const __m256 r = _mm256_set1_ps((float)(1.0 / sqrt(ss / (double)n + eps)));
    if (w) {
        EW_LOOP(_mm256_mul_ps(_mm256_mul_ps(LD(x), r), LD(w)))
    } else {
        EW_LOOP(_mm256_mul_ps(LD(x), r))
    }
}

static void v_softmax(float *y, const float *x, int64_t n, float scale) {
    const __m256 vs = _mm256_set1_ps(scale);
    __m256 mx = _mm256_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n; i += 8) {
        __m256 v = _mm256_mul_ps(ld_n(x + i, n - i), vs);
        if (n - i < 8) v = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), v, _mm256_castsi256_ps(lane_mask(n - i)));
        mx = _mm256_max_ps(mx, v);
    }
    const __m256 vm = _mm256_set1_ps(hmax8(mx));
    __m256 sum = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 8) {
        __m256 e = exp8(_mm256_fmsub_ps(ld_n(x + i, n - i), vs, vm));
        if (n - i < 8) e = _mm256_and_ps(e, _mm256_castsi256_ps(lane_mask(n - i)));
        st_n(y + i, e, n - i);
        sum = _mm256_add_ps(sum, e);
    }
    const __m256 inv = _mm256_set1_ps(1.0f / hsum8(sum));
    EW_LOOP(_mm256_mul_ps(LD(y), inv))
}

static void v_rope(float *x, const float *cs, const float *sn, int rot, int mode) {
    int half = rot / 2;
    if (mode != LOOM_ROPE_NEOX) { /* interleaved pairs: scalar */
        for (int i = 0; i < half; i++) {
            float a = x[2 * i], b = x[2 * i + 1];
            x[2 * i] = a * cs[i] - b * sn[i];
            x[2 * i + 1] = a * sn[i] + b * cs[i];
        }
        return;
    }
    float *xa = x, *xb = x + half;
    for (int i = 0; i < half; i += 8) {
        int64_t c = half - i;
        __m256 a = ld_n(xa + i, c), b = ld_n(xb + i, c), co = ld_n(cs + i, c), si = ld_n(sn + i, c);
        st_n(xa + i, _mm256_fmsub_ps(a, co, _mm256_mul_ps(b, si)), c);
        st_n(xb + i, _mm256_fmadd_ps(a, si, _mm256_mul_ps(b, co)), c);
    }
}

/* ---- attention ------------------------------------------------------------------------------ */
AI float dot_hd(const float *a, const float *b, int hd) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int d = 0;
    for (; d + 16 <= hd; d += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + d + 8), _mm256_loadu_ps(b + d + 8), s1);
    }
    for (; d < hd; d += 8) s0 = _mm256_fmadd_ps(ld_n(a + d, hd - d), ld_n(b + d, hd - d), s0);
    return hsum8(_mm256_add_ps(s0, s1));
}

static void v_attn(float *out, const float *q, const float *k, const float *v, int64_t ld,
                   int64_t n_keys, int hd, float scale, float softcap, float *scratch) {
    float *sc = scratch, *acc = scratch + CPU_ATTN_BLOCK;
    float mx = -INFINITY, l = 0;
    for (int d = 0; d < hd; d++) acc[d] = 0;
    for (int64_t j0 = 0; j0 < n_keys; j0 += CPU_ATTN_BLOCK) {
        int nb = (int)(n_keys - j0 < CPU_ATTN_BLOCK ? n_keys - j0 : CPU_ATTN_BLOCK);
        float bmax = -INFINITY;
        for (int j = 0; j < nb; j++) {
            sc[j] = scale * dot_hd(q, k + (j0 + j) * ld, hd);
            if (sc[j] > bmax) bmax = sc[j];
        }
        if (softcap > 0) {
            v_softcap(sc, sc, softcap, nb);
            bmax = -INFINITY;
            for (int j = 0; j < nb; j++) bmax = sc[j] > bmax ? sc[j] : bmax;
        }
        if (bmax > mx) {
            float c = expf(mx - bmax);
            for (int d = 0; d < hd; d += 8) st_n(acc + d, _mm256_mul_ps(ld_n(acc + d, hd - d), _mm256_set1_ps(c)), hd - d);
            l *= c;
            mx = bmax;
        }
        __m256 ls = _mm256_setzero_ps();
        for (int j = 0; j < nb; j += 8) {
            __m256 p = exp8(_mm256_sub_ps(ld_n(sc + j, nb - j), _mm256_set1_ps(mx)));
            if (nb - j < 8) p = _mm256_and_ps(p, _mm256_castsi256_ps(lane_mask(nb - j)));
            st_n(sc + j, p, nb - j);
            ls = _mm256_add_ps(ls, p);
        }
        l += hsum8(ls);
        for (int j = 0; j < nb; j++) {
            const float *vj = v + (j0 + j) * ld;
            __m256 p = _mm256_set1_ps(sc[j]);
            for (int d = 0; d < hd; d += 8)
                st_n(acc + d, _mm256_fmadd_ps(p, ld_n(vj + d, hd - d), ld_n(acc + d, hd - d)), hd - d);
        }
    }
    const __m256 inv = _mm256_set1_ps(1.0f / l);
    for (int d = 0; d < hd; d += 8) st_n(out + d, _mm256_mul_ps(ld_n(acc + d, hd - d), inv), hd - d);
}

/* ---- gemv ----------------------------------------------------------------------------------- */
AI void gemv_t(int t, float *y, const float *x, const void *w, int64_t K, int64_t n0, int64_t n1,
               const float *bias) {
    const int64_t es = t == LOOM_F32 ? 4 : 2;
    const char *wb = w;
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        const void *r0 = wb + (n + 0) * K * es, *r1 = wb + (n + 1) * K * es;
        const void *r2 = wb + (n + 2) * K * es, *r3 = wb + (n + 3) * K * es;
        const char *pf = wb + (n + 4) * K * es;
        int64_t k = 0;
        for (; k + 16 <= K; k += 16) {
            if ((k & 31) == 0 || es == 4) {
                _mm_prefetch(pf + k * es, _MM_HINT_T0);
                _mm_prefetch(pf + (K + k) * es, _MM_HINT_T0);
                _mm_prefetch(pf + (2 * K + k) * es, _MM_HINT_T0);
                _mm_prefetch(pf + (3 * K + k) * es, _MM_HINT_T0);
            }
            __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
            a0 = _mm256_fmadd_ps(ldw(r0, t, k), x0, a0);
            a1 = _mm256_fmadd_ps(ldw(r1, t, k), x0, a1);
            a2 = _mm256_fmadd_ps(ldw(r2, t, k), x0, a2);
            a3 = _mm256_fmadd_ps(ldw(r3, t, k), x0, a3);
            b0 = _mm256_fmadd_ps(ldw(r0, t, k + 8), x1, b0);
            b1 = _mm256_fmadd_ps(ldw(r1, t, k + 8), x1, b1);
            b2 = _mm256_fmadd_ps(ldw(r2, t, k + 8), x1, b2);
            b3 = _mm256_fmadd_ps(ldw(r3, t, k + 8), x1, b3);
        }
        for (; k < K; k += 8) {
            __m256 x0 = ld_n(x + k, K - k);
            a0 = _mm256_fmadd_ps(ldw_n(r0, t, k, K - k), x0, a0);
            a1 = _mm256_fmadd_ps(ldw_n(r1, t, k, K - k), x0, a1);
            a2 = _mm256_fmadd_ps(ldw_n(r2, t, k, K - k), x0, a2);
            a3 = _mm256_fmadd_ps(ldw_n(r3, t, k, K - k), x0, a3);
        }
        y[n + 0] = hsum8(_mm256_add_ps(a0, b0)) + (bias ? bias[n + 0] : 0.0f);
        y[n + 1] = hsum8(_mm256_add_ps(a1, b1)) + (bias ? bias[n + 1] : 0.0f);
        y[n + 2] = hsum8(_mm256_add_ps(a2, b2)) + (bias ? bias[n + 2] : 0.0f);
        y[n + 3] = hsum8(_mm256_add_ps(a3, b3)) + (bias ? bias[n + 3] : 0.0f);
    }
    for (; n < n1; n++) {
        const void *r0 = wb + n * K * es;
        __m256 a0 = _mm256_setzero_ps();
        for (int64_t k = 0; k < K; k += 8)
            a0 = _mm256_fmadd_ps(ldw_n(r0, t, k, K - k), ld_n(x + k, K - k), a0);
        y[n] = hsum8(a0) + (bias ? bias[n] : 0.0f);
    }
}

static void v_gemv(float *y, const float *x, const void *w, loom_dtype wt, int64_t K, int64_t n0,
                   int64_t n1, const float *bias) {
    switch (wt) {
    case LOOM_F32: gemv_t(LOOM_F32, y, x, w, K, n0, n1, bias); break;
    case LOOM_F16: gemv_t(LOOM_F16, y, x, w, K, n0, n1, bias); break;
    default: gemv_t(LOOM_BF16, y, x, w, K, n0, n1, bias); break;
    }
}

/* ---- gemv of a few rows ---------------------------------------------------------------------- */
/* 2 <= M <= CPU_GEMV_MAX_ROWS rows of x (several sequences decoding): each weight row is read
 * once for all of them, as in cpu_avx512.c; 16 ymm registers hold at most 8 accumulators plus the
 * weights, so 9..16 rows take two passes. */
AI void gemv_rows_t(int t, int M, float *y, int64_t ldy, const float *x, const void *w, int64_t K,
                    int64_t n0, int64_t n1, const float *bias) {
    const int64_t es = t == LOOM_F32 ? 4 : 2;
    const char *wb = w;
    for (int64_t n = n0; n < n1; n++) {
        const void *r = wb + n * K * es;
        __m256 acc[8];
#pragma GCC unroll 8
        for (int m = 0; m < M; m++) acc[m] = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k + 8 <= K; k += 8) {
            __m256 wv = ldw(r, t, k);
#pragma GCC unroll 8
            for (int m = 0; m < M; m++) acc[m] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + m * K + k), acc[m]);
        }
        if (k < K) {
            __m256 wv = ldw_n(r, t, k, K - k);
#pragma GCC unroll 8
            for (int m = 0; m < M; m++) acc[m] = _mm256_fmadd_ps(wv, ld_n(x + m * K + k, K - k), acc[m]);
        }
        float b = bias ? bias[n] : 0.0f;
#pragma GCC unroll 8
        for (int m = 0; m < M; m++) y[m * ldy + n] = hsum8(acc[m]) + b;
    }
}

#include "backends/cpu/gemv_rows.h"

/* ---- gemm ----------------------------------------------------------------------------------- */
#define G_NR 16  /* panel width: two ymm of output columns */
#define G_MR 6   /* x rows per micro-kernel call: 12 accumulators + 2 W + 1 broadcast of 16 ymm */
#define G_KC 256 /* a 16 x 256 f32 panel is 16 KB */

AI void tr8(__m256 r[8]) {
    __m256 t[8], s[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        s[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        s[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        s[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        s[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(s[i], s[4 + i], 0x20);
        r[4 + i] = _mm256_permute2f128_ps(s[i], s[4 + i], 0x31);
    }
}

/* Pack W rows [n0, n1) x k [k0, k0 + kc) to f32 panels dst[p][k][16], zero-padded rows. */
AI void pack_t(int t, float *dst, const void *w, int64_t K, int64_t n0, int64_t n1, int64_t k0, int kc) {
    const int64_t es = t == LOOM_F32 ? 4 : 2;
    const char *wb = w;
    int64_t nc = n1 - n0, groups = (nc + 7) / 8;
    for (int64_t g = 0; g < groups; g++) {
        int rows = (int)(nc - g * 8 < 8 ? nc - g * 8 : 8);
        float *pd = dst + (g / 2) * (int64_t)kc * G_NR + (g % 2) * 8;
        for (int kk = 0; kk < kc; kk += 8) {
            int kn = kc - kk < 8 ? kc - kk : 8;
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = i < rows ? ldw_n(wb + ((n0 + g * 8 + i) * K + k0) * es, t, kk, kn) : _mm256_setzero_ps();
            tr8(r);
            for (int j = 0; j < kn; j++) _mm256_store_ps(pd + (int64_t)(kk + j) * G_NR, r[j]);
        }
    }
    if (groups & 1) {
        float *pd = dst + (groups / 2) * (int64_t)kc * G_NR + 8;
        for (int k = 0; k < kc; k++) _mm256_store_ps(pd + (int64_t)k * G_NR, _mm256_setzero_ps());
    }
}

static void pack(float *dst, const void *w, int t, int64_t K, int64_t n0, int64_t n1, int64_t k0, int kc) {
    switch (t) {
    case LOOM_F32: pack_t(LOOM_F32, dst, w, K, n0, n1, k0, kc); break;
    case LOOM_F16: pack_t(LOOM_F16, dst, w, K, n0, n1, k0, kc); break;
    default: pack_t(LOOM_BF16, dst, w, K, n0, n1, k0, kc); break;
    }
}

AI void tile_out(float *y, __m256 a0, __m256 a1, int64_t cols, bool first, const float *bias) {
    int64_t c1 = cols - 8;
    if (first) {
        if (bias) {
            a0 = _mm256_add_ps(a0, ld_n(bias, cols));
            if (c1 > 0) a1 = _mm256_add_ps(a1, ld_n(bias + 8, c1));
        }
    } else {
        a0 = _mm256_add_ps(a0, ld_n(y, cols));
        if (c1 > 0) a1 = _mm256_add_ps(a1, ld_n(y + 8, c1));
    }
    st_n(y, a0, cols);
    if (c1 > 0) st_n(y + 8, a1, c1);
}

AI void ukr(int mr, const float *x, int64_t ldx, const float *pw, int kc, float *y, int64_t ldy,
            int64_t cols, bool first, const float *bias) {
    __m256 acc[G_MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++) {
        __m256 w0 = _mm256_load_ps(pw + (int64_t)k * G_NR), w1 = _mm256_load_ps(pw + (int64_t)k * G_NR + 8);
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            __m256 xb = _mm256_broadcast_ss(x + r * ldx + k);
            acc[r][0] = _mm256_fmadd_ps(xb, w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(xb, w1, acc[r][1]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) tile_out(y + r * ldy, acc[r][0], acc[r][1], cols, first, bias);
}

/* ---- grouped attention ---------------------------------------------------------------------- */
/* As in cpu_avx512.c: a block of 64 keys is transposed once (kt[d][j]) and serves every query of
 * the kv group, 4 queries at a time; with 16 ymm registers the score tiles are 4 queries x 16 keys
 * and the P.V tiles 4 queries x 16 dims (8 accumulators each). */
#define AG_Q 4
#define AG_KB CPU_ATTN_BLOCK

static bool v_attn_group_ok(int hd) { return hd >= 16 && hd <= 512 && hd % 16 == 0; }

static size_t v_attn_group_scratch(int nq, int hd) {
    return (size_t)hd * AG_KB + (size_t)nq * hd + (size_t)AG_Q * AG_KB + 2 * (size_t)nq + 64;
}

/* p[i][j0 .. j0 + 16) = q_i . k_j for nt queries */
AI void ag_scores(int nt, const float *const *q, const float *kt, int hd, int j0, float *p) {
    __m256 acc[AG_Q][2];
#pragma GCC unroll 4
    for (int i = 0; i < nt; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int d = 0; d < hd; d++) {
        const float *kd = kt + (int64_t)d * AG_KB + j0;
        __m256 w0 = _mm256_load_ps(kd), w1 = _mm256_load_ps(kd + 8);
#pragma GCC unroll 4
        for (int i = 0; i < nt; i++) {
            __m256 b = _mm256_broadcast_ss(q[i] + d);
            acc[i][0] = _mm256_fmadd_ps(b, w0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(b, w1, acc[i][1]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < nt; i++) {
        _mm256_store_ps(p + i * AG_KB + j0, acc[i][0]);
        _mm256_store_ps(p + i * AG_KB + j0 + 8, acc[i][1]);
    }
}

/* o_i[dc .. dc + 16) += sum_j p[i][j] v_j over nb keys */
AI void ag_pv(int nt, const float *p, const float *v, int64_t ld, int nb, float *o, int hd, int dc) {
    __m256 acc[AG_Q][2];
#pragma GCC unroll 4
    for (int i = 0; i < nt; i++) {
        acc[i][0] = _mm256_load_ps(o + (int64_t)i * hd + dc);
        acc[i][1] = _mm256_load_ps(o + (int64_t)i * hd + dc + 8);
    }
    for (int j = 0; j < nb; j++) {
        const float *vj = v + (int64_t)j * ld + dc;
        __m256 w0 = _mm256_loadu_ps(vj), w1 = _mm256_loadu_ps(vj + 8);
#pragma GCC unroll 4
        for (int i = 0; i < nt; i++) {
            __m256 b = _mm256_broadcast_ss(p + i * AG_KB + j);
            acc[i][0] = _mm256_fmadd_ps(b, w0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(b, w1, acc[i][1]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < nt; i++) {
        _mm256_store_ps(o + (int64_t)i * hd + dc, acc[i][0]);
        _mm256_store_ps(o + (int64_t)i * hd + dc + 8, acc[i][1]);
    }
}

static void v_attn_group(float *const *out, const float *const *q, const int64_t *n_keys, int nq,
                         const float *k, const float *v, int64_t ld, int hd, float scale,
                         float *scratch) {
    float *kt = scratch, *o = kt + (int64_t)hd * AG_KB, *p = o + (int64_t)nq * hd;
    float *mx = p + AG_Q * AG_KB, *ls = mx + nq;
    int64_t kmax = 0;
    for (int i = 0; i < nq; i++) {
        if (n_keys[i] > kmax) kmax = n_keys[i];
        mx[i] = -INFINITY;
        ls[i] = 0;
    }
    memset(o, 0, (size_t)nq * hd * sizeof(float));
    const __m256 vscale = _mm256_set1_ps(scale);
    for (int64_t j0 = 0; j0 < kmax; j0 += AG_KB) {
        int nb = (int)(kmax - j0 < AG_KB ? kmax - j0 : AG_KB);
        for (int d0 = 0; d0 < hd; d0 += 8)
            for (int jj = 0; jj < AG_KB; jj += 8) {
                __m256 r[8];
                for (int i = 0; i < 8; i++)
                    r[i] = jj + i < nb ? _mm256_loadu_ps(k + (j0 + jj + i) * ld + d0) : _mm256_setzero_ps();
                tr8(r);
                for (int e = 0; e < 8; e++) _mm256_store_ps(kt + (int64_t)(d0 + e) * AG_KB + jj, r[e]);
            }
        for (int q0 = 0; q0 < nq; q0 += AG_Q) {
            int nt = nq - q0 < AG_Q ? nq - q0 : AG_Q;
            int nbt = 0;
            for (int i = 0; i < nt; i++) {
                int64_t nk = n_keys[q0 + i] - j0;
                if (nk > nbt) nbt = nk > nb ? nb : (int)nk;
            }
            if (nbt <= 0) continue;
            for (int js = 0; js < nbt; js += 16) switch (nt) {
                case 4: ag_scores(4, q + q0, kt, hd, js, p); break;
                case 3: ag_scores(3, q + q0, kt, hd, js, p); break;
                case 2: ag_scores(2, q + q0, kt, hd, js, p); break;
                default: ag_scores(1, q + q0, kt, hd, js, p); break;
                }
            for (int i = 0; i < nt; i++) {
                int64_t nk = n_keys[q0 + i] - j0;
                float *pi = p + i * AG_KB;
                if (nk <= 0) {
                    memset(pi, 0, AG_KB * sizeof(float));
                    continue;
                }
                if (nk > nbt) nk = nbt;
                __m256 bm = _mm256_set1_ps(-INFINITY);
                for (int j = 0; j < nk; j += 8) {
                    __m256 s = _mm256_mul_ps(_mm256_load_ps(pi + j), vscale);
                    if (nk - j < 8)
                        s = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), s, _mm256_castsi256_ps(lane_mask(nk - j)));
                    _mm256_store_ps(pi + j, s);
                    bm = _mm256_max_ps(bm, s);
                }
                float bmax = hmax8(bm), mnew = bmax > mx[q0 + i] ? bmax : mx[q0 + i];
                __m256 vm = _mm256_set1_ps(mnew), sum = _mm256_setzero_ps();
                for (int j = 0; j < nbt; j += 8) {
                    __m256 e = _mm256_setzero_ps();
                    if (j < nk) {
                        e = exp8(_mm256_sub_ps(_mm256_load_ps(pi + j), vm));
                        if (nk - j < 8) e = _mm256_and_ps(e, _mm256_castsi256_ps(lane_mask(nk - j)));
                    }
                    _mm256_store_ps(pi + j, e);
                    sum = _mm256_add_ps(sum, e);
                }
                if (mnew > mx[q0 + i]) {
                    float cf = expf(mx[q0 + i] - mnew);
                    float *oi = o + (int64_t)(q0 + i) * hd;
                    for (int d = 0; d < hd; d += 8)
                        _mm256_store_ps(oi + d, _mm256_mul_ps(_mm256_load_ps(oi + d), _mm256_set1_ps(cf)));
                    ls[q0 + i] *= cf;
                    mx[q0 + i] = mnew;
                }
                ls[q0 + i] += hsum8(sum);
            }
            const float *vb = v + j0 * ld;
            float *ot = o + (int64_t)q0 * hd;
            for (int dc = 0; dc < hd; dc += 16) switch (nt) {
                case 4: ag_pv(4, p, vb, ld, nbt, ot, hd, dc); break;
                case 3: ag_pv(3, p, vb, ld, nbt, ot, hd, dc); break;
                case 2: ag_pv(2, p, vb, ld, nbt, ot, hd, dc); break;
                default: ag_pv(1, p, vb, ld, nbt, ot, hd, dc); break;
                }
        }
    }
    for (int i = 0; i < nq; i++) {
        const __m256 inv = _mm256_set1_ps(1.0f / ls[i]);
        for (int d = 0; d < hd; d += 8)
            _mm256_storeu_ps(out[i] + d, _mm256_mul_ps(_mm256_load_ps(o + (int64_t)i * hd + d), inv));
    }
}

static size_t v_gemm_scratch(int64_t M, int64_t K) {
    (void)M, (void)K;
    return (size_t)CPU_GEMM_MAX_COLS * G_KC + 16;
}

static void v_gemm(float *y, int64_t ldy, const float *x, const void *w, loom_dtype wt, int64_t M,
                   int64_t K, int64_t n0, int64_t n1, const float *bias, float *panel) {
    int64_t nc = n1 - n0, np = (nc + G_NR - 1) / G_NR;
    for (int64_t k0 = 0; k0 < K; k0 += G_KC) {
        int kc = (int)(K - k0 < G_KC ? K - k0 : G_KC);
        bool first = k0 == 0;
        pack(panel, w, wt, K, n0, n1, k0, kc);
        for (int64_t p = 0; p < np; p++) {
            int64_t cols = nc - p * G_NR < G_NR ? nc - p * G_NR : G_NR;
            const float *pw = panel + p * (int64_t)kc * G_NR;
            const float *bp = bias ? bias + n0 + p * G_NR : NULL;
            float *yp = y + n0 + p * G_NR;
            for (int64_t m = 0; m < M; m += G_MR) {
                const float *xm = x + m * K + k0;
                float *ym = yp + m * ldy;
                switch (M - m >= G_MR ? G_MR : M - m) {
                case 6: ukr(6, xm, K, pw, kc, ym, ldy, cols, first, bp); break;
                case 5: ukr(5, xm, K, pw, kc, ym, ldy, cols, first, bp); break;
                case 4: ukr(4, xm, K, pw, kc, ym, ldy, cols, first, bp); break;
                case 3: ukr(3, xm, K, pw, kc, ym, ldy, cols, first, bp); break;
                case 2: ukr(2, xm, K, pw, kc, ym, ldy, cols, first, bp); break;
                default: ukr(1, xm, K, pw, kc, ym, ldy, cols, first, bp); break;
                }
            }
        }
    }
}

void cpu_kernels_avx2(cpu_kernels *k) {
    k->name = "avx2";
    k->gemv = v_gemv;
    k->gemv_rows = v_gemv_rows;
    k->gemm = v_gemm;
    k->gemm_scratch = v_gemm_scratch;
    k->to_f32 = v_to_f32;
    k->add = v_add;
    k->mul = v_mul;
    k->scale = v_scale;
    k->silu = v_silu;
    k->swiglu = v_swiglu;
    k->gelu = v_gelu;
    k->geglu = v_geglu;
    k->softcap = v_softcap;
    k->rmsnorm = v_rmsnorm;
    k->softmax = v_softmax;
    k->rope = v_rope;
    k->attn = v_attn;
    k->attn_group = v_attn_group;
    k->attn_group_ok = v_attn_group_ok;
    k->attn_group_scratch = v_attn_group_scratch;
    k->gemm_bf16_rounds_x = false;
}
