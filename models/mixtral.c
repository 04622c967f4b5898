/* Mixtral: the Llama graph with a mixture of SwiGLU experts in every layer (num_local_experts,
 * num_experts_per_tok, the chosen router weights renormalised). HF stores each expert's w1 (gate),
 * w3 (up) and w2 (down) as its own tensor; they are stacked on load into llama.cpp's
 * ffn_{gate,up,down}_exps. llama.cpp converts Mixtral as "llama" with expert keys, q/k rows
 * interleaved, so a downloaded Mixtral GGUF loads through models/llama.c. */
#include "models/model.h"

#include "core/util.h"

static int mixtral_hparams(loom_hparams *hp, const loom_source *src) {
    if (loom_read_hparams(hp, src) < 0) return -1;
    hp->rope_mode = loom_source_get_kind(src) == LOOM_SOURCE_GGUF ? LOOM_ROPE_NORM : LOOM_ROPE_NEOX;
    if (hp->n_expert <= 0)
        return loom_err("%s: a Mixtral config needs num_local_experts > 1", loom_source_config_path(src));
    hp->expert_norm_topk = true; /* Mixtral always renormalises the top-k */
    return 0;
}

static const loom_name_pair mixtral_tensors[] = {
    {"block_sparse_moe.gate.weight", "ffn_gate_inp.weight"},
    {NULL, NULL},
};

static const loom_name_pair mixtral_experts[] = {
    {"block_sparse_moe.experts.%d.w1.weight", "ffn_gate_exps.weight"},
    {"block_sparse_moe.experts.%d.w3.weight", "ffn_up_exps.weight"},
    {"block_sparse_moe.experts.%d.w2.weight", "ffn_down_exps.weight"},
    {NULL, NULL},
};

static const char *const mixtral_names[] = {"mixtral", "MixtralForCausalLM", NULL};

const loom_arch loom_arch_mixtral = {
    .name = "mixtral",
    .aliases = mixtral_names,
    .gguf_arch = "llama",
    .read_hparams = mixtral_hparams,
    .build = loom_build_decoder,
    .names = mixtral_tensors,
    .experts = mixtral_experts,
    .gguf_qk_interleaved = true,
    .chat_format = "mistral",
};
