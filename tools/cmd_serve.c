/* loom serve: an OpenAI-style HTTP API over one model (docs/serving.md). HTTP is libmicrohttpd's
 * (one thread per connection, so a handler may wait for its tokens); the scheduler is
 * serve_engine.c; request bodies are parsed by serve_req.c. */
#include "tools/commands.h"
#include "tools/options.h"

#include "tools/serve.h"
#include "core/util.h"
#include "models/model.h"

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- server state ---------------------------------------------------------------------------- */
enum { C_200, C_400, C_401, C_404, C_405, C_413, C_429, C_500, C_503, C_N };
static const int CODE_OF[C_N] = {200, 400, 401, 404, 405, 413, 429, 500, 503};

typedef struct server {
    serve_engine *eng;
    const loom_model *model;
    loom_tokenizer *tok;
    int n_vocab, seq_ctx, max_tokens, max_seqs;
    loom_chat_format fmt; /* turns */
    loom_chat_tools tools; /* the tool-call convention (LOOM_TOOLS_NONE: requests with tools are a 400) */
    int32_t call_mark;     /* the convention's call opener as a control token of the vocabulary (Mistral's
                              [TOOL_CALLS]), looked up once at start; -1: none */
    size_t max_body;
    const char *api_key, *name;
    bool verbose;
    atomic_ullong answered[C_N];
    atomic_ullong next_id;
    double t_start;
} server;

static void count(server *sv, int code) {
    for (int i = 0; i < C_N; i++)
        if (CODE_OF[i] == code) atomic_fetch_add(&sv->answered[i], 1);
}

static enum MHD_Result send_text(server *sv, struct MHD_Connection *c, int code, const char *type, char *body) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)code, r);
    MHD_destroy_response(r);
    count(sv, code);
    return rc;
}

static enum MHD_Result send_json(server *sv, struct MHD_Connection *c, int code, cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return MHD_NO;
    return send_text(sv, c, code, "application/json", s);
}

/* {"error": {"message", "type", "param", "code"}}, OpenAI's shape */
static enum MHD_Result send_error(server *sv, struct MHD_Connection *c, int code, const char *msg, const char *param) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", code == 401 ? "authentication_error" : code == 429 ? "rate_limit_error"
                                       : code >= 500                    ? "server_error"
                                                                        : "invalid_request_error");
    if (param && *param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    cJSON_AddNullToObject(e, "code");
    if (sv->verbose) fprintf(stderr, "loom serve: %d %s\n", code, msg);
    return send_json(sv, c, code, root);
}

/* ---- waiting for the engine ------------------------------------------------------------------ */
/* Whether the client has gone (closed or reset its side). */
static bool hung_up(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Wait (j->mu held) until j has news past *seen or is done; false when the client hung up. */
static bool wait_news(serve_job *j, uint64_t *seen, int fd) {
    while (!j->done && j->events == *seen) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
        if (hung_up(fd)) return false; /* after every wake-up: news may come every step */
    }
    *seen = j->events;
    return true;
}

static void cancel(serve_job *j) {
    pthread_mutex_lock(&j->mu);
    j->cancelled = true;
    pthread_mutex_unlock(&j->mu);
}

/* ---- responses -------------------------------------------------------------------------------- */
static cJSON *usage_json(const serve_job *j) {
    int gen = 0;
    for (int i = 0; i < j->req.n; i++) gen += j->ch[i].n_gen;
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", j->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", gen);
    cJSON_AddNumberToObject(u, "total_tokens", j->n_prompt + gen);
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details"); /* OpenAI's place for it */
    if (d) cJSON_AddNumberToObject(d, "cached_tokens", j->n_cached);
    return u;
}

static bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

/* Whether a request's reply is scanned for tool calls. */
static bool wants_calls(const serve_req *r) { return r->chat && r->n_tools && r->tool_choice != SERVE_TOOLS_NONE; }

/* Call k of choice `choice` in completion `id`: call_<id>_<choice>_<k>, or where the convention's
 * template takes ids of id_len letters and digits (Mistral: 9), that many drawn from a hash of the
 * same and the server's start time (the completion ids restart with the server). */
static void call_id(const server *sv, char *out, size_t n, const char *id, int choice, int k) {
    const loom_chat_tools_conv *cv = loom_chat_tools_get(sv->tools);
    const char *dash = strrchr(id, '-');
    snprintf(out, n, "call_%s_%d_%d", dash ? dash + 1 : id, choice, k);
    if (!cv || !cv->id_len || n <= (size_t)cv->id_len) return;
    static const char ALNUM[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    uint64_t h = 1469598103934665603ull ^ (uint64_t)sv->t_start; /* FNV-1a */
    for (const char *p = out; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    for (int i = 0; i < cv->id_len; i++) {
        h ^= h >> 29; /* each character from the mixed hash's remainder */
        h *= 0xbf58476d1ce4e5b9ull;
        out[i] = ALNUM[(h >> 32) % 62];
    }
    out[cv->id_len] = 0;
}

static cJSON *tool_call_json(const serve_tool_call *c, const char *id, int index) {
    cJSON *t = cJSON_CreateObject();
    if (index >= 0) cJSON_AddNumberToObject(t, "index", index);
    cJSON_AddStringToObject(t, "id", id);
    cJSON_AddStringToObject(t, "type", "function");
    cJSON *f = cJSON_AddObjectToObject(t, "function");
    cJSON_AddStringToObject(f, "name", c->name);
    cJSON_AddStringToObject(f, "arguments", c->arguments);
    return t;
}

typedef struct stream_ctx {
    server *sv;
    serve_job *j;
    int fd;
    char id[48];
    long created;
    uint64_t seen;
    char *buf;
    size_t len, off;
    bool role_sent[SERVE_MAX_N], finish_sent[SERVE_MAX_N], ended;
    int n_calls[SERVE_MAX_N];      /* tool calls sent for each choice */
    bool after_call[SERVE_MAX_N];  /* nothing but white space sent since the last call */
} stream_ctx;

static cJSON *chunk_head(stream_ctx *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", s->id);
    cJSON_AddStringToObject(o, "object", s->j->req.chat ? "chat.completion.chunk" : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)s->created);
    cJSON_AddStringToObject(o, "model", s->sv->name);
    return o;
}

static int emit(stream_ctx *s, cJSON *o) {
    char *t = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    const char *body = t ? t : "[DONE]";
    size_t n = strlen(body) + 8;
    char *b = realloc(s->buf, s->len + n + 1);
    if (!b) {
        free(t);
        return -1;
    }
    s->buf = b;
    s->len += (size_t)snprintf(s->buf + s->len, n + 1, "data: %s\n\n", body);
    free(t);
    return 0;
}

/* One event for choice i: new text (and/or its finish reason). */
static int emit_choice(stream_ctx *s, int i, const char *text, size_t n, const char *finish) {
    cJSON *o = chunk_head(s), *arr = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
    cJSON_AddItemToArray(arr, c);
    cJSON_AddNumberToObject(c, "index", i);
    char *t = malloc(n + 1);
    if (!t) {
        cJSON_Delete(o);
        return -1;
    }
    memcpy(t, text, n);
    t[n] = 0;
    if (s->j->req.chat) {
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (!s->role_sent[i]) cJSON_AddStringToObject(d, "role", "assistant");
        s->role_sent[i] = true;
        if (n || !finish) cJSON_AddStringToObject(d, "content", t);
    } else {
        cJSON_AddStringToObject(c, "text", t);
        cJSON_AddNullToObject(c, "logprobs");
    }
    free(t);
    if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
    else cJSON_AddNullToObject(c, "finish_reason");
    return emit(s, o);
}

/* A tool call as OpenAI streams it: a chunk with its id, type and name, then one with its
 * arguments (whole: a call is sent once its </tool_call> is in). */
static int emit_call(stream_ctx *s, int i, const serve_tool_call *call) {
    char id[80];
    call_id(s->sv, id, sizeof id, s->id, i, s->n_calls[i]);
    for (int part = 0; part < 2; part++) {
        cJSON *o = chunk_head(s), *arr = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, c);
        cJSON_AddNumberToObject(c, "index", i);
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (!s->role_sent[i]) {
            cJSON_AddStringToObject(d, "role", "assistant");
            cJSON_AddNullToObject(d, "content");
        }
        s->role_sent[i] = true;
        cJSON *t = cJSON_CreateObject();
        cJSON_AddItemToArray(cJSON_AddArrayToObject(d, "tool_calls"), t);
        cJSON_AddNumberToObject(t, "index", s->n_calls[i]);
        if (part == 0) {
            cJSON_AddStringToObject(t, "id", id);
            cJSON_AddStringToObject(t, "type", "function");
        }
        cJSON *f = cJSON_AddObjectToObject(t, "function");
        if (part == 0) {
            cJSON_AddStringToObject(f, "name", call->name);
            cJSON_AddStringToObject(f, "arguments", "");
        } else {
            cJSON_AddStringToObject(f, "arguments", call->arguments);
        }
        cJSON_AddNullToObject(c, "finish_reason");
        if (emit(s, o) < 0) return -1;
    }
    s->n_calls[i]++;
    return 0;
}

/* Choice i of a request with tools: content outside calls as it becomes safe (text that may
 * start a <tool_call>, and a call not closed yet, are held back), each call when it is complete,
 * then the finish reason ("tool_calls" when it called any and stopped by itself). j->mu held. */
static int collect_calls(stream_ctx *s, int i) {
    serve_job *j = s->j;
    serve_choice *c = &j->ch[i];
    if (s->finish_sent[i]) return 0;
    size_t limit = c->finish ? c->len : c->ready < c->len ? c->ready : c->len;
    const char *text = c->text ? c->text : "";
    for (;;) {
        size_t from = c->sent, ce, res;
        if (from >= limit && !c->finish) break;
        serve_tool_call call = {0};
        int k = serve_tool_scan(s->sv->tools, text, limit, from, c->finish != NULL, &ce, &res, &call);
        if (k < 0) return -1;
        /* white space next to a call is not sent (the plain response trims it too); trailing white
         * space waits until text follows it, or the reply ends without calls */
        size_t a = from, b = ce;
        bool end = k == 0 && c->finish && ce == limit;
        if (s->after_call[i])
            while (a < b && is_space(text[a])) a++;
        if (!end || s->n_calls[i])
            while (b > a && is_space(text[b - 1])) b--;
        if (b > a) {
            if (emit_choice(s, i, text + a, b - a, NULL) < 0) k = -1;
            s->after_call[i] = false;
        }
        bool sent_call = k == 1 && (j->req.parallel_tool_calls || s->n_calls[i] == 0);
        if (sent_call && emit_call(s, i, &call) < 0) k = -1;
        serve_tool_call_free(&call);
        if (k < 0) return -1;
        if (k == 1) s->after_call[i] = true;
        c->sent = k == 1 || end ? res : b > a ? b : a;
        if (c->sent == from || c->sent >= limit) break;
    }
    if (c->finish) {
        const char *why = s->n_calls[i] && !strcmp(c->finish, "stop") ? "tool_calls" : c->finish;
        if (emit_choice(s, i, "", 0, why) < 0) return -1;
        s->finish_sent[i] = true;
    }
    return 0;
}

/* Turn what the engine produced since the last call into events (j->mu held). */
static int collect(stream_ctx *s) {
    serve_job *j = s->j;
    for (int i = 0; i < j->req.n && wants_calls(&j->req); i++)
        if (collect_calls(s, i) < 0) return -1;
    for (int i = 0; i < j->req.n && !wants_calls(&j->req); i++) {
        serve_choice *c = &j->ch[i];
        size_t ready = c->ready < c->len ? c->ready : c->len;
        bool fin = c->finish && c->sent >= c->len;
        if (ready > c->sent || (c->finish && !s->finish_sent[i])) {
            size_t from = c->sent, to = c->finish ? c->len : ready;
            if (emit_choice(s, i, c->text ? c->text + from : "", to - from, c->finish ? c->finish : NULL) < 0) return -1;
            c->sent = to;
            if (c->finish) s->finish_sent[i] = true;
        }
        (void)fin;
    }
    if (j->done && !s->ended) {
        if (j->error) {
            cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
            cJSON_AddStringToObject(e, "message", j->error);
            cJSON_AddStringToObject(e, "type", "server_error");
            if (emit(s, o) < 0) return -1;
        } else if (j->req.include_usage) {
            cJSON *o = chunk_head(s);
            cJSON_AddArrayToObject(o, "choices");
            cJSON_AddItemToObject(o, "usage", usage_json(j));
            if (emit(s, o) < 0) return -1;
        }
        if (emit(s, NULL) < 0) return -1;
        s->ended = true;
    }
    return 0;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    stream_ctx *s = cls;
    if (s->off == s->len) {
        s->off = s->len = 0;
        serve_job *j = s->j;
        pthread_mutex_lock(&j->mu);
        int rc = 0;
        while (rc == 0 && s->len == 0 && !s->ended) {
            if (!wait_news(j, &s->seen, s->fd)) {
                rc = -1; /* the client is gone */
                break;
            }
            rc = collect(s);
        }
        pthread_mutex_unlock(&j->mu);
        if (rc < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (s->len == 0) return MHD_CONTENT_READER_END_OF_STREAM;
    }
    size_t n = s->len - s->off < max ? s->len - s->off : max;
    memcpy(out, s->buf + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream_ctx *s = cls;
    cancel(s->j); /* a no-op when it finished; otherwise the client went away mid-stream */
    serve_job_unref(s->j);
    free(s->buf);
    free(s);
}

static enum MHD_Result send_completion(server *sv, struct MHD_Connection *c, serve_job *j, const char *id, long created) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", j->req.chat ? "chat.completion" : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "model", sv->name);
    cJSON *arr = cJSON_AddArrayToObject(o, "choices");
    for (int i = 0; i < j->req.n; i++) {
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, ch);
        cJSON_AddNumberToObject(ch, "index", i);
        const char *text = j->ch[i].text ? j->ch[i].text : "";
        const char *finish = j->ch[i].finish ? j->ch[i].finish : "stop";
        serve_tool_result tr = {0};
        if (wants_calls(&j->req) &&
            serve_tool_parse(sv->tools, text, j->ch[i].len, j->req.parallel_tool_calls ? SERVE_MAX_CALLS : 1, &tr) < 0) {
            cJSON_Delete(o);
            return send_error(sv, c, 500, "out of memory", NULL);
        }
        if (j->req.chat) {
            cJSON *m = cJSON_AddObjectToObject(ch, "message");
            cJSON_AddStringToObject(m, "role", "assistant");
            if (!tr.n_calls) cJSON_AddStringToObject(m, "content", text);
            else if (tr.content) cJSON_AddStringToObject(m, "content", tr.content);
            else cJSON_AddNullToObject(m, "content");
            if (tr.n_calls) {
                cJSON *calls = cJSON_AddArrayToObject(m, "tool_calls");
                for (int k = 0; k < tr.n_calls; k++) {
                    char cid[80];
                    call_id(sv, cid, sizeof cid, id, i, k);
                    cJSON_AddItemToArray(calls, tool_call_json(&tr.calls[k], cid, -1));
                }
                if (!strcmp(finish, "stop")) finish = "tool_calls";
            }
        } else {
            cJSON_AddStringToObject(ch, "text", text);
        }
        serve_tool_result_free(&tr);
        cJSON_AddNullToObject(ch, "logprobs");
        cJSON_AddStringToObject(ch, "finish_reason", finish);
    }
    cJSON_AddItemToObject(o, "usage", usage_json(j));
    return send_json(sv, c, 200, o);
}

/* ---- GET endpoints --------------------------------------------------------------------------- */
static enum MHD_Result send_models(server *sv, struct MHD_Connection *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "data"), m);
    cJSON_AddStringToObject(m, "id", sv->name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)(long)sv->t_start);
    cJSON_AddStringToObject(m, "owned_by", "loom");
    return send_json(sv, c, 200, o);
}

static enum MHD_Result send_metrics(server *sv, struct MHD_Connection *c) {
    serve_stats st;
    int queued, running;
    serve_engine_stats(sv->eng, &st, &queued, &running);
    size_t cap = 8192, len = 0;
    char *b = malloc(cap);
    if (!b) return MHD_NO;
#define P(...) len += (size_t)snprintf(b + len, len < cap ? cap - len : 0, __VA_ARGS__)
    P("# HELP loom_http_requests_total HTTP requests answered, by status code.\n# TYPE loom_http_requests_total counter\n");
    for (int i = 0; i < C_N; i++)
        P("loom_http_requests_total{code=\"%d\"} %llu\n", CODE_OF[i], (unsigned long long)atomic_load(&sv->answered[i]));
    P("# HELP loom_requests_finished_total Completion requests the engine finished.\n# TYPE loom_requests_finished_total counter\n"
      "loom_requests_finished_total %llu\n", (unsigned long long)st.requests_done);
    P("# HELP loom_requests_cancelled_total Completion requests cancelled (the client went away).\n"
      "# TYPE loom_requests_cancelled_total counter\nloom_requests_cancelled_total %llu\n",
      (unsigned long long)st.requests_cancelled);
    P("# HELP loom_prompt_tokens_total Prompt tokens evaluated.\n# TYPE loom_prompt_tokens_total counter\n"
      "loom_prompt_tokens_total %llu\n", (unsigned long long)st.prompt_tokens);
    P("# HELP loom_prompt_tokens_cached_total Prompt tokens taken from the prefix cache (not evaluated).\n"
      "# TYPE loom_prompt_tokens_cached_total counter\nloom_prompt_tokens_cached_total %llu\n",
      (unsigned long long)st.prompt_tokens_cached);
    P("# HELP loom_prefix_cache_blocks Cache blocks of 16 tokens held by the prefix cache.\n"
      "# TYPE loom_prefix_cache_blocks gauge\nloom_prefix_cache_blocks %d\n", st.prefix_blocks);
    P("# HELP loom_prefix_cache_evictions_total Cached blocks reused for other tokens.\n"
      "# TYPE loom_prefix_cache_evictions_total counter\nloom_prefix_cache_evictions_total %llu\n",
      (unsigned long long)st.prefix_evictions);
    P("# HELP loom_generated_tokens_total Tokens generated.\n# TYPE loom_generated_tokens_total counter\n"
      "loom_generated_tokens_total %llu\n", (unsigned long long)st.gen_tokens);
    P("# HELP loom_queue_depth Requests waiting for a place in the batch.\n# TYPE loom_queue_depth gauge\n"
      "loom_queue_depth %d\n", queued);
    P("# HELP loom_requests_running Requests in the running batch.\n# TYPE loom_requests_running gauge\n"
      "loom_requests_running %d\n", running);
    P("# HELP loom_tokens_per_second Generated tokens per second over the last 2 s.\n# TYPE loom_tokens_per_second gauge\n"
      "loom_tokens_per_second %.3f\n", st.tok_per_s);
    P("# HELP loom_eval_seconds_total Time spent evaluating batches.\n# TYPE loom_eval_seconds_total counter\n"
      "loom_eval_seconds_total %.6f\n", st.busy_seconds);
    P("# HELP loom_time_to_first_token_seconds From a request's arrival to its first token.\n"
      "# TYPE loom_time_to_first_token_seconds histogram\n");
    for (int i = 0; i < 12; i++)
        P("loom_time_to_first_token_seconds_bucket{le=\"%g\"} %llu\n", SERVE_TTFT_BUCKETS[i], (unsigned long long)st.ttft_bucket[i]);
    P("loom_time_to_first_token_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)st.ttft_count);
    P("loom_time_to_first_token_seconds_sum %.6f\nloom_time_to_first_token_seconds_count %llu\n", st.ttft_sum,
      (unsigned long long)st.ttft_count);
#undef P
    if (len >= cap) len = cap - 1;
    b[len] = 0;
    return send_text(sv, c, 200, "text/plain; version=0.0.4", b);
}

/* ---- completions ----------------------------------------------------------------------------- */
/* Tokenize the request's prompt into j->prompt; an HTTP status on failure (message in err). */
static int tokenize_job(server *sv, serve_job *j, char *err, size_t err_len) {
    serve_req *r = &j->req;
    unsigned bos = loom_tokenizer_wants_bos(sv->tok) ? LOOM_TOK_ADD_BOS : 0;
    int n;
    if (r->chat) {
        char *text = NULL;
        bool tools = r->tool_msgs || (r->n_tools && r->tool_choice != SERVE_TOOLS_NONE);
        if (tools && sv->tools == LOOM_TOOLS_NONE) {
            snprintf(err, err_len,
                     "model %s's chat format (%s) has no tool calls: loom renders tools for Qwen2.5 / Qwen3-style "
                     "(Hermes), Llama 3.1+ (JSON, ipython) and Mistral v0.3 / Nemo ([TOOL_CALLS]) chat templates (see "
                     "loom serve --chat-format)",
                     sv->name, loom_chat_format_name(sv->fmt));
            return 400;
        }
        if (tools) {
            const loom_chat_tools_conv *cv = loom_chat_tools_get(sv->tools);
            char prefix[160] = "";
            if (r->tool_choice == SERVE_TOOLS_REQUIRED) snprintf(prefix, sizeof prefix, "%s", cv->required_prefix);
            if (r->tool_choice == SERVE_TOOLS_NAMED) /* the name is checked: letters, digits, _-. */
                snprintf(prefix, sizeof prefix, cv->named_prefix, r->tool_choice_name);
            bool listed = r->tool_choice != SERVE_TOOLS_NONE;
            /* Mistral's [TOOL_CALLS] is a control token in its vocabularies: the reply keeps its text */
            if (listed && r->n_tools && sv->call_mark >= 0) j->keep_token = sv->call_mark;
            text = loom_chat_render_tools(sv->tools, r->msgs, (size_t)r->n_msgs, (const char *const *)r->tools,
                                          listed ? (size_t)r->n_tools : 0, prefix);
            /* the reply starts with the prefix: it is put in each choice's text, where the calls are looked for */
            for (int i = 0; text && *prefix && i < r->n; i++) {
                loom_textbuf b = {0};
                if (loom_textbuf_add(&b, prefix, strlen(prefix)) < 0) break;
                j->ch[i].text = b.s, j->ch[i].len = b.len, j->ch[i].cap = b.cap;
            }
        } else {
            loom_chat_message *m = malloc((size_t)r->n_msgs * sizeof *m);
            for (int i = 0; m && i < r->n_msgs; i++) m[i] = (loom_chat_message){r->msgs[i].role, r->msgs[i].content};
            text = m ? loom_chat_render(sv->fmt, m, (size_t)r->n_msgs) : NULL;
            free(m);
        }
        n = text ? loom_tokenizer_encode(sv->tok, text, strlen(text), bos | LOOM_TOK_PARSE_SPECIAL, &j->prompt) : -1;
        if (text && sv->verbose) fprintf(stderr, "loom serve: prompt: %s\n", text);
        free(text);
    } else if (r->prompt) {
        n = loom_tokenizer_encode(sv->tok, r->prompt, strlen(r->prompt), bos, &j->prompt);
    } else {
        for (int i = 0; i < r->n_prompt_ids; i++)
            if (r->prompt_ids[i] >= sv->n_vocab) {
                snprintf(err, err_len, "prompt token %d is out of range (the vocabulary has %d tokens)", r->prompt_ids[i],
                         sv->n_vocab);
                return 400;
            }
        j->prompt = r->prompt_ids;
        r->prompt_ids = NULL;
        n = r->n_prompt_ids;
    }
    if (n < 0) {
        snprintf(err, err_len, "cannot tokenize the prompt: %s", loom_last_error());
        return 400;
    }
    j->n_prompt = n;
    if (n == 0) {
        snprintf(err, err_len, "the prompt is empty");
        return 400;
    }
    if (n >= sv->seq_ctx) {
        snprintf(err, err_len, "the prompt has %d tokens but a sequence holds %d (prompt + reply)", n, sv->seq_ctx);
        return 400;
    }
    if (r->max_tokens > sv->max_tokens) {
        snprintf(err, err_len, "max_tokens %d exceeds the server's limit of %d", r->max_tokens, sv->max_tokens);
        return 400;
    }
    int room = sv->seq_ctx - n;
    j->max_tokens = r->max_tokens > 0 ? r->max_tokens : sv->max_tokens;
    if (j->max_tokens > room) j->max_tokens = room;
    return 0;
}

typedef struct conn_ctx {
    char *body;
    size_t len, cap;
    bool too_big, chat;
} conn_ctx;

static enum MHD_Result completions(server *sv, struct MHD_Connection *c, conn_ctx *cc) {
    serve_job *j = serve_job_new();
    if (!j) return send_error(sv, c, 500, "out of memory", NULL);
    char err[512], param[SERVE_PARAM_LEN];
    if (serve_req_parse(&j->req, cc->chat, cc->body ? cc->body : "", cc->len, SERVE_MAX_N, err, sizeof err, param) < 0) {
        serve_job_unref(j);
        return send_error(sv, c, 400, err, param);
    }
    int code = tokenize_job(sv, j, err, sizeof err);
    if (code) {
        serve_job_unref(j);
        return send_error(sv, c, code, err,
                          code == 400 && strstr(err, "max_tokens") ? "max_tokens" : strstr(err, "tool calls") ? "tools" : "prompt");
    }
    int rc = serve_engine_submit(sv->eng, j);
    if (rc) {
        snprintf(err, sizeof err, "%s", loom_last_error());
        serve_job_unref(j);
        return send_error(sv, c, rc > 0 ? 429 : 400, err, rc > 0 ? NULL : "max_tokens");
    }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    int fd = ci ? ci->connect_fd : -1;
    char id[48];
    snprintf(id, sizeof id, "%s-%llx", j->req.chat ? "chatcmpl" : "cmpl", (unsigned long long)atomic_fetch_add(&sv->next_id, 1));
    long created = (long)time(NULL);
    if (sv->verbose)
        fprintf(stderr, "loom serve: %s %d prompt tokens, max_tokens %d, n %d%s\n", id, j->n_prompt, j->max_tokens, j->req.n,
                j->req.stream ? ", streaming" : "");
    if (j->req.stream) {
        stream_ctx *s = calloc(1, sizeof *s);
        if (!s) {
            cancel(j);
            serve_job_unref(j);
            return send_error(sv, c, 500, "out of memory", NULL);
        }
        s->sv = sv;
        s->j = j;
        s->fd = fd;
        s->created = created;
        snprintf(s->id, sizeof s->id, "%s", id);
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, s, stream_free);
        if (!r) {
            stream_free(s);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        enum MHD_Result q = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        count(sv, 200);
        return q;
    }
    uint64_t seen = 0;
    pthread_mutex_lock(&j->mu);
    bool alive = true;
    while (alive && !j->done) alive = wait_news(j, &seen, fd);
    pthread_mutex_unlock(&j->mu);
    enum MHD_Result q;
    if (!alive) {
        cancel(j);
        q = MHD_NO; /* nobody to answer */
    } else if (j->error) {
        q = send_error(sv, c, 500, j->error, NULL);
    } else {
        q = send_completion(sv, c, j, id, created);
    }
    serve_job_unref(j);
    return q;
}

static bool authorized(server *sv, struct MHD_Connection *c) {
    if (!sv->api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7)) return false;
    const char *k = h + 7;
    size_t a = strlen(k), b = strlen(sv->api_key);
    unsigned diff = a != b; /* compare every byte: no early exit to time */
    for (size_t i = 0; i < a && i < b; i++) diff |= (unsigned char)(k[i] ^ sv->api_key[i]);
    return diff == 0;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method, const char *version,
                              const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    server *sv = cls;
    conn_ctx *cc = *con_cls;
    bool post = !strcmp(method, "POST"), get = !strcmp(method, "GET");
    bool chat = !strcmp(url, "/v1/chat/completions"), cmpl = !strcmp(url, "/v1/completions");
    if (!cc) { /* the headers are in */
        if (!chat && !cmpl && strcmp(url, "/v1/models") && strcmp(url, "/health") && strcmp(url, "/metrics"))
            return send_error(sv, c, 404, "no such endpoint (try /v1/chat/completions, /v1/completions, /v1/models, /health, /metrics)", NULL);
        if ((chat || cmpl) ? !post : !get) return send_error(sv, c, 405, (chat || cmpl) ? "use POST" : "use GET", NULL);
        if (strcmp(url, "/health") && !authorized(sv, c))
            return send_error(sv, c, 401, "a valid API key is needed (Authorization: Bearer KEY)", NULL);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > sv->max_body) {
            char m[128];
            snprintf(m, sizeof m, "the request body is larger than %zu bytes", sv->max_body);
            return send_error(sv, c, 413, m, NULL);
        }
        if (!(cc = calloc(1, sizeof *cc))) return MHD_NO;
        cc->chat = chat;
        *con_cls = cc;
        return MHD_YES;
    }
    if (*upload_size) { /* a piece of the body */
        if (cc->len + *upload_size > sv->max_body) cc->too_big = true;
        if (!cc->too_big) {
            if (cc->len + *upload_size + 1 > cc->cap) {
                size_t cap = cc->cap ? cc->cap : 4096;
                while (cap < cc->len + *upload_size + 1) cap *= 2;
                char *b = realloc(cc->body, cap);
                if (!b) return MHD_NO;
                cc->body = b;
                cc->cap = cap;
            }
            memcpy(cc->body + cc->len, upload, *upload_size);
            cc->len += *upload_size;
            cc->body[cc->len] = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cc->too_big) {
        char m[128];
        snprintf(m, sizeof m, "the request body is larger than %zu bytes", sv->max_body);
        return send_error(sv, c, 413, m, NULL);
    }
    if (!strcmp(url, "/health")) return send_text(sv, c, 200, "application/json", strdup("{\"status\":\"ok\"}"));
    if (!strcmp(url, "/v1/models")) return send_models(sv, c);
    if (!strcmp(url, "/metrics")) return send_metrics(sv, c);
    return completions(sv, c, cc);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    conn_ctx *cc = *con_cls;
    if (cc) {
        free(cc->body);
        free(cc);
    }
    *con_cls = NULL;
}

/* ---- main ------------------------------------------------------------------------------------- */
int cmd_serve(int argc, char **argv) {
    loom_common_opts co;
    loom_common_defaults(&co);
    const char *host = "127.0.0.1", *api_key = getenv("LOOM_API_KEY"), *name = NULL, *chat_format = NULL;
    long port = 8080, parallel = 8, queue = 64, max_tokens = 512, max_body = 1 << 20, max_conn = 256, seq_ctx = 0;
    bool verbose = false, no_prefix_cache = false;
    const loom_opt opts[] = {
        {.names = "--host", .type = LOOM_OPT_STR, .arg = "ADDR", .help = "IPv4 address to listen on", .dst = &host},
        {.names = "--port",
         .type = LOOM_OPT_INT,
         .arg = "N",
         .help = "TCP port (0: any free port, printed on stderr)",
         .lo = 0,
         .hi = 65535,
         .dst = &port},
        {.names = "--parallel",
         .type = LOOM_OPT_INT,
         .arg = "N",
         .help = "sequences decoded together",
         .lo = 1,
         .hi = 256,
         .dst = &parallel},
        {.names = "--queue",
         .type = LOOM_OPT_INT,
         .arg = "N",
         .help = "requests waiting for a place; more get 429",
         .lo = 0,
         .hi = 1 << 20,
         .dst = &queue},
        {.names = "--max-tokens",
         .type = LOOM_OPT_INT,
         .arg = "N",
         .help = "largest max_tokens a request may ask for, and the default",
         .lo = 1,
         .hi = 1 << 24,
         .dst = &max_tokens},
        {.names = "--max-body",
         .type = LOOM_OPT_INT,
         .arg = "BYTES",
         .help = "largest request body; more is 413",
         .lo = 64,
         .hi = 1L << 30,
         .dst = &max_body},
        {.names = "--max-connections",
         .type = LOOM_OPT_INT,
         .arg = "N",
         .help = "open connections at once; more are refused",
         .lo = 1,
         .hi = 1 << 16,
         .dst = &max_conn},
        {.names = "--api-key",
         .type = LOOM_OPT_STR,
         .arg = "KEY",
         .help = "require \"Authorization: Bearer KEY\" (also LOOM_API_KEY); /health is open",
         .dst = &api_key,
         .no_default = true},
        {.names = "--name",
         .type = LOOM_OPT_STR,
         .arg = "NAME",
         .help = "the model's id in responses and /v1/models (default: the file name)",
         .dst = &name},
        {.names = "--seq-ctx",
         .type = LOOM_OPT_INT,
         .arg = "N",
         .help = "tokens one sequence may hold, prompt + reply (default: the model's\n"
                 "training context, at most 4096)",
         .lo = 16,
         .hi = 1 << 24,
         .dst = &seq_ctx},
        {.names = "--no-prefix-cache",
         .type = LOOM_OPT_FLAG,
         .help = "evaluate every prompt in full (default: reuse the cached blocks of\n"
                 "earlier requests' shared prefixes)",
         .dst = &no_prefix_cache},
        {.names = "--chat-format",
         .type = LOOM_OPT_STR,
         .arg = "NAME",
         .help = "chat turns and tool calls: qwen3, qwen2.5 (ChatML with Hermes-style tool\n"
                 "calls), llama3.1, llama3.2 (Llama 3 turns with JSON tool calls), mistral-v3,\n"
                 "mistral-nemo (Mistral 7B v0.3's / Nemo's [TOOL_CALLS]), chatml, llama2,\n"
                 "llama3, gemma, phi3, mistral, none (default: from the model's chat template)",
         .dst = &chat_format},
        {.names = "--verbose", .type = LOOM_OPT_FLAG, .help = "log each request (and its prompt) on stderr", .dst = &verbose},
        LOOM_OPT_HEADING("(--ctx is the KV cache shared by all sequences; default parallel x --seq-ctx)"),
        LOOM_OPT_END,
    };
    int prc = loom_opts_parse("serve", "[-m MODEL] [options]",
                              "An OpenAI-style HTTP API (docs/serving.md): POST /v1/chat/completions, POST /v1/completions\n"
                              "(both with \"stream\": true as server-sent events), GET /v1/models, /health, /metrics.",
                              opts, &co, argc, argv);
    if (prc >= 0) return prc;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "loom serve: --host '%s' is not an IPv4 address\n", host);
        return 2;
    }
    if (api_key && !*api_key) api_key = NULL;
    const char *path = loom_model_path(&co);
    int rc = 1;
    loom_session *s = NULL;
    serve_engine *eng = NULL;
    struct MHD_Daemon *d = NULL;
    loom_model *m = loom_model_load(path);
    loom_tokenizer *tok = m ? loom_tokenizer_load(path) : NULL;
    if (!m || !tok) {
        fprintf(stderr, "loom serve: %s\n", loom_last_error());
        goto done;
    }
    loom_chat_format fmt = loom_chat_detect_tok(tok, loom_model_chat_family(m));
    loom_chat_tools tools = loom_chat_tools_detect(loom_tokenizer_chat_template(tok), fmt);
    if (chat_format) {
        tools = loom_chat_tools_from_name(chat_format);
        fmt = tools != LOOM_TOOLS_NONE ? loom_chat_tools_get(tools)->format : loom_chat_format_from_name(chat_format);
        if (tools == LOOM_TOOLS_NONE && strcmp(chat_format, loom_chat_format_name(fmt))) {
            fprintf(stderr, "loom serve: --chat-format '%s' is not a chat format (qwen3, qwen2.5, llama3.1, llama3.2, "
                            "mistral-v3, mistral-nemo, chatml, llama2, llama3, gemma, phi3, mistral, none)\n", chat_format);
            goto done;
        }
    }
    loom_model_info info = loom_model_get_info(m);
    if (!seq_ctx) seq_ctx = info.n_ctx_train > 0 && info.n_ctx_train < 4096 ? info.n_ctx_train : 4096;
    if (seq_ctx > info.n_ctx_train && info.n_ctx_train > 0)
        fprintf(stderr, "loom serve: warning: --seq-ctx %ld exceeds the model's training context (%d)\n", seq_ctx, info.n_ctx_train);
    loom_session_opts so = loom_common_session_opts(&co);
    if (!co.n_ctx) so.n_ctx = (int)(parallel * seq_ctx < (1L << 30) ? parallel * seq_ctx : 1L << 30);
    so.verbose = verbose;
    s = loom_session_new(m, &so);
    if (!s) {
        fprintf(stderr, "loom serve: %s\n", loom_last_error());
        goto done;
    }
    if (seq_ctx > loom_session_ctx(s)) seq_ctx = loom_session_ctx(s);
    serve_engine_opts eo = {.max_seqs = (int)parallel, .max_queue = (int)queue, .seq_ctx = (int)seq_ctx, .prefill_chunk = 256,
                            .prefix_cache = !no_prefix_cache};
    eng = serve_engine_new(s, tok, info.n_vocab, &eo);
    if (!eng) {
        fprintf(stderr, "loom serve: %s\n", loom_last_error());
        goto done;
    }
    if (!name) {
        const char *slash = strrchr(path, '/');
        name = slash && slash[1] ? slash + 1 : path;
    }
    server sv = {.eng = eng, .model = m, .tok = tok, .n_vocab = info.n_vocab, .seq_ctx = (int)seq_ctx, .max_tokens = (int)max_tokens,
                 .max_seqs = (int)parallel, .fmt = fmt, .tools = tools, .max_body = (size_t)max_body, .api_key = api_key, .name = name,
                 .verbose = verbose, .t_start = (double)time(NULL), .call_mark = -1};
    if (tools != LOOM_TOOLS_NONE) { /* Mistral's [TOOL_CALLS] is a control token in its vocabularies */
        const loom_chat_tools_conv *cv = loom_chat_tools_get(tools);
        int32_t mark = cv->call_list ? loom_tokenizer_find(tok, cv->call_open, strlen(cv->call_open)) : -1;
        if (mark >= 0 && loom_tokenizer_is_special(tok, mark)) sv.call_mark = mark;
    }
    /* signals: SIGINT/SIGTERM are waited for here; no other thread takes them */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL, handle,
                         &sv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT,
                         (unsigned)max_conn, MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_THREAD_STACK_SIZE,
                         (size_t)(512 << 10), MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "loom serve: cannot listen on %s:%ld (%s)\n", host, port, errno ? strerror(errno) : "in use?");
        goto done;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    fprintf(stderr, "loom serve: %s on %s, %d sequences of up to %ld tokens (KV cache %d tokens)\n", name,
            loom_session_device(s), (int)parallel, seq_ctx, loom_session_ctx(s));
    fprintf(stderr, "loom serve: chat format %s, tool calls %s\n", loom_chat_format_name(fmt), loom_chat_tools_name(tools));
    fprintf(stderr, "loom serve: listening on http://%s:%u\n", host, di ? di->port : (unsigned)port);
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "loom serve: %s, stopping\n", sig == SIGINT ? "interrupted" : "terminated");
    rc = 0;
done:
    if (d) MHD_stop_daemon(d);
    serve_engine_free(eng);
    loom_session_free(s);
    loom_tokenizer_free(tok);
    loom_model_free(m);
    return rc;
}
