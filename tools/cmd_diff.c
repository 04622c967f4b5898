/* loom diff: run the same planned graph on two devices and compare every node's output.
 *
 * Each side plans the step with no arena reuse (loom_plan_opts.no_reuse: every node keeps its own
 * slot, nothing runs in place), runs it once, and then every node's output is still there to read
 * back with buf_read. Nodes are compared in execution order; the first whose outputs differ beyond
 * the tolerance is the culprit (everything after it inherits the difference). One prefill and -n
 * decode steps run, so both the batched and the single-row kernels are covered.
 *
 * Devices: "cpu" (the best kernels, or scalar under --scalar / LOOM_SCALAR=1), "cpu:FLAVOUR"
 * (a given kernel set: scalar, avx2, avx512, ... as loom_cpu_backend_new_isa knows them),
 * "vulkan", "vulkan:N". The first --device is
 * the reference: scaled error = max |a - b| / max(1, max |a|). */
#include "tools/commands.h"
#include "tools/options.h"

#include "backends/cpu/cpu.h"
#include "loom.h"
#include "models/model.h"
#include "models/weights.h"
#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct side {
    const char *device;
    char desc[256];
    loom_backend *be;
    loom_weight_bufs weights;
    loom_buffer **state;
    int n_state;
    loom_plan *plan;
    loom_runner run;  /* the arena and the plan's preparation (backends/backend.h) */
    loom_exec_ctx x;  /* the last step's run */
} side;

static loom_backend *open_device(const char *name, int n_threads) {
    loom_backend_opts o = {.n_threads = n_threads, .device_index = -1};
    if (!strncmp(name, "cpu:", 4)) /* the backend names the flavours it knows when this one is not */
        return loom_cpu_backend_new_isa(&o, name + 4);
    if (!strcmp(name, "auto"))
        return loom_err_null("device 'auto': name the two devices to compare (cpu, cpu:scalar, vulkan, ...)");
    return loom_backend_open(name, &o);
}

static void side_release_plan(side *sd) {
    loom_runner_release(&sd->run, sd->plan);
    loom_plan_free(sd->plan);
    sd->plan = NULL;
    loom_runner_free(&sd->run);
}

static void side_free(side *sd) {
    if (!sd->be) return;
    side_release_plan(sd);
    loom_weights_free(&sd->weights, sd->be);
    for (int i = 0; i < sd->n_state; i++)
        if (sd->state && sd->state[i]) sd->be->ops->buf_free(sd->be, sd->state[i]);
    free(sd->state);
    loom_backend_close(sd->be);
    sd->be = NULL;
}

/* The weights and a zeroed KV cache, as a session lays them out. */
static int side_open(side *sd, const loom_model *m, int n_threads, int n_ctx) {
    if (!(sd->be = open_device(sd->device, n_threads))) return -1;
    sd->run = (loom_runner){.be = sd->be, .device = sd->device};
    if (sd->be->ops->describe) sd->be->ops->describe(sd->be, sd->desc, sizeof sd->desc);
    else snprintf(sd->desc, sizeof sd->desc, "%s", sd->be->ops->name);
    if (loom_weights_upload(&sd->weights, sd->be, m, sd->device, NULL, NULL) < 0) return -1;
    size_t kv = (size_t)n_ctx * (size_t)loom_kv_width(&m->hp, 0) * sizeof(float);
    sd->n_state = 2 * m->hp.n_layer;
    if (!(sd->state = loom_calloc((size_t)sd->n_state, sizeof *sd->state))) return -1;
    for (int i = 0; i < sd->n_state; i++)
        if (!(sd->state[i] = sd->be->ops->buf_alloc(sd->be, kv)) || sd->be->ops->buf_zero(sd->be, sd->state[i], 0, kv) < 0)
            return -1;
    return 0;
}

static loom_exec_ctx side_ctx(const side *sd) { return sd->x; }

/* Plan one step of n tokens at pos0 on this side and run it. */
static int side_step(side *sd, const loom_model *m, int n_ctx, const int32_t *tok, int n, int pos0) {
    side_release_plan(sd);
    loom_graph *g = loom_graph_new();
    if (!g) return -1;
    loom_build_opts bo = {.n_tokens = n, .n_ctx = n_ctx, .all_logits = true};
    if (m->arch->build(g, m, &bo) < 0) {
        loom_graph_free(g);
        return -1;
    }
    loom_plan_opts po = {.no_reuse = true}; /* every node read back: no backend fusion either */
    if (!(sd->plan = loom_runner_plan(&sd->run, g, &po))) return -1;
    loom_exec_ctx bind = {.state = sd->state, .n_state = sd->n_state};
    loom_weights_bind(&sd->weights, &bind);
    if (loom_runner_bind(&sd->run, sd->plan, &bind, &sd->x) < 0) return -1;
    int32_t *pos = loom_malloc((size_t)n * sizeof *pos);
    if (!pos) return -1;
    for (int i = 0; i < n; i++) pos[i] = pos0 + i;
    loom_exec_ctx x = side_ctx(sd);
    int rc = loom_exec_write(sd->be, &x, loom_plan_input(sd->plan, "tokens"), tok, (size_t)n * sizeof *tok);
    if (rc == 0) rc = loom_exec_write(sd->be, &x, loom_plan_input(sd->plan, "pos"), pos, (size_t)n * sizeof *pos);
    free(pos);
    if (rc == 0) rc = loom_execute(sd->be, &x);
    if (rc < 0) loom_err_prefix("%s", sd->device);
    return rc;
}

/* Node i's f32 output on this side; the KV_STORE nodes stand for the whole cache, of which only
 * this step's rows [pos0, pos0 + n) are new. */
static float *read_node(side *sd, int i, int pos0, int n, size_t *count) {
    const loom_node *nd = &sd->plan->g->nodes[i];
    size_t off, bytes = loom_node_bytes(nd);
    loom_exec_ctx x = side_ctx(sd);
    loom_buffer *b = loom_exec_node_buffer(&x, i, &off);
    if (!b) return loom_err_null("%s: node %d '%s' has no storage", sd->device, i, nd->name);
    if (nd->op == LOOM_OP_KV_STORE) {
        size_t row = (size_t)nd->ne[1] * sizeof(float);
        off += (size_t)pos0 * row;
        bytes = (size_t)n * row;
    }
    float *v = loom_malloc(bytes ? bytes : 1);
    if (!v) return NULL;
    if (sd->be->ops->buf_read(sd->be, b, off, v, bytes) < 0) {
        free(v);
        loom_err_prefix("%s: reading node %d '%s'", sd->device, i, nd->name);
        return NULL;
    }
    *count = bytes / sizeof(float);
    return v;
}

typedef struct node_err {
    double max_abs, ref_max, scaled;
    size_t at;     /* element of the largest difference */
    float a, b;    /* the values there */
} node_err;

static node_err compare(const float *a, const float *b, size_t n) {
    node_err e = {0};
    for (size_t k = 0; k < n; k++) {
        double r = fabs((double)a[k]);
        if (r > e.ref_max) e.ref_max = r;
    }
    for (size_t k = 0; k < n; k++) {
        double d = fabs((double)a[k] - (double)b[k]);
        if (d != d) d = INFINITY; /* NaN on either side is a difference */
        if (d > e.max_abs || (k == 0 && d == e.max_abs)) {
            e.max_abs = d;
            e.at = k;
        }
    }
    if (n) {
        e.a = a[e.at];
        e.b = b[e.at];
    }
    e.scaled = e.max_abs / (e.ref_max > 1 ? e.ref_max : 1);
    return e;
}

static void shape_str(const loom_node *n, char *buf, size_t len) {
    size_t o = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < n->ndim && o < len; d++)
        o += (size_t)snprintf(buf + o, len - o, d ? ",%lld" : "%lld", (long long)n->ne[d]);
    if (o < len) snprintf(buf + o, len - o, "]");
}

/* Compare every executed node of the step. Returns 1 when a node differs beyond tol, 0 when all
 * agree, -1 on error. */
static int compare_step(side *A, side *B, const char *step, int pos0, int n, double tol, bool all) {
    const loom_plan *pa = A->plan, *pb = B->plan;
    if (pa->n_order != pb->n_order || pa->g->n != pb->g->n)
        return loom_err("internal: the two plans differ (%d vs %d nodes)", pa->n_order, pb->n_order);
    int worst = -1, bad = -1;
    node_err we = {0}, be = {0};
    double src_worst = 0; /* the worst scaled error among the first bad node's sources */
    double *scaled = calloc((size_t)pa->g->n, sizeof *scaled);
    if (!scaled) return loom_err("out of memory");
    for (int k = 0; k < pa->n_order; k++) {
        int i = pa->order[k];
        const loom_node *nd = &pa->g->nodes[i];
        if (nd->op != pb->g->nodes[i].op) {
            free(scaled);
            return loom_err("internal: node %d is %s on one side and %s on the other", i, loom_op_name(nd->op),
                            loom_op_name(pb->g->nodes[i].op));
        }
        if (nd->type != LOOM_F32) continue;
        size_t na = 0, nb = 0;
        float *va = read_node(A, i, pos0, n, &na), *vb = va ? read_node(B, i, pos0, n, &nb) : NULL;
        if (!va || !vb || na != nb) {
            free(va);
            free(vb);
            free(scaled);
            return va && vb ? loom_err("internal: node %d has %zu values on one side, %zu on the other", i, na, nb) : -1;
        }
        node_err e = compare(va, vb, na);
        free(va);
        free(vb);
        scaled[i] = e.scaled;
        if (all) {
            char shape[64];
            shape_str(nd, shape, sizeof shape);
            printf("  %-7s %4d %-10s %-24.24s %-14s max abs %.3e  scaled %.3e%s\n", step, i, loom_op_name(nd->op),
                   nd->name, shape, e.max_abs, e.scaled, e.scaled > tol ? "  DIFFERS" : "");
        }
        if (worst < 0 || e.scaled > we.scaled) {
            worst = i;
            we = e;
        }
        if (bad < 0 && !(e.scaled <= tol)) {
            bad = i;
            be = e;
            for (int s = 0; s < nd->n_src; s++) {
                int j = nd->src[s];
                while (j >= 0 && pa->g->nodes[j].op == LOOM_OP_VIEW) j = pa->g->nodes[j].src[0];
                if (j >= 0 && scaled[j] > src_worst) src_worst = scaled[j];
            }
            if (!all) break; /* everything after inherits the difference */
        }
    }
    free(scaled);
    if (bad < 0) {
        const loom_node *nd = &pa->g->nodes[worst];
        printf("%-7s (%d token%s at position %d): %d nodes agree; the largest difference is node %d (%s '%s'), "
               "scaled %.3e\n",
               step, n, n == 1 ? "" : "s", pos0, pa->n_order, worst, loom_op_name(nd->op), nd->name, we.scaled);
        return 0;
    }
    const loom_node *nd = &pa->g->nodes[bad];
    char shape[64];
    shape_str(nd, shape, sizeof shape);
    int64_t cols = nd->ndim ? nd->ne[nd->ndim - 1] : 1;
    size_t row = (size_t)(be.at / (size_t)cols), col = (size_t)(be.at % (size_t)cols);
    if (nd->op == LOOM_OP_KV_STORE) row += (size_t)pos0;
    printf("first difference: %s (%d token%s at position %d), node %d: %s '%s' %s\n", step, n, n == 1 ? "" : "s",
           pos0, bad, loom_op_name(nd->op), nd->name, shape);
    printf("  max abs %.4e at [%zu,%zu] (%s %.6g, %s %.6g); scaled %.4e > tol %.3g\n", be.max_abs, row, col,
           A->device, be.a, B->device, be.b, be.scaled, tol);
    printf("  its sources agree within %.3e: the difference starts in this %s\n", src_worst, loom_op_name(nd->op));
    return 1;
}

int cmd_diff(int argc, char **argv) {
    loom_common_opts co;
    loom_common_defaults(&co);
    const char *dev[2] = {NULL, NULL};
    int n_dev = 0;
    long n_prompt = 8, n_gen = 2;
    double tol = -1;
    bool all = false;
    const loom_opt opts[] = {
        {.names = "--device",
         .type = LOOM_OPT_LIST,
         .arg = "D",
         .help = "twice: A (the reference), then B; cpu, cpu:scalar, cpu:avx2, cpu:avx512[bf16],\n"
                 "vulkan, vulkan:N",
         .hi = 2,
         .dst = dev,
         .count = &n_dev},
        {.names = "-p", .type = LOOM_OPT_INT, .arg = "N", .help = "prompt tokens in the prefill step", .lo = 1,
         .hi = 1 << 16, .dst = &n_prompt},
        {.names = "-n", .type = LOOM_OPT_INT, .arg = "N", .help = "decode steps after it", .lo = 0, .hi = 1 << 16,
         .dst = &n_gen},
        {.names = "--tol",
         .type = LOOM_OPT_NUM,
         .arg = "X",
         .help = "largest scaled error max|a-b| / max(1, max|a|) allowed per node\n"
                 "(default 1e-3 for f32 weights, 2e-2 for 16-bit ones)",
         .lo = 1e-300,
         .hi = 1e300,
         .dst = &tol},
        {.names = "--all", .type = LOOM_OPT_FLAG, .help = "print every node's error, not only the first difference",
         .dst = &all},
        LOOM_OPT_HEADING("exit status: 0 all nodes agree, 1 a node differs (or an error), 2 bad usage"),
        LOOM_OPT_END,
    };
    int prc = loom_opts_parse("diff", "[-m MODEL] --device A --device B [--tol X] [-p N] [-n N] [-t N] [--all]",
                              "Run the same steps on two devices and compare every node's output.", opts, &co, argc, argv);
    if (prc >= 0) return prc;
    if (n_dev != 2) {
        fprintf(stderr, "loom diff: needs two devices: --device A --device B (e.g. --device cpu --device cpu:scalar)\n");
        return 2;
    }
    const char *path = loom_model_path(&co);
    side sd[2] = {{.device = dev[0]}, {.device = dev[1]}};
    int rc = 1, n_ctx = (int)(n_prompt + n_gen);
    int32_t *tok = NULL;
    loom_model *m = loom_model_load(path);
    if (!m) goto fail;
    loom_model_info info = loom_model_get_info(m);
    if (tol < 0) tol = info.weight_type == LOOM_F32 ? 1e-3 : 2e-2;
    for (int k = 0; k < 2; k++)
        if (side_open(&sd[k], m, co.n_threads, n_ctx) < 0) {
            loom_err_prefix("device '%s'", sd[k].device);
            goto fail;
        }
    printf("diff: %s (%s) on A = %s [%s] vs B = %s [%s], tolerance %.3g\n", path, info.arch, dev[0], sd[0].desc,
           dev[1], sd[1].desc, tol);
    if (!(tok = loom_malloc(sizeof *tok * (size_t)n_prompt))) goto fail;
    uint64_t r = 42;
    for (long i = 0; i < n_prompt; i++) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        tok[i] = (int32_t)((r >> 33) % (uint64_t)info.n_vocab);
    }
    int found = 0, pos = 0;
    for (long step = 0; step <= n_gen && !found; step++) {
        int n = step ? 1 : (int)n_prompt;
        const int32_t *t = step ? &tok[step % n_prompt] : tok; /* the same tokens on both sides */
        for (int k = 0; k < 2; k++)
            if (side_step(&sd[k], m, n_ctx, t, n, pos) < 0) goto fail;
        char name[32] = "prefill";
        if (step) snprintf(name, sizeof name, "decode%ld", step);
        found = compare_step(&sd[0], &sd[1], name, pos, n, tol, all);
        if (found < 0) goto fail;
        pos += n;
    }
    printf("%s\n", found ? "DIFFERENT" : "SAME (within tolerance)");
    rc = found ? 1 : 0;
    goto done;
fail:
    fprintf(stderr, "loom diff: %s\n", loom_last_error());
    rc = 1;
done:
    side_free(&sd[0]);
    side_free(&sd[1]);
    free(tok);
    loom_model_free(m);
    return rc;
}
