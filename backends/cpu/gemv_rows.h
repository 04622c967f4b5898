/* The per-M dispatch of gemv_rows, shared by cpu_avx2.c and cpu_avx512.c: each includes this after
 * defining its own always-inline gemv_rows_t(type, M, ...), so every (type, M) pair is one
 * instance with its accumulators in registers. At most 8 rows a pass: 9..16 rows take two passes
 * over the weights (halves, so neither is a single row), which beats spilling accumulators (AVX2
 * has 16 registers). */
#ifndef LOOM_CPU_GEMV_ROWS_H
#define LOOM_CPU_GEMV_ROWS_H

_Static_assert(CPU_GEMV_MAX_ROWS <= 16, "gemv_rows splits at most once, into halves of 2..8 rows");

#define GEMV_ROWS_T(T)                                                                             \
    static void gemv_rows_##T(int M, float *y, int64_t ldy, const float *x, const void *w,         \
                              int64_t K, int64_t n0, int64_t n1, const float *bias) {              \
        switch (M) {                                                                               \
        case 2: gemv_rows_t(LOOM_##T, 2, y, ldy, x, w, K, n0, n1, bias); break;                    \
        case 3: gemv_rows_t(LOOM_##T, 3, y, ldy, x, w, K, n0, n1, bias); break;                    \
        case 4: gemv_rows_t(LOOM_##T, 4, y, ldy, x, w, K, n0, n1, bias); break;                    \
        case 5: gemv_rows_t(LOOM_##T, 5, y, ldy, x, w, K, n0, n1, bias); break;                    \
        case 6: gemv_rows_t(LOOM_##T, 6, y, ldy, x, w, K, n0, n1, bias); break;                    \
        case 7: gemv_rows_t(LOOM_##T, 7, y, ldy, x, w, K, n0, n1, bias); break;                    \
        case 8: gemv_rows_t(LOOM_##T, 8, y, ldy, x, w, K, n0, n1, bias); break;                    \
        default: { /* 9..16: two halves of 2..8 rows (8 + (M - 8) left M = 9 a 1-row rest, which  \
                    * has no case and recursed with M < 2, writing past y) */                      \
            int h = (M + 1) / 2;                                                                   \
            gemv_rows_##T(h, y, ldy, x, w, K, n0, n1, bias);                                       \
            gemv_rows_##T(M - h, y + h * ldy, ldy, x + h * K, w, K, n0, n1, bias);                 \
        }                                                                                          \
        }                                                                                          \
    }
GEMV_ROWS_T(F32)
GEMV_ROWS_T(F16)
GEMV_ROWS_T(BF16)
#undef GEMV_ROWS_T

static void v_gemv_rows(float *y, int64_t ldy, const float *x, int M, const void *w, loom_dtype wt,
                        int64_t K, int64_t n0, int64_t n1, const float *bias) {
    switch (wt) {
    case LOOM_F32: gemv_rows_F32(M, y, ldy, x, w, K, n0, n1, bias); break;
    case LOOM_F16: gemv_rows_F16(M, y, ldy, x, w, K, n0, n1, bias); break;
    default: gemv_rows_BF16(M, y, ldy, x, w, K, n0, n1, bias); break;
    }
}

#endif
