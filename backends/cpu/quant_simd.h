/* The quantised dot-product kernels, written once for 256-bit vectors and included by
 * quant_avx2.c (maddubs + madd) and quant_avx512.c (VNNI vpdpbusd). QDOT_U8S8(u, s) must return
 * the 8 int32 lanes sum_{4 bytes} u * s (u unsigned, s signed; the products here never saturate
 * maddubs' int16: |u| <= 128 with |s| <= 127). QDOT_NAME is the function's name. */
#include "backends/cpu/cpu_quant.h"

#include <immintrin.h>
#include <string.h>

static inline float qd_hsum(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

static inline float qd_h(uint16_t h) { return _cvtsh_ss(h); }

static inline void qd_scale_min_k4(int j, const uint8_t *q, int *d, int *m) {
    if (j < 4) {
        *d = q[j] & 63, *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
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
            __m128i raw = _mm_loadu_si128((const __m128i *)b[i].qs);
            __m256i q = _mm256_and_si256(
                _mm256_inserti128_si256(_mm256_castsi128_si256(raw), _mm_srli_epi16(raw, 4), 1), m4);
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
                int sc0, m0, sc1, m1;
                qd_scale_min_k4(j, b[i].scales, &sc0, &m0);
                qd_scale_min_k4(j + 1, b[i].scales, &sc1, &m1);
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
    default:
        for (int r = 0; r < nr; r++) out[r] = 0;
        return;
    }
    for (int r = 0; r < nr; r++) out[r] = qd_hsum(acc[r]) + corr[r];
}
