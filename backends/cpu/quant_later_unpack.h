/* Vector unpacking of the later block types' 32-element blocks (256-bit AVX2 instructions), shared
 * by the decode GEMV (quant_later.h), the prefill panel GEMM (quant_later_gemm_avx512.c) and the
 * rows kernel (quant_simd.h). */
#ifndef LOOM_CPU_QUANT_LATER_UNPACK_H
#define LOOM_CPU_QUANT_LATER_UNPACK_H

#include "core/qblock.h"

#include <immintrin.h>
#include <string.h>

#define QL_INLINE static inline __attribute__((always_inline))
#define QL_UNROLL _Pragma("GCC unroll 8")

/* The sum of the 8 lanes. */
QL_INLINE float ql_hsum(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

/* 16 bytes of Q4_0-ordered nibbles as 32 bytes 0..15 (element e < 16: low nibble of byte e). */
QL_INLINE __m256i ql_nib(const uint8_t *qs) {
    __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(raw), _mm_srli_epi16(raw, 4), 1),
                            _mm256_set1_epi8(0x0F));
}

/* The 32 bits at qh as bytes 0x10 (bit e set) or 0. */
QL_INLINE __m256i ql_bit5(const uint8_t *qh) {
    uint32_t h;
    memcpy(&h, qh, 4);
    const __m256i idx = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3,
                                         3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), idx);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit), _mm256_set1_epi8(0x10));
}

/* Q3_K's 16 scales minus 32 from its scales[12] (loom_q3k_scale for i = 0..15), as int8 lanes: the
 * low nibbles of bytes 0-7 then their high nibbles, or the 2-bit fields of bytes 8-11 (field i / 4
 * of byte 8 + i % 4) shifted to bits 4-5. Reads the 12 bytes only. */
QL_INLINE __m128i ql_q3k_scales(const uint8_t *s) {
    uint32_t hi;
    memcpy(&hi, s + 8, 4);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    __m128i lo8 = _mm_loadl_epi64((const __m128i *)s);
    __m128i L = _mm_unpacklo_epi64(_mm_and_si128(lo8, m4), _mm_and_si128(_mm_srli_epi16(lo8, 4), m4));
    __m128i H = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32((int)hi), _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(3));
    return _mm_sub_epi8(_mm_or_si128(L, _mm_slli_epi32(H, 4)), _mm_set1_epi8(32));
}

/* Q4_K / Q5_K's 8 six-bit scales (bytes 0-7) and minimums (bytes 8-15) from scales[12] at s, as
 * loom_k4_scales8, in four 32-bit words: scales 0-3 = u0 & 63, minimums 0-3 = u1 & 63, scales 4-7 =
 * (u2 & 0xF) | (u0 >> 6) << 4, minimums 4-7 = (u2 >> 4) | (u1 >> 6) << 4 (u0, u1, u2: the 12 bytes as
 * words). Reads 16 bytes: the 4 after the scales are the block's own (qh or qs). */
QL_INLINE __m128i ql_k4_scales(const uint8_t *s) {
    __m128i v = _mm_loadu_si128((const __m128i *)s);
    __m128i a = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0)); /* u0 u2 u1 u2 */
    __m128i b = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0)); /* u0 u0 u1 u1 */
    a = _mm_and_si128(_mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 0, 4)),
                      _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    b = _mm_and_si128(_mm_srli_epi32(b, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    return _mm_or_si128(a, b);
}

QL_INLINE __m256i ql_iq4(__m256i nib) {
    return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)loom_iq4nl_values)), nib);
}

/* Block b (32 elements) of a row of a later type as loom_qblock32 gives it, in a vector: 32 signed
 * codes c, value = A[e / 16] * c[e] + B[e / 16]. (The GEMV unpacks the k-quants per super-block
 * instead; this is the per-block form for the panels.) */
QL_INLINE __m256i ql_block(loom_dtype t, const char *row, int64_t b, float *A, float *B) {
    B[0] = B[1] = 0;
    if (t == LOOM_Q4_1 || t == LOOM_Q5_0 || t == LOOM_Q5_1 || t == LOOM_IQ4_NL) {
        const size_t bb = t == LOOM_Q4_1 ? 20 : t == LOOM_Q5_0 ? 22 : t == LOOM_Q5_1 ? 24 : 18;
        const char *p = row + (size_t)b * bb;
        uint16_t dh;
        memcpy(&dh, p, 2);
        A[0] = A[1] = _cvtsh_ss(dh);
        if (t == LOOM_Q4_1) {
            const loom_block_q4_1 *q = (const loom_block_q4_1 *)p;
            B[0] = B[1] = _cvtsh_ss(q->m);
            return ql_nib(q->qs);
        }
        if (t == LOOM_Q5_0) {
            const loom_block_q5_0 *q = (const loom_block_q5_0 *)p;
            return _mm256_sub_epi8(_mm256_or_si256(ql_nib(q->qs), ql_bit5(q->qh)), _mm256_set1_epi8(16));
        }
        if (t == LOOM_Q5_1) {
            const loom_block_q5_1 *q = (const loom_block_q5_1 *)p;
            B[0] = B[1] = _cvtsh_ss(q->m);
            return _mm256_or_si256(ql_nib(q->qs), ql_bit5(q->qh));
        }
        return ql_iq4(ql_nib(((const loom_block_iq4_nl *)p)->qs));
    }
    int j = (int)(b % 8);
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(0x0F);
    if (t == LOOM_Q2_K) {
        const loom_block_q2_k *q = (const loom_block_q2_k *)row + b / 8;
        float d = _cvtsh_ss(q->d), dmin = _cvtsh_ss(q->dmin);
        for (int h = 0; h < 2; h++)
            A[h] = d * (float)(q->scales[2 * j + h] & 0xF), B[h] = -(dmin * (float)(q->scales[2 * j + h] >> 4));
        __m256i raw = _mm256_loadu_si256((const __m256i *)(q->qs + 32 * (j / 4)));
        return _mm256_and_si256(_mm256_srl_epi16(raw, _mm_cvtsi32_si128(2 * (j % 4))), m3);
    }
    if (t == LOOM_Q3_K) {
        const loom_block_q3_k *q = (const loom_block_q3_k *)row + b / 8;
        const uint8_t *s = q->scales;
        float d = _cvtsh_ss(q->d);
        for (int h = 0; h < 2; h++) {
            A[h] = d * (float)loom_q3k_scale(s, 2 * j + h);
        }
        __m256i raw = _mm256_loadu_si256((const __m256i *)(q->qs + 32 * (j / 4)));
        __m256i hm = _mm256_loadu_si256((const __m256i *)q->hmask);
        __m256i clear = _mm256_cmpeq_epi8(_mm256_and_si256(hm, _mm256_set1_epi8((char)(1 << j))), _mm256_setzero_si256());
        return _mm256_sub_epi8(_mm256_and_si256(_mm256_srl_epi16(raw, _mm_cvtsi32_si128(2 * (j % 4))), m3),
                               _mm256_and_si256(clear, _mm256_set1_epi8(4)));
    }
    if (t == LOOM_Q4_K || t == LOOM_Q5_K) { /* (Q4_K for the panel GEMM: Q5_K without the 5th bits) */
        const loom_block_q4_k *q4 = (const loom_block_q4_k *)row + b / 8;
        const loom_block_q5_k *q5 = (const loom_block_q5_k *)row + b / 8;
        uint16_t dh = t == LOOM_Q4_K ? q4->d : q5->d, mh = t == LOOM_Q4_K ? q4->dmin : q5->dmin;
        uint8_t sc, m;
        loom_k4_scale_min(t == LOOM_Q4_K ? q4->scales : q5->scales, j, &sc, &m);
        A[0] = A[1] = _cvtsh_ss(dh) * (float)sc, B[0] = B[1] = -(_cvtsh_ss(mh) * (float)m);
        __m256i raw = _mm256_loadu_si256((const __m256i *)((t == LOOM_Q4_K ? q4->qs : q5->qs) + 32 * (j / 2)));
        if (j & 1) raw = _mm256_srli_epi16(raw, 4);
        if (t == LOOM_Q4_K) return _mm256_and_si256(raw, m4);
        __m256i bit = _mm256_set1_epi8((char)(1 << j)), hb = _mm256_loadu_si256((const __m256i *)q5->qh);
        __m256i h5 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, bit), bit), _mm256_set1_epi8(0x10));
        return _mm256_or_si256(_mm256_and_si256(raw, m4), h5);
    }
    /* IQ4_XS */
    const loom_block_iq4_xs *q = (const loom_block_iq4_xs *)row + b / 8;
    A[0] = A[1] = _cvtsh_ss(q->d) * (float)loom_iq4xs_scale(q->scales_h, q->scales_l, j);
    return ql_iq4(ql_nib(q->qs + 16 * j));
}

#endif
