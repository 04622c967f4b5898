/* Session internals for loom's own tools (profile, bench, dump): not part of the public API. */
#ifndef LOOM_SESSION_INTERNAL_H
#define LOOM_SESSION_INTERNAL_H

#include "../backends/backend.h"
#include "loom.h"

/* Time every node of each eval (CPU: executor wall time; GPU: timestamps). */
void loom_session_set_profiling(loom_session *s, bool on);
/* The plan of the last eval and, when profiling, its per-node seconds (indexed by node). */
const loom_plan *loom_session_last_plan(const loom_session *s, const double **node_time);
loom_backend *loom_session_backend(const loom_session *s);

#endif
