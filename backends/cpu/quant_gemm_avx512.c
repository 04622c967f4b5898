/* Tiled int8 GEMM for Q8_0 / Q4_0 weights with AVX512_VNNI (see quant.h, cpu_qgemm_*).
 *
 * Two 32-element blocks fill a zmm: 64 byte pairs per vpdpbusd. The weight codes are the unsigned
 * operand (Q4_0: its nibbles 0..15; Q8_0: q + 128, i.e. q xor 0x80) and the activation codes the
 * signed one, so the offset (8 or 128) times the sum of the activation codes is subtracted; that
 * correction depends on the activation only and is precomputed (cpu_qgemm_prep: per lane, or for
 * Q8_0 / Q4_0 as block totals in lanes 0 and 8), and it is the accumulator vpdpbusd starts from.
 * (Q8_0 / Q4_0 prefill goes through the panel GEMM, q4_gemm, further down.) Per (weight row, activation row, block pair) the work is
 * then vpdpbusd, a conversion, a scale multiply and an FMA; a register tile of 4 weight rows x 4
 * activation rows loads each weight pair once for 4 activation rows and each activation pair once
 * for 4 weight rows (16 zmm accumulators).
 */
#include "backends/cpu/cpu_quant.h"
#include "backends/cpu/quant_later_unpack.h"

#include <immintrin.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* One block pair of a prepared activation row. */
typedef struct {
    int8_t q[64];  /* codes of blocks 2p, 2p + 1 */
    float d[16];   /* lanes 0-7: d of block 2p, lanes 8-15: d of block 2p + 1 */
    union {
        int32_t c[16]; /* Q6_K: -offset * (sum of the 4 codes of lane i); Q8_0, Q4_0: -offset * (sum of
                        * the 32 codes of block 2p) in lane 0, of block 2p + 1 in lane 8,
                        * zeros elsewhere (only the 8-lane sums matter to the pair tile) */
        float ls[16];  /* Q4_K: d * (sum of the 4 codes of lane i), for the minimums */
    };
} qg_pair;

bool cpu_qgemm_ok(loom_dtype t, int64_t K) {
    if (t == LOOM_Q4_K || t == LOOM_Q6_K) return K > 0 && K % 256 == 0;
    return (t == LOOM_Q8_0 || t == LOOM_Q4_0) && K > 0 && K % 64 == 0;
}

size_t cpu_qgemm_xbytes(int64_t K) { return (size_t)(K / 64) * sizeof(qg_pair); }

void cpu_qgemm_prep(loom_dtype t, const loom_q8x *xq, int64_t K, void *dst) {
    qg_pair *o = dst;
    const __m512i off = _mm512_set1_epi8(t == LOOM_Q8_0 ? (char)128 : t == LOOM_Q6_K ? 32 : t == LOOM_Q4_K ? 1 : 8);
    for (int64_t p = 0; p < K / 64; p++) {
        const loom_q8x *a = xq + 2 * p, *b = a + 1;
        __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a->qs)),
                                       _mm256_loadu_si256((const __m256i *)b->qs), 1);
        _mm512_storeu_si512(o[p].q, q);
        _mm512_storeu_ps(o[p].d, _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(a->d)),
                                                    _mm256_set1_ps(b->d), 1));
        /* off * codes summed per lane, negated (Q4_K: the plain sums times d) */
        __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), off, q);
        if (t == LOOM_Q4_K)
            _mm512_storeu_ps(o[p].ls, _mm512_mul_ps(_mm512_cvtepi32_ps(s), _mm512_loadu_ps(o[p].d)));
        else if (t == LOOM_Q4_0 || t == LOOM_Q8_0) { /* the block totals in lanes 0 and 8, for q4_gemm (the pair tile and
                                    * the GEMV sum the 8 lanes of a block under one scale: the same sums) */
            int s0 = _mm512_mask_reduce_add_epi32(0x00FF, s), s1 = _mm512_mask_reduce_add_epi32(0xFF00, s);
            _mm512_storeu_si512(o[p].c, _mm512_maskz_set1_epi32(0x0001, -s0));
            _mm512_mask_storeu_epi32(o[p].c, 0x0100, _mm512_set1_epi32(-s1));
        } else
            _mm512_storeu_si512(o[p].c, _mm512_sub_epi32(_mm512_setzero_si512(), s));
    }
}

/* The unsigned codes of blocks 2p, 2p + 1 of a weight row, and their scales (lanes as qg_pair.d). */
static inline __attribute__((always_inline)) __m512i ld_w(loom_dtype t, const char *row, int64_t p, __m512 *dw,
                                                          __m512 *mw) {
    if (t == LOOM_Q4_K) { /* pair pp of super-block i: sub-blocks 2pp (low nibbles), 2pp + 1 (high) */
        const loom_block_q4_k *b = (const loom_block_q4_k *)row + p / 4;
        int pp = (int)(p % 4), j = 2 * pp;
        const uint8_t *q = b->scales;
        int sc0, m0, sc1, m1;
        if (j < 4) {
            sc0 = q[j] & 63, m0 = q[j + 4] & 63, sc1 = q[j + 1] & 63, m1 = q[j + 5] & 63;
        } else {
            sc0 = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), m0 = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
            sc1 = (q[j + 5] & 0xF) | ((q[j - 3] >> 6) << 4), m1 = (q[j + 5] >> 4) | ((q[j + 1] >> 6) << 4);
        }
        float d = _cvtsh_ss(b->d), dmin = _cvtsh_ss(b->dmin);
        *dw = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(d * (float)sc0)), _mm256_set1_ps(d * (float)sc1), 1);
        *mw = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(dmin * (float)m0)), _mm256_set1_ps(dmin * (float)m1), 1);
        __m256i raw = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * pp)), m4 = _mm256_set1_epi8(0x0F);
        return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(raw, m4)),
                                  _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), 1);
    }
    if (t == LOOM_Q6_K) { /* blocks 2pp, 2pp + 1 of super-block i: half h = pp / 2 */
        const loom_block_q6_k *b = (const loom_block_q6_k *)row + p / 4;
        int pp = (int)(p % 4), h = pp / 2;
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
        __m512i L = _mm512_loadu_si512(ql); /* l0 | l1 */
        __m512i H = _mm512_inserti64x4(_mm512_castsi256_si512(hb), _mm256_srli_epi16(hb, 2), 1);
        if (pp & 1) L = _mm512_srli_epi16(L, 4), H = _mm512_srli_epi16(H, 4);
        __m512i v = _mm512_or_si512(_mm512_and_si512(L, _mm512_set1_epi8(0x0F)),
                                    _mm512_slli_epi16(_mm512_and_si512(H, _mm512_set1_epi8(3)), 4));
        /* scales of the 4 groups of 16: sc[4 pp .. 4 pp + 3], each over 4 lanes */
        int32_t s4;
        memcpy(&s4, b->scales + 4 * pp, 4);
        __m128i sb = _mm_shuffle_epi8(_mm_cvtsi32_si128(s4), _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3));
        *dw = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sb)), _mm512_set1_ps(_cvtsh_ss(b->d)));
        return v;
    }
    if (t == LOOM_Q8_0) {
        const loom_block_q8_0 *b = (const loom_block_q8_0 *)row + 2 * p;
        __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b[0].qs)),
                                       _mm256_loadu_si256((const __m256i *)b[1].qs), 1);
        *dw = _mm512_cvtph_ps(_mm256_set_m128i(_mm_set1_epi16((short)b[1].d), _mm_set1_epi16((short)b[0].d)));
        return _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
    }
    const loom_block_q4_0 *b = (const loom_block_q4_0 *)row + 2 * p;
    __m256i r = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)b[1].qs), _mm_loadu_si128((const __m128i *)b[0].qs));
    /* 128-bit lanes: raw0, raw0, raw1, raw1 -> low nibbles (elements 0-15), high (16-31), ... */
    __m512i full = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), _mm512_castsi256_si512(r));
    __m512i v = _mm512_mask_blend_epi64(0xCC, full, _mm512_srli_epi16(full, 4));
    *dw = _mm512_cvtph_ps(_mm256_set_m128i(_mm_set1_epi16((short)b[1].d), _mm_set1_epi16((short)b[0].d)));
    return _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
}

/* y[j][i] = W row i . x row j for i < nw, j < nx (both <= 4). The loops are unrolled so that the
 * accumulators live in registers (at -O2 GCC would not unroll them by itself). */
#define QG_UNROLL _Pragma("GCC unroll 4")
static inline __attribute__((always_inline)) void tile(loom_dtype t, int nw, int nx, const char *w, size_t rb,
                                                       const qg_pair *const *x, int64_t np, float *y,
                                                       int64_t ldy, const float *bias) {
    __m512 acc[4][4];
    QG_UNROLL for (int i = 0; i < 4; i++)
        QG_UNROLL for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t p = 0; p < np; p++) {
        __m512i wv[4];
        __m512 dw[4], mw[4];
        QG_UNROLL for (int i = 0; i < 4; i++) {
            wv[i] = _mm512_setzero_si512(), dw[i] = mw[i] = _mm512_setzero_ps(); /* (rows past nw: unused) */
            if (i < nw) wv[i] = ld_w(t, w + (size_t)i * rb, p, &dw[i], &mw[i]);
        }
        QG_UNROLL for (int j = 0; j < 4; j++) {
            if (j >= nx) break;
            const qg_pair *xp = x[j] + p;
            __m512i c = _mm512_loadu_si512(xp->c), q = _mm512_loadu_si512(xp->q);
            __m512 dx = _mm512_loadu_ps(xp->d);
            QG_UNROLL for (int i = 0; i < 4; i++) {
                if (i >= nw) break;
                if (t == LOOM_Q4_K) { /* d sc q - dmin m: the minimums against the lane sums */
                    __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv[i], q);
                    acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[i], dx), acc[i][j]);
                    acc[i][j] = _mm512_fnmadd_ps(_mm512_loadu_ps(xp->ls), mw[i], acc[i][j]);
                } else {
                    __m512i s = _mm512_dpbusd_epi32(c, wv[i], q);
                    acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[i], dx), acc[i][j]);
                }
            }
        }
    }
    QG_UNROLL for (int j = 0; j < 4; j++)
        QG_UNROLL for (int i = 0; i < 4; i++)
            if (i < nw && j < nx) y[j * ldy + i] = _mm512_reduce_add_ps(acc[i][j]) + (bias ? bias[i] : 0.0f);
}

/* ---- Q4_0 prefill: weight panels, lanes = weight rows ----
 * The pair tile above spends, per (weight row, activation row, block pair), a vpdpbusd, a conversion,
 * a scale multiply and an FMA, plus the horizontal sums, and unpacks every weight pair again for
 * each group of 4 activation rows. Here a panel of 32 weight rows is unpacked once per call (gathers:
 * block b, group g of 4 codes -> dword lane r of one zmm per 16 rows, nibbles 0..15) and reused for
 * all M activation rows: per (block, 16 weight rows, activation row) 8 vpdpbusd against broadcast
 * dwords of the activation codes, started from -8 * (sum of the block's activation codes), then one
 * conversion, multiply and FMA; the 16 lanes are 16 outputs, stored without horizontal sums. */
typedef struct {
    __m512i q[2][8]; /* [16-row half][group g]: lane r = codes 4g..4g+3 of row 16 h + r */
    __m512 d[2];     /* the rows' block scales */
} q4_panel;

#define Q4_JT 4
static inline __attribute__((always_inline)) void q4_tile(int nh, int nx, const q4_panel *pn, int64_t nb,
                                                          const qg_pair *const *x,
                                                          float *y, int64_t ldy, const float *bias, int nw) {
    __m512 acc[2][Q4_JT];
    QG_UNROLL for (int h = 0; h < 2; h++)
        QG_UNROLL for (int j = 0; j < Q4_JT; j++) acc[h][j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const q4_panel *pb = pn + b;
        __m512i ia[2][Q4_JT];
        const int8_t *xq[Q4_JT];
        QG_UNROLL for (int j = 0; j < Q4_JT; j++) { /* (x, cr hold Q4_JT valid rows, repeated past nx) */
            ia[0][j] = ia[1][j] = _mm512_set1_epi32(x[j][b >> 1].c[8 * (b & 1)]);
            xq[j] = x[j][b >> 1].q + 32 * (b & 1);
        }
        QG_UNROLL for (int g = 0; g < 8; g++) {
            __m512i w0 = _mm512_load_si512(&pb->q[0][g]), w1 = w0;
            if (nh > 1) w1 = _mm512_load_si512(&pb->q[1][g]);
            QG_UNROLL for (int j = 0; j < Q4_JT; j++) {
                if (j >= nx) break;
                int32_t v;
                memcpy(&v, xq[j] + 4 * g, 4);
                __m512i xb = _mm512_set1_epi32(v);
                ia[0][j] = _mm512_dpbusd_epi32(ia[0][j], w0, xb);
                if (nh > 1) ia[1][j] = _mm512_dpbusd_epi32(ia[1][j], w1, xb);
            }
        }
        QG_UNROLL for (int j = 0; j < Q4_JT; j++) {
            if (j >= nx) break;
            __m512 dx = _mm512_set1_ps(x[j][b >> 1].d[8 * (b & 1)]);
            acc[0][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[0][j]), _mm512_mul_ps(pb->d[0], dx), acc[0][j]);
            if (nh > 1)
                acc[1][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[1][j]), _mm512_mul_ps(pb->d[1], dx), acc[1][j]);
        }
    }
    QG_UNROLL for (int h = 0; h < 2; h++) {
        if (h >= nh) break;
        int rem = nw - 16 * h;
        __mmask16 mk = rem >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) - 1);
        __m512 bv = bias ? _mm512_maskz_loadu_ps(mk, bias + 16 * h) : _mm512_setzero_ps();
        QG_UNROLL for (int j = 0; j < Q4_JT; j++) {
            if (j >= nx) break;
            _mm512_mask_storeu_ps(y + j * ldy + 16 * h, mk, _mm512_add_ps(acc[h][j], bv));
        }
    }
}

static void q4_gemm(loom_dtype t, const char *w, size_t rb, const qg_pair *xr, int64_t M, int64_t K, int64_t n0, int64_t n1,
                    float *y, int64_t ldy, const float *bias) {
    const int64_t np = K / 64, nb = K / 32;
    q4_panel *pn = aligned_alloc(64, sizeof(q4_panel) * (size_t)nb);
    if (!pn) { /* (out of memory) the pair tile */
        for (int64_t m0 = 0; m0 < M; m0 += 4) {
            int nx = (int)(M - m0 < 4 ? M - m0 : 4);
            const qg_pair *x[4];
            for (int j = 0; j < 4; j++) x[j] = xr + (m0 + (j < nx ? j : 0)) * np;
            for (int64_t n = n0; n < n1; n += 4) {
                int nw = (int)(n1 - n < 4 ? n1 - n : 4);
                if (t == LOOM_Q8_0) tile(LOOM_Q8_0, nw, nx, w + n * rb, rb, x, np, y + m0 * ldy + n, ldy, bias ? bias + n : NULL);
                else tile(LOOM_Q4_0, nw, nx, w + n * rb, rb, x, np, y + m0 * ldy + n, ldy, bias ? bias + n : NULL);
            }
        }
        return;
    }
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i vrb = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)rb)), m4 = _mm512_set1_epi32(0x0F0F0F0F);
    /* dword 0 of rows 0..7 of two 4-row registers (row j: dword 4 (j % 4) of register j / 4) */
    const __m512i tix = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
    for (int64_t n = n0; n < n1; n += 32) {
        int nw = (int)(n1 - n < 32 ? n1 - n : 32), nh = nw > 16 ? 2 : 1;
        for (int h = 0; h < 2; h++) {
            int rem = nw - 16 * h;
            __mmask16 mk = rem <= 0 ? 0 : rem >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) - 1);
            const char *base = w + (n + 16 * h) * (int64_t)rb;
            for (int64_t b = 0; b < nb; b++) {
                const char *bp = base + b * (int64_t)(t == LOOM_Q8_0 ? sizeof(loom_block_q8_0) : sizeof(loom_block_q4_0));
                __m512i z = _mm512_setzero_si512();
                __m512i dv = _mm512_mask_i32gather_epi32(z, mk, vrb, bp, 1);
                _mm512_store_ps(&pn[b].d[h], _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dv)));
                if (mk == 0xFFFF) { /* 16 rows: loads and a dword transpose (gathers were ~10% of Q4_0) */
                    for (int k = 0; k < (t == LOOM_Q8_0 ? 2 : 1); k++) { /* Q8_0: codes 0-15, 16-31 */
                        __m512i R[4];
                        for (int q = 0; q < 4; q++) {
                            const char *r0 = bp + 2 + 16 * k + (int64_t)(4 * q) * (int64_t)rb;
                            __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)r0));
                            v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(r0 + rb)), 1);
                            v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(r0 + 2 * rb)), 2);
                            R[q] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(r0 + 3 * rb)), 3);
                        }
                        for (int g = 0; g < 4; g++) { /* lane r < 8: dword g of row r; from R0|R1 and R2|R3 */
                            __m512i idx = _mm512_add_epi32(tix, _mm512_set1_epi32(g));
                            __m512i v = _mm512_shuffle_i64x2(_mm512_permutex2var_epi32(R[0], idx, R[1]),
                                                             _mm512_permutex2var_epi32(R[2], idx, R[3]), 0x44);
                            if (t == LOOM_Q8_0) {
                                _mm512_store_si512(&pn[b].q[h][4 * k + g], _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80)));
                                continue;
                            }
                            _mm512_store_si512(&pn[b].q[h][g], _mm512_and_si512(v, m4));
                            _mm512_store_si512(&pn[b].q[h][g + 4], _mm512_and_si512(_mm512_srli_epi32(v, 4), m4));
                        }
                    }
                    continue;
                }
                if (t == LOOM_Q8_0) { /* codes + 128 (rows past nw: zeros, unused) */
                    for (int g = 0; g < 8; g++)
                        _mm512_store_si512(&pn[b].q[h][g], _mm512_xor_si512(_mm512_mask_i32gather_epi32(z, mk, vrb, bp + 2 + 4 * g, 1),
                                                                            _mm512_set1_epi8((char)0x80)));
                    continue;
                }
                for (int g = 0; g < 4; g++) {
                    __m512i v = _mm512_mask_i32gather_epi32(z, mk, vrb, bp + 2 + 4 * g, 1);
                    _mm512_store_si512(&pn[b].q[h][g], _mm512_and_si512(v, m4));
                    _mm512_store_si512(&pn[b].q[h][g + 4], _mm512_and_si512(_mm512_srli_epi32(v, 4), m4));
                }
            }
        }
        const float *bn = bias ? bias + n : NULL;
        for (int64_t m0 = 0; m0 < M; m0 += Q4_JT) {
            int nx = (int)(M - m0 < Q4_JT ? M - m0 : Q4_JT);
            const qg_pair *x[Q4_JT];
            for (int j = 0; j < Q4_JT; j++) x[j] = xr + (m0 + (j < nx ? j : 0)) * np;
            float *yr = y + m0 * ldy + n;
            if (nh == 2 && nx == Q4_JT) q4_tile(2, Q4_JT, pn, nb, x, yr, ldy, bn, nw);
            else if (nh == 2) q4_tile(2, nx, pn, nb, x, yr, ldy, bn, nw);
            else q4_tile(1, nx, pn, nb, x, yr, ldy, bn, nw);
        }
    }
    free(pn);
}

void cpu_qgemm_avx512(loom_dtype t, const void *w, size_t row_bytes, const void *xp, int64_t M, int64_t K,
                      int64_t n0, int64_t n1, float *y, int64_t ldy, const float *bias) {
    const int64_t np = K / 64;
    const qg_pair *xr = xp;
    static _Atomic int q4p_env = INT_MIN; /* LOOM_CPU_Q4PANEL=0: Q4_0 / Q8_0 through the pair tile (for comparisons) */
    bool q4p = cpu_env_int_once(&q4p_env, "LOOM_CPU_Q4PANEL", 1) != 0;
    if ((t == LOOM_Q4_0 || t == LOOM_Q8_0) && q4p) {
        q4_gemm(t, w, row_bytes, xr, M, K, n0, n1, y, ldy, bias);
        return;
    }
    for (int64_t m0 = 0; m0 < M; m0 += 4) {
        int nx = (int)(M - m0 < 4 ? M - m0 : 4);
        const qg_pair *x[4];
        for (int j = 0; j < 4; j++) x[j] = xr + (m0 + (j < nx ? j : 0)) * np;
        float *yr = y + m0 * ldy;
        int64_t n = n0;
        const float *b = bias;
#define QG_ROWS(T)                                                                                           \
    do {                                                                                                     \
        if (nx == 4)                                                                                         \
            for (; n + 4 <= n1; n += 4)                                                                      \
                tile(T, 4, 4, (const char *)w + n * row_bytes, row_bytes, x, np, yr + n, ldy, b ? b + n : NULL); \
        for (; n < n1; n += 4) {                                                                             \
            int nw = (int)(n1 - n < 4 ? n1 - n : 4);                                                         \
            tile(T, nw, nx, (const char *)w + n * row_bytes, row_bytes, x, np, yr + n, ldy, b ? b + n : NULL);   \
        }                                                                                                    \
    } while (0)
        switch (t) {
        case LOOM_Q8_0: QG_ROWS(LOOM_Q8_0); break;
        case LOOM_Q4_0: QG_ROWS(LOOM_Q4_0); break;
        case LOOM_Q4_K: QG_ROWS(LOOM_Q4_K); break;
        default: QG_ROWS(LOOM_Q6_K); break;
        }
#undef QG_ROWS
    }
}

/* ---- decode GEMV (M = 1) with AVX512_VBMI: Q8_0 / Q4_0 (below), Q4_K / Q6_K (further down) ---- *
 * The tile above with one activation row runs at ~12 GB/s per core (its weight unpacking goes
 * through 128/256-bit inserts and broadcasts of each scale). Here one block pair of a weight row
 * is one or two loads and byte permutes (vpermb / vpermt2b), its two f16 scales one vpermw of the
 * same load and a vcvtph2ps; 4 weight rows share each activation pair load, one accumulator per
 * row, one horizontal sum per row at the end. */
static bool has_vbmi(void) {
    static _Atomic int v = -1; /* asked from the pool's threads: atomic, not a data race */
    int r = atomic_load_explicit(&v, memory_order_relaxed);
    if (r < 0) {
        __builtin_cpu_init();
        r = __builtin_cpu_supports("avx512vbmi") != 0;
        atomic_store_explicit(&v, r, memory_order_relaxed);
    }
    return r;
}

/* LOOM_CPU_KGEMV=1: Q4_K / Q5_K / Q6_K decode through the 2026-12-06 kernels below (gv_rows_k45,
 * gv_rows_k6). Opt-in: written on a machine without AVX-512, so never yet run (test_quant_later_kgemv
 * runs it where the CPU has AVX512_VBMI). Default: the pair kernels gv_rows_q4k / gv_rows_q6k on
 * cpu_qgemm_prep's layout, and Q5_K through quant_later.h's 256-bit GEMV. */
bool cpu_qgemv_knew(void) {
    static _Atomic int env = INT_MIN;
    return cpu_env_int_once(&env, "LOOM_CPU_KGEMV", 0) != 0;
}

bool cpu_qgemv_ok(loom_dtype t, int64_t K) {
    if (t == LOOM_Q5_K) return cpu_qgemv_knew() && K > 0 && K % 256 == 0 && has_vbmi();
    if (t == LOOM_Q4_K || t == LOOM_Q6_K || t == LOOM_IQ4_XS) return K > 0 && K % 256 == 0 && has_vbmi();
    return (t == LOOM_Q8_0 || t == LOOM_Q4_0 || t == LOOM_IQ4_NL) && K > 0 && K % 64 == 0 && has_vbmi();
}

/* Q4_0 pair (36 bytes) -> the qs of block 0 twice, then the qs of block 1 twice (vpermb) */
static const uint8_t gv_q4_idx[64] = {2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17,
                                      2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17,
                                      20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
                                      20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35};

#define GV_TARGET __attribute__((target("avx512vbmi"), always_inline)) static inline

/* The 64 unsigned codes of the block pair at p (Q8_0: q + 128; Q4_0: nibbles), and their scales in
 * qg_pair.d's lane order. */
/* x quantised to loom_q8x blocks (as loom_q8x_quant: d = max|x| / 127, codes rint(x / d) in the
 * default rounding mode, so the same codes) and prepared (as cpu_qgemm_prep) in one pass: for
 * decode, where the scalar quantiser of one row of K = 4864 took longer than a thread's share of
 * the weights of a small matrix. */
static void gv_prep_k(loom_dtype t, const float *x, int64_t K, void *dst);

void cpu_qgemv_prep(loom_dtype t, const float *x, int64_t K, void *dst) {
    if (t == LOOM_Q4_K || t == LOOM_Q5_K || t == LOOM_Q6_K) {
        gv_prep_k(t, x, K, dst);
        return;
    }
    qg_pair *o = dst;
    const __m512i off = _mm512_set1_epi8(t == LOOM_Q8_0 || t == LOOM_IQ4_NL || t == LOOM_IQ4_XS ? (char)128 : 8);
    const __m512 sgn = _mm512_set1_ps(-0.0f);
    for (int64_t p = 0; p < K / 64; p++) {
        float d[2];
        for (int h = 0; h < 2; h++) {
            const float *xb = x + 64 * p + 32 * h;
            __m512 a = _mm512_loadu_ps(xb), b = _mm512_loadu_ps(xb + 16);
            float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sgn, a), _mm512_andnot_ps(sgn, b)));
            float dd = amax / 127, id = dd ? 1.0f / dd : 0.0f;
            __m512 vid = _mm512_set1_ps(id);
            _mm_storeu_si128((__m128i *)(o[p].q + 32 * h), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(a, vid))));
            _mm_storeu_si128((__m128i *)(o[p].q + 32 * h + 16),
                             _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(b, vid))));
            d[h] = dd;
        }
        _mm512_storeu_ps(o[p].d, _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(d[0])), _mm256_set1_ps(d[1]), 1));
        __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), off, _mm512_loadu_si512(o[p].q));
        if (t != LOOM_Q4_K && t != LOOM_Q6_K) { /* block totals in lanes 0 and 8, as cpu_qgemm_prep */
            int s0 = _mm512_mask_reduce_add_epi32(0x00FF, s), s1 = _mm512_mask_reduce_add_epi32(0xFF00, s);
            _mm512_storeu_si512(o[p].c, _mm512_maskz_set1_epi32(0x0001, -s0));
            _mm512_mask_storeu_epi32(o[p].c, 0x0100, _mm512_set1_epi32(-s1));
        } else
            _mm512_storeu_si512(o[p].c, _mm512_sub_epi32(_mm512_setzero_si512(), s));
    }
}

/* f16 scales at p + o0 (lanes 0-7) and p + o1 (lanes 8-15), as f32 bits times 2^-112, without
 * shuffles: dword broadcasts from memory (the f16 in the low half), shifted into place (sign,
 * exponent and mantissa land where f32 has them; the exponent bias differs by 112, put back by
 * multiplying the activation scales by 2^112). */
GV_TARGET __m512 gv_d(const char *p, int o0, int o1) {
    __m512i v = _mm512_mask_broadcastd_epi32(_mm512_broadcastd_epi32(_mm_loadu_si32(p + o0)), 0xFF00,
                                             _mm_loadu_si32(p + o1));
    v = _mm512_srai_epi32(_mm512_slli_epi32(v, 16), 3);
    return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0x8FFFFFFFu)));
}

/* IQ4_NL / IQ4_XS: 64 nibbles 0..15 to their table values + 128 (1..241), as unsigned codes: one
 * vpshufb from the 16-entry table in every 128-bit lane (the xor 0x80 adds 128 to each int8). The
 * offset 128 comes off through the activation block totals (cpu_qgemv_prep), as Q8_0's does. */
GV_TARGET __m512i gv_iq4(__m512i nib) {
    __m512i tb = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)loom_iq4nl_values));
    return _mm512_shuffle_epi8(_mm512_xor_si512(tb, _mm512_set1_epi8((char)0x80)), nib);
}

/* The 64 unsigned codes of the block pair at p (Q8_0: q + 128; Q4_0: nibbles; IQ4_NL: table values +
 * 128), and their scales in qg_pair.d's lane order (times 2^-112, see gv_d). */
GV_TARGET __m512i gv_w(loom_dtype t, const char *p, __m512i iq, __m512 *dw) {
    if (t == LOOM_Q8_0) {
        /* codes of block 0 (bytes 2-33) in the low half, block 1 (36-67) merged into the high half */
        __m512i a = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 2)));
        a = _mm512_mask_loadu_epi8(a, 0xFFFFFFFF00000000ull, p + 4);
        *dw = gv_d(p, 0, 34);
        return _mm512_xor_si512(a, _mm512_set1_epi8((char)0x80));
    }
    __m512i a = _mm512_maskz_loadu_epi8(0xFFFFFFFFFull, p); /* 36 bytes: never past the row */
    *dw = gv_d(p, 0, 18);
    __m512i q = _mm512_permutexvar_epi8(iq, a);
    q = _mm512_mask_srli_epi16(q, 0xFF00FF00u, q, 4); /* bytes 16-31, 48-63: the high nibbles */
    q = _mm512_and_si512(q, _mm512_set1_epi8(0x0F));
    return t == LOOM_IQ4_NL ? gv_iq4(q) : q;
}

/* Q8_0 / Q4_0: 8 rows share each x pair (8 accumulators; 8 rather than 4 rows: q8_0 matmuls of a
 * token 13.0-14.3 -> 11.3-11.9 ms in bench_kernels -t 2 -d, q4_0 the same) */
#define GV_NR 8
#define GV_UNROLL _Pragma("GCC unroll 8")
GV_TARGET void gv_rows(loom_dtype t, int nr, const char *w, size_t rb, const qg_pair *x, const float *dxs,
                       int64_t np, float *y, const float *bias, __m512i iq, size_t pf) {
    const size_t pb = t == LOOM_Q8_0 ? 68 : 36;
    __m512 acc[GV_NR];
    GV_UNROLL for (int i = 0; i < GV_NR; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t p = 0; p < np; p++) {
        const qg_pair *xp = x + p;
        __m512i c = _mm512_loadu_si512(xp->c), q = _mm512_loadu_si512(xp->q);
        __m512 dx = _mm512_loadu_ps(dxs + 16 * p);
        GV_UNROLL for (int i = 0; i < GV_NR; i++) {
            if (i >= nr) break;
            const char *wp = w + i * rb + (size_t)p * pb;
            if (pf) { /* a Q8_0 pair is 68 bytes: two lines, or a row's last line is never fetched ahead */
                _mm_prefetch(wp + pf, _MM_HINT_T0);
                if (t == LOOM_Q8_0) _mm_prefetch(wp + pf + 67, _MM_HINT_T0);
            }
            __m512 dw;
            __m512i wv = gv_w(t, wp, iq, &dw);
            __m512i s = _mm512_dpbusd_epi32(c, wv, q);
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, dx), acc[i]);
        }
    }
    GV_UNROLL for (int i = 0; i < GV_NR; i++)
        if (i < nr) y[i] = _mm512_reduce_add_ps(acc[i]) + (bias ? bias[i] : 0.0f);
}

/* Q4_K: per super-block and row, the 8 six-bit scales and minimums are unpacked once (scalar, as
 * loom_k4_scales8), the scales times d converted to 8 floats; each block pair then takes its
 * two scales with one vpermps. The minimums never enter the pair loop: dmin * m_j times the x
 * block's d * (sum of its codes) (xs) is one 8-wide FMA per super-block into a second accumulator. */
/* Rows n0..n1 of a Q8_0/Q4_0 matrix: GV_NR at a time (prefetching pf_rows ahead while whole
 * groups remain), then 4, then single rows. */
GV_TARGET void gv_span(loom_dtype t, const char *wr, size_t row_bytes, const qg_pair *x, const float *dxs,
                       int64_t np, float *y, const float *bias, __m512i iq, int64_t n0, int64_t n1, int64_t pf_rows) {
    size_t pf = (size_t)pf_rows * row_bytes;
    int64_t n = n0;
    for (; n + GV_NR <= n1; n += GV_NR)
        gv_rows(t, GV_NR, wr + n * row_bytes, row_bytes, x, dxs, np, y + n, bias ? bias + n : NULL, iq,
                n + GV_NR + pf_rows <= n1 ? pf : 0);
    for (; n + 4 <= n1; n += 4) gv_rows(t, 4, wr + n * row_bytes, row_bytes, x, dxs, np, y + n, bias ? bias + n : NULL, iq, 0);
    for (; n < n1; n++) gv_rows(t, 1, wr + n * row_bytes, row_bytes, x, dxs, np, y + n, bias ? bias + n : NULL, iq, 0);
}

GV_TARGET void gv_rows_q4k(int nr, const char *w, size_t rb, const qg_pair *x, const float *xs, int64_t nsb,
                           float *y, const float *bias, size_t pf) {
    __m512 acc[4];
    __m256 macc[4];
    QG_UNROLL for (int i = 0; i < 4; i++) acc[i] = _mm512_setzero_ps(), macc[i] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t sb = 0; sb < nsb; sb++) {
        QG_UNROLL for (int i = 0; i < 4; i++) {
            if (i >= nr) break;
            const loom_block_q4_k *b = (const loom_block_q4_k *)(w + i * rb) + sb;
            uint8_t u[16]; /* the 8 scales, then the 8 minimums */
            loom_k4_scales8(b->scales, u);
            __m128i sm = _mm_loadu_si128((const __m128i *)u);
            __m256 scf = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sm)), _mm256_set1_ps(_cvtsh_ss(b->d)));
            __m256 mf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8)));
            macc[i] = _mm256_fmadd_ps(_mm256_mul_ps(mf, _mm256_set1_ps(_cvtsh_ss(b->dmin))), _mm256_loadu_ps(xs + 8 * sb),
                                      macc[i]);
            __m512 sc16 = _mm512_castps256_ps512(scf);
            QG_UNROLL for (int pp = 0; pp < 4; pp++) {
                const qg_pair *xp = x + 4 * sb + pp;
                if (pf) _mm_prefetch((const char *)b + pf + 36 * pp, _MM_HINT_T0);
                __m256i raw = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * pp));
                __m512i wv = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(raw, m4)),
                                                _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), 1);
                __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, _mm512_loadu_si512(xp->q));
                __m512 dw = _mm512_permutexvar_ps(
                    _mm512_setr_epi32(2 * pp, 2 * pp, 2 * pp, 2 * pp, 2 * pp, 2 * pp, 2 * pp, 2 * pp, 2 * pp + 1,
                                      2 * pp + 1, 2 * pp + 1, 2 * pp + 1, 2 * pp + 1, 2 * pp + 1, 2 * pp + 1, 2 * pp + 1),
                    sc16);
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_loadu_ps(xp->d)), acc[i]);
            }
        }
    }
    QG_UNROLL for (int i = 0; i < 4; i++) {
        if (i >= nr) break;
        y[i] = _mm512_reduce_add_ps(acc[i]) - ql_hsum(macc[i]) + (bias ? bias[i] : 0.0f);
    }
}

/* Q6_K: the tile kernel's unpacking (ld_w) with one accumulator per row and the weights prefetched
 * pf bytes ahead (4 pairs of a 210-byte super-block: prefetches 52 bytes apart, and its last line). */
GV_TARGET void gv_rows_q6k(int nr, const char *w, size_t rb, const qg_pair *x, int64_t np, float *y,
                           const float *bias, size_t pf) {
    __m512 acc[4];
    QG_UNROLL for (int i = 0; i < 4; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t p = 0; p < np; p++) {
        const qg_pair *xp = x + p;
        __m512i c = _mm512_loadu_si512(xp->c), q = _mm512_loadu_si512(xp->q);
        __m512 dx = _mm512_loadu_ps(xp->d);
        QG_UNROLL for (int i = 0; i < 4; i++) {
            if (i >= nr) break;
            const char *row = w + i * rb;
            if (pf) {
                const char *sbp = row + (size_t)(p / 4) * sizeof(loom_block_q6_k);
                _mm_prefetch(sbp + pf + 52 * (p % 4), _MM_HINT_T0);
                if (p % 4 == 3) _mm_prefetch(sbp + pf + 209, _MM_HINT_T0);
            }
            __m512 dw, mw;
            __m512i wv = ld_w(LOOM_Q6_K, row, p, &dw, &mw);
            __m512i s = _mm512_dpbusd_epi32(c, wv, q);
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, dx), acc[i]);
        }
    }
    QG_UNROLL for (int i = 0; i < 4; i++)
        if (i < nr) y[i] = _mm512_reduce_add_ps(acc[i]) + (bias ? bias[i] : 0.0f);
}

/* IQ4_XS: per super-block and row the 8 scales d * (ls - 32) as 8 floats (ls: 4 bits of scales_l and
 * 2 of scales_h, by variable shifts of the broadcast words); per block pair the 32 bytes of qs
 * (blocks 2pp, 2pp + 1, 16 bytes each) are spread by one vpermb into [lo(b0) hi(b0) lo(b1) hi(b1)]
 * (the high halves' nibbles shifted down), looked up as IQ4_NL's (gv_iq4) and dotted from the
 * activation's -128 x block totals; the pair's two scales by one vpermps. 4 rows share each x pair. */
static const uint8_t gv_xs_idx[64] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                      0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                      16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
                                      16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};

GV_TARGET void gv_rows_iq4xs(int nr, const char *w, size_t rb, const qg_pair *x, int64_t nsb, float *y,
                             const float *bias, size_t pf) {
    __m512 acc[4];
    QG_UNROLL for (int i = 0; i < 4; i++) acc[i] = _mm512_setzero_ps();
    const __m512i ix = _mm512_loadu_si512(gv_xs_idx);
    const __m256i shl = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28), shh = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    for (int64_t sb = 0; sb < nsb; sb++) {
        QG_UNROLL for (int i = 0; i < 4; i++) {
            if (i >= nr) break;
            const loom_block_iq4_xs *b = (const loom_block_iq4_xs *)(w + i * rb) + sb;
            uint32_t sl;
            memcpy(&sl, b->scales_l, 4);
            __m256i lo = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)sl), shl), _mm256_set1_epi32(0xF));
            __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(b->scales_h), shh), _mm256_set1_epi32(3));
            __m256i ls = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), _mm256_set1_epi32(32));
            __m512 sc16 = _mm512_castps256_ps512(_mm256_mul_ps(_mm256_cvtepi32_ps(ls), _mm256_set1_ps(_cvtsh_ss(b->d))));
            QG_UNROLL for (int pp = 0; pp < 4; pp++) {
                const qg_pair *xp = x + 4 * sb + pp;
                if (pf) _mm_prefetch((const char *)b + pf + 45 * pp, _MM_HINT_T0); /* 0, 45, 90, 135: every line of 136 bytes */
                __m512i q = _mm512_permutexvar_epi8(ix, _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b->qs + 32 * pp))));
                q = _mm512_and_si512(_mm512_mask_srli_epi16(q, 0xFF00FF00u, q, 4), _mm512_set1_epi8(0x0F));
                __m512i s = _mm512_dpbusd_epi32(_mm512_loadu_si512(xp->c), gv_iq4(q), _mm512_loadu_si512(xp->q));
                __m512 dw = _mm512_permutexvar_ps(
                    _mm512_setr_epi32(2 * pp, 2 * pp, 2 * pp, 2 * pp, 2 * pp, 2 * pp, 2 * pp, 2 * pp, 2 * pp + 1,
                                      2 * pp + 1, 2 * pp + 1, 2 * pp + 1, 2 * pp + 1, 2 * pp + 1, 2 * pp + 1, 2 * pp + 1),
                    sc16);
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_loadu_ps(xp->d)), acc[i]);
            }
        }
    }
    QG_UNROLL for (int i = 0; i < 4; i++)
        if (i < nr) y[i] = _mm512_reduce_add_ps(acc[i]) + (bias ? bias[i] : 0.0f);
}

/* ---- K-quant decode GEMV (Q4_K, Q5_K, Q6_K; 2026-12-06) ----
 * The pair kernels above (gv_rows_q4k, gv_rows_q6k) ran at ~5.5 GB/s a core (bench_kernels -c -t 1,
 * llama-1.1b shapes): per 64 weights a 256-bit load, an insert, the nibble split, a vpermps of the
 * scales and a multiply by the activation scales, and per super-block the scalar unpacking of the
 * 6-bit scales. Here the activation is laid out once per call in the order the weights' bytes come
 * (gv_kx), so a super-block's codes are two 512-bit loads split into 4 vectors (Q4_K / Q5_K: the low
 * and high nibbles of each 64 bytes are blocks [j | j + 2]), the 6-bit scales and minimums are
 * unpacked by 128-bit shifts and masks (ql_k4_scales), and the products d_w * scale_j * d_x(j) are
 * formed once per super-block and row as 8 (Q4_K / Q5_K) or 16 (Q6_K, per 16 elements) floats; per
 * vector then: vpdpbusd, one vpermps of those floats, a conversion and an FMA. The activation codes
 * are loom_q8x_quant's (per 32 elements), so the sums are the reference's up to f32 rounding. */
typedef struct {
    int8_t q[4][64]; /* Q4_K / Q5_K: blocks [0|2], [1|3], [4|6], [5|7]; Q6_K: [0|1], [2|3], [4|5], [6|7] */
    union {
        struct {
            float d[8]; /* block j's d */
            float s[8]; /* d * (sum of block j's codes): the minimums' factor */
        } k4;
        struct {
            int32_t c[4][16]; /* -32 * (sum of the 4 codes of lane i of vector k): Q6_K's offset */
            float d16[16];    /* lane g: d of block g / 2 (the activation side of the per-16 scales) */
        } k6;
    };
} gv_kx;
_Static_assert(sizeof(gv_kx) <= 4 * sizeof(qg_pair), "gv_kx fits cpu_qgemm_xbytes");

/* 32 floats to 32 codes as loom_q8x_quant (d = max|x| / 127, rint(x / d)); returns d */
__attribute__((target("avx512vbmi"))) static float gv_q32(const float *xb, int8_t *dst) {
    const __m512 sgn = _mm512_set1_ps(-0.0f);
    __m512 a = _mm512_loadu_ps(xb), b = _mm512_loadu_ps(xb + 16);
    float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sgn, a), _mm512_andnot_ps(sgn, b)));
    float dd = amax / 127, id = dd ? 1.0f / dd : 0.0f;
    __m512 vid = _mm512_set1_ps(id);
    _mm_storeu_si128((__m128i *)dst, _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(a, vid))));
    _mm_storeu_si128((__m128i *)(dst + 16), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(b, vid))));
    return dd;
}

__attribute__((target("avx512vbmi"))) static void gv_prep_k(loom_dtype t, const float *x, int64_t K, void *dst) {
    gv_kx *o = dst;
    for (int64_t sb = 0; sb < K / 256; sb++, o++) {
        float d[8];
        for (int j = 0; j < 8; j++) {
            int8_t *q = t == LOOM_Q6_K ? o->q[j / 2] + 32 * (j % 2) : o->q[(j / 4) * 2 + j % 2] + 32 * ((j / 2) % 2);
            d[j] = gv_q32(x + 256 * sb + 32 * j, q);
        }
        for (int k = 0; k < 4; k++) {
            __m512i q = _mm512_loadu_si512(o->q[k]);
            if (t == LOOM_Q6_K) {
                __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(32), q);
                _mm512_storeu_si512(o->k6.c[k], _mm512_sub_epi32(_mm512_setzero_si512(), s));
            } else { /* vector k holds blocks a (lanes 0-7) and a + 2 (8-15) */
                __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), q);
                int a = (k / 2) * 4 + k % 2;
                o->k4.s[a] = d[a] * (float)_mm512_mask_reduce_add_epi32(0x00FF, s);
                o->k4.s[a + 2] = d[a + 2] * (float)_mm512_mask_reduce_add_epi32(0xFF00, s);
            }
        }
        for (int j = 0; j < 8; j++) {
            if (t == LOOM_Q6_K) o->k6.d16[2 * j] = o->k6.d16[2 * j + 1] = d[j];
            else o->k4.d[j] = d[j];
        }
    }
}

/* Lanes 0-7 from element a, 8-15 from b */
#define GV_P2(a, b) _mm512_setr_epi32(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b)
/* Lanes 4i..4i+3 from element 4k + i */
#define GV_P4(k) _mm512_setr_epi32(4 * k, 4 * k, 4 * k, 4 * k, 4 * k + 1, 4 * k + 1, 4 * k + 1, 4 * k + 1, 4 * k + 2, \
                                   4 * k + 2, 4 * k + 2, 4 * k + 2, 4 * k + 3, 4 * k + 3, 4 * k + 3, 4 * k + 3)

/* nr (<= 4) rows of Q4_K or Q5_K: per super-block and row two 512-bit loads of codes (Q5_K: the 5th
 * bits from qh broadcast to both halves, bit j of byte e for element e of block j, tested per byte),
 * the scales and minimums vectorised; the minimums against the activation's d * (code sum) per block
 * into an 8-wide accumulator per row. */
GV_TARGET void gv_rows_k45(loom_dtype t, int nr, const char *w, size_t rb, const gv_kx *x, int64_t nsb, float *y,
                           const float *bias, size_t pf) {
    const size_t bb = t == LOOM_Q4_K ? sizeof(loom_block_q4_k) : sizeof(loom_block_q5_k);
    const size_t qo = t == LOOM_Q4_K ? offsetof(loom_block_q4_k, qs) : offsetof(loom_block_q5_k, qs);
    __m512 acc[4];
    __m256 macc[4];
    QG_UNROLL for (int i = 0; i < 4; i++) acc[i] = _mm512_setzero_ps(), macc[i] = _mm256_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F), b16 = _mm512_set1_epi8(16);
    const __m512i p0 = GV_P2(0, 2), p1 = GV_P2(1, 3), p2 = GV_P2(4, 6), p3 = GV_P2(5, 7);
    /* Q5_K: the qh bit of each vector's two blocks (j in the low 32 bytes, j + 2 in the high) */
    const __m512i h0 = _mm512_mask_blend_epi64(0xF0, _mm512_set1_epi8(1), _mm512_set1_epi8(4));
    const __m512i h1 = _mm512_mask_blend_epi64(0xF0, _mm512_set1_epi8(2), _mm512_set1_epi8(8));
    const __m512i h2 = _mm512_mask_blend_epi64(0xF0, _mm512_set1_epi8(16), _mm512_set1_epi8(64));
    const __m512i h3 = _mm512_mask_blend_epi64(0xF0, _mm512_set1_epi8(32), _mm512_set1_epi8((char)128));
    for (int64_t sb = 0; sb < nsb; sb++) {
        const gv_kx *xk = x + sb;
        __m256 xd = _mm256_loadu_ps(xk->k4.d), xs = _mm256_loadu_ps(xk->k4.s);
        __m512i x0 = _mm512_loadu_si512(xk->q[0]), x1 = _mm512_loadu_si512(xk->q[1]);
        __m512i x2 = _mm512_loadu_si512(xk->q[2]), x3 = _mm512_loadu_si512(xk->q[3]);
        QG_UNROLL for (int i = 0; i < 4; i++) {
            if (i >= nr) break;
            const char *b = w + i * rb + (size_t)sb * bb;
            if (pf) {
                _mm_prefetch(b + pf, _MM_HINT_T0);
                _mm_prefetch(b + pf + 64, _MM_HINT_T0);
                _mm_prefetch(b + pf + 128, _MM_HINT_T0);
            }
            uint16_t dh, mh;
            memcpy(&dh, b, 2), memcpy(&mh, b + 2, 2);
            __m128i sv = ql_k4_scales((const uint8_t *)b + 4);
            __m256 sc = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sv)), _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(dh)), xd));
            __m256 mn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(sv, 8)));
            macc[i] = _mm256_fmadd_ps(mn, _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(mh)), xs), macc[i]);
            __m512 sc16 = _mm512_castps256_ps512(sc);
            __m512i r0 = _mm512_loadu_si512(b + qo), r1 = _mm512_loadu_si512(b + qo + 64);
            __m512i w0 = _mm512_and_si512(r0, m4), w1 = _mm512_and_si512(_mm512_srli_epi16(r0, 4), m4);
            __m512i w2 = _mm512_and_si512(r1, m4), w3 = _mm512_and_si512(_mm512_srli_epi16(r1, 4), m4);
            if (t == LOOM_Q5_K) {
                __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b + offsetof(loom_block_q5_k, qh))));
                w0 = _mm512_mask_add_epi8(w0, _mm512_test_epi8_mask(qh, h0), w0, b16);
                w1 = _mm512_mask_add_epi8(w1, _mm512_test_epi8_mask(qh, h1), w1, b16);
                w2 = _mm512_mask_add_epi8(w2, _mm512_test_epi8_mask(qh, h2), w2, b16);
                w3 = _mm512_mask_add_epi8(w3, _mm512_test_epi8_mask(qh, h3), w3, b16);
            }
            __m512i z = _mm512_setzero_si512();
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(z, w0, x0)), _mm512_permutexvar_ps(p0, sc16), acc[i]);
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(z, w1, x1)), _mm512_permutexvar_ps(p1, sc16), acc[i]);
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(z, w2, x2)), _mm512_permutexvar_ps(p2, sc16), acc[i]);
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(z, w3, x3)), _mm512_permutexvar_ps(p3, sc16), acc[i]);
        }
    }
    QG_UNROLL for (int i = 0; i < 4; i++) {
        if (i >= nr) break;
        y[i] = _mm512_reduce_add_ps(acc[i]) - ql_hsum(macc[i]) + (bias ? bias[i] : 0.0f);
    }
}

/* nr (<= 4) rows of Q6_K: per super-block and row, half h's 64 bytes of ql (one load) and 32 of qh
 * (broadcast to both halves) give blocks [4h | 4h + 1] (low nibbles, qh bits 0-1 / 2-3) and [4h + 2 |
 * 4h + 3] (high nibbles, bits 4-5 / 6-7), the 2-bit fields moved to bits 4-5 by 16-bit variable shifts
 * (no bit crosses a byte: shifts of 4 at most); codes 0..63 against the activation's -32 x lane sums;
 * the 16 scales times d_w and the activation's d as 16 floats per super-block. */
GV_TARGET void gv_rows_k6(int nr, const char *w, size_t rb, const gv_kx *x, int64_t nsb, float *y, const float *bias,
                          size_t pf) {
    __m512 acc[4];
    QG_UNROLL for (int i = 0; i < 4; i++) acc[i] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m512i cl = _mm512_mask_blend_epi64(0xF0, _mm512_set1_epi16(4), _mm512_set1_epi16(2));
    const __m512i ch = _mm512_mask_blend_epi64(0xF0, _mm512_set1_epi16(0), _mm512_set1_epi16(2));
    const __m512i pk[4] = {GV_P4(0), GV_P4(1), GV_P4(2), GV_P4(3)};
    for (int64_t sb = 0; sb < nsb; sb++) {
        const gv_kx *xk = x + sb;
        __m512 xd = _mm512_loadu_ps(xk->k6.d16);
        QG_UNROLL for (int i = 0; i < 4; i++) {
            if (i >= nr) break;
            const char *b = w + i * rb + (size_t)sb * sizeof(loom_block_q6_k);
            if (pf) {
                _mm_prefetch(b + pf, _MM_HINT_T0);
                _mm_prefetch(b + pf + 64, _MM_HINT_T0);
                _mm_prefetch(b + pf + 128, _MM_HINT_T0);
                _mm_prefetch(b + pf + 192, _MM_HINT_T0);
            }
            uint16_t dh;
            memcpy(&dh, b + offsetof(loom_block_q6_k, d), 2);
            __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + offsetof(loom_block_q6_k, scales)))));
            sc = _mm512_mul_ps(sc, _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(dh)), xd));
            QG_UNROLL for (int h = 0; h < 2; h++) {
                __m512i L = _mm512_loadu_si512(b + 64 * h);
                __m512i Q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b + offsetof(loom_block_q6_k, qh) + 32 * h)));
                __m512i lo = _mm512_or_si512(_mm512_and_si512(L, m4), _mm512_and_si512(_mm512_sllv_epi16(Q, cl), m30));
                __m512i hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                                             _mm512_and_si512(_mm512_srlv_epi16(Q, ch), m30));
                __m512i s0 = _mm512_dpbusd_epi32(_mm512_loadu_si512(xk->k6.c[2 * h]), lo, _mm512_loadu_si512(xk->q[2 * h]));
                __m512i s1 = _mm512_dpbusd_epi32(_mm512_loadu_si512(xk->k6.c[2 * h + 1]), hi,
                                                 _mm512_loadu_si512(xk->q[2 * h + 1]));
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_permutexvar_ps(pk[2 * h], sc), acc[i]);
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_permutexvar_ps(pk[2 * h + 1], sc), acc[i]);
            }
        }
    }
    QG_UNROLL for (int i = 0; i < 4; i++)
        if (i < nr) y[i] = _mm512_reduce_add_ps(acc[i]) + (bias ? bias[i] : 0.0f);
}

__attribute__((target("avx512vbmi"))) void cpu_qgemv_avx512(loom_dtype t, const void *w, size_t row_bytes,
                                                            const void *xp, int64_t K, int64_t n0, int64_t n1,
                                                            float *y, const float *bias) {
    /* LOOM_CPU_QGEMV_PF: prefetch distance in rows (0: none); 16 measured best on the EPYC (q4_0 ~10%
     * ahead of 4, q8_0 the same; T1/T2 hints no better) */
    static _Atomic int pf_env = INT_MIN;
    int pf_rows = cpu_env_int_once(&pf_env, "LOOM_CPU_QGEMV_PF", 16);
    if (pf_rows < 0) pf_rows = 0;
    int64_t np = K / 64;
    const char *wr = w;
    const qg_pair *x = xp;
    if ((t == LOOM_Q4_K || t == LOOM_Q5_K || t == LOOM_Q6_K) && cpu_qgemv_knew()) {
        /* LOOM_CPU_KGEMV_PF: their prefetch distance in rows (default LOOM_CPU_QGEMV_PF's) */
        static _Atomic int kpf_env = INT_MIN;
        int kpf = cpu_env_int_once(&kpf_env, "LOOM_CPU_KGEMV_PF", pf_rows);
        size_t pf = kpf > 0 ? (size_t)kpf * row_bytes : 0;
        const gv_kx *xk = xp;
        int64_t n = n0, nsb = K / 256;
        for (; n + 4 <= n1; n += 4) {
            size_t p = n + 4 + kpf <= n1 ? pf : 0;
            const char *wn = wr + n * row_bytes;
            float *yn = y + n;
            const float *bn = bias ? bias + n : NULL;
            if (t == LOOM_Q6_K) gv_rows_k6(4, wn, row_bytes, xk, nsb, yn, bn, p);
            else if (t == LOOM_Q4_K) gv_rows_k45(LOOM_Q4_K, 4, wn, row_bytes, xk, nsb, yn, bn, p);
            else gv_rows_k45(LOOM_Q5_K, 4, wn, row_bytes, xk, nsb, yn, bn, p);
        }
        for (; n < n1; n++) {
            const char *wn = wr + n * row_bytes;
            const float *bn = bias ? bias + n : NULL;
            if (t == LOOM_Q6_K) gv_rows_k6(1, wn, row_bytes, xk, nsb, y + n, bn, 0);
            else if (t == LOOM_Q4_K) gv_rows_k45(LOOM_Q4_K, 1, wn, row_bytes, xk, nsb, y + n, bn, 0);
            else gv_rows_k45(LOOM_Q5_K, 1, wn, row_bytes, xk, nsb, y + n, bn, 0);
        }
        return;
    }
    if (t == LOOM_Q6_K) {
        size_t pf = (size_t)pf_rows * row_bytes;
        int64_t n = n0;
        for (; n + 4 <= n1; n += 4)
            gv_rows_q6k(4, wr + n * row_bytes, row_bytes, x, np, y + n, bias ? bias + n : NULL,
                        n + 4 + pf_rows <= n1 ? pf : 0);
        for (; n < n1; n++) gv_rows_q6k(1, wr + n * row_bytes, row_bytes, x, np, y + n, bias ? bias + n : NULL, 0);
        return;
    }
    if (t == LOOM_IQ4_XS) {
        size_t pf = (size_t)pf_rows * row_bytes;
        int64_t n = n0, nsb = np / 4;
        for (; n + 4 <= n1; n += 4)
            gv_rows_iq4xs(4, wr + n * row_bytes, row_bytes, x, nsb, y + n, bias ? bias + n : NULL,
                          n + 4 + pf_rows <= n1 ? pf : 0);
        for (; n < n1; n++) gv_rows_iq4xs(1, wr + n * row_bytes, row_bytes, x, nsb, y + n, bias ? bias + n : NULL, 0);
        return;
    }
    if (t == LOOM_Q4_K) {
        /* xs[j] = d * (sum of the codes) of x block j: the lane sums of cpu_qgemm_prep, added up */
        float xbuf[1024], *xs = 2 * np <= 1024 ? xbuf : malloc(sizeof(float) * 2 * (size_t)np);
        if (!xs) xs = xbuf, np = 0; /* (out of memory: cannot happen at real sizes; yields zeros) */
        for (int64_t p = 0; p < np; p++) {
            __m512 ls = _mm512_loadu_ps(x[p].ls);
            xs[2 * p] = _mm512_mask_reduce_add_ps(0x00FF, ls), xs[2 * p + 1] = _mm512_mask_reduce_add_ps(0xFF00, ls);
        }
        size_t pf = (size_t)pf_rows * row_bytes;
        int64_t n = n0, nsb = np / 4;
        for (; n + 4 <= n1; n += 4)
            gv_rows_q4k(4, wr + n * row_bytes, row_bytes, x, xs, nsb, y + n, bias ? bias + n : NULL,
                        n + 4 + pf_rows <= n1 ? pf : 0);
        for (; n < n1; n++) gv_rows_q4k(1, wr + n * row_bytes, row_bytes, x, xs, nsb, y + n, bias ? bias + n : NULL, 0);
        if (xs != xbuf) free(xs);
        return;
    }
    __m512i iq = _mm512_loadu_si512(gv_q4_idx);
    /* the activation scales times 2^112 (gv_d); on the stack up to K = 16384 */
    float dbuf[16 * 256], *dxs = np <= 256 ? dbuf : malloc(sizeof(float) * 16 * (size_t)np);
    if (!dxs) dxs = dbuf, np = 0; /* (out of memory: cannot happen at real sizes; yields zeros) */
    for (int64_t p = 0; p < np; p++)
        _mm512_storeu_ps(dxs + 16 * p, _mm512_mul_ps(_mm512_loadu_ps(x[p].d), _mm512_set1_ps(0x1p112f)));
    /* the same spans for both types; each call passes t as a constant so gv_rows specialises */
    if (t == LOOM_Q8_0)
        gv_span(LOOM_Q8_0, wr, row_bytes, x, dxs, np, y, bias, iq, n0, n1, pf_rows);
    else if (t == LOOM_IQ4_NL)
        gv_span(LOOM_IQ4_NL, wr, row_bytes, x, dxs, np, y, bias, iq, n0, n1, pf_rows);
    else
        gv_span(LOOM_Q4_0, wr, row_bytes, x, dxs, np, y, bias, iq, n0, n1, pf_rows);
    if (dxs != dbuf) free(dxs);
}
