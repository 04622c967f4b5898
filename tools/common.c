/* Option parsing shared by the subcommands. */
#include "tools/commands.h"

#include "loom.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void loom_common_defaults(loom_common_opts *o) {
    memset(o, 0, sizeof *o);
    o->device = "auto";
    const char *env = getenv("LOOM_SCALAR");
    o->scalar = env && *env && strcmp(env, "0");
}

int loom_parse_int(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "loom: %s expects an integer in [%ld, %ld], got '%s'\n", opt, lo, hi, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

const char *loom_model_path(const loom_common_opts *co) { return co->model ? co->model : loom_default_model(); }

loom_session_opts loom_common_session_opts(const loom_common_opts *co) {
    loom_session_opts so = loom_session_default_opts();
    so.device = co->device;
    so.n_threads = co->n_threads;
    so.n_ctx = co->n_ctx;
    return so;
}

loom_model *loom_open_model(const char *cmd, const loom_common_opts *co) {
    loom_model *m = loom_model_load(loom_model_path(co));
    if (!m) fprintf(stderr, "loom %s: %s\n", cmd, loom_last_error());
    return m;
}

/* The bundled model: weights/stories260K.gguf next to the source tree, or installed beside the
 * binary (LOOM_DEFAULT_MODEL overrides both). */
const char *loom_default_model(void) {
    const char *env = getenv("LOOM_DEFAULT_MODEL");
    if (env && *env) return env;
    static char path[PATH_MAX];
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        const char *rel[] = {"/../weights/stories260K.gguf", "/weights/stories260K.gguf",
                             "/../share/loom/stories260K.gguf"};
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
            snprintf(path, sizeof path, "%s%s", exe, rel[i]);
            if (access(path, R_OK) == 0) return path;
        }
    }
#ifdef LOOM_SOURCE_DIR
    snprintf(path, sizeof path, "%s/weights/stories260K.gguf", LOOM_SOURCE_DIR);
    return path;
#else
    return "weights/stories260K.gguf";
#endif
}

int loom_textbuf_add(loom_textbuf *b, const char *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) return -1;
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = 0;
    return 0;
}

void loom_textbuf_free(loom_textbuf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

int loom_stop_scan(const char *text, size_t len, size_t from, const char *const *stops, int n, size_t *cut, size_t *safe) {
    int hit = -1;
    size_t at = len;
    for (int k = 0; k < n; k++) {
        size_t sl = strlen(stops[k]);
        if (!sl || len < sl) continue;
        /* a match must end past `from`: earlier text was scanned before */
        for (size_t p = from >= sl ? from - sl + 1 : 0; p + sl <= len && p < at; p++)
            if (!memcmp(text + p, stops[k], sl)) {
                at = p;
                hit = k;
                break;
            }
    }
    if (hit >= 0) {
        *cut = *safe = at;
        return hit;
    }
    /* hold back the longest tail that is the start of a stop string */
    size_t hold = 0;
    for (int k = 0; k < n; k++) {
        size_t sl = strlen(stops[k]);
        for (size_t h = sl ? sl - 1 : 0; h > hold; h--)
            if (h <= len && !memcmp(text + len - h, stops[k], h)) {
                hold = h;
                break;
            }
    }
    *cut = len;
    *safe = len - hold;
    return -1;
}
