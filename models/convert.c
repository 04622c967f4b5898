/* HF directory -> GGUF, the way llama.cpp's convert_hf_to_gguf.py does it: the family's descriptor
 * (models/model.h) says which keys, names and transforms; nothing here names an architecture. */
#include "models/convert.h"

#include "models/model.h"

#include "formats/gguf.h"
#include "formats/outfile.h"
#include "formats/quantize.h"
#include "core/util.h"
#include "tokenizer/tokenizer.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- metadata ---------------------------------------------------------------------------------- */

static int w_u32(gguf_writer *w, const char *arch, const char *suffix, int64_t v) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (v < 0 || v > (int64_t)UINT32_MAX) return loom_err("%s: value %lld out of range", key, (long long)v);
    return gguf_w_u32(w, key, (uint32_t)v);
}

static int w_f32(gguf_writer *w, const char *arch, const char *suffix, double v) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return gguf_w_f32(w, key, (float)v);
}

int loom_arch_write_kv(gguf_writer *w, const loom_arch *a, const loom_hparams *hp, const char *name, int file_type) {
    const char *arch = a->gguf_arch ? a->gguf_arch : a->name;
    bool hd_differs = hp->head_dim != hp->n_embd / hp->n_head || hp->n_embd % hp->n_head;
    char ekey[128];
    int rc = 0;
    rc |= gguf_w_str(w, "general.architecture", arch);
    rc |= gguf_w_str(w, "general.type", "model");
    rc |= gguf_w_str(w, "general.name", name);
    rc |= gguf_w_u32(w, "general.file_type", (uint32_t)file_type);
    rc |= w_u32(w, arch, "context_length", hp->n_ctx_train);
    rc |= w_u32(w, arch, "embedding_length", hp->n_embd);
    rc |= w_u32(w, arch, "block_count", hp->n_layer);
    rc |= w_u32(w, arch, "feed_forward_length", hp->n_ff);
    rc |= w_u32(w, arch, "attention.head_count", hp->n_head);
    rc |= w_u32(w, arch, "attention.head_count_kv", hp->n_head_kv);
    rc |= w_f32(w, arch, "rope.freq_base", hp->rope_theta);
    rc |= w_f32(w, arch, "attention.layer_norm_rms_epsilon", hp->norm_eps);
    /* llama.cpp's converter writes the rotary dims and key/value lengths when head_dim is not
     * hidden/heads (a family's write_kv may write them always) */
    if (hd_differs) {
        rc |= w_u32(w, arch, "rope.dimension_count", hp->head_dim);
        rc |= w_u32(w, arch, "attention.key_length", hp->head_dim);
        rc |= w_u32(w, arch, "attention.value_length", hp->head_dim);
    }
    if (hp->rope_scaling == LOOM_ROPE_SCALING_LINEAR) {
        char key[128];
        snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
        rc |= gguf_w_str(w, key, "linear");
        rc |= w_f32(w, arch, "rope.scaling.factor", hp->rope_factor);
    }
    /* Llama 3 scaling travels as the rope_freqs.weight tensor, as in llama.cpp */
    if (hp->rope_theta_local > 0) rc |= w_f32(w, arch, "rope.freq_base_swa", hp->rope_theta_local);
    if (hp->n_swa > 0) {
        rc |= w_u32(w, arch, "attention.sliding_window", hp->n_swa);
        /* every P-th layer global: llama.cpp's u32 period, the only form its Gemma 2/3 (and OLMo 2,
         * Cohere 2, ...) loaders read: given a bool array they silently use their default period */
        if (hp->swa_pattern > 0) {
            rc |= w_u32(w, arch, "attention.sliding_window_pattern", hp->swa_pattern);
        } else if (hp->swa_first > 0) { /* local from a layer on: llama.cpp's per-layer form, true = local */
            uint8_t *local = loom_malloc((size_t)hp->n_layer);
            char key[128];
            snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", arch);
            for (int l = 0; local && l < hp->n_layer; l++) local[l] = loom_layer_is_local(hp, l);
            rc |= local ? gguf_w_arr_bool(w, key, local, (size_t)hp->n_layer) : -1;
            free(local);
        }
    }
    if (hp->attn_softcap > 0) rc |= w_f32(w, arch, "attn_logit_softcapping", hp->attn_softcap);
    if (hp->final_softcap > 0) rc |= w_f32(w, arch, "final_logit_softcapping", hp->final_softcap);
    if (hp->n_expert > 0) {
        rc |= w_u32(w, arch, "expert_count", hp->n_expert);
        rc |= w_u32(w, arch, "expert_used_count", hp->n_expert_used);
        rc |= w_u32(w, arch, "expert_feed_forward_length", hp->n_ff_exp);
        rc |= gguf_w_bool(w, (snprintf(ekey, sizeof ekey, "%s.expert_weights_norm", arch), ekey), hp->expert_norm_topk);
    }
    if (hp->bos_id >= 0) rc |= gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)hp->bos_id);
    if (hp->eos_id >= 0) rc |= gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)hp->eos_id);
    if (rc) return -1;
    return a->write_kv ? a->write_kv(w, arch, hp) : 0;
}

int loom_arch_write_no_vocab(gguf_writer *w, const loom_arch *a, const loom_hparams *hp) {
    const char *arch = a->gguf_arch ? a->gguf_arch : a->name;
    char key[128];
    snprintf(key, sizeof key, "%s.vocab_size", arch);
    if (gguf_w_str(w, "tokenizer.ggml.model", "none")) return -1;
    return gguf_w_has_key(w, key) ? 0 : w_u32(w, arch, "vocab_size", hp->n_vocab); /* llama's write_kv has it */
}

int loom_arch_write_kv_lengths(gguf_writer *w, const char *arch, const loom_hparams *hp) {
    if (hp->head_dim != hp->n_embd / hp->n_head || hp->n_embd % hp->n_head) return 0; /* written already */
    return w_u32(w, arch, "attention.key_length", hp->head_dim) || w_u32(w, arch, "attention.value_length", hp->head_dim)
               ? -1
               : 0;
}

int loom_gguf_w_u32(gguf_writer *w, const char *arch, const char *suffix, int64_t v) { return w_u32(w, arch, suffix, v); }
int loom_gguf_w_f32(gguf_writer *w, const char *arch, const char *suffix, double v) { return w_f32(w, arch, suffix, v); }

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

int loom_convert_hf_to_gguf(const char *hf_dir, const char *out_path) {
    const loom_arch *arch = NULL;
    loom_hparams hp;
    loom_source *src = loom_arch_open(hf_dir, &arch, &hp);
    if (!src) return -1;
    gguf_writer *w = NULL;
    permute_job *jobs = NULL;
    float *rope_factors = NULL;
    int rc = -1;
    if (loom_source_get_kind(src) != LOOM_SOURCE_HF) {
        loom_err("%s: not a HuggingFace directory (convert reads config.json + safetensors)", hf_dir);
        goto done;
    }
    char name[128];
    base_name(loom_source_path(src), name, sizeof name);
    const loom_weight *emb = loom_source_find(src, "token_embd.weight");
    bool permute = arch->gguf_qk_interleaved;

    if (!(w = gguf_writer_new())) goto done;
    if (loom_arch_write_kv(w, arch, &hp, name, file_type_of(emb->type))) goto done;
    /* the tokenizer travels with the weights when the directory has one; a checkpoint without
     * tokenizer.json (llama.cpp's converter refuses one) is marked as having no vocabulary, which
     * llama.cpp loads (without the mark it refuses the file: "key not found") */
    char tok_path[4096];
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", loom_source_path(src));
    struct stat tst;
    if (stat(tok_path, &tst) == 0) {
        loom_tokenizer *tok = loom_tokenizer_load(loom_source_path(src));
        int trc = tok ? loom_tokenizer_to_gguf(tok, w, false) : -1;
        loom_tokenizer_free(tok);
        if (trc) goto done;
    } else if (loom_arch_write_no_vocab(w, arch, &hp)) {
        goto done;
    }

    if (hp.rope_scaling == LOOM_ROPE_SCALING_LLAMA3) {
        int64_t ne[1] = {hp.head_dim / 2};
        if (!(rope_factors = loom_malloc((size_t)ne[0] * sizeof(float)))) goto done;
        loom_llama3_rope_factors(&hp, rope_factors);
        if (gguf_w_tensor(w, "rope_freqs.weight", GGML_TYPE_F32, 1, ne, rope_factors, (size_t)ne[0] * 4)) goto done;
    }

    int n = loom_source_n_tensors(src);
    if (!(jobs = loom_calloc((size_t)n, sizeof *jobs))) goto done;
    for (int i = 0; i < n; i++) {
        const loom_weight *t = loom_source_tensor(src, i);
        char hf[128];
        if (hp.tied_embeddings && !strcmp(t->name, "output.weight")) continue; /* llama.cpp drops the tied head */
        size_t nl = strlen(t->name);
        if (nl >= 19 && !strcmp(t->name + nl - 19, "rotary_emb.inv_freq")) continue; /* recomputed */
        /* messages name the tensor as the checkpoint does */
        if (!loom_arch_gguf_to_hf(arch, t->name, hf, sizeof hf)) snprintf(hf, sizeof hf, "%s", t->name);
        if (!loom_arch_gguf_known(arch, t->name)) {
            loom_err("%s: tensor '%s' has no GGUF name (not a %s tensor loom knows)", hf_dir, t->name, arch->name);
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
        if (permute && (is_layer_tensor(t->name, "attn_q.weight") || is_layer_tensor(t->name, "attn_q.bias")))
            n_head = hp.n_head;
        if (permute && (is_layer_tensor(t->name, "attn_k.weight") || is_layer_tensor(t->name, "attn_k.bias")))
            n_head = hp.n_head_kv;
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

int loom_quantize(const char *in, const char *out, const char *type, FILE *log) {
    return loom_quantize_ex(in, out, type, false, 0, log);
}

int loom_quantize_ex(const char *in, const char *out, const char *type, bool pure, int n_threads, FILE *log) {
    if (loom_quantize_check(out, type) < 0) return -1;
    struct stat st;
    if (stat(in, &st) != 0) return loom_err("%s: cannot open", in);
    if (!S_ISDIR(st.st_mode)) return loom_quantize_gguf(in, out, type, pure, n_threads, log);
    /* a HF directory: convert (metadata, tokenizer, q/k permutation) to a temporary GGUF first */
    size_t len = strlen(out) + 16;
    char *tmp = loom_malloc(len);
    if (!tmp) return -1;
    snprintf(tmp, len, "%s.hf-tmp.gguf", out);
    unlink(tmp); /* one left by a killed run, or anything else by that name: never written through */
    int slot = out_hold(tmp); /* removed on SIGINT/SIGTERM/SIGHUP/SIGXFSZ */
    int rc = loom_convert_hf_to_gguf(in, tmp);
    if (rc == 0) rc = loom_quantize_gguf(tmp, out, type, pure, n_threads, log);
    unlink(tmp);
    out_release(slot);
    free(tmp);
    return rc;
}
