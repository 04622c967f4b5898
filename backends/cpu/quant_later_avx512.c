/* The later block types' decode GEMV with AVX512_VNNI vpdpbusd on 256-bit vectors (AVX512VL). The
 * kernel text is shared with quant_later_avx2.c. */
#define QL_SUFFIX avx512
#define QL_U8S8(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (s))
#include "backends/cpu/quant_later.h"
