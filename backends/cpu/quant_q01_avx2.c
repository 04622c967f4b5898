/* Q8_0 / Q4_0 weights on CPUs with AVX2 but no AVX-512 VNNI (2026-12-06; before: the rows kernel of
 * quant_simd.h for both decode and prefill, LOOM_CPU_QAVX2=0 gives it back). Integer dot products
 * per 32-block by maddubs (u8 x s8 pairs to int16; no pair here saturates) then madd with ones to 8
 * int32 lanes, converted to f32 and scaled by d_w * d_x.
 *
 * Decode (M = 1, cpu_qgemv_q01_avx2): x quantised by loom_q8x_quant's rule (cpu_q8x_quant_avx2), two
 * weight rows at a time sharing each x block's loads. Q4_0 takes its nibbles unsigned (0..15) against
 * the signed x codes; the -8 offset rides on the f32 step: per block t = p * d_x + c_x with c_x =
 * -d_x * (s[0] + s[1]) in every lane (8 lanes: -8 d_x S), then acc += t * d_w. Q8_0 takes |w| against
 * x with w's sign (the sign trick).
 *
 * Prefill (M >= 2, cpu_qgemm_q01_avx2): each x row is prepared once (cpu_qgemm_q01_prep): Q4_0 its
 * codes + 128 as u8 (x ^ 0x80), Q8_0 |x| as u8 and x itself, and d_x per block. Per group of Q01_RM
 * weight rows the blocks are unpacked once (Q4_0: nibble - 8 as s8; Q8_0: the codes; d_w as f32)
 * and every x row passes in tiles of Q01_RM weight rows x Q01_RN x rows, the accumulators in
 * registers: per pair of blocks maddubs (x's u8 against w's s8 from memory; Q8_0: |x| against w with
 * x's sign), madd, convert, one multiply of the two scales and one FMA. Q4_0's +128 comes off at the
 * end: -128 * sum_b d_w * (sum of w's codes) * d_x, one 8-wide FMA per 8 blocks. */
#include "backends/cpu/cpu_quant.h"
#include "backends/cpu/quant_later_unpack.h"
#include "core/util.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

static inline __attribute__((always_inline)) __m256i q01_dot(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* the f16 at p as 8 equal floats */
static inline __attribute__((always_inline)) __m256 q01_h8(const void *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _mm256_cvtph_ps(_mm_set1_epi16((short)h));
}

/* ---- decode GEMV ------------------------------------------------------------------------------- */

/* Q4_0 x prepared per pair of blocks (b, b + 1) for q01_rows: 32 codes of elements 0-15 of b then of
 * b + 1 (the low nibbles of both blocks' 16 bytes, loaded side by side), 32 codes of elements 16-31
 * (the high nibbles), then 8 floats d_x (b four times, b + 1 four times) and 8 floats -2 d_x (s[0] +
 * s[1]) the same (four lanes a block: -8 d_x S, the -8 offset of the codes). */
#define Q40_PAIR 128
static void q40_xpairs(const loom_q8x *x, int64_t nb, char *xr) {
    for (int64_t b = 0; b + 1 < nb; b += 2, xr += Q40_PAIR) {
        memcpy(xr, x[b].qs, 16), memcpy(xr + 16, x[b + 1].qs, 16);
        memcpy(xr + 32, x[b].qs + 16, 16), memcpy(xr + 48, x[b + 1].qs + 16, 16);
        float *f = (float *)(xr + 64);
        for (int k = 0; k < 2; k++) {
            float d = x[b + k].d, c = -2.0f * d * (float)(x[b + k].s[0] + x[b + k].s[1]);
            for (int l = 0; l < 4; l++) f[4 * k + l] = d, f[8 + 4 * k + l] = c;
        }
    }
}

/* R (1 or 2) weight rows at w, w + rb: out[r] = row r . x. Q4_0 takes two blocks per step (xr from
 * q40_xpairs): both blocks' 16 bytes in one register, the two maddubs (low nibbles against elements
 * 0-15, high against 16-31) added as int16 (|sum| <= 4 x 15 x 127), one madd, one convert, and the
 * two blocks' scales as lanes 0-3 and 4-7; an odd last block as Q8_0 is done, one at a time. */
QL_INLINE void q01_rows(loom_dtype t, int R, const char *w, size_t rb, const loom_q8x *x, const float *xc,
                        const char *xr, int64_t nb, float *out, size_t pf) {
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    const size_t bb = t == LOOM_Q4_0 ? sizeof(loom_block_q4_0) : sizeof(loom_block_q8_0);
    int64_t b0 = 0;
    if (t == LOOM_Q4_0) {
        const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
        const __m128i hidx = _mm_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3);
        for (; b0 + 1 < nb; b0 += 2, xr += Q40_PAIR) {
            __m256i xl = _mm256_loadu_si256((const __m256i *)xr), xh = _mm256_loadu_si256((const __m256i *)(xr + 32));
            __m256 dx = _mm256_loadu_ps((const float *)(xr + 64)), cx = _mm256_loadu_ps((const float *)(xr + 96));
            QL_UNROLL for (int r = 0; r < R; r++) {
                const char *p = w + r * rb + (size_t)b0 * bb;
                if (pf) _mm_prefetch(p + pf, _MM_HINT_T0);
                __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p + 2))),
                                                    _mm_loadu_si128((const __m128i *)(p + 20)), 1);
                __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(v, m4), xl),
                                               _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), xh));
                __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, ones));
                uint16_t h0, h1;
                memcpy(&h0, p, 2), memcpy(&h1, p + 18, 2);
                __m256 dw = _mm256_cvtph_ps(_mm_shuffle_epi8(_mm_cvtsi32_si128((int)(h0 | (uint32_t)h1 << 16)), hidx));
                acc[r] = _mm256_fmadd_ps(_mm256_fmadd_ps(f, dx, cx), dw, acc[r]);
            }
        }
    }
    for (int64_t b = b0; b < nb; b++) {
        __m256i xv = _mm256_loadu_si256((const __m256i *)x[b].qs);
        __m256 bx = _mm256_broadcast_ss(&x[b].d);
        if (t == LOOM_Q4_0) {
            __m256 cx = _mm256_broadcast_ss(xc + b);
            QL_UNROLL for (int r = 0; r < R; r++) {
                const char *p = w + r * rb + (size_t)b * bb;
                if (pf && !(b & 1)) _mm_prefetch(p + pf, _MM_HINT_T0);
                __m256 f = _mm256_cvtepi32_ps(q01_dot(ql_nib((const uint8_t *)p + 2), xv));
                acc[r] = _mm256_fmadd_ps(_mm256_fmadd_ps(f, bx, cx), q01_h8(p), acc[r]);
            }
        } else {
            QL_UNROLL for (int r = 0; r < R; r++) {
                const char *p = w + r * rb + (size_t)b * bb;
                if (pf) _mm_prefetch(p + pf, _MM_HINT_T0);
                __m256i c = _mm256_loadu_si256((const __m256i *)(p + 2));
                __m256 f = _mm256_cvtepi32_ps(q01_dot(_mm256_abs_epi8(c), _mm256_sign_epi8(xv, c)));
                acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(f, bx), q01_h8(p), acc[r]);
            }
        }
    }
    for (int r = 0; r < R; r++) out[r] = ql_hsum(acc[r]);
}

QL_INLINE void q01_gemv_t(loom_dtype t, const char *w, size_t rb, const loom_q8x *x, const float *xc, const char *xr, int64_t nb,
                          int64_t n0, int64_t n1, float *y, const float *bias, int pf_rows) {
    float o[2];
    int64_t n = n0;
    for (; n + 2 <= n1; n += 2) {
        size_t pf = n + 2 + pf_rows <= n1 && pf_rows > 0 ? (size_t)pf_rows * rb : 0;
        q01_rows(t, 2, w + (size_t)n * rb, rb, x, xc, xr, nb, o, pf);
        y[n] = o[0] + (bias ? bias[n] : 0.0f), y[n + 1] = o[1] + (bias ? bias[n + 1] : 0.0f);
    }
    if (n < n1) {
        q01_rows(t, 1, w + (size_t)n * rb, rb, x, xc, xr, nb, o, 0);
        y[n] = o[0] + (bias ? bias[n] : 0.0f);
    }
}

void cpu_qgemv_q01_avx2(loom_dtype t, const void *w, size_t row_bytes, const loom_q8x *x, int64_t K, int64_t n0,
                        int64_t n1, float *y, const float *bias, int pf_rows) {
    int64_t nb = K / 32;
    if (t == LOOM_Q8_0) {
        q01_gemv_t(LOOM_Q8_0, w, row_bytes, x, NULL, NULL, nb, n0, n1, y, bias, pf_rows);
        return;
    }
    /* xc (nb floats) then the pairs (64-byte aligned) */
    _Alignas(64) char buf[256 * (4 + Q40_PAIR / 2)];
    char *xb = nb <= 256 ? buf : loom_malloc_aligned((size_t)nb * (4 + Q40_PAIR / 2) + 64);
    if (!xb) { /* (out of memory: cannot happen at real sizes) the reference */
        for (int64_t n = n0; n < n1; n++)
            y[n] = loom_quant_dot_ref(t, (const char *)w + (size_t)n * row_bytes, x, K) + (bias ? bias[n] : 0.0f);
        return;
    }
    float *xc = (float *)xb;
    char *xr = xb + ((size_t)nb * 4 + 63) / 64 * 64;
    for (int64_t b = 0; b < nb; b++) xc[b] = -x[b].d * (float)(x[b].s[0] + x[b].s[1]);
    q40_xpairs(x, nb, xr);
    q01_gemv_t(LOOM_Q4_0, w, row_bytes, x, xc, xr, nb, n0, n1, y, bias, pf_rows);
    if (xb != buf) loom_free_aligned(xb);
}

/* ---- prefill tile GEMM ------------------------------------------------------------------------- */

#define Q01_RM 4 /* weight rows per tile */
#define Q01_RN 2 /* x rows per tile */

/* A prepared x row: nb x 32 codes (Q4_0: x + 128 as u8; Q8_0: x as s8), then nb floats d_x; a 64-byte
 * multiple. */
size_t cpu_qgemm_q01_xbytes(loom_dtype t, int64_t K) {
    (void)t;
    size_t n = (size_t)(K / 32) * 36;
    return (n + 63) / 64 * 64;
}

void cpu_qgemm_q01_prep(loom_dtype t, const float *x, int64_t K, void *dst) {
    int64_t nb = K / 32;
    uint8_t *a = dst;
    float *d = (float *)(a + 32 * nb);
    for (int64_t b = 0; b < nb; b++) {
        loom_q8x q;
        cpu_q8x_quant_avx2(x + 32 * b, &q, 32);
        __m256i v = _mm256_loadu_si256((const __m256i *)q.qs);
        if (t == LOOM_Q4_0) v = _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80));
        _mm256_storeu_si256((__m256i *)(a + 32 * b), v);
        d[b] = q.d;
    }
}

/* The unpacked weight rows of a group: per row nb blocks of codes (Q4_0: 32 s8, nibble - 8; Q8_0: 32
 * u8 |c| then the 32 s8 c, for the sign trick: -128 has no s8 negation), nb floats d_w, and (Q4_0) nb
 * floats d_w * (sum of the block's codes). */
typedef struct {
    int8_t *c;
    float *dw, *ws;
} q01_wgroup;

static void q01_unpack(loom_dtype t, const char *row, int64_t nb, int8_t *c, float *dw, float *ws) {
    for (int64_t b = 0; b < nb; b++) {
        uint16_t h;
        if (t == LOOM_Q4_0) {
            const loom_block_q4_0 *q = (const loom_block_q4_0 *)row + b;
            __m256i v = _mm256_sub_epi8(ql_nib(q->qs), _mm256_set1_epi8(8));
            _mm256_storeu_si256((__m256i *)(c + 32 * b), v);
            /* the sum of the 32 codes: maddubs with ones (u8 1 x s8 code) then madd with ones */
            __m256i s = q01_dot(_mm256_set1_epi8(1), v);
            __m128i h4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            h4 = _mm_hadd_epi32(h4, h4);
            h4 = _mm_hadd_epi32(h4, h4);
            h = q->d;
            dw[b] = _cvtsh_ss(h);
            ws[b] = dw[b] * (float)_mm_cvtsi128_si32(h4);
        } else {
            const loom_block_q8_0 *q = (const loom_block_q8_0 *)row + b;
            __m256i v = _mm256_loadu_si256((const __m256i *)q->qs);
            _mm256_storeu_si256((__m256i *)(c + 64 * b), _mm256_abs_epi8(v));
            _mm256_storeu_si256((__m256i *)(c + 64 * b + 32), v);
            h = q->d;
            dw[b] = _cvtsh_ss(h);
        }
    }
}

/* One tile: RM weight rows (unpacked: codes c + cb * nb * i, scales dw + nb * i) against RN x rows
 * (prepared, xb bytes apart); y[j * ldy + i] for i < RM, j < RN. */
QL_INLINE void q01_tile(loom_dtype t, int RM, int RN, const int8_t *c, const float *dw, const float *ws, int64_t nb,
                        const uint8_t *xp, size_t xbytes, float *y, int64_t ldy, const float *bias) {
    __m256 acc[Q01_RM][Q01_RN];
    QL_UNROLL for (int i = 0; i < RM; i++) QL_UNROLL for (int j = 0; j < RN; j++) acc[i][j] = _mm256_setzero_ps();
    const size_t xd_off = 32 * (size_t)nb, cb = t == LOOM_Q8_0 ? 64 : 32;
    for (int64_t b = 0; b < nb; b++) {
        __m256i xa[Q01_RN];
        __m256 bx[Q01_RN];
        QL_UNROLL for (int j = 0; j < RN; j++) {
            const uint8_t *xr = xp + j * xbytes;
            xa[j] = _mm256_loadu_si256((const __m256i *)(xr + 32 * b));
            bx[j] = _mm256_broadcast_ss((const float *)(xr + xd_off) + b);
        }
        QL_UNROLL for (int i = 0; i < RM; i++) {
            const int8_t *cp = c + cb * (nb * i + b);
            __m256i ci = _mm256_loadu_si256((const __m256i *)cp), si = ci;
            if (t == LOOM_Q8_0) si = _mm256_loadu_si256((const __m256i *)(cp + 32));
            __m256 bw = _mm256_broadcast_ss(dw + nb * i + b);
            QL_UNROLL for (int j = 0; j < RN; j++) {
                /* Q4_0: x + 128 (u8) against c - 8; Q8_0: |c| (u8) against x with c's sign */
                __m256i p = t == LOOM_Q8_0 ? q01_dot(ci, _mm256_sign_epi8(xa[j], si)) : q01_dot(xa[j], ci);
                acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(bw, bx[j]), acc[i][j]);
            }
        }
    }
    if (t == LOOM_Q4_0) { /* the +128 on x: -128 * sum_b ws_i[b] d_x[b] */
        const __m256 k128 = _mm256_set1_ps(-128.0f);
        QL_UNROLL for (int j = 0; j < RN; j++) {
            const float *xd = (const float *)(xp + j * xbytes + xd_off);
            QL_UNROLL for (int i = 0; i < RM; i++) {
                const float *wi = ws + nb * i;
                __m256 cs = _mm256_setzero_ps();
                int64_t b = 0;
                for (; b + 8 <= nb; b += 8) cs = _mm256_fmadd_ps(_mm256_loadu_ps(wi + b), _mm256_loadu_ps(xd + b), cs);
                float tail = 0;
                for (; b < nb; b++) tail += wi[b] * xd[b];
                acc[i][j] = _mm256_fmadd_ps(cs, k128, acc[i][j]);
                acc[i][j] = _mm256_add_ps(acc[i][j], _mm256_setr_ps(-128.0f * tail, 0, 0, 0, 0, 0, 0, 0));
            }
        }
    }
    QL_UNROLL for (int j = 0; j < RN; j++) QL_UNROLL for (int i = 0; i < RM; i++)
        y[j * ldy + i] = ql_hsum(acc[i][j]) + (bias ? bias[i] : 0.0f);
}

#define Q01_TILE(T, rm, rn) q01_tile(T, rm, rn, g->c, g->dw, g->ws, nb, xp, xbytes, y, ldy, bias)
#define Q01_TILES(T)                                                                                              \
    switch ((rm - 1) * Q01_RN + rn - 1) {                                                                         \
    case 0: Q01_TILE(T, 1, 1); break;                                                                             \
    case 1: Q01_TILE(T, 1, 2); break;                                                                             \
    case 2: Q01_TILE(T, 2, 1); break;                                                                             \
    case 3: Q01_TILE(T, 2, 2); break;                                                                             \
    case 4: Q01_TILE(T, 3, 1); break;                                                                             \
    case 5: Q01_TILE(T, 3, 2); break;                                                                             \
    case 6: Q01_TILE(T, 4, 1); break;                                                                             \
    default: Q01_TILE(T, 4, 2); break;                                                                            \
    }
_Static_assert(Q01_RM == 4 && Q01_RN == 2, "Q01_TILES lists the tiles of 4 x 2");

static void q01_tiles(loom_dtype t, int rm, int rn, const q01_wgroup *g, int64_t nb, const uint8_t *xp, size_t xbytes,
                      float *y, int64_t ldy, const float *bias) {
    if (t == LOOM_Q4_0) {
        Q01_TILES(LOOM_Q4_0)
    } else {
        Q01_TILES(LOOM_Q8_0)
    }
}

int cpu_qgemm_q01_avx2(loom_dtype t, const void *w, size_t row_bytes, const void *xp, int64_t M, int64_t K, int64_t n0,
                       int64_t n1, float *y, int64_t ldy, const float *bias) {
    int64_t nb = K / 32;
    size_t xbytes = cpu_qgemm_q01_xbytes(t, K);
    /* per weight row of the group and block: 32 (Q4_0) or 64 (Q8_0) code bytes and 2 floats */
    const size_t cb = t == LOOM_Q8_0 ? 64 : 32;
    char *buf = loom_malloc_aligned((size_t)Q01_RM * (size_t)nb * (cb + 8));
    if (!buf) return -1;
    q01_wgroup g = {.c = (int8_t *)buf, .dw = (float *)(buf + (size_t)Q01_RM * nb * cb)};
    g.ws = g.dw + Q01_RM * nb;
    for (int64_t n = n0; n < n1; n += Q01_RM) {
        int rm = (int)(n1 - n < Q01_RM ? n1 - n : Q01_RM);
        for (int i = 0; i < rm; i++)
            q01_unpack(t, (const char *)w + (size_t)(n + i) * row_bytes, nb, g.c + cb * nb * i, g.dw + nb * i, g.ws + nb * i);
        for (int64_t m = 0; m < M; m += Q01_RN) {
            int rn = (int)(M - m < Q01_RN ? M - m : Q01_RN);
            q01_tiles(t, rm, rn, &g, nb, (const uint8_t *)xp + (size_t)m * xbytes, xbytes, y + m * ldy + n, ldy,
                      bias ? bias + n : NULL);
        }
    }
    loom_free_aligned(buf);
    return 0;
}
