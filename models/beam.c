/* Beam search, written to make the same choices as transformers 5.17's _beam_search (greedy,
 * batch of one): the same candidate count (2K), the same -1e9 masking in float32, the same
 * finished-set merge and the same stopping heuristic, so the fixtures' beam_reference files match
 * token for token. The running beams are session sequences: a step forks each chosen parent (its
 * cache is shared, copy on write) and evaluates the K new tokens in one batch. */
#include "loom.h"

#include "core/util.h"
#include "models/session_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NEG 1.0e9f /* transformers' mask value */

typedef struct cand {
    float score;   /* accumulated log-prob */
    int parent, token;
    bool hits;     /* EOS or the length limit */
} cand;

typedef struct fin {
    float score;
    bool done;
    int n;
    int32_t *tok; /* [max_new] */
} fin;

typedef struct beam_state {
    int K, KK, V, max_new;
    int n_prompt;      /* for errors: the position a step's token takes is n_prompt + step - 1 */
    float *lp;         /* [K, V] log-softmax of each running beam's last logits */
    float *run_score;  /* [K] */
    int32_t *run_tok;  /* [K, max_new] generated tokens of each running beam */
    int *sid;          /* [K] session sequence of each running beam */
    cand *top;         /* [KK] */
    fin *f;            /* [K] the finished set, best first */
    fin *merge;        /* [K + KK] */
} beam_state;

static void log_softmax(float *y, const float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)x[i] - mx);
    float lse = (float)log(sum);
    for (int i = 0; i < n; i++) y[i] = (x[i] - mx) - lse;
}

/* The best KK of score[b] + lp[b][v] over all beams and tokens, best first (ties: lower index). */
static void top_candidates(beam_state *st) {
    int n = 0;
    for (int b = 0; b < st->K; b++)
        for (int v = 0; v < st->V; v++) {
            float sc = st->lp[(size_t)b * st->V + v] + st->run_score[b];
            if (n == st->KK && !(sc > st->top[n - 1].score)) continue;
            int i = n < st->KK ? n++ : n - 1;
            while (i > 0 && sc > st->top[i - 1].score) {
                st->top[i] = st->top[i - 1];
                i--;
            }
            st->top[i] = (cand){sc, b, v, false};
        }
}


/* transformers' _update_finished_beams: the first K candidates that finished, length-normalised,
 * merged with the finished set; the best K stay. */
static int update_finished(beam_state *st, const loom_beam_opts *o, int gen_len, bool unsat) {
    bool all_done = true;
    for (int i = 0; i < st->K; i++) all_done &= st->f[i].done;
    float div = (float)pow((double)gen_len, (double)o->length_penalty);
    int m = 0;
    for (int i = 0; i < st->K; i++) st->merge[m++] = st->f[i];
    for (int c = 0; c < st->KK; c++) {
        const cand *cd = &st->top[c];
        bool did = cd->hits && c < st->K;
        float sc = cd->score / div;
        sc += (all_done && o->early_stopping) ? -NEG : 0.0f;
        sc += unsat ? 0.0f : -NEG;
        sc += did ? 0.0f : -NEG;
        fin *d = &st->merge[m++];
        d->score = sc;
        d->done = did;
        d->n = gen_len;
        d->tok = NULL; /* filled only if kept */
    }
    /* stable order: a kept candidate's index is recovered from its position */
    int order[256], nm = m;
    if (nm > 256) return loom_err("beam search: %d beams is too many", st->K);
    for (int i = 0; i < nm; i++) order[i] = i;
    for (int i = 1; i < nm; i++) { /* insertion sort by score, descending, stable */
        int k = order[i], j = i;
        while (j > 0 && st->merge[order[j - 1]].score < st->merge[k].score) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = k;
    }
    /* build the new finished set; old entries keep their buffers, new ones copy the candidate */
    fin nf[128];
    bool used_old[128] = {0};
    for (int i = 0; i < st->K; i++) {
        int k = order[i];
        nf[i] = st->merge[k];
        if (k < st->K) used_old[k] = true;
    }
    int32_t *spare[128];
    int n_spare = 0;
    for (int i = 0; i < st->K; i++)
        if (!used_old[i]) spare[n_spare++] = st->f[i].tok;
    for (int i = 0; i < st->K; i++) {
        int k = order[i];
        if (k < st->K) continue;
        const cand *cd = &st->top[k - st->K];
        nf[i].tok = spare[--n_spare];
        memcpy(nf[i].tok, st->run_tok + (size_t)cd->parent * st->max_new, (size_t)(gen_len - 1) * sizeof(int32_t));
        nf[i].tok[gen_len - 1] = cd->token;
    }
    memcpy(st->f, nf, (size_t)st->K * sizeof *nf);
    return 0;
}

/* The next running beams: the best K candidates that did not finish (finished ones are masked). */
static void next_running(beam_state *st, cand *next) {
    cand tmp[256];
    for (int c = 0; c < st->KK; c++) {
        tmp[c] = st->top[c];
        tmp[c].score += st->top[c].hits ? -NEG : 0.0f;
    }
    for (int i = 0; i < st->K; i++) { /* selection, stable */
        int best = -1;
        for (int c = 0; c < st->KK; c++)
            if (tmp[c].parent >= 0 && (best < 0 || tmp[c].score > tmp[best].score)) best = c;
        next[i] = tmp[best];
        tmp[best].parent = -1;
    }
}

static bool heuristic_unsat(const beam_state *st, const loom_beam_opts *o, int gen_len, bool unsat) {
    float best = st->run_score[0] / (float)pow((double)gen_len, (double)o->length_penalty);
    float worst = st->f[0].score;
    for (int i = 1; i < st->K; i++) worst = st->f[i].score < worst ? st->f[i].score : worst;
    bool any = false;
    for (int i = 0; i < st->K; i++) any |= best > (st->f[i].done ? worst : -NEG);
    return unsat && any;
}

static void state_free(beam_state *st) {
    if (st->f)
        for (int i = 0; i < st->K; i++) free(st->f[i].tok);
    free(st->lp), free(st->run_score), free(st->run_tok), free(st->sid), free(st->top), free(st->f), free(st->merge);
}

static int state_init(beam_state *st, const loom_beam_opts *o, int V) {
    memset(st, 0, sizeof *st);
    st->K = o->num_beams;
    st->KK = 2 * o->num_beams; /* max(2, 1 + n_eos) * K with at most one EOS id */
    st->V = V;
    st->max_new = o->max_new_tokens;
    st->lp = loom_malloc((size_t)st->K * (size_t)V * sizeof(float));
    st->run_score = loom_calloc((size_t)st->K, sizeof(float));
    st->run_tok = loom_calloc((size_t)st->K * (size_t)st->max_new, sizeof(int32_t));
    st->sid = loom_malloc((size_t)st->K * sizeof(int));
    st->top = loom_malloc((size_t)st->KK * sizeof(cand));
    st->f = loom_calloc((size_t)st->K, sizeof(fin));
    st->merge = loom_calloc((size_t)(st->K + st->KK), sizeof(fin));
    if (!st->lp || !st->run_score || !st->run_tok || !st->sid || !st->top || !st->f || !st->merge) return -1;
    for (int i = 0; i < st->K; i++) {
        st->sid[i] = -1;
        st->f[i].score = -NEG;
        if (!(st->f[i].tok = loom_calloc((size_t)st->max_new, sizeof(int32_t)))) return -1;
    }
    for (int i = 1; i < st->K; i++) st->run_score[i] = -NEG; /* only beam 0 starts live */
    return 0;
}

/* Fork the chosen parents into the new running beams, free the old ones, evaluate the new tokens. */
/* Non-finite logits stop the search with an error naming the step (1-based), its position and
 * the beam, as loom run's sampler path names its step. */
static int logits_ok(const beam_state *st, const float *l, int step, int beam) {
    if (loom_logits_check(l, st->V) == 0) return 0;
    loom_err_prefix("beam search, generation step %d (position %d), beam %d", step, st->n_prompt + step - 1, beam + 1);
    return -1;
}

static int advance(loom_session *s, beam_state *st, const cand *next, int t) {
    int nsid[128];
    int32_t tok[128], sq[128];
    int32_t *nrun = loom_malloc((size_t)st->K * (size_t)st->max_new * sizeof(int32_t));
    if (!nrun) return -1;
    for (int i = 0; i < st->K; i++) {
        nsid[i] = loom_seq_fork(s, st->sid[next[i].parent]);
        if (nsid[i] < 0) {
            while (i-- > 0) loom_seq_free(s, nsid[i]);
            free(nrun);
            return -1;
        }
        memcpy(nrun + (size_t)i * st->max_new, st->run_tok + (size_t)next[i].parent * st->max_new,
               (size_t)t * sizeof(int32_t));
        nrun[(size_t)i * st->max_new + t] = next[i].token;
        st->run_score[i] = next[i].score;
        tok[i] = next[i].token;
        sq[i] = nsid[i];
    }
    for (int i = 0; i < st->K; i++) {
        loom_seq_free(s, st->sid[i]);
        st->sid[i] = nsid[i];
    }
    memcpy(st->run_tok, nrun, (size_t)st->K * (size_t)st->max_new * sizeof(int32_t));
    free(nrun);
    loom_batch b = {.n = st->K, .tokens = tok, .seq = sq};
    if (loom_session_eval_batch(s, &b) < 0) return -1;
    const float *l = loom_session_logits(s, NULL);
    for (int i = 0; i < st->K; i++) {
        if (logits_ok(st, l + (size_t)i * st->V, t + 2, i) < 0) return -1;
        log_softmax(st->lp + (size_t)i * st->V, l + (size_t)i * st->V, st->V);
    }
    return 0;
}

/* The prompt once, then K - 1 forks of it (transformers runs K copies whose scores start at -1e9). */
static int start(loom_session *s, beam_state *st, const int32_t *prompt, int n_prompt) {
    st->sid[0] = loom_seq_new(s);
    if (st->sid[0] < 0) return -1;
    int32_t *sq = loom_malloc((size_t)n_prompt * sizeof(int32_t));
    if (!sq) return -1;
    for (int i = 0; i < n_prompt; i++) sq[i] = st->sid[0];
    loom_batch b = {.n = n_prompt, .tokens = prompt, .seq = sq};
    int rc = loom_session_eval_batch(s, &b);
    free(sq);
    if (rc < 0 || logits_ok(st, loom_session_logits(s, NULL), 1, 0) < 0) return -1;
    log_softmax(st->lp, loom_session_logits(s, NULL), st->V);
    for (int i = 1; i < st->K; i++) {
        if ((st->sid[i] = loom_seq_fork(s, st->sid[0])) < 0) return -1;
        memcpy(st->lp + (size_t)i * st->V, st->lp, (size_t)st->V * sizeof(float));
    }
    return 0;
}

static int search(loom_session *s, beam_state *st, const loom_beam_opts *o, const int32_t *prompt, int n_prompt) {
    st->n_prompt = n_prompt;
    if (start(s, st, prompt, n_prompt) < 0) return -1;
    bool unsat = true;
    cand next[128];
    for (int t = 0; t < o->max_new_tokens; t++) {
        top_candidates(st);
        bool all_hit = true;
        for (int c = 0; c < st->KK; c++) {
            st->top[c].hits = st->top[c].token == o->eos_id || t + 1 >= o->max_new_tokens;
            all_hit &= st->top[c].hits;
        }
        next_running(st, next);
        if (update_finished(st, o, t + 1, unsat) < 0) return -1;
        for (int i = 0; i < st->K; i++) st->run_score[i] = next[i].score; /* for the heuristic */
        unsat = heuristic_unsat(st, o, t + 1, unsat);
        bool all_done = true;
        for (int i = 0; i < st->K; i++) all_done &= st->f[i].done;
        if (!unsat || (all_done && o->early_stopping) || all_hit) break;
        if (advance(s, st, next, t) < 0) return -1;
    }
    return 0;
}

int loom_beam_search(loom_session *s, const int32_t *prompt, int n_prompt, const loom_beam_opts *o,
                     loom_beam_hyp *out) {
    if (!o || o->num_beams < 1 || o->num_beams > 64)
        return loom_err("beam search: the number of beams must be 1..64 (got %d)", o ? o->num_beams : 0);
    if (o->num_return < 1 || o->num_return > o->num_beams)
        return loom_err("beam search: %d sequences cannot be returned from %d beams", o->num_return, o->num_beams);
    if (o->max_new_tokens < 1) return loom_err("beam search: max_new_tokens must be >= 1");
    if (n_prompt < 1) return loom_err("beam search: empty prompt");
    beam_state st;
    int rc = state_init(&st, o, loom_session_n_vocab(s));
    if (rc == 0) rc = search(s, &st, o, prompt, n_prompt);
    for (int i = 0; i < st.K && st.sid; i++)
        if (st.sid[i] >= 0) loom_seq_free(s, st.sid[i]);
    if (rc == 0) {
        for (int i = 0; i < o->num_return; i++) {
            out[i].n = st.f[i].n;
            out[i].score = st.f[i].score;
            out[i].tokens = st.f[i].tok; /* hand the buffer over */
            st.f[i].tok = NULL;
        }
    }
    state_free(&st);
    return rc < 0 ? -1 : o->num_return;
}

void loom_beam_hyps_free(loom_beam_hyp *h, int n) {
    for (int i = 0; h && i < n; i++) {
        free(h[i].tokens);
        h[i].tokens = NULL;
    }
}
