/* Sampling: greedy picks the argmax; top-k/top-p never pick outside their set; seeds reproduce. */
#include "tests/unit/check.h"
#include "loom.h"

int main(void) {
    float logits[8] = {0.1f, 2.0f, -1.0f, 1.9f, 0.5f, -3.0f, 1.0f, 0.0f};
    loom_sampler_opts g = {.temperature = 0};
    loom_sampler *s = loom_sampler_new(&g);
    CHECK(loom_sampler_sample(s, logits, 8) == 1, "greedy must pick the argmax");
    loom_sampler_free(s);

    loom_sampler_opts k2 = {.temperature = 1.0f, .top_k = 2, .top_p = 1.0f, .seed = 3};
    s = loom_sampler_new(&k2);
    int seen[8] = {0};
    for (int i = 0; i < 2000; i++) seen[loom_sampler_sample(s, logits, 8)]++;
    CHECK(seen[1] > 0 && seen[3] > 0, "top-k 2 should sample both of the top two");
    CHECK(seen[0] + seen[2] + seen[4] + seen[5] + seen[6] + seen[7] == 0, "top-k 2 sampled outside the top two");
    CHECK(seen[1] > seen[3], "the more likely token should come up more often (%d vs %d)", seen[1], seen[3]);
    loom_sampler_free(s);

    /* top-p 0.5 at T=1: p(1) ~ 0.32 and p(3) ~ 0.29, so the nucleus is {1, 3} */
    loom_sampler_opts p5 = {.temperature = 1.0f, .top_k = 0, .top_p = 0.5f, .seed = 9};
    s = loom_sampler_new(&p5);
    int outside = 0;
    for (int i = 0; i < 2000; i++) {
        int t = loom_sampler_sample(s, logits, 8);
        outside += t != 1 && t != 3;
    }
    CHECK(outside == 0, "top-p 0.5 sampled %d times outside the nucleus", outside);
    loom_sampler_free(s);

    /* same seed, same sequence; a different seed, (almost surely) a different one */
    loom_sampler_opts t1 = {.temperature = 1.5f, .top_p = 1.0f, .seed = 42};
    loom_sampler *a = loom_sampler_new(&t1), *b = loom_sampler_new(&t1);
    t1.seed = 43;
    loom_sampler *c = loom_sampler_new(&t1);
    int same = 1, diff = 0;
    for (int i = 0; i < 200; i++) {
        int x = loom_sampler_sample(a, logits, 8), y = loom_sampler_sample(b, logits, 8), z = loom_sampler_sample(c, logits, 8);
        same &= x == y;
        diff += x != z;
    }
    CHECK(same, "the same seed must reproduce the same tokens");
    CHECK(diff > 0, "a different seed should give a different sequence");
    loom_sampler_free(a);
    loom_sampler_free(b);
    loom_sampler_free(c);

    /* penalties, greedy: 2.0 vs 1.9 after token 1 was seen (once or twice) */
    {
        float l2[2] = {2.0f, 1.9f};
        struct { loom_sampler_opts o; int seen; int want; const char *what; } pc[] = {
            {{.repeat_penalty = 1.2f}, 1, 1, "repeat 1.2: 2.0 / 1.2 < 1.9"},
            {{.repeat_penalty = 1.04f}, 1, 0, "repeat 1.04: 2.0 / 1.04 > 1.9"},
            {{.frequency_penalty = 0.06f}, 2, 1, "frequency 0.06 twice: 2.0 - 0.12 < 1.9"},
            {{.frequency_penalty = 0.06f}, 1, 0, "frequency 0.06 once: 2.0 - 0.06 > 1.9"},
            {{.presence_penalty = 0.06f}, 2, 0, "presence 0.06 (counted once): 1.94 > 1.9"},
            {{.presence_penalty = 0.2f}, 1, 1, "presence 0.2: 1.8 < 1.9"},
            {{.repeat_penalty = 1.2f, .penalty_last_n = 1}, 0, 0, "a window of 1 no longer holds token 0"},
        };
        for (size_t i = 0; i < sizeof pc / sizeof pc[0]; i++) {
            loom_sampler *ps = loom_sampler_new(&pc[i].o);
            for (int j = 0; j < pc[i].seen; j++) loom_sampler_accept(ps, 0);
            if (pc[i].seen == 0) {
                loom_sampler_accept(ps, 0);
                loom_sampler_accept(ps, 1); /* token 0 leaves the window; token 1 is penalised */
            }
            int got = loom_sampler_sample(ps, l2, 2);
            CHECK(got == pc[i].want, "%s: got %d, want %d", pc[i].what, got, pc[i].want);
            loom_sampler_free(ps);
        }
        /* a sampled token joins the history: repeat 1.2 alternates 0, 1, ... with window 1 */
        loom_sampler_opts alt = {.repeat_penalty = 1.2f, .penalty_last_n = 1};
        loom_sampler *ps = loom_sampler_new(&alt);
        int a0 = loom_sampler_sample(ps, l2, 2), a1 = loom_sampler_sample(ps, l2, 2), a2 = loom_sampler_sample(ps, l2, 2);
        CHECK(a0 == 0 && a1 == 1 && a2 == 0, "repeat penalty over the sampled history: %d %d %d", a0, a1, a2);
        loom_sampler_reset(ps);
        CHECK(loom_sampler_sample(ps, l2, 2) == 0, "reset must forget the history");
        loom_sampler_free(ps);
    }

    /* min-p at T=1: p(3)/p(1) = exp(-0.1) = 0.905, p(6)/p(1) = exp(-1) */
    for (int round = 0; round < 2; round++) {
        loom_sampler_opts mp = {.temperature = 1.0f, .top_p = 1.0f, .min_p = round ? 0.95f : 0.9f, .seed = 5};
        s = loom_sampler_new(&mp);
        int cnt[8] = {0};
        for (int i = 0; i < 2000; i++) cnt[loom_sampler_sample(s, logits, 8)]++;
        int others = 2000 - cnt[1] - cnt[3];
        if (round == 0) CHECK(others == 0 && cnt[1] > 0 && cnt[3] > 0, "min-p 0.9 keeps {1, 3}: %d %d %d", cnt[1], cnt[3], others);
        else CHECK(cnt[1] == 2000, "min-p 0.95 keeps only token 1 (%d of 2000)", cnt[1]);
        loom_sampler_free(s);
    }
    CHECK_DONE();
}
