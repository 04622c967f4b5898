/* The backend interface: a small table of function pointers, and the executor that drives it.
 *
 * A backend owns device memory (loom_buffer), says which ops it supports, and computes planned
 * nodes. The executor (backends/executor.c) walks a plan's nodes in order and calls
 * compute_node for each; a backend that can replay a whole recorded graph (Vulkan) provides
 * compute_plan instead and the executor calls that once.
 */
#ifndef LOOM_BACKEND_H
#define LOOM_BACKEND_H

#include "graph/plan.h"

typedef struct loom_buffer loom_buffer;   /* defined by each backend */
typedef struct loom_backend loom_backend;

/* Everything a run needs besides the plan: where each storage kind lives. */
typedef struct loom_exec_ctx {
    const loom_plan *plan;
    loom_buffer *arena;         /* plan->arena_size bytes */
    loom_buffer *const *state;  /* session state tensors, indexed by node->state */
    int n_state;
    loom_buffer *const *weights;/* the checkpoint's weights (LOOM_WEIGHT_FILE), by loom_weight.id */
    int n_weights;
    loom_buffer *const *computed;/* the model's computed weights (LOOM_WEIGHT_COMPUTED), by id */
    int n_computed;
    double *node_time;          /* if non-NULL: seconds per node index, filled by the executor
                                   (CPU) or from timestamps (GPU) */
} loom_exec_ctx;

typedef struct loom_backend_ops {
    const char *name; /* "cpu", "vulkan" */
    void (*destroy)(loom_backend *be);

    /* Device memory. alloc returns NULL with an error set when memory runs out. */
    loom_buffer *(*buf_alloc)(loom_backend *be, size_t nbytes);
    void (*buf_free)(loom_backend *be, loom_buffer *b);
    int (*buf_write)(loom_backend *be, loom_buffer *b, size_t off, const void *src, size_t n);
    int (*buf_read)(loom_backend *be, loom_buffer *b, size_t off, void *dst, size_t n);
    int (*buf_zero)(loom_backend *be, loom_buffer *b, size_t off, size_t n);
    /* Optional: copy n bytes between (or within, not overlapping) buffers on the device, ordered
     * before the next run (the paged KV cache's copy on write). NULL: read and write through the host. */
    int (*buf_copy)(loom_backend *be, loom_buffer *dst, size_t dst_off, loom_buffer *src, size_t src_off, size_t n);
    /* A buffer holding a weight: the CPU wraps the mapped host pointer (no copy), a GPU uploads. */
    loom_buffer *(*buf_from_host)(loom_backend *be, const void *host, size_t nbytes);

    /* Optional: the byte alignment this backend needs for arena offsets (NULL: 64, a cache line).
     * The planner packs the arena to it (loom_plan_opts.align, from loom_backend_alignment). */
    size_t (*alignment)(loom_backend *be);

    /* Optional: the backend's own planner pass (its fusions), which loom_plan_build runs after
     * fuse and before memory (loom_backend_plan_opts puts it in the plan options). */
    const loom_plan_pass *(*plan_pass)(loom_backend *be);

    /* Can this backend compute node `i` of g as it stands (op, types, shapes)? */
    bool (*supports)(loom_backend *be, const loom_graph *g, int i);

    /* Optional: prepare a plan once (pipelines, descriptor sets, recorded command buffers). */
    int (*plan_prepare)(loom_backend *be, loom_plan *p, const loom_exec_ctx *x);
    void (*plan_release)(loom_backend *be, loom_plan *p);

    /* Compute one node (node index into x->plan->g). Required. */
    int (*compute_node)(loom_backend *be, const loom_exec_ctx *x, int node);
    /* Optional: run the whole plan at once; when present the executor uses it. */
    int (*compute_plan)(loom_backend *be, const loom_exec_ctx *x);
    /* Wait until all submitted work is done (no-op for the CPU). */
    int (*sync)(loom_backend *be);

    /* Optional: describe the device in one line (for loom bench / devices). */
    void (*describe)(loom_backend *be, char *buf, size_t n);
} loom_backend_ops;

struct loom_backend {
    const loom_backend_ops *ops;
    void *impl;
};

/* Where node i's bytes live for this run: its buffer and the byte offset into it. Views and in-place
 * nodes resolve to the storage they alias. */
loom_buffer *loom_exec_node_buffer(const loom_exec_ctx *x, int i, size_t *offset);

/* The arena alignment be needs (its alignment op, else 64): pass it to loom_plan_build. */
size_t loom_backend_alignment(loom_backend *be);
/* Set o's alignment and backend pass for plans that be will run (other fields untouched). */
void loom_backend_plan_opts(loom_backend *be, loom_plan_opts *o);

/* ---- running a plan (one copy for sessions, loom diff, bench and profile) ------------------- */
/* Check, once per plan, that be can compute every node p executes (and every node folded into
 * another's dispatch, which only the backend whose pass folded it can run): 0, or -1 with an
 * error naming `device` and the first node it cannot. loom_execute does not check again. */
int loom_plan_check(loom_backend *be, const loom_plan *p, const char *device);
/* Typed handles: a plan's input or output node, looked up by name once per plan. An input the
 * optimised graph no longer reads (removed by dce) is -1, which loom_exec_write skips. */
int loom_plan_input(const loom_plan *p, const char *name);
int loom_plan_output(const loom_plan *p, const char *name); /* -1 with an error when absent */
/* Write n bytes to input node `input` (a handle from loom_plan_input; -1: nothing to write). */
int loom_exec_write(loom_backend *be, const loom_exec_ctx *x, int input, const void *src, size_t n);
/* Read n bytes of node i's storage from byte `off` of it. */
int loom_exec_read(loom_backend *be, const loom_exec_ctx *x, int i, size_t off, void *dst, size_t n);
/* Run a plan node by node (or whole, when the backend records plans) and wait for it (sync). */
int loom_execute(loom_backend *be, const loom_exec_ctx *x);

/* The runner: what every caller that runs plans shares (sessions, hence run / bench / profile /
 * serve; loom diff; the machine probe). Zero it, set be and device, then per plan:
 *   loom_runner_plan    plan a graph for be (its alignment and pass) and check support, once
 *   loom_runner_bind    grow the arena to the plan, fill the run's context, prepare the backend's
 *                       recording when the plan was not prepared with this arena
 *   loom_exec_write / loom_execute / loom_exec_read with the handles of loom_plan_input/output
 *   loom_runner_release before the plan is freed; loom_runner_free at the end (the arena). */
typedef struct loom_runner {
    loom_backend *be;
    const char *device; /* for messages (NULL: the backend's name) */
    loom_buffer *arena; /* grown to the largest plan bound so far */
    size_t arena_size;
} loom_runner;
/* g planned (taken over: freed on failure too) with o's options (NULL: defaults) and be's alignment
 * and pass, then loom_plan_check: the plan, or NULL with an error. */
loom_plan *loom_runner_plan(loom_runner *r, loom_graph *g, const loom_plan_opts *o);
/* x = a run of p on r: plan, arena, and the leaf bindings and node_time from `bind` (may be NULL). */
int loom_runner_bind(loom_runner *r, loom_plan *p, const loom_exec_ctx *bind, loom_exec_ctx *x);
void loom_runner_release(loom_runner *r, loom_plan *p);
void loom_runner_free(loom_runner *r);

/* ---- backend registry -------------------------------------------------------------------- */
typedef struct loom_backend_opts {
    int n_threads;      /* CPU: 0 = all cores */
    bool force_scalar;  /* CPU: portable scalar kernels only (also env LOOM_SCALAR=1) */
    int device_index;   /* Vulkan: which physical device; -1 = best */
    bool verbose;
} loom_backend_opts;

/* "cpu", "vulkan", "vulkan:N" or "auto" (a discrete/integrated GPU if Vulkan finds one, else cpu).
 * Returns NULL with an error naming the device when it cannot be opened. */
loom_backend *loom_backend_open(const char *device, const loom_backend_opts *o);
void loom_backend_close(loom_backend *be);

/* Constructors, one per backend. */
loom_backend *loom_cpu_backend_new(const loom_backend_opts *o);
#ifdef LOOM_HAVE_VULKAN
loom_backend *loom_vulkan_backend_new(const loom_backend_opts *o);
/* Is there a GPU (not a CPU implementation like lavapipe) Vulkan can use? */
bool loom_vulkan_has_gpu(void);
/* Print the Vulkan devices, one block each, for `loom devices`. Returns the count, -1 on error. */
int loom_vulkan_list_devices(FILE *f);
#endif

#endif
