/* loom quantize: a GGUF or HF checkpoint to a GGUF with block-quantised matrices. */
#include "tools/commands.h"

#include "loom.h"
#include "formats/quantize.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: loom quantize IN OUT.gguf --type q8_0|q4_0|q4_k_m|q6_k|f32\n\n"
            "IN is a f32/f16/bf16 GGUF or a HuggingFace directory. Matrices are quantised (q4_k_m: Q6_K\n"
            "for the output head and some attn_v/ffn_down layers, Q4_K elsewhere, as llama.cpp); a\n"
            "matrix whose rows are not whole blocks falls back (Q4_K -> Q4_0, Q6_K -> Q8_0, else f16)\n"
            "with a note. Norms and biases stay f32; every metadata key is carried over.\n"
            "--type f32 dequantises every matrix (of a quantised IN: the exact values it holds).\n");
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[2], *type = NULL;
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--type") && i + 1 < argc) {
            type = argv[++i];
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
    if (strcmp(type, "q8_0") && strcmp(type, "q4_0") && strcmp(type, "q4_k_m") && strcmp(type, "q6_k") &&
        strcmp(type, "f32")) {
        fprintf(stderr, "loom quantize: unknown --type '%s' (q8_0, q4_0, q4_k_m, q6_k, f32)\n", type);
        return 2;
    }
    if (loom_quantize(pos[0], pos[1], type, stderr) < 0) {
        fprintf(stderr, "loom quantize: %s\n", loom_last_error());
        return 1;
    }
    fprintf(stderr, "loom quantize: wrote %s\n", pos[1]);
    return 0;
}
