/* The static tensor graph: nodes, ops, and the builder API that model files call.
 *
 * A graph is an array of nodes in topological order (a node's sources always come before it).
 * Every node produces one tensor. Shapes are row-major in PyTorch order: ne[ndim-1] is the
 * contiguous dimension, so a weight stored [out, in] in a checkpoint has ne = {out, in}.
 * All activations are f32 and contiguous; only leaves (weights, inputs, state) have other types.
 *
 * Op semantics (every backend implements exactly these; tests/unit/test_ops.c checks them):
 *
 *   INPUT      leaf, written by the host before each run (token ids, positions: i32)
 *   WEIGHT     leaf, a checkpoint tensor (f32/f16/bf16; 1-D weights are always f32)
 *   STATE      leaf, a persistent session tensor (a layer's K or V cache, f32 [ctx, kv_dim])
 *   EMBED      src0 table [V, D] (any weight type), src1 ids [S] i32          -> [S, D]
 *   MATMUL     src0 x [M, K], src1 W [N, K], optional src2 bias [N]           -> [M, N]
 *              y = x W^T (+ bias)
 *   ADD, MUL   src0 [M, N], src1 [M, N] or [N] (broadcast over rows)          -> [M, N]
 *   SCALE      src0 * fp[0]
 *   RMSNORM    src0 [M, N], optional src1 weight [N]; fp[0] = eps
 *              y = x / sqrt(mean(x^2) + eps) (* w)
 *   SILU       x * sigmoid(x)
 *   SWIGLU     src0 gate, src1 up (same shape): silu(gate) * up
 *   GELU       gelu_tanh(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3): PyTorch's
 *              gelu(approximate="tanh"), transformers' gelu_pytorch_tanh. Computed as
 *              x / (1 + exp(-2u)) (the same function), which does not cancel for x << 0.
 *   GEGLU      src0 gate, src1 up (same shape): gelu_tanh(gate) * up (Gemma's MLP)
 *   SOFTCAP    fp[0] * tanh(x / fp[0]), fp[0] > 0 (logit soft-capping, Gemma 2)
 *   SOFTMAX    row-wise softmax of src0 * fp[0]
 *   ROPE       src0 x [S, H*hd] seen as [S, H, hd], src1 pos [S] i32, optional src2 freq
 *              factors [rot/2] f32. ip[0] = H, ip[1] = hd, ip[2] = mode (LOOM_ROPE_*),
 *              ip[3] = rot (rotated dims, <= hd); fp[0] = theta, fp[1] = position scale (per
 *              node, so per layer: Gemma 3's local layers use 10k, its global ones 1M).
 *              For pair i < rot/2: angle = pos * fp[1] * theta^(-2i/rot) / factor[i]; the pair
 *              is (x[i], x[i + rot/2]) in NEOX (rotate-half) mode, (x[2i], x[2i+1]) in NORM
 *              (interleaved) mode; (a, b) -> (a cos - b sin, a sin + b cos).
 *   KV_STORE   src0 cache [C, W] (STATE or a node standing for it), src1 rows [S, W],
 *              src2 pos [S] i32: cache[pos[s]] = rows[s]. The node stands for the updated cache
 *              and shares its storage (later readers depend on it, which orders the writes).
 *   ATTENTION  src0 q [S, H*hd], src1 K cache [C, Hkv*hd], src2 V cache [C, Hkv*hd],
 *              src3 pos [S] i32. ip[0] = H, ip[1] = Hkv, ip[2] = hd; fp[0] = scale.
 *              Query row s, head h attends to cache rows j <= pos[s] of kv head h / (H/Hkv):
 *              out[s, h] = softmax_j(scale * q.k_j) . v_j                    -> [S, H*hd]
 *              Paged (several sequences, docs/batching.md): optional src4 seq [S] i32 and src5
 *              block table [B, M] i32, ip[3] = block size BS. Query row s belongs to sequence
 *              seq[s] (a row of the table), and its logical key j <= pos[s] lives at cache row
 *              table[seq[s]][j / BS] * BS + j % BS. Without src4/src5 the table is the identity.
 *              (KV_STORE then takes physical rows, "slots", as its src2.)
 *              Options (loom_attention_opts; 0 = off, per node, so per layer):
 *              ip[4] = W > 0, a sliding window: row s sees keys j with pos[s] - W < j <= pos[s]
 *              (W keys counting its own), transformers' convention (masking_utils'
 *              sliding_window_overlay keeps kv_idx > q_idx - W, the causal mask kv_idx <= q_idx).
 *              fp[1] = cap > 0, score soft-capping (Gemma 2): each score, after the scale,
 *              becomes cap * tanh(score / cap) before the softmax.
 *              ip[5] = 1 (with a window, contiguous form only): the K/V caches are rings of
 *              C >= W rows, logical key j at cache row j % C, so a windowed layer's cache holds
 *              C rows, not the context (KV_STORE then takes pos % C as its rows). The caller
 *              keeps the window's keys in the ring: C >= W + S - 1 for S rows stored per step.
 *              The scale fp[0] is free: Gemma 2/3 pass query_pre_attn_scalar^-0.5.
 *   MOE        mixture of SwiGLU experts. src0 x [S, D], src1 router logits [S, E] f32, src2
 *              gate [E, F, D], src3 up [E, F, D], src4 down [E, D, F] (expert e's matrices are
 *              slice e, stacked as GGUF's ffn_{gate,up,down}_exps; any weight type, rows whole
 *              blocks). ip[0] = k (1 <= k <= E), ip[1] = 1: renormalise the chosen weights.
 *              Row s: p = softmax(logits[s]); T = the k largest p (ties: lower e first);
 *              w_e = p_e, or p_e / sum_{t in T} p_t when renormalised (Mixtral, Qwen3-MoE
 *              norm_topk_prob: the same as a softmax over the k chosen logits);
 *              out[s] = sum_{e in T} w_e down_e (silu(gate_e x[s]) * (up_e x[s]))    -> [S, D]
 *   VIEW       src0 reshaped to ne with a byte offset (view_offset), no copy
 *   PERMUTE    contiguous copy of src0 with axes permuted: out axis d = src axis ip[d]
 */
#ifndef LOOM_GRAPH_H
#define LOOM_GRAPH_H

#include "loom.h"

#include <stdio.h>

#define LOOM_MAX_DIMS 4
#define LOOM_MAX_SRC 6

typedef enum loom_op {
    LOOM_OP_INPUT,
    LOOM_OP_WEIGHT,
    LOOM_OP_STATE,
    LOOM_OP_EMBED,
    LOOM_OP_MATMUL,
    LOOM_OP_ADD,
    LOOM_OP_MUL,
    LOOM_OP_SCALE,
    LOOM_OP_RMSNORM,
    LOOM_OP_SILU,
    LOOM_OP_SWIGLU,
    LOOM_OP_SOFTMAX,
    LOOM_OP_ROPE,
    LOOM_OP_KV_STORE,
    LOOM_OP_ATTENTION,
    LOOM_OP_VIEW,
    LOOM_OP_PERMUTE,
    LOOM_OP_GELU,
    LOOM_OP_GEGLU,
    LOOM_OP_SOFTCAP,
    LOOM_OP_MOE,
    LOOM_OP_COUNT
} loom_op;

enum { LOOM_ROPE_NEOX = 0, LOOM_ROPE_NORM = 1 };

/* Where a node's data lives once planned. */
typedef enum loom_storage {
    LOOM_STORE_NONE,   /* not planned yet / dead */
    LOOM_STORE_ARENA,  /* the plan's arena, at `offset` */
    LOOM_STORE_WEIGHT, /* a model weight (node->weight) */
    LOOM_STORE_STATE,  /* session state tensor node->state, at `offset` within it */
} loom_storage;

/* Node flags. */
enum {
    LOOM_NODE_OUTPUT = 1u << 0, /* read by the host after a run: kept alive to the end */
    LOOM_NODE_DEAD = 1u << 1,   /* removed by a planner pass */
    LOOM_NODE_INPLACE = 1u << 2, /* writes over its first source's storage */
    LOOM_NODE_FOLDED = 1u << 3   /* folded into its readers by a backend pass (loom_plan_fold): each
                                    reader's dispatch computes it from its sources; it has no
                                    storage and is not in the plan's order */
};

/* What a WEIGHT node is bound to: a tensor the model provides. formats/ fills these from a
 * checkpoint (LOOM_WEIGHT_FILE, id = index in the checkpoint's tensor table); a model fills its own
 * for tensors it computes at load, such as Llama-3 RoPE factors from config.json
 * (LOOM_WEIGHT_COMPUTED, id = index in the model's computed table). A run finds the weight's
 * buffer by (kind, id) in loom_exec_ctx; the graph and the backends know no file format. */
typedef enum loom_weight_kind { LOOM_WEIGHT_FILE, LOOM_WEIGHT_COMPUTED } loom_weight_kind;

typedef struct loom_weight {
    char name[96];       /* canonical name */
    loom_dtype type;
    int ndim;
    int64_t ne[4];       /* row-major, PyTorch order: a matrix is {out, in} */
    const void *data;    /* host bytes: mapped file bytes, or an owned f32 copy for 1-D tensors */
    size_t nbytes;
    loom_weight_kind kind;
    int id;              /* index in its kind's table */
} loom_weight;

typedef struct loom_node {
    loom_op op;
    loom_dtype type;
    int ndim;
    int64_t ne[LOOM_MAX_DIMS];
    int n_src;
    int src[LOOM_MAX_SRC]; /* node indices, -1 when unused */
    int32_t ip[8];         /* integer parameters (per op, see above) */
    float fp[4];           /* float parameters */
    uint32_t flags;
    char name[96];         /* for dumps and for finding outputs ("logits", "hidden.3") */

    /* leaf bindings */
    const loom_weight *weight;        /* LOOM_OP_WEIGHT */
    int state;                        /* LOOM_OP_STATE: session state index */
    size_t view_offset;               /* LOOM_OP_VIEW: bytes into src0 */

    /* filled by the planner */
    int group;          /* fusion group id (-1: none); fused nodes keep their group's id */
    int n_fused;        /* primitive nodes folded into this one */
    int replaced_by;    /* node now standing for this one after CSE or fusion, else -1 */
    loom_storage storage;
    int alias;          /* node whose storage this one shares (view, in place), else -1 */
    size_t offset;      /* bytes into the arena or the state tensor */
    size_t nbytes;
    int first_use, last_use; /* liveness, in execution order (-1: none) */
} loom_node;

typedef struct loom_graph {
    loom_node *nodes;
    int n, cap;
    int n_state;      /* number of STATE slots the graph refers to */
    size_t arena_size, naive_size; /* set by the memory pass (0 before): the plan's figures, which
                                      loom_plan and every dump report */
    char *log;        /* what the planner passes did, one line per change */
    size_t log_len, log_cap;
} loom_graph;

/* ---- building ----------------------------------------------------------------------------- */
loom_graph *loom_graph_new(void);
void loom_graph_free(loom_graph *g);
/* Fused groups among the live nodes (distinct group ids): the one figure plans and dumps report. */
int loom_graph_count_groups(const loom_graph *g);
const char *loom_op_name(loom_op op);
int64_t loom_node_nelem(const loom_node *n);
size_t loom_node_bytes(const loom_node *n);

/* Every builder function returns the new node's index, or -1 with an error set (a shape mismatch
 * is a bug in a model file or a bad checkpoint, and is reported, not asserted). Passing -1 as a
 * source propagates the failure, so a model file can check once at the end. */
int loom_input(loom_graph *g, const char *name, loom_dtype t, int ndim, const int64_t *ne);
int loom_weight_node(loom_graph *g, const loom_weight *w);
int loom_state(loom_graph *g, int slot, const char *name, int64_t rows, int64_t cols);
int loom_embed(loom_graph *g, int table, int ids);
int loom_matmul(loom_graph *g, int x, int w);
int loom_add(loom_graph *g, int a, int b);
int loom_mul(loom_graph *g, int a, int b);
int loom_scale(loom_graph *g, int a, float s);
int loom_rmsnorm(loom_graph *g, int x, float eps);
int loom_silu(loom_graph *g, int x);
int loom_swiglu(loom_graph *g, int gate, int up);
int loom_gelu(loom_graph *g, int x);
int loom_geglu(loom_graph *g, int gate, int up);
int loom_softcap(loom_graph *g, int x, float cap); /* cap > 0 */
int loom_softmax(loom_graph *g, int x, float scale);
typedef struct loom_rope_params {
    int n_head, head_dim, mode, n_rot;
    float theta, pos_scale;
    int freq_factors; /* node of [n_rot/2] f32 divisors, or -1 */
} loom_rope_params;
int loom_rope(loom_graph *g, int x, int pos, const loom_rope_params *p);
int loom_kv_store(loom_graph *g, int cache, int rows, int pos);
int loom_attention(loom_graph *g, int q, int k_cache, int v_cache, int pos, int n_head,
                   int n_head_kv, int head_dim, float scale);
/* Turn attention node `attn` into the paged form: seq [S] i32, table [B, M] i32, block size bs. */
int loom_attention_paged(loom_graph *g, int attn, int seq, int table, int block_size);
/* Options of attention node `attn` (plain or paged), graph.h ATTENTION: window > 0 keys, softcap > 0. */
typedef struct loom_attn_opts {
    int window;    /* 0: every key j <= pos */
    float softcap; /* 0: none */
    bool ring;     /* the caches are rings of their row count (needs a window; not paged) */
} loom_attn_opts;
int loom_attention_opts(loom_graph *g, int attn, const loom_attn_opts *o);
/* MOE (graph.h): x [S, D], router logits [S, E], stacked expert weights gate/up [E, F, D] and
 * down [E, D, F]; n_used experts per row, their weights renormalised when norm_topk. */
int loom_moe(loom_graph *g, int x, int logits, int gate_exps, int up_exps, int down_exps, int n_used,
             bool norm_topk);
int loom_view(loom_graph *g, int x, int ndim, const int64_t *ne, size_t byte_offset);
int loom_reshape_2d(loom_graph *g, int x, int64_t rows, int64_t cols);
int loom_permute(loom_graph *g, int x, const int *axes);
int loom_last_row(loom_graph *g, int x); /* [S, D] -> [1, D], a view */
/* Mark a node as a host-visible output under `name` (also renames it). */
int loom_output(loom_graph *g, int x, const char *name);
int loom_find_output(const loom_graph *g, const char *name);

/* Parameters (graph.h, per op) a backend has to know about. Bit k of *ip / *fp: the op gives
 * ip[k] / fp[k] a meaning. A backend's supports() calls loom_params_check first: a node with a
 * nonzero parameter its op does not define (a model built against a newer op set) is refused,
 * and so is one whose defined, nonzero parameter the backend lacks (`lacks` bits), with an error
 * "BACKEND: OP 'NAME': PARAM (ip[k] = v) is not implemented" rather than computed without it. */
void loom_op_params(loom_op op, unsigned *ip, unsigned *fp);
bool loom_params_check(const loom_node *n, const char *backend, unsigned lacks_ip, unsigned lacks_fp);

/* Append a line to the graph's pass log. */
void loom_graph_log(loom_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Hash of structure, shapes, parameters and leaf bindings (xxHash64). */
uint64_t loom_graph_hash(const loom_graph *g);
/* One node's structural key (what CSE compares): everything but its name and output flag. */
uint64_t loom_node_hash(const loom_node *n);

/* ---- dumping ------------------------------------------------------------------------------ */
typedef enum { LOOM_DUMP_TEXT, LOOM_DUMP_DOT, LOOM_DUMP_JSON } loom_dump_format;
/* "[2,896]": a node's shape as the dumps and the profiler print it (cut to fit len). */
void loom_shape_str(const loom_node *n, char *buf, size_t len);
/* A node's parameters as the dumps print them, e.g. "scale=0.125 window=4096 softcap=50" for an
 * attention node ("" for ops without parameters; options left at 0 are not shown). */
void loom_params_str(const loom_node *n, char *buf, size_t len);
void loom_graph_dump(const loom_graph *g, FILE *f, loom_dump_format fmt, const char *title);
/* Same, showing only layers layers[0]..layers[1] (blk.N weights, cache_k.N states, the ops that
 * read them) and collapsing the rest; layers = NULL shows everything. */
void loom_graph_dump_layers(const loom_graph *g, FILE *f, loom_dump_format fmt, const char *title,
                            const int *layers);

#endif
