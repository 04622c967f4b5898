/* Block-quantised weight types (GGUF/ggml Q8_0, Q4_0, Q4_K, Q6_K): block facts, and reference
 * quantise / dequantise of rows, bit-exact with ggml's block layouts.
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
 */
#ifndef LOOM_QBLOCK_H
#define LOOM_QBLOCK_H

#include "loom.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOOM_QK 32   /* Q8_0 / Q4_0 block */
#define LOOM_QK_K 256 /* k-quant super-block */

typedef struct { uint16_t d; int8_t qs[32]; } loom_block_q8_0;
typedef struct { uint16_t d; uint8_t qs[16]; } loom_block_q4_0;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } loom_block_q4_k;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } loom_block_q6_k;

bool loom_dtype_is_quant(loom_dtype t);
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

/* Reference dot product of one quantised weight row (n elements) with a q8x row. */
float loom_quant_dot_ref(loom_dtype t, const void *w, const loom_q8x *x, int64_t n);

#endif
