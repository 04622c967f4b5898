/* The planner passes: dead-node elimination, common subexpressions, fusion, and the memory plan.
 * Each pass rewrites the graph in place (dead nodes stay in the array, flagged, so dumps can show
 * what happened to them) and logs every change to g->log. */
#include "graph/plan.h"

#include "core/util.h"

#include <stdlib.h>


static bool live(const loom_node *n) { return !(n->flags & LOOM_NODE_DEAD); }
static bool is_leaf(loom_op op) { return op == LOOM_OP_INPUT || op == LOOM_OP_WEIGHT || op == LOOM_OP_STATE; }

/* Point every use of `from` at `to`. */
static void redirect(loom_graph *g, int from, int to) {
    for (int i = from + 1; i < g->n; i++) {
        loom_node *n = &g->nodes[i];
        for (int s = 0; s < n->n_src; s++)
            if (n->src[s] == from) n->src[s] = to;
    }
}

/* Count live consumers of each node. */
static int *use_counts(const loom_graph *g) {
    int *uses = calloc((size_t)g->n, sizeof *uses);
    if (!uses) return NULL;
    for (int i = 0; i < g->n; i++) {
        const loom_node *n = &g->nodes[i];
        if (!live(n)) continue;
        for (int s = 0; s < n->n_src; s++) uses[n->src[s]]++;
    }
    return uses;
}

/* ---- dce: keep what an output or a side effect (a cache write) needs ------------------------- */
int loom_pass_dce(loom_graph *g) {
    bool *need = calloc((size_t)g->n + 1, 1);
    if (!need) return loom_err("out of memory in dce");
    for (int i = g->n - 1; i >= 0; i--) {
        loom_node *n = &g->nodes[i];
        if (!live(n)) continue;
        if ((n->flags & LOOM_NODE_OUTPUT) || n->op == LOOM_OP_KV_STORE) need[i] = true;
        if (need[i])
            for (int s = 0; s < n->n_src; s++) need[n->src[s]] = true;
    }
    int removed = 0;
    for (int i = 0; i < g->n; i++) {
        loom_node *n = &g->nodes[i];
        if (live(n) && !need[i]) {
            n->flags |= LOOM_NODE_DEAD;
            loom_graph_log(g, "dce: removed %s '%s' (no output depends on it)", loom_op_name(n->op), n->name);
            removed++;
        }
    }
    free(need);
    return removed;
}

/* ---- cse --------------------------------------------------------------------------------------- */
static bool same_node(const loom_node *a, const loom_node *b) {
    if (a->op != b->op || a->type != b->type || a->ndim != b->ndim || a->n_src != b->n_src ||
        a->state != b->state || a->weight != b->weight || a->view_offset != b->view_offset)
        return false;
    if (memcmp(a->ne, b->ne, sizeof a->ne) || memcmp(a->src, b->src, sizeof a->src) ||
        memcmp(a->ip, b->ip, sizeof a->ip) || memcmp(a->fp, b->fp, sizeof a->fp))
        return false;
    if (a->op == LOOM_OP_INPUT && strcmp(a->name, b->name)) return false;
    return true;
}

int loom_pass_cse(loom_graph *g) {
    size_t cap = 16;
    while (cap < (size_t)g->n * 2) cap *= 2;
    int *table = malloc(cap * sizeof *table);
    uint64_t *keys = malloc(cap * sizeof *keys);
    if (!table || !keys) {
        free(table);
        free(keys);
        return loom_err("out of memory in cse");
    }
    for (size_t i = 0; i < cap; i++) table[i] = -1;
    int merged = 0;
    for (int i = 0; i < g->n; i++) {
        loom_node *n = &g->nodes[i];
        /* cache writes are side effects; two identical ones would still both have to run */
        if (!live(n) || n->op == LOOM_OP_KV_STORE) continue;
        uint64_t k = loom_node_hash(n);
        size_t slot = (size_t)k & (cap - 1);
        int hit = -1;
        for (; table[slot] >= 0; slot = (slot + 1) & (cap - 1)) {
            if (keys[slot] == k && same_node(&g->nodes[table[slot]], n)) {
                hit = table[slot];
                break;
            }
        }
        if (hit < 0) {
            table[slot] = i;
            keys[slot] = k;
            continue;
        }
        loom_node *keep = &g->nodes[hit];
        if ((n->flags & LOOM_NODE_OUTPUT) && (keep->flags & LOOM_NODE_OUTPUT)) continue; /* both named */
        if (n->flags & LOOM_NODE_OUTPUT) { /* the survivor takes over the output name */
            keep->flags |= LOOM_NODE_OUTPUT;
            memcpy(keep->name, n->name, sizeof keep->name);
        }
        loom_graph_log(g, "cse: %s '%s' is the same as '%s'", loom_op_name(n->op), n->name, keep->name);
        n->flags |= LOOM_NODE_DEAD;
        n->replaced_by = hit;
        redirect(g, i, hit);
        merged++;
    }
    free(table);
    free(keys);
    return merged;
}

/* ---- fuse ---------------------------------------------------------------------------------------
 * Each rule folds a producer P into its only consumer C; C takes the fused op and P's sources, so
 * topological order is kept (all sources of P and C precede C). */
static bool is_vec(const loom_graph *g, int i, int64_t cols) {
    const loom_node *n = &g->nodes[i];
    return n->ndim == 1 && n->ne[0] == cols && n->type == LOOM_F32;
}

static bool sole_private_use(const loom_graph *g, const int *uses, int p) {
    const loom_node *n = &g->nodes[p];
    return uses[p] == 1 && !(n->flags & LOOM_NODE_OUTPUT);
}

static void absorb(loom_graph *g, int p, int c, int group, const char *what) {
    loom_node *pn = &g->nodes[p], *cn = &g->nodes[c];
    loom_graph_log(g, "fuse: %s ('%s' + '%s')", what, pn->name, cn->name);
    pn->flags |= LOOM_NODE_DEAD;
    pn->replaced_by = c;
    pn->group = group;
    cn->group = group;
    cn->n_fused = (pn->n_fused ? pn->n_fused : 1) + 1;
}

int loom_pass_fuse(loom_graph *g) {
    int *uses = use_counts(g);
    if (!uses) return loom_err("out of memory in fuse");
    int fused = 0, group = 0;
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].group >= group) group = g->nodes[i].group + 1;
    for (int c = 0; c < g->n; c++) {
        loom_node *cn = &g->nodes[c];
        if (!live(cn) || (cn->op != LOOM_OP_MUL && cn->op != LOOM_OP_ADD)) continue;
        int a = cn->src[0], b = cn->src[1];
        int64_t cols = cn->ne[cn->ndim - 1];
        loom_node *an = &g->nodes[a];
        loom_node *bn = &g->nodes[b];
        if (cn->op == LOOM_OP_MUL && an->op == LOOM_OP_RMSNORM && an->n_src == 1 && is_vec(g, b, cols) &&
            sole_private_use(g, uses, a)) {
            /* rmsnorm(x) * w  ->  rmsnorm(x, w): one pass over x instead of two */
            absorb(g, a, c, group++, "rmsnorm x weight");
            cn->op = LOOM_OP_RMSNORM;
            cn->n_src = 2;
            cn->src[0] = an->src[0];
            cn->src[1] = b;
            cn->fp[0] = an->fp[0];
            fused++;
        } else if (cn->op == LOOM_OP_ADD && an->op == LOOM_OP_MATMUL && an->n_src == 2 &&
                   is_vec(g, b, cols) && sole_private_use(g, uses, a)) {
            /* x W^T + b in the matmul's epilogue */
            absorb(g, a, c, group++, "matmul + bias");
            cn->op = LOOM_OP_MATMUL;
            cn->n_src = 3;
            cn->src[0] = an->src[0];
            cn->src[1] = an->src[1];
            cn->src[2] = b;
            fused++;
        } else if (cn->op == LOOM_OP_MUL && (an->op == LOOM_OP_SILU || bn->op == LOOM_OP_SILU ||
                                             an->op == LOOM_OP_GELU || bn->op == LOOM_OP_GELU)) {
            bool a_act = an->op == LOOM_OP_SILU || an->op == LOOM_OP_GELU;
            int s = a_act ? a : b, u = s == a ? b : a;
            loom_node *sn = &g->nodes[s];
            bool gelu = sn->op == LOOM_OP_GELU;
            if (loom_node_nelem(sn) != loom_node_nelem(cn) || !sole_private_use(g, uses, s)) continue;
            /* silu(gate) * up, gelu(gate) * up: the gate activation never round-trips through memory */
            absorb(g, s, c, group++, gelu ? "gelu(gate) x up" : "silu(gate) x up");
            cn->op = gelu ? LOOM_OP_GEGLU : LOOM_OP_SWIGLU;
            cn->n_src = 2;
            cn->src[0] = sn->src[0];
            cn->src[1] = u;
            fused++;
        }
    }
    free(uses);
    return fused;
}

/* ---- backend passes: folding a node into its readers -------------------------------------------- */
static void relabel_group(loom_graph *g, int from, int to) {
    if (from < 0 || from == to) return;
    for (int k = 0; k < g->n; k++)
        if (g->nodes[k].group == from) g->nodes[k].group = to;
}

int loom_plan_fold(loom_graph *g, const char *pass, const char *rule, int i) {
    loom_node *n = &g->nodes[i];
    if (!live(n) || is_leaf(n->op) || n->op == LOOM_OP_VIEW || (n->flags & (LOOM_NODE_OUTPUT | LOOM_NODE_FOLDED)))
        return loom_err("%s: %s: cannot fold %s '%s' (a leaf, view, output or folded node)", pass, rule,
                        loom_op_name(n->op), n->name);
    int readers = 0, max_group = -1, target = n->group;
    for (int j = 0; j < g->n; j++) {
        const loom_node *m = &g->nodes[j];
        if (m->group > max_group) max_group = m->group;
        if (!live(m)) continue;
        for (int s = 0; s < m->n_src; s++) {
            if (m->src[s] != i) continue;
            if (m->op == LOOM_OP_VIEW || (m->flags & LOOM_NODE_FOLDED))
                return loom_err("%s: %s: cannot fold '%s': %s '%s' reads its bytes", pass, rule, n->name,
                                loom_op_name(m->op), m->name);
            if (target < 0) target = m->group;
            readers++;
            break;
        }
    }
    if (!readers) return loom_err("%s: %s: cannot fold '%s': nothing reads it", pass, rule, n->name);
    if (target < 0) target = max_group + 1;
    char line[512];
    int o = snprintf(line, sizeof line, "%s: %s ('%s' into", pass, rule, n->name);
    relabel_group(g, n->group, target);
    n->group = target;
    for (int j = 0, first = 1; j < g->n; j++) {
        loom_node *m = &g->nodes[j];
        if (!live(m)) continue;
        for (int s = 0; s < m->n_src; s++) {
            if (m->src[s] != i) continue;
            relabel_group(g, m->group, target);
            m->group = target;
            if (o > 0 && (size_t)o < sizeof line) o += snprintf(line + o, sizeof line - (size_t)o, "%s '%s'", first ? "" : ",", m->name);
            first = 0;
            break;
        }
    }
    n->flags |= LOOM_NODE_FOLDED;
    loom_graph_log(g, "%s)", line);
    return 0;
}

/* ---- memory ----------------------------------------------------------------------------------- */
typedef struct { size_t off, size; } span;
typedef struct { span *v; int n, cap; size_t top; } freelist;

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* Best fit among free spans; else grow the arena's top. */
static size_t fl_alloc(freelist *f, size_t size) {
    int best = -1;
    for (int i = 0; i < f->n; i++)
        if (f->v[i].size >= size && (best < 0 || f->v[i].size < f->v[best].size)) best = i;
    if (best < 0) {
        /* a free span touching the top can be extended instead of leaving a hole */
        for (int i = 0; i < f->n; i++) {
            if (f->v[i].off + f->v[i].size == f->top) {
                size_t off = f->v[i].off;
                f->top = off + size;
                f->v[i] = f->v[--f->n];
                return off;
            }
        }
        size_t off = f->top;
        f->top += size;
        return off;
    }
    size_t off = f->v[best].off;
    f->v[best].off += size;
    f->v[best].size -= size;
    if (f->v[best].size == 0) f->v[best] = f->v[--f->n];
    return off;
}

static int fl_free(freelist *f, size_t off, size_t size) {
    /* merge with neighbours so later large tensors find room */
    for (int i = 0; i < f->n; i++) {
        if (f->v[i].off + f->v[i].size == off) {
            off = f->v[i].off;
            size += f->v[i].size;
            f->v[i--] = f->v[--f->n];
        } else if (off + size == f->v[i].off) {
            size += f->v[i].size;
            f->v[i--] = f->v[--f->n];
        }
    }
    if (f->n == f->cap) {
        int cap = f->cap ? f->cap * 2 : 32;
        span *p = realloc(f->v, (size_t)cap * sizeof *p);
        if (!p) return loom_err("out of memory in the memory planner");
        f->v = p;
        f->cap = cap;
    }
    f->v[f->n++] = (span){off, size};
    return 0;
}

static bool inplace_op(loom_op op) {
    switch (op) {
    case LOOM_OP_ADD: case LOOM_OP_MUL: case LOOM_OP_SCALE: case LOOM_OP_RMSNORM:
    case LOOM_OP_SILU: case LOOM_OP_SWIGLU: case LOOM_OP_ROPE: case LOOM_OP_SOFTMAX:
    case LOOM_OP_GELU: case LOOM_OP_GEGLU: case LOOM_OP_SOFTCAP:
        return true;
    default:
        return false;
    }
}

static int root_of(const loom_graph *g, int i, size_t *rel) {
    size_t off = 0;
    while (g->nodes[i].alias >= 0) {
        if (g->nodes[i].op == LOOM_OP_VIEW) off += g->nodes[i].view_offset;
        i = g->nodes[i].alias;
    }
    if (rel) *rel = off;
    return i;
}

/* Node src is read at step `at`. A folded source is computed by its reader from its own sources,
 * so those are what is read then (folds nest: a GEMV folded into an ADD reads a folded RMSNORM). */
static void read_at(loom_graph *g, int *last, int src, int at) {
    if (src < 0) return;
    loom_node *sn = &g->nodes[src];
    if (sn->flags & LOOM_NODE_FOLDED)
        for (int s = 0; s < sn->n_src; s++) read_at(g, last, sn->src[s], at);
    if (at >= 0 && at > last[src]) last[src] = at;
    if (sn->first_use < 0 && at >= 0) sn->first_use = at;
    sn->last_use = last[src];
}

/* Does node i read storage root r through a folded source? Its dispatch then reads r whole while
 * writing its output, so it must not write in place over r. */
static bool reads_folded(const loom_graph *g, int i, int r, bool via_fold) {
    const loom_node *n = &g->nodes[i];
    for (int s = 0; s < n->n_src; s++) {
        int src = n->src[s];
        if (src < 0) continue;
        if (g->nodes[src].flags & LOOM_NODE_FOLDED) {
            if (reads_folded(g, src, r, true)) return true;
        } else if (via_fold && root_of(g, src, NULL) == r) {
            return true;
        }
    }
    return false;
}

/* reuse = false gives every node its own arena slot (no freeing), so that after a run every
 * intermediate can still be read back: loom diff compares backends node by node that way. */
/* Arena slots start at multiples of `align` (the backend's loom_backend_alignment). */
static int memory_pass(loom_graph *g, size_t align, bool allow_inplace, bool reuse, size_t *arena_size,
                       size_t *naive_size) {
    int n = g->n;
    int *last = malloc((size_t)n * sizeof *last); /* last step that reads the node's storage group */
    int *step = malloc((size_t)n * sizeof *step); /* execution step of each node, -1 for leaves */
    int *live_roots = malloc((size_t)n * sizeof *live_roots);
    freelist fl = {0};
    if (!last || !step || !live_roots) {
        free(last);
        free(step);
        free(live_roots);
        return loom_err("out of memory in the memory planner");
    }
    int n_steps = 0;
    for (int i = 0; i < n; i++) {
        loom_node *nd = &g->nodes[i];
        nd->alias = -1;
        nd->storage = LOOM_STORE_NONE;
        nd->flags &= ~LOOM_NODE_INPLACE;
        nd->first_use = nd->last_use = -1;
        step[i] = -1;
        if (!live(nd)) continue;
        if (nd->op == LOOM_OP_VIEW || nd->op == LOOM_OP_KV_STORE) nd->alias = nd->src[0];
        if (!is_leaf(nd->op) && nd->op != LOOM_OP_VIEW && !(nd->flags & LOOM_NODE_FOLDED)) step[i] = n_steps++;
    }
    /* Uses: a node is read at the step of each consumer. Views are read when their readers run. */
    for (int i = 0; i < n; i++) last[i] = step[i];
    for (int i = 0; i < n; i++) {
        loom_node *nd = &g->nodes[i];
        if (!live(nd)) continue;
        if (nd->flags & LOOM_NODE_FOLDED) continue; /* read by its readers, at their steps */
        int at = step[i] >= 0 ? step[i] : -1;
        for (int s = 0; s < nd->n_src; s++) read_at(g, last, nd->src[s], at);
        if (nd->flags & LOOM_NODE_OUTPUT) last[i] = n_steps; /* the host reads it after the run */
    }
    /* A storage group lives until its last alias is read: fold aliases into their targets
     * (aliases always point to lower indices, so one reverse sweep suffices). */
    for (int i = n - 1; i >= 0; i--) {
        loom_node *nd = &g->nodes[i];
        if (live(nd) && nd->alias >= 0 && last[i] > last[nd->alias]) last[nd->alias] = last[i];
    }

    size_t naive = 0;
    int n_live = 0;
    /* inputs first: the host writes them before the run starts */
    for (int i = 0; i < n; i++) {
        loom_node *nd = &g->nodes[i];
        if (!live(nd)) continue;
        if (nd->op == LOOM_OP_WEIGHT) nd->storage = LOOM_STORE_WEIGHT;
        if (nd->op == LOOM_OP_STATE) {
            nd->storage = LOOM_STORE_STATE;
            nd->offset = 0;
        }
        nd->nbytes = loom_node_bytes(nd);
        if (nd->op == LOOM_OP_INPUT) {
            size_t sz = align_up(nd->nbytes, align);
            nd->storage = LOOM_STORE_ARENA;
            nd->offset = fl_alloc(&fl, sz);
            naive += sz;
            live_roots[n_live++] = i;
        }
    }
    int *order = malloc((size_t)(n_steps + 1) * sizeof *order);
    if (!order) {
        free(last);
        free(step);
        free(live_roots);
        return loom_err("out of memory in the memory planner");
    }
    for (int i = 0; i < n; i++)
        if (step[i] >= 0) order[step[i]] = i;

    int rc = 0;
    for (int t = 0; t < n_steps && rc == 0; t++) {
        int i = order[t];
        loom_node *nd = &g->nodes[i];
        if (nd->op == LOOM_OP_KV_STORE) continue; /* writes into its state: no arena space */
        size_t rel = 0;
        int src0 = nd->n_src > 0 ? nd->src[0] : -1;
        int r = src0 >= 0 ? root_of(g, src0, &rel) : -1;
        if (allow_inplace && inplace_op(nd->op) && r >= 0 && g->nodes[r].storage == LOOM_STORE_ARENA &&
            g->nodes[r].op != LOOM_OP_INPUT && last[r] == t && rel == 0 &&
            loom_node_bytes(&g->nodes[src0]) == nd->nbytes && g->nodes[r].nbytes == nd->nbytes &&
            !reads_folded(g, i, r, false)) {
            nd->alias = src0;
            nd->flags |= LOOM_NODE_INPLACE;
            last[r] = last[i];
            naive += align_up(nd->nbytes, align);
            loom_graph_log(g, "memory: %s '%s' runs in place over '%s'", loom_op_name(nd->op), nd->name,
                           g->nodes[src0].name);
        } else {
            size_t sz = align_up(nd->nbytes, align);
            nd->storage = LOOM_STORE_ARENA;
            nd->offset = fl_alloc(&fl, sz);
            naive += sz;
            live_roots[n_live++] = i;
        }
        /* free every group whose last reader was this step */
        for (int k = 0; reuse && k < n_live; k++) {
            int q = live_roots[k];
            if (last[q] <= t) {
                if (fl_free(&fl, g->nodes[q].offset, align_up(g->nodes[q].nbytes, align)) < 0) rc = -1;
                live_roots[k--] = live_roots[--n_live];
            }
        }
    }
    /* resolve aliases to their root's storage */
    for (int i = 0; i < n && rc == 0; i++) {
        loom_node *nd = &g->nodes[i];
        if (!live(nd) || nd->alias < 0) continue;
        size_t rel = 0;
        int r = root_of(g, i, &rel);
        nd->storage = g->nodes[r].storage;
        nd->state = g->nodes[r].state;
        nd->offset = g->nodes[r].offset + rel;
    }
    g->arena_size = fl.top;
    g->naive_size = naive;
    if (arena_size) *arena_size = fl.top;
    if (naive_size) *naive_size = naive;
    free(fl.v);
    free(order);
    free(last);
    free(step);
    free(live_roots);
    return rc;
}

int loom_pass_memory(loom_graph *g, size_t align, bool allow_inplace, size_t *arena_size, size_t *naive_size) {
    return memory_pass(g, align ? align : LOOM_PLAN_ALIGN, allow_inplace, true, arena_size, naive_size);
}

/* ---- the whole pipeline ----------------------------------------------------------------------- */
static bool want_dump(const loom_plan_opts *o, const char *pass) {
    if (!o || !o->dump || !o->dump_after) return false;
    return !strcmp(o->dump_after, "all") || !strcmp(o->dump_after, pass);
}

static void dump_titled(const loom_plan_opts *o, const loom_graph *g, const char *pass, const char *title) {
    if (want_dump(o, pass)) loom_graph_dump_layers(g, o->dump, o->dump_format, title, o->dump_layers);
}

static void dump_after(const loom_plan_opts *o, const loom_graph *g, const char *pass) {
    dump_titled(o, g, pass, pass);
}

static bool executed(const loom_node *n) {
    return live(n) && !is_leaf(n->op) && n->op != LOOM_OP_VIEW && !(n->flags & LOOM_NODE_FOLDED);
}

/* The backend's pass, over the nodes in execution order. */
static int backend_pass(loom_plan *p, const loom_plan_pass *pass, const loom_plan_opts *o) {
    loom_graph *g = p->g;
    int *order = loom_malloc((size_t)(g->n ? g->n : 1) * sizeof *order), n = 0;
    if (!order) return -1;
    for (int i = 0; i < g->n; i++)
        if (executed(&g->nodes[i])) order[n++] = i;
    int rc = pass->run(pass, g, order, n);
    free(order);
    if (rc < 0) return -1;
    p->pass = pass->name;
    char title[96];
    snprintf(title, sizeof title, "backend (%s)", pass->name);
    dump_titled(o, g, "backend", title);
    return 0;
}

loom_plan *loom_plan_build(loom_graph *g, const loom_plan_opts *o) {
    static const loom_plan_opts defaults = {0};
    if (!o) o = &defaults;
    loom_plan *p = loom_calloc(1, sizeof *p);
    if (!p) {
        loom_graph_free(g);
        return NULL;
    }
    p->g = g;
    p->key = loom_graph_hash(g);
    p->n_nodes_declared = g->n;
    dump_after(o, g, "declared");
    if (loom_pass_dce(g) < 0) goto fail;
    dump_after(o, g, "dce");
    if (!o->no_cse) {
        if (loom_pass_cse(g) < 0 || loom_pass_dce(g) < 0) goto fail;
        dump_after(o, g, "cse");
    }
    if (!o->no_fuse) {
        if (loom_pass_fuse(g) < 0 || loom_pass_dce(g) < 0) goto fail;
        dump_after(o, g, "fuse");
    }
    if (o->pass && !o->no_fuse && !o->no_reuse && backend_pass(p, o->pass, o) < 0) goto fail;
    p->align = o->align ? o->align : LOOM_PLAN_ALIGN;
    if (memory_pass(g, p->align, !o->no_inplace && !o->no_reuse, !o->no_reuse, &p->arena_size, &p->naive_size) < 0)
        goto fail;
    p->order = loom_malloc((size_t)g->n * sizeof *p->order);
    if (!p->order) goto fail;
    for (int i = 0; i < g->n; i++) {
        const loom_node *n = &g->nodes[i];
        if (!live(n)) continue;
        p->n_nodes_live++;
        if (n->flags & LOOM_NODE_FOLDED) p->n_folded++;
        if (executed(n)) p->order[p->n_order++] = i;
    }
    if ((p->n_groups = loom_graph_count_groups(g)) < 0) goto fail;
    dump_after(o, g, "memory");
    return p;
fail:
    loom_plan_free(p);
    return NULL;
}

void loom_plan_free(loom_plan *p) {
    if (!p) return;
    loom_graph_free(p->g);
    free(p->order);
    free(p);
}

/* ---- plan cache -------------------------------------------------------------------------------
 * Few distinct shapes occur in a session (one decode graph, a handful of prompt lengths), so a
 * small array with least-recently-used eviction is enough. */
#define PLAN_CACHE_SIZE 16

struct loom_plan_cache {
    loom_plan *plans[PLAN_CACHE_SIZE];
    uint64_t stamp[PLAN_CACHE_SIZE];
    uint64_t clock;
    int hits, misses;
};

loom_plan_cache *loom_plan_cache_new(void) { return loom_calloc(1, sizeof(loom_plan_cache)); }

void loom_plan_cache_free(loom_plan_cache *c, void (*release)(loom_plan *p, void *ud), void *ud) {
    if (!c) return;
    for (int i = 0; i < PLAN_CACHE_SIZE; i++) {
        if (!c->plans[i]) continue;
        if (release) release(c->plans[i], ud);
        loom_plan_free(c->plans[i]);
    }
    free(c);
}

loom_plan *loom_plan_cache_get(loom_plan_cache *c, uint64_t key) {
    for (int i = 0; i < PLAN_CACHE_SIZE; i++) {
        if (c->plans[i] && c->plans[i]->key == key) {
            c->stamp[i] = ++c->clock;
            c->hits++;
            return c->plans[i];
        }
    }
    c->misses++;
    return NULL;
}

/* Returns the plan evicted to make room (the caller releases it), or NULL. */
loom_plan *loom_plan_cache_put_evict(loom_plan_cache *c, loom_plan *p) {
    int slot = 0;
    for (int i = 0; i < PLAN_CACHE_SIZE; i++) {
        if (!c->plans[i]) {
            slot = i;
            break;
        }
        if (c->stamp[i] < c->stamp[slot]) slot = i;
    }
    loom_plan *old = c->plans[slot];
    c->plans[slot] = p;
    c->stamp[slot] = ++c->clock;
    return old;
}

void loom_plan_cache_put(loom_plan_cache *c, loom_plan *p) {
    loom_plan *old = loom_plan_cache_put_evict(c, p);
    loom_plan_free(old);
}

int loom_plan_cache_hits(const loom_plan_cache *c) { return c->hits; }
int loom_plan_cache_misses(const loom_plan_cache *c) { return c->misses; }
