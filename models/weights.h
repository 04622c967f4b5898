/* A model's weights on a backend: the buffers every run of its plans reads, in the two tables a
 * WEIGHT node's binding indexes (graph/graph.h: the checkpoint's tensors and the model's computed
 * ones). One copy for sessions and `loom diff`. */
#ifndef LOOM_WEIGHTS_H
#define LOOM_WEIGHTS_H

#include "backends/backend.h"
#include "models/model.h"

/* The tensors m computes at load instead of reading them (LOOM_WEIGHT_COMPUTED, ids 0..n-1):
 * Llama-3 RoPE factors from config.json, when the checkpoint has no rope_freqs.weight. */
int loom_model_n_computed(const loom_model *m);
const loom_weight *loom_model_computed(const loom_model *m, int id);

typedef struct loom_weight_bufs {
    loom_buffer **file;     /* LOOM_WEIGHT_FILE, by loom_weight.id */
    int n_file;
    loom_buffer **computed; /* LOOM_WEIGHT_COMPUTED, by loom_weight.id */
    int n_computed;
} loom_weight_bufs;

/* Put every weight of m on be (the CPU wraps the mapped bytes, a GPU uploads), calling
 * progress(ud, done, total) in checkpoint bytes after each when given. Returns 0, or -1 with an
 * error naming the file, the weight and `device`; what was put there is freed. */
int loom_weights_upload(loom_weight_bufs *wb, loom_backend *be, const loom_model *m, const char *device,
                        void (*progress)(void *ud, size_t done, size_t total), void *ud);
void loom_weights_free(loom_weight_bufs *wb, loom_backend *be);
/* Point a run's weight tables at wb. */
void loom_weights_bind(const loom_weight_bufs *wb, loom_exec_ctx *x);

#endif
