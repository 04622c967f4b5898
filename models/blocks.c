/* Shared building blocks for llama-family decoders: hyper-parameters, attention, SwiGLU MLP, head.
 * Model files compose these; anything architecture-specific belongs in the model file. */
#include "models/model.h"

#include "core/qblock.h"
#include "core/util.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    in.slot = in.seq = in.table = in.out_rows = in.ring_rows = -1;
    in.block_size = in.ring_step = 0;
    if (o->n_seq == 0 && o->ring_step > 0) {
        in.ring_step = o->ring_step;
        in.ring_rows = loom_input(g, "ring_rows", LOOM_I32, 1, ne);
    }
    if (o->n_seq > 0) {
        in.slot = loom_input(g, "slot", LOOM_I32, 1, ne);
        in.seq = loom_input(g, "seq", LOOM_I32, 1, ne);
        in.table = loom_input(g, "table", LOOM_I32, 2, (int64_t[]){o->n_seq, o->max_blocks});
        in.out_rows = loom_input(g, "out_rows", LOOM_I32, 1, (int64_t[]){o->n_out});
        in.block_size = o->block_size;
    }
    return in;
}

/* RMSNorm of x's rows (any width) times the named [width] weight; the planner fuses the two. */
int loom_block_norm(loom_graph *g, const loom_model *m, int x, const char *fmt, ...) {
    if (x < 0) return -1;
    char name[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int w = loom_w(g, m, 1, (int64_t[]){g->nodes[x].ne[g->nodes[x].ndim - 1]}, "%s", name);
    return loom_mul(g, loom_rmsnorm(g, x, m->hp.norm_eps), w);
}

int loom_block_linear(loom_graph *g, const loom_model *m, int x, int64_t out, int64_t in, bool bias, int layer,
                      const char *name) {
    int w = loom_w(g, m, 2, (int64_t[]){out, in}, "blk.%d.%s.weight", layer, name);
    int y = loom_matmul(g, x, w);
    if (!bias) return y;
    return loom_add(g, y, loom_w(g, m, 1, (int64_t[]){out}, "blk.%d.%s.bias", layer, name));
}

/* x [S, H*hd] -> RMSNorm over each head's hd values, times the [hd] weight -> [S, H*hd].
 * Both reshapes are views, and the planner fuses the multiply into the norm. */
static int head_norm(loom_graph *g, const loom_model *m, int x, int n_head, int layer, const char *which) {
    if (x < 0) return -1;
    int64_t hd = m->hp.head_dim, rows = g->nodes[x].ne[0];
    int h = loom_reshape_2d(g, x, rows * n_head, hd);
    h = loom_block_norm(g, m, h, "blk.%d.%s.weight", layer, which);
    return loom_reshape_2d(g, h, rows, (int64_t)n_head * hd);
}

loom_qkv loom_block_qkv(loom_graph *g, const loom_model *m, int layer, int x) {
    const loom_hparams *hp = &m->hp;
    int64_t q_dim = (int64_t)hp->n_head * hp->head_dim, kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    int h = hp->no_pre_norms ? x : loom_block_norm(g, m, x, "blk.%d.attn_norm.weight", layer);
    loom_qkv r;
    r.q = loom_block_linear(g, m, h, q_dim, hp->n_embd, hp->qkv_bias, layer, "attn_q");
    r.k = loom_block_linear(g, m, h, kv_dim, hp->n_embd, hp->qkv_bias, layer, "attn_k");
    r.v = loom_block_linear(g, m, h, kv_dim, hp->n_embd, hp->qkv_bias, layer, "attn_v");
    if (hp->qk_norm == LOOM_QK_NORM_HEAD) { /* Qwen3, Gemma 3: [hd] weights shared by the heads */
        r.q = head_norm(g, m, r.q, hp->n_head, layer, "attn_q_norm");
        r.k = head_norm(g, m, r.k, hp->n_head_kv, layer, "attn_k_norm");
    } else if (hp->qk_norm == LOOM_QK_NORM_FULL) { /* OLMo 2: over the whole projection */
        r.q = loom_block_norm(g, m, r.q, "blk.%d.attn_q_norm.weight", layer);
        r.k = loom_block_norm(g, m, r.k, "blk.%d.attn_k_norm.weight", layer);
    }
    return r;
}

loom_rope_params loom_block_rope_params(loom_graph *g, const loom_model *m, int layer, int n_head) {
    const loom_hparams *hp = &m->hp;
    bool local = loom_layer_is_local(hp, layer);
    loom_rope_params rp = {
        .n_head = n_head, .head_dim = hp->head_dim, .mode = hp->rope_mode, .n_rot = hp->head_dim,
        .theta = local && hp->rope_theta_local > 0 ? hp->rope_theta_local : hp->rope_theta,
        .pos_scale = hp->rope_scaling == LOOM_ROPE_SCALING_LINEAR ? 1.0f / hp->rope_factor : 1.0f,
        .freq_factors = m->rope_freqs ? loom_weight_node(g, m->rope_freqs) : -1,
    };
    return rp;
}

int loom_block_attend(loom_graph *g, const loom_model *m, int layer, loom_qkv qkv, const loom_step_inputs *in) {
    const loom_hparams *hp = &m->hp;
    int64_t q_dim = (int64_t)hp->n_head * hp->head_dim, kv_dim = loom_kv_width(hp, layer);
    char name[64];
    bool local = loom_layer_is_local(hp, layer);
    loom_rope_params rp = loom_block_rope_params(g, m, layer, hp->n_head);
    int q = loom_rope(g, qkv.q, in->pos, &rp);
    rp.n_head = hp->n_head_kv;
    int k = loom_rope(g, qkv.k, in->pos, &rp);

    /* the layer's cache: state slots 2l (K) and 2l+1 (V); this step's rows are written first,
     * then attention reads rows 0..pos of each query. A windowed layer's may be a ring of fewer
     * rows (key j at row j % C: "ring_rows" holds pos % C) */
    int64_t C = in->block_size > 0 ? in->n_ctx : loom_kv_rows(hp, layer, in->n_ctx, in->ring_step);
    bool ring = C < in->n_ctx;
    if (ring && g->nodes[in->pos].ne[0] > in->ring_step)
        return loom_err("a step of %lld tokens stores more than the ring of layer %d can hold (%d per step)",
                        (long long)g->nodes[in->pos].ne[0], layer, in->ring_step);
    snprintf(name, sizeof name, "cache_k.%d", layer);
    int kc = loom_state(g, 2 * layer, name, C, kv_dim);
    snprintf(name, sizeof name, "cache_v.%d", layer);
    int vc = loom_state(g, 2 * layer + 1, name, C, kv_dim);
    /* paged: rows go to their slots, and attention finds a sequence's keys through its table */
    int rows = in->block_size > 0 ? in->slot : ring ? in->ring_rows : in->pos;
    kc = loom_kv_store(g, kc, k, rows);
    vc = loom_kv_store(g, vc, qkv.v, rows);
    float scale = hp->attn_scale > 0 ? hp->attn_scale : 1.0f / sqrtf((float)hp->head_dim);
    int a = loom_attention(g, q, kc, vc, in->pos, hp->n_head, hp->n_head_kv, hp->head_dim, scale);
    if (in->block_size > 0) a = loom_attention_paged(g, a, in->seq, in->table, in->block_size);
    loom_attn_opts ao = {.window = local ? hp->n_swa : 0, .softcap = hp->attn_softcap, .ring = ring};
    if (ao.window > 0 || ao.softcap > 0) a = loom_attention_opts(g, a, &ao);
    return loom_block_linear(g, m, a, hp->n_embd, q_dim, false, layer, "attn_output");
}

int loom_block_mlp(loom_graph *g, const loom_model *m, int layer, int h) {
    const loom_hparams *hp = &m->hp;
    if (hp->n_expert > 0) { /* router logits, then the chosen experts' SwiGLU (graph.h MOE) */
        int64_t E = hp->n_expert, F = hp->n_ff_exp, D = hp->n_embd;
        int router = loom_block_linear(g, m, h, E, D, false, layer, "ffn_gate_inp");
        int gate = loom_w(g, m, 3, (int64_t[]){E, F, D}, "blk.%d.ffn_gate_exps.weight", layer);
        int up = loom_w(g, m, 3, (int64_t[]){E, F, D}, "blk.%d.ffn_up_exps.weight", layer);
        int down = loom_w(g, m, 3, (int64_t[]){E, D, F}, "blk.%d.ffn_down_exps.weight", layer);
        return loom_moe(g, h, router, gate, up, down, hp->n_expert_used, hp->expert_norm_topk);
    }
    int gate = loom_block_linear(g, m, h, hp->n_ff, hp->n_embd, false, layer, "ffn_gate");
    int up = loom_block_linear(g, m, h, hp->n_ff, hp->n_embd, false, layer, "ffn_up");
    /* the planner fuses act(gate) * up into SWIGLU / GEGLU */
    int act = loom_mul(g, hp->act == LOOM_ACT_GELU_TANH ? loom_gelu(g, gate) : loom_silu(g, gate), up);
    return loom_block_linear(g, m, act, hp->n_embd, hp->n_ff, false, layer, "ffn_down");
}

int loom_block_layer(loom_graph *g, const loom_model *m, int layer, int x, const loom_step_inputs *in) {
    const loom_hparams *hp = &m->hp;
    int a = loom_block_attend(g, m, layer, loom_block_qkv(g, m, layer, x), in);
    if (hp->post_norms) a = loom_block_norm(g, m, a, "blk.%d.post_attention_norm.weight", layer);
    x = loom_add(g, x, a);
    int h = hp->no_pre_norms ? x : loom_block_norm(g, m, x, "blk.%d.ffn_norm.weight", layer);
    int f = loom_block_mlp(g, m, layer, h);
    if (hp->post_norms) f = loom_block_norm(g, m, f, "blk.%d.post_ffw_norm.weight", layer);
    return loom_add(g, x, f);
}

int loom_block_head(loom_graph *g, const loom_model *m, int x, const loom_build_opts *o, int out_rows) {
    const loom_hparams *hp = &m->hp;
    /* generation only needs the last position: select it before the norm and the (large) head;
     * a batch of sequences gathers the rows it wants ("out_rows") the same way */
    if (o->n_seq > 0) x = loom_embed(g, x, out_rows);
    else if (!o->all_logits && !o->want_hidden) x = loom_last_row(g, x);
    int h = loom_block_norm(g, m, x, "output_norm.weight");
    if (o->want_hidden) {
        char name[32];
        snprintf(name, sizeof name, "hidden.%d", hp->n_layer);
        loom_output(g, h, name);
        if (!o->all_logits) h = loom_last_row(g, h);
    }
    int64_t ne[2] = {hp->n_vocab, hp->n_embd};
    int w = hp->tied_embeddings ? loom_w(g, m, 2, ne, "token_embd.weight") : loom_w(g, m, 2, ne, "output.weight");
    int logits = loom_matmul(g, h, w);
    if (hp->final_softcap > 0) logits = loom_softcap(g, logits, hp->final_softcap);
    return loom_output(g, logits, "logits");
}

int loom_build_decoder(loom_graph *g, const loom_model *m, const loom_build_opts *o) {
    const loom_hparams *hp = &m->hp;
    loom_step_inputs in = loom_block_inputs(g, o);
    int64_t ne[2] = {hp->n_vocab, hp->n_embd};
    int x = loom_embed(g, loom_w(g, m, 2, ne, "token_embd.weight"), in.tokens);
    if (hp->embd_scale > 0) x = loom_scale(g, x, hp->embd_scale);
    if (o->want_hidden) loom_output(g, x, "hidden.0");
    for (int l = 0; l < hp->n_layer && x >= 0; l++) { /* x < 0: a weight is missing, stop (block_count may be 2^30) */
        x = loom_block_layer(g, m, l, x, &in);
        if (o->want_hidden && l + 1 < hp->n_layer) {
            char name[32];
            snprintf(name, sizeof name, "hidden.%d", l + 1);
            loom_output(g, x, name);
        }
    }
    return x < 0 || loom_block_head(g, m, x, o, in.out_rows) < 0 ? -1 : 0;
}

/* Context shift by rotation (loom_session_ctx_shift): per layer, the cached K rows of positions
 * keep + delta .. keep + delta + n_rest - 1 are rotated by RoPE at position -delta (a rotation by
 * angle a then by -delta's angle is the rotation for position p - delta, pair by pair, in either
 * layout, with linear or Llama-3 frequencies and the layer's own theta) and stored at rows
 * keep .. keep + n_rest - 1; the V rows move unchanged. The rotated rows go through the arena
 * (ROPE never runs in place over a state view; V is copied by a SCALE of 1), so the moves never
 * read rows they already overwrote. Inputs "shift_pos" [n_rest] (all -delta) and "shift_rows"
 * [n_rest] (keep + i). */
int loom_build_kshift(loom_graph *g, const loom_model *m, int n_ctx, int keep, int delta, int n_rest) {
    const loom_hparams *hp = &m->hp;
    if (keep < 0 || delta < 1 || n_rest < 1 || (int64_t)keep + delta + n_rest > n_ctx)
        return loom_err("context shift: keep %d, drop %d, move %d rows: outside the %d-row cache", keep, delta, n_rest,
                        n_ctx);
    int64_t ne[1] = {n_rest};
    int pos = loom_input(g, "shift_pos", LOOM_I32, 1, ne);
    int rows = loom_input(g, "shift_rows", LOOM_I32, 1, ne);
    for (int l = 0; l < hp->n_layer; l++) {
        int64_t w = loom_kv_width(hp, l);
        size_t from = (size_t)(keep + delta) * (size_t)w * sizeof(float);
        char name[64];
        snprintf(name, sizeof name, "cache_k.%d", l);
        int kc = loom_state(g, 2 * l, name, n_ctx, w);
        snprintf(name, sizeof name, "cache_v.%d", l);
        int vc = loom_state(g, 2 * l + 1, name, n_ctx, w);
        loom_rope_params rp = loom_block_rope_params(g, m, l, hp->n_head_kv);
        int k = loom_rope(g, loom_view(g, kc, 2, (int64_t[]){n_rest, w}, from), pos, &rp);
        int v = loom_scale(g, loom_view(g, vc, 2, (int64_t[]){n_rest, w}, from), 1.0f);
        if (loom_kv_store(g, kc, k, rows) < 0 || loom_kv_store(g, vc, v, rows) < 0) return -1;
    }
    return 0;
}

int loom_model_validate(const loom_model *m) {
    loom_graph *g = loom_graph_new();
    if (!g) return -1;
    loom_build_opts o = {.n_tokens = 1, .n_ctx = 1, .all_logits = false, .want_hidden = false};
    int r = m->arch->build(g, m, &o);
    loom_graph_free(g);
    return r;
}
