/* loom convert: a HuggingFace directory to a GGUF file (as llama.cpp's converter writes it). */
#include "tools/commands.h"

#include "models/convert.h"
#include "loom.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: loom convert HF_DIR OUT.gguf\n\n"
            "Convert a llama, qwen2 or qwen3 HuggingFace checkpoint (config.json + model.safetensors or a\n"
            "sharded model.safetensors.index.json) to GGUF: llama.cpp's metadata keys and tensor names,\n"
            "matrices in their source dtype, 1-D tensors in f32, llama q/k rows in interleaved RoPE\n"
            "order, Llama-3 RoPE scaling as rope_freqs.weight. A tokenizer.json in HF_DIR travels along\n"
            "as tokenizer.ggml.* metadata (with tokenizer_config.json's BOS/EOS and chat template); without\n"
            "one the GGUF has no vocabulary. The output is written to a temporary file and renamed.\n");
}

int cmd_convert(int argc, char **argv) {
    const char *pos[2];
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "loom convert: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        if (n == 2) {
            fprintf(stderr, "loom convert: too many arguments ('%s')\n", argv[i]);
            usage(stderr);
            return 2;
        }
        pos[n++] = argv[i];
    }
    if (n != 2) {
        fprintf(stderr, "loom convert: expected HF_DIR and OUT.gguf\n");
        usage(stderr);
        return 2;
    }
    if (loom_convert_hf_to_gguf(pos[0], pos[1]) < 0) {
        fprintf(stderr, "loom convert: %s\n", loom_last_error());
        return 1;
    }
    fprintf(stderr, "loom convert: wrote %s\n", pos[1]);
    return 0;
}
