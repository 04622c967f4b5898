/* Decode GEMV for the later block types (Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q5_K, IQ4_XS) and, where
 * the 512-bit GEMV (quant_gemm_avx512.c) is not there, Q4_K and Q6_K (cpu_quant_matmul says when),
 * written once for 256-bit vectors and included by quant_later_avx2.c (maddubs + madd) and
 * quant_later_avx512.c (VNNI vpdpbusd). QL_U8S8(u, s): the 8 int32 lanes sum_{4 bytes} u * s
 * (u unsigned, s signed; here |u| <= 127, so maddubs never saturates). QL_SUFFIX names the flavour.
 *
 * A weight row is taken one 32-element block at a time as 32 signed int8 codes c and an affine
 * map per 16 elements, value = A * c + B (the same codes and maps as loom_qblock32, unpacked in
 * vectors): the dot with an activation block takes unsigned codes as they are (Q4_1, Q5_1, Q2_K,
 * Q5_K; Q3_K as c + 4 with the offset taken off through the x code sums) and the Q8_0 sign trick
 * for the signed ones (|c| times x with c's sign: Q5_0, IQ4_*), lanes 0-3 (elements 0-15) scaled
 * by A[0] and 4-7 by A[1], plus B times the activation block's d * (sum of its codes) per 16. The k-quants unpack their scales once per 256-element
 * super-block (as vectors of 8 or 16 floats) and take each block's from there. Rows are done one
 * at a time (x stays in L1), each prefetching the same bytes pf_rows rows ahead (the AVX2
 * flavour's Q4_1 / Q5_0 / Q5_1 kernel, QL_Q32_PAIR below, two at a time). */
#include "backends/cpu/cpu_quant.h"
#include "backends/cpu/quant_later_unpack.h"
#include "core/util.h"

#include <immintrin.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define QL_CAT2(a, b) a##b
#define QL_CAT(a, b) QL_CAT2(a, b)
#define QL_FN(name) QL_CAT(name, QL_SUFFIX)
#ifndef QL_Q23_INT
#define QL_Q23_INT 0 /* quant_later_avx2.c sets it: the integer-scale Q2_K / Q3_K rows */
#endif
#ifndef QL_IQ4_INT
#define QL_IQ4_INT 0 /* quant_later_avx2.c sets it: the block-pair IQ4_NL / IQ4_XS rows */
#endif
#ifndef QL_Q32_PAIR
#define QL_Q32_PAIR 0 /* quant_later_avx2.c sets it: the block-pair, two-row Q4_1 / Q5_0 / Q5_1 GEMV */
#endif

/* Per 16-element half of a block: x->d * x->s[h] (the B terms' activation factor), x->d per block
 * (xd) and per half (xdh: x->d twice), and x->d * (s[0] + s[1]) per block (xt: the Q4_K / Q5_K
 * minimums' factor), for the activation row (computed once per call). */
QL_INLINE void ql_xsums(const loom_q8x *x, int64_t nb, float *xs, float *xd, float *xdh, float *xt) {
    for (int64_t b = 0; b < nb; b++) {
        xd[b] = xdh[2 * b] = xdh[2 * b + 1] = x[b].d;
        xs[2 * b] = x[b].d * (float)x[b].s[0], xs[2 * b + 1] = x[b].d * (float)x[b].s[1];
        xt[b] = x[b].d * (float)(x[b].s[0] + x[b].s[1]);
    }
}

/* p = sum of c * x per 4 bytes (lanes 0-3: elements 0-15, 4-7: 16-31), by the sign trick. */
QL_INLINE __m256 ql_dot(__m256i c, const int8_t *xq) {
    __m256i xs = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)xq), c);
    return _mm256_cvtepi32_ps(QL_U8S8(_mm256_abs_epi8(c), xs));
}

/* The same for unsigned codes u (0..31): no sign trick. */
QL_INLINE __m256 ql_dotu(__m256i u, const int8_t *xq) {
    return _mm256_cvtepi32_ps(QL_U8S8(u, _mm256_loadu_si256((const __m256i *)xq)));
}

/* One row of a 32-element-block type: sum over its nb blocks. */
QL_INLINE float ql_row32(loom_dtype t, const char *row, const loom_q8x *x, const float *xs, const float *xd,
                         int64_t nb, size_t pf) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float bsum = 0;
    const size_t bb = t == LOOM_Q4_1 ? 20 : t == LOOM_Q5_0 ? 22 : t == LOOM_Q5_1 ? 24 : 18;
    for (int64_t b = 0; b < nb; b++) {
        const char *p = row + (size_t)b * bb;
        if (pf) _mm_prefetch(p + pf, _MM_HINT_T0);
        uint16_t dh;
        memcpy(&dh, p, 2);
        float A = _cvtsh_ss(dh);
        __m256i c;
        if (t == LOOM_Q4_1) {
            const loom_block_q4_1 *q = (const loom_block_q4_1 *)p;
            c = ql_nib(q->qs);
            bsum += _cvtsh_ss(q->m) * (xs[2 * b] + xs[2 * b + 1]);
        } else if (t == LOOM_Q5_0) {
            const loom_block_q5_0 *q = (const loom_block_q5_0 *)p;
            c = _mm256_sub_epi8(_mm256_or_si256(ql_nib(q->qs), ql_bit5(q->qh)), _mm256_set1_epi8(16));
        } else if (t == LOOM_Q5_1) {
            const loom_block_q5_1 *q = (const loom_block_q5_1 *)p;
            c = _mm256_or_si256(ql_nib(q->qs), ql_bit5(q->qh));
            bsum += _cvtsh_ss(q->m) * (xs[2 * b] + xs[2 * b + 1]);
        } else {
            c = ql_iq4(ql_nib(((const loom_block_iq4_nl *)p)->qs));
        }
        __m256 d = _mm256_set1_ps(A * xd[b]);
        bool u = t == LOOM_Q4_1 || t == LOOM_Q5_1; /* codes 0..31: no sign trick */
        __m256 pr = u ? ql_dotu(c, x[b].qs) : ql_dot(c, x[b].qs);
        if (b & 1) acc1 = _mm256_fmadd_ps(pr, d, acc1);
        else acc0 = _mm256_fmadd_ps(pr, d, acc0);
    }
    return ql_hsum(_mm256_add_ps(acc0, acc1)) + bsum;
}

/* Lanes {2k x 4, 2k+1 x 4} of a vector of 8 per-16 scales: the two scales of block k of the four. */
QL_INLINE __m256 ql_pair(__m256 v, int k) {
    return _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1));
}

/* v shifted left by s (right by -s) in 16-bit lanes; s a constant after unrolling */
QL_INLINE __m256i ql_sh16(__m256i v, int s) { return s >= 0 ? _mm256_slli_epi16(v, s) : _mm256_srli_epi16(v, -s); }

#define QL_PF_LINES(p, n)                                                                                  \
    do {                                                                                                   \
        if (pf)                                                                                            \
            for (int o_ = 0; o_ < (n); o_ += 64) _mm_prefetch((p) + pf + o_, _MM_HINT_T0);                  \
    } while (0)

/* One row of a k-quant type (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS): nsb super-blocks. */
QL_INLINE float ql_rowk(loom_dtype t, bool kold, const char *row, const loom_q8x *x, const float *xs, const float *xd,
                        const float *xdh, const float *xt, int64_t nsb, size_t pf) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), bacc = _mm256_setzero_ps();
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    for (int64_t i = 0; i < nsb; i++) {
        const loom_q8x *xb = x + 8 * i;
        const float *xsb = xs + 16 * i, *xdb = xd + 8 * i, *xdhb = xdh + 16 * i, *xtb = xt + 8 * i;
        if (t == LOOM_Q2_K || t == LOOM_Q3_K) {
            /* unsigned codes u (Q2_K: q, 0..3; Q3_K: q + 4 x its high bit = c + 4, 0..7) straight
             * into vpdpbusd; the per-16 scales times the x blocks' d (xdh) once per super-block,
             * lanes 2k, 2k + 1 of As[h] for block 4h + k; Q2_K's minimums and Q3_K's offset 4 (d *
             * sc * 4 * sum of the x codes) one 8-wide FMA pair per super-block into bacc */
            const loom_block_q2_k *q2 = (const loom_block_q2_k *)row + i;
            const loom_block_q3_k *q3 = (const loom_block_q3_k *)row + i;
            __m256 A0, A1, bterm;
            __m256i hm = _mm256_setzero_si256();
            if (t == LOOM_Q2_K) {
                QL_PF_LINES((const char *)q2, 84);
                __m128i sc = _mm_loadu_si128((const __m128i *)q2->scales);
                __m128i lo = _mm_and_si128(sc, _mm_set1_epi8(0x0F)), hi = _mm_and_si128(_mm_srli_epi16(sc, 4), _mm_set1_epi8(0x0F));
                __m256 d = _mm256_set1_ps(_cvtsh_ss(q2->d));
                A0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), d);
                A1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), d);
                __m256 M0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
                __m256 M1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
                __m256 mm = _mm256_fmadd_ps(M0, _mm256_loadu_ps(xsb), _mm256_mul_ps(M1, _mm256_loadu_ps(xsb + 8)));
                bterm = _mm256_mul_ps(mm, _mm256_set1_ps(_cvtsh_ss(q2->dmin)));
            } else {
                QL_PF_LINES((const char *)q3, 110);
                __m128i sv = ql_q3k_scales(q3->scales);
                __m256 d = _mm256_set1_ps(_cvtsh_ss(q3->d));
                A0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sv)), d);
                A1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sv, 8))), d);
                __m256 mm = _mm256_fmadd_ps(A0, _mm256_loadu_ps(xsb), _mm256_mul_ps(A1, _mm256_loadu_ps(xsb + 8)));
                bterm = _mm256_mul_ps(mm, _mm256_set1_ps(4.0f));
                hm = _mm256_loadu_si256((const __m256i *)q3->hmask);
            }
            bacc = _mm256_sub_ps(bacc, bterm);
            __m256 As[2] = {_mm256_mul_ps(A0, _mm256_loadu_ps(xdhb)), _mm256_mul_ps(A1, _mm256_loadu_ps(xdhb + 8))};
            const uint8_t *qs = t == LOOM_Q2_K ? q2->qs : q3->qs;
            QL_UNROLL for (int h = 0; h < 2; h++) {
                __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * h));
                QL_UNROLL for (int k = 0; k < 4; k++) {
                    int j = 4 * h + k;
                    __m256i u = _mm256_and_si256(_mm256_srli_epi16(raw, 2 * k), m3);
                    if (t == LOOM_Q3_K) /* bit j of hmask to bit 2 (no 16-bit shift moves it across bytes) */
                        u = _mm256_or_si256(u, _mm256_and_si256(j >= 2 ? _mm256_srli_epi16(hm, j - 2) : _mm256_slli_epi16(hm, 2 - j),
                                                                _mm256_set1_epi8(4)));
                    __m256 p = ql_dotu(u, xb[j].qs);
                    if (j & 1) acc1 = _mm256_fmadd_ps(p, ql_pair(As[h], k), acc1);
                    else acc0 = _mm256_fmadd_ps(p, ql_pair(As[h], k), acc0);
                }
            }
        } else if (t == LOOM_Q5_K && kold) { /* (the Q5_K code before 2026-12-06: LOOM_CPU_KLATER=0) */
            const loom_block_q5_k *q = (const loom_block_q5_k *)row + i;
            QL_PF_LINES((const char *)q, 176);
            uint8_t u[16]; /* the 8 scales, then the 8 minimums */
            loom_k4_scales8(q->scales, u);
            __m128i sm = _mm_loadu_si128((const __m128i *)u);
            __m256 A = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sm)), _mm256_set1_ps(_cvtsh_ss(q->d)));
            __m256 M = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8)));
            /* the minimums against d * (sum of codes) per block: the two halves' xs added */
            __m256 x0 = _mm256_loadu_ps(xsb), x1 = _mm256_loadu_ps(xsb + 8);
            __m256 pa = _mm256_hadd_ps(x0, x1); /* lanes: b0 b1 b4 b5 | b2 b3 b6 b7 */
            pa = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(pa), 0xD8)); /* b0..b7 */
            bacc = _mm256_fnmadd_ps(_mm256_mul_ps(M, _mm256_set1_ps(_cvtsh_ss(q->dmin))), pa, bacc);
            __m256i hb = _mm256_loadu_si256((const __m256i *)q->qh);
            for (int k = 0; k < 4; k++) {
                __m256i raw = _mm256_loadu_si256((const __m256i *)(q->qs + 32 * k));
                for (int e = 0; e < 2; e++) {
                    int j = 2 * k + e;
                    __m256i bit = _mm256_set1_epi8((char)(1 << j));
                    __m256i h5 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, bit), bit), _mm256_set1_epi8(0x10));
                    __m256i c = _mm256_or_si256(_mm256_and_si256(e ? _mm256_srli_epi16(raw, 4) : raw, m4), h5);
                    __m256 sc = _mm256_mul_ps(_mm256_permutevar8x32_ps(A, _mm256_set1_epi32(j)), _mm256_set1_ps(xdb[j]));
                    if (e) acc1 = _mm256_fmadd_ps(ql_dotu(c, xb[j].qs), sc, acc1);
                    else acc0 = _mm256_fmadd_ps(ql_dotu(c, xb[j].qs), sc, acc0);
                }
            }
        } else if (t == LOOM_Q4_K || t == LOOM_Q5_K) {
            /* (2026-12-06; before: Q4_K through the rows kernel, quant_simd.h, and Q5_K with its
             * scales unpacked by the scalar loom_k4_scales8 and the 5th bits by compare) the 8
             * scales and minimums by ql_k4_scales; A = d_w * scale_j * d_x(j) as 8 floats per
             * super-block, block j's taken by one vpermps; the minimums against xt (d_x * code
             * sum) one 8-wide FMA per super-block; Q5_K's 5th bit of block j (bit j of qh[e]) moved
             * to bit 4 by a 16-bit shift of 4 - j (no bit crosses a byte) */
            const size_t bb = t == LOOM_Q4_K ? sizeof(loom_block_q4_k) : sizeof(loom_block_q5_k);
            const char *b = row + (size_t)i * bb;
            QL_PF_LINES(b, (int)bb);
            uint16_t dh, mh;
            memcpy(&dh, b, 2), memcpy(&mh, b + 2, 2);
            __m128i sm = ql_k4_scales((const uint8_t *)b + 4);
            __m256 A = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sm)),
                                     _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(dh)), _mm256_loadu_ps(xdb)));
            __m256 M = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8)));
            bacc = _mm256_fnmadd_ps(M, _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(mh)), _mm256_loadu_ps(xtb)), bacc);
            const uint8_t *qs = (const uint8_t *)b + (t == LOOM_Q4_K ? offsetof(loom_block_q4_k, qs) : offsetof(loom_block_q5_k, qs));
            __m256i hb = _mm256_setzero_si256();
            if (t == LOOM_Q5_K) hb = _mm256_loadu_si256((const __m256i *)(b + offsetof(loom_block_q5_k, qh)));
            const __m256i b16 = _mm256_set1_epi8(0x10);
            QL_UNROLL for (int k = 0; k < 4; k++) {
                __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * k));
                __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                if (t == LOOM_Q5_K) {
                    lo = _mm256_or_si256(lo, _mm256_and_si256(ql_sh16(hb, 4 - 2 * k), b16));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(ql_sh16(hb, 3 - 2 * k), b16));
                }
                acc0 = _mm256_fmadd_ps(ql_dotu(lo, xb[2 * k].qs), _mm256_permutevar8x32_ps(A, _mm256_set1_epi32(2 * k)), acc0);
                acc1 = _mm256_fmadd_ps(ql_dotu(hi, xb[2 * k + 1].qs), _mm256_permutevar8x32_ps(A, _mm256_set1_epi32(2 * k + 1)), acc1);
            }
        } else if (t == LOOM_Q6_K) {
            /* (2026-12-06; before: the rows kernel) codes 0..63 unsigned, the offset 32 through
             * the activation's per-16 sums: -32 * d_w * sum_g scale_g * xs_g, two 8-wide FMAs per
             * super-block; G = d_w * scale_g * d_x(g / 2) as 16 floats, block j's pair of scales by
             * ql_pair */
            const loom_block_q6_k *q = (const loom_block_q6_k *)row + i;
            QL_PF_LINES((const char *)q, 210);
            __m256 dv = _mm256_set1_ps(_cvtsh_ss(q->d));
            __m128i s16 = _mm_loadu_si128((const __m128i *)q->scales);
            __m256 S0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(s16)), dv);
            __m256 S1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(s16, 8))), dv);
            const __m256 c32 = _mm256_set1_ps(32.0f);
            bacc = _mm256_fnmadd_ps(_mm256_mul_ps(S0, c32), _mm256_loadu_ps(xsb), bacc);
            bacc = _mm256_fnmadd_ps(_mm256_mul_ps(S1, c32), _mm256_loadu_ps(xsb + 8), bacc);
            __m256 G[2] = {_mm256_mul_ps(S0, _mm256_loadu_ps(xdhb)), _mm256_mul_ps(S1, _mm256_loadu_ps(xdhb + 8))};
            QL_UNROLL for (int h = 0; h < 2; h++) {
                const uint8_t *ql = q->ql + 64 * h, *qh = q->qh + 32 * h;
                __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
                __m256i hbq = _mm256_loadu_si256((const __m256i *)qh);
                __m256i u[4];
                u[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hbq, 4), m30));
                u[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hbq, 2), m30));
                u[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hbq, m30));
                u[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                       _mm256_and_si256(_mm256_srli_epi16(hbq, 2), m30));
                QL_UNROLL for (int k = 0; k < 4; k++) {
                    __m256 p = ql_dotu(u[k], xb[4 * h + k].qs);
                    if (k & 1) acc1 = _mm256_fmadd_ps(p, ql_pair(G[h], k), acc1);
                    else acc0 = _mm256_fmadd_ps(p, ql_pair(G[h], k), acc0);
                }
            }
        } else { /* IQ4_XS */
            const loom_block_iq4_xs *q = (const loom_block_iq4_xs *)row + i;
            QL_PF_LINES((const char *)q, 136);
            float d = _cvtsh_ss(q->d);
            for (int j = 0; j < 8; j++) {
                __m256i c = ql_iq4(ql_nib(q->qs + 16 * j));
                __m256 sc = _mm256_set1_ps(d * (float)loom_iq4xs_scale(q->scales_h, q->scales_l, j) * xdb[j]);
                if (j & 1) acc1 = _mm256_fmadd_ps(ql_dot(c, xb[j].qs), sc, acc1);
                else acc0 = _mm256_fmadd_ps(ql_dot(c, xb[j].qs), sc, acc0);
            }
        }
    }
    return ql_hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), bacc));
}

#if QL_Q23_INT
/* Q2_K / Q3_K decode with the per-16 scales applied in the integer dot (2026-12-06, AVX2 flavour
 * only; LOOM_CPU_KLATER=0 gives back the float-scale code in ql_rowk). Per 32-block j of a
 * super-block: the codes u as bytes, maddubs against the activation codes (int16 pairs), then madd
 * against a vector of the block's two scales as int16 words (lanes 0-7: the scale of elements 0-15,
 * 8-15: of 16-31; taken from the super-block's scales by one in-lane byte shuffle), one conversion,
 * and one FMA with the activation block's d broadcast. The super-block's float scale d is applied
 * once at its end (two partial sums, even and odd blocks). No lane-crossing permute per block.
 *
 * The codes are not shifted down to bit 0 where that costs an instruction: a 2-bit field k of a
 * qs byte is taken in place (value u * 4^p for a known p), and the activation scale per block
 * position carries the 4^-p (xq: x->d times ql_q23_pow, exact powers of two). Bounds: u * 4^p <=
 * 112, so maddubs pairs stay <= 2 * 112 * 127 < 32767.
 *
 * The minimums (Q2_K) and the offset 4 of Q3_K's unsigned codes (u = c + 4) are one madd per
 * super-block of the int16 scales against the activation's per-16 code sums (xs16, natural order:
 * word 2b + h = x[b].s[h]) giving an int32 per block, converted and FMA'd against xd. */

/* the factor 4^-p of block position k (0..3) within a 128-element half, per type */
QL_INLINE float ql_q23_pow(loom_dtype t, int k) {
    if (t == LOOM_Q2_K) return k & 1 ? 0.25f : 1.0f; /* fields 0, 2 at x1, 1, 3 at x4 */
    return k < 2 ? 1.0f / 16 : 1.0f / 256;           /* Q3_K: x1, x1, x16, x16, and its scales x16 */
}

/* a byte-shuffle control taking word j of each 128-bit lane (Q3_K: scales in even/odd order) */
QL_INLINE __m256i ql_word_idx(int j) {
    return _mm256_set1_epi16((short)(2 * j | (2 * j + 1) << 8));
}

/* lane 0: byte 2j zero-extended to words, lane 1: byte 2j + 1 (Q2_K: its 16 scales per 128 lane) */
QL_INLINE __m256i ql_pair_idx(int j) {
    return _mm256_setr_epi16((short)(0xFF00 | 2 * j), (short)(0xFF00 | 2 * j), (short)(0xFF00 | 2 * j),
                             (short)(0xFF00 | 2 * j), (short)(0xFF00 | 2 * j), (short)(0xFF00 | 2 * j),
                             (short)(0xFF00 | 2 * j), (short)(0xFF00 | 2 * j), (short)(0xFF00 | (2 * j + 1)),
                             (short)(0xFF00 | (2 * j + 1)), (short)(0xFF00 | (2 * j + 1)), (short)(0xFF00 | (2 * j + 1)),
                             (short)(0xFF00 | (2 * j + 1)), (short)(0xFF00 | (2 * j + 1)), (short)(0xFF00 | (2 * j + 1)),
                             (short)(0xFF00 | (2 * j + 1)));
}

/* the int32 lanes p (block j of the super-block) times xq[j], into the even / odd partial sum */
#define QL_Q23_ACC(p, j)                                                                          \
    do {                                                                                          \
        __m256 f_ = _mm256_cvtepi32_ps(p), b_ = _mm256_broadcast_ss(xqb + (j));                   \
        if ((j) & 1) od = _mm256_fmadd_ps(f_, b_, od);                                            \
        else ev = _mm256_fmadd_ps(f_, b_, ev);                                                    \
    } while (0)

QL_INLINE float ql_row_q2k(const char *row, const loom_q8x *x, const float *xq, const float *xd, const int16_t *xs16,
                           int64_t nsb, size_t pf) {
    __m256 acc = _mm256_setzero_ps(), bacc = _mm256_setzero_ps();
    const __m256i m3 = _mm256_set1_epi8(3), m12 = _mm256_set1_epi8(12), m4 = _mm256_set1_epi8(0x0F);
    /* the minimums m_g (high nibbles) as words in natural order: lane 0 g = 0..7, lane 1 g = 8..15 */
    const __m256i mins = _mm256_setr_epi8(0, -1, 1, -1, 2, -1, 3, -1, 4, -1, 5, -1, 6, -1, 7, -1, 8, -1, 9, -1, 10, -1,
                                          11, -1, 12, -1, 13, -1, 14, -1, 15, -1);
    for (int64_t i = 0; i < nsb; i++) {
        const loom_block_q2_k *q = (const loom_block_q2_k *)row + i;
        const loom_q8x *xb = x + 8 * i;
        const float *xqb = xq + 8 * i;
        QL_PF_LINES((const char *)q, 84);
        /* the 16 scale bytes in both lanes: low nibbles the scales, high the minimums */
        __m256i sc = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)q->scales));
        __m256i lo = _mm256_and_si256(sc, m4), hi = _mm256_and_si256(_mm256_srli_epi16(sc, 4), m4);
        __m256i pm = _mm256_madd_epi16(_mm256_shuffle_epi8(hi, mins), _mm256_loadu_si256((const __m256i *)(xs16 + 16 * i)));
        __m256 D = _mm256_set1_ps(_cvtsh_ss(q->d)), Dm = _mm256_set1_ps(_cvtsh_ss(q->dmin));
        bacc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(pm), _mm256_mul_ps(Dm, _mm256_loadu_ps(xd + 8 * i)), bacc);
        __m256 ev = _mm256_setzero_ps(), od = _mm256_setzero_ps();
        QL_UNROLL for (int h = 0; h < 2; h++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(q->qs + 32 * h)), r4 = _mm256_srli_epi16(raw, 4);
            /* fields 0..3 of each byte: u, 4u, u, 4u (ql_q23_pow) */
            __m256i u[4] = {_mm256_and_si256(raw, m3), _mm256_and_si256(raw, m12), _mm256_and_si256(r4, m3),
                            _mm256_and_si256(r4, m12)};
            QL_UNROLL for (int k = 0; k < 4; k++) {
                int j = 4 * h + k;
                __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(u[k], _mm256_loadu_si256((const __m256i *)xb[j].qs)),
                                              _mm256_shuffle_epi8(lo, ql_pair_idx(j)));
                QL_Q23_ACC(p, j);
            }
        }
        acc = _mm256_fmadd_ps(_mm256_add_ps(ev, od), D, acc);
    }
    return ql_hsum(_mm256_add_ps(acc, bacc));
}

QL_INLINE float ql_row_q3k(const char *row, const loom_q8x *x, const float *xq, const float *xde, const float *xdo,
                           const int16_t *xse, const int16_t *xso, int64_t nsb, size_t pf) {
    __m256 acc = _mm256_setzero_ps(), bacc = _mm256_setzero_ps();
    const __m256i m15 = _mm256_set1_epi8(15), m33 = _mm256_set1_epi8(0x33), m7 = _mm256_set1_epi8(7),
                  m70 = _mm256_set1_epi8(0x70);
    /* the high bits: nibble v of hmask (blocks 4h .. 4h + 3) -> bit 0 of v at 4, bit 2 at 64 (l02),
     * bit 1 at 4, bit 3 at 64 (l13) */
    const __m256i l02 = _mm256_broadcastsi128_si256(_mm_setr_epi8(0, 4, 0, 4, 64, 68, 64, 68, 0, 4, 0, 4, 64, 68, 64, 68));
    const __m256i l13 = _mm256_broadcastsi128_si256(_mm_setr_epi8(0, 0, 4, 4, 0, 0, 4, 4, 64, 64, 68, 68, 64, 64, 68, 68));
    /* the scales as (sc - 32) * 16 in int16 words, lane 0 word j: scale 2j, lane 1: 2j + 1, from the
     * 16 bytes at scales - 4 (scales[i] at byte 4 + i): the low-nibble byte (il) times 16 (scales
     * 0-7: low nibble) or 1 (8-15: high nibble) masked to bits 4-7, the 2-bit byte (ih: scales[8 +
     * g % 4]) times 2^(8 - 2 (g / 4)) masked to bits 8-9 */
    const __m256i il = _mm256_setr_epi8(4, -1, 6, -1, 8, -1, 10, -1, 4, -1, 6, -1, 8, -1, 10, -1, 5, -1, 7, -1, 9, -1, 11,
                                        -1, 5, -1, 7, -1, 9, -1, 11, -1);
    const __m256i ih = _mm256_setr_epi8(12, -1, 14, -1, 12, -1, 14, -1, 12, -1, 14, -1, 12, -1, 14, -1, 13, -1, 15, -1,
                                        13, -1, 15, -1, 13, -1, 15, -1, 13, -1, 15, -1);
    const __m256i ml = _mm256_setr_epi16(16, 16, 16, 16, 1, 1, 1, 1, 16, 16, 16, 16, 1, 1, 1, 1);
    const __m256i mh = _mm256_setr_epi16(256, 256, 64, 64, 16, 16, 4, 4, 256, 256, 64, 64, 16, 16, 4, 4);
    const __m256i f0 = _mm256_set1_epi16(0xF0), f300 = _mm256_set1_epi16(0x300), c512 = _mm256_set1_epi16(512);
    for (int64_t i = 0; i < nsb; i++) {
        const loom_block_q3_k *q = (const loom_block_q3_k *)row + i;
        const loom_q8x *xb = x + 8 * i;
        const float *xqb = xq + 8 * i;
        QL_PF_LINES((const char *)q, 110);
        __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(q->scales - 4)));
        __m256i wl = _mm256_mullo_epi16(_mm256_shuffle_epi8(v, il), ml), wh = _mm256_mullo_epi16(_mm256_shuffle_epi8(v, ih), mh);
        __m256i seo = _mm256_sub_epi16(_mm256_or_si256(_mm256_and_si256(wl, f0), _mm256_and_si256(wh, f300)), c512);
        __m256 D = _mm256_set1_ps(_cvtsh_ss(q->d));
        /* the offset: -4 d sum_g sc_g * d_x * s_g, even blocks' words against xse, odd against xso
         * (xde / xdo: their d_x / 4, undoing the 16) */
        __m256i pe = _mm256_madd_epi16(seo, _mm256_loadu_si256((const __m256i *)(xse + 16 * i)));
        __m256i po = _mm256_madd_epi16(seo, _mm256_loadu_si256((const __m256i *)(xso + 16 * i)));
        __m256 t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pe), _mm256_loadu_ps(xde + 8 * i),
                                   _mm256_mul_ps(_mm256_cvtepi32_ps(po), _mm256_loadu_ps(xdo + 8 * i)));
        bacc = _mm256_fnmadd_ps(t, D, bacc);
        __m256i hm = _mm256_loadu_si256((const __m256i *)q->hmask);
        __m256i hn[2] = {_mm256_and_si256(hm, m15), _mm256_and_si256(_mm256_srli_epi16(hm, 4), m15)};
        __m256 ev = _mm256_setzero_ps(), od = _mm256_setzero_ps();
        QL_UNROLL for (int h = 0; h < 2; h++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(q->qs + 32 * h));
            /* fields 0 and 2 at bits 0-1 and 4-5 with their high bits at 2 and 6; fields 1 and 3
             * the same after a shift by 2: u = c + 4 at x1 (k = 0, 1) and x16 (k = 2, 3) */
            __m256i w02 = _mm256_or_si256(_mm256_and_si256(raw, m33), _mm256_shuffle_epi8(l02, hn[h]));
            __m256i w13 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 2), m33), _mm256_shuffle_epi8(l13, hn[h]));
            __m256i u[4] = {_mm256_and_si256(w02, m7), _mm256_and_si256(w13, m7), _mm256_and_si256(w02, m70),
                            _mm256_and_si256(w13, m70)};
            QL_UNROLL for (int k = 0; k < 4; k++) {
                int j = 4 * h + k;
                __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(u[k], _mm256_loadu_si256((const __m256i *)xb[j].qs)),
                                              _mm256_shuffle_epi8(seo, ql_word_idx(j)));
                QL_Q23_ACC(p, j);
            }
        }
        acc = _mm256_fmadd_ps(_mm256_add_ps(ev, od), D, acc);
    }
    return ql_hsum(_mm256_add_ps(acc, bacc));
}
#undef QL_Q23_ACC
#endif

#if QL_IQ4_INT
/* IQ4_NL / IQ4_XS decode on AVX2 machines (2026-12-06, session 12; AVX2 flavour only, QL_IQ4_INT;
 * LOOM_CPU_IQ4AVX2=0 gives back the per-block code in ql_row32 / ql_rowk for A/B timing). Two
 * 32-blocks per step: their 2 x 16 nibble bytes side by side in one ymm (IQ4_XS: one 32-byte load;
 * IQ4_NL: a load and a vinserti128 from memory, the blocks being 18 bytes apart), so one mask and
 * one shift+mask give the low nibbles (elements 0-15) of both blocks and the high ones (16-31),
 * with no per-block lane insert. The activation is laid out once per call to match (xp2: per block
 * pair, elements 0-15 of block 2p then of 2p + 1, then elements 16-31 of both). Codes by pshufb
 * from the 16-entry table, the Q8_0 sign trick (maddubs of |c| against x with c's sign), madd
 * with ones (IQ4_NL) or with the pair's two 6-bit scales as int16 words (IQ4_XS, (ls - 32) taken
 * by one in-lane pshufb from the super-block's 8, built once per super-block), the two halves'
 * int32 added: lanes 0-3 hold block 2p's sum, 4-7 block 2p + 1's. Then one conversion and one FMA
 * per pair: IQ4_NL against its d_w x d_x (the 8 f16 d of 8 blocks gathered once by vpinsrw in the
 * order 0 2 4 6 1 3 5 7, times the activation's d in that order, a pair's pair taken by an in-lane
 * vpermilps), IQ4_XS against d_x (xdp, per pair) with the super-block's d applied once at its end.
 * Same integer block sums as loom_quant_dot_ref (|c| <= 127: maddubs pairs <= 32258, no
 * saturation; x 32 scale: |madd lane| < 2^21), f32 rounding aside. */
static const int ql_iq4_ord[8] = {0, 2, 4, 6, 1, 3, 5, 7};

/* maddubs of the pair's codes against the prepared activation: lo = elements 0-15 of both blocks,
 * hi = elements 16-31 (int16 pairs) */
QL_INLINE void ql_iq4_p16(__m256i raw, const int8_t *xp, __m256i tab, __m256i m4, __m256i *plo, __m256i *phi) {
    __m256i cl = _mm256_shuffle_epi8(tab, _mm256_and_si256(raw, m4));
    __m256i ch = _mm256_shuffle_epi8(tab, _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4));
    *plo = _mm256_maddubs_epi16(_mm256_abs_epi8(cl), _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)xp), cl));
    *phi = _mm256_maddubs_epi16(_mm256_abs_epi8(ch), _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(xp + 32)), ch));
}

QL_INLINE uint16_t ql_u16(const char *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* One IQ4_NL row: nb / 8 groups of 8 blocks as above, the last nb % 8 blocks one at a time. */
QL_INLINE float ql_row_iq4nl(const char *row, const int8_t *xp2, const float *xd8, const loom_q8x *x, int64_t nb,
                             size_t pf) {
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)loom_iq4nl_values));
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const int64_t ng = nb / 8;
    for (int64_t g = 0; g < ng; g++) {
        const char *p = row + (size_t)g * 144;
        QL_PF_LINES(p, 144);
        __m128i h = _mm_cvtsi32_si128(ql_u16(p));
        h = _mm_insert_epi16(h, ql_u16(p + 18 * 2), 1), h = _mm_insert_epi16(h, ql_u16(p + 18 * 4), 2);
        h = _mm_insert_epi16(h, ql_u16(p + 18 * 6), 3), h = _mm_insert_epi16(h, ql_u16(p + 18 * 1), 4);
        h = _mm_insert_epi16(h, ql_u16(p + 18 * 3), 5), h = _mm_insert_epi16(h, ql_u16(p + 18 * 5), 6);
        h = _mm_insert_epi16(h, ql_u16(p + 18 * 7), 7);
        __m256 S = _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_loadu_ps(xd8 + 8 * g));
        const int8_t *xg = xp2 + 256 * g;
#define QL_NL_PAIR(k, acc)                                                                                      \
    do {                                                                                                        \
        const char *b_ = p + 36 * (k);                                                                          \
        __m256i raw_ = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(b_ + 2))), \
                                               _mm_loadu_si128((const __m128i *)(b_ + 20)), 1);                 \
        __m256i pl_, ph_;                                                                                       \
        ql_iq4_p16(raw_, xg + 64 * (k), tab, m4, &pl_, &ph_);                                                   \
        __m256i s_ = _mm256_add_epi32(_mm256_madd_epi16(pl_, ones), _mm256_madd_epi16(ph_, ones));             \
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s_), _mm256_permute_ps(S, (k) * 0x55), acc);                  \
    } while (0)
        QL_NL_PAIR(0, acc0);
        QL_NL_PAIR(1, acc1);
        QL_NL_PAIR(2, acc0);
        QL_NL_PAIR(3, acc1);
#undef QL_NL_PAIR
    }
    for (int64_t b = 8 * ng; b < nb; b++) {
        const char *p = row + (size_t)b * 18;
        __m256i c = ql_iq4(ql_nib((const uint8_t *)p + 2));
        acc0 = _mm256_fmadd_ps(ql_dot(c, x[b].qs), _mm256_set1_ps(_cvtsh_ss(ql_u16(p)) * x[b].d), acc0);
    }
    return ql_hsum(_mm256_add_ps(acc0, acc1));
}

/* One IQ4_XS row: nsb super-blocks, four pairs each. */
QL_INLINE float ql_row_iq4xs(const char *row, const int8_t *xp2, const float *xdp, int64_t nsb, size_t pf) {
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)loom_iq4nl_values));
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi16(0x30), c32 = _mm256_set1_epi16(32);
    /* the 2-bit high parts of the scales: block 2k's (bits 4k, 4k + 1 of scales_h) and 2k + 1's (4k + 2,
     * 4k + 3) multiplied up to bits 14-15 (lane 0 word k: block 2k, lane 1: 2k + 1) */
    const __m256i mulh = _mm256_setr_epi16(1 << 14, 1 << 10, 1 << 6, 1 << 2, 0, 0, 0, 0, 1 << 12, 1 << 8, 1 << 4, 1, 0,
                                           0, 0, 0);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nsb; i++) {
        const loom_block_iq4_xs *q = (const loom_block_iq4_xs *)row + i;
        QL_PF_LINES((const char *)q, 136);
        uint32_t sl;
        memcpy(&sl, q->scales_l, 4);
        /* the scales ls - 32 as int16 words, lane 0 word k: block 2k (low nibble of scales_l[k]), lane
         * 1 word k: block 2k + 1 (its high nibble) */
        __m128i b = _mm_cvtsi32_si128((int)sl), n4 = _mm_set1_epi8(0x0F);
        __m256i nib = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_cvtepu8_epi16(_mm_and_si128(b, n4))),
                                              _mm_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(b, 4), n4)), 1);
        __m256i hb = _mm256_and_si256(_mm256_srli_epi16(_mm256_mullo_epi16(_mm256_set1_epi16((short)q->scales_h), mulh), 10), m30);
        __m256i sc = _mm256_sub_epi16(_mm256_or_si256(nib, hb), c32);
        const int8_t *xs = xp2 + 256 * i;
        const float *xf = xdp + 32 * i;
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        QL_UNROLL for (int k = 0; k < 4; k++) {
            __m256i pl, ph, scv = _mm256_shuffle_epi8(sc, ql_word_idx(k));
            ql_iq4_p16(_mm256_loadu_si256((const __m256i *)(q->qs + 32 * k)), xs + 64 * k, tab, m4, &pl, &ph);
            __m256i s = _mm256_add_epi32(_mm256_madd_epi16(pl, scv), _mm256_madd_epi16(ph, scv));
            if (k & 1) s1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_loadu_ps(xf + 8 * k), s1);
            else s0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_loadu_ps(xf + 8 * k), s0);
        }
        acc = _mm256_fmadd_ps(_mm256_add_ps(s0, s1), _mm256_set1_ps(_cvtsh_ss(q->d)), acc);
    }
    return ql_hsum(acc);
}

/* The activation laid out for the pair kernels: xp2 (K bytes), xdp (IQ4_XS: 4 floats per block),
 * xd8 (IQ4_NL: x->d of each whole group of 8 blocks in ql_iq4_ord order). */
static void ql_iq4_prep(loom_dtype t, const loom_q8x *x, int64_t nb, int8_t *xp2, float *xdp, float *xd8) {
    for (int64_t p = 0; p < nb / 2; p++) {
        const loom_q8x *a = x + 2 * p, *b = a + 1;
        int8_t *o = xp2 + 64 * p;
        memcpy(o, a->qs, 16), memcpy(o + 16, b->qs, 16), memcpy(o + 32, a->qs + 16, 16), memcpy(o + 48, b->qs + 16, 16);
        if (t == LOOM_IQ4_XS)
            for (int l = 0; l < 4; l++) xdp[8 * p + l] = a->d, xdp[8 * p + 4 + l] = b->d;
    }
    if (t == LOOM_IQ4_NL)
        for (int64_t g = 0; g < nb / 8; g++)
            for (int i = 0; i < 8; i++) xd8[8 * g + i] = x[8 * g + ql_iq4_ord[i]].d;
}

/* Rows [n0, n1) of IQ4_NL / IQ4_XS by the pair kernels (nb <= 512 blocks). */
static void ql_iq4_span(loom_dtype t, const char *w, size_t rb, const loom_q8x *x, int64_t K, int64_t n0, int64_t n1,
                        float *y, const float *bias, int64_t pf_rows) {
    int64_t nb = K / 32;
    int8_t xp2[32 * 512];
    float xdp[4 * 512], xd8[512];
    ql_iq4_prep(t, x, nb, xp2, xdp, xd8);
    for (int64_t n = n0; n < n1; n++) {
        size_t pf = n + pf_rows < n1 ? (size_t)pf_rows * rb : 0;
        const char *row = w + (size_t)n * rb;
        float v = t == LOOM_IQ4_NL ? ql_row_iq4nl(row, xp2, xd8, x, nb, pf) : ql_row_iq4xs(row, xp2, xdp, K / 256, pf);
        y[n] = v + (bias ? bias[n] : 0.0f);
    }
}

/* IQ4_NL / IQ4_XS prefill on AVX2 machines (2026-12-06, session 12; cpu_qgemm_iq4_ok says when;
 * LOOM_CPU_IQ4GEMM=0 gives the dequantise-to-f32 path). The weight codes c (the table values,
 * -127..113) and the activation codes (loom_q8x_quant's) both as int16 and multiplied by `madd`
 * (vpmaddwd: 16 products a call, exact, no saturation and no sign trick). A panel of QL_PR (16)
 * weight rows is unpacked once per chunk: per 32-block, 16 dwords per row (pairs of codes k, k + 1)
 * transposed so dword lane r (of two ymm) holds row r's pair, and the rows' block scales as floats
 * (IQ4_NL d, IQ4_XS d x (ls - 32), as the reference's). Tile: the panel x 4 activation rows; per
 * pair of k two panel loads, four broadcast dwords of the activation (int16 pairs, prepared once
 * per matmul by cpu_qgemm_iq4_prep) and eight `madd` + `add` into int32 block sums; per block one
 * conversion, scale product and FMA per activation row and ymm into float sums kept in L1. The
 * same integer block sums as loom_quant_dot_ref,
 * f32 rounding aside. */
void cpu_qgemm_iq4_prep(const loom_q8x *xq, int64_t K, int16_t *dst) {
    for (int64_t b = 0; b < K / 32; b++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)xq[b].qs);
        _mm256_storeu_si256((__m256i *)(dst + 32 * b), _mm256_cvtepi8_epi16(_mm256_castsi256_si128(v)));
        _mm256_storeu_si256((__m256i *)(dst + 32 * b + 16), _mm256_cvtepi8_epi16(_mm256_extracti128_si256(v, 1)));
    }
}

#define QL_PR 16 /* weight rows per panel: two ymm of int32 lanes */

/* 32-block b of an IQ4_NL / IQ4_XS row: its 16 nibble bytes, and (*d) its scale (IQ4_XS: the f16 d
 * times ls - 32, one product, as loom_dequant_row). */
static inline const uint8_t *ql_iq4_block(loom_dtype t, const char *row, int64_t b, float *d) {
    if (t == LOOM_IQ4_NL) {
        const loom_block_iq4_nl *q = (const loom_block_iq4_nl *)row + b;
        *d = _cvtsh_ss(q->d);
        return q->qs;
    }
    const loom_block_iq4_xs *q = (const loom_block_iq4_xs *)row + b / 8;
    *d = _cvtsh_ss(q->d) * (float)loom_iq4xs_scale(q->scales_h, q->scales_l, (int)(b % 8));
    return q->qs + 16 * (b % 8);
}

/* Rows n .. n + nr - 1 (nr <= QL_PR; the rest zero) into the panel pan (per 32-block b, per pair
 * kp of its codes: QL_PR dwords, row r's pair in dword r) and their block scales ps (QL_PR floats
 * per block). */
static void ql_iq4_panel(loom_dtype t, const char *w, size_t rb, int64_t n, int nr, int64_t K, int32_t *pan, float *ps) {
    _Alignas(32) int16_t tmp[QL_PR][32];
    for (int64_t b = 0; b < K / 32; b++) {
        for (int r = 0; r < QL_PR; r++) {
            if (r >= nr) {
                memset(tmp[r], 0, sizeof tmp[r]);
                ps[QL_PR * b + r] = 0;
                continue;
            }
            float A;
            __m256i c = ql_iq4(ql_nib(ql_iq4_block(t, w + (size_t)(n + r) * rb, b, &A)));
            _mm256_store_si256((__m256i *)tmp[r], _mm256_cvtepi8_epi16(_mm256_castsi256_si128(c)));
            _mm256_store_si256((__m256i *)(tmp[r] + 16), _mm256_cvtepi8_epi16(_mm256_extracti128_si256(c, 1)));
            ps[QL_PR * b + r] = A;
        }
        int32_t *pb = pan + 16 * QL_PR * b;
        for (int kp = 0; kp < 16; kp++)
            for (int r = 0; r < QL_PR; r++) memcpy(pb + QL_PR * kp + r, &tmp[r][2 * kp], 4);
    }
}

/* an activation pair of int16 codes broadcast to every dword */
QL_INLINE __m256i ql_x2(const int16_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* One activation row's epilogue of a block, both tiles: the 16 outputs at o += int32 sums (a, c:
 * rows 0-7, 8-15) x the rows' scales (S0, S1) x d_x, plus the minimum terms (MN 1: B0 x s, MN 2:
 * B0 x s0 + B1 x s1, with s = d_x x the activation's code sums). */
QL_INLINE void ql_acc16(const int MN, float *o, __m256i a, __m256i c, __m256 S0, __m256 S1, __m256 d, __m256 B00,
                        __m256 B01, __m256 B10, __m256 B11, __m256 s0, __m256 s1) {
    __m256 l = _mm256_loadu_ps(o), h = _mm256_loadu_ps(o + 8);
    if (MN == 1) {
        l = _mm256_fmadd_ps(B00, s0, l), h = _mm256_fmadd_ps(B01, s0, h);
    } else if (MN == 2) {
        l = _mm256_fmadd_ps(B00, s0, _mm256_fmadd_ps(B10, s1, l));
        h = _mm256_fmadd_ps(B01, s0, _mm256_fmadd_ps(B11, s1, h));
    }
    _mm256_storeu_ps(o, _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), _mm256_mul_ps(S0, d), l));
    _mm256_storeu_ps(o + 8, _mm256_fmadd_ps(_mm256_cvtepi32_ps(c), _mm256_mul_ps(S1, d), h));
}

/* The panel against activation rows m0 .. m0 + MR - 1: out[m * QL_PR + r] = row r . x row m. */
QL_INLINE void ql_iq4_tile(const int MR, const int MN, const int32_t *pan, const float *ps, const float *pm,
                           const int16_t *x16, const loom_q8x *xq, int64_t K, float *out) {
    const int64_t nb = K / 32;
    const int16_t *x0 = x16, *x1 = x16 + (MR > 1 ? K : 0), *x2 = x16 + (MR > 2 ? 2 * K : 0), *x3 = x16 + (MR > 3 ? 3 * K : 0);
    for (int i = 0; i < MR * QL_PR; i++) out[i] = 0;
    for (int64_t b = 0; b < nb; b++) {
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
        const int32_t *pb = pan + 16 * QL_PR * b;
        const int64_t o = 32 * b;
        _Pragma("GCC unroll 16") for (int kp = 0; kp < 16; kp++) {
            __m256i w0 = _mm256_load_si256((const __m256i *)(pb + QL_PR * kp));
            __m256i w1 = _mm256_load_si256((const __m256i *)(pb + QL_PR * kp + 8));
            __m256i xv = ql_x2(x0 + o + 2 * kp);
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(w0, xv)), c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(w1, xv));
            if (MR > 1) {
                xv = ql_x2(x1 + o + 2 * kp);
                a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(w0, xv)), c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(w1, xv));
            }
            if (MR > 2) {
                xv = ql_x2(x2 + o + 2 * kp);
                a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(w0, xv)), c2 = _mm256_add_epi32(c2, _mm256_madd_epi16(w1, xv));
            }
            if (MR > 3) {
                xv = ql_x2(x3 + o + 2 * kp);
                a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(w0, xv)), c3 = _mm256_add_epi32(c3, _mm256_madd_epi16(w1, xv));
            }
            /* (keeps GCC from re-associating the sums into trees of products, which spilled:
             * 54-64 against 100 GFLOP/s) */
            __asm__("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(c0), "+x"(c1), "+x"(c2), "+x"(c3));
        }
        __m256 S0 = _mm256_loadu_ps(ps + QL_PR * b), S1 = _mm256_loadu_ps(ps + QL_PR * b + 8);
        /* the k-quants' minimum terms (MN 1: one B per 32-block, MN 2: one per 16): B x (d_x x the
         * activation's code sums, loom_q8x s[]) */
        __m256 B00 = _mm256_setzero_ps(), B01 = B00, B10 = B00, B11 = B00;
        if (MN) B00 = _mm256_loadu_ps(pm + 2 * QL_PR * b), B01 = _mm256_loadu_ps(pm + 2 * QL_PR * b + 8);
        if (MN == 2) B10 = _mm256_loadu_ps(pm + 2 * QL_PR * b + 16), B11 = _mm256_loadu_ps(pm + 2 * QL_PR * b + 24);
#define QL_ACC(m, a, c)                                                                                      \
    do {                                                                                                     \
        const loom_q8x *q_ = xq + (m) * nb + b;                                                              \
        float s0_ = MN == 1 ? q_->d * (float)(q_->s[0] + q_->s[1]) : MN == 2 ? q_->d * (float)q_->s[0] : 0;  \
        float s1_ = MN == 2 ? q_->d * (float)q_->s[1] : 0;                                                   \
        ql_acc16(MN, out + (m) * QL_PR, a, c, S0, S1, _mm256_set1_ps(q_->d), B00, B01, B10, B11,             \
                 _mm256_set1_ps(s0_), _mm256_set1_ps(s1_));                                                  \
    } while (0)
        QL_ACC(0, a0, c0);
        if (MR > 1) QL_ACC(1, a1, c1);
        if (MR > 2) QL_ACC(2, a2, c2);
        if (MR > 3) QL_ACC(3, a3, c3);
#undef QL_ACC
    }
}

/* ---- the k-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) through the same int16 tile (2026-12-06, session
 * 13). Each 32-block b of a row is A_b x c + B (c int16 codes, A_b a float; B per 32 or per 16
 * elements, the minimum terms of Q2_K / Q4_K / Q5_K): Q4_K / Q5_K c = sc x q (<= 63 x 31), A = d,
 * B = -(dmin x m); Q2_K c = sc x q (the 4-bit scale of each 16 folded into the code, 0..45), A = d,
 * B per 16 = -(dmin x m); Q3_K c = (sc - 32) x q (-128..128), A = d; Q6_K c = sc x (q - 32)
 * (-4096..4096), A = d. The block's integer sum then carries the per-16 scales, and the minimum
 * terms take the activation's code sums (loom_q8x s[]): the same real block product as
 * loom_quant_dot_ref, f32 rounding aside. */

/* 32 int8 codes (a ymm) to 32 int16 at dst, the first 16 times s0, the last 16 times s1. */
QL_INLINE void ql_k_w16(__m256i c8, int16_t *dst, int s0, int s1) {
    __m256i lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(c8)), hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(c8, 1));
    _mm256_store_si256((__m256i *)dst, _mm256_mullo_epi16(lo, _mm256_set1_epi16((short)s0)));
    _mm256_store_si256((__m256i *)(dst + 16), _mm256_mullo_epi16(hi, _mm256_set1_epi16((short)s1)));
}

/* bit j of each of 32 bytes as 0 / v */
QL_INLINE __m256i ql_bit(__m256i h, int j, char v) {
    __m256i m = _mm256_set1_epi8((char)(1 << j));
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(h, m), m), _mm256_set1_epi8(v));
}

/* The 2 bits at shift 2 * (j % 4) of the 32 bytes at qs + 32 * (j / 4): Q2_K / Q3_K's low codes of
 * 32-block j. */
QL_INLINE __m256i ql_2bits(const uint8_t *qs, int j) {
    __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * (j / 4)));
    return _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(2 * (j % 4))), _mm256_set1_epi8(3));
}

static void ql_k8_unpack(loom_dtype t, const char *sb, uint8_t (*u)[32], int *sc, float *A, float *B);

/* One super-block of a k-quant row: its 8 32-blocks' codes (c[j], as above), A[j], and the minimum
 * terms B[2j], B[2j + 1] (of elements 0..15 and 16..31 of block j; 0 where the type has none): the
 * 8-bit form (ql_k8_unpack, below) with the per-16 scales and Q3_K / Q6_K's offsets 4 / 32 folded
 * into the codes (Q4_K / Q5_K then c = sc x q, A = d). */
static void ql_k_unpack(loom_dtype t, const char *sb, int16_t (*c)[32], float *A, float *B) {
    _Alignas(32) uint8_t u[8][32];
    int sc[16];
    ql_k8_unpack(t, sb, u, sc, A, B);
    const int off = t == LOOM_Q3_K ? 4 : t == LOOM_Q6_K ? 32 : 0;
    for (int j = 0; j < 8; j++) {
        __m256i v = _mm256_sub_epi8(_mm256_load_si256((const __m256i *)u[j]), _mm256_set1_epi8((char)off));
        ql_k_w16(v, c[j], sc[2 * j], sc[2 * j + 1]);
        if (off) B[2 * j] = B[2 * j + 1] = 0;
    }
}

/* 8 rows of 8 dwords (row i at src + stride * i bytes, 32-byte aligned) transposed: dword k of row i
 * to dst[QL_PR * k + i]. */
QL_INLINE void ql_t8x8(const void *src, size_t stride, int32_t *dst) {
    __m256i r[8], t[8], u[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_load_si256((const __m256i *)((const char *)src + stride * i));
    for (int i = 0; i < 8; i += 2) t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]), t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]), u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]), u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int k = 0; k < 4; k++) {
        _mm256_store_si256((__m256i *)(dst + QL_PR * k), _mm256_permute2x128_si256(u[k], u[k + 4], 0x20));
        _mm256_store_si256((__m256i *)(dst + QL_PR * (k + 4)), _mm256_permute2x128_si256(u[k], u[k + 4], 0x31));
    }
}

/* The k-quant panel: as ql_iq4_panel (pan, ps), and pm: per block 2 x QL_PR floats, the rows' B of
 * elements 0..15 then of 16..31. */
static void ql_k_panel(loom_dtype t, const char *w, size_t rb, int64_t n, int nr, int64_t K, int32_t *pan, float *ps,
                       float *pm) {
    _Alignas(32) int16_t tmp[QL_PR][8][32];
    float A[8], B[16];
    size_t bb = loom_dtype_block_bytes(t);
    for (int64_t s = 0; s < K / 256; s++) {
        for (int r = 0; r < QL_PR; r++) {
            if (r < nr) {
                ql_k_unpack(t, w + (size_t)(n + r) * rb + (size_t)s * bb, tmp[r], A, B);
            } else {
                memset(tmp[r], 0, sizeof tmp[r]);
                memset(A, 0, sizeof A), memset(B, 0, sizeof B);
            }
            for (int j = 0; j < 8; j++) {
                int64_t b = 8 * s + j;
                ps[QL_PR * b + r] = A[j];
                pm[2 * QL_PR * b + r] = B[2 * j], pm[2 * QL_PR * b + QL_PR + r] = B[2 * j + 1];
            }
        }
        for (int j = 0; j < 8; j++) {
            int32_t *pb = pan + 16 * QL_PR * (8 * s + j);
            size_t st = sizeof tmp[0]; /* bytes from one row's block to the next row's */
            ql_t8x8(&tmp[0][j][0], st, pb);           /* rows 0-7, pairs 0-7 */
            ql_t8x8(&tmp[0][j][16], st, pb + 8 * QL_PR); /* rows 0-7, pairs 8-15 */
            ql_t8x8(&tmp[8][j][0], st, pb + 8);
            ql_t8x8(&tmp[8][j][16], st, pb + 8 * QL_PR + 8);
        }
    }
}

/* ---- the k-quants by 8-bit codes (the default; LOOM_CPU_KGEMM=2 gives the int16 tile above, for
 * A/B). Every 32-block as unsigned codes u (0..63), an integer scale per 16 elements and float A, B:
 * element e = A x sc[e / 16] x u[e] + B[e / 16]. Q4_K / Q5_K u = q, sc = the 6-bit scale (both
 * halves), A = d, B = -(dmin x m); Q2_K u = q, sc = the 4-bit scale, A = d, B = -(dmin x m); Q3_K
 * u = q + 4 (0..7), sc = the 6-bit scale - 32, A = d, B = -(d x 4 sc); Q6_K u = the 6 bits (0..63),
 * sc = the int8 scale, A = d, B = -(d x 32 sc). The tile multiplies u (unsigned) by the activation's
 * int8 codes with `maddubs` (4 products a dword: pairs summed into int16, never saturating as
 * 2 x 63 x 127 < 32767), adds 4 of them in int16 (8 products, <= 8 x 31 x 127 = 31496; Q6_K: 2 of
 * them, <= 4 x 63 x 127 = 32004), then one `madd` with the rows' sc words per 16 elements (per 8
 * for Q6_K) into int32: a 32-block's integer sum sum sc x u x q_x, exact. The minimum / offset
 * terms take the activation's code sums (loom_q8x s[]). */

/* One super-block of a k-quant row as above: 8 32-blocks' codes u[j], their scales sc[2j], sc[2j+1],
 * A[j], and B[2j], B[2j + 1]. */
static void ql_k8_unpack(loom_dtype t, const char *sb, uint8_t (*u)[32], int *sc, float *A, float *B) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    switch (t) {
    case LOOM_Q4_K:
    case LOOM_Q5_K: {
        const loom_block_q4_k *q4 = (const loom_block_q4_k *)sb;
        const loom_block_q5_k *q5 = (const loom_block_q5_k *)sb;
        const uint8_t *qs = t == LOOM_Q4_K ? q4->qs : q5->qs;
        float d = _cvtsh_ss(q4->d), dm = _cvtsh_ss(q4->dmin);
        uint8_t s8[16];
        loom_k4_scales8(q4->scales, s8);
        __m256i h = t == LOOM_Q5_K ? _mm256_loadu_si256((const __m256i *)q5->qh) : _mm256_setzero_si256();
        for (int p = 0; p < 4; p++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * p));
            __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            if (t == LOOM_Q5_K) lo = _mm256_or_si256(lo, ql_bit(h, 2 * p, 16)), hi = _mm256_or_si256(hi, ql_bit(h, 2 * p + 1, 16));
            _mm256_store_si256((__m256i *)u[2 * p], lo);
            _mm256_store_si256((__m256i *)u[2 * p + 1], hi);
        }
        for (int j = 0; j < 8; j++) {
            sc[2 * j] = sc[2 * j + 1] = s8[j];
            A[j] = d, B[2 * j] = B[2 * j + 1] = -(dm * (float)s8[8 + j]);
        }
        return;
    }
    case LOOM_Q2_K: {
        const loom_block_q2_k *q = (const loom_block_q2_k *)sb;
        float d = _cvtsh_ss(q->d), dm = _cvtsh_ss(q->dmin);
        for (int j = 0; j < 8; j++) {
            _mm256_store_si256((__m256i *)u[j], ql_2bits(q->qs, j));
            for (int h = 0; h < 2; h++) sc[2 * j + h] = q->scales[2 * j + h] & 0xF, B[2 * j + h] = -(dm * (float)(q->scales[2 * j + h] >> 4));
            A[j] = d;
        }
        return;
    }
    case LOOM_Q3_K: {
        const loom_block_q3_k *q = (const loom_block_q3_k *)sb;
        float d = _cvtsh_ss(q->d);
        __m256i h = _mm256_loadu_si256((const __m256i *)q->hmask);
        for (int j = 0; j < 8; j++) {
            _mm256_store_si256((__m256i *)u[j], _mm256_or_si256(ql_2bits(q->qs, j), ql_bit(h, j, 4)));
            for (int k = 0; k < 2; k++) sc[2 * j + k] = loom_q3k_scale(q->scales, 2 * j + k), B[2 * j + k] = -(d * (float)(4 * sc[2 * j + k]));
            A[j] = d;
        }
        return;
    }
    default: { /* Q6_K */
        const loom_block_q6_k *q = (const loom_block_q6_k *)sb;
        float d = _cvtsh_ss(q->d);
        for (int j = 0; j < 8; j++) {
            int hf = j / 4, k = j % 4;
            __m256i l = _mm256_loadu_si256((const __m256i *)(q->ql + 64 * hf + 32 * (k & 1)));
            l = k < 2 ? _mm256_and_si256(l, m4) : _mm256_and_si256(_mm256_srli_epi16(l, 4), m4);
            __m256i hb = _mm256_loadu_si256((const __m256i *)(q->qh + 32 * hf));
            hb = _mm256_and_si256(_mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * k)), _mm256_set1_epi8(3));
            _mm256_store_si256((__m256i *)u[j], _mm256_or_si256(l, _mm256_slli_epi16(hb, 4)));
            for (int e = 0; e < 2; e++) sc[2 * j + e] = q->scales[2 * j + e], B[2 * j + e] = -(d * (float)(32 * sc[2 * j + e]));
            A[j] = d;
        }
        return;
    }
    }
}

/* Blocks g .. g + gb - 1 (gb <= 8) of a Q4_1 / Q5_0 / Q5_1 row in the same form (u = q, 0..15 /
 * 0..31; sc = 1; A = d; B = m for Q4_1 / Q5_1, -16 d for Q5_0: both halves). */
static void ql_k8_unpack32(loom_dtype t, const char *row, int64_t g, int gb, uint8_t (*u)[32], int *sc, float *A,
                           float *B) {
    for (int j = 0; j < gb; j++) {
        float a2[2], bm[2];
        __m256i c = ql_block(t, row, g + j, a2, bm); /* (ql_block: Q5_0's codes signed, A = d) */
        if (t == LOOM_Q5_0) c = _mm256_add_epi8(c, _mm256_set1_epi8(16));
        float a = a2[0];
        _mm256_store_si256((__m256i *)u[j], c);
        sc[2 * j] = sc[2 * j + 1] = 1;
        A[j] = a;
        B[2 * j] = B[2 * j + 1] = t == LOOM_Q5_0 ? -(16.0f * a) : bm[0];
    }
}

/* Rows n .. n + nr - 1 (the rest zero) into the 8-bit panel pan (per 32-block b, per quad kq of its
 * codes: QL_PR dwords, row r's 4 codes in dword r), psc (per block, per half: QL_PR dwords, row r's
 * sc as two int16 words), ps (A: QL_PR floats per block) and pm (B: per block 2 x QL_PR floats,
 * elements 0..15 then 16..31). */
static void ql_k8_panel(loom_dtype t, const char *w, size_t rb, int64_t n, int nr, int64_t K, int32_t *pan, int32_t *psc,
                        float *ps, float *pm) {
    _Alignas(32) uint8_t tmp[QL_PR][8][32];
    int sc[16];
    float A[8], B[16];
    size_t bb = loom_dtype_block_bytes(t);
    const bool k = loom_dtype_blck(t) == 256;
    const int64_t nbk = K / 32;
    for (int64_t s = 0; s < (nbk + 7) / 8; s++) { /* groups of 8 32-blocks: a super-block */
        const int gb = nbk - 8 * s < 8 ? (int)(nbk - 8 * s) : 8;
        for (int r = 0; r < QL_PR; r++) {
            if (r < nr && k) {
                ql_k8_unpack(t, w + (size_t)(n + r) * rb + (size_t)s * bb, tmp[r], sc, A, B);
            } else if (r < nr) {
                ql_k8_unpack32(t, w + (size_t)(n + r) * rb, 8 * s, gb, tmp[r], sc, A, B);
            } else {
                memset(tmp[r], 0, sizeof tmp[r]);
                memset(sc, 0, sizeof sc), memset(A, 0, sizeof A), memset(B, 0, sizeof B);
            }
            for (int j = 0; j < gb; j++) {
                int64_t b = 8 * s + j;
                ps[QL_PR * b + r] = A[j];
                pm[2 * QL_PR * b + r] = B[2 * j], pm[2 * QL_PR * b + QL_PR + r] = B[2 * j + 1];
                for (int h = 0; h < 2; h++)
                    psc[2 * QL_PR * b + QL_PR * h + r] = (int32_t)(((uint32_t)(uint16_t)sc[2 * j + h]) * 0x10001u);
            }
        }
        for (int j = 0; j < gb; j++) {
            int32_t *pb = pan + 8 * QL_PR * (8 * s + j);
            ql_t8x8(&tmp[0][j][0], sizeof tmp[0], pb); /* rows 0-7 */
            ql_t8x8(&tmp[8][j][0], sizeof tmp[0], pb + 8);
        }
    }
}

/* an activation quad of int8 codes broadcast to every dword */
QL_INLINE __m256i ql_x4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* The 8-bit panel against activation rows 0 .. MR - 1 of xq: out[m * QL_PR + r] = row r . x row m.
 * MN: the minimum terms as ql_iq4_tile's; Q6: Q6_K's codes (int16 sums of 2 quads, not 4). */
QL_INLINE void ql_k8_tile(const int MR, const int MN, const bool Q6, const int32_t *pan, const int32_t *psc,
                          const float *ps, const float *pm, const loom_q8x *xq, const float *xf, int64_t K, float *out) {
    const int64_t nb = K / 32;
    const loom_q8x *q0 = xq, *q1 = xq + (MR > 1 ? nb : 0), *q2 = xq + (MR > 2 ? 2 * nb : 0);
    const float *f0 = xf, *f1 = xf + (MR > 1 ? 4 * nb : 0), *f2 = xf + (MR > 2 ? 8 * nb : 0);
    for (int i = 0; i < MR * QL_PR; i++) out[i] = 0;
    for (int64_t b = 0; b < nb; b++) {
        const __m256i z = _mm256_setzero_si256();
        __m256i a0 = z, a1 = z, a2 = z, c0 = z, c1 = z, c2 = z; /* int32 block sums, rows 0-7 / 8-15 */
        const int32_t *pb = pan + 8 * QL_PR * b;
        const int32_t *sb = psc + 2 * QL_PR * b;
        const int8_t *x0 = q0[b].qs, *x1 = q1[b].qs, *x2 = q2[b].qs;
        for (int g = 0; g < (Q6 ? 4 : 2); g++) {            /* groups of quads with one sc */
            __m256i t0 = z, t1 = z, t2 = z, e0 = z, e1 = z, e2 = z;     /* int16 sums */
            const int nq = Q6 ? 2 : 4;
            _Pragma("GCC unroll 4") for (int k = 0; k < nq; k++) {
                int kq = nq * g + k;
                __m256i w0 = _mm256_load_si256((const __m256i *)(pb + QL_PR * kq));
                __m256i w1 = _mm256_load_si256((const __m256i *)(pb + QL_PR * kq + 8));
                __m256i xv = ql_x4(x0 + 4 * kq);
                t0 = _mm256_add_epi16(t0, _mm256_maddubs_epi16(w0, xv)), e0 = _mm256_add_epi16(e0, _mm256_maddubs_epi16(w1, xv));
                if (MR > 1) {
                    xv = ql_x4(x1 + 4 * kq);
                    t1 = _mm256_add_epi16(t1, _mm256_maddubs_epi16(w0, xv)), e1 = _mm256_add_epi16(e1, _mm256_maddubs_epi16(w1, xv));
                }
                if (MR > 2) {
                    xv = ql_x4(x2 + 4 * kq);
                    t2 = _mm256_add_epi16(t2, _mm256_maddubs_epi16(w0, xv)), e2 = _mm256_add_epi16(e2, _mm256_maddubs_epi16(w1, xv));
                }
                __asm__("" : "+x"(t0), "+x"(t1), "+x"(t2), "+x"(e0), "+x"(e1), "+x"(e2));
            }
            const int32_t *sg = sb + QL_PR * (Q6 ? g / 2 : g); /* the half's sc words */
            __m256i s0 = _mm256_load_si256((const __m256i *)sg), s1 = _mm256_load_si256((const __m256i *)(sg + 8));
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(t0, s0)), c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(e0, s1));
            if (MR > 1) a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(t1, s0)), c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(e1, s1));
            if (MR > 2) a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(t2, s0)), c2 = _mm256_add_epi32(c2, _mm256_madd_epi16(e2, s1));
            __asm__("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(c0), "+x"(c1), "+x"(c2));
        }
        __m256 S0 = _mm256_loadu_ps(ps + QL_PR * b), S1 = _mm256_loadu_ps(ps + QL_PR * b + 8);
        __m256 B00 = _mm256_loadu_ps(pm + 2 * QL_PR * b), B01 = _mm256_loadu_ps(pm + 2 * QL_PR * b + 8), B10 = B00, B11 = B01;
        if (MN == 2) B10 = _mm256_loadu_ps(pm + 2 * QL_PR * b + 16), B11 = _mm256_loadu_ps(pm + 2 * QL_PR * b + 24);
#define QL_ACC(m, f, a, c)                                                                                   \
    do {                                                                                                     \
        const float *f_ = (f) + 4 * b; /* d, d s0, d s1, d (s0 + s1) */                                      \
        ql_acc16(MN, out + (m) * QL_PR, a, c, S0, S1, _mm256_broadcast_ss(f_), B00, B01, B10, B11,           \
                 _mm256_broadcast_ss(f_ + (MN == 1 ? 3 : 1)), _mm256_broadcast_ss(f_ + 2));                  \
    } while (0)
        QL_ACC(0, f0, a0, c0);
        if (MR > 1) QL_ACC(1, f1, a1, c1);
        if (MR > 2) QL_ACC(2, f2, a2, c2);
#undef QL_ACC
    }
}

static int ql_k8_gemm(loom_dtype t, const void *w, size_t row_bytes, const loom_q8x *xq, int64_t M, int64_t K, int64_t n0,
                      int64_t n1, float *y, int64_t ldy, const float *bias) {
    const int64_t nb = K / 32;
    int32_t *pan = loom_malloc_aligned(sizeof(int32_t) * 8 * QL_PR * (size_t)nb);
    int32_t *psc = loom_malloc_aligned(sizeof(int32_t) * 2 * QL_PR * (size_t)nb);
    float *ps = malloc(sizeof(float) * QL_PR * (size_t)nb), *pm = malloc(sizeof(float) * 2 * QL_PR * (size_t)nb);
    float *xf = malloc(sizeof(float) * 4 * (size_t)(M * nb)); /* per activation block: d, d s0, d s1, d (s0 + s1) */
    if (!pan || !psc || !ps || !pm || !xf) {
        loom_free_aligned(pan), loom_free_aligned(psc);
        free(ps), free(pm), free(xf);
        return -1;
    }
    for (int64_t i = 0; i < M * nb; i++) {
        float d = xq[i].d;
        xf[4 * i] = d, xf[4 * i + 1] = d * (float)xq[i].s[0], xf[4 * i + 2] = d * (float)xq[i].s[1];
        xf[4 * i + 3] = d * (float)(xq[i].s[0] + xq[i].s[1]);
    }
    float out[3 * QL_PR];
    static _Atomic int pf_env = INT_MIN; /* LOOM_CPU_KGEMM_PF=0: no prefetch of the next panel (A/B) */
    const bool pf = cpu_env_int_once(&pf_env, "LOOM_CPU_KGEMM_PF", 1) != 0;
    const int64_t ntiles = (M + 2) / 3;
    for (int64_t n = n0; n < n1; n += QL_PR) {
        int nr = n1 - n < QL_PR ? (int)(n1 - n) : QL_PR;
        ql_k8_panel(t, w, row_bytes, n, nr, K, pan, psc, ps, pm);
        /* the next panel's rows (contiguous) into L2 a few lines per tile, while this one computes:
         * without it the panel's first reads missed (16% of the time in it, perf) */
        const char *nx = (const char *)w + (size_t)(n + QL_PR) * row_bytes;
        int64_t nlines = pf && n + QL_PR < n1 ? (int64_t)((size_t)(n1 - n - QL_PR < QL_PR ? n1 - n - QL_PR : QL_PR) * row_bytes + 63) / 64 : 0;
        int64_t per = (nlines + ntiles - 1) / ntiles, line = 0;
        for (int64_t m0 = 0; m0 < M; m0 += 3) {
            int mr = M - m0 < 3 ? (int)(M - m0) : 3;
            const loom_q8x *qm = xq + m0 * nb;
            const float *fm = xf + 4 * m0 * nb;
            for (int64_t e = line + per < nlines ? line + per : nlines; line < e; line++) _mm_prefetch(nx + 64 * line, _MM_HINT_T1);
#define QL_TILES(MN, Q6)                                                               \
    switch (mr) {                                                                      \
    case 3: ql_k8_tile(3, MN, Q6, pan, psc, ps, pm, qm, fm, K, out); break;                \
    case 2: ql_k8_tile(2, MN, Q6, pan, psc, ps, pm, qm, fm, K, out); break;                \
    default: ql_k8_tile(1, MN, Q6, pan, psc, ps, pm, qm, fm, K, out); break;               \
    }
            if (t == LOOM_Q6_K) QL_TILES(2, true)
            else if (t != LOOM_Q2_K && t != LOOM_Q3_K) QL_TILES(1, false) /* Q4_K, Q5_K, Q4_1, Q5_0, Q5_1 */
            else QL_TILES(2, false)
#undef QL_TILES
            for (int m = 0; m < mr; m++)
                for (int r = 0; r < nr; r++) y[(m0 + m) * ldy + n + r] = out[QL_PR * m + r] + (bias ? bias[n + r] : 0.0f);
        }
    }
    loom_free_aligned(pan), loom_free_aligned(psc);
    free(ps), free(pm), free(xf);
    return 0;
}

int cpu_qgemm_i16_avx2(loom_dtype t, bool tile16, const void *w, size_t row_bytes, const loom_q8x *xq, const int16_t *x16,
                       int64_t M, int64_t K, int64_t n0, int64_t n1, float *y, int64_t ldy, const float *bias) {
    const int64_t nb = K / 32;
    const bool kq = t != LOOM_IQ4_NL && t != LOOM_IQ4_XS;
    if (kq ? tile16 && loom_dtype_blck(t) != 256 : !tile16) return -1; /* a tile the type has not */
    if (!tile16) return ql_k8_gemm(t, w, row_bytes, xq, M, K, n0, n1, y, ldy, bias);
    /* minimum terms: none (IQ4, Q3_K, Q6_K), one per 32 (Q4_K, Q5_K), one per 16 (Q2_K) */
    const int mn = t == LOOM_Q2_K ? 2 : t == LOOM_Q4_K || t == LOOM_Q5_K ? 1 : 0;
    int32_t *pan = loom_malloc_aligned(sizeof(int32_t) * QL_PR * (size_t)(K / 2));
    float *ps = malloc(sizeof(float) * QL_PR * (size_t)nb), *pm = kq ? malloc(sizeof(float) * 2 * QL_PR * (size_t)nb) : NULL;
    if (!pan || !ps || (kq && !pm)) {
        loom_free_aligned(pan);
        free(ps), free(pm);
        return -1;
    }
    float out[4 * QL_PR];
    for (int64_t n = n0; n < n1; n += QL_PR) {
        int nr = n1 - n < QL_PR ? (int)(n1 - n) : QL_PR;
        if (kq) ql_k_panel(t, w, row_bytes, n, nr, K, pan, ps, pm);
        else ql_iq4_panel(t, w, row_bytes, n, nr, K, pan, ps);
        for (int64_t m0 = 0; m0 < M; m0 += 4) {
            int mr = M - m0 < 4 ? (int)(M - m0) : 4;
            const int16_t *xm = x16 + m0 * K;
            const loom_q8x *qm = xq + m0 * nb;
#define QL_TILES(MN)                                                                   \
    switch (mr) {                                                                      \
    case 4: ql_iq4_tile(4, MN, pan, ps, pm, xm, qm, K, out); break;                    \
    case 3: ql_iq4_tile(3, MN, pan, ps, pm, xm, qm, K, out); break;                    \
    case 2: ql_iq4_tile(2, MN, pan, ps, pm, xm, qm, K, out); break;                    \
    default: ql_iq4_tile(1, MN, pan, ps, pm, xm, qm, K, out); break;                   \
    }
            if (mn == 2) QL_TILES(2)
            else if (mn == 1) QL_TILES(1)
            else QL_TILES(0)
#undef QL_TILES
            for (int m = 0; m < mr; m++)
                for (int r = 0; r < nr; r++) y[(m0 + m) * ldy + n + r] = out[QL_PR * m + r] + (bias ? bias[n + r] : 0.0f);
        }
    }
    loom_free_aligned(pan);
    free(ps), free(pm);
    return 0;
}
#undef QL_PR

/* An IQ4_NL / IQ4_XS row (K elements, whole blocks of the type) to f32, as loom_dequant_row
 * (each value d * c, IQ4_XS's d the f16 d times ls - 32 first: the same single products, so the
 * same floats), for the prefill's dequantise-then-f32-GEMM path. */
void QL_FN(cpu_dequant_iq4_)(loom_dtype t, const void *row, float *y, int64_t K) {
    for (int64_t b = 0; b < K / 32; b++, y += 32) {
        float dl;
        __m256i c = ql_iq4(ql_nib(ql_iq4_block(t, (const char *)row, b, &dl)));
        __m128i c0 = _mm256_castsi256_si128(c), c1 = _mm256_extracti128_si256(c, 1);
        __m256 d = _mm256_set1_ps(dl);
        _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c0)), d));
        _mm256_storeu_ps(y + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(c0, 8))), d));
        _mm256_storeu_ps(y + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c1)), d));
        _mm256_storeu_ps(y + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(c1, 8))), d));
    }
}
#endif

#if QL_Q32_PAIR
/* Q4_1 / Q5_0 / Q5_1 decode on AVX2 machines (2026-12-06, session 14; AVX2 flavour only,
 * QL_Q32_PAIR; LOOM_CPU_Q32GEMV=0 gives back the per-block code in ql_row32, for A/B timing). Two
 * weight rows a pass sharing each activation load, groups of 8 blocks, two blocks (2k, 2k + 1) a
 * step: both blocks' 16 nibble bytes in one ymm (a load and a vinserti128 from memory), so one mask
 * gives the low nibbles (elements 0-15) of both and one shift + mask the high ones (16-31), against
 * the activation laid out to match once per call (ql_q32_prep). The 5th bits (Q5_0 / Q5_1): one
 * 32-byte load at block 2k's qh holds its word in lane 0 and 2k + 1's in lane 1 (at byte bb - 16);
 * one in-lane byte shuffle per 16-element half spreads byte e / 8 of the word to byte e, then and /
 * compare with the byte's bit (0x01 .. 0x80), and 0x10, or'd onto the nibbles. The unsigned codes u
 * (0..15 / 0..31) go straight into maddubs (pairs <= 2 x 31 x 127; the two halves added as int16
 * <= 15748, no saturation), one madd with ones: block 2k's sum in int32 lanes 0-3, 2k + 1's in 4-7,
 * one conversion and one FMA against d_w d_x (lanes k of the group's 8, by one in-lane vpermilps).
 * Per group and row the 8 f16 d_w (and m_w) are gathered as two qwords in the order 0 2 4 6 1 3 5 7
 * and converted by one vcvtph2ps, times the activation's d_x (the same order) once, and Q5_0's
 * offset 16 (-16 d_w d_x S) or Q4_1 / Q5_1's minimum (m_w d_x S; S the block's code sum) is one FMA
 * per group into the same accumulator. The last nb % 8 blocks one at a time (ql_nib, ql_bit5). Same
 * integer block sums as loom_quant_dot_ref, f32 rounding aside. */
static const int ql_q32_ord[8] = {0, 2, 4, 6, 1, 3, 5, 7};
#define QL_Q32_GROUP 320 /* activation bytes per group of 8 blocks: 4 x 64 code bytes, 8 floats d_x, 8 floats c */

/* The activation per group of 8 blocks (ql_q32_rows reads it): per pair (2k, 2k + 1) elements 0-15
 * of block 2k then of 2k + 1, elements 16-31 of 2k then of 2k + 1; then d_x of the 8 blocks in the
 * order 0 2 4 6 1 3 5 7 (ql_iq4_ord: lane 0 the even blocks, lane 1 the odd), then c the same:
 * Q5_0 -16 d_x S, Q4_1 / Q5_1 d_x S (S: the block's code sum). */
static void ql_q32_prep(loom_dtype t, const loom_q8x *x, int64_t nb, char *xr) {
    const float k = t == LOOM_Q5_0 ? -16.0f : 1.0f;
    for (int64_t g = 0; g < nb / 8; g++, xr += QL_Q32_GROUP) {
        const loom_q8x *xg = x + 8 * g;
        for (int p = 0; p < 4; p++) {
            char *o = xr + 64 * p;
            memcpy(o, xg[2 * p].qs, 16), memcpy(o + 16, xg[2 * p + 1].qs, 16);
            memcpy(o + 32, xg[2 * p].qs + 16, 16), memcpy(o + 48, xg[2 * p + 1].qs + 16, 16);
        }
        float *f = (float *)(xr + 256);
        for (int i = 0; i < 8; i++) {
            const loom_q8x *b = xg + ql_q32_ord[i];
            f[i] = b->d, f[8 + i] = k * (b->d * (float)(b->s[0] + b->s[1]));
        }
    }
}

QL_INLINE uint32_t ql_u32(const char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* the f16 at p, p + 2 s, p + 4 s, p + 6 s as one qword (s: a block's bytes) */
QL_INLINE uint64_t ql_h4(const char *p, size_t s) {
    return (uint64_t)(uint16_t)ql_u32(p) | (uint64_t)(uint16_t)ql_u32(p + 2 * s) << 16 |
           (uint64_t)(uint16_t)ql_u32(p + 4 * s) << 32 | (uint64_t)(uint16_t)ql_u32(p + 6 * s) << 48;
}

/* R (1 or 2) rows at w, w + rb: out[r] = row r . x (xr from ql_q32_prep). */
QL_INLINE void ql_q32_rows(loom_dtype t, const int R, const char *w, size_t rb, const loom_q8x *x, const char *xr,
                           int64_t nb, float *out, size_t pf) {
    const size_t bb = t == LOOM_Q4_1 ? 20 : t == LOOM_Q5_0 ? 22 : 24;
    const size_t oq = t == LOOM_Q4_1 ? 4 : t == LOOM_Q5_0 ? 6 : 8, oh = t == LOOM_Q5_0 ? 2 : 4; /* qs, qh */
    const bool q5 = t != LOOM_Q4_1, mn = t != LOOM_Q5_0;
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1), c16 = _mm256_set1_epi8(0x10);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    /* the 5th bits from 32 bytes loaded at the first block's qh: block 2k's word at byte 0, 2k + 1's
     * at byte bb - 16 of lane 1; lo: elements 0-15 (the word's bytes 0, 1), hi: 16-31 (2, 3) */
    const char o1 = (char)(bb - 16);
    const __m256i il = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, o1, o1, o1, o1, o1, o1, o1, o1,
                                        (char)(o1 + 1), (char)(o1 + 1), (char)(o1 + 1), (char)(o1 + 1), (char)(o1 + 1),
                                        (char)(o1 + 1), (char)(o1 + 1), (char)(o1 + 1));
    const __m256i ih = _mm256_add_epi8(il, _mm256_set1_epi8(2));
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    const int64_t ng = nb / 8;
    for (int64_t g = 0; g < ng; g++, xr += QL_Q32_GROUP) {
        const __m256 xd = _mm256_load_ps((const float *)(xr + 256)), xc = _mm256_load_ps((const float *)(xr + 288));
        __m256 dd[2];
        QL_UNROLL for (int r = 0; r < R; r++) {
            /* the 8 blocks' d (and m) in the order 0 2 4 6 1 3 5 7: d_w d_x per block; the offset /
             * minimum term (c d_w or c m_w, per block) straight into acc */
            const char *p = w + r * rb + (size_t)(8 * g) * bb;
            __m256 d = _mm256_cvtph_ps(_mm_set_epi64x((long long)ql_h4(p + bb, bb), (long long)ql_h4(p, bb)));
            dd[r] = _mm256_mul_ps(d, xd);
            if (mn) d = _mm256_cvtph_ps(_mm_set_epi64x((long long)ql_h4(p + bb + 2, bb), (long long)ql_h4(p + 2, bb)));
            acc[r] = _mm256_fmadd_ps(d, xc, acc[r]);
        }
        QL_UNROLL for (int k = 0; k < 4; k++) {
            __m256i xl = _mm256_load_si256((const __m256i *)(xr + 64 * k)), xh = _mm256_load_si256((const __m256i *)(xr + 64 * k + 32));
            QL_UNROLL for (int r = 0; r < R; r++) {
                const char *p = w + r * rb + (size_t)(8 * g + 2 * k) * bb;
                if (pf) _mm_prefetch(p + pf, _MM_HINT_T0);
                __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p + oq))),
                                                    _mm_loadu_si128((const __m128i *)(p + bb + oq)), 1);
                __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                if (q5) {
                    __m256i h = _mm256_loadu_si256((const __m256i *)(p + oh));
                    __m256i hl = _mm256_and_si256(_mm256_shuffle_epi8(h, il), bit), hh = _mm256_and_si256(_mm256_shuffle_epi8(h, ih), bit);
                    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(hl, bit), c16));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(hh, bit), c16));
                }
                __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xl), _mm256_maddubs_epi16(hi, xh));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(s16, ones)), _mm256_permutevar_ps(dd[r], _mm256_set1_epi32(k)), acc[r]);
            }
        }
    }
    float tail[2] = {0, 0};
    for (int64_t b = 8 * ng; b < nb; b++) { /* the last nb % 8 blocks one at a time */
        const loom_q8x *xb = x + b;
        float S = xb->d * (float)(xb->s[0] + xb->s[1]);
        QL_UNROLL for (int r = 0; r < R; r++) {
            const char *p = w + r * rb + (size_t)b * bb;
            __m256i u = ql_nib((const uint8_t *)p + oq);
            if (q5) u = _mm256_or_si256(u, ql_bit5((const uint8_t *)p + oh));
            float d = _cvtsh_ss((uint16_t)ql_u32(p));
            acc[r] = _mm256_fmadd_ps(ql_dotu(u, xb->qs), _mm256_set1_ps(d * xb->d), acc[r]);
            tail[r] += mn ? _cvtsh_ss((uint16_t)(ql_u32(p) >> 16)) * S : -16.0f * d * S;
        }
    }
    for (int r = 0; r < R; r++) out[r] = ql_hsum(acc[r]) + tail[r];
}

QL_INLINE void ql_q32_span_t(loom_dtype t, const char *w, size_t rb, const loom_q8x *x, const char *xr, int64_t nb,
                             int64_t n0, int64_t n1, float *y, const float *bias, int64_t pf_rows) {
    float o[2];
    int64_t n = n0;
    for (; n + 2 <= n1; n += 2) {
        size_t pf = n + 2 + pf_rows <= n1 && pf_rows > 0 ? (size_t)pf_rows * rb : 0;
        ql_q32_rows(t, 2, w + (size_t)n * rb, rb, x, xr, nb, o, pf);
        y[n] = o[0] + (bias ? bias[n] : 0.0f), y[n + 1] = o[1] + (bias ? bias[n + 1] : 0.0f);
    }
    if (n < n1) {
        ql_q32_rows(t, 1, w + (size_t)n * rb, rb, x, xr, nb, o, 0);
        y[n] = o[0] + (bias ? bias[n] : 0.0f);
    }
}

/* Rows [n0, n1) of Q4_1 / Q5_0 / Q5_1 by the kernel above; 0, or -1 where the activation's layout
 * could not be allocated (nb > 512 only: the per-block code then). */
static int ql_q32_span(loom_dtype t, const char *w, size_t rb, const loom_q8x *x, int64_t K, int64_t n0, int64_t n1,
                       float *y, const float *bias, int64_t pf_rows) {
    int64_t nb = K / 32;
    _Alignas(32) char buf[64 * QL_Q32_GROUP];
    char *xr = nb <= 512 ? buf : loom_malloc_aligned((size_t)(nb / 8) * QL_Q32_GROUP + 64);
    if (!xr) return -1;
    ql_q32_prep(t, x, nb, xr);
    switch (t) {
    case LOOM_Q4_1: ql_q32_span_t(LOOM_Q4_1, w, rb, x, xr, nb, n0, n1, y, bias, pf_rows); break;
    case LOOM_Q5_0: ql_q32_span_t(LOOM_Q5_0, w, rb, x, xr, nb, n0, n1, y, bias, pf_rows); break;
    default: ql_q32_span_t(LOOM_Q5_1, w, rb, x, xr, nb, n0, n1, y, bias, pf_rows); break;
    }
    if (xr != buf) loom_free_aligned(xr);
    return 0;
}
#endif

/* Rows [n0, n1) of one type (t a constant in each call below, so the row loops specialise). */
QL_INLINE void ql_span(loom_dtype t, const char *w, size_t rb, const loom_q8x *x, const float *xs, const float *xd,
                       const float *xdh, const float *xt, const float *xq, const int16_t *xs16, int64_t K, int64_t n0,
                       int64_t n1, float *y, const float *bias, int64_t pf_rows, bool kold) {
    bool k = loom_dtype_blck(t) == 256;
    (void)xq, (void)xs16;
    for (int64_t n = n0; n < n1; n++) {
        size_t pf = n + pf_rows < n1 ? (size_t)pf_rows * rb : 0;
        const char *row = w + (size_t)n * rb;
        float v;
#if QL_Q23_INT
        if (t == LOOM_Q2_K && !kold) v = ql_row_q2k(row, x, xq, xd, xs16, K / 256, pf);
        else if (t == LOOM_Q3_K && !kold) {
            const int64_t nb = K / 32; /* xs16 holds xse, xso; xq is followed by xde, xdo */
            v = ql_row_q3k(row, x, xq, xq + nb, xq + 2 * nb, xs16, xs16 + 2 * nb, K / 256, pf);
        }
        else
#endif
            v = k ? ql_rowk(t, kold, row, x, xs, xd, xdh, xt, K / 256, pf) : ql_row32(t, row, x, xs, xd, K / 32, pf);
        y[n] = v + (bias ? bias[n] : 0.0f);
    }
}

void QL_FN(cpu_qgemv_later_)(loom_dtype t, const void *w, size_t row_bytes, const loom_q8x *x, int64_t K, int64_t n0,
                             int64_t n1, float *y, const float *bias, int pf_rows) {
    int64_t nb = K / 32;
#if QL_IQ4_INT
    /* LOOM_CPU_IQ4AVX2=0: IQ4_NL / IQ4_XS through the per-block code below (before 2026-12-06) */
    static _Atomic int iq4_env = INT_MIN;
    if ((t == LOOM_IQ4_NL || t == LOOM_IQ4_XS) && nb <= 512 && cpu_env_int_once(&iq4_env, "LOOM_CPU_IQ4AVX2", 1) != 0) {
        ql_iq4_span(t, w, row_bytes, x, K, n0, n1, y, bias, pf_rows);
        return;
    }
#endif
#if QL_Q32_PAIR
    /* LOOM_CPU_Q32GEMV=0: Q4_1 / Q5_0 / Q5_1 through the per-block code below (before session 14) */
    static _Atomic int q32_env = INT_MIN;
    if ((t == LOOM_Q4_1 || t == LOOM_Q5_0 || t == LOOM_Q5_1) && cpu_env_int_once(&q32_env, "LOOM_CPU_Q32GEMV", 1) != 0 &&
        ql_q32_span(t, w, row_bytes, x, K, n0, n1, y, bias, pf_rows) == 0)
        return;
#endif
    /* xs, xd, xdh, xt (6 floats per block) and, for Q2_K / Q3_K, xq then (Q3_K) xde, xdo (3 floats)
     * and xs16 (Q2_K) or xse, xso (Q3_K) (4 int16) */
    float buf[11 * 512], *xs = nb <= 512 ? buf : malloc(sizeof(float) * 11 * (size_t)nb);
    if (!xs) { /* (out of memory: cannot happen at real sizes) the reference */
        for (int64_t n = n0; n < n1; n++)
            y[n] = loom_quant_dot_ref(t, (const char *)w + (size_t)n * row_bytes, x, K) + (bias ? bias[n] : 0.0f);
        return;
    }
    float *xd = xs + 2 * nb, *xdh = xd + nb, *xt = xdh + 2 * nb, *xq = xt + nb;
    int16_t *xs16 = (int16_t *)(xq + 3 * nb);
    /* LOOM_CPU_KLATER=0: the K-quant decode code from before 2026-12-06 (Q5_K here; Q2_K / Q3_K
     * through ql_rowk's float scales), for A/B timing */
    static _Atomic int kold_env = INT_MIN;
    bool kold = (t == LOOM_Q5_K || t == LOOM_Q2_K || t == LOOM_Q3_K) && cpu_env_int_once(&kold_env, "LOOM_CPU_KLATER", 1) == 0;
    ql_xsums(x, nb, xs, xd, xdh, xt);
#if QL_Q23_INT
    if ((t == LOOM_Q2_K || t == LOOM_Q3_K) && !kold)
        for (int64_t b = 0; b < nb; b++) {
            xq[b] = x[b].d * ql_q23_pow(t, (int)(b % 4));
            if (t == LOOM_Q2_K) xs16[2 * b] = x[b].s[0], xs16[2 * b + 1] = x[b].s[1];
        }
    if (t == LOOM_Q3_K && !kold) /* per super-block, lane h word 2l / 2l + 1 and float 4h + l: block 2l / 2l + 1 */
        for (int64_t i = 0; i < nb / 8; i++)
            for (int h = 0; h < 2; h++)
                for (int l = 0; l < 4; l++) {
                    const loom_q8x *e = x + 8 * i + 2 * l, *o = e + 1;
                    int16_t *se = xs16 + 16 * i + 8 * h + 2 * l, *so = se + 2 * nb;
                    xq[nb + 8 * i + 4 * h + l] = e->d * 0.25f, xq[2 * nb + 8 * i + 4 * h + l] = o->d * 0.25f;
                    se[0] = e->s[h], se[1] = 0, so[0] = 0, so[1] = o->s[h];
                }
#endif
    const char *wr = w;
#define QL_CASE(T) \
    case T: ql_span(T, wr, row_bytes, x, xs, xd, xdh, xt, xq, xs16, K, n0, n1, y, bias, pf_rows, false); break
#define QL_CASE_K(T)                                                                                       \
    case T:                                                                                                \
        if (kold) ql_span(T, wr, row_bytes, x, xs, xd, xdh, xt, xq, xs16, K, n0, n1, y, bias, pf_rows, true);  \
        else ql_span(T, wr, row_bytes, x, xs, xd, xdh, xt, xq, xs16, K, n0, n1, y, bias, pf_rows, false);     \
        break
    switch (t) {
        QL_CASE(LOOM_Q4_1);
        QL_CASE(LOOM_Q5_0);
        QL_CASE(LOOM_Q5_1);
        QL_CASE(LOOM_IQ4_NL);
        QL_CASE_K(LOOM_Q2_K);
        QL_CASE_K(LOOM_Q3_K);
        QL_CASE(LOOM_Q4_K);
        QL_CASE_K(LOOM_Q5_K);
        QL_CASE(LOOM_Q6_K);
        QL_CASE(LOOM_IQ4_XS);
    default:
        for (int64_t n = n0; n < n1; n++)
            y[n] = loom_quant_dot_ref(t, (const char *)w + (size_t)n * row_bytes, x, K) + (bias ? bias[n] : 0.0f);
        break;
    }
#undef QL_CASE
#undef QL_CASE_K
    if (xs != buf) free(xs);
}

/* x quantised to loom_q8x blocks exactly as loom_q8x_quant (d = max|x| / 127, codes rint(x / d) in
 * the default rounding mode, the sums per 16), vectorised. */
void QL_FN(cpu_q8x_quant_)(const float *x, loom_q8x *y, int64_t n) {
    const __m256 sgn = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        __m256 v[4], m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(x + 8 * k), m = _mm256_max_ps(m, _mm256_andnot_ps(sgn, v[k]));
        __m128 a = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        a = _mm_max_ps(a, _mm_movehl_ps(a, a));
        a = _mm_max_ss(a, _mm_movehdup_ps(a));
        float amax = _mm_cvtss_f32(a);
        float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++) q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], vid));
        /* int32 -> int8 in order: packs work per 128-bit lane, so permute back */
        __m256i w01 = _mm256_packs_epi32(q[0], q[1]), w23 = _mm256_packs_epi32(q[2], q[3]);
        __m256i b = _mm256_packs_epi16(w01, w23);
        b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y[i].qs, b);
        __m256i s01 = _mm256_add_epi32(q[0], q[1]), s23 = _mm256_add_epi32(q[2], q[3]);
        __m128i h0 = _mm_add_epi32(_mm256_castsi256_si128(s01), _mm256_extracti128_si256(s01, 1));
        __m128i h1 = _mm_add_epi32(_mm256_castsi256_si128(s23), _mm256_extracti128_si256(s23, 1));
        h0 = _mm_hadd_epi32(h0, h1);
        h0 = _mm_hadd_epi32(h0, h0);
        y[i].d = d;
        y[i].s[0] = (int16_t)_mm_cvtsi128_si32(h0), y[i].s[1] = (int16_t)_mm_extract_epi32(h0, 1);
    }
}
