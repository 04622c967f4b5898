#include "core/util.h"

#include "core/qblock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char err_buf[1024];

const char *loom_last_error(void) { return err_buf; }

void loom_err_clear(void) { err_buf[0] = 0; }

int loom_err(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return -1;
}

void *loom_err_null(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return NULL;
}

void loom_err_prefix(const char *fmt, ...) {
    char prefix[512], old[sizeof err_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, sizeof old);
    snprintf(err_buf, sizeof err_buf, "%.400s: %.600s", prefix, old);
}

void *loom_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) loom_err("out of memory allocating %zu bytes", n);
    return p;
}

void *loom_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) loom_err("out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *loom_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) loom_err("out of memory growing a buffer to %zu bytes", n);
    return q;
}

void *loom_malloc_aligned(size_t n) {
    void *p = NULL;
    size_t rounded = (n + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0) {
        loom_err("out of memory allocating %zu bytes", n);
        return NULL;
    }
    return p;
}

void loom_free_aligned(void *p) { free(p); }

const char *loom_dtype_name(loom_dtype t) {
    switch (t) {
    case LOOM_F32: return "f32";
    case LOOM_F16: return "f16";
    case LOOM_BF16: return "bf16";
    case LOOM_I32: return "i32";
    case LOOM_Q8_0: return "q8_0";
    case LOOM_Q4_0: return "q4_0";
    case LOOM_Q4_K: return "q4_K";
    case LOOM_Q6_K: return "q6_K";
    default: return "?";
    }
}

size_t loom_dtype_size(loom_dtype t) {
    switch (t) {
    case LOOM_F32: return 4;
    case LOOM_F16: return 2;
    case LOOM_BF16: return 2;
    case LOOM_I32: return 4;
    default: return 0;
    }
}

float loom_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t loom_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    int32_t exp = (int32_t)((u >> 23) & 0xff);
    uint32_t man = u & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    int32_t e = exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++; /* may carry into the exponent: correct */
    return (uint16_t)half;
}

void loom_to_f32(float *dst, const void *src, loom_dtype t, size_t n) {
    switch (t) {
    case LOOM_F32: memcpy(dst, src, n * 4); break;
    case LOOM_F16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = loom_f16_to_f32(s[i]);
        break;
    }
    case LOOM_BF16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = loom_bf16_to_f32(s[i]);
        break;
    }
    case LOOM_I32: {
        const int32_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        break;
    }
    case LOOM_Q8_0:
    case LOOM_Q4_0:
    case LOOM_Q4_K:
    case LOOM_Q6_K: loom_dequant_row(t, src, dst, (int64_t)n); break;
    default: break;
    }
}

double loom_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void loom_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

int loom_open_regular(const char *path) {
    /* O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a writer */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return loom_err("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int dir = S_ISDIR(st.st_mode), fifo = S_ISFIFO(st.st_mode), chr = S_ISCHR(st.st_mode);
        close(fd);
        return loom_err("%s: not a regular file%s", path,
                        dir ? " (a directory)" : fifo ? " (a FIFO)" : chr ? " (a character device)" : "");
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

FILE *loom_fopen_regular(const char *path) {
    int fd = loom_open_regular(path);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return loom_err_null("%s: cannot open: %s", path, strerror(errno));
    }
    return f;
}

/* ---- SIGBUS on a mapped file ------------------------------------------------------------------ */

#define MAP_NOTES 64
static struct { const char *volatile addr; size_t len; char path[512]; } map_notes[MAP_NOTES];

void loom_map_note(const void *addr, size_t len, const char *path) {
    for (int i = 0; i < MAP_NOTES; i++) {
        if (map_notes[i].addr) continue;
        map_notes[i].len = len;
        snprintf(map_notes[i].path, sizeof map_notes[i].path, "%s", path);
        map_notes[i].addr = addr; /* last: the handler reads an entry only once addr is set */
        return;
    }
}

void loom_map_forget(const void *addr) {
    for (int i = 0; i < MAP_NOTES; i++)
        if (map_notes[i].addr == addr) map_notes[i].addr = NULL;
}

static void put_str(char *b, size_t *n, size_t cap, const char *s) {
    while (*s && *n < cap) b[(*n)++] = *s++;
}

static void on_sigbus(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    const char *a = si ? (const char *)si->si_addr : NULL;
    for (int i = 0; a && i < MAP_NOTES; i++) {
        const char *base = map_notes[i].addr;
        if (!base || a < base || a >= base + map_notes[i].len) continue;
        /* async-signal-safe: a fixed buffer, write(2) and _exit */
        char b[1024], num[24];
        size_t n = 0, off = (size_t)(a - base), k = 0;
        do num[k++] = (char)('0' + off % 10); while ((off /= 10) && k < sizeof num);
        put_str(b, &n, sizeof b, "loom: ");
        put_str(b, &n, sizeof b, map_notes[i].path);
        put_str(b, &n, sizeof b, ": the file shrank while loom read it (SIGBUS at byte ");
        while (k && n < sizeof b) b[n++] = num[--k];
        put_str(b, &n, sizeof b, "): was it truncated or rewritten in place while loom ran?\n");
        if (write(2, b, n) < 0) { /* nothing more to do */ }
        _exit(1);
    }
    signal(sig, SIG_DFL); /* not ours: the default action (core dump) */
    raise(sig);
}

void loom_sigbus_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
}
