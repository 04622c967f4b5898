/* Prefill for the later block types (Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q5_K, IQ4_XS) with
 * AVX512_VNNI: the panel GEMM of Q8_0 / Q4_0 (quant_gemm_avx512.c, q4_gemm) with a per-type unpack.
 *
 * Per 32 weight rows, every 32-element block of the rows is unpacked once (ql_block: signed codes
 * c and an affine map per 16, value = A * c + B) into a panel where zmm lane r is weight row r:
 * unsigned codes u = c + off (off: Q5_0 16, Q3_K 4, IQ4_NL / IQ4_XS 128, else 0; 0..255), 8 zmm of
 * 4 codes per lane per 16 rows, and A, B per 16 rows as floats. That panel serves all M activation
 * rows (loom_q8x blocks): per (block, 16 weight rows, activation row) 8 vpdpbusd against broadcast
 * dwords of the activation codes, started from -off * (sum of those codes), then per scale group
 * one conversion, multiply and FMA, and for the types with a minimum (Q4_1, Q5_1, Q5_K, Q2_K) one
 * FMA of B times d * (sum of the codes). Q2_K / Q3_K have a scale per 16: two groups of 4
 * vpdpbusd. Register tile: 32 weight rows x 4 activation rows; outputs stored 16 lanes at a time. */
#include "backends/cpu/cpu_quant.h"
#include "backends/cpu/quant_later_unpack.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    __m512i q[2][8]; /* [16-row half][group g]: lane r = codes 4g..4g+3 of row 16 h + r */
    __m512 a[2][2];  /* [half][16-element half of the block]: the rows' A */
    __m512 b[2][2];  /* the rows' B (zero for types without a minimum) */
} ql_panel;

static int ql_off(loom_dtype t) {
    return t == LOOM_Q5_0 ? 16 : t == LOOM_Q3_K ? 4 : t == LOOM_IQ4_NL || t == LOOM_IQ4_XS ? 128 : 0;
}

#define QLG_JT 4

/* y[j][16 h + r] for x rows j < nx, h < nh (valid rows: nw). PER16: a scale per 16 elements (two
 * groups of 4 vpdpbusd); MIN: a B term; OFF: the code offset. */
QL_INLINE void qlg_tile(int nh, int nx, bool per16, bool hasmin, int off, const ql_panel *pn, int64_t nb,
                        const loom_q8x *const *x, float *y, int64_t ldy, const float *bias, int nw) {
    __m512 acc[2][QLG_JT];
    QL_UNROLL for (int h = 0; h < 2; h++)
        QL_UNROLL for (int j = 0; j < QLG_JT; j++) acc[h][j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const ql_panel *pb = pn + b;
        QL_UNROLL for (int e = 0; e < 2; e++) {
            if (e && !per16) break;
            __m512i ia[2][QLG_JT];
            QL_UNROLL for (int j = 0; j < QLG_JT; j++) {
                const loom_q8x *xb = x[j] + b;
                int s = per16 ? xb->s[e] : xb->s[0] + xb->s[1];
                ia[0][j] = ia[1][j] = _mm512_set1_epi32(-off * s);
            }
            QL_UNROLL for (int g = 0; g < 8; g++) {
                if (per16 && g >= 4) break;
                int gg = per16 ? 4 * e + g : g;
                __m512i w0 = _mm512_load_si512(&pb->q[0][gg]), w1 = w0;
                if (nh > 1) w1 = _mm512_load_si512(&pb->q[1][gg]);
                QL_UNROLL for (int j = 0; j < QLG_JT; j++) {
                    if (j >= nx) break;
                    int32_t v;
                    memcpy(&v, x[j][b].qs + 4 * gg, 4);
                    __m512i xv = _mm512_set1_epi32(v);
                    ia[0][j] = _mm512_dpbusd_epi32(ia[0][j], w0, xv);
                    if (nh > 1) ia[1][j] = _mm512_dpbusd_epi32(ia[1][j], w1, xv);
                }
            }
            QL_UNROLL for (int j = 0; j < QLG_JT; j++) {
                if (j >= nx) break;
                const loom_q8x *xb = x[j] + b;
                __m512 dx = _mm512_set1_ps(xb->d);
                __m512 ds = hasmin ? _mm512_set1_ps(xb->d * (float)(per16 ? xb->s[e] : xb->s[0] + xb->s[1]))
                                   : _mm512_setzero_ps();
                QL_UNROLL for (int h = 0; h < 2; h++) {
                    if (h >= nh) break;
                    acc[h][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[h][j]), _mm512_mul_ps(pb->a[h][e], dx), acc[h][j]);
                    if (hasmin) acc[h][j] = _mm512_fmadd_ps(pb->b[h][e], ds, acc[h][j]);
                }
            }
        }
    }
    QL_UNROLL for (int h = 0; h < 2; h++) {
        if (h >= nh) break;
        int rem = nw - 16 * h;
        __mmask16 mk = rem >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) - 1);
        __m512 bv = bias ? _mm512_maskz_loadu_ps(mk, bias + 16 * h) : _mm512_setzero_ps();
        QL_UNROLL for (int j = 0; j < QLG_JT; j++) {
            if (j >= nx) break;
            _mm512_mask_storeu_ps(y + j * ldy + 16 * h, mk, _mm512_add_ps(acc[h][j], bv));
        }
    }
}

/* Blocks of weight rows [n, n + nw) (nw <= 32) into the panel. */
QL_INLINE void qlg_pack(loom_dtype t, const char *w, size_t rb, int64_t n, int nw, int64_t nb, ql_panel *pn) {
    const int off = ql_off(t);
    const __m512i gi = _mm512_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120);
    _Alignas(64) uint8_t u[16][32];
    _Alignas(64) float A[2][16], B[2][16];
    for (int64_t b = 0; b < nb; b++) {
        for (int h = 0; h < 2; h++) {
            int rows = nw - 16 * h;
            if (rows > 16) rows = 16;
            if (rows <= 0) { /* (rows past nw: zeros, never stored) */
                for (int g = 0; g < 8; g++) pn[b].q[h][g] = _mm512_setzero_si512();
                pn[b].a[h][0] = pn[b].a[h][1] = pn[b].b[h][0] = pn[b].b[h][1] = _mm512_setzero_ps();
                continue;
            }
            for (int r = 0; r < 16; r++) {
                if (r >= rows) {
                    memset(u[r], 0, 32);
                    A[0][r] = A[1][r] = B[0][r] = B[1][r] = 0;
                    continue;
                }
                float a2[2], b2[2];
                __m256i c = ql_block(t, w + (size_t)(n + 16 * h + r) * rb, b, a2, b2);
                _mm256_store_si256((__m256i *)u[r], _mm256_add_epi8(c, _mm256_set1_epi8((char)off)));
                A[0][r] = a2[0], A[1][r] = a2[1], B[0][r] = b2[0], B[1][r] = b2[1];
            }
            for (int g = 0; g < 8; g++) /* dword g of the 16 rows (L1 gathers) */
                _mm512_store_si512(&pn[b].q[h][g], _mm512_i32gather_epi32(gi, (const int *)u + g, 4));
            for (int e = 0; e < 2; e++) pn[b].a[h][e] = _mm512_load_ps(A[e]), pn[b].b[h][e] = _mm512_load_ps(B[e]);
        }
    }
}

QL_INLINE void qlg_run(loom_dtype t, bool per16, bool hasmin, const char *w, size_t rb, const loom_q8x *xq, int64_t M,
                       int64_t K, int64_t n0, int64_t n1, float *y, int64_t ldy, const float *bias, ql_panel *pn) {
    const int64_t nb = K / 32;
    const int off = ql_off(t);
    for (int64_t n = n0; n < n1; n += 32) {
        int nw = (int)(n1 - n < 32 ? n1 - n : 32), nh = nw > 16 ? 2 : 1;
        qlg_pack(t, w, rb, n, nw, nb, pn);
        const float *bn = bias ? bias + n : NULL;
        for (int64_t m0 = 0; m0 < M; m0 += QLG_JT) {
            int nx = (int)(M - m0 < QLG_JT ? M - m0 : QLG_JT);
            const loom_q8x *x[QLG_JT];
            for (int j = 0; j < QLG_JT; j++) x[j] = xq + (m0 + (j < nx ? j : 0)) * nb;
            float *yr = y + m0 * ldy + n;
            if (nh == 2 && nx == QLG_JT) qlg_tile(2, QLG_JT, per16, hasmin, off, pn, nb, x, yr, ldy, bn, nw);
            else if (nh == 2) qlg_tile(2, nx, per16, hasmin, off, pn, nb, x, yr, ldy, bn, nw);
            else qlg_tile(1, nx, per16, hasmin, off, pn, nb, x, yr, ldy, bn, nw);
        }
    }
}

int cpu_qgemm_later_avx512(loom_dtype t, const void *w, size_t row_bytes, const loom_q8x *xq, int64_t M, int64_t K,
                           int64_t n0, int64_t n1, float *y, int64_t ldy, const float *bias) {
    ql_panel *pn = aligned_alloc(64, sizeof(ql_panel) * (size_t)(K / 32));
    if (!pn) return -1;
    const char *wr = w;
    switch (t) {
    case LOOM_Q4_1: qlg_run(LOOM_Q4_1, false, true, wr, row_bytes, xq, M, K, n0, n1, y, ldy, bias, pn); break;
    case LOOM_Q5_0: qlg_run(LOOM_Q5_0, false, false, wr, row_bytes, xq, M, K, n0, n1, y, ldy, bias, pn); break;
    case LOOM_Q5_1: qlg_run(LOOM_Q5_1, false, true, wr, row_bytes, xq, M, K, n0, n1, y, ldy, bias, pn); break;
    case LOOM_IQ4_NL: qlg_run(LOOM_IQ4_NL, false, false, wr, row_bytes, xq, M, K, n0, n1, y, ldy, bias, pn); break;
    case LOOM_Q2_K: qlg_run(LOOM_Q2_K, true, true, wr, row_bytes, xq, M, K, n0, n1, y, ldy, bias, pn); break;
    case LOOM_Q3_K: qlg_run(LOOM_Q3_K, true, false, wr, row_bytes, xq, M, K, n0, n1, y, ldy, bias, pn); break;
    case LOOM_Q4_K: qlg_run(LOOM_Q4_K, false, true, wr, row_bytes, xq, M, K, n0, n1, y, ldy, bias, pn); break;
    case LOOM_Q5_K: qlg_run(LOOM_Q5_K, false, true, wr, row_bytes, xq, M, K, n0, n1, y, ldy, bias, pn); break;
    case LOOM_IQ4_XS: qlg_run(LOOM_IQ4_XS, false, false, wr, row_bytes, xq, M, K, n0, n1, y, ldy, bias, pn); break;
    default: free(pn); return -1;
    }
    free(pn);
    return 0;
}
