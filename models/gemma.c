/* Gemma (1): the plain decoder with GELU (tanh) in the MLP, token embeddings scaled by
 * sqrt(hidden_size), RMSNorms that multiply by 1 + w (stored w in HF; llama.cpp's GGUF and the
 * graph hold w + 1: norm_plus_one), rotate-half RoPE, and the LM head tied to the embedding. */
#include "models/model.h"

#include "models/convert.h"

#include <math.h>

static int gemma_hparams(loom_hparams *hp, const loom_source *src) {
    if (loom_read_hparams(hp, src) < 0) return -1;
    hp->rope_mode = LOOM_ROPE_NEOX;
    hp->act = LOOM_ACT_GELU_TANH; /* transformers' Gemma runs hidden_activation; GGUF has no key */
    hp->embd_scale = (float)sqrt((double)hp->n_embd);
    return 0;
}

static const char *const gemma_names[] = {"gemma", "GemmaForCausalLM", NULL};

const loom_arch loom_arch_gemma = {
    .name = "gemma",
    .aliases = gemma_names,
    .read_hparams = gemma_hparams,
    .build = loom_build_decoder,
    .norm_plus_one = true,
    .write_kv = loom_arch_write_kv_lengths, /* llama.cpp's gemma converters always write them */
    .chat_format = "gemma",
};
