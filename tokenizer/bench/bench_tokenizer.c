/* bench_tokenizer MODEL [TEXT_FILE]: encode about 1 MB of English-like text (or the given file)
 * and print the speed. The default text is generated from a seeded word list, so the figure is
 * reproducible without shipping a corpus. */
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const words[] = {
    "the", "of", "and", "to", "a", "in", "that", "is", "was", "he", "for", "it", "with", "as",
    "his", "on", "be", "at", "by", "I", "this", "had", "not", "are", "but", "from", "or", "have",
    "an", "they", "which", "one", "you", "were", "her", "all", "she", "there", "would", "their",
    "we", "him", "been", "has", "when", "who", "will", "more", "no", "if", "out", "so", "said",
    "what", "up", "its", "about", "into", "than", "them", "can", "only", "other", "new", "some",
    "could", "time", "these", "two", "may", "then", "do", "first", "any", "my", "now", "such",
    "like", "our", "over", "man", "me", "even", "most", "made", "after", "also", "did", "many",
    "before", "must", "through", "back", "years", "where", "much", "your", "way", "well", "down",
    "should", "because", "each", "just", "those", "people", "how", "too", "little", "state",
    "good", "very", "make", "world", "still", "own", "see", "men", "work", "long", "get", "here",
    "between", "both", "life", "being", "under", "never", "day", "same", "another", "know",
    "while", "last", "might", "us", "great", "old", "year", "off", "come", "since", "against",
    "go", "came", "right", "used", "take", "three", "government", "development", "understanding",
    "information", "relationship", "environmental", "responsibility", "international",
    "tokenizer", "performance", "considerably", "nevertheless", "extraordinary", "Wednesday",
    "London", "Einstein", "electricity", "photosynthesis", "mountains", "children", "beautiful",
    "don't", "it's", "we're", "they've", "I'll", "she'd",
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *make_text(size_t target, size_t *len) {
    char *buf = malloc(target + 64);
    if (!buf) return NULL;
    uint64_t s = 0x9e3779b97f4a7c15ull;
    size_t n = 0, in_sentence = 0;
    const size_t nw = sizeof words / sizeof words[0];
    while (n < target) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        /* Zipf-ish: small indices far more often */
        double u = (double)(s >> 11) / 9007199254740992.0;
        size_t w = (size_t)(u * u * u * (double)nw);
        const char *word = words[w < nw ? w : nw - 1];
        if (in_sentence == 0) {
            n += (size_t)sprintf(buf + n, "%c%s", word[0] >= 'a' && word[0] <= 'z' ? word[0] - 32 : word[0],
                                 word + 1);
        } else {
            n += (size_t)sprintf(buf + n, " %s", word);
        }
        in_sentence++;
        if ((s >> 5) % 97 == 0) n += (size_t)sprintf(buf + n, " %u", (unsigned)(s >> 40) % 10000);
        if (in_sentence > 6 && (s >> 20) % 9 == 0) {
            const char *end = (s >> 30) % 7 == 0 ? "?" : (s >> 30) % 5 == 0 ? "!" : ".";
            n += (size_t)sprintf(buf + n, "%s%s", end, (s >> 33) % 6 == 0 ? "\n\n" : " ");
            in_sentence = 0;
        } else if ((s >> 24) % 13 == 0) {
            buf[n++] = ',';
        }
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = b ? (size_t)sz : 0;
    return b;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_tokenizer MODEL [TEXT_FILE]\n");
        return 2;
    }
    loom_tokenizer *t = loom_tokenizer_load(argv[1]);
    if (!t) {
        fprintf(stderr, "bench_tokenizer: %s\n", loom_last_error());
        return 1;
    }
    size_t len;
    char *text = argc > 2 ? read_file(argv[2], &len) : make_text(1 << 20, &len);
    if (!text) {
        fprintf(stderr, "bench_tokenizer: cannot read %s\n", argc > 2 ? argv[2] : "(generated)");
        return 1;
    }
    double best = 1e30;
    int n = 0;
    for (int rep = 0; rep < 3; rep++) {
        int32_t *ids = NULL;
        double t0 = now();
        n = loom_tokenizer_encode(t, text, len, 0, &ids);
        double dt = now() - t0;
        free(ids);
        if (n < 0) {
            fprintf(stderr, "bench_tokenizer: %s\n", loom_last_error());
            return 1;
        }
        if (dt < best) best = dt;
    }
    printf("%s (%s): %zu bytes -> %d tokens in %.3f s: %.2f MB/s, %.0f tokens/s\n", argv[1],
           loom_tokenizer_kind(t), len, n, best, (double)len / best / 1e6, n / best);
    free(text);
    loom_tokenizer_free(t);
    return 0;
}
