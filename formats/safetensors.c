/* safetensors reader: mmap, header JSON through cJSON, every offset checked before use. */
#include "formats/safetensors.h"

#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* safetensors' own limit on the header size */
#define ST_MAX_HEADER (100u << 20)

struct st_file {
    char *path;
    const uint8_t *map;
    size_t size;
    cJSON *root;          /* owns the tensor names */
    const cJSON *meta;
    st_tensor *t;
    void **copies;        /* aligned copies of misaligned tensors (NULL entries otherwise) */
    int n;
    int *slot;            /* open-addressing name index: tensor index + 1 */
    size_t cap;
    struct st_span *spans; /* each tensor's data_offsets, while the header is checked */
};

static size_t slot_of(const st_file *f, const char *name) {
    return (size_t)XXH3_64bits(name, strlen(name)) & (f->cap - 1);
}

const st_tensor *st_find(const st_file *f, const char *name) {
    if (!f || !name || !f->slot) return NULL;
    for (size_t h = slot_of(f, name); f->slot[h]; h = (h + 1) & (f->cap - 1))
        if (!strcmp(f->t[f->slot[h] - 1].name, name)) return &f->t[f->slot[h] - 1];
    return NULL;
}

static int dtype_parse(const char *s, loom_dtype *out) {
    static const struct { const char *name; loom_dtype t; } ok[] = {
        {"F32", LOOM_F32}, {"F16", LOOM_F16}, {"BF16", LOOM_BF16}, {"I32", LOOM_I32}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!strcmp(s, ok[i].name)) {
            *out = ok[i].t;
            return 0;
        }
    return -1;
}

/* A JSON number that is a whole number in [0, 2^53] (exact in a double). */
static int json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d) return -1;
    *out = (uint64_t)d;
    return 0;
}

typedef struct st_span { uint64_t b, e; const char *name; } st_span;

static int by_begin(const void *x, const void *y) {
    const st_span *a = x, *b = y;
    return a->b != b->b ? (a->b > b->b) - (a->b < b->b) : (a->e > b->e) - (a->e < b->e);
}

/* The format requires the data section to be exactly the tensors' bytes, back to back in some
 * order: no holes, and no two tensors sharing (aliasing) bytes. */
static int check_contiguous(const st_file *f, st_span *sp, int n, size_t data_size) {
    qsort(sp, (size_t)n, sizeof *sp, by_begin);
    uint64_t end = 0;
    for (int i = 0; i < n; i++) {
        if (sp[i].b != end)
            return loom_err("%s: tensor '%s' data_offsets [%llu, %llu] %s the previous tensor's end (%llu): "
                            "tensor data must be contiguous, without overlaps or holes", f->path, sp[i].name,
                            (unsigned long long)sp[i].b, (unsigned long long)sp[i].e,
                            sp[i].b < end ? "overlap" : "leave a hole after", (unsigned long long)end);
        end = sp[i].e;
    }
    if (end != data_size)
        return loom_err("%s: the tensors' data ends at %llu but the data section holds %zu bytes", f->path,
                        (unsigned long long)end, data_size);
    return 0;
}

static int parse_entry(st_file *f, const cJSON *e, st_tensor *t, size_t data_size, size_t data_off, st_span *sp) {
    const char *p = f->path, *name = e->string;
    t->name = name;
    if (!cJSON_IsObject(e)) return loom_err("%s: header entry '%s' is not an object", p, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return loom_err("%s: tensor '%s' has no dtype string", p, name);
    if (dtype_parse(dt->valuestring, &t->dtype))
        return loom_err("%s: tensor '%s' has unsupported dtype %s (supported: F32, F16, BF16, I32)", p, name,
                        dt->valuestring);
    if (!cJSON_IsArray(sh)) return loom_err("%s: tensor '%s' has no shape array", p, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAX_DIMS) return loom_err("%s: tensor '%s' has %d dimensions (at most %d)", p, name, nd, ST_MAX_DIMS);
    t->ndim = nd;
    size_t numel = 1;
    int d = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, sh) {
        uint64_t n;
        if (json_u64(v, &n) || n > (uint64_t)INT64_MAX)
            return loom_err("%s: tensor '%s' shape[%d] is not a non-negative integer", p, name, d);
        t->shape[d++] = (int64_t)n;
        if (!loom_mul_ok(numel, (size_t)n, &numel))
            return loom_err("%s: tensor '%s' shape overflows", p, name);
    }
    size_t want;
    if (!loom_mul_ok(numel, loom_dtype_size(t->dtype), &want))
        return loom_err("%s: tensor '%s' shape overflows", p, name);
    uint64_t b, en;
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || json_u64(cJSON_GetArrayItem(of, 0), &b) ||
        json_u64(cJSON_GetArrayItem(of, 1), &en))
        return loom_err("%s: tensor '%s' data_offsets is not a pair of non-negative integers", p, name);
    if (b > en)
        return loom_err("%s: tensor '%s' data_offsets [%llu, %llu] end before they begin", p, name,
                        (unsigned long long)b, (unsigned long long)en);
    if (en > data_size)
        return loom_err("%s: tensor '%s' data_offsets [%llu, %llu] run past the data section (%zu bytes)", p, name,
                        (unsigned long long)b, (unsigned long long)en, data_size);
    t->nbytes = (size_t)(en - b);
    if (t->nbytes != want)
        return loom_err("%s: tensor '%s' data_offsets span %zu bytes but shape x %s needs %zu", p, name, t->nbytes,
                        dt->valuestring, want);
    t->data = f->map + data_off + b;
    *sp = (st_span){b, en, name};
    return 0;
}

static int parse(st_file *f) {
    const char *p = f->path;
    uint64_t hlen;
    memcpy(&hlen, f->map, 8);
    if (hlen > f->size - 8)
        return loom_err("%s: header length %llu runs past end of file (%zu bytes)", p, (unsigned long long)hlen,
                        f->size);
    if (hlen > ST_MAX_HEADER) return loom_err("%s: header length %llu exceeds 100 MiB", p, (unsigned long long)hlen);
    if (hlen < 2) return loom_err("%s: header length %llu is too short for a JSON header", p, (unsigned long long)hlen);
    const char *json = (const char *)f->map + 8;
    if (json[0] != '{') return loom_err("%s: not a safetensors file (header does not start with '{')", p);
    const char *end = NULL;
    f->root = cJSON_ParseWithLengthOpts(json, (size_t)hlen, &end, false);
    if (!f->root || !cJSON_IsObject(f->root)) {
        const char *at = cJSON_GetErrorPtr();
        size_t pos = at && at >= json && at <= json + hlen ? (size_t)(at - json) : 0;
        return loom_err("%s: header is not a valid JSON object (error near byte %zu)", p, pos + 8);
    }
    /* writers pad the header with spaces; anything else after the JSON means the length lies */
    for (const char *c = end; c && c < json + hlen; c++)
        if (*c != ' ' && *c != '\t' && *c != '\n' && *c != '\r')
            return loom_err("%s: header length %llu does not match the JSON (stray bytes at offset %zu)", p,
                            (unsigned long long)hlen, (size_t)(c - json) + 8);
    size_t data_off = 8 + (size_t)hlen, data_size = f->size - data_off;
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, f->root) n++;
    f->t = loom_calloc((size_t)n + 1, sizeof *f->t);
    f->copies = loom_calloc((size_t)n + 1, sizeof(void *));
    f->cap = 16;
    while (f->cap < 2 * (size_t)n) f->cap *= 2;
    f->slot = loom_calloc(f->cap, sizeof(int));
    f->spans = loom_calloc((size_t)n + 1, sizeof *f->spans);
    if (!f->t || !f->copies || !f->slot || !f->spans) return -1;
    cJSON_ArrayForEach(e, f->root) {
        if (!e->string) return loom_err("%s: header entry without a name", p);
        if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e)) return loom_err("%s: __metadata__ is not an object", p);
            f->meta = e;
            continue;
        }
        if (st_find(f, e->string)) return loom_err("%s: duplicate tensor name '%s'", p, e->string);
        st_tensor *t = &f->t[f->n];
        if (parse_entry(f, e, t, data_size, data_off, &f->spans[f->n])) return -1;
        size_t al = loom_dtype_size(t->dtype);
        if ((uintptr_t)t->data % al) { /* keep kernels' typed loads legal */
            void *c = loom_malloc_aligned(t->nbytes);
            if (!c) return -1;
            memcpy(c, t->data, t->nbytes);
            f->copies[f->n] = c;
            t->data = c;
        }
        size_t h = slot_of(f, t->name);
        while (f->slot[h]) h = (h + 1) & (f->cap - 1);
        f->slot[h] = ++f->n;
    }
    return check_contiguous(f, f->spans, f->n, data_size);
}

st_file *st_open(const char *path) {
    st_file *f = loom_calloc(1, sizeof *f);
    if (!f) return NULL;
    size_t plen = strlen(path);
    if (!(f->path = loom_malloc(plen + 1))) {
        free(f);
        return NULL;
    }
    memcpy(f->path, path, plen + 1);
    int fd = loom_open_regular(path);
    if (fd < 0) {
        st_close(f);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        loom_err("%s: not a regular file", path);
        close(fd);
        st_close(f);
        return NULL;
    }
    if (st.st_size < 8) {
        loom_err("%s: truncated: %lld bytes is too short for a safetensors header", path, (long long)st.st_size);
        close(fd);
        st_close(f);
        return NULL;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m != MAP_FAILED) loom_map_note(m, (size_t)st.st_size, path);
    close(fd);
    if (m == MAP_FAILED) {
        loom_err("%s: mmap failed: %s", path, strerror(errno));
        st_close(f);
        return NULL;
    }
    f->map = m;
    f->size = (size_t)st.st_size;
    if (parse(f)) {
        st_close(f);
        return NULL;
    }
    return f;
}

void st_close(st_file *f) {
    if (!f) return;
    if (f->copies)
        for (int i = 0; i < f->n; i++) loom_free_aligned(f->copies[i]);
    free(f->copies);
    free(f->t);
    free(f->spans);
    free(f->slot);
    cJSON_Delete(f->root);
    if (f->map) {
        loom_map_forget(f->map);
        munmap((void *)f->map, f->size);
    }
    free(f->path);
    free(f);
}

const char *st_path(const st_file *f) { return f->path; }
int st_n_tensors(const st_file *f) { return f->n; }
const st_tensor *st_tensor_at(const st_file *f, int i) { return i >= 0 && i < f->n ? &f->t[i] : NULL; }

const char *st_metadata(const st_file *f, const char *key) {
    const cJSON *v = f->meta ? cJSON_GetObjectItemCaseSensitive(f->meta, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

size_t st_numel(const st_tensor *t) {
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d]; /* checked at open */
    return n;
}
