/* Chat templates: detection from a template string and the exact text of each turn. */
#include "tokenizer/chat.h"
#include "tests/unit/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void expect(char *got, const char *want, const char *what) {
    CHECK(got && !strcmp(got, want), "%s:\n got  [%s]\n want [%s]", what, got ? got : "(null)", want);
    free(got);
}

/* Tool calls (Qwen3 / Qwen2.5, Hermes style): the prompts the models' published chat templates
 * give for three conversations, rendered once with jinja2 3.1 (Qwen3's template from
 * tests/fixtures/tokenizer/qwen3/tokenizer_config.json, Qwen2.5-Instruct's as published; `tojson`
 * as transformers defines it, json.dumps(ensure_ascii=False)) and pasted here. */
#define TOOL_JSON                                                                                                     \
    "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather of a city\", "             \
    "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}"
static const char WANT_QWEN3_A[] =
           "<|im_start|>system\n"
           "Be brief.\n"
           "\n"
           "# Tools\n"
           "\n"
           "You may call one or more functions to assist with the user query.\n"
           "\n"
           "You are provided with function signatures within <tools></tools> XML tags:\n"
           "<tools>\n"
           "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather of a city\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n"
           "</tools>\n"
           "\n"
           "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n"
           "<tool_call>\n"
           "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
           "</tool_call><|im_end|>\n"
           "<|im_start|>user\n"
           "Weather in Paris?<|im_end|>\n"
           "<|im_start|>assistant\n";
static const char WANT_QWEN3_B[] =
           "<|im_start|>system\n"
           "# Tools\n"
           "\n"
           "You may call one or more functions to assist with the user query.\n"
           "\n"
           "You are provided with function signatures within <tools></tools> XML tags:\n"
           "<tools>\n"
           "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather of a city\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n"
           "</tools>\n"
           "\n"
           "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n"
           "<tool_call>\n"
           "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
           "</tool_call><|im_end|>\n"
           "<|im_start|>user\n"
           "Weather in Paris and Rome?<|im_end|>\n"
           "<|im_start|>assistant\n"
           "<tool_call>\n"
           "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
           "</tool_call>\n"
           "<tool_call>\n"
           "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n"
           "</tool_call><|im_end|>\n"
           "<|im_start|>user\n"
           "<tool_response>\n"
           "18 C\n"
           "</tool_response>\n"
           "<tool_response>\n"
           "21 C\n"
           "</tool_response><|im_end|>\n"
           "<|im_start|>assistant\n";
static const char WANT_QWEN3_C[] =
           "<|im_start|>user\n"
           "Hi<|im_end|>\n"
           "<|im_start|>assistant\n"
           "Checking.\n"
           "<tool_call>\n"
           "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n"
           "</tool_call><|im_end|>\n"
           "<|im_start|>user\n"
           "<tool_response>\n"
           "-3 C\n"
           "</tool_response><|im_end|>\n"
           "<|im_start|>user\n"
           "Thanks<|im_end|>\n"
           "<|im_start|>assistant\n";
static const char WANT_QWEN25_A[] =
           "<|im_start|>system\n"
           "Be brief.\n"
           "\n"
           "# Tools\n"
           "\n"
           "You may call one or more functions to assist with the user query.\n"
           "\n"
           "You are provided with function signatures within <tools></tools> XML tags:\n"
           "<tools>\n"
           "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather of a city\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n"
           "</tools>\n"
           "\n"
           "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n"
           "<tool_call>\n"
           "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
           "</tool_call><|im_end|>\n"
           "<|im_start|>user\n"
           "Weather in Paris?<|im_end|>\n"
           "<|im_start|>assistant\n";
static const char WANT_QWEN25_B[] =
           "<|im_start|>system\n"
           "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n"
           "\n"
           "# Tools\n"
           "\n"
           "You may call one or more functions to assist with the user query.\n"
           "\n"
           "You are provided with function signatures within <tools></tools> XML tags:\n"
           "<tools>\n"
           "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather of a city\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n"
           "</tools>\n"
           "\n"
           "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n"
           "<tool_call>\n"
           "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
           "</tool_call><|im_end|>\n"
           "<|im_start|>user\n"
           "Weather in Paris and Rome?<|im_end|>\n"
           "<|im_start|>assistant\n"
           "<tool_call>\n"
           "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
           "</tool_call>\n"
           "<tool_call>\n"
           "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n"
           "</tool_call><|im_end|>\n"
           "<|im_start|>user\n"
           "<tool_response>\n"
           "18 C\n"
           "</tool_response>\n"
           "<tool_response>\n"
           "21 C\n"
           "</tool_response><|im_end|>\n"
           "<|im_start|>assistant\n";
static const char WANT_QWEN25_C[] =
           "<|im_start|>system\n"
           "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
           "<|im_start|>user\n"
           "Hi<|im_end|>\n"
           "<|im_start|>assistant\n"
           "Checking.\n"
           "<tool_call>\n"
           "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n"
           "</tool_call><|im_end|>\n"
           "<|im_start|>user\n"
           "<tool_response>\n"
           "-3 C\n"
           "</tool_response><|im_end|>\n"
           "<|im_start|>user\n"
           "Thanks<|im_end|>\n"
           "<|im_start|>assistant\n";

static void tool_tests(void) {
    const char *tools[] = {TOOL_JSON};
    loom_chat_turn a[] = {{"system", "Be brief.", NULL, 0, NULL}, {"user", "Weather in Paris?", NULL, 0, NULL}};
    loom_chat_call pr[] = {{"get_weather", "{\"city\": \"Paris\"}", NULL}, {"get_weather", "{\"city\": \"Rome\"}", NULL}};
    loom_chat_turn b[] = {{"user", "Weather in Paris and Rome?", NULL, 0, NULL}, {"assistant", "", pr, 2, NULL}, {"tool", "18 C", NULL, 0, NULL},
                          {"tool", "21 C", NULL, 0, NULL}};
    loom_chat_call oslo[] = {{"get_weather", "{\"city\": \"Oslo\"}", NULL}};
    loom_chat_turn c[] = {{"user", "Hi", NULL, 0, NULL}, {"assistant", "Checking.", oslo, 1, NULL}, {"tool", "-3 C", NULL, 0, NULL}, {"user", "Thanks", NULL, 0, NULL}};
    expect(loom_chat_render_tools(LOOM_TOOLS_QWEN3, a, 2, tools, 1, NULL), WANT_QWEN3_A, "qwen3: tools, system");
    expect(loom_chat_render_tools(LOOM_TOOLS_QWEN3, b, 4, tools, 1, NULL), WANT_QWEN3_B, "qwen3: two calls, two results");
    expect(loom_chat_render_tools(LOOM_TOOLS_QWEN3, c, 4, tools, 0, NULL), WANT_QWEN3_C, "qwen3: no tools, a call and its result");
    expect(loom_chat_render_tools(LOOM_TOOLS_QWEN25, a, 2, tools, 1, NULL), WANT_QWEN25_A, "qwen2.5: tools, system");
    expect(loom_chat_render_tools(LOOM_TOOLS_QWEN25, b, 4, tools, 1, NULL), WANT_QWEN25_B, "qwen2.5: default system, results");
    expect(loom_chat_render_tools(LOOM_TOOLS_QWEN25, c, 4, tools, 0, NULL), WANT_QWEN25_C, "qwen2.5: no tools");
    /* the reply prefix (tool_choice "required") follows the assistant's opening */
    char *r = loom_chat_render_tools(LOOM_TOOLS_QWEN3, a, 2, tools, 1, "<tool_call>\n");
    size_t n = r ? strlen(r) : 0;
    CHECK(r && n > 40 && !strcmp(r + n - 34, "<|im_start|>assistant\n<tool_call>\n"), "reply prefix: [%s]", r ? r + n - 34 : "");
    free(r);
    /* detection: a ChatML template that writes <tool_call>; Qwen2.5's by its default system text */
    char *t3 = NULL;
    CHECK(loom_chat_tools_detect("<|im_start|>{% if tools %}<tool_call>", LOOM_CHAT_CHATML) == LOOM_TOOLS_QWEN3, "qwen3 detected");
    CHECK(loom_chat_tools_detect("<|im_start|><tool_call> You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
                                 LOOM_CHAT_CHATML) == LOOM_TOOLS_QWEN25, "qwen2.5 detected");
    CHECK(loom_chat_tools_detect("<|im_start|>{{ message.content }}", LOOM_CHAT_CHATML) == LOOM_TOOLS_NONE, "chatml without tools");
    CHECK(loom_chat_tools_detect(NULL, LOOM_CHAT_CHATML) == LOOM_TOOLS_NONE, "no template");
    CHECK(loom_chat_tools_detect("<tool_call>", LOOM_CHAT_LLAMA3) == LOOM_TOOLS_NONE, "llama3 without ipython: none");
    t3 = loom_chat_render_tools(LOOM_TOOLS_NONE, a, 2, tools, 1, NULL);
    CHECK(!t3 && strstr(loom_last_error(), "no tool calls"), "a format without tools is an error: %s", loom_last_error());
    loom_chat_turn bad[] = {{"user", "x", NULL, 0, NULL}, {"robot", "y", NULL, 0, NULL}};
    t3 = loom_chat_render_tools(LOOM_TOOLS_QWEN3, bad, 2, tools, 1, NULL);
    CHECK(!t3 && strstr(loom_last_error(), "role 'robot'"), "unknown role: %s", loom_last_error());
    t3 = loom_chat_render_tools(LOOM_TOOLS_QWEN3, b + 1, 3, tools, 1, NULL);
    CHECK(!t3 && strstr(loom_last_error(), "no user message"), "no user message: %s", loom_last_error());
}

/* Llama 3.1 / 3.2 JSON tool calling: the prompts jinja2 renders from the models' templates
 * (tests/fixtures/chat-tools: the templates, gen.py, the expected *.txt; its README says where
 * each comes from). The conversations are gen.py's. */
static char *slurp(const char *name) {
    const char *d = getenv("LOOM_FIXTURES");
    char path[1024];
    snprintf(path, sizeof path, "%s/chat-tools/%s", d && *d ? d : "tests/fixtures", name);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static void expect_file(char *got, const char *file, const char *what) {
    const char *want = slurp(file);
    expect(got, want ? want : "(missing)", what);
}

#define PY_WEATHER                                                                                                     \
    "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather of a city\", "             \
    "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}"
#define PY_TIME "{\"type\": \"function\", \"function\": {\"name\": \"get_time\", \"parameters\": {\"type\": \"object\", \"properties\": {}}}}"

static void llama_tests(void) {
    const char *tools[] = {PY_WEATHER, PY_TIME};
    loom_chat_turn a[] = {{"system", " Be brief.\n", NULL, 0, NULL}, {"user", "Weather in Paris?  ", NULL, 0, NULL}};
    loom_chat_call paris[] = {{"get_weather", "{\"city\": \"Paris\"}", NULL}}, clock[] = {{"get_time", "{}", NULL}};
    loom_chat_turn b[] = {{"user", "Weather in Paris?", NULL, 0, NULL}, {"assistant", "", paris, 1, NULL}, {"tool", "18 C", NULL, 0, NULL},
                          {"user", "And the time?", NULL, 0, NULL}};
    loom_chat_turn c[] = {{"system", "Be brief.", NULL, 0, NULL}, {"user", "Hi", NULL, 0, NULL}, {"assistant", "", clock, 1, NULL},
                          {"tool", "said \"14:05\"\n\t\xc3\x85re\\", NULL, 0, NULL}, {"assistant", " It is 14:05. ", NULL, 0, NULL},
                          {"user", "Thanks", NULL, 0, NULL}};
    expect_file(loom_chat_render_tools(LOOM_TOOLS_LLAMA31, a, 2, tools, 2, NULL), "llama3.1-a.txt", "llama3.1: tools, system");
    expect_file(loom_chat_render_tools(LOOM_TOOLS_LLAMA31, b, 4, tools, 2, NULL), "llama3.1-b.txt", "llama3.1: a call, its result");
    expect_file(loom_chat_render_tools(LOOM_TOOLS_LLAMA31, c, 6, tools, 0, NULL), "llama3.1-c.txt", "llama3.1: no tools, escapes");
    setenv("LOOM_CHAT_DATE", "05 Dec 2026", 1); /* 3.2's template dates the system turn with today's date */
    expect_file(loom_chat_render_tools(LOOM_TOOLS_LLAMA32, a, 2, tools, 2, NULL), "llama3.2-a.txt", "llama3.2: tools, system");
    expect_file(loom_chat_render_tools(LOOM_TOOLS_LLAMA32, b, 4, tools, 2, NULL), "llama3.2-b.txt", "llama3.2: a call, its result");
    unsetenv("LOOM_CHAT_DATE");
    char *r = loom_chat_render_tools(LOOM_TOOLS_LLAMA32, a, 2, tools, 0, NULL);
    CHECK(r && strstr(r, "Today Date: ") && strlen(strstr(r, "Today Date: ")) > 23 && strstr(r, "Today Date: ")[14] == ' ' &&
              strstr(r, "Today Date: ")[18] == ' ',
          "llama3.2: today's date as %%d %%b %%Y: %s", r ? r : loom_last_error());
    free(r);
    /* tool_choice "required": the reply prefix follows the assistant header */
    r = loom_chat_render_tools(LOOM_TOOLS_LLAMA31, a, 2, tools, 2, loom_chat_tools_get(LOOM_TOOLS_LLAMA31)->required_prefix);
    const char *tail = "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"";
    CHECK(r && strlen(r) > strlen(tail) && !strcmp(r + strlen(r) - strlen(tail), tail), "llama3.1 reply prefix");
    free(r);
    /* the last message an assistant's without calls: continued, not closed */
    loom_chat_turn cont[] = {{"user", "Hi", NULL, 0, NULL}, {"assistant", "Hel ", NULL, 0, NULL}};
    expect(loom_chat_render_tools(LOOM_TOOLS_LLAMA31, cont, 2, tools, 0, NULL),
           "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
           "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHel",
           "llama3.1: an assistant message continued");
    /* refused as the templates refuse it: two calls in one message, tools with no message for them */
    loom_chat_call two[] = {{"a", "{}", NULL}, {"b", "{}", NULL}};
    loom_chat_turn d[] = {{"user", "x", NULL, 0, NULL}, {"assistant", "", two, 2, NULL}};
    r = loom_chat_render_tools(LOOM_TOOLS_LLAMA31, d, 2, tools, 2, NULL);
    CHECK(!r && strstr(loom_last_error(), "takes 1 call per assistant message"), "two calls: %s", loom_last_error());
    /* detection from the template text: the ipython role; 3.2's by strftime_now; Llama 3.0's has neither */
    CHECK(loom_chat_tools_detect(slurp("llama-3.1-8b-instruct.jinja"), LOOM_CHAT_LLAMA3) == LOOM_TOOLS_LLAMA31, "llama3.1 detected");
    CHECK(loom_chat_tools_detect(slurp("llama-3.2-3b-instruct.jinja"), LOOM_CHAT_LLAMA3) == LOOM_TOOLS_LLAMA32, "llama3.2 detected");
    CHECK(loom_chat_detect(slurp("llama-3.1-8b-instruct.jinja"), "llama", false, false) == LOOM_CHAT_LLAMA3, "llama3.1 turns");
    CHECK(loom_chat_tools_detect("{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' %}",
                                 LOOM_CHAT_LLAMA3) == LOOM_TOOLS_NONE,
          "llama 3.0: none");
    for (int t = LOOM_TOOLS_NONE + 1; t < LOOM_TOOLS_COUNT; t++)
        CHECK((int)loom_chat_tools_from_name(loom_chat_tools_name((loom_chat_tools)t)) == t, "tools name round trip %d", t);
    CHECK(loom_chat_tools_from_name("llama3") == LOOM_TOOLS_NONE && !loom_chat_tools_get(LOOM_TOOLS_NONE), "no convention");
}

/* Mistral 7B Instruct v0.3 / Nemo: the prompts jinja2 renders from the templates (gen.py's
 * conversations a..e); the tool with strings the template writes raw (quotes, \n, \u escapes) */
#define PY_NOTE                                                                                                        \
    "{\"type\": \"function\", \"function\": {\"name\": \"note\", \"description\": \"Says \\\"hi\\\"\\n\xc3\xa5 \\\\ ok\", "    \
    "\"parameters\": {\"type\": \"object\", \"properties\": {\"text\": {\"type\": \"string\", \"description\": "            \
    "\"\xc3\x9cn\xc3\xaf" "code \\\"q\\\"\"}}}, \"strict\": true}}"

static void mistral_tests(void) {
    const char *tools[] = {PY_WEATHER, PY_TIME}, *tools_d[] = {PY_WEATHER, PY_NOTE}, *clock_only[] = {PY_TIME};
    loom_chat_call paris[] = {{"get_weather", "{\"city\": \"Paris\"}", "c1a2b3c4d"}};
    loom_chat_call two[] = {{"get_time", "{}", "AAAAAAAA1"}, {"get_weather", "{\"city\": \"Z\xc3\xbcrich \\\"ZH\\\"\"}", "bbbbbbbb2"}};
    loom_chat_turn a[] = {{"system", "Be brief.", NULL, 0, NULL}, {"user", "Weather in Paris?", NULL, 0, NULL}};
    loom_chat_turn b[] = {{"user", "Weather in Paris?", NULL, 0, NULL}, {"assistant", "", paris, 1, NULL},
                          {"tool", "18 C", NULL, 0, "c1a2b3c4d"}, {"assistant", "18 C.", NULL, 0, NULL},
                          {"user", "And the time?", NULL, 0, NULL}};
    loom_chat_turn c[] = {{"system", "Be brief.", NULL, 0, NULL}, {"user", "Hi", NULL, 0, NULL}, {"assistant", "", two, 2, NULL},
                          {"tool", "said \"14:05\"\n\t\xc3\x85re\\", NULL, 0, "AAAAAAAA1"},
                          {"tool", "{\"temp\": 18}", NULL, 0, "bbbbbbbb2"}, {"assistant", " It is 14:05. ", NULL, 0, NULL},
                          {"user", "Thanks", NULL, 0, NULL}};
    loom_chat_turn d[] = {{"system", "Be brief.", NULL, 0, NULL}, {"user", "Weather in Paris?", NULL, 0, NULL},
                          {"assistant", "", paris, 1, NULL}, {"tool", "18 C", NULL, 0, "c1a2b3c4d"}};
    loom_chat_turn e[] = {{"user", "Hi", NULL, 0, NULL}, {"assistant", "Hello", NULL, 0, NULL}, {"user", "Hi", NULL, 0, NULL}};
    static const struct { loom_chat_tools t; const char *pre; } V[] = {{LOOM_TOOLS_MISTRAL_V3, "mistral-v3"},
                                                                        {LOOM_TOOLS_MISTRAL_NEMO, "mistral-nemo"}};
    for (int v = 0; v < 2; v++) {
        char f[64];
        snprintf(f, sizeof f, "%s-a.txt", V[v].pre);
        expect_file(loom_chat_render_tools(V[v].t, a, 2, tools, 2, NULL), f, "mistral: tools, system before the last user message");
        snprintf(f, sizeof f, "%s-b.txt", V[v].pre);
        expect_file(loom_chat_render_tools(V[v].t, b, 5, tools, 2, NULL), f, "mistral: a call, its result, a reply, a question");
        snprintf(f, sizeof f, "%s-c.txt", V[v].pre);
        expect_file(loom_chat_render_tools(V[v].t, c, 7, tools, 0, NULL), f, "mistral: no tools, two calls, escapes in results");
        snprintf(f, sizeof f, "%s-d.txt", V[v].pre);
        expect_file(loom_chat_render_tools(V[v].t, d, 4, tools_d, 2, NULL), f, "mistral: ends with a result, raw tool strings");
        snprintf(f, sizeof f, "%s-e.txt", V[v].pre);
        expect_file(loom_chat_render_tools(V[v].t, e, 3, clock_only, 1, NULL), f, "mistral: tools before equal user messages");
        /* tool_choice "required": the reply prefix after [/INST] */
        const char *pfx = loom_chat_tools_get(V[v].t)->required_prefix;
        char *r = loom_chat_render_tools(V[v].t, a, 2, tools, 2, pfx);
        CHECK(r && strlen(r) > strlen(pfx) + 7 && !strncmp(r + strlen(r) - strlen(pfx) - 7, "[/INST]", 7) &&
                  !strcmp(r + strlen(r) - strlen(pfx), pfx), "%s reply prefix: %s", V[v].pre, r ? r : loom_last_error());
        free(r);
        /* refused as the templates refuse it (gen.py checks that they do) */
        loom_chat_call bad_id[] = {{"get_time", "{}", "call_1"}};
        loom_chat_turn x[] = {{"user", "x", NULL, 0, NULL}, {"assistant", "", bad_id, 1, NULL}};
        r = loom_chat_render_tools(V[v].t, x, 2, tools, 2, NULL);
        CHECK(!r && strstr(loom_last_error(), "9 letters or digits"), "%s: a call id of 6: %s", V[v].pre, loom_last_error());
        loom_chat_call no_id[] = {{"get_time", "{}", NULL}};
        x[1].calls = no_id;
        r = loom_chat_render_tools(V[v].t, x, 2, tools, 2, NULL);
        CHECK(!r && strstr(loom_last_error(), "9 letters or digits"), "%s: a call without id: %s", V[v].pre, loom_last_error());
        loom_chat_call punct[] = {{"get_time", "{}", "abc-12345"}};
        x[1].calls = punct;
        r = loom_chat_render_tools(V[v].t, x, 2, tools, 2, NULL);
        CHECK(!r && strstr(loom_last_error(), "9 letters or digits"), "%s: an id with '-': %s", V[v].pre, loom_last_error());
        loom_chat_turn y[] = {{"user", "x", NULL, 0, NULL}, {"assistant", "", paris, 1, NULL}, {"tool", "1", NULL, 0, "c1a2b3c4"}};
        r = loom_chat_render_tools(V[v].t, y, 3, tools, 2, NULL);
        CHECK(!r && strstr(loom_last_error(), "tool_call_id 'c1a2b3c4'"), "%s: a result's id of 8: %s", V[v].pre, loom_last_error());
        loom_chat_turn z[] = {{"user", "x", NULL, 0, NULL}, {"assistant", "", paris, 1, NULL}, {"tool", "1", NULL, 0, "c1a2b3c4d"},
                              {"user", "y", NULL, 0, NULL}};
        r = loom_chat_render_tools(V[v].t, z, 4, tools, 2, NULL);
        CHECK(!r && strstr(loom_last_error(), "in turn"), "%s: a question right after a result: %s", V[v].pre, loom_last_error());
        loom_chat_turn w[] = {{"user", "x", NULL, 0, NULL}, {"system", "s", NULL, 0, NULL}, {"assistant", "y", NULL, 0, NULL}};
        r = loom_chat_render_tools(V[v].t, w, 3, tools, 2, NULL);
        CHECK(!r && strstr(loom_last_error(), "system message"), "%s: a second system message: %s", V[v].pre, loom_last_error());
        /* a tool's strings are decoded by cJSON, as the request's were: \u escapes and surrogate pairs
         * written raw; an escape cJSON refuses (unknown, a short \u, a lone surrogate) refuses the tools,
         * naming the tool (the old decoder kept them as written) */
        const char *esc[] = {PY_TIME, "{\"type\": \"function\", \"function\": {\"name\": \"u\", \"description\": "
                                      "\"\\u00e5\\ud83d\\ude00\\/\\\"\"}}"};
        r = loom_chat_render_tools(V[v].t, a, 2, esc, 2, NULL);
        CHECK(r && strstr(r, "\"description\": \"\xc3\xa5\xf0\x9f\x98\x80/\"\""), "%s: \\u escapes in a tool: %s", V[v].pre,
              r ? r : loom_last_error());
        free(r);
        static const char *const bad_esc[] = {"\\q", "\\x41", "\\ud800x", "\\u12"};
        for (int q = 0; q < 4; q++) {
            char tool[256];
            snprintf(tool, sizeof tool, "{\"type\": \"function\", \"function\": {\"name\": \"u\", \"description\": \"a%s\"}}",
                     bad_esc[q]);
            const char *bt[] = {PY_TIME, tool};
            r = loom_chat_render_tools(V[v].t, a, 2, bt, 2, NULL);
            CHECK(!r && strstr(loom_last_error(), "tool 1 is not valid JSON"), "%s: bad escape %s: %s", V[v].pre, bad_esc[q],
                  r ? r : loom_last_error());
            free(r);
        }
        /* the last message an assistant's: continued */
        loom_chat_turn cont[] = {{"user", "Hi", NULL, 0, NULL}, {"assistant", "Hel", NULL, 0, NULL}};
        expect(loom_chat_render_tools(V[v].t, cont, 2, tools, 0, NULL), v ? "[INST]Hi[/INST]Hel" : "[INST] Hi[/INST] Hel",
               "mistral: an assistant message continued");
    }
    /* detection: the templates; the turns are Mistral's even when the family says llama (a GGUF of
     * Mistral 7B v0.3 does); Mistral's newer [TOOL_CALLS]name[ARGS] templates are not these */
    char *v3 = strdup(slurp("mistral-7b-instruct-v0.3.jinja")), *nemo = strdup(slurp("mistral-nemo-instruct-2407.jinja"));
    CHECK(v3 && nemo, "templates");
    CHECK(loom_chat_detect(v3, "llama", false, false) == LOOM_CHAT_MISTRAL, "v0.3: mistral turns (family llama)");
    CHECK(loom_chat_detect(nemo, "mistral", false, false) == LOOM_CHAT_MISTRAL, "nemo: mistral turns");
    CHECK(loom_chat_tools_detect(v3, LOOM_CHAT_MISTRAL) == LOOM_TOOLS_MISTRAL_V3, "v0.3 detected");
    CHECK(loom_chat_tools_detect(nemo, LOOM_CHAT_MISTRAL) == LOOM_TOOLS_MISTRAL_NEMO, "nemo detected");
    CHECK(loom_chat_tools_detect(v3, LOOM_CHAT_LLAMA2) == LOOM_TOOLS_MISTRAL_V3, "v0.3 detected with [INST] taken for llama2");
    CHECK(loom_chat_tools_detect(v3, LOOM_CHAT_CHATML) == LOOM_TOOLS_NONE, "not with ChatML turns");
    CHECK(loom_chat_tools_detect("{{ bos_token }}{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}",
                                 LOOM_CHAT_MISTRAL) == LOOM_TOOLS_NONE, "mistral v0.1 / v0.2: none");
    CHECK(loom_chat_tools_detect("[AVAILABLE_TOOLS]' + tools|tojson + '[/AVAILABLE_TOOLS]{{- '[TOOL_CALLS]' + "
                                 "tool_call.function.name }}[ARGS]{{- '[TOOL_RESULTS]' + content|string + '[/TOOL_RESULTS]' }}",
                                 LOOM_CHAT_MISTRAL) == LOOM_TOOLS_NONE, "small 3.2 / ministral form: none");
    CHECK(loom_chat_tools_from_name("mistral-v3") == LOOM_TOOLS_MISTRAL_V3 && loom_chat_tools_from_name("mistral-nemo") ==
              LOOM_TOOLS_MISTRAL_NEMO && loom_chat_tools_get(LOOM_TOOLS_MISTRAL_NEMO)->format == LOOM_CHAT_MISTRAL, "names");
    free(v3);
    free(nemo);
}

int main(void) {
    tool_tests();
    llama_tests();
    mistral_tests();
    CHECK(loom_chat_detect("{% for m in messages %}<|im_start|>{{ m.role }}", "qwen2", false, false) == LOOM_CHAT_CHATML, "chatml");
    CHECK(loom_chat_detect("<|start_header_id|>", "llama", false, false) == LOOM_CHAT_LLAMA3, "llama3");
    CHECK(loom_chat_detect("{{ bos_token + '[INST] ' }}", "llama", false, false) == LOOM_CHAT_LLAMA2, "llama2");
    CHECK(loom_chat_detect(NULL, "qwen2", true, false) == LOOM_CHAT_CHATML, "chatml from vocabulary");
    CHECK(loom_chat_detect(NULL, "llama", false, false) == LOOM_CHAT_NONE, "no template");

    expect(loom_chat_user_turn(LOOM_CHAT_CHATML, "Be brief.", "Hi", true, false),
           "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "chatml first");
    expect(loom_chat_user_turn(LOOM_CHAT_CHATML, "Be brief.", "More", false, true),
           "<|im_end|>\n<|im_start|>user\nMore<|im_end|>\n<|im_start|>assistant\n", "chatml second");
    expect(loom_chat_user_turn(LOOM_CHAT_LLAMA3, NULL, "Hi", true, false),
           "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
           "llama3 first");
    expect(loom_chat_user_turn(LOOM_CHAT_LLAMA3, NULL, "Again", false, true),
           "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAgain<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
           "llama3 second");
    expect(loom_chat_user_turn(LOOM_CHAT_LLAMA2, "Sys", "Hi", true, false), "[INST] <<SYS>>\nSys\n<</SYS>>\n\nHi [/INST]",
           "llama2 first");
    expect(loom_chat_user_turn(LOOM_CHAT_LLAMA2, "Sys", "Next", false, true), " </s><s>[INST] Next [/INST]", "llama2 second");
    /* the families added with issue 13: detection by template, then by the family's default */
    CHECK(loom_chat_detect("{{ '<start_of_turn>' + role + '\n' }}", "gemma", false, false) == LOOM_CHAT_GEMMA, "gemma");
    CHECK(loom_chat_detect("{{'<|user|>' + '\n' + message['content'] + '<|end|>'}}{{'<|assistant|>'}}", "phi3", false,
                           false) == LOOM_CHAT_PHI3, "phi3");
    CHECK(loom_chat_detect("{{ '[INST] ' + message['content'] + ' [/INST]' }}", "mistral", false, false) ==
              LOOM_CHAT_MISTRAL, "mistral: [INST] without <<SYS>>, family mistral");
    CHECK(loom_chat_detect("[INST] <<SYS>>", "mistral", false, false) == LOOM_CHAT_LLAMA2, "<<SYS>> is Llama 2's");
    CHECK(loom_chat_detect(NULL, "gemma", false, false) == LOOM_CHAT_GEMMA, "gemma default");
    CHECK(loom_chat_detect(NULL, "gemma3", false, false) == LOOM_CHAT_GEMMA, "gemma3 default");
    CHECK(loom_chat_detect(NULL, "phi3", false, false) == LOOM_CHAT_PHI3, "phi3 default");
    CHECK(loom_chat_detect(NULL, "mistral", false, false) == LOOM_CHAT_MISTRAL, "mistral default");
    CHECK(loom_chat_detect(NULL, "olmo2", false, false) == LOOM_CHAT_NONE, "no default");
    for (int f = LOOM_CHAT_NONE; f <= LOOM_CHAT_MISTRAL; f++)
        CHECK((int)loom_chat_format_from_name(loom_chat_format_name((loom_chat_format)f)) == f, "name round trip %d", f);
    expect(loom_chat_user_turn(LOOM_CHAT_GEMMA, "Be brief.", "Hi", true, false),
           "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n", "gemma first");
    expect(loom_chat_user_turn(LOOM_CHAT_GEMMA, "Be brief.", "More", false, true),
           "<end_of_turn>\n<start_of_turn>user\nMore<end_of_turn>\n<start_of_turn>model\n", "gemma second");
    expect(loom_chat_user_turn(LOOM_CHAT_PHI3, "Sys", "Hi", true, false),
           "<|system|>\nSys<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n", "phi3 first");
    expect(loom_chat_user_turn(LOOM_CHAT_PHI3, NULL, "Next", false, true), "<|end|>\n<|user|>\nNext<|end|>\n<|assistant|>\n",
           "phi3 second");
    expect(loom_chat_user_turn(LOOM_CHAT_MISTRAL, "Sys", "Hi", true, false), "[INST] Sys\n\nHi [/INST]", "mistral first");
    expect(loom_chat_user_turn(LOOM_CHAT_MISTRAL, "Sys", "Next", false, true), "</s>[INST] Next [/INST]", "mistral second");

    /* a whole conversation: the same text as the turns one by one (system joined into the first) */
    loom_chat_message conv[] = {{"system", "Be"}, {"system", "brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "More"}};
    expect(loom_chat_render(LOOM_CHAT_CHATML, conv, 5),
           "<|im_start|>system\nBe\nbrief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!"
           "<|im_end|>\n<|im_start|>user\nMore<|im_end|>\n<|im_start|>assistant\n", "chatml conversation");
    expect(loom_chat_render(LOOM_CHAT_NONE, conv + 2, 1), "Hi", "plain single turn");
    loom_chat_message bad[] = {{"tool", "x"}, {"user", "y"}};
    char *r = loom_chat_render(LOOM_CHAT_CHATML, bad, 2);
    CHECK(!r && strstr(loom_last_error(), "role 'tool'"), "an unknown role is an error naming it: %s", loom_last_error());
    r = loom_chat_render(LOOM_CHAT_CHATML, conv, 2);
    CHECK(!r && strstr(loom_last_error(), "no user message"), "no user message: %s", loom_last_error());
    CHECK_DONE();
}
