/* Chat templates: detection from a template string and the exact text of each turn. */
#include "tokenizer/chat.h"
#include "tests/unit/check.h"

#include <string.h>

static void expect(char *got, const char *want, const char *what) {
    CHECK(got && !strcmp(got, want), "%s:\n got  [%s]\n want [%s]", what, got ? got : "(null)", want);
    free(got);
}

int main(void) {
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
