/* Quantised dot products with AVX2: maddubs (u8 x s8 pairs to saturating int16; our operands never
 * saturate) then madd with ones to int32. The kernel text is shared with quant_avx512.c. */
#define QDOT_NAME cpu_qdot_avx2
#define QDOT_U8S8(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1))
#include "backends/cpu/quant_simd.h"
