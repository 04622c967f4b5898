/* A model's weights on a backend (weights.h). */
#include "models/weights.h"

#include "core/util.h"
#include "formats/source.h"

#include <stdlib.h>

int loom_model_n_computed(const loom_model *m) { return m->rope_factors ? 1 : 0; }

const loom_weight *loom_model_computed(const loom_model *m, int id) {
    return id == 0 && m->rope_factors ? &m->rope_factors_w : NULL;
}

static int put(loom_backend *be, const loom_model *m, const loom_weight *w, const char *device, loom_buffer **out) {
    if ((*out = be->ops->buf_from_host(be, w->data, w->nbytes))) return 0;
    loom_err_prefix("%s: loading weight '%s' (%zu bytes) onto %s", loom_source_path(m->src), w->name, w->nbytes, device);
    return -1;
}

int loom_weights_upload(loom_weight_bufs *wb, loom_backend *be, const loom_model *m, const char *device,
                        void (*progress)(void *ud, size_t done, size_t total), void *ud) {
    *wb = (loom_weight_bufs){0};
    int n = loom_source_n_tensors(m->src), nc = loom_model_n_computed(m);
    if (!(wb->file = loom_calloc((size_t)n + 1, sizeof *wb->file)) ||
        !(wb->computed = loom_calloc((size_t)nc + 1, sizeof *wb->computed))) {
        loom_weights_free(wb, be);
        return -1;
    }
    wb->n_file = n, wb->n_computed = nc;
    size_t total = 0, done = 0;
    for (int i = 0; i < n; i++) total += loom_source_tensor(m->src, i)->nbytes;
    for (int i = 0; i < n; i++) {
        const loom_weight *w = loom_source_tensor(m->src, i);
        if (put(be, m, w, device, &wb->file[i]) < 0) goto fail;
        done += w->nbytes;
        if (progress) progress(ud, done, total);
    }
    for (int i = 0; i < nc; i++)
        if (put(be, m, loom_model_computed(m, i), device, &wb->computed[i]) < 0) goto fail;
    return 0;
fail:
    loom_weights_free(wb, be);
    return -1;
}

void loom_weights_free(loom_weight_bufs *wb, loom_backend *be) {
    for (int i = 0; wb->file && i < wb->n_file; i++)
        if (wb->file[i]) be->ops->buf_free(be, wb->file[i]);
    for (int i = 0; wb->computed && i < wb->n_computed; i++)
        if (wb->computed[i]) be->ops->buf_free(be, wb->computed[i]);
    free(wb->file);
    free(wb->computed);
    *wb = (loom_weight_bufs){0};
}

void loom_weights_bind(const loom_weight_bufs *wb, loom_exec_ctx *x) {
    x->weights = wb->file;
    x->n_weights = wb->n_file;
    x->computed = wb->computed;
    x->n_computed = wb->n_computed;
}
