/* Internals of the CPU backend shared by its files: the thread pool and the kernel table.
 *
 * Kernels come in flavours (scalar, avx2, avx512). Each flavour file fills a cpu_kernels table;
 * the flavour files are compiled with their ISA's -m flags, so only the plain files (cpu_backend.c,
 * cpu_pool.c, cpu_scalar.c) may decide which table to use, from CPUID, at run time.
 * Kernels work on a range of rows/columns and never allocate: threading, scratch memory and
 * validation live in cpu_backend.c.
 */
#ifndef LOOM_CPU_H
#define LOOM_CPU_H

#include <stdlib.h>
#include <limits.h>
#include <stdatomic.h>
#include "backends/backend.h"

#include <stdint.h>

/* ---- thread pool (cpu_pool.c) ----------------------------------------------------------------- */
typedef struct cpu_pool cpu_pool;
/* Process items [i0, i1); ith identifies the calling thread (0 = the caller of cpu_pool_for,
 * 1..n-1 = workers) for per-thread scratch. */
typedef void (*cpu_range_fn)(void *arg, int64_t i0, int64_t i1, int ith);

/* A pool of n_threads - 1 workers; the calling thread is thread 0 of every run. NULL + error. */
cpu_pool *cpu_pool_new(int n_threads);
void cpu_pool_free(cpu_pool *p);
int cpu_pool_size(const cpu_pool *p);
/* Process items [0, n) in chunks of `grain` handed out dynamically, and return when all are done.
 * The caller works too; workers join while the job is open, so a worker that is asleep or has
 * lost its core is never waited for unless it holds a chunk. With parallel <= false (or a single
 * chunk) everything runs on the caller. Not reentrant: one job at a time, from one thread. */
void cpu_pool_for(cpu_pool *p, bool parallel, int64_t n, int64_t grain, cpu_range_fn fn, void *arg);

/* An integer switch from the environment (A/B timing knobs), read once and cached. The pool's
 * threads may all ask at once: the cache is atomic, so that is not a data race (TSan). A value
 * that is not a whole number counts as unset. */
static inline int cpu_env_int_once(_Atomic int *cache, const char *name, int def) {
    int v = atomic_load_explicit(cache, memory_order_relaxed);
    if (v != INT_MIN) return v;
    const char *e = getenv(name);
    char *end = NULL;
    long l = e && *e ? strtol(e, &end, 10) : 0;
    v = e && *e && !*end && l > INT_MIN && l <= INT_MAX ? (int)l : def;
    atomic_store_explicit(cache, v, memory_order_relaxed);
    return v;
}

/* ---- kernels ------------------------------------------------------------------------------------ */
/* Keys scored per step of the blocked online softmax in attention. */
#define CPU_ATTN_BLOCK 64
/* The backend never hands gemm more than this many output columns at once. */
#define CPU_GEMM_MAX_COLS 256
/* Up to this many rows of x a matmul goes through gemv_rows (when the kernels have one). */
#define CPU_GEMV_MAX_ROWS 16

typedef struct cpu_kernels {
    const char *name; /* "scalar", "avx2", "avx512" */

    /* Decode matrix-vector: y[n] = x . W[n] (+ bias[n]) for n in [n0, n1); W is [N, K] of type wt. */
    void (*gemv)(float *y, const float *x, const void *w, loom_dtype wt, int64_t K, int64_t n0,
                 int64_t n1, const float *bias);
    /* Optional (NULL: gemm): a few rows, 2 <= M <= CPU_GEMV_MAX_ROWS (several sequences decoding):
     * y[m * ldy + n] = x[m] . W[n] (+ bias[n]) for n in [n0, n1); x row stride K. */
    void (*gemv_rows)(float *y, int64_t ldy, const float *x, int M, const void *w, loom_dtype wt,
                      int64_t K, int64_t n0, int64_t n1, const float *bias);
    /* Prefill: y[m, n] = x[m] . W[n] (+ bias[n]) for all m < M and n in [n0, n1) (at most
     * CPU_GEMM_MAX_COLS); y has row stride ldy, x row stride K. scratch: gemm_scratch(M, K) floats,
     * 64-byte aligned, private to the calling thread. */
    void (*gemm)(float *y, int64_t ldy, const float *x, const void *w, loom_dtype wt, int64_t M,
                 int64_t K, int64_t n0, int64_t n1, const float *bias, float *scratch);
    size_t (*gemm_scratch)(int64_t M, int64_t K);

    void (*to_f32)(float *dst, const void *src, loom_dtype t, int64_t n);
    /* Elementwise; y may equal a (in place). */
    void (*add)(float *y, const float *a, const float *b, int64_t n);
    void (*mul)(float *y, const float *a, const float *b, int64_t n);
    void (*scale)(float *y, const float *a, float s, int64_t n);
    void (*silu)(float *y, const float *x, int64_t n);
    void (*swiglu)(float *y, const float *g, const float *u, int64_t n);
    void (*gelu)(float *y, const float *x, int64_t n);
    void (*geglu)(float *y, const float *g, const float *u, int64_t n);
    void (*softcap)(float *y, const float *x, float cap, int64_t n);
    /* One row each; y may equal x. w may be NULL. */
    void (*rmsnorm)(float *y, const float *x, const float *w, int64_t n, float eps);
    void (*softmax)(float *y, const float *x, int64_t n, float scale);
    /* Rotate one head in place with precomputed cos/sin of the rot/2 angles. */
    void (*rope)(float *x, const float *cs, const float *sn, int rot, int mode);
    /* One (query row, head) of attention over keys 0..n_keys-1 (n_keys >= 1): k and v point at
     * key/value 0 of this kv head, consecutive keys are ld floats apart. softcap > 0: each score
     * becomes softcap * tanh(score / softcap) before the softmax (graph.h, ATTENTION fp[1]).
     * scratch: CPU_ATTN_BLOCK + hd floats, 64-byte aligned. */
    void (*attn)(float *out, const float *q, const float *k, const float *v, int64_t ld,
                 int64_t n_keys, int hd, float scale, float softcap, float *scratch);
    /* Optional (NULL: attn per query; never used with a soft-cap): nq queries that share one kv
     * head, query i attending to
     * keys 0..n_keys[i]-1 (>= 1), in blocks of CPU_ATTN_BLOCK keys so each block of K and V is
     * read once for all of them. Only called when attn_group_ok(hd). scratch:
     * attn_group_scratch(nq, hd) floats, 64-byte aligned. */
    void (*attn_group)(float *const *out, const float *const *q, const int64_t *n_keys, int nq,
                       const float *k, const float *v, int64_t ld, int hd, float scale,
                       float *scratch);
    bool (*attn_group_ok)(int hd);
    size_t (*attn_group_scratch)(int nq, int hd);

    /* gemm rounds x to bf16 for bf16 weights (the vdpbf16ps path): products then carry a relative
     * error up to 2^-9 instead of f32 rounding. Accumulation stays f32. */
    bool gemm_bf16_rounds_x;
} cpu_kernels;

void cpu_kernels_scalar(cpu_kernels *k);
/* These override entries of a table already filled by cpu_kernels_scalar. Call only when CPUID
 * says the ISA is there. */
void cpu_kernels_avx2(cpu_kernels *k);
void cpu_kernels_avx512(cpu_kernels *k, bool bf16);

/* ISA detection (cpu_backend.c). */
bool cpu_has_avx2(void);   /* AVX2 + FMA + F16C */
bool cpu_has_avx512(void); /* F, BW, DQ, VL + AVX2 + FMA + F16C */
bool cpu_has_avx512bf16(void);

/* A CPU backend with a given kernel flavour ("scalar", "avx2", "avx512"; NULL = best, as
 * loom_cpu_backend_new, or env LOOM_CPU_ISA). Fails when the machine lacks the ISA. For tests and
 * benchmarks. "avx512bf16" is avx512 plus the opt-in lossy vdpbf16ps GEMM for bf16 weights (x
 * rounded to bf16): never chosen by default. */
loom_backend *loom_cpu_backend_new_isa(const loom_backend_opts *o, const char *isa);
/* The flavour a CPU backend runs ("scalar", "avx2", "avx512", "avx512bf16") and its thread count. */
const char *loom_cpu_backend_isa(const loom_backend *be);
int loom_cpu_backend_threads(const loom_backend *be);
/* Whether this backend's prefill GEMM rounds x to bf16 for bf16 weights (see cpu_kernels). */
bool loom_cpu_backend_gemm_bf16_rounds_x(const loom_backend *be);

#endif
