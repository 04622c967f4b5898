/* loom profile: where a step's time goes, node by node.
 *
 * Runs one prefill of -p tokens and -n decode steps with node timing on (the CPU executor times each
 * node with the wall clock; the Vulkan backend fills the same array from GPU timestamps), then
 * prints, per phase, a table per op kind and the slowest nodes: calls, total and mean time, share of
 * the step, bytes moved and FLOPs (from shapes and dtypes, see node_cost), achieved GB/s and GFLOP/s,
 * and the fraction of the device's achievable bandwidth (tools/machine.c). --trace writes the same
 * timings as Chrome trace-event JSON (chrome://tracing, ui.perfetto.dev). docs/profiling.md. */
#include "tools/commands.h"
#include "tools/options.h"

#include "loom.h"
#include "tools/machine.h"
#include "models/model.h"
#include "models/session_internal.h"
#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- cost model ----------------------------------------------------------------------------------
 * Bytes: every source read once plus the output written, except where a node reads only part of a
 * source (embedding rows, the cache rows attention reads, kv_store's new rows). FLOPs: 2*M*N*K for a
 * matmul (+M*N for the bias), 4*L*hd per query head for attention over L cached rows (q.k and p.v),
 * and a small per-element count for the element-wise and row ops. pos0 is the step's first position. */
static void node_cost(const loom_graph *g, int i, int pos0, double *bytes, double *flops) {
    const loom_node *n = &g->nodes[i];
    double out = (double)loom_node_bytes(n), ne = (double)loom_node_nelem(n);
    double in = 0;
    for (int s = 0; s < n->n_src; s++)
        if (n->src[s] >= 0) in += (double)loom_node_bytes(&g->nodes[n->src[s]]);
    const loom_node *a = n->n_src > 0 && n->src[0] >= 0 ? &g->nodes[n->src[0]] : NULL;
    double rows = n->ndim ? ne / (double)n->ne[n->ndim - 1] : 1;
    *flops = 0;
    *bytes = in + out;
    switch (n->op) {
    case LOOM_OP_MATMUL: {
        const loom_node *w = &g->nodes[n->src[1]];
        double M = rows, N = (double)w->ne[0], K = (double)w->ne[1];
        *flops = 2 * M * N * K + (n->n_src > 2 ? M * N : 0);
        break;
    }
    case LOOM_OP_EMBED: { /* S rows of the table, not all of it */
        const loom_node *ids = &g->nodes[n->src[1]];
        *bytes = out + (double)loom_node_bytes(ids) + ne * (double)loom_dtype_size(a->type);
        break;
    }
    case LOOM_OP_KV_STORE: { /* the new rows in, the same rows out; the rest of the cache untouched */
        const loom_node *r = &g->nodes[n->src[1]], *p = &g->nodes[n->src[2]];
        *bytes = 2.0 * (double)loom_node_bytes(r) + (double)loom_node_bytes(p);
        break;
    }
    case LOOM_OP_ATTENTION: {
        int H = n->ip[0], Hkv = n->ip[1], hd = n->ip[2];
        double S = rows, L_max = pos0 + S, L_sum = S * pos0 + S * (S + 1) / 2; /* pos[s] = pos0 + s */
        *flops = 4.0 * L_sum * H * hd;
        *bytes = 2.0 * out + 2.0 * L_max * Hkv * hd * sizeof(float) + S * sizeof(int32_t);
        break;
    }
    case LOOM_OP_MOE: { /* k experts per row; a prefill reads each expert it uses once */
        const loom_node *wg = &g->nodes[n->src[2]], *lg = &g->nodes[n->src[1]];
        double k = n->ip[0], E = (double)lg->ne[lg->ndim - 1], F = (double)wg->ne[1];
        double D = (double)n->ne[n->ndim - 1], used = rows * k < E ? rows * k : E;
        double per_expert = 3.0 * (double)loom_node_bytes(wg) / E; /* gate, up and down slices */
        *flops = rows * k * (6.0 * F * D + 6.0 * F);
        *bytes = out + (double)loom_node_bytes(a) + (double)loom_node_bytes(lg) + used * per_expert;
        break;
    }
    case LOOM_OP_ADD: case LOOM_OP_MUL: case LOOM_OP_SCALE: *flops = ne; break;
    case LOOM_OP_SILU: *flops = 4 * ne; break;
    case LOOM_OP_SWIGLU: *flops = 5 * ne; break;
    case LOOM_OP_GELU: *flops = 8 * ne; break;
    case LOOM_OP_GEGLU: *flops = 9 * ne; break;
    case LOOM_OP_SOFTCAP: *flops = 6 * ne; break;
    case LOOM_OP_RMSNORM: *flops = (n->n_src > 1 ? 4 : 3) * ne; break;
    case LOOM_OP_SOFTMAX: *flops = 5 * ne; break;
    case LOOM_OP_ROPE: *flops = 3.0 * rows * n->ip[0] * n->ip[3]; break; /* 6 per rotated pair */
    default: break;
    }
}

/* ---- accumulation ----------------------------------------------------------------------------- */
typedef struct phase {
    const char *name;
    const loom_plan *plan; /* every step of a phase has the same plan */
    int steps, tokens;
    double step_s, nodes_s;  /* wall time of loom_session_eval, and the sum of node times */
    double *t, *bytes, *flops; /* per node index, summed over steps */
    int *calls;
} phase;

static int phase_add(phase *ph, const loom_plan *p, const double *nt, int pos0, int n_tokens, double step_s) {
    if (!ph->plan) {
        ph->plan = p;
        int n = p->g->n;
        ph->t = calloc((size_t)n, sizeof *ph->t);
        ph->bytes = calloc((size_t)n, sizeof *ph->bytes);
        ph->flops = calloc((size_t)n, sizeof *ph->flops);
        ph->calls = calloc((size_t)n, sizeof *ph->calls);
        if (!ph->t || !ph->bytes || !ph->flops || !ph->calls) return loom_err("out of memory");
    } else if (ph->plan != p) {
        return loom_err("internal: the %s steps did not share one plan", ph->name);
    }
    ph->steps++;
    ph->tokens += n_tokens;
    ph->step_s += step_s;
    for (int k = 0; k < p->n_order; k++) {
        int i = p->order[k];
        double b, f;
        node_cost(p->g, i, pos0, &b, &f);
        ph->t[i] += nt[i];
        ph->nodes_s += nt[i];
        ph->bytes[i] += b;
        ph->flops[i] += f;
        ph->calls[i]++;
    }
    return 0;
}

static void phase_free(phase *ph) {
    free(ph->t);
    free(ph->bytes);
    free(ph->flops);
    free(ph->calls);
}

/* ---- report ------------------------------------------------------------------------------------ */
static void rate_cols(double t, double bytes, double flops, double peak) {
    double gbs = t > 0 ? bytes / t / 1e9 : 0, gfs = t > 0 ? flops / t / 1e9 : 0;
    printf(" %9.3f %9.4f %8.2f %8.2f", bytes / 1e6, flops / 1e9, gbs, gfs);
    if (peak > 0) printf(" %5.1f%%", 100.0 * gbs / peak);
    else printf(" %6s", "-");
}

typedef struct ranked { int i; double t; } ranked;

static int by_time(const void *a, const void *b) { /* slowest first */
    double x = ((const ranked *)a)->t, y = ((const ranked *)b)->t;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void print_phase(const phase *ph, double peak, int top) {
    if (!ph->plan) return;
    const loom_graph *g = ph->plan->g;
    double share = ph->step_s > 0 ? 100.0 * ph->nodes_s / ph->step_s : 0;
    printf("\n== %s: %d step%s, %d token%s, %.3f ms per step; nodes account for %.3f ms (%.1f%% of the step time)\n",
           ph->name, ph->steps, ph->steps == 1 ? "" : "s", ph->tokens, ph->tokens == 1 ? "" : "s",
           1e3 * ph->step_s / ph->steps, 1e3 * ph->nodes_s / ph->steps, share);
    printf("%-10s %6s %10s %9s %6s %9s %9s %8s %8s %6s\n", "op", "calls", "total ms", "mean us", "share",
           "MB", "GFLOP", "GB/s", "GFLOP/s", "%peak");
    for (int op = 0; op < LOOM_OP_COUNT; op++) {
        double t = 0, b = 0, f = 0;
        int calls = 0;
        for (int i = 0; i < g->n; i++)
            if ((int)g->nodes[i].op == op && ph->calls[i]) {
                t += ph->t[i];
                b += ph->bytes[i];
                f += ph->flops[i];
                calls += ph->calls[i];
            }
        if (!calls) continue;
        printf("%-10s %6d %10.3f %9.2f %5.1f%%", loom_op_name((loom_op)op), calls, 1e3 * t, 1e6 * t / calls,
               ph->step_s > 0 ? 100.0 * t / ph->step_s : 0);
        rate_cols(t, b, f, peak);
        printf("\n");
    }
    printf("%-10s %6s %10.3f %9s %5.1f%%  (graph build, plan lookup, inputs, outputs)\n", "(other)", "",
           1e3 * (ph->step_s - ph->nodes_s), "", ph->step_s > 0 ? 100.0 * (ph->step_s - ph->nodes_s) / ph->step_s : 0);

    /* the slowest nodes */
    ranked *sel = malloc((size_t)g->n * sizeof *sel);
    if (!sel) return;
    int n_top = 0;
    for (int i = 0; i < g->n; i++)
        if (ph->calls[i]) sel[n_top++] = (ranked){i, ph->t[i]};
    qsort(sel, (size_t)n_top, sizeof *sel, by_time);
    if (n_top > top) n_top = top;
    printf("top %d nodes:\n%5s %-10s %-26s %-14s %10s %9s %6s %9s %9s %8s %8s %6s\n", n_top, "node", "op", "name",
           "shape", "total ms", "mean us", "share", "MB", "GFLOP", "GB/s", "GFLOP/s", "%peak");
    for (int k = 0; k < n_top; k++) {
        int i = sel[k].i;
        const loom_node *n = &g->nodes[i];
        char shape[48];
        loom_shape_str(n, shape, sizeof shape);
        printf("%5d %-10s %-26.26s %-14s %10.3f %9.2f %5.1f%%", i, loom_op_name(n->op), n->name, shape,
               1e3 * ph->t[i], 1e6 * ph->t[i] / ph->calls[i], ph->step_s > 0 ? 100.0 * ph->t[i] / ph->step_s : 0);
        rate_cols(ph->t[i], ph->bytes[i], ph->flops[i], peak);
        printf("\n");
    }
    free(sel);
}

/* ---- trace ------------------------------------------------------------------------------------- */
/* One step: a "step" event on thread 0 spanning loom_session_eval, and the nodes on thread 1 laid
 * end to end from the step's start in execution order (the executor records durations, not start
 * times; nodes run one after another, so only the host work between them is left out). */
static void trace_step(FILE *f, bool *first, const char *phase_name, int pos0, int n_tokens, double t0_us,
                       double dur_us, const loom_plan *p, const double *nt) {
    fprintf(f, "%s\n{\"name\":\"%s\",\"cat\":\"step\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,\"pid\":1,\"tid\":0,"
               "\"args\":{\"pos\":%d,\"tokens\":%d}}",
            *first ? "" : ",", phase_name, t0_us, dur_us, pos0, n_tokens);
    *first = false;
    double ts = t0_us;
    for (int k = 0; k < p->n_order; k++) {
        int i = p->order[k];
        const loom_node *n = &p->g->nodes[i];
        double b, fl, d = nt[i] * 1e6;
        node_cost(p->g, i, pos0, &b, &fl);
        fprintf(f, ",\n{\"name\":");
        loom_json_str(f, n->name);
        fprintf(f, ",\"cat\":\"%s\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,\"pid\":1,\"tid\":1,"
                   "\"args\":{\"node\":%d,\"shape\":\"",
                loom_op_name(n->op), ts, d, i);
        for (int dd = 0; dd < n->ndim; dd++) fprintf(f, dd ? "x%lld" : "%lld", (long long)n->ne[dd]);
        fprintf(f, "\",\"bytes\":%.0f,\"flops\":%.0f}}", b, fl);
        ts += d;
    }
}

/* ---- command ----------------------------------------------------------------------------------- */
int cmd_profile(int argc, char **argv) {
    loom_common_opts co;
    loom_common_defaults(&co);
    long n_prompt = 32, n_gen = 16, top = 10;
    const char *trace_path = NULL;
    bool no_peak = false, remeasure = false;
    char peak_help[512];
    snprintf(peak_help, sizeof peak_help, "skip the device's bandwidth (measured once, cached in\n%s)",
             *loom_machine_cache_path() ? loom_machine_cache_path() : "~/.cache/loom/bandwidth.tsv");
    const loom_opt opts[] = {
        {.names = "-p", .type = LOOM_OPT_INT, .arg = "N", .help = "prompt tokens in the prefill step", .lo = 1,
         .hi = 1 << 20, .dst = &n_prompt},
        {.names = "-n", .type = LOOM_OPT_INT, .arg = "N", .help = "decode steps after it", .lo = 0, .hi = 1 << 20,
         .dst = &n_gen},
        {.names = "--trace",
         .type = LOOM_OPT_STR,
         .arg = "FILE.json",
         .help = "write Chrome trace-event JSON (open in ui.perfetto.dev or chrome://tracing)",
         .dst = &trace_path},
        {.names = "--top", .type = LOOM_OPT_INT, .arg = "K", .help = "slowest nodes listed per phase", .lo = 1,
         .hi = 10000, .dst = &top},
        {.names = "--no-peak", .type = LOOM_OPT_FLAG, .help = peak_help, .dst = &no_peak},
        {.names = "--remeasure",
         .type = LOOM_OPT_FLAG,
         .help = "measure the bandwidth again (on an idle machine) and cache the new figure",
         .dst = &remeasure},
        LOOM_OPT_END,
    };
    int prc = loom_opts_parse("profile", "[-m MODEL] [--device D] [-p N] [-n N] [-t N] [--trace FILE.json] [--top K]\n"
                                         "                    [--no-peak | --remeasure]",
                              "Time every node of a prefill step and of decode steps (docs/profiling.md).", opts, &co,
                              argc, argv);
    if (prc >= 0) return prc;
    bool want_peak = !no_peak;
    const char *path = loom_model_path(&co);
    FILE *tf = NULL;
    if (trace_path && !(tf = fopen(trace_path, "w"))) {
        fprintf(stderr, "loom profile: --trace %s: cannot write: %s\n", trace_path, strerror(errno));
        return 1;
    }
    int rc = 1;
    loom_session *s = NULL;
    phase ph[2] = {{.name = "prefill"}, {.name = "decode"}};
    int32_t *tok = NULL;
    loom_model *m = loom_model_load(path);
    if (!m) goto fail;
    loom_model_info info = loom_model_get_info(m);
    loom_session_opts so = loom_common_session_opts(&co);
    so.n_ctx = co.n_ctx > 0 ? co.n_ctx : (int)(n_prompt + n_gen);
    if (so.n_ctx < n_prompt + n_gen) {
        loom_err("--ctx %d is shorter than -p %ld + -n %ld", so.n_ctx, n_prompt, n_gen);
        goto fail;
    }
    if (!(s = loom_session_new(m, &so))) goto fail;
    loom_backend *be = loom_session_backend(s);
    char desc[256] = "";
    if (be->ops->describe) be->ops->describe(be, desc, sizeof desc);
    if (!desc[0]) snprintf(desc, sizeof desc, "%s", loom_session_device(s));
    loom_machine mc;
    loom_machine_read(&mc);
    printf("profile: %s (%s, %s, %.2f MiB of weights) on %s\n", path, info.arch, loom_dtype_name(info.weight_type),
           info.weight_bytes / 1048576.0, desc);
    printf("machine: %s, %d CPUs, %s, %.1f GiB\n", mc.cpu_model, mc.n_cpus, mc.simd[0] ? mc.simd : "no SIMD flags",
           mc.mem_bytes / 1073741824.0);
    double peak = 0;
    if (want_peak) {
        char key[512];
        snprintf(key, sizeof key, "%s | %s", mc.cpu_model, desc);
        bool cached = false;
        peak = loom_machine_peak_bw(be, key, remeasure, &cached);
        if (peak > 0)
            printf("achievable bandwidth: %.1f GB/s (%s %s)\n", peak, cached ? "cached in" : "measured now; cache",
                   *loom_machine_cache_path() ? loom_machine_cache_path() : "none");
        else
            printf("achievable bandwidth: unknown (%s)\n", loom_last_error());
    }

    tok = malloc(sizeof *tok * (size_t)n_prompt);
    if (!tok) goto fail;
    uint64_t r = 42;
    for (long i = 0; i < n_prompt; i++) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        tok[i] = (int32_t)((r >> 33) % (uint64_t)info.n_vocab);
    }
    /* warm-up: plans built, pages touched, pipelines compiled; not measured */
    if (loom_session_eval(s, tok, (int)n_prompt) < 0 || (n_gen > 0 && loom_session_eval(s, tok, 1) < 0)) goto fail;
    loom_session_reset(s);
    loom_session_set_profiling(s, true);

    bool first = true;
    if (tf) fprintf(tf, "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"model\":\"%s\",\"device\":\"%s\"},\n\"traceEvents\":[",
                    info.arch, loom_session_device(s));
    double t_origin = loom_now();
    int32_t next = tok[0];
    for (long step = 0; step <= n_gen; step++) {
        int n = step == 0 ? (int)n_prompt : 1, pos0 = loom_session_pos(s);
        double t0 = loom_now();
        if (loom_session_eval(s, step == 0 ? tok : &next, n) < 0) goto fail;
        double dt = loom_now() - t0;
        const double *nt;
        const loom_plan *p = loom_session_last_plan(s, &nt);
        if (!p || !nt) {
            loom_err("internal: no node timings after a profiled step");
            goto fail;
        }
        if (phase_add(&ph[step ? 1 : 0], p, nt, pos0, n, dt) < 0) goto fail;
        if (tf) trace_step(tf, &first, step ? "decode" : "prefill", pos0, n, (t0 - t_origin) * 1e6, dt * 1e6, p, nt);
        /* greedy next token: a realistic decode, and deterministic */
        const float *lg = loom_session_logits(s, NULL);
        int best = 0;
        for (int v = 1; v < info.n_vocab; v++)
            if (lg[v] > lg[best]) best = v;
        next = best;
    }
    if (tf) {
        fprintf(tf, ",\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,\"args\":{\"name\":\"loom %s\"}}",
                loom_session_device(s));
        fprintf(tf, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,\"args\":{\"name\":\"steps\"}}");
        fprintf(tf, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":1,\"args\":{\"name\":\"nodes\"}}\n]}\n");
        int bad = ferror(tf);
        if (fclose(tf) != 0 || bad) {
            tf = NULL;
            loom_err("--trace %s: write failed", trace_path);
            goto fail;
        }
        tf = NULL;
    }
    print_phase(&ph[0], peak, (int)top);
    print_phase(&ph[1], peak, (int)top);
    if (trace_path) printf("\ntrace: %s (open in ui.perfetto.dev or chrome://tracing)\n", trace_path);
    rc = 0;
fail:
    if (rc) fprintf(stderr, "loom profile: %s\n", loom_last_error());
    if (tf) fclose(tf);
    phase_free(&ph[0]);
    phase_free(&ph[1]);
    free(tok);
    loom_session_free(s);
    loom_model_free(m);
    return rc;
}
