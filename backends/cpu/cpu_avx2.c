/* AVX2 + FMA + F16C kernels (compiled with -mavx2 -mfma -mf16c; only called after CPUID says so). */
#include "cpu.h"

#include <immintrin.h>

void cpu_kernels_avx2(cpu_kernels *k) {
    k->name = "avx2";
}
