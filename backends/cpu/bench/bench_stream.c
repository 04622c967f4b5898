/* bench_stream: how fast one decode GEMV streams its weights, beside a plain read of the same
 * memory, on one thread and without the backend (no graph, no pool): the kernel table's gemv is
 * called directly on [N, K] weight matrices laid end to end in one buffer, as a model's are.
 *
 *   bench_stream [-i scalar|avx2|avx512] [-w f16|bf16|f32] [-m MiB] [-f FILE] [-r REPS] [-k K,...]
 *
 *   read      a plain read loop over the buffer (8 zmm/ymm loads per step, summed): what one core
 *             can pull from memory with the hardware prefetchers alone
 *   read x4   the buffer as 4 quarters read in lockstep (2 zmm/ymm loads from each a step): four
 *             far-apart streams, which one core here reads faster than one (the AVX-512 gemv's
 *             layout, cpu_avx512.c)
 *   gemv K=.. the kernel over the buffer as consecutive matrices of inner size K (rows of
 *             K elements), y = W x, with fresh weights every call (the buffer is larger than L3)
 * -f FILE maps FILE read-only (as the model loader does) instead of anonymous memory; -m sets the
 * buffer size (default 512 MiB). Reports the best of REPS passes (default 5) in GB/s, wall clock.
 * A benchmark, not a test: it is not registered with ctest.
 */
#include "backends/cpu/cpu.h"
#include "core/util.h"

#include <fcntl.h>
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

__attribute__((target("avx512f"))) static float read_avx512(const char *p, size_t n) {
    __m512 a[8];
    for (int i = 0; i < 8; i++) a[i] = _mm512_setzero_ps();
    for (size_t o = 0; o + 512 <= n; o += 512)
        for (int i = 0; i < 8; i++) a[i] = _mm512_add_ps(a[i], _mm512_load_ps((const float *)(p + o + 64 * i)));
    for (int i = 1; i < 8; i++) a[0] = _mm512_add_ps(a[0], a[i]);
    return _mm512_reduce_add_ps(a[0]);
}

__attribute__((target("avx2"))) static float read_avx2(const char *p, size_t n) {
    __m256 a[8];
    for (int i = 0; i < 8; i++) a[i] = _mm256_setzero_ps();
    for (size_t o = 0; o + 256 <= n; o += 256)
        for (int i = 0; i < 8; i++) a[i] = _mm256_add_ps(a[i], _mm256_load_ps((const float *)(p + o + 32 * i)));
    for (int i = 1; i < 8; i++) a[0] = _mm256_add_ps(a[0], a[i]);
    float t[8];
    _mm256_storeu_ps(t, a[0]);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}

/* 4 quarters in lockstep, two 64-byte lines of each a step */
__attribute__((target("avx512f"))) static float read4_avx512(const char *p, size_t n) {
    __m512 a = _mm512_setzero_ps(), b = a;
    size_t q = n / 4 / 128 * 128;
    for (size_t o = 0; o < q; o += 128)
        for (int s = 0; s < 4; s++) {
            a = _mm512_add_ps(a, _mm512_load_ps((const float *)(p + s * q + o)));
            b = _mm512_add_ps(b, _mm512_load_ps((const float *)(p + s * q + o + 64)));
        }
    return _mm512_reduce_add_ps(_mm512_add_ps(a, b));
}

__attribute__((target("avx2"))) static float read4_avx2(const char *p, size_t n) {
    __m256 a = _mm256_setzero_ps(), b = a;
    size_t q = n / 4 / 64 * 64;
    for (size_t o = 0; o < q; o += 64)
        for (int s = 0; s < 4; s++) {
            a = _mm256_add_ps(a, _mm256_load_ps((const float *)(p + s * q + o)));
            b = _mm256_add_ps(b, _mm256_load_ps((const float *)(p + s * q + o + 32)));
        }
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(a, b));
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}

static volatile float sink;

int main(int argc, char **argv) {
    const char *isa = "avx512", *file = NULL, *ks = "896,4864";
    loom_dtype wt = LOOM_F16;
    size_t mib = 512;
    int reps = 5;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "-i") && v) isa = argv[++i];
        else if (!strcmp(argv[i], "-w") && v) {
            wt = !strcmp(v, "f32") ? LOOM_F32 : !strcmp(v, "bf16") ? LOOM_BF16 : LOOM_F16;
            i++;
        } else if (!strcmp(argv[i], "-m") && v) mib = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "-f") && v) file = argv[++i];
        else if (!strcmp(argv[i], "-r") && v) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-k") && v) ks = argv[++i];
        else {
            fprintf(stderr, "usage: %s [-i scalar|avx2|avx512] [-w f16|bf16|f32] [-m MiB] [-f FILE] [-r REPS] [-k K,...]\n", argv[0]);
            return 2;
        }
    }
    cpu_kernels k = {0};
    cpu_kernels_scalar(&k);
    if (!strcmp(isa, "avx512")) {
        if (!cpu_has_avx512()) return fprintf(stderr, "bench_stream: no AVX-512 here\n"), 1;
        cpu_kernels_avx512(&k, false);
    } else if (!strcmp(isa, "avx2")) {
        if (!cpu_has_avx2()) return fprintf(stderr, "bench_stream: no AVX2 here\n"), 1;
        cpu_kernels_avx2(&k);
    }
    size_t bytes = mib << 20;
    char *buf;
    if (file) {
        int fd = open(file, O_RDONLY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) return fprintf(stderr, "bench_stream: cannot open %s\n", file), 1;
        if ((size_t)st.st_size < bytes) bytes = (size_t)st.st_size & ~(size_t)4095;
        buf = mmap(NULL, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (buf == MAP_FAILED) return fprintf(stderr, "bench_stream: cannot map %s\n", file), 1;
    } else {
        buf = loom_malloc_aligned(bytes);
        if (!buf) return fprintf(stderr, "bench_stream: out of memory\n"), 1;
        /* small finite values of every type: f16/bf16 0x3c00-ish halves, f32 from two of them */
        for (size_t i = 0; i < bytes / 2; i++) ((uint16_t *)buf)[i] = (uint16_t)(wt == LOOM_BF16 ? 0x3f80 : 0x3c00) ^ (uint16_t)(i & 0x3f);
    }
    printf("bench_stream: %s kernels, %s weights, %zu MiB %s, best of %d\n", k.name, loom_dtype_name(wt),
           bytes >> 20, file ? "mapped from the file" : "anonymous", reps);

    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double t0 = loom_now();
        sink = !strcmp(isa, "avx512") ? read_avx512(buf, bytes) : read_avx2(buf, bytes);
        double d = loom_now() - t0;
        if (r > 0 && d < best) best = d;
    }
    printf("  read           %6.1f GB/s\n", (double)bytes / best / 1e9);
    best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double t0 = loom_now();
        sink = !strcmp(isa, "avx512") ? read4_avx512(buf, bytes) : read4_avx2(buf, bytes);
        double d = loom_now() - t0;
        if (r > 0 && d < best) best = d;
    }
    printf("  read x4        %6.1f GB/s\n", (double)bytes / best / 1e9);

    const size_t es = wt == LOOM_F32 ? 4 : 2;
    for (const char *s = ks; *s;) {
        int64_t K = strtoll(s, (char **)&s, 10);
        if (*s == ',') s++;
        if (K <= 0) break;
        int64_t rows = (int64_t)(bytes / (es * (size_t)K)), N = 4864; /* matrices of up to 4864 rows */
        float *x = loom_malloc_aligned((size_t)K * 4), *y = loom_malloc_aligned((size_t)N * 4);
        if (!x || !y) return 1;
        for (int64_t i = 0; i < K; i++) x[i] = (float)(i % 7) * 0.125f;
        best = 1e30;
        for (int r = 0; r < reps + 1; r++) {
            double t0 = loom_now();
            for (int64_t r0 = 0; r0 < rows; r0 += N) {
                int64_t n = rows - r0 < N ? rows - r0 : N;
                k.gemv(y, x, buf + (size_t)r0 * (size_t)K * es, wt, K, 0, n, NULL);
            }
            double d = loom_now() - t0;
            sink = y[0];
            if (r > 0 && d < best) best = d;
        }
        printf("  gemv K=%-6lld %6.1f GB/s\n", (long long)K, (double)rows * (double)K * (double)es / best / 1e9);
        loom_free_aligned(x);
        loom_free_aligned(y);
    }
    return 0;
}
