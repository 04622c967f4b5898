/* Block-quantised weight types (GGUF/ggml Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K,
 * Q6_K, IQ4_NL, IQ4_XS): block facts, and reference quantise / dequantise of rows, bit-exact with
 * ggml's block layouts.
 *
 * A quantised row of n elements is n / blck blocks (n must be a whole number of blocks). Layouts
 * (little-endian, packed, as ggml's block_* structs):
 *   Q8_0  32 elements, 34 bytes: f16 d; int8 qs[32]                  x = qs[i] * d
 *   Q4_0  32 elements, 18 bytes: f16 d; u8 qs[16]; element i < 16 is the low nibble of qs[i],
 *         element i + 16 the high nibble                             x = (q - 8) * d
 *   Q4_K 256 elements, 144 bytes: f16 d, dmin; u8 scales[12] (8 pairs of 6-bit scale/min);
 *         u8 qs[128]; 8 sub-blocks of 32: x = d*sc*q - dmin*m
 *   Q6_K 256 elements, 210 bytes: u8 ql[128] (low 4 bits), u8 qh[64] (high 2 bits); int8
 *         scales[16] (per 16 elements); f16 d                       x = d*sc*(q - 32)
 * 32-element blocks with Q4_0's nibble order (element j < 16 low nibble of qs[j], j + 16 high):
 *   Q4_1   20 bytes: f16 d, m; u8 qs[16]                            x = q * d + m
 *   Q5_0   22 bytes: f16 d; u8 qh[4] (bit j of the u32 = 5th bit of element j); u8 qs[16]
 *                                                                    x = (q - 16) * d
 *   Q5_1   24 bytes: f16 d, m; u8 qh[4]; u8 qs[16]                  x = q * d + m
 *   IQ4_NL 18 bytes: f16 d; u8 qs[16]                               x = d * kvalues[q] (iq4nl table)
 * 256-element super-blocks:
 *   Q2_K  84 bytes: u8 scales[16] (per 16: low nibble scale, high min); u8 qs[64]; f16 d, dmin.
 *         Element e of each 128-half: 2 bits at shift 2*(e/32) of qs[32*half + e%32];
 *         x = d*sc*q - dmin*m
 *   Q3_K 110 bytes: u8 hmask[32]; u8 qs[64] (low 2 bits, as Q2_K); u8 scales[12] (16 6-bit scales,
 *         biased by 32: low nibble of scales[i%8] >> 4*(i/8), high 2 bits of scales[8+i%4] >>
 *         2*(i/4)); f16 d. Bit e/32 of hmask[e%32] set: +0, clear: -4.  x = d*(sc-32)*q, q in -4..3
 *   Q5_K 176 bytes: f16 d, dmin; u8 scales[12] (as Q4_K); u8 qh[32] (bit e/32 of qh[e%32] is the
 *         5th bit); u8 qs[128] (as Q4_K)                           x = d*sc*q - dmin*m per 32
 *   IQ4_XS 136 bytes: f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]; 8 sub-blocks of 32 with a
 *         6-bit scale ls (low nibble scales_l[ib/2] >> 4*(ib%2), high 2 bits scales_h >> 2*ib),
 *         qs as IQ4_NL per 16 bytes                                 x = d*(ls-32)*kvalues[q]
 */
#ifndef LOOM_QBLOCK_H
#define LOOM_QBLOCK_H

#include "loom.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define LOOM_QK 32   /* Q8_0 / Q4_0 block */
#define LOOM_QK_K 256 /* k-quant super-block */

typedef struct { uint16_t d; int8_t qs[32]; } loom_block_q8_0;
typedef struct { uint16_t d; uint8_t qs[16]; } loom_block_q4_0;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } loom_block_q4_k;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } loom_block_q6_k;
typedef struct { uint16_t d, m; uint8_t qs[16]; } loom_block_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } loom_block_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; } loom_block_q5_1;
typedef struct { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; } loom_block_q2_k;
typedef struct { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; } loom_block_q3_k;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } loom_block_q5_k;
typedef struct { uint16_t d; uint8_t qs[16]; } loom_block_iq4_nl;
typedef struct { uint16_t d, scales_h; uint8_t scales_l[4]; uint8_t qs[128]; } loom_block_iq4_xs;

/* Scale fields of the k-quant super-blocks, shared by the reference code and the SIMD kernels. */

/* Sub-block j (0..7) of a Q4_K / Q5_K super-block: its 6-bit scale and minimum from scales[12]
 * (j < 4: low 6 bits of bytes j and j + 4; else nibbles of byte j + 4 and the top 2 bits of bytes
 * j - 4 and j). */
static inline void loom_k4_scale_min(const uint8_t *s, int j, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63, *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* All 8 at once, on 32-bit words: out[0..7] the scales, out[8..15] the minimums (the same values
 * as loom_k4_scale_min, byte j of each half for sub-block j). */
static inline void loom_k4_scales8(const uint8_t *s, uint8_t *out) {
    uint32_t u[4];
    memcpy(u, s, 12);
    u[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4);
    uint32_t ua = u[1] & 0x3f3f3f3fu;
    u[1] = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);
    u[2] = ua;
    u[0] &= 0x3f3f3f3fu;
    memcpy(out, u, 16);
}

/* Q3_K's scale i (0..15) of scales[12], minus its bias 32: low nibble of s[i % 8] >> 4*(i/8), high
 * 2 bits of s[8 + i % 4] >> 2*(i/4). */
static inline int loom_q3k_scale(const uint8_t *s, int i) {
    return (((s[i % 8] >> (4 * (i / 8))) & 0xF) | ((s[8 + i % 4] >> (2 * (i / 4))) & 3) << 4) - 32;
}

/* IQ4_XS's scale of sub-block j (0..7), minus its bias 32. */
static inline int loom_iq4xs_scale(uint16_t scales_h, const uint8_t *scales_l, int j) {
    return (((scales_l[j / 2] >> (4 * (j % 2))) & 0xF) | (((scales_h >> (2 * j)) & 3) << 4)) - 32;
}

/* The 16 values of IQ4_NL / IQ4_XS codes (ggml's kvalues_iq4nl). */
extern const int8_t loom_iq4nl_values[16];

bool loom_dtype_is_quant(loom_dtype t);
/* A quantised type by its name as loom_dtype_name spells it, case-insensitive ("q5_k", "iq4_nl"),
 * or LOOM_DTYPE_COUNT. */
loom_dtype loom_dtype_from_name(const char *name);
/* Elements per block (1 for plain types, 0 for unknown) and bytes per block. */
int loom_dtype_blck(loom_dtype t);
size_t loom_dtype_block_bytes(loom_dtype t);
/* Bytes of n consecutive elements (n a whole number of blocks; 0 for unknown types). */
size_t loom_dtype_nbytes(loom_dtype t, int64_t n);

/* n elements (a whole number of blocks) of a quantised row to f32 / from f32 (ggml's reference
 * quantize_row_*_ref: round to nearest; Q4_K/Q6_K search the scale without importance weights). */
void loom_dequant_row(loom_dtype t, const void *src, float *dst, int64_t n);
void loom_quant_row(loom_dtype t, const float *src, void *dst, int64_t n);

/* Index of the first block whose scale(s) are NaN or infinite in nblocks blocks, or -1. */
int64_t loom_quant_bad_scale(loom_dtype t, const void *data, int64_t nblocks);

/* An activation row quantised for integer dot products: 32 elements per block, d = max|x| / 127,
 * qs = round(x / d); s[h] = sum of qs[16h .. 16h+15] (for the unsigned-times-signed SIMD tricks
 * and the Q4_K minimum). */
typedef struct { float d; int16_t s[2]; int8_t qs[32]; } loom_q8x;
void loom_q8x_quant(const float *x, loom_q8x *y, int64_t n);

/* Block b (32 elements; a 256-element super-block is 8 of them) of a row of one of the later types
 * (Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL, IQ4_XS) as int8 codes and an affine map per 16
 * elements: element e is A[e / 16] * c[e] + B[e / 16] (up to f32 rounding of the products). */
void loom_qblock32(loom_dtype t, const void *row, int64_t b, int8_t *c, float *A, float *B);

/* Reference dot product of one quantised weight row (n elements) with a q8x row. */
float loom_quant_dot_ref(loom_dtype t, const void *w, const loom_q8x *x, int64_t n);

#endif
