/* Long runs: 10,000 sampled decode steps on stories260K with a 256-token context, shifted whenever
 * it fills (loom_session_ctx_shift, as `loom run --ctx-shift` does). Resident memory is sampled
 * from /proc/self/statm: after warm-up it must stay within a small bound. The same seed must give
 * the same tokens on a second run. On Vulkan (lavapipe is ~50 ms a token here) the same with
 * fewer steps (200) and a 64-token context, the second run the first 100 of them, skipped when there
 * is no device. Under ASan (fewer steps, RSS not checked) one run each: the repeat is the release
 * build's.
 *
 * LOOM_LONGRUN_STEPS overrides the CPU step count; LOOM_TEST_VERBOSE prints the RSS samples. */
#include "tests/unit/check.h"
#include "loom.h"
#include "models/session_internal.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define UNDER_ASAN CHECK_UNDER_ASAN /* ASan's quarantine holds freed memory: RSS grows by design */

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

typedef struct {
    long rss_warm, rss_max, rss_min;
    int shifts;
} run_stats;

/* Generate `steps` tokens into out[]; returns 0, or -1 (a failed CHECK has been recorded). */
static int run(loom_model *m, const char *device, int n_ctx, int steps, int32_t *out, run_stats *st) {
    loom_session_opts o = loom_session_default_opts();
    o.device = device;
    o.n_threads = 2;
    o.n_ctx = n_ctx;
    loom_session *s = loom_session_new(m, &o);
    CHECK(s, "%s session: %s", device, loom_last_error());
    if (!s) return -1;
    loom_sampler_opts so = {.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .seed = 42};
    loom_sampler *smp = loom_sampler_new(&so);
    int32_t *hist = malloc((size_t)n_ctx * sizeof *hist);
    int n_vocab = loom_model_get_info(m).n_vocab, n = 0, rc = 0, warm = -1;
    int every = steps / 40 > 0 ? steps / 40 : 1;
    memset(st, 0, sizeof *st);
    hist[n++] = 1; /* BOS */
    if (loom_session_eval(s, hist, 1) < 0) rc = -1;
    for (int i = 0; rc == 0 && i < steps; i++) {
        int32_t next = loom_sampler_sample(smp, loom_session_logits(s, NULL), n_vocab);
        out[i] = next;
        if (n == n_ctx) {
            if (loom_session_ctx_shift(s, hist, &n, 1) < 0) rc = -1;
            st->shifts++;
        }
        if (rc == 0 && loom_session_eval(s, &next, 1) < 0) rc = -1;
        hist[n++] = next;
        /* warm-up ends after the second shift: both graphs (decode, context shift) have plans */
        if (warm < 0 && st->shifts == 2) {
            warm = i;
            st->rss_warm = st->rss_min = st->rss_max = rss_kib();
        }
        if (warm >= 0 && i > warm && i % every == 0) {
            long r = rss_kib();
            if (r > st->rss_max) st->rss_max = r;
            if (r < st->rss_min) st->rss_min = r;
            if (getenv("LOOM_TEST_VERBOSE")) fprintf(stderr, "  %s step %d: RSS %ld KiB\n", device, i, r);
        }
    }
    CHECK(rc == 0, "%s: %s", device, loom_last_error());
    free(hist);
    loom_sampler_free(smp);
    loom_session_free(s);
    return rc;
}

/* Run `steps` tokens (RSS measured over them), then, unless steps2 is 0, a second run of steps2 <= steps
 * tokens with the same seed, which must repeat the first run's first steps2 tokens. */
static void long_run(loom_model *m, const char *device, int n_ctx, int steps, int steps2) {
    int32_t *a = calloc((size_t)steps, sizeof *a), *b = calloc((size_t)steps, sizeof *b);
    run_stats sa, sb;
    if (run(m, device, n_ctx, steps, a, &sa) == 0 && (steps2 == 0 || run(m, device, n_ctx, steps2, b, &sb) == 0)) {
        int first = -1;
        for (int i = 0; i < steps2 && first < 0; i++)
            if (a[i] != b[i]) first = i;
        CHECK(first < 0, "%s: the same seed gave different tokens from step %d (%d vs %d)", device, first,
              a[first], b[first]);
        CHECK(sa.shifts >= 4 && sa.shifts >= steps / n_ctx, "%s: only %d context shifts in %d steps", device,
              sa.shifts, steps);
        /* after warm-up a step allocates nothing that stays; 2 MiB leaves room for malloc's own
         * trimming decisions */
        long growth = sa.rss_max - sa.rss_warm;
        printf("%s: %d steps, %d context shifts, RSS %ld KiB after warm-up, max %ld KiB (+%ld KiB), min %ld KiB; ",
               device, steps, sa.shifts, sa.rss_warm, sa.rss_max, growth, sa.rss_min);
        if (steps2) printf("the same seed again: %d tokens compared (%d context shifts)\n", steps2, sb.shifts);
        else printf("no second run (under ASan: the release build's run repeats)\n");
        if (!UNDER_ASAN) CHECK(growth <= 2048, "%s: RSS grew by %ld KiB over %d steps", device, growth, steps);
    }
    free(a);
    free(b);
}

int main(void) {
    const char *fx = getenv("LOOM_FIXTURES");
    char path[1024];
    snprintf(path, sizeof path, "%s/stories260K.gguf", fx ? fx : "tests/fixtures");
    loom_model *m = loom_model_load(path);
    CHECK(m, "load %s: %s", path, loom_last_error());
    if (!m) CHECK_DONE();
    const char *e = getenv("LOOM_LONGRUN_STEPS");
    /* under ASan (a step ~5x slower, RSS not checked) 1,200 steps: 8 context shifts per run, the same
     * shift code each time; the 10,000 are the release build's */
    int steps = e && atoi(e) > 0 ? atoi(e) : UNDER_ASAN ? 1200 : 10000;
    /* under ASan one run: a second one runs the same code again (its repeat is the release build's) */
    long_run(m, "cpu", 256, steps, UNDER_ASAN ? 0 : steps);

    /* Vulkan when there is a device (a backend that cannot open is not a failure here) */
    loom_session_opts o = loom_session_default_opts();
    o.device = "vulkan";
    o.n_ctx = 8;
    loom_session *probe = loom_session_new(m, &o);
    if (probe) {
        loom_session_free(probe);
        /* lavapipe takes ~30 ms a token, so CI runs 200 steps; on a GPU the full 10,000 run is
         * LOOM_LONGRUN_VK_STEPS=10000 (with the CPU run's 256-token context) */
        const char *ve = getenv("LOOM_LONGRUN_VK_STEPS");
        int vsteps = ve && atoi(ve) > 0 ? atoi(ve) : UNDER_ASAN ? 100 : 200;
        /* the same seed again: in CI (lavapipe, 200 steps) the first 100 tokens, two context shifts
         * (steps 62 and 94 of the 64-token context); a GPU's 10,000 all of them */
        int vsteps2 = UNDER_ASAN ? 0 : vsteps >= 2000 ? vsteps : (vsteps + 1) / 2;
        long_run(m, "vulkan", vsteps >= 2000 ? 256 : UNDER_ASAN ? 32 : 64, vsteps, vsteps2);
    } else {
        printf("vulkan: skipped (%s)\n", loom_last_error());
    }
    loom_model_free(m);
    CHECK_DONE();
}
