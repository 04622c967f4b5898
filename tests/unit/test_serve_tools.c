/* loom serve's tool calls: the reply parser (tools/serve_tools.c: whole replies, the same reply
 * fed a byte at a time as a stream is, malformed and unclosed calls, several calls), the
 * json.dumps-style writer and the request fields (tools/serve_req.c). */
#include "tools/serve.h"
#include "tests/unit/check.h"

#include <cjson/cJSON.h>

#include <string.h>

static loom_chat_tools CONV = LOOM_TOOLS_QWEN3; /* the convention the replies are in */

/* the whole reply: calls as "name(args)" joined by ';', then "|content" */
static char *summary(const char *text) {
    serve_tool_result r;
    if (serve_tool_parse(CONV, text, strlen(text), SERVE_MAX_CALLS, &r) < 0) return NULL;
    static char buf[4096];
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < r.n_calls; i++)
        at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%s(%s)", i ? ";" : "", r.calls[i].name, r.calls[i].arguments);
    snprintf(buf + at, sizeof buf - at, "|%s", r.content ? r.content : "(null)");
    serve_tool_result_free(&r);
    return buf;
}

static void expect_summary(const char *text, const char *want) {
    char *got = summary(text);
    CHECK(got && !strcmp(got, want), "reply [%s]\n got  [%s]\n want [%s]", text, got ? got : "(oom)", want);
}

/* Feed text one byte at a time, as the stream sees it, and collect content and calls the way
 * cmd_serve.c's collect_calls does (without its white-space trimming): the content must never
 * include a byte of a well-formed call, and the result must equal the whole-reply scan. */
static void expect_stream(const char *text, const char *want_content, const char *want_calls) {
    size_t len = strlen(text), sent = 0;
    char content[4096] = "", calls[4096] = "";
    size_t cl = 0, kl = 0;
    for (size_t have = 0; have <= len; have++) {
        bool final = have == len;
        for (;;) {
            size_t from = sent, ce, res;
            serve_tool_call c = {0};
            int k = serve_tool_scan(CONV, text, have, from, final, &ce, &res, &c);
            CHECK(k >= 0 && ce >= from && ce <= have && res >= ce && res <= have, "scan bounds at %zu", have);
            if (k < 0) return;
            memcpy(content + cl, text + from, ce - from);
            cl += ce - from;
            content[cl] = 0;
            if (k == 1) {
                kl += (size_t)snprintf(calls + kl, sizeof calls - kl, "%s%s(%s)", kl ? ";" : "", c.name, c.arguments);
                serve_tool_call_free(&c);
            }
            sent = res;
            if (res == from || res >= have) break;
        }
    }
    CHECK(sent == len, "stream of [%s] ended at %zu of %zu", text, sent, len);
    CHECK(!strcmp(content, want_content), "stream content of [%s]:\n got  [%s]\n want [%s]", text, content, want_content);
    CHECK(!strcmp(calls, want_calls), "stream calls of [%s]:\n got  [%s]\n want [%s]", text, calls, want_calls);
}

static int parse(const char *body, serve_req *r, char *err, char *param) {
    return serve_req_parse(r, true, body, strlen(body), SERVE_MAX_N, err, 256, param);
}

static void expect_refused(const char *body, const char *msg, const char *want_param) {
    serve_req r;
    char err[256] = "", param[SERVE_PARAM_LEN] = "";
    int rc = parse(body, &r, err, param);
    CHECK(rc < 0 && strstr(err, msg) && !strcmp(param, want_param), "%s: rc %d, error [%s], param [%s]", body, rc, err, param);
    if (rc == 0) serve_req_free(&r);
}

#define WEATHER "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather of a city\"," \
                "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}}"

int main(void) {
    /* ---- whole replies ---- */
    expect_summary("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
                   "get_weather({\"city\":\"Paris\"})|(null)");
    expect_summary("Let me look.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n"
                   "{\"name\": \"b\", \"arguments\": {\"x\": [1, 2.5, null]}}\n</tool_call>",
                   "a({});b({\"x\":[1,2.5,null]})|Let me look.");
    expect_summary("Just text, no call.", "|Just text, no call.");
    expect_summary("", "|(null)");
    /* malformed: bad JSON, no name, arguments not an object: the block stays text */
    expect_summary("<tool_call>{\"name\": \"a\", \"arguments\": {</tool_call>", "|<tool_call>{\"name\": \"a\", \"arguments\": {</tool_call>");
    expect_summary("<tool_call>{\"arguments\": {}}</tool_call> ok", "|<tool_call>{\"arguments\": {}}</tool_call> ok");
    expect_summary("<tool_call>{\"name\": \"a\", \"arguments\": \"x\"}</tool_call>", "|<tool_call>{\"name\": \"a\", \"arguments\": \"x\"}</tool_call>");
    expect_summary("<tool_call>{\"name\": \"a\"} trailing</tool_call>", "|<tool_call>{\"name\": \"a\"} trailing</tool_call>");
    /* a bad call between good ones: the good ones are calls, the bad one text */
    expect_summary("<tool_call>{\"name\": \"a\"}</tool_call><tool_call>oops</tool_call><tool_call>{\"name\": \"c\"}</tool_call>",
                   "a({});c({})|<tool_call>oops</tool_call>");
    /* unclosed at the end: a complete call is taken (the model stopped before </tool_call>), else text */
    expect_summary("<tool_call>\n{\"name\": \"a\", \"arguments\": {\"q\": 1}}\n", "a({\"q\":1})|(null)");
    expect_summary("<tool_call>\n{\"name\": \"a\", \"argu", "|<tool_call>\n{\"name\": \"a\", \"argu");
    /* "parameters" (some fine-tunes) is read as the arguments; no arguments is {} */
    expect_summary("<tool_call>{\"name\": \"a\", \"parameters\": {\"k\": \"v\"}}</tool_call>", "a({\"k\":\"v\"})|(null)");
    /* a lone "<tool_" at the end is text once the reply is over */
    expect_summary("see <tool_", "|see <tool_");
    /* max_calls (parallel_tool_calls false keeps one) */
    serve_tool_result one;
    const char *two = "<tool_call>{\"name\": \"a\"}</tool_call><tool_call>{\"name\": \"b\"}</tool_call>";
    CHECK(serve_tool_parse(CONV, two, strlen(two), 1, &one) == 0 && one.n_calls == 1 && !strcmp(one.calls[0].name, "a"), "max_calls 1");
    serve_tool_result_free(&one);

    /* ---- streaming: fed a byte at a time ---- */
    expect_stream("Hi <tool_call>{\"name\": \"a\", \"arguments\": {\"s\": \"<tool_call>\"}}</tool_call> bye", "Hi  bye",
                  "a({\"s\":\"<tool_call>\"})");
    expect_stream("a < b <tool <tool_call>x</tool_call>", "a < b <tool <tool_call>x</tool_call>", "");
    expect_stream("<tool_call>{\"name\": \"a\"}</tool_call>\n<tool_call>{\"name\": \"b\", \"arguments\": {}}</tool_call>", "\n",
                  "a({});b({})");
    expect_stream("<tool_call>{\"name\": \"a\"}", "", "a({})");
    expect_stream("text <tool_cal", "text <tool_cal", "");
    /* while a call is open nothing of it is released */
    const char *open = "ok <tool_call>{\"name\": \"a\"";
    size_t ce, res;
    serve_tool_call c = {0};
    CHECK(serve_tool_scan(CONV, open, strlen(open), 0, false, &ce, &res, &c) == 0 && ce == 3 && res == 3, "open call held: %zu", ce);
    CHECK(serve_tool_scan(CONV, "ab<tool", 7, 0, false, &ce, &res, &c) == 0 && ce == 2, "prefix of <tool_call> held: %zu", ce);
    CHECK(serve_tool_scan(CONV, "ab<", 3, 0, false, &ce, &res, &c) == 0 && ce == 2, "'<' held: %zu", ce);
    CHECK(serve_tool_scan(CONV, "ab<x", 4, 0, false, &ce, &res, &c) == 0 && ce == 4, "'<x' released: %zu", ce);

    /* ---- Llama 3.1+: a bare {"name": ..., "parameters": {...}}, maybe after <|python_tag|> ---- */
    CONV = LOOM_TOOLS_LLAMA31;
    expect_summary("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "get_weather({\"city\":\"Paris\"})|(null)");
    expect_summary("<|python_tag|>{\"name\": \"a\", \"parameters\": {}}", "a({})|(null)");
    expect_summary("<|python_tag|> {\"name\": \"a\", \"arguments\": {\"k\": 2}}\n", "a({\"k\":2})|(null)");
    expect_summary("{\"type\": \"function\", \"name\": \"a\", \"parameters\": {}}", "a({})|(null)");
    /* text before a call; braces and quotes inside strings */
    expect_summary("Let me check.\n{\"name\": \"a\", \"parameters\": {\"s\": \"x\\\"}{\"}}", "a({\"s\":\"x\\\"}{\"})|Let me check.");
    /* several: separated by ';' (Llama 3.2 writes that) or white space */
    expect_summary("{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {\"x\": [1, \"]\"]}}",
                   "a({});b({\"x\":[1,\"]\"]})|(null)");
    expect_summary("{\"name\": \"a\", \"parameters\": {}}\n{\"name\": \"b\", \"parameters\": {}} done", "a({});b({})|done");
    /* malformed: text */
    expect_summary("{\"name\": \"a\", \"parameters\": {\"city\": }}", "|{\"name\": \"a\", \"parameters\": {\"city\": }}");
    expect_summary("{\"name\": 5, \"parameters\": {}}", "|{\"name\": 5, \"parameters\": {}}");
    expect_summary("{\"name\": \"a\", \"parameters\": \"x\"} then {\"name\": \"b\"}", "b({})|{\"name\": \"a\", \"parameters\": \"x\"} then");
    expect_summary("{\"name\": \"a\", \"parameters\": {\"q\": 1}", "|{\"name\": \"a\", \"parameters\": {\"q\": 1}");
    expect_summary("<|python_tag|>brave_search.call(query=\"x\")", "|<|python_tag|>brave_search.call(query=\"x\")");
    /* JSON that is no call, and text with braces */
    expect_summary("Use {\"city\": \"Paris\"} or {x}.", "|Use {\"city\": \"Paris\"} or {x}.");
    expect_summary("{ \"nam", "|{ \"nam");
    /* Hermes tags mean nothing here, and Llama's JSON nothing to Hermes */
    expect_summary("<tool_call>{\"name\": \"a\"}</tool_call>", "a({})|<tool_call></tool_call>");
    CONV = LOOM_TOOLS_QWEN3;
    expect_summary("{\"name\": \"a\", \"parameters\": {}}", "|{\"name\": \"a\", \"parameters\": {}}");
    CONV = LOOM_TOOLS_LLAMA31;
    /* streamed a byte at a time */
    expect_stream("Sure {\"name\": \"a\", \"parameters\": {\"s\": \"{\\\"name\\\"\"}} ok", "Sure  ok", "a({\"s\":\"{\\\"name\\\"\"})");
    expect_stream("x {y} {\"nam", "x {y} {\"nam", "");
    expect_stream("{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {}}", " ", "a({});b({})");
    expect_stream("<|python_tag|>{\"name\": \"a\", \"parameters\": {}}", "", "a({})");
    expect_stream("{\"name\": \"a\", \"parameters\": {\"city\": }} x", "{\"name\": \"a\", \"parameters\": {\"city\": }} x", "");
    /* what may still start a call is held back; a complete call waits for what follows it */
    CHECK(serve_tool_scan(CONV, "ab{", 3, 0, false, &ce, &res, &c) == 0 && ce == 2, "'{' held: %zu", ce);
    CHECK(serve_tool_scan(CONV, "ab{ \"na", 7, 0, false, &ce, &res, &c) == 0 && ce == 2, "'{ \"na' held: %zu", ce);
    CHECK(serve_tool_scan(CONV, "ab{\"x", 5, 0, false, &ce, &res, &c) == 0 && ce == 5, "'{\"x' released: %zu", ce);
    CHECK(serve_tool_scan(CONV, "ab<|python", 10, 0, false, &ce, &res, &c) == 0 && ce == 2, "'<|python' held: %zu", ce);
    const char *done = "ab{\"name\": \"a\"} ";
    CHECK(serve_tool_scan(CONV, done, strlen(done), 0, false, &ce, &res, &c) == 0 && ce == 2, "a call followed by space held: %zu", ce);
    CHECK(serve_tool_scan(CONV, done, strlen(done), 0, true, &ce, &res, &c) == 1 && ce == 2 && res == strlen(done) && !strcmp(c.name, "a"),
          "... and taken at the end: %zu %zu", ce, res);
    serve_tool_call_free(&c);
    /* no convention: all text */
    CHECK(serve_tool_scan(LOOM_TOOLS_NONE, done, strlen(done), 0, true, &ce, &res, &c) == 0 && ce == strlen(done), "none: text");

    /* ---- Mistral v0.3 / Nemo: [TOOL_CALLS] and a JSON list of calls ---- */
    for (int v = 0; v < 2; v++) {
        CONV = v ? LOOM_TOOLS_MISTRAL_NEMO : LOOM_TOOLS_MISTRAL_V3;
        expect_summary("[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]",
                       "get_weather({\"city\":\"Paris\"})|(null)");
        expect_summary("[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"q\": [1, \"]\"]}, \"id\": \"abcdefghi\"},{\"name\": \"b\", "
                       "\"arguments\": {}} , {\"name\": \"c\"}]", "a({\"q\":[1,\"]\"]});b({});c({})|(null)");
        expect_summary("Let me check. [TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {}}] done", "a({})|Let me check.  done");
        /* two blocks */
        expect_summary("[TOOL_CALLS] [{\"name\": \"a\"}][TOOL_CALLS] [{\"name\": \"b\"}, {\"name\": \"c\"}]", "a({});b({});c({})|(null)");
        /* malformed: one bad element makes the whole list text; not a list; never closed; empty */
        expect_summary("[TOOL_CALLS] [{\"name\": \"a\"}, {\"name\": 1}] x", "|[TOOL_CALLS] [{\"name\": \"a\"}, {\"name\": 1}] x");
        expect_summary("[TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {\"city\": }}]",
                       "|[TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {\"city\": }}]");
        expect_summary("[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}", "|[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}");
        expect_summary("[TOOL_CALLS] [{\"name\": \"a\"", "|[TOOL_CALLS] [{\"name\": \"a\"");
        expect_summary("[TOOL_CALLS] []", "|[TOOL_CALLS] []");
        expect_summary("[TOOL_CALLS] [{\"name\": \"a\"},]", "|[TOOL_CALLS] [{\"name\": \"a\"},]");
        expect_summary("A list: [{\"name\": \"a\"}]", "|A list: [{\"name\": \"a\"}]"); /* no marker: text */
        /* streamed a byte at a time */
        expect_stream("Ok [TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {\"s\": \"[TOOL_CALLS], x\"}}, {\"name\": \"b\", \"arguments\": {}}] ",
                      "Ok  ", "a({\"s\":\"[TOOL_CALLS], x\"});b({})");
        expect_stream("[TOOL_CALLS][{\"name\": \"a\"}, {\"name\": \"b\"}, {\"name\": \"c\"}]", "", "a({});b({});c({})");
        expect_stream("[TOOL_CALLS] [{\"name\": \"a\"}, {\"name\": 2}]", "[TOOL_CALLS] [{\"name\": \"a\"}, {\"name\": 2}]", "");
        expect_stream("[TOOL_CALLS] x, [{\"name\": \"a\"}]", "[TOOL_CALLS] x, [{\"name\": \"a\"}]", "");
        expect_stream("[TOOL_CALLS] [{\"name\": \"a\"", "[TOOL_CALLS] [{\"name\": \"a\"", "");
        /* held back: a prefix of the marker, a list not closed */
        CHECK(serve_tool_scan(CONV, "ab[TOOL_CA", 10, 0, false, &ce, &res, &c) == 0 && ce == 2, "'[TOOL_CA' held: %zu", ce);
        CHECK(serve_tool_scan(CONV, "ab[x", 4, 0, false, &ce, &res, &c) == 0 && ce == 4, "'[x' released: %zu", ce);
        const char *open = "ab[TOOL_CALLS] [{\"name\": \"a\"}";
        CHECK(serve_tool_scan(CONV, open, strlen(open), 0, false, &ce, &res, &c) == 0 && ce == 2 && res == 2, "open list held: %zu", ce);
        /* the first call resumes at the ',' after it; the next scan there takes the second */
        const char *two = "[TOOL_CALLS] [{\"name\": \"a\"}, {\"name\": \"b\"}]";
        CHECK(serve_tool_scan(CONV, two, strlen(two), 0, false, &ce, &res, &c) == 1 && ce == 0 && two[res] == ',' && !strcmp(c.name, "a"),
              "first of two: %zu %zu", ce, res);
        serve_tool_call_free(&c);
        size_t r1 = res;
        CHECK(serve_tool_scan(CONV, two, strlen(two), r1, false, &ce, &res, &c) == 1 && ce == r1 && res == strlen(two) && !strcmp(c.name, "b"),
              "second of two: %zu %zu", ce, res);
        serve_tool_call_free(&c);
        /* a ',' in text after a list is no call */
        const char *after = "[TOOL_CALLS] [{\"name\": \"a\"}], {\"name\": \"b\"}";
        expect_summary(after, "a({})|, {\"name\": \"b\"}");
    }
    CONV = LOOM_TOOLS_QWEN3;

    /* ---- json.dumps's spacing ---- */
    cJSON *v = cJSON_Parse("{\"a\":[1,-2.5,true,null,\"q\\\"\\n\\u0001é\"],\"b\":{},\"c\":[],\"d\":1e300,\"e\":0.1}");
    char *py = serve_json_py(v);
    const char *want = "{\"a\": [1, -2.5, true, null, \"q\\\"\\n\\u0001é\"], \"b\": {}, \"c\": [], \"d\": 1e+300, \"e\": 0.1}";
    CHECK(py && !strcmp(py, want), "json.dumps style:\n got  [%s]\n want [%s]", py ? py : "(null)", want);
    free(py);
    cJSON_Delete(v);

    /* ---- request fields ---- */
    serve_req r;
    char err[256], param[SERVE_PARAM_LEN];
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather?\"},"
                       "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
                       "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
                       "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"18 C\"}],"
                       "\"tools\":[" WEATHER "],\"tool_choice\":\"required\",\"parallel_tool_calls\":false}";
    int rc = parse(body, &r, err, param);
    CHECK(rc == 0, "tools request refused: %s", err);
    if (rc == 0) {
        CHECK(r.n_tools == 1 && !strcmp(r.tool_names[0], "get_weather"), "tools");
        CHECK(r.tools[0] && !strcmp(r.tools[0], "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": "
                                                 "\"Weather of a city\", \"parameters\": {\"type\": \"object\", \"properties\": "
                                                 "{\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}"),
              "tool JSON: %s", r.tools[0]);
        CHECK(r.tool_choice == SERVE_TOOLS_REQUIRED && !r.parallel_tool_calls && r.tool_msgs, "choice, parallel, tool messages");
        CHECK(r.n_msgs == 3 && !strcmp(r.msgs[1].role, "assistant") && !strcmp(r.msgs[1].content, "") && r.msgs[1].n_calls == 1,
              "assistant with a call");
        CHECK(r.msgs[1].n_calls == 1 && !strcmp(r.msgs[1].calls[0].arguments, "{\"city\": \"Paris\"}"),
              "arguments re-written as the model writes them: %s", r.msgs[1].n_calls ? r.msgs[1].calls[0].arguments : "");
        CHECK(!strcmp(r.msgs[2].role, "tool") && !strcmp(r.msgs[2].content, "18 C"), "tool result");
        CHECK(r.msgs[1].n_calls == 1 && r.msgs[1].calls[0].id && !strcmp(r.msgs[1].calls[0].id, "c1") && r.msgs[2].call_id &&
                  !strcmp(r.msgs[2].call_id, "c1") && !r.msgs[0].call_id, "ids kept (Mistral's template writes them)");
        serve_req_free(&r);
    }
    rc = parse("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[" WEATHER "],"
               "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}}", &r, err, param);
    CHECK(rc == 0 && r.tool_choice == SERVE_TOOLS_NAMED && !strcmp(r.tool_choice_name, "get_weather") && r.parallel_tool_calls,
          "named tool_choice: %s", err);
    if (rc == 0) serve_req_free(&r);
    rc = parse("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[" WEATHER "],\"tool_choice\":\"none\"}", &r, err, param);
    CHECK(rc == 0 && r.tool_choice == SERVE_TOOLS_NONE && !r.tool_msgs, "tool_choice none: %s", err);
    if (rc == 0) serve_req_free(&r);
    /* arguments that are not JSON are kept as given */
    rc = parse("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"1\","
               "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"not json\"}}]}]}", &r, err, param);
    CHECK(rc == 0 && r.msgs[1].n_calls == 1 && !strcmp(r.msgs[1].calls[0].arguments, "not json"), "raw arguments: %s", err);
    if (rc == 0) serve_req_free(&r);

    expect_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}", "'tools' must be an array", "tools");
    expect_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\"}]}", "tool 0 must be",
                   "tools");
    expect_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]}",
                   "may hold only", "tools");
    expect_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"x\":1}}]}",
                   "unknown field 'x'", "tools");
    expect_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[" WEATHER "," WEATHER "]}", "two tools are named",
                   "tools");
    expect_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"required\"}", "has no 'tools'", "tool_choice");
    expect_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[" WEATHER "],\"tool_choice\":\"sometimes\"}",
                   "'tool_choice' must be", "tool_choice");
    expect_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[" WEATHER "],"
                   "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"other\"}}}", "not in 'tools'", "tool_choice");
    expect_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"parallel_tool_calls\":1}", "true or false",
                   "parallel_tool_calls");
    expect_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[]}]}", "only an assistant message", "messages");
    expect_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{}}]}]}",
                   "a tool call must be", "messages");
    expect_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"tool\",\"tool_call_id\":5,\"content\":\"r\"}]}",
                   "'tool_call_id' is a string", "messages");
    expect_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":null}]}", "must be a string",
                   "messages");
    const char *cmpl = "{\"prompt\":\"x\",\"tools\":[]}"; /* tools belong to chat */
    rc = serve_req_parse(&r, false, cmpl, strlen(cmpl), SERVE_MAX_N, err, sizeof err, param);
    CHECK(rc < 0 && strstr(err, "unknown field 'tools'"), "completions with tools: %s", err);
    CHECK_DONE();
}
