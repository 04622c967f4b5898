/* Planner passes on small hand-built graphs, and on a real model's graph. */
#include "tests/unit/check.h"
#include "models/model.h"
#include "graph/plan.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static loom_weight mkw(const char *name, int ndim, int64_t a, int64_t b) {
    loom_weight w;
    memset(&w, 0, sizeof w);
    snprintf(w.name, sizeof w.name, "%s", name);
    w.type = LOOM_F32;
    w.ndim = ndim;
    w.ne[0] = a;
    w.ne[1] = b;
    w.nbytes = (size_t)(a * (ndim > 1 ? b : 1)) * 4;
    return w;
}

static int count_live(const loom_graph *g, loom_op op) {
    int n = 0;
    for (int i = 0; i < g->n; i++)
        if (!(g->nodes[i].flags & LOOM_NODE_DEAD) && g->nodes[i].op == op) n++;
    return n;
}

static void test_dce_cse(void) {
    loom_weight W = mkw("w", 2, 8, 16);
    loom_graph *g = loom_graph_new();
    int x = loom_input(g, "x", LOOM_F32, 2, (int64_t[]){4, 16});
    int w1 = loom_weight_node(g, &W), w2 = loom_weight_node(g, &W); /* the same weight twice */
    int a = loom_matmul(g, x, w1), b = loom_matmul(g, x, w2);
    int unused = loom_silu(g, a);
    (void)unused;
    loom_output(g, loom_add(g, a, b), "out");
    CHECK(loom_pass_dce(g) == 1, "dce should remove the unused silu");
    CHECK(count_live(g, LOOM_OP_SILU) == 0, "silu still live");
    int merged = loom_pass_cse(g);
    CHECK(merged == 2, "cse should merge the weight and then the matmul, merged %d", merged);
    CHECK(count_live(g, LOOM_OP_MATMUL) == 1, "one matmul should remain");
    int out = loom_find_output(g, "out");
    CHECK(out >= 0 && g->nodes[out].src[0] == g->nodes[out].src[1], "add should read the same node twice");
    loom_graph_free(g);
}

static void test_fusion(void) {
    loom_weight Wn = mkw("norm", 1, 16, 0), Wq = mkw("q", 2, 32, 16), Bq = mkw("qb", 1, 32, 0);
    loom_weight Wg = mkw("g", 2, 24, 16), Wu = mkw("u", 2, 24, 16);
    loom_graph *g = loom_graph_new();
    int x = loom_input(g, "x", LOOM_F32, 2, (int64_t[]){3, 16});
    int h = loom_mul(g, loom_rmsnorm(g, x, 1e-6f), loom_weight_node(g, &Wn));
    int q = loom_add(g, loom_matmul(g, h, loom_weight_node(g, &Wq)), loom_weight_node(g, &Bq));
    int gate = loom_matmul(g, h, loom_weight_node(g, &Wg)), up = loom_matmul(g, h, loom_weight_node(g, &Wu));
    int act = loom_mul(g, loom_silu(g, gate), up);
    loom_output(g, q, "q");
    loom_output(g, act, "act");
    int fused = loom_pass_fuse(g);
    CHECK(fused == 3, "expected 3 fusions, got %d", fused);
    CHECK(count_live(g, LOOM_OP_MUL) == 0, "every mul should be fused");
    CHECK(count_live(g, LOOM_OP_ADD) == 0, "the bias add should be fused");
    CHECK(count_live(g, LOOM_OP_SILU) == 0, "silu should be fused");
    CHECK(count_live(g, LOOM_OP_SWIGLU) == 1, "one swiglu");
    int qn = loom_find_output(g, "q");
    CHECK(qn >= 0 && g->nodes[qn].op == LOOM_OP_MATMUL && g->nodes[qn].n_src == 3, "q should be matmul+bias");
    for (int i = 0; i < g->n; i++) {
        const loom_node *n = &g->nodes[i];
        if (n->flags & LOOM_NODE_DEAD) continue;
        for (int s = 0; s < n->n_src; s++)
            CHECK(n->src[s] < i && !(g->nodes[n->src[s]].flags & LOOM_NODE_DEAD), "node %d reads dead/later %d", i, n->src[s]);
    }
    loom_graph_free(g);
}

/* gelu(gate) * up folds into geglu(gate, up) (Gemma's MLP), in either operand order; a gelu that
 * is also an output stays. */
static void test_fusion_geglu(void) {
    loom_graph *g = loom_graph_new();
    int64_t ne[2] = {3, 24};
    int gate = loom_input(g, "gate", LOOM_F32, 2, ne), up = loom_input(g, "up", LOOM_F32, 2, ne);
    int a = loom_mul(g, loom_gelu(g, gate), up);
    int b = loom_mul(g, up, loom_gelu(g, up));
    int kept = loom_gelu(g, loom_add(g, gate, up));
    int c = loom_mul(g, kept, up);
    loom_output(g, a, "a");
    loom_output(g, b, "b");
    loom_output(g, kept, "kept");
    loom_output(g, c, "c");
    int fused = loom_pass_fuse(g);
    CHECK(fused == 2, "expected 2 gelu fusions, got %d", fused);
    CHECK(count_live(g, LOOM_OP_GEGLU) == 2 && count_live(g, LOOM_OP_GELU) == 1, "two geglu, one gelu left");
    int an = loom_find_output(g, "a"), bn = loom_find_output(g, "b");
    CHECK(an >= 0 && g->nodes[an].op == LOOM_OP_GEGLU && g->nodes[an].src[0] == gate && g->nodes[an].src[1] == up,
          "a = geglu(gate, up)");
    CHECK(bn >= 0 && g->nodes[bn].op == LOOM_OP_GEGLU && g->nodes[bn].src[0] == up && g->nodes[bn].src[1] == up,
          "b = geglu(up, up)");
    CHECK(strstr(g->log, "gelu(gate) x up"), "the pass log names the gelu fusion");
    loom_graph_free(g);
}

/* A chain y = silu(silu(silu(x))) + x runs in place where legal and reuses dead buffers. */
static void test_memory(void) {
    loom_weight W = mkw("w", 2, 64, 64);
    loom_graph *g = loom_graph_new();
    int x = loom_input(g, "x", LOOM_F32, 2, (int64_t[]){8, 64});
    int a = loom_matmul(g, x, loom_weight_node(g, &W));
    int b = loom_matmul(g, a, loom_weight_node(g, &W));
    int c = loom_matmul(g, b, loom_weight_node(g, &W));
    int d = loom_silu(g, c);           /* c dies here: in place */
    int e = loom_matmul(g, d, loom_weight_node(g, &W));
    loom_output(g, loom_add(g, e, x), "y"); /* e dies here: in place */
    loom_plan *p = loom_plan_build(g, NULL);
    CHECK(p != NULL, "plan failed: %s", loom_last_error());
    if (!p) return;
    g = p->g;
    CHECK(g->nodes[d].flags & LOOM_NODE_INPLACE, "silu should run in place");
    CHECK(g->nodes[d].offset == g->nodes[c].offset, "in-place silu shares c's offset");
    int y = loom_find_output(g, "y");
    CHECK(g->nodes[y].flags & LOOM_NODE_INPLACE, "the residual add should run in place");
    CHECK(p->arena_size < p->naive_size, "arena %zu should be below naive %zu", p->arena_size, p->naive_size);
    /* no two simultaneously live tensors overlap: a's buffer is reused by c (a dead after b) */
    CHECK(g->nodes[c].offset == g->nodes[a].offset || g->nodes[c].offset != g->nodes[b].offset,
          "c must not overlap b, which it reads");
    CHECK(g->nodes[b].offset != g->nodes[a].offset, "b is computed from a: they cannot share");
    loom_plan_free(p);
}

/* A backend pass (loom_plan_opts.pass): the planner runs it after fuse, logs and dumps it, and the
 * memory plan accounts for what it folded. Here it folds n = rmsnorm(x) into the GEMV a, a into the
 * ADD y = x + a (Vulkan's rmsnorm-gemv and gemv-add), and m = rmsnorm(u) into two GEMVs. */
static int fold_test_run(const loom_plan_pass *pass, loom_graph *g, const int *order, int n_order) {
    const int *which = pass->ctx; /* {n, a, m} */
    CHECK(n_order > 0 && order[0] >= 0, "the pass sees the execution order");
    if (loom_plan_fold(g, pass->name, "norm-gemv", which[0]) < 0) return -1;
    if (loom_plan_fold(g, pass->name, "gemv-add", which[1]) < 0) return -1;
    if (loom_plan_fold(g, pass->name, "norm-gemv", which[2]) < 0) return -1;
    return 3;
}

static bool disjoint(const loom_node *p, const loom_node *q) {
    return p->offset + p->nbytes <= q->offset || q->offset + q->nbytes <= p->offset;
}

static void test_backend_pass(void) {
    loom_weight W = mkw("w", 2, 16, 16), W2 = mkw("w2", 2, 16, 16), W3 = mkw("w3", 2, 16, 16);
    for (int no_reuse = 0; no_reuse < 2; no_reuse++) {
        loom_graph *g = loom_graph_new();
        int x0 = loom_input(g, "x0", LOOM_F32, 2, (int64_t[]){1, 16});
        int x = loom_silu(g, x0);
        int n = loom_rmsnorm(g, x, 1e-6f);
        int a = loom_matmul(g, n, loom_weight_node(g, &W));
        int y = loom_add(g, x, a); /* x dies here: in place over it, were x not read through a */
        int u = loom_scale(g, y, 0.5f);
        int m = loom_rmsnorm(g, u, 1e-6f); /* u's only direct reader */
        int c = loom_matmul(g, m, loom_weight_node(g, &W2));
        int d = loom_matmul(g, m, loom_weight_node(g, &W3)); /* reads u (through m) last */
        loom_output(g, c, "c");
        loom_output(g, d, "d");
        int which[3] = {n, a, m};
        loom_plan_pass pass = {.name = "test-fold", .run = fold_test_run, .ctx = which};
        char *dump = NULL;
        size_t dump_len = 0;
        FILE *df = open_memstream(&dump, &dump_len);
        loom_plan_opts o = {.pass = &pass, .no_reuse = no_reuse, .dump = df, .dump_after = "backend"};
        loom_plan *p = loom_plan_build(g, &o);
        fclose(df);
        CHECK(p != NULL, "plan: %s", loom_last_error());
        if (!p) {
            free(dump);
            continue;
        }
        g = p->g;
        if (no_reuse) { /* loom diff reads every node back: the backend pass does not run */
            CHECK(p->n_folded == 0 && !p->pass && !(g->nodes[n].flags & LOOM_NODE_FOLDED), "no_reuse: nothing folded");
            CHECK(dump_len == 0, "no_reuse: no backend dump");
            loom_plan_free(p);
            free(dump);
            continue;
        }
        CHECK(p->n_folded == 3 && p->pass && !strcmp(p->pass, "test-fold"), "folded %d by %s", p->n_folded,
              p->pass ? p->pass : "(none)");
        CHECK(dump && strstr(dump, "== backend (test-fold)") && strstr(dump, " folded"), "dump after backend:\n%s",
              dump ? dump : "");
        CHECK(strstr(g->log, "test-fold: norm-gemv ('") && strstr(g->log, "test-fold: gemv-add ('"),
              "the pass log names the folds:\n%s", g->log);
        int step_d = -1;
        for (int k = 0; k < p->n_order; k++) {
            int i = p->order[k];
            CHECK(i != n && i != a && i != m, "folded node %d is in the order", i);
            if (i == d) step_d = k;
        }
        const loom_node *xn = &g->nodes[x], *yn = &g->nodes[y], *un = &g->nodes[u];
        CHECK(g->nodes[n].storage == LOOM_STORE_NONE && g->nodes[a].storage == LOOM_STORE_NONE &&
              g->nodes[m].storage == LOOM_STORE_NONE, "folded nodes have no storage");
        CHECK(!(yn->flags & LOOM_NODE_INPLACE) && disjoint(yn, xn),
              "y reads x whole through the folded GEMV: not in place over it");
        CHECK(un->last_use == step_d, "u is read (through the fold) until d at step %d, last use %d", step_d,
              un->last_use);
        CHECK(disjoint(&g->nodes[c], un) && disjoint(&g->nodes[d], un), "c or d overlaps u, which they read");
        CHECK(g->nodes[n].group >= 0 && g->nodes[n].group == g->nodes[a].group && g->nodes[a].group == yn->group &&
              g->nodes[m].group == g->nodes[c].group && g->nodes[c].group == g->nodes[d].group &&
              g->nodes[m].group != yn->group && p->n_groups == 2, "two fused groups (%d)", p->n_groups);
        /* what may not be folded: an output, a folded node */
        CHECK(loom_plan_fold(g, "t", "r", c) < 0 && strstr(loom_last_error(), "cannot fold"), "folding an output");
        CHECK(loom_plan_fold(g, "t", "r", n) < 0, "folding twice");
        loom_plan_free(p);
        free(dump);
    }
}

static void test_cache(void) {
    loom_plan_cache *c = loom_plan_cache_new();
    loom_weight W = mkw("w", 2, 8, 8);
    uint64_t keys[2];
    for (int k = 0; k < 2; k++) {
        loom_graph *g = loom_graph_new();
        int x = loom_input(g, "x", LOOM_F32, 2, (int64_t[]){k + 1, 8});
        loom_output(g, loom_matmul(g, x, loom_weight_node(g, &W)), "y");
        keys[k] = loom_graph_hash(g);
        loom_plan_cache_put(c, loom_plan_build(g, NULL));
    }
    CHECK(keys[0] != keys[1], "different shapes must hash differently");
    loom_graph *g = loom_graph_new();
    int x = loom_input(g, "x", LOOM_F32, 2, (int64_t[]){1, 8});
    loom_output(g, loom_matmul(g, x, loom_weight_node(g, &W)), "y");
    CHECK(loom_graph_hash(g) == keys[0], "the same graph must hash the same");
    CHECK(loom_plan_cache_get(c, loom_graph_hash(g)) != NULL, "cache hit expected");
    CHECK(loom_plan_cache_hits(c) == 1, "one hit");
    loom_graph_free(g);
    loom_plan_cache_free(c, NULL, NULL);
}

/* The real qwen2-tiny graph: the passes must shrink it and pack its arena. */
static void test_model_graph(void) {
    const char *fx = getenv("LOOM_FIXTURES");
    char path[512];
    snprintf(path, sizeof path, "%s/qwen2-tiny", fx ? fx : "tests/fixtures");
    loom_model *m = loom_model_load(path);
    CHECK(m != NULL, "load %s: %s", path, loom_last_error());
    if (!m) return;
    loom_graph *g = loom_graph_new();
    loom_build_opts o = {.n_tokens = 7, .n_ctx = 32, .all_logits = false, .want_hidden = false};
    CHECK(m->arch->build(g, m, &o) == 0, "build: %s", loom_last_error());
    int declared = g->n;
    loom_plan *p = loom_plan_build(g, NULL);
    CHECK(p != NULL, "plan: %s", loom_last_error());
    if (p) {
        int L = m->hp.n_layer;
        CHECK(count_live(p->g, LOOM_OP_SWIGLU) == L, "one swiglu per layer");
        CHECK(count_live(p->g, LOOM_OP_RMSNORM) == 2 * L + 1, "fused norms");
        CHECK(count_live(p->g, LOOM_OP_MUL) == 0, "all muls fused");
        CHECK(count_live(p->g, LOOM_OP_ADD) == 2 * L, "only residual adds remain (biases fused)");
        CHECK(count_live(p->g, LOOM_OP_WEIGHT) < declared, "tied embedding weight deduplicated");
        CHECK(p->n_nodes_live < declared, "live %d < declared %d", p->n_nodes_live, declared);
        CHECK(p->arena_size < p->naive_size, "arena %zu < naive %zu", p->arena_size, p->naive_size);
        printf("qwen2-tiny prefill(7): %d declared, %d live, %d groups, arena %zu vs naive %zu bytes\n", declared,
               p->n_nodes_live, p->n_groups, p->arena_size, p->naive_size);
    }
    loom_plan_free(p);
    loom_model_free(m);
}

int main(void) {
    test_dce_cse();
    test_fusion();
    test_fusion_geglu();
    test_memory();
    test_backend_pass();
    test_cache();
    test_model_graph();
    CHECK_DONE();
}
