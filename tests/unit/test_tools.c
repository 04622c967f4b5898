/* Tests of the tools' machine-readable outputs, read back with cJSON:
 *   loom profile --trace: Chrome trace-event schema, and per-node times summing to within 10% of the
 *                         measured step time (CPU, on a synthesized model big enough that compute
 *                         dominates the per-step host work);
 *   loom profile:         the bandwidth cache (measured, then cached; an unwritable cache re-measures);
 *   loom dump --format json: the schema of docs/graph-dump.md and node counts per pass for qwen2-tiny,
 *                         and --layers keeping only one layer's nodes.
 * Needs LOOM_BIN (the loom command) and LOOM_FIXTURES. */
#include "tests/unit/check.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *bin, *fixtures;
static char tmp[64] = "/tmp/loom-test-tools-XXXXXX";

/* Run a shell command; return its stdout (malloc'd) and exit status. */
static char *run(const char *cmd, int *status) {
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t n = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n - 1, p)) > 0;) {
        n += got;
        if (cap - n < 4096) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) break;
            buf = nb;
        }
    }
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    if (buf) buf[n] = 0;
    return buf;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = 0;
    fclose(f);
    return buf;
}

static bool is_str(const cJSON *o, const char *k) { return cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, k)); }
static bool is_num(const cJSON *o, const char *k) { return cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, k)); }
static bool is_bool(const cJSON *o, const char *k) { return cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(o, k)); }
static double num(const cJSON *o, const char *k) { return cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, k)); }
static const char *str(const cJSON *o, const char *k) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
    return s ? s : "";
}

/* ---- profile: trace schema and accounting -------------------------------------------------------
 * No timing assertion (speed lives in `loom bench`; a busy machine must not fail a test): the trace
 * is checked for what holds at any speed. With -t 1 the nodes run one after another, so each node
 * lies inside its step, starts after the previous node ended, and the nodes of a step sum to at most
 * the step (a node timed twice, or a step timed short, breaks that); every decode step runs the same
 * nodes. */
static void test_trace(void) {
    char trace[128], cmd[1024];
    snprintf(trace, sizeof trace, "%s/trace.json", tmp);
    snprintf(cmd, sizeof cmd, "'%s' profile -m %s/qwen2-tiny -p 16 -n 16 -t 1 --device cpu --no-peak --top 3 --trace %s",
             bin, fixtures, trace);
    int st;
    char *out = run(cmd, &st);
    CHECK(st == 0 && out && strstr(out, "== prefill") && strstr(out, "== decode") && strstr(out, "top 3 nodes"),
          "loom profile failed (%d):\n%s", st, out ? out : "");
    free(out);
    char *text = slurp(trace);
    CHECK(text != NULL, "no trace written at %s", trace);
    cJSON *doc = text ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK(doc != NULL, "trace is not JSON");
    if (!doc) return;
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(doc, "traceEvents");
    CHECK(cJSON_IsArray(ev), "traceEvents is not an array");
    enum { MAX_STEPS = 64 };
    double step_dur[2][MAX_STEPS], node_sum[2][MAX_STEPS];
    int n_nodes[2][MAX_STEPS];
    int n_x = 0, n_steps[2] = {0, 0}, bad = 0, overlap = 0, cur = -1;
    double step_ts = 0, step_end = 0, prev_end = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, ev) {
        if (!cJSON_IsObject(e) || !is_str(e, "name") || !is_str(e, "ph") || !is_num(e, "pid") || !is_num(e, "tid")) {
            bad++;
            continue;
        }
        if (strcmp(str(e, "ph"), "X")) {
            if (strcmp(str(e, "ph"), "M")) bad++; /* only complete events and metadata */
            continue;
        }
        n_x++;
        if (!is_str(e, "cat") || !is_num(e, "ts") || !is_num(e, "dur") || num(e, "dur") < 0 || num(e, "ts") < 0) {
            bad++;
            continue;
        }
        double ts = num(e, "ts"), dur = num(e, "dur");
        if (!strcmp(str(e, "cat"), "step")) {
            cur = !strcmp(str(e, "name"), "prefill") ? 0 : !strcmp(str(e, "name"), "decode") ? 1 : -1;
            if (cur < 0 || n_steps[cur] == MAX_STEPS) {
                bad++;
                cur = -1;
            } else {
                step_dur[cur][n_steps[cur]] = dur;
                node_sum[cur][n_steps[cur]] = 0;
                n_nodes[cur][n_steps[cur]++] = 0;
            }
            step_ts = prev_end = ts;
            step_end = ts + dur;
        } else if (cur >= 0) {
            node_sum[cur][n_steps[cur] - 1] += dur;
            n_nodes[cur][n_steps[cur] - 1]++;
            /* nodes lie inside their step and follow each other (to the rounding of the printed us) */
            if (ts < step_ts - 0.01 || ts + dur > step_end + 0.01) bad++;
            if (ts < prev_end - 0.01) overlap++;
            prev_end = ts + dur;
            const cJSON *args = cJSON_GetObjectItemCaseSensitive(e, "args");
            if (!is_num(args, "node") || !is_num(args, "bytes") || !is_num(args, "flops")) bad++;
        } else {
            bad++; /* a node before any step */
        }
    }
    cJSON_Delete(doc);
    CHECK(bad == 0, "%d trace events break the schema or lie outside their step", bad);
    CHECK(overlap == 0, "%d node events start before the previous one ended (-t 1 runs them in order)", overlap);
    CHECK(n_steps[0] == 1 && n_steps[1] == 16, "expected 1 prefill and 16 decode steps, got %d and %d", n_steps[0],
          n_steps[1]);
    CHECK(n_x > 17 * 20, "only %d complete events", n_x);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < n_steps[k]; i++) {
            CHECK(node_sum[k][i] <= step_dur[k][i] + 0.01 * n_nodes[k][i],
                  "%s step %d: its nodes sum to %.2f us, more than the step's %.2f us", k ? "decode" : "prefill", i,
                  node_sum[k][i], step_dur[k][i]);
            CHECK(n_nodes[k][i] > 20 && n_nodes[k][i] == n_nodes[k][0], "%s step %d has %d node events (step 0: %d)",
                  k ? "decode" : "prefill", i, n_nodes[k][i], n_nodes[k][0]);
        }
}

/* ---- profile: the bandwidth cache -------------------------------------------------------------- */
static void test_bandwidth_cache(void) {
    char cmd[1024];
    int st;
    const char *base = "'%s' profile -m %s/qwen2-tiny -p 4 -n 1 -t 1 --device cpu --top 1";
    char prof[512];
    snprintf(prof, sizeof prof, base, bin, fixtures);
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "XDG_CACHE_HOME=%s/cache %s", tmp, prof);
        char *out = run(cmd, &st);
        const char *want = k == 0 ? "GB/s (measured now" : "GB/s (cached in";
        CHECK(st == 0 && out && strstr(out, want), "run %d: expected '%s':\n%s", k, want, out ? out : "");
        free(out);
    }
    snprintf(cmd, sizeof cmd, "%s/cache/loom/bandwidth.tsv", tmp);
    char *cache = slurp(cmd);
    CHECK(cache && strchr(cache, '\t') && strstr(cache, "cpu"), "cache file %s: '%s'", cmd, cache ? cache : "(none)");
    free(cache);
    /* a cache that cannot be written (a folder under a regular file): measure, never fail */
    snprintf(cmd, sizeof cmd, "XDG_CACHE_HOME=/dev/null/cache %s", prof);
    char *out = run(cmd, &st);
    CHECK(st == 0 && out && strstr(out, "GB/s (measured now"), "unwritable cache:\n%s", out ? out : "");
    free(out);
}

/* ---- dump JSON ---------------------------------------------------------------------------------- */
static const char *const node_strs[] = {"op", "name", "dtype", "storage", "params", NULL};
static const char *const node_nums[] = {"id", "replaced_by", "group", "offset", "bytes", "alias", "layer", NULL};
static const char *const node_bools[] = {"live", "output", "inplace", NULL};
static const char *const summary_nums[] = {"nodes", "live", "fused_groups", "arena_bytes", "naive_bytes",
                                           "weight_bytes", NULL};

/* Check one "loom-graph/1" document; returns the number of live nodes listed (-1 when broken). */
static int check_graph_doc(const cJSON *d, const char *what) {
    int bad = 0, live = 0;
    bad += strcmp(str(d, "schema"), "loom-graph/1") != 0;
    bad += !is_str(d, "title") || !is_str(d, "log");
    const cJSON *sum = cJSON_GetObjectItemCaseSensitive(d, "summary");
    for (int k = 0; summary_nums[k]; k++) bad += !is_num(sum, summary_nums[k]);
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(d, "nodes"), *n;
    bad += !cJSON_IsArray(nodes);
    int prev = -1;
    cJSON_ArrayForEach(n, nodes) {
        for (int k = 0; node_strs[k]; k++) bad += !is_str(n, node_strs[k]);
        for (int k = 0; node_nums[k]; k++) bad += !is_num(n, node_nums[k]);
        for (int k = 0; node_bools[k]; k++) bad += !is_bool(n, node_bools[k]);
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(n, "shape"), *src = cJSON_GetObjectItemCaseSensitive(n, "src"), *x;
        bad += !cJSON_IsArray(shape) || !cJSON_IsArray(src) || cJSON_GetArraySize(shape) < 1;
        int id = (int)num(n, "id");
        bad += id <= prev; /* ascending ids */
        prev = id;
        cJSON_ArrayForEach(x, src) bad += !cJSON_IsNumber(x) || x->valueint < 0 || x->valueint >= id; /* topological */
        live += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(n, "live"));
        /* an attention node lists its heads and scale (graph.h params) */
        if (!strcmp(str(n, "op"), "attention")) bad += !strstr(str(n, "params"), "heads=") || !strstr(str(n, "params"), "scale=");
    }
    CHECK(bad == 0, "%s: %d schema violations", what, bad);
    return bad ? -1 : live;
}

static void test_dump_json(void) {
    char cmd[1024];
    int st;
    snprintf(cmd, sizeof cmd, "'%s' dump -m %s/qwen2-tiny --seq 5 --after all --format json", bin, fixtures);
    char *out = run(cmd, &st);
    CHECK(st == 0 && out, "loom dump failed (%d)", st);
    if (!out) return;
    /* one document per pass, one per line; counts for qwen2-tiny with a 5-token prompt: cse merges
     * the tied embedding, fusion folds 5 norms, 6 biases and 2 SwiGLUs */
    static const char *const titles[] = {"declared", "dce", "cse", "fuse", "memory"};
    static const int live_want[] = {84, 84, 83, 70, 70}, groups_want[] = {0, 0, 0, 13, 13};
    int k = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"), k++) {
        cJSON *d = cJSON_Parse(line);
        CHECK(d != NULL, "dump line %d is not JSON", k);
        if (!d || k >= 5) {
            cJSON_Delete(d);
            continue;
        }
        int live = check_graph_doc(d, titles[k]);
        const cJSON *sum = cJSON_GetObjectItemCaseSensitive(d, "summary");
        CHECK(!strcmp(str(d, "title"), titles[k]), "document %d is '%s', expected '%s'", k, str(d, "title"), titles[k]);
        CHECK(num(sum, "nodes") == 84, "%s: %g nodes declared, expected 84", titles[k], num(sum, "nodes"));
        CHECK(num(sum, "live") == live_want[k] && live == live_want[k], "%s: %g live (%d listed), expected %d",
              titles[k], num(sum, "live"), live, live_want[k]);
        CHECK(num(sum, "fused_groups") == groups_want[k], "%s: %g fused groups, expected %d", titles[k],
              num(sum, "fused_groups"), groups_want[k]);
        CHECK(k < 4 || (num(sum, "arena_bytes") > 0 && num(sum, "arena_bytes") < num(sum, "naive_bytes")),
              "memory: arena %g bytes vs naive %g", num(sum, "arena_bytes"), num(sum, "naive_bytes"));
        cJSON_Delete(d);
    }
    CHECK(k == 5, "expected 5 documents (one per pass), got %d", k);
    free(out);

    /* --layers 1: only layer 1's nodes, plus the inputs and global weights they read */
    snprintf(cmd, sizeof cmd, "'%s' dump -m %s/qwen3-tiny --seq 5 --layers 1 --format json", bin, fixtures);
    out = run(cmd, &st);
    cJSON *d = out ? cJSON_Parse(out) : NULL;
    free(out);
    CHECK(st == 0 && d, "loom dump --layers 1 failed (%d)", st);
    if (!d) return;
    check_graph_doc(d, "layers 1");
    const cJSON *lay = cJSON_GetObjectItemCaseSensitive(d, "layers"), *col = cJSON_GetObjectItemCaseSensitive(d, "collapsed");
    CHECK(cJSON_GetArraySize(lay) == 2 && cJSON_GetArrayItem(lay, 0)->valueint == 1 &&
              cJSON_GetArrayItem(lay, 1)->valueint == 1, "layers is not [1,1]");
    CHECK(is_num(col, "before") && is_num(col, "after") && num(col, "before") > 10 && num(col, "after") > 0,
          "collapsed counts missing or implausible");
    const cJSON *n;
    int in_layer = 0, bad = 0, q_norm = 0;
    cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(d, "nodes")) {
        int l = (int)num(n, "layer");
        const char *op = str(n, "op"), *name = str(n, "name");
        if (l == 1) in_layer++;
        else if (!(l == -1 && (!strcmp(op, "input") || !strcmp(op, "weight")))) bad++;
        if (!strncmp(name, "blk.", 4) && strncmp(name, "blk.1.", 6)) bad++;
        q_norm += !strcmp(name, "blk.1.attn_q_norm.weight");
    }
    CHECK(bad == 0 && in_layer > 20 && q_norm == 1, "--layers 1: %d nodes of layer 1, %d foreign, q_norm %d",
          in_layer, bad, q_norm);
    cJSON_Delete(d);
}

int main(void) {
    bin = getenv("LOOM_BIN");
    fixtures = getenv("LOOM_FIXTURES");
    if (!bin || !fixtures) {
        fprintf(stderr, "test_tools: set LOOM_BIN and LOOM_FIXTURES\n");
        return 1;
    }
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_dump_json();
    test_trace();
    test_bandwidth_cache();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    CHECK_DONE();
}
