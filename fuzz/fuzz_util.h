/* Shared by the fuzz targets: inputs as files (a memfd or a private temp folder), multi-file
 * inputs split on a separator, the "a failure always has a message" rule, touching every byte a
 * loader hands out, and exercising a loaded tokenizer. */
#ifndef LOOM_FUZZ_UTIL_H
#define LOOM_FUZZ_UTIL_H

#include "formats/gguf.h"
#include "loom.h"
#include "tokenizer/tokenizer.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Separates the files of one input (config.json, model.safetensors, ...); fuzz/make_seeds.py too. */
#define FZ_SEP "\n#loom-fuzz-part#\n"
#define FZ_MAX_PARTS 4

/* A broken rule is a crash, so libFuzzer keeps the input. */
#define FZ_ASSERT(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz: %s:%d: %s: ", __FILE__, __LINE__, #cond);                       \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Every loader failure leaves a message naming the problem. */
static inline void fz_failed(const char *what) {
    const char *e = loom_last_error();
    FZ_ASSERT(e && *e, "%s failed without an error message", what);
}

/* Input as a file without touching the disk: one memfd, rewritten for every input. */
static inline const char *fz_memfd_path(const uint8_t *d, size_t n) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("loom-fuzz", 0);
        FZ_ASSERT(fd >= 0, "memfd_create");
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    /* overwrite, then cut to n: truncating to 0 first freed and re-allocated every page */
    FZ_ASSERT((n == 0 || pwrite(fd, d, n, 0) == (ssize_t)n) && ftruncate(fd, (off_t)n) == 0, "memfd write");
    return path;
}

/* A private folder for multi-file inputs, removed at exit. */
static char fz_dir[256];
static int fz_rm(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void fz_cleanup(void) {
    if (fz_dir[0]) nftw(fz_dir, fz_rm, 8, FTW_DEPTH | FTW_PHYS);
}
static inline const char *fz_tmpdir(void) {
    if (!fz_dir[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fz_dir, sizeof fz_dir, "%s/loom-fuzz-XXXXXX", base);
        FZ_ASSERT(mkdtemp(fz_dir), "mkdtemp %s", fz_dir);
        atexit(fz_cleanup);
    }
    return fz_dir;
}

/* Write (or, with p == NULL, remove) fz_dir/name; returns the path (static, per name slot). */
static inline const char *fz_file(int slot, const char *name, const uint8_t *p, size_t n) {
    static char paths[FZ_MAX_PARTS + 1][512];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", fz_tmpdir(), name);
    if (!p) {
        unlink(paths[slot]);
        return paths[slot];
    }
    int fd = open(paths[slot], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FZ_ASSERT(fd >= 0, "open %s", paths[slot]);
    FZ_ASSERT(n == 0 || write(fd, p, n) == (ssize_t)n, "write %s", paths[slot]);
    close(fd);
    return paths[slot];
}

/* Split on FZ_SEP into at most FZ_MAX_PARTS parts; returns the count. */
static inline int fz_split(const uint8_t *d, size_t n, const uint8_t **part, size_t *len) {
    const size_t sl = sizeof FZ_SEP - 1;
    int k = 0;
    while (k < FZ_MAX_PARTS - 1) {
        const uint8_t *s = memmem(d, n, FZ_SEP, sl);
        if (!s) break;
        part[k] = d, len[k] = (size_t)(s - d), k++;
        n -= (size_t)(s - d) + sl, d = s + sl;
    }
    part[k] = d, len[k] = n;
    return k + 1;
}

/* Read every byte (ASan and the mapping's bounds see each one). */
static volatile uint8_t fz_sink;
static inline void fz_touch(const void *p, size_t n) {
    const uint8_t *b = p;
    uint8_t x = 0;
    for (size_t i = 0; i < n; i++) x ^= b[i];
    fz_sink = x;
}

/* Use a tokenizer the way the tools do: encode, decode, stream, per-token queries, GGUF export. */
static inline void fz_exercise_tokenizer(const loom_tokenizer *t) {
    static const char *texts[] = {"Hello world! 123 4567 \xc3\xb1 \xe6\x97\xa5\xe6\x9c\xac\n\t  x",
                                  "<s> <|im_start|>user\n<|endoftext|></s><|eot_id|> ' s'll", ""};
    int nv = loom_tokenizer_n_vocab(t);
    FZ_ASSERT(nv > 0, "a tokenizer with %d tokens", nv);
    for (size_t k = 0; k < sizeof texts / sizeof *texts; k++) {
        for (unsigned flags = 0; flags < 4; flags++) {
            int32_t *ids = NULL;
            int n = loom_tokenizer_encode(t, texts[k], strlen(texts[k]), flags, &ids);
            if (n < 0) {
                fz_failed("encode");
                continue;
            }
            for (int i = 0; i < n; i++) FZ_ASSERT(ids[i] >= 0 && ids[i] < nv, "encode gave id %d of %d", ids[i], nv);
            size_t len;
            char *s = loom_tokenizer_decode(t, ids, (size_t)n, flags & 2 ? LOOM_TOK_SKIP_SPECIAL : 0, &len);
            FZ_ASSERT(s, "decode of encode's ids failed: %s", loom_last_error());
            fz_touch(s, len);
            free(s);
            loom_tokenizer_stream *st = loom_tokenizer_stream_new(t, 0);
            for (int i = 0; st && i < n; i++) {
                const char *p = loom_tokenizer_stream_put(st, ids[i], &len);
                if (p) fz_touch(p, len);
            }
            if (st) {
                const char *p = loom_tokenizer_stream_finish(st, &len);
                if (p) fz_touch(p, len);
            }
            loom_tokenizer_stream_free(st);
            free(ids);
        }
    }
    int32_t probe[] = {0, 1, 2, nv / 2, nv - 1, nv, -1, loom_tokenizer_bos(t), loom_tokenizer_eos(t)};
    for (size_t i = 0; i < sizeof probe / sizeof *probe; i++) {
        size_t len;
        const char *p = loom_tokenizer_piece(t, probe[i], &len);
        if (p) fz_touch(p, len);
        size_t tl;
        const char *tt = loom_tokenizer_token_text(t, probe[i], &tl);
        if (tt) {
            fz_touch(tt, tl);
            /* ids missing from a tokenizer.json vocabulary are unused holes with no text */
            if (tl) FZ_ASSERT(loom_tokenizer_find(t, tt, tl) >= 0, "token text '%.*s' not found", (int)tl, tt);
        }
        (void)loom_tokenizer_token_type(t, probe[i]);
        (void)loom_tokenizer_is_special(t, probe[i]);
        (void)loom_tokenizer_is_eog(t, probe[i]);
    }
    const char *tpl = loom_tokenizer_chat_template(t);
    if (tpl) fz_touch(tpl, strlen(tpl));
    (void)loom_tokenizer_wants_bos(t);
    fz_touch(loom_tokenizer_kind(t), strlen(loom_tokenizer_kind(t)));
    gguf_writer *w = gguf_writer_new();
    if (w && loom_tokenizer_to_gguf(t, w, true) < 0) fz_failed("tokenizer to GGUF");
    gguf_writer_free(w);
}

#endif
