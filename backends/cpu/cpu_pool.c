/* A persistent thread pool for the CPU backend.
 *
 * Decode runs a few hundred small nodes per token, so handing out a job must cost well under a
 * microsecond: the caller publishes the job and bumps an atomic generation counter; workers spin on
 * that counter for a while (~1 ms, yielding between checks once past a short pure spin) and only
 * then sleep on it (a futex on Linux, a condition variable elsewhere).
 *
 * Work is a range of items handed out in chunks from an atomic counter, and the caller takes
 * chunks too. A worker *joins* a job only while it is open: it announces itself in `running`, then
 * checks `open`; the caller closes the job when the items are exhausted and waits only for the
 * workers that joined. So a worker that is asleep, or has lost its core on a busy machine, costs
 * nothing: the caller does its share. (The two sides use seq_cst on running/open, Dekker style, so
 * either the caller sees the worker in `running` or the worker sees the job closed.)
 * All ordering goes through atomics (release on publish/finish, acquire on observe), which is what
 * ThreadSanitizer checks.
 */
#include "backends/cpu/cpu.h"

#include "core/util.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* An idle worker spins on the generation counter for POOL_PURE_NS (decode's gaps between
 * matmuls are tens of microseconds: a worker that gave its core away then is often not back in
 * time for the next one), then spins yielding its core between checks until POOL_SPIN_NS (so a
 * busy machine's other work, or our own oversubscribed threads, can run), then sleeps. */
#define POOL_PURE_NS 300000L
#define POOL_SPIN_NS 2000000L
/* How long the caller spins for workers finishing their last chunk before it yields. */
#define POOL_WAIT_NS 50000L

typedef struct pool_worker {
    cpu_pool *pool;
    int ith;
    pthread_t th;
} pool_worker;

struct cpu_pool {
    int n; /* threads including the caller */
    pool_worker *w;
    int n_started;

    _Atomic uint32_t gen;    /* id of the latest job (never 0); also the futex word */
    _Atomic uint32_t open;   /* id of the job workers may still join, 0 when none */
    _Atomic int running;     /* workers inside a job */
    _Atomic int64_t next;    /* next item to hand out */
    _Atomic int sleepers;    /* workers blocked (or about to block) on gen */
    _Atomic bool quit;
    uint32_t last;           /* caller side: the last id used */

    /* the current job: written before gen is bumped, read by workers that joined it */
    cpu_range_fn fn;
    void *arg;
    int64_t n_items, grain;

#ifndef __linux__
    pthread_mutex_t mu;
    pthread_cond_t cv;
#endif
};

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Block until gen differs from seen (spurious returns are fine: callers loop). */
static void gen_wait(cpu_pool *p, uint32_t seen) {
#ifdef __linux__
    syscall(SYS_futex, (uint32_t *)&p->gen, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
#else
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->gen) == seen) pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
#endif
}

static void gen_wake_all(cpu_pool *p) {
#ifdef __linux__
    syscall(SYS_futex, (uint32_t *)&p->gen, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
#endif
}

static void take_chunks(cpu_pool *p, int ith) {
    const int64_t n = p->n_items, grain = p->grain;
    for (;;) {
        int64_t i0 = atomic_fetch_add_explicit(&p->next, grain, memory_order_relaxed);
        if (i0 >= n) break;
        p->fn(p->arg, i0, i0 + grain < n ? i0 + grain : n, ith);
    }
}

static void *worker_main(void *arg) {
    pool_worker *w = arg;
    cpu_pool *p = w->pool;
    uint32_t seen = 0;
    for (;;) {
        uint32_t g;
        long t0 = 0;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if ((++spins & 63) != 0) {
                cpu_relax();
                continue;
            }
            long t = now_ns();
            if (!t0) t0 = t;
            if (t - t0 < POOL_PURE_NS) continue;
            sched_yield();
            if (t - t0 < POOL_SPIN_NS) continue;
            /* Announce the sleep before re-checking gen: the publisher bumps gen and then reads
             * sleepers (both seq_cst), so one of us always sees the other. */
            atomic_fetch_add(&p->sleepers, 1);
            if (atomic_load(&p->gen) == seen) gen_wait(p, seen);
            atomic_fetch_sub(&p->sleepers, 1);
            t0 = 0;
            spins = 0;
        }
        seen = g;
        if (atomic_load_explicit(&p->quit, memory_order_acquire)) break;
        atomic_fetch_add(&p->running, 1);
        if (atomic_load(&p->open) == g) take_chunks(p, w->ith);
        atomic_fetch_sub_explicit(&p->running, 1, memory_order_release);
    }
    return NULL;
}

cpu_pool *cpu_pool_new(int n_threads) {
    if (n_threads < 1 || n_threads > 1024)
        return loom_err_null("cpu thread pool: bad thread count %d", n_threads);
    cpu_pool *p = loom_calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    atomic_init(&p->gen, 0);
    atomic_init(&p->open, 0);
    atomic_init(&p->running, 0);
    atomic_init(&p->next, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->quit, false);
#ifndef __linux__
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
#endif
    if (n_threads > 1) {
        p->w = loom_calloc((size_t)n_threads - 1, sizeof *p->w);
        if (!p->w) {
            cpu_pool_free(p);
            return NULL;
        }
        for (int i = 0; i < n_threads - 1; i++) {
            p->w[i].pool = p;
            p->w[i].ith = i + 1;
            int rc = pthread_create(&p->w[i].th, NULL, worker_main, &p->w[i]);
            if (rc != 0) {
                loom_err("cpu thread pool: cannot start thread %d of %d (error %d)", i + 1,
                         n_threads, rc);
                cpu_pool_free(p);
                return NULL;
            }
            p->n_started++;
        }
    }
    return p;
}

void cpu_pool_free(cpu_pool *p) {
    if (!p) return;
    atomic_store_explicit(&p->quit, true, memory_order_release);
    atomic_fetch_add(&p->gen, 1);
    gen_wake_all(p);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->w[i].th, NULL);
#ifndef __linux__
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
#endif
    free(p->w);
    free(p);
}

int cpu_pool_size(const cpu_pool *p) { return p->n; }

void cpu_pool_for(cpu_pool *p, bool parallel, int64_t n, int64_t grain, cpu_range_fn fn, void *arg) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (!parallel || p->n == 1 || n <= grain) {
        fn(arg, 0, n, 0);
        return;
    }
    uint32_t g = p->last + 1;
    if (g == 0) g = 1; /* 0 means "no job" */
    p->last = g;
    p->fn = fn;
    p->arg = arg;
    p->n_items = n;
    p->grain = grain;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->open, g, memory_order_relaxed);
    atomic_store(&p->gen, g); /* seq_cst: publishes the job (release) and orders vs sleepers */
    if (atomic_load(&p->sleepers) > 0) gen_wake_all(p);

    take_chunks(p, 0);

    /* every item is handed out: close the job, then wait for the workers inside it. They are
     * finishing their last chunk, so spin; after a short while assume one lost its core and
     * yield between checks, so it can run here (on an idle machine yield returns at once). */
    atomic_store(&p->open, 0);
    int spins = 0;
    long t0 = 0;
    while (atomic_load_explicit(&p->running, memory_order_acquire) > 0) {
        cpu_relax();
        if ((++spins & 255) != 0) continue;
        long t = now_ns();
        if (!t0) t0 = t;
        if (t - t0 > POOL_WAIT_NS) sched_yield();
    }
}
