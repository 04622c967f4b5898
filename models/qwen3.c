/* Qwen3: the plain decoder with an RMSNorm over each head of q and k (weights of head_dim, shared
 * by all heads) between the projections and RoPE, no q/k/v biases, and an explicit head_dim in the
 * config (head_dim * n_head need not equal hidden_size in the larger models). The per-head norm is
 * a decoder-spec option (LOOM_QK_NORM_HEAD): a reshape to one row per head, the ordinary RMSNorm,
 * and a reshape back. */
#include "models/model.h"

#include "models/convert.h"

static int qwen3_hparams(loom_hparams *hp, const loom_source *src) {
    if (loom_read_hparams(hp, src) < 0) return -1;
    hp->rope_mode = LOOM_ROPE_NEOX; /* HF and llama.cpp both keep rotate-half order for qwen */
    hp->qk_norm = LOOM_QK_NORM_HEAD;
    return 0;
}

static const char *const qwen3_names[] = {"qwen3", "Qwen3ForCausalLM", NULL};

const loom_arch loom_arch_qwen3 = {
    .name = "qwen3",
    .aliases = qwen3_names,
    .read_hparams = qwen3_hparams,
    .build = loom_build_decoder,
    .write_kv = loom_arch_write_kv_lengths, /* Qwen3 configs always name head_dim, and llama.cpp's
                                               converter then writes the lengths */
};
