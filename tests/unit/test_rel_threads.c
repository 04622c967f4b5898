/* Thread-count independence: the CPU backend's logits with -t 2, 3 and 4 match -t 1 within fp
 * tolerance, for a prefill (every position's logits) and greedy decode steps, on every fixture,
 * with the SIMD and the scalar kernels. The decode tokens must be identical.
 * A difference is allowed only from a different summation order (a row split across threads
 * differently): 1e-4 relative to the logits' scale. LOOM_TEST_VERBOSE prints the errors seen. */
#include "tests/unit/check.h"
#include "loom.h"

#include <stdint.h>
#include <string.h>

#define N_PROMPT 23
#define N_DECODE 8

typedef struct {
    float *prefill; /* [N_PROMPT, n_vocab] */
    float *decode;  /* [N_DECODE, n_vocab] */
    int32_t tokens[N_DECODE];
} run_out;

static int run(loom_model *m, int threads, int n_vocab, run_out *r) {
    loom_session_opts o = loom_session_default_opts();
    o.device = "cpu";
    o.n_threads = threads;
    o.n_ctx = 64;
    o.all_logits = true;
    loom_session *s = loom_session_new(m, &o);
    CHECK(s, "session -t %d: %s", threads, loom_last_error());
    if (!s) return -1;
    int32_t prompt[N_PROMPT];
    for (int i = 0; i < N_PROMPT; i++) prompt[i] = i ? 3 + (i * 101) % (n_vocab - 3) : 1;
    int rows = 0, rc = loom_session_eval(s, prompt, N_PROMPT);
    const float *l = loom_session_logits(s, &rows);
    if (rc == 0 && rows == N_PROMPT) memcpy(r->prefill, l, (size_t)N_PROMPT * n_vocab * sizeof *l);
    CHECK(rc == 0 && rows == N_PROMPT, "-t %d prefill: %s (%d rows)", threads, loom_last_error(), rows);
    for (int k = 0; rc == 0 && k < N_DECODE; k++) {
        l = loom_session_logits(s, &rows) + (size_t)(rows - 1) * n_vocab;
        int32_t best = 0;
        for (int v = 1; v < n_vocab; v++)
            if (l[v] > l[best]) best = v;
        r->tokens[k] = best;
        rc = loom_session_eval(s, &best, 1);
        CHECK(rc == 0, "-t %d decode: %s", threads, loom_last_error());
        if (rc == 0) memcpy(r->decode + (size_t)k * n_vocab, loom_session_logits(s, NULL), (size_t)n_vocab * sizeof *l);
    }
    loom_session_free(s);
    return rc;
}

static double scale_of(const float *a, size_t n) {
    double m = 1;
    for (size_t i = 0; i < n; i++)
        if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}

static void compare(const char *path, bool scalar) {
    setenv("LOOM_SCALAR", scalar ? "1" : "0", 1);
    loom_model *m = loom_model_load(path);
    CHECK(m, "load %s: %s", path, loom_last_error());
    if (!m) return;
    int nv = loom_model_get_info(m).n_vocab;
    run_out ref, r;
    ref.prefill = malloc((size_t)N_PROMPT * nv * sizeof(float));
    ref.decode = malloc((size_t)N_DECODE * nv * sizeof(float));
    r.prefill = malloc((size_t)N_PROMPT * nv * sizeof(float));
    r.decode = malloc((size_t)N_DECODE * nv * sizeof(float));
    if (run(m, 1, nv, &ref) == 0) {
        double sp = scale_of(ref.prefill, (size_t)N_PROMPT * nv), sd = scale_of(ref.decode, (size_t)N_DECODE * nv);
        for (int t = 2; t <= 4; t++) {
            if (run(m, t, nv, &r) < 0) continue;
            double ep = check_max_abs(ref.prefill, r.prefill, (size_t)N_PROMPT * nv) / sp;
            double ed = check_max_abs(ref.decode, r.decode, (size_t)N_DECODE * nv) / sd;
            CHECK(ep <= 1e-4, "%s%s -t %d: prefill logits differ from -t 1 by %.3g (relative)", path,
                  scalar ? " (scalar)" : "", t, ep);
            CHECK(ed <= 1e-4, "%s%s -t %d: decode logits differ from -t 1 by %.3g (relative)", path,
                  scalar ? " (scalar)" : "", t, ed);
            CHECK(!memcmp(ref.tokens, r.tokens, sizeof r.tokens), "%s -t %d: greedy tokens differ", path, t);
            if (getenv("LOOM_TEST_VERBOSE"))
                printf("  %s%s -t %d: prefill %.3g, decode %.3g\n", path, scalar ? " (scalar)" : "", t, ep, ed);
        }
    }
    free(ref.prefill), free(ref.decode), free(r.prefill), free(r.decode);
    loom_model_free(m);
}

int main(void) {
    const char *fx = getenv("LOOM_FIXTURES");
    const char *models[] = {"qwen2-tiny", "llama-tiny", "qwen2-tiny-bf16", "qwen3-tiny", "stories260K.gguf"};
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", fx ? fx : "tests/fixtures", models[i]);
        compare(path, false);
        compare(path, true);
    }
    CHECK_DONE();
}
