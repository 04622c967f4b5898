/* GGUF reader on the bundled stories260K.gguf, writer round trip, and bad files (generated from
 * good ones in a temp dir): every bad file must fail with a message naming it. */
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "tests/unit/test_formats_util.h"
#include "core/util.h"

/* ---- a raw byte builder for hand-made GGUF files -------------------------------------------- */
typedef struct { uint8_t b[4096]; size_t n; } raw;
static void r_u32(raw *r, uint32_t v) { memcpy(r->b + r->n, &v, 4), r->n += 4; }
static void r_u64(raw *r, uint64_t v) { memcpy(r->b + r->n, &v, 8), r->n += 8; }
static void r_str(raw *r, const char *s) {
    r_u64(r, strlen(s));
    memcpy(r->b + r->n, s, strlen(s)), r->n += strlen(s);
}
static void r_hdr(raw *r, uint64_t nt, uint64_t nkv) {
    r->n = 0;
    r_u32(r, 0x46554747u);
    r_u32(r, 3);
    r_u64(r, nt);
    r_u64(r, nkv);
}
/* tensor record with one or more dims (ggml order) */
static void r_tensor(raw *r, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type, uint64_t off) {
    r_str(r, name);
    r_u32(r, nd);
    for (uint32_t i = 0; i < nd; i++) r_u64(r, ne[i]);
    r_u32(r, type);
    r_u64(r, off);
}
static void r_pad_data(raw *r, size_t data_bytes) {
    while (r->n % 32) r->b[r->n++] = 0;
    memset(r->b + r->n, 0, data_bytes);
    r->n += data_bytes;
}

static void expect_bad_bytes(const uint8_t *b, size_t n, const char *name, const char *what) {
    const char *p = TMP("%s", name);
    tf_write(p, b, n);
    loom_err_clear();
    gguf_ctx *g = gguf_open(p);
    CHECK_FAILS(g != NULL, name, what);
    gguf_close(g);
}

static void expect_bad_raw(const raw *r, const char *name, const char *what) { expect_bad_bytes(r->b, r->n, name, what); }

static void test_read_stories(void) {
    gguf_ctx *g = gguf_open(FIX("stories260K.gguf"));
    CHECK(g, "open stories260K.gguf: %s", loom_last_error());
    if (!g) return;
    CHECK(gguf_version(g) == 3, "version %u", gguf_version(g));
    CHECK(gguf_alignment(g) == 32, "alignment %zu", gguf_alignment(g));
    CHECK(gguf_n_kv(g) == 19, "n_kv %d", gguf_n_kv(g));
    CHECK(gguf_n_tensors(g) == 48, "n_tensors %d", gguf_n_tensors(g));
    int i = gguf_find_key(g, "general.architecture");
    CHECK(i >= 0 && gguf_kv_type(g, i) == GGUF_TYPE_STRING && !strcmp(gguf_get_str(g, i, NULL), "llama"), "arch");
    int64_t v = 0;
    i = gguf_find_key(g, "llama.block_count");
    CHECK(gguf_get_int(g, i, &v) && v == 5, "block_count %lld", (long long)v);
    i = gguf_find_key(g, "llama.embedding_length");
    CHECK(gguf_get_int(g, i, &v) && v == 64, "embedding_length %lld", (long long)v);
    i = gguf_find_key(g, "llama.feed_forward_length");
    CHECK(gguf_get_int(g, i, &v) && v == 172, "ffn %lld", (long long)v);
    double f = 0;
    i = gguf_find_key(g, "llama.attention.layer_norm_rms_epsilon");
    CHECK(gguf_get_float(g, i, &f) && fabs(f - 1e-5) < 1e-10, "eps %g", f);
    CHECK(!gguf_get_int(g, i, &v), "a float is not an int");
    CHECK(gguf_get_str(g, i, NULL) == NULL, "a float is not a string");
    i = gguf_find_key(g, "tokenizer.ggml.bos_token_id");
    CHECK(gguf_get_int(g, i, &v) && v == 1, "bos %lld", (long long)v);
    CHECK(gguf_find_key(g, "no.such.key") == -1, "absent key");

    i = gguf_find_key(g, "tokenizer.ggml.tokens");
    CHECK(gguf_kv_type(g, i) == GGUF_TYPE_ARRAY && gguf_arr_type(g, i) == GGUF_TYPE_STRING, "tokens type");
    CHECK(gguf_arr_n(g, i) == 512, "tokens n %zu", gguf_arr_n(g, i));
    size_t len = 0;
    const char *s = gguf_arr_str(g, i, 0, &len);
    CHECK(s && !strcmp(s, "<unk>") && len == 5, "token 0 '%s'", s ? s : "(null)");
    s = gguf_arr_str(g, i, 1, &len);
    CHECK(s && !strcmp(s, "<s>"), "token 1 '%s'", s ? s : "(null)");
    CHECK(gguf_arr_str(g, i, 512, &len) == NULL, "token index past the end");
    i = gguf_find_key(g, "tokenizer.ggml.scores");
    CHECK(gguf_arr_type(g, i) == GGUF_TYPE_FLOAT32 && gguf_arr_n(g, i) == 512 && gguf_arr_data(g, i), "scores");
    i = gguf_find_key(g, "tokenizer.ggml.token_type");
    const int32_t *tt = gguf_arr_data(g, i);
    CHECK(gguf_arr_type(g, i) == GGUF_TYPE_INT32 && tt && tt[0] == 2 && tt[1] == 3, "token types");

    int t = gguf_find_tensor(g, "token_embd.weight");
    int64_t ne[4];
    gguf_tensor_shape(g, t, ne);
    CHECK(t >= 0 && gguf_tensor_ndim(g, t) == 2 && ne[0] == 512 && ne[1] == 64, "token_embd shape");
    CHECK(gguf_tensor_ggml_type(g, t) == GGML_TYPE_F32 && gguf_tensor_nbytes(g, t) == 512 * 64 * 4, "token_embd");
    CHECK((uintptr_t)gguf_tensor_data(g, t) % 32 == 0, "tensor data aligned");
    t = gguf_find_tensor(g, "blk.0.attn_k.weight");
    gguf_tensor_shape(g, t, ne);
    CHECK(ne[0] == 32 && ne[1] == 64, "attn_k shape %lld x %lld", (long long)ne[0], (long long)ne[1]);
    t = gguf_find_tensor(g, "blk.3.ffn_down.weight");
    gguf_tensor_shape(g, t, ne);
    CHECK(ne[0] == 64 && ne[1] == 172, "ffn_down shape");
    CHECK(gguf_find_tensor(g, "blk.5.ffn_down.weight") == -1, "absent tensor");

    /* values: the HF copy of the same model must hold the same embedding and norm weights */
    st_file *hf = st_open(FIX("stories260K-hf/model.safetensors"));
    CHECK(hf, "open HF copy: %s", loom_last_error());
    if (hf) {
        const st_tensor *e = st_find(hf, "model.embed_tokens.weight");
        t = gguf_find_tensor(g, "token_embd.weight");
        CHECK(e && e->nbytes == gguf_tensor_nbytes(g, t) && !memcmp(e->data, gguf_tensor_data(g, t), e->nbytes),
              "token_embd equals the HF embedding");
        e = st_find(hf, "model.layers.2.post_attention_layernorm.weight");
        t = gguf_find_tensor(g, "blk.2.ffn_norm.weight");
        CHECK(e && !memcmp(e->data, gguf_tensor_data(g, t), 64 * 4), "ffn_norm equals the HF weight");
        const float *x = gguf_tensor_data(g, t);
        CHECK(x[0] > 0.01f && x[0] < 100.0f, "a trained norm weight looks sane: %g", x[0]);
        st_close(hf);
    }
    gguf_close(g);
}

/* ---- writer round trip ------------------------------------------------------------------------ */

static int fill_calls;
static int fill_pattern(void *user, uint64_t off, void *buf, size_t n) {
    (void)user;
    uint8_t *b = buf;
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)((off + i) * 7 + 3);
    fill_calls++;
    return 0;
}
static int fill_fail(void *user, uint64_t off, void *buf, size_t n) {
    (void)user, (void)off, (void)buf, (void)n;
    return loom_err("synthetic failure");
}

static void test_writer_roundtrip(void) {
    gguf_ctx *src = gguf_open(FIX("stories260K.gguf"));
    CHECK(src, "open: %s", loom_last_error());
    if (!src) return;
    gguf_writer *w = gguf_writer_new();
    CHECK(gguf_w_copy_kv(w, src) == 0, "copy kv: %s", loom_last_error());
    CHECK(gguf_w_u32(w, "t.u32", 4000000000u) == 0, "u32");
    CHECK(gguf_w_i32(w, "t.i32", -5) == 0, "i32");
    CHECK(gguf_w_f32(w, "t.f32", 0.25f) == 0, "f32");
    CHECK(gguf_w_bool(w, "t.bool", true) == 0, "bool");
    CHECK(gguf_w_str(w, "t.str", "héllo") == 0, "str");
    CHECK(gguf_w_u64(w, "t.u64", 1ull << 40) == 0, "u64");
    CHECK(gguf_w_f64(w, "t.f64", -1.5e300) == 0, "f64");
    const char *strs[] = {"a", "", "ccc"};
    CHECK(gguf_w_arr_str(w, "t.astr", strs, 3) == 0, "arr str");
    int32_t ints[] = {1, -2, 3};
    CHECK(gguf_w_arr_i32(w, "t.ai32", ints, 3) == 0, "arr i32");
    float fl[] = {1.5f, -2.5f};
    CHECK(gguf_w_arr_f32(w, "t.af32", fl, 2) == 0, "arr f32");
    CHECK(gguf_w_u32(w, "t.u32", 1) < 0, "duplicate key rejected");
    CHECK(gguf_w_str(w, "", "x") < 0, "empty key rejected");

    /* tensors: every source tensor, plus other types and a streamed one */
    for (int i = 0; i < gguf_n_tensors(src); i++) {
        int64_t ne[4];
        gguf_tensor_shape(src, i, ne);
        CHECK(gguf_w_tensor(w, gguf_tensor_name(src, i), gguf_tensor_ggml_type(src, i), gguf_tensor_ndim(src, i),
                            ne, gguf_tensor_data(src, i), gguf_tensor_nbytes(src, i)) == 0,
              "add tensor: %s", loom_last_error());
    }
    static uint8_t q8[3 * 2 * 34], h[5 * 3 * 2];
    for (size_t i = 0; i < sizeof q8; i++) q8[i] = (uint8_t)(i * 31);
    for (size_t i = 0; i < sizeof h; i++) h[i] = (uint8_t)(i + 100);
    int64_t ne_q8[3] = {3, 2, 32}, ne_h[3] = {5, 1, 3};
    CHECK(gguf_w_tensor(w, "x.q8", GGML_TYPE_Q8_0, 3, (int64_t[]){3, 1, 64}, q8, sizeof q8) == 0, "q8_0: %s",
          loom_last_error());
    CHECK(gguf_w_tensor(w, "x.q8b", GGML_TYPE_Q8_0, 3, ne_q8, q8, sizeof q8) == 0, "q8_0 b");
    CHECK(gguf_w_tensor(w, "x.f16", GGML_TYPE_F16, 3, ne_h, h, sizeof h) == 0, "f16 3-d");
    CHECK(gguf_w_tensor(w, "x.bf16", GGML_TYPE_BF16, 1, (int64_t[]){15}, h, sizeof h) == 0, "bf16");
    int64_t ne_s[2] = {3, 1000000}; /* 12 MB f32: several streamed pieces */
    CHECK(gguf_w_tensor_cb(w, "x.stream", GGML_TYPE_F32, 2, ne_s, 12000000, fill_pattern, NULL) == 0, "cb");
    CHECK(gguf_w_tensor(w, "x.f16", GGML_TYPE_F16, 3, ne_h, h, sizeof h) < 0, "duplicate tensor rejected");
    CHECK(gguf_w_tensor(w, "x.bad", GGML_TYPE_F16, 3, ne_h, h, sizeof h - 2) < 0, "wrong nbytes rejected");
    CHECK(gguf_w_tensor(w, "x.bad", GGML_TYPE_Q8_0, 1, (int64_t[]){33}, q8, 34) < 0, "partial block rejected");
    CHECK(gguf_w_tensor(w, "x.bad", GGML_TYPE_F32, 5, (int64_t[]){1, 1, 1, 1, 1}, h, 4) < 0, "5-d rejected");

    const char *out = TMP("roundtrip.gguf");
    fill_calls = 0;
    CHECK(gguf_writer_save(w, out) == 0, "save: %s", loom_last_error());
    CHECK(fill_calls >= 2, "the streamed tensor came in %d pieces", fill_calls);
    CHECK(gguf_writer_save(w, TMP("no/such/dir/x.gguf")) < 0 && strstr(loom_last_error(), "x.gguf"),
          "save into a missing dir fails: %s", loom_last_error());
    gguf_writer_free(w);

    gguf_ctx *g = gguf_open(out);
    CHECK(g, "reopen: %s", loom_last_error());
    if (!g) {
        gguf_close(src);
        return;
    }
    CHECK(gguf_version(g) == 3, "written as v3");
    CHECK(gguf_n_kv(g) == gguf_n_kv(src) + 10, "kv count %d", gguf_n_kv(g));
    for (int i = 0; i < gguf_n_kv(src); i++) {
        const char *k = gguf_key(src, i);
        int j = gguf_find_key(g, k);
        CHECK(j >= 0 && gguf_kv_type(g, j) == gguf_kv_type(src, i), "key %s", k);
        if (j < 0) continue;
        int64_t a, b;
        double fa, fb;
        if (gguf_kv_type(src, i) == GGUF_TYPE_STRING)
            CHECK(!strcmp(gguf_get_str(src, i, NULL), gguf_get_str(g, j, NULL)), "value of %s", k);
        else if (gguf_kv_type(src, i) == GGUF_TYPE_ARRAY) {
            CHECK(gguf_arr_type(g, j) == gguf_arr_type(src, i) && gguf_arr_n(g, j) == gguf_arr_n(src, i), "arr %s", k);
            for (size_t e = 0; gguf_arr_type(src, i) == GGUF_TYPE_STRING && e < gguf_arr_n(src, i); e++) {
                size_t la, lb;
                const char *sa = gguf_arr_str(src, i, e, &la), *sb = gguf_arr_str(g, j, e, &lb);
                if (la != lb || memcmp(sa, sb, la)) {
                    CHECK(0, "%s[%zu] differs", k, e);
                    break;
                }
            }
            if (gguf_arr_type(src, i) != GGUF_TYPE_STRING)
                CHECK(!memcmp(gguf_arr_data(src, i), gguf_arr_data(g, j), gguf_arr_n(src, i) * 4), "arr data %s", k);
        } else if (gguf_get_int(src, i, &a))
            CHECK(gguf_get_int(g, j, &b) && a == b, "value of %s", k);
        else if (gguf_get_float(src, i, &fa))
            CHECK(gguf_get_float(g, j, &fb) && fa == fb, "value of %s", k);
    }
    int64_t v;
    double f;
    bool bv;
    size_t len;
    CHECK(gguf_get_int(g, gguf_find_key(g, "t.u32"), &v) && v == 4000000000ll, "u32 back");
    CHECK(gguf_get_int(g, gguf_find_key(g, "t.i32"), &v) && v == -5, "i32 back");
    CHECK(gguf_get_float(g, gguf_find_key(g, "t.f32"), &f) && f == 0.25, "f32 back");
    CHECK(gguf_get_bool(g, gguf_find_key(g, "t.bool"), &bv) && bv, "bool back");
    CHECK(!strcmp(gguf_get_str(g, gguf_find_key(g, "t.str"), &len), "héllo") && len == 6, "str back");
    CHECK(gguf_get_int(g, gguf_find_key(g, "t.u64"), &v) && v == 1ll << 40, "u64 back");
    CHECK(gguf_get_float(g, gguf_find_key(g, "t.f64"), &f) && f == -1.5e300, "f64 back");
    int k = gguf_find_key(g, "t.astr");
    CHECK(gguf_arr_n(g, k) == 3 && !strcmp(gguf_arr_str(g, k, 1, &len), "") && len == 0 &&
              !strcmp(gguf_arr_str(g, k, 2, &len), "ccc"),
          "string array back");
    k = gguf_find_key(g, "t.ai32");
    CHECK(gguf_arr_n(g, k) == 3 && ((const int32_t *)gguf_arr_data(g, k))[1] == -2, "i32 array back");
    k = gguf_find_key(g, "t.af32");
    CHECK(gguf_arr_n(g, k) == 2 && ((const float *)gguf_arr_data(g, k))[1] == -2.5f, "f32 array back");

    CHECK(gguf_n_tensors(g) == gguf_n_tensors(src) + 5, "tensor count %d", gguf_n_tensors(g));
    for (int i = 0; i < gguf_n_tensors(src); i++) {
        int j = gguf_find_tensor(g, gguf_tensor_name(src, i));
        int64_t a[4], b[4];
        gguf_tensor_shape(src, i, a);
        gguf_tensor_shape(g, j, b);
        CHECK(j >= 0 && !memcmp(a, b, sizeof a) && gguf_tensor_ggml_type(g, j) == gguf_tensor_ggml_type(src, i) &&
                  gguf_tensor_nbytes(g, j) == gguf_tensor_nbytes(src, i) &&
                  !memcmp(gguf_tensor_data(g, j), gguf_tensor_data(src, i), gguf_tensor_nbytes(src, i)),
              "tensor %s round trip", gguf_tensor_name(src, i));
    }
    int t = gguf_find_tensor(g, "x.q8b");
    int64_t ne[4];
    gguf_tensor_shape(g, t, ne);
    CHECK(ne[0] == 3 && ne[1] == 2 && ne[2] == 32 && gguf_tensor_ndim(g, t) == 3, "q8 shape in PyTorch order");
    CHECK(gguf_tensor_nbytes(g, t) == sizeof q8 && !memcmp(gguf_tensor_data(g, t), q8, sizeof q8), "q8 bytes");
    t = gguf_find_tensor(g, "x.f16");
    CHECK(!memcmp(gguf_tensor_data(g, t), h, sizeof h), "f16 bytes");
    t = gguf_find_tensor(g, "x.stream");
    const uint8_t *sd = gguf_tensor_data(g, t);
    int bad = 0;
    for (size_t i = 0; sd && i < 12000000; i += 997) bad += sd[i] != (uint8_t)(i * 7 + 3);
    CHECK(sd && bad == 0 && sd[11999999] == (uint8_t)(11999999ull * 7 + 3), "streamed bytes");
    /* every tensor starts on the alignment and the data section is padded to the end, as llama.cpp
     * expects (it reads the sum of padded sizes) */
    size_t end = 0;
    for (int i = 0; i < gguf_n_tensors(g); i++) {
        size_t off = (size_t)((const uint8_t *)gguf_tensor_data(g, i) - (const uint8_t *)gguf_tensor_data(g, 0));
        CHECK(off % 32 == 0, "tensor %d aligned", i);
        size_t e = off + gguf_tensor_nbytes(g, i);
        e = (e + 31) / 32 * 32;
        if (e > end) end = e;
    }
    struct stat st;
    stat(out, &st);
    CHECK((size_t)st.st_size == gguf_data_offset(g) + end, "file size %lld = data offset %zu + padded data %zu",
          (long long)st.st_size, gguf_data_offset(g), end);
    gguf_close(g);

    /* a failing producer leaves no file (and no temp file) behind */
    w = gguf_writer_new();
    gguf_w_tensor_cb(w, "x", GGML_TYPE_F32, 1, (int64_t[]){4}, 16, fill_fail, NULL);
    const char *failed = TMP("failed.gguf");
    CHECK(gguf_writer_save(w, failed) < 0 && strstr(loom_last_error(), "synthetic failure") &&
              strstr(loom_last_error(), "failed.gguf"),
          "failing callback: %s", loom_last_error());
    CHECK(access(failed, F_OK) != 0, "no file after a failed save");
    gguf_writer_free(w);
    gguf_close(src);
}

/* ---- bad files -------------------------------------------------------------------------------- */

/* Offset just after the name of tensor `name` in its record (ndim follows). */
static size_t tensor_record(const uint8_t *b, size_t n, const char *name) {
    uint8_t pat[128];
    size_t l = strlen(name);
    tf_put_u64(pat, l);
    memcpy(pat + 8, name, l);
    const uint8_t *p = memmem(b, n, pat, l + 8);
    return p ? (size_t)(p - b) + 8 + l : 0;
}

static void test_bad_files(void) {
    size_t n;
    uint8_t *good = tf_read(FIX("stories260K.gguf"), &n);
    CHECK(good != NULL, "read fixture");
    if (!good) return;
    uint8_t *b = malloc(n);
    gguf_ctx *g0 = gguf_open(FIX("stories260K.gguf"));
    size_t data_off = gguf_data_offset(g0);
    gguf_close(g0);

    /* truncated at many points, including inside the header, the kv section, the tensor records and
     * the data */
    size_t cuts[] = {0, 3, 4, 8, 16, 23, 24, 40, 100, 1000, 5000, 10000, data_off - 1, data_off, data_off + 100, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char name[64], what[64];
        snprintf(name, sizeof name, "trunc%zu.gguf", cuts[i]);
        snprintf(what, sizeof what, "truncated at %zu", cuts[i]);
        expect_bad_bytes(good, cuts[i], name, what);
    }

#define PATCHED(stmt, name, what)                                                                  \
    do {                                                                                           \
        memcpy(b, good, n);                                                                        \
        stmt;                                                                                      \
        expect_bad_bytes(b, n, name, what);                                                        \
    } while (0)
    PATCHED(b[0] = 'X', "magic.gguf", "bad magic");
    PATCHED(tf_put_u32(b + 4, 1), "v1.gguf", "version 1");
    PATCHED(tf_put_u32(b + 4, 7), "v7.gguf", "version 7");
    PATCHED(tf_put_u32(b + 4, 0x03000000), "bigendian.gguf", "big-endian version");
    PATCHED(tf_put_u64(b + 8, 1ull << 60), "huge_nt.gguf", "2^60 tensors");
    PATCHED(tf_put_u64(b + 16, 1ull << 60), "huge_nkv.gguf", "2^60 key/values");
    PATCHED(tf_put_u64(b + 16, UINT64_MAX), "max_nkv.gguf", "2^64-1 key/values");
    PATCHED(tf_put_u64(b + 24, 1ull << 62), "huge_key.gguf", "key length 2^62");
    PATCHED(tf_put_u64(b + 24, 0), "empty_key.gguf", "empty key");
    /* first kv: "tokenizer.ggml.tokens" string array */
    size_t klen = tf_get_u64(good + 24), type_at = 32 + klen;
    PATCHED(tf_put_u32(b + type_at, 99), "kvtype.gguf", "unknown value type");
    PATCHED(tf_put_u32(b + type_at + 4, 99), "arrtype.gguf", "unknown array type");
    PATCHED(tf_put_u32(b + type_at + 4, GGUF_TYPE_ARRAY), "nested.gguf", "array of arrays");
    PATCHED(tf_put_u64(b + type_at + 8, 1ull << 61), "huge_arr.gguf", "2^61 strings");
    PATCHED(tf_put_u64(b + type_at + 16, 1ull << 50), "huge_item.gguf", "array string past the end");
    PATCHED((tf_put_u32(b + type_at + 4, GGUF_TYPE_UINT64), tf_put_u64(b + type_at + 8, 1ull << 58)),
            "huge_numarr.gguf", "numeric array past the end");
    size_t rec = tensor_record(good, n, "token_embd.weight");
    CHECK(rec > 0, "found the token_embd record");
    /* record: u32 ndim, u64 ne[2], u32 type, u64 offset */
    PATCHED(tf_put_u32(b + rec, 5), "ndim5.gguf", "5 dimensions");
    PATCHED(tf_put_u32(b + rec, 0), "ndim0.gguf", "0 dimensions");
    PATCHED(tf_put_u64(b + rec + 4, 0), "dim0.gguf", "a zero dim");
    PATCHED(tf_put_u64(b + rec + 4, 1ull << 63), "dimneg.gguf", "a dim >= 2^63");
    PATCHED((tf_put_u64(b + rec + 4, 1ull << 40), tf_put_u64(b + rec + 12, 1ull << 40)), "overflow.gguf",
            "size overflow");
    PATCHED(tf_put_u64(b + rec + 4, 1ull << 30), "pastend.gguf", "data past the end");
    PATCHED(tf_put_u32(b + rec + 20, 99), "ggmltype.gguf", "unknown ggml type");
    PATCHED(tf_put_u32(b + rec + 20, GGML_TYPE_Q4_K), "q4row.gguf", "row not a whole number of blocks");
    PATCHED(tf_put_u64(b + rec + 24, 16), "unaligned.gguf", "offset not a multiple of 32");
    PATCHED(tf_put_u64(b + rec + 24, 1ull << 62), "hugeoff.gguf", "offset 2^62");
    PATCHED(tf_put_u64(b + rec + 24, UINT64_MAX - 31), "wrapoff.gguf", "offset that wraps");
    size_t krec = tensor_record(good, n, "blk.3.attn_k.weight");
    PATCHED(b[krec - 8] = 'q', "dupname.gguf", "duplicate tensor name");
    PATCHED(tf_put_u64(b + krec - 27, 0), "emptyname.gguf", "empty tensor name");
#undef PATCHED

    /* hand-made files for what the fixture cannot express */
    raw r;
    r_hdr(&r, 0, 1);
    r_str(&r, "general.alignment");
    r_u32(&r, GGUF_TYPE_INT32);
    r_u32(&r, 32);
    expect_bad_raw(&r, "align_type.gguf", "alignment of the wrong type");
    r_hdr(&r, 0, 1);
    r_str(&r, "general.alignment");
    r_u32(&r, GGUF_TYPE_UINT32);
    r_u32(&r, 48);
    expect_bad_raw(&r, "align48.gguf", "alignment not a power of two");
    r_hdr(&r, 0, 2);
    r_str(&r, "a");
    r_u32(&r, GGUF_TYPE_UINT8);
    r.b[r.n++] = 1;
    r_str(&r, "a");
    r_u32(&r, GGUF_TYPE_UINT8);
    r.b[r.n++] = 1;
    r_pad_data(&r, 64);
    expect_bad_raw(&r, "dupkey.gguf", "duplicate key");
    r_hdr(&r, 0, 1);
    r_str(&r, "b");
    r_u32(&r, GGUF_TYPE_BOOL);
    r.b[r.n++] = 2;
    r_pad_data(&r, 64);
    expect_bad_raw(&r, "bool2.gguf", "bool with value 2");
    r_hdr(&r, 1, 1);
    r_str(&r, "general.alignment");
    r_u32(&r, GGUF_TYPE_UINT32);
    r_u32(&r, 1);
    r_tensor(&r, "t", 1, (uint64_t[]){4}, GGML_TYPE_F32, 0);
    /* header is 90 bytes: with alignment 1 the f32 data would start at an address % 4 == 2 */
    memset(r.b + r.n, 0, 64);
    r.n += 64;
    expect_bad_raw(&r, "misaligned.gguf", "f32 data at an odd offset");

    /* hand-made good file: v2, quantized types accepted by gguf_open, sizes from block sizes */
    r_hdr(&r, 4, 0);
    tf_put_u32(r.b + 4, 2);
    r_tensor(&r, "q4", 2, (uint64_t[]){64, 3}, GGML_TYPE_Q4_0, 0);     /* 2 blocks x 3 rows x 18 = 108 */
    r_tensor(&r, "q8", 1, (uint64_t[]){32}, GGML_TYPE_Q8_0, 128);      /* 34 */
    r_tensor(&r, "q4k", 1, (uint64_t[]){256}, GGML_TYPE_Q4_K, 192);    /* 144 */
    r_tensor(&r, "q6k", 2, (uint64_t[]){256, 2}, GGML_TYPE_Q6_K, 352); /* 420 */
    r_pad_data(&r, 352 + 420);
    const char *qp = TMP("quant.gguf");
    tf_write(qp, r.b, r.n);
    gguf_ctx *g = gguf_open(qp);
    CHECK(g, "v2 quantized file opens: %s", loom_last_error());
    if (g) {
        CHECK(gguf_version(g) == 2, "v2");
        CHECK(gguf_tensor_nbytes(g, gguf_find_tensor(g, "q4")) == 108, "q4_0 size");
        CHECK(gguf_tensor_nbytes(g, gguf_find_tensor(g, "q8")) == 34, "q8_0 size");
        CHECK(gguf_tensor_nbytes(g, gguf_find_tensor(g, "q4k")) == 144, "q4_K size");
        CHECK(gguf_tensor_nbytes(g, gguf_find_tensor(g, "q6k")) == 420, "q6_K size");
        CHECK(!strcmp(gguf_ggml_type_name(gguf_tensor_ggml_type(g, 0)), "q4_0"), "type name");
        gguf_close(g);
    }
    /* the same with one byte less data: the last tensor runs past the end */
    expect_bad_bytes(r.b, r.n - 1, "quant_short.gguf", "quantized tensor past the end");

    loom_err_clear();
    CHECK(gguf_open(TMP("missing.gguf")) == NULL && strstr(loom_last_error(), "missing.gguf"), "missing file");
    CHECK(gguf_open(tf_tmp) == NULL && strstr(loom_last_error(), tf_tmp), "a directory");
    free(b);
    free(good);
}

int main(void) {
    tf_init();
    test_read_stories();
    test_writer_roundtrip();
    test_bad_files();
    tf_cleanup();
    CHECK_DONE();
}
