/* Ring KV caches for windowed layers (models/session.c, graph.h ATTENTION ip[5]): a session that
 * keeps a windowed layer's cache as a ring of W + step - 1 rows gives the logits of one that keeps
 * all n_ctx rows, through a chunked prefill and a decode many windows past the window, on the
 * CPU (scalar and SIMD) and Vulkan when there is a device:
 *   - gemma2-tiny (window 8 on layer 0 of 2), gemma3-tiny (layers 0 and 1 of 3), qwen2-swa-tiny
 *     (layer 1 of 2); ring step 5 (ring of 12 rows, a 24-token prompt in 5 chunks, 3 of them
 *     crossing the ring's end), 120 decode steps on the CPU (the ring wraps ~12 times) and 36 on
 *     Vulkan (5 wraps: every row is rewritten 3 times and the window crosses the ring's end at each
 *     offset; a lavapipe decode step costs ~20 ms, ~90 ms under ASan, the CPU's ~0.2 ms);
 *   - the ring session allocates less KV memory, exactly the rows loom_kv_rows says;
 *   - the same session then entering the paged mode (loom_seq_new, after a reset) reallocates the
 *     windowed layers to full caches and gives the full-cache logits again;
 *   - a context shift (the ring session re-evaluates the kept tokens) gives the full session's
 *     logits after its own re-evaluating shift;
 *   - an eval of more tokens than the ring step runs in chunks whose logits (all_logits) and hidden
 *     states are the one-step session's.
 * Tolerance 1e-5: the two sessions run the same kernels on the same keys (the ring gathers the
 * window in order), measured max |ring - full| is ~1e-6 (the CPU's blocked attention splits the key
 * range at other places when the window starts at another row). */
#include "tests/unit/check.h"
#include "loom.h"
#include "models/model.h"
#include "models/session_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SCALAR, SIMD, VULKAN };
static const char *mode_name[] = {"scalar", "simd", "vulkan"};
/* Under ASan (CHECK_UNDER_ASAN) Vulkan decodes 16 steps, past one more wrap of the 12-row ring: every
 * row rewritten by a decode step and the window crossing the ring's end at each offset once; the
 * host code (ring indices, plans) is the same at each wrap, and the 36 run in the release build. */
enum { N_CTX = 512, PROMPT = 24, STEPS_CPU = 120, STEPS_VULKAN = CHECK_UNDER_ASAN ? 16 : 36, RING_STEP = 5 };
static const double TOL = 1e-5;

static const char *fixtures_dir(void) {
    const char *d = getenv("LOOM_FIXTURES");
    return d && *d ? d : "tests/fixtures";
}

static loom_session *open_session(loom_model *m, int mode, const char *ring_step, bool all_logits) {
    if (mode == SCALAR) setenv("LOOM_SCALAR", "1", 1);
    setenv("LOOM_RING_STEP", ring_step, 1);
    loom_session_opts o = loom_session_default_opts();
    o.device = mode == VULKAN ? "vulkan" : "cpu";
    o.n_threads = 2;
    o.n_ctx = N_CTX;
    o.all_logits = o.want_hidden = all_logits;
    loom_session *s = loom_session_new(m, &o);
    unsetenv("LOOM_SCALAR");
    unsetenv("LOOM_RING_STEP");
    if (mode == VULKAN && !s) return NULL; /* no Vulkan device here: skipped */
    CHECK(s != NULL, "session: %s", loom_last_error());
    return s;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - (double)b[i]);
        if (!(x <= d)) d = x; /* NaN sticks */
    }
    return d;
}

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* The prompt, then `steps` greedy steps chosen by `full`, fed to both; the worst logit difference. */
static double decode_both(loom_session *full, loom_session *ring, int V, const int32_t *prompt, int steps) {
    double worst = 0;
    CHECK(loom_session_eval(full, prompt, PROMPT) == 0, "full prefill: %s", loom_last_error());
    CHECK(loom_session_eval(ring, prompt, PROMPT) == 0, "ring prefill: %s", loom_last_error());
    for (int t = 0; t <= steps; t++) {
        const float *a = loom_session_logits(full, NULL), *b = loom_session_logits(ring, NULL);
        if (!a || !b) return INFINITY;
        double d = max_diff(a, b, (size_t)V);
        if (d > worst) worst = d;
        if (t == steps) break;
        int32_t next = argmax(a, V);
        if (loom_session_eval(full, &next, 1) < 0 || loom_session_eval(ring, &next, 1) < 0) {
            CHECK(0, "decode step %d: %s", t, loom_last_error());
            return INFINITY;
        }
    }
    return worst;
}

static void test_fixture(const char *fx, int mode) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", fixtures_dir(), fx);
    loom_model *m = loom_model_load(path);
    CHECK(m != NULL, "load %s: %s", fx, loom_last_error());
    if (!m) return;
    const loom_hparams *hp = &m->hp;
    int V = hp->n_vocab;
    loom_session *full = open_session(m, mode, "0", false), *ring = open_session(m, mode, "5", false);
    if (!full || !ring) {
        loom_session_free(full);
        loom_session_free(ring);
        loom_model_free(m);
        return;
    }
    /* memory: full rows everywhere vs rings of W + step - 1 on the windowed layers */
    size_t full_bytes = loom_session_kv_bytes(full), ring_bytes = loom_session_kv_bytes(ring), want = 0;
    int n_local = 0;
    for (int l = 0; l < hp->n_layer; l++) {
        int64_t rows = loom_layer_is_local(hp, l) ? hp->n_swa + RING_STEP - 1 : N_CTX;
        n_local += loom_layer_is_local(hp, l);
        CHECK(loom_kv_rows(hp, l, N_CTX, RING_STEP) == rows, "%s: layer %d rows", fx, l);
        want += 2 * (size_t)rows * (size_t)loom_kv_width(hp, l) * sizeof(float);
    }
    CHECK(n_local > 0 && ring_bytes == want && ring_bytes < full_bytes, "%s: ring session KV %zu bytes (want %zu), full %zu",
          fx, ring_bytes, want, full_bytes);

    int32_t prompt[PROMPT];
    for (int i = 0; i < PROMPT; i++) prompt[i] = (int32_t)((i * 37 + 11) % V);
    int steps = mode == VULKAN ? STEPS_VULKAN : STEPS_CPU;
    double d = decode_both(full, ring, V, prompt, steps);
    printf("%s %s: max |ring - full| over prefill + %d steps: %.3g (ring %zu bytes, full %zu)\n", fx,
           mode_name[mode], steps, d, ring_bytes, full_bytes);
    CHECK(d <= TOL, "%s %s: ring vs full %.3g", fx, mode_name[mode], d);

    /* the ring session goes paged: full caches again, and the full-cache logits */
    loom_session_reset(ring);
    loom_session_reset(full);
    int id = loom_seq_new(ring);
    CHECK(id >= 0, "%s: seq_new on the ring session: %s", fx, loom_last_error());
    CHECK(loom_session_kv_bytes(ring) == full_bytes, "%s: paged session holds full caches", fx);
    if (id >= 0) {
        int32_t seqs[PROMPT];
        for (int i = 0; i < PROMPT; i++) seqs[i] = id;
        loom_batch b = {.n = PROMPT, .tokens = prompt, .seq = seqs};
        CHECK(loom_session_eval_batch(ring, &b) == 0, "%s: paged prefill: %s", fx, loom_last_error());
        CHECK(loom_session_eval(full, prompt, PROMPT) == 0, "%s: full prefill", fx);
        const float *a = loom_session_logits(full, NULL), *p = loom_session_logits(ring, NULL);
        CHECK(a && p && max_diff(a, p, (size_t)V) <= 1e-3, "%s: paged after ring", fx); /* test_batch's bound */
    }
    loom_session_free(full);
    loom_session_free(ring);

    /* a context shift: the ring session (whose rows sit at pos % ring) re-evaluates the kept
     * tokens, as the full session does under LOOM_CTX_SHIFT=reeval (re-rotating cached keys, its
     * default, keeps states computed with the dropped tokens: another result); then both decode on */
    full = open_session(m, mode, "0", false);
    ring = open_session(m, mode, "5", false);
    if (full && ring) {
        /* 60 tokens (5 ring wraps) on the CPU, 36 (3) on Vulkan; the shift drops half past --keep 4 */
        const int CTX_FULL = mode == VULKAN ? 36 : 60, dropped = (CTX_FULL - 4) / 2;
        int32_t hist_a[N_CTX], hist_b[N_CTX];
        int na = 0, nb = 0;
        for (int i = 0; i < CTX_FULL; i++) hist_a[i] = hist_b[i] = (int32_t)((i * 53 + 7) % V);
        CHECK(loom_session_eval(full, hist_a, CTX_FULL) == 0 && loom_session_eval(ring, hist_b, CTX_FULL) == 0,
              "%s: fill: %s", fx, loom_last_error());
        na = nb = CTX_FULL;
        CHECK(loom_session_shift_rotates(full) && !loom_session_shift_rotates(ring), "%s: shift kinds", fx);
        setenv("LOOM_CTX_SHIFT", "reeval", 1);
        CHECK(loom_session_ctx_shift(full, hist_a, &na, 4) == dropped, "%s: ctx shift (full): %s", fx, loom_last_error());
        unsetenv("LOOM_CTX_SHIFT");
        CHECK(loom_session_ctx_shift(ring, hist_b, &nb, 4) == dropped, "%s: ctx shift (ring): %s", fx, loom_last_error());
        double worst = 0;
        for (int t = 0; t < 20 && na == nb; t++) {
            int32_t next = (int32_t)((t * 31 + 3) % V);
            CHECK(loom_session_eval(full, &next, 1) == 0 && loom_session_eval(ring, &next, 1) == 0, "%s: step", fx);
            double d = max_diff(loom_session_logits(full, NULL), loom_session_logits(ring, NULL), (size_t)V);
            if (d > worst) worst = d;
        }
        printf("%s %s: after a context shift (re-evaluated), max |ring - full|: %.3g\n", fx,
               mode_name[mode], worst);
        CHECK(worst <= TOL, "%s %s: ring vs full after a context shift: %.3g", fx, mode_name[mode], worst);
    }
    loom_session_free(full);
    loom_session_free(ring);

    /* all logits and hidden states of a chunked eval (5 chunks) vs one step */
    full = open_session(m, mode, "0", true);
    ring = open_session(m, mode, "5", true);
    if (full && ring) {
        CHECK(loom_session_eval(full, prompt, PROMPT) == 0 && loom_session_eval(ring, prompt, PROMPT) == 0,
              "%s: all-logits prefill: %s", fx, loom_last_error());
        int ra = 0, rb = 0;
        const float *a = loom_session_logits(full, &ra), *b = loom_session_logits(ring, &rb);
        CHECK(ra == PROMPT && rb == PROMPT && max_diff(a, b, (size_t)PROMPT * V) <= TOL, "%s: chunked all logits", fx);
        for (int l = 0; l <= hp->n_layer; l++)
            CHECK(max_diff(loom_session_hidden(full, l), loom_session_hidden(ring, l), (size_t)PROMPT * hp->n_embd) <=
                      TOL,
                  "%s: chunked hidden.%d", fx, l);
    }
    loom_session_free(full);
    loom_session_free(ring);
    loom_model_free(m);
}

int main(void) {
    const char *fx[] = {"gemma2-tiny", "gemma3-tiny", "qwen2-swa-tiny"};
    for (int mode = SCALAR; mode <= VULKAN; mode++)
        for (size_t i = 0; i < sizeof fx / sizeof fx[0]; i++) {
            /* Under ASan, Vulkan on gemma3-tiny only (two windowed layers and a global one: both
             * kinds of cache in one session); the ring code (models/session.c's rows, the plans'
             * ring index) is the same on every backend and runs under ASan for all three fixtures in
             * the CPU modes, the Vulkan graphs of the other two in check_{gemma2,qwen2-swa}-tiny_vulkan,
             * ring attention's recording in test_vulkan_ops (test_attention_ring). A Vulkan fixture
             * here costs ~9 ASan CPU-s (session 14), a CPU one ~0.3; the release build runs all. */
            if (CHECK_UNDER_ASAN && mode == VULKAN && strcmp(fx[i], "gemma3-tiny") != 0) continue;
            test_fixture(fx[i], mode);
        }
    CHECK_DONE();
}
