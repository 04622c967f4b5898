/* Forced into the CPU backend's files in the fuzz build only (-include): clang 14 rejects
 * __builtin_cpu_supports("f16c") at compile time ("invalid cpu feature string"), which gcc
 * accepts. This answers the same questions from CPUID and XGETBV, as the builtin does. */
#ifndef LOOM_FUZZ_CLANG_CPU_COMPAT_H
#define LOOM_FUZZ_CLANG_CPU_COMPAT_H
#include <cpuid.h>
#include <string.h>

static inline int fz_cpu_supports(const char *f) {
    unsigned a, b, c, d, b7 = 0, c7 = 0, a71 = 0, c1;
    if (!__get_cpuid(1, &a, &b, &c1, &d)) return 0;
    unsigned lo = 0, hi = 0;
    if (c1 & (1u << 27)) __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0)); /* OSXSAVE */
    int ymm = (lo & 6) == 6, zmm = ymm && (lo & 0xe0) == 0xe0;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) b7 = b, c7 = c;
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) a71 = a;
    if (!strcmp(f, "fma")) return ymm && (c1 >> 12 & 1);
    if (!strcmp(f, "f16c")) return ymm && (c1 >> 29 & 1);
    if (!strcmp(f, "avx2")) return ymm && (b7 >> 5 & 1);
    if (!strcmp(f, "avx512f")) return zmm && (b7 >> 16 & 1);
    if (!strcmp(f, "avx512dq")) return zmm && (b7 >> 17 & 1);
    if (!strcmp(f, "avx512bw")) return zmm && (b7 >> 30 & 1);
    if (!strcmp(f, "avx512vl")) return zmm && (b7 >> 31 & 1);
    if (!strcmp(f, "avx512vnni")) return zmm && (c7 >> 11 & 1);
    if (!strcmp(f, "avx512bf16")) return zmm && (a71 >> 5 & 1);
    return 0;
}
#define __builtin_cpu_supports(f) fz_cpu_supports(f)
#endif
