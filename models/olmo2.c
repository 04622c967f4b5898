/* OLMo 2: no norm before attention or the MLP; instead an RMSNorm on each block's output before
 * the residual add (post_attention_layernorm, post_feedforward_layernorm), and an RMSNorm over the
 * whole q and k projections (weights of n_head * head_dim and n_head_kv * head_dim) before RoPE.
 * All three are decoder-spec options; the names are OLMo 2's own where HF reuses llama's. */
#include "models/model.h"

static int olmo2_hparams(loom_hparams *hp, const loom_source *src) {
    if (loom_read_hparams(hp, src) < 0) return -1;
    hp->rope_mode = LOOM_ROPE_NEOX; /* llama.cpp's converter keeps HF's row order for OLMo 2 */
    hp->no_pre_norms = true;
    hp->post_norms = true;
    hp->qk_norm = LOOM_QK_NORM_FULL;
    return 0;
}

static const loom_name_pair olmo2_tensors[] = {
    {"post_attention_layernorm.weight", "post_attention_norm.weight"},
    {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
    {NULL, NULL},
};

static const char *const olmo2_names[] = {"olmo2", "Olmo2ForCausalLM", NULL};

const loom_arch loom_arch_olmo2 = {
    .name = "olmo2",
    .aliases = olmo2_names,
    .read_hparams = olmo2_hparams,
    .build = loom_build_decoder,
    .names = olmo2_tensors,
};
