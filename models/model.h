/* What a model file provides, and the shared blocks model files are built from.
 *
 * A model file (models/llama.c, models/gemma.c, ...) declares one loom_arch, the descriptor that
 * owns everything about a family: the names it answers to, its hyper-parameters (the shared parser
 * loom_read_hparams plus its own keys and decoder spec), its HF <-> GGUF tensor names as data, its
 * load-time weight transforms (fused splits, 1 + w norms, q/k row order), the GGUF keys `loom
 * convert` writes for it, its chat format, and the graph. formats/ knows no architecture.
 * models/registry.c lists the model files. docs/adding-a-model.md walks through adding one.
 */
#ifndef LOOM_MODEL_H
#define LOOM_MODEL_H

#include "formats/source.h"
#include "graph/graph.h"

typedef enum { LOOM_ROPE_SCALING_NONE, LOOM_ROPE_SCALING_LINEAR, LOOM_ROPE_SCALING_LLAMA3 } loom_rope_scaling;
typedef enum { LOOM_ACT_SILU, LOOM_ACT_GELU_TANH } loom_act;
typedef enum { LOOM_QK_NORM_NONE, LOOM_QK_NORM_HEAD, LOOM_QK_NORM_FULL } loom_qk_norm;

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
    /* mixture of experts (0 experts: a dense MLP) */
    int n_expert, n_expert_used, n_ff_exp;
    bool expert_norm_topk;      /* renormalise the chosen experts' router weights to sum to 1 */
    /* sliding-window attention: n_swa > 0 positions on local layers (loom_layer_is_local) */
    int n_swa, swa_pattern, swa_first;
    float rope_theta_local;     /* RoPE base of local layers; 0: rope_theta */
    /* the decoder spec: what loom_build_decoder does differently per family */
    loom_act act;               /* MLP: down(act(gate) * up) */
    float embd_scale;           /* token embeddings times this (Gemma: sqrt(n_embd)); 0: none */
    loom_qk_norm qk_norm;       /* RMSNorm of q and k before RoPE: per head, or the whole projection */
    bool no_pre_norms;          /* no norm before attention and MLP (OLMo 2) */
    bool post_norms;            /* a norm on the attention and MLP outputs before the residual */
    float attn_scale;           /* query scale; 0: 1/sqrt(head_dim) */
    float attn_softcap, final_softcap; /* tanh soft-caps of attention and output logits; 0: none */
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
    /* contiguous cache only: > 0 = windowed layers keep a ring of loom_kv_rows rows instead of
     * n_ctx (graph.h ATTENTION ip[5]); every step then stores at most ring_step tokens, and the
     * input "ring_rows" [S] gives each token's cache row, pos % that ring's rows */
    int ring_step;
} loom_build_opts;

struct loom_model;
struct gguf_writer;

/* One tensor name pair, per layer ("self_attn.q_proj.weight" <-> "attn_q.weight" under
 * "model.layers.N." / "blk.N.") or top-level. */
typedef struct loom_name_pair { const char *hf, *gguf; } loom_name_pair;

/* A fused matrix split by rows at load time (no copy): a part's rows are one of these sizes. */
typedef enum { LOOM_ROWS_Q, LOOM_ROWS_KV, LOOM_ROWS_FF } loom_rows;
typedef struct loom_split {
    const char *fused;              /* layer tensor suffix, "attn_qkv.weight" */
    int n_parts;
    const char *part[3];            /* "attn_q.weight", ... */
    loom_rows rows[3];
} loom_split;

typedef struct loom_arch {
    const char *name;               /* "llama": the GGUF general.architecture it reads */
    const char *const *aliases;     /* NULL-terminated: HF model_type / architectures, other GGUF arch names */
    const char *gguf_arch;          /* general.architecture `loom convert` writes (Mistral: "llama"); NULL: name */
    /* Fill hp from the checkpoint: loom_read_hparams, then the family's keys and decoder spec. A
     * missing required key is an error naming the key and file. */
    int (*read_hparams)(loom_hparams *hp, const loom_source *src);
    /* Declare the graph for one step. Returns 0, or -1 with an error. */
    int (*build)(loom_graph *g, const struct loom_model *m, const loom_build_opts *o);
    /* Tensor names: this family's per-layer pairs, looked up before the common llama ones
     * (models/names.c); NULL-terminated, or NULL. */
    const loom_name_pair *names;
    /* Mixture-of-experts weights one tensor per expert in HF ("mlp.experts.%d.gate_proj.weight",
     * %d the expert) stacked on load into the GGUF tensor ("ffn_gate_exps.weight" [E, F, D]). */
    const loom_name_pair *experts;
    const loom_split *splits;       /* fused tensors split on load, n_splits of them */
    int n_splits;
    bool norm_plus_one;             /* HF norms scale by 1 + w; GGUF (and the graph) hold w + 1 */
    bool gguf_qk_interleaved;       /* llama.cpp's converter permutes q/k rows to interleaved RoPE
                                       order: convert does too, and a GGUF runs NORM RoPE */
    /* GGUF keys beyond the common ones (models/convert.c writes those), or NULL. */
    int (*write_kv)(struct gguf_writer *w, const char *arch, const loom_hparams *hp);
    const char *chat_format;        /* default `loom chat` template name, or NULL */
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

/* model.c: the family name chat templates fall back on (arch->chat_format, else the arch name;
 * NULL for m NULL) */
const char *loom_model_chat_family(const loom_model *m);

/* registry.c */
const loom_arch *loom_arch_find(const char *name);
const loom_arch *const *loom_arch_list(void);

/* names.c: open a checkpoint as a family sees it: find its loom_arch, rename HF tensors to GGUF
 * names, read the hyper-parameters, and (HF) turn 1 + w norms into w + 1. Splits are not applied
 * (convert writes fused tensors as llama.cpp does); loom_arch_split_fused does them. */
loom_source *loom_arch_open(const char *path, const loom_arch **arch, loom_hparams *hp);
/* The same for a config.json alone (no tensors: loom synth). */
loom_source *loom_arch_open_config(const char *config_path, const loom_arch **arch, loom_hparams *hp);
int loom_arch_split_fused(const loom_arch *arch, const loom_hparams *hp, loom_source *src);
/* A HF tensor name's GGUF name under arch (false: no mapping), and the reverse. */
bool loom_arch_hf_to_gguf(const loom_arch *arch, const char *hf, char *out, size_t n);
bool loom_arch_gguf_to_hf(const loom_arch *arch, const char *gguf, char *out, size_t n);
/* Whether a GGUF tensor name is one the family writes (mapped, stacked experts, rope_freqs). */
bool loom_arch_gguf_known(const loom_arch *arch, const char *gguf);

/* hparams.c: the one parser, for HF config.json and GGUF metadata alike */
int loom_read_hparams(loom_hparams *hp, const loom_source *src);
/* Optional keys with defaults (HF key, GGUF key; either may be NULL). */
int loom_hp_int(const loom_source *src, const char *hf, const char *gguf, int *out, int dflt);
int loom_hp_float(const loom_source *src, const char *hf, const char *gguf, float *out, float dflt);
/* Whether layer uses the sliding window (n_swa > 0). */
bool loom_layer_is_local(const loom_hparams *hp, int layer);
/* The KV cache of one layer: K and V are each f32 [n_ctx, loom_kv_width]. The graph's STATE
 * tensors and the session's buffers both come from here. */
int64_t loom_kv_width(const loom_hparams *hp, int layer);
/* Its rows: n_ctx, or for a windowed layer with ring_step > 0 a ring of n_swa + ring_step - 1
 * (the window, plus the rows one step stores before its first query has read them), when that is
 * fewer. */
int64_t loom_kv_rows(const loom_hparams *hp, int layer, int n_ctx, int ring_step);
/* Llama 3 RoPE frequency divisors [head_dim/2] (loading a HF directory and convert both use it). */
void loom_llama3_rope_factors(const loom_hparams *hp, float *out);

/* convert.c: the GGUF keys every family writes, then arch->write_kv's. */
int loom_arch_write_kv(struct gguf_writer *w, const loom_arch *arch, const loom_hparams *hp, const char *name,
                       int file_type);
/* A file with no tokenizer, marked as llama.cpp marks one: tokenizer.ggml.model "none" and
 * {arch}.vocab_size (its loader takes the embedding's rows from it; without both it refuses the file). */
int loom_arch_write_no_vocab(struct gguf_writer *w, const loom_arch *arch, const loom_hparams *hp);

/* ---- shared blocks (models/blocks.c) -------------------------------------------------------- */

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
    int ring_rows, ring_step; /* windowed layers' ring (loom_build_opts.ring_step), else -1 and 0 */
    int slot, seq, table, out_rows, block_size; /* paged only (block_size > 0), else -1 */
} loom_step_inputs;
loom_step_inputs loom_block_inputs(loom_graph *g, const loom_build_opts *o);

/* The shared decoder, driven by the decoder spec in loom_hparams. One layer is
 *   a = attn_output(Attention(RoPE(qk_norm(q)), RoPE(qk_norm(k)), v))   q,k,v from attn_norm(x)
 *   x = x + post_attention_norm(a)            (post-norm only when hp.post_norms)
 *   x = x + post_ffw_norm(MLP(ffn_norm(x)))   (pre-norms skipped when hp.no_pre_norms)
 * with the layer's KV cache in state slots 2*layer and 2*layer+1. */
typedef struct loom_qkv { int q, k, v; } loom_qkv; /* [S, H*hd], [S, Hkv*hd], [S, Hkv*hd] */
/* attn_norm (unless no_pre_norms), the q, k, v projections (+ biases when hp.qkv_bias), q/k norms. */
loom_qkv loom_block_qkv(loom_graph *g, const struct loom_model *m, int layer, int x);
/* RoPE on q and k, the cache writes, attention, and the output projection (no residual). */
int loom_block_attend(loom_graph *g, const struct loom_model *m, int layer, loom_qkv qkv, const loom_step_inputs *in);
/* The RoPE of layer `layer` for n_head heads: its theta (local or global), linear position scale and
 * Llama-3 frequency factors, as loom_block_attend rotates q and k. */
loom_rope_params loom_block_rope_params(loom_graph *g, const struct loom_model *m, int layer, int n_head);
/* down(act(gate(h)) * up(h)) */
int loom_block_mlp(loom_graph *g, const struct loom_model *m, int layer, int h);
/* One whole layer as above: x -> x'. */
int loom_block_layer(loom_graph *g, const struct loom_model *m, int layer, int x, const loom_step_inputs *in);
/* RMSNorm of x's rows times the [width] weight named by the format (the planner fuses the two). */
int loom_block_norm(loom_graph *g, const struct loom_model *m, int x, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* x W^T (+ b) with W = "blk.<layer>.<name>.weight" [out, in] (and its bias). */
int loom_block_linear(loom_graph *g, const struct loom_model *m, int x, int64_t out, int64_t in, bool bias,
                      int layer, const char *name);
/* Final norm, "hidden.L" output, last-row (or out_rows, paged) selection and LM head
 * ("output.weight", or the token embedding when tied); marks "logits". */
int loom_block_head(loom_graph *g, const struct loom_model *m, int x, const loom_build_opts *o, int out_rows);
/* Embedding (times embd_scale), n_layer layers, head: every family so far. */
int loom_build_decoder(loom_graph *g, const struct loom_model *m, const loom_build_opts *o);

/* The context-shift graph of a loom_build_decoder model (blocks.c): move the cache rows of positions
 * keep + delta .. keep + delta + n_rest - 1 down to keep .., K re-rotated by -delta positions. */
int loom_build_kshift(loom_graph *g, const struct loom_model *m, int n_ctx, int keep, int delta, int n_rest);

/* Validate that every tensor the graph would use exists with the right shape (run once at load). */
int loom_model_validate(const struct loom_model *m);

#endif
