/* Tensor names as data, and opening a checkpoint as its family sees it.
 *
 * GGUF names are llama.cpp's (gguf-py/gguf/constants.py), so GGUFs people download load. A family
 * lists only the per-layer names where it differs from the common llama table below (arch->names,
 * looked up first): OLMo 2's post_attention_layernorm is a post-norm, not the MLP's pre-norm.
 */
#include "models/model.h"

#include "core/util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

static const loom_name_pair top_names[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

static const loom_name_pair layer_names[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.o_proj.bias", "attn_output.bias"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    {NULL, NULL},
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* "<prefix><layer>.<rest>": the layer number (plain decimal, no sign or leading zeros) and rest. */
static bool split_layer(const char *s, const char *prefix, long *layer, const char **rest) {
    size_t pl = strlen(prefix);
    if (strncmp(s, prefix, pl)) return false;
    s += pl;
    if (!isdigit((unsigned char)s[0]) || (s[0] == '0' && isdigit((unsigned char)s[1]))) return false;
    long v = 0;
    int nd = 0;
    while (isdigit((unsigned char)*s)) {
        if (++nd > 6) return false;
        v = v * 10 + (*s++ - '0');
    }
    if (*s != '.') return false;
    *layer = v;
    *rest = s + 1;
    return true;
}

/* to_gguf: map hf -> gguf, else gguf -> hf. */
static bool map_name(const loom_arch *arch, bool to_gguf, const char *in, char *out, size_t n) {
    for (size_t i = 0; i < N_OF(top_names); i++)
        if (!strcmp(in, to_gguf ? top_names[i].hf : top_names[i].gguf))
            return (size_t)snprintf(out, n, "%s", to_gguf ? top_names[i].gguf : top_names[i].hf) < n;
    long layer;
    const char *rest;
    if (!split_layer(in, to_gguf ? "model.layers." : "blk.", &layer, &rest)) return false;
    const loom_name_pair *tables[2] = {arch ? arch->names : NULL, layer_names};
    for (int t = 0; t < 2; t++)
        for (const loom_name_pair *p = tables[t]; p && p->hf; p++)
            if (!strcmp(rest, to_gguf ? p->hf : p->gguf))
                return (size_t)snprintf(out, n, to_gguf ? "blk.%ld.%s" : "model.layers.%ld.%s", layer,
                                        to_gguf ? p->gguf : p->hf) < n;
    return false;
}

bool loom_arch_hf_to_gguf(const loom_arch *arch, const char *hf, char *out, size_t n) {
    return map_name(arch, true, hf, out, n);
}

bool loom_arch_gguf_to_hf(const loom_arch *arch, const char *gguf, char *out, size_t n) {
    return map_name(arch, false, gguf, out, n);
}

bool loom_arch_gguf_known(const loom_arch *arch, const char *gguf) {
    char hf[160];
    if (map_name(arch, false, gguf, hf, sizeof hf) || !strcmp(gguf, "rope_freqs.weight")) return true;
    long layer;
    const char *rest;
    if (!split_layer(gguf, "blk.", &layer, &rest)) return false;
    for (const loom_name_pair *p = arch->experts; p && p->hf; p++)
        if (!strcmp(rest, p->gguf)) return true;
    return false;
}

/* HF experts one tensor each -> the stacked GGUF tensor of each layer (arch->experts). */
static int stack_experts(const loom_arch *a, const loom_hparams *hp, loom_source *src) {
    if (!a->experts || hp->n_expert <= 0) return 0;
    char(*names)[160] = loom_malloc((size_t)hp->n_expert * sizeof *names);
    const char **ptrs = loom_malloc((size_t)hp->n_expert * sizeof *ptrs);
    int rc = names && ptrs ? 0 : -1;
    /* over the tensors (expert 0 of each layer), not the layers: stacking renumbers the table, so
     * the scan restarts after each stack */
    for (int i = 0; !rc && i < loom_source_n_tensors(src); i++) {
        long l;
        const char *rest;
        if (!split_layer(loom_source_tensor(src, i)->name, "model.layers.", &l, &rest)) continue;
        for (const loom_name_pair *p = a->experts; p->hf && !rc; p++) {
            char first[160], stacked[96], fmt[160];
            snprintf(first, sizeof first, p->hf, 0);
            if (strcmp(rest, first)) continue;
            snprintf(fmt, sizeof fmt, "model.layers.%ld.%s", l, p->hf);
            for (int e = 0; e < hp->n_expert; e++) {
                snprintf(names[e], sizeof names[e], fmt, e);
                ptrs[e] = names[e];
            }
            snprintf(stacked, sizeof stacked, "blk.%ld.%s", l, p->gguf);
            rc = loom_source_stack(src, stacked, hp->n_expert, ptrs);
            i = -1; /* ids changed */
            break;
        }
    }
    free(names);
    free(ptrs);
    return rc;
}

static int rename_fn(void *user, const char *name, char *out, size_t n) {
    return loom_arch_hf_to_gguf(user, name, out, n) ? 1 : 0;
}

/* The model file for a checkpoint: its model_type / general.architecture, else HF architectures. */
static const loom_arch *find_arch(const loom_source *src) {
    const char *arch = loom_source_arch(src);
    const loom_arch *a = loom_arch_find(arch);
    /* a config's model_type decides; "architectures" only speaks when there is none */
    char mt[128];
    const char *const *hf_archs =
        loom_source_get_str(src, "model_type", NULL, mt, sizeof mt) == 0 ? loom_source_hf_architectures(src) : NULL;
    for (int i = 0; !a && hf_archs && hf_archs[i]; i++) a = loom_arch_find(hf_archs[i]);
    if (a) return a;
    char names[512] = "";
    const loom_arch *const *all = loom_arch_list();
    for (int i = 0, o = 0; all[i] && o < (int)sizeof names; i++)
        o += snprintf(names + o, sizeof names - (size_t)o, i ? ", %s" : "%s", all[i]->name);
    return loom_err_null("%s: unknown architecture '%s' (supported: %s)", loom_source_config_path(src),
                         arch && *arch ? arch : "(none)", names);
}

static loom_source *arch_setup(loom_source *src, const loom_arch **arch, loom_hparams *hp);

loom_source *loom_arch_open(const char *path, const loom_arch **arch, loom_hparams *hp) {
    loom_source *src = loom_source_open(path);
    if (!src) return NULL;
    return arch_setup(src, arch, hp);
}

loom_source *loom_arch_open_config(const char *config_path, const loom_arch **arch, loom_hparams *hp) {
    loom_source *src = loom_source_open_config(config_path);
    return src ? arch_setup(src, arch, hp) : NULL;
}

static loom_source *arch_setup(loom_source *src, const loom_arch **arch, loom_hparams *hp) {
    const loom_arch *a = find_arch(src);
    bool hf = loom_source_get_kind(src) == LOOM_SOURCE_HF;
    if (!a || (hf && loom_source_rename(src, rename_fn, (void *)a) < 0) || a->read_hparams(hp, src) < 0 ||
        (hf && stack_experts(a, hp, src) < 0)) {
        loom_source_close(src);
        return NULL;
    }
    /* HF norms of 1 + w families hold w; the graph (and llama.cpp's GGUF) use w + 1 */
    for (int i = 0; hf && a->norm_plus_one && i < loom_source_n_tensors(src); i++) {
        const loom_weight *w = loom_source_tensor(src, i);
        size_t nl = strlen(w->name);
        if (w->ndim == 1 && nl > 11 && !strcmp(w->name + nl - 11, "norm.weight") &&
            loom_source_vector_add(src, w->name, 1.0f) < 0) {
            loom_source_close(src);
            return NULL;
        }
    }
    *arch = a;
    return src;
}

int loom_arch_split_fused(const loom_arch *arch, const loom_hparams *hp, loom_source *src) {
    /* over the tensors, not the layers: a file may claim 2^30 layers and hold two */
    for (int i = 0; arch->n_splits > 0 && i < loom_source_n_tensors(src); i++) {
        long l;
        const char *rest;
        if (!split_layer(loom_source_tensor(src, i)->name, "blk.", &l, &rest)) continue;
        for (int s = 0; s < arch->n_splits; s++) {
            const loom_split *sp = &arch->splits[s];
            if (strcmp(rest, sp->fused)) continue;
            const loom_weight *w = loom_source_tensor(src, i);
            char fused[96], part[3][96];
            const char *parts[3];
            int64_t rows[3], total = 0;
            snprintf(fused, sizeof fused, "%s", w->name);
            for (int p = 0; p < sp->n_parts; p++) {
                snprintf(part[p], sizeof part[p], "blk.%ld.%s", l, sp->part[p]);
                parts[p] = part[p];
                rows[p] = sp->rows[p] == LOOM_ROWS_Q    ? (int64_t)hp->n_head * hp->head_dim
                          : sp->rows[p] == LOOM_ROWS_KV ? (int64_t)hp->n_head_kv * hp->head_dim
                                                        : hp->n_ff;
                total += rows[p];
            }
            /* a tensor under the fused name with a part's row count is already split (ffn_up) */
            if (w->ndim == 2 && w->ne[0] != total && !strcmp(sp->fused, sp->part[sp->n_parts - 1])) continue;
            if (loom_source_split_rows(src, fused, sp->n_parts, parts, rows) < 0) return -1;
            break;
        }
    }
    return 0;
}
