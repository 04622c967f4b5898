/* What a model file provides, and the shared blocks model files are built from.
 *
 * A model file (models/llama.c, models/qwen2.c) declares one loom_arch: the names it answers to,
 * how it reads its hyper-parameters, and a build function that declares the graph with the
 * builder API and the shared blocks below. models/registry.c lists the model files.
 */
#ifndef LOOM_MODEL_H
#define LOOM_MODEL_H

#include "formats/source.h"
#include "graph/graph.h"

typedef enum { LOOM_ROPE_SCALING_NONE, LOOM_ROPE_SCALING_LINEAR, LOOM_ROPE_SCALING_LLAMA3 } loom_rope_scaling;

typedef struct loom_hparams {
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train;
    float norm_eps;
    float rope_theta;
    int rope_mode;              /* LOOM_ROPE_NEOX (rotate-half) or LOOM_ROPE_NORM (interleaved) */
    loom_rope_scaling rope_scaling;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_orig_ctx;
    bool tied_embeddings;
    bool qkv_bias;
    int bos_id, eos_id;         /* -1 when none */
} loom_hparams;

typedef struct loom_build_opts {
    int n_tokens;      /* tokens in this step */
    int n_ctx;         /* KV cache rows (the STATE tensors' length) */
    bool all_logits;   /* logits for every row, not only the last */
    bool want_hidden;  /* expose "hidden.N" outputs */
    /* paged cache (several sequences, docs/batching.md): n_seq > 0 adds the inputs "slot" [S]
     * (cache row per token), "seq" [S] (row of "table"), "table" [n_seq, max_blocks] and
     * "out_rows" [n_out] (the token rows whose logits are kept) */
    int n_seq, max_blocks, block_size, n_out;
} loom_build_opts;

struct loom_model;

typedef struct loom_arch {
    const char *name;               /* "llama" */
    const char *const *aliases;     /* NULL-terminated: HF model_type / architectures, GGUF arch */
    /* Fill hp from the checkpoint; a missing required key is an error naming the key and file. */
    int (*read_hparams)(loom_hparams *hp, const loom_source *src);
    /* Declare the graph for one step. Returns 0, or -1 with an error. */
    int (*build)(loom_graph *g, const struct loom_model *m, const loom_build_opts *o);
} loom_arch;

struct loom_model {
    loom_source *src;
    const loom_arch *arch;
    loom_hparams hp;
    const loom_weight *rope_freqs; /* [head_dim/2] frequency divisors (Llama-3 scaling), or NULL:
                                      the GGUF's rope_freqs.weight, or rope_factors_w below */
    float *rope_factors;           /* owned storage computed from config.json, or NULL */
    loom_weight rope_factors_w;    /* kind LOOM_WEIGHT_COMPUTED, id 0 */
};

/* registry.c */
const loom_arch *loom_arch_find(const char *name);
const loom_arch *const *loom_arch_list(void);

/* ---- shared blocks (models/blocks.c) -------------------------------------------------------- */

/* Read the hyper-parameters every llama-family model has (HF and GGUF keys), with defaults for the
 * optional ones (rope theta, scaling, head_dim, tied embeddings, bos/eos). */
int loom_read_common_hparams(loom_hparams *hp, const loom_source *src);

/* A weight node by canonical name (printf-style); -1 with an error naming the tensor and the
 * checkpoint if it is missing or its shape differs from the expected ne (ne[i] < 0: any). */
int loom_w(loom_graph *g, const struct loom_model *m, int ndim, const int64_t *ne, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Same, but returns -2 (no error) when the tensor is absent: for optional weights like biases. */
int loom_w_opt(loom_graph *g, const struct loom_model *m, int ndim, const int64_t *ne, const char *fmt,
               ...) __attribute__((format(printf, 5, 6)));

/* The step inputs every decoder has: "tokens" [S] i32 and "pos" [S] i32, and the cache length. */
typedef struct loom_step_inputs {
    int tokens, pos, n_ctx;
    int slot, seq, table, out_rows, block_size; /* paged only (block_size > 0), else -1 */
} loom_step_inputs;
loom_step_inputs loom_block_inputs(loom_graph *g, const loom_build_opts *o);

/* y = x + Attention(RMSNorm(x)) with RoPE, grouped-query heads and the layer's KV cache
 * (state slots 2*layer and 2*layer+1). Optional q/k/v biases are added when present.
 * It is loom_block_qkv followed by loom_block_attend; a model that transforms q, k or v in
 * between (Qwen3's per-head norms) passes a hook to loom_build_decoder_qkv. */
int loom_block_attention(loom_graph *g, const struct loom_model *m, int layer, int x,
                         const loom_step_inputs *in);
typedef struct loom_qkv { int q, k, v; } loom_qkv; /* [S, H*hd], [S, Hkv*hd], [S, Hkv*hd] */
/* RMSNorm(x) by attn_norm, then the q, k, v projections (+ biases when hp.qkv_bias). */
loom_qkv loom_block_qkv(loom_graph *g, const struct loom_model *m, int layer, int x);
/* RoPE on q and k, the cache writes, attention, the output projection, and the residual x + o. */
int loom_block_attend(loom_graph *g, const struct loom_model *m, int layer, int x, loom_qkv qkv,
                      const loom_step_inputs *in);
/* y = x + down(SiLU(gate(RMSNorm(x))) * up(RMSNorm(x))) */
int loom_block_swiglu_mlp(loom_graph *g, const struct loom_model *m, int layer, int x);
/* RMSNorm and multiply by the named norm weight (the planner fuses the two). */
int loom_block_rmsnorm(loom_graph *g, const struct loom_model *m, int x, const char *weight_name);
/* Final norm, "hidden.L" output, last-row selection and LM head ("output.weight", or the token
 * embedding when tied); marks "logits". */
int loom_block_head(loom_graph *g, const struct loom_model *m, int x, const loom_build_opts *o);

/* Llama-family decoder: embedding, n_layer blocks, head. llama.c and qwen2.c both use it. */
int loom_build_decoder(loom_graph *g, const struct loom_model *m, const loom_build_opts *o);
/* The same decoder with a hook between each layer's q/k/v projections and its attention, so a
 * model that transforms q, k or v there (Qwen3's per-head norms) reuses the whole loop; a NULL
 * hook is loom_build_decoder. */
typedef loom_qkv (*loom_qkv_hook)(loom_graph *g, const struct loom_model *m, int layer, loom_qkv qkv);
int loom_build_decoder_qkv(loom_graph *g, const struct loom_model *m, const loom_build_opts *o,
                           loom_qkv_hook qkv_hook);

/* Validate that every tensor the graph would use exists with the right shape (run once at load). */
int loom_model_validate(const struct loom_model *m);

#endif
