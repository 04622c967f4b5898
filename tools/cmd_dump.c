/* loom dump: print a model's graph as declared and after the planner passes. */
#include "commands.h"

#include "model.h"
#include "plan.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: loom dump [-m MODEL] [--phase prefill|decode] [--seq N] [--after PASS|all]\n"
               "                 [--format text|dot|json] [--ctx N]\n"
               "  PASS: declared, dce, cse, fuse, memory (default: memory, the final plan)\n"
               "  --seq N: prompt length for the prefill graph (default 16)\n");
}

int cmd_dump(int argc, char **argv) {
    loom_common_opts co;
    loom_common_defaults(&co);
    const char *phase = "prefill", *after = "memory", *format = "text";
    long seq = 16;
    for (int i = 1; i < argc; i++) {
        int r = loom_parse_common(&co, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--phase") && val) {
            phase = argv[++i];
        } else if (!strcmp(a, "--seq") && val) {
            if (loom_parse_int(a, argv[++i], 1, 1 << 20, &seq) < 0) return 2;
        } else if (!strcmp(a, "--after") && val) {
            after = argv[++i];
        } else if (!strcmp(a, "--format") && val) {
            format = argv[++i];
        } else {
            fprintf(stderr, "loom dump: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    static const char *const passes[] = {"declared", "dce", "cse", "fuse", "memory", "all"};
    bool known = false;
    for (size_t k = 0; k < sizeof passes / sizeof passes[0]; k++) known |= !strcmp(after, passes[k]);
    loom_dump_format fmt = !strcmp(format, "json") ? LOOM_DUMP_JSON : !strcmp(format, "dot") ? LOOM_DUMP_DOT : LOOM_DUMP_TEXT;
    if (!known || (strcmp(format, "json") && strcmp(format, "dot") && strcmp(format, "text")) ||
        (strcmp(phase, "prefill") && strcmp(phase, "decode"))) {
        usage(stderr);
        return 2;
    }
    const char *path = co.model ? co.model : loom_default_model();
    loom_model *m = loom_model_load(path);
    if (!m) {
        fprintf(stderr, "loom dump: %s\n", loom_last_error());
        return 1;
    }
    loom_graph *g = loom_graph_new();
    loom_build_opts bo = {.n_tokens = !strcmp(phase, "decode") ? 1 : (int)seq,
                          .n_ctx = co.n_ctx > 0 ? co.n_ctx : (m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096)};
    int rc = 1;
    if (!g || m->arch->build(g, m, &bo) < 0) {
        fprintf(stderr, "loom dump: %s\n", loom_last_error());
        loom_graph_free(g);
        goto done;
    }
    loom_plan_opts po = {.dump = stdout, .dump_after = after, .dump_format = fmt};
    loom_plan *p = loom_plan_build(g, &po);
    if (!p) {
        fprintf(stderr, "loom dump: %s\n", loom_last_error());
        goto done;
    }
    if (fmt == LOOM_DUMP_TEXT)
        printf("summary: %d nodes declared, %d after passes (%d executed), %d fused groups, arena %zu bytes vs "
               "naive %zu (%.1f%%)\n",
               p->n_nodes_declared, p->n_nodes_live, p->n_order, p->n_groups, p->arena_size, p->naive_size,
               p->naive_size ? 100.0 * (double)p->arena_size / (double)p->naive_size : 0.0);
    loom_plan_free(p);
    rc = 0;
done:
    loom_model_free(m);
    return rc;
}
