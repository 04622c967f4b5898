/* loom_source: a HF directory or a GGUF file behind one interface (see source.h). */
#include "formats/source.h"

#include "formats/gguf.h"
#include "core/qblock.h"
#include "formats/safetensors.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define CONFIG_MAX_BYTES (64u << 20)

struct loom_source {
    loom_source_kind kind;
    char *path;
    char *config_path;  /* HF: dir/config.json (for messages) */
    char arch[64];
    char **hf_archs;    /* NULL-terminated */
    cJSON *config;
    gguf_ctx *gguf;
    st_file **shards;
    int n_shards;
    loom_weight *w;
    float **owned;      /* per weight: the f32 copy of a 1-D tensor, else NULL */
    int n_w, n_alloc;
    int *slot;          /* name index: weight index + 1 */
    size_t cap;
};

/* ---- weight table ---------------------------------------------------------------------------- */

static size_t slot_of(const loom_source *s, const char *name) {
    return (size_t)XXH3_64bits(name, strlen(name)) & (s->cap - 1);
}

const loom_weight *loom_source_find(const loom_source *s, const char *name) {
    if (!s || !name || !s->slot) return NULL;
    for (size_t h = slot_of(s, name); s->slot[h]; h = (h + 1) & (s->cap - 1))
        if (!strcmp(s->w[s->slot[h] - 1].name, name)) return &s->w[s->slot[h] - 1];
    return NULL;
}

static int table_init(loom_source *s, int n) {
    s->w = loom_calloc((size_t)n + 1, sizeof *s->w);
    s->owned = loom_calloc((size_t)n + 1, sizeof *s->owned);
    s->n_alloc = n + 1;
    s->cap = 16;
    while (s->cap < 2 * (size_t)n) s->cap *= 2;
    s->slot = loom_calloc(s->cap, sizeof(int));
    return s->w && s->owned && s->slot ? 0 : -1;
}

/* Rebuild the name index (after renames, or to grow it). */
static int table_rehash(loom_source *s, size_t cap) {
    int *slot = loom_calloc(cap, sizeof(int));
    if (!slot) return -1;
    free(s->slot);
    s->slot = slot;
    s->cap = cap;
    for (int i = 0; i < s->n_w; i++) {
        size_t h = slot_of(s, s->w[i].name);
        while (s->slot[h]) h = (h + 1) & (s->cap - 1);
        s->slot[h] = i + 1;
    }
    return 0;
}

/* Room for one more weight. */
static int table_reserve(loom_source *s) {
    if (s->n_w + 1 < s->n_alloc && 2 * (size_t)(s->n_w + 1) <= s->cap) return 0;
    if (s->n_w + 1 >= s->n_alloc) {
        int n = 2 * s->n_alloc + 8;
        loom_weight *w = loom_realloc(s->w, (size_t)n * sizeof *w);
        if (!w) return -1;
        s->w = w;
        float **o = loom_realloc(s->owned, (size_t)n * sizeof *o);
        if (!o) return -1;
        s->owned = o;
        for (int i = s->n_alloc; i < n; i++) s->owned[i] = NULL;
        s->n_alloc = n;
    }
    return 2 * (size_t)(s->n_w + 1) <= s->cap ? 0 : table_rehash(s, 2 * s->cap);
}

/* Add a weight; 1-D tensors become owned f32 copies. `where` names the file for messages. */
static int table_add(loom_source *s, const char *name, const char *orig, loom_dtype t, int ndim,
                     const int64_t *ne, const void *data, size_t nbytes, const char *where) {
    if (strlen(name) >= sizeof s->w[0].name)
        return loom_err("%s: tensor name '%s' is longer than %zu bytes", where, name, sizeof s->w[0].name - 1);
    if (ndim > 4) return loom_err("%s: tensor '%s' has %d dimensions (at most 4 supported)", where, orig, ndim);
    const loom_weight *dup = loom_source_find(s, name);
    if (dup && strcmp(name, orig)) return loom_err("%s: duplicate tensor '%s' (from '%s')", where, name, orig);
    if (dup) return loom_err("%s: duplicate tensor '%s'", where, name);
    if (table_reserve(s)) return -1;
    loom_weight *w = &s->w[s->n_w];
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    w->type = t;
    w->ndim = ndim < 1 ? 1 : ndim; /* a scalar is a 1-element vector */
    for (int d = 0; d < 4; d++) w->ne[d] = d < ndim ? ne[d] : 1;
    w->data = data;
    w->nbytes = nbytes;
    w->id = s->n_w;
    if (w->ndim == 1) {
        size_t n = (size_t)w->ne[0]; /* elements, also for block types (loom_dtype_size is 0) */
        float *f = loom_malloc_aligned(n * sizeof(float));
        if (!f) return -1;
        loom_to_f32(f, data, t, n);
        s->owned[s->n_w] = f;
        w->data = f;
        w->type = LOOM_F32;
        w->nbytes = n * sizeof(float);
    }
    size_t h = slot_of(s, w->name);
    while (s->slot[h]) h = (h + 1) & (s->cap - 1);
    s->slot[h] = ++s->n_w;
    return 0;
}

/* ---- renames and views --------------------------------------------------------------------- */

int loom_source_rename(loom_source *s, loom_source_name_fn fn, void *user) {
    for (int i = 0; i < s->n_w; i++) {
        char name[sizeof s->w[0].name];
        int r = fn(user, s->w[i].name, name, sizeof name);
        if (r < 0) return -1;
        if (r > 0) memcpy(s->w[i].name, name, sizeof name);
    }
    if (table_rehash(s, s->cap)) return -1;
    for (int i = 0; i < s->n_w; i++) {
        const loom_weight *w = loom_source_find(s, s->w[i].name);
        if (w != &s->w[i]) return loom_err("%s: two tensors are both named '%s'", s->path, s->w[i].name);
    }
    return 0;
}

int loom_source_split_rows(loom_source *s, const char *name, int n_parts, const char *const *names,
                           const int64_t *rows) {
    const loom_weight *found = loom_source_find(s, name);
    if (!found) return loom_err("%s: missing tensor '%s'", s->path, name);
    int id = found->id;
    int64_t total = 0;
    for (int p = 0; p < n_parts; p++) total += rows[p];
    const loom_weight w0 = *found;
    if (w0.ndim != 2 || w0.ne[0] != total)
        return loom_err("%s: tensor '%s' has %lld rows, expected %lld to split into %d parts", s->path, name,
                        (long long)w0.ne[0], (long long)total, n_parts);
    for (int p = 0; p < n_parts; p++) {
        const loom_weight *o = loom_source_find(s, names[p]);
        if (o && o->id != id) return loom_err("%s: both '%s' and its part '%s' are present", s->path, name, names[p]);
        if (strlen(names[p]) >= sizeof w0.name) return loom_err("%s: tensor name '%s' is too long", s->path, names[p]);
    }
    size_t row_bytes = w0.nbytes / (size_t)total;
    int64_t r0 = 0;
    for (int p = 0; p < n_parts; p++) {
        /* the first part takes the fused tensor's place (same id), the others are appended */
        if (p > 0 && table_reserve(s)) return -1;
        loom_weight *w = p == 0 ? &s->w[id] : &s->w[s->n_w];
        *w = w0;
        snprintf(w->name, sizeof w->name, "%s", names[p]);
        w->ne[0] = rows[p];
        w->data = (const uint8_t *)w0.data + (size_t)r0 * row_bytes;
        w->nbytes = (size_t)rows[p] * row_bytes;
        if (p > 0) {
            w->id = s->n_w++;
            s->owned[w->id] = NULL; /* a view of the mapped file */
        }
        r0 += rows[p];
    }
    return table_rehash(s, s->cap);
}

int loom_source_stack(loom_source *s, const char *name, int n, const char *const *names) {
    if (n < 1) return loom_err("%s: nothing to stack into '%s'", s->path, name);
    if (strlen(name) >= sizeof s->w[0].name) return loom_err("%s: tensor name '%s' is too long", s->path, name);
    if (loom_source_find(s, name)) return loom_err("%s: both '%s' and its parts are present", s->path, name);
    const loom_weight *w0 = loom_source_find(s, names[0]);
    if (!w0) return loom_err("%s: missing tensor '%s'", s->path, names[0]);
    if (w0->ndim > 3) return loom_err("%s: tensor '%s' has %d dimensions (at most 3 to stack)", s->path, names[0], w0->ndim);
    int *ids = loom_malloc((size_t)n * sizeof *ids);
    if (!ids) return -1;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const loom_weight *w = loom_source_find(s, names[i]);
        bool same = w && w->type == w0->type && w->ndim == w0->ndim && w->nbytes == w0->nbytes;
        for (int d = 0; same && d < w0->ndim; d++) same = w->ne[d] == w0->ne[d];
        if (!same) {
            free(ids);
            return w ? loom_err("%s: tensor '%s' differs from '%s' in type or shape", s->path, names[i], names[0])
                     : loom_err("%s: missing tensor '%s' (stacking '%s')", s->path, names[i], name);
        }
        ids[i] = w->id;
        total += w->nbytes;
    }
    uint8_t *buf = loom_malloc_aligned(total ? total : 1);
    if (!buf) {
        free(ids);
        return -1;
    }
    for (int i = 0; i < n; i++) memcpy(buf + (size_t)i * w0->nbytes, s->w[ids[i]].data, w0->nbytes);
    /* the stack takes the first part's slot; the other parts leave the table (ids stay dense) */
    loom_weight *w = &s->w[ids[0]];
    for (int d = w->ndim; d > 0; d--) w->ne[d] = w->ne[d - 1];
    w->ne[0] = n;
    w->ndim++;
    w->data = buf;
    w->nbytes = total;
    snprintf(w->name, sizeof w->name, "%s", name);
    loom_free_aligned(s->owned[ids[0]]);
    s->owned[ids[0]] = (float *)(void *)buf;
    int k = 0;
    for (int i = 0; i < s->n_w; i++) {
        bool gone = false;
        for (int j = 1; j < n && !gone; j++) gone = ids[j] == i;
        if (gone) {
            loom_free_aligned(s->owned[i]);
            continue;
        }
        s->w[k] = s->w[i];
        s->owned[k] = s->owned[i];
        s->w[k].id = k;
        k++;
    }
    for (int i = k; i < s->n_w; i++) s->owned[i] = NULL;
    s->n_w = k;
    free(ids);
    return table_rehash(s, s->cap);
}

int loom_source_vector_add(loom_source *s, const char *name, float v) {
    const loom_weight *w = loom_source_find(s, name);
    if (!w) return loom_err("%s: missing tensor '%s'", s->path, name);
    float *f = s->owned[w->id];
    if (!f || w->ndim != 1) return loom_err("%s: tensor '%s' is not a vector", s->path, name);
    for (int64_t i = 0; i < w->ne[0]; i++) f[i] += v;
    return 0;
}

/* ---- HF directories ---------------------------------------------------------------------------- */

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = loom_malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t o = a;
    if (a && dir[a - 1] != '/') p[o++] = '/';
    memcpy(p + o, name, b + 1);
    return p;
}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Read and parse a JSON file (object expected). */
void *loom_json_read(const char *path) {
    FILE *f = loom_fopen_regular(path);
    if (!f) return NULL;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return loom_err_null("%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > CONFIG_MAX_BYTES) {
        fclose(f);
        return loom_err_null("%s: %lld bytes is too large for a JSON config", path, (long long)st.st_size);
    }
    size_t n = (size_t)st.st_size;
    char *buf = loom_malloc(n + 1);
    if (!buf) {
        fclose(f);
        return NULL;
    }
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) {
        free(buf);
        return loom_err_null("%s: read failed", path);
    }
    buf[n] = 0;
    cJSON *j = cJSON_ParseWithLength(buf, n);
    if (!j || !cJSON_IsObject(j)) {
        const char *at = cJSON_GetErrorPtr();
        size_t pos = j == NULL && at && at >= buf && at <= buf + n ? (size_t)(at - buf) : 0;
        cJSON_Delete(j);
        free(buf);
        return j ? loom_err_null("%s: not a JSON object", path)
                 : loom_err_null("%s: not valid JSON (error near byte %zu)", path, pos);
    }
    free(buf);
    return j;
}

static int add_shard(loom_source *s, const char *file) {
    char *p = path_join(s->path, file);
    if (!p) return -1;
    st_file *f = st_open(p);
    free(p);
    if (!f) return -1;
    st_file **n = loom_realloc(s->shards, (size_t)(s->n_shards + 1) * sizeof *n);
    if (!n) {
        st_close(f);
        return -1;
    }
    s->shards = n;
    s->shards[s->n_shards++] = f;
    return 0;
}

static int shard_index(const loom_source *s, const char *dir_path_file) {
    for (int i = 0; i < s->n_shards; i++)
        if (!strcmp(st_path(s->shards[i]), dir_path_file)) return i;
    return -1;
}

/* model.safetensors.index.json: open every shard it names once, check each listed tensor is there. */
static int open_index(loom_source *s, const char *index_path) {
    cJSON *j = loom_json_read(index_path);
    if (!j) return -1;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(j, "weight_map");
    int rc = 0;
    if (!cJSON_IsObject(wm)) {
        rc = loom_err("%s: no \"weight_map\" object", index_path);
        goto done;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e)) {
            rc = loom_err("%s: weight_map entry '%s' is not a file name", index_path, e->string);
            goto done;
        }
        const char *file = e->valuestring;
        if (!*file || strchr(file, '/') || file[0] == '.') {
            rc = loom_err("%s: shard name '%s' for '%s' is not a plain file name", index_path, file, e->string);
            goto done;
        }
        char *p = path_join(s->path, file);
        if (!p) {
            rc = -1;
            goto done;
        }
        int si = shard_index(s, p);
        if (si < 0) {
            if (!file_exists(p)) {
                rc = loom_err("%s: shard '%s' (holding '%s') does not exist", index_path, file, e->string);
                free(p);
                goto done;
            }
            if (add_shard(s, file)) {
                free(p);
                rc = -1;
                goto done;
            }
            si = s->n_shards - 1;
        }
        free(p);
        if (!st_find(s->shards[si], e->string)) {
            rc = loom_err("%s: tensor '%s' is not in shard '%s'", index_path, e->string, file);
            goto done;
        }
    }
    if (s->n_shards == 0) rc = loom_err("%s: weight_map is empty", index_path);
done:
    cJSON_Delete(j);
    return rc;
}

static void hf_arch_from_config(loom_source *s) {
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(s->config, "model_type");
    if (cJSON_IsString(mt) && *mt->valuestring) {
        snprintf(s->arch, sizeof s->arch, "%s", mt->valuestring);
        return;
    }
    /* "Qwen2ForCausalLM" -> "qwen2" */
    const char *a0 = s->hf_archs[0];
    if (!a0) return;
    const char *end = strstr(a0, "ForCausalLM");
    size_t n = end ? (size_t)(end - a0) : strlen(a0);
    if (n >= sizeof s->arch) n = sizeof s->arch - 1;
    for (size_t i = 0; i < n; i++) s->arch[i] = (char)tolower((unsigned char)a0[i]);
    s->arch[n] = 0;
}

static int open_hf(loom_source *s, bool config_only) {
    if (!s->config_path && !(s->config_path = path_join(s->path, "config.json"))) return -1;
    if (!file_exists(s->config_path))
        return config_only ? loom_err("%s: cannot open: no such file", s->config_path)
                           : loom_err("%s: no config.json (not a HuggingFace model directory)", s->path);
    if (!(s->config = loom_json_read(s->config_path))) return -1;

    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(s->config, "architectures");
    int na = cJSON_IsArray(archs) ? cJSON_GetArraySize(archs) : 0;
    if (archs && !cJSON_IsArray(archs) && !cJSON_IsNull(archs))
        return loom_err("%s: 'architectures' is not a list", s->config_path);
    if (!(s->hf_archs = loom_calloc((size_t)na + 1, sizeof(char *)))) return -1;
    int k = 0;
    const cJSON *a;
    cJSON_ArrayForEach(a, archs) {
        if (!cJSON_IsString(a)) return loom_err("%s: 'architectures' holds a non-string", s->config_path);
        size_t n = strlen(a->valuestring);
        if (!(s->hf_archs[k] = loom_malloc(n + 1))) return -1;
        memcpy(s->hf_archs[k++], a->valuestring, n + 1);
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(s->config, "model_type");
    if (mt && !cJSON_IsString(mt) && !cJSON_IsNull(mt))
        return loom_err("%s: 'model_type' is not a string", s->config_path);
    hf_arch_from_config(s);
    if (config_only) return table_init(s, 0);

    char *index = path_join(s->path, "model.safetensors.index.json");
    char *single = path_join(s->path, "model.safetensors");
    int rc = 0;
    if (!index || !single)
        rc = -1;
    else if (file_exists(index))
        rc = open_index(s, index);
    else if (file_exists(single))
        rc = add_shard(s, "model.safetensors");
    else
        rc = loom_err("%s: no model.safetensors or model.safetensors.index.json", s->path);
    free(index);
    free(single);
    if (rc) return -1;

    int total = 0;
    for (int i = 0; i < s->n_shards; i++) total += st_n_tensors(s->shards[i]);
    if (table_init(s, total)) return -1;
    for (int i = 0; i < s->n_shards; i++) {
        const st_file *f = s->shards[i];
        for (int j = 0; j < st_n_tensors(f); j++) {
            const st_tensor *t = st_tensor_at(f, j);
            if (table_add(s, t->name, t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes, st_path(f)))
                return -1;
        }
    }
    return 0;
}

/* ---- GGUF ---------------------------------------------------------------------------------- */

/* A quantised tensor: rows of whole blocks, and every block scale finite (a NaN scale would turn a
 * whole output row into NaN with no hint why). Scanning the scales costs one pass over 1/17 to 1/70
 * of the bytes, once, at open. */
static int check_quant(const char *path, const char *name, loom_dtype t, int ndim, const int64_t *ne,
                       const void *data, size_t nbytes) {
    int blck = loom_dtype_blck(t);
    int64_t inner = ndim > 0 ? ne[ndim - 1] : 1;
    if (inner % blck)
        return loom_err("%s: tensor '%s' (%s): inner dimension %lld is not a multiple of the %d-element block",
                        path, name, loom_dtype_name(t), (long long)inner, blck);
    int64_t nb = (int64_t)(nbytes / loom_dtype_block_bytes(t));
    int64_t bad = loom_quant_bad_scale(t, data, nb);
    if (bad >= 0)
        return loom_err("%s: tensor '%s' (%s): block %lld has a NaN or infinite scale", path, name,
                        loom_dtype_name(t), (long long)bad);
    return 0;
}

static int open_gguf(loom_source *s) {
    if (!(s->gguf = gguf_open(s->path))) return -1;
    gguf_ctx *g = s->gguf;
    int ai = gguf_find_key(g, "general.architecture");
    if (ai >= 0) {
        const char *a = gguf_get_str(g, ai, NULL);
        if (!a) return loom_err("%s: general.architecture is not a string", s->path);
        snprintf(s->arch, sizeof s->arch, "%s", a);
    }
    int n = gguf_n_tensors(g);
    if (table_init(s, n)) return -1;
    for (int i = 0; i < n; i++) {
        int gt = gguf_tensor_ggml_type(g, i);
        loom_dtype t = gguf_dtype_from_ggml(gt);
        const char *name = gguf_tensor_name(g, i);
        if (t != LOOM_F32 && t != LOOM_F16 && t != LOOM_BF16 && !loom_dtype_is_quant(t))
            return loom_err("%s: unsupported tensor type %s for '%s' (supported: f32, f16, bf16, q8_0, q4_0, "
                            "q4_K, q6_K)", s->path, gguf_ggml_type_name(gt), name);
        int64_t ne[4];
        gguf_tensor_shape(g, i, ne);
        if (loom_dtype_is_quant(t) && check_quant(s->path, name, t, gguf_tensor_ndim(g, i), ne,
                                                  gguf_tensor_data(g, i), gguf_tensor_nbytes(g, i)))
            return -1;
        if (table_add(s, name, name, t, gguf_tensor_ndim(g, i), ne, gguf_tensor_data(g, i),
                      gguf_tensor_nbytes(g, i), s->path))
            return -1;
    }
    return 0;
}

/* ---- open / close ---------------------------------------------------------------------------- */

/* A path to config.json or a .safetensors file inside a HF directory means the directory. */
static char *hf_dir_of_file(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t bl = strlen(base);
    bool is_cfg = !strcmp(base, "config.json") || !strcmp(base, "model.safetensors.index.json");
    bool is_st = bl > 12 && !strcmp(base + bl - 12, ".safetensors");
    if (!is_cfg && !is_st) return NULL;
    size_t dl = slash ? (size_t)(slash - path) : 0;
    char *d = loom_malloc(dl + 2);
    if (!d) return NULL;
    if (dl)
        memcpy(d, path, dl);
    else
        d[dl++] = '.';
    d[dl] = 0;
    return d;
}

loom_source *loom_source_open(const char *path) {
    if (!path || !*path) return loom_err_null("loom_source_open: empty path");
    struct stat st;
    if (stat(path, &st) != 0) return loom_err_null("%s: cannot open: %s", path, strerror(errno));
    loom_source *s = loom_calloc(1, sizeof *s);
    if (!s) return NULL;
    int rc;
    if (S_ISDIR(st.st_mode)) {
        s->kind = LOOM_SOURCE_HF;
        size_t n = strlen(path);
        s->path = loom_malloc(n + 1);
        if (s->path) memcpy(s->path, path, n + 1);
        rc = s->path ? open_hf(s, false) : -1;
    } else {
        /* detect GGUF by its magic, whatever the file is called */
        char magic[4] = {0};
        int fd = loom_open_regular(path);
        if (fd < 0) {
            loom_source_close(s);
            return NULL;
        }
        ssize_t got = read(fd, magic, 4);
        if (fd >= 0) close(fd);
        size_t n = strlen(path);
        if (got == 4 && !memcmp(magic, "GGUF", 4)) {
            s->kind = LOOM_SOURCE_GGUF;
            s->path = loom_malloc(n + 1);
            if (s->path) memcpy(s->path, path, n + 1);
            rc = s->path ? open_gguf(s) : -1;
        } else if ((s->path = hf_dir_of_file(path))) {
            s->kind = LOOM_SOURCE_HF;
            rc = open_hf(s, false);
        } else {
            rc = loom_err("%s: not a GGUF file (bad magic) or a HuggingFace model directory", path);
        }
    }
    if (rc) {
        loom_source_close(s);
        return NULL;
    }
    return s;
}

loom_source *loom_source_open_config(const char *config_path) {
    loom_source *s = loom_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->kind = LOOM_SOURCE_HF;
    const char *slash = strrchr(config_path, '/');
    size_t dl = slash ? (size_t)(slash - config_path) : 0, n = strlen(config_path);
    s->path = loom_malloc(dl + 2);
    s->config_path = loom_malloc(n + 1);
    if (!s->path || !s->config_path) {
        loom_source_close(s);
        return NULL;
    }
    memcpy(s->config_path, config_path, n + 1);
    if (dl) memcpy(s->path, config_path, dl);
    else s->path[dl++] = '.';
    s->path[dl] = 0;
    if (open_hf(s, true)) {
        loom_source_close(s);
        return NULL;
    }
    return s;
}

void loom_source_close(loom_source *s) {
    if (!s) return;
    if (s->owned)
        for (int i = 0; i < s->n_w; i++) loom_free_aligned(s->owned[i]);
    free(s->owned);
    free(s->w);
    free(s->slot);
    for (int i = 0; i < s->n_shards; i++) st_close(s->shards[i]);
    free(s->shards);
    if (s->hf_archs)
        for (int i = 0; s->hf_archs[i]; i++) free(s->hf_archs[i]);
    free(s->hf_archs);
    cJSON_Delete(s->config);
    gguf_close(s->gguf);
    free(s->config_path);
    free(s->path);
    free(s);
}

loom_source_kind loom_source_get_kind(const loom_source *s) { return s->kind; }
const char *loom_source_path(const loom_source *s) { return s->path; }
const char *loom_source_config_path(const loom_source *s) { return s->config_path ? s->config_path : s->path; }
const char *loom_source_arch(const loom_source *s) { return s->arch; }
const char *const *loom_source_hf_architectures(const loom_source *s) {
    return s->kind == LOOM_SOURCE_HF ? (const char *const *)s->hf_archs : NULL;
}
int loom_source_n_tensors(const loom_source *s) { return s->n_w; }
const loom_weight *loom_source_tensor(const loom_source *s, int i) {
    return i >= 0 && i < s->n_w ? &s->w[i] : NULL;
}
const void *loom_source_hf_config(const loom_source *s) { return s->config; }
const struct gguf_ctx *loom_source_gguf(const loom_source *s) { return s->gguf; }

/* ---- hyper-parameters ---------------------------------------------------------------------- */

const char *loom_json_kind(const void *jv) {
    const cJSON *v = jv;
    if (cJSON_IsBool(v)) return "a bool";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "a list";
    if (cJSON_IsObject(v)) return "an object";
    return "null";
}

/* Walk a dotted path. Returns 1 with *out, 0 when absent/null, -1 when an intermediate is not an
 * object. */
static int hf_lookup(const loom_source *s, const char *key, const cJSON **out) {
    if (s->kind != LOOM_SOURCE_HF || !key) return 0;
    const cJSON *cur = s->config;
    const char *p = key;
    char part[128];
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n == 0 || n >= sizeof part) return 0;
        memcpy(part, p, n);
        part[n] = 0;
        if (!cJSON_IsObject(cur)) {
            return loom_err("%s: '%.*s' is %s, expected an object (looking up '%s')", s->config_path,
                            (int)(p - key - 1), key, loom_json_kind(cur), key);
        }
        cur = cJSON_GetObjectItemCaseSensitive(cur, part);
        if (!cur || cJSON_IsNull(cur)) return 0;
        if (!dot) break;
        p = dot + 1;
    }
    *out = cur;
    return 1;
}

/* The GGUF key with "{arch}" replaced; index or -1. */
static int gguf_lookup(const loom_source *s, const char *key, char *buf, size_t n) {
    if (s->kind != LOOM_SOURCE_GGUF || !key) return -1;
    const char *m = strstr(key, "{arch}");
    if (m) {
        if ((size_t)snprintf(buf, n, "%.*s%s%s", (int)(m - key), key, s->arch, m + 6) >= n) return -1;
    } else {
        snprintf(buf, n, "%s", key);
    }
    return gguf_find_key(s->gguf, buf);
}

static int gguf_type_err(const loom_source *s, const char *key, int i, const char *want) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                  "bool", "string", "array", "u64", "i64", "f64"};
    unsigned t = (unsigned)gguf_kv_type(s->gguf, i);
    return loom_err("%s: key '%s' has type %s, expected %s", s->path, key, t < 13 ? names[t] : "?", want);
}

int loom_source_get_int(const loom_source *s, const char *hf_key, const char *gguf_key, int64_t *out) {
    const cJSON *v;
    int r = hf_lookup(s, hf_key, &v);
    if (r == 1) {
        /* a list of ids (eos_token_id in Llama 3 configs): the first one */
        bool list = cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0;
        if (list) v = cJSON_GetArrayItem(v, 0);
        double d = v->valuedouble;
        if (!cJSON_IsNumber(v) || d < -9007199254740992.0 || d > 9007199254740992.0 || d != (double)(int64_t)d)
            return loom_err("%s: '%s' is %s%s, expected an integer", s->config_path, hf_key,
                            list ? "a list whose first item is " : "",
                            cJSON_IsNumber(v) ? "a fractional number" : loom_json_kind(v));
        *out = (int64_t)d;
        return 1;
    }
    if (r < 0) return -1;
    char k[256];
    int i = gguf_lookup(s, gguf_key, k, sizeof k);
    if (i < 0) return 0;
    if (!gguf_get_int(s->gguf, i, out)) return gguf_type_err(s, k, i, "an integer");
    return 1;
}

int loom_source_get_float(const loom_source *s, const char *hf_key, const char *gguf_key, double *out) {
    const cJSON *v;
    int r = hf_lookup(s, hf_key, &v);
    if (r == 1) {
        if (!cJSON_IsNumber(v))
            return loom_err("%s: '%s' is %s, expected a number", s->config_path, hf_key, loom_json_kind(v));
        *out = v->valuedouble;
        return 1;
    }
    if (r < 0) return -1;
    char k[256];
    int i = gguf_lookup(s, gguf_key, k, sizeof k);
    if (i < 0) return 0;
    if (!gguf_get_float(s->gguf, i, out)) return gguf_type_err(s, k, i, "a number");
    return 1;
}

int loom_source_get_bool(const loom_source *s, const char *hf_key, const char *gguf_key, bool *out) {
    const cJSON *v;
    int r = hf_lookup(s, hf_key, &v);
    if (r == 1) {
        if (!cJSON_IsBool(v))
            return loom_err("%s: '%s' is %s, expected a bool", s->config_path, hf_key, loom_json_kind(v));
        *out = cJSON_IsTrue(v);
        return 1;
    }
    if (r < 0) return -1;
    char k[256];
    int i = gguf_lookup(s, gguf_key, k, sizeof k);
    if (i < 0) return 0;
    if (!gguf_get_bool(s->gguf, i, out)) return gguf_type_err(s, k, i, "a bool");
    return 1;
}

int loom_source_get_str(const loom_source *s, const char *hf_key, const char *gguf_key, char *buf, size_t n) {
    const cJSON *v;
    const char *val = NULL, *where = NULL, *key = NULL;
    char k[256];
    int r = hf_lookup(s, hf_key, &v);
    if (r < 0) return -1;
    if (r == 1) {
        if (!cJSON_IsString(v))
            return loom_err("%s: '%s' is %s, expected a string", s->config_path, hf_key, loom_json_kind(v));
        val = v->valuestring;
        where = s->config_path;
        key = hf_key;
    } else {
        int i = gguf_lookup(s, gguf_key, k, sizeof k);
        if (i < 0) return 0;
        if (!(val = gguf_get_str(s->gguf, i, NULL))) return gguf_type_err(s, k, i, "a string");
        where = s->path;
        key = k;
    }
    size_t len = strlen(val);
    if (!buf || len >= n) return loom_err("%s: '%s' value is longer than %zu bytes", where, key, n ? n - 1 : 0);
    memcpy(buf, val, len + 1);
    return 1;
}
