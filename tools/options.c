/* Options as data: parsing, messages and --help from one table per command (tools/options.h). */
#include "tools/options.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the options every model command takes; their variables live in loom_common_opts */
static long c_threads, c_ctx;
static const char *c_model, *c_device;
static bool c_scalar, c_check;
static const loom_opt common_opts[] = {
    LOOM_OPT_HEADING("model and device:"),
    {.names = "-m|--model",
     .type = LOOM_OPT_STR,
     .arg = "MODEL",
     .help = "HF directory or .gguf (default: the bundled stories260K)",
     .dst = &c_model,
     .no_default = true},
    {.names = "--device", .type = LOOM_OPT_STR, .arg = "D", .help = "cpu | vulkan | vulkan:N | auto", .dst = &c_device},
    {.names = "-t|--threads",
     .type = LOOM_OPT_INT,
     .arg = "N",
     .help = "CPU threads (default: all cores)",
     .lo = 1,
     .hi = 1024,
     .dst = &c_threads,
     .no_default = true},
    {.names = "-c|--ctx",
     .type = LOOM_OPT_INT,
     .arg = "N",
     .help = "KV cache length in tokens (default: the training context, at most 4096)",
     .lo = 1,
     .hi = INT_MAX,
     .dst = &c_ctx,
     .no_default = true},
    {.names = "--check-tensors",
     .type = LOOM_OPT_FLAG,
     .help = "scan every weight for NaN/Inf at load (also LOOM_CHECK_TENSORS=1)",
     .dst = &c_check},
    {.names = "--scalar",
     .type = LOOM_OPT_FLAG,
     .help = "portable scalar kernels only (also LOOM_SCALAR=1)",
     .dst = &c_scalar},
    LOOM_OPT_END,
};

static bool name_is(const char *names, const char *a) {
    size_t n = strlen(a);
    for (const char *p = names; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, a, n)) return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

static bool is_end(const loom_opt *t) {
    return !t->names && t->type != LOOM_OPT_SECTION && t->type != LOOM_OPT_INCLUDE && t->type != LOOM_OPT_ARGS;
}

/* The table's positional-arguments row, or NULL. */
static const loom_opt *find_args(const loom_opt *t) {
    for (; t && !is_end(t); t++) {
        const loom_opt *o = t->type == LOOM_OPT_INCLUDE ? find_args(t->dst) : t->type == LOOM_OPT_ARGS ? t : NULL;
        if (o) return o;
    }
    return NULL;
}

static const loom_opt *find(const loom_opt *t, const char *a) {
    for (; t && !is_end(t); t++) {
        const loom_opt *o = t->type == LOOM_OPT_INCLUDE ? find(t->dst, a)
                            : t->type != LOOM_OPT_ARGS && t->names && name_is(t->names, a) ? t
                                                                                         : NULL;
        if (o) return o;
    }
    return NULL;
}

static void print_value(FILE *f, const loom_opt *o) {
    switch (o->type) {
    case LOOM_OPT_INT: fprintf(f, "%ld", *(long *)o->dst); break;
    case LOOM_OPT_NUM: fprintf(f, "%g", *(double *)o->dst); break;
    case LOOM_OPT_STR:
    case LOOM_OPT_CHOICE: fprintf(f, "%s", *(const char **)o->dst); break;
    default: break;
    }
}

static void usage_table(FILE *f, const loom_opt *t) {
    for (; !is_end(t); t++) {
        if (t->type == LOOM_OPT_INCLUDE) {
            usage_table(f, t->dst);
            continue;
        }
        if (t->type == LOOM_OPT_SECTION) {
            fprintf(f, "%s\n", t->help);
            continue;
        }
        char head[64];
        int n = snprintf(head, sizeof head, "  ");
        for (const char *p = t->names ? t->names : ""; *p && n < (int)sizeof head - 1; p++) {
            if (*p == '|') n += snprintf(head + n, sizeof head - (size_t)n, ", ");
            else head[n++] = *p, head[n] = 0;
        }
        if (t->arg) snprintf(head + n, sizeof head - (size_t)n, t->type == LOOM_OPT_ARGS ? "%s" : " %s", t->arg);
        fprintf(f, "%-24s", head);
        if (strlen(head) >= 24) fprintf(f, "\n%-24s", "");
        for (const char *p = t->help; *p; p++) {
            fputc(*p, f);
            if (*p == '\n') fprintf(f, "%-24s", "");
        }
        if (t->type == LOOM_OPT_CHOICE) {
            fprintf(f, " (");
            for (const char *p = t->choices; *p; p++) fputs(*p == '|' ? ", " : (char[2]){*p, 0}, f);
            fprintf(f, ")");
        }
        bool show = !t->no_default && !strstr(t->help, "(default") &&
                    (t->type == LOOM_OPT_INT || t->type == LOOM_OPT_NUM ||
                     ((t->type == LOOM_OPT_STR || t->type == LOOM_OPT_CHOICE) && *(const char **)t->dst));
        if (show) {
            fprintf(f, " (default ");
            print_value(f, t);
            fprintf(f, ")");
        }
        if (t->type == LOOM_OPT_LIST) fprintf(f, " (repeatable, up to %.0f)", t->hi);
        fputc('\n', f);
    }
}

void loom_opts_usage(FILE *f, const char *cmd, const char *synopsis, const char *about, const loom_opt *opts, bool common) {
    fprintf(f, "usage: loom %s%s%s\n", cmd, *synopsis ? " " : "", synopsis);
    if (about && *about) fprintf(f, "%s\n", about);
    usage_table(f, opts);
    if (common) usage_table(f, common_opts);
}

/* Set o's variable from value; on a bad value print the message and return -1. */
static int set(const char *cmd, const loom_opt *o, const char *a, const char *v) {
    char *end;
    errno = 0;
    switch (o->type) {
    case LOOM_OPT_FLAG: *(bool *)o->dst = true; return 0;
    case LOOM_OPT_STR: *(const char **)o->dst = v; return 0;
    case LOOM_OPT_CHOICE:
        if (!name_is(o->choices, v)) {
            fprintf(stderr, "loom %s: %s expects one of ", cmd, a);
            for (const char *p = o->choices; *p; p++) fputs(*p == '|' ? ", " : (char[2]){*p, 0}, stderr);
            fprintf(stderr, "; got '%s'\n", v);
            return -1;
        }
        *(const char **)o->dst = v;
        return 0;
    case LOOM_OPT_LIST:
        if (*o->count >= (int)o->hi) {
            fprintf(stderr, "loom %s: %s given more than %.0f times\n", cmd, a, o->hi);
            return -1;
        }
        ((const char **)o->dst)[(*o->count)++] = v;
        return 0;
    case LOOM_OPT_INT: {
        long x = strtol(v, &end, 10);
        if (!*v || *end || errno || x < o->lo || x > o->hi) {
            fprintf(stderr, "loom %s: %s expects a whole number in [%.0f, %.0f], got '%s'\n", cmd, a, o->lo, o->hi, v);
            return -1;
        }
        *(long *)o->dst = x;
        return 0;
    }
    case LOOM_OPT_NUM: {
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x) || x < o->lo || x > o->hi) {
            fprintf(stderr, "loom %s: %s expects a number in [%g, %g], got '%s'\n", cmd, a, o->lo, o->hi, v);
            return -1;
        }
        *(double *)o->dst = x;
        return 0;
    }
    default: return -1;
    }
}

static void list_names(const loom_opt *t) {
    static const char *const type_name[] = {"flag", "int", "num", "str", "list", "choice", "args", "section", "include"};
    for (; !is_end(t); t++) {
        if (t->type == LOOM_OPT_INCLUDE) list_names(t->dst);
        else if (t->type == LOOM_OPT_ARGS) printf("%s\targs\n", t->arg);
        else if (t->names)
            for (const char *p = t->names; p;) {
                const char *bar = strchr(p, '|');
                printf("%.*s\t%s\n", bar ? (int)(bar - p) : (int)strlen(p), p, type_name[t->type]);
                p = bar ? bar + 1 : NULL;
            }
    }
}

int loom_opts_parse(const char *cmd, const char *synopsis, const char *about, const loom_opt *opts, loom_common_opts *co,
                    int argc, char **argv) {
    if (co) {
        c_model = co->model;
        c_device = co->device;
        c_threads = co->n_threads;
        c_ctx = co->n_ctx;
        c_scalar = co->scalar;
        c_check = co->check_tensors;
    }
    const char *list = getenv("LOOM_OPTS_LIST");
    if (list && !strcmp(list, "1")) {
        list_names(opts);
        if (co) list_names(common_opts);
        return 0;
    }
    const loom_opt *args = find_args(opts);
    if (args) *args->count = 0;
    bool only_args = false; /* after "--" */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_args && !strcmp(a, "--")) {
            only_args = true;
            continue;
        }
        if (only_args || a[0] != '-' || !a[1]) { /* a positional argument ("-" is one: standard input) */
            if (!args) {
                fprintf(stderr, "loom %s: unexpected argument '%s' (loom %s --help lists the options)\n", cmd, a, cmd);
                return 2;
            }
            if (*args->count >= (int)args->hi) {
                fprintf(stderr, "loom %s: too many arguments ('%s'; expected %s)\n", cmd, a, args->arg);
                return 2;
            }
            ((const char **)args->dst)[(*args->count)++] = a;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            loom_opts_usage(stdout, cmd, synopsis, about, opts, co != NULL);
            return 0;
        }
        const loom_opt *o = find(opts, a);
        if (!o && co) o = find(common_opts, a);
        if (!o) {
            fprintf(stderr, "loom %s: unknown option '%s' (loom %s --help lists them)\n", cmd, a, cmd);
            return 2;
        }
        const char *v = NULL;
        if (o->type != LOOM_OPT_FLAG) {
            if (i + 1 >= argc) {
                fprintf(stderr, "loom %s: %s needs a value (%s)\n", cmd, a, o->arg ? o->arg : "");
                return 2;
            }
            v = argv[++i];
        }
        if (set(cmd, o, a, v) < 0) return 2;
    }
    if (args && *args->count < (int)args->lo) {
        fprintf(stderr, "loom %s: expected %s (loom %s --help)\n", cmd, args->arg, cmd);
        return 2;
    }
    if (co) {
        co->model = c_model;
        co->device = c_device;
        co->n_threads = (int)c_threads;
        co->n_ctx = (int)c_ctx;
        co->scalar = c_scalar;
        co->check_tensors = c_check;
        if (c_scalar) setenv("LOOM_SCALAR", "1", 1);        /* read by the CPU backend */
        if (c_check) setenv("LOOM_CHECK_TENSORS", "1", 1); /* read by loom_model_load */
    }
    return -1;
}

void loom_sampling_rows(loom_opt *t, loom_sampling_args *a) {
    const loom_opt rows[LOOM_SAMPLING_ROWS] = {
        LOOM_OPT_HEADING("sampling (include/loom.h has the order and formulas):"),
        {.names = "--temp", .type = LOOM_OPT_NUM, .arg = "T", .help = "temperature (0 = greedy)", .lo = 0, .hi = 100,
         .dst = &a->temp},
        {.names = "--top-k", .type = LOOM_OPT_INT, .arg = "K", .help = "keep the K most likely tokens (0 = off)", .lo = 0,
         .hi = 1 << 30, .dst = &a->top_k},
        {.names = "--top-p", .type = LOOM_OPT_NUM, .arg = "P", .help = "nucleus sampling threshold (1 = off)", .lo = 0, .hi = 1,
         .dst = &a->top_p},
        {.names = "--min-p", .type = LOOM_OPT_NUM, .arg = "P",
         .help = "drop tokens below P x the most likely one's probability (0 = off)", .lo = 0, .hi = 1, .dst = &a->min_p},
        {.names = "--repeat-penalty", .type = LOOM_OPT_NUM, .arg = "R",
         .help = "divide a recent token's positive logit by R, multiply a negative one\n(1 = off)", .lo = 0.01, .hi = 100,
         .dst = &a->rep},
        {.names = "--frequency-penalty", .type = LOOM_OPT_NUM, .arg = "F",
         .help = "subtract F x (times a token occurs in the window) from its logit", .lo = -100, .hi = 100,
         .dst = &a->freq},
        {.names = "--presence-penalty", .type = LOOM_OPT_NUM, .arg = "P",
         .help = "subtract P from the logit of every token in the window", .lo = -100, .hi = 100, .dst = &a->pres},
        {.names = "--repeat-last-n", .type = LOOM_OPT_INT, .arg = "N",
         .help = "the penalties' window: the last N tokens, prompt included (-1 = all)", .lo = -1, .hi = 1 << 24,
         .dst = &a->last_n},
        {.names = "--seed", .type = LOOM_OPT_INT, .arg = "S", .help = "sampling seed", .lo = 0, .hi = 0x7fffffffL,
         .dst = &a->seed},
        LOOM_OPT_END,
    };
    memcpy(t, rows, sizeof rows);
}

loom_sampler_opts loom_sampling_opts(const loom_sampling_args *a) {
    loom_sampler_opts o = {.temperature = (float)a->temp, .top_k = (int)a->top_k, .top_p = (float)a->top_p,
                           .seed = (uint64_t)a->seed, .min_p = (float)a->min_p, .repeat_penalty = (float)a->rep,
                           .frequency_penalty = (float)a->freq, .presence_penalty = (float)a->pres,
                           .penalty_last_n = (int)a->last_n};
    if (a->last_n == 0) { /* an empty window: no penalty */
        o.repeat_penalty = 1;
        o.frequency_penalty = o.presence_penalty = 0;
        o.penalty_last_n = 1;
    }
    return o;
}
