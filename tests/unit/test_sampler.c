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
    CHECK_DONE();
}
