/* loom serve (docs/serving.md): an OpenAI-style HTTP server with continuous batching.
 *   serve_req.c     request bodies -> serve_req (JSON parsing and validation; no HTTP, fuzzed)
 *   serve_tools.c   tool calls in a reply (Hermes, Llama 3 or Mistral style), whole or as it streams (fuzzed)
 *   serve_engine.c  the scheduler thread: admits requests into the running batch between decode
 *                   steps, samples, applies stop rules and hands text to each request
 *   cmd_serve.c     options, the HTTP side (libmicrohttpd), responses, /metrics */
#ifndef LOOM_SERVE_H
#define LOOM_SERVE_H

#include "loom.h"
#include "tokenizer/chat.h"



#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SERVE_MAX_STOP 4
#define SERVE_MAX_N 16
#define SERVE_MAX_CALLS 64 /* tool calls kept from one reply */

/* ---- requests (serve_req.c) ------------------------------------------------------------------ */
typedef enum { SERVE_TOOLS_AUTO, SERVE_TOOLS_NONE, SERVE_TOOLS_REQUIRED, SERVE_TOOLS_NAMED } serve_tool_choice;

typedef struct serve_req {
    bool chat;                   /* /v1/chat/completions (messages) or /v1/completions (prompt) */
    bool stream, include_usage;  /* stream_options.include_usage */
    char *prompt;                /* completions: the text, or NULL when given as token ids */
    int32_t *prompt_ids;         /* completions: token ids */
    int n_prompt_ids;
    loom_chat_turn *msgs;        /* chat: strings (and calls) owned by the request */
    int n_msgs;
    bool tool_msgs;              /* a message has role "tool" or tool_calls */
    char **tools;                /* tool definitions as JSON text, written as Python's json.dumps does */
    char **tool_names;           /* each tool's function name */
    int n_tools;
    serve_tool_choice tool_choice; /* "auto" unless given */
    char *tool_choice_name;      /* SERVE_TOOLS_NAMED: the function */
    bool parallel_tool_calls;    /* default true; false: only the first call is returned */
    int max_tokens;              /* -1: not given */
    int n;                       /* choices */
    loom_sampler_opts sampling;  /* temperature 1, top_p 1 unless given (OpenAI's defaults) */
    char *stop[SERVE_MAX_STOP];
    int n_stop;
    char *model;                 /* as given, or NULL */
} serve_req;

/* Parse a request body. Returns 0, or -1 with a one-line message in err (and the offending field
 * in param[SERVE_PARAM_LEN], "" when none) for malformed JSON, a wrong type, a value out of range
 * or an unknown field. n_max caps n. */
#define SERVE_PARAM_LEN 64
int serve_req_parse(serve_req *r, bool chat, const char *body, size_t len, int n_max, char *err, size_t err_len,
                    char *param);
void serve_req_free(serve_req *r);
/* A JSON value as Python's json.dumps(v, ensure_ascii=False) writes it (", " and ": " between
 * items, the keys in their order): the text chat templates' `tojson` puts into prompts. malloc'd. */
struct cJSON;
char *serve_json_py(const struct cJSON *v);

/* ---- tool calls in a reply (serve_tools.c) ---------------------------------------------------
 * In the model's convention t (loom_chat_tools_conv): Hermes style (Qwen2.5 / Qwen3)
 * <tool_call>{"name": NAME, "arguments": {...}}</tool_call>, or Llama 3.1+'s bare
 * {"name": NAME, "parameters": {...}} (maybe after <|python_tag|>, several separated by ';'), or
 * Mistral's [TOOL_CALLS] [{"name": NAME, "arguments": {...}}, ...] (v0.3 / Nemo). */
typedef struct serve_tool_call {
    char *name;
    char *arguments; /* the arguments object as compact JSON text (OpenAI's "arguments" string) */
} serve_tool_call;

/* Scan text[from..len) of a reply. Returns 1 when a well-formed call follows the content
 * text[from..*content_end): the call is in *call (malloc'd strings) and *resume is past its
 * end (</tool_call>; Llama: its JSON object and a ';' after it; Mistral: the ',' after it in its
 * list, where the next scan picks up the list's next call, or the list's ']'). Returns 0 when
 * text[from..*content_end) is content and nothing more can be said yet (*resume = *content_end):
 * unless final, a tail that may still start a call ("<tool_call>", "{\"na") and a call not ended
 * yet are held back. A malformed call (bad JSON, no string name) is content, and so is an unended
 * one at the end (final) unless its JSON is a complete call. t LOOM_TOOLS_NONE: all content.
 * -1: out of memory. */
int serve_tool_scan(loom_chat_tools t, const char *text, size_t len, size_t from, bool final, size_t *content_end, size_t *resume,
                    serve_tool_call *call);
void serve_tool_call_free(serve_tool_call *c);

/* The whole reply: its calls (at most max_calls kept) and the text outside them, trimmed of white
 * space at both ends (NULL when that is empty). 0, or -1 out of memory. */
typedef struct serve_tool_result {
    serve_tool_call *calls;
    int n_calls;
    char *content;
} serve_tool_result;
int serve_tool_parse(loom_chat_tools t, const char *text, size_t len, int max_calls, serve_tool_result *r);
void serve_tool_result_free(serve_tool_result *r);

/* ---- the engine (serve_engine.c) ----------------------------------------------------------- */
typedef struct serve_choice {
    char *text;              /* the whole text so far (stop strings cut off) */
    size_t len, cap;
    size_t ready;            /* text[0..ready) can be sent: no stop string can start before it */
    size_t sent;             /* bytes handed out to the stream so far (the HTTP side's) */
    const char *finish;      /* NULL while running; "stop" or "length" */
    int n_gen;
} serve_choice;

/* One request as the engine and the HTTP side share it (refcounted: each side drops its ref). */
typedef struct serve_job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    serve_req req;
    int32_t *prompt;         /* tokenized prompt */
    int n_prompt;
    int n_cached;            /* prompt tokens found in the prefix cache (not evaluated) */
    int max_tokens;          /* resolved */
    int32_t keep_token;      /* a control token whose text the reply keeps (Mistral's [TOOL_CALLS]); -1: none */
    serve_choice ch[SERVE_MAX_N];
    int n_done;              /* choices finished */
    bool done, cancelled;    /* done: every choice finished or the job failed */
    char *error;             /* the job failed inside the engine: this message (HTTP 500) */
    double t_submit, t_first; /* seconds (loom_now), t_first = 0 until the first token */
    uint64_t events;         /* bumped on every change, so a waiting reader knows it has news */
    struct serve_job *next;  /* the engine's queue */
} serve_job;

typedef struct serve_stats {
    uint64_t prompt_tokens, gen_tokens, requests_done, requests_cancelled, steps;
    uint64_t prompt_tokens_cached;  /* prompt tokens taken from the prefix cache */
    int prefix_blocks;              /* blocks in the prefix cache now */
    uint64_t prefix_evictions;      /* cached blocks reused for other tokens */
    double ttft_sum;
    uint64_t ttft_bucket[12]; /* cumulative-bucket counts for SERVE_TTFT_BUCKETS */
    uint64_t ttft_count;
    double busy_seconds;      /* time spent in evaluation steps */
    double tok_per_s;         /* generated tokens per second over the last few seconds */
} serve_stats;
extern const double SERVE_TTFT_BUCKETS[12];

typedef struct serve_engine serve_engine;
typedef struct serve_engine_opts {
    int max_seqs;    /* sequences decoded together */
    int max_queue;   /* jobs waiting for a place */
    int seq_ctx;     /* tokens one sequence may hold (prompt + reply) */
    int prefill_chunk; /* most prompt tokens evaluated in one step */
    bool prefix_cache; /* reuse cached blocks of earlier prompts (loom_seq_new_cached) */
} serve_engine_opts;

serve_engine *serve_engine_new(loom_session *s, loom_tokenizer *tok, int n_vocab, const serve_engine_opts *o);
void serve_engine_free(serve_engine *e); /* stops the thread; running jobs end cancelled */
/* Queue a job (the engine takes a reference, dropped when the job is done). 0; 1 when the queue
 * is full (429); -1 when the job could never fit (n above the sequences, prompt + max_tokens above
 * the cache: 400). Message in loom_last_error. */
int serve_engine_submit(serve_engine *e, serve_job *j);
void serve_engine_stats(serve_engine *e, serve_stats *st, int *queued, int *running);

serve_job *serve_job_new(void);
void serve_job_unref(serve_job *j);

#endif
