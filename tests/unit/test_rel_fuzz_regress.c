/* Fuzz regressions, replayed in the normal build: every file in tests/fixtures/fuzz-regress/TARGET/
 * (inputs that once crashed, hung or broke a rule) and every seed in fuzz/corpus/ goes through the
 * fuzz target's own code (fuzz/fuzz_TARGET.c, compiled here with the ordinary compiler and without
 * libFuzzer), i.e. through the normal loaders plus the targets' checks. A broken rule aborts, a
 * memory error is caught under `make asan`; a hang shows as the ctest timeout. */
#include "tests/unit/test_formats_util.h" /* tf_read; includes check.h */

#define LLVMFuzzerTestOneInput fuzz_gguf_one
#include "fuzz/fuzz_gguf.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_safetensors_one
#include "fuzz/fuzz_safetensors.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_tokenizer_json_one
#include "fuzz/fuzz_tokenizer_json.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_tokenize_one
#define LLVMFuzzerInitialize fuzz_tokenize_init
#include "fuzz/fuzz_tokenize.c"
#undef LLVMFuzzerTestOneInput
#undef LLVMFuzzerInitialize
#define LLVMFuzzerTestOneInput fuzz_model_one
#define LLVMFuzzerInitialize fuzz_model_init
#include "fuzz/fuzz_model.c"
#undef LLVMFuzzerTestOneInput
#undef LLVMFuzzerInitialize
#define LLVMFuzzerTestOneInput fuzz_serve_req_one
#include "fuzz/fuzz_serve_req.c" /* with tools/serve_req.c, serve_tools.c (tests/reliability.cmake) */
#undef LLVMFuzzerTestOneInput

#include <dirent.h>
#include <time.h>

static const struct {
    const char *name, *seeds;
    int (*one)(const uint8_t *, size_t);
} targets[] = {
    {"gguf", "gguf", fuzz_gguf_one},
    {"safetensors", "safetensors", fuzz_safetensors_one},
    {"tokenizer_json", "tokenizer_json", fuzz_tokenizer_json_one},
    {"tokenize", "tokenize", fuzz_tokenize_one},
    {"model", "gguf", fuzz_model_one},
    {"serve_req", "serve_req", fuzz_serve_req_one},
};

/* Replay every regular file of dir; returns how many. */
static int replay(const char *target, int (*one)(const uint8_t *, size_t), const char *dir, bool verbose) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !strcmp(e->d_name, "README.md")) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t n;
        uint8_t *p = tf_read(path, &n);
        if (!p) continue;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (verbose) fprintf(stderr, "  %s %s\n", target, path);
        one(p, n);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        /* a former hang must stay fast (generous: sanitizer builds are slow) */
        CHECK(s < 10, "%s: %s took %.1f s", target, path, s);
        free(p);
        count++;
    }
    closedir(d);
    return count;
}

int main(void) {
    const char *root = FUZZ_ROOT;
    bool verbose = getenv("LOOM_TEST_VERBOSE") != NULL;
    fuzz_tokenize_init(NULL, NULL);
    fuzz_model_init(NULL, NULL);
    int regress = 0;
    for (size_t i = 0; i < sizeof targets / sizeof *targets; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/tests/fixtures/fuzz-regress/%s", root, targets[i].name);
        int r = replay(targets[i].name, targets[i].one, dir, verbose);
        snprintf(dir, sizeof dir, "%s/fuzz/corpus/%s", root, targets[i].seeds);
        int s = replay(targets[i].name, targets[i].one, dir, verbose);
        CHECK(s > 0, "%s: no seeds in %s", targets[i].name, dir);
        printf("%-15s %3d regression inputs, %3d seeds replayed\n", targets[i].name, r, s);
        regress += r;
    }
    CHECK(regress > 0, "no regression inputs found under %s/tests/fixtures/fuzz-regress", root);
    CHECK_DONE();
}
