/* Qwen3: the llama-family decoder with an RMSNorm over each head of q and k (weights of head_dim,
 * shared by all heads) between the projections and RoPE, no q/k/v biases, and an explicit
 * head_dim in the config (head_dim * n_head need not equal hidden_size in the larger models).
 * It needs nothing new in graph/ or backends/: the per-head norm is a reshape to one row per head,
 * the ordinary RMSNorm, and a reshape back. docs/adding-a-model.md walks through this file. */
#include "models/model.h"

static int qwen3_hparams(loom_hparams *hp, const loom_source *src) {
    if (loom_read_common_hparams(hp, src) < 0) return -1;
    hp->rope_mode = LOOM_ROPE_NEOX; /* HF and llama.cpp both keep rotate-half order for qwen */
    bool bias = false;
    if (loom_source_get_bool(src, "attention_bias", NULL, &bias) < 0) return -1;
    hp->qkv_bias = bias;
    return 0;
}

/* x [S, H*hd] -> RMSNorm over each head's hd values, times the [hd] weight -> [S, H*hd].
 * Both reshapes are views, and the planner fuses the multiply into the norm. */
static int head_norm(loom_graph *g, const loom_model *m, int x, int n_head, int layer, const char *which) {
    if (x < 0) return -1;
    int64_t hd = m->hp.head_dim, rows = g->nodes[x].ne[0];
    int w = loom_w(g, m, 1, (int64_t[]){hd}, "blk.%d.%s.weight", layer, which);
    int h = loom_reshape_2d(g, x, rows * n_head, hd);
    h = loom_mul(g, loom_rmsnorm(g, h, m->hp.norm_eps), w);
    return loom_reshape_2d(g, h, rows, (int64_t)n_head * hd);
}

/* The per-head norms of q and k, between the projections and RoPE (loom_build_decoder_qkv's hook). */
static loom_qkv qwen3_qk_norm(loom_graph *g, const loom_model *m, int layer, loom_qkv qkv) {
    qkv.q = head_norm(g, m, qkv.q, m->hp.n_head, layer, "attn_q_norm");
    qkv.k = head_norm(g, m, qkv.k, m->hp.n_head_kv, layer, "attn_k_norm");
    return qkv;
}

static int qwen3_build(loom_graph *g, const loom_model *m, const loom_build_opts *o) {
    return loom_build_decoder_qkv(g, m, o, qwen3_qk_norm);
}

static const char *const qwen3_names[] = {"qwen3", "Qwen3ForCausalLM", NULL};

const loom_arch loom_arch_qwen3 = {
    .name = "qwen3",
    .aliases = qwen3_names,
    .read_hparams = qwen3_hparams,
    .build = qwen3_build,
};
