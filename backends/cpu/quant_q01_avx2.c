/* Q8_0 / Q4_0 weights on CPUs with AVX2 but no AVX-512 VNNI (2026-12-06; before: the rows kernel of
 * quant_simd.h for decode and prefill; LOOM_CPU_QAVX2=0 gives it back, for A/B timing). Integer dot
 * products per 32-block by maddubs (u8 x s8 pairs to int16; no pair here saturates) then madd with
 * ones to int32 lanes, converted to f32 and scaled by d_w * d_x.
 *
 * Decode (M = 1, cpu_qgemv_q01_avx2): x quantised by loom_q8x_quant's rule (cpu_q8x_quant_avx2), two
 * weight rows at a time sharing each x load, each row prefetching the same bytes pf_rows ahead. Q4_0
 * takes two blocks a step: both blocks' 16 nibble bytes in one register, low nibbles against x
 * elements 0-15 of the two blocks and high against 16-31 (x rearranged so once per call), the two
 * maddubs added as int16, one madd: block b in int32 lanes 0-3, b + 1 in 4-7, one conversion, and the
 * nibbles' -8 offset on the f32 step (t = p d_x + c_x with c_x = -2 d_x (s[0] + s[1]) per lane, then
 * acc += t d_w). Q8_0 one block a step: |w| against x with w's sign (the sign trick).
 *
 * Prefill (M >= 2, cpu_qgemm_q01_avx2): x rows prepared once (cpu_qgemm_q01_prep) and, per group of
 * 4 weight rows, the weight blocks unpacked once, both laid out per block pair as the Q4_0 decode
 * step reads them; then every x row passes in register tiles of 4 weight rows x 2 x rows. Q4_0: x +
 * 128 as u8 against the codes - 8 as s8, the +128 taken off once per output (-128 sum_b d_w (sum of
 * the block's codes) d_x, 8 blocks per FMA); Q8_0: |w| against x with w's sign, one madd per block.
 * Per pair of blocks and tile cell: the maddubs, one or two madd, one conversion, one product of the
 * two scale vectors and one FMA. */
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

/* Both operands of the tiles are laid out per pair of 32-blocks (b, b + 1; an odd last block paired
 * with a zero one, which adds nothing): 32 codes of elements 0-15 of b then of b + 1 ("lo"), 32 of
 * elements 16-31 the same ("hi"), then 8 floats: the scale of b four times, of b + 1 four times. The
 * two maddubs of a pair (lo against lo, hi against hi) then leave block b in int32 lanes 0-3 and b + 1
 * in lanes 4-7 after madd: one convert, one scale product and one FMA per pair.
 *
 * A prepared x row (cpu_qgemm_q01_prep): the pairs (96 bytes each; codes x + 128 as u8 for Q4_0, x
 * as s8 for Q8_0), then, for Q4_0, 2 x pairs floats d_x; a 64-byte multiple. */
size_t cpu_qgemm_q01_xbytes(loom_dtype t, int64_t K) {
    size_t np = (size_t)(K / 32 + 1) / 2, n = np * (t == LOOM_Q4_0 ? 104 : 96);
    return (n + 63) / 64 * 64;
}

void cpu_qgemm_q01_prep(loom_dtype t, const float *x, int64_t K, void *dst) {
    int64_t nb = K / 32, np = (nb + 1) / 2;
    uint8_t *xp = dst;
    float *dx = (float *)(xp + 96 * np);
    const __m256i flip = _mm256_set1_epi8(t == LOOM_Q4_0 ? (char)0x80 : 0);
    for (int64_t b = 0; b < 2 * np; b++) {
        uint8_t *o = xp + 96 * (b / 2);
        int k = (int)(b & 1);
        loom_q8x q = {0};
        if (b < nb) cpu_q8x_quant_avx2(x + 32 * b, &q, 32);
        __m256i v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)q.qs), flip);
        _mm_storeu_si128((__m128i *)(o + 16 * k), _mm256_castsi256_si128(v));
        _mm_storeu_si128((__m128i *)(o + 32 + 16 * k), _mm256_extracti128_si256(v, 1));
        _mm_storeu_ps((float *)(o + 64) + 4 * k, _mm_set1_ps(q.d));
        if (t == LOOM_Q4_0) dx[b] = q.d;
    }
}

/* The unpacked weight row of a tile, per pair: Q4_0 lo and hi as s8 codes (nibble - 8) and the 8 d_w
 * floats (96 bytes; ws: per block d_w * (sum of its codes)); Q8_0 |c| lo, |c| hi as u8, c lo, c hi as
 * s8 (for the sign trick: -128 has no s8 negation, so the sign goes on x) and the 8 floats (160 bytes). */
#define Q01_WPAIR(t) ((t) == LOOM_Q4_0 ? 96 : 160)
static void q01_unpack(loom_dtype t, const char *row, int64_t nb, char *wp, float *ws) {
    const __m128i m4 = _mm_set1_epi8(0x0F), k8 = _mm_set1_epi8(8);
    for (int64_t b = 0; b < (nb + 1) / 2 * 2; b++) {
        char *o = wp + Q01_WPAIR(t) * (b / 2);
        int k = (int)(b & 1);
        __m128i lo = _mm_setzero_si128(), hi = lo;
        float d = 0;
        if (b < nb && t == LOOM_Q4_0) {
            const loom_block_q4_0 *q = (const loom_block_q4_0 *)row + b;
            __m128i raw = _mm_loadu_si128((const __m128i *)q->qs);
            __m128i ln = _mm_and_si128(raw, m4), hn = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
            __m128i sad = _mm_add_epi64(_mm_sad_epu8(ln, _mm_setzero_si128()), _mm_sad_epu8(hn, _mm_setzero_si128()));
            lo = _mm_sub_epi8(ln, k8), hi = _mm_sub_epi8(hn, k8), d = _cvtsh_ss(q->d);
            ws[b] = d * (float)(_mm_cvtsi128_si32(sad) + _mm_extract_epi32(sad, 2) - 256);
        } else if (b < nb) {
            const loom_block_q8_0 *q = (const loom_block_q8_0 *)row + b;
            lo = _mm_loadu_si128((const __m128i *)q->qs), hi = _mm_loadu_si128((const __m128i *)(q->qs + 16));
            d = _cvtsh_ss(q->d);
        } else if (t == LOOM_Q4_0) {
            ws[b] = 0;
        }
        if (t == LOOM_Q8_0) {
            _mm_storeu_si128((__m128i *)(o + 16 * k), _mm_abs_epi8(lo));
            _mm_storeu_si128((__m128i *)(o + 32 + 16 * k), _mm_abs_epi8(hi));
            o += 64;
        }
        _mm_storeu_si128((__m128i *)(o + 16 * k), lo);
        _mm_storeu_si128((__m128i *)(o + 32 + 16 * k), hi);
        _mm_storeu_ps((float *)(o + 64) + 4 * k, _mm_set1_ps(d));
    }
}

/* One tile: RM unpacked weight rows (wrow bytes apart; ws 2 np floats apart) against RN prepared x rows
 * (xbytes apart); y[j * ldy + i] for i < RM, j < RN. Q4_0: x + 128 (u8) against c (s8), the two
 * maddubs added as int16 (|sum| <= 4 x 255 x 8) then one madd, and the +128 taken off at the end as
 * -128 sum_b ws[b] d_x[b]; Q8_0: |c| against x with c's sign, one madd each (two maddubs' int16 could
 * reach 4 x 128 x 127). */
QL_INLINE void q01_tile(loom_dtype t, int RM, int RN, const char *wg, size_t wrow, const float *ws, int64_t np,
                        const uint8_t *xp, size_t xbytes, float *y, int64_t ldy, const float *bias) {
    __m256 acc[Q01_RM][Q01_RN];
    QL_UNROLL for (int i = 0; i < RM; i++) QL_UNROLL for (int j = 0; j < RN; j++) acc[i][j] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    const size_t wpair = Q01_WPAIR(t);
    for (int64_t pr = 0; pr < np; pr++) {
        __m256i xl[Q01_RN], xh[Q01_RN];
        QL_UNROLL for (int j = 0; j < RN; j++) {
            const uint8_t *xr = xp + j * xbytes + 96 * pr;
            xl[j] = _mm256_loadu_si256((const __m256i *)xr), xh[j] = _mm256_loadu_si256((const __m256i *)(xr + 32));
        }
        QL_UNROLL for (int i = 0; i < RM; i++) {
            const char *wp = wg + i * wrow + wpair * pr;
            __m256i wl = _mm256_loadu_si256((const __m256i *)wp), wh = _mm256_loadu_si256((const __m256i *)(wp + 32));
            __m256 bw = _mm256_loadu_ps((const float *)(wp + wpair - 32));
            QL_UNROLL for (int j = 0; j < RN; j++) {
                __m256i p;
                if (t == LOOM_Q4_0) {
                    p = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(xl[j], wl), _mm256_maddubs_epi16(xh[j], wh)), ones);
                } else {
                    __m256i sl = _mm256_sign_epi8(xl[j], _mm256_loadu_si256((const __m256i *)(wp + 64)));
                    __m256i sh = _mm256_sign_epi8(xh[j], _mm256_loadu_si256((const __m256i *)(wp + 96)));
                    p = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(wl, sl), ones),
                                         _mm256_madd_epi16(_mm256_maddubs_epi16(wh, sh), ones));
                }
                __m256 bx = _mm256_loadu_ps((const float *)(xp + j * xbytes + 96 * pr + 64));
                acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(bw, bx), acc[i][j]);
            }
        }
    }
    if (t == LOOM_Q4_0) { /* the +128 on x (2 np blocks; the padding's ws is 0) */
        const int64_t nbp = 2 * np;
        QL_UNROLL for (int j = 0; j < RN; j++) {
            const float *xd = (const float *)(xp + j * xbytes + 96 * np);
            QL_UNROLL for (int i = 0; i < RM; i++) {
                const float *wi = ws + nbp * i;
                __m256 cs = _mm256_setzero_ps();
                int64_t b = 0;
                for (; b + 8 <= nbp; b += 8) cs = _mm256_fmadd_ps(_mm256_loadu_ps(wi + b), _mm256_loadu_ps(xd + b), cs);
                float tail = 0;
                for (; b < nbp; b++) tail += wi[b] * xd[b];
                acc[i][j] = _mm256_fmadd_ps(cs, _mm256_set1_ps(-128.0f), acc[i][j]);
                acc[i][j] = _mm256_add_ps(acc[i][j], _mm256_setr_ps(-128.0f * tail, 0, 0, 0, 0, 0, 0, 0));
            }
        }
    }
    QL_UNROLL for (int j = 0; j < RN; j++) QL_UNROLL for (int i = 0; i < RM; i++)
        y[j * ldy + i] = ql_hsum(acc[i][j]) + (bias ? bias[i] : 0.0f);
}

#define Q01_TILE(T, rm, rn) q01_tile(T, rm, rn, wg, wrow, ws, np, xp, xbytes, y, ldy, bias)
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

static void q01_tiles(loom_dtype t, int rm, int rn, const char *wg, size_t wrow, const float *ws, int64_t np,
                      const uint8_t *xp, size_t xbytes, float *y, int64_t ldy, const float *bias) {
    if (t == LOOM_Q4_0) {
        Q01_TILES(LOOM_Q4_0)
    } else {
        Q01_TILES(LOOM_Q8_0)
    }
}

int cpu_qgemm_q01_avx2(loom_dtype t, const void *w, size_t row_bytes, const void *xp, int64_t M, int64_t K, int64_t n0,
                       int64_t n1, float *y, int64_t ldy, const float *bias) {
    int64_t nb = K / 32, np = (nb + 1) / 2;
    size_t xbytes = cpu_qgemm_q01_xbytes(t, K), wrow = (size_t)Q01_WPAIR(t) * (size_t)np;
    /* the group's unpacked rows, then their ws (2 np floats a row) */
    char *buf = loom_malloc_aligned((size_t)Q01_RM * (wrow + 8 * (size_t)np));
    if (!buf) return -1;
    float *ws = (float *)(buf + Q01_RM * wrow);
    for (int64_t n = n0; n < n1; n += Q01_RM) {
        int rm = (int)(n1 - n < Q01_RM ? n1 - n : Q01_RM);
        for (int i = 0; i < rm; i++)
            q01_unpack(t, (const char *)w + (size_t)(n + i) * row_bytes, nb, buf + i * wrow, ws + 2 * np * i);
        for (int64_t m = 0; m < M; m += Q01_RN) {
            int rn = (int)(M - m < Q01_RN ? M - m : Q01_RN);
            q01_tiles(t, rm, rn, buf, wrow, ws, np, (const uint8_t *)xp + (size_t)m * xbytes, xbytes, y + m * ldy + n,
                      ldy, bias ? bias + n : NULL);
        }
    }
    loom_free_aligned(buf);
    return 0;
}
