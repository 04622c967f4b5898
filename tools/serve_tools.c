/* Tool calls in a reply (docs/serving.md, "Tool calls"), in the convention the model was trained on
 * (loom_chat_tools_conv, tokenizer/chat.h): Hermes style <tool_call>\n{"name": ..., "arguments":
 * {...}}\n</tool_call> (Qwen2.5 / Qwen3), or Llama 3.1+'s bare {"name": ..., "parameters": {...}}
 * (maybe after <|python_tag|>), or Mistral's [TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]
 * (v0.3 / Nemo). The scanner works on a growing text (streaming holds back what may
 * still become a call) and on the whole reply; what is not a well-formed call stays text, so a
 * model's bad JSON never fails the request. */
#include "tools/serve.h"

#include <cjson/cJSON.h>

#include <stdlib.h>
#include <string.h>

static const char *find(const char *h, size_t hl, const char *n, size_t nl) {
    for (size_t i = 0; i + nl <= hl; i++)
        if (h[i] == n[0] && !memcmp(h + i, n, nl)) return h + i;
    return NULL;
}

static bool space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

/* Where the next call starts in text[from..len): 1 with *at (its first byte) and *body (where its
 * JSON is looked for); 0 when none, with *keep the bytes at the end that may still become a start
 * (0 when final). */
static int call_start(const loom_chat_tools_conv *cv, const char *text, size_t len, size_t from, bool final, size_t *at,
                      size_t *body, size_t *keep) {
    static const char *const KEYS[] = {"\"name\"", "\"type\""};
    size_t ol = cv->call_open ? strlen(cv->call_open) : 0;
    *keep = 0;
    for (size_t i = from; i < len; i++) {
        size_t rest = len - i;
        if (ol && text[i] == cv->call_open[0] && !memcmp(text + i, cv->call_open, rest < ol ? rest : ol)) {
            if (rest >= ol) {
                *at = i, *body = i + ol;
                return 1;
            }
            if (!final) {
                *keep = rest;
                return 0;
            }
        }
        if (cv->bare_json && text[i] == '{') { /* {"name" or {"type", white space allowed after { */
            size_t j = i + 1;
            while (j < len && space(text[j])) j++;
            bool partial = j == len;
            for (int k = 0; k < 2 && !partial; k++) {
                size_t kl = strlen(KEYS[k]), r = len - j;
                if (!memcmp(text + j, KEYS[k], r < kl ? r : kl)) {
                    if (r >= kl) {
                        *at = *body = i;
                        return 1;
                    }
                    partial = true;
                }
            }
            if (partial && !final) {
                *keep = rest;
                return 0;
            }
        }
    }
    return 0;
}

/* Where the call whose JSON is looked for at text[body..) ends: 1 with *body_end (its JSON ends
 * there) and *resume (past the call); 0 when it has not ended yet. With no closing marker the call
 * is one JSON object (white space before it), then white space and a ';' before another call; a
 * call is not over while only white space follows it (a ';' may come). */
static int call_end(const loom_chat_tools_conv *cv, const char *text, size_t len, size_t body, size_t *body_end,
                    size_t *resume) {
    if (cv->call_close) {
        size_t cl = strlen(cv->call_close);
        const char *close = find(text + body, len - body, cv->call_close, cl);
        if (!close) return 0;
        *body_end = (size_t)(close - text);
        *resume = *body_end + cl;
        return 1;
    }
    size_t i = body;
    while (i < len && space(text[i])) i++;
    if (i == len || text[i] != '{') return 0;
    int depth = 0;
    bool str = false;
    for (; i < len; i++) {
        char ch = text[i];
        if (str) {
            if (ch == '\\') i++;
            else if (ch == '"') str = false;
        } else if (ch == '"') {
            str = true;
        } else if (ch == '{' || ch == '[') {
            depth++;
        } else if ((ch == '}' || ch == ']') && --depth == 0) {
            break;
        }
    }
    if (i >= len) return 0;
    *body_end = i + 1;
    size_t j = i + 1;
    while (j < len && space(text[j])) j++;
    if (j == len) return 0; /* only white space after it so far */
    *resume = text[j] == ';' ? j + 1 : *body_end;
    return 1;
}

void serve_tool_call_free(serve_tool_call *c) {
    free(c->name);
    free(c->arguments);
    c->name = c->arguments = NULL;
}

/* A call's JSON body -> name and compact arguments; 1 well-formed, 0 not, -1 out of memory. */
static int parse_call(const char *body, size_t n, serve_tool_call *call) {
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(body, n, &end, false);
    if (!o) return 0;
    for (const char *p = end; p && p < body + n; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
            cJSON_Delete(o);
            return 0;
        }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(o, "arguments");
    if (!args) args = cJSON_GetObjectItemCaseSensitive(o, "parameters"); /* some fine-tunes write this */
    int rc = 0;
    if (cJSON_IsObject(o) && cJSON_IsString(name) && *name->valuestring && (!args || cJSON_IsObject(args))) {
        call->name = strdup(name->valuestring);
        call->arguments = args ? cJSON_PrintUnformatted(args) : strdup("{}");
        rc = call->name && call->arguments ? 1 : -1;
        if (rc < 0) serve_tool_call_free(call);
    }
    cJSON_Delete(o);
    return rc;
}

/* Mistral: the JSON list after [TOOL_CALLS] at text[b..): 1 when it is complete, its *n elements
 * at text[eb[k]..ee[k]) (white space trimmed), the ',' after element k at sep[k], *end past its
 * ']'; 0 when it is not complete yet; -1 when it is not a list (white space, then something else
 * than '['), an element is empty, or it has more than SERVE_MAX_CALLS elements. */
static int list_elems(const char *text, size_t len, size_t b, size_t *eb, size_t *ee, size_t *sep, int *n, size_t *end) {
    size_t i = b;
    while (i < len && space(text[i])) i++;
    if (i == len) return 0;
    if (text[i] != '[') return -1;
    int depth = 0;
    bool str = false;
    size_t start = i + 1;
    *n = 0;
    for (; i < len; i++) {
        char ch = text[i];
        if (str) {
            if (ch == '\\') i++;
            else if (ch == '"') str = false;
            continue;
        }
        bool close = (ch == '}' || ch == ']') && depth == 1;
        if (ch == '"') str = true;
        else if (ch == '{' || ch == '[') depth++;
        else if (ch == '}' || ch == ']') depth--;
        if (close || (ch == ',' && depth == 1)) { /* an element ends */
            size_t e0 = start, e1 = i;
            while (e0 < e1 && space(text[e0])) e0++;
            while (e1 > e0 && space(text[e1 - 1])) e1--;
            if (e0 == e1 || *n == SERVE_MAX_CALLS) return -1;
            eb[*n] = e0, ee[*n] = e1, sep[*n] = i;
            (*n)++;
            start = i + 1;
            if (close) {
                *end = i + 1;
                return 1;
            }
        }
    }
    return 0;
}

static int parse_call(const char *body, size_t n, serve_tool_call *call);

/* serve_tool_scan for Mistral's [TOOL_CALLS] [{...}, {...}]: the list's calls one scan at a time.
 * The scan that returns call k (not the last) resumes at the ',' after it; a scan that starts at
 * such a ',' finds its list by the last [TOOL_CALLS] before it and returns call k + 1. A list with a
 * malformed element is content as a whole. */
static int scan_list(const loom_chat_tools_conv *cv, const char *text, size_t len, size_t from, bool final,
                     size_t *content_end, size_t *resume, serve_tool_call *call) {
    size_t ol = strlen(cv->call_open), eb[SERVE_MAX_CALLS], ee[SERVE_MAX_CALLS], sep[SERVE_MAX_CALLS], end = 0;
    int n = 0;
    /* inside a list: its next call. The list is found as the scans from the start found it: the
     * first marker, past its list when that is complete, else past the marker, and so on */
    for (size_t i = 0; from > 0 && from < len && text[from] == ',';) {
        const char *m = find(text + i, from - i, cv->call_open, ol);
        if (!m) break;
        int lr = list_elems(text, len, (size_t)(m - text) + ol, eb, ee, sep, &n, &end);
        if (lr == 0) break;
        i = lr < 0 ? (size_t)(m - text) + ol : end;
        if (lr < 0 || end <= from) continue;
        for (int k = 0; k + 1 < n; k++)
            if (sep[k] == from) {
                int rc = parse_call(text + eb[k + 1], ee[k + 1] - eb[k + 1], call);
                if (rc < 0) return -1;
                *content_end = rc ? from : end;
                *resume = rc && k + 2 < n ? sep[k + 1] : end;
                return rc;
            }
        break;
    }
    size_t at = 0, body = 0, keep = 0;
    if (!call_start(cv, text, len, from, final, &at, &body, &keep)) {
        *content_end = *resume = len - keep;
        return 0;
    }
    int lr = list_elems(text, len, body, eb, ee, sep, &n, &end);
    if (lr == 0 && !final) { /* not complete yet: the text before it can go */
        *content_end = *resume = at;
        return 0;
    }
    if (lr <= 0) { /* never completed: content to the end; not a list: the marker is content */
        *content_end = *resume = lr == 0 ? len : body;
        return 0;
    }
    serve_tool_call first = {0};
    for (int k = 0; k < n; k++) { /* every element must be a call; the first one is returned */
        serve_tool_call c = {0};
        int rc = parse_call(text + eb[k], ee[k] - eb[k], &c);
        if (rc <= 0) {
            serve_tool_call_free(&first);
            if (rc < 0) return -1;
            *content_end = *resume = end;
            return 0;
        }
        if (k == 0) first = c;
        else serve_tool_call_free(&c);
    }
    *call = first;
    *content_end = at;
    *resume = n > 1 ? sep[0] : end;
    return 1;
}

int serve_tool_scan(loom_chat_tools t, const char *text, size_t len, size_t from, bool final, size_t *content_end,
                    size_t *resume, serve_tool_call *call) {
    const loom_chat_tools_conv *cv = loom_chat_tools_get(t);
    if (cv && cv->call_list) return scan_list(cv, text, len, from, final, content_end, resume, call);
    size_t at = 0, body = 0, keep = 0, body_end, after;
    if (!cv || !call_start(cv, text, len, from, final, &at, &body, &keep)) { /* hold back what may still start a call */
        *content_end = *resume = len - keep;
        return 0;
    }
    int ended = call_end(cv, text, len, body, &body_end, &after);
    if (!ended && !final) { /* not closed yet: the text before it can go */
        *content_end = *resume = at;
        return 0;
    }
    if (!ended) body_end = after = len;
    int rc = parse_call(text + body, body_end - body, call);
    if (rc < 0) return -1;
    if (rc == 1) {
        *content_end = at;
        *resume = after;
        return 1;
    }
    /* malformed: the block (to the end of the text when it never ended) is content */
    *content_end = *resume = after;
    return 0;
}

int serve_tool_parse(loom_chat_tools t, const char *text, size_t len, int max_calls, serve_tool_result *r) {
    memset(r, 0, sizeof *r);
    char *content = malloc(len + 1);
    size_t clen = 0, from = 0;
    if (!content) return -1;
    for (;;) {
        size_t ce, res;
        serve_tool_call c = {0};
        int k = serve_tool_scan(t, text, len, from, true, &ce, &res, &c);
        if (k < 0) goto oom;
        memcpy(content + clen, text + from, ce - from);
        clen += ce - from;
        if (k == 1) {
            if (r->n_calls < max_calls) {
                serve_tool_call *a = realloc(r->calls, (size_t)(r->n_calls + 1) * sizeof *a);
                if (!a) {
                    serve_tool_call_free(&c);
                    goto oom;
                }
                r->calls = a;
                r->calls[r->n_calls++] = c;
            } else {
                serve_tool_call_free(&c);
            }
        }
        if (res >= len || (k == 0 && res == from)) break;
        from = res;
    }
    size_t b = 0, e = clen;
    while (b < e && space(content[b])) b++;
    while (e > b && space(content[e - 1])) e--;
    if (e > b) {
        memmove(content, content + b, e - b);
        content[e - b] = 0;
        r->content = content;
    } else {
        free(content);
    }
    return 0;
oom:
    free(content);
    serve_tool_result_free(r);
    return -1;
}

void serve_tool_result_free(serve_tool_result *r) {
    for (int i = 0; i < r->n_calls; i++) serve_tool_call_free(&r->calls[i]);
    free(r->calls);
    free(r->content);
    memset(r, 0, sizeof *r);
}
