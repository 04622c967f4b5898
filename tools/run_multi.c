/* loom run with several sequences (docs/batching.md): several prompts decoded together in one
 * graph per step, --parallel N sampled continuations of each prompt sharing its cached prefix, and
 * --beams K beam search. Each result is printed, labelled, as soon as it is complete. */
#include "tools/run_multi.h"

#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct mseq {
    int id, prompt;    /* session sequence, prompt index */
    int32_t *tok;      /* prompt + generated */
    int n, n_prompt;
    loom_sampler *smp;
    bool done;
} mseq;

static void print_result(const run_multi_opts *o, const char *label, const int32_t *tok, int n, const char *extra) {
    printf("[%s]%s ", label, extra ? extra : "");
    if (o->tok && !o->print_ids) {
        size_t len;
        char *text = loom_tokenizer_decode(o->tok, tok, (size_t)n, LOOM_TOK_SKIP_SPECIAL, &len);
        if (text) fwrite(text, 1, len, stdout);
        free(text);
    } else {
        for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", tok[i]);
    }
    printf("\n");
    fflush(stdout);
}

static bool is_end(const run_multi_opts *o, int32_t t) {
    return o->tok ? loom_tokenizer_is_eog(o->tok, t) : t == o->eos_id;
}

static int run_beams(loom_session *s, const run_multi_opts *o, int32_t *const *prompts, const int *lens, int n_prompts) {
    loom_beam_opts bo = {.num_beams = o->beams, .num_return = o->beams, .max_new_tokens = o->n_gen,
                         .length_penalty = o->length_penalty, .early_stopping = o->early_stopping,
                         .eos_id = o->eos_id};
    loom_beam_hyp h[64];
    for (int p = 0; p < n_prompts; p++) {
        int n = loom_beam_search(s, prompts[p], lens[p], &bo, h);
        if (n < 0) {
            if (n_prompts > 1) loom_err_prefix("prompt %d", p + 1);
            return -1;
        }
        for (int r = 0; r < n; r++) {
            int32_t *all = malloc((size_t)(lens[p] + h[r].n) * sizeof *all);
            if (!all) {
                loom_beam_hyps_free(h, n);
                return loom_err("out of memory");
            }
            memcpy(all, prompts[p], (size_t)lens[p] * sizeof *all);
            memcpy(all + lens[p], h[r].tokens, (size_t)h[r].n * sizeof *all);
            char label[32], extra[48];
            if (n_prompts > 1) snprintf(label, sizeof label, "%d.%d", p + 1, r + 1);
            else snprintf(label, sizeof label, "%d", r + 1);
            snprintf(extra, sizeof extra, " score=%.5f", h[r].score);
            print_result(o, label, all, lens[p] + h[r].n, extra);
            free(all);
        }
        loom_beam_hyps_free(h, n);
    }
    return 0;
}

/* Sample each live sequence's next token from its logits row; finished ones are printed. */
static int sample_step(const run_multi_opts *o, mseq *q, int n_q, const float *logits, const int *row_of, int V,
                       int32_t *next) {
    for (int i = 0; i < n_q; i++) {
        if (q[i].done) continue;
        int32_t t = loom_sampler_sample(q[i].smp, logits + (size_t)row_of[i] * V, V);
        if (t < 0) {
            loom_err_prefix("sequence %d, generation step %d", i + 1, q[i].n - q[i].n_prompt + 1);
            return -1;
        }
        bool end = is_end(o, t) || q[i].n - q[i].n_prompt >= o->n_gen;
        if (!end) {
            q[i].tok[q[i].n++] = t;
            end = q[i].n - q[i].n_prompt >= o->n_gen; /* the last token needs no evaluation */
        }
        next[i] = t;
        if (end) {
            q[i].done = true;
            char label[32];
            if (o->parallel > 1) snprintf(label, sizeof label, "%d.%d", q[i].prompt + 1, i % o->parallel + 1);
            else snprintf(label, sizeof label, "%d", q[i].prompt + 1);
            print_result(o, label, q[i].tok, q[i].n, NULL);
        }
    }
    return 0;
}

static int run_sampled(loom_session *s, const run_multi_opts *o, int32_t *const *prompts, const int *lens,
                       int n_prompts, int V) {
    int N = o->parallel > 1 ? o->parallel : 1, n_q = n_prompts * N, total = 0, rc = -1;
    mseq *q = calloc((size_t)n_q, sizeof *q);
    int *row_of = malloc((size_t)n_q * sizeof *row_of);
    int32_t *next = malloc((size_t)n_q * sizeof *next), *bt = NULL, *bs = NULL;
    for (int p = 0; p < n_prompts; p++) total += lens[p];
    bt = malloc((size_t)(total > n_q ? total : n_q) * sizeof *bt);
    bs = malloc((size_t)(total > n_q ? total : n_q) * sizeof *bs);
    if (!q || !row_of || !next || !bt || !bs) {
        loom_err("out of memory");
        goto done;
    }
    for (int i = 0; i < n_q; i++) q[i].id = -1;
    /* one packed prefill of every prompt; the parallel copies are forks of it */
    int n = 0;
    for (int p = 0; p < n_prompts; p++) {
        mseq *m = &q[p * N];
        if ((m->id = loom_seq_new(s)) < 0) goto done;
        for (int i = 0; i < lens[p]; i++) bt[n] = prompts[p][i], bs[n++] = m->id;
    }
    loom_batch b = {.n = n, .tokens = bt, .seq = bs};
    if (loom_session_eval_batch(s, &b) < 0) goto done;
    for (int i = 0; i < n_q; i++) {
        mseq *m = &q[i];
        m->prompt = i / N;
        if (i % N && (m->id = loom_seq_fork(s, q[i - i % N].id)) < 0) goto done;
        m->n = m->n_prompt = lens[m->prompt];
        loom_sampler_opts so = o->sampler;
        so.seed += (uint64_t)i; /* distinct continuations */
        m->tok = malloc((size_t)(m->n + o->n_gen) * sizeof *m->tok);
        m->smp = loom_sampler_new(&so);
        if (!m->tok || !m->smp) goto done;
        memcpy(m->tok, prompts[m->prompt], (size_t)m->n * sizeof *m->tok);
        row_of[i] = m->prompt; /* the prefill's logits: one row per prompt */
    }
    const float *logits = loom_session_logits(s, NULL);
    for (;;) {
        if (sample_step(o, q, n_q, logits, row_of, V, next) < 0) goto done;
        n = 0;
        for (int i = 0; i < n_q; i++) {
            if (q[i].done) continue;
            bt[n] = next[i];
            bs[n] = q[i].id;
            row_of[i] = n++;
        }
        if (!n) break;
        b.n = n;
        if (loom_session_eval_batch(s, &b) < 0) goto done;
        logits = loom_session_logits(s, NULL);
    }
    rc = 0;
done:
    for (int i = 0; q && i < n_q; i++) {
        if (q[i].id >= 0) loom_seq_free(s, q[i].id);
        free(q[i].tok);
        loom_sampler_free(q[i].smp);
    }
    free(q), free(row_of), free(next), free(bt), free(bs);
    return rc;
}

int run_multi(loom_session *s, const run_multi_opts *o, int32_t *const *prompts, const int *lens, int n_prompts,
              int n_vocab) {
    if (o->beams > 0) return run_beams(s, o, prompts, lens, n_prompts);
    return run_sampled(s, o, prompts, lens, n_prompts, n_vocab);
}
