/* Token sampling: penalties over the recent history, then greedy, or temperature with optional
 * top-k, top-p (nucleus) and min-p filtering (the order and formulas are in include/loom.h). */
#include "loom.h"

#include "core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { float p; int id; } cand;

struct loom_sampler {
    loom_sampler_opts o;
    uint64_t rng;
    int cap;
    cand *c;
    bool penal;      /* any penalty on: keep the history */
    int32_t *hist;   /* tokens accepted, oldest first */
    int n_hist, hist_cap;
    int32_t *win;    /* scratch: the window, sorted */
    int win_cap;
};

loom_sampler *loom_sampler_new(const loom_sampler_opts *o) {
    loom_sampler *s = loom_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->o = *o;
    s->rng = o->seed ? o->seed : 0x9e3779b97f4a7c15ULL;
    bool rep = o->repeat_penalty != 0 && o->repeat_penalty != 1;
    s->penal = (rep || o->frequency_penalty != 0 || o->presence_penalty != 0);
    if (s->o.penalty_last_n == 0) s->o.penalty_last_n = 64;
    return s;
}

int loom_sampler_accept(loom_sampler *s, int32_t token) {
    if (!s->penal) return 0;
    /* a bounded window keeps at most 2 windows of history: drop the older half when full */
    int keep = s->o.penalty_last_n;
    if (keep > 0 && s->n_hist >= 2 * keep) {
        memmove(s->hist, s->hist + s->n_hist - keep, (size_t)keep * sizeof *s->hist);
        s->n_hist = keep;
    }
    if (s->n_hist == s->hist_cap) {
        int cap = s->hist_cap ? 2 * s->hist_cap : 256;
        int32_t *h = realloc(s->hist, (size_t)cap * sizeof *h);
        if (!h) return loom_err("sampler: out of memory for the penalty history");
        s->hist = h;
        s->hist_cap = cap;
    }
    s->hist[s->n_hist++] = token;
    return 0;
}

void loom_sampler_reset(loom_sampler *s) { s->n_hist = 0; }

void loom_sampler_free(loom_sampler *s) {
    if (!s) return;
    free(s->c);
    free(s->hist);
    free(s->win);
    free(s);
}

/* xorshift64*: plenty for sampling, and reproducible from the seed */
static float next_uniform(loom_sampler *s) {
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (float)((s->rng * 0x2545F4914F6CDD1DULL) >> 40) / 16777216.0f;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Sort candidates by probability, descending; ties by id so results never depend on qsort. */
static int by_prob_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p) return (x->p < y->p) - (x->p > y->p);
    return (x->id > y->id) - (x->id < y->id);
}

int loom_logits_check(const float *x, int n) {
    bool any = false;
    for (int i = 0; i < n; i++) {
        if (isnan(x[i]) || x[i] == INFINITY)
            return loom_err("the logit of token %d is %s: the model's numbers broke down (NaN/Inf weights? "
                            "try --check-tensors)", i, isnan(x[i]) ? "NaN" : "+inf");
        any |= x[i] != -INFINITY;
    }
    return any ? 0 : loom_err("every logit is -inf: no token can follow");
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Apply the penalties to the window's tokens in c[].p (which holds the logits). */
static int penalise(loom_sampler *s, int n) {
    int w = s->n_hist;
    if (s->o.penalty_last_n > 0 && w > s->o.penalty_last_n) w = s->o.penalty_last_n;
    if (w == 0) return 0;
    if (w > s->win_cap) {
        int32_t *p = realloc(s->win, (size_t)w * sizeof *p);
        if (!p) return loom_err("sampler: out of memory for the penalty window");
        s->win = p;
        s->win_cap = w;
    }
    memcpy(s->win, s->hist + s->n_hist - w, (size_t)w * sizeof *s->win);
    qsort(s->win, (size_t)w, sizeof *s->win, cmp_i32);
    float rp = s->o.repeat_penalty;
    bool rep = rp != 0 && rp != 1;
    for (int i = 0; i < w;) {
        int j = i;
        while (j < w && s->win[j] == s->win[i]) j++;
        int32_t id = s->win[i];
        if (id >= 0 && id < n) {
            float *l = &s->c[id].p;
            if (rep) *l = *l > 0 ? *l / rp : *l * rp;
            *l -= (float)(j - i) * s->o.frequency_penalty + s->o.presence_penalty;
        }
        i = j;
    }
    return 0;
}

static int32_t pick(loom_sampler *s, const float *logits, int n) {
    /* one NaN made every comparison false: argmax kept index 0 and sampling picked the last id */
    if (loom_logits_check(logits, n) < 0) return -1;
    bool greedy = s->o.temperature <= 0 || s->o.top_k == 1;
    if (greedy && !s->penal) return argmax(logits, n);
    if (n > s->cap) {
        cand *c = realloc(s->c, (size_t)n * sizeof *c);
        if (!c) return loom_err("sampler: out of memory for %d candidates", n);
        s->c = c;
        s->cap = n;
    }
    for (int i = 0; i < n; i++) {
        s->c[i].p = logits[i];
        s->c[i].id = i;
    }
    if (s->penal && penalise(s, n) < 0) return -1;
    float mx = s->c[0].p;
    int best = 0;
    for (int i = 1; i < n; i++)
        if (s->c[i].p > mx) mx = s->c[best = i].p;
    if (greedy) return best;
    float sum = 0;
    for (int i = 0; i < n; i++) {
        s->c[i].p = expf((s->c[i].p - mx) / s->o.temperature);
        sum += s->c[i].p;
    }
    for (int i = 0; i < n; i++) s->c[i].p /= sum;
    int k = n;
    if (s->o.top_k > 0 && s->o.top_k < n) k = s->o.top_k;
    if (k < n || s->o.top_p < 1.0f || s->o.min_p > 0) qsort(s->c, (size_t)n, sizeof *s->c, by_prob_desc);
    if (s->o.top_p < 1.0f) {
        float acc = 0;
        for (int i = 0; i < k; i++) {
            acc += s->c[i].p;
            if (acc >= s->o.top_p) {
                k = i + 1;
                break;
            }
        }
    }
    if (s->o.min_p > 0) {
        float floor_p = s->o.min_p * s->c[0].p;
        int m = 1;
        while (m < k && s->c[m].p >= floor_p) m++;
        k = m;
    }
    float total = 0;
    for (int i = 0; i < k; i++) total += s->c[i].p;
    float r = next_uniform(s) * total, acc = 0;
    for (int i = 0; i < k; i++) {
        acc += s->c[i].p;
        if (r < acc) return s->c[i].id;
    }
    return s->c[k - 1].id;
}

int32_t loom_sampler_sample(loom_sampler *s, const float *logits, int n) {
    int32_t t = pick(s, logits, n);
    if (t >= 0 && loom_sampler_accept(s, t) < 0) return -1;
    return t;
}
