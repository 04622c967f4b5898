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
/* Copy n_rows cache rows from row `row` of state slot `slot` (2l: layer l's K, 2l+1: its V) to the
 * host (tests). */
int loom_session_read_state(const loom_session *s, int slot, int row, int n_rows, float *dst);
/* Forget the tokens past the first n of a single-sequence cache (no rings), keeping rows 0..n-1:
 * loom bench -d times each run after the same prefilled depth without prefilling it again. */
int loom_session_truncate(loom_session *s, int n);
/* Context shift (loom run --ctx-shift): hist[0..*n) are the tokens the cache holds; keeps the
 * first n_keep, drops half of the rest (oldest first), shortens hist and *n to match, and moves
 * the cache rows that stay down, re-rotating their keys (loom_session_shift_rotates), or else
 * re-evaluates them into the reset cache. Evaluate the next token before reading logits (after a
 * rotation they are still the last eval's). Returns the number dropped, or -1 with an error.
 * Single-sequence sessions only. */
int loom_session_ctx_shift(loom_session *s, int32_t *hist, int *n, int n_keep);
/* Whether loom_session_ctx_shift re-rotates cached keys (every loom_build_decoder family, unless
 * LOOM_CTX_SHIFT=reeval) rather than re-evaluating the kept tokens. */
bool loom_session_shift_rotates(const loom_session *s);

#endif
