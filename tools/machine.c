/* Machine description and the cached bandwidth measurement (see machine.h). */
#include "tools/machine.h"

#include "loom.h"
#include "graph/plan.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The flags the CPU backend's kernel choice depends on (backends/cpu/cpu_backend.c). */
static const char *const simd_flags[] = {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq",
                                         "avx512vl", "avx512_bf16", "avx512_vnni", NULL};

static bool has_word(const char *list, const char *w) {
    size_t n = strlen(w);
    for (const char *p = list; (p = strstr(p, w)); p += n)
        if ((p == list || p[-1] == ' ' || p[-1] == '\t') && (p[n] == ' ' || p[n] == '\n' || p[n] == 0)) return true;
    return false;
}

void loom_machine_read(loom_machine *mc) {
    memset(mc, 0, sizeof *mc);
    snprintf(mc->cpu_model, sizeof mc->cpu_model, "unknown");
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    mc->n_cpus = n > 0 ? (int)n : 1;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[8192];
        bool model = false, flags = false;
        while ((!model || !flags) && fgets(line, sizeof line, f)) {
            char *colon = strchr(line, ':');
            if (!colon) continue;
            const char *val = colon + 1 + (colon[1] == ' ');
            if (!model && !strncmp(line, "model name", 10)) {
                snprintf(mc->cpu_model, sizeof mc->cpu_model, "%s", val);
                mc->cpu_model[strcspn(mc->cpu_model, "\n")] = 0;
                model = true;
            } else if (!flags && !strncmp(line, "flags", 5)) {
                size_t o = 0;
                for (int i = 0; simd_flags[i]; i++)
                    if (has_word(val, simd_flags[i]) && o < sizeof mc->simd)
                        o += (size_t)snprintf(mc->simd + o, sizeof mc->simd - o, "%s%s", o ? " " : "", simd_flags[i]);
                flags = true;
            }
        }
        fclose(f);
    }
    f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        unsigned long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemTotal: %llu kB", &kb) == 1) {
                mc->mem_bytes = (uint64_t)kb * 1024;
                break;
            }
        fclose(f);
    }
}

/* ---- bandwidth -------------------------------------------------------------------------------- */
#define BW_ROWS 8192
#define BW_COLS 8192 /* 256 MiB of f32 per tensor: past the last-level cache of most machines */
#define BW_CHAIN 8   /* scales per run: amortises a GPU's submission cost */
#define BW_RUNS 4

/* The probe's plan for tensors of `rows` x BW_COLS, or NULL (no error) when the backend cannot run
 * it at that size (a GPU's storage bindings can be smaller than 256 MiB). */
static loom_plan *probe_plan(loom_backend *be, int64_t rows, bool *unsupported) {
    *unsupported = false;
    loom_graph *g = loom_graph_new();
    if (!g) return NULL;
    int x = loom_input(g, "x", LOOM_F32, 2, (int64_t[]){rows, BW_COLS});
    for (int k = 0; k < BW_CHAIN; k++) x = loom_scale(g, x, 1.0f);
    if (loom_output(g, x, "y") < 0) {
        loom_graph_free(g);
        return NULL;
    }
    loom_plan_opts po = {.no_inplace = true}; /* read one buffer, write another */
    loom_backend_plan_opts(be, &po);
    loom_plan *p = loom_plan_build(g, &po);
    if (p && loom_plan_check(be, p, NULL) < 0) { /* not an error: the caller tries smaller tensors */
        loom_err_clear();
        loom_plan_free(p);
        *unsupported = true;
        return NULL;
    }
    return p;
}

static double measure_bw(loom_backend *be) {
    loom_plan *p = NULL;
    int64_t rows = BW_ROWS;
    for (bool unsup = true; unsup && rows >= BW_ROWS / 16; rows /= 2) {
        p = probe_plan(be, rows, &unsup);
        if (!p && !unsup) return -1;
        if (p) break;
    }
    if (!p) {
        loom_err("%s cannot run the bandwidth probe's scale op on 16 MiB tensors", be->ops->name);
        return -1;
    }
    double best = 0;
    loom_runner run = {.be = be};
    loom_exec_ctx xc;
    if (loom_runner_bind(&run, p, NULL, &xc) < 0 || be->ops->buf_zero(be, run.arena, 0, p->arena_size) < 0) goto done;
    int runs = BW_RUNS;
    for (int r = 0; r <= runs; r++) { /* run 0 warms up (page faults, pipelines) */
        double t0 = loom_now();
        if (loom_execute(be, &xc) < 0) { /* loom_execute waits for the device */
            best = 0;
            break;
        }
        double dt = loom_now() - t0;
        if (r == 0 && dt > 0.5) runs = 1; /* a slow device (a software GPU): one timed run will do */
        if (r > 0 && (best == 0 || dt < best)) best = dt;
    }
done:
    loom_runner_release(&run, p);
    loom_runner_free(&run);
    double bytes = 2.0 * BW_CHAIN * (double)p->g->nodes[p->order[0]].ne[0] * BW_COLS * sizeof(float);
    loom_plan_free(p);
    if (best <= 0) return -1;
    return bytes / best / 1e9;
}

const char *loom_machine_cache_path(void) {
    static char path[1024];
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg) snprintf(path, sizeof path, "%s/loom/bandwidth.tsv", xdg);
    else if (home && *home) snprintf(path, sizeof path, "%s/.cache/loom/bandwidth.tsv", home);
    else path[0] = 0;
    return path;
}

/* Keys are one line each: tabs and newlines would break the file's format. */
static void clean_key(const char *key, char *out, size_t n) {
    snprintf(out, n, "%s", key);
    for (char *p = out; *p; p++)
        if (*p == '\t' || *p == '\n' || *p == '\r') *p = ' ';
}

static double cache_lookup(const char *path, const char *key) {
    FILE *f = *path ? fopen(path, "r") : NULL;
    if (!f) return 0;
    char line[1024];
    double v = 0;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, key, kl) && line[kl] == '\t') {
            double x = strtod(line + kl + 1, NULL);
            if (x > 0) v = x; /* the last entry wins */
        }
    }
    fclose(f);
    return v;
}

static void cache_store(const char *path, const char *key, double gbs) {
    if (!*path) return;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    /* create the missing folders (…/.cache, …/loom); failures just mean no cache */
    for (char *s = dir + 1; (s = strchr(s, '/')); s++) {
        *s = 0;
        if (mkdir(dir, 0755) < 0 && errno != EEXIST) return;
        *s = '/';
    }
    FILE *f = fopen(path, "a");
    if (!f) return;
    fprintf(f, "%s\t%.3f\n", key, gbs);
    fclose(f);
}

double loom_machine_peak_bw(loom_backend *be, const char *key, bool refresh, bool *cached) {
    char k[512];
    clean_key(key, k, sizeof k);
    const char *path = loom_machine_cache_path();
    double v = refresh ? 0 : cache_lookup(path, k);
    if (cached) *cached = v > 0;
    if (v > 0) return v;
    v = measure_bw(be);
    if (v > 0) cache_store(path, k, v);
    return v;
}
