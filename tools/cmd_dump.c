/* loom dump: print a model's graph as declared and after the planner passes. */
#include "tools/commands.h"
#include "tools/options.h"

#include "backends/backend.h"
#include "models/model.h"
#include "graph/plan.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* "A-B" or "A" -> {A, B}; each a layer index. */
static int parse_layers(const char *s, int *lh) {
    char buf[64], *dash;
    snprintf(buf, sizeof buf, "%s", s);
    long a, b;
    if ((dash = strchr(buf, '-'))) *dash = 0;
    if (loom_parse_int("--layers", buf, 0, 1 << 20, &a) < 0) return -1;
    b = a;
    if (dash && loom_parse_int("--layers", dash + 1, 0, 1 << 20, &b) < 0) return -1;
    if (b < a) {
        fprintf(stderr, "loom dump: --layers %s: the last layer comes before the first\n", s);
        return -1;
    }
    lh[0] = (int)a;
    lh[1] = (int)b;
    return 0;
}

/* Graphviz is optional: find `dot` on PATH before promising an SVG. */
static bool have_dot(void) {
    const char *path = getenv("PATH");
    char buf[4096], dir[4096];
    snprintf(buf, sizeof buf, "%s", path ? path : "/usr/bin:/bin");
    for (char *save = NULL, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(dir, sizeof dir, "%s/dot", *d ? d : ".");
        if (access(dir, X_OK) == 0) return true;
    }
    return false;
}

int cmd_dump(int argc, char **argv) {
    loom_common_opts co;
    loom_common_defaults(&co);
    const char *phase = "prefill", *after = "memory", *format = "text";
    long seq = 16;
    int layers[2] = {-1, -1};
    bool want_layers = false;
    const char *layers_arg = NULL;
    const loom_opt opts[] = {
        {.names = "--phase", .type = LOOM_OPT_CHOICE, .arg = "P", .help = "which step's graph", .dst = &phase,
         .choices = "prefill|decode"},
        {.names = "--seq", .type = LOOM_OPT_INT, .arg = "N", .help = "prompt length for the prefill graph", .lo = 1,
         .hi = 1 << 20, .dst = &seq},
        {.names = "--after",
         .type = LOOM_OPT_CHOICE,
         .arg = "PASS",
         .help = "the graph after this pass (memory: the final plan; all: every pass)",
         .dst = &after,
         .choices = "declared|dce|cse|fuse|backend|memory|all"},
        {.names = "--format",
         .type = LOOM_OPT_CHOICE,
         .arg = "F",
         .help = "svg: the DOT graph drawn by Graphviz's `dot -Tsvg` (one pass at a time);\n"
                 "JSON schema: docs/graph-dump.md",
         .dst = &format,
         .choices = "text|dot|json|svg"},
        {.names = "--layers",
         .type = LOOM_OPT_STR,
         .arg = "A-B",
         .help = "only the nodes of layers A..B (or one layer: --layers A); the rest collapsed",
         .dst = &layers_arg},
        LOOM_OPT_HEADING("(--device cpu|vulkan: plan as that backend runs it, with its alignment and its pass,\n"
                         "e.g. vulkan-fuse; default: no backend, 256-byte alignment)"),
        LOOM_OPT_END,
    };
    int prc = loom_opts_parse("dump", "[-m MODEL] [--phase prefill|decode] [--seq N] [--after PASS|all]\n"
                                      "                 [--format text|dot|json|svg] [--layers A-B] [--ctx N]",
                              "Print the compute graph the planner builds for a model.", opts, &co, argc, argv);
    if (prc >= 0) return prc;
    if (layers_arg) {
        if (parse_layers(layers_arg, layers) < 0) return 2;
        want_layers = true;
    }
    bool svg = !strcmp(format, "svg");
    loom_dump_format fmt = !strcmp(format, "json") ? LOOM_DUMP_JSON
                           : (svg || !strcmp(format, "dot")) ? LOOM_DUMP_DOT : LOOM_DUMP_TEXT;
    if (svg && !strcmp(after, "all")) {
        fprintf(stderr, "loom dump: --format svg draws one pass: pick one with --after PASS (not all)\n");
        return 2;
    }
    if (svg && !have_dot()) {
        fprintf(stderr, "loom dump: --format svg needs Graphviz's `dot` on PATH (apt-get install graphviz); "
                        "--format dot prints the graph without it\n");
        return 1;
    }
    const char *path = loom_model_path(&co);
    loom_model *m = loom_open_model("dump", &co);
    if (!m) return 1;
    loom_graph *g = loom_graph_new();
    loom_build_opts bo = {.n_tokens = !strcmp(phase, "decode") ? 1 : (int)seq,
                          .n_ctx = co.n_ctx > 0 ? co.n_ctx : (m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096)};
    int rc = 1;
    FILE *out = stdout;
    loom_backend *be = NULL;
    if (want_layers && layers[0] >= m->hp.n_layer) {
        fprintf(stderr, "loom dump: --layers %d-%d: %s has layers 0-%d\n", layers[0], layers[1], path,
                m->hp.n_layer - 1);
        loom_graph_free(g);
        goto done;
    }
    if (!g || m->arch->build(g, m, &bo) < 0) {
        fprintf(stderr, "loom dump: %s\n", loom_last_error());
        loom_graph_free(g);
        goto done;
    }
    if (strcmp(co.device, "auto")) { /* --device: that backend's alignment and pass */
        loom_backend_opts bopt = {.n_threads = 1, .device_index = -1};
        if (!(be = loom_backend_open(co.device, &bopt))) {
            fprintf(stderr, "loom dump: %s\n", loom_last_error());
            loom_graph_free(g);
            goto done;
        }
    }
    if (svg) {
        fflush(stdout);
        out = popen("dot -Tsvg", "w"); /* dot writes the SVG to our stdout */
        if (!out) {
            fprintf(stderr, "loom dump: cannot start Graphviz's dot\n");
            goto done;
        }
    }
    loom_plan_opts po = {.dump = out, .dump_after = after, .dump_format = fmt,
                         .dump_layers = want_layers ? layers : NULL};
    if (be) loom_backend_plan_opts(be, &po);
    loom_plan *p = loom_plan_build(g, &po);
    if (svg) {
        int st = pclose(out);
        if (p && (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)) {
            fprintf(stderr, "loom dump: Graphviz's dot failed (status %d) drawing the graph\n", st);
            loom_plan_free(p);
            goto done;
        }
    }
    if (!p) {
        fprintf(stderr, "loom dump: %s\n", loom_last_error());
        goto done;
    }
    if (fmt == LOOM_DUMP_TEXT) {
        char folds[128] = "";
        if (p->pass) snprintf(folds, sizeof folds, " (%d nodes folded by %s)", p->n_folded, p->pass);
        printf("summary: %d nodes declared, %d after passes (%d executed), %d fused groups%s, arena %zu bytes vs "
               "naive %zu (%.1f%%)\n",
               p->n_nodes_declared, p->n_nodes_live, p->n_order, p->n_groups, folds, p->arena_size, p->naive_size,
               p->naive_size ? 100.0 * (double)p->arena_size / (double)p->naive_size : 0.0);
    }
    loom_plan_free(p);
    rc = 0;
done:
    loom_backend_close(be);
    loom_model_free(m);
    return rc;
}
