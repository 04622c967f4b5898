/* Tiled int8 GEMM for Q8_0 / Q4_0 weights with AVX512_VNNI (see quant.h, cpu_qgemm_*).
 *
 * Two 32-element blocks fill a zmm: 64 byte pairs per vpdpbusd. The weight codes are the unsigned
 * operand (Q4_0: its nibbles 0..15; Q8_0: q + 128, i.e. q xor 0x80) and the activation codes the
 * signed one, so the offset (8 or 128) times the sum of the activation codes is subtracted; that
 * correction depends on the activation only and is precomputed per lane (cpu_qgemm_prep), and it is
 * the accumulator vpdpbusd starts from. Per (weight row, activation row, block pair) the work is
 * then vpdpbusd, a conversion, a scale multiply and an FMA; a register tile of 4 weight rows x 4
 * activation rows loads each weight pair once for 4 activation rows and each activation pair once
 * for 4 weight rows (16 zmm accumulators).
 */
#include "quant.h"

#include <immintrin.h>
#include <string.h>

/* One block pair of a prepared activation row. */
typedef struct {
    int8_t q[64];  /* codes of blocks 2p, 2p + 1 */
    float d[16];   /* lanes 0-7: d of block 2p, lanes 8-15: d of block 2p + 1 */
    int32_t c[16]; /* -offset * (sum of the 4 codes of lane i) */
} qg_pair;

bool cpu_qgemm_ok(loom_dtype t, int64_t K) {
    return (t == LOOM_Q8_0 || t == LOOM_Q4_0) && K > 0 && K % 64 == 0;
}

size_t cpu_qgemm_xbytes(int64_t K) { return (size_t)(K / 64) * sizeof(qg_pair); }

void cpu_qgemm_prep(loom_dtype t, const loom_q8x *xq, int64_t K, void *dst) {
    qg_pair *o = dst;
    const __m512i off = _mm512_set1_epi8(t == LOOM_Q8_0 ? (char)128 : 8);
    for (int64_t p = 0; p < K / 64; p++) {
        const loom_q8x *a = xq + 2 * p, *b = a + 1;
        __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a->qs)),
                                       _mm256_loadu_si256((const __m256i *)b->qs), 1);
        _mm512_storeu_si512(o[p].q, q);
        _mm512_storeu_ps(o[p].d, _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(a->d)),
                                                    _mm256_set1_ps(b->d), 1));
        /* off * codes summed per lane, negated */
        __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), off, q);
        _mm512_storeu_si512(o[p].c, _mm512_sub_epi32(_mm512_setzero_si512(), s));
    }
}

/* The unsigned codes of blocks 2p, 2p + 1 of a weight row, and their scales (lanes as qg_pair.d). */
static inline __attribute__((always_inline)) __m512i ld_w(loom_dtype t, const char *row, int64_t p, __m512 *dw) {
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
        __m512 dw[4];
        QG_UNROLL for (int i = 0; i < 4; i++) {
            wv[i] = _mm512_setzero_si512(), dw[i] = _mm512_setzero_ps(); /* (rows past nw: unused) */
            if (i < nw) wv[i] = ld_w(t, w + (size_t)i * rb, p, &dw[i]);
        }
        QG_UNROLL for (int j = 0; j < 4; j++) {
            if (j >= nx) break;
            const qg_pair *xp = x[j] + p;
            __m512i c = _mm512_loadu_si512(xp->c), q = _mm512_loadu_si512(xp->q);
            __m512 dx = _mm512_loadu_ps(xp->d);
            QG_UNROLL for (int i = 0; i < 4; i++) {
                if (i >= nw) break;
                __m512i s = _mm512_dpbusd_epi32(c, wv[i], q);
                acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[i], dx), acc[i][j]);
            }
        }
    }
    QG_UNROLL for (int j = 0; j < 4; j++)
        QG_UNROLL for (int i = 0; i < 4; i++)
            if (i < nw && j < nx) y[j * ldy + i] = _mm512_reduce_add_ps(acc[i][j]) + (bias ? bias[i] : 0.0f);
}

void cpu_qgemm_avx512(loom_dtype t, const void *w, size_t row_bytes, const void *xp, int64_t M, int64_t K,
                      int64_t n0, int64_t n1, float *y, int64_t ldy, const float *bias) {
    const int64_t np = K / 64;
    const qg_pair *xr = xp;
    for (int64_t m0 = 0; m0 < M; m0 += 4) {
        int nx = (int)(M - m0 < 4 ? M - m0 : 4);
        const qg_pair *x[4];
        for (int j = 0; j < 4; j++) x[j] = xr + (m0 + (j < nx ? j : 0)) * np;
        float *yr = y + m0 * ldy;
        int64_t n = n0;
        const float *b = bias;
        if (t == LOOM_Q8_0) {
            if (nx == 4)
                for (; n + 4 <= n1; n += 4)
                    tile(LOOM_Q8_0, 4, 4, (const char *)w + n * row_bytes, row_bytes, x, np, yr + n, ldy, b ? b + n : NULL);
            for (; n < n1; n += 4) {
                int nw = (int)(n1 - n < 4 ? n1 - n : 4);
                tile(LOOM_Q8_0, nw, nx, (const char *)w + n * row_bytes, row_bytes, x, np, yr + n, ldy, b ? b + n : NULL);
            }
        } else {
            if (nx == 4)
                for (; n + 4 <= n1; n += 4)
                    tile(LOOM_Q4_0, 4, 4, (const char *)w + n * row_bytes, row_bytes, x, np, yr + n, ldy, b ? b + n : NULL);
            for (; n < n1; n += 4) {
                int nw = (int)(n1 - n < 4 ? n1 - n : 4);
                tile(LOOM_Q4_0, nw, nx, (const char *)w + n * row_bytes, row_bytes, x, np, yr + n, ldy, b ? b + n : NULL);
            }
        }
    }
}
