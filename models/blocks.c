/* Shared building blocks for llama-family decoders: hyper-parameters, attention, SwiGLU MLP, head.
 * Model files compose these; anything architecture-specific belongs in the model file. */
#include "models/model.h"

#include "core/qblock.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- hyper-parameters ------------------------------------------------------------------------- */

/* The key as the file spells it: the HF name, or the GGUF one with {arch} filled in. */
static const char *key_name(const loom_source *src, const char *hf, const char *gguf, char *buf, size_t n) {
    if (loom_source_get_kind(src) == LOOM_SOURCE_HF) return hf;
    const char *a = strstr(gguf, "{arch}");
    char arch[64];
    if (!a || loom_source_get_str(src, NULL, "general.architecture", arch, sizeof arch) <= 0) return gguf;
    snprintf(buf, n, "%.*s%s%s", (int)(a - gguf), gguf, arch, a + 6);
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
            return loom_err("%s: missing required key '%s'", loom_source_path(src), key_name(src, hf, gguf, kb, sizeof kb));
        *out = dflt;
        return 0;
    }
    if (v < lo || v > hi)
        return loom_err("%s: key '%s' has an invalid value %lld (expected %lld..%lld)", loom_source_path(src),
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

static int opt_float(const loom_source *src, const char *hf, const char *gguf, float *out, float dflt) {
    double v;
    int r = loom_source_get_float(src, hf, gguf, &v);
    if (r < 0) return -1;
    *out = r ? (float)v : dflt;
    return 0;
}

/* eos_token_id may be a list in HF configs (Llama 3): the first entry is the primary one. Absent or
 * null: -1. A number that is not a whole id in int range is an error (casting it would be UB:
 * found by fuzz_safetensors with 2.4e10 and inf). */
static int hf_token_id(const loom_source *src, const char *key, int *id) {
    const cJSON *cfg = loom_source_hf_config(src);
    const cJSON *v = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, key) : NULL;
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    *id = -1;
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= -1 && d <= INT_MAX) || d != floor(d))
        return loom_err("%s: config.json %s %g is not a token id", loom_source_path(src), key, d);
    *id = (int)d;
    return 0;
}

/* Rope scaling lives in "rope_scaling" (transformers 4) or inside "rope_parameters" (5). */
static int read_rope_scaling(loom_hparams *hp, const loom_source *src) {
    hp->rope_scaling = LOOM_ROPE_SCALING_NONE;
    hp->rope_factor = 1;
    char type[32] = "";
    if (loom_source_get_kind(src) == LOOM_SOURCE_GGUF) {
        if (loom_source_get_str(src, NULL, "{arch}.rope.scaling.type", type, sizeof type) < 0) return -1;
        if (!strcmp(type, "linear")) {
            hp->rope_scaling = LOOM_ROPE_SCALING_LINEAR;
            return opt_float(src, NULL, "{arch}.rope.scaling.factor", &hp->rope_factor, 1);
        }
        return 0; /* llama3 factors come as the rope_freqs.weight tensor */
    }
    const char *base = "rope_scaling";
    int r = loom_source_get_str(src, "rope_scaling.rope_type", NULL, type, sizeof type);
    if (r == 0) r = loom_source_get_str(src, "rope_scaling.type", NULL, type, sizeof type);
    if (r == 0) {
        base = "rope_parameters";
        r = loom_source_get_str(src, "rope_parameters.rope_type", NULL, type, sizeof type);
    }
    if (r < 0) return -1;
    if (r == 0 || !strcmp(type, "default")) return 0;
    char key[96];
    snprintf(key, sizeof key, "%s.factor", base);
    if (opt_float(src, key, NULL, &hp->rope_factor, 1) < 0) return -1;
    if (!strcmp(type, "linear")) {
        hp->rope_scaling = LOOM_ROPE_SCALING_LINEAR;
        return 0;
    }
    if (!strcmp(type, "llama3")) {
        hp->rope_scaling = LOOM_ROPE_SCALING_LLAMA3;
        snprintf(key, sizeof key, "%s.low_freq_factor", base);
        if (opt_float(src, key, NULL, &hp->rope_low_freq_factor, 1) < 0) return -1;
        snprintf(key, sizeof key, "%s.high_freq_factor", base);
        if (opt_float(src, key, NULL, &hp->rope_high_freq_factor, 4) < 0) return -1;
        snprintf(key, sizeof key, "%s.original_max_position_embeddings", base);
        if (opt_int(src, key, NULL, &hp->rope_orig_ctx, 8192, 1, INT_MAX) < 0) return -1;
        return 0;
    }
    return loom_err("%s: unsupported rope scaling type '%s' (supported: linear, llama3)",
                    loom_source_path(src), type);
}

/* Values that would run but give garbage (NaN logits, a truncated model) are refused at load. */
static int check_hparams(const loom_hparams *hp, const loom_source *src) {
    const char *p = loom_source_path(src);
    bool hf = loom_source_get_kind(src) == LOOM_SOURCE_HF;
    char kb[160];
    if (!(isfinite(hp->rope_theta) && hp->rope_theta > 0))
        return loom_err("%s: rope theta %g (%s) must be a finite number > 0", p, (double)hp->rope_theta,
                        key_name(src, "rope_theta", "{arch}.rope.freq_base", kb, sizeof kb));
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

int loom_read_common_hparams(loom_hparams *hp, const loom_source *src) {
    memset(hp, 0, sizeof *hp);
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
    /* the vocabulary size is the embedding's row count; config.json must agree with it */
    const loom_weight *emb = loom_source_find(src, "token_embd.weight");
    if (!emb || emb->ndim != 2)
        return loom_err("%s: missing the token embedding (token_embd.weight / model.embed_tokens.weight)",
                        loom_source_path(src));
    hp->n_vocab = (int)emb->ne[0];
    if (loom_source_get_kind(src) == LOOM_SOURCE_HF) {
        int v;
        if (need_int(src, "vocab_size", NULL, &v) < 0) return -1;
        if (v != hp->n_vocab)
            return loom_err("%s: vocab_size %d does not match the embedding's %d rows", loom_source_path(src), v,
                            hp->n_vocab);
        double eps;
        int r = loom_source_get_float(src, "rms_norm_eps", NULL, &eps);
        if (r <= 0) return r < 0 ? -1 : loom_err("%s: missing required key 'rms_norm_eps'", loom_source_path(src));
        hp->norm_eps = (float)eps;
    } else if (opt_float(src, NULL, "{arch}.attention.layer_norm_rms_epsilon", &hp->norm_eps, 1e-5f) < 0) {
        return -1;
    }
    int r = loom_source_get_float(src, "rope_parameters.rope_theta", "{arch}.rope.freq_base", &(double){0});
    if (r < 0) return -1;
    if (r > 0) {
        if (opt_float(src, "rope_parameters.rope_theta", "{arch}.rope.freq_base", &hp->rope_theta, 10000) < 0) return -1;
    } else if (opt_float(src, "rope_theta", NULL, &hp->rope_theta, 10000) < 0) {
        return -1;
    }
    if (read_rope_scaling(hp, src) < 0) return -1;
    bool tied;
    r = loom_source_get_bool(src, "tie_word_embeddings", NULL, &tied);
    if (r < 0) return -1;
    hp->tied_embeddings = r ? tied : !loom_source_find(src, "output.weight");
    if (loom_source_get_kind(src) == LOOM_SOURCE_HF) {
        if (hf_token_id(src, "bos_token_id", &hp->bos_id) < 0 || hf_token_id(src, "eos_token_id", &hp->eos_id) < 0)
            return -1;
    } else {
        if (opt_int(src, NULL, "tokenizer.ggml.bos_token_id", &hp->bos_id, -1, -1, INT_MAX) < 0 ||
            opt_int(src, NULL, "tokenizer.ggml.eos_token_id", &hp->eos_id, -1, -1, INT_MAX) < 0)
            return -1;
    }
    if (hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv)
        return loom_err("%s: %d attention heads cannot be shared by %d kv heads", loom_source_path(src),
                        hp->n_head, hp->n_head_kv);
    if (hp->head_dim <= 0 || (hp->head_dim & 1))
        return loom_err("%s: head dimension %d must be even", loom_source_path(src), hp->head_dim);
    perturb_hparams(hp);
    return check_hparams(hp, src);
}

/* ---- weights ------------------------------------------------------------------------------------ */

static int weight_v(loom_graph *g, const loom_model *m, int ndim, const int64_t *ne, bool optional,
                    const char *fmt, va_list ap) {
    char name[128];
    vsnprintf(name, sizeof name, fmt, ap);
    const loom_weight *w = loom_source_find(m->src, name);
    if (!w) {
        if (optional) return -2;
        return loom_err("%s: missing tensor '%s'", loom_source_path(m->src), name);
    }
    bool ok = w->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = ne[d] < 0 || w->ne[d] == ne[d];
    if (!ok) {
        char want[64] = "", got[64] = "";
        for (int d = 0, o = 0; d < ndim; d++) o += snprintf(want + o, sizeof want - (size_t)o, d ? ",%lld" : "%lld", (long long)ne[d]);
        for (int d = 0, o = 0; d < w->ndim; d++) o += snprintf(got + o, sizeof got - (size_t)o, d ? ",%lld" : "%lld", (long long)w->ne[d]);
        return loom_err("%s: tensor '%s' has shape [%s], expected [%s]", loom_source_path(m->src), name, got, want);
    }
    if (w->type != LOOM_F32 && w->type != LOOM_F16 && w->type != LOOM_BF16 && !loom_dtype_is_quant(w->type))
        return loom_err("%s: tensor '%s' has unsupported type %s", loom_source_path(m->src), name, loom_dtype_name(w->type));
    return loom_weight_node(g, w);
}

int loom_w(loom_graph *g, const loom_model *m, int ndim, const int64_t *ne, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = weight_v(g, m, ndim, ne, false, fmt, ap);
    va_end(ap);
    return r;
}

int loom_w_opt(loom_graph *g, const loom_model *m, int ndim, const int64_t *ne, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = weight_v(g, m, ndim, ne, true, fmt, ap);
    va_end(ap);
    return r;
}

/* ---- blocks ------------------------------------------------------------------------------------- */

loom_step_inputs loom_block_inputs(loom_graph *g, const loom_build_opts *o) {
    int64_t ne[1] = {o->n_tokens};
    loom_step_inputs in;
    in.tokens = loom_input(g, "tokens", LOOM_I32, 1, ne);
    in.pos = loom_input(g, "pos", LOOM_I32, 1, ne);
    in.n_ctx = o->n_ctx;
    in.slot = in.seq = in.table = in.out_rows = -1;
    in.block_size = 0;
    if (o->n_seq > 0) {
        in.slot = loom_input(g, "slot", LOOM_I32, 1, ne);
        in.seq = loom_input(g, "seq", LOOM_I32, 1, ne);
        in.table = loom_input(g, "table", LOOM_I32, 2, (int64_t[]){o->n_seq, o->max_blocks});
        in.out_rows = loom_input(g, "out_rows", LOOM_I32, 1, (int64_t[]){o->n_out});
        in.block_size = o->block_size;
    }
    return in;
}

int loom_block_rmsnorm(loom_graph *g, const loom_model *m, int x, const char *weight_name) {
    int64_t ne[1] = {m->hp.n_embd};
    int w = loom_w(g, m, 1, ne, "%s", weight_name);
    return loom_mul(g, loom_rmsnorm(g, x, m->hp.norm_eps), w);
}

/* x W^T (+ b): the bias is required when the architecture says it has one. */
static int linear(loom_graph *g, const loom_model *m, int x, int64_t out, int64_t in, bool bias,
                  int layer, const char *name) {
    int w = loom_w(g, m, 2, (int64_t[]){out, in}, "blk.%d.%s.weight", layer, name);
    int y = loom_matmul(g, x, w);
    if (!bias) return y;
    return loom_add(g, y, loom_w(g, m, 1, (int64_t[]){out}, "blk.%d.%s.bias", layer, name));
}

loom_qkv loom_block_qkv(loom_graph *g, const loom_model *m, int layer, int x) {
    const loom_hparams *hp = &m->hp;
    int64_t q_dim = (int64_t)hp->n_head * hp->head_dim, kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    char name[64];
    snprintf(name, sizeof name, "blk.%d.attn_norm.weight", layer);
    int h = loom_block_rmsnorm(g, m, x, name);
    loom_qkv r;
    r.q = linear(g, m, h, q_dim, hp->n_embd, hp->qkv_bias, layer, "attn_q");
    r.k = linear(g, m, h, kv_dim, hp->n_embd, hp->qkv_bias, layer, "attn_k");
    r.v = linear(g, m, h, kv_dim, hp->n_embd, hp->qkv_bias, layer, "attn_v");
    return r;
}

int loom_block_attend(loom_graph *g, const loom_model *m, int layer, int x, loom_qkv qkv,
                      const loom_step_inputs *in) {
    const loom_hparams *hp = &m->hp;
    int64_t q_dim = (int64_t)hp->n_head * hp->head_dim, kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    char name[64];
    int freqs = m->rope_freqs ? loom_weight_node(g, m->rope_freqs) : -1;
    loom_rope_params rp = {
        .n_head = hp->n_head, .head_dim = hp->head_dim, .mode = hp->rope_mode, .n_rot = hp->head_dim,
        .theta = hp->rope_theta,
        .pos_scale = hp->rope_scaling == LOOM_ROPE_SCALING_LINEAR ? 1.0f / hp->rope_factor : 1.0f,
        .freq_factors = freqs,
    };
    int q = loom_rope(g, qkv.q, in->pos, &rp);
    rp.n_head = hp->n_head_kv;
    int k = loom_rope(g, qkv.k, in->pos, &rp);

    /* the layer's cache: state slots 2l (K) and 2l+1 (V); this step's rows are written first,
     * then attention reads rows 0..pos of each query */
    snprintf(name, sizeof name, "cache_k.%d", layer);
    int kc = loom_state(g, 2 * layer, name, in->n_ctx, kv_dim);
    snprintf(name, sizeof name, "cache_v.%d", layer);
    int vc = loom_state(g, 2 * layer + 1, name, in->n_ctx, kv_dim);
    /* paged: rows go to their slots, and attention finds a sequence's keys through its table */
    int rows = in->block_size > 0 ? in->slot : in->pos;
    kc = loom_kv_store(g, kc, k, rows);
    vc = loom_kv_store(g, vc, qkv.v, rows);
    int a = loom_attention(g, q, kc, vc, in->pos, hp->n_head, hp->n_head_kv, hp->head_dim,
                           1.0f / sqrtf((float)hp->head_dim));
    if (in->block_size > 0) a = loom_attention_paged(g, a, in->seq, in->table, in->block_size);
    int o = linear(g, m, a, hp->n_embd, q_dim, false, layer, "attn_output");
    return loom_add(g, x, o);
}

int loom_block_attention(loom_graph *g, const loom_model *m, int layer, int x, const loom_step_inputs *in) {
    return loom_block_attend(g, m, layer, x, loom_block_qkv(g, m, layer, x), in);
}

int loom_block_swiglu_mlp(loom_graph *g, const loom_model *m, int layer, int x) {
    const loom_hparams *hp = &m->hp;
    char name[64];
    snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", layer);
    int h = loom_block_rmsnorm(g, m, x, name);
    int gate = linear(g, m, h, hp->n_ff, hp->n_embd, false, layer, "ffn_gate");
    int up = linear(g, m, h, hp->n_ff, hp->n_embd, false, layer, "ffn_up");
    int act = loom_mul(g, loom_silu(g, gate), up);
    int down = linear(g, m, act, hp->n_embd, hp->n_ff, false, layer, "ffn_down");
    return loom_add(g, x, down);
}

int loom_block_head(loom_graph *g, const loom_model *m, int x, const loom_build_opts *o) {
    const loom_hparams *hp = &m->hp;
    /* generation only needs the last position: select it before the norm and the (large) head;
     * a batch of sequences gathers the rows it wants ("out_rows") the same way */
    if (o->n_seq > 0) {
        int rows = -1; /* the input loom_block_inputs declared (model files do not pass it down) */
        for (int i = 0; i < g->n && rows < 0; i++)
            if (g->nodes[i].op == LOOM_OP_INPUT && !strcmp(g->nodes[i].name, "out_rows")) rows = i;
        if (rows < 0) return loom_err("internal: a paged graph without its \"out_rows\" input");
        x = loom_embed(g, x, rows);
    } else if (!o->all_logits && !o->want_hidden) {
        x = loom_last_row(g, x);
    }
    int h = loom_block_rmsnorm(g, m, x, "output_norm.weight");
    if (o->want_hidden) {
        char name[32];
        snprintf(name, sizeof name, "hidden.%d", hp->n_layer);
        loom_output(g, h, name);
        if (!o->all_logits) h = loom_last_row(g, h);
    }
    int64_t ne[2] = {hp->n_vocab, hp->n_embd};
    int w = hp->tied_embeddings ? loom_w(g, m, 2, ne, "token_embd.weight") : loom_w(g, m, 2, ne, "output.weight");
    return loom_output(g, loom_matmul(g, h, w), "logits");
}

int loom_build_decoder(loom_graph *g, const loom_model *m, const loom_build_opts *o) {
    return loom_build_decoder_qkv(g, m, o, NULL);
}

int loom_build_decoder_qkv(loom_graph *g, const loom_model *m, const loom_build_opts *o, loom_qkv_hook qkv_hook) {
    const loom_hparams *hp = &m->hp;
    loom_step_inputs in = loom_block_inputs(g, o);
    int64_t ne[2] = {hp->n_vocab, hp->n_embd};
    int x = loom_embed(g, loom_w(g, m, 2, ne, "token_embd.weight"), in.tokens);
    if (o->want_hidden) loom_output(g, x, "hidden.0");
    for (int l = 0; l < hp->n_layer && x >= 0; l++) { /* x < 0: a weight is missing, stop (block_count may be 2^30) */
        loom_qkv qkv = loom_block_qkv(g, m, l, x);
        if (qkv_hook) qkv = qkv_hook(g, m, l, qkv);
        x = loom_block_attend(g, m, l, x, qkv, &in);
        x = loom_block_swiglu_mlp(g, m, l, x);
        if (o->want_hidden && l + 1 < hp->n_layer) {
            char name[32];
            snprintf(name, sizeof name, "hidden.%d", l + 1);
            loom_output(g, x, name);
        }
    }
    return loom_block_head(g, m, x, o) < 0 ? -1 : 0;
}

int loom_model_validate(const loom_model *m) {
    loom_graph *g = loom_graph_new();
    if (!g) return -1;
    loom_build_opts o = {.n_tokens = 1, .n_ctx = 1, .all_logits = false, .want_hidden = false};
    int r = m->arch->build(g, m, &o);
    loom_graph_free(g);
    return r;
}
