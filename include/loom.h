/* loom — a compute-graph engine for decoder-only language models.
 *
 * This is the one public header of libloom. Everything a program needs to load a checkpoint,
 * run it on a backend and sample tokens is declared here; the graph IR, planner and backend
 * interface live in graph/ and backends/ for people extending loom itself.
 *
 * Conventions: functions that can fail return NULL or a negative int and leave a one-line
 * message (naming the file and the problem) in loom_last_error(). Nothing ever aborts on bad input.
 */
#ifndef LOOM_H
#define LOOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- element types ---------------------------------------------------------------------- */
typedef enum loom_dtype {
    LOOM_F32 = 0,
    LOOM_F16 = 1,
    LOOM_BF16 = 2,
    LOOM_I32 = 3,
    /* GGUF block-quantised weights (core/qblock.h): loom_dtype_size is 0 for these */
    LOOM_Q8_0 = 4,
    LOOM_Q4_0 = 5,
    LOOM_Q4_K = 6,
    LOOM_Q6_K = 7,
    LOOM_Q4_1 = 8,
    LOOM_Q5_0 = 9,
    LOOM_Q5_1 = 10,
    LOOM_Q2_K = 11,
    LOOM_Q3_K = 12,
    LOOM_Q5_K = 13,
    LOOM_IQ4_NL = 14,
    LOOM_IQ4_XS = 15,
    LOOM_DTYPE_COUNT
} loom_dtype;

const char *loom_dtype_name(loom_dtype t);
size_t loom_dtype_size(loom_dtype t);

/* ---- errors -------------------------------------------------------------------------------- */
/* The last error message of this thread ("" when none). */
const char *loom_last_error(void);

/* ---- models and sessions -------------------------------------------------------------------- */
typedef struct loom_model loom_model;     /* weights + hyper-parameters + architecture */
typedef struct loom_session loom_session; /* a backend, a KV cache and cached plans */

typedef struct loom_model_info {
    const char *arch;       /* "llama", "qwen2", ... */
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train;
    int bos_id, eos_id;     /* -1 when the checkpoint names none */
    size_t weight_bytes;    /* bytes of tensor data referenced by the model */
    loom_dtype weight_type; /* the type holding most weight bytes */
} loom_model_info;

/* Open a HuggingFace directory (config.json + *.safetensors) or a .gguf file. Weights are mapped,
 * not copied. */
loom_model *loom_model_load(const char *path);
void loom_model_free(loom_model *m);
/* Scan every weight for NaN and infinities (`--check-tensors`; also done by loom_model_load when
 * LOOM_CHECK_TENSORS=1): 0, or -1 with an error naming the tensor, row and column. */
int loom_model_check_tensors(const loom_model *m);
loom_model_info loom_model_get_info(const loom_model *m);

typedef struct loom_session_opts {
    const char *device;  /* "cpu", "vulkan", "vulkan:N", "auto"; NULL = "auto" */
    int n_threads;       /* CPU threads; 0 = all cores */
    int n_ctx;           /* KV cache length in tokens; 0 = min(model's training context, 4096) */
    bool all_logits;     /* keep logits for every prompt position (loom check), not only the last */
    bool want_hidden;    /* keep the hidden state after each block (loom check) */
    bool verbose;        /* say which device was picked on stderr */
} loom_session_opts;

loom_session_opts loom_session_default_opts(void);
loom_session *loom_session_new(loom_model *m, const loom_session_opts *o);
void loom_session_free(loom_session *s);

/* Evaluate n tokens at the current position (prefill when n > 1, decode when n == 1), appending
 * them to the KV cache. Returns 0 on success. Fails cleanly if the context would overflow or a
 * token id is out of range. */
int loom_session_eval(loom_session *s, const int32_t *tokens, int n);
/* Logits of the last evaluated batch: row i of [n_rows, n_vocab]. With all_logits off only the
 * last token's row exists (n_rows = 1). */
const float *loom_session_logits(const loom_session *s, int *n_rows);
/* Hidden state after block `layer` (0 = embeddings, n_layer = after the final norm) of the last
 * batch, [n, n_embd]; NULL unless want_hidden was set. */
const float *loom_session_hidden(const loom_session *s, int layer);
int loom_session_pos(const loom_session *s);   /* tokens held in the KV cache */
int loom_session_ctx(const loom_session *s);   /* KV cache capacity */
void loom_session_reset(loom_session *s);      /* forget the cache */
const char *loom_session_device(const loom_session *s);

/* ---- several sequences at once (docs/batching.md) -------------------------------------------- *
 * A session's KV cache is also a pool of blocks of --ctx rows in all, shared by sequences of any
 * length. A session is either single-sequence (loom_session_eval, the default) or holds sequences
 * (after loom_seq_new): loom_session_reset returns it to the first state. */

/* A new empty sequence: its id (>= 0), or -1 (a session whose single-sequence cache holds tokens
 * must be reset first). */
int loom_seq_new(loom_session *s);
/* A new sequence continuing sequence id: it shares id's cached prefix (copy on write). */
int loom_seq_fork(loom_session *s, int id);
/* Forget sequence id and release its cache blocks. */
int loom_seq_free(loom_session *s, int id);
/* Tokens held by sequence id, or -1 with an error when there is no such sequence. */
int loom_seq_pos(const loom_session *s, int id);

typedef struct loom_batch {
    int n;                 /* tokens */
    const int32_t *tokens; /* [n] */
    const int32_t *seq;    /* [n] each token's sequence; a sequence's tokens follow its history in order */
    const bool *logits;    /* [n] which tokens want logits; NULL: the last token of each sequence */
} loom_batch;

/* Evaluate a batch: every token is appended to its sequence's cache, and the rows that want
 * logits come back through loom_session_logits in batch order. All or nothing: on failure
 * (unknown sequence, cache full, bad token) no sequence changes length. */
int loom_session_eval_batch(loom_session *s, const loom_batch *b);

/* ---- beam search (models/beam.c) ------------------------------------------------------------
 * transformers' generate(num_beams=K, do_sample=False) step for step: each step keeps the best 2K
 * continuations of the K running beams, moves the best K finished ones (EOS, or the length limit)
 * into the result set scored sum(log p) / generated_len ^ length_penalty, and continues the best
 * K unfinished ones. Runs on the session's sequences (the session must hold no single-sequence
 * history); they are freed again before it returns. */
typedef struct loom_beam_opts {
    int num_beams;        /* K >= 1 */
    int num_return;       /* 1..K hypotheses returned, best first */
    int max_new_tokens;   /* >= 1 */
    float length_penalty; /* transformers' default 1.0 */
    bool early_stopping;  /* stop as soon as K hypotheses have finished */
    int eos_id;           /* -1: none (only the length limit ends a beam) */
} loom_beam_opts;

typedef struct loom_beam_hyp {
    int32_t *tokens; /* generated tokens (an ending EOS included), malloc'd */
    int n;
    float score;     /* transformers' sequences_scores */
} loom_beam_hyp;

/* Fills out[0..num_return) and returns num_return, or -1 with an error. */
int loom_beam_search(loom_session *s, const int32_t *prompt, int n_prompt, const loom_beam_opts *o,
                     loom_beam_hyp *out);
void loom_beam_hyps_free(loom_beam_hyp *h, int n);

/* ---- sampling ------------------------------------------------------------------------------- */
typedef struct loom_sampler_opts {
    float temperature; /* <= 0: greedy */
    int top_k;         /* <= 0: off */
    float top_p;       /* >= 1: off */
    uint64_t seed;
} loom_sampler_opts;

typedef struct loom_sampler loom_sampler;
loom_sampler *loom_sampler_new(const loom_sampler_opts *o);
void loom_sampler_free(loom_sampler *s);
/* The next token, or -1 (error set) when the logits are not usable: a NaN or +inf logit (the
 * model's numbers broke down: NaN/Inf weights, overflow), or every logit -inf. */
int32_t loom_sampler_sample(loom_sampler *s, const float *logits, int n_vocab);
/* 0, or -1 with an error naming the first token whose logit is NaN or +inf (or all are -inf). */
int loom_logits_check(const float *logits, int n_vocab);

#ifdef __cplusplus
}
#endif
#endif
