/* Request bodies of /v1/completions and /v1/chat/completions -> serve_req. Every field is
 * checked for type and range; unknown fields are refused (as OpenAI's API does), so a misspelled
 * option is never silently ignored. No HTTP here: fuzz/fuzz_serve_req.c drives this directly. */
#include "tools/serve.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *err;
    size_t err_len;
    char *param; /* [SERVE_PARAM_LEN] */
} perr;

static int fail(perr *e, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(perr *e, const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err, e->err_len, fmt, ap);
    va_end(ap);
    if (e->param) snprintf(e->param, SERVE_PARAM_LEN, "%s", param ? param : "");
    return -1;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

/* a JSON number that is a whole number in [lo, hi] */
static int get_int(perr *e, const cJSON *v, const char *name, double lo, double hi, int *out) {
    if (!cJSON_IsNumber(v)) return fail(e, name, "'%s' must be an integer", name);
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < lo || d > hi)
        return fail(e, name, "'%s' must be an integer in [%.0f, %.0f]", name, lo, hi);
    *out = (int)d;
    return 0;
}

static int get_num(perr *e, const cJSON *v, const char *name, double lo, double hi, float *out) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
        return fail(e, name, "'%s' must be a number in [%g, %g]", name, lo, hi);
    *out = (float)v->valuedouble;
    return 0;
}

static int get_bool(perr *e, const cJSON *v, const char *name, bool *out) {
    if (!cJSON_IsBool(v)) return fail(e, name, "'%s' must be true or false", name);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* message content: a string, or an array of {"type": "text", "text": "..."} parts (joined) */
static char *content_text(perr *e, const cJSON *c) {
    if (cJSON_IsString(c)) {
        char *s = dup_str(c->valuestring);
        if (!s) fail(e, "messages", "out of memory");
        return s;
    }
    if (!cJSON_IsArray(c)) {
        fail(e, "messages", "a message's 'content' must be a string or an array of text parts");
        return NULL;
    }
    size_t len = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, c) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type"), *text = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsObject(p) || !cJSON_IsString(type) || strcmp(type->valuestring, "text") || !cJSON_IsString(text)) {
            fail(e, "messages", "a content part must be {\"type\": \"text\", \"text\": STRING} (only text is supported)");
            return NULL;
        }
        len += strlen(text->valuestring);
    }
    char *s = malloc(len + 1);
    if (!s) {
        fail(e, "messages", "out of memory");
        return NULL;
    }
    s[0] = 0;
    size_t at = 0;
    cJSON_ArrayForEach(p, c) {
        const char *t = cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
        size_t n = strlen(t);
        memcpy(s + at, t, n + 1);
        at += n;
    }
    return s;
}

/* ---- JSON as Python's json.dumps writes it (chat templates' tojson) ------------------------- */
typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} sbuf;

static void put(sbuf *b, const char *p, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = realloc(b->s, cap);
        if (!d) {
            b->oom = true;
            return;
        }
        b->s = d;
        b->cap = cap;
    }
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = 0;
}
static void puts_(sbuf *b, const char *p) { put(b, p, strlen(p)); }

static void py_string(sbuf *b, const char *s) {
    put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': puts_(b, "\\\""); break;
        case '\\': puts_(b, "\\\\"); break;
        case '\n': puts_(b, "\\n"); break;
        case '\r': puts_(b, "\\r"); break;
        case '\t': puts_(b, "\\t"); break;
        case '\b': puts_(b, "\\b"); break;
        case '\f': puts_(b, "\\f"); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                puts_(b, esc);
            } else {
                put(b, (const char *)p, 1); /* ensure_ascii=False: UTF-8 as it is */
            }
        }
    }
    put(b, "\"", 1);
}

static void py_value(sbuf *b, const cJSON *v, int depth) {
    if (depth > 64) { /* cJSON's own nesting limit is lower; never reached */
        b->oom = true;
        return;
    }
    if (cJSON_IsNull(v)) puts_(b, "null");
    else if (cJSON_IsTrue(v)) puts_(b, "true");
    else if (cJSON_IsFalse(v)) puts_(b, "false");
    else if (cJSON_IsString(v)) py_string(b, v->valuestring);
    else if (cJSON_IsNumber(v)) {
        char num[40];
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 1e15) snprintf(num, sizeof num, "%.0f", d);
        else {
            snprintf(num, sizeof num, "%.15g", d); /* the shortest of %.15g / %.17g that reads back */
            if (strtod(num, NULL) != d) snprintf(num, sizeof num, "%.17g", d);
        }
        puts_(b, num);
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        bool obj = cJSON_IsObject(v);
        put(b, obj ? "{" : "[", 1);
        const cJSON *c;
        bool first = true;
        cJSON_ArrayForEach(c, v) {
            if (!first) puts_(b, ", ");
            first = false;
            if (obj) {
                py_string(b, c->string);
                puts_(b, ": ");
            }
            py_value(b, c, depth + 1);
        }
        put(b, obj ? "}" : "]", 1);
    } else {
        puts_(b, "null");
    }
}

char *serve_json_py(const struct cJSON *v) {
    sbuf b = {0};
    py_value(&b, v, 0);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

/* ---- messages -------------------------------------------------------------------------------- */
/* A call's arguments (OpenAI sends them as a JSON string) as the prompt shows them: re-written the
 * way the model writes JSON (Python's spacing) when they parse, as given when they do not. */
static char *call_arguments(perr *e, const cJSON *a) {
    char *s = NULL;
    if (cJSON_IsString(a)) {
        cJSON *p = cJSON_Parse(a->valuestring);
        s = p ? serve_json_py(p) : dup_str(a->valuestring);
        cJSON_Delete(p);
    } else if (cJSON_IsObject(a)) {
        s = serve_json_py(a);
    } else {
        fail(e, "messages", "a tool call's 'arguments' must be a JSON string (or an object)");
        return NULL;
    }
    if (!s) fail(e, "messages", "out of memory");
    return s;
}

static int parse_tool_calls(perr *e, loom_chat_turn *t, int i, const cJSON *v) {
    if (cJSON_IsNull(v)) return 0;
    if (!cJSON_IsArray(v)) return fail(e, "messages", "message %d: 'tool_calls' must be an array", i);
    int n = cJSON_GetArraySize(v);
    if (!n) return 0;
    loom_chat_call *calls = calloc((size_t)n, sizeof *calls);
    if (!calls) return fail(e, "messages", "out of memory");
    t->calls = calls;
    const cJSON *c;
    cJSON_ArrayForEach(c, v) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function"), *type = cJSON_GetObjectItemCaseSensitive(c, "type");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name"), *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
        if (!cJSON_IsObject(c) || !cJSON_IsObject(fn) || (type && !(cJSON_IsString(type) && !strcmp(type->valuestring, "function"))) ||
            (id && !cJSON_IsString(id)) || !cJSON_IsString(name) || !*name->valuestring || !args)
            return fail(e, "messages",
                        "message %d: a tool call must be {\"id\": STRING, \"type\": \"function\", \"function\": {\"name\": STRING, "
                        "\"arguments\": STRING}}", i);
        char *nm = dup_str(name->valuestring), *a = nm ? call_arguments(e, args) : NULL;
        char *cid = id && a ? dup_str(id->valuestring) : NULL;
        calls[t->n_calls].name = nm;
        calls[t->n_calls].arguments = a;
        calls[t->n_calls].id = cid; /* Mistral's template writes it into the prompt */
        t->n_calls++;
        if (!nm || (id && a && !cid)) return fail(e, "messages", "out of memory");
        if (!a) return -1;
    }
    return 0;
}

static int parse_messages(perr *e, serve_req *r, const cJSON *v) {
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0) return fail(e, "messages", "'messages' must be a non-empty array");
    int n = cJSON_GetArraySize(v);
    r->msgs = calloc((size_t)n, sizeof *r->msgs);
    if (!r->msgs) return fail(e, "messages", "out of memory");
    const cJSON *m;
    cJSON_ArrayForEach(m, v) {
        if (!cJSON_IsObject(m)) return fail(e, "messages", "message %d is not an object", r->n_msgs);
        const cJSON *f;
        cJSON_ArrayForEach(f, m) {
            /* an assistant message sent back as a client library returns it carries these, empty */
            bool empty = cJSON_IsNull(f) || (cJSON_IsArray(f) && !cJSON_GetArraySize(f));
            if (empty && (!strcmp(f->string, "refusal") || !strcmp(f->string, "function_call") || !strcmp(f->string, "audio") ||
                          !strcmp(f->string, "annotations")))
                continue;
            if (strcmp(f->string, "role") && strcmp(f->string, "content") && strcmp(f->string, "name") &&
                strcmp(f->string, "tool_calls") && strcmp(f->string, "tool_call_id"))
                return fail(e, "messages", "message %d has an unknown field '%s'", r->n_msgs, f->string);
        }
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role"), *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        const cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls"), *call_id = cJSON_GetObjectItemCaseSensitive(m, "tool_call_id");
        if (!cJSON_IsString(role)) return fail(e, "messages", "message %d needs a string 'role'", r->n_msgs);
        const char *rs = role->valuestring;
        if (!strcmp(rs, "developer")) rs = "system"; /* OpenAI's newer name for it */
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") && strcmp(rs, "tool"))
            return fail(e, "messages", "message %d has role '%.40s' (want system, user, assistant or tool)", r->n_msgs, rs);
        bool assistant = !strcmp(rs, "assistant"), tool = !strcmp(rs, "tool");
        if (calls && !assistant) return fail(e, "messages", "message %d: only an assistant message has 'tool_calls'", r->n_msgs);
        if (call_id && (!tool || !cJSON_IsString(call_id)))
            return fail(e, "messages", "message %d: 'tool_call_id' is a string of a tool message", r->n_msgs);
        loom_chat_turn *t = &r->msgs[r->n_msgs];
        t->role = !strcmp(rs, "system") ? "system" : !strcmp(rs, "user") ? "user" : assistant ? "assistant" : "tool";
        r->n_msgs++; /* counted now: what is parsed below is freed with the request */
        if (call_id && !(t->call_id = dup_str(call_id->valuestring))) return fail(e, "messages", "out of memory");
        if (calls && parse_tool_calls(e, t, r->n_msgs - 1, calls) < 0) return -1;
        if (tool || t->n_calls) r->tool_msgs = true;
        if ((!content || cJSON_IsNull(content)) && t->n_calls) { /* an assistant message that only calls tools */
            if (!(t->content = dup_str(""))) return fail(e, "messages", "out of memory");
            continue;
        }
        if (!content) return fail(e, "messages", "message %d has no 'content'", r->n_msgs - 1);
        char *text = content_text(e, content);
        if (!text) return -1;
        t->content = text;
    }
    bool user = false;
    for (int i = 0; i < r->n_msgs; i++) user |= !strcmp(r->msgs[i].role, "user");
    if (!user) return fail(e, "messages", "'messages' holds no user message");
    return 0;
}

/* tools: [{"type": "function", "function": {"name", "description", "parameters", "strict"}}] */
static int parse_tools(perr *e, serve_req *r, const cJSON *v) {
    if (cJSON_IsNull(v)) return 0;
    if (!cJSON_IsArray(v)) return fail(e, "tools", "'tools' must be an array");
    int n = cJSON_GetArraySize(v);
    r->tools = calloc((size_t)n + 1, sizeof *r->tools);
    r->tool_names = calloc((size_t)n + 1, sizeof *r->tool_names);
    if (!r->tools || !r->tool_names) return fail(e, "tools", "out of memory");
    const cJSON *t;
    cJSON_ArrayForEach(t, v) {
        int i = r->n_tools;
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type"), *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        if (!cJSON_IsObject(t) || cJSON_GetArraySize(t) != 2 || !cJSON_IsString(type) || strcmp(type->valuestring, "function") ||
            !cJSON_IsObject(fn))
            return fail(e, "tools", "tool %d must be {\"type\": \"function\", \"function\": {...}}", i);
        const cJSON *f;
        cJSON_ArrayForEach(f, fn) {
            if (strcmp(f->string, "name") && strcmp(f->string, "description") && strcmp(f->string, "parameters") &&
                strcmp(f->string, "strict"))
                return fail(e, "tools", "tool %d's function has an unknown field '%.40s'", i, f->string);
        }
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name"), *desc = cJSON_GetObjectItemCaseSensitive(fn, "description");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters"), *strict = cJSON_GetObjectItemCaseSensitive(fn, "strict");
        if (!cJSON_IsString(name) || !*name->valuestring || strlen(name->valuestring) > 64)
            return fail(e, "tools", "tool %d needs a function 'name' (a string of 1 to 64 characters)", i);
        for (const char *p = name->valuestring; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.'))
                return fail(e, "tools", "tool %d's name '%.64s' may hold only letters, digits, '_', '-' and '.'", i, name->valuestring);
        if (desc && !cJSON_IsString(desc)) return fail(e, "tools", "tool %d's 'description' must be a string", i);
        if (params && !cJSON_IsObject(params)) return fail(e, "tools", "tool %d's 'parameters' must be a JSON schema object", i);
        if (strict && !cJSON_IsBool(strict)) return fail(e, "tools", "tool %d's 'strict' must be true or false", i);
        for (int k = 0; k < i; k++)
            if (!strcmp(r->tool_names[k], name->valuestring)) return fail(e, "tools", "two tools are named '%s'", name->valuestring);
        r->tools[i] = serve_json_py(t);
        r->tool_names[i] = dup_str(name->valuestring);
        r->n_tools++;
        if (!r->tools[i] || !r->tool_names[i]) return fail(e, "tools", "out of memory");
    }
    return 0;
}

static int parse_tool_choice(perr *e, serve_req *r, const cJSON *v) {
    if (cJSON_IsNull(v)) return 0;
    if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        if (!strcmp(s, "auto")) r->tool_choice = SERVE_TOOLS_AUTO;
        else if (!strcmp(s, "none")) r->tool_choice = SERVE_TOOLS_NONE;
        else if (!strcmp(s, "required")) r->tool_choice = SERVE_TOOLS_REQUIRED;
        else return fail(e, "tool_choice", "'tool_choice' must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
        return 0;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(v, "type"), *fn = cJSON_GetObjectItemCaseSensitive(v, "function");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    if (!cJSON_IsObject(v) || !cJSON_IsString(type) || strcmp(type->valuestring, "function") || !cJSON_IsString(name))
        return fail(e, "tool_choice", "'tool_choice' must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    r->tool_choice = SERVE_TOOLS_NAMED;
    if (!(r->tool_choice_name = dup_str(name->valuestring))) return fail(e, "tool_choice", "out of memory");
    return 0;
}

static int parse_prompt(perr *e, serve_req *r, const cJSON *v) {
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1 && cJSON_IsString(cJSON_GetArrayItem(v, 0)))
        v = cJSON_GetArrayItem(v, 0); /* ["text"]: one prompt */
    if (cJSON_IsString(v)) {
        if (!(r->prompt = dup_str(v->valuestring))) return fail(e, "prompt", "out of memory");
        return 0;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0)
        return fail(e, "prompt", "'prompt' must be a string, an array of one string, or a non-empty array of token ids");
    int n = cJSON_GetArraySize(v);
    r->prompt_ids = malloc((size_t)n * sizeof *r->prompt_ids);
    if (!r->prompt_ids) return fail(e, "prompt", "out of memory");
    const cJSON *t;
    cJSON_ArrayForEach(t, v) {
        int id;
        if (get_int(e, t, "prompt", 0, 2147483647.0, &id) < 0)
            return fail(e, "prompt", "'prompt' as an array holds one string or token ids (integers >= 0)");
        r->prompt_ids[r->n_prompt_ids++] = id;
    }
    return 0;
}

static int parse_stop(perr *e, serve_req *r, const cJSON *v) {
    if (cJSON_IsNull(v)) return 0;
    if (cJSON_IsString(v)) {
        if (!*v->valuestring) return fail(e, "stop", "a stop string must not be empty");
        if (!(r->stop[r->n_stop++] = dup_str(v->valuestring))) return fail(e, "stop", "out of memory");
        return 0;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > SERVE_MAX_STOP)
        return fail(e, "stop", "'stop' must be a string or an array of up to %d strings", SERVE_MAX_STOP);
    const cJSON *s;
    cJSON_ArrayForEach(s, v) {
        if (!cJSON_IsString(s) || !*s->valuestring) return fail(e, "stop", "'stop' entries must be non-empty strings");
        if (!(r->stop[r->n_stop++] = dup_str(s->valuestring))) return fail(e, "stop", "out of memory");
    }
    return 0;
}

static int parse_fields(perr *e, serve_req *r, const cJSON *root, int n_max) {
    if (!cJSON_IsObject(root)) return fail(e, NULL, "the request body must be a JSON object");
    bool has_input = false;
    const cJSON *f;
    cJSON_ArrayForEach(f, root) {
        const char *k = f->string;
        int rc = 0;
        for (const cJSON *g = root->child; g != f; g = g->next)
            if (!strcmp(g->string, k)) return fail(e, k, "field '%.60s' is given twice", k);
        if (r->chat && !strcmp(k, "messages")) {
            rc = parse_messages(e, r, f);
            has_input = true;
        } else if (!r->chat && !strcmp(k, "prompt")) {
            rc = parse_prompt(e, r, f);
            has_input = true;
        } else if (!strcmp(k, "model")) {
            if (!cJSON_IsString(f)) return fail(e, k, "'model' must be a string");
            if (!(r->model = dup_str(f->valuestring))) return fail(e, k, "out of memory");
        } else if (!strcmp(k, "max_tokens") || (r->chat && !strcmp(k, "max_completion_tokens"))) {
            if (!cJSON_IsNull(f)) rc = get_int(e, f, k, 1, 1 << 30, &r->max_tokens);
        } else if (!strcmp(k, "n")) {
            rc = get_int(e, f, k, 1, n_max, &r->n);
        } else if (!strcmp(k, "stream")) {
            rc = get_bool(e, f, k, &r->stream);
        } else if (!strcmp(k, "stream_options")) {
            if (cJSON_IsNull(f)) continue;
            const cJSON *u = cJSON_GetObjectItemCaseSensitive(f, "include_usage");
            if (!cJSON_IsObject(f) || cJSON_GetArraySize(f) != (u != NULL))
                return fail(e, k, "'stream_options' may only hold include_usage");
            if (u) rc = get_bool(e, u, "stream_options.include_usage", &r->include_usage);
        } else if (!strcmp(k, "temperature")) {
            if (!cJSON_IsNull(f)) rc = get_num(e, f, k, 0, 2, &r->sampling.temperature);
        } else if (!strcmp(k, "top_p")) {
            if (!cJSON_IsNull(f)) rc = get_num(e, f, k, 0, 1, &r->sampling.top_p);
        } else if (!strcmp(k, "min_p")) {
            if (!cJSON_IsNull(f)) rc = get_num(e, f, k, 0, 1, &r->sampling.min_p);
        } else if (!strcmp(k, "top_k")) {
            if (!cJSON_IsNull(f)) rc = get_int(e, f, k, 0, 1 << 30, &r->sampling.top_k);
        } else if (!strcmp(k, "seed")) {
            double d = cJSON_IsNumber(f) ? f->valuedouble : -1;
            if (cJSON_IsNull(f)) continue;
            if (!cJSON_IsNumber(f) || !isfinite(d) || d != floor(d) || d < -9.2e18 || d > 9.2e18)
                return fail(e, k, "'seed' must be an integer");
            r->sampling.seed = (uint64_t)(int64_t)d;
        } else if (!strcmp(k, "frequency_penalty")) {
            if (!cJSON_IsNull(f)) rc = get_num(e, f, k, -2, 2, &r->sampling.frequency_penalty);
        } else if (!strcmp(k, "presence_penalty")) {
            if (!cJSON_IsNull(f)) rc = get_num(e, f, k, -2, 2, &r->sampling.presence_penalty);
        } else if (!strcmp(k, "repeat_penalty")) {
            if (!cJSON_IsNull(f)) rc = get_num(e, f, k, 0, 10, &r->sampling.repeat_penalty);
        } else if (!strcmp(k, "repeat_last_n")) {
            if (!cJSON_IsNull(f)) rc = get_int(e, f, k, -1, 1 << 20, &r->sampling.penalty_last_n);
        } else if (!strcmp(k, "stop")) {
            rc = parse_stop(e, r, f);
        } else if (r->chat && !strcmp(k, "tools")) {
            rc = parse_tools(e, r, f);
        } else if (r->chat && !strcmp(k, "tool_choice")) {
            rc = parse_tool_choice(e, r, f);
        } else if (r->chat && !strcmp(k, "parallel_tool_calls")) {
            if (!cJSON_IsNull(f)) rc = get_bool(e, f, k, &r->parallel_tool_calls);
        } else if (!strcmp(k, "user")) {
            if (!cJSON_IsString(f)) return fail(e, k, "'user' must be a string");
        } else if (!strcmp(k, "logprobs") || !strcmp(k, "echo")) {
            if (!cJSON_IsNull(f) && !cJSON_IsFalse(f)) return fail(e, k, "'%s' is not supported", k);
        } else {
            return fail(e, k, "unknown field '%.60s'", k);
        }
        if (rc < 0) return -1;
    }
    if (!has_input) return fail(e, r->chat ? "messages" : "prompt", "the request needs '%s'", r->chat ? "messages" : "prompt");
    if ((r->tool_choice == SERVE_TOOLS_REQUIRED || r->tool_choice == SERVE_TOOLS_NAMED) && !r->n_tools)
        return fail(e, "tool_choice", "'tool_choice' asks for a tool call but the request has no 'tools'");
    if (r->tool_choice == SERVE_TOOLS_NAMED) {
        bool found = false;
        for (int i = 0; i < r->n_tools; i++) found |= !strcmp(r->tool_names[i], r->tool_choice_name);
        if (!found) return fail(e, "tool_choice", "'tool_choice' names '%.64s', which is not in 'tools'", r->tool_choice_name);
    }
    return 0;
}

int serve_req_parse(serve_req *r, bool chat, const char *body, size_t len, int n_max, char *err, size_t err_len,
                    char *param) {
    memset(r, 0, sizeof *r);
    r->chat = chat;
    r->max_tokens = -1;
    r->n = 1;
    r->parallel_tool_calls = true;
    r->sampling.temperature = 1.0f;
    r->sampling.top_p = 1.0f;
    r->sampling.seed = 0;
    if (param) *param = 0;
    perr e = {err, err_len, param};
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (!root) {
        size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        return fail(&e, NULL, "malformed JSON near byte %zu of the body", at);
    }
    for (const char *p = end; p && p < body + len; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
            cJSON_Delete(root);
            return fail(&e, NULL, "malformed JSON: text after the object at byte %zu", (size_t)(p - body));
        }
    int rc = parse_fields(&e, r, root, n_max);
    cJSON_Delete(root);
    if (rc < 0) serve_req_free(r);
    return rc;
}

void serve_req_free(serve_req *r) {
    free(r->prompt);
    free(r->prompt_ids);
    for (int i = 0; i < r->n_msgs; i++) {
        free((char *)r->msgs[i].content);
        for (int k = 0; k < r->msgs[i].n_calls; k++) {
            free((char *)r->msgs[i].calls[k].name);
            free((char *)r->msgs[i].calls[k].arguments);
            free((char *)r->msgs[i].calls[k].id);
        }
        free((char *)r->msgs[i].call_id);
        free((loom_chat_call *)r->msgs[i].calls);
    }
    free(r->msgs);
    for (int i = 0; i < r->n_tools; i++) {
        free(r->tools[i]);
        free(r->tool_names[i]);
    }
    free(r->tools);
    free(r->tool_names);
    free(r->tool_choice_name);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->model);
    memset(r, 0, sizeof *r);
    r->max_tokens = -1;
}
