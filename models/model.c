/* Loading a model: open the checkpoint, find its model file, read hyper-parameters, check weights. */
#include "models/model.h"

#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Llama 3 scaling from config.json: the frequency divisors as a weight the graph reads, like the
 * rope_freqs.weight tensor a GGUF carries. */
static int llama3_factors(loom_model *m) {
    int n = m->hp.head_dim / 2;
    m->rope_factors = loom_malloc((size_t)n * sizeof(float));
    if (!m->rope_factors) return -1;
    loom_llama3_rope_factors(&m->hp, m->rope_factors);
    loom_weight *w = &m->rope_factors_w;
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "rope_freqs.weight");
    w->type = LOOM_F32;
    w->ndim = 1;
    w->ne[0] = n;
    w->data = m->rope_factors;
    w->nbytes = (size_t)n * sizeof(float);
    w->kind = LOOM_WEIGHT_COMPUTED;
    w->id = 0; /* the only computed weight (loom_model_computed) */
    m->rope_freqs = w;
    return 0;
}

loom_model *loom_model_load(const char *path) {
    loom_err_clear();
    loom_model *m = loom_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->src = loom_arch_open(path, &m->arch, &m->hp);
    if (!m->src || loom_arch_split_fused(m->arch, &m->hp, m->src) < 0) goto fail;
    const loom_weight *rf = loom_source_find(m->src, "rope_freqs.weight");
    if (rf) {
        if (rf->ndim != 1 || rf->ne[0] != m->hp.head_dim / 2 || rf->type != LOOM_F32) {
            loom_err("%s: rope_freqs.weight must be f32 [%d]", path, m->hp.head_dim / 2);
            goto fail;
        }
        m->rope_freqs = rf;
    } else if (m->hp.rope_scaling == LOOM_ROPE_SCALING_LLAMA3 && llama3_factors(m) < 0) {
        goto fail;
    }
    if (loom_model_validate(m) < 0) goto fail;
    return m;
fail:
    loom_model_free(m);
    return NULL;
}

void loom_model_free(loom_model *m) {
    if (!m) return;
    loom_source_close(m->src);
    free(m->rope_factors);
    free(m);
}

loom_model_info loom_model_get_info(const loom_model *m) {
    const loom_hparams *hp = &m->hp;
    loom_model_info info = {
        .arch = m->arch->name, .n_vocab = hp->n_vocab, .n_embd = hp->n_embd, .n_layer = hp->n_layer,
        .n_head = hp->n_head, .n_head_kv = hp->n_head_kv, .head_dim = hp->head_dim, .n_ff = hp->n_ff,
        .n_ctx_train = hp->n_ctx_train, .bos_id = hp->bos_id, .eos_id = hp->eos_id,
    };
    size_t by_type[LOOM_DTYPE_COUNT] = {0};
    for (int i = 0; i < loom_source_n_tensors(m->src); i++) {
        const loom_weight *w = loom_source_tensor(m->src, i);
        info.weight_bytes += w->nbytes;
        if (w->type >= 0 && w->type < LOOM_DTYPE_COUNT) by_type[w->type] += w->nbytes;
    }
    for (int t = 0; t < LOOM_DTYPE_COUNT; t++)
        if (by_type[t] > by_type[info.weight_type]) info.weight_type = (loom_dtype)t;
    return info;
}
