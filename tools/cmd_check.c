/* loom check: run a model against a reference.safetensors written by HuggingFace transformers.
 *
 * 1. Full forward over input_ids: compare logits and every hidden.N.
 * 2. Generation path: prefill the prompt, then decode greedy_ids one token at a time through the
 *    KV cache, comparing each step's logits with greedy_logits and the greedy choice with
 *    greedy_ids. The prompt is greedy_ids' first S tokens (input_ids, as in the fixtures'
 *    reference.safetensors), or its first N when the file's metadata says "greedy_prompt": "N"
 *    (long_reference.safetensors: a long text for the forward, a short prompt for generation). */
#include "tools/commands.h"
#include "tools/options.h"

#include "loom.h"
#include "formats/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { double max_abs, max_rel, ref_max; } err_stats;

static err_stats compare(const float *got, const float *ref, size_t n) {
    err_stats e = {0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)ref[i]);
        if (r > e.ref_max) e.ref_max = r;
    }
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (d != d) d = INFINITY;
        if (d > e.max_abs) e.max_abs = d;
        double rel = d / (fabs((double)ref[i]) + 1e-6 * (e.ref_max + 1e-30));
        if (rel > e.max_rel) e.max_rel = rel;
    }
    return e;
}

/* Agreement of loom's logits with the reference's over rows: top-1 matches and KL(ref || loom)
 * of the softmaxes (in double). What quantised weights are judged by: their logits err by far more
 * than f32 rounding, but should still pick the same tokens with nearly the same distribution. */
typedef struct { long rows, top1; double kl; } agree_stats;

static void agree_row(agree_stats *a, const float *got, const float *ref, int V) {
    int bg = 0, br = 0;
    for (int v = 1; v < V; v++) {
        if (got[v] > got[bg]) bg = v;
        if (ref[v] > ref[br]) br = v;
    }
    double zg = 0, zr = 0, kl = 0;
    for (int v = 0; v < V; v++) zg += exp((double)got[v] - got[bg]), zr += exp((double)ref[v] - ref[br]);
    for (int v = 0; v < V; v++) {
        double lr = (double)ref[v] - ref[br] - log(zr), lg = (double)got[v] - got[bg] - log(zg);
        kl += exp(lr) * (lr - lg);
    }
    a->rows++;
    a->top1 += bg == br;
    a->kl += kl != kl ? INFINITY : kl;
}

static const st_tensor *need(const st_file *f, const char *name, loom_dtype t, size_t min_elems) {
    const st_tensor *x = st_find(f, name);
    if (!x) fprintf(stderr, "loom check: %s has no tensor '%s'\n", st_path(f), name);
    else if (x->dtype != t) fprintf(stderr, "loom check: %s: '%s' must be %s\n", st_path(f), name, loom_dtype_name(t));
    else if (st_numel(x) < min_elems) fprintf(stderr, "loom check: %s: '%s' is too small\n", st_path(f), name);
    else return x;
    return NULL;
}

int cmd_check(int argc, char **argv) {
    loom_common_opts co;
    loom_common_defaults(&co);
    const char *ref_path = NULL;
    double tol = -1, min_top1 = -1, max_kl = -1;
    const loom_opt opts[] = {
        {.names = "--reference", .type = LOOM_OPT_STR, .arg = "REF", .help = "the reference .safetensors (required)",
         .dst = &ref_path},
        {.names = "--tol",
         .type = LOOM_OPT_NUM,
         .arg = "X",
         .help = "max abs error allowed on logits (default 1e-3 for f32 weights, 2e-2 for 16-bit);\n"
                 "hidden states may differ by X times max(1, their largest magnitude)",
         .lo = 1e-300,
         .hi = 1e300,
         .dst = &tol},
        {.names = "--min-top1",
         .type = LOOM_OPT_NUM,
         .arg = "P",
         .help = "fail unless loom's top-1 token agrees with the reference's on at least P% of\n"
                 "all positions (full forward and decode steps)",
         .lo = 0,
         .hi = 100,
         .dst = &min_top1,
         .no_default = true},
        {.names = "--max-kl",
         .type = LOOM_OPT_NUM,
         .arg = "X",
         .help = "fail unless the mean KL(ref || loom) over those positions is at most X;\n"
                 "with either option, max abs errors are only reported unless --tol is given",
         .lo = 0,
         .hi = 1e300,
         .dst = &max_kl,
         .no_default = true},
        LOOM_OPT_END,
    };
    int prc = loom_opts_parse("check", "-m MODEL --reference REF.safetensors [--tol X] [--min-top1 P] [--max-kl X]",
                              "Compare loom's logits (and hidden states) with a reference run's.", opts, &co, argc, argv);
    if (prc >= 0) return prc;
    if (!co.model || !ref_path) {
        fprintf(stderr, "loom check: %s is required (loom check --help)\n", !co.model ? "-m" : "--reference");
        return 2;
    }
    int rc = 2;
    loom_session *s = NULL;
    st_file *ref = st_open(ref_path);
    loom_model *m = ref ? loom_model_load(co.model) : NULL;
    if (!ref || !m) {
        fprintf(stderr, "loom check: %s\n", loom_last_error());
        goto done;
    }
    loom_model_info info = loom_model_get_info(m);
    const st_tensor *ids = need(ref, "input_ids", LOOM_I32, 1);
    if (!ids) goto done;
    int S = (int)st_numel(ids), V = info.n_vocab, D = info.n_embd;
    const st_tensor *logits = need(ref, "logits", LOOM_F32, (size_t)S * V);
    const st_tensor *gids = need(ref, "greedy_ids", LOOM_I32, 2);
    if (!logits || !gids) goto done;
    int T = (int)st_numel(gids), P = S;
    const char *gp = st_metadata(ref, "greedy_prompt");
    if (gp) {
        char *end;
        long v = strtol(gp, &end, 10);
        if (*end || end == gp || v < 1 || v > T) {
            fprintf(stderr, "loom check: %s: metadata greedy_prompt '%s' is not a length in [1, %d]\n", ref_path, gp, T);
            goto done;
        }
        P = (int)v;
    }
    if (T < P) {
        fprintf(stderr, "loom check: %s: greedy_ids (%d tokens) is shorter than its %d-token prompt\n", ref_path, T, P);
        goto done;
    }
    const st_tensor *glogits = need(ref, "greedy_logits", LOOM_F32, (size_t)(T - 1) * V);
    if (!glogits) goto done;
    /* with agreement criteria and no --tol, max abs errors are reported, not judged */
    bool agree_mode = min_top1 >= 0 || max_kl >= 0, abs_judged = !agree_mode || tol > 0;
    if (tol < 0) tol = info.weight_type == LOOM_F32 ? 1e-3 : 2e-2;
    agree_stats ag = {0, 0, 0};

    loom_session_opts so = loom_common_session_opts(&co);
    so.n_ctx = co.n_ctx > 0 ? co.n_ctx : (T > S ? T : S);
    so.all_logits = true;
    so.want_hidden = true;
    s = loom_session_new(m, &so);
    if (!s) {
        fprintf(stderr, "loom check: %s\n", loom_last_error());
        goto done;
    }
    printf("model %s (%s, %d layers) on %s, tolerance %.3g\n", co.model, info.arch, info.n_layer,
           loom_session_device(s), tol);
    bool ok = true;
    if (loom_session_eval(s, ids->data, S) < 0) {
        fprintf(stderr, "loom check: %s\n", loom_last_error());
        goto done;
    }
    int rows;
    err_stats e = compare(loom_session_logits(s, &rows), logits->data, (size_t)S * V);
    for (int r = 0; r < S && r < rows; r++)
        agree_row(&ag, loom_session_logits(s, NULL) + (size_t)r * V, (const float *)logits->data + (size_t)r * V, V);
    bool pass = e.max_abs <= tol || !abs_judged;
    ok &= pass;
    printf("  %-14s max abs %.3e  max rel %.3e  %s\n", "logits", e.max_abs, e.max_rel, pass ? "ok" : "FAIL");
    for (int l = 0; l <= info.n_layer; l++) {
        char name[32];
        snprintf(name, sizeof name, "hidden.%d", l);
        const st_tensor *h = st_find(ref, name);
        if (!h) continue;
        if (h->dtype != LOOM_F32 || st_numel(h) != (size_t)S * D) {
            fprintf(stderr, "loom check: %s: '%s' must be f32 [%d, %d]\n", ref_path, name, S, D);
            goto done;
        }
        e = compare(loom_session_hidden(s, l), h->data, (size_t)S * D);
        double lim = tol * (e.ref_max > 1 ? e.ref_max : 1);
        pass = e.max_abs <= lim || !abs_judged;
        ok &= pass;
        printf("  %-14s max abs %.3e  max rel %.3e  %s\n", name, e.max_abs, e.max_rel, pass ? "ok" : "FAIL");
    }

    /* the generation path: a fresh session without all_logits, exactly as loom run decodes */
    loom_session_free(s);
    so.all_logits = false;
    so.want_hidden = false;
    s = loom_session_new(m, &so);
    if (!s) {
        fprintf(stderr, "loom check: %s\n", loom_last_error());
        goto done;
    }
    const int32_t *g = gids->data;
    const float *gl = glogits->data;
    double worst = 0;
    int mismatches = 0;
    for (int t = P - 1; t < T - 1; t++) {
        int r = t == P - 1 ? loom_session_eval(s, g, P) : loom_session_eval(s, &g[t], 1);
        if (r < 0) {
            fprintf(stderr, "loom check: step %d: %s\n", t, loom_last_error());
            goto done;
        }
        const float *lg = loom_session_logits(s, NULL);
        e = compare(lg, gl + (size_t)t * V, (size_t)V);
        /* with the prompt = input_ids, row S-1 is the forward's last row, counted above */
        if (t > P - 1 || P != S) agree_row(&ag, lg, gl + (size_t)t * V, V);
        if (e.max_abs > worst) worst = e.max_abs;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (lg[v] > lg[best]) best = v;
        if (best != g[t + 1]) mismatches++;
    }
    double top1 = ag.rows ? 100.0 * (double)ag.top1 / (double)ag.rows : 0, mkl = ag.rows ? ag.kl / (double)ag.rows : 0;
    /* printed before the decode line: scripts match "decode ... ok\nPASS" */
    pass = min_top1 < 0 || top1 >= min_top1;
    ok &= pass;
    printf("top-1 agreement: %.1f%% (%ld of %ld positions)%s\n", top1, ag.top1, ag.rows,
           min_top1 < 0 ? "" : pass ? "  ok" : "  FAIL");
    pass = max_kl < 0 || mkl <= max_kl;
    ok &= pass;
    printf("mean KL: %.1e%s\n", mkl, max_kl < 0 ? "" : pass ? "  ok" : "  FAIL");
    pass = (worst <= tol && mismatches == 0) || !abs_judged;
    ok &= pass;
    printf("  %-14s max abs %.3e over %d steps, greedy mismatches %d  %s\n", "decode", worst, T - P, mismatches,
           pass ? "ok" : "FAIL");
    printf("%s\n", ok ? "PASS" : "FAIL");
    rc = ok ? 0 : 1;
done:
    loom_session_free(s);
    loom_model_free(m);
    st_close(ref);
    return rc;
}
