/* The Vulkan backend's planner pass, "vulkan-fuse" (loom_backend_ops.plan_pass): producers folded
 * into their reader's dispatch on the decode path (each saves a barrier and a launch). The planner
 * runs it after fuse and before memory, so the memory plan gives a folded node no storage and
 * keeps its sources alive until its readers have run; the recorder (vk_record.c) only executes
 * what was folded here and decides nothing.
 *
 *   rmsnorm-gemv  RMSNORM whose every reader is a decode GEMV reading it as x: each GEMV
 *                 normalises its x on the fly (xmode 1)
 *   swiglu-gemv   SWIGLU read only by the decode GEMV right after it (xmode 2)
 *   gemv-add      a decode GEMV read only by the ADD right after it: the ADD's dispatch is that
 *                 GEMV, adding the residual as it writes
 *   rope-kv       ROPE read only by the KV_STORE with the same positions: the store rotates
 *   rope-kv-attention
 *                 a one-row ATTENTION (decode) on contiguous caches: the ROPE of its q and the
 *                 KV_STOREs of its k (its rope-kv folded) and v, each read only by it, with its
 *                 positions and no freq factors: the attention rotates q and the new key itself and
 *                 stores the new rows (attention.comp RKV); a stage (barrier) less a layer.
 *                 LOOM_VK_RKV=0 turns it off.
 *
 * RMSNORM and SWIGLU stay separate above LOOM_VK_FUSE_MAX_NK weights (every row recomputes x);
 * LOOM_VK_NO_FUSE=1 turns the pass off. */
#include "backends/vulkan/vk_internal.h"

#include <stdlib.h>

typedef struct fz_ctx {
    const loom_graph *g;
    int *pos;  /* position in the order, -1 for leaves and views */
    int *uses; /* readers among live nodes */
    bool *odd; /* read by something outside the order (a view): never fold */
} fz_ctx;

static const loom_node *NG(const loom_graph *g, int i) { return &g->nodes[i]; }

/* May node i (of op `op`) be folded at all? */
static bool foldable(const fz_ctx *c, int i, loom_op op) {
    const loom_node *n = NG(c->g, i);
    return n->op == op && c->pos[i] >= 0 && !c->odd[i] && !(n->flags & (LOOM_NODE_OUTPUT | LOOM_NODE_FOLDED));
}

/* May GEMV j compute its x (RMSNORM, SWIGLU) on the fly? Every row recomputes it from the loads
 * (SWIGLU: an exp per element per row), which costs more than the barrier it saves once the
 * matrix is large (LOOM_VK_FUSE_MAX_NK: rows x K at most). */
static bool fuse_x_ok(const vk_dev *d, const loom_graph *g, int j) {
    const loom_node *w = NG(g, NG(g, j)->src[1]);
    return vk_gemv_path(d, g, j) && (uint64_t)w->ne[0] * (uint64_t)w->ne[1] <= d->fuse_max_nk;
}

static bool rmsnorm_gemv(const fz_ctx *c, const vk_dev *d, int i) {
    const loom_graph *g = c->g;
    if (!foldable(c, i, LOOM_OP_RMSNORM) || c->uses[i] == 0) return false;
    int cnt = 0;
    for (int j = 0; j < g->n; j++) {
        const loom_node *m = NG(g, j);
        if (m->flags & LOOM_NODE_DEAD) continue;
        for (int q = 0; q < m->n_src; q++) {
            if (m->src[q] != i) continue;
            if (m->op != LOOM_OP_MATMUL || q != 0 || !fuse_x_ok(d, g, j)) return false;
            cnt++;
        }
    }
    return cnt == c->uses[i];
}

static bool swiglu_gemv(const fz_ctx *c, const vk_dev *d, const int *order, int n_order, int k) {
    const loom_graph *g = c->g;
    int i = order[k];
    if (!foldable(c, i, LOOM_OP_SWIGLU) || c->uses[i] != 1 || k + 1 >= n_order) return false;
    int j = order[k + 1];
    const loom_node *m = NG(g, j);
    return m->op == LOOM_OP_MATMUL && m->src[0] == i && m->src[1] != i && fuse_x_ok(d, g, j);
}

/* The GEMV an ADD at order position k absorbs, or -1. */
static int gemv_add(const fz_ctx *c, const vk_dev *d, const int *order, int k) {
    const loom_graph *g = c->g;
    int i = order[k];
    const loom_node *n = NG(g, i);
    /* (the ADD may be read by a view, the final norm's of the last row: its output is still written) */
    if (n->op != LOOM_OP_ADD || k == 0) return -1;
    int mm = order[k - 1];
    int other = n->src[0] == mm ? n->src[1] : n->src[1] == mm ? n->src[0] : -1;
    if (other < 0 || other == mm || !foldable(c, mm, LOOM_OP_MATMUL) || c->uses[mm] != 1 || !vk_gemv_path(d, g, mm))
        return -1;
    if (loom_node_nelem(NG(g, other)) != loom_node_nelem(n) || c->pos[other] >= c->pos[mm]) return -1;
    return mm;
}

static bool rope_kv(const fz_ctx *c, int i) {
    const loom_graph *g = c->g;
    const loom_node *n = NG(g, i);
    if (n->op != LOOM_OP_KV_STORE || n->src[1] < 0 || !foldable(c, n->src[1], LOOM_OP_ROPE) || c->uses[n->src[1]] != 1)
        return false;
    const loom_node *rn = NG(g, n->src[1]);
    return rn->src[1] == n->src[2] && (int64_t)rn->ip[0] * rn->ip[1] == NG(g, n->src[0])->ne[1];
}

/* Is ROPE r (no freq factors) at ATTENTION a's positions? */
static bool rope_at_pos(const loom_node *r, const loom_node *a) {
    return r->op == LOOM_OP_ROPE && (r->n_src < 3 || r->src[2] < 0) && r->src[1] == a->src[3];
}

/* A raw q / k / v row the folded attention reads from the arena (binding 1's span): a computed f32
 * node, or a view of one (the per-head q / k norms' rows). */
static bool arena_row(const fz_ctx *c, int i) {
    while (i >= 0 && NG(c->g, i)->op == LOOM_OP_VIEW && NG(c->g, i)->type == LOOM_F32) i = NG(c->g, i)->src[0];
    if (i < 0) return false;
    const loom_node *n = NG(c->g, i);
    return n->type == LOOM_F32 && c->pos[i] >= 0 && !(n->flags & LOOM_NODE_FOLDED);
}

static bool rope_kv_attention(const fz_ctx *c, const vk_dev *d, int i) {
    const loom_graph *g = c->g;
    const loom_node *n = NG(g, i);
    if (d->no_rkv || !d->subgroup_arith || d->subgroup_size < 4 || n->op != LOOM_OP_ATTENTION || n->n_src != 4 ||
        n->ip[5] || n->ip[2] > 256 || loom_node_nelem(n) != (int64_t)n->ip[0] * n->ip[2])
        return false;
    if (!foldable(c, n->src[0], LOOM_OP_ROPE) || c->uses[n->src[0]] != 1 || !foldable(c, n->src[1], LOOM_OP_KV_STORE) ||
        c->uses[n->src[1]] != 1 || !foldable(c, n->src[2], LOOM_OP_KV_STORE) || c->uses[n->src[2]] != 1)
        return false;
    const loom_node *rq = NG(g, n->src[0]), *sk = NG(g, n->src[1]), *sv = NG(g, n->src[2]);
    if (!rope_at_pos(rq, n) || sk->src[2] != n->src[3] || sv->src[2] != n->src[3] || sk->src[1] < 0 || sv->src[1] < 0)
        return false;
    const loom_node *rk = NG(g, sk->src[1]);
    if (!(rk->flags & LOOM_NODE_FOLDED) || !rope_at_pos(rk, n) || NG(g, sv->src[1])->op == LOOM_OP_ROPE)
        return false;
    for (int k = 1; k < 4; k++)
        if (rk->ip[k] != rq->ip[k]) return false;
    if (rk->fp[0] != rq->fp[0] || rk->fp[1] != rq->fp[1]) return false;
    return arena_row(c, rq->src[0]) && arena_row(c, rk->src[0]) && arena_row(c, sv->src[1]);
}

static int vk_fuse_run(const loom_plan_pass *pass, loom_graph *g, const int *order, int n_order) {
    const vk_dev *d = pass->ctx;
    const char *env = getenv("LOOM_VK_NO_FUSE");
    if (env && *env && *env != '0') return 0;
    fz_ctx c = {.g = g, .pos = loom_malloc((size_t)(g->n ? g->n : 1) * sizeof(int)),
                .uses = loom_calloc((size_t)(g->n ? g->n : 1), sizeof(int)),
                .odd = loom_calloc((size_t)(g->n ? g->n : 1), sizeof(bool))};
    int folded = -1;
    if (!c.pos || !c.uses || !c.odd) goto done;
    for (int i = 0; i < g->n; i++) c.pos[i] = -1;
    for (int k = 0; k < n_order; k++) c.pos[order[k]] = k;
    for (int j = 0; j < g->n; j++) {
        const loom_node *n = NG(g, j);
        if (n->flags & LOOM_NODE_DEAD) continue;
        for (int k = 0; k < n->n_src; k++) {
            int s = n->src[k];
            if (s < 0 || s >= g->n) continue;
            c.uses[s]++;
            if (c.pos[j] < 0) c.odd[s] = true;
        }
    }
    folded = 0;
    for (int k = 0; k < n_order && folded >= 0; k++) {
        int i = order[k], mm;
        const char *rule = NULL;
        int nodes[3], nn = 1; /* what the rule folds (rope-kv-attention: three nodes into the attention) */
        if (rmsnorm_gemv(&c, d, i)) rule = "rmsnorm-gemv", nodes[0] = i;
        else if (swiglu_gemv(&c, d, order, n_order, k)) rule = "swiglu-gemv", nodes[0] = i;
        else if ((mm = gemv_add(&c, d, order, k)) >= 0) rule = "gemv-add", nodes[0] = mm;
        else if (rope_kv(&c, i)) rule = "rope-kv", nodes[0] = NG(g, i)->src[1];
        else if (rope_kv_attention(&c, d, i)) {
            rule = "rope-kv-attention", nn = 3;
            for (int m = 0; m < 3; m++) nodes[m] = NG(g, i)->src[m];
        }
        for (int m = 0; rule && m < nn && folded >= 0; m++)
            folded = loom_plan_fold(g, pass->name, rule, nodes[m]) < 0 ? -1 : folded + 1;
    }
done:
    free(c.pos), free(c.uses), free(c.odd);
    return folded;
}

const loom_plan_pass *vk_fuse_pass(vk_dev *d) {
    d->fuse_pass = (loom_plan_pass){.name = "vulkan-fuse", .run = vk_fuse_run, .ctx = d};
    return &d->fuse_pass;
}
