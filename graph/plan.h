/* The planner: optimisation passes over a graph, then the memory plan, then a cache of plans.
 *
 * Passes run in this order, each its own function and each dumpable (loom dump --after PASS):
 *   dce      remove nodes no output depends on
 *   cse      merge nodes with the same (op, params, sources) — xxHash key, then a full compare
 *   fuse     RMSNORM*weight -> RMSNORM(w), MATMUL+bias -> MATMUL(b), SILU(g)*u -> SWIGLU,
 *            and dce again for what fusion orphaned
 *   backend  the backend's own pass, when the plan is made for one that has it (loom_plan_opts.pass,
 *            filled by loom_backend_plan_opts; ggml's counterpart is graph_optimize): it folds
 *            nodes into their readers' dispatches (loom_plan_fold), e.g. Vulkan's "vulkan-fuse"
 *   memory   liveness per node, arena offsets by best-fit packing, in-place reuse where legal;
 *            a folded node gets no storage and its sources live until its last reader has run
 */
#ifndef LOOM_PLAN_H
#define LOOM_PLAN_H

#include "graph/graph.h"

typedef struct loom_plan {
    loom_graph *g;       /* the optimised graph (owned) */
    int *order;          /* nodes to execute in order: live, non-leaf, non-view */
    int n_order;
    size_t arena_size;   /* bytes of the packed arena */
    size_t naive_size;   /* sum of all intermediates' sizes, for comparison */
    size_t align;        /* arena slots start at multiples of this (loom_plan_opts.align) */
    int n_nodes_declared, n_nodes_live, n_groups;
    int n_folded;        /* nodes the backend pass folded into their readers */
    const char *pass;    /* that pass's name (static), or NULL: only a backend with it runs the plan */
    uint64_t key;        /* loom_graph_hash of the graph as declared */

    void *backend_data;  /* owned by the backend that prepared this plan */
    const void *prepared_for; /* the arena buffer backend_data was prepared with */
} loom_plan;

/* Arena alignment when the caller names no backend (loom dump, tests): the most any backend asks. */
#define LOOM_PLAN_ALIGN 256

/* A backend's own pass over the optimised graph. `run` sees the nodes in execution order and may
 * only fold nodes into their readers (loom_plan_fold); it returns the number of folds, or -1 with
 * an error. */
typedef struct loom_plan_pass {
    const char *name;  /* "vulkan-fuse": in dumps and in the pass log */
    int (*run)(const struct loom_plan_pass *pass, loom_graph *g, const int *order, int n_order);
    const void *ctx;   /* the backend's (its device limits) */
} loom_plan_pass;

typedef struct loom_plan_opts {
    size_t align;        /* arena slot alignment: loom_backend_alignment(be) of the backend that
                            will run the plan; 0 = LOOM_PLAN_ALIGN */
    const loom_plan_pass *pass; /* the backend's pass (loom_backend_plan_opts), or NULL; skipped
                                   under no_fuse and no_reuse (every node must then be computed) */
    bool no_cse, no_fuse, no_inplace;
    bool no_reuse;       /* every node its own arena slot (implies no_inplace): all outputs stay
                            readable after a run (loom diff) */
    /* when set, the graph is dumped to `dump` after each pass named in dump_after
     * ("declared", "dce", "cse", "fuse", "backend", "memory", or "all") */
    FILE *dump;
    const char *dump_after;
    loom_dump_format dump_format;
    const int *dump_layers; /* {first, last} layer to show in dumps (loom dump --layers), or NULL */
} loom_plan_opts;

/* Individual passes (exposed for tests and for loom dump). Each returns the number of changes. */
int loom_pass_dce(loom_graph *g);
int loom_pass_cse(loom_graph *g);
int loom_pass_fuse(loom_graph *g);
int loom_pass_memory(loom_graph *g, size_t align, bool allow_inplace, size_t *arena_size, size_t *naive_size);

/* Fold node i into its readers (for a backend pass): every live reader's dispatch computes i from
 * i's sources, so i gets no storage and leaves the order; i and its readers join one fused group.
 * `rule` names the fusion in the pass log ("PASS: RULE ('i' into 'r1', 'r2')"). -1 with an error
 * when i is an output, or is read by a view or nothing (those need i's bytes). */
int loom_plan_fold(loom_graph *g, const char *pass, const char *rule, int i);

/* Run all passes on g (taking ownership) and return the plan, or NULL with an error. */
loom_plan *loom_plan_build(loom_graph *g, const loom_plan_opts *o);
void loom_plan_free(loom_plan *p);

/* A small cache of plans keyed by graph hash. `on_evict` lets a backend drop its data. */
typedef struct loom_plan_cache loom_plan_cache;
loom_plan_cache *loom_plan_cache_new(void);
void loom_plan_cache_free(loom_plan_cache *c, void (*release)(loom_plan *p, void *ud), void *ud);
loom_plan *loom_plan_cache_get(loom_plan_cache *c, uint64_t key);
/* Insert p; returns the least recently used plan evicted to make room (the caller releases its
 * backend data and frees it), or NULL. */
loom_plan *loom_plan_cache_put_evict(loom_plan_cache *c, loom_plan *p);
/* Insert p, freeing any evicted plan (for callers without backend data). */
void loom_plan_cache_put(loom_plan_cache *c, loom_plan *p);
int loom_plan_cache_hits(const loom_plan_cache *c);
int loom_plan_cache_misses(const loom_plan_cache *c);

#endif
