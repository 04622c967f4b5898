/* loom bench: prompt processing (pp) and generation (tg) speed, measured like llama-bench:
 * pp N = one batch of N tokens from an empty cache; tg N = N single-token steps from an empty cache.
 * Each test first runs untimed to warm up: at least once (pipelines, plans, caches) and until
 * --warmup seconds have passed (0.5 by default), because one run was not enough on the H100
 * (samples 7,251 / 16,995 / 16,947 t/s: a GPU that sat idle needs time to reach its clocks);
 * then, unless --warmup is 0, until the figures settle: the last two warm-up runs within --settle
 * percent (5 by default) of each other, for at most WARMUP_SETTLE_S more seconds (a machine
 * whose speed keeps moving is reported as unsettled, not waited for) and 100 runs in all.
 * Then -r timed runs; we report mean and standard deviation of t/s.
 * The JSON keeps llama-bench's field names (cpu_info, gpu_info, backends, model_filename,
 * model_type, model_size, model_n_params, n_threads, n_prompt, n_gen, test_time, avg_ns,
 * stddev_ns, avg_ts, stddev_ts, samples_ns, samples_ts) and adds loom's own (warmup_runs,
 * warmup_samples_ts, warmup_settled, simd, device_memory_bytes, peak_rss_bytes, model, backend,
 * device, n_seq).
 * -b B[,..] runs every test with B sequences at once through the batch API (docs/batching.md):
 * pp N = B prompts of N tokens packed into one graph, tg N = N steps of one token for each of the B
 * sequences (each started by one token); t/s is the aggregate over all sequences.
 * -d D[,..] runs every test after D tokens already in the cache (llama-bench's -d, n_depth): the
 * D tokens are prefilled once per test, untimed, in chunks of 512, and each run starts from them
 * (the cache is cut back to D, loom_session_truncate). Single-sequence tests only. */
#include "tools/commands.h"
#include "tools/options.h"

#include "loom.h"
#include "tools/machine.h"
#include "models/model.h"
#include "models/session_internal.h"
#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define MAX_VALUES 16
#define WARMUP_MAX_RUNS 100
#define WARMUP_SETTLE_S 10.0

static int parse_list(const char *opt, const char *s, int *v, int *n) {
    *n = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        long x;
        if (*n == MAX_VALUES || loom_parse_int(opt, tok, 0, 1 << 20, &x) < 0) return -1;
        v[(*n)++] = (int)x;
    }
    return *n ? 0 : -1;
}

typedef struct {
    int n_prompt, n_gen, n_seq, n_depth;
    double avg, sd;
    double samples[64];
    double avg_ns, sd_ns;
    double samples_ns[64]; /* the test's wall time per repetition */
    int n_samples;
    int warmup_runs;
    double warmup_ts[WARMUP_MAX_RUNS]; /* t/s of each warm-up run */
    bool warmup_settled;
} result;

/* Random tokens from the bench's generator. */
static void fill_tokens(int32_t *tok, int n, int n_vocab, uint64_t r) {
    for (int i = 0; i < n; i++) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        tok[i] = (int32_t)((r >> 33) % (uint64_t)n_vocab);
    }
}

/* Reset the cache and fill it with `depth` tokens (untimed; chunks of 512 bound the arena). */
static int prefill_depth(loom_session *s, int depth, int n_vocab) {
    loom_session_reset(s);
    if (depth == 0) return 0;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)depth);
    if (!tok) return loom_err("out of memory");
    fill_tokens(tok, depth, n_vocab, 7);
    int rc = 0;
    for (int i = 0; rc == 0 && i < depth; i += 512) rc = loom_session_eval(s, tok + i, depth - i < 512 ? depth - i : 512);
    free(tok);
    return rc;
}

/* One run from `depth` cached tokens (prefill_depth has put them there; 0: an empty cache). */
static int run_test(loom_session *s, int depth, int n_prompt, int n_gen, int n_vocab, double *tps, double *ns) {
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(n_prompt > 0 ? n_prompt : 1));
    if (!tok) return loom_err("out of memory");
    fill_tokens(tok, n_prompt > 0 ? n_prompt : 1, n_vocab, 42);
    if (depth > 0 && loom_session_truncate(s, depth) < 0) {
        free(tok);
        return -1;
    }
    if (depth == 0) loom_session_reset(s);
    double t0 = loom_now();
    int rc = 0;
    if (n_prompt > 0) rc = loom_session_eval(s, tok, n_prompt);
    for (int i = 0; rc == 0 && i < n_gen; i++) rc = loom_session_eval(s, &tok[0], 1);
    double dt = loom_now() - t0;
    free(tok);
    if (rc < 0) return -1;
    *tps = (n_prompt + n_gen) / dt;
    *ns = dt * 1e9;
    return 0;
}

/* The same test for B sequences at once (n_seq > 0): aggregate tokens per second. */
static int run_test_batch(loom_session *s, int B, int n_prompt, int n_gen, int n_vocab, double *tps, double *ns) {
    int per = n_prompt > 0 ? n_prompt : 1, n = B * per;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)n), *seq = malloc(sizeof(int32_t) * (size_t)n);
    if (!tok || !seq) {
        free(tok), free(seq);
        return loom_err("out of memory");
    }
    loom_session_reset(s);
    uint64_t r = 42;
    int rc = 0;
    for (int b = 0; b < B && rc == 0; b++) {
        int id = loom_seq_new(s);
        if (id < 0) rc = -1;
        for (int i = 0; i < per; i++) {
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            tok[b * per + i] = (int32_t)((r >> 33) % (uint64_t)n_vocab);
            seq[b * per + i] = id;
        }
    }
    double t0 = loom_now();
    loom_batch bt = {.n = n, .tokens = tok, .seq = seq};
    if (rc == 0 && n_prompt > 0) rc = loom_session_eval_batch(s, &bt); /* the timed prompt batch */
    if (rc == 0 && n_prompt == 0) { /* start each sequence with one token, untimed as in tg */
        rc = loom_session_eval_batch(s, &bt);
        t0 = loom_now();
    }
    bt.n = B;
    for (int b = 0; b < B; b++) seq[b] = seq[b * per];
    for (int i = 0; rc == 0 && i < n_gen; i++) rc = loom_session_eval_batch(s, &bt);
    double dt = loom_now() - t0;
    free(tok);
    free(seq);
    loom_session_reset(s);
    if (rc < 0) return -1;
    *tps = (double)B * (n_prompt + n_gen) / dt;
    *ns = dt * 1e9;
    return 0;
}


int cmd_bench(int argc, char **argv) {
    loom_common_opts co;
    loom_common_defaults(&co);
    int pv[MAX_VALUES] = {512}, nv[MAX_VALUES] = {128}, bv[MAX_VALUES] = {0}, dv[MAX_VALUES] = {0}, np = 1, nn = 1,
        nb = 1, nd = 1;
    long reps = 5;
    double warmup_s = 0.5, settle_pct = 5;
    bool json = false, md = false;
    const char *p_arg = NULL, *n_arg = NULL, *b_arg = NULL, *d_arg = NULL;
    const loom_opt opts[] = {
        {.names = "-p", .type = LOOM_OPT_STR, .arg = "N[,..]", .help = "prompt lengths: a prefill test each (default 512)",
         .dst = &p_arg},
        {.names = "-n", .type = LOOM_OPT_STR, .arg = "N[,..]", .help = "generation lengths: a decode test each (default 128)",
         .dst = &n_arg},
        {.names = "-b",
         .type = LOOM_OPT_STR,
         .arg = "B[,..]",
         .help = "also run each test with B sequences at once (aggregate t/s over the B;\n"
                 "1..256)",
         .dst = &b_arg},
        {.names = "-d",
         .type = LOOM_OPT_STR,
         .arg = "D[,..]",
         .help = "run each test after D tokens already in the cache (prefilled untimed;\n"
                 "llama-bench's -d) (default 0)",
         .dst = &d_arg},
        {.names = "-r", .type = LOOM_OPT_INT, .arg = "REPS", .help = "repetitions of each test", .lo = 1, .hi = 64,
         .dst = &reps},
        {.names = "--warmup", .type = LOOM_OPT_NUM, .arg = "SEC", .help = "untimed warm-up before the tests", .lo = 0,
         .hi = 600, .dst = &warmup_s},
        {.names = "--settle", .type = LOOM_OPT_NUM, .arg = "PCT",
         .help = "then warm up until the last two runs agree within PCT percent, for at most\n"
                 "10 s more (0: --warmup's time only; --warmup 0: one run)",
         .lo = 0, .hi = 100, .dst = &settle_pct},
        {.names = "--json", .type = LOOM_OPT_FLAG, .help = "one JSON record per test",
         .dst = &json},
        {.names = "--md", .type = LOOM_OPT_FLAG, .help = "a markdown table (the default)", .dst = &md},
        LOOM_OPT_END,
    };
    int prc = loom_opts_parse("bench", "-m MODEL [-p 512[,..]] [-n 128[,..]] [-b B[,..]] [-d D[,..]] [-r REPS] [--warmup SEC]\n"
                                       "                  [--settle PCT] [-t N] [--device D] [--json|--md]",
                              "Prefill (-p) and decode (-n) speed in tokens per second, mean and deviation over -r runs.", opts, &co, argc, argv);
    if (prc >= 0) return prc;
    if (md) json = false;
    if ((p_arg && parse_list("-p", p_arg, pv, &np) < 0) || (n_arg && parse_list("-n", n_arg, nv, &nn) < 0) ||
        (b_arg && parse_list("-b", b_arg, bv, &nb) < 0) || (d_arg && parse_list("-d", d_arg, dv, &nd) < 0))
        return 2;
    int max_d = 0;
    for (int k = 0; k < nd; k++) max_d = dv[k] > max_d ? dv[k] : max_d;
    if (max_d > 0 && b_arg) {
        fprintf(stderr, "loom bench: -d runs single-sequence tests only; it cannot go with -b\n");
        return 2;
    }
    for (int k = 0; b_arg && k < nb; k++)
        if (bv[k] < 1 || bv[k] > 256) {
            fprintf(stderr, "loom bench: -b values must be 1..256, got %d\n", bv[k]);
            return 2;
        }
    const char *path = loom_model_path(&co);
    loom_model *m = loom_open_model("bench", &co);
    if (!m) return 1;
    loom_model_info info = loom_model_get_info(m);
    int max_ctx = 1;
    for (int i = 0; i < np; i++) max_ctx = pv[i] > max_ctx ? pv[i] : max_ctx;
    for (int i = 0; i < nn; i++) max_ctx = nv[i] > max_ctx ? nv[i] : max_ctx;
    max_ctx += max_d;
    loom_session_opts so = loom_common_session_opts(&co);
    /* batched tests: every sequence needs its own blocks of 16 rows */
    int max_b = 0;
    for (int k = 0; k < nb; k++) max_b = bv[k] > max_b ? bv[k] : max_b;
    if (max_b > 0 && max_b * ((max_ctx + 1 + 15) / 16) * 16 > max_ctx) max_ctx = max_b * ((max_ctx + 1 + 15) / 16) * 16;
    so.n_ctx = co.n_ctx > max_ctx ? co.n_ctx : max_ctx;
    loom_session *s = loom_session_new(m, &so);
    if (!s) {
        fprintf(stderr, "loom bench: %s\n", loom_last_error());
        loom_model_free(m);
        return 1;
    }
    char devdesc[256] = "";
    loom_backend *be = loom_session_backend(s);
    if (be->ops->describe) be->ops->describe(be, devdesc, sizeof devdesc);
    loom_machine mc;
    loom_machine_read(&mc);
    bool on_cpu = !strcmp(loom_session_device(s), "cpu");
    /* device memory: system RAM for the CPU; a GPU's describe line says "N GiB" for its heap */
    double dev_mem = on_cpu ? (double)mc.mem_bytes : 0;
    const char *gib = on_cpu ? NULL : strstr(devdesc, " GiB");
    if (gib) {
        const char *p = gib;
        while (p > devdesc && (p[-1] == '.' || (p[-1] >= '0' && p[-1] <= '9'))) p--;
        dev_mem = strtod(p, NULL) * 1073741824.0;
    }
    int threads = co.n_threads ? co.n_threads : mc.n_cpus;
    uint64_t n_params = 0; /* elements of every tensor in the checkpoint */
    for (int i = 0; i < loom_source_n_tensors(m->src); i++) {
        const loom_weight *w = loom_source_tensor(m->src, i);
        uint64_t e = 1;
        for (int d = 0; d < w->ndim; d++) e *= (uint64_t)w->ne[d];
        n_params += e;
    }
    char test_time[32] = "";
    time_t now = time(NULL);
    strftime(test_time, sizeof test_time, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    static result res[2 * MAX_VALUES * MAX_VALUES];
    int nres = 0;
    for (int k = 0; k < (np + nn) * nb * nd; k++) {
        int depth = dv[k % nd], t = k / nd / nb, B = bv[k / nd % nb];
        int n_prompt = t < np ? pv[t] : 0, n_gen = t < np ? 0 : nv[t - np];
        if (n_prompt == 0 && n_gen == 0) continue;
        if (nres == (int)(sizeof res / sizeof res[0])) break;
        result *rr = &res[nres++];
        memset(rr, 0, sizeof *rr);
        rr->n_prompt = n_prompt;
        rr->n_gen = n_gen;
        rr->n_seq = B;
        rr->n_depth = depth;
        double tps, ns;
        if (!B && prefill_depth(s, depth, info.n_vocab) < 0) goto fail;
#define RUN() (B ? run_test_batch(s, B, n_prompt, n_gen, info.n_vocab, &tps, &ns) \
                 : run_test(s, depth, n_prompt, n_gen, info.n_vocab, &tps, &ns))
        /* untimed warm-up: at least one run and warmup_s seconds, then (warmup_s > 0) until the
         * last two runs agree within settle_pct, for at most WARMUP_SETTLE_S more seconds; at most
         * WARMUP_MAX_RUNS runs in all */
        double w0 = loom_now();
        for (;;) {
            if (RUN() < 0) goto fail;
            int w = rr->warmup_runs++;
            rr->warmup_ts[w] = tps;
            double prev = w ? rr->warmup_ts[w - 1] : 0, hi = tps > prev ? tps : prev;
            rr->warmup_settled = settle_pct <= 0 || (w > 0 && fabs(tps - prev) <= settle_pct / 100 * hi);
            double el = loom_now() - w0;
            if (rr->warmup_runs >= WARMUP_MAX_RUNS || warmup_s == 0) break;
            if (el >= warmup_s && (rr->warmup_settled || el >= warmup_s + WARMUP_SETTLE_S)) break;
        }
        double sum = 0, sq = 0, sum_ns = 0, sq_ns = 0;
        for (int r = 0; r < reps; r++) {
            if (RUN() < 0) goto fail;
            rr->samples_ns[rr->n_samples] = ns;
            rr->samples[rr->n_samples++] = tps;
            sum += tps;
            sum_ns += ns;
        }
        rr->avg = sum / (double)reps;
        rr->avg_ns = sum_ns / (double)reps;
        for (int r = 0; r < reps; r++) {
            sq += (rr->samples[r] - rr->avg) * (rr->samples[r] - rr->avg);
            sq_ns += (rr->samples_ns[r] - rr->avg_ns) * (rr->samples_ns[r] - rr->avg_ns);
        }
        rr->sd = reps > 1 ? sqrt(sq / (double)(reps - 1)) : 0;
        rr->sd_ns = reps > 1 ? sqrt(sq_ns / (double)(reps - 1)) : 0;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    size_t rss = (size_t)ru.ru_maxrss * 1024;
    if (json) {
        printf("[\n");
        for (int k = 0; k < nres; k++) {
            printf("  {\"cpu_info\": ");
            loom_json_str(stdout, mc.cpu_model);
            printf(", \"gpu_info\": ");
            loom_json_str(stdout, on_cpu ? "" : devdesc);
            printf(", \"backends\": \"%s\", \"model_filename\": ", on_cpu ? "CPU" : "Vulkan");
            loom_json_str(stdout, path);
            printf(", \"model_type\": \"%s %s\", \"model_size\": %zu, \"model_n_params\": %llu, "
                   "\"n_threads\": %d, \"n_prompt\": %d, \"n_gen\": %d, \"n_depth\": %d, \"test_time\": \"%s\", "
                   "\"avg_ns\": %.0f, \"stddev_ns\": %.0f, \"avg_ts\": %.3f, \"stddev_ts\": %.3f, \"samples_ns\": [",
                   info.arch, loom_dtype_name(info.weight_type), info.weight_bytes, (unsigned long long)n_params,
                   threads, res[k].n_prompt, res[k].n_gen, res[k].n_depth, test_time, res[k].avg_ns, res[k].sd_ns, res[k].avg,
                   res[k].sd);
            for (int r = 0; r < res[k].n_samples; r++) printf(r ? ", %.0f" : "%.0f", res[k].samples_ns[r]);
            printf("], \"samples_ts\": [");
            for (int r = 0; r < res[k].n_samples; r++) printf(r ? ", %.3f" : "%.3f", res[k].samples[r]);
            printf("], \"warmup_runs\": %d, \"warmup_samples_ts\": [", res[k].warmup_runs);
            for (int r = 0; r < res[k].warmup_runs; r++) printf(r ? ", %.3f" : "%.3f", res[k].warmup_ts[r]);
            printf("], \"warmup_settled\": %s, \"simd\": \"%s\", \"device_memory_bytes\": %.0f, "
                   "\"peak_rss_bytes\": %zu, \"model\": ",
                   res[k].warmup_settled ? "true" : "false", mc.simd, dev_mem, rss);
            loom_json_str(stdout, path);
            printf(", \"backend\": \"%s\", \"device\": ", loom_session_device(s));
            loom_json_str(stdout, devdesc);
            printf(", \"n_seq\": %d}%s\n", res[k].n_seq ? res[k].n_seq : 1, k + 1 < nres ? "," : "");
        }
        printf("]\n");
    } else {
        printf("| model | size | backend | threads | test | t/s |\n|---|---:|---|---:|---:|---:|\n");
        for (int k = 0; k < nres; k++) {
            char test[32];
            if (res[k].n_prompt) snprintf(test, sizeof test, "pp%d", res[k].n_prompt);
            else snprintf(test, sizeof test, "tg%d", res[k].n_gen);
            if (res[k].n_seq) snprintf(test + strlen(test), sizeof test - strlen(test), " x%d", res[k].n_seq);
            if (res[k].n_depth) snprintf(test + strlen(test), sizeof test - strlen(test), " @ d%d", res[k].n_depth);
            printf("| %s %s | %.2f MiB | %s | %d | %s | %.2f ± %.2f |\n", info.arch, loom_dtype_name(info.weight_type),
                   info.weight_bytes / 1048576.0, loom_session_device(s), threads, test, res[k].avg, res[k].sd);
        }
        for (int k = 0; k < nres; k++)
            if (!res[k].warmup_settled && warmup_s > 0)
                printf("\nnote: test %d's warm-up did not settle within %g%% (%d runs, last %.2f / %.2f t/s): the "
                       "machine's speed was moving\n",
                       k + 1, settle_pct, res[k].warmup_runs,
                       res[k].warmup_runs > 1 ? res[k].warmup_ts[res[k].warmup_runs - 2] : 0.0,
                       res[k].warmup_ts[res[k].warmup_runs - 1]);
        printf("\ndevice: %s; peak RSS %.1f MiB\n", devdesc[0] ? devdesc : loom_session_device(s), rss / 1048576.0);
        printf("machine: %s, %d CPUs, %s, %.1f GiB RAM", mc.cpu_model, mc.n_cpus, mc.simd[0] ? mc.simd : "no SIMD flags",
               mc.mem_bytes / 1073741824.0);
        if (!on_cpu && dev_mem > 0) printf("; device memory %.1f GiB", dev_mem / 1073741824.0);
        printf("\n");
    }
    loom_session_free(s);
    loom_model_free(m);
    return 0;
fail:
    fprintf(stderr, "loom bench: %s\n", loom_last_error());
    loom_session_free(s);
    loom_model_free(m);
    return 1;
}
