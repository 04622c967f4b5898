/* Phi-3 (mini/medium, 4k context): the plain decoder with the q, k and v projections fused into
 * one attn_qkv matrix and gate/up fused into ffn_up [2 * n_ff, n_embd] (gate first), as both the
 * HF checkpoint and llama.cpp's GGUF store them. The fused matrices are split into row views at
 * load time (no copy); the graph is the shared one. LongRoPE (the 128k models) is refused by the
 * shared parser as an unsupported rope_scaling type. */
#include "models/model.h"

#include "core/util.h"
#include "models/convert.h"

static int phi3_hparams(loom_hparams *hp, const loom_source *src) {
    if (loom_read_hparams(hp, src) < 0) return -1;
    hp->rope_mode = LOOM_ROPE_NEOX;
    float rot = 1;
    if (loom_hp_float(src, "partial_rotary_factor", NULL, &rot, 1) < 0) return -1;
    if (rot != 1)
        return loom_err("%s: partial_rotary_factor %g is not supported (1 only)", loom_source_config_path(src), rot);
    return 0;
}

/* llama.cpp's phi3 converter writes the rotary dims and a sliding window (0: none) always */
static int phi3_write_kv(struct gguf_writer *w, const char *arch, const loom_hparams *hp) {
    if (loom_gguf_w_u32(w, arch, "rope.dimension_count", hp->head_dim)) return -1;
    return hp->n_swa > 0 ? 0 : loom_gguf_w_u32(w, arch, "attention.sliding_window", 0);
}

static const loom_name_pair phi3_tensors[] = {
    {"self_attn.qkv_proj.weight", "attn_qkv.weight"},
    {"mlp.gate_up_proj.weight", "ffn_up.weight"},
    {NULL, NULL},
};

static const loom_split phi3_splits[] = {
    {"attn_qkv.weight", 3, {"attn_q.weight", "attn_k.weight", "attn_v.weight"}, {LOOM_ROWS_Q, LOOM_ROWS_KV, LOOM_ROWS_KV}},
    {"ffn_up.weight", 2, {"ffn_gate.weight", "ffn_up.weight"}, {LOOM_ROWS_FF, LOOM_ROWS_FF}},
};

static const char *const phi3_names[] = {"phi3", "Phi3ForCausalLM", NULL};

const loom_arch loom_arch_phi3 = {
    .name = "phi3",
    .aliases = phi3_names,
    .read_hparams = phi3_hparams,
    .build = loom_build_decoder,
    .names = phi3_tensors,
    .splits = phi3_splits,
    .n_splits = 2,
    .write_kv = phi3_write_kv,
    .chat_format = "phi3",
};
