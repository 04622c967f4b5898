/* GGUF reader (mmap, validate everything up front) and writer (temp file + fsync + rename).
 *
 * Layout (v2/v3, little-endian): "GGUF" u32 version, u64 n_tensors, u64 n_kv, the key/values,
 * the tensor records (name, u32 ndim, u64 ne[ndim] innermost first, u32 ggml type, u64 offset
 * into the data section), padding to the alignment, then the data section.
 */
#include "formats/gguf.h"

#include "core/util.h"
#include "formats/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 95 /* loom_weight.name holds 96 bytes */

/* ---- ggml types ---------------------------------------------------------------------------- */

typedef struct { int type; const char *name; int blck; size_t size; int align; } ggml_info;

/* Block sizes from ggml's type traits; types loom cannot compute with still get a size so a file
 * holding them can be opened and inspected. */
static const ggml_info ggml_types[] = {
    {0, "f32", 1, 4, 4},      {1, "f16", 1, 2, 2},      {2, "q4_0", 32, 18, 2},
    {3, "q4_1", 32, 20, 2},   {6, "q5_0", 32, 22, 2},   {7, "q5_1", 32, 24, 2},
    {8, "q8_0", 32, 34, 2},   {9, "q8_1", 32, 36, 2},   {10, "q2_K", 256, 84, 2},
    {11, "q3_K", 256, 110, 2}, {12, "q4_K", 256, 144, 2}, {13, "q5_K", 256, 176, 2},
    {14, "q6_K", 256, 210, 2}, {15, "q8_K", 256, 292, 4}, {24, "i8", 1, 1, 1},
    {25, "i16", 1, 2, 2},     {26, "i32", 1, 4, 4},     {27, "i64", 1, 8, 8},
    {20, "iq4_nl", 32, 18, 2}, {23, "iq4_xs", 256, 136, 2},
    {28, "f64", 1, 8, 8},     {30, "bf16", 1, 2, 2},
};

static const ggml_info *ggml_find(int type) {
    for (size_t i = 0; i < sizeof ggml_types / sizeof ggml_types[0]; i++)
        if (ggml_types[i].type == type) return &ggml_types[i];
    return NULL;
}

const char *gguf_ggml_type_name(int t) {
    const ggml_info *g = ggml_find(t);
    return g ? g->name : NULL;
}
int gguf_ggml_block_size(int t) {
    const ggml_info *g = ggml_find(t);
    return g ? g->blck : 0;
}
size_t gguf_ggml_type_size(int t) {
    const ggml_info *g = ggml_find(t);
    return g ? g->size : 0;
}

bool gguf_ggml_nbytes(int type, int ndim, const int64_t *ne, size_t *out) {
    const ggml_info *g = ggml_find(type);
    if (!g || ndim < 1 || ndim > GGUF_MAX_DIMS) return false;
    int64_t inner = ne[ndim - 1];
    if (inner <= 0 || inner % g->blck) return false;
    size_t n = (size_t)(inner / g->blck) * g->size;
    for (int d = 0; d < ndim - 1; d++) {
        if (ne[d] <= 0 || !loom_mul_ok(n, (size_t)ne[d], &n)) return false;
    }
    *out = n;
    return true;
}

/* loom dtype <-> ggml type, for the types loom computes with. */
static const struct { loom_dtype loom; int ggml; } dtype_map[] = {
    {LOOM_F32, GGML_TYPE_F32},      {LOOM_F16, GGML_TYPE_F16},       {LOOM_BF16, GGML_TYPE_BF16},
    {LOOM_I32, GGML_TYPE_I32},      {LOOM_Q8_0, GGML_TYPE_Q8_0},     {LOOM_Q4_0, GGML_TYPE_Q4_0},
    {LOOM_Q4_K, GGML_TYPE_Q4_K},    {LOOM_Q6_K, GGML_TYPE_Q6_K},     {LOOM_Q4_1, GGML_TYPE_Q4_1},
    {LOOM_Q5_0, GGML_TYPE_Q5_0},    {LOOM_Q5_1, GGML_TYPE_Q5_1},     {LOOM_Q2_K, GGML_TYPE_Q2_K},
    {LOOM_Q3_K, GGML_TYPE_Q3_K},    {LOOM_Q5_K, GGML_TYPE_Q5_K},     {LOOM_IQ4_NL, GGML_TYPE_IQ4_NL},
    {LOOM_IQ4_XS, GGML_TYPE_IQ4_XS},
};

int gguf_ggml_from_dtype(loom_dtype t) {
    for (size_t i = 0; i < sizeof dtype_map / sizeof dtype_map[0]; i++)
        if (dtype_map[i].loom == t) return dtype_map[i].ggml;
    return -1;
}

loom_dtype gguf_dtype_from_ggml(int t) {
    for (size_t i = 0; i < sizeof dtype_map / sizeof dtype_map[0]; i++)
        if (dtype_map[i].ggml == t) return dtype_map[i].loom;
    return LOOM_DTYPE_COUNT;
}

static const char *kv_type_name(uint32_t t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                  "bool", "string", "array", "u64", "i64", "f64"};
    return t < 13 ? names[t] : "?";
}

/* Bytes of one scalar of a fixed-size kv type; 0 for string/array/unknown. */
static size_t kv_scalar_size(uint32_t t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

/* ---- a small string -> index hash table (keys, tensor names) -------------------------------- */

typedef struct { int *slot; size_t cap; } name_index;

static uint64_t name_hash(const char *s) { return XXH3_64bits(s, strlen(s)); }

static int index_init(name_index *ix, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    ix->slot = loom_calloc(cap, sizeof(int));
    ix->cap = cap;
    return ix->slot ? 0 : -1;
}

/* Insert item i named name(i); returns the index of an existing item with the same name, or -1. */
static int index_add(name_index *ix, const char *name, int i, const char *(*get)(const void *, int),
                     const void *ctx) {
    size_t h = (size_t)name_hash(name) & (ix->cap - 1);
    while (ix->slot[h]) {
        int j = ix->slot[h] - 1;
        if (!strcmp(get(ctx, j), name)) return j;
        h = (h + 1) & (ix->cap - 1);
    }
    ix->slot[h] = i + 1;
    return -1;
}

static int index_find(const name_index *ix, const char *name, const char *(*get)(const void *, int),
                      const void *ctx) {
    if (!ix->slot) return -1;
    size_t h = (size_t)name_hash(name) & (ix->cap - 1);
    while (ix->slot[h]) {
        int j = ix->slot[h] - 1;
        if (!strcmp(get(ctx, j), name)) return j;
        h = (h + 1) & (ix->cap - 1);
    }
    return -1;
}

/* ---- reader ---------------------------------------------------------------------------------- */

typedef struct gguf_kv {
    char *key;
    uint32_t type;
    const uint8_t *raw;   /* scalar value bytes in the map */
    char *str;            /* string: terminated copy */
    size_t len;
    uint32_t arr_type;    /* arrays */
    size_t arr_n;
    void *arr_data;       /* numeric arrays: aligned owned copy */
    char *arr_buf;        /* string arrays: all items, each terminated */
    size_t *arr_off, *arr_len;
} gguf_kv;

typedef struct gguf_tensor {
    char *name;
    int type, ndim;
    int64_t ne[GGUF_MAX_DIMS]; /* PyTorch order */
    uint64_t offset;           /* within the data section */
    size_t nbytes;
} gguf_tensor;

struct gguf_ctx {
    char *path;
    const uint8_t *map;
    size_t size;
    uint32_t version;
    size_t alignment, data_off;
    gguf_kv *kv;
    int n_kv;
    gguf_tensor *t;
    int n_t;
    name_index kv_ix, t_ix;
};

typedef struct { const uint8_t *p; size_t size, off; const char *path; } reader;

static int rd_need(reader *r, size_t n, const char *what) {
    if (n > r->size - r->off)
        return loom_err("%s: truncated: %s at offset %zu needs %zu bytes, file is %zu bytes", r->path,
                        what, r->off, n, r->size);
    return 0;
}

static int rd_u32(reader *r, uint32_t *v, const char *what) {
    if (rd_need(r, 4, what)) return -1;
    memcpy(v, r->p + r->off, 4);
    r->off += 4;
    return 0;
}

static int rd_u64(reader *r, uint64_t *v, const char *what) {
    if (rd_need(r, 8, what)) return -1;
    memcpy(v, r->p + r->off, 8);
    r->off += 8;
    return 0;
}

/* A length-prefixed string; the pointer is into the map (not terminated). */
static int rd_str(reader *r, const char **s, size_t *len, const char *what) {
    uint64_t n;
    if (rd_u64(r, &n, what)) return -1;
    if (n > r->size - r->off)
        return loom_err("%s: %s at offset %zu has length %llu, past the end of the file (%zu bytes)",
                        r->path, what, r->off - 8, (unsigned long long)n, r->size);
    *s = (const char *)r->p + r->off;
    *len = (size_t)n;
    r->off += (size_t)n;
    return 0;
}

static char *dup_n(const char *s, size_t n) {
    char *d = loom_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static const char *kv_name_get(const void *ctx, int i) { return ((const gguf_ctx *)ctx)->kv[i].key; }
static const char *t_name_get(const void *ctx, int i) { return ((const gguf_ctx *)ctx)->t[i].name; }

static int read_array(gguf_ctx *g, reader *r, gguf_kv *kv) {
    uint32_t at;
    uint64_t n;
    if (rd_u32(r, &at, "array type") || rd_u64(r, &n, "array length")) return -1;
    kv->arr_type = at;
    if (at == GGUF_TYPE_ARRAY)
        return loom_err("%s: key '%s' is an array of arrays (not supported)", g->path, kv->key);
    if (at == GGUF_TYPE_STRING) {
        /* each item needs at least its 8-byte length: reject impossible counts before allocating */
        if (n > (r->size - r->off) / 8)
            return loom_err("%s: key '%s' claims %llu strings, more than the file (%zu bytes) can hold",
                            g->path, kv->key, (unsigned long long)n, r->size);
        kv->arr_n = (size_t)n;
        size_t start = r->off, total = 0;
        for (size_t j = 0; j < n; j++) {
            const char *s;
            size_t len;
            if (rd_str(r, &s, &len, "array string"))
                return loom_err("%s: key '%s' item %zu at offset %zu runs past the end of the file (%zu bytes)",
                                g->path, kv->key, j, r->off, r->size);
            total += len + 1; /* cannot overflow: bounded by the file size */
        }
        kv->arr_buf = loom_malloc(total);
        kv->arr_off = loom_malloc(n * sizeof(size_t));
        kv->arr_len = loom_malloc(n * sizeof(size_t));
        if (!kv->arr_buf || !kv->arr_off || !kv->arr_len) return -1;
        r->off = start;
        size_t pos = 0;
        for (size_t j = 0; j < n; j++) {
            const char *s;
            size_t len;
            rd_str(r, &s, &len, "array string"); /* validated above */
            memcpy(kv->arr_buf + pos, s, len);
            kv->arr_buf[pos + len] = 0;
            kv->arr_off[j] = pos;
            kv->arr_len[j] = len;
            pos += len + 1;
        }
        return 0;
    }
    size_t es = kv_scalar_size(at);
    if (!es) return loom_err("%s: key '%s' has unknown array item type %u", g->path, kv->key, at);
    if (n > (r->size - r->off) / es)
        return loom_err("%s: key '%s' array of %llu %s runs past the end of the file (%zu bytes)",
                        g->path, kv->key, (unsigned long long)n, kv_type_name(at), r->size);
    kv->arr_n = (size_t)n;
    /* copy so callers may index it as a typed array (the map offset may be unaligned) */
    kv->arr_data = loom_malloc_aligned(kv->arr_n * es);
    if (!kv->arr_data) return -1;
    memcpy(kv->arr_data, r->p + r->off, kv->arr_n * es);
    r->off += kv->arr_n * es;
    return 0;
}

static int read_kv(gguf_ctx *g, reader *r, gguf_kv *kv) {
    const char *k;
    size_t klen;
    if (rd_str(r, &k, &klen, "key")) return -1;
    if (klen == 0) return loom_err("%s: empty key at offset %zu", g->path, r->off - 8);
    if (memchr(k, 0, klen)) return loom_err("%s: key at offset %zu contains a NUL byte", g->path, r->off - klen);
    if (!(kv->key = dup_n(k, klen))) return -1;
    if (rd_u32(r, &kv->type, "value type")) return -1;
    if (kv->type == GGUF_TYPE_STRING) {
        const char *s;
        if (rd_str(r, &s, &kv->len, "string value"))
            return loom_err("%s: key '%s' string value at offset %zu runs past the end of the file (%zu bytes)",
                            g->path, kv->key, r->off, r->size);
        return (kv->str = dup_n(s, kv->len)) ? 0 : -1;
    }
    if (kv->type == GGUF_TYPE_ARRAY) return read_array(g, r, kv);
    size_t es = kv_scalar_size(kv->type);
    if (!es) return loom_err("%s: key '%s' has unknown value type %u", g->path, kv->key, kv->type);
    if (rd_need(r, es, "value"))
        return loom_err("%s: key '%s' value at offset %zu runs past the end of the file (%zu bytes)", g->path,
                        kv->key, r->off, r->size);
    kv->raw = r->p + r->off;
    r->off += es;
    if (kv->type == GGUF_TYPE_BOOL && *kv->raw > 1)
        return loom_err("%s: key '%s' is a bool with value %u", g->path, kv->key, *kv->raw);
    return 0;
}

static int read_tensor_info(gguf_ctx *g, reader *r, gguf_tensor *t) {
    const char *s;
    size_t len;
    if (rd_str(r, &s, &len, "tensor name")) return -1;
    if (len == 0) return loom_err("%s: empty tensor name at offset %zu", g->path, r->off - 8);
    if (len > GGUF_MAX_NAME)
        return loom_err("%s: tensor name '%.40s...' at offset %zu is longer than %d bytes", g->path, s,
                        r->off - len - 8, GGUF_MAX_NAME);
    if (memchr(s, 0, len)) return loom_err("%s: tensor name at offset %zu holds a NUL byte", g->path, r->off - len - 8);
    if (!(t->name = dup_n(s, len))) return -1;
    uint32_t nd;
    if (rd_u32(r, &nd, "tensor ndim")) return -1;
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        return loom_err("%s: tensor '%s' has %u dimensions (1 to %d supported)", g->path, t->name, nd,
                        GGUF_MAX_DIMS);
    t->ndim = (int)nd;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t v;
        if (rd_u64(r, &v, "tensor dim")) return -1;
        if (v == 0 || v > (uint64_t)INT64_MAX)
            return loom_err("%s: tensor '%s' dim %u is %llu (must be > 0)", g->path, t->name, d,
                            (unsigned long long)v);
        t->ne[nd - 1 - d] = (int64_t)v; /* ggml order -> PyTorch order */
    }
    uint32_t type;
    uint64_t off;
    if (rd_u32(r, &type, "tensor type") || rd_u64(r, &off, "tensor offset")) return -1;
    const ggml_info *gi = ggml_find((int)type);
    if (!gi) return loom_err("%s: tensor '%s' has unknown ggml type %u", g->path, t->name, type);
    t->type = (int)type;
    t->offset = off;
    if (t->ne[nd - 1] % gi->blck)
        return loom_err("%s: tensor '%s' row of %lld elements is not a whole number of %s blocks (%d)",
                        g->path, t->name, (long long)t->ne[nd - 1], gi->name, gi->blck);
    if (!gguf_ggml_nbytes(t->type, t->ndim, t->ne, &t->nbytes))
        return loom_err("%s: tensor '%s' size overflows", g->path, t->name);
    return 0;
}

static int parse(gguf_ctx *g) {
    reader r = {g->map, g->size, 0, g->path};
    uint32_t magic;
    if (g->size < 4 || (memcpy(&magic, g->map, 4), magic != GGUF_MAGIC))
        return loom_err("%s: not a GGUF file (bad magic)", g->path);
    r.off = 4;
    if (rd_u32(&r, &g->version, "version")) return -1;
    if (g->version == 1) return loom_err("%s: GGUF version 1 is not supported (only 2 and 3)", g->path);
    if (g->version != 2 && g->version != 3)
        return loom_err("%s: unsupported GGUF version %u%s", g->path, g->version,
                        g->version > 0xffff ? " (big-endian file?)" : "");
    uint64_t nt, nkv;
    if (rd_u64(&r, &nt, "tensor count") || rd_u64(&r, &nkv, "key/value count")) return -1;
    /* A key/value takes at least 13 bytes and a tensor record 33: reject counts the file cannot
     * hold before allocating anything. */
    size_t rem = g->size - r.off;
    if (nkv > rem / 13 || nkv > INT32_MAX)
        return loom_err("%s: header claims %llu key/values, more than the file (%zu bytes) can hold", g->path,
                        (unsigned long long)nkv, g->size);
    rem -= (size_t)nkv * 13;
    if (nt > rem / 33 || nt > INT32_MAX)
        return loom_err("%s: header claims %llu tensors, more than the file (%zu bytes) can hold", g->path,
                        (unsigned long long)nt, g->size);

    g->kv = loom_calloc(nkv ? nkv : 1, sizeof *g->kv);
    g->t = loom_calloc(nt ? nt : 1, sizeof *g->t);
    if (!g->kv || !g->t || index_init(&g->kv_ix, nkv) || index_init(&g->t_ix, nt)) return -1;

    for (uint64_t i = 0; i < nkv; i++) {
        if (read_kv(g, &r, &g->kv[i])) {
            g->n_kv = (int)i + 1; /* so close() frees the partial record */
            return -1;
        }
        g->n_kv = (int)i + 1;
        if (index_add(&g->kv_ix, g->kv[i].key, (int)i, kv_name_get, g) >= 0)
            return loom_err("%s: duplicate key '%s'", g->path, g->kv[i].key);
    }

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int ai = gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        uint32_t a;
        if (g->kv[ai].type != GGUF_TYPE_UINT32)
            return loom_err("%s: general.alignment has type %s (expected u32)", g->path,
                            kv_type_name(g->kv[ai].type));
        memcpy(&a, g->kv[ai].raw, 4);
        if (a == 0 || (a & (a - 1)))
            return loom_err("%s: general.alignment %u is not a power of two", g->path, a);
        g->alignment = a;
    }

    for (uint64_t i = 0; i < nt; i++) {
        g->n_t = (int)i + 1;
        if (read_tensor_info(g, &r, &g->t[i])) return -1;
        if (index_add(&g->t_ix, g->t[i].name, (int)i, t_name_get, g) >= 0)
            return loom_err("%s: duplicate tensor name '%s'", g->path, g->t[i].name);
    }

    size_t data_off = r.off;
    if (data_off % g->alignment) data_off += g->alignment - data_off % g->alignment;
    g->data_off = data_off;
    size_t data_size = data_off <= g->size ? g->size - data_off : 0;
    uint64_t expect = 0; /* where the next tensor's data must start */
    for (int i = 0; i < g->n_t; i++) {
        gguf_tensor *t = &g->t[i];
        const ggml_info *gi = ggml_find(t->type);
        /* tensors follow each other in file order, each padded to the alignment (as llama.cpp
         * requires): an offset anywhere else lets two tensors share (alias) the same bytes */
        if (t->offset != expect)
            return loom_err("%s: tensor '%s' data offset %llu is not where the previous tensor's data ends (%llu): "
                            "overlapping or out-of-order tensor data", g->path, t->name,
                            (unsigned long long)t->offset, (unsigned long long)expect);
        if (t->offset % g->alignment)
            return loom_err("%s: tensor '%s' data offset %llu is not a multiple of the alignment (%zu)",
                            g->path, t->name, (unsigned long long)t->offset, g->alignment);
        if (t->offset > (uint64_t)(SIZE_MAX - data_off))
            return loom_err("%s: tensor '%s' data offset %llu is past end of file (%zu bytes)", g->path, t->name,
                            (unsigned long long)t->offset, g->size);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return loom_err("%s: tensor '%s' data [offset %llu, %zu bytes] runs past end of file (%zu bytes)",
                            g->path, t->name, (unsigned long long)(data_off + t->offset), t->nbytes,
                            g->size);
        /* with a tiny general.alignment the data could sit at an address its type cannot be read at */
        if ((data_off + t->offset) % (size_t)gi->align)
            return loom_err("%s: tensor '%s' data at offset %llu is misaligned for %s", g->path, t->name,
                            (unsigned long long)(data_off + t->offset), gi->name);
        expect = t->offset + t->nbytes; /* no overflow: both within the file (checked above) */
        if (expect % g->alignment) expect += g->alignment - expect % g->alignment;
    }
    return 0;
}

gguf_ctx *gguf_open(const char *path) {
    gguf_ctx *g = loom_calloc(1, sizeof *g);
    if (!g) return NULL;
    if (!(g->path = dup_n(path, strlen(path)))) {
        free(g);
        return NULL;
    }
    int fd = loom_open_regular(path);
    if (fd < 0) {
        gguf_close(g);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        loom_err("%s: not a regular file", path);
        close(fd);
        gguf_close(g);
        return NULL;
    }
    g->size = (size_t)st.st_size;
    if (g->size < 24) {
        loom_err("%s: truncated: %zu bytes is too short for a GGUF header", path, g->size);
        close(fd);
        gguf_close(g);
        return NULL;
    }
    void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m != MAP_FAILED) loom_map_note(m, g->size, path);
    close(fd);
    if (m == MAP_FAILED) {
        loom_err("%s: mmap failed: %s", path, strerror(errno));
        g->size = 0;
        gguf_close(g);
        return NULL;
    }
    g->map = m;
    if (parse(g)) {
        gguf_close(g);
        return NULL;
    }
    return g;
}

void gguf_close(gguf_ctx *g) {
    if (!g) return;
    for (int i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        free(kv->key);
        free(kv->str);
        loom_free_aligned(kv->arr_data);
        free(kv->arr_buf);
        free(kv->arr_off);
        free(kv->arr_len);
    }
    for (int i = 0; i < g->n_t; i++) free(g->t[i].name);
    free(g->kv);
    free(g->t);
    free(g->kv_ix.slot);
    free(g->t_ix.slot);
    if (g->map) {
        loom_map_forget(g->map);
        munmap((void *)g->map, g->size);
    }
    free(g->path);
    free(g);
}

const char *gguf_path(const gguf_ctx *g) { return g->path; }
uint32_t gguf_version(const gguf_ctx *g) { return g->version; }
size_t gguf_alignment(const gguf_ctx *g) { return g->alignment; }
size_t gguf_data_offset(const gguf_ctx *g) { return g->data_off; }
int gguf_n_kv(const gguf_ctx *g) { return g->n_kv; }
int gguf_find_key(const gguf_ctx *g, const char *key) { return index_find(&g->kv_ix, key, kv_name_get, g); }

static const gguf_kv *kv_at(const gguf_ctx *g, int i) { return i >= 0 && i < g->n_kv ? &g->kv[i] : NULL; }

const char *gguf_key(const gguf_ctx *g, int i) {
    const gguf_kv *kv = kv_at(g, i);
    return kv ? kv->key : NULL;
}

gguf_type gguf_kv_type(const gguf_ctx *g, int i) {
    const gguf_kv *kv = kv_at(g, i);
    return kv ? (gguf_type)kv->type : (gguf_type)-1;
}

bool gguf_get_int(const gguf_ctx *g, int i, int64_t *out) {
    const gguf_kv *kv = kv_at(g, i);
    if (!kv || !kv->raw) return false;
    const uint8_t *p = kv->raw;
    switch (kv->type) {
    case GGUF_TYPE_UINT8: *out = p[0]; return true;
    case GGUF_TYPE_INT8: *out = (int8_t)p[0]; return true;
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); *out = v; return true; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); *out = v; return true; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); *out = v; return true; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); *out = v; return true; }
    case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, p, 8); *out = v; return true; }
    case GGUF_TYPE_UINT64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)v;
        return true;
    }
    default: return false;
    }
}

bool gguf_get_float(const gguf_ctx *g, int i, double *out) {
    const gguf_kv *kv = kv_at(g, i);
    if (!kv || !kv->raw) return false;
    if (kv->type == GGUF_TYPE_FLOAT32) {
        float f;
        memcpy(&f, kv->raw, 4);
        *out = f;
        return true;
    }
    if (kv->type == GGUF_TYPE_FLOAT64) {
        memcpy(out, kv->raw, 8);
        return true;
    }
    int64_t v; /* an integer is a valid float value (e.g. a rope base written as u32) */
    if (kv->type != GGUF_TYPE_BOOL && gguf_get_int(g, i, &v)) {
        *out = (double)v;
        return true;
    }
    return false;
}

bool gguf_get_bool(const gguf_ctx *g, int i, bool *out) {
    const gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->type != GGUF_TYPE_BOOL) return false;
    *out = kv->raw[0] != 0;
    return true;
}

const char *gguf_get_str(const gguf_ctx *g, int i, size_t *len) {
    const gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->type != GGUF_TYPE_STRING) return NULL;
    if (len) *len = kv->len;
    return kv->str;
}

gguf_type gguf_arr_type(const gguf_ctx *g, int i) {
    const gguf_kv *kv = kv_at(g, i);
    return kv && kv->type == GGUF_TYPE_ARRAY ? (gguf_type)kv->arr_type : (gguf_type)-1;
}

size_t gguf_arr_n(const gguf_ctx *g, int i) {
    const gguf_kv *kv = kv_at(g, i);
    return kv && kv->type == GGUF_TYPE_ARRAY ? kv->arr_n : 0;
}

const void *gguf_arr_data(const gguf_ctx *g, int i) {
    const gguf_kv *kv = kv_at(g, i);
    return kv && kv->type == GGUF_TYPE_ARRAY ? kv->arr_data : NULL;
}

const char *gguf_arr_str(const gguf_ctx *g, int i, size_t j, size_t *len) {
    const gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING || j >= kv->arr_n) return NULL;
    if (len) *len = kv->arr_len[j];
    return kv->arr_buf + kv->arr_off[j];
}

int gguf_n_tensors(const gguf_ctx *g) { return g->n_t; }
int gguf_find_tensor(const gguf_ctx *g, const char *name) { return index_find(&g->t_ix, name, t_name_get, g); }

static const gguf_tensor *t_at(const gguf_ctx *g, int i) { return i >= 0 && i < g->n_t ? &g->t[i] : NULL; }

const char *gguf_tensor_name(const gguf_ctx *g, int i) {
    const gguf_tensor *t = t_at(g, i);
    return t ? t->name : NULL;
}
int gguf_tensor_ggml_type(const gguf_ctx *g, int i) {
    const gguf_tensor *t = t_at(g, i);
    return t ? t->type : -1;
}
int gguf_tensor_ndim(const gguf_ctx *g, int i) {
    const gguf_tensor *t = t_at(g, i);
    return t ? t->ndim : 0;
}
void gguf_tensor_shape(const gguf_ctx *g, int i, int64_t ne[4]) {
    const gguf_tensor *t = t_at(g, i);
    for (int d = 0; d < 4; d++) ne[d] = t && d < t->ndim ? t->ne[d] : 1;
}
const void *gguf_tensor_data(const gguf_ctx *g, int i) {
    const gguf_tensor *t = t_at(g, i);
    return t ? g->map + g->data_off + t->offset : NULL;
}
size_t gguf_tensor_nbytes(const gguf_ctx *g, int i) {
    const gguf_tensor *t = t_at(g, i);
    return t ? t->nbytes : 0;
}

/* ---- writer ---------------------------------------------------------------------------------- */

typedef struct wkv {
    char *key;
    uint32_t type, arr_type;
    uint8_t scalar[8];
    char *str;         /* string value */
    size_t arr_n;
    void *arr_data;    /* numeric items */
    char **arr_strs;   /* string items */
} wkv;

typedef struct wtensor {
    char *name;
    int type, ndim;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data;
    size_t nbytes;
    gguf_fill_fn fill;
    void *user;
    uint64_t offset;
} wtensor;

struct gguf_writer {
    wkv *kv;
    int n_kv, cap_kv;
    wtensor *t;
    int n_t, cap_t; /* few keys and tensors: duplicates are found by a linear scan at add time */
};

gguf_writer *gguf_writer_new(void) { return loom_calloc(1, sizeof(gguf_writer)); }

static void wkv_free(wkv *kv) {
    free(kv->key);
    free(kv->str);
    free(kv->arr_data);
    if (kv->arr_strs)
        for (size_t j = 0; j < kv->arr_n; j++) free(kv->arr_strs[j]);
    free(kv->arr_strs);
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n_kv; i++) wkv_free(&w->kv[i]);
    for (int i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

bool gguf_w_has_key(const gguf_writer *w, const char *key) {
    for (int i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) return true;
    return false;
}

/* A new kv slot with its key set, or NULL (duplicate key or out of memory). */
static wkv *w_new_kv(gguf_writer *w, const char *key, uint32_t type) {
    if (!key || !*key) return loom_err_null("gguf writer: empty key");
    for (int i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) return loom_err_null("gguf writer: duplicate key '%s'", key);
    if (w->n_kv == w->cap_kv) {
        int cap = w->cap_kv ? 2 * w->cap_kv : 32;
        wkv *n = loom_realloc(w->kv, (size_t)cap * sizeof *n);
        if (!n) return NULL;
        w->kv = n;
        w->cap_kv = cap;
    }
    wkv *kv = &w->kv[w->n_kv];
    memset(kv, 0, sizeof *kv);
    if (!(kv->key = dup_n(key, strlen(key)))) return NULL;
    kv->type = type;
    w->n_kv++;
    return kv;
}

static int w_scalar(gguf_writer *w, const char *key, uint32_t type, const void *v) {
    wkv *kv = w_new_kv(w, key, type);
    if (!kv) return -1;
    memcpy(kv->scalar, v, kv_scalar_size(type));
    return 0;
}

int gguf_w_u32(gguf_writer *w, const char *key, uint32_t v) { return w_scalar(w, key, GGUF_TYPE_UINT32, &v); }
int gguf_w_i32(gguf_writer *w, const char *key, int32_t v) { return w_scalar(w, key, GGUF_TYPE_INT32, &v); }
int gguf_w_f32(gguf_writer *w, const char *key, float v) { return w_scalar(w, key, GGUF_TYPE_FLOAT32, &v); }
int gguf_w_u64(gguf_writer *w, const char *key, uint64_t v) { return w_scalar(w, key, GGUF_TYPE_UINT64, &v); }
int gguf_w_f64(gguf_writer *w, const char *key, double v) { return w_scalar(w, key, GGUF_TYPE_FLOAT64, &v); }
int gguf_w_bool(gguf_writer *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    return w_scalar(w, key, GGUF_TYPE_BOOL, &b);
}

int gguf_w_str(gguf_writer *w, const char *key, const char *v) {
    if (!v) return loom_err("gguf writer: NULL string for key '%s'", key);
    wkv *kv = w_new_kv(w, key, GGUF_TYPE_STRING);
    if (!kv) return -1;
    return (kv->str = dup_n(v, strlen(v))) ? 0 : -1;
}

static int w_arr_num(gguf_writer *w, const char *key, uint32_t at, const void *v, size_t n) {
    size_t bytes;
    if (!loom_mul_ok(n, kv_scalar_size(at), &bytes)) return loom_err("gguf writer: array '%s' too large", key);
    wkv *kv = w_new_kv(w, key, GGUF_TYPE_ARRAY);
    if (!kv) return -1;
    kv->arr_type = at;
    kv->arr_n = n;
    if (!(kv->arr_data = loom_malloc(bytes))) return -1;
    if (bytes) memcpy(kv->arr_data, v, bytes);
    return 0;
}

int gguf_w_arr_i32(gguf_writer *w, const char *key, const int32_t *v, size_t n) {
    return w_arr_num(w, key, GGUF_TYPE_INT32, v, n);
}
int gguf_w_arr_f32(gguf_writer *w, const char *key, const float *v, size_t n) {
    return w_arr_num(w, key, GGUF_TYPE_FLOAT32, v, n);
}
int gguf_w_arr_bool(gguf_writer *w, const char *key, const uint8_t *v, size_t n) {
    return w_arr_num(w, key, GGUF_TYPE_BOOL, v, n);
}

/* String array from items of given lengths (lens NULL: terminated strings). */
static int w_arr_str_n(gguf_writer *w, const char *key, const char *const *v, const size_t *lens, size_t n) {
    wkv *kv = w_new_kv(w, key, GGUF_TYPE_ARRAY);
    if (!kv) return -1;
    kv->arr_type = GGUF_TYPE_STRING;
    if (!(kv->arr_strs = loom_calloc(n, sizeof(char *)))) return -1;
    kv->arr_n = n;
    for (size_t j = 0; j < n; j++) {
        if (!v[j]) return loom_err("gguf writer: NULL item %zu in array '%s'", j, key);
        if (!(kv->arr_strs[j] = dup_n(v[j], lens ? lens[j] : strlen(v[j])))) return -1;
    }
    return 0;
}

int gguf_w_arr_str(gguf_writer *w, const char *key, const char *const *v, size_t n) {
    return w_arr_str_n(w, key, v, NULL, n);
}

int gguf_w_remove_kv(gguf_writer *w, const char *key) {
    for (int i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) {
            wkv_free(&w->kv[i]);
            memmove(&w->kv[i], &w->kv[i + 1], (size_t)(w->n_kv - i - 1) * sizeof *w->kv);
            w->n_kv--;
            return 1;
        }
    return 0;
}

int gguf_w_copy_kv(gguf_writer *w, const gguf_ctx *src) {
    for (int i = 0; i < src->n_kv; i++) {
        const gguf_kv *s = &src->kv[i];
        int rc;
        if (s->type == GGUF_TYPE_STRING) {
            rc = gguf_w_str(w, s->key, s->str);
        } else if (s->type == GGUF_TYPE_ARRAY && s->arr_type == GGUF_TYPE_STRING) {
            const char **items = loom_malloc((s->arr_n ? s->arr_n : 1) * sizeof(char *));
            if (!items) return -1;
            for (size_t j = 0; j < s->arr_n; j++) items[j] = s->arr_buf + s->arr_off[j];
            rc = w_arr_str_n(w, s->key, items, s->arr_len, s->arr_n);
            free(items);
        } else if (s->type == GGUF_TYPE_ARRAY) {
            rc = w_arr_num(w, s->key, s->arr_type, s->arr_data, s->arr_n);
        } else {
            rc = w_scalar(w, s->key, s->type, s->raw);
        }
        if (rc) return -1;
    }
    return 0;
}

static int w_add_tensor(gguf_writer *w, const char *name, int type, int ndim, const int64_t *ne,
                        const void *data, size_t nbytes, gguf_fill_fn fill, void *user) {
    if (!name || !*name || strlen(name) > GGUF_MAX_NAME)
        return loom_err("gguf writer: tensor name '%s' is empty or longer than %d bytes", name ? name : "",
                        GGUF_MAX_NAME);
    if (!ggml_find(type)) return loom_err("gguf writer: tensor '%s' has unknown ggml type %d", name, type);
    if (ndim < 1 || ndim > GGUF_MAX_DIMS)
        return loom_err("gguf writer: tensor '%s' has %d dimensions", name, ndim);
    size_t want;
    if (!gguf_ggml_nbytes(type, ndim, ne, &want))
        return loom_err("gguf writer: tensor '%s' has an invalid shape for %s", name, gguf_ggml_type_name(type));
    if (want != nbytes)
        return loom_err("gguf writer: tensor '%s' has %zu bytes, its shape needs %zu", name, nbytes, want);
    for (int i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return loom_err("gguf writer: duplicate tensor '%s'", name);
    if (w->n_t == w->cap_t) {
        int cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *n = loom_realloc(w->t, (size_t)cap * sizeof *n);
        if (!n) return -1;
        w->t = n;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = dup_n(name, strlen(name)))) return -1;
    t->type = type;
    t->ndim = ndim;
    memcpy(t->ne, ne, (size_t)ndim * sizeof *ne);
    t->data = data;
    t->nbytes = nbytes;
    t->fill = fill;
    t->user = user;
    w->n_t++;
    return 0;
}

int gguf_w_tensor(gguf_writer *w, const char *name, int ggml_type, int ndim, const int64_t *ne,
                  const void *data, size_t nbytes) {
    if (!data && nbytes) return loom_err("gguf writer: tensor '%s' has no data", name);
    return w_add_tensor(w, name, ggml_type, ndim, ne, data, nbytes, NULL, NULL);
}

int gguf_w_tensor_cb(gguf_writer *w, const char *name, int ggml_type, int ndim, const int64_t *ne,
                     size_t nbytes, gguf_fill_fn fill, void *user) {
    if (!fill) return loom_err("gguf writer: tensor '%s' has no fill callback", name);
    return w_add_tensor(w, name, ggml_type, ndim, ne, NULL, nbytes, fill, user);
}

/* Growable byte buffer for the header. */
typedef struct { uint8_t *p; size_t n, cap; int failed; } wbuf;

static void wb_put(wbuf *b, const void *v, size_t n) {
    if (b->failed) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = loom_realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, v, n);
    b->n += n;
}
static void wb_u32(wbuf *b, uint32_t v) { wb_put(b, &v, 4); }
static void wb_u64(wbuf *b, uint64_t v) { wb_put(b, &v, 8); }
static void wb_str(wbuf *b, const char *s, size_t n) {
    wb_u64(b, n);
    wb_put(b, s, n);
}

static int write_all(int fd, const void *p, size_t n, const char *path) {
    const uint8_t *c = p;
    while (n) {
        ssize_t k = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return loom_err("%s: write failed: %s", path, strerror(errno));
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

static int write_pad(int fd, size_t pos, size_t align, const char *path) {
    static const uint8_t zeros[256];
    size_t pad = pos % align ? align - pos % align : 0;
    while (pad) {
        size_t k = pad < sizeof zeros ? pad : sizeof zeros;
        if (write_all(fd, zeros, k, path)) return -1;
        pad -= k;
    }
    return 0;
}

#define FILL_CHUNK (4u << 20)

static int write_tensor_data(int fd, const wtensor *t, uint8_t **chunk, const char *path) {
    if (!t->fill) return write_all(fd, t->data, t->nbytes, path);
    if (!*chunk && !(*chunk = loom_malloc(FILL_CHUNK))) return -1;
    /* pieces are whole blocks so a callback never has to split an element or quant block */
    size_t bs = gguf_ggml_type_size(t->type);
    size_t piece = FILL_CHUNK / bs * bs;
    for (size_t off = 0; off < t->nbytes; off += piece) {
        size_t n = t->nbytes - off < piece ? t->nbytes - off : piece;
        if (t->fill(t->user, off, *chunk, n)) {
            loom_err_prefix("%s: tensor '%s'", path, t->name);
            return -1;
        }
        if (write_all(fd, *chunk, n, path)) return -1;
    }
    return 0;
}

int gguf_writer_save(gguf_writer *w, const char *path) {
    size_t align = GGUF_DEFAULT_ALIGNMENT;
    for (int i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, "general.alignment")) continue;
        uint32_t a;
        memcpy(&a, w->kv[i].scalar, 4);
        if (w->kv[i].type != GGUF_TYPE_UINT32 || a == 0 || (a & (a - 1)) || a % 8)
            return loom_err("%s: general.alignment must be a u32 power of two >= 8", path);
        align = a;
    }

    /* tensor offsets within the data section */
    uint64_t off = 0;
    for (int i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        off += w->t[i].nbytes;
        if (off % align) off += align - off % align;
    }

    wbuf b = {0};
    wb_u32(&b, GGUF_MAGIC);
    wb_u32(&b, 3);
    wb_u64(&b, (uint64_t)w->n_t);
    wb_u64(&b, (uint64_t)w->n_kv);
    for (int i = 0; i < w->n_kv; i++) {
        const wkv *kv = &w->kv[i];
        wb_str(&b, kv->key, strlen(kv->key));
        wb_u32(&b, kv->type);
        if (kv->type == GGUF_TYPE_STRING) {
            wb_str(&b, kv->str, strlen(kv->str));
        } else if (kv->type == GGUF_TYPE_ARRAY) {
            wb_u32(&b, kv->arr_type);
            wb_u64(&b, kv->arr_n);
            if (kv->arr_type == GGUF_TYPE_STRING)
                for (size_t j = 0; j < kv->arr_n; j++) wb_str(&b, kv->arr_strs[j], strlen(kv->arr_strs[j]));
            else
                wb_put(&b, kv->arr_data, kv->arr_n * kv_scalar_size(kv->arr_type));
        } else {
            wb_put(&b, kv->scalar, kv_scalar_size(kv->type));
        }
    }
    for (int i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        wb_str(&b, t->name, strlen(t->name));
        wb_u32(&b, (uint32_t)t->ndim);
        for (int d = t->ndim - 1; d >= 0; d--) wb_u64(&b, (uint64_t)t->ne[d]); /* ggml order */
        wb_u32(&b, (uint32_t)t->type);
        wb_u64(&b, t->offset);
    }
    if (b.failed) {
        free(b.p);
        return -1;
    }

    /* a symlink OUT is written through (its target replaced); a device, FIFO or folder is refused */
    char *target = out_target(path), *tmp = NULL;
    int fd = -1, slot = -1;
    if (target) {
        out_sweep_stale(target);
        fd = out_tmp_create(target, &tmp, &slot); /* removed on SIGINT/SIGTERM/SIGHUP/SIGXFSZ */
    }
    if (fd < 0) {
        free(target);
        free(b.p);
        return -1;
    }

    uint8_t *chunk = NULL;
    int rc = write_all(fd, b.p, b.n, path);
    size_t pos = b.n;
    if (!rc) rc = write_pad(fd, pos, align, path);
    for (int i = 0; !rc && i < w->n_t; i++) {
        pos = w->t[i].offset;
        rc = write_tensor_data(fd, &w->t[i], &chunk, path);
        pos += w->t[i].nbytes;
        /* pad the last tensor too: llama.cpp reads the data section as the sum of padded sizes */
        if (!rc) rc = write_pad(fd, pos, align, path);
    }
    free(chunk);
    free(b.p);
    if (!rc && fsync(fd) != 0) rc = loom_err("%s: fsync failed: %s", path, strerror(errno));
    /* renamed while still open: its lock keeps another writer's sweep off it until then */
    if (!rc && rename(tmp, target) != 0) rc = loom_err("%s: cannot rename the temporary file: %s", path, strerror(errno));
    if (close(fd) != 0 && !rc) rc = loom_err("%s: close failed: %s", path, strerror(errno));
    if (rc) unlink(tmp);
    out_release(slot);
    free(tmp);
    free(target);
    return rc;
}
