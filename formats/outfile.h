/* Output files the writers replace (GGUF from convert, synth and quantize).
 *
 * A file is written as a temporary file next to its target and renamed over it, so nothing the user
 * had is lost when a write fails. These helpers keep that safe at the edges:
 *  - the target is the path with every symlink followed (a link OUT keeps pointing at the file it
 *    named, which gets the new contents); an existing target that is not a regular file (a device, a
 *    FIFO, a directory) is refused, never replaced;
 *  - temporary files are locked (flock) while written and removed on SIGINT, SIGTERM and SIGHUP
 *    (the signal is then re-raised with the previous disposition); a temporary file left by a
 *    process that died anyway (SIGKILL, power loss) is unlocked and removed by the next write of
 *    the same target.
 */
#ifndef LOOM_OUTFILE_H
#define LOOM_OUTFILE_H

#include <stdbool.h>

/* The file to replace for `path` (symlinks followed; malloc'd), or NULL with an error naming
 * `path` when it exists and is not a regular file, or its links do not resolve. */
char *out_target(const char *path);

/* Remove `target`.tmp-XXXXXX files no live process holds (left by a killed writer). */
void out_sweep_stale(const char *target);

/* Create, lock and register `target`.tmp-XXXXXX (0666 & ~umask); the fd, with *tmp malloc'd, or -1
 * with an error. */
int out_tmp_create(const char *target, char **tmp);

/* Keep `path` (any file) on the list removed on SIGINT/SIGTERM/SIGHUP; a slot, or -1 when full. */
int out_hold(const char *path);
/* Take a slot off that list (the file itself is left alone); -1 is ignored. */
void out_release(int slot);

#endif
