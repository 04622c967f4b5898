/* The sampler against the exact distribution it promises (include/loom.h): softmax(logits / T),
 * cut by top-k, then top-p (the smallest most-likely set whose mass reaches top_p), then min-p
 * (candidates under min_p times the most likely one's probability dropped), renormalised; the
 * repeat / frequency / presence penalties change the logits of the history's tokens first.
 * For each configuration, 10^5 draws with a fixed seed are compared with the distribution computed
 * here in double precision by Pearson's chi-square (cells with an expected count under 5 pooled);
 * the bound is the chi-square quantile at p = 1e-4 for the cells' degrees of freedom (computed),
 * so a correct sampler passes and the test is deterministic (fixed seeds). A token outside the
 * support fails at once. Ignoring the temperature or keeping one token too few in top-p puts the
 * statistic in the thousands. Edge cases: top-p 1.0 is no cut, a tiny temperature is the argmax,
 * ties keep the lower id. With penalties every draw starts from the same history
 * (loom_sampler_reset, then loom_sampler_accept of HIST), so the distribution stays fixed. */
#include "tests/unit/check.h"
#include "loom.h"

#include <string.h>

enum { V = 16, N_DRAWS = 100000 };

/* ids are not in probability order, and no two are equal */
static const float LOGITS[V] = {0.3f, 2.0f, -0.5f, 1.1f, -2.0f, 0.8f, 1.5f, -1.0f,
                                0.0f, 1.2f, -3.0f, 0.5f, -0.2f, 0.9f, -1.5f, 1.0f};

/* the history the penalty configurations start every draw from: 1 (the argmax) twice, 6 once,
 * 12 once, 3 three times, and 99 (not in the vocabulary: ignored) */
static const int32_t HIST[] = {1, 6, 3, 1, 12, 3, 99, 3};
enum { N_HIST = sizeof HIST / sizeof HIST[0] };

static bool penalised(const loom_sampler_opts *o) {
    return (o->repeat_penalty != 0 && o->repeat_penalty != 1) || o->frequency_penalty != 0 || o->presence_penalty != 0;
}

/* The distribution in double: p[V] over ids (0 outside the support). Returns the support size. */
static int exact(const float *logits_in, int n, const loom_sampler_opts *o, double *p) {
    int idx[V];
    double logits[V];
    for (int i = 0; i < n; i++) logits[i] = logits_in[i];
    if (penalised(o))
        for (int i = 0; i < n; i++) {
            int c = 0;
            for (int h = 0; h < N_HIST; h++) c += HIST[h] == i;
            if (!c) continue;
            if (o->repeat_penalty != 0 && o->repeat_penalty != 1)
                logits[i] = logits[i] > 0 ? logits[i] / o->repeat_penalty : logits[i] * o->repeat_penalty;
            logits[i] -= c * (double)o->frequency_penalty + o->presence_penalty;
        }
    double mx = logits[0];
    for (int i = 1; i < n; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        p[i] = exp((logits[i] - mx) / o->temperature);
        sum += p[i];
        idx[i] = i;
    }
    for (int i = 0; i < n; i++) p[i] /= sum;
    /* order by probability, descending, ties by id (insertion sort: n is small) */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && (p[idx[j]] > p[idx[j - 1]] || (p[idx[j]] == p[idx[j - 1]] && idx[j] < idx[j - 1])); j--) {
            int t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    int k = o->top_k > 0 && o->top_k < n ? o->top_k : n;
    if (o->top_p < 1.0f) {
        double acc = 0;
        for (int i = 0; i < k; i++) {
            acc += p[idx[i]];
            /* the cut must not be within float rounding of top_p (else the test would be ambiguous) */
            CHECK(fabs(acc - o->top_p) > 1e-4, "test setup: top_p %g is too close to a cumulative mass", o->top_p);
            if (acc >= o->top_p) {
                k = i + 1;
                break;
            }
        }
    }
    if (o->min_p > 0) {
        double floor_p = o->min_p * p[idx[0]];
        int m = 1;
        while (m < k) {
            CHECK(fabs(p[idx[m]] - floor_p) > 1e-4 * floor_p, "test setup: min_p %g is too close to a ratio", o->min_p);
            if (p[idx[m]] < floor_p) break;
            m++;
        }
        k = m;
    }
    double total = 0;
    for (int i = 0; i < k; i++) total += p[idx[i]];
    double q[V] = {0};
    for (int i = 0; i < k; i++) q[idx[i]] = p[idx[i]] / total;
    memcpy(p, q, sizeof(double) * (size_t)n);
    return k;
}

/* The chi-square survival function: Q(df/2, x/2), the regularised upper incomplete gamma, by its
 * series below a + 1 and by Lentz's continued fraction above. */
static double chi2_sf(int df, double x) {
    double a = 0.5 * df, z = 0.5 * x;
    if (z <= 0) return 1;
    double lg = a * log(z) - z - lgamma(a);
    if (z < a + 1) {
        double term = 1 / a, sum = term;
        for (int n = 1; n < 1000 && fabs(term) > 1e-17 * fabs(sum); n++) sum += term *= z / (a + n);
        return 1 - sum * exp(lg);
    }
    double b = z + 1 - a, c = 1e300, d = 1 / b, h = d;
    for (int i = 1; i < 1000; i++) {
        double an = -i * (i - a);
        b += 2;
        d = an * d + b;
        d = fabs(d) < 1e-300 ? 1e-300 : d;
        c = b + an / c;
        c = fabs(c) < 1e-300 ? 1e-300 : c;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-15) break;
    }
    return exp(lg) * h;
}

/* the x with chi2_sf(df, x) = 1e-4 (bisection): a correct sampler exceeds it once in 10^4 seeds */
static double chi2_quantile_1e4(int df) {
    double lo = 0, hi = 10.0 * df + 100;
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi);
        if (chi2_sf(df, mid) > 1e-4) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* n draws; the chi-square statistic against p, with its degrees of freedom; -1 if a draw falls
 * outside the support. */
static double chi_square(const char *name, const float *logits, int n, const loom_sampler_opts *o, const double *p,
                         int *df_out) {
    long seen[V] = {0};
    loom_sampler *s = loom_sampler_new(o);
    CHECK(s != NULL, "%s: loom_sampler_new", name);
    if (!s) return -1;
    int outside = 0;
    bool pen = penalised(o);
    for (int i = 0; i < N_DRAWS; i++) {
        if (pen) {
            loom_sampler_reset(s);
            for (int h = 0; h < N_HIST; h++) loom_sampler_accept(s, HIST[h]);
        }
        int t = loom_sampler_sample(s, logits, n);
        if (t < 0 || t >= n || p[t] == 0) {
            outside++;
            continue;
        }
        seen[t]++;
    }
    loom_sampler_free(s);
    CHECK(outside == 0, "%s: %d draws outside the support", name, outside);
    /* Pearson's statistic, cells with expected < 5 pooled into one */
    double stat = 0, pool_e = 0, pool_o = 0;
    int cells = 0;
    for (int i = 0; i < n; i++) {
        double e = p[i] * N_DRAWS;
        if (p[i] == 0) continue;
        if (e < 5) {
            pool_e += e;
            pool_o += (double)seen[i];
            continue;
        }
        stat += ((double)seen[i] - e) * ((double)seen[i] - e) / e;
        cells++;
    }
    if (pool_e > 0) {
        stat += (pool_o - pool_e) * (pool_o - pool_e) / (pool_e > 1e-9 ? pool_e : 1e-9);
        cells++;
    }
    *df_out = cells - 1;
    return outside ? -1 : stat;
}

static void check_config(const char *name, const float *logits, int n, loom_sampler_opts o, int want_support) {
    double p[V];
    int support = exact(logits, n, &o, p);
    CHECK(want_support <= 0 || support == want_support, "%s: test setup: support %d, meant %d", name, support,
          want_support);
    int df = 0;
    double stat = chi_square(name, logits, n, &o, p, &df);
    if (df < 1) { /* one cell: every draw must be it (checked by the support test) */
        printf("%-34s support %2d  all draws on the one token\n", name, support);
        return;
    }
    double bound = chi2_quantile_1e4(df);
    printf("%-34s support %2d  chi2 %8.2f  df %2d  bound %.2f\n", name, support, stat, df, bound);
    CHECK(stat >= 0 && stat <= bound, "%s: chi-square %.2f over the p = 1e-4 bound %.2f (df %d)", name, stat, bound,
          df);
}

int main(void) {
    /* temperature alone, three values (the draws are the sampler's, the distribution is softmax(l/T)) */
    check_config("T 1", LOGITS, V, (loom_sampler_opts){.temperature = 1.0f, .top_p = 1.0f, .seed = 1}, V);
    check_config("T 0.5", LOGITS, V, (loom_sampler_opts){.temperature = 0.5f, .top_p = 1.0f, .seed = 2}, V);
    check_config("T 2", LOGITS, V, (loom_sampler_opts){.temperature = 2.0f, .top_p = 1.0f, .seed = 3}, V);
    /* top-k, top-p, and both (top-p over the top-k set) */
    check_config("T 1 top-k 5", LOGITS, V, (loom_sampler_opts){.temperature = 1.0f, .top_k = 5, .top_p = 1.0f, .seed = 4},
                 5);
    check_config("T 1 top-p 0.8", LOGITS, V, (loom_sampler_opts){.temperature = 1.0f, .top_p = 0.8f, .seed = 5}, 0);
    check_config("T 0.7 top-p 0.5", LOGITS, V, (loom_sampler_opts){.temperature = 0.7f, .top_p = 0.5f, .seed = 6}, 0);
    check_config("T 1.3 top-k 8 top-p 0.9", LOGITS, V,
                 (loom_sampler_opts){.temperature = 1.3f, .top_k = 8, .top_p = 0.9f, .seed = 7}, 0);
    check_config("T 1 top-k 3 top-p 0.95", LOGITS, V,
                 (loom_sampler_opts){.temperature = 1.0f, .top_k = 3, .top_p = 0.95f, .seed = 8}, 3);
    /* edge cases: top-p 1.0 cuts nothing; top-k >= V cuts nothing; a tiny temperature is the argmax */
    check_config("top-p 1.0 (no cut)", LOGITS, V, (loom_sampler_opts){.temperature = 1.0f, .top_p = 1.0f, .seed = 9}, V);
    check_config("top-k 16 of 16 (no cut)", LOGITS, V,
                 (loom_sampler_opts){.temperature = 1.0f, .top_k = V, .top_p = 1.0f, .seed = 10}, V);
    check_config("T 1e-3 (argmax)", LOGITS, V, (loom_sampler_opts){.temperature = 1e-3f, .top_p = 1.0f, .seed = 11}, 0);
    /* min-p, alone and after top-k / top-p */
    check_config("T 1 min-p 0.1", LOGITS, V, (loom_sampler_opts){.temperature = 1.0f, .top_p = 1.0f, .min_p = 0.1f, .seed = 21},
                 0);
    check_config("T 0.8 min-p 0.3", LOGITS, V,
                 (loom_sampler_opts){.temperature = 0.8f, .top_p = 1.0f, .min_p = 0.3f, .seed = 22}, 0);
    check_config("T 1.2 top-k 10 top-p 0.9 min-p 0.15", LOGITS, V,
                 (loom_sampler_opts){.temperature = 1.2f, .top_k = 10, .top_p = 0.9f, .min_p = 0.15f, .seed = 23}, 0);
    check_config("T 0.3 min-p 0.5 (one token left)", LOGITS, V,
                 (loom_sampler_opts){.temperature = 0.3f, .top_p = 1.0f, .min_p = 0.5f, .seed = 29}, 1);
    /* penalties over the history HIST: each alone, then all with the cuts */
    check_config("repeat 1.3", LOGITS, V,
                 (loom_sampler_opts){.temperature = 1.0f, .top_p = 1.0f, .repeat_penalty = 1.3f, .seed = 24}, V);
    check_config("frequency 0.4", LOGITS, V,
                 (loom_sampler_opts){.temperature = 1.0f, .top_p = 1.0f, .frequency_penalty = 0.4f, .seed = 25}, V);
    check_config("presence 0.7", LOGITS, V,
                 (loom_sampler_opts){.temperature = 1.0f, .top_p = 1.0f, .presence_penalty = 0.7f, .seed = 26}, V);
    check_config("presence -0.5 (a bonus)", LOGITS, V,
                 (loom_sampler_opts){.temperature = 1.0f, .top_p = 1.0f, .presence_penalty = -0.5f, .seed = 27}, V);
    check_config("all penalties, T 0.9 top-k 12 min-p 0.05", LOGITS, V,
                 (loom_sampler_opts){.temperature = 0.9f, .top_k = 12, .top_p = 1.0f, .min_p = 0.05f,
                                     .repeat_penalty = 1.1f, .frequency_penalty = 0.2f, .presence_penalty = 0.3f,
                                     .seed = 28}, 0);
    {
        /* greedy with a penalty: the penalised argmax (1: 2.0 / 1.3 - 2 * 0.4 = 0.74) loses to 6 (1.5) */
        loom_sampler_opts o = {.temperature = 0, .repeat_penalty = 1.3f, .frequency_penalty = 0.4f};
        loom_sampler *s = loom_sampler_new(&o);
        for (int h = 0; h < N_HIST; h++) loom_sampler_accept(s, HIST[h]);
        double p[V];
        loom_sampler_opts oe = o;
        oe.temperature = 1e-3f;
        oe.top_p = 1.0f;
        exact(LOGITS, V, &oe, p);
        int want = 0;
        for (int i = 1; i < V; i++) want = p[i] > p[want] ? i : want;
        int got = loom_sampler_sample(s, LOGITS, V);
        CHECK(got == want && want != 1, "greedy with penalties: got %d, the penalised argmax is %d", got, want);
        loom_sampler_free(s);
    }
    /* ties: two tied best tokens come up equally; top-k through a tie keeps the lower ids */
    static const float TIES[8] = {0.5f, 2.0f, 1.0f, 2.0f, 1.0f, 1.0f, -1.0f, 0.0f};
    check_config("ties T 1", TIES, 8, (loom_sampler_opts){.temperature = 1.0f, .top_p = 1.0f, .seed = 12}, 8);
    check_config("ties top-k 3", TIES, 8, (loom_sampler_opts){.temperature = 1.0f, .top_k = 3, .top_p = 1.0f, .seed = 13},
                 3);
    {
        double p[8];
        loom_sampler_opts o = {.temperature = 1.0f, .top_k = 3, .top_p = 1.0f};
        exact(TIES, 8, &o, p);
        CHECK(p[1] > 0 && p[3] > 0 && p[2] > 0 && p[4] == 0 && p[5] == 0, "test setup: top-3 of the ties is {1, 3, 2}");
    }
    /* greedy: temperature 0 and top-k 1 both give the first of the tied maxima, every time */
    loom_sampler *g = loom_sampler_new(&(loom_sampler_opts){.temperature = 0});
    loom_sampler *k1 = loom_sampler_new(&(loom_sampler_opts){.temperature = 1.0f, .top_k = 1, .top_p = 1.0f, .seed = 5});
    int bad = 0;
    for (int i = 0; i < 100; i++) bad += loom_sampler_sample(g, TIES, 8) != 1 || loom_sampler_sample(k1, TIES, 8) != 1;
    CHECK(bad == 0, "greedy / top-k 1 on tied maxima must give id 1 (%d misses)", bad);
    CHECK(loom_sampler_sample(g, LOGITS, V) == 1, "greedy must pick the argmax");
    loom_sampler_free(g);
    loom_sampler_free(k1);
    CHECK_DONE();
}
