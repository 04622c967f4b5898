/* Quantised-weight MATMUL on the CPU (Q8_0, Q4_0, Q4_K, Q6_K; see core/qblock.h).
 *
 * x is quantised per row to 32-element Q8 blocks (loom_q8x) once per node; each output is an
 * integer dot product per block (VNNI vpdpbusd / AVX2 maddubs / scalar), scaled by d_w * d_x and
 * accumulated in f32. The weight matrix is never dequantised as a whole.
 */
#ifndef LOOM_CPU_QUANT_H
#define LOOM_CPU_QUANT_H

#include "backends/cpu/cpu.h"
#include "core/qblock.h"

/* The types every integer kernel below takes (Q8_0, Q4_0, Q4_K, Q6_K: rows kernel, tiled GEMM,
 * decode GEMV). The later types (Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL, IQ4_XS) have the rows
 * kernel only (each 32-block as int8 codes and an affine map per 16, loom_qblock32), used up to
 * CPU_QDEQUANT_MIN_ROWS x rows; past that the backend dequantises weight rows to f32 per chunk and
 * runs its f32 GEMM (cpu_backend.c, matmul_dequant). */
#define CPU_QDEQUANT_MIN_ROWS 8
static inline bool cpu_qtype_native(loom_dtype t) {
    return t == LOOM_Q8_0 || t == LOOM_Q4_0 || t == LOOM_Q4_K || t == LOOM_Q6_K;
}

/* Rows kernel: out[r] = W_row . x[r] for r < nr (nr <= CPU_QROWS). */
#define CPU_QROWS 4
typedef void (*cpu_qdot_fn)(loom_dtype t, const void *w, const loom_q8x *const *x, int nr, int64_t K,
                            float *out);

void cpu_qdot_scalar(loom_dtype t, const void *w, const loom_q8x *const *x, int nr, int64_t K, float *out);
void cpu_qdot_avx2(loom_dtype t, const void *w, const loom_q8x *const *x, int nr, int64_t K, float *out);
void cpu_qdot_avx512(loom_dtype t, const void *w, const loom_q8x *const *x, int nr, int64_t K, float *out);

/* The rows kernel for a CPU backend flavour ("scalar", "avx2", "avx512", "avx512bf16"): VNNI needs
 * AVX512_VNNI on top of the avx512 flavour (else the AVX2 kernel). */
cpu_qdot_fn cpu_qdot_for(const char *isa);
const char *cpu_qdot_name(cpu_qdot_fn f);

/* The tiled GEMM (quant_gemm_avx512.c, AVX512_VNNI only: call these only where cpu_qdot_for gave
 * cpu_qdot_avx512). For Q8_0 / Q4_0 weights and K a multiple of 64 (cpu_qgemm_ok), each x row is
 * prepared once (cpu_qgemm_prep of its loom_q8x blocks, cpu_qgemm_xbytes(K) bytes, 64-byte
 * aligned) and cpu_qgemm_avx512 computes y[m * ldy + n] = x[m] . W[n] (+ bias[n]) for all m < M and
 * n in [n0, n1) in register tiles of 4 weight rows x 4 x rows. Same sums as the rows kernel: exact
 * int32 block dots, scaled by d_w * d_x in f32. */
bool cpu_qgemm_ok(loom_dtype t, int64_t K);
size_t cpu_qgemm_xbytes(int64_t K);
void cpu_qgemm_prep(loom_dtype t, const loom_q8x *xq, int64_t K, void *dst);
void cpu_qgemm_avx512(loom_dtype t, const void *w, size_t row_bytes, const void *xp, int64_t M, int64_t K,
                      int64_t n0, int64_t n1, float *y, int64_t ldy, const float *bias);

/* Decode (M = 1) GEMV on CPUs with AVX512_VBMI on top of what the tiled GEMM needs (cpu_qgemv_ok says):
 * Q8_0 / Q4_0 / IQ4_NL with K a multiple of 64, Q4_K / Q6_K / IQ4_XS with K whole super-blocks. y[n] =
 * x . W[n] (+ bias[n]) for n in [n0, n1), x prepared by cpu_qgemm_prep (Q4_K, Q6_K) or cpu_qgemv_prep
 * (the others). Same sums as the tiled GEMM with one x row (IQ4_*: as loom_quant_dot_ref, exact int32
 * block dots, up to f32 rounding). */
bool cpu_qgemv_ok(loom_dtype t, int64_t K);
void cpu_qgemv_avx512(loom_dtype t, const void *w, size_t row_bytes, const void *xp, int64_t K, int64_t n0,
                      int64_t n1, float *y, const float *bias);
/* x (K floats) quantised as loom_q8x_quant (same codes and scales) and prepared as cpu_qgemm_prep in one
 * vectorised pass, for cpu_qgemv_avx512 (Q8_0 / Q4_0 / IQ4_NL / IQ4_XS: the block totals of the codes
 * times -8 (Q4_0) or -128 in lanes 0 and 8). */
void cpu_qgemv_prep(loom_dtype t, const float *x, int64_t K, void *dst);

/* Decode GEMV for the later types (quant_later.h; Q4_1, Q5_0, Q5_1, IQ4_NL with K whole 32-blocks,
 * Q2_K, Q3_K, Q5_K, IQ4_XS with K whole super-blocks): y[n] = W[n] . x (+ bias[n]) for n in
 * [n0, n1), x quantised by loom_q8x_quant (or cpu_q8x_quant_*, the same bytes), each row
 * prefetching the row pf_rows ahead (0: none). Same sums as loom_quant_dot_ref up to f32
 * rounding. cpu_qgemv_later_for gives the flavour for a rows kernel (NULL for the scalar one). */
typedef void (*cpu_qgemv_later_fn)(loom_dtype t, const void *w, size_t row_bytes, const loom_q8x *x, int64_t K,
                                   int64_t n0, int64_t n1, float *y, const float *bias, int pf_rows);
void cpu_qgemv_later_avx2(loom_dtype t, const void *w, size_t row_bytes, const loom_q8x *x, int64_t K, int64_t n0,
                          int64_t n1, float *y, const float *bias, int pf_rows);
void cpu_qgemv_later_avx512(loom_dtype t, const void *w, size_t row_bytes, const loom_q8x *x, int64_t K, int64_t n0,
                            int64_t n1, float *y, const float *bias, int pf_rows);
cpu_qgemv_later_fn cpu_qgemv_later_for(cpu_qdot_fn dot);
/* Prefill (M >= 2) of the later types with AVX512_VNNI (quant_later_gemm_avx512.c): y[m * ldy + n] =
 * x[m] . W[n] (+ bias[n]) for m < M, n in [n0, n1), x as M rows of K / 32 loom_q8x blocks; an int8
 * panel of 32 weight rows unpacked once and used by every x row. Returns 0, or -1 (out of memory).
 * cpu_qgemm_later_ok: whether cpu_quant_matmul takes it (the avx512 rows flavour, K whole blocks,
 * LOOM_CPU_QLATER not 0); the CPU backend's dequantise-to-f32 prefill is for the rest. */
int cpu_qgemm_later_avx512(loom_dtype t, const void *w, size_t row_bytes, const loom_q8x *xq, int64_t M, int64_t K,
                           int64_t n0, int64_t n1, float *y, int64_t ldy, const float *bias);
bool cpu_qgemm_later_ok(cpu_qdot_fn dot, loom_dtype t, int64_t K);
bool cpu_kdequant_ok(cpu_qdot_fn dot, loom_dtype t, int64_t K);
/* An IQ4_NL / IQ4_XS weight row (K elements, whole blocks) to f32: the same floats as
 * loom_dequant_row, vectorised (AVX2; quant_later.h). cpu_dequant_row_for gives it for the CPU
 * backend's dequantise-then-f32-GEMM prefill where the rows kernel flavour has AVX2, the type is
 * IQ4_NL / IQ4_XS and LOOM_CPU_IQ4AVX2 is not 0; NULL (loom_dequant_row then) otherwise. */
typedef void (*cpu_dequant_fn)(loom_dtype t, const void *row, float *y, int64_t K);
void cpu_dequant_iq4_avx2(loom_dtype t, const void *row, float *y, int64_t K);
cpu_dequant_fn cpu_dequant_row_for(cpu_qdot_fn dot, loom_dtype t);
/* Prefill of IQ4_NL / IQ4_XS (and the k-quants, below) with AVX2 (quant_later.h): y[m * ldy + n] = x[m] . W[n] (+ bias[n]) for
 * m < M, n in [n0, n1), x as M rows of K / 32 loom_q8x blocks (xq) and the same codes as int16
 * (x16, M rows of K, cpu_qgemm_iq4_prep of each row); int16 `madd` over a panel of 16 weight rows.
 * tile16: that int16 tile (IQ4_*: must be true), else the 8-bit tile below (x16 unused). Returns 0,
 * or -1 (out of memory, or a tile the type has not). cpu_qgemm_iq4_ok: whether cpu_quant_matmul and
 * the backend take it (the avx2 rows flavour, IQ4_*, K whole blocks, M > CPU_QDEQUANT_MIN_ROWS,
 * LOOM_CPU_IQ4AVX2 and LOOM_CPU_IQ4GEMM not 0). */
int cpu_qgemm_i16_avx2(loom_dtype t, bool tile16, const void *w, size_t row_bytes, const loom_q8x *xq, const int16_t *x16,
                       int64_t M, int64_t K, int64_t n0, int64_t n1, float *y, int64_t ldy, const float *bias);
void cpu_qgemm_iq4_prep(const loom_q8x *xq, int64_t K, int16_t *dst);
bool cpu_qgemm_iq4_ok(cpu_qdot_fn dot, loom_dtype t, int64_t K, int64_t M);
/* The k-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (session 13): cpu_qgemm_i16_avx2 takes them too, by
 * default through an 8-bit panel GEMM that reads only xq (unsigned codes by `maddubs`, int16 sums,
 * one `madd` by the per-16 scales, the minimum / offset terms through the activation's code sums;
 * x16 unused; tile16 false), with LOOM_CPU_KGEMM=2 through the int16 tile above (codes with the
 * per-16 scales folded in; x16 needed; tile16 true). cpu_qgemm_i16_tile: the tile cpu_quant_matmul
 * passes as tile16 (true for IQ4_*, false for Q4_1 / Q5_0 / Q5_1, LOOM_CPU_KGEMM=2 for the
 * k-quants; read once). quant_later.h, docs/quantization.md. cpu_qgemm_k_ok: whether
 * cpu_quant_matmul and the backend take them (the avx2 rows flavour, K whole super-blocks,
 * M > CPU_QDEQUANT_MIN_ROWS, LOOM_CPU_KGEMM not 0; with LOOM_CPU_KGEMM=0 prefill is as before:
 * Q4_K / Q6_K by LOOM_CPU_KDEQ, the rest the f32 GEMM on scalar-dequantised rows), and Q4_1 /
 * Q5_0 / Q5_1 through the 8-bit GEMM as well (K whole 32-blocks; LOOM_CPU_Q32GEMM=0: the f32 path). */
bool cpu_qgemm_k_ok(cpu_qdot_fn dot, loom_dtype t, int64_t K, int64_t M);
bool cpu_qgemm_i16_tile(loom_dtype t);
/* x (n floats, whole 32-blocks) to loom_q8x blocks: the same bytes as loom_q8x_quant, vectorised. */
void cpu_q8x_quant_avx2(const float *x, loom_q8x *y, int64_t n);
void cpu_q8x_quant_avx512(const float *x, loom_q8x *y, int64_t n);

/* Q8_0 / Q4_0 on CPUs whose rows kernel is the AVX2 one (no AVX-512 VNNI; quant_q01_avx2.c), K whole
 * 32-blocks; cpu_q01_avx2_ok says whether cpu_quant_matmul takes them (LOOM_CPU_QAVX2=0: the rows
 * kernel again, for A/B timing). Decode: cpu_qgemv_q01_avx2 (a cpu_qgemv_later_fn, x by
 * loom_q8x_quant's rule). Prefill: each x row prepared by cpu_qgemm_q01_prep (cpu_qgemm_q01_xbytes(t,
 * K) bytes, 32-byte aligned), then cpu_qgemm_q01_avx2 computes y[m * ldy + n] = x[m] . W[n] (+ bias[n])
 * for m < M, n in [n0, n1) in register tiles of 4 weight rows x 2 x rows; returns 0, or -1 (out of
 * memory). Both: exact int32 block dots scaled by d_w * d_x in f32, as loom_quant_dot_ref up to f32
 * rounding. */
bool cpu_q01_avx2_ok(cpu_qdot_fn dot, loom_dtype t, int64_t K);
void cpu_qgemv_q01_avx2(loom_dtype t, const void *w, size_t row_bytes, const loom_q8x *x, int64_t K, int64_t n0,
                        int64_t n1, float *y, const float *bias, int pf_rows);
size_t cpu_qgemm_q01_xbytes(loom_dtype t, int64_t K);
void cpu_qgemm_q01_prep(loom_dtype t, const float *x, int64_t K, void *dst);
int cpu_qgemm_q01_avx2(loom_dtype t, const void *w, size_t row_bytes, const void *xp, int64_t M, int64_t K, int64_t n0,
                       int64_t n1, float *y, int64_t ldy, const float *bias);

/* y[M, N] = x[M, K] W[N, K]^T (+ bias) for quantised W of type wt, over the pool. K must be a
 * whole number of wt's blocks. Returns 0, or -1 with an error (out of memory). */
int cpu_quant_matmul(cpu_pool *pool, bool parallel, int n_threads, cpu_qdot_fn dot, float *y, const float *x,
                     const void *w, loom_dtype wt, const float *bias, int64_t M, int64_t K, int64_t N);

#endif
