/* fuzz_serve_req: arbitrary bytes as a loom serve request body (tools/serve_req.c). Byte 0 bit 0
 * picks /v1/chat/completions or /v1/completions; the rest is the body. Checked beyond memory
 * safety: a refused body always has a message; an accepted one has its input (messages with a
 * user turn, or a prompt) and every field within the documented ranges. */
#include "fuzz/fuzz_util.h"
#include "tools/serve.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    bool chat = data[0] & 1;
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
    } else {
        FZ_ASSERT(r.prompt || (r.prompt_ids && r.n_prompt_ids > 0), "completion without a prompt");
        for (int i = 0; i < r.n_prompt_ids; i++) FZ_ASSERT(r.prompt_ids[i] >= 0, "negative token id");
    }
    serve_req_free(&r);
    return 0;
}
