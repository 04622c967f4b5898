/* loom_session_truncate (loom bench -d): after cutting a single-sequence cache back to its first D
 * tokens, evaluating the same tokens again gives the same logits as the first time (bit for bit: the
 * same kernels read the same rows 0..D-1, and rows past D are written again before attention reads
 * them). Prompt and decode steps after the cut; bad calls fail with a message: beyond the tokens held,
 * negative, on a session holding sequences, on a model whose windowed layers keep ring caches. */
#include "models/model.h"
#include "models/session_internal.h"
#include "tests/unit/test_formats_util.h"

#include <string.h>

static int same(const float *a, const float *b, int n) { return memcmp(a, b, (size_t)n * sizeof(float)) == 0; }

static void one(const char *name, const char *path, int depth) {
    loom_model *m = loom_model_load(path);
    CHECK(m, "load %s: %s", path, loom_last_error());
    if (!m) return;
    int V = m->hp.n_vocab;
    loom_session_opts o = loom_session_default_opts();
    o.device = "cpu";
    o.n_threads = 2;
    o.n_ctx = 64;
    loom_session *s = loom_session_new(m, &o);
    CHECK(s, "%s: session: %s", name, loom_last_error());
    if (!s) goto out;
    int32_t tok[64];
    for (int i = 0; i < 64; i++) tok[i] = 3 + (i * 37) % (V - 3);
    float *first = malloc((size_t)V * 5 * sizeof(float));
    if (!first) goto out;
    /* depth tokens, then a prompt of 6 and 4 decode steps: logits after each */
    CHECK(loom_session_eval(s, tok, depth) == 0, "%s: depth: %s", name, loom_last_error());
    for (int pass = 0; pass < 3; pass++) {
        if (pass) CHECK(loom_session_truncate(s, depth) == 0, "%s: truncate: %s", name, loom_last_error());
        CHECK(loom_session_pos(s) == depth, "%s: pos %d after truncate, want %d", name, loom_session_pos(s), depth);
        CHECK(loom_session_eval(s, tok + depth, 6) == 0, "%s: prompt: %s", name, loom_last_error());
        for (int k = 0; k < 5; k++) {
            if (k) CHECK(loom_session_eval(s, tok + depth + 6 + k, 1) == 0, "%s: step: %s", name, loom_last_error());
            const float *lg = loom_session_logits(s, NULL);
            if (!lg) continue;
            if (pass == 0) memcpy(first + (size_t)k * V, lg, (size_t)V * sizeof(float));
            else CHECK(same(first + (size_t)k * V, lg, V), "%s: pass %d step %d: logits differ from the first run", name, pass, k);
        }
    }
    /* bad calls */
    int held = loom_session_pos(s);
    CHECK(loom_session_truncate(s, held + 1) < 0 && strstr(loom_last_error(), "not between 0 and"), "%s: past the end", name);
    CHECK(loom_session_truncate(s, -1) < 0, "%s: negative", name);
    CHECK(loom_session_pos(s) == held, "%s: a failed truncate moved the cache", name);
    loom_session_reset(s);
    CHECK(loom_seq_new(s) >= 0, "%s: seq: %s", name, loom_last_error());
    CHECK(loom_session_truncate(s, 0) < 0 && strstr(loom_last_error(), "holds sequences"), "%s: paged", name);
    free(first);
out:
    loom_session_free(s);
    loom_model_free(m);
}

int main(void) {
    tf_init();
    one("qwen2-tiny", FIX("qwen2-tiny"), 20);
    one("stories260K.gguf", FIX("stories260K.gguf"), 33);
    /* a windowed model keeps ring caches: truncating is refused */
    loom_model *m = loom_model_load(FIX("gemma2-tiny"));
    CHECK(m, "load gemma2-tiny: %s", loom_last_error());
    if (m) {
        loom_session_opts o = loom_session_default_opts();
        o.device = "cpu";
        o.n_ctx = 1024; /* past the window + the ring step (512): ring caches */
        loom_session *s = loom_session_new(m, &o);
        int32_t t[4] = {3, 4, 5, 6};
        CHECK(s && loom_session_eval(s, t, 4) == 0, "gemma2-tiny: eval: %s", loom_last_error());
        CHECK(s && loom_session_truncate(s, 2) < 0 && strstr(loom_last_error(), "ring caches"), "gemma2-tiny: ring: %s", loom_last_error());
        loom_session_free(s);
        loom_model_free(m);
    }
    CHECK_DONE();
}
