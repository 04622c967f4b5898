/* Token sampling: greedy, or temperature with optional top-k and top-p (nucleus) filtering. */
#include "loom.h"

#include "core/util.h"

#include <math.h>
#include <stdlib.h>

typedef struct { float p; int id; } cand;

struct loom_sampler {
    loom_sampler_opts o;
    uint64_t rng;
    int cap;
    cand *c;
};

loom_sampler *loom_sampler_new(const loom_sampler_opts *o) {
    loom_sampler *s = loom_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->o = *o;
    s->rng = o->seed ? o->seed : 0x9e3779b97f4a7c15ULL;
    return s;
}

void loom_sampler_free(loom_sampler *s) {
    if (!s) return;
    free(s->c);
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

int32_t loom_sampler_sample(loom_sampler *s, const float *logits, int n) {
    /* one NaN made every comparison false: argmax kept index 0 and sampling picked the last id */
    if (loom_logits_check(logits, n) < 0) return -1;
    if (s->o.temperature <= 0 || s->o.top_k == 1) return argmax(logits, n);
    if (n > s->cap) {
        cand *c = realloc(s->c, (size_t)n * sizeof *c);
        if (!c) return argmax(logits, n); /* out of memory: degrade to greedy */
        s->c = c;
        s->cap = n;
    }
    float mx = logits[argmax(logits, n)], sum = 0;
    for (int i = 0; i < n; i++) {
        s->c[i].p = expf((logits[i] - mx) / s->o.temperature);
        s->c[i].id = i;
        sum += s->c[i].p;
    }
    for (int i = 0; i < n; i++) s->c[i].p /= sum;
    int k = n;
    if (s->o.top_k > 0 && s->o.top_k < n) k = s->o.top_k;
    if (k < n || s->o.top_p < 1.0f) qsort(s->c, (size_t)n, sizeof *s->c, by_prob_desc);
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
    float total = 0;
    for (int i = 0; i < k; i++) total += s->c[i].p;
    float r = next_uniform(s) * total, acc = 0;
    for (int i = 0; i < k; i++) {
        acc += s->c[i].p;
        if (r < acc) return s->c[i].id;
    }
    return s->c[k - 1].id;
}
