/* loom synth: a random-weight GGUF of a real model shape (benchmarks without downloads). */
#include "tools/commands.h"

#include "models/convert.h"
#include "loom.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: loom synth --shape qwen2-0.5b|llama-1.1b|llama-7b|CONFIG.json [--dtype f16|bf16|f32]\n"
            "                  [--seed N] [--vocab TOKENIZER] -o FILE.gguf\n\n"
            "Write a GGUF with random weights (N(0, 0.02) matrices, unit norms, zero biases) of a real\n"
            "model shape, or of the shape a HF config.json describes. Default dtype f16, seed 0; the\n"
            "same seed gives the same file. No tokenizer, unless --vocab names one (a GGUF, a\n"
            "tokenizer.json or a directory holding one): it is written in, padded with user-defined\n"
            "tokens up to the shape's vocabulary, so that llama.cpp loads the file too.\n");
}

int cmd_synth(int argc, char **argv) {
    const char *shape = NULL, *out = NULL, *vocab = NULL;
    loom_dtype dtype = LOOM_F16;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--shape") && strcmp(a, "--dtype") && strcmp(a, "--seed") && strcmp(a, "--vocab") &&
            strcmp(a, "-o")) {
            fprintf(stderr, "loom synth: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (!val) {
            fprintf(stderr, "loom synth: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--shape")) {
            shape = val;
        } else if (!strcmp(a, "-o")) {
            out = val;
        } else if (!strcmp(a, "--vocab")) {
            vocab = val;
        } else if (!strcmp(a, "--dtype")) {
            if (!strcmp(val, "f16")) dtype = LOOM_F16;
            else if (!strcmp(val, "bf16")) dtype = LOOM_BF16;
            else if (!strcmp(val, "f32")) dtype = LOOM_F32;
            else {
                fprintf(stderr, "loom synth: --dtype expects f16, bf16 or f32, got '%s'\n", val);
                return 2;
            }
        } else {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(val, &end, 0);
            if (!*val || *end || errno || val[0] == '-') {
                fprintf(stderr, "loom synth: --seed expects a non-negative integer, got '%s'\n", val);
                return 2;
            }
            seed = v;
        }
    }
    if (!shape || !out) {
        fprintf(stderr, "loom synth: %s is required\n", !shape ? "--shape" : "-o");
        usage(stderr);
        return 2;
    }
    double t0 = loom_now();
    if (loom_synth_vocab(shape, dtype, seed, vocab, out) < 0) {
        fprintf(stderr, "loom synth: %s\n", loom_last_error());
        return 1;
    }
    fprintf(stderr, "loom synth: wrote %s (%s, %s) in %.2f s\n", out, shape, loom_dtype_name(dtype),
            loom_now() - t0);
    return 0;
}
