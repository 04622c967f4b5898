/* The CPU thread pool and thread-count independence of the CPU backend:
 *  - the pool hands out every item of a job exactly once, for many jobs in a row (the spinning
 *    path) and after pauses longer than the spin time (the sleeping path), with assorted sizes
 *    and grains, on pools of 1-4 threads created and destroyed in turn (leaks show under
 *    ASan/LSan, races under TSan);
 *  - matmul (GEMV and GEMM), attention, rmsnorm and swiglu give the same results with 1, 2 and
 *    3 threads, within 1e-5 relative (the per-element arithmetic does not depend on the split, so
 *    in practice they are identical).
 */
#include "tests/unit/check.h"
#include "tests/unit/test_cpu_graph.h"

#include <math.h>
#include <stdatomic.h>
#include <unistd.h>

typedef struct count_task {
    _Atomic int hits[1000];
    _Atomic int bad;
    int size;
} count_task;

static void count_run(void *arg, int64_t i0, int64_t i1, int ith) {
    count_task *t = arg;
    if (ith < 0 || ith >= t->size || i0 < 0 || i1 > 1000 || i0 >= i1) {
        atomic_fetch_add(&t->bad, 1);
        return;
    }
    for (int64_t i = i0; i < i1; i++) atomic_fetch_add(&t->hits[i], 1);
}

static void test_pool(void) {
    for (int size = 1; size <= 4; size++) {
        cpu_pool *p = cpu_pool_new(size);
        CHECK(p != NULL, "pool of %d: %s", size, loom_last_error());
        if (!p) continue;
        CHECK(cpu_pool_size(p) == size, "pool size %d", cpu_pool_size(p));
        const int runs = 3000;
        int wrong = 0;
        count_task t = {.size = size};
        for (int r = 0; r < runs; r++) {
            int64_t n = 1 + (r * 37) % 1000, grain = 1 + r % 50;
            for (int i = 0; i < 1000; i++) atomic_store(&t.hits[i], 0);
            cpu_pool_for(p, r % 7 != 0, n, grain, count_run, &t);
            for (int64_t i = 0; i < 1000; i++)
                if (atomic_load(&t.hits[i]) != (i < n)) wrong++;
            if (r % 1000 == 999) usleep(3000); /* longer than the spin: workers go to sleep */
        }
        CHECK(wrong == 0, "pool of %d: %d items processed other than exactly once", size, wrong);
        CHECK(atomic_load(&t.bad) == 0, "pool of %d: bad thread index or range", size);
        cpu_pool_free(p);
    }
    CHECK(cpu_pool_new(0) == NULL, "a pool of 0 threads must fail");
}

static void compare(const char *what, int nth, const float *a, const float *b, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(a[i] - b[i]) <= 1e-5f * fabsf(b[i]) + 1e-30f)) bad++;
    CHECK(bad == 0, "%s: %zu of %zu values differ between 1 and %d threads", what, bad, n, nth);
}

static void test_threads_equal(void) {
    /* one graph with everything */
    enum { M = 17, K = 300, N = 600, NV = 1000, H = 8, HKV = 2, HD = 64, C = 64 };
    const int64_t Dq = H * HD, Dkv = HKV * HD;
    float *x = malloc(M * K * 4), *x1 = malloc(K * 4), *wr = malloc((size_t)NV * K * 4);
    float *q = malloc(M * Dq * 4), *kc = malloc(C * Dkv * 4), *vc = malloc(C * Dkv * 4);
    float *g = malloc(64 * 4864 * 4), *u = malloc(64 * 4864 * 4), *nw = malloc(K * 4);
    tg_fill(x, M * K, 1.0f);
    tg_fill(x1, K, 1.0f);
    tg_fill(q, M * Dq, 2.0f);
    tg_fill(kc, C * Dkv, 1.0f);
    tg_fill(vc, C * Dkv, 1.0f);
    tg_fill(g, 64 * 4864, 4.0f);
    tg_fill(u, 64 * 4864, 1.0f);
    tg_fill(nw, K, 1.0f);
    void *wf16 = tg_weights(LOOM_F16, (size_t)NV * K, 0.5f, wr);
    void *wbf = tg_weights(LOOM_BF16, (size_t)N * K, 0.5f, wr);
    int32_t pos[M];
    for (int s = 0; s < M; s++) pos[s] = 40 + s;

    tg t;
    tg_init(&t);
    int tx = tg_input(&t, LOOM_F32, 2, (int64_t[]){M, K}, x);
    int tx1 = tg_input(&t, LOOM_F32, 2, (int64_t[]){1, K}, x1);
    int tq = tg_input(&t, LOOM_F32, 2, (int64_t[]){M, Dq}, q);
    int tp = tg_input(&t, LOOM_I32, 1, (int64_t[]){M}, pos);
    int tg_ = tg_input(&t, LOOM_F32, 2, (int64_t[]){64, 4864}, g);
    int tu = tg_input(&t, LOOM_F32, 2, (int64_t[]){64, 4864}, u);
    int w1 = tg_weight(&t, LOOM_F16, 2, (int64_t[]){NV, K}, wf16);
    int w2 = tg_weight(&t, LOOM_BF16, 2, (int64_t[]){N, K}, wbf);
    int tnw = tg_weight(&t, LOOM_F32, 1, (int64_t[]){K}, nw);
    int ks = tg_state(&t, C, Dkv, kc), vs = tg_state(&t, C, Dkv, vc);
    int out[6];
    out[0] = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){1, NV}, 2, tx1, w1);
    out[1] = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){M, N}, 2, tx, w2);
    out[2] = tg_node(&t, LOOM_OP_MATMUL, LOOM_F32, 2, (int64_t[]){M, NV}, 2, tx, w1);
    out[3] = tg_node(&t, LOOM_OP_ATTENTION, LOOM_F32, 2, (int64_t[]){M, Dq}, 4, tq, ks, vs, tp);
    t.nodes[out[3]].ip[0] = H, t.nodes[out[3]].ip[1] = HKV, t.nodes[out[3]].ip[2] = HD;
    t.nodes[out[3]].fp[0] = 0.125f;
    out[4] = tg_node(&t, LOOM_OP_RMSNORM, LOOM_F32, 2, (int64_t[]){M, K}, 2, tx, tnw);
    t.nodes[out[4]].fp[0] = 1e-6f;
    out[5] = tg_node(&t, LOOM_OP_SWIGLU, LOOM_F32, 2, (int64_t[]){64, 4864}, 2, tg_, tu);
    const char *names[6] = {"gemv f16", "gemm bf16", "gemm f16", "attention", "rmsnorm", "swiglu"};

    tg_run_out base;
    loom_backend_opts o1 = {.n_threads = 1};
    loom_backend *b1 = loom_cpu_backend_new(&o1);
    CHECK(b1 && tg_run(&t, b1, &base) == 0, "1-thread run failed: %s", base.err);
    printf("kernels: %s\n", b1 ? loom_cpu_backend_isa(b1) : "?");
    for (int nth = 2; nth <= 3; nth++) {
        loom_backend_opts on = {.n_threads = nth};
        loom_backend *bn = loom_cpu_backend_new(&on);
        CHECK(bn && loom_cpu_backend_threads(bn) == nth, "backend with %d threads", nth);
        tg_run_out r;
        /* twice: the second run reuses warm workers and scratch */
        for (int rep = 0; rep < 2; rep++) {
            CHECK(bn && tg_run(&t, bn, &r) == 0, "%d-thread run failed: %s", nth, r.err);
            for (int k = 0; k < 6; k++)
                compare(names[k], nth, tg_f32(&t, &r, out[k]), tg_f32(&t, &base, out[k]),
                        t.nodes[out[k]].nbytes / 4);
            tg_out_free(&r);
        }
        loom_backend_close(bn);
    }
    tg_out_free(&base);
    loom_backend_close(b1);
    free(x), free(x1), free(wr), free(q), free(kc), free(vc), free(g), free(u), free(nw);
    free(wf16), free(wbf);
}

int main(void) {
    test_pool();
    test_threads_equal();
    loom_backend_opts o = {.n_threads = 0};
    loom_backend *be = loom_cpu_backend_new(&o);
    CHECK(be && loom_cpu_backend_threads(be) >= 1, "0 threads means all cores");
    loom_backend_close(be);
    loom_backend_opts neg = {.n_threads = -2};
    CHECK(loom_cpu_backend_new(&neg) == NULL, "negative thread count must fail");
    CHECK_DONE();
}
