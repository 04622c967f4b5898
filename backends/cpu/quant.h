/* Quantised-weight MATMUL on the CPU (Q8_0, Q4_0, Q4_K, Q6_K; see graph/quant.h).
 *
 * x is quantised per row to 32-element Q8 blocks (loom_q8x) once per node; each output is an
 * integer dot product per block (VNNI vpdpbusd / AVX2 maddubs / scalar), scaled by d_w * d_x and
 * accumulated in f32. The weight matrix is never dequantised as a whole.
 */
#ifndef LOOM_CPU_QUANT_H
#define LOOM_CPU_QUANT_H

#include "cpu.h"
#include "../../graph/quant.h"

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

/* y[M, N] = x[M, K] W[N, K]^T (+ bias) for quantised W of type wt, over the pool. K must be a
 * whole number of wt's blocks. Returns 0, or -1 with an error (out of memory). */
int cpu_quant_matmul(cpu_pool *pool, bool parallel, int n_threads, cpu_qdot_fn dot, float *y, const float *x,
                     const void *w, loom_dtype wt, const float *bias, int64_t M, int64_t K, int64_t N);

#endif
