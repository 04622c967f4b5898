/* Loading a model: open the checkpoint, find its model file, read hyper-parameters, check weights. */
#include "models/model.h"

#include "core/qblock.h"
#include "core/util.h"
#include "tokenizer/chat.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    const char *ct = getenv("LOOM_CHECK_TENSORS"); /* loom --check-tensors */
    if (ct && *ct && strcmp(ct, "0") && loom_model_check_tensors(m) < 0) goto fail;
    return m;
fail:
    loom_model_free(m);
    return NULL;
}

int loom_model_check_tensors(const loom_model *m) {
    float *row = NULL;
    int rc = 0;
    for (int i = 0; !rc && i < loom_source_n_tensors(m->src); i++) {
        const loom_weight *w = loom_source_tensor(m->src, i);
        bool quant = loom_dtype_is_quant(w->type);
        if (!quant && w->type != LOOM_F32 && w->type != LOOM_F16 && w->type != LOOM_BF16) continue;
        int64_t k = w->ndim ? w->ne[w->ndim - 1] : 1, numel = 1;
        for (int d = 0; d < w->ndim; d++) numel *= w->ne[d];
        size_t row_bytes = loom_dtype_nbytes(w->type, k);
        if (k <= 0 || !row_bytes) continue;
        free(row);
        if (!(row = loom_malloc((size_t)k * sizeof *row))) return -1;
        for (int64_t r = 0; !rc && r < numel / k; r++) {
            const char *src = (const char *)w->data + (size_t)r * row_bytes;
            if (quant) loom_dequant_row(w->type, src, row, k);
            else loom_to_f32(row, src, w->type, (size_t)k);
            for (int64_t c = 0; c < k; c++) {
                if (isfinite(row[c])) continue;
                rc = loom_err("%s: tensor '%s' holds %s at row %lld, column %lld (--check-tensors)",
                              loom_source_path(m->src), w->name, isnan(row[c]) ? "NaN" : row[c] > 0 ? "+inf" : "-inf",
                              (long long)r, (long long)c);
                break;
            }
        }
    }
    free(row);
    return rc;
}

void loom_model_free(loom_model *m) {
    if (!m) return;
    loom_source_close(m->src);
    free(m->rope_factors);
    free(m);
}

const char *loom_model_chat_family(const loom_model *m) {
    return !m ? NULL : m->arch->chat_format ? m->arch->chat_format : m->arch->name;
}

/* The public chat API (include/loom.h) lives here: the format depends on the model's family. */
const char *loom_chat_format_of(const loom_model *m, const loom_tokenizer *t) {
    return loom_chat_format_name(loom_chat_detect_tok(t, loom_model_chat_family(m)));
}

char *loom_chat_apply(const loom_model *m, const loom_tokenizer *t, const loom_chat_message *msgs, size_t n) {
    return loom_chat_render(loom_chat_detect_tok(t, loom_model_chat_family(m)), msgs, n);
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
