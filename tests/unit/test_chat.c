/* Chat templates: detection from a template string and the exact text of each turn. */
#include "tokenizer/chat.h"
#include "tests/unit/check.h"

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
    loom_chat_turn a[] = {{"system", "Be brief.", NULL, 0}, {"user", "Weather in Paris?", NULL, 0}};
    loom_chat_call pr[] = {{"get_weather", "{\"city\": \"Paris\"}"}, {"get_weather", "{\"city\": \"Rome\"}"}};
    loom_chat_turn b[] = {{"user", "Weather in Paris and Rome?", NULL, 0}, {"assistant", "", pr, 2}, {"tool", "18 C", NULL, 0},
                          {"tool", "21 C", NULL, 0}};
    loom_chat_call oslo[] = {{"get_weather", "{\"city\": \"Oslo\"}"}};
    loom_chat_turn c[] = {{"user", "Hi", NULL, 0}, {"assistant", "Checking.", oslo, 1}, {"tool", "-3 C", NULL, 0}, {"user", "Thanks", NULL, 0}};
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
    CHECK(loom_chat_tools_detect("<tool_call>", LOOM_CHAT_LLAMA3) == LOOM_TOOLS_NONE, "llama3: none yet");
    t3 = loom_chat_render_tools(LOOM_TOOLS_NONE, a, 2, tools, 1, NULL);
    CHECK(!t3 && strstr(loom_last_error(), "no tool calls"), "a format without tools is an error: %s", loom_last_error());
    loom_chat_turn bad[] = {{"user", "x", NULL, 0}, {"robot", "y", NULL, 0}};
    t3 = loom_chat_render_tools(LOOM_TOOLS_QWEN3, bad, 2, tools, 1, NULL);
    CHECK(!t3 && strstr(loom_last_error(), "role 'robot'"), "unknown role: %s", loom_last_error());
    t3 = loom_chat_render_tools(LOOM_TOOLS_QWEN3, b + 1, 3, tools, 1, NULL);
    CHECK(!t3 && strstr(loom_last_error(), "no user message"), "no user message: %s", loom_last_error());
}

int main(void) {
    tool_tests();
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
