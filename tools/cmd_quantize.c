/* loom quantize: a GGUF or HF checkpoint to a GGUF with block-quantised matrices. */
#include "tools/commands.h"

#include "loom.h"
#include "formats/quantize.h"
#include "models/convert.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: loom quantize IN OUT.gguf --type TYPE [--pure]\n\n"
            "TYPE: q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k_m q4_k_m q5_k_m q6_k iq4_nl iq4_xs, or f32.\n"
            "IN is a GGUF or a HuggingFace directory. Matrices get llama.cpp's mix for the preset (the\n"
            "output head Q6_K, more bits for some attn_v/ffn_down/attn_output layers; --pure: every\n"
            "matrix the preset's type), and its fallback where rows are not whole blocks (Q4_K -> Q5_0,\n"
            "Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> Q4_0, IQ4_XS -> IQ4_NL, else f16). Norms and\n"
            "biases stay f32; every metadata key is carried over. Progress and a summary on stderr.\n"
            "--type f32 dequantises every matrix (of a quantised IN: the exact values it holds).\n");
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[2], *type = NULL;
    int n = 0;
    bool pure = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--type") && i + 1 < argc) {
            type = argv[++i];
        } else if (!strcmp(argv[i], "--pure")) {
            pure = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return loom_bad_opt("quantize", argv[i], usage);
        } else if (n == 2) {
            fprintf(stderr, "loom quantize: too many arguments ('%s')\n", argv[i]);
            return 2;
        } else {
            pos[n++] = argv[i];
        }
    }
    if (n != 2 || !type) {
        fprintf(stderr, "loom quantize: expected IN, OUT.gguf and --type\n");
        usage(stderr);
        return 2;
    }
    if (!strstr(loom_quantize_types(), type) || strchr(type, ',') || strchr(type, ' ')) {
        fprintf(stderr, "loom quantize: unknown --type '%s' (%s)\n", type, loom_quantize_types());
        return 2;
    }
    if (loom_quantize_ex(pos[0], pos[1], type, pure, stderr) < 0) {
        fprintf(stderr, "loom quantize: %s\n", loom_last_error());
        return 1;
    }
    fprintf(stderr, "loom quantize: wrote %s\n", pos[1]);
    return 0;
}
