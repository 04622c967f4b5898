/* LLaMA (1, 2, 3, and TinyLlama-style checkpoints): the plain llama-family decoder.
 * Differences from the shared blocks: none in the graph; RoPE pair order depends on the file. */
#include "models/model.h"

static int llama_hparams(loom_hparams *hp, const loom_source *src) {
    if (loom_read_common_hparams(hp, src) < 0) return -1;
    /* llama.cpp's converter keeps q/k rows in Meta's interleaved-pair order in GGUF files, while
     * HF checkpoints permute them for rotate-half: pick the RoPE that matches the rows. */
    hp->rope_mode = loom_source_get_kind(src) == LOOM_SOURCE_GGUF ? LOOM_ROPE_NORM : LOOM_ROPE_NEOX;
    bool bias = false;
    if (loom_source_get_bool(src, "attention_bias", NULL, &bias) < 0) return -1;
    hp->qkv_bias = bias;
    return 0;
}

static const char *const llama_names[] = {"llama", "LlamaForCausalLM", NULL};

const loom_arch loom_arch_llama = {
    .name = "llama",
    .aliases = llama_names,
    .read_hparams = llama_hparams,
    .build = loom_build_decoder,
};
