/* Token sampling: greedy, or temperature with optional top-k and top-p (nucleus) filtering. */
#include "loom.h"

#include "../graph/util.h"

#include <math.h>
#include <stdlib.h>

struct loom_sampler {
    loom_sampler_opts o;
    uint64_t rng;
    int cap;
    int *idx;
    float *prob;
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
    free(s->idx);
    free(s->prob);
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

static const float *sort_key;
static int by_prob_desc(const void *a, const void *b) {
    float x = sort_key[*(const int *)a], y = sort_key[*(const int *)b];
    return (x < y) - (x > y);
}

int32_t loom_sampler_sample(loom_sampler *s, const float *logits, int n) {
    if (s->o.temperature <= 0 || s->o.top_k == 1) return argmax(logits, n);
    if (n > s->cap) {
        int *idx = realloc(s->idx, (size_t)n * sizeof *idx);
        float *prob = realloc(s->prob, (size_t)n * sizeof *prob);
        if (idx) s->idx = idx;
        if (prob) s->prob = prob;
        if (!idx || !prob) return argmax(logits, n); /* out of memory: degrade to greedy */
        s->cap = n;
    }
    float mx = logits[argmax(logits, n)], sum = 0;
    for (int i = 0; i < n; i++) {
        s->prob[i] = expf((logits[i] - mx) / s->o.temperature);
        sum += s->prob[i];
        s->idx[i] = i;
    }
    for (int i = 0; i < n; i++) s->prob[i] /= sum;
    int k = n;
    if (s->o.top_k > 0 && s->o.top_k < n) k = s->o.top_k;
    if (k < n || s->o.top_p < 1.0f) {
        sort_key = s->prob;
        qsort(s->idx, (size_t)n, sizeof *s->idx, by_prob_desc);
    }
    if (s->o.top_p < 1.0f) {
        float c = 0;
        for (int i = 0; i < k; i++) {
            c += s->prob[s->idx[i]];
            if (c >= s->o.top_p) {
                k = i + 1;
                break;
            }
        }
    }
    float total = 0;
    for (int i = 0; i < k; i++) total += s->prob[s->idx[i]];
    float r = next_uniform(s) * total, c = 0;
    for (int i = 0; i < k; i++) {
        c += s->prob[s->idx[i]];
        if (r < c) return s->idx[i];
    }
    return s->idx[k - 1];
}
