/* fuzz_serve_req: arbitrary bytes as a loom serve request body (tools/serve_req.c). Byte 0 bit 0
 * picks /v1/chat/completions or /v1/completions (bits 1-2: the tool convention, Hermes, Llama 3 or
 * Mistral's [TOOL_CALLS] list);
 * the rest is the body. Checked beyond memory
 * safety: a refused body always has a message; an accepted one has its input (messages with a
 * user turn, or a prompt) and every field within the documented ranges, tools and tool_choice
 * consistent. The same bytes are also a model's reply for the tool-call scanner
 * (tools/serve_tools.c): scanned whole and fed in two pieces, never out of bounds, the calls the
 * same both ways. */
#include "fuzz/fuzz_util.h"
#include "tools/serve.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    bool chat = data[0] & 1;
    loom_chat_tools conv = data[0] & 4 ? LOOM_TOOLS_MISTRAL_V3 : data[0] & 2 ? LOOM_TOOLS_LLAMA31 : LOOM_TOOLS_QWEN3;
    /* the body as a reply to scan for tool calls: whole, and as a stream cut at byte data[0] */
    const char *txt = (const char *)data + 1;
    size_t tl = size - 1;
    serve_tool_result whole;
    if (serve_tool_parse(conv, txt, tl, SERVE_MAX_CALLS, &whole) == 0) {
        int calls = 0;
        size_t sent = 0, cut = data[0] < tl ? data[0] : tl;
        for (int pass = 0; pass < 2; pass++) {
            size_t have = pass ? tl : cut;
            for (;;) {
                size_t from = sent, ce, res;
                serve_tool_call c = {0};
                int k = serve_tool_scan(conv, txt, have, from, pass == 1, &ce, &res, &c);
                if (k < 0) break;
                FZ_ASSERT(ce >= from && ce <= res && res <= have, "scan bounds %zu %zu %zu %zu", from, ce, res, have);
                if (k == 1) {
                    FZ_ASSERT(c.name && c.name[0] && c.arguments && c.arguments[0] == '{', "call without name/arguments");
                    if (calls < whole.n_calls) FZ_ASSERT(!strcmp(c.name, whole.calls[calls].name), "stream call %d differs", calls);
                    calls++;
                    serve_tool_call_free(&c);
                }
                sent = res;
                if (res == from || res >= have) break;
            }
        }
        FZ_ASSERT(sent == tl, "the stream ended at %zu of %zu", sent, tl);
        FZ_ASSERT(calls == whole.n_calls || whole.n_calls == SERVE_MAX_CALLS, "stream %d calls, whole %d", calls, whole.n_calls);
        serve_tool_result_free(&whole);
    }

    serve_req r;
    char err[256], param[SERVE_PARAM_LEN];
    err[0] = 0;
    int rc = serve_req_parse(&r, chat, (const char *)data + 1, size - 1, SERVE_MAX_N, err, sizeof err, param);
    if (rc < 0) {
        FZ_ASSERT(err[0], "a refused body without a message");
        return 0;
    }
    FZ_ASSERT(rc == 0, "rc %d", rc);
    FZ_ASSERT(r.n >= 1 && r.n <= SERVE_MAX_N, "n %d", r.n);
    FZ_ASSERT(r.n_stop >= 0 && r.n_stop <= SERVE_MAX_STOP, "n_stop %d", r.n_stop);
    for (int i = 0; i < r.n_stop; i++) FZ_ASSERT(r.stop[i] && r.stop[i][0], "empty stop string %d", i);
    FZ_ASSERT(r.max_tokens == -1 || r.max_tokens >= 1, "max_tokens %d", r.max_tokens);
    FZ_ASSERT(r.sampling.temperature >= 0 && r.sampling.temperature <= 2, "temperature %g", r.sampling.temperature);
    FZ_ASSERT(r.sampling.top_p >= 0 && r.sampling.top_p <= 1, "top_p %g", r.sampling.top_p);
    FZ_ASSERT(isfinite(r.sampling.frequency_penalty) && isfinite(r.sampling.presence_penalty), "penalties");
    if (chat) {
        FZ_ASSERT(r.n_msgs > 0 && r.msgs, "chat without messages");
        bool user = false;
        for (int i = 0; i < r.n_msgs; i++) {
            FZ_ASSERT(r.msgs[i].role && r.msgs[i].content, "message %d incomplete", i);
            user |= !strcmp(r.msgs[i].role, "user");
        }
        FZ_ASSERT(user, "chat without a user message");
        for (int i = 0; i < r.n_msgs; i++)
            for (int k = 0; k < r.msgs[i].n_calls; k++)
                FZ_ASSERT(r.msgs[i].calls[k].name && r.msgs[i].calls[k].name[0] && r.msgs[i].calls[k].arguments,
                          "message %d call %d incomplete", i, k);
        for (int i = 0; i < r.n_tools; i++) FZ_ASSERT(r.tools[i] && r.tool_names[i] && r.tool_names[i][0], "tool %d", i);
        if (r.tool_choice == SERVE_TOOLS_REQUIRED || r.tool_choice == SERVE_TOOLS_NAMED)
            FZ_ASSERT(r.n_tools > 0, "tool_choice without tools");
        if (r.tool_choice == SERVE_TOOLS_NAMED) {
            bool found = false;
            for (int i = 0; i < r.n_tools; i++) found |= !strcmp(r.tool_names[i], r.tool_choice_name);
            FZ_ASSERT(found, "named tool_choice not among the tools");
        }
    } else {
        FZ_ASSERT(!r.n_tools && r.tool_choice == SERVE_TOOLS_AUTO, "completions with tools");
        FZ_ASSERT(r.prompt || (r.prompt_ids && r.n_prompt_ids > 0), "completion without a prompt");
        for (int i = 0; i < r.n_prompt_ids; i++) FZ_ASSERT(r.prompt_ids[i] >= 0, "negative token id");
    }
    serve_req_free(&r);
    return 0;
}
