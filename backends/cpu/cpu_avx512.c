/* AVX-512 kernels (F/BW/DQ/VL, plus AVX512_BF16 when present; only called after CPUID says so). */
#include "cpu.h"

#include <immintrin.h>

void cpu_kernels_avx512(cpu_kernels *k, bool bf16) {
    (void)bf16;
    k->name = "avx512";
}
