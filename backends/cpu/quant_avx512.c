/* Quantised dot products with AVX512_VNNI vpdpbusd on 256-bit vectors (AVX512VL): one instruction
 * per 32 byte pairs instead of maddubs + madd. The kernel text is shared with quant_avx2.c. */
#define QDOT_NAME cpu_qdot_avx512
#define QDOT_U8S8(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (s))
#include "backends/cpu/quant_simd.h"
