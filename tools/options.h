/* Command-line options as data (issue 14 item 6): one table per command drives parsing, the
 * validation messages and --help, so the help cannot drift from the code. A table entry names the
 * option (and its aliases), its value type and range, the variable it sets and one help line; the
 * variable's value before parsing is the default that --help prints. */
#ifndef LOOM_OPTIONS_H
#define LOOM_OPTIONS_H

#include "tools/commands.h"

#include <stdbool.h>
#include <stdio.h>

typedef enum loom_opt_type {
    LOOM_OPT_FLAG,  /* bool *: set to true */
    LOOM_OPT_INT,   /* long *: a whole number in [lo, hi] */
    LOOM_OPT_NUM,   /* double *: a finite number in [lo, hi] */
    LOOM_OPT_STR,   /* const char **: the argument as it is */
    LOOM_OPT_LIST,  /* const char *[hi]: repeatable; *count says how many were given */
    LOOM_OPT_CHOICE, /* const char **: one of the words in choices ("f16|bf16|f32") */
    LOOM_OPT_ARGS,  /* const char *[hi]: the positional arguments (names is NULL; arg names them in
                       --help); at least lo of them, at most hi */
    LOOM_OPT_SECTION, /* no option: a heading in --help (help holds the text) */
    LOOM_OPT_INCLUDE, /* no option: the rows of another table (dst: const loom_opt *) */
} loom_opt_type;

typedef struct loom_opt {
    const char *names;  /* "-n" or "-p|--prompt": the first is the one shown */
    loom_opt_type type;
    const char *arg;    /* the value's name in --help ("N", "TEXT"); NULL for flags */
    const char *help;   /* one line; "\n" starts a continuation line */
    double lo, hi;      /* INT and NUM: the accepted range; LIST: hi is the capacity */
    void *dst;
    int *count;         /* LIST, ARGS */
    bool no_default;    /* do not print the variable's value as the default */
    const char *choices; /* CHOICE: the accepted words, "|" between them */
} loom_opt;

/* Table rows written with designated initializers ({.names = "-n", .type = LOOM_OPT_INT, ...});
 * a heading and the end: */
#define LOOM_OPT_HEADING(text) {.type = LOOM_OPT_SECTION, .help = (text)}
#define LOOM_OPT_END {.names = NULL}

/* Parse argv[1..argc) (argv[0] is the command) against opts, terminated by an entry with names
 * NULL, and, when co is not NULL, the options every model command takes (-m, --device, -t, --ctx,
 * --scalar). Returns -1 to go on; otherwise the exit code the command should return: 0 after
 * --help (usage on stdout), 2 for an unknown option, a missing value, a value out of range or a
 * wrong number of positional arguments (one line on stderr naming the option and the value).
 * With LOOM_OPTS_LIST=1 in the environment it prints every option name of the table, aliases
 * included, one per line as "NAME<tab>TYPE" (flag, int, num, str, list, choice; the positional
 * arguments as "ARGS-NAMES<tab>args"), and returns 0: the options_help test checks each against
 * --help, and the bad values of each type. */
int loom_opts_parse(const char *cmd, const char *synopsis, const char *about, const loom_opt *opts, loom_common_opts *co,
                    int argc, char **argv);
/* The usage text: synopsis, about, then every option with its value, help and default. */
void loom_opts_usage(FILE *f, const char *cmd, const char *synopsis, const char *about, const loom_opt *opts, bool common);

/* The sampling options run and chat share (one set of rows, one conversion): fill a's defaults,
 * then loom_sampling_rows(rows, &a) and put {.type = LOOM_OPT_INCLUDE, .dst = rows} in the table. */
typedef struct loom_sampling_args {
    double temp, top_p, min_p, rep, freq, pres;
    long top_k, last_n, seed;
} loom_sampling_args;
#define LOOM_SAMPLING_ROWS 11
void loom_sampling_rows(loom_opt *rows, loom_sampling_args *a); /* rows[LOOM_SAMPLING_ROWS] */
loom_sampler_opts loom_sampling_opts(const loom_sampling_args *a);

#endif
