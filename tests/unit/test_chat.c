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
