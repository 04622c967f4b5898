/* Qwen3-MoE: Qwen3 (per-head q/k norms, no biases) with a mixture-of-experts MLP in every layer:
 * a router (mlp.gate) picks num_experts_per_tok of num_experts SwiGLU experts per token, their
 * weights renormalised when norm_topk_prob. HF stores one tensor per expert; they are stacked on
 * load into llama.cpp's ffn_{gate,up,down}_exps. Layers with a dense MLP (mlp_only_layers,
 * decoder_sparse_step > 1) are refused with an error naming the key. */
#include "models/model.h"

#include "core/util.h"

#include <cjson/cJSON.h>

static int qwen3moe_hparams(loom_hparams *hp, const loom_source *src) {
    if (loom_read_hparams(hp, src) < 0) return -1;
    hp->rope_mode = LOOM_ROPE_NEOX;
    hp->qk_norm = LOOM_QK_NORM_HEAD;
    const char *path = loom_source_config_path(src);
    if (hp->n_expert <= 0) return loom_err("%s: a Qwen3-MoE config needs num_experts > 1", path);
    bool norm = false; /* transformers' default for Qwen3-MoE */
    if (loom_source_get_bool(src, "norm_topk_prob", "{arch}.expert_weights_norm", &norm) < 0) return -1;
    hp->expert_norm_topk = norm;
    int step = 1;
    if (loom_hp_int(src, "decoder_sparse_step", NULL, &step, 1) < 0) return -1;
    if (step != 1) return loom_err("%s: decoder_sparse_step %d is not supported (1: every layer sparse)", path, step);
    const cJSON *only = loom_source_get_kind(src) == LOOM_SOURCE_HF
                            ? cJSON_GetObjectItemCaseSensitive(loom_source_hf_config(src), "mlp_only_layers")
                            : NULL;
    if (only && !cJSON_IsNull(only) && (!cJSON_IsArray(only) || cJSON_GetArraySize(only) > 0))
        return loom_err("%s: mlp_only_layers (dense layers among the experts) is not supported", path);
    return 0;
}

static const loom_name_pair qwen3moe_tensors[] = {
    {"mlp.gate.weight", "ffn_gate_inp.weight"},
    {NULL, NULL},
};

static const loom_name_pair qwen3moe_experts[] = {
    {"mlp.experts.%d.gate_proj.weight", "ffn_gate_exps.weight"},
    {"mlp.experts.%d.up_proj.weight", "ffn_up_exps.weight"},
    {"mlp.experts.%d.down_proj.weight", "ffn_down_exps.weight"},
    {NULL, NULL},
};

static const char *const qwen3moe_names[] = {"qwen3moe", "qwen3_moe", "Qwen3MoeForCausalLM", NULL};

const loom_arch loom_arch_qwen3moe = {
    .name = "qwen3moe",
    .aliases = qwen3moe_names,
    .read_hparams = qwen3moe_hparams,
    .build = loom_build_decoder,
    .names = qwen3moe_tensors,
    .experts = qwen3moe_experts,
};
