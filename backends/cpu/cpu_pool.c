/* A persistent thread pool for the CPU backend.
 *
 * Decode runs a few hundred small nodes per token, so handing out a job must cost well under a
 * microsecond: the caller publishes the job and bumps an atomic generation counter; workers spin on
 * that counter for a while (~1 ms) and only then sleep on it (a futex on Linux, a condition
 * variable elsewhere). The caller is thread 0 and does its share before waiting for the others.
 * All ordering goes through the atomics (release on publish/finish, acquire on observe), which is
 * what ThreadSanitizer checks.
 */
#include "cpu.h"

#include "../../graph/util.h"

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

/* How long an idle worker spins before it sleeps. */
#define POOL_SPIN_NS 1000000L

typedef struct pool_worker {
    cpu_pool *pool;
    int ith;
    pthread_t th;
} pool_worker;

struct cpu_pool {
    int n; /* threads including the caller */
    pool_worker *w;
    int n_started;

    _Atomic uint32_t gen;  /* bumped once per run; also the futex word */
    _Atomic int pending;   /* workers that have not finished the current run */
    _Atomic int sleepers;  /* workers blocked (or about to block) on gen */
    _Atomic bool quit;

    /* the current job: written before gen is bumped, read after it is observed */
    cpu_task_fn fn;
    void *arg;
    int nth;

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

static void *worker_main(void *arg) {
    pool_worker *w = arg;
    cpu_pool *p = w->pool;
    uint32_t seen = 0;
    for (;;) {
        uint32_t g;
        long t0 = 0;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (++spins < 1024 || (spins & 63) != 0) {
                cpu_relax();
                continue;
            }
            /* past a short pure spin, give the core away between checks: when threads outnumber
             * free cores (a shared machine), a spinning worker must not starve the one with work */
            sched_yield();
            long t = now_ns();
            if (!t0) t0 = t;
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
        if (w->ith < p->nth) p->fn(p->arg, w->ith, p->nth);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
    return NULL;
}

static void pool_stop(cpu_pool *p) {
    atomic_store_explicit(&p->quit, true, memory_order_release);
    atomic_fetch_add(&p->gen, 1);
    gen_wake_all(p);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->w[i].th, NULL);
    p->n_started = 0;
}

cpu_pool *cpu_pool_new(int n_threads) {
    if (n_threads < 1 || n_threads > 1024)
        return loom_err_null("cpu thread pool: bad thread count %d", n_threads);
    cpu_pool *p = loom_calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
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
    pool_stop(p);
#ifndef __linux__
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
#endif
    free(p->w);
    free(p);
}

int cpu_pool_size(const cpu_pool *p) { return p->n; }

void cpu_pool_run(cpu_pool *p, int nth, cpu_task_fn fn, void *arg) {
    if (nth > p->n) nth = p->n;
    if (nth <= 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->nth = nth;
    /* every worker acknowledges every run, so none can still be reading the job fields when the
     * next run rewrites them */
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: publishes the job (release) and orders vs sleepers */
    if (atomic_load(&p->sleepers) > 0) gen_wake_all(p);

    fn(arg, 0, nth);

    int spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
        if (++spins < 4096)
            cpu_relax();
        else
            sched_yield(); /* a worker lost its core (shared machine): let it run */
    }
}
