/* loom_convert_hf_to_gguf on every fixture (tensors equal the HF ones once the llama q/k permutation
 * is undone; metadata keys right), against llama.cpp's own stories260K.gguf, Llama-3 RoPE scaling,
 * and loom_synth (shapes, statistics, determinism). */
#include "models/convert.h"
#include "formats/gguf.h"
#include "models/model.h"
#include "formats/safetensors.h"
#include "formats/source.h"
#include "tests/unit/test_formats_util.h"
#include "tokenizer/tokenizer.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <sys/stat.h>

static const struct {
    const char *dir, *arch;
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx, bos, eos, file_type;
    double theta, eps;
    bool tied;
} fx[] = {
    {"qwen2-tiny", "qwen2", 128, 2, 8, 2, 344, 1024, -1, -1, 0, 1e6, 1e-6, true},
    {"qwen2-tiny-bf16", "qwen2", 128, 2, 8, 2, 344, 1024, -1, -1, 32, 1e6, 1e-6, true},
    {"llama-tiny", "llama", 128, 2, 8, 4, 256, 1024, 1, 2, 0, 1e4, 1e-5, false},
    {"stories260K-hf", "llama", 64, 5, 8, 4, 172, 512, 1, 2, 0, 1e4, 1e-5, true},
};

static int64_t kv_int(const gguf_ctx *g, const char *fmt, const char *arch) {
    char key[128];
    snprintf(key, sizeof key, fmt, arch);
    int64_t v = -1;
    int i = gguf_find_key(g, key);
    if (i >= 0 && !gguf_get_int(g, i, &v)) v = -2;
    if (i >= 0 && gguf_kv_type(g, i) != GGUF_TYPE_UINT32) v = -3; /* llama.cpp writes these as u32 */
    return v;
}

static double kv_float(const gguf_ctx *g, const char *fmt, const char *arch) {
    char key[128];
    snprintf(key, sizeof key, fmt, arch);
    double v = -1;
    int i = gguf_find_key(g, key);
    if (i >= 0 && (gguf_kv_type(g, i) != GGUF_TYPE_FLOAT32 || !gguf_get_float(g, i, &v))) v = -2;
    return v;
}

/* HF row of GGUF row r after llama.cpp's permute: the GGUF tensor viewed as [n_head][hd/2][2][in]
 * equals the HF one viewed as [n_head][2][hd/2][in] with axes 1 and 2 swapped. */
static int64_t hf_row_of(int64_t r, int64_t rows, int64_t n_head) {
    int64_t hd = rows / n_head, h = r / hd, j = (r % hd) / 2, s = r % 2;
    return h * hd + s * (hd / 2) + j;
}

static void test_convert_fixtures(void) {
    for (size_t f = 0; f < sizeof fx / sizeof fx[0]; f++) {
        const char *out = TMP("%s.gguf", fx[f].dir);
        int rc = loom_convert_hf_to_gguf(FIX("%s", fx[f].dir), out);
        CHECK(rc == 0, "convert %s: %s", fx[f].dir, loom_last_error());
        gguf_ctx *g = rc == 0 ? gguf_open(out) : NULL;
        st_file *st = st_open(FIX("%s/model.safetensors", fx[f].dir));
        if (!g || !st) {
            CHECK(0, "open converted %s: %s", fx[f].dir, loom_last_error());
            gguf_close(g);
            st_close(st);
            continue;
        }
        const char *a = fx[f].arch, *d = fx[f].dir;
        int i = gguf_find_key(g, "general.architecture");
        CHECK(i >= 0 && !strcmp(gguf_get_str(g, i, NULL), a), "%s: architecture", d);
        i = gguf_find_key(g, "general.name");
        CHECK(i >= 0 && !strcmp(gguf_get_str(g, i, NULL), d), "%s: name", d);
        CHECK(kv_int(g, "general.file_type", a) == fx[f].file_type, "%s: file_type", d);
        CHECK(kv_int(g, "%s.block_count", a) == fx[f].n_layer, "%s: block_count", d);
        CHECK(kv_int(g, "%s.embedding_length", a) == fx[f].n_embd, "%s: embedding_length", d);
        CHECK(kv_int(g, "%s.feed_forward_length", a) == fx[f].n_ff, "%s: ffn", d);
        CHECK(kv_int(g, "%s.attention.head_count", a) == fx[f].n_head, "%s: heads", d);
        CHECK(kv_int(g, "%s.attention.head_count_kv", a) == fx[f].n_head_kv, "%s: kv heads", d);
        CHECK(kv_int(g, "%s.context_length", a) == fx[f].n_ctx, "%s: context", d);
        CHECK(kv_float(g, "%s.rope.freq_base", a) == (float)fx[f].theta, "%s: theta", d);
        CHECK(kv_float(g, "%s.attention.layer_norm_rms_epsilon", a) == (float)fx[f].eps, "%s: eps", d);
        bool llama = !strcmp(a, "llama");
        CHECK(kv_int(g, "%s.rope.dimension_count", a) == (llama ? fx[f].n_embd / fx[f].n_head : -1), "%s: rope dims", d);
        CHECK(kv_int(g, "%s.attention.key_length", a) == -1, "%s: no key_length", d);
        /* llama.cpp's converter writes it for llama; loom also for a checkpoint without a tokenizer */
        struct stat tst;
        bool no_tok = stat(FIX("%s/tokenizer.json", fx[f].dir), &tst) != 0;
        CHECK(kv_int(g, "%s.vocab_size", a) == (llama || no_tok ? 512 : -1), "%s: vocab_size", d);
        int tk = gguf_find_key(g, "tokenizer.ggml.model");
        CHECK(!no_tok || (tk >= 0 && !strcmp(gguf_get_str(g, tk, NULL), "none")), "%s: no tokenizer: 'none'", d);
        CHECK(kv_int(g, "tokenizer.ggml.bos_token_id", a) == fx[f].bos, "%s: bos", d);
        CHECK(kv_int(g, "tokenizer.ggml.eos_token_id", a) == fx[f].eos, "%s: eos", d);
        CHECK(gguf_find_key(g, "general.alignment") == -1, "%s: default alignment", d);

        bool has_head = st_find(st, "lm_head.weight") != NULL;
        CHECK(gguf_n_tensors(g) == st_n_tensors(st) - (fx[f].tied && has_head), "%s: %d tensors", d, gguf_n_tensors(g));
        CHECK((gguf_find_tensor(g, "output.weight") >= 0) == !fx[f].tied, "%s: output.weight iff untied", d);
        int permuted = 0;
        for (int k = 0; k < st_n_tensors(st); k++) {
            const st_tensor *t = st_tensor_at(st, k);
            char name[96];
            loom_arch_hf_to_gguf(loom_arch_find(fx[f].arch), t->name, name, sizeof name);
            int j = gguf_find_tensor(g, name);
            if (fx[f].tied && !strcmp(name, "output.weight")) continue;
            CHECK(j >= 0, "%s: %s present", d, name);
            if (j < 0) continue;
            int64_t ne[4];
            gguf_tensor_shape(g, j, ne);
            CHECK(gguf_tensor_ndim(g, j) == t->ndim && ne[0] == t->shape[0] && (t->ndim < 2 || ne[1] == t->shape[1]),
                  "%s: %s shape", d, name);
            const uint8_t *gd = gguf_tensor_data(g, j);
            if (t->ndim == 1) {
                CHECK(gguf_tensor_ggml_type(g, j) == GGML_TYPE_F32, "%s: %s stored as f32", d, name);
                float *ref = malloc((size_t)t->shape[0] * 4);
                loom_to_f32(ref, t->data, t->dtype, (size_t)t->shape[0]);
                CHECK(!memcmp(ref, gd, (size_t)t->shape[0] * 4), "%s: %s values", d, name);
                free(ref);
                continue;
            }
            CHECK(gguf_tensor_ggml_type(g, j) == gguf_ggml_from_dtype(t->dtype), "%s: %s keeps its dtype", d, name);
            CHECK(gguf_tensor_nbytes(g, j) == t->nbytes, "%s: %s bytes", d, name);
            int64_t n_head = 0;
            if (llama && strstr(name, "attn_q.weight")) n_head = fx[f].n_head;
            if (llama && strstr(name, "attn_k.weight")) n_head = fx[f].n_head_kv;
            if (!n_head) {
                CHECK(!memcmp(gd, t->data, t->nbytes), "%s: %s data unchanged", d, name);
                continue;
            }
            permuted++;
            size_t row = t->nbytes / (size_t)t->shape[0];
            int bad = 0;
            for (int64_t r = 0; r < t->shape[0]; r++)
                bad += memcmp(gd + (size_t)r * row, (const uint8_t *)t->data + (size_t)hf_row_of(r, t->shape[0], n_head) * row,
                              row) != 0;
            CHECK(bad == 0, "%s: %s equals HF after undoing the permutation (%d rows differ)", d, name, bad);
            CHECK(memcmp(gd, t->data, t->nbytes) != 0, "%s: %s was permuted", d, name);
        }
        CHECK(permuted == (llama ? 2 * fx[f].n_layer : 0), "%s: %d permuted tensors", d, permuted);
        st_close(st);
        gguf_close(g);
    }
}

/* The converted HF copy of stories260K must equal llama.cpp's own conversion of the same model. */
static void test_stories_matches_llamacpp(void) {
    gguf_ctx *ref = gguf_open(FIX("stories260K.gguf"));
    gguf_ctx *g = gguf_open(TMP("stories260K-hf.gguf"));
    CHECK(ref && g, "open: %s", loom_last_error());
    if (ref && g) {
        int same = 0;
        for (int i = 0; i < gguf_n_tensors(ref); i++) {
            const char *name = gguf_tensor_name(ref, i);
            int j = gguf_find_tensor(g, name);
            if (!strcmp(name, "output.weight")) { /* tied in the HF copy: the head is the embedding */
                j = gguf_find_tensor(g, "token_embd.weight");
                CHECK(j >= 0 && !memcmp(gguf_tensor_data(ref, i), gguf_tensor_data(g, j), gguf_tensor_nbytes(ref, i)),
                      "output.weight equals the tied embedding");
                continue;
            }
            int64_t a[4], b[4];
            gguf_tensor_shape(ref, i, a);
            gguf_tensor_shape(g, j, b);
            bool ok = j >= 0 && !memcmp(a, b, sizeof a) && gguf_tensor_ggml_type(g, j) == gguf_tensor_ggml_type(ref, i) &&
                      !memcmp(gguf_tensor_data(ref, i), gguf_tensor_data(g, j), gguf_tensor_nbytes(ref, i));
            CHECK(ok, "%s equals llama.cpp's", name);
            same += ok;
        }
        CHECK(same == 47, "%d tensors equal", same);
        const char *keys[] = {"llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
                              "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.dimension_count",
                              "llama.attention.layer_norm_rms_epsilon", "tokenizer.ggml.bos_token_id",
                              "tokenizer.ggml.eos_token_id", "general.architecture"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            int i = gguf_find_key(ref, keys[k]), j = gguf_find_key(g, keys[k]);
            int64_t x, y;
            double fx_, fy;
            bool ok = i >= 0 && j >= 0 && gguf_kv_type(ref, i) == gguf_kv_type(g, j);
            if (ok && gguf_get_int(ref, i, &x)) ok = gguf_get_int(g, j, &y) && x == y;
            else if (ok && gguf_get_float(ref, i, &fx_)) ok = gguf_get_float(g, j, &fy) && fx_ == fy;
            else if (ok) ok = !strcmp(gguf_get_str(ref, i, NULL), gguf_get_str(g, j, NULL));
            CHECK(ok, "key %s matches llama.cpp's (type and value)", keys[k]);
        }
    }
    gguf_close(ref);
    gguf_close(g);
}


static void edit_llama3(cJSON *c) { /* old-style keys: top-level rope_theta and rope_scaling */
    cJSON_DeleteItemFromObject(c, "rope_parameters");
    cJSON_AddNumberToObject(c, "rope_theta", 20000.0);
    cJSON *rs = cJSON_AddObjectToObject(c, "rope_scaling");
    cJSON_AddStringToObject(rs, "rope_type", "llama3");
    cJSON_AddNumberToObject(rs, "factor", 8.0);
    cJSON_AddNumberToObject(rs, "low_freq_factor", 1.0);
    cJSON_AddNumberToObject(rs, "high_freq_factor", 4.0);
    cJSON_AddNumberToObject(rs, "original_max_position_embeddings", 1024);
}
static void edit_linear(cJSON *c) {
    cJSON *rp = cJSON_GetObjectItem(c, "rope_parameters");
    cJSON_ReplaceItemInObject(rp, "rope_type", cJSON_CreateString("linear"));
    cJSON_AddNumberToObject(rp, "factor", 2.5);
}
static void edit_gpt2(cJSON *c) { cJSON_ReplaceItemInObject(c, "model_type", cJSON_CreateString("gpt2")); }
static void edit_no_hidden(cJSON *c) { cJSON_DeleteItemFromObject(c, "hidden_size"); }
static void edit_heads_string(cJSON *c) {
    cJSON_ReplaceItemInObject(c, "num_attention_heads", cJSON_CreateString("8"));
}
static void edit_yarn(cJSON *c) {
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(c, "rope_parameters"), "rope_type", cJSON_CreateString("yarn"));
}

static void test_rope_scaling(void) {
    tf_hf_with_config("llama3", "llama-tiny", edit_llama3);
    int rc = loom_convert_hf_to_gguf(TMP("llama3"), TMP("llama3.gguf"));
    CHECK(rc == 0, "convert llama3: %s", loom_last_error());
    gguf_ctx *g = rc == 0 ? gguf_open(TMP("llama3.gguf")) : NULL;
    if (g) {
        CHECK(kv_float(g, "%s.rope.freq_base", "llama") == 20000.0f, "top-level rope_theta read");
        CHECK(gguf_find_key(g, "llama.rope.scaling.type") == -1, "llama3 scaling is a tensor, not keys");
        int t = gguf_find_tensor(g, "rope_freqs.weight");
        int64_t ne[4];
        gguf_tensor_shape(g, t, ne);
        CHECK(t >= 0 && gguf_tensor_ndim(g, t) == 1 && ne[0] == 8 && gguf_tensor_ggml_type(g, t) == GGML_TYPE_F32,
              "rope_freqs.weight [8] f32");
        const float *rf = t >= 0 ? gguf_tensor_data(g, t) : NULL;
        int n1 = 0, n8 = 0, nmid = 0;
        for (int i = 0; rf && i < 8; i++) {
            /* Llama 3.1's scaling: keep short wavelengths, divide long ones by factor, blend between */
            double freq = pow(20000.0, -(2.0 * i) / 16.0), wl = 2 * M_PI / freq, want;
            if (wl < 1024 / 4.0) want = 1;
            else if (wl > 1024 / 1.0) want = 8;
            else {
                double sm = (1024 / wl - 1) / (4 - 1);
                want = 1 / ((1 - sm) / 8 + sm);
            }
            CHECK(fabs(rf[i] - want) < 1e-4 * want, "rope factor %d: %g, want %g", i, rf[i], want);
            n1 += want == 1, n8 += want == 8, nmid += want != 1 && want != 8;
        }
        CHECK(n1 && n8 && nmid, "the test covers all three branches (%d %d %d)", n1, n8, nmid);
        gguf_close(g);
    }
    tf_hf_with_config("linear", "llama-tiny", edit_linear);
    rc = loom_convert_hf_to_gguf(TMP("linear"), TMP("linear.gguf"));
    CHECK(rc == 0, "convert linear: %s", loom_last_error());
    g = rc == 0 ? gguf_open(TMP("linear.gguf")) : NULL;
    if (g) {
        int i = gguf_find_key(g, "llama.rope.scaling.type");
        CHECK(i >= 0 && !strcmp(gguf_get_str(g, i, NULL), "linear"), "linear scaling type");
        CHECK(kv_float(g, "%s.rope.scaling.factor", "llama") == 2.5f, "linear factor");
        CHECK(gguf_find_tensor(g, "rope_freqs.weight") == -1, "no rope_freqs for linear");
        gguf_close(g);
    }
}

static void test_convert_bad(void) {
    tf_hf_with_config("gpt2", "llama-tiny", edit_gpt2);
    loom_err_clear();
    CHECK_FAILS(loom_convert_hf_to_gguf(TMP("gpt2"), TMP("gpt2.gguf")) == 0, "gpt2/config.json", "unsupported arch");
    CHECK(strstr(loom_last_error(), "gpt2'"), "names the arch: %s", loom_last_error());
    tf_hf_with_config("nohidden", "llama-tiny", edit_no_hidden);
    CHECK_FAILS(loom_convert_hf_to_gguf(TMP("nohidden"), TMP("x.gguf")) == 0, "hidden_size", "missing hidden_size");
    tf_hf_with_config("heads_str", "llama-tiny", edit_heads_string);
    CHECK_FAILS(loom_convert_hf_to_gguf(TMP("heads_str"), TMP("x.gguf")) == 0, "heads_str/config.json",
                "num_attention_heads a string");
    tf_hf_with_config("yarn", "qwen2-tiny", edit_yarn);
    CHECK_FAILS(loom_convert_hf_to_gguf(TMP("yarn"), TMP("x.gguf")) == 0, "yarn", "unsupported rope scaling");
    CHECK(access(TMP("x.gguf"), F_OK) != 0 && access(TMP("gpt2.gguf"), F_OK) != 0, "no output after failures");
    CHECK_FAILS(loom_convert_hf_to_gguf(TMP("missing"), TMP("x.gguf")) == 0, "missing", "missing dir");
    CHECK_FAILS(loom_convert_hf_to_gguf(FIX("stories260K.gguf"), TMP("x.gguf")) == 0, "stories260K.gguf", "GGUF input");
    CHECK_FAILS(loom_convert_hf_to_gguf(FIX("qwen2-tiny"), TMP("no/dir/x.gguf")) == 0, "no/dir/x.gguf",
                "output dir missing");
}

/* ---- synth --------------------------------------------------------------------------------- */

static void stats_f16(const uint16_t *h, size_t n, double *mean, double *sd, double *within1) {
    double s = 0, s2 = 0;
    size_t in = 0;
    for (size_t i = 0; i < n; i++) {
        double x = loom_f16_to_f32(h[i]);
        s += x, s2 += x * x, in += fabs(x) < 0.02;
    }
    *mean = s / (double)n;
    *sd = sqrt(s2 / (double)n - *mean * *mean);
    *within1 = (double)in / (double)n;
}

/* synth of a fixture's config.json against the converted checkpoint: the same tensors (names and
 * shapes; matrices and expert stacks f16, vectors f32) and the same architecture keys */
/* Does key i of c have the same type and value in s (strings compared only when `strings`)? */
static bool kv_matches(gguf_ctx *c, int i, gguf_ctx *s, bool strings) {
    int j = gguf_find_key(s, gguf_key(c, i));
    int64_t x, y;
    double fx_, fy;
    if (j < 0 || gguf_kv_type(s, j) != gguf_kv_type(c, i)) return false;
    if (gguf_get_int(c, i, &x)) return gguf_get_int(s, j, &y) && x == y;
    if (gguf_get_float(c, i, &fx_)) return gguf_get_float(s, j, &fy) && fx_ == fy;
    return !strings || !strcmp(gguf_get_str(c, i, NULL), gguf_get_str(s, j, NULL));
}

static void synth_like_convert(const char *fxdir) {
    const char *conv = TMP("%s-conv.gguf", fxdir), *syn = TMP("%s-synth.gguf", fxdir);
    CHECK(loom_convert_hf_to_gguf(FIX("%s", fxdir), conv) == 0, "convert %s: %s", fxdir, loom_last_error());
    CHECK(loom_synth(FIX("%s/config.json", fxdir), LOOM_F16, 5, syn) == 0, "synth %s: %s", fxdir, loom_last_error());
    gguf_ctx *s = gguf_open(syn), *c = gguf_open(conv);
    CHECK(s && c, "open %s synth and converted: %s", fxdir, loom_last_error());
    if (s && c) {
        CHECK(gguf_n_tensors(s) == gguf_n_tensors(c), "%s: tensor count %d vs %d", fxdir, gguf_n_tensors(s),
              gguf_n_tensors(c));
        for (int i = 0; i < gguf_n_tensors(c); i++) {
            int j = gguf_find_tensor(s, gguf_tensor_name(c, i));
            int64_t a[4], b[4];
            gguf_tensor_shape(c, i, a);
            if (j >= 0) gguf_tensor_shape(s, j, b);
            CHECK(j >= 0 && gguf_tensor_ndim(s, j) == gguf_tensor_ndim(c, i) && !memcmp(a, b, sizeof a),
                  "%s: synth has %s with the same shape", fxdir, gguf_tensor_name(c, i));
            if (j >= 0)
                CHECK(gguf_tensor_ggml_type(s, j) == (gguf_tensor_ndim(c, i) == 1 ? GGML_TYPE_F32 : GGML_TYPE_F16),
                      "%s: %s type", fxdir, gguf_tensor_name(c, i));
        }
        int ai = gguf_find_key(c, "general.architecture");
        const char *arch = ai >= 0 ? gguf_get_str(c, ai, NULL) : "";
        for (int i = 0; i < gguf_n_kv(c); i++) {
            const char *k = gguf_key(c, i);
            if (strncmp(k, arch, strlen(arch)) || k[strlen(arch)] != '.') continue;
            CHECK(kv_matches(c, i, s, false), "%s: synth key %s matches the converted file", fxdir, k);
        }
    }
    if (s) gguf_close(s);
    if (c) gguf_close(c);
}

static void test_synth(void) {
    /* mixture-of-experts shapes (the router and the stacked experts) and Qwen3's q/k norms */
    synth_like_convert("qwen3moe-tiny");
    synth_like_convert("mixtral-tiny");
    const char *cfg = FIX("qwen2-tiny/config.json");
    double t0 = loom_now();
    int rc = loom_synth(cfg, LOOM_F16, 1, TMP("synth1.gguf"));
    CHECK(rc == 0, "synth: %s", loom_last_error());
    CHECK(loom_now() - t0 < 5, "synth of a tiny model is fast");
    CHECK(loom_synth(cfg, LOOM_F16, 1, TMP("synth1b.gguf")) == 0, "synth again");
    CHECK(loom_synth(cfg, LOOM_F16, 2, TMP("synth2.gguf")) == 0, "synth seed 2");
    size_t n1, n1b, n2;
    uint8_t *b1 = tf_read(TMP("synth1.gguf"), &n1), *b1b = tf_read(TMP("synth1b.gguf"), &n1b),
            *b2 = tf_read(TMP("synth2.gguf"), &n2);
    CHECK(b1 && b1b && n1 == n1b && !memcmp(b1, b1b, n1), "same seed, same file");
    CHECK(b2 && n2 == n1 && memcmp(b1, b2, n1) != 0, "another seed, another file");
    free(b1), free(b1b), free(b2);

    gguf_ctx *s = gguf_open(TMP("synth1.gguf")), *c = gguf_open(TMP("qwen2-tiny.gguf"));
    CHECK(s && c, "open synth and converted: %s", loom_last_error());
    if (s && c) {
        /* same tensors and metadata as the converted real checkpoint of this config */
        CHECK(gguf_n_tensors(s) == gguf_n_tensors(c), "tensor count %d vs %d", gguf_n_tensors(s), gguf_n_tensors(c));
        for (int i = 0; i < gguf_n_tensors(c); i++) {
            int j = gguf_find_tensor(s, gguf_tensor_name(c, i));
            int64_t a[4], b[4];
            gguf_tensor_shape(c, i, a);
            gguf_tensor_shape(s, j, b);
            CHECK(j >= 0 && !memcmp(a, b, sizeof a), "synth has %s with the same shape", gguf_tensor_name(c, i));
            if (j < 0) continue;
            int want = gguf_tensor_ndim(c, i) == 1 ? GGML_TYPE_F32 : GGML_TYPE_F16;
            CHECK(gguf_tensor_ggml_type(s, j) == want, "%s type", gguf_tensor_name(c, i));
            if (gguf_tensor_ndim(c, i) == 1) {
                const float *v = gguf_tensor_data(s, j);
                bool bias = strstr(gguf_tensor_name(c, i), ".bias") != NULL;
                int bad = 0;
                for (int64_t k = 0; k < a[0]; k++) bad += v[k] != (bias ? 0.0f : 1.0f);
                CHECK(bad == 0, "%s is all %s", gguf_tensor_name(c, i), bias ? "zeros" : "ones");
            }
        }
        for (int i = 0; i < gguf_n_kv(c); i++) {
            const char *k = gguf_key(c, i);
            if (!strcmp(k, "general.name") || !strcmp(k, "general.file_type")) continue;
            CHECK(kv_matches(c, i, s, true), "synth key %s matches the converted file", k);
        }
        CHECK(kv_int(s, "general.file_type", NULL) == 1, "file_type f16");
        /* no tokenizer: marked as llama.cpp marks a model without one */
        int tk = gguf_find_key(s, "tokenizer.ggml.model");
        CHECK(tk >= 0 && !strcmp(gguf_get_str(s, tk, NULL), "none"), "no tokenizer: model 'none'");
        CHECK(kv_int(s, "qwen2.vocab_size", NULL) == 512, "vocab_size");

        int t = gguf_find_tensor(s, "token_embd.weight");
        double mean, sd, w1;
        stats_f16(gguf_tensor_data(s, t), gguf_tensor_nbytes(s, t) / 2, &mean, &sd, &w1);
        CHECK(fabs(mean) < 5e-4, "mean %g", mean);
        CHECK(fabs(sd - 0.02) < 0.0006, "std %g", sd);
        CHECK(fabs(w1 - 0.6827) < 0.01, "%.4f within one sigma (normal: 0.6827)", w1);
        const uint16_t *q = gguf_tensor_data(s, gguf_find_tensor(s, "blk.0.attn_q.weight"));
        const uint16_t *k = gguf_tensor_data(s, gguf_find_tensor(s, "blk.0.attn_k.weight"));
        const uint16_t *q1 = gguf_tensor_data(s, gguf_find_tensor(s, "blk.1.attn_q.weight"));
        CHECK(memcmp(q, k, 64) && memcmp(q, q1, 64), "tensors get their own streams");
    }
    gguf_close(s);
    gguf_close(c);

    /* other dtypes and an untied llama shape */
    CHECK(loom_synth(FIX("llama-tiny/config.json"), LOOM_BF16, 3, TMP("synth_llama.gguf")) == 0, "bf16: %s",
          loom_last_error());
    s = gguf_open(TMP("synth_llama.gguf"));
    if (s) {
        int t = gguf_find_tensor(s, "output.weight");
        CHECK(t >= 0 && gguf_tensor_ggml_type(s, t) == GGML_TYPE_BF16, "untied head in bf16");
        CHECK(gguf_find_tensor(s, "blk.0.attn_q.bias") == -1, "llama: no biases");
        CHECK(kv_int(s, "tokenizer.ggml.bos_token_id", NULL) == -1, "no bos in synth files");
        const uint16_t *h = gguf_tensor_data(s, t);
        double sum = 0;
        for (int i = 0; i < 65536; i++) sum += fabs(loom_bf16_to_f32(h[i]));
        CHECK(fabs(sum / 65536 - 0.02 * sqrt(2 / M_PI)) < 0.0005, "bf16 mean |x| %g", sum / 65536);
        gguf_close(s);
    }
    CHECK(loom_synth(FIX("stories260K-hf/config.json"), LOOM_F32, 3, TMP("synth_f32.gguf")) == 0, "f32");
    s = gguf_open(TMP("synth_f32.gguf"));
    if (s) {
        int t = gguf_find_tensor(s, "blk.4.ffn_down.weight");
        int64_t ne[4];
        gguf_tensor_shape(s, t, ne);
        CHECK(gguf_tensor_ggml_type(s, t) == GGML_TYPE_F32 && ne[0] == 64 && ne[1] == 172, "f32 ffn_down");
        CHECK(gguf_n_tensors(s) == 47, "stories shape: %d tensors", gguf_n_tensors(s));
        gguf_close(s);
    }

    /* head_dim other than n_embd / n_head, and Llama 3 scaling, from a config */
    tf_write_str(TMP("hd.json"), "{\"model_type\":\"llama\",\"rms_norm_eps\":1e-5,\"vocab_size\":64,\"hidden_size\":64,\"num_hidden_layers\":1,"
                                 "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":32,"
                                 "\"intermediate_size\":96,\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,"
                                 "\"original_max_position_embeddings\":64}}");
    CHECK(loom_synth(TMP("hd.json"), LOOM_F16, 0, TMP("hd.gguf")) == 0, "head_dim synth: %s", loom_last_error());
    s = gguf_open(TMP("hd.gguf"));
    if (s) {
        CHECK(kv_int(s, "%s.attention.key_length", "llama") == 32 && kv_int(s, "%s.attention.value_length", "llama") == 32,
              "key/value length written");
        CHECK(kv_int(s, "%s.rope.dimension_count", "llama") == 32, "rope dims = head_dim");
        int64_t ne[4];
        gguf_tensor_shape(s, gguf_find_tensor(s, "blk.0.attn_q.weight"), ne);
        CHECK(ne[0] == 128 && ne[1] == 64, "q is [n_head*head_dim, n_embd]");
        gguf_tensor_shape(s, gguf_find_tensor(s, "blk.0.attn_output.weight"), ne);
        CHECK(ne[0] == 64 && ne[1] == 128, "o is [n_embd, n_head*head_dim]");
        int t = gguf_find_tensor(s, "rope_freqs.weight");
        gguf_tensor_shape(s, t, ne);
        CHECK(t >= 0 && ne[0] == 16, "rope_freqs [head_dim/2]");
        gguf_close(s);
    }

    loom_hparams sp;
    const loom_arch *sa = NULL;
    CHECK(loom_synth_shape("qwen2-0.5b", &sa, &sp) == 0 && sp.n_embd == 896 && sp.n_layer == 24 && sp.n_head == 14 &&
              sp.n_head_kv == 2 && sp.n_ff == 4864 && sp.n_vocab == 151936 && sp.tied_embeddings && sp.qkv_bias &&
              sp.rope_theta == 1e6f && sp.head_dim == 64 && !strcmp(sa->name, "qwen2"),
          "qwen2-0.5b shape");
    CHECK(loom_synth_shape("llama-1.1b", &sa, &sp) == 0 && sp.n_embd == 2048 && sp.n_layer == 22 && sp.n_head == 32 &&
              sp.n_head_kv == 4 && sp.n_ff == 5632 && sp.n_vocab == 32000 && !sp.tied_embeddings && !sp.qkv_bias &&
              sp.rope_theta == 1e4f && !strcmp(sa->name, "llama"),
          "llama-1.1b shape");
    CHECK(loom_synth_shape("llama-7b", &sa, &sp) == 0 && sp.n_embd == 4096 && sp.n_layer == 32 && sp.n_head == 32 &&
              sp.n_head_kv == 32 && sp.n_ff == 11008 && sp.n_vocab == 32000 && !sp.tied_embeddings && !sp.qkv_bias &&
              sp.head_dim == 128 && !strcmp(sa->name, "llama"),
          "llama-7b shape");
    loom_err_clear();
    CHECK_FAILS(loom_synth("gpt-5", LOOM_F16, 0, TMP("x.gguf")) == 0, "gpt-5", "unknown shape");
    CHECK_FAILS(loom_synth(TMP("nope.json"), LOOM_F16, 0, TMP("x.gguf")) == 0, "nope.json", "missing config");
    CHECK_FAILS(loom_synth("qwen2-0.5b", LOOM_I32, 0, TMP("x.gguf")) == 0, "i32", "i32 dtype");
    tf_write_str(TMP("bad.json"), "{\"model_type\":\"llama\",\"vocab_size\":64,\"hidden_size\":60,"
                                  "\"num_hidden_layers\":1,\"num_attention_heads\":7,\"intermediate_size\":96}");
    CHECK_FAILS(loom_synth(TMP("bad.json"), LOOM_F16, 0, TMP("x.gguf")) == 0, "bad.json", "hidden not divisible");
    CHECK(access(TMP("x.gguf"), F_OK) != 0, "no file after failures");
}

/* loom synth --vocab: the tokenizer goes in, padded to the shape's vocabulary, and encodes as the
 * source does (llama.cpp's bench files need the padding: one token per embedding row). */
static void test_synth_vocab(void) {
    char vocab[4096]; /* FIX / TMP return rotating buffers: keep a copy */
    snprintf(vocab, sizeof vocab, "%s", FIX("tokenizer/ggml-vocab-llama-spm.gguf")); /* 32000 tokens */
    loom_tokenizer *src = loom_tokenizer_load(vocab);
    CHECK(src && loom_tokenizer_n_vocab(src) == 32000, "source vocabulary: %s", loom_last_error());
    if (!src) return;
    static const char *const shapes[] = {"32000", "32005"};
    for (int k = 0; k < 2; k++) {
        char cfg[512];
        snprintf(cfg, sizeof cfg,
                 "{\"model_type\":\"llama\",\"rms_norm_eps\":1e-5,\"vocab_size\":%s,\"hidden_size\":32,\"num_hidden_layers\":1,"
                 "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"intermediate_size\":48}",
                 shapes[k]);
        tf_write_str(TMP("v.json"), cfg);
        CHECK(loom_synth_vocab(TMP("v.json"), LOOM_F16, 0, vocab, TMP("v.gguf")) == 0, "synth --vocab: %s",
              loom_last_error());
        loom_tokenizer *t = loom_tokenizer_load(TMP("v.gguf"));
        int nv = atoi(shapes[k]);
        CHECK(t && loom_tokenizer_n_vocab(t) == nv, "vocab %d written, padded: %s", nv, loom_last_error());
        if (!t) continue;
        CHECK(loom_tokenizer_bos(t) == loom_tokenizer_bos(src) && loom_tokenizer_bos(t) >= 0, "bos carried");
        const char *text = "Hello world, this is loom's synth --vocab: 12345 \xc3\xa9t\xc3\xa9!";
        int32_t *a = NULL, *b = NULL;
        int na = loom_tokenizer_encode(src, text, strlen(text), LOOM_TOK_ADD_BOS, &a);
        int nb = loom_tokenizer_encode(t, text, strlen(text), LOOM_TOK_ADD_BOS, &b);
        CHECK(na > 3 && na == nb && !memcmp(a, b, (size_t)na * sizeof *a), "same ids as the source (%d, %d)", na, nb);
        free(a), free(b);
        for (int i = 32000; i < nv; i++) {
            size_t len;
            const char *txt = loom_tokenizer_token_text(t, i, &len);
            char want[32];
            snprintf(want, sizeof want, "<|pad_%d|>", i - 32000);
            CHECK(txt && !strcmp(txt, want) && loom_tokenizer_token_type(t, i) == LOOM_TOKEN_USER_DEFINED,
                  "padding token %d is %s", i, want);
        }
        loom_tokenizer_free(t);
    }
    /* more tokens than embedding rows: refused, naming the file */
    tf_write_str(TMP("v.json"), "{\"model_type\":\"llama\",\"rms_norm_eps\":1e-5,\"vocab_size\":1000,\"hidden_size\":32,"
                                "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":48}");
    CHECK_FAILS(loom_synth_vocab(TMP("v.json"), LOOM_F16, 0, vocab, TMP("v2.gguf")) == 0, "ggml-vocab-llama-spm.gguf",
                "32000 tokens");
    CHECK_FAILS(loom_synth_vocab(TMP("v.json"), LOOM_F16, 0, TMP("missing.gguf"), TMP("v2.gguf")) == 0,
                "missing.gguf", "cannot open");
    loom_tokenizer_free(src);
}

/* The sliding-window layer pattern in the form llama.cpp's loaders read: a u32 period for "every
 * P-th layer global" (its Gemma 2/3 loaders take only that and fall back to their default period
 * given an array), a bool per layer for "local from a layer on"; both load back into loom. */
static void test_window_pattern_keys(void) {
    static const struct { const char *dir, *arch; int period; } w[] = {
        {"gemma3-tiny", "gemma3", 3}, {"gemma2-tiny", "gemma2", 2}, {"qwen2-swa-tiny", "qwen2", 0}};
    for (size_t f = 0; f < sizeof w / sizeof w[0]; f++) {
        const char *out = TMP("%s.gguf", w[f].dir);
        CHECK(loom_convert_hf_to_gguf(FIX("%s", w[f].dir), out) == 0, "convert %s: %s", w[f].dir, loom_last_error());
        gguf_ctx *g = gguf_open(out);
        CHECK(g != NULL, "open %s", out);
        if (!g) continue;
        char key[128];
        snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", w[f].arch);
        int i = gguf_find_key(g, key);
        if (w[f].period) {
            CHECK(kv_int(g, "%s.attention.sliding_window_pattern", w[f].arch) == w[f].period, "%s: u32 period %d",
                  w[f].dir, w[f].period);
        } else {
            CHECK(i >= 0 && gguf_kv_type(g, i) == GGUF_TYPE_ARRAY && gguf_arr_type(g, i) == GGUF_TYPE_BOOL &&
                      gguf_arr_n(g, i) == 2 && !((const uint8_t *)gguf_arr_data(g, i))[0] &&
                      ((const uint8_t *)gguf_arr_data(g, i))[1],
                  "%s: bools [false, true]", w[f].dir);
        }
        gguf_close(g);
        loom_model *m = loom_model_load(out);
        loom_model *h = loom_model_load(FIX("%s", w[f].dir));
        CHECK(m && h, "load %s: %s", w[f].dir, loom_last_error());
        if (m && h) {
            const loom_hparams *a = &m->hp, *b = &h->hp;
            for (int l = 0; l < a->n_layer; l++)
                CHECK(loom_layer_is_local(a, l) == loom_layer_is_local(b, l), "%s: layer %d local as in the HF dir",
                      w[f].dir, l);
        }
        loom_model_free(m);
        loom_model_free(h);
    }
}

int main(void) {
    tf_init();
    test_convert_fixtures();
    test_stories_matches_llamacpp();
    test_rope_scaling();
    test_convert_bad();
    test_synth();
    test_synth_vocab();
    test_window_pattern_keys();
    tf_cleanup();
    CHECK_DONE();
}
