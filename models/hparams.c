/* The one hyper-parameter parser: config.json (+ generation_config.json) or GGUF metadata into
 * loom_hparams. Loading (models/model.c) and `loom convert` (models/convert.c) both call it, so a
 * HF directory and the GGUF converted from it cannot disagree. Family files add their own keys
 * after it (arch->read_hparams). */
#include "models/model.h"

#include "core/util.h"
#include "formats/gguf.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool is_hf(const loom_source *src) { return loom_source_get_kind(src) == LOOM_SOURCE_HF; }
static const char *key_of(const loom_source *src, const char *hf, const char *gguf) { return is_hf(src) ? hf : gguf; }

/* The key as the file spells it: the HF name, or the GGUF one with {arch} filled in. */
static const char *key_name(const loom_source *src, const char *hf, const char *gguf, char *buf, size_t n) {
    if (is_hf(src)) return hf;
    const char *a = gguf ? strstr(gguf, "{arch}") : NULL;
    if (!a) return gguf;
    snprintf(buf, n, "%.*s%s%s", (int)(a - gguf), gguf, loom_source_arch(src), a + 6);
    return buf;
}

/* An integer key in [lo, hi]: a value outside (2^32 + 16 for a context length, 0, negative) is an
 * error naming the key, never truncated by the cast to int. Absent: dflt, or an error if required. */
static int int_key(const loom_source *src, const char *hf, const char *gguf, int *out, bool required, int dflt,
                   int64_t lo, int64_t hi) {
    int64_t v;
    char kb[160];
    int r = loom_source_get_int(src, hf, gguf, &v);
    if (r < 0) return -1;
    if (r == 0) {
        if (required)
            return loom_err("%s: missing required key '%s'", loom_source_config_path(src),
                            key_name(src, hf, gguf, kb, sizeof kb));
        *out = dflt;
        return 0;
    }
    if (v < lo || v > hi)
        return loom_err("%s: key '%s' has an invalid value %lld (expected %lld..%lld)", loom_source_config_path(src),
                        key_name(src, hf, gguf, kb, sizeof kb), (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return 0;
}

static int need_int(const loom_source *src, const char *hf, const char *gguf, int *out) {
    return int_key(src, hf, gguf, out, true, 0, 1, 1 << 30);
}

/* absent: dflt; present: a whole number in [lo, hi] */
static int opt_int(const loom_source *src, const char *hf, const char *gguf, int *out, int dflt, int64_t lo,
                   int64_t hi) {
    return int_key(src, hf, gguf, out, false, dflt, lo, hi);
}

int loom_hp_int(const loom_source *src, const char *hf, const char *gguf, int *out, int dflt) {
    return int_key(src, hf, gguf, out, false, dflt, INT_MIN, INT_MAX);
}

int loom_hp_float(const loom_source *src, const char *hf, const char *gguf, float *out, float dflt) {
    double v;
    int r = loom_source_get_float(src, hf, gguf, &v);
    if (r < 0) return -1;
    *out = r ? (float)v : dflt;
    return 0;
}

/* A token id: config.json first, then generation_config.json (where many checkpoints keep them);
 * a list takes its first entry (Llama 3). Absent or null: -1. A number that is not a whole id in
 * int range is an error (casting it would be UB: found by fuzz_safetensors with 2.4e10 and inf). */
static int json_token_id(const cJSON *cfg, const char *key, const char *where, int *id) {
    const cJSON *v = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, key) : NULL;
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= -1 && d <= INT_MAX) || d != floor(d)) return loom_err("%s: %s %g is not a token id", where, key, d);
    *id = (int)d;
    return 0;
}

static int hf_token_ids(loom_hparams *hp, const loom_source *src) {
    hp->bos_id = hp->eos_id = -1;
    char where[4096];
    snprintf(where, sizeof where, "%s/config.json", loom_source_path(src));
    if (json_token_id(loom_source_hf_config(src), "bos_token_id", where, &hp->bos_id) < 0 ||
        json_token_id(loom_source_hf_config(src), "eos_token_id", where, &hp->eos_id) < 0)
        return -1;
    if (hp->bos_id >= 0 && hp->eos_id >= 0) return 0;
    snprintf(where, sizeof where, "%s/generation_config.json", loom_source_path(src));
    if (access(where, F_OK) != 0) return 0; /* optional; a FIFO or a directory is refused below */
    cJSON *gen = loom_json_read(where);
    if (!gen) return -1;
    int rc = 0;
    if (hp->bos_id < 0 && json_token_id(gen, "bos_token_id", where, &hp->bos_id) < 0) rc = -1;
    if (hp->eos_id < 0 && json_token_id(gen, "eos_token_id", where, &hp->eos_id) < 0) rc = -1;
    cJSON_Delete(gen);
    return rc;
}

/* RoPE scaling lives in "rope_scaling" (transformers 4) or inside "rope_parameters" (5); GGUF has
 * {arch}.rope.scaling.* keys (linear) or the rope_freqs.weight tensor (llama3). Missing llama3
 * parameters take llama.cpp's converter defaults (factor 8, low 1, high 4, original context 8192),
 * so a HF directory and its GGUF agree. */
static int read_rope_scaling(loom_hparams *hp, const loom_source *src) {
    hp->rope_scaling = LOOM_ROPE_SCALING_NONE;
    hp->rope_factor = 1;
    char type[32] = "";
    const char *path = loom_source_config_path(src);
    if (!is_hf(src)) {
        if (loom_source_get_str(src, NULL, "{arch}.rope.scaling.type", type, sizeof type) < 0) return -1;
        if (!*type || !strcmp(type, "none")) return 0; /* llama3 factors come as rope_freqs.weight */
        if (!strcmp(type, "linear")) {
            hp->rope_scaling = LOOM_ROPE_SCALING_LINEAR;
            return loom_hp_float(src, NULL, "{arch}.rope.scaling.factor", &hp->rope_factor, 1);
        }
        return loom_err("%s: unsupported rope.scaling.type '%s' (supported: none, linear)", path, type);
    }
    const char *base = "rope_scaling";
    int r = loom_source_get_str(src, "rope_scaling.rope_type", NULL, type, sizeof type);
    if (r == 0) r = loom_source_get_str(src, "rope_scaling.type", NULL, type, sizeof type);
    if (r == 0) {
        base = "rope_parameters";
        r = loom_source_get_str(src, "rope_parameters.rope_type", NULL, type, sizeof type);
        if (r == 0) {
            r = loom_source_get_str(src, "rope_parameters.full_attention.rope_type", NULL, type, sizeof type);
            if (r > 0 && strcmp(type, "default"))
                return loom_err("%s: unsupported rope_parameters.full_attention.rope_type '%s' (supported: default)",
                                path, type);
        }
    }
    if (r < 0) return -1;
    if (r == 0 || !strcmp(type, "default")) return 0;
    char key[96];
    if (!strcmp(type, "linear")) {
        hp->rope_scaling = LOOM_ROPE_SCALING_LINEAR;
        snprintf(key, sizeof key, "%s.factor", base);
        return loom_hp_float(src, key, NULL, &hp->rope_factor, 1);
    }
    if (!strcmp(type, "llama3")) {
        hp->rope_scaling = LOOM_ROPE_SCALING_LLAMA3;
        snprintf(key, sizeof key, "%s.factor", base);
        if (loom_hp_float(src, key, NULL, &hp->rope_factor, 8) < 0) return -1;
        snprintf(key, sizeof key, "%s.low_freq_factor", base);
        if (loom_hp_float(src, key, NULL, &hp->rope_low_freq_factor, 1) < 0) return -1;
        snprintf(key, sizeof key, "%s.high_freq_factor", base);
        if (loom_hp_float(src, key, NULL, &hp->rope_high_freq_factor, 4) < 0) return -1;
        if (!(hp->rope_high_freq_factor > hp->rope_low_freq_factor) || !(hp->rope_low_freq_factor > 0))
            return loom_err("%s: '%s' must be above %s.low_freq_factor (both positive)", path, key, base);
        snprintf(key, sizeof key, "%s.original_max_position_embeddings", base);
        if (opt_int(src, key, NULL, &hp->rope_orig_ctx, 8192, 1, INT_MAX) < 0) return -1;
        return 0;
    }
    return loom_err("%s: unsupported %s type '%s' (supported: default, linear, llama3)", path, base, type);
}

/* hidden_act (hidden_activation in Gemma configs): the MLP's gate activation. */
static int read_activation(loom_hparams *hp, const loom_source *src) {
    char act[48] = "";
    const char *key = "hidden_activation";
    int r = loom_source_get_str(src, key, NULL, act, sizeof act);
    if (r == 0) r = loom_source_get_str(src, key = "hidden_act", NULL, act, sizeof act);
    if (r < 0) return -1;
    if (r == 0 || !strcmp(act, "silu") || !strcmp(act, "swish")) {
        hp->act = LOOM_ACT_SILU;
    } else if (!strcmp(act, "gelu_pytorch_tanh") || !strcmp(act, "gelu_tanh") || !strcmp(act, "gelu_new")) {
        hp->act = LOOM_ACT_GELU_TANH;
    } else {
        return loom_err("%s: unsupported %s '%s' (supported: silu, gelu_pytorch_tanh)",
                        loom_source_config_path(src), key, act);
    }
    return 0;
}

/* Which layers are local, as the two forms families use: local from a layer on (Qwen2's
 * max_window_layers), or every P-th layer global (Gemma 2/3); anything else is refused rather than
 * run wrong. `key` names the source of the flags in the message. */
static int set_local_layers(loom_hparams *hp, const bool *local, const char *where, const char *key) {
    int first_local = -1, n_local = 0, pattern = 0;
    for (int l = 0; l < hp->n_layer; l++) {
        if (local[l] && first_local < 0) first_local = l;
        if (!local[l] && !pattern) pattern = l + 1;
        n_local += local[l];
    }
    hp->swa_pattern = 0;
    hp->swa_first = 0;
    if (first_local < 0) { /* no layer is local */
        hp->n_swa = 0;
        return 0;
    }
    hp->swa_first = first_local;
    if (n_local == hp->n_layer - first_local) return 0;
    hp->swa_first = 0;
    hp->swa_pattern = pattern;
    for (int l = 0; l < hp->n_layer; l++)
        if (loom_layer_is_local(hp, l) != local[l])
            return loom_err("%s: %s is neither local-from-a-layer nor every-Nth-global", where, key);
    return 0;
}

/* Sliding-window attention: "sliding_window" (+ "use_sliding_window" where a config has it) and
 * which layers use it, from "layer_types" (transformers 5) or GGUF keys. */
static int read_window(loom_hparams *hp, const loom_source *src) {
    const char *path = loom_source_config_path(src);
    int w = 0;
    if (loom_hp_int(src, "sliding_window", "{arch}.attention.sliding_window", &w, 0) < 0) return -1;
    bool use = true;
    if (loom_source_get_bool(src, "use_sliding_window", NULL, &use) < 0) return -1;
    hp->swa_pattern = hp->swa_first = 0;
    if (!use || w <= 0) return 0;
    hp->n_swa = w;
    bool *local = NULL;
    int rc = 0;
    if (!is_hf(src)) {
        /* llama.cpp's {arch}.attention.sliding_window_pattern: a u32 period, or a bool per layer */
        const struct gguf_ctx *g = loom_source_gguf(src);
        char key[160];
        snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", loom_source_arch(src));
        int i = gguf_find_key(g, key);
        if (i < 0 || gguf_kv_type(g, i) != GGUF_TYPE_ARRAY)
            return loom_hp_int(src, NULL, "{arch}.attention.sliding_window_pattern", &hp->swa_pattern, 0);
        if (gguf_arr_type(g, i) != GGUF_TYPE_BOOL || gguf_arr_n(g, i) != (size_t)hp->n_layer)
            return loom_err("%s: %s must be a u32 or %d bools", path, key, hp->n_layer);
        const uint8_t *b = gguf_arr_data(g, i);
        if (!(local = loom_malloc((size_t)hp->n_layer * sizeof *local))) return -1;
        for (int l = 0; l < hp->n_layer; l++) local[l] = b[l] != 0;
        rc = set_local_layers(hp, local, path, key);
        free(local);
        return rc;
    }
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(loom_source_hf_config(src), "layer_types");
    if (!lt || cJSON_IsNull(lt)) return 0; /* every layer local */
    if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != hp->n_layer)
        return loom_err("%s: 'layer_types' must be a list of %d strings", path, hp->n_layer);
    if (!(local = loom_malloc((size_t)hp->n_layer * sizeof *local))) return -1;
    for (int l = 0; l < hp->n_layer && !rc; l++) {
        const cJSON *t = cJSON_GetArrayItem(lt, l);
        local[l] = cJSON_IsString(t) && !strcmp(t->valuestring, "sliding_attention");
        if (!local[l] && !(cJSON_IsString(t) && !strcmp(t->valuestring, "full_attention")))
            rc = loom_err("%s: layer_types[%d] must be \"sliding_attention\" or \"full_attention\"", path, l);
    }
    if (!rc) rc = set_local_layers(hp, local, path, "layer_types");
    free(local);
    return rc;
}

/* Mixture of experts: expert count, experts per token, their MLP width. */
static int read_moe(loom_hparams *hp, const loom_source *src) {
    const char *path = loom_source_config_path(src);
    const char *kn = "num_experts";
    int64_t v;
    int r = loom_source_get_int(src, kn, "{arch}.expert_count", &v);
    if (r == 0) r = loom_source_get_int(src, kn = "num_local_experts", NULL, &v);
    if (r < 0) return -1;
    if (!is_hf(src)) kn = "expert_count";
    hp->n_expert = r ? (int)(v > 0 && v <= 4096 ? v : -1) : 0;
    if (hp->n_expert < 0) return loom_err("%s: '%s' = %lld is not an expert count (1..4096)", path, kn, (long long)v);
    if (loom_hp_int(src, "num_experts_per_tok", "{arch}.expert_used_count", &hp->n_expert_used, 0) < 0 ||
        loom_hp_int(src, "moe_intermediate_size", "{arch}.expert_feed_forward_length", &hp->n_ff_exp, hp->n_ff) < 0)
        return -1;
    const char *ku = key_of(src, "num_experts_per_tok", "expert_used_count");
    if (hp->n_expert <= 1) { /* a dense model: an experts-per-token count alone is harmless (Qwen3 has 8) */
        hp->n_expert = 0;
        hp->n_expert_used = 0;
        return 0;
    }
    if (hp->n_expert_used < 1 || hp->n_expert_used > hp->n_expert)
        return loom_err("%s: '%s' = %d must be between 1 and %s = %d", path, ku, hp->n_expert_used, kn, hp->n_expert);
    if (hp->n_ff_exp <= 0)
        return loom_err("%s: '%s' = %d must be positive", path, key_of(src, "moe_intermediate_size", "expert_feed_forward_length"),
                        hp->n_ff_exp);
    bool norm = true;
    if (loom_source_get_bool(src, "norm_topk_prob", "{arch}.expert_weights_norm", &norm) < 0) return -1;
    hp->expert_norm_topk = norm;
    return 0;
}

/* Values that would run but give garbage (NaN logits, a truncated model) are refused at load. */
static int check_hparams(const loom_hparams *hp, const loom_source *src) {
    const char *p = loom_source_config_path(src);
    bool hf = is_hf(src);
    char kb[160];
    if (!(isfinite(hp->rope_theta) && hp->rope_theta > 0))
        return loom_err("%s: rope theta %g (%s) must be a finite number > 0", p, (double)hp->rope_theta,
                        key_name(src, "rope_theta", "{arch}.rope.freq_base", kb, sizeof kb));
    if (!(isfinite(hp->rope_theta_local) && hp->rope_theta_local >= 0))
        return loom_err("%s: local rope theta %g must be a finite number > 0", p, (double)hp->rope_theta_local);
    if (!(isfinite(hp->norm_eps) && hp->norm_eps >= 0))
        return loom_err("%s: RMS norm epsilon %g (%s) must be a finite number >= 0", p, (double)hp->norm_eps,
                        key_name(src, "rms_norm_eps", "{arch}.attention.layer_norm_rms_epsilon", kb, sizeof kb));
    if (hp->rope_scaling != LOOM_ROPE_SCALING_NONE && !(isfinite(hp->rope_factor) && hp->rope_factor > 0))
        return loom_err("%s: rope scaling factor %g must be a finite number > 0", p, (double)hp->rope_factor);
    if (hp->rope_scaling == LOOM_ROPE_SCALING_LLAMA3 &&
        !(isfinite(hp->rope_low_freq_factor) && hp->rope_low_freq_factor > 0 && isfinite(hp->rope_high_freq_factor) &&
          hp->rope_high_freq_factor > hp->rope_low_freq_factor))
        return loom_err("%s: llama3 rope scaling needs finite frequency factors 0 < low (%g) < high (%g)", p,
                        (double)hp->rope_low_freq_factor, (double)hp->rope_high_freq_factor);
    /* token ids the vocabulary does not have would be dropped (BOS) or never seen (EOS) */
    if (hp->bos_id >= hp->n_vocab)
        return loom_err("%s: BOS token id %d (%s) is outside the vocabulary of %d tokens", p, hp->bos_id,
                        hf ? "bos_token_id" : "tokenizer.ggml.bos_token_id", hp->n_vocab);
    if (hp->eos_id >= hp->n_vocab)
        return loom_err("%s: EOS token id %d (%s) is outside the vocabulary of %d tokens", p, hp->eos_id,
                        hf ? "eos_token_id" : "tokenizer.ggml.eos_token_id", hp->n_vocab);
    /* layers past the layer count would be ignored: the model would run truncated */
    for (int i = 0, n = loom_source_n_tensors(src); i < n; i++) {
        const char *name = loom_source_tensor(src, i)->name;
        if (strncmp(name, "blk.", 4) || name[4] < '0' || name[4] > '9') continue;
        long l = strtol(name + 4, NULL, 10);
        if (l >= hp->n_layer)
            return loom_err("%s: tensor '%s' is in layer %ld but %s says %d layers", p, name, l,
                            key_name(src, "num_hidden_layers", "{arch}.block_count", kb, sizeof kb), hp->n_layer);
    }
    return 0;
}

/* Test hook: LOOM_TEST_PERTURB=rope_theta*F or norm_eps*F scales that hyperparameter by F once it
 * is read, so a test can show that `loom check` fails on a model that is only slightly wrong (a 0.1%
 * RoPE base, tests/models.cmake). Any other value (an op name for the CPU backend's hook) is ignored. */
static void perturb_hparams(loom_hparams *hp) {
    const char *p = getenv("LOOM_TEST_PERTURB");
    const char *star = p ? strchr(p, '*') : NULL;
    if (!star) return;
    float f = strtof(star + 1, NULL);
    if (!strncmp(p, "rope_theta*", 11)) hp->rope_theta *= f;
    if (!strncmp(p, "norm_eps*", 9)) hp->norm_eps *= f;
}

int loom_read_hparams(loom_hparams *hp, const loom_source *src) {
    memset(hp, 0, sizeof *hp);
    const char *path = loom_source_config_path(src);
    if (need_int(src, "hidden_size", "{arch}.embedding_length", &hp->n_embd) < 0 ||
        need_int(src, "num_hidden_layers", "{arch}.block_count", &hp->n_layer) < 0 ||
        need_int(src, "num_attention_heads", "{arch}.attention.head_count", &hp->n_head) < 0 ||
        need_int(src, "intermediate_size", "{arch}.feed_forward_length", &hp->n_ff) < 0)
        return -1;
    if (opt_int(src, "num_key_value_heads", "{arch}.attention.head_count_kv", &hp->n_head_kv, hp->n_head, 1,
                1 << 30) < 0 ||
        opt_int(src, "head_dim", "{arch}.attention.key_length", &hp->head_dim, hp->n_embd / hp->n_head, 1, 1 << 30) < 0 ||
        opt_int(src, "max_position_embeddings", "{arch}.context_length", &hp->n_ctx_train, 2048, 1, INT_MAX) < 0)
        return -1;
    int r = loom_source_get_int(src, "head_dim", "{arch}.attention.key_length", &(int64_t){0});
    if (r < 0) return -1;
    if (r == 0 && hp->n_embd % hp->n_head)
        return loom_err("%s: '%s' %d is not a multiple of '%s' %d (and no head_dim)", path,
                        key_of(src, "hidden_size", "embedding_length"), hp->n_embd,
                        key_of(src, "num_attention_heads", "attention.head_count"), hp->n_head);
    /* the vocabulary size is the embedding's row count; config.json must agree with it */
    const loom_weight *emb = loom_source_find(src, "token_embd.weight");
    bool config_only = loom_source_n_tensors(src) == 0 && is_hf(src); /* loom synth from a config */
    if (!config_only && (!emb || emb->ndim != 2))
        return loom_err("%s: missing the token embedding (token_embd.weight / model.embed_tokens.weight)", path);
    hp->n_vocab = emb ? (int)emb->ne[0] : 0;
    if (is_hf(src)) {
        int v;
        if (need_int(src, "vocab_size", NULL, &v) < 0) return -1;
        if (config_only) hp->n_vocab = v;
        if (v != hp->n_vocab)
            return loom_err("%s: vocab_size %d does not match the embedding's %d rows", path, v, hp->n_vocab);
        double eps;
        int r = loom_source_get_float(src, "rms_norm_eps", NULL, &eps);
        if (r <= 0) return r < 0 ? -1 : loom_err("%s: missing required key 'rms_norm_eps'", path);
        hp->norm_eps = (float)eps;
    } else if (loom_hp_float(src, NULL, "{arch}.attention.layer_norm_rms_epsilon", &hp->norm_eps, 1e-5f) < 0) {
        return -1;
    }
    /* rope_theta: top level (transformers 4), rope_parameters (5), per attention type (Gemma 3) */
    const char *tk = "rope_theta";
    r = loom_source_get_float(src, "rope_parameters.rope_theta", NULL, &(double){0});
    if (r > 0) tk = "rope_parameters.rope_theta";
    else if (r == 0 && loom_source_get_float(src, "rope_parameters.full_attention.rope_theta", NULL, &(double){0}) > 0)
        tk = "rope_parameters.full_attention.rope_theta";
    if (r < 0 || loom_hp_float(src, tk, "{arch}.rope.freq_base", &hp->rope_theta, 10000) < 0 ||
        loom_hp_float(src, "rope_parameters.sliding_attention.rope_theta", "{arch}.rope.freq_base_swa",
                      &hp->rope_theta_local, 0) < 0)
        return -1;
    if (read_rope_scaling(hp, src) < 0 || read_activation(hp, src) < 0 || read_window(hp, src) < 0 ||
        read_moe(hp, src) < 0)
        return -1;
    bool tied;
    r = loom_source_get_bool(src, "tie_word_embeddings", NULL, &tied);
    if (r < 0) return -1;
    hp->tied_embeddings = r ? tied : !loom_source_find(src, "output.weight");
    if (is_hf(src)) {
        if (hf_token_ids(hp, src) < 0) return -1;
        bool bias = false;
        if (loom_source_get_bool(src, "attention_bias", NULL, &bias) < 0) return -1;
        hp->qkv_bias = bias;
    } else {
        if (opt_int(src, NULL, "tokenizer.ggml.bos_token_id", &hp->bos_id, -1, -1, INT_MAX) < 0 ||
            opt_int(src, NULL, "tokenizer.ggml.eos_token_id", &hp->eos_id, -1, -1, INT_MAX) < 0)
            return -1;
        hp->qkv_bias = loom_source_find(src, "blk.0.attn_q.bias") != NULL;
    }
    if (hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv)
        return loom_err("%s: %d attention heads cannot be shared by %d kv heads", path, hp->n_head, hp->n_head_kv);
    if (hp->head_dim <= 0 || (hp->head_dim & 1) || hp->head_dim > 65536)
        return loom_err("%s: head dimension %d must be even", path, hp->head_dim);
    perturb_hparams(hp);
    return check_hparams(hp, src);
}

bool loom_layer_is_local(const loom_hparams *hp, int layer) {
    if (hp->n_swa <= 0) return false;
    if (hp->swa_pattern > 0) return (layer + 1) % hp->swa_pattern != 0;
    return layer >= hp->swa_first;
}

int64_t loom_kv_width(const loom_hparams *hp, int layer) {
    (void)layer; /* every layer's cache is as wide today */
    return (int64_t)hp->n_head_kv * hp->head_dim;
}

int64_t loom_kv_rows(const loom_hparams *hp, int layer, int n_ctx, int ring_step) {
    if (ring_step <= 0 || hp->n_swa <= 0 || !loom_layer_is_local(hp, layer)) return n_ctx;
    int64_t ring = (int64_t)hp->n_swa + ring_step - 1;
    return ring < n_ctx ? ring : n_ctx;
}

/* Llama 3 frequency divisors, as transformers' _compute_llama3_parameters and llama.cpp's
 * rope_freqs.weight define them: long wavelengths are slowed by `factor`, short ones kept, and
 * the band between is interpolated smoothly. */
void loom_llama3_rope_factors(const loom_hparams *hp, float *out) {
    int n = hp->head_dim / 2;
    float low_wavelen = (float)hp->rope_orig_ctx / hp->rope_low_freq_factor;
    float high_wavelen = (float)hp->rope_orig_ctx / hp->rope_high_freq_factor;
    for (int i = 0; i < n; i++) {
        float inv_freq = powf(hp->rope_theta, -2.0f * (float)i / (float)hp->head_dim);
        float wavelen = 2.0f * (float)M_PI / inv_freq;
        float div;
        if (wavelen < high_wavelen) div = 1.0f;
        else if (wavelen > low_wavelen) div = hp->rope_factor;
        else {
            float smooth = ((float)hp->rope_orig_ctx / wavelen - hp->rope_low_freq_factor) /
                           (hp->rope_high_freq_factor - hp->rope_low_freq_factor);
            div = 1.0f / ((1.0f - smooth) / hp->rope_factor + smooth);
        }
        out[i] = div;
    }
}
