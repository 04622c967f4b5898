/* Mistral (7B v0.2+, Nemo-style configs): the Llama graph under another name. llama.cpp converts
 * it as "llama" (q/k rows permuted to interleaved pairs), so a downloaded Mistral GGUF loads through
 * models/llama.c; a HF directory loads here. Mistral 7B v0.1's sliding_window of 4096 makes every
 * layer local (the shared attention refuses it until the window op exists, never ignores it). */
#include "models/model.h"

static int mistral_hparams(loom_hparams *hp, const loom_source *src) {
    if (loom_read_hparams(hp, src) < 0) return -1;
    hp->rope_mode = loom_source_get_kind(src) == LOOM_SOURCE_GGUF ? LOOM_ROPE_NORM : LOOM_ROPE_NEOX;
    return 0;
}

static const char *const mistral_names[] = {"mistral", "MistralForCausalLM", NULL};

const loom_arch loom_arch_mistral = {
    .name = "mistral",
    .aliases = mistral_names,
    .gguf_arch = "llama",
    .read_hparams = mistral_hparams,
    .build = loom_build_decoder,
    .gguf_qk_interleaved = true,
    .chat_format = "mistral",
};
