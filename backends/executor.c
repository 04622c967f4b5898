/* The executor: walks a plan's nodes in order and dispatches each to the backend, timing each
 * node when asked (the profiler's CPU source). Also the backend registry. */
#include "backends/backend.h"

#include "core/util.h"

#include <stdlib.h>
#include <string.h>

loom_buffer *loom_exec_node_buffer(const loom_exec_ctx *x, int i, size_t *offset) {
    const loom_node *n = &x->plan->g->nodes[i];
    *offset = n->offset;
    switch (n->storage) {
    case LOOM_STORE_ARENA: return x->arena;
    case LOOM_STORE_STATE: return (n->state >= 0 && n->state < x->n_state) ? x->state[n->state] : NULL;
    case LOOM_STORE_WEIGHT:
        *offset = 0;
        if (!n->weight || n->weight->id < 0) return NULL;
        if (n->weight->kind == LOOM_WEIGHT_COMPUTED)
            return n->weight->id < x->n_computed ? x->computed[n->weight->id] : NULL;
        return n->weight->id < x->n_weights ? x->weights[n->weight->id] : NULL;
    default: return NULL;
    }
}

size_t loom_backend_alignment(loom_backend *be) {
    size_t a = be->ops->alignment ? be->ops->alignment(be) : 0;
    return a ? a : 64;
}

void loom_backend_plan_opts(loom_backend *be, loom_plan_opts *o) {
    o->align = loom_backend_alignment(be);
    o->pass = be->ops->plan_pass ? be->ops->plan_pass(be) : NULL;
}

int loom_plan_check(loom_backend *be, const loom_plan *p, const char *device) {
    if (p->n_folded) {
        const loom_plan_pass *own = be->ops->plan_pass ? be->ops->plan_pass(be) : NULL;
        if (!own || !p->pass || strcmp(own->name, p->pass))
            return loom_err("%s backend cannot run a plan whose nodes %s folded", device ? device : be->ops->name,
                            p->pass ? p->pass : "a backend pass");
    }
    for (int i = 0; i < p->g->n; i++) {
        const loom_node *n = &p->g->nodes[i];
        if ((n->flags & LOOM_NODE_DEAD) || n->op == LOOM_OP_INPUT || n->op == LOOM_OP_WEIGHT ||
            n->op == LOOM_OP_STATE || n->op == LOOM_OP_VIEW)
            continue;
        loom_err_clear();
        if (!be->ops->supports(be, p->g, i)) {
            /* keep the backend's reason when it gave one (an op parameter it lacks: loom_params_check) */
            const char *dev = device ? device : be->ops->name;
            if (!*loom_last_error())
                return loom_err("%s backend cannot compute node %d (%s '%s')", dev, i,
                                loom_op_name(p->g->nodes[i].op), p->g->nodes[i].name);
            loom_err_prefix("%s backend cannot compute node %d (%s '%s')", dev, i, loom_op_name(p->g->nodes[i].op),
                            p->g->nodes[i].name);
            return -1;
        }
    }
    return 0;
}

int loom_plan_input(const loom_plan *p, const char *name) {
    for (int i = 0; i < p->g->n; i++) {
        const loom_node *nd = &p->g->nodes[i];
        if (nd->op == LOOM_OP_INPUT && !(nd->flags & LOOM_NODE_DEAD) && !strcmp(nd->name, name)) return i;
    }
    return -1;
}

int loom_plan_output(const loom_plan *p, const char *name) {
    int i = loom_find_output(p->g, name);
    if (i < 0) loom_err("internal: the graph has no output '%s'", name);
    return i;
}

int loom_exec_write(loom_backend *be, const loom_exec_ctx *x, int input, const void *src, size_t n) {
    if (input < 0) return 0; /* the graph does not read it */
    size_t off;
    loom_buffer *b = loom_exec_node_buffer(x, input, &off);
    if (!b) return loom_err("input '%s' has no storage", x->plan->g->nodes[input].name);
    return be->ops->buf_write(be, b, off, src, n);
}

int loom_exec_read(loom_backend *be, const loom_exec_ctx *x, int i, size_t off, void *dst, size_t n) {
    size_t base;
    loom_buffer *b = loom_exec_node_buffer(x, i, &base);
    if (!b) return loom_err("node %d '%s' has no storage", i, x->plan->g->nodes[i].name);
    return be->ops->buf_read(be, b, base + off, dst, n);
}

int loom_execute(loom_backend *be, const loom_exec_ctx *x) {
    const loom_plan *p = x->plan;
    /* a backend that records whole plans runs them whole; GPU backends time nodes with timestamps */
    if (be->ops->compute_plan && (!x->node_time || be->ops->plan_prepare)) {
        if (be->ops->compute_plan(be, x) < 0) return -1;
        return be->ops->sync ? be->ops->sync(be) : 0;
    }
    for (int k = 0; k < p->n_order; k++) {
        int i = p->order[k];
        double t0 = x->node_time ? loom_now() : 0;
        if (be->ops->compute_node(be, x, i) < 0) {
            loom_err_prefix("%s: node %d (%s '%s')", be->ops->name, i, loom_op_name(p->g->nodes[i].op),
                            p->g->nodes[i].name);
            return -1;
        }
        if (x->node_time) x->node_time[i] = loom_now() - t0;
    }
    return be->ops->sync ? be->ops->sync(be) : 0;
}

loom_plan *loom_runner_plan(loom_runner *r, loom_graph *g, const loom_plan_opts *o) {
    loom_plan_opts po = o ? *o : (loom_plan_opts){0};
    loom_backend_plan_opts(r->be, &po);
    loom_plan *p = loom_plan_build(g, &po);
    if (p && loom_plan_check(r->be, p, r->device) < 0) {
        loom_plan_free(p);
        return NULL;
    }
    return p;
}

int loom_runner_bind(loom_runner *r, loom_plan *p, const loom_exec_ctx *bind, loom_exec_ctx *x) {
    loom_backend *be = r->be;
    if (!r->arena || p->arena_size > r->arena_size) {
        if (r->arena) be->ops->buf_free(be, r->arena);
        size_t n = p->arena_size ? p->arena_size : 1;
        r->arena = be->ops->buf_alloc(be, n);
        r->arena_size = r->arena ? n : 0;
        if (!r->arena) {
            loom_err_prefix("allocating the %zu-byte activation arena on %s", n, r->device ? r->device : be->ops->name);
            return -1;
        }
    }
    *x = bind ? *bind : (loom_exec_ctx){0};
    x->plan = p;
    x->arena = r->arena;
    if (be->ops->plan_prepare && p->prepared_for != r->arena) { /* recorded against another arena */
        loom_runner_release(r, p);
        if (be->ops->plan_prepare(be, p, x) < 0) return -1;
        p->prepared_for = r->arena;
    }
    return 0;
}

void loom_runner_release(loom_runner *r, loom_plan *p) {
    if (p && p->backend_data && r->be->ops->plan_release) r->be->ops->plan_release(r->be, p);
    if (p) p->prepared_for = NULL;
}

void loom_runner_free(loom_runner *r) {
    if (r->arena) r->be->ops->buf_free(r->be, r->arena);
    r->arena = NULL;
    r->arena_size = 0;
}

loom_backend *loom_backend_open(const char *device, const loom_backend_opts *o) {
    loom_backend_opts defaults = {.device_index = -1};
    if (!o) o = &defaults;
    if (!device || !strcmp(device, "auto")) {
#ifdef LOOM_HAVE_VULKAN
        if (loom_vulkan_has_gpu()) {
            loom_backend *be = loom_vulkan_backend_new(o);
            if (be) {
                if (o->verbose) fprintf(stderr, "loom: using device vulkan (a GPU was found)\n");
                return be;
            }
            if (o->verbose) fprintf(stderr, "loom: vulkan failed (%s), falling back to cpu\n", loom_last_error());
        }
#endif
        if (o->verbose) fprintf(stderr, "loom: using device cpu\n");
        return loom_cpu_backend_new(o);
    }
    if (!strcmp(device, "cpu")) return loom_cpu_backend_new(o);
    if (!strncmp(device, "vulkan", 6)) {
#ifdef LOOM_HAVE_VULKAN
        loom_backend_opts v = *o;
        if (device[6] == ':') {
            char *end;
            long idx = strtol(device + 7, &end, 10);
            if (*end || idx < 0) return loom_err_null("device '%s': expected vulkan:N", device);
            v.device_index = (int)idx;
        } else if (device[6]) {
            return loom_err_null("unknown device '%s' (expected cpu, vulkan, vulkan:N or auto)", device);
        }
        return loom_vulkan_backend_new(&v);
#else
        return loom_err_null("device '%s': this build of loom has no Vulkan backend", device);
#endif
    }
    return loom_err_null("unknown device '%s' (expected cpu, vulkan, vulkan:N or auto)", device);
}

void loom_backend_close(loom_backend *be) {
    if (be) be->ops->destroy(be);
}
