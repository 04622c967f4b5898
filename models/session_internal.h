/* Session internals for loom's own tools (profile, bench, dump): not part of the public API. */
#ifndef LOOM_SESSION_INTERNAL_H
#define LOOM_SESSION_INTERNAL_H

#include "backends/backend.h"
#include "loom.h"

/* Time every node of each eval (CPU: executor wall time; GPU: timestamps). */
void loom_session_set_profiling(loom_session *s, bool on);
/* The plan of the last eval and, when profiling, its per-node seconds (indexed by node). */
const loom_plan *loom_session_last_plan(const loom_session *s, const double **node_time);
loom_backend *loom_session_backend(const loom_session *s);
int loom_session_n_vocab(const loom_session *s);
/* Bytes of the KV cache buffers it holds now (windowed layers' rings, or full caches). */
size_t loom_session_kv_bytes(const loom_session *s);
/* Context shift (loom run --ctx-shift): hist[0..*n) are the tokens the cache holds; keeps the
 * first n_keep, drops half of the rest (oldest first), shortens hist and *n to match, and
 * re-evaluates them into the reset cache. Returns the number dropped, or -1 with an error. */
int loom_session_ctx_shift(loom_session *s, int32_t *hist, int *n, int n_keep);

#endif
