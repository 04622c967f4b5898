/* safetensors reader on the fixtures, plus bad files generated from good ones in a temp dir. */
#include "formats/safetensors.h"
#include "tests/unit/test_formats_util.h"
#include "core/util.h"

static const struct { const char *dir; int n_tensors, n_layer, n_prompt; loom_dtype dtype; } fixtures[] = {
    {"qwen2-tiny", 26, 2, 24, LOOM_F32},
    {"qwen2-tiny-bf16", 26, 2, 24, LOOM_BF16},
    {"llama-tiny", 21, 2, 24, LOOM_F32},
    {"stories260K-hf", 47, 5, 5, LOOM_F32},
};

static void test_fixtures(void) {
    for (size_t f = 0; f < sizeof fixtures / sizeof fixtures[0]; f++) {
        const char *dir = fixtures[f].dir;
        st_file *m = st_open(FIX("%s/model.safetensors", dir));
        CHECK(m, "%s: %s", dir, loom_last_error());
        if (m) {
            CHECK(st_n_tensors(m) == fixtures[f].n_tensors, "%s: %d tensors", dir, st_n_tensors(m));
            CHECK(st_metadata(m, "format") && !strcmp(st_metadata(m, "format"), "pt"), "%s: metadata", dir);
            CHECK(st_metadata(m, "nope") == NULL, "absent metadata");
            const st_tensor *e = st_find(m, "model.embed_tokens.weight");
            CHECK(e && e->ndim == 2 && e->shape[0] == 512 && e->dtype == fixtures[f].dtype, "%s: embedding", dir);
            CHECK(e && e->nbytes == st_numel(e) * loom_dtype_size(e->dtype), "%s: embedding bytes", dir);
            CHECK(st_find(m, "model.embed_tokens") == NULL, "prefix is not a match");
            char name[128];
            snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", fixtures[f].n_layer - 1);
            e = st_find(m, name);
            CHECK(e && e->ndim == 2 && e->shape[1] > e->shape[0], "%s: %s", dir, name);
            for (int i = 0; i < st_n_tensors(m); i++) {
                const st_tensor *t = st_tensor_at(m, i);
                CHECK((uintptr_t)t->data % loom_dtype_size(t->dtype) == 0, "%s: %s aligned", dir, t->name);
                CHECK(st_find(m, t->name) == t, "%s: find %s", dir, t->name);
            }
            CHECK(st_tensor_at(m, st_n_tensors(m)) == NULL && st_tensor_at(m, -1) == NULL, "index bounds");
            st_close(m);
        }
        st_file *r = st_open(FIX("%s/reference.safetensors", dir));
        CHECK(r, "%s reference: %s", dir, loom_last_error());
        if (!r) continue;
        int np = fixtures[f].n_prompt;
        const st_tensor *ids = st_find(r, "input_ids");
        CHECK(ids && ids->dtype == LOOM_I32 && ids->ndim == 1 && ids->shape[0] == np, "%s: input_ids", dir);
        const st_tensor *lg = st_find(r, "logits");
        CHECK(lg && lg->dtype == LOOM_F32 && lg->ndim == 2 && lg->shape[0] == np && lg->shape[1] == 512,
              "%s: logits", dir);
        if (ids) {
            const int32_t *v = ids->data;
            int ok = 1;
            for (int i = 0; i < np; i++) ok &= v[i] >= 0 && v[i] < 512;
            CHECK(ok, "%s: ids in range", dir);
            if (!strcmp(dir, "stories260K-hf")) /* the prompt from the fixture README */
                CHECK(v[0] == 1 && v[1] == 403 && v[2] == 407 && v[3] == 261 && v[4] == 378, "stories prompt ids");
        }
        if (lg) {
            const float *v = lg->data;
            int finite = 1;
            for (size_t i = 0; i < st_numel(lg); i++) finite &= isfinite(v[i]);
            CHECK(finite, "%s: logits finite", dir);
        }
        for (int l = 0; l <= fixtures[f].n_layer; l++) {
            char name[32];
            snprintf(name, sizeof name, "hidden.%d", l);
            const st_tensor *h = st_find(r, name);
            CHECK(h && h->dtype == LOOM_F32 && h->shape[0] == np, "%s: %s", dir, name);
        }
        char name[32];
        snprintf(name, sizeof name, "hidden.%d", fixtures[f].n_layer + 1);
        CHECK(st_find(r, name) == NULL, "%s: no %s", dir, name);
        const st_tensor *g = st_find(r, "greedy_ids"), *gl = st_find(r, "greedy_logits");
        CHECK(g && gl && g->dtype == LOOM_I32 && gl->shape[0] == g->shape[0] - 1, "%s: greedy", dir);
        st_close(r);
    }
}

static void test_written(void) {
    /* misaligned data (header not padded to 8): the reader hands out aligned copies */
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[3] = {0x3c00, 0x4000, 0xc000};
    int32_t s = 42;
    tf_st_entry e[] = {
        {"a", "F32", 2, {2, 3}, a, sizeof a},
        {"h", "F16", 1, {3}, h, sizeof h},
        {"s", "I32", 0, {0}, &s, 4},
        {"z", "BF16", 2, {0, 5}, NULL, 0},
    };
    for (int extra = 0; extra < 4; extra++) {
        const char *p = TMP("written%d.safetensors", extra);
        tf_st_write(p, e, 4, extra);
        st_file *f = st_open(p);
        CHECK(f, "written file (extra %d): %s", extra, loom_last_error());
        if (!f) continue;
        const st_tensor *t = st_find(f, "a");
        CHECK(t && t->dtype == LOOM_F32 && t->ndim == 2 && t->shape[1] == 3 && !memcmp(t->data, a, sizeof a),
              "a (extra %d)", extra);
        CHECK(t && (uintptr_t)t->data % 4 == 0, "a aligned (extra %d)", extra);
        t = st_find(f, "h");
        CHECK(t && t->dtype == LOOM_F16 && loom_f16_to_f32(((const uint16_t *)t->data)[2]) == -2.0f, "h");
        t = st_find(f, "s");
        CHECK(t && t->ndim == 0 && st_numel(t) == 1 && *(const int32_t *)t->data == 42, "scalar");
        t = st_find(f, "z");
        CHECK(t && t->nbytes == 0 && st_numel(t) == 0, "empty tensor");
        st_close(f);
    }
}

static void expect_bad(const void *b, size_t n, const char *name, const char *what) {
    const char *p = TMP("%s", name);
    tf_write(p, b, n);
    loom_err_clear();
    st_file *f = st_open(p);
    CHECK_FAILS(f != NULL, name, what);
    st_close(f);
}

/* A one-tensor file from a literal header and `data` bytes of data. */
static void expect_bad_header(const char *json, size_t data, const char *name, const char *what) {
    size_t hl = strlen(json);
    uint8_t *b = calloc(1, 8 + hl + data);
    tf_put_u64(b, hl);
    memcpy(b + 8, json, hl);
    expect_bad(b, 8 + hl + data, name, what);
    free(b);
}

static void test_bad(void) {
    size_t n;
    uint8_t *good = tf_read(FIX("llama-tiny/model.safetensors"), &n);
    CHECK(good != NULL, "read fixture");
    if (!good) return;
    size_t hl = tf_get_u64(good);
    size_t cuts[] = {0, 4, 7, 8, 9, 100, 8 + hl - 1, 8 + hl, 8 + hl + 1000, n / 2, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char name[64], what[64];
        snprintf(name, sizeof name, "trunc%zu.safetensors", cuts[i]);
        snprintf(what, sizeof what, "truncated at %zu", cuts[i]);
        expect_bad(good, cuts[i], name, what);
    }
    uint8_t *b = malloc(n);
    memcpy(b, good, n);
    tf_put_u64(b, n);
    expect_bad(b, n, "hlen_past_end.safetensors", "header length past the end");
    tf_put_u64(b, 1ull << 63);
    expect_bad(b, n, "hlen_huge.safetensors", "header length 2^63");
    tf_put_u64(b, hl - 10);
    expect_bad(b, n, "hlen_short.safetensors", "header length cutting the JSON");
    tf_put_u64(b, hl + 64);
    expect_bad(b, n, "hlen_long.safetensors", "header length swallowing data");
    free(b);

    const char *ok = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    expect_bad_header(ok, 15, "short_data.safetensors", "data section one byte short");
    expect_bad_header("{garbage", 0, "garbage.safetensors", "not JSON");
    expect_bad_header("[1,2]", 0, "array.safetensors", "JSON array");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,32]}}", 16,
                      "offsets_past.safetensors", "data_offsets past the end");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[16,0]}}", 16,
                      "offsets_reversed.safetensors", "begin > end");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", 24,
                      "shape_mismatch.safetensors", "shape x dtype != offsets");
    expect_bad_header("{\"t\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16,
                      "dtype_mismatch.safetensors", "dtype size != offsets");
    expect_bad_header("{\"t\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16,
                      "f64.safetensors", "unsupported dtype F64");
    expect_bad_header("{\"t\":{\"dtype\":\"Q9\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16, "q9.safetensors",
                      "unknown dtype");
    expect_bad_header("{\"t\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype_num.safetensors",
                      "dtype not a string");
    expect_bad_header("{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "no_dtype.safetensors", "no dtype");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
                      "neg_shape.safetensors", "negative dim");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8,
                      "frac_shape.safetensors", "fractional dim");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, "shape_num.safetensors",
                      "shape not a list");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
                      "dims9.safetensors", "9 dims");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                      "\"data_offsets\":[0,8]}}",
                      8, "shape_overflow.safetensors", "shape product overflow");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", 9,
                      "offsets3.safetensors", "three offsets");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0.5,8]}}", 8,
                      "offsets_frac.safetensors", "fractional offset");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8,
                      "offsets_neg.safetensors", "negative offset");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e300]}}", 8,
                      "offsets_huge.safetensors", "offset 1e300");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                      8, "dup.safetensors", "duplicate name");
    expect_bad_header("{\"t\":[1,2]}", 0, "entry_array.safetensors", "entry not an object");
    expect_bad_header("{\"__metadata__\":[1]}", 0, "meta_array.safetensors", "metadata not an object");

    loom_err_clear();
    CHECK(st_open(TMP("missing.safetensors")) == NULL && strstr(loom_last_error(), "missing.safetensors"),
          "missing file");
    CHECK(st_open(tf_tmp) == NULL && strstr(loom_last_error(), tf_tmp), "a directory");
    free(good);
}

int main(void) {
    tf_init();
    test_fixtures();
    test_written();
    test_bad();
    tf_cleanup();
    CHECK_DONE();
}
