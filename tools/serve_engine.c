/* The scheduler of loom serve: one thread owns the session (a paged KV cache of many sequences)
 * and loops over steps. Between steps it admits queued requests (while sequences and cache blocks
 * are free), drops cancelled ones, then evaluates one batch: a decode token of every sequence that
 * is generating and the prompt tokens of the requests still reading theirs, oldest first, up to a
 * prefill budget per step: new requests join the running batch (several in one step) and finished
 * ones leave it without anyone waiting for the batch to drain.
 * A request with n choices prefills its prompt once and forks n-1 sequences from it (the prompt's
 * cache blocks are shared, copy on write). Cache blocks are reserved at admission for the whole
 * prompt + max_tokens of every choice, so a running request never meets a full cache. With the
 * prefix cache a request starts from the cached blocks of its prompt's longest cached prefix
 * (earlier requests' prompts and replies) and evaluates only the rest; cached blocks nobody holds
 * are not reserved: the pool evicts them when it needs them. */
#include "tools/serve.h"

#include "tools/commands.h"

#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const double SERVE_TTFT_BUCKETS[12] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

#define BLOCK 16 /* rows per cache block (models/kvpool.c) */

typedef enum { SLOT_FREE, SLOT_PREFILL, SLOT_WAIT_FORK, SLOT_DECODE } slot_state;

typedef struct slot {
    slot_state st;
    serve_job *j;
    int choice, seq;
    int done;          /* prompt tokens evaluated (SLOT_PREFILL) */
    int32_t last;      /* sampled, to be evaluated next step (SLOT_DECODE) */
    loom_sampler *smp;
    loom_tokenizer_stream *ts;
    double admitted;
} slot;

struct serve_engine {
    loom_session *s;
    loom_tokenizer *tok;
    int n_vocab;
    serve_engine_opts o;
    pthread_t th;
    bool started;
    pthread_mutex_t mu; /* queue, stats, stop */
    pthread_cond_t cv;
    bool stop;
    serve_job *q_head, *q_tail;
    int n_queued;
    slot *slots;
    int n_running_jobs;
    int blocks_total, blocks_reserved;
    serve_stats st;
    double snap_t;
    uint64_t snap_gen;
    int delay_us; /* LOOM_SERVE_STEP_DELAY_MS: a pause after each step, so tests can fill the queue */
    int32_t *forced; /* LOOM_SERVE_TEST_REPLY: every reply is these tokens, then end of generation */
    int n_forced;
    /* one decode step's scratch */
    int32_t *bt, *bs;
    bool *bl;      /* which rows want logits */
    int *bslot;    /* each row's slot */
    int *pf_take;  /* per slot: prompt tokens in this step's batch */
    int *pf_slot;  /* the slots prefilling in this step */
};

static int blocks_for(int tokens) { return (tokens + BLOCK - 1) / BLOCK + 1; }

/* blocks a job may ever hold: the prompt once, then each choice's own reply (plus a copied block) */
static int job_blocks(const serve_job *j) {
    return blocks_for(j->n_prompt + j->max_tokens) + (j->req.n - 1) * blocks_for(j->max_tokens + BLOCK);
}

serve_job *serve_job_new(void) {
    serve_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 1;
    j->req.max_tokens = -1;
    j->keep_token = -1;
    return j;
}

void serve_job_unref(serve_job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left) return;
    serve_req_free(&j->req);
    free(j->prompt);
    for (int i = 0; i < SERVE_MAX_N; i++) free(j->ch[i].text);
    free(j->error);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* ---- a choice's text: stop strings, and how much of it may be sent yet ---------------------- */
static int text_append(serve_choice *c, const char *p, size_t n) {
    loom_textbuf b = {c->text, c->len, c->cap};
    int r = loom_textbuf_add(&b, p, n);
    c->text = b.s, c->len = b.len, c->cap = b.cap;
    return r;
}

/* After appending bytes from `from` on: cut the text at the first stop string (returns true), else
 * set c->ready below any tail that could still become one (loom_stop_scan, tools/common.c). */
static bool apply_stops(serve_job *j, serve_choice *c, size_t from) {
    size_t cut, safe;
    int k = loom_stop_scan(c->text ? c->text : "", c->len, from, (const char *const *)j->req.stop, j->req.n_stop, &cut, &safe);
    if (k >= 0) {
        c->len = cut;
        c->text[cut] = 0;
    }
    c->ready = safe;
    return k >= 0;
}

/* ---- slots ----------------------------------------------------------------------------------- */
static void slot_release(serve_engine *e, slot *sl) {
    if (sl->st == SLOT_FREE) return;
    if (sl->seq >= 0) loom_seq_free(e->s, sl->seq);
    loom_sampler_free(sl->smp);
    loom_tokenizer_stream_free(sl->ts);
    memset(sl, 0, sizeof *sl);
    sl->seq = -1;
    sl->st = SLOT_FREE;
}

/* Every choice of job j has ended (finished, cancelled or failed): release it. */
static void job_end(serve_engine *e, serve_job *j, const char *error) {
    for (int i = 0; i < e->o.max_seqs; i++)
        if (e->slots[i].j == j) slot_release(e, &e->slots[i]);
    pthread_mutex_lock(&e->mu);
    e->blocks_reserved -= job_blocks(j);
    e->n_running_jobs--;
    if (j->cancelled) e->st.requests_cancelled++;
    else e->st.requests_done++;
    pthread_mutex_unlock(&e->mu);
    pthread_mutex_lock(&j->mu);
    if (error && !j->error) {
        size_t n = strlen(error);
        j->error = malloc(n + 1);
        if (j->error) memcpy(j->error, error, n + 1);
    }
    for (int i = 0; i < j->req.n; i++)
        if (!j->ch[i].finish) j->ch[i].finish = error || j->cancelled ? "cancelled" : "stop";
    j->done = true;
    j->events++;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    serve_job_unref(j);
}

/* The choice of slot sl ends with reason why; the job ends with its last choice. */
static void choice_finish(serve_engine *e, slot *sl, const char *why, bool by_stop_string) {
    serve_job *j = sl->j;
    pthread_mutex_lock(&j->mu);
    serve_choice *c = &j->ch[sl->choice];
    size_t rl;
    const char *rest = sl->ts ? loom_tokenizer_stream_finish(sl->ts, &rl) : NULL;
    if (rest && rl && !by_stop_string) { /* bytes held for an incomplete character: keep them at the end */
        size_t from = c->len;
        text_append(c, rest, rl);
        apply_stops(j, c, from);
    }
    c->finish = why;
    c->ready = c->len;
    j->n_done++;
    bool all = j->n_done == j->req.n;
    j->events++;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    slot_release(e, sl);
    if (all) job_end(e, j, NULL);
}

/* A token sampled for slot sl: add it to the choice's text, or end the choice. */
static void on_token(serve_engine *e, slot *sl, int32_t t, double now) {
    serve_job *j = sl->j;
    if (e->forced && t >= 0) { /* the test hook: the model ran and was sampled; its token is replaced */
        int k = j->ch[sl->choice].n_gen; /* written by this thread only */
        t = k < e->n_forced ? e->forced[k] : loom_tokenizer_eos(e->tok);
    }
    if (t < 0) {
        job_end(e, j, loom_last_error());
        return;
    }
    bool eog = loom_tokenizer_is_eog(e->tok, t);
    pthread_mutex_lock(&j->mu);
    serve_choice *c = &j->ch[sl->choice];
    bool first = j->t_first == 0;
    if (first) j->t_first = now;
    bool stopped = false;
    if (!eog) {
        c->n_gen++;
        size_t n = 0, from = c->len;
        const char *p;
        if (t == j->keep_token) { /* a control token the reply keeps (the stream leaves them out) */
            p = loom_tokenizer_stream_finish(sl->ts, &n); /* bytes held before it, if any */
            if (p && n) text_append(c, p, n);
            p = loom_tokenizer_token_text(e->tok, t, &n);
        } else {
            p = loom_tokenizer_stream_put(sl->ts, t, &n);
        }
        if (p && n) text_append(c, p, n);
        stopped = apply_stops(j, c, from);
        j->events++;
        pthread_cond_broadcast(&j->cv);
    }
    int n_gen = c->n_gen;
    pthread_mutex_unlock(&j->mu);
    pthread_mutex_lock(&e->mu);
    if (!eog) e->st.gen_tokens++;
    if (first) {
        double ttft = now - j->t_submit;
        e->st.ttft_sum += ttft;
        e->st.ttft_count++;
        for (int b = 0; b < 12; b++)
            if (ttft <= SERVE_TTFT_BUCKETS[b]) e->st.ttft_bucket[b]++;
    }
    pthread_mutex_unlock(&e->mu);
    if (eog || stopped) {
        choice_finish(e, sl, "stop", stopped);
    } else if (n_gen >= j->max_tokens || loom_seq_pos(e->s, sl->seq) + 1 >= e->o.seq_ctx) {
        choice_finish(e, sl, "length", false);
    } else {
        sl->last = t;
        sl->st = SLOT_DECODE;
    }
}

static slot *slot_new(serve_engine *e, serve_job *j, int choice, int seq) {
    for (int i = 0; i < e->o.max_seqs; i++) {
        slot *sl = &e->slots[i];
        if (sl->st != SLOT_FREE) continue;
        loom_sampler_opts so = j->req.sampling;
        so.seed += (uint64_t)choice; /* choice i samples with seed + i */
        sl->smp = loom_sampler_new(&so);
        sl->ts = loom_tokenizer_stream_new(e->tok, LOOM_TOK_SKIP_SPECIAL);
        bool ok = sl->smp && sl->ts;
        for (int k = 0; ok && k < j->n_prompt; k++) ok = loom_sampler_accept(sl->smp, j->prompt[k]) == 0;
        sl->j = j;
        sl->choice = choice;
        sl->seq = seq;
        sl->st = SLOT_WAIT_FORK;
        sl->admitted = loom_now();
        if (!ok) {
            slot_release(e, sl);
            return NULL;
        }
        return sl;
    }
    return NULL;
}

/* Admit queued jobs while sequences and cache blocks allow (called with e->mu held). */
static void admit(serve_engine *e) {
    while (e->q_head) {
        serve_job *j = e->q_head;
        int free_slots = 0;
        for (int i = 0; i < e->o.max_seqs; i++) free_slots += e->slots[i].st == SLOT_FREE;
        pthread_mutex_lock(&j->mu);
        bool cancelled = j->cancelled;
        pthread_mutex_unlock(&j->mu);
        if (!cancelled && (free_slots < j->req.n || e->blocks_reserved + job_blocks(j) > e->blocks_total)) return;
        e->q_head = j->next;
        if (!e->q_head) e->q_tail = NULL;
        e->n_queued--;
        j->next = NULL;
        e->blocks_reserved += job_blocks(j);
        e->n_running_jobs++;
        pthread_mutex_unlock(&e->mu);
        int seq = cancelled ? -1
                  : e->o.prefix_cache ? loom_seq_new_cached(e->s, j->prompt, j->n_prompt)
                                      : loom_seq_new(e->s);
        slot *sl = seq >= 0 ? slot_new(e, j, 0, seq) : NULL;
        if (!sl) {
            if (seq >= 0) loom_seq_free(e->s, seq);
            job_end(e, j, cancelled ? NULL : loom_last_error());
        } else {
            sl->st = SLOT_PREFILL;
            sl->done = j->n_cached = loom_seq_pos(e->s, seq); /* the cached prefix is in already */
            pthread_mutex_lock(&e->mu);
            e->st.prompt_tokens_cached += (uint64_t)sl->done;
            pthread_mutex_unlock(&e->mu);
            for (int c = 1; c < j->req.n; c++) slot_new(e, j, c, -1); /* forked when the prompt is in */
        }
        pthread_mutex_lock(&e->mu);
    }
}

static void drop_cancelled(serve_engine *e) {
    for (int i = 0; i < e->o.max_seqs; i++) {
        serve_job *j = e->slots[i].j;
        if (!j) continue;
        pthread_mutex_lock(&j->mu);
        bool c = j->cancelled;
        pthread_mutex_unlock(&j->mu);
        if (c) job_end(e, j, NULL);
    }
}

/* The prompt of slot sl is in (its last row's logits at `logits`): fork the job's other choices
 * from it, then every choice samples its first token. */
static void prompt_done(serve_engine *e, slot *sl, const float *logits, double now) {
    serve_job *j = sl->j;
    slot *chs[SERVE_MAX_N] = {sl};
    int nc = 1;
    for (int i = 0; i < e->o.max_seqs; i++) {
        slot *o = &e->slots[i];
        if (o->j != j || o == sl) continue;
        o->seq = loom_seq_fork(e->s, sl->seq);
        if (o->seq < 0) {
            job_end(e, j, loom_last_error());
            return;
        }
        chs[nc++] = o;
    }
    for (int c = 0; c < nc; c++) {
        slot *s = chs[c];
        if (s->st == SLOT_FREE || s->j != j) continue; /* the job ended under an earlier choice */
        on_token(e, s, loom_sampler_sample(s->smp, logits, e->n_vocab), now);
    }
}

/* One step, one batch: a decode token of every generating sequence, then prompt tokens of the
 * requests still reading theirs, oldest first, as many as the prefill budget (prefill_chunk
 * tokens a step) allows: several new requests start in the same step, and short prompts are read
 * whole. Logits are kept for the decode rows and for the last row of each prompt that completes. */
static void step(serve_engine *e) {
    int n = 0, n_pf = 0;
    for (int i = 0; i < e->o.max_seqs; i++) {
        slot *sl = &e->slots[i];
        if (sl->st != SLOT_DECODE) continue;
        e->bt[n] = sl->last;
        e->bs[n] = sl->seq;
        e->bl[n] = true;
        e->bslot[n++] = i;
    }
    int budget = e->o.prefill_chunk;
    while (budget > 0) {
        slot *sl = NULL;
        int si = -1;
        for (int i = 0; i < e->o.max_seqs; i++) {
            slot *o = &e->slots[i];
            if (o->st != SLOT_PREFILL || e->pf_take[i]) continue;
            if (!sl || o->admitted < sl->admitted) sl = o, si = i;
        }
        if (!sl) break;
        serve_job *j = sl->j;
        int take = j->n_prompt - sl->done < budget ? j->n_prompt - sl->done : budget;
        for (int k = 0; k < take; k++) {
            e->bt[n] = j->prompt[sl->done + k];
            e->bs[n] = sl->seq;
            e->bl[n] = k == take - 1 && sl->done + take == j->n_prompt;
            e->bslot[n++] = si;
        }
        e->pf_take[si] = take;
        e->pf_slot[n_pf++] = si;
        budget -= take;
    }
    if (!n) return;
    loom_batch b = {.n = n, .tokens = e->bt, .seq = e->bs, .logits = e->bl};
    double t0 = loom_now();
    int rc = loom_session_eval_batch(e->s, &b);
    double t1 = loom_now();
    int prompt_tokens = 0;
    for (int p = 0; p < n_pf; p++) prompt_tokens += e->pf_take[e->pf_slot[p]];
    pthread_mutex_lock(&e->mu);
    e->st.busy_seconds += t1 - t0;
    e->st.prompt_tokens += (uint64_t)(rc < 0 ? 0 : prompt_tokens);
    e->st.steps++;
    pthread_mutex_unlock(&e->mu);
    if (rc < 0) { /* all or nothing: every request in the batch fails */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", loom_last_error());
        for (int i = 0; i < n; i++)
            if (e->slots[e->bslot[i]].j) job_end(e, e->slots[e->bslot[i]].j, msg);
        memset(e->pf_take, 0, (size_t)e->o.max_seqs * sizeof *e->pf_take);
        return;
    }
    for (int p = 0; p < n_pf; p++) e->slots[e->pf_slot[p]].done += e->pf_take[e->pf_slot[p]];
    memset(e->pf_take, 0, (size_t)e->o.max_seqs * sizeof *e->pf_take);
    int rows = 0;
    const float *logits = loom_session_logits(e->s, &rows);
    /* rows in batch order: the decode rows first, then each completed prompt's last row */
    for (int i = 0, r = 0; i < n && r < rows; i++) {
        if (!e->bl[i]) continue;
        const float *row = logits + (size_t)r++ * e->n_vocab;
        slot *sl = &e->slots[e->bslot[i]];
        if (sl->st == SLOT_DECODE) on_token(e, sl, loom_sampler_sample(sl->smp, row, e->n_vocab), t1);
        else if (sl->st == SLOT_PREFILL && sl->j && sl->done == sl->j->n_prompt) prompt_done(e, sl, row, t1);
        /* else: its job ended under an earlier row */
    }
}

static bool any_running(serve_engine *e) {
    for (int i = 0; i < e->o.max_seqs; i++)
        if (e->slots[i].st != SLOT_FREE) return true;
    return false;
}

static void *engine_main(void *arg) {
    serve_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->stop && !e->q_head && !any_running(e)) pthread_cond_wait(&e->cv, &e->mu);
        if (e->stop) {
            pthread_mutex_unlock(&e->mu);
            break;
        }
        admit(e);
        double now = loom_now();
        if (now - e->snap_t >= 2.0) {
            e->st.tok_per_s = (double)(e->st.gen_tokens - e->snap_gen) / (now - e->snap_t);
            e->snap_t = now;
            e->snap_gen = e->st.gen_tokens;
        }
        pthread_mutex_unlock(&e->mu);
        drop_cancelled(e);
        step(e);
        loom_prefix_stats ps = loom_session_prefix_stats(e->s);
        pthread_mutex_lock(&e->mu);
        e->st.prefix_blocks = ps.blocks;
        e->st.prefix_evictions = ps.evictions;
        pthread_mutex_unlock(&e->mu);
        if (e->delay_us) usleep((useconds_t)e->delay_us);
    }
    /* shutting down: whatever still runs or waits ends cancelled */
    for (int i = 0; i < e->o.max_seqs; i++)
        if (e->slots[i].j) {
            serve_job *j = e->slots[i].j;
            pthread_mutex_lock(&j->mu);
            j->cancelled = true;
            pthread_mutex_unlock(&j->mu);
            job_end(e, j, NULL);
        }
    pthread_mutex_lock(&e->mu);
    while (e->q_head) {
        serve_job *j = e->q_head;
        e->q_head = j->next;
        pthread_mutex_lock(&j->mu);
        j->cancelled = j->done = true;
        j->events++;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
        serve_job_unref(j);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

serve_engine *serve_engine_new(loom_session *s, loom_tokenizer *tok, int n_vocab, const serve_engine_opts *o) {
    serve_engine *e = loom_calloc(1, sizeof *e);
    if (!e) return NULL;
    e->s = s;
    e->tok = tok;
    e->n_vocab = n_vocab;
    e->o = *o;
    loom_session_prefix_cache(s, o->prefix_cache);
    e->blocks_total = loom_session_ctx(s) / BLOCK;
    int nb = o->max_seqs + o->prefill_chunk; /* a decode row per sequence and the prefill budget */
    e->slots = loom_calloc((size_t)o->max_seqs, sizeof *e->slots);
    e->bt = loom_calloc((size_t)nb, sizeof *e->bt);
    e->bs = loom_calloc((size_t)nb, sizeof *e->bs);
    e->bslot = loom_calloc((size_t)nb, sizeof *e->bslot);
    e->bl = loom_calloc((size_t)nb, sizeof *e->bl);
    e->pf_take = loom_calloc((size_t)o->max_seqs, sizeof *e->pf_take);
    e->pf_slot = loom_calloc((size_t)o->max_seqs, sizeof *e->pf_slot);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (!e->slots || !e->bt || !e->bs || !e->bslot || !e->bl || !e->pf_take || !e->pf_slot) {
        serve_engine_free(e);
        return NULL;
    }
    for (int i = 0; i < o->max_seqs; i++) e->slots[i].seq = -1;
    e->snap_t = loom_now();
    const char *d = getenv("LOOM_SERVE_STEP_DELAY_MS");
    if (d && atoi(d) > 0 && atoi(d) < 10000) e->delay_us = atoi(d) * 1000;
    const char *reply = getenv("LOOM_SERVE_TEST_REPLY");
    if (reply && *reply) {
        e->n_forced = loom_tokenizer_encode(tok, reply, strlen(reply), LOOM_TOK_PARSE_SPECIAL, &e->forced);
        if (e->n_forced <= 0 || loom_tokenizer_eos(tok) < 0) {
            loom_err("LOOM_SERVE_TEST_REPLY: cannot tokenize it, or the model has no EOS token");
            serve_engine_free(e);
            return NULL;
        }
        fprintf(stderr, "loom serve: test hook: every reply is LOOM_SERVE_TEST_REPLY (%d tokens)\n", e->n_forced);
    }
    if (pthread_create(&e->th, NULL, engine_main, e)) {
        loom_err("cannot start the engine thread");
        serve_engine_free(e);
        return NULL;
    }
    e->started = true;
    return e;
}

void serve_engine_free(serve_engine *e) {
    if (!e) return;
    if (e->started) {
        pthread_mutex_lock(&e->mu);
        e->stop = true;
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->th, NULL);
    }
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e->slots);
    free(e->bt);
    free(e->bs);
    free(e->bslot);
    free(e->bl);
    free(e->pf_take);
    free(e->pf_slot);
    free(e->forced);
    free(e);
}

int serve_engine_submit(serve_engine *e, serve_job *j) {
    if (j->req.n > e->o.max_seqs)
        return loom_err("n = %d exceeds the server's %d parallel sequences", j->req.n, e->o.max_seqs);
    if (job_blocks(j) > e->blocks_total)
        return loom_err("%d prompt tokens + max_tokens %d (x n = %d) exceed the server's KV cache of %d tokens",
                        j->n_prompt, j->max_tokens, j->req.n, e->blocks_total * BLOCK);
    pthread_mutex_lock(&e->mu);
    if (e->n_queued >= e->o.max_queue) {
        pthread_mutex_unlock(&e->mu);
        loom_err("the server is busy: %d requests are waiting (try again later)", e->n_queued);
        return 1;
    }
    pthread_mutex_lock(&j->mu);
    j->refs++; /* the engine's */
    j->t_submit = loom_now();
    pthread_mutex_unlock(&j->mu);
    if (e->q_tail) e->q_tail->next = j;
    else e->q_head = j;
    e->q_tail = j;
    e->n_queued++;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

void serve_engine_stats(serve_engine *e, serve_stats *st, int *queued, int *running) {
    pthread_mutex_lock(&e->mu);
    *st = e->st;
    *queued = e->n_queued;
    *running = e->n_running_jobs;
    double now = loom_now();
    if (now - e->snap_t > 10) st->tok_per_s = 0; /* idle */
    pthread_mutex_unlock(&e->mu);
}
