/* loom synth: a random-weight GGUF of a real model shape (benchmarks without downloads). */
#include "tools/commands.h"
#include "tools/options.h"

#include "models/convert.h"
#include "loom.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_synth(int argc, char **argv) {
    const char *shape = NULL, *out = NULL, *vocab = NULL, *dtype_name = "f16";
    long seed = 0;
    const loom_opt opts[] = {
        {.names = "--shape",
         .type = LOOM_OPT_STR,
         .arg = "S",
         .help = "qwen2-0.5b, llama-1.1b, llama-7b, or a HF CONFIG.json (required)",
         .dst = &shape},
        {.names = "--dtype", .type = LOOM_OPT_CHOICE, .arg = "T", .help = "the matrices' type", .dst = &dtype_name,
         .choices = "f16|bf16|f32"},
        {.names = "--seed", .type = LOOM_OPT_INT, .arg = "N", .help = "the same seed gives the same file", .lo = 0,
         .hi = 0x7fffffffffffffffL, .dst = &seed},
        {.names = "--vocab",
         .type = LOOM_OPT_STR,
         .arg = "TOKENIZER",
         .help = "write this tokenizer in (a GGUF, a tokenizer.json or a directory holding\n"
                 "one), padded with user-defined tokens up to the shape's vocabulary",
         .dst = &vocab},
        {.names = "-o", .type = LOOM_OPT_STR, .arg = "FILE.gguf", .help = "the file to write (required)", .dst = &out},
        LOOM_OPT_END,
    };
    int prc = loom_opts_parse("synth", "--shape qwen2-0.5b|llama-1.1b|llama-7b|CONFIG.json [--dtype f16|bf16|f32]\n"
                                       "                  [--seed N] [--vocab TOKENIZER] -o FILE.gguf",
                              "Write a GGUF with random weights (N(0, 0.02) matrices, unit norms, zero biases) of a real\n"
                              "model shape, or of the shape a HF config.json describes. No tokenizer, unless --vocab\n"
                              "names one, so that llama.cpp loads the file too.",
                              opts, NULL, argc, argv);
    if (prc >= 0) return prc;
    if (!shape || !out) {
        fprintf(stderr, "loom synth: %s is required (loom synth --help)\n", !shape ? "--shape" : "-o");
        return 2;
    }
    loom_dtype dtype = !strcmp(dtype_name, "bf16") ? LOOM_BF16 : !strcmp(dtype_name, "f32") ? LOOM_F32 : LOOM_F16;
    double t0 = loom_now();
    if (loom_synth_vocab(shape, dtype, (uint64_t)seed, vocab, out) < 0) {
        fprintf(stderr, "loom synth: %s\n", loom_last_error());
        return 1;
    }
    fprintf(stderr, "loom synth: wrote %s (%s, %s) in %.2f s\n", out, shape, loom_dtype_name(dtype),
            loom_now() - t0);
    return 0;
}
