/* loom_source over every fixture (HF dirs and the GGUF), hyper-parameter lookups, the name mapping,
 * sharded checkpoints, and bad directories generated in a temp dir. */
#include "formats/gguf.h"
#include "models/model.h"
#include "formats/safetensors.h"
#include "formats/source.h"
#include "tests/unit/test_formats_util.h"
#include "core/util.h"

/* The file a pointer is mapped from (via /proc/self/maps), or "" when it is not file-mapped. */
static const char *mapped_file(const void *p) {
    static char path[1024];
    path[0] = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return path;
    char line[1400];
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char file[1024] = "";
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %1023s", &lo, &hi, file) >= 2 && (uintptr_t)p >= lo &&
            (uintptr_t)p < hi) {
            snprintf(path, sizeof path, "%s", file);
            break;
        }
    }
    fclose(f);
    return path;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static const struct { const char *dir, *arch, *hf_arch; bool tied; loom_dtype dtype; int n_layer; } fixtures[] = {
    {"qwen2-tiny", "qwen2", "Qwen2ForCausalLM", true, LOOM_F32, 2},
    {"qwen2-tiny-bf16", "qwen2", "Qwen2ForCausalLM", true, LOOM_BF16, 2},
    {"llama-tiny", "llama", "LlamaForCausalLM", false, LOOM_F32, 2},
    {"stories260K-hf", "llama", "LlamaForCausalLM", true, LOOM_F32, 5},
};

/* A HF directory as its family sees it: GGUF tensor names (the map is models/ data). */
static loom_source *open_as_family(const char *path) {
    const loom_arch *a;
    loom_hparams hp;
    return loom_arch_open(path, &a, &hp);
}

static void test_hf_fixtures(void) {
    for (size_t f = 0; f < sizeof fixtures / sizeof fixtures[0]; f++) {
        const char *dir = fixtures[f].dir;
        loom_source *s = open_as_family(FIX("%s", dir));
        CHECK(s, "%s: %s", dir, loom_last_error());
        st_file *st = st_open(FIX("%s/model.safetensors", dir));
        if (!s || !st) {
            loom_source_close(s);
            st_close(st);
            continue;
        }
        CHECK(loom_source_get_kind(s) == LOOM_SOURCE_HF, "%s kind", dir);
        CHECK(!strcmp(loom_source_arch(s), fixtures[f].arch), "%s arch '%s'", dir, loom_source_arch(s));
        const char *const *ha = loom_source_hf_architectures(s);
        CHECK(ha && ha[0] && !strcmp(ha[0], fixtures[f].hf_arch) && !ha[1], "%s architectures", dir);
        CHECK(loom_source_hf_config(s) != NULL && loom_source_gguf(s) == NULL, "%s raw access", dir);
        CHECK(loom_source_n_tensors(s) == st_n_tensors(st), "%s: %d tensors", dir, loom_source_n_tensors(s));
        CHECK((loom_source_find(s, "output.weight") != NULL) == !fixtures[f].tied, "%s: output.weight", dir);
        CHECK(loom_source_find(s, "token_embd.weight") && loom_source_find(s, "output_norm.weight"), "%s names", dir);
        char name[96];
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", fixtures[f].n_layer - 1);
        CHECK(loom_source_find(s, name) != NULL, "%s: %s", dir, name);
        CHECK((loom_source_find(s, "blk.0.attn_q.bias") != NULL) == !strcmp(fixtures[f].arch, "qwen2"), "%s bias", dir);
        CHECK(loom_source_find(s, "model.embed_tokens.weight") == NULL, "%s: HF names are not exposed", dir);
        int n1 = 0, n2 = 0;
        for (int i = 0; i < st_n_tensors(st); i++) {
            const st_tensor *t = st_tensor_at(st, i);
            char canon[96];
            CHECK(loom_arch_hf_to_gguf(loom_arch_find(fixtures[f].arch), t->name, canon, sizeof canon), "%s: %s has a GGUF name", dir, t->name);
            const loom_weight *w = loom_source_find(s, canon);
            CHECK(w != NULL, "%s: %s -> %s present", dir, t->name, canon);
            if (!w) continue;
            CHECK(loom_source_tensor(s, w->id) == w, "id");
            CHECK(w->ndim == t->ndim && w->ne[0] == t->shape[0] && (t->ndim < 2 || w->ne[1] == t->shape[1]),
                  "%s: %s shape", dir, canon);
            if (t->ndim == 1) { /* an owned f32 copy with the same values */
                n1++;
                CHECK(w->type == LOOM_F32 && w->nbytes == (size_t)t->shape[0] * 4, "%s: %s is f32", dir, canon);
                float *ref = malloc((size_t)t->shape[0] * 4);
                loom_to_f32(ref, t->data, t->dtype, (size_t)t->shape[0]);
                CHECK(!memcmp(ref, w->data, w->nbytes), "%s: %s values", dir, canon);
                CHECK(!ends_with(mapped_file(w->data), "model.safetensors"), "%s: %s is a copy", dir, canon);
                free(ref);
            } else { /* mapped, same dtype and bytes */
                n2++;
                CHECK(w->type == fixtures[f].dtype && w->type == t->dtype, "%s: %s keeps dtype %s", dir, canon,
                      loom_dtype_name(w->type));
                CHECK(w->nbytes == t->nbytes && !memcmp(w->data, t->data, t->nbytes), "%s: %s bytes", dir, canon);
                const char *mf = mapped_file(w->data);
                CHECK(ends_with(mf, "/model.safetensors"), "%s: %s is mapped from '%s'", dir, canon, mf);
            }
        }
        /* two norms a layer (+ q/k/v biases for qwen2) and the final norm */
        int want1 = 2 * fixtures[f].n_layer + 1 + (!strcmp(fixtures[f].arch, "qwen2") ? 3 * fixtures[f].n_layer : 0);
        CHECK(n1 == want1, "%s: %d vectors, want %d", dir, n1, want1);
        CHECK(n2 >= 7 * fixtures[f].n_layer + 1, "%s: %d matrices", dir, n2);
        st_close(st);
        loom_source_close(s);
    }
}

static void test_hparams(void) {
    loom_source *s = loom_source_open(FIX("qwen2-tiny"));
    CHECK(s, "open: %s", loom_last_error());
    if (!s) return;
    int64_t v = -7;
    double d = -7;
    bool b = false;
    char buf[64];
    CHECK(loom_source_get_int(s, "hidden_size", "{arch}.embedding_length", &v) == 1 && v == 128, "hidden_size");
    CHECK(loom_source_get_int(s, "num_key_value_heads", NULL, &v) == 1 && v == 2, "kv heads");
    CHECK(loom_source_get_float(s, "hidden_size", NULL, &d) == 1 && d == 128, "an int is a valid float");
    CHECK(loom_source_get_float(s, "rope_parameters.rope_theta", NULL, &d) == 1 && d == 1e6, "dotted theta");
    CHECK(loom_source_get_float(s, "rms_norm_eps", NULL, &d) == 1 && d == 1e-6, "eps");
    CHECK(loom_source_get_bool(s, "tie_word_embeddings", NULL, &b) == 1 && b, "tied");
    CHECK(loom_source_get_bool(s, "use_sliding_window", NULL, &b) == 1 && !b, "sliding window off");
    CHECK(loom_source_get_str(s, "model_type", NULL, buf, sizeof buf) == 1 && !strcmp(buf, "qwen2"), "model_type");
    CHECK(loom_source_get_str(s, "rope_parameters.rope_type", NULL, buf, sizeof buf) == 1 && !strcmp(buf, "default"),
          "dotted string");
    v = -7;
    CHECK(loom_source_get_int(s, "bos_token_id", NULL, &v) == 0 && v == -7, "JSON null is absent");
    CHECK(loom_source_get_int(s, "no_such_key", NULL, &v) == 0, "absent");
    CHECK(loom_source_get_int(s, "rope_parameters.nope", NULL, &v) == 0, "absent nested");
    CHECK(loom_source_get_int(s, "sliding_window.x", NULL, &v) == 0, "through null is absent");
    CHECK(loom_source_get_int(s, NULL, "qwen2.block_count", &v) == 0, "GGUF key on a HF source");
    CHECK(loom_source_get_int(s, NULL, NULL, &v) == 0, "no keys");
    loom_err_clear();
    CHECK_FAILS(loom_source_get_int(s, "model_type", NULL, &v) == 1, "config.json", "string as int");
    CHECK_FAILS(loom_source_get_int(s, "rms_norm_eps", NULL, &v) == 1, "config.json", "fraction as int");
    CHECK_FAILS(loom_source_get_int(s, "tie_word_embeddings", NULL, &v) == 1, "config.json", "bool as int");
    CHECK_FAILS(loom_source_get_float(s, "model_type", NULL, &d) == 1, "config.json", "string as float");
    CHECK_FAILS(loom_source_get_bool(s, "hidden_size", NULL, &b) == 1, "config.json", "int as bool");
    CHECK_FAILS(loom_source_get_str(s, "hidden_size", NULL, buf, sizeof buf) == 1, "config.json", "int as string");
    CHECK_FAILS(loom_source_get_int(s, "rope_parameters.rope_type.x", NULL, &v) == 1, "config.json", "through string");
    CHECK_FAILS(loom_source_get_int(s, "layer_types", NULL, &v) == 1, "config.json", "list of strings as int");
    CHECK_FAILS(loom_source_get_str(s, "model_type", NULL, buf, 3) == 1, "model_type", "buffer too small");
    loom_source_close(s);

    /* GGUF keys, {arch} substitution */
    s = loom_source_open(FIX("stories260K.gguf"));
    CHECK(s, "open gguf: %s", loom_last_error());
    if (!s) return;
    CHECK(loom_source_get_kind(s) == LOOM_SOURCE_GGUF && !strcmp(loom_source_arch(s), "llama"), "gguf kind/arch");
    CHECK(loom_source_hf_architectures(s) == NULL && loom_source_hf_config(s) == NULL && loom_source_gguf(s), "raw");
    CHECK(loom_source_n_tensors(s) == 48, "48 tensors");
    CHECK(loom_source_get_int(s, "num_hidden_layers", "{arch}.block_count", &v) == 1 && v == 5, "block_count");
    CHECK(loom_source_get_int(s, NULL, "llama.attention.head_count_kv", &v) == 1 && v == 4, "literal key");
    CHECK(loom_source_get_float(s, NULL, "{arch}.attention.layer_norm_rms_epsilon", &d) == 1 && fabs(d - 1e-5) < 1e-9,
          "eps");
    CHECK(loom_source_get_float(s, NULL, "{arch}.context_length", &d) == 1 && d == 2048, "int as float");
    CHECK(loom_source_get_str(s, NULL, "tokenizer.ggml.model", buf, sizeof buf) == 1 && !strcmp(buf, "llama"), "str");
    CHECK(loom_source_get_int(s, "hidden_size", NULL, &v) == 0, "HF key on a GGUF source");
    CHECK(loom_source_get_float(s, NULL, "{arch}.rope.freq_base", &d) == 0, "absent key");
    CHECK_FAILS(loom_source_get_int(s, NULL, "general.architecture", &v) == 1, "stories260K.gguf", "string as int");
    CHECK_FAILS(loom_source_get_bool(s, NULL, "{arch}.block_count", &b) == 1, "llama.block_count", "int as bool");
    CHECK_FAILS(loom_source_get_str(s, NULL, "tokenizer.ggml.tokens", buf, sizeof buf) == 1, "stories260K.gguf",
                "array as string");
    const loom_weight *w = loom_source_find(s, "blk.0.attn_q.weight");
    int64_t ne[4];
    gguf_tensor_shape(loom_source_gguf(s), gguf_find_tensor(loom_source_gguf(s), "blk.0.attn_q.weight"), ne);
    CHECK(w && w->type == LOOM_F32 && w->ndim == 2 && w->ne[0] == 64 && w->ne[1] == 64, "gguf matrix");
    CHECK(w && w->data == gguf_tensor_data(loom_source_gguf(s), gguf_find_tensor(loom_source_gguf(s), w->name)),
          "gguf matrix is mapped");
    w = loom_source_find(s, "blk.1.attn_norm.weight");
    CHECK(w && w->ndim == 1 && w->ne[0] == 64 && w->type == LOOM_F32, "gguf vector");
    loom_source_close(s);
}

static void test_names(void) {
    const loom_arch *llama = loom_arch_find("llama");
    static const char *pairs[][2] = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
        {"model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"},
        {"model.layers.12.self_attn.q_proj.weight", "blk.12.attn_q.weight"},
        {"model.layers.3.self_attn.k_proj.bias", "blk.3.attn_k.bias"},
        {"model.layers.3.self_attn.v_proj.weight", "blk.3.attn_v.weight"},
        {"model.layers.3.self_attn.o_proj.weight", "blk.3.attn_output.weight"},
        {"model.layers.99.post_attention_layernorm.weight", "blk.99.ffn_norm.weight"},
        {"model.layers.7.mlp.gate_proj.weight", "blk.7.ffn_gate.weight"},
        {"model.layers.7.mlp.up_proj.weight", "blk.7.ffn_up.weight"},
        {"model.layers.7.mlp.down_proj.weight", "blk.7.ffn_down.weight"},
    };
    char buf[96];
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        CHECK(loom_arch_hf_to_gguf(llama, pairs[i][0], buf, sizeof buf) && !strcmp(buf, pairs[i][1]), "%s -> %s", pairs[i][0], buf);
        CHECK(loom_arch_gguf_to_hf(llama, pairs[i][1], buf, sizeof buf) && !strcmp(buf, pairs[i][0]), "%s -> %s", pairs[i][1], buf);
    }
    const char *unmapped[] = {"model.layers.1.mlp.gate_proj", "model.layers.x.mlp.up_proj.weight",
                              "model.layers.01.mlp.up_proj.weight", "model.layers.-1.mlp.up_proj.weight",
                              "model.layers..mlp.up_proj.weight", "model.rotary_emb.inv_freq", "blk.0.attn_q.weight",
                              "model.layers.1234567.mlp.up_proj.weight", ""};
    for (size_t i = 0; i < sizeof unmapped / sizeof unmapped[0]; i++)
        CHECK(!loom_arch_hf_to_gguf(llama, unmapped[i], buf, sizeof buf), "'%s' has no GGUF name", unmapped[i]);
    CHECK(!loom_arch_gguf_to_hf(llama, "blk.1.nope.weight", buf, sizeof buf), "unknown GGUF suffix");
    CHECK(!loom_arch_gguf_to_hf(llama, "model.norm.weight", buf, sizeof buf), "HF name is not a GGUF name");
    CHECK(!loom_arch_hf_to_gguf(llama, "model.layers.12.self_attn.q_proj.weight", buf, 10), "buffer too small");
}

/* ---- directories made in the temp dir ------------------------------------------------------ */

static void mkdir_tmp(const char *name) {
    char p[1100];
    snprintf(p, sizeof p, "%s/%s", tf_tmp, name);
    mkdir(p, 0755);
}

static void link_fixture(const char *dst_dir, const char *fixture_file) {
    const char *slash = strrchr(fixture_file, '/');
    char src[1100], dst[1100];
    snprintf(src, sizeof src, "%s/%s", tf_fixtures, fixture_file);
    snprintf(dst, sizeof dst, "%s/%s/%s", tf_tmp, dst_dir, slash ? slash + 1 : fixture_file);
    if (symlink(src, dst) != 0) perror("symlink");
}

static void expect_open_fails(const char *path, const char *name, const char *what) {
    loom_err_clear();
    loom_source *s = open_as_family(path); /* the source, then the family's renames */
    CHECK_FAILS(s != NULL, name, what);
    loom_source_close(s);
}

/* Split qwen2-tiny into two shards plus an index; `mode` breaks it in various ways. */
enum { SHARD_OK, SHARD_MISSING, SHARD_NOT_IN_SHARD, SHARD_DUP, SHARD_TRAVERSAL, SHARD_NO_MAP };
static void make_sharded(const char *dir, int mode) {
    mkdir_tmp(dir);
    link_fixture(dir, "qwen2-tiny/config.json");
    st_file *st = st_open(FIX("qwen2-tiny/model.safetensors"));
    int n = st_n_tensors(st), half = n / 2;
    tf_st_entry *e = calloc((size_t)n + 1, sizeof *e);
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_tensor_at(st, i);
        e[i] = (tf_st_entry){t->name, "F32", t->ndim, {0}, t->data, t->nbytes};
        for (int d = 0; d < t->ndim; d++) e[i].shape[d] = t->shape[d];
    }
    tf_st_write(TMP("%s/model-00001-of-00002.safetensors", dir), e, half, 0);
    if (mode == SHARD_DUP) e[n] = e[0]; /* shard 2 also holds shard 1's first tensor */
    if (mode == SHARD_DUP) { /* the extra entry goes right after shard 2's tensors */
        tf_st_entry tmp = e[n];
        memmove(e + half + 1, e + half, (size_t)(n - half) * sizeof *e);
        e[half] = tmp;
        tf_st_write(TMP("%s/model-00002-of-00002.safetensors", dir), e + half, n - half + 1, 0);
        memmove(e + half, e + half + 1, (size_t)(n - half) * sizeof *e);
    } else {
        tf_st_write(TMP("%s/model-00002-of-00002.safetensors", dir), e + half, n - half, 0);
    }
    char *json = malloc(65536);
    size_t len = (size_t)snprintf(json, 65536, "{\"metadata\":{\"total_size\":0},\"weight_map\":{");
    for (int i = 0; i < n; i++) {
        const char *file = i < half ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
        if (mode == SHARD_MISSING && i == n - 1) file = "model-00003-of-00002.safetensors";
        if (mode == SHARD_NOT_IN_SHARD && i == 0) file = "model-00002-of-00002.safetensors";
        if (mode == SHARD_TRAVERSAL && i == 0) file = "../qwen2-tiny/model.safetensors";
        len += (size_t)snprintf(json + len, 65536 - len, "%s\"%s\":\"%s\"", i ? "," : "", e[i].name, file);
    }
    snprintf(json + len, 65536 - len, "}}");
    if (mode == SHARD_NO_MAP) snprintf(json, 65536, "{\"weight_map\":[]}");
    tf_write_str(TMP("%s/model.safetensors.index.json", dir), json);
    free(json);
    free(e);
    st_close(st);
}

static void test_sharded(void) {
    make_sharded("sharded", SHARD_OK);
    loom_source *s = open_as_family(TMP("sharded"));
    loom_source *ref = open_as_family(FIX("qwen2-tiny"));
    CHECK(s && ref, "sharded: %s", loom_last_error());
    if (s && ref) {
        CHECK(loom_source_n_tensors(s) == loom_source_n_tensors(ref), "sharded tensor count %d", loom_source_n_tensors(s));
        for (int i = 0; i < loom_source_n_tensors(ref); i++) {
            const loom_weight *a = loom_source_tensor(ref, i), *b = loom_source_find(s, a->name);
            CHECK(b && b->nbytes == a->nbytes && !memcmp(a->data, b->data, a->nbytes) && b->type == a->type,
                  "sharded %s", a->name);
        }
        const loom_weight *w = loom_source_find(s, "blk.1.ffn_up.weight");
        CHECK(w && strstr(mapped_file(w->data), "model-0000"), "mapped from a shard");
    }
    loom_source_close(s);
    loom_source_close(ref);

    make_sharded("shard_missing", SHARD_MISSING);
    expect_open_fails(TMP("shard_missing"), "model-00003-of-00002.safetensors", "index naming a missing shard");
    expect_open_fails(TMP("shard_missing"), "model.safetensors.index.json", "index naming a missing shard (file)");
    make_sharded("shard_notin", SHARD_NOT_IN_SHARD);
    expect_open_fails(TMP("shard_notin"), "model.safetensors.index.json", "index naming the wrong shard");
    make_sharded("shard_dup", SHARD_DUP);
    expect_open_fails(TMP("shard_dup"), "model-00002-of-00002.safetensors", "tensor in two shards");
    CHECK(strstr(loom_last_error(), "duplicate tensor 'model.embed_tokens.weight'"), "dup message: %s", loom_last_error());
    make_sharded("shard_traversal", SHARD_TRAVERSAL);
    expect_open_fails(TMP("shard_traversal"), "../qwen2-tiny", "shard outside the directory");
    make_sharded("shard_nomap", SHARD_NO_MAP);
    expect_open_fails(TMP("shard_nomap"), "weight_map", "index without a weight_map");
    tf_write_str(TMP("shard_nomap/model.safetensors.index.json"), "{\"weight_map\":{");
    expect_open_fails(TMP("shard_nomap"), "model.safetensors.index.json", "index not JSON");
}

static void test_bad_dirs(void) {
    expect_open_fails(TMP("nope"), "nope", "missing dir");
    expect_open_fails("", "empty path", "empty path");
    mkdir_tmp("empty");
    expect_open_fails(TMP("empty"), "config.json", "no config.json");
    expect_open_fails(TMP("empty"), "empty", "no config.json (dir)");

    mkdir_tmp("notjson");
    tf_write_str(TMP("notjson/config.json"), "{\"hidden_size\": 12,,}");
    link_fixture("notjson", "qwen2-tiny/model.safetensors");
    expect_open_fails(TMP("notjson"), "notjson/config.json", "config.json not JSON");
    tf_write_str(TMP("notjson/config.json"), "[1, 2]");
    expect_open_fails(TMP("notjson"), "notjson/config.json", "config.json an array");
    tf_write_str(TMP("notjson/config.json"), "");
    expect_open_fails(TMP("notjson"), "notjson/config.json", "config.json empty");
    tf_write_str(TMP("notjson/config.json"), "{\"model_type\": 7}");
    expect_open_fails(TMP("notjson"), "config.json", "model_type not a string");
    tf_write_str(TMP("notjson/config.json"), "{\"architectures\": \"LlamaForCausalLM\"}");
    expect_open_fails(TMP("notjson"), "config.json", "architectures not a list");

    /* a config key of the wrong type: opens, but the lookup fails naming the file */
    tf_write_str(TMP("notjson/config.json"),
                 "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": \"128\", \"eos_token_id\": [7, 9]}");
    loom_source *s = loom_source_open(TMP("notjson"));
    CHECK(s, "config with a wrong-typed key opens: %s", loom_last_error());
    if (s) {
        int64_t v = 0;
        CHECK(!strcmp(loom_source_arch(s), "llama"), "arch from architectures[0]: '%s'", loom_source_arch(s));
        CHECK_FAILS(loom_source_get_int(s, "hidden_size", NULL, &v) == 1, "notjson/config.json", "hidden_size a string");
        CHECK(loom_source_get_int(s, "eos_token_id", NULL, &v) == 1 && v == 7, "a list of ids gives the first");
        loom_source_close(s);
    }

    mkdir_tmp("nost");
    link_fixture("nost", "qwen2-tiny/config.json");
    expect_open_fails(TMP("nost"), "model.safetensors", "no safetensors");
    expect_open_fails(TMP("nost"), "nost", "no safetensors (dir)");

    size_t n;
    uint8_t *good = tf_read(FIX("qwen2-tiny/model.safetensors"), &n);
    mkdir_tmp("trunc");
    link_fixture("trunc", "qwen2-tiny/config.json");
    size_t cuts[] = {0, 5, 100, n / 3, n - 4};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        tf_write(TMP("trunc/model.safetensors"), good, cuts[i]);
        char what[64];
        snprintf(what, sizeof what, "safetensors truncated at %zu", cuts[i]);
        expect_open_fails(TMP("trunc"), "trunc/model.safetensors", what);
    }
    free(good);

    /* a 5-D tensor is valid safetensors but not a loom weight */
    mkdir_tmp("dims5");
    link_fixture("dims5", "qwen2-tiny/config.json");
    float x[32] = {0};
    tf_st_entry e5b[] = {{"weird", "F32", 4, {2, 2, 2, 4}, x, sizeof x}};
    tf_st_write(TMP("dims5/model.safetensors"), e5b, 1, 0);
    s = loom_source_open(TMP("dims5"));
    CHECK(s && loom_source_find(s, "weird") && loom_source_find(s, "weird")->ndim == 4, "4-D unmapped tensor kept");
    loom_source_close(s);
    FILE *f = fopen(TMP("dims5/model.safetensors"), "wb");
    const char *hdr = "{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}}";
    uint64_t hl = strlen(hdr);
    fwrite(&hl, 8, 1, f);
    fwrite(hdr, 1, hl, f);
    fwrite(x, 1, 8, f);
    fclose(f);
    expect_open_fails(TMP("dims5"), "model.safetensors", "5-D tensor");

    /* HF name mapping to a name that is also present literally */
    mkdir_tmp("dupname");
    link_fixture("dupname", "qwen2-tiny/config.json");
    tf_st_entry ed[] = {{"model.norm.weight", "F32", 1, {4}, x, 16}, {"output_norm.weight", "F32", 1, {4}, x, 16}};
    tf_st_write(TMP("dupname/model.safetensors"), ed, 2, 0);
    expect_open_fails(TMP("dupname"), "output_norm.weight", "two tensors with one canonical name");

    /* GGUF: quantized types loom cannot compute (q5_0) open in gguf_open but not as a model source
     * (q8_0/q4_0/q4_K/q6_K load: tests/unit/test_quant.c) */
    gguf_writer *w = gguf_writer_new();
    gguf_w_str(w, "general.architecture", "llama");
    static uint8_t q[2 * 22];
    gguf_w_tensor(w, "blk.0.ffn_up.weight", 6 /* q5_0 */, 2, (int64_t[]){2, 32}, q, sizeof q);
    gguf_writer_save(w, TMP("q4.gguf"));
    gguf_writer_free(w);
    gguf_ctx *g = gguf_open(TMP("q4.gguf"));
    CHECK(g != NULL, "q5_0 file opens as GGUF: %s", loom_last_error());
    gguf_close(g);
    expect_open_fails(TMP("q4.gguf"), "q4.gguf", "q5_0 tensor as a model");
    CHECK(strstr(loom_last_error(), "unsupported tensor type q5_0 for 'blk.0.ffn_up.weight' (supported: f32, f16, bf16"),
          "q5_0 message: %s", loom_last_error());

    /* detection by magic and by file name */
    size_t gn;
    uint8_t *gb = tf_read(FIX("stories260K.gguf"), &gn);
    tf_write(TMP("model.bin"), gb, gn);
    s = loom_source_open(TMP("model.bin"));
    CHECK(s && loom_source_get_kind(s) == LOOM_SOURCE_GGUF, "GGUF detected by magic: %s", loom_last_error());
    loom_source_close(s);
    tf_write(TMP("short.gguf"), gb, 1000);
    expect_open_fails(TMP("short.gguf"), "short.gguf", "truncated GGUF");
    free(gb);
    tf_write_str(TMP("notes.txt"), "hello");
    expect_open_fails(TMP("notes.txt"), "notes.txt", "a text file");
    s = open_as_family(FIX("llama-tiny/config.json"));
    CHECK(s && loom_source_get_kind(s) == LOOM_SOURCE_HF && loom_source_find(s, "output.weight"),
          "config.json path opens its dir: %s", loom_last_error());
    loom_source_close(s);
    s = loom_source_open(FIX("llama-tiny/model.safetensors"));
    CHECK(s && loom_source_get_kind(s) == LOOM_SOURCE_HF, "safetensors path opens its dir");
    loom_source_close(s);
}

int main(void) {
    tf_init();
    test_hf_fixtures();
    test_hparams();
    test_names();
    test_sharded();
    test_bad_dirs();
    tf_cleanup();
    CHECK_DONE();
}
