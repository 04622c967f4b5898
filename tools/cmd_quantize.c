/* loom quantize: a GGUF or HF checkpoint to a GGUF with block-quantised matrices. */
#include "tools/commands.h"
#include "tools/options.h"

#include "loom.h"
#include "formats/quantize.h"
#include "models/convert.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

int cmd_quantize(int argc, char **argv) {
    const char *pos[2], *type = NULL;
    int n = 0;
    bool pure = false;
    long threads = 0;
    const loom_opt opts[] = {
        {.type = LOOM_OPT_ARGS, .arg = "IN OUT.gguf", .help = "a GGUF or a HuggingFace directory, and the file to write",
         .dst = pos, .count = &n, .lo = 2, .hi = 2},
        {.names = "--type",
         .type = LOOM_OPT_STR,
         .arg = "TYPE",
         .help = "q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k_m q4_k_m q5_k_m q6_k iq4_nl iq4_xs, or f32\n"
                 "(required)",
         .dst = &type},
        {.names = "--pure", .type = LOOM_OPT_FLAG, .help = "every matrix the preset's type (no mix)", .dst = &pure},
        {.names = "-t|--threads", .type = LOOM_OPT_INT, .arg = "N",
         .help = "threads quantising the rows (default 0: one per CPU); the file is the same for any N",
         .lo = 0, .hi = LOOM_QUANTIZE_MAX_THREADS, .dst = &threads},
        LOOM_OPT_END,
    };
    int prc = loom_opts_parse(
        "quantize", "IN OUT.gguf --type TYPE [--pure] [-t N]",
        "Matrices get llama.cpp's mix for the preset (the output head Q6_K, more bits for some\n"
        "attn_v/ffn_down/attn_output layers; --pure: every matrix the preset's type), and its fallback\n"
        "where rows are not whole blocks (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> Q4_0,\n"
        "IQ4_XS -> IQ4_NL, else f16). Norms and biases stay f32; every metadata key is carried over.\n"
        "Progress and a summary on stderr. --type f32 dequantises every matrix (of a quantised IN: the\n"
        "exact values it holds).",
        opts, NULL, argc, argv);
    if (prc >= 0) return prc;
    if (!type) {
        fprintf(stderr, "loom quantize: --type is required (%s)\n", loom_quantize_types());
        return 2;
    }
    if (!strstr(loom_quantize_types(), type) || strchr(type, ',') || strchr(type, ' ')) {
        fprintf(stderr, "loom quantize: unknown --type '%s' (%s)\n", type, loom_quantize_types());
        return 2;
    }
    if (loom_quantize_ex(pos[0], pos[1], type, pure, (int)threads, stderr) < 0) {
        fprintf(stderr, "loom quantize: %s\n", loom_last_error());
        return 1;
    }
    fprintf(stderr, "loom quantize: wrote %s\n", pos[1]);
    return 0;
}
