/* What machine a measurement ran on (loom bench, loom profile), and the achievable memory bandwidth
 * of a backend, measured once and cached. */
#ifndef LOOM_MACHINE_H
#define LOOM_MACHINE_H

#include "backends/backend.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct loom_machine {
    char cpu_model[128]; /* /proc/cpuinfo "model name" ("unknown" when absent) */
    char simd[192];      /* the CPU flags loom's kernels look at, space-separated ("" when none) */
    int n_cpus;          /* logical CPUs online */
    uint64_t mem_bytes;  /* MemTotal from /proc/meminfo, 0 when unknown */
} loom_machine;

void loom_machine_read(loom_machine *mc);

/* Achievable memory bandwidth of `be` in GB/s (bytes read + written per second), measured with the
 * backend's own element-wise kernel streaming 256 MiB tensors (less where the backend's buffers are
 * smaller) through a chain of scale ops (the copy loop every element-wise op uses, so the
 * figure is what a bandwidth-bound node can reach). The result is cached under
 * $XDG_CACHE_HOME/loom/bandwidth.tsv (or ~/.cache/loom/) keyed by `key` (which names the machine
 * and the backend's configuration); a missing or read-only cache just means measuring again.
 * refresh measures even when the cache has a figure (a figure taken on a busy machine is low), and
 * stores the new one, which later lookups prefer. *cached (optional) says whether the figure came
 * from the cache. Returns <= 0 on failure (with an error set). */
double loom_machine_peak_bw(loom_backend *be, const char *key, bool refresh, bool *cached);

/* The cache file's path (for messages), or "" when no cache folder can be named. */
const char *loom_machine_cache_path(void);

#endif
