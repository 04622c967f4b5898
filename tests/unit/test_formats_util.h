/* Helpers shared by the test_formats_*.c tests (and test_rel_*): fixtures, temp dirs, file bytes.
 * Everything is static inline, so a test that uses only some of it compiles without warnings. */
#ifndef LOOM_TEST_FORMATS_UTIL_H
#define LOOM_TEST_FORMATS_UTIL_H

#include "formats/source.h"
#include "tests/unit/check.h"
#include "loom.h"

#include <cjson/cJSON.h>
#include <ftw.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tf_fixtures[1024];
static char tf_tmp[1024];

/* LOOM_FIXTURES and a fresh temp dir; exits (test fails) when the fixtures are missing. */
static inline void tf_init(void) {
    const char *f = getenv("LOOM_FIXTURES");
    if (!f || !*f) {
        fprintf(stderr, "LOOM_FIXTURES is not set\n");
        exit(1);
    }
    snprintf(tf_fixtures, sizeof tf_fixtures, "%s", f);
    const char *t = getenv("TMPDIR");
    snprintf(tf_tmp, sizeof tf_tmp, "%s/loom-formats-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tf_tmp)) {
        perror("mkdtemp");
        exit(1);
    }
}

static inline int tf_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static inline void tf_cleanup(void) { nftw(tf_tmp, tf_rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* Static path buffers (rotating, so a few can be live at once). */
static inline const char *tf_path(const char *base, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline const char *tf_path(const char *base, const char *fmt, ...) {
    static char bufs[8][1024];
    static int k;
    char *b = bufs[k++ & 7];
    int n = snprintf(b, 1024, "%s/", base);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b + n, 1024 - (size_t)n, fmt, ap);
    va_end(ap);
    return b;
}
#define FIX(...) tf_path(tf_fixtures, __VA_ARGS__)
#define TMP(...) tf_path(tf_tmp, __VA_ARGS__)

/* A whole file (NUL-terminated past *n), or NULL; test_rel_fuzz_regress uses it too. */
static inline uint8_t *tf_read(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)sz + 1);
    if (p && fread(p, 1, (size_t)sz, f) != (size_t)sz) {
        free(p);
        p = NULL;
    }
    if (p) p[sz] = 0; /* as promised above */
    fclose(f);
    if (p) p[sz] = 0; /* as promised above: test_rel_inputs strstr()s these */
    *n = (size_t)sz;
    return p;
}

static inline int tf_write(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}

static inline int tf_write_str(const char *path, const char *s) { return tf_write(path, s, strlen(s)); }

/* A HF dir TMP(dir) with a fixture's weights (symlinked) and its config.json edited by `edit`. */
static inline void tf_hf_with_config(const char *dir, const char *fixture, void (*edit)(cJSON *)) {
    char p[1100], src[1100];
    snprintf(p, sizeof p, "%s/%s", tf_tmp, dir);
    mkdir(p, 0755);
    snprintf(src, sizeof src, "%s/%s/model.safetensors", tf_fixtures, fixture);
    snprintf(p, sizeof p, "%s/%s/model.safetensors", tf_tmp, dir);
    if (symlink(src, p) != 0) perror("symlink");
    cJSON *c = loom_json_read(FIX("%s/config.json", fixture));
    edit(c);
    char *txt = cJSON_Print(c);
    tf_write_str(TMP("%s/config.json", dir), txt);
    free(txt);
    cJSON_Delete(c);
}

/* A call that must fail: NULL/-1, with an error message naming `name`. */
#define CHECK_FAILS(ok, name, what)                                                                \
    do {                                                                                           \
        const char *e_ = loom_last_error();                                                        \
        CHECK(!(ok), "%s: expected a failure", what);                                              \
        CHECK(strstr(e_, name) != NULL, "%s: message '%s' does not name '%s'", what, e_, name);    \
        if (getenv("LOOM_TEST_VERBOSE")) fprintf(stderr, "  [%s] %s\n", what, e_);                 \
    } while (0)

static inline void tf_put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void tf_put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint64_t tf_get_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Write a safetensors file from entries (data_offsets in order); the header is padded with spaces
 * to 8 bytes as the HF writer does, plus `extra` spaces (to make misaligned data). */
typedef struct { const char *name, *dtype; int ndim; int64_t shape[4]; const void *data; size_t nbytes; } tf_st_entry;

static inline int tf_st_write(const char *path, const tf_st_entry *e, int n, int extra) {
    size_t cap = 4096 + (size_t)n * 256, len = 0, off = 0, total = 0;
    char *h = malloc(cap);
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", e[i].name, e[i].dtype);
        for (int d = 0; d < e[i].ndim; d++)
            len += (size_t)snprintf(h + len, cap - len, "%s%lld", d ? "," : "", (long long)e[i].shape[d]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off, off + e[i].nbytes);
        off += e[i].nbytes;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while ((8 + len) % 8) h[len++] = ' ';
    for (int i = 0; i < extra; i++) h[len++] = ' ';
    total = off;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(h);
        return -1;
    }
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(h, 1, len, f);
    for (int i = 0; i < n; i++)
        if (e[i].nbytes) fwrite(e[i].data, 1, e[i].nbytes, f);
    (void)total;
    free(h);
    return fclose(f);
}

#endif
