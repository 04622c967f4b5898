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

/* Prefix cache (off by default; docs/batching.md): every cache block of 16 tokens that a sequence
 * fills is remembered under the chain of token ids that leads to it, and stays cached after its
 * sequences are freed until the pool needs the block (least recently used first).
 * loom_seq_new_cached starts a sequence holding the longest cached prefix of tokens[0..n) in whole
 * blocks, at most n - 1 tokens; loom_seq_pos says how many: evaluate the rest. Turning the cache
 * off forgets it. */
void loom_session_prefix_cache(loom_session *s, bool on);
int loom_seq_new_cached(loom_session *s, const int32_t *tokens, int n);
typedef struct loom_prefix_stats {
    int blocks;            /* blocks in the cache (held by sequences or not) */
    int blocks_unused;     /* of them, held by no sequence: evictable */
    int block_tokens;      /* tokens per block */
    unsigned long long evictions; /* cached blocks taken back for new tokens */
} loom_prefix_stats;
loom_prefix_stats loom_session_prefix_stats(const loom_session *s);

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

/* ---- tokenizer (tokenizer/) ------------------------------------------------------------------ *
 * Two kinds, loaded from a GGUF file's tokenizer.ggml.* metadata or a HuggingFace tokenizer.json:
 * byte-level BPE (GPT-2 style: Qwen2/Qwen3, LLaMA 3) and SentencePiece-style BPE (LLaMA 1/2).
 * A loaded tokenizer is immutable: every function below may be called from several threads at
 * once (a stream belongs to one thread). */
typedef struct loom_tokenizer loom_tokenizer;

/* path: a .gguf file (vocabulary-only files are fine), a tokenizer.json file, or a directory that
 * holds tokenizer.json (tokenizer_config.json beside it is read when present, for BOS/EOS, add_bos
 * and the chat template). A directory without tokenizer.json is an error: the caller decides
 * whether a model without a tokenizer is acceptable. */
loom_tokenizer *loom_tokenizer_load(const char *path);
void loom_tokenizer_free(loom_tokenizer *t);

/* ---- encoding --------------------------------------------------------------------------------- */
enum {
    LOOM_TOK_ADD_BOS = 1u << 0,       /* prepend the BOS token (nothing when the vocabulary has none) */
    LOOM_TOK_PARSE_SPECIAL = 1u << 1, /* match control tokens ("<|im_start|>", "<s>") in the text;
                                         without it they are tokenized as plain text. User-defined
                                         added tokens are always matched, as llama.cpp does. */
    LOOM_TOK_SKIP_SPECIAL = 1u << 2,  /* decode/stream: leave control tokens out of the text */
};

/* Encode len bytes of UTF-8 text. On success returns the number of tokens and stores a malloc'd
 * array in *ids (free() it; non-NULL even for 0 tokens). Invalid UTF-8 is an error (-1). */
int loom_tokenizer_encode(const loom_tokenizer *t, const char *text, size_t len, unsigned flags,
                          int32_t **ids);

/* ---- decoding --------------------------------------------------------------------------------- */
/* Decode n ids to bytes: a malloc'd buffer, NUL-terminated for convenience, its length (which
 * counts no terminator; the text may contain NULs) in *len. Byte-exact: byte-fallback tokens that
 * form invalid UTF-8 come back as those bytes. For SentencePiece vocabularies the dummy prefix
 * space of the first token (after BOS) is removed, so decode(encode(x)) == x.
 * Flags: LOOM_TOK_SKIP_SPECIAL. NULL on an id out of range. */
char *loom_tokenizer_decode(const loom_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                            size_t *len);

/* The bytes one token stands for (" Hello" for "ĠHello" or "▁Hello", "\n" for <0x0A>), NOT
 * terminated, valid as long as the tokenizer; NULL when id is out of range. May be a partial
 * UTF-8 sequence. */
const char *loom_tokenizer_piece(const loom_tokenizer *t, int32_t id, size_t *len);
/* The token's string in the vocabulary ("ĠHello", "▁Hello", "<0x0A>"), NUL-terminated; *len
 * (when len is not NULL) is its length in bytes, which is what counts: a vocabulary string may
 * hold NUL bytes (GGUF and JSON strings carry their length). */
const char *loom_tokenizer_token_text(const loom_tokenizer *t, int32_t id, size_t *len);
/* The id whose vocabulary string is exactly text[0..len), or -1. */
int32_t loom_tokenizer_find(const loom_tokenizer *t, const char *text, size_t len);

/* Streaming decode for generated text: feed ids one at a time, get back only complete UTF-8
 * characters; an incomplete trailing sequence is held until later bytes complete it (bytes that
 * can never become valid UTF-8 are passed through as they are). The stream is a continuation, so
 * no dummy-prefix space is removed. Concatenating every put() and the final finish() gives the
 * pieces' bytes exactly. */
typedef struct loom_tokenizer_stream loom_tokenizer_stream;
loom_tokenizer_stream *loom_tokenizer_stream_new(const loom_tokenizer *t, unsigned flags);
/* Returns the bytes now ready (possibly 0 of them), valid until the next call on the stream;
 * NULL with an error for an id out of range. */
const char *loom_tokenizer_stream_put(loom_tokenizer_stream *s, int32_t id, size_t *len);
/* End of stream: returns whatever is still held (an incomplete sequence, byte-exact) and resets. */
const char *loom_tokenizer_stream_finish(loom_tokenizer_stream *s, size_t *len);
void loom_tokenizer_stream_free(loom_tokenizer_stream *s);

int loom_tokenizer_n_vocab(const loom_tokenizer *t);
int32_t loom_tokenizer_bos(const loom_tokenizer *t); /* -1 when none */
int32_t loom_tokenizer_eos(const loom_tokenizer *t); /* -1 when none */
/* Whether the model expects BOS at the start of a prompt (GGUF tokenizer.ggml.add_bos_token,
 * tokenizer_config.json add_bos_token or the post-processor template, else the kind's default). */
bool loom_tokenizer_wants_bos(const loom_tokenizer *t);
/* Control tokens: GGUF type 3, HF added tokens marked "special". */
bool loom_tokenizer_is_special(const loom_tokenizer *t, int32_t id);
/* End of generation: EOS, EOT and the usual end-of-turn tokens (<|im_end|>, <|eot_id|>, ...). */
bool loom_tokenizer_is_eog(const loom_tokenizer *t, int32_t id);
/* The Jinja chat template the file carries (GGUF tokenizer.chat_template, tokenizer_config.json
 * chat_template), or NULL. */
const char *loom_tokenizer_chat_template(const loom_tokenizer *t);

/* ---- chat formatting (tokenizer/chat.c) ------------------------------------------------------ *
 * The turn format (ChatML, Llama 2, Llama 3, ...) is recognised from the tokenizer's chat template
 * and marker tokens; loom does not run Jinja. */
typedef struct loom_chat_message {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content;
} loom_chat_message;

/* The format's name ("chatml", "llama2", "llama3", "gemma", "phi3", "mistral", or "none": turns as
 * plain text), from the tokenizer's template and marker tokens, then the model family's default
 * (m may be NULL: no family default). */
const char *loom_chat_format_of(const loom_model *m, const loom_tokenizer *t);
/* Render a conversation as the prompt text that ends where the assistant's reply begins (or, when
 * the last message is the assistant's, inside that reply, to continue it). System messages go
 * into the first turn. Encode the result with LOOM_TOK_PARSE_SPECIAL (and LOOM_TOK_ADD_BOS when
 * loom_tokenizer_wants_bos). Returns a malloc'd string, or NULL with an error (an unknown role, no
 * user message). */
char *loom_chat_apply(const loom_model *m, const loom_tokenizer *t, const loom_chat_message *msgs, size_t n);

/* ---- sampling ------------------------------------------------------------------------------- *
 * One step, in this order: the penalties change the logits of tokens in the recent history; then
 * greedy (temperature <= 0) takes the argmax of the penalised logits, or else softmax(logits / T)
 * is cut by top-k, then top-p (the smallest most-likely set whose mass reaches top_p), then min-p
 * (drop candidates below min_p times the most likely one's probability), renormalised and sampled.
 * All zero is greedy without penalties. */
typedef struct loom_sampler_opts {
    float temperature; /* <= 0: greedy */
    int top_k;         /* <= 0: off */
    float top_p;       /* >= 1: off */
    uint64_t seed;
    float min_p;             /* <= 0: off */
    /* Penalties over the last penalty_last_n tokens of the history (the tokens the sampler
     * returned, plus any given to loom_sampler_accept). For a token seen c > 0 times there:
     *   repeat (llama.cpp / CTRL):  l = l > 0 ? l / repeat_penalty : l * repeat_penalty
     *   frequency and presence (OpenAI):  l -= c * frequency_penalty + presence_penalty */
    float repeat_penalty;    /* 0 or 1: off */
    float frequency_penalty; /* 0: off; may be negative (OpenAI allows -2..2) */
    float presence_penalty;  /* 0: off; may be negative */
    int penalty_last_n;      /* 0: 64 tokens; -1: the whole history */
} loom_sampler_opts;

typedef struct loom_sampler loom_sampler;
loom_sampler *loom_sampler_new(const loom_sampler_opts *o);
void loom_sampler_free(loom_sampler *s);
/* Sample one token from logits[n_vocab] and add it to the history. -1 (error set) when the
 * logits are not usable (a NaN or +inf logit: the model's numbers broke down; or every logit
 * -inf), or when out of memory with penalties on. */
int32_t loom_sampler_sample(loom_sampler *s, const float *logits, int n_vocab);
/* 0, or -1 with an error naming the first token whose logit is NaN or +inf (or all are -inf). */
int loom_logits_check(const float *logits, int n_vocab);
/* Add a token to the history without sampling it (a prompt's tokens, so that the penalties see
 * them, as llama.cpp's server does). A no-op when no penalty is on. Returns 0, -1 when out of
 * memory. */
int loom_sampler_accept(loom_sampler *s, int32_t token);
/* Forget the history (a new conversation); the random state goes on. */
void loom_sampler_reset(loom_sampler *s);

#ifdef __cplusplus
}
#endif
#endif
