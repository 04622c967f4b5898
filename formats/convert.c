/* HF directory -> GGUF, the way llama.cpp's convert_hf_to_gguf.py does it for llama, qwen2 and qwen3. */
#include "formats/convert.h"

#include "formats/gguf.h"
#include "formats/source.h"
#include "tokenizer/tokenizer.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

/* ---- config.json -> cv_spec ------------------------------------------------------------------- */

/* An object member; NULL when absent or JSON null. */
static const cJSON *jget(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* Integer member: 1 found, 0 absent (required: error), -1 wrong type. A list takes its first item
 * (eos_token_id is a list in Llama 3 configs). */
static int jint(const cJSON *o, const char *key, const char *where, bool required, int64_t *out) {
    const cJSON *v = jget(o, key);
    if (!v) return required ? loom_err("%s: missing '%s'", where, key) : 0;
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0) v = cJSON_GetArrayItem(v, 0);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 9.0e15)
        return loom_err("%s: '%s' is %s, expected an integer", where, key,
                        cJSON_IsNumber(v) ? "a fractional number" : loom_json_kind(v));
    *out = (int64_t)v->valuedouble;
    return 1;
}

static int jnum(const cJSON *o, const char *key, const char *where, double *out) {
    const cJSON *v = jget(o, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v)) return loom_err("%s: '%s' is %s, expected a number", where, key, loom_json_kind(v));
    *out = v->valuedouble;
    return 1;
}

static int jbool(const cJSON *o, const char *key, const char *where, bool *out) {
    const cJSON *v = jget(o, key);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return loom_err("%s: '%s' is %s, expected a bool", where, key, loom_json_kind(v));
    *out = cJSON_IsTrue(v);
    return 1;
}

static const char *arch_of(const cJSON *cfg) {
    const cJSON *mt = jget(cfg, "model_type");
    if (cJSON_IsString(mt)) return mt->valuestring;
    const cJSON *archs = jget(cfg, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    if (cJSON_IsString(a0)) {
        if (!strcmp(a0->valuestring, "LlamaForCausalLM")) return "llama";
        if (!strcmp(a0->valuestring, "Qwen2ForCausalLM")) return "qwen2";
        if (!strcmp(a0->valuestring, "Qwen3ForCausalLM")) return "qwen3";
        return a0->valuestring;
    }
    return NULL;
}

int cv_spec_from_config(cv_spec *sp, const void *config_json, const char *where) {
    const cJSON *c = config_json;
    memset(sp, 0, sizeof *sp);
    const char *arch = arch_of(c);
    if (!arch) return loom_err("%s: no 'model_type' or 'architectures'", where);
    if (strcmp(arch, "llama") && strcmp(arch, "qwen2") && strcmp(arch, "qwen3"))
        return loom_err("%s: unsupported architecture '%s' (supported: llama, qwen2, qwen3)", where, arch);
    snprintf(sp->arch, sizeof sp->arch, "%s", arch);

    if (jint(c, "vocab_size", where, true, &sp->n_vocab) < 0 ||
        jint(c, "hidden_size", where, true, &sp->n_embd) < 0 ||
        jint(c, "num_hidden_layers", where, true, &sp->n_layer) < 0 ||
        jint(c, "num_attention_heads", where, true, &sp->n_head) < 0 ||
        jint(c, "intermediate_size", where, true, &sp->n_ff) < 0)
        return -1;
    int r;
    sp->n_head_kv = sp->n_head;
    if (jint(c, "num_key_value_heads", where, false, &sp->n_head_kv) < 0) return -1;
    const struct { const char *key; int64_t v; } pos[] = {
        {"vocab_size", sp->n_vocab}, {"hidden_size", sp->n_embd}, {"num_hidden_layers", sp->n_layer},
        {"num_attention_heads", sp->n_head}, {"intermediate_size", sp->n_ff},
        {"num_key_value_heads", sp->n_head_kv}};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0 || pos[i].v > INT32_MAX)
            return loom_err("%s: '%s' is %lld, expected a positive 32-bit integer", where, pos[i].key,
                            (long long)pos[i].v);
    if ((r = jint(c, "head_dim", where, false, &sp->head_dim)) < 0) return -1;
    if (r == 0) {
        if (sp->n_embd % sp->n_head)
            return loom_err("%s: hidden_size %lld is not a multiple of num_attention_heads %lld", where,
                            (long long)sp->n_embd, (long long)sp->n_head);
        sp->head_dim = sp->n_embd / sp->n_head;
    }
    if (sp->head_dim <= 0 || sp->head_dim % 2 || sp->head_dim > 65536)
        return loom_err("%s: head_dim %lld must be even and positive", where, (long long)sp->head_dim);
    if (sp->n_head % sp->n_head_kv)
        return loom_err("%s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld", where,
                        (long long)sp->n_head, (long long)sp->n_head_kv);
    sp->n_ctx = -1;
    if (jint(c, "max_position_embeddings", where, false, &sp->n_ctx) < 0) return -1;

    sp->norm_eps = 1e-6;
    if (jnum(c, "rms_norm_eps", where, &sp->norm_eps) < 0) return -1;

    /* transformers 5 nests rope settings in rope_parameters; older configs have them top-level
     * (rope_theta) and in rope_scaling */
    const cJSON *rp = jget(c, "rope_parameters");
    if (rp && !cJSON_IsObject(rp)) return loom_err("%s: 'rope_parameters' is %s, expected an object", where, loom_json_kind(rp));
    sp->rope_theta = 10000.0;
    if ((r = jnum(rp, "rope_theta", where, &sp->rope_theta)) < 0) return -1;
    if (r == 0 && jnum(c, "rope_theta", where, &sp->rope_theta) < 0) return -1;
    if (!(sp->rope_theta > 0)) return loom_err("%s: rope_theta %g must be positive", where, sp->rope_theta);

    const cJSON *rs = jget(c, "rope_scaling");
    if (rs && !cJSON_IsObject(rs)) return loom_err("%s: 'rope_scaling' is %s, expected an object", where, loom_json_kind(rs));
    if (!rs) rs = rp;
    const cJSON *rt = jget(rs, "rope_type");
    if (!rt) rt = jget(rs, "type");
    if (rt && !cJSON_IsString(rt)) return loom_err("%s: rope scaling type is %s, expected a string", where, loom_json_kind(rt));
    const char *rtype = rt ? rt->valuestring : "default";
    if (!strcmp(rtype, "default")) {
        sp->rope_type = CV_ROPE_NONE;
    } else if (!strcmp(rtype, "linear")) {
        sp->rope_type = CV_ROPE_LINEAR;
        sp->rope_factor = 1.0;
        if (jnum(rs, "factor", where, &sp->rope_factor) < 0) return -1;
    } else if (!strcmp(rtype, "llama3")) {
        /* defaults as llama.cpp's converter has them */
        sp->rope_type = CV_ROPE_LLAMA3;
        sp->rope_factor = 8.0;
        sp->rope_low_freq_factor = 1.0;
        sp->rope_high_freq_factor = 4.0;
        sp->rope_orig_ctx = 8192;
        if (jnum(rs, "factor", where, &sp->rope_factor) < 0 ||
            jnum(rs, "low_freq_factor", where, &sp->rope_low_freq_factor) < 0 ||
            jnum(rs, "high_freq_factor", where, &sp->rope_high_freq_factor) < 0 ||
            jint(rs, "original_max_position_embeddings", where, false, &sp->rope_orig_ctx) < 0)
            return -1;
        if (sp->rope_low_freq_factor == sp->rope_high_freq_factor || sp->rope_orig_ctx <= 0 ||
            !(sp->rope_factor > 0))
            return loom_err("%s: llama3 rope scaling parameters are inconsistent", where);
    } else {
        return loom_err("%s: unsupported rope scaling type '%s' (supported: default, linear, llama3)", where, rtype);
    }

    sp->tied = false;
    if (jbool(c, "tie_word_embeddings", where, &sp->tied) < 0) return -1;
    sp->qkv_bias = !strcmp(sp->arch, "qwen2");
    if (strcmp(sp->arch, "qwen2") && jbool(c, "attention_bias", where, &sp->qkv_bias) < 0) return -1;
    sp->bos_id = sp->eos_id = -1;
    if (jint(c, "bos_token_id", where, false, &sp->bos_id) < 0 || jint(c, "eos_token_id", where, false, &sp->eos_id) < 0)
        return -1;
    return 0;
}

int cv_spec_builtin(cv_spec *sp, const char *shape) {
    memset(sp, 0, sizeof *sp);
    sp->bos_id = sp->eos_id = -1;
    sp->rope_type = CV_ROPE_NONE;
    if (!strcmp(shape, "qwen2-0.5b")) { /* Qwen2-0.5B */
        snprintf(sp->arch, sizeof sp->arch, "qwen2");
        sp->n_vocab = 151936, sp->n_embd = 896, sp->n_layer = 24, sp->n_head = 14, sp->n_head_kv = 2;
        sp->n_ff = 4864, sp->n_ctx = 32768, sp->norm_eps = 1e-6, sp->rope_theta = 1e6;
        sp->tied = true, sp->qkv_bias = true;
    } else if (!strcmp(shape, "llama-1.1b")) { /* TinyLlama-1.1B */
        snprintf(sp->arch, sizeof sp->arch, "llama");
        sp->n_vocab = 32000, sp->n_embd = 2048, sp->n_layer = 22, sp->n_head = 32, sp->n_head_kv = 4;
        sp->n_ff = 5632, sp->n_ctx = 2048, sp->norm_eps = 1e-5, sp->rope_theta = 1e4;
        sp->tied = false, sp->qkv_bias = false;
    } else if (!strcmp(shape, "llama-7b")) { /* LLaMA-7B (Llama-2-7B's shape): no GQA */
        snprintf(sp->arch, sizeof sp->arch, "llama");
        sp->n_vocab = 32000, sp->n_embd = 4096, sp->n_layer = 32, sp->n_head = 32, sp->n_head_kv = 32;
        sp->n_ff = 11008, sp->n_ctx = 4096, sp->norm_eps = 1e-5, sp->rope_theta = 1e4;
        sp->tied = false, sp->qkv_bias = false;
    } else {
        return loom_err("unknown shape '%s' (known: qwen2-0.5b, llama-1.1b, llama-7b, or a config.json path)", shape);
    }
    sp->head_dim = sp->n_embd / sp->n_head;
    snprintf(sp->name, sizeof sp->name, "%s-synthetic", shape);
    return 0;
}

/* ---- metadata ---------------------------------------------------------------------------------- */

static int w_u32(gguf_writer *w, const cv_spec *sp, const char *suffix, int64_t v) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", sp->arch, suffix);
    if (v < 0 || v > (int64_t)UINT32_MAX) return loom_err("%s: value %lld out of range", key, (long long)v);
    return gguf_w_u32(w, key, (uint32_t)v);
}

static int w_f32(gguf_writer *w, const cv_spec *sp, const char *suffix, double v) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", sp->arch, suffix);
    return gguf_w_f32(w, key, (float)v);
}

int cv_write_kv(gguf_writer *w, const cv_spec *sp, int file_type) {
    bool llama = !strcmp(sp->arch, "llama");
    bool hd_differs = sp->head_dim != sp->n_embd / sp->n_head || sp->n_embd % sp->n_head;
    /* Qwen3 configs always name head_dim, and llama.cpp's converter then writes the lengths */
    bool write_lengths = hd_differs || !strcmp(sp->arch, "qwen3");
    int rc = 0;
    rc |= gguf_w_str(w, "general.architecture", sp->arch);
    rc |= gguf_w_str(w, "general.type", "model");
    rc |= gguf_w_str(w, "general.name", sp->name);
    rc |= gguf_w_u32(w, "general.file_type", (uint32_t)file_type);
    if (llama) rc |= w_u32(w, sp, "vocab_size", sp->n_vocab);
    if (sp->n_ctx > 0) rc |= w_u32(w, sp, "context_length", sp->n_ctx);
    rc |= w_u32(w, sp, "embedding_length", sp->n_embd);
    rc |= w_u32(w, sp, "block_count", sp->n_layer);
    rc |= w_u32(w, sp, "feed_forward_length", sp->n_ff);
    rc |= w_u32(w, sp, "attention.head_count", sp->n_head);
    rc |= w_u32(w, sp, "attention.head_count_kv", sp->n_head_kv);
    rc |= w_f32(w, sp, "rope.freq_base", sp->rope_theta);
    rc |= w_f32(w, sp, "attention.layer_norm_rms_epsilon", sp->norm_eps);
    /* llama.cpp's llama converter always writes the rotary dims; others only when they differ */
    if (llama || hd_differs) rc |= w_u32(w, sp, "rope.dimension_count", sp->head_dim);
    if (write_lengths) {
        rc |= w_u32(w, sp, "attention.key_length", sp->head_dim);
        rc |= w_u32(w, sp, "attention.value_length", sp->head_dim);
    }
    if (sp->rope_type == CV_ROPE_LINEAR) {
        char key[128];
        snprintf(key, sizeof key, "%s.rope.scaling.type", sp->arch);
        rc |= gguf_w_str(w, key, "linear");
        rc |= w_f32(w, sp, "rope.scaling.factor", sp->rope_factor);
    }
    /* Llama 3 scaling travels as the rope_freqs.weight tensor, as in llama.cpp */
    if (sp->bos_id >= 0 && sp->bos_id <= (int64_t)UINT32_MAX)
        rc |= gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)sp->bos_id);
    if (sp->eos_id >= 0 && sp->eos_id <= (int64_t)UINT32_MAX)
        rc |= gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)sp->eos_id);
    return rc ? -1 : 0;
}

void cv_llama3_rope_factors(const cv_spec *sp, float *out) {
    /* freqs in f32 like torch's arange/pow in the converter; the rest in double like Python */
    int64_t dim = sp->head_dim;
    double lo_wl = (double)sp->rope_orig_ctx / sp->rope_low_freq_factor;
    double hi_wl = (double)sp->rope_orig_ctx / sp->rope_high_freq_factor;
    for (int64_t i = 0; i < dim / 2; i++) {
        float freq = 1.0f / powf((float)sp->rope_theta, (float)(2 * i) / (float)dim);
        double wavelen = 2 * M_PI / (double)freq;
        double f;
        if (wavelen < hi_wl) {
            f = 1.0;
        } else if (wavelen > lo_wl) {
            f = sp->rope_factor;
        } else {
            double smooth = ((double)sp->rope_orig_ctx / wavelen - sp->rope_low_freq_factor) /
                            (sp->rope_high_freq_factor - sp->rope_low_freq_factor);
            f = 1.0 / ((1.0 - smooth) / sp->rope_factor + smooth);
        }
        out[i] = (float)f;
    }
}

/* ---- q/k permutation ------------------------------------------------------------------------ */

/* llama.cpp's LlamaModel.permute: rows reshaped (n_head, 2, rows/n_head/2) then the last two axes
 * swapped, so output row h*hd + 2j + s comes from input row h*hd + s*hd/2 + j. */
typedef struct {
    const uint8_t *src;
    size_t row_bytes;
    int64_t rows, n_head;
} permute_job;

static int64_t permute_src_row(const permute_job *p, int64_t r) {
    int64_t hd = p->rows / p->n_head, h = r / hd, i = r % hd;
    return h * hd + (i % 2) * (hd / 2) + i / 2;
}

static int permute_fill(void *user, uint64_t offset, void *buf, size_t n) {
    const permute_job *p = user;
    uint8_t *out = buf;
    size_t done = 0;
    while (done < n) {
        uint64_t pos = offset + done;
        int64_t r = (int64_t)(pos / p->row_bytes);
        size_t in_row = (size_t)(pos % p->row_bytes);
        size_t k = p->row_bytes - in_row;
        if (k > n - done) k = n - done;
        memcpy(out + done, p->src + (size_t)permute_src_row(p, r) * p->row_bytes + in_row, k);
        done += k;
    }
    return 0;
}

/* ---- convert -------------------------------------------------------------------------------- */

static int file_type_of(loom_dtype t) { return t == LOOM_F16 ? 1 : t == LOOM_BF16 ? 32 : 0; }

/* "blk.N.<suffix>" */
static bool is_layer_tensor(const char *name, const char *suffix) {
    if (strncmp(name, "blk.", 4)) return false;
    const char *p = name + 4;
    if (!isdigit((unsigned char)*p)) return false;
    while (isdigit((unsigned char)*p)) p++;
    return *p == '.' && !strcmp(p + 1, suffix);
}

static void base_name(const char *path, char *out, size_t n) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/') start--;
    snprintf(out, n, "%.*s", (int)(len - start), path + start);
}

/* bos/eos from generation_config.json when config.json names none. */
static int read_generation_config(cv_spec *sp, const char *dir) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/generation_config.json", dir) >= sizeof path) return 0;
    if (access(path, F_OK) != 0) return 0; /* optional */
    FILE *f = loom_fopen_regular(path);
    if (!f) return -1;
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    if (n == sizeof buf - 1) return loom_err("%s: too large for a generation config", path);
    buf[n] = 0;
    cJSON *j = cJSON_ParseWithLength(buf, n);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return loom_err("%s: not a valid JSON object", path);
    }
    int rc = 0;
    if (sp->bos_id < 0 && jint(j, "bos_token_id", path, false, &sp->bos_id) < 0) rc = -1;
    if (sp->eos_id < 0 && jint(j, "eos_token_id", path, false, &sp->eos_id) < 0) rc = -1;
    cJSON_Delete(j);
    return rc;
}

int loom_convert_hf_to_gguf(const char *hf_dir, const char *out_path) {
    loom_source *src = loom_source_open(hf_dir);
    if (!src) return -1;
    gguf_writer *w = NULL;
    permute_job *jobs = NULL;
    float *rope_factors = NULL;
    int rc = -1;
    char where[4096];
    snprintf(where, sizeof where, "%s/config.json", loom_source_path(src));
    if (loom_source_get_kind(src) != LOOM_SOURCE_HF) {
        loom_err("%s: not a HuggingFace directory (convert reads config.json + safetensors)", hf_dir);
        goto done;
    }
    cv_spec sp;
    if (cv_spec_from_config(&sp, loom_source_hf_config(src), where)) goto done;
    if (read_generation_config(&sp, loom_source_path(src))) goto done;
    base_name(loom_source_path(src), sp.name, sizeof sp.name);
    const loom_weight *emb = loom_source_find(src, "token_embd.weight");
    if (!emb) {
        loom_err("%s: no model.embed_tokens.weight tensor", hf_dir);
        goto done;
    }
    sp.qkv_bias = loom_source_find(src, "blk.0.attn_q.bias") != NULL;
    bool llama = !strcmp(sp.arch, "llama");

    if (!(w = gguf_writer_new())) goto done;
    if (cv_write_kv(w, &sp, file_type_of(emb->type))) goto done;
    /* the tokenizer travels with the weights when the directory has one; a checkpoint without
     * tokenizer.json converts to a GGUF without a vocabulary, as llama.cpp's converter would not */
    char tok_path[4096];
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", loom_source_path(src));
    struct stat tst;
    if (stat(tok_path, &tst) == 0) {
        loom_tokenizer *tok = loom_tokenizer_load(loom_source_path(src));
        int trc = tok ? loom_tokenizer_to_gguf(tok, w, false) : -1;
        loom_tokenizer_free(tok);
        if (trc) goto done;
    }

    if (sp.rope_type == CV_ROPE_LLAMA3) {
        int64_t ne[1] = {sp.head_dim / 2};
        if (!(rope_factors = loom_malloc((size_t)ne[0] * sizeof(float)))) goto done;
        cv_llama3_rope_factors(&sp, rope_factors);
        if (gguf_w_tensor(w, "rope_freqs.weight", GGML_TYPE_F32, 1, ne, rope_factors, (size_t)ne[0] * 4)) goto done;
    }

    int n = loom_source_n_tensors(src);
    if (!(jobs = loom_calloc((size_t)n, sizeof *jobs))) goto done;
    for (int i = 0; i < n; i++) {
        const loom_weight *t = loom_source_tensor(src, i);
        char hf[128];
        if (sp.tied && !strcmp(t->name, "output.weight")) continue; /* llama.cpp drops the tied head */
        size_t nl = strlen(t->name);
        if (nl >= 19 && !strcmp(t->name + nl - 19, "rotary_emb.inv_freq")) continue; /* recomputed */
        if (!loom_name_gguf_to_hf(t->name, hf, sizeof hf)) {
            loom_err("%s: tensor '%s' has no GGUF name (not a %s tensor loom knows)", hf_dir, t->name, sp.arch);
            goto done;
        }
        int gt = gguf_ggml_from_dtype(t->type);
        if (t->type == LOOM_I32) gt = -1;
        if (gt < 0) {
            loom_err("%s: tensor '%s' has type %s (convert handles f32, f16, bf16)", hf_dir, hf,
                     loom_dtype_name(t->type));
            goto done;
        }
        int64_t n_head = 0;
        if (llama && (is_layer_tensor(t->name, "attn_q.weight") || is_layer_tensor(t->name, "attn_q.bias")))
            n_head = sp.n_head;
        if (llama && (is_layer_tensor(t->name, "attn_k.weight") || is_layer_tensor(t->name, "attn_k.bias")))
            n_head = sp.n_head_kv;
        if (n_head) {
            permute_job *p = &jobs[i];
            p->src = t->data;
            p->rows = t->ne[0];
            p->n_head = n_head;
            if (p->rows <= 0) { /* was a division by zero (SIGFPE) below */
                loom_err("%s: tensor '%s' has %lld rows (an empty attention projection)", hf_dir, hf,
                         (long long)p->rows);
                goto done;
            }
            p->row_bytes = t->nbytes / (size_t)p->rows;
            if (p->rows % (2 * n_head)) {
                loom_err("%s: tensor '%s' has %lld rows, not a multiple of 2 x %lld heads", hf_dir, hf,
                         (long long)p->rows, (long long)n_head);
                goto done;
            }
            if (gguf_w_tensor_cb(w, t->name, gt, t->ndim, t->ne, t->nbytes, permute_fill, p)) goto done;
        } else if (gguf_w_tensor(w, t->name, gt, t->ndim, t->ne, t->data, t->nbytes)) {
            goto done;
        }
    }
    rc = gguf_writer_save(w, out_path);
done:
    gguf_writer_free(w);
    free(jobs);
    free(rope_factors);
    loom_source_close(src);
    return rc;
}
