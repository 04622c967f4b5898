/* Qwen2 / Qwen2.5: the plain decoder with biases on the q, k and v projections, rotate-half RoPE
 * in every file format, and (for the small models) the LM head tied to the embedding. */
#include "models/model.h"

static int qwen2_hparams(loom_hparams *hp, const loom_source *src) {
    if (loom_read_hparams(hp, src) < 0) return -1;
    hp->rope_mode = LOOM_ROPE_NEOX;
    hp->qkv_bias = true;
    return 0;
}

static const char *const qwen2_names[] = {"qwen2", "Qwen2ForCausalLM", NULL};

const loom_arch loom_arch_qwen2 = {
    .name = "qwen2",
    .aliases = qwen2_names,
    .read_hparams = qwen2_hparams,
    .build = loom_build_decoder,
};
