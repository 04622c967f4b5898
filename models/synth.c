/* Random-weight GGUF files of real model shapes, for benchmarks and tests.
 *
 * Tensor bytes are produced while the file is written (gguf_w_tensor_cb), so a 1 GB model needs a
 * few MiB of memory. Normal samples come from a 65536-entry inverse-CDF table indexed by 16 random
 * bits: one xoshiro256** output gives four samples, already in the target dtype.
 */
#include "models/convert.h"

#include "models/model.h"

#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"
#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define SYNTH_STD 0.02

typedef struct { uint64_t s[4]; } xoshiro;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void xo_seed(xoshiro *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t xo_next(xoshiro *r) {
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Acklam's rational approximation of the inverse normal CDF (relative error < 1.2e-9). */
static double inv_norm_cdf(double p) {
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                               1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                               6.680131188771972e+01, -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                               -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                               3.754408661907416e+00};
    const double lo = 0.02425;
    if (p < lo) {
        double q = sqrt(-2 * log(p));
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
               ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    }
    if (p > 1 - lo) return -inv_norm_cdf(1 - p);
    double q = p - 0.5, r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

/* 65536 equiprobable N(0, std) values (bin midpoints) in the target dtype. */
typedef struct { loom_dtype dtype; uint16_t h[65536]; float f[65536]; } normal_table;

static void table_init(normal_table *t, loom_dtype dtype) {
    t->dtype = dtype;
    for (int i = 0; i < 65536; i++) {
        float v = (float)(SYNTH_STD * inv_norm_cdf((i + 0.5) / 65536.0));
        t->f[i] = v;
        t->h[i] = dtype == LOOM_F16 ? loom_f32_to_f16(v) : loom_f32_to_bf16(v);
    }
}

typedef struct {
    const normal_table *tab;
    uint64_t seed;
    xoshiro rng;
} rand_job;

static int rand_fill(void *user, uint64_t offset, void *buf, size_t n) {
    rand_job *j = user;
    if (offset == 0) xo_seed(&j->rng, j->seed); /* pieces come in order: one stream per tensor */
    const normal_table *t = j->tab;
    if (t->dtype == LOOM_F32) {
        float *o = buf;
        size_t cnt = n / 4, i = 0;
        for (; i + 4 <= cnt; i += 4) {
            uint64_t r = xo_next(&j->rng);
            o[i] = t->f[r & 0xffff], o[i + 1] = t->f[(r >> 16) & 0xffff];
            o[i + 2] = t->f[(r >> 32) & 0xffff], o[i + 3] = t->f[r >> 48];
        }
        for (; i < cnt; i++) o[i] = t->f[xo_next(&j->rng) & 0xffff];
    } else {
        uint16_t *o = buf;
        size_t cnt = n / 2, i = 0;
        for (; i + 4 <= cnt; i += 4) {
            uint64_t r = xo_next(&j->rng);
            o[i] = t->h[r & 0xffff], o[i + 1] = t->h[(r >> 16) & 0xffff];
            o[i + 2] = t->h[(r >> 32) & 0xffff], o[i + 3] = t->h[r >> 48];
        }
        for (; i < cnt; i++) o[i] = t->h[xo_next(&j->rng) & 0xffff];
    }
    return 0;
}

typedef struct {
    gguf_writer *w;
    int ggml_type;
    uint64_t seed;
    const normal_table *tab;
    rand_job *jobs;
    int n_jobs, cap_jobs;
    const float *ones, *zeros;
} synth_ctx;

/* A random tensor of ndim (2: a matrix {rows, cols}; 3: a stack of experts' matrices) */
static int add_tensor(synth_ctx *c, const char *name, int ndim, const int64_t *ne) {
    size_t nbytes;
    if (!gguf_ggml_nbytes(c->ggml_type, ndim, ne, &nbytes)) return loom_err("synth: tensor '%s' is too large", name);
    if (c->n_jobs == c->cap_jobs) return loom_err("synth: too many tensors");
    rand_job *j = &c->jobs[c->n_jobs++];
    j->tab = c->tab;
    uint64_t x = c->seed ^ XXH3_64bits(name, strlen(name)); /* independent of tensor order */
    j->seed = splitmix64(&x);
    return gguf_w_tensor_cb(c->w, name, c->ggml_type, ndim, ne, nbytes, rand_fill, j);
}

static int add_matrix(synth_ctx *c, const char *name, int64_t rows, int64_t cols) {
    return add_tensor(c, name, 2, (int64_t[]){rows, cols});
}

static int add_vector(synth_ctx *c, const char *name, int64_t n, const float *data) {
    int64_t ne[1] = {n};
    return gguf_w_tensor(c->w, name, GGML_TYPE_F32, 1, ne, data, (size_t)n * sizeof(float));
}

/* The built-in shapes, as hyper-parameters of their family. */
int loom_synth_shape(const char *shape, const loom_arch **arch, loom_hparams *hp) {
    memset(hp, 0, sizeof *hp);
    hp->bos_id = hp->eos_id = -1;
    if (!strcmp(shape, "qwen2-0.5b")) { /* Qwen2-0.5B */
        *arch = loom_arch_find("qwen2");
        hp->n_vocab = 151936, hp->n_embd = 896, hp->n_layer = 24, hp->n_head = 14, hp->n_head_kv = 2;
        hp->n_ff = 4864, hp->n_ctx_train = 32768, hp->norm_eps = 1e-6f, hp->rope_theta = 1e6f;
        hp->tied_embeddings = true, hp->qkv_bias = true;
    } else if (!strcmp(shape, "llama-1.1b")) { /* TinyLlama-1.1B */
        *arch = loom_arch_find("llama");
        hp->n_vocab = 32000, hp->n_embd = 2048, hp->n_layer = 22, hp->n_head = 32, hp->n_head_kv = 4;
        hp->n_ff = 5632, hp->n_ctx_train = 2048, hp->norm_eps = 1e-5f, hp->rope_theta = 1e4f;
    } else if (!strcmp(shape, "llama-7b")) { /* LLaMA-7B (Llama-2-7B's shape): no GQA */
        *arch = loom_arch_find("llama");
        hp->n_vocab = 32000, hp->n_embd = 4096, hp->n_layer = 32, hp->n_head = 32, hp->n_head_kv = 32;
        hp->n_ff = 11008, hp->n_ctx_train = 4096, hp->norm_eps = 1e-5f, hp->rope_theta = 1e4f;
    } else {
        return loom_err("unknown shape '%s' (known: qwen2-0.5b, llama-1.1b, llama-7b, or a config.json path)", shape);
    }
    hp->head_dim = hp->n_embd / hp->n_head;
    return *arch ? 0 : -1;
}

int loom_synth(const char *shape_or_config, loom_dtype dtype, uint64_t seed, const char *out_path) {
    return loom_synth_vocab(shape_or_config, dtype, seed, NULL, out_path);
}

int loom_synth_vocab(const char *shape_or_config, loom_dtype dtype, uint64_t seed, const char *vocab_path,
                     const char *out_path) {
    if (dtype != LOOM_F32 && dtype != LOOM_F16 && dtype != LOOM_BF16)
        return loom_err("synth: dtype %s is not supported (f32, f16, bf16)", loom_dtype_name(dtype));
    loom_hparams hp;
    const loom_arch *arch = NULL;
    char gname[160];
    size_t sl = strlen(shape_or_config);
    if (sl >= 5 && !strcmp(shape_or_config + sl - 5, ".json")) {
        loom_source *cfg = loom_arch_open_config(shape_or_config, &arch, &hp);
        if (!cfg) return -1;
        loom_source_close(cfg);
        hp.bos_id = hp.eos_id = -1; /* no tokenizer in synthetic files */
        snprintf(gname, sizeof gname, "%s-synthetic", arch->name);
    } else if (loom_synth_shape(shape_or_config, &arch, &hp)) {
        return -1;
    } else {
        snprintf(gname, sizeof gname, "%s-synthetic", shape_or_config);
    }
    /* mixture-of-experts MLPs (Mixtral, Qwen3-MoE: the router and the stacked experts) and Qwen3's
     * per-head q/k norms are written; other extra tensors are not */
    if (hp.qk_norm == LOOM_QK_NORM_FULL || hp.post_norms || hp.no_pre_norms || arch->norm_plus_one)
        return loom_err("synth: %s needs tensors beyond the plain decoder's (not supported)", arch->name);

    synth_ctx c = {0};
    loom_tokenizer *tok = NULL;
    normal_table *tab = NULL;
    float *ones = NULL, *zeros = NULL, *rope = NULL;
    int rc = -1;
    int64_t hd = hp.head_dim, vec = hp.n_embd;
    if (hp.n_head * hd > vec) vec = hp.n_head * hd;
    if (!(tab = loom_malloc(sizeof *tab)) || !(ones = loom_malloc((size_t)vec * 4)) ||
        !(zeros = loom_calloc((size_t)vec, 4)) || !(rope = loom_malloc((size_t)hd / 2 * 4)) ||
        !(c.w = gguf_writer_new()))
        goto done;
    table_init(tab, dtype);
    for (int64_t i = 0; i < vec; i++) ones[i] = 1.0f;
    c.ggml_type = gguf_ggml_from_dtype(dtype);
    c.seed = seed;
    c.tab = tab;
    c.cap_jobs = (int)(hp.n_layer * 8 + 2);
    if (!(c.jobs = loom_calloc((size_t)c.cap_jobs, sizeof *c.jobs))) goto done;

    if (loom_arch_write_kv(c.w, arch, &hp, gname, dtype == LOOM_F16 ? 1 : dtype == LOOM_BF16 ? 32 : 0)) goto done;
    if (vocab_path) { /* the shape's bos/eos are unset (-1): the tokenizer's own go in */
        if (!(tok = loom_tokenizer_load(vocab_path))) goto done;
        int nv = loom_tokenizer_n_vocab(tok);
        if (nv > hp.n_vocab) {
            loom_err("synth: %s has %d tokens, more than the %lld rows of %s's embedding", vocab_path, nv,
                     (long long)hp.n_vocab, shape_or_config);
            goto done;
        }
        if (loom_tokenizer_to_gguf_pad(tok, c.w, true, (int)hp.n_vocab)) goto done;
    } else if (loom_arch_write_no_vocab(c.w, arch, &hp)) {
        goto done;
    }
    if (hp.rope_scaling == LOOM_ROPE_SCALING_LLAMA3) {
        loom_llama3_rope_factors(&hp, rope);
        if (add_vector(&c, "rope_freqs.weight", hd / 2, rope)) goto done;
    }
    if (add_matrix(&c, "token_embd.weight", hp.n_vocab, hp.n_embd)) goto done;
    for (int64_t l = 0; l < hp.n_layer; l++) {
        char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%lld.%s", (long long)l, s), n)
        if (add_vector(&c, NAME("attn_norm.weight"), hp.n_embd, ones) ||
            add_matrix(&c, NAME("attn_q.weight"), hp.n_head * hd, hp.n_embd) ||
            add_matrix(&c, NAME("attn_k.weight"), hp.n_head_kv * hd, hp.n_embd) ||
            add_matrix(&c, NAME("attn_v.weight"), hp.n_head_kv * hd, hp.n_embd) ||
            add_matrix(&c, NAME("attn_output.weight"), hp.n_embd, hp.n_head * hd) ||
            add_vector(&c, NAME("ffn_norm.weight"), hp.n_embd, ones))
            goto done;
        if (hp.qk_norm == LOOM_QK_NORM_HEAD && (add_vector(&c, NAME("attn_q_norm.weight"), hd, ones) ||
                                                add_vector(&c, NAME("attn_k_norm.weight"), hd, ones)))
            goto done;
        if (hp.n_expert > 0) { /* the router, then the experts stacked [E, F, D] / [E, D, F] (graph.h MOE) */
            int64_t E = hp.n_expert, F = hp.n_ff_exp, D = hp.n_embd;
            if (add_matrix(&c, NAME("ffn_gate_inp.weight"), E, D) ||
                add_tensor(&c, NAME("ffn_gate_exps.weight"), 3, (int64_t[]){E, F, D}) ||
                add_tensor(&c, NAME("ffn_up_exps.weight"), 3, (int64_t[]){E, F, D}) ||
                add_tensor(&c, NAME("ffn_down_exps.weight"), 3, (int64_t[]){E, D, F}))
                goto done;
        } else if (add_matrix(&c, NAME("ffn_gate.weight"), hp.n_ff, hp.n_embd) ||
                   add_matrix(&c, NAME("ffn_up.weight"), hp.n_ff, hp.n_embd) ||
                   add_matrix(&c, NAME("ffn_down.weight"), hp.n_embd, hp.n_ff)) {
            goto done;
        }
        if (hp.qkv_bias && (add_vector(&c, NAME("attn_q.bias"), hp.n_head * hd, zeros) ||
                            add_vector(&c, NAME("attn_k.bias"), hp.n_head_kv * hd, zeros) ||
                            add_vector(&c, NAME("attn_v.bias"), hp.n_head_kv * hd, zeros)))
            goto done;
#undef NAME
    }
    if (add_vector(&c, "output_norm.weight", hp.n_embd, ones)) goto done;
    if (!hp.tied_embeddings && add_matrix(&c, "output.weight", hp.n_vocab, hp.n_embd)) goto done;
    rc = gguf_writer_save(c.w, out_path);
done:
    loom_tokenizer_free(tok);
    gguf_writer_free(c.w);
    free(c.jobs);
    free(tab);
    free(ones);
    free(zeros);
    free(rope);
    return rc;
}
