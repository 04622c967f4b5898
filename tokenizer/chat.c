#include "tokenizer/chat.h"

#include "core/util.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

loom_chat_format loom_chat_detect(const char *t, const char *arch, bool has_im_start, bool has_header_tokens) {
    if (t) {
        if (strstr(t, "<|im_start|>")) return LOOM_CHAT_CHATML;
        if (strstr(t, "<|start_header_id|>")) return LOOM_CHAT_LLAMA3;
        if (strstr(t, "<start_of_turn>")) return LOOM_CHAT_GEMMA;
        if (strstr(t, "<|assistant|>") && strstr(t, "<|end|>")) return LOOM_CHAT_PHI3;
        /* [INST]: Llama 2's (<<SYS>> inside the first turn) unless the family is Mistral's or the
         * template has Mistral's tool tokens (a GGUF of Mistral 7B v0.3 says its family is "llama") */
        if (strstr(t, "[INST]"))
            return !strstr(t, "<<SYS>>") && (loom_chat_format_from_name(arch) == LOOM_CHAT_MISTRAL || strstr(t, "[TOOL_CALLS]"))
                       ? LOOM_CHAT_MISTRAL
                       : LOOM_CHAT_LLAMA2;
    }
    if (has_im_start) return LOOM_CHAT_CHATML;
    if (has_header_tokens) return LOOM_CHAT_LLAMA3;
    if (arch && (!strncmp(arch, "gemma", 5))) return LOOM_CHAT_GEMMA;
    if (arch && !strcmp(arch, "mixtral")) return LOOM_CHAT_MISTRAL;
    return loom_chat_format_from_name(arch);
}

static const char *const format_names[] = {"none", "chatml", "llama2", "llama3", "gemma", "phi3", "mistral"};

const char *loom_chat_format_name(loom_chat_format f) {
    return f >= 0 && (size_t)f < sizeof format_names / sizeof format_names[0] ? format_names[f] : "none";
}

loom_chat_format loom_chat_format_from_name(const char *name) {
    for (size_t i = 0; name && i < sizeof format_names / sizeof format_names[0]; i++)
        if (!strcmp(name, format_names[i])) return (loom_chat_format)i;
    return LOOM_CHAT_NONE;
}

static char *fmt(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, f);
    vsnprintf(s, (size_t)n + 1, f, ap);
    va_end(ap);
    return s;
}

char *loom_chat_user_turn(loom_chat_format f, const char *system, const char *user, bool first, bool after_reply) {
    bool sys = first && system && *system;
    switch (f) {
    case LOOM_CHAT_CHATML:
        return fmt("%s%s%s%s<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", after_reply ? "<|im_end|>\n" : "",
                   sys ? "<|im_start|>system\n" : "", sys ? system : "", sys ? "<|im_end|>\n" : "", user);
    case LOOM_CHAT_LLAMA3:
        return fmt("%s%s%s%s<|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n",
                   after_reply ? "<|eot_id|>" : "", sys ? "<|start_header_id|>system<|end_header_id|>\n\n" : "",
                   sys ? system : "", sys ? "<|eot_id|>" : "", user);
    case LOOM_CHAT_LLAMA2:
        /* BOS starts every exchange in Llama 2's format; the first one comes from the tokenizer */
        if (sys) return fmt("[INST] <<SYS>>\n%s\n<</SYS>>\n\n%s [/INST]", system, user);
        return fmt("%s[INST] %s [/INST]", after_reply ? " </s><s>" : "", user);
    case LOOM_CHAT_GEMMA: /* no system role: Gemma's template puts it before the first user message */
        return fmt("%s<start_of_turn>user\n%s%s%s<end_of_turn>\n<start_of_turn>model\n",
                   after_reply ? "<end_of_turn>\n" : "", sys ? system : "", sys ? "\n\n" : "", user);
    case LOOM_CHAT_PHI3:
        return fmt("%s%s%s%s<|user|>\n%s<|end|>\n<|assistant|>\n", after_reply ? "<|end|>\n" : "",
                   sys ? "<|system|>\n" : "", sys ? system : "", sys ? "<|end|>\n" : "", user);
    case LOOM_CHAT_MISTRAL: /* BOS from the tokenizer; the reply's </s> was generated, not evaluated */
        return fmt("%s[INST] %s%s%s [/INST]", after_reply ? "</s>" : "", sys ? system : "", sys ? "\n\n" : "", user);
    default:
        return fmt("%s%s%s", sys ? system : "", sys ? "\n" : "", user);
    }
}

loom_chat_format loom_chat_detect_tok(const loom_tokenizer *t, const char *family) {
    return loom_chat_detect(loom_tokenizer_chat_template(t), family, loom_tokenizer_find(t, "<|im_start|>", 12) >= 0,
                            loom_tokenizer_find(t, "<|start_header_id|>", 19) >= 0);
}

/* Append src to the growing string *dst (length *len); frees src. */
static int append(char **dst, size_t *len, char *src) {
    if (!src) return -1;
    size_t n = strlen(src);
    char *d = realloc(*dst, *len + n + 1);
    if (!d) {
        free(src);
        return -1;
    }
    memcpy(d + *len, src, n + 1);
    *dst = d;
    *len += n;
    free(src);
    return 0;
}

char *loom_chat_render(loom_chat_format f, const loom_chat_message *msgs, size_t n) {
    /* the system messages, joined, open the first turn */
    char *system = NULL, *out = NULL;
    size_t slen = 0, olen = 0;
    bool any_user = false;
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role, *c = msgs[i].content;
        if (!r || !c) return loom_err_null("chat: message %zu has no %s", i, r ? "content" : "role");
        if (!strcmp(r, "user")) any_user = true;
        else if (strcmp(r, "system") && strcmp(r, "assistant"))
            return loom_err_null("chat: message %zu has role '%s' (want system, user or assistant)", i, r);
    }
    if (!any_user) return loom_err_null("chat: the conversation has no user message");
    for (size_t i = 0; i < n; i++)
        if (!strcmp(msgs[i].role, "system") && append(&system, &slen, fmt("%s%s", slen ? "\n" : "", msgs[i].content)) < 0)
            goto oom;
    out = calloc(1, 1);
    if (!out) goto oom;
    bool first = true, after_reply = false;
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!strcmp(r, "user")) {
            if (append(&out, &olen, loom_chat_user_turn(f, system, msgs[i].content, first, after_reply)) < 0) goto oom;
            first = false;
            after_reply = false;
        } else if (!strcmp(r, "assistant") && !first) {
            /* a reply before any user turn has no place in these formats: left out */
            if (append(&out, &olen, fmt("%s", msgs[i].content)) < 0) goto oom;
            after_reply = true;
        }
    }
    free(system);
    return out;
oom:
    free(system);
    free(out);
    return loom_err_null("chat: out of memory");
}

/* ---- tool calls ------------------------------------------------------------------------------ */
static char *render_hermes(const loom_chat_tools_conv *c, const loom_chat_turn *msgs, size_t n, const char *const *tools,
                           size_t n_tools, const char *reply_prefix);
static char *render_llama3(const loom_chat_tools_conv *c, const loom_chat_turn *msgs, size_t n, const char *const *tools,
                           size_t n_tools, const char *reply_prefix);
static char *render_mistral(const loom_chat_tools_conv *c, const loom_chat_turn *msgs, size_t n, const char *const *tools,
                            size_t n_tools, const char *reply_prefix);

static const loom_chat_tools_conv CONVS[LOOM_TOOLS_COUNT] = {
    [LOOM_TOOLS_QWEN3] = {.name = "qwen3", .format = LOOM_CHAT_CHATML, .call_open = "<tool_call>", .call_close = "</tool_call>",
                          .required_prefix = "<tool_call>\n", .named_prefix = "<tool_call>\n{\"name\": \"%s\", \"arguments\": ",
                          .render = render_hermes},
    [LOOM_TOOLS_QWEN25] = {.name = "qwen2.5", .format = LOOM_CHAT_CHATML, .call_open = "<tool_call>", .call_close = "</tool_call>",
                           .required_prefix = "<tool_call>\n", .named_prefix = "<tool_call>\n{\"name\": \"%s\", \"arguments\": ",
                           .default_system = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
                           .render = render_hermes},
    [LOOM_TOOLS_LLAMA31] = {.name = "llama3.1", .format = LOOM_CHAT_LLAMA3, .call_open = "<|python_tag|>", .bare_json = true,
                            .required_prefix = "{\"name\": \"", .named_prefix = "{\"name\": \"%s\", \"parameters\": ",
                            .max_calls_per_message = 1, .fixed_date = "26 Jul 2024", .render = render_llama3},
    [LOOM_TOOLS_LLAMA32] = {.name = "llama3.2", .format = LOOM_CHAT_LLAMA3, .call_open = "<|python_tag|>", .bare_json = true,
                            .required_prefix = "{\"name\": \"", .named_prefix = "{\"name\": \"%s\", \"parameters\": ",
                            .max_calls_per_message = 1, .render = render_llama3},
    [LOOM_TOOLS_MISTRAL_V3] = {.name = "mistral-v3", .format = LOOM_CHAT_MISTRAL, .call_open = "[TOOL_CALLS]", .call_list = true,
                               .id_len = 9, .required_prefix = "[TOOL_CALLS] [",
                               .named_prefix = "[TOOL_CALLS] [{\"name\": \"%s\", \"arguments\": ", .render = render_mistral},
    [LOOM_TOOLS_MISTRAL_NEMO] = {.name = "mistral-nemo", .format = LOOM_CHAT_MISTRAL, .call_open = "[TOOL_CALLS]", .call_list = true,
                                 .id_len = 9, .required_prefix = "[TOOL_CALLS][",
                                 .named_prefix = "[TOOL_CALLS][{\"name\": \"%s\", \"arguments\": ", .render = render_mistral},
};

const loom_chat_tools_conv *loom_chat_tools_get(loom_chat_tools t) {
    return t > LOOM_TOOLS_NONE && t < LOOM_TOOLS_COUNT ? &CONVS[t] : NULL;
}

loom_chat_tools loom_chat_tools_from_name(const char *name) {
    for (int t = LOOM_TOOLS_NONE + 1; name && t < LOOM_TOOLS_COUNT; t++)
        if (!strcmp(name, CONVS[t].name)) return (loom_chat_tools)t;
    return LOOM_TOOLS_NONE;
}

loom_chat_tools loom_chat_tools_detect(const char *t, loom_chat_format f) {
    if (!t) return LOOM_TOOLS_NONE;
    if (f == LOOM_CHAT_CHATML && strstr(t, "<tool_call>"))
        return strstr(t, CONVS[LOOM_TOOLS_QWEN25].default_system) ? LOOM_TOOLS_QWEN25 : LOOM_TOOLS_QWEN3;
    if (f == LOOM_CHAT_LLAMA3 && strstr(t, "ipython")) return strstr(t, "strftime_now") ? LOOM_TOOLS_LLAMA32 : LOOM_TOOLS_LLAMA31;
    /* Mistral's v3 templates (the [INST] turns may have been taken for Llama 2's when the family is
     * not known as Mistral's: a GGUF of Mistral 7B says "llama") */
    if ((f == LOOM_CHAT_MISTRAL || f == LOOM_CHAT_LLAMA2) && strstr(t, "[AVAILABLE_TOOLS]")) {
        if (strstr(t, "\"[TOOL_CALLS] [\"") && strstr(t, "'[TOOL_RESULTS] {\"content\": '")) return LOOM_TOOLS_MISTRAL_V3;
        if (strstr(t, "\"[TOOL_CALLS][\"") && strstr(t, "'[TOOL_RESULTS]{\"content\": '")) return LOOM_TOOLS_MISTRAL_NEMO;
    }
    return LOOM_TOOLS_NONE;
}

const char *loom_chat_tools_name(loom_chat_tools t) {
    const loom_chat_tools_conv *c = loom_chat_tools_get(t);
    return c ? c->name : "none";
}

char *loom_chat_render_tools(loom_chat_tools t, const loom_chat_turn *msgs, size_t n, const char *const *tools,
                             size_t n_tools, const char *reply_prefix) {
    const loom_chat_tools_conv *c = loom_chat_tools_get(t);
    if (!c) return loom_err_null("chat: this chat format has no tool calls");
    bool any_user = false;
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r || !msgs[i].content) return loom_err_null("chat: message %zu has no %s", i, r ? "content" : "role");
        if (!strcmp(r, "user")) any_user = true;
        else if (strcmp(r, "system") && strcmp(r, "assistant") && strcmp(r, "tool"))
            return loom_err_null("chat: message %zu has role '%s' (want system, user, assistant or tool)", i, r);
        for (int k = 0; k < msgs[i].n_calls; k++)
            if (!msgs[i].calls[k].name || !msgs[i].calls[k].arguments)
                return loom_err_null("chat: message %zu: tool call %d has no name or arguments", i, k);
        if (c->max_calls_per_message && msgs[i].n_calls > c->max_calls_per_message)
            return loom_err_null("chat: message %zu calls %d functions at once; the %s chat template takes %d call per "
                                 "assistant message (send each call and its result as messages of their own)",
                                 i, msgs[i].n_calls, c->name, c->max_calls_per_message);
    }
    if (!any_user) return loom_err_null("chat: the conversation has no user message");
    return c->render(c, msgs, n, tools, n_tools, reply_prefix);
}

/* The Hermes-style conversation of Qwen2.5 / Qwen3's templates (tool definitions in the system
 * turn, calls inside <tool_call>, consecutive tool results in one user turn). */
static char *render_hermes(const loom_chat_tools_conv *c, const loom_chat_turn *msgs, size_t n, const char *const *tools,
                           size_t n_tools, const char *reply_prefix) {
    bool q25 = c->default_system != NULL;
    bool sys0 = n > 0 && !strcmp(msgs[0].role, "system");
    const char *system = sys0 ? msgs[0].content : c->default_system;
    char *out = calloc(1, 1);
    size_t len = 0;
    if (!out) goto oom;
    if (n_tools) {
        if (append(&out, &len, fmt("<|im_start|>system\n%s%s# Tools\n\nYou may call one or more functions to assist with the "
                                   "user query.\n\nYou are provided with function signatures within <tools></tools> XML "
                                   "tags:\n<tools>",
                                   system ? system : "", system ? "\n\n" : "")) < 0)
            goto oom;
        for (size_t i = 0; i < n_tools; i++)
            if (append(&out, &len, fmt("\n%s", tools[i])) < 0) goto oom;
        if (append(&out, &len, fmt("\n</tools>\n\nFor each function call, return a json object with function name and "
                                   "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
                                   "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n")) < 0)
            goto oom;
    } else if (system && append(&out, &len, fmt("<|im_start|>system\n%s<|im_end|>\n", system)) < 0) {
        goto oom;
    }
    bool open = false; /* the last message is an assistant's reply to continue */
    for (size_t i = 0; i < n; i++) {
        const loom_chat_turn *m = &msgs[i];
        const char *r = m->role;
        bool last = i + 1 == n;
        if (!strcmp(r, "user") || (!strcmp(r, "system") && i > 0)) {
            if (append(&out, &len, fmt("<|im_start|>%s\n%s<|im_end|>\n", r, m->content)) < 0) goto oom;
        } else if (!strcmp(r, "assistant")) {
            if (q25 && m->n_calls) { /* Qwen2.5: the content on its own line, each call after a newline */
                if (append(&out, &len, fmt("<|im_start|>assistant%s%s", *m->content ? "\n" : "", m->content)) < 0) goto oom;
            } else if (append(&out, &len, fmt("<|im_start|>assistant\n%s", m->content)) < 0) {
                goto oom;
            }
            for (int k = 0; k < m->n_calls; k++) {
                bool nl = q25 || k > 0 || *m->content; /* Qwen3: a newline between parts, none at the start */
                if (append(&out, &len, fmt("%s<tool_call>\n{\"name\": \"%s\", \"arguments\": %s}\n</tool_call>", nl ? "\n" : "",
                                           m->calls[k].name, m->calls[k].arguments)) < 0)
                    goto oom;
            }
            if (last && !m->n_calls) open = true;
            else if (append(&out, &len, fmt("<|im_end|>\n")) < 0) goto oom;
        } else if (!strcmp(r, "tool")) { /* consecutive results share one user turn */
            bool first = i == 0 || strcmp(msgs[i - 1].role, "tool");
            bool end = last || strcmp(msgs[i + 1].role, "tool");
            if (append(&out, &len, fmt("%s\n<tool_response>\n%s\n</tool_response>%s", first ? "<|im_start|>user" : "", m->content,
                                       end ? "<|im_end|>\n" : "")) < 0)
                goto oom;
        }
    }
    if (!open && append(&out, &len, fmt("<|im_start|>assistant\n%s", reply_prefix ? reply_prefix : "")) < 0) goto oom;
    return out;
oom:
    free(out);
    return loom_err_null("chat: out of memory");
}

/* ---- Llama 3.1+ JSON tool calling ------------------------------------------------------------- */
static bool blank(char ch) { return ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t' || ch == '\v' || ch == '\f'; }

/* Jinja's `trim` (Python's str.strip(), ASCII white space here) as a malloc'd copy */
static char *trimmed(const char *s) {
    size_t b = 0, e = strlen(s);
    while (b < e && blank(s[b])) b++;
    while (e > b && blank(s[e - 1])) e--;
    return fmt("%.*s", (int)(e - b), s + b);
}

/* JSON text written by Python's json.dumps (", " and ": ") as json.dumps(indent=4) writes it */
static char *indent4(const char *s) {
    size_t n = strlen(s), cap = n * 2 + 64, len = 0;
    int depth = 0;
    char *o = malloc(cap);
    if (!o) return NULL;
#define PUT(ch)                                                                                                    \
    do {                                                                                                           \
        if (len + 1 >= cap) {                                                                                      \
            char *g = realloc(o, cap *= 2);                                                                        \
            if (!g) {                                                                                              \
                free(o);                                                                                           \
                return NULL;                                                                                       \
            }                                                                                                      \
            o = g;                                                                                                 \
        }                                                                                                          \
        o[len++] = (ch);                                                                                           \
    } while (0)
#define NEWLINE()                                                                                                  \
    do {                                                                                                           \
        PUT('\n');                                                                                                 \
        for (int k_ = 0; k_ < depth * 4; k_++) PUT(' ');                                                           \
    } while (0)
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '"') { /* a string, escapes and all */
            PUT(ch);
            for (i++; i < n && s[i] != '"'; i++) {
                if (s[i] == '\\' && i + 1 < n) PUT(s[i++]);
                PUT(s[i]);
            }
            if (i < n) PUT('"');
        } else if ((ch == '{' || ch == '[') && i + 1 < n && s[i + 1] == (ch == '{' ? '}' : ']')) {
            PUT(ch); /* empty: {} and [] stay as they are */
            PUT(s[++i]);
        } else if (ch == '{' || ch == '[') {
            PUT(ch);
            depth++;
            NEWLINE();
        } else if (ch == '}' || ch == ']') {
            depth--;
            NEWLINE();
            PUT(ch);
        } else if (ch == ',') {
            PUT(ch);
            NEWLINE();
            if (i + 1 < n && s[i + 1] == ' ') i++;
        } else {
            PUT(ch);
        }
    }
#undef NEWLINE
#undef PUT
    o[len] = 0;
    return o;
}

/* A string as json.dumps(s, ensure_ascii=False) writes it (the template's `content | tojson`) */
static char *json_string(const char *s) {
    size_t n = strlen(s), len = 0;
    char *o = malloc(n * 6 + 3);
    if (!o) return NULL;
    o[len++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *e = *p == '"' ? "\\\"" : *p == '\\' ? "\\\\" : *p == '\n' ? "\\n" : *p == '\r' ? "\\r" : *p == '\t' ? "\\t"
                        : *p == '\b' ? "\\b" : *p == '\f' ? "\\f" : NULL;
        if (e) len += (size_t)sprintf(o + len, "%s", e);
        else if (*p < 0x20) len += (size_t)sprintf(o + len, "\\u%04x", *p);
        else o[len++] = (char)*p;
    }
    o[len++] = '"';
    o[len] = 0;
    return o;
}

/* "%d %b %Y" of today (Python's strftime_now in transformers), or LOOM_CHAT_DATE when set */
static void today(char *out, size_t n) {
    static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const char *env = getenv("LOOM_CHAT_DATE");
    if (env && *env) {
        snprintf(out, n, "%s", env);
        return;
    }
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    snprintf(out, n, "%02d %s %04d", tm.tm_mday, mon[tm.tm_mon % 12], tm.tm_year + 1900);
}

#define L3_HEAD(role) "<|start_header_id|>" role "<|end_header_id|>\n\n"

/* Llama 3.1 / 3.2 / 3.3 Instruct's template with custom tools (tools_in_user_message, its
 * default): tests/fixtures/chat-tools has the template texts and the prompts jinja2 renders. */
static char *render_llama3(const loom_chat_tools_conv *c, const loom_chat_turn *msgs, size_t n, const char *const *tools,
                           size_t n_tools, const char *reply_prefix) {
    char date[64], *out = calloc(1, 1), *t = NULL;
    size_t len = 0, i = 0;
    if (!out) goto oom;
    if (c->fixed_date) snprintf(date, sizeof date, "%s", c->fixed_date);
    else today(date, sizeof date);
    bool sys0 = n > 0 && !strcmp(msgs[0].role, "system");
    if (!(t = trimmed(sys0 ? msgs[0].content : ""))) goto oom;
    if (append(&out, &len, fmt(L3_HEAD("system") "%sCutting Knowledge Date: December 2023\nToday Date: %s\n\n%s<|eot_id|>",
                               n_tools ? "Environment: ipython\n" : "", date, t)) < 0)
        goto oom;
    free(t);
    t = NULL;
    i = sys0 ? 1 : 0;
    if (n_tools) { /* the tools go into the first message after the system one, whatever its role */
        if (i >= n) {
            free(out);
            return loom_err_null("chat: the tools go into the first user message, and there is none");
        }
        if (append(&out, &len, fmt(L3_HEAD("user") "Given the following functions, please respond with a JSON for a function call "
                                                   "with its proper arguments that best answers the given prompt.\n\nRespond in "
                                                   "the format {\"name\": function name, \"parameters\": dictionary of argument "
                                                   "name and its value}.Do not use variables.\n\n")) < 0)
            goto oom;
        for (size_t k = 0; k < n_tools; k++) {
            char *ind = indent4(tools[k]);
            if (append(&out, &len, ind ? fmt("%s\n\n", ind) : NULL) < 0) {
                free(ind);
                goto oom;
            }
            free(ind);
        }
        if (!(t = trimmed(msgs[i].content)) || append(&out, &len, fmt("%s<|eot_id|>", t)) < 0) goto oom;
        free(t);
        t = NULL;
        i++;
    }
    bool open = false; /* the last message is an assistant's reply to continue */
    for (; i < n; i++) {
        const loom_chat_turn *m = &msgs[i];
        if (!strcmp(m->role, "tool")) { /* a string result: `content | tojson` (a string is iterable) */
            if (!(t = json_string(m->content)) || append(&out, &len, fmt(L3_HEAD("ipython") "%s<|eot_id|>", t)) < 0) goto oom;
        } else if (m->n_calls) { /* the content is not shown */
            if (append(&out, &len, fmt(L3_HEAD("assistant") "{\"name\": \"%s\", \"parameters\": %s}<|eot_id|>", m->calls[0].name,
                                       m->calls[0].arguments)) < 0)
                goto oom;
        } else {
            open = i + 1 == n && !strcmp(m->role, "assistant");
            if (!(t = trimmed(m->content)) ||
                append(&out, &len, fmt("<|start_header_id|>%s<|end_header_id|>\n\n%s%s", m->role, t, open ? "" : "<|eot_id|>")) < 0)
                goto oom;
        }
        free(t);
        t = NULL;
    }
    if (!open && append(&out, &len, fmt(L3_HEAD("assistant") "%s", reply_prefix ? reply_prefix : "")) < 0) goto oom;
    return out;
oom:
    free(t);
    free(out);
    return loom_err_null("chat: out of memory");
}

/* ---- Mistral v3 tool calling ------------------------------------------------------------------ */
/* Where the JSON value at s[i] (well-formed, as json.dumps writes it) ends. */
static size_t json_skip(const char *s, size_t i) {
    int depth = 0;
    bool str = false;
    for (; s[i]; i++) {
        char ch = s[i];
        if (str) {
            if (ch == '\\' && s[i + 1]) i++;
            else if (ch == '"') {
                str = false;
                if (!depth) return i + 1;
            }
        } else if (!depth && (ch == ',' || ch == '}' || ch == ']' || ch == ':' || blank(ch))) {
            return i; /* a number, true, false or null ends */
        } else if (ch == '"') {
            str = true;
        } else if (ch == '{' || ch == '[') {
            depth++;
        } else if (ch == '}' || ch == ']') {
            if (--depth <= 0) return i + 1;
        }
    }
    return i;
}

/* The JSON string s[0..n) (quotes included) as its text, decoded by cJSON (the decoder the request
 * parser uses): a malloc'd copy; NULL when s is not one JSON string (an unknown escape, a bad or
 * unpaired \u escape), with *bad set, or out of memory. */
static char *json_unquote(const char *s, size_t n, bool *bad) {
    cJSON *v = cJSON_ParseWithLength(s, n);
    char *o = NULL;
    if (cJSON_IsString(v)) o = fmt("%s", v->valuestring);
    else *bad = true;
    cJSON_Delete(v);
    return o;
}

/* One tool as the v3 template writes it: {"type": "function", "function": {...}} with the function's
 * fields in their order ("return" left out), string values written raw between quotes (not
 * escaped: the template concatenates them), the others as tojson. tool is json.dumps text. NULL, with
 * the message set, when a key or string value is not a JSON string (tool k) or out of memory. */
static char *mistral_tool(const char *tool, size_t k) {
    size_t i = 0, len = 0;
    while (blank(tool[i]) || tool[i] == '{') i++;
    while (tool[i] == '"') { /* the definition's "function" member */
        size_t ke = json_skip(tool, i), vb = ke;
        while (blank(tool[vb]) || tool[vb] == ':') vb++;
        if (ke - i == 10 && !memcmp(tool + i, "\"function\"", 10) && tool[vb] == '{') {
            i = vb + 1;
            break;
        }
        i = json_skip(tool, vb);
        while (blank(tool[i]) || tool[i] == ',') i++;
    }
    char *out = fmt("{\"type\": \"function\", \"function\": {");
    if (!out) return loom_err_null("chat: out of memory");
    len = strlen(out);
    bool first = true, bad = false;
    while (tool[i] && tool[i] != '}') {
        while (blank(tool[i]) || tool[i] == ',') i++;
        if (tool[i] != '"') break;
        size_t ke = json_skip(tool, i), vb = ke;
        while (blank(tool[vb]) || tool[vb] == ':') vb++;
        size_t ve = json_skip(tool, vb);
        char *key = json_unquote(tool + i, ke - i, &bad), *val = NULL;
        if (!key) goto oom;
        if (strcmp(key, "return")) {
            if (tool[vb] == '"') {
                if (!(val = json_unquote(tool + vb, ve - vb, &bad))) {
                    free(key);
                    goto oom;
                }
            }
            if (append(&out, &len, val ? fmt("%s\"%s\": \"%s\"", first ? "" : ", ", key, val)
                                       : fmt("%s\"%s\": %.*s", first ? "" : ", ", key, (int)(ve - vb), tool + vb)) < 0) {
                free(key);
                free(val);
                goto oom;
            }
            first = false;
        }
        free(key);
        free(val);
        i = ve;
    }
    if (append(&out, &len, fmt("}}")) < 0) goto oom;
    return out;
oom:
    free(out);
    if (bad) return loom_err_null("chat: tool %zu is not valid JSON: a key or string value with a bad escape", k);
    return loom_err_null("chat: out of memory");
}

static bool mistral_id(const char *id, int n) {
    int k = 0;
    for (; id && id[k]; k++)
        if (!((id[k] >= '0' && id[k] <= '9') || (id[k] >= 'a' && id[k] <= 'z') || (id[k] >= 'A' && id[k] <= 'Z'))) return false;
    return id && k == n;
}

/* Mistral 7B Instruct v0.3's and Mistral Nemo's templates (tests/fixtures/chat-tools has them and
 * the prompts jinja2 renders); they differ in the spaces (sp). */
static char *render_mistral(const loom_chat_tools_conv *c, const loom_chat_turn *msgs, size_t n, const char *const *tools,
                            size_t n_tools, const char *reply_prefix) {
    bool sp = c == &CONVS[LOOM_TOOLS_MISTRAL_V3];
    bool sys0 = n > 0 && !strcmp(msgs[0].role, "system");
    size_t i0 = sys0 ? 1 : 0, last_user = 0, len = 0;
    int alt = 0; /* the template's check: user and assistant turns alternate, calls and results aside */
    for (size_t i = i0; i < n; i++) {
        const loom_chat_turn *m = &msgs[i];
        if (!strcmp(m->role, "system"))
            return loom_err_null("chat: message %zu is a system message; %s's template takes one, first", i, c->name);
        if (!strcmp(m->role, "user")) last_user = i;
        for (int k = 0; k < m->n_calls; k++)
            if (!mistral_id(m->calls[k].id, c->id_len))
                return loom_err_null("chat: message %zu: tool call id '%.40s' is not %d letters or digits, as %s's template "
                                     "requires (send back the ids loom returned)",
                                     i, m->calls[k].id ? m->calls[k].id : "", c->id_len, c->name);
        if (!strcmp(m->role, "tool") && !mistral_id(m->call_id, c->id_len))
            return loom_err_null("chat: message %zu: tool_call_id '%.40s' is not %d letters or digits, as %s's template "
                                 "requires (send back the ids loom returned)",
                                 i, m->call_id ? m->call_id : "", c->id_len, c->name);
        if (strcmp(m->role, "tool") && !m->n_calls) {
            if (!strcmp(m->role, "user") != (alt % 2 == 0))
                return loom_err_null("chat: message %zu: after the optional system message, %s's template wants user and "
                                     "assistant messages in turn (tool calls and results aside)",
                                     i, c->name);
            alt++;
        }
    }
    char *out = calloc(1, 1), *t = NULL;
    if (!out) goto oom;
    bool open = false; /* the last message is an assistant's reply to continue */
    for (size_t i = i0; i < n; i++) {
        const loom_chat_turn *m = &msgs[i];
        bool last = i + 1 == n;
        if (!strcmp(m->role, "user")) {
            /* the tools go before the last user message (and, as the template compares messages, an
             * earlier one just like it) */
            if (n_tools && !strcmp(m->content, msgs[last_user].content)) {
                if (append(&out, &len, fmt("[AVAILABLE_TOOLS]%s[", sp ? " " : "")) < 0) goto oom;
                for (size_t k = 0; k < n_tools; k++) {
                    char *tj = mistral_tool(tools[k], k);
                    if (!tj) { /* the message says why */
                        free(out);
                        return NULL;
                    }
                    if (append(&out, &len, tj) < 0 || append(&out, &len, fmt("%s", k + 1 < n_tools ? ", " : "]")) < 0) goto oom;
                }
                if (append(&out, &len, fmt("[/AVAILABLE_TOOLS]")) < 0) goto oom;
            }
            bool sys = last && sys0;
            if (append(&out, &len, fmt("[INST]%s%s%s%s[/INST]", sp ? " " : "", sys ? msgs[0].content : "", sys ? "\n\n" : "",
                                       m->content)) < 0)
                goto oom;
        } else if (m->n_calls) { /* the content is not shown */
            if (append(&out, &len, fmt("[TOOL_CALLS]%s[", sp ? " " : "")) < 0) goto oom;
            for (int k = 0; k < m->n_calls; k++) {
                if (!(t = json_string(m->calls[k].name)) ||
                    append(&out, &len, fmt("{\"name\": %s, \"arguments\": %s, \"id\": \"%s\"}%s", t, m->calls[k].arguments,
                                           m->calls[k].id, k + 1 < m->n_calls ? ", " : "]</s>")) < 0)
                    goto oom;
                free(t);
                t = NULL;
            }
        } else if (!strcmp(m->role, "assistant")) {
            open = last;
            if (!(t = sp ? trimmed(m->content) : fmt("%s", m->content)) ||
                append(&out, &len, fmt("%s%s%s", sp ? " " : "", t, open ? "" : "</s>")) < 0)
                goto oom;
            free(t);
            t = NULL;
        } else { /* a result: its text as it is (the template's `content|string`), not JSON-quoted */
            if (append(&out, &len, fmt("[TOOL_RESULTS]%s{\"content\": %s, \"call_id\": \"%s\"}[/TOOL_RESULTS]", sp ? " " : "",
                                       m->content, m->call_id)) < 0)
                goto oom;
        }
    }
    if (!open && reply_prefix && append(&out, &len, fmt("%s", reply_prefix)) < 0) goto oom;
    return out;
oom:
    free(t);
    free(out);
    return loom_err_null("chat: out of memory");
}
