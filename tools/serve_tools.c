/* Tool calls in a reply (docs/serving.md, "Tool calls"): the Hermes style that Qwen2.5 / Qwen3
 * were trained on, <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>. The scanner works
 * on a growing text (streaming holds back what may still become a call) and on the whole reply;
 * what is not a well-formed call stays text, so a model's bad JSON never fails the request. */
#include "tools/serve.h"

#include <cjson/cJSON.h>

#include <stdlib.h>
#include <string.h>

static const char OPEN[] = "<tool_call>", CLOSE[] = "</tool_call>";
#define OPEN_LEN (sizeof OPEN - 1)
#define CLOSE_LEN (sizeof CLOSE - 1)

static const char *find(const char *h, size_t hl, const char *n, size_t nl) {
    for (size_t i = 0; i + nl <= hl; i++)
        if (h[i] == n[0] && !memcmp(h + i, n, nl)) return h + i;
    return NULL;
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

int serve_tool_scan(const char *text, size_t len, size_t from, bool final, size_t *content_end, size_t *resume,
                    serve_tool_call *call) {
    const char *s = text + from, *open = find(s, len - from, OPEN, OPEN_LEN);
    if (!open) { /* hold back a tail that may still become "<tool_call>" */
        size_t keep = 0;
        for (size_t k = OPEN_LEN - 1; !final && k > 0 && !keep; k--)
            if (len - from >= k && !memcmp(text + len - k, OPEN, k)) keep = k;
        *content_end = *resume = len - keep;
        return 0;
    }
    size_t at = (size_t)(open - text), body = at + OPEN_LEN;
    const char *close = find(text + body, len - body, CLOSE, CLOSE_LEN);
    if (!close && !final) { /* not closed yet: the text before it can go */
        *content_end = *resume = at;
        return 0;
    }
    size_t body_end = close ? (size_t)(close - text) : len;
    int rc = parse_call(text + body, body_end - body, call);
    if (rc < 0) return -1;
    if (rc == 1) {
        *content_end = at;
        *resume = close ? body_end + CLOSE_LEN : len;
        return 1;
    }
    /* malformed: the block is content */
    *content_end = *resume = close ? body_end + CLOSE_LEN : len;
    return 0;
}

static bool space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

int serve_tool_parse(const char *text, size_t len, int max_calls, serve_tool_result *r) {
    memset(r, 0, sizeof *r);
    char *content = malloc(len + 1);
    size_t clen = 0, from = 0;
    if (!content) return -1;
    for (;;) {
        size_t ce, res;
        serve_tool_call c = {0};
        int k = serve_tool_scan(text, len, from, true, &ce, &res, &c);
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
