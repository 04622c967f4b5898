/* The loom command's subcommands, one file each (tools/cmd_NAME.c). */
#ifndef LOOM_COMMANDS_H
#define LOOM_COMMANDS_H

#include "loom.h"

#include <stdbool.h>
#include <stdio.h>

typedef struct loom_command {
    const char *name;
    const char *summary;
    int (*main)(int argc, char **argv); /* argv[0] is the subcommand name */
} loom_command;

int cmd_run(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_devices(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* Options every model command accepts, parsed by tools/common.c. */
typedef struct loom_common_opts {
    const char *model;   /* -m */
    const char *device;  /* --device cpu|vulkan|vulkan:N|auto */
    int n_threads;       /* -t */
    int n_ctx;           /* --ctx */
    bool scalar;         /* --scalar (or LOOM_SCALAR=1) */
    bool check_tensors;  /* --check-tensors (or LOOM_CHECK_TENSORS=1): scan the weights for NaN/Inf */
} loom_common_opts;

void loom_common_defaults(loom_common_opts *o);
/* Every command parses its options with a table (tools/options.h). */
/* Load -m (or the bundled model); on failure print "loom CMD: why" and return NULL. */
struct loom_model *loom_open_model(const char *cmd, const loom_common_opts *co);
/* The model used when -m is omitted: the bundled stories260K. */
const char *loom_default_model(void);
/* The model to open: -m, or loom_default_model() (every model command's rule, in one place). */
const char *loom_model_path(const loom_common_opts *co);
/* loom_session_default_opts() with --device, -t and --ctx applied: the start of every command's
 * session options (a command may then change n_ctx or set its own flags). */
loom_session_opts loom_common_session_opts(const loom_common_opts *co);
/* Parse a whole int (in [lo, hi]), printing an error naming the option when invalid (list values). */
int loom_parse_int(const char *opt, const char *s, long lo, long hi, long *out);

/* A growing byte string (NUL-terminated for convenience). */
typedef struct loom_textbuf {
    char *s;
    size_t len, cap;
} loom_textbuf;
int loom_textbuf_add(loom_textbuf *b, const char *p, size_t n); /* 0, or -1 when out of memory */
void loom_textbuf_free(loom_textbuf *b);

/* Stop strings over generated text (loom run --stop, loom serve's "stop"): text[0..len) was
 * extended from `from` on. Returns the index of the stop string that occurs first (looking only
 * at matches that end past `from`) and its position in *cut (= *safe); else -1, *cut = len, and
 * *safe = the length that may be shown now: a tail that could still become a stop string is held
 * back. */
int loom_stop_scan(const char *text, size_t len, size_t from, const char *const *stops, int n, size_t *cut, size_t *safe);

/* loom's version (the project version in CMakeLists.txt). */
#ifndef LOOM_VERSION
#define LOOM_VERSION "unknown"
#endif

#endif
