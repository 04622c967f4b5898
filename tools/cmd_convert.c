/* loom convert: a HuggingFace directory to a GGUF file (as llama.cpp's converter writes it). */
#include "tools/commands.h"
#include "tools/options.h"

#include "models/convert.h"
#include "loom.h"

#include <stdio.h>
#include <string.h>

int cmd_convert(int argc, char **argv) {
    const char *pos[2];
    int n = 0;
    const loom_opt opts[] = {
        {.type = LOOM_OPT_ARGS, .arg = "HF_DIR OUT.gguf", .help = "the checkpoint directory and the file to write",
         .dst = pos, .count = &n, .lo = 2, .hi = 2},
        LOOM_OPT_END,
    };
    int prc = loom_opts_parse(
        "convert", "HF_DIR OUT.gguf",
        "Convert a llama, qwen2 or qwen3 HuggingFace checkpoint (config.json + model.safetensors or a\n"
        "sharded model.safetensors.index.json) to GGUF: llama.cpp's metadata keys and tensor names,\n"
        "matrices in their source dtype, 1-D tensors in f32, llama q/k rows in interleaved RoPE\n"
        "order, Llama-3 RoPE scaling as rope_freqs.weight. A tokenizer.json in HF_DIR travels along\n"
        "as tokenizer.ggml.* metadata (with tokenizer_config.json's BOS/EOS and chat template); without\n"
        "one the GGUF has no vocabulary. The output is written to a temporary file and renamed.",
        opts, NULL, argc, argv);
    if (prc >= 0) return prc;
    if (loom_convert_hf_to_gguf(pos[0], pos[1]) < 0) {
        fprintf(stderr, "loom convert: %s\n", loom_last_error());
        return 1;
    }
    fprintf(stderr, "loom convert: wrote %s\n", pos[1]);
    return 0;
}
