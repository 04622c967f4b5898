/* Gemma 2: Gemma (GELU, sqrt(hidden) embedding scale, 1 + w norms) plus a norm before and after
 * both the attention and the MLP ("sandwich" norms), a query scale of query_pre_attn_scalar^-0.5,
 * attention and final logit soft-caps, and a sliding window on every other layer (layer_types;
 * llama.cpp's GGUF has no pattern key and means layers 0, 2, 4, ... local). */
#include "models/model.h"

#include "core/util.h"

#include "models/convert.h"

#include <math.h>

/* What Gemma 2 and 3 share: Gemma's spec, sandwich norms, the query scale and soft-caps. A GGUF
 * written by llama.cpp has no query scale: it derives one from the size (the 27B models, 46 and 62
 * layers, scale by (hidden/heads)^-0.5; the others by head_dim^-0.5). */
int loom_gemma2_hparams(loom_hparams *hp, const loom_source *src, int n_layer_27b) {
    if (loom_read_hparams(hp, src) < 0) return -1;
    hp->rope_mode = LOOM_ROPE_NEOX;
    hp->act = LOOM_ACT_GELU_TANH;
    hp->embd_scale = (float)sqrt((double)hp->n_embd);
    hp->post_norms = true;
    float qs = 0;
    if (loom_hp_float(src, "query_pre_attn_scalar", NULL, &qs, 0) < 0 ||
        loom_hp_float(src, NULL, "{arch}.attention.scale", &hp->attn_scale, 0) < 0 ||
        loom_hp_float(src, "attn_logit_softcapping", "{arch}.attn_logit_softcapping", &hp->attn_softcap, 0) < 0 ||
        loom_hp_float(src, "final_logit_softcapping", "{arch}.final_logit_softcapping", &hp->final_softcap, 0) < 0)
        return -1;
    if (qs < 0 || hp->attn_scale < 0 || hp->attn_softcap < 0 || hp->final_softcap < 0)
        return loom_err("%s: query_pre_attn_scalar and the soft-caps must not be negative", loom_source_config_path(src));
    if (qs > 0) hp->attn_scale = 1.0f / sqrtf(qs);
    if (hp->attn_scale == 0 && hp->n_layer == n_layer_27b) hp->attn_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_head));
    return 0;
}

static int gemma2_hparams(loom_hparams *hp, const loom_source *src) {
    if (loom_gemma2_hparams(hp, src, 46) < 0) return -1;
    /* no layer_types (transformers 4) or a llama.cpp GGUF: even layers local */
    if (hp->n_swa > 0 && hp->swa_pattern == 0 && hp->swa_first == 0) hp->swa_pattern = 2;
    return 0;
}

/* the query scale as llama.cpp's attention.scale key (its own gemma2 loader derives it instead) */
int loom_gemma2_write_kv(struct gguf_writer *w, const char *arch, const loom_hparams *hp) {
    if (loom_arch_write_kv_lengths(w, arch, hp) < 0) return -1;
    return hp->attn_scale > 0 ? loom_gguf_w_f32(w, arch, "attention.scale", hp->attn_scale) : 0;
}

const loom_name_pair loom_gemma2_tensors[] = {
    {"post_attention_layernorm.weight", "post_attention_norm.weight"},
    {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
    {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
    {NULL, NULL},
};

static const char *const gemma2_names[] = {"gemma2", "Gemma2ForCausalLM", NULL};

const loom_arch loom_arch_gemma2 = {
    .name = "gemma2",
    .aliases = gemma2_names,
    .read_hparams = gemma2_hparams,
    .build = loom_build_decoder,
    .names = loom_gemma2_tensors,
    .norm_plus_one = true,
    .write_kv = loom_gemma2_write_kv,
    .chat_format = "gemma",
};
