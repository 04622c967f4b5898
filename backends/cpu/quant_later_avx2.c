/* The later block types' decode GEMV with AVX2: maddubs (u8 x s8 pairs to int16; |u| <= 127 never
 * saturates) then madd with ones. The kernel text is shared with quant_later_avx512.c. */
#define QL_SUFFIX avx2
#define QL_Q23_INT 1 /* Q2_K / Q3_K decode with integer scales (measured on AVX2 only) */
#define QL_IQ4_INT 1 /* IQ4_NL / IQ4_XS decode by block pairs, and their vector dequantisation (AVX2 only) */
#define QL_Q32_PAIR 1 /* Q4_1 / Q5_0 / Q5_1 decode by block pairs, two rows a pass (AVX2 only) */
#define QL_U8S8(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1))
#include "backends/cpu/quant_later.h"
