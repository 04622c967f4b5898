/* AVX-512 kernels (F/BW/DQ/VL + FMA + F16C, and AVX512_BF16 when present). This file is compiled
 * with AVX-512 flags; cpu_backend.c calls cpu_kernels_avx512 only after CPUID says they are there.
 *
 * MATMUL is what matters:
 *  - gemv (decode, one x row) is memory-bound: it cuts its rows into 4 parts and computes one row
 *    of each at a time, so one core runs 4 linear streams (each prefetched 2 KB ahead), with two
 *    accumulators a row; f16 converts with vcvtph2ps and bf16 with a shift; f32 accumulation.
 *  - gemm (prefill) packs a KC x 32 panel of W to f32 once (16x16 register transposes) and reuses
 *    it for every x row with an 8 x 32 register-blocked micro-kernel (16 zmm accumulators, x
 *    broadcast from memory). For bf16 weights with AVX512_BF16 the panel stays bf16 (pairs of k)
 *    and x is rounded to bf16 once per panel, so vdpbf16ps does two multiply-adds per lane;
 *    accumulation stays f32.
 */
#define CPU_ISA_AVX512
#include "backends/cpu/cpu.h"
#include "backends/cpu/simd.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

/* ---- helpers (tail_mask, vexp: simd.h) ------------------------------------------------------ */
/* 16 weights at element i of a row of type t (f32, f16, bf16), converted to f32. */
AI __m512 ldw(const void *w, int t, int64_t i) {
    if (t == LOOM_F32) return _mm512_loadu_ps((const float *)w + i);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i));
    if (t == LOOM_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
/* Same, only the lanes in m (others read as 0, nothing outside m is touched). */
AI __m512 ldw_m(const void *w, int t, int64_t i, __mmask16 m) {
    if (t == LOOM_F32) return _mm512_maskz_loadu_ps(m, (const float *)w + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i);
    if (t == LOOM_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* ---- conversion ----------------------------------------------------------------------------- */
static void v_to_f32(float *dst, const void *src, loom_dtype t, int64_t n) {
    if (t == LOOM_I32) {
        for (int64_t i = 0; i < n; i++) dst[i] = (float)((const int32_t *)src)[i];
        return;
    }
    int64_t i = 0;
    switch (t) {
    case LOOM_F32: memcpy(dst, src, (size_t)n * 4); return;
    case LOOM_F16:
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, ldw(src, LOOM_F16, i));
        if (i < n) _mm512_mask_storeu_ps(dst + i, tail_mask(n - i), ldw_m(src, LOOM_F16, i, tail_mask(n - i)));
        return;
    default:
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, ldw(src, LOOM_BF16, i));
        if (i < n) _mm512_mask_storeu_ps(dst + i, tail_mask(n - i), ldw_m(src, LOOM_BF16, i, tail_mask(n - i)));
        return;
    }
}

/* ---- element-wise, row ops, attention: written once over simd.h ------------------------------ */
#include "backends/cpu/simd_ops.h"

/* ---- gemv ----------------------------------------------------------------------------------- */
/* One core streams more when it reads several far-apart regions at once than one region with
 * software prefetch (Zen 5 here, one thread over 512 MiB: one stream 27-32 GB/s, with prefetch
 * 34-40, four streams in lockstep 45-47; backends/cpu/bench/bench_stream, docs/cpu-backend.md). So
 * the rows [n0, n1) are cut into GEMV_PARTS contiguous parts and each step computes one row of every
 * part: GEMV_PARTS linear streams (consecutive rows of a part follow each other in memory, so each
 * stream runs on from row to row), each prefetched GEMV_PF_BYTES ahead, one line per step. Four
 * adjacent rows at a time (the kernel before) were four short streams that restart every row group. */
#define GEMV_PARTS 4
#ifndef GEMV_PF_BYTES
#define GEMV_PF_BYTES 2048
#endif

/* Rows r[0..S) (S <= GEMV_PARTS, a constant in each instance) against x: 2 accumulators a row. */
AI void gemv_streams(int t, int S, float *const *yp, const float *x, const char *const *r, int64_t K,
                     const float *const *bp) {
    const int64_t es = t == LOOM_F32 ? 4 : 2;
    __m512 a[GEMV_PARTS], b[GEMV_PARTS];
#pragma GCC unroll 4
    for (int s = 0; s < S; s++) a[s] = b[s] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
#pragma GCC unroll 4
        for (int s = 0; s < S; s++) {
            _mm_prefetch(r[s] + k * es + GEMV_PF_BYTES, _MM_HINT_T0);
            if (es == 4) _mm_prefetch(r[s] + k * es + GEMV_PF_BYTES + 64, _MM_HINT_T0);
        }
        __m512 x0 = _mm512_loadu_ps(x + k), x1 = _mm512_loadu_ps(x + k + 16);
#pragma GCC unroll 4
        for (int s = 0; s < S; s++) {
            a[s] = _mm512_fmadd_ps(ldw(r[s], t, k), x0, a[s]);
            b[s] = _mm512_fmadd_ps(ldw(r[s], t, k + 16), x1, b[s]);
        }
    }
    for (; k < K; k += 16) {
        __mmask16 m = K - k >= 16 ? 0xffff : tail_mask(K - k);
        __m512 x0 = _mm512_maskz_loadu_ps(m, x + k);
#pragma GCC unroll 4
        for (int s = 0; s < S; s++) a[s] = _mm512_fmadd_ps(ldw_m(r[s], t, k, m), x0, a[s]);
    }
#pragma GCC unroll 4
    for (int s = 0; s < S; s++) *yp[s] = _mm512_reduce_add_ps(_mm512_add_ps(a[s], b[s])) + (bp[s] ? *bp[s] : 0.0f);
}

AI void gemv_t(int t, float *y, const float *x, const void *w, int64_t K, int64_t n0, int64_t n1,
               const float *bias) {
    const int64_t es = t == LOOM_F32 ? 4 : 2;
    const char *wb = w;
    const int64_t P = (n1 - n0) / GEMV_PARTS; /* rows per part; the last (n1 - n0) % 4 rows after */
    for (int64_t i = 0; i < P; i++) {
        float *yp[GEMV_PARTS];
        const char *r[GEMV_PARTS];
        const float *bp[GEMV_PARTS];
#pragma GCC unroll 4
        for (int s = 0; s < GEMV_PARTS; s++) {
            int64_t n = n0 + s * P + i;
            yp[s] = y + n;
            r[s] = wb + n * K * es;
            bp[s] = bias ? bias + n : NULL;
        }
        gemv_streams(t, GEMV_PARTS, yp, x, r, K, bp);
    }
    for (int64_t n = n0 + GEMV_PARTS * P; n < n1; n++) {
        float *yp[1] = {y + n};
        const char *r[1] = {wb + n * K * es};
        const float *bp[1] = {bias ? bias + n : NULL};
        gemv_streams(t, 1, yp, x, r, K, bp);
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
/* Decode of several sequences at once (2 <= M <= CPU_GEMV_MAX_ROWS; dispatch in gemv_rows.h): like gemv, memory-bound, so
 * each weight row is read once for all M rows of x (which stay in L1/L2). The tiled gemm would
 * convert and pack every weight into an f32 panel for only M rows: at M = 16 that cost as much as
 * the products. M is a compile-time constant in each instance so the accumulators stay in
 * registers. */
AI void gemv_rows_t(int t, int M, float *y, int64_t ldy, const float *x, const void *w, int64_t K,
                    int64_t n0, int64_t n1, const float *bias) {
    const int64_t es = t == LOOM_F32 ? 4 : 2;
    const char *wb = w;
    for (int64_t n = n0; n < n1; n++) {
        const void *r = wb + n * K * es;
        const char *pf = wb + (n + 2) * K * es; /* two rows ahead, as gemv's streams */
        __m512 acc[CPU_GEMV_MAX_ROWS];
#pragma GCC unroll 16
        for (int m = 0; m < M; m++) acc[m] = _mm512_setzero_ps();
        for (int64_t k = 0; k < K; k += 16) {
            if ((k & 31) == 0 && n + 2 < n1) _mm_prefetch(pf + k * es, _MM_HINT_T0);
            __mmask16 mk = K - k >= 16 ? 0xffff : tail_mask(K - k);
            __m512 wv = ldw_m(r, t, k, mk);
#pragma GCC unroll 16
            for (int m = 0; m < M; m++) acc[m] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(mk, x + m * K + k), acc[m]);
        }
        float b = bias ? bias[n] : 0.0f;
#pragma GCC unroll 16
        for (int m = 0; m < M; m++) y[m * ldy + n] = _mm512_reduce_add_ps(acc[m]) + b;
    }
}

#include "backends/cpu/gemv_rows.h"

/* ---- gemm ----------------------------------------------------------------------------------- */
#define G_NR 32  /* panel width: two zmm of output columns */
#ifndef G_MR
#define G_MR 12  /* x rows per micro-kernel call: 24 zmm accumulators */
#endif
#if G_MR == 12
#define UKR_CASES C(12) C(11) C(10) C(9) C(8) C(7) C(6) C(5) C(4) C(3) C(2) C(1)
#elif G_MR == 8
#define UKR_CASES C(8) C(7) C(6) C(5) C(4) C(3) C(2) C(1)
#elif G_MR == 14
#define UKR_CASES C(14) C(13) C(12) C(11) C(10) C(9) C(8) C(7) C(6) C(5) C(4) C(3) C(2) C(1)
#else
#error "G_MR must be 8, 12 or 14"
#endif
#ifndef G_KC
#define G_KC 256
#endif
/* k per packed panel: a 32 x 256 f32 panel is 32 KB, it stays in L1 */

/* Transpose 16 rows of 16 floats in registers. */
AI void tr16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    /* r[4g + e] now holds, in 128-bit lane L, element 4L + e of rows 4g..4g+3 */
    for (int e = 0; e < 4; e++) {
        __m512 a = _mm512_shuffle_f32x4(r[e], r[4 + e], 0x88), b = _mm512_shuffle_f32x4(r[e], r[4 + e], 0xdd);
        __m512 c = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0x88), d = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0xdd);
        t[e] = _mm512_shuffle_f32x4(a, c, 0x88);
        t[8 + e] = _mm512_shuffle_f32x4(a, c, 0xdd);
        t[4 + e] = _mm512_shuffle_f32x4(b, d, 0x88);
        t[12 + e] = _mm512_shuffle_f32x4(b, d, 0xdd);
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

/* Pack W rows [n0, n1) x k [k0, k0 + kc) to f32 panels dst[p][k][32] (p = 32-row group),
 * padding missing rows with zeros. */
AI void pack_f32_t(int t, float *dst, const void *w, int64_t K, int64_t n0, int64_t n1, int64_t k0, int kc) {
    const int64_t es = t == LOOM_F32 ? 4 : 2;
    const char *wb = w;
    int64_t nc = n1 - n0;
    int64_t groups = (nc + 15) / 16;
    for (int64_t g = 0; g < groups; g++) {
        int rows = (int)(nc - g * 16 < 16 ? nc - g * 16 : 16);
        float *pd = dst + (g / 2) * (int64_t)kc * G_NR + (g % 2) * 16;
        /* rows of the next group: fetch them while this one is transposed (short row segments
         * defeat the hardware prefetcher when W comes from DRAM) */
        int64_t next = g + 1 < groups ? 16 : 0, nrows_next = nc - (g + 1) * 16 < 16 ? nc - (g + 1) * 16 : 16;
        const char *pf = wb + ((n0 + g * 16 + next) * K + k0) * es;
        for (int kk = 0; kk < kc; kk += 16) {
            int kn = kc - kk < 16 ? kc - kk : 16;
            __mmask16 m = kn == 16 ? 0xffff : tail_mask(kn);
            if (next && (kk * es) % 64 == 0)
                for (int i = 0; i < nrows_next; i++) _mm_prefetch(pf + (i * K + kk) * es, _MM_HINT_T0);
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < rows ? ldw_m(wb + ((n0 + g * 16 + i) * K + k0) * es, t, kk, m) : _mm512_setzero_ps();
            tr16(r);
            for (int j = 0; j < kn; j++) _mm512_store_ps(pd + (int64_t)(kk + j) * G_NR, r[j]);
        }
    }
    if (groups & 1) { /* the unused half of the last panel */
        float *pd = dst + (groups / 2) * (int64_t)kc * G_NR + 16;
        for (int k = 0; k < kc; k++) _mm512_store_ps(pd + (int64_t)k * G_NR, _mm512_setzero_ps());
    }
}

static void pack_f32(float *dst, const void *w, int t, int64_t K, int64_t n0, int64_t n1, int64_t k0, int kc) {
    switch (t) {
    case LOOM_F32: pack_f32_t(LOOM_F32, dst, w, K, n0, n1, k0, kc); break;
    case LOOM_F16: pack_f32_t(LOOM_F16, dst, w, K, n0, n1, k0, kc); break;
    default: pack_f32_t(LOOM_BF16, dst, w, K, n0, n1, k0, kc); break;
    }
}

/* Write a finished tile row: first k block stores (+ bias), later blocks add. */
AI void tile_out(float *y, __m512 a0, __m512 a1, __mmask16 m0, __mmask16 m1, bool first,
                 const float *bias) {
    if (first) {
        if (bias) {
            a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(m0, bias));
            a1 = _mm512_add_ps(a1, _mm512_maskz_loadu_ps(m1, bias + 16));
        }
    } else {
        a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(m0, y));
        a1 = _mm512_add_ps(a1, _mm512_maskz_loadu_ps(m1, y + 16));
    }
    _mm512_mask_storeu_ps(y, m0, a0);
    _mm512_mask_storeu_ps(y + 16, m1, a1);
}

/* mr x 32 tile: y[r][0..32) (+)= sum_k x[r][k] * panel[k][0..32). */
AI void ukr_f32(int mr, const float *x, int64_t ldx, const float *pw, int kc, float *y, int64_t ldy,
                __mmask16 m0, __mmask16 m1, bool first, const float *bias) {
    __m512 acc[G_MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        __m512 w0 = _mm512_load_ps(pw + (int64_t)k * G_NR), w1 = _mm512_load_ps(pw + (int64_t)k * G_NR + 16);
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            __m512 xb = _mm512_set1_ps(x[r * ldx + k]);
            acc[r][0] = _mm512_fmadd_ps(xb, w0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(xb, w1, acc[r][1]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) tile_out(y + r * ldy, acc[r][0], acc[r][1], m0, m1, first, bias);
}

static void gemm_f32(float *y, int64_t ldy, const float *x, const void *w, int wt, int64_t M,
                     int64_t K, int64_t n0, int64_t n1, const float *bias, float *panel) {
    int64_t nc = n1 - n0, np = (nc + G_NR - 1) / G_NR;
    for (int64_t k0 = 0; k0 < K; k0 += G_KC) {
        int kc = (int)(K - k0 < G_KC ? K - k0 : G_KC);
        bool first = k0 == 0;
        pack_f32(panel, w, wt, K, n0, n1, k0, kc);
        for (int64_t p = 0; p < np; p++) {
            int64_t cols = nc - p * G_NR < G_NR ? nc - p * G_NR : G_NR;
            __mmask16 m0 = cols >= 16 ? 0xffff : tail_mask(cols);
            __mmask16 m1 = cols >= 32 ? 0xffff : cols > 16 ? tail_mask(cols - 16) : 0;
            const float *pw = panel + p * (int64_t)kc * G_NR;
            const float *bp = bias ? bias + n0 + p * G_NR : NULL;
            float *yp = y + n0 + p * G_NR;
            for (int64_t m = 0; m < M; m += G_MR) {
                const float *xm = x + m * K + k0;
                float *ym = yp + m * ldy;
                switch (M - m >= G_MR ? G_MR : M - m) {
#define C(R) case R: ukr_f32(R, xm, K, pw, kc, ym, ldy, m0, m1, first, bp); break;
                    UKR_CASES
#undef C
                }
            }
        }
    }
}

/* ---- bf16 gemm (AVX512_BF16) ---------------------------------------------------------------- */
/* Panels hold k in pairs: dst[p][kp][32] dwords, each dword = (W[n][2kp], W[n][2kp+1]) as bf16. */
static void pack_bf16(uint32_t *dst, const uint16_t *w, int64_t K, int64_t n0, int64_t n1, int64_t k0, int kc) {
    int64_t nc = n1 - n0, groups = (nc + 15) / 16;
    int kp = (kc + 1) / 2;
    for (int64_t g = 0; g < groups; g++) {
        int rows = (int)(nc - g * 16 < 16 ? nc - g * 16 : 16);
        uint32_t *pd = dst + (g / 2) * (int64_t)kp * G_NR + (g % 2) * 16;
        for (int kk = 0; kk < kc; kk += 32) { /* 32 k = 16 pairs */
            int kn = kc - kk < 32 ? kc - kk : 32;
            __mmask32 m = kn == 32 ? 0xffffffffu : (__mmask32)((1ull << kn) - 1);
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < rows ? _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(m, w + (n0 + g * 16 + i) * K + k0 + kk))
                                : _mm512_setzero_ps();
            tr16(r);
            for (int j = 0; j < (kn + 1) / 2; j++)
                _mm512_store_si512((void *)(pd + (int64_t)(kk / 2 + j) * G_NR), _mm512_castps_si512(r[j]));
        }
    }
    if (groups & 1) {
        uint32_t *pd = dst + (groups / 2) * (int64_t)kp * G_NR + 16;
        for (int k = 0; k < kp; k++) _mm512_store_si512((void *)(pd + (int64_t)k * G_NR), _mm512_setzero_si512());
    }
}

/* x[m][k0, k0 + kc) rounded to bf16 pairs, xb[m][kp], zero-padded to an even count. */
static void x_to_bf16(uint32_t *xb, const float *x, int64_t K, int64_t M, int64_t k0, int kc) {
    int kp = (kc + 1) / 2;
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * K + k0;
        uint32_t *d = xb + m * kp;
        for (int k = 0; k < kc; k += 32) {
            int kn = kc - k;
            __mmask16 ma = kn >= 16 ? 0xffff : tail_mask(kn);
            __mmask16 mb = kn >= 32 ? 0xffff : kn > 16 ? tail_mask(kn - 16) : 0;
            __m512 a = _mm512_maskz_loadu_ps(ma, xr + k), b = _mm512_maskz_loadu_ps(mb, xr + k + 16);
            __m512bh v = _mm512_cvtne2ps_pbh(b, a); /* low half from a: k order kept */
            int nd = (kn >= 32 ? 32 : kn + 1) / 2;
            _mm512_mask_storeu_epi32(d + k / 2, tail_mask(nd) | (nd == 16 ? 0xffff : 0), (__m512i)v);
        }
    }
}

AI void ukr_bf16(int mr, const uint32_t *xb, int64_t ldx, const uint32_t *pw, int kp, float *y,
                 int64_t ldy, __mmask16 m0, __mmask16 m1, bool first, const float *bias) {
    __m512 acc[G_MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int k = 0; k < kp; k++) {
        __m512bh w0 = (__m512bh)_mm512_load_si512((const void *)(pw + (int64_t)k * G_NR));
        __m512bh w1 = (__m512bh)_mm512_load_si512((const void *)(pw + (int64_t)k * G_NR + 16));
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            __m512bh xv = (__m512bh)_mm512_set1_epi32((int)xb[r * ldx + k]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], xv, w0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], xv, w1);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) tile_out(y + r * ldy, acc[r][0], acc[r][1], m0, m1, first, bias);
}

static void gemm_bf16(float *y, int64_t ldy, const float *x, const uint16_t *w, int64_t M, int64_t K,
                      int64_t n0, int64_t n1, const float *bias, float *scratch) {
    uint32_t *panel = (uint32_t *)scratch;
    uint32_t *xb = panel + CPU_GEMM_MAX_COLS * (G_KC / 2);
    int64_t nc = n1 - n0, np = (nc + G_NR - 1) / G_NR;
    for (int64_t k0 = 0; k0 < K; k0 += G_KC) {
        int kc = (int)(K - k0 < G_KC ? K - k0 : G_KC), kp = (kc + 1) / 2;
        bool first = k0 == 0;
        pack_bf16(panel, w, K, n0, n1, k0, kc);
        x_to_bf16(xb, x, K, M, k0, kc);
        for (int64_t p = 0; p < np; p++) {
            int64_t cols = nc - p * G_NR < G_NR ? nc - p * G_NR : G_NR;
            __mmask16 m0 = cols >= 16 ? 0xffff : tail_mask(cols);
            __mmask16 m1 = cols >= 32 ? 0xffff : cols > 16 ? tail_mask(cols - 16) : 0;
            const uint32_t *pw = panel + p * (int64_t)kp * G_NR;
            const float *bp = bias ? bias + n0 + p * G_NR : NULL;
            float *yp = y + n0 + p * G_NR;
            for (int64_t m = 0; m < M; m += G_MR) {
                const uint32_t *xm = xb + m * kp;
                float *ym = yp + m * ldy;
                switch (M - m >= G_MR ? G_MR : M - m) {
#define C(R) case R: ukr_bf16(R, xm, kp, pw, kp, ym, ldy, m0, m1, first, bp); break;
                    UKR_CASES
#undef C
                }
            }
        }
    }
}

/* ---- grouped attention ---------------------------------------------------------------------- */
/* Flash-attention style: a block of 64 keys is transposed once (kt[d][j]) and then serves every
 * query of the group, 4 queries at a time: scores are 4 x 64 register tiles (16 zmm, no
 * horizontal sums), the online softmax updates per query, and P.V runs 4 queries x 64 dims of
 * accumulators over the block's value rows. K and V are read once per block for all queries. */
#define AG_Q 4
#define AG_KB CPU_ATTN_BLOCK

static bool v_attn_group_ok(int hd) { return hd >= 16 && hd <= 512 && hd % 16 == 0; }

static size_t v_attn_group_scratch(int nq, int hd) {
    return (size_t)hd * AG_KB + (size_t)nq * hd + (size_t)AG_Q * AG_KB + 2 * (size_t)nq + 64;
}

/* scores of nt queries against the 64 keys in kt: p[i][j] = q_i . k_j (unscaled) */
AI void ag_scores(int nt, const float *const *q, const float *kt, int hd, float *p) {
    __m512 acc[AG_Q][4];
#pragma GCC unroll 4
    for (int i = 0; i < nt; i++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) acc[i][c] = _mm512_setzero_ps();
    for (int d = 0; d < hd; d++) {
        const float *kd = kt + (int64_t)d * AG_KB;
        __m512 w0 = _mm512_load_ps(kd), w1 = _mm512_load_ps(kd + 16);
        __m512 w2 = _mm512_load_ps(kd + 32), w3 = _mm512_load_ps(kd + 48);
#pragma GCC unroll 4
        for (int i = 0; i < nt; i++) {
            __m512 b = _mm512_set1_ps(q[i][d]);
            acc[i][0] = _mm512_fmadd_ps(b, w0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(b, w1, acc[i][1]);
            acc[i][2] = _mm512_fmadd_ps(b, w2, acc[i][2]);
            acc[i][3] = _mm512_fmadd_ps(b, w3, acc[i][3]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < nt; i++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) _mm512_store_ps(p + i * AG_KB + 16 * c, acc[i][c]);
}

/* o_i[dc .. dc + 64) += sum_j p[i][j] v_j over nb keys, for nt queries (o rows hd apart) */
AI void ag_pv(int nt, const float *p, const float *v, int64_t ld, int nb, float *o, int hd, int dc,
              int nvec) {
    __m512 acc[AG_Q][4];
#pragma GCC unroll 4
    for (int i = 0; i < nt; i++)
#pragma GCC unroll 4
        for (int c = 0; c < nvec; c++) acc[i][c] = _mm512_load_ps(o + (int64_t)i * hd + dc + 16 * c);
    for (int j = 0; j < nb; j++) {
        const float *vj = v + (int64_t)j * ld + dc;
        __m512 w[4];
#pragma GCC unroll 4
        for (int c = 0; c < nvec; c++) w[c] = _mm512_loadu_ps(vj + 16 * c);
#pragma GCC unroll 4
        for (int i = 0; i < nt; i++) {
            __m512 b = _mm512_set1_ps(p[i * AG_KB + j]);
#pragma GCC unroll 4
            for (int c = 0; c < nvec; c++) acc[i][c] = _mm512_fmadd_ps(b, w[c], acc[i][c]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < nt; i++)
#pragma GCC unroll 4
        for (int c = 0; c < nvec; c++) _mm512_store_ps(o + (int64_t)i * hd + dc + 16 * c, acc[i][c]);
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
    const __m512 vscale = _mm512_set1_ps(scale);
    for (int64_t j0 = 0; j0 < kmax; j0 += AG_KB) {
        int nb = (int)(kmax - j0 < AG_KB ? kmax - j0 : AG_KB);
        /* this block's values and the next block's keys are wanted soon: in decode the cache
         * comes from DRAM, as rows of hd floats ld apart, which the hardware prefetcher misses */
        for (int j = 0; j < nb; j++)
            for (int d = 0; d < hd; d += 16) _mm_prefetch((const char *)(v + (j0 + j) * ld + d), _MM_HINT_T0);
        for (int64_t j = j0 + AG_KB; j < j0 + 2 * AG_KB && j < kmax; j++)
            for (int d = 0; d < hd; d += 16) _mm_prefetch((const char *)(k + j * ld + d), _MM_HINT_T0);
        /* kt[d][j] = k[j0 + j][d], zero for keys past the block; row by row, so each key row is
         * read whole */
        for (int jj = 0; jj < AG_KB; jj += 16)
            for (int d0 = 0; d0 < hd; d0 += 16) {
                __m512 r[16];
                for (int i = 0; i < 16; i++)
                    r[i] = jj + i < nb ? _mm512_loadu_ps(k + (j0 + jj + i) * ld + d0) : _mm512_setzero_ps();
                tr16(r);
                for (int e = 0; e < 16; e++) _mm512_store_ps(kt + (int64_t)(d0 + e) * AG_KB + jj, r[e]);
            }
        for (int q0 = 0; q0 < nq; q0 += AG_Q) {
            int nt = nq - q0 < AG_Q ? nq - q0 : AG_Q;
            int nbt = 0; /* keys of this block any query of the tile sees */
            for (int i = 0; i < nt; i++) {
                int64_t nk = n_keys[q0 + i] - j0;
                if (nk > nbt) nbt = nk > nb ? nb : (int)nk;
            }
            if (nbt <= 0) continue;
            switch (nt) {
            case 4: ag_scores(4, q + q0, kt, hd, p); break;
            case 3: ag_scores(3, q + q0, kt, hd, p); break;
            case 2: ag_scores(2, q + q0, kt, hd, p); break;
            default: ag_scores(1, q + q0, kt, hd, p); break;
            }
            /* online softmax, per query: keys past its own count get probability 0 */
            for (int i = 0; i < nt; i++) {
                int64_t nk = n_keys[q0 + i] - j0;
                float *pi = p + i * AG_KB;
                if (nk <= 0) {
                    memset(pi, 0, AG_KB * sizeof(float));
                    continue;
                }
                if (nk > AG_KB) nk = AG_KB;
                __mmask16 m[4];
                __m512 s[4], bm = _mm512_set1_ps(-INFINITY);
                for (int c = 0; c < 4; c++) {
                    int64_t left = nk - 16 * c;
                    m[c] = left >= 16 ? 0xffff : left > 0 ? tail_mask(left) : 0;
                    s[c] = _mm512_mul_ps(_mm512_load_ps(pi + 16 * c), vscale);
                    bm = _mm512_mask_max_ps(bm, m[c], bm, s[c]);
                }
                float bmax = _mm512_reduce_max_ps(bm), mnew = bmax > mx[q0 + i] ? bmax : mx[q0 + i];
                __m512 vm = _mm512_set1_ps(mnew), sum = _mm512_setzero_ps();
                for (int c = 0; c < 4; c++) {
                    __m512 e = _mm512_maskz_mov_ps(m[c], vexp(_mm512_sub_ps(s[c], vm)));
                    _mm512_store_ps(pi + 16 * c, e);
                    sum = _mm512_add_ps(sum, e);
                }
                if (mnew > mx[q0 + i]) {
                    float cf = expf(mx[q0 + i] - mnew); /* 0 on the first block */
                    float *oi = o + (int64_t)(q0 + i) * hd;
                    for (int d = 0; d < hd; d += 16)
                        _mm512_store_ps(oi + d, _mm512_mul_ps(_mm512_load_ps(oi + d), _mm512_set1_ps(cf)));
                    ls[q0 + i] *= cf;
                    mx[q0 + i] = mnew;
                }
                ls[q0 + i] += _mm512_reduce_add_ps(sum);
            }
            const float *vb = v + j0 * ld;
            float *ot = o + (int64_t)q0 * hd;
            for (int dc = 0; dc < hd; dc += 64) {
                int nvec = hd - dc >= 64 ? 4 : (hd - dc) / 16;
                /* both tile sizes as constants, so the accumulators stay in registers */
#define AG_PV(NT)                                                                                  \
    switch (nvec) {                                                                                \
    case 4: ag_pv(NT, p, vb, ld, nbt, ot, hd, dc, 4); break;                                       \
    case 3: ag_pv(NT, p, vb, ld, nbt, ot, hd, dc, 3); break;                                       \
    case 2: ag_pv(NT, p, vb, ld, nbt, ot, hd, dc, 2); break;                                       \
    default: ag_pv(NT, p, vb, ld, nbt, ot, hd, dc, 1); break;                                      \
    }
                switch (nt) {
                case 4: AG_PV(4) break;
                case 3: AG_PV(3) break;
                case 2: AG_PV(2) break;
                default: AG_PV(1) break;
                }
#undef AG_PV
            }
        }
    }
    for (int i = 0; i < nq; i++) {
        const __m512 inv = _mm512_set1_ps(1.0f / ls[i]);
        for (int d = 0; d < hd; d += 16)
            _mm512_storeu_ps(out[i] + d, _mm512_mul_ps(_mm512_load_ps(o + (int64_t)i * hd + d), inv));
    }
}

/* f32 panel (the bf16 panel uses half of it), then x as bf16 pairs, one dword each */
static size_t v_gemm_scratch(int64_t M, int64_t K) {
    (void)K;
    return (size_t)CPU_GEMM_MAX_COLS * G_KC + (size_t)M * (G_KC / 2) + 16;
}

static void v_gemm(float *y, int64_t ldy, const float *x, const void *w, loom_dtype wt, int64_t M,
                   int64_t K, int64_t n0, int64_t n1, const float *bias, float *scratch) {
    gemm_f32(y, ldy, x, w, wt, M, K, n0, n1, bias, scratch);
}

/* with AVX512_BF16: bf16 weights go through vdpbf16ps */
static void v_gemm_dp(float *y, int64_t ldy, const float *x, const void *w, loom_dtype wt, int64_t M,
                      int64_t K, int64_t n0, int64_t n1, const float *bias, float *scratch) {
    if (wt == LOOM_BF16)
        gemm_bf16(y, ldy, x, w, M, K, n0, n1, bias, scratch);
    else
        gemm_f32(y, ldy, x, w, wt, M, K, n0, n1, bias, scratch);
}

void cpu_kernels_avx512(cpu_kernels *k, bool bf16) {
    k->name = bf16 ? "avx512bf16" : "avx512";
    k->gemv = v_gemv;
    k->gemv_rows = bf16 ? NULL : v_gemv_rows; /* the bf16 flavour's point is vdpbf16ps: keep its gemm */
    k->gemm = bf16 ? v_gemm_dp : v_gemm;
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
    k->gemm_bf16_rounds_x = bf16;
}
