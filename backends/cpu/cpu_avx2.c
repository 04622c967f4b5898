/* AVX2 + FMA + F16C kernels. This file is compiled with -mavx2 -mfma -mf16c; cpu_backend.c calls
 * cpu_kernels_avx2 only after CPUID says they are there. Same structure as cpu_avx512.c with
 * 8-lane vectors: gemv streams 4 weight rows at a time; gemm packs KC x 16 f32 panels (8x8
 * register transposes) and runs a 6 x 16 micro-kernel (12 ymm accumulators). AVX2 has no masked
 * 16-bit loads, so partial vectors go through a small zero-padded buffer.
 */
#define CPU_ISA_AVX2
#include "backends/cpu/cpu.h"
#include "backends/cpu/simd.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

/* ---- helpers (lane_mask, hsum8, hmax8, vexp, ld_n, st_n: simd.h) ----------------------------- */
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

/* ---- element-wise, row ops, attention: written once over simd.h ------------------------------ */
#include "backends/cpu/simd_ops.h"

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
                        e = vexp(_mm256_sub_ps(_mm256_load_ps(pi + j), vm));
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
