/* Small shared helpers: error reporting, allocation, half-precision conversion. */
#ifndef LOOM_UTIL_H
#define LOOM_UTIL_H

#include "loom.h"

#include <stdio.h>

#include <stdarg.h>
#include <stdint.h>
#include <string.h>

/* Set this thread's error message; returns -1 so callers can `return loom_err(...)`. */
int loom_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same, returning NULL. */
void *loom_err_null(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prefix the current message with "prefix: " (adds context as an error travels up). */
void loom_err_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void loom_err_clear(void);

/* malloc/calloc/realloc that set an error message when they fail (callers still check NULL). */
void *loom_malloc(size_t n);
void *loom_calloc(size_t n, size_t size);
void *loom_realloc(void *p, size_t n);
/* 64-byte aligned allocation, freed with loom_free_aligned. */
void *loom_malloc_aligned(size_t n);
void loom_free_aligned(void *p);

/* Overflow-checked size arithmetic: returns false on overflow. */
static inline bool loom_mul_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool loom_add_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* IEEE half and bfloat16 conversions (round to nearest even). */
static inline float loom_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t loom_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
float loom_f16_to_f32(uint16_t h);
uint16_t loom_f32_to_f16(float f);

/* Convert n elements of type t at src to f32. */
void loom_to_f32(float *dst, const void *src, loom_dtype t, size_t n);
/* s as a JSON string literal (quotes, backslashes and control characters escaped) on f. */
void loom_json_str(FILE *f, const char *s);

/* Monotonic time in seconds. */
double loom_now(void);

/* Open a file to read, refusing anything but a regular file before it can block (a FIFO given as
 * the model or tokenizer waited forever for a writer): an fd / FILE, or -1 / NULL with an error
 * naming the path ("not a regular file (a FIFO)", or the open error). */
int loom_open_regular(const char *path);

/* Mapped files, so that a SIGBUS (the file shrank while mapped: truncated or rewritten in place by
 * another process) can name the file: note each mapping, forget it before munmap. With
 * loom_sigbus_install (the CLI calls it), a SIGBUS inside a noted mapping prints
 * "loom: PATH: the file shrank while loom read it (...)" and exits 1; any other SIGBUS keeps its
 * default action. At most 64 mappings are noted (more are simply not named). */
void loom_map_note(const void *addr, size_t len, const char *path);
void loom_map_forget(const void *addr);
void loom_sigbus_install(void);
FILE *loom_fopen_regular(const char *path);

#endif
