/* The quantised dot-product kernels, written once for 256-bit vectors and included by
 * quant_avx2.c (maddubs + madd) and quant_avx512.c (VNNI vpdpbusd). QDOT_U8S8(u, s) must return
 * the 8 int32 lanes sum_{4 bytes} u * s (u unsigned, s signed; the products here never saturate
 * maddubs' int16: |u| <= 128 with |s| <= 127). QDOT_NAME is the function's name. */
#include "backends/cpu/cpu_quant.h"
#include "backends/cpu/quant_later_unpack.h"

#include <immintrin.h>
#include <string.h>

static inline float qd_h(uint16_t h) { return _cvtsh_ss(h); }

/* A block of the later types (loom_qblock32) as 32 int8 codes: the 32-element blocks unpacked in
 * vectors (ql_block), the k-quants through the scalar reference. */
static inline __m256i qd_codes(loom_dtype t, const void *w, int64_t b, float *A, float *B) {
    if (t == LOOM_Q4_1 || t == LOOM_Q5_0 || t == LOOM_Q5_1 || t == LOOM_IQ4_NL) return ql_block(t, w, b, A, B);
    int8_t c[32];
    loom_qblock32(t, w, b, c, A, B);
    return _mm256_loadu_si256((const __m256i *)c);
}

void QDOT_NAME(loom_dtype t, const void *w, const loom_q8x *const *x, int nr, int64_t K, float *out) {
    __m256 acc[CPU_QROWS];
    float corr[CPU_QROWS]; /* scalar terms: offsets of unsigned codes, Q4_K minimums */
    for (int r = 0; r < CPU_QROWS; r++) acc[r] = _mm256_setzero_ps(), corr[r] = 0;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    int64_t nb = K / 32;
    switch (t) {
    case LOOM_Q8_0: {
        const loom_block_q8_0 *b = w;
        for (int64_t i = 0; i < nb; i++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)b[i].qs), aq = _mm256_abs_epi8(q);
            float dw = qd_h(b[i].d);
            for (int r = 0; r < nr; r++) {
                __m256i xs = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)x[r][i].qs), q);
                __m256 p = _mm256_cvtepi32_ps(QDOT_U8S8(aq, xs));
                acc[r] = _mm256_fmadd_ps(p, _mm256_set1_ps(dw * x[r][i].d), acc[r]);
            }
        }
        break;
    }
    case LOOM_Q4_0: {
        const loom_block_q4_0 *b = w;
        for (int64_t i = 0; i < nb; i++) {
            __m256i q = ql_nib(b[i].qs);
            float dw = qd_h(b[i].d);
            for (int r = 0; r < nr; r++) {
                const loom_q8x *xb = &x[r][i];
                __m256 p = _mm256_cvtepi32_ps(QDOT_U8S8(q, _mm256_loadu_si256((const __m256i *)xb->qs)));
                float s = dw * xb->d;
                acc[r] = _mm256_fmadd_ps(p, _mm256_set1_ps(s), acc[r]);
                corr[r] -= 8.0f * s * (float)(xb->s[0] + xb->s[1]);
            }
        }
        break;
    }
    case LOOM_Q4_K: {
        const loom_block_q4_k *b = w;
        for (int64_t i = 0; i < K / 256; i++) {
            float d = qd_h(b[i].d), dmin = qd_h(b[i].dmin);
            for (int j = 0; j < 8; j += 2) {
                __m256i raw = _mm256_loadu_si256((const __m256i *)(b[i].qs + 16 * j));
                __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                uint8_t sc0, m0, sc1, m1;
                loom_k4_scale_min(b[i].scales, j, &sc0, &m0);
                loom_k4_scale_min(b[i].scales, j + 1, &sc1, &m1);
                for (int r = 0; r < nr; r++) {
                    const loom_q8x *x0 = &x[r][8 * i + j], *x1 = x0 + 1;
                    __m256 p0 = _mm256_cvtepi32_ps(QDOT_U8S8(lo, _mm256_loadu_si256((const __m256i *)x0->qs)));
                    __m256 p1 = _mm256_cvtepi32_ps(QDOT_U8S8(hi, _mm256_loadu_si256((const __m256i *)x1->qs)));
                    acc[r] = _mm256_fmadd_ps(p0, _mm256_set1_ps(d * sc0 * x0->d), acc[r]);
                    acc[r] = _mm256_fmadd_ps(p1, _mm256_set1_ps(d * sc1 * x1->d), acc[r]);
                    corr[r] -= dmin * (m0 * x0->d * (float)(x0->s[0] + x0->s[1]) +
                                       m1 * x1->d * (float)(x1->s[0] + x1->s[1]));
                }
            }
        }
        break;
    }
    case LOOM_Q6_K: {
        const loom_block_q6_k *b = w;
        const __m256i m3 = _mm256_set1_epi8(3);
        for (int64_t i = 0; i < K / 256; i++) {
            float d = qd_h(b[i].d);
            const int8_t *sc = b[i].scales;
            for (int h = 0; h < 2; h++) {
                const uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
                __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
                __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
                __m256i q[4];
                q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
                q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4));
                q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4));
                q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4));
                for (int k = 0; k < 4; k++) {
                    int j = 4 * h + k; /* 32-element block within the super-block */
                    float sa = (float)sc[2 * j], sb = (float)sc[2 * j + 1];
                    /* lanes 0-3 hold elements 0-15 (scale sa), lanes 4-7 elements 16-31 (sb) */
                    __m256 scv = _mm256_setr_ps(sa, sa, sa, sa, sb, sb, sb, sb);
                    for (int r = 0; r < nr; r++) {
                        const loom_q8x *xb = &x[r][8 * i + j];
                        __m256 p = _mm256_cvtepi32_ps(QDOT_U8S8(q[k], _mm256_loadu_si256((const __m256i *)xb->qs)));
                        float s = d * xb->d;
                        acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(p, scv), _mm256_set1_ps(s), acc[r]);
                        corr[r] -= 32.0f * s * (sa * xb->s[0] + sb * xb->s[1]);
                    }
                }
            }
        }
        break;
    }
    default: {
        if (!loom_dtype_is_quant(t)) {
            for (int r = 0; r < nr; r++) out[r] = 0;
            return;
        }
        /* the later types: int8 codes (signed: |c| and the sign moved onto x, as Q8_0) and an
         * affine map per 16 elements (lanes 0-3: elements 0-15, lanes 4-7: 16-31) */
        for (int64_t i = 0; i < nb; i++) {
            float A[2], B[2];
            __m256i q = qd_codes(t, w, i, A, B), aq = _mm256_abs_epi8(q);
            __m256 av = _mm256_setr_ps(A[0], A[0], A[0], A[0], A[1], A[1], A[1], A[1]);
            for (int r = 0; r < nr; r++) {
                const loom_q8x *xb = &x[r][i];
                __m256i xs = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)xb->qs), q);
                __m256 p = _mm256_cvtepi32_ps(QDOT_U8S8(aq, xs));
                acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(p, av), _mm256_set1_ps(xb->d), acc[r]);
                corr[r] += xb->d * (B[0] * (float)xb->s[0] + B[1] * (float)xb->s[1]);
            }
        }
        break;
    }
    }
    for (int r = 0; r < nr; r++) out[r] = ql_hsum(acc[r]) + corr[r];
}
