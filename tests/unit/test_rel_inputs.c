/* Reliability regressions of issue 15 (docs/reliability.md, "Regressions of the adversarial pass"):
 * each case failed (crash, hang, lost output or silent garbage) before its fix. */
#include "core/util.h"
#include "formats/convert.h"
#include "formats/gguf.h"
#include "formats/quantize.h"
#include "formats/safetensors.h"
#include "formats/source.h"
#include "models/model.h"
#include "tests/unit/test_formats_util.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>

/* ---- helpers ---------------------------------------------------------------------------------- */

static const char *dtype_str(loom_dtype t) {
    return t == LOOM_F32 ? "F32" : t == LOOM_F16 ? "F16" : t == LOOM_BF16 ? "BF16" : "I32";
}

/* TMP(dir) = a HF dir: the fixture's config.json (edited by `edit`, may be NULL) and its tensors,
 * where `tweak` (may be NULL) may change each entry (shape, bytes). */
static void make_hf(const char *dir, const char *fixture, void (*edit)(cJSON *), void (*tweak)(tf_st_entry *)) {
    mkdir(TMP("%s", dir), 0755);
    cJSON *c = loom_json_read(FIX("%s/config.json", fixture));
    if (edit) edit(c);
    char *txt = cJSON_Print(c);
    tf_write_str(TMP("%s/config.json", dir), txt);
    free(txt);
    cJSON_Delete(c);
    st_file *f = st_open(FIX("%s/model.safetensors", fixture));
    if (!f) {
        fprintf(stderr, "%s\n", loom_last_error());
        exit(1);
    }
    int n = st_n_tensors(f);
    tf_st_entry *e = calloc((size_t)n, sizeof *e);
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_tensor_at(f, i);
        e[i] = (tf_st_entry){t->name, dtype_str(t->dtype), t->ndim, {0}, t->data, t->nbytes};
        for (int d = 0; d < t->ndim && d < 4; d++) e[i].shape[d] = t->shape[d];
        if (tweak) tweak(&e[i]);
    }
    tf_st_write(TMP("%s/model.safetensors", dir), e, n, 0);
    free(e);
    st_close(f);
}

static int count_prefix(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += !strncmp(e->d_name, prefix, strlen(prefix));
    if (d) closedir(d);
    return n;
}

static bool is_gguf(const char *path) {
    gguf_ctx *g = gguf_open(path);
    gguf_close(g);
    return g != NULL;
}


/* TMP(name): stories260K.gguf with `key` set to a value of GGUF type `type` ('u' u64, 'U' u32, 'i' i32,
 * 'f' f32; 0: key untouched), plus an optional extra copy of tensor `dup` named `dup_as`. */
static const char *gguf_variant(const char *name, const char *key, char type, double v, const char *dup,
                                const char *dup_as) {
    gguf_ctx *g = gguf_open(FIX("stories260K.gguf"));
    gguf_writer *w = gguf_writer_new();
    gguf_w_copy_kv(w, g);
    if (type) {
        gguf_w_remove_kv(w, key);
        if (type == 'u') gguf_w_u64(w, key, (uint64_t)v);
        if (type == 'U') gguf_w_u32(w, key, (uint32_t)v);
        if (type == 'i') gguf_w_i32(w, key, (int32_t)v);
        if (type == 'f') gguf_w_f32(w, key, (float)v);
    }
    for (int i = 0; i < gguf_n_tensors(g); i++) {
        int64_t ne[4];
        gguf_tensor_shape(g, i, ne);
        const char *tn = gguf_tensor_name(g, i);
        gguf_w_tensor(w, tn, gguf_tensor_ggml_type(g, i), gguf_tensor_ndim(g, i), ne, gguf_tensor_data(g, i),
                      gguf_tensor_nbytes(g, i));
        if (dup && !strcmp(tn, dup))
            gguf_w_tensor(w, dup_as, gguf_tensor_ggml_type(g, i), gguf_tensor_ndim(g, i), ne, gguf_tensor_data(g, i),
                          gguf_tensor_nbytes(g, i));
    }
    const char *out = TMP("%s", name);
    if (gguf_writer_save(w, out)) fprintf(stderr, "%s\n", loom_last_error());
    gguf_writer_free(w);
    gguf_close(g);
    return out;
}

/* A model that must not load: the error names `what` (a key or tensor). */
static void load_fails(const char *path, const char *what, const char *why) {
    loom_model *m = loom_model_load(path);
    CHECK_FAILS(m != NULL, what, why);
    loom_model_free(m);
}

/* ---- 1. a zero-row attention projection: SIGFPE in convert's q/k permutation --------------------- */

static void zero_rows_q(tf_st_entry *e) {
    if (strcmp(e->name, "model.layers.0.self_attn.q_proj.weight")) return;
    e->shape[0] = 0;
    e->nbytes = 0;
}

static void test_zero_row_tensor(void) {
    make_hf("zero-q", "llama-tiny", NULL, zero_rows_q);
    loom_err_clear();
    CHECK_FAILS(loom_convert_hf_to_gguf(TMP("zero-q"), TMP("zero-q.gguf")) == 0, "q_proj", "convert, q_proj [0,128]");
    CHECK_FAILS(loom_quantize(TMP("zero-q"), TMP("zero-q.gguf"), "q8_0", NULL) == 0, "q_proj",
                "quantize, q_proj [0,128]");
    CHECK(access(TMP("zero-q.gguf"), F_OK) != 0, "no output");
    CHECK(count_prefix(tf_tmp, "zero-q.gguf.") == 0, "no temporary files left");
}

/* ---- 2. outputs: devices and FIFOs refused, symlinks written through, temporaries cleaned -------- */

static int fill_then_signal(void *user, uint64_t off, void *buf, size_t n) {
    (void)off;
    memset(buf, 0, n);
    raise(*(int *)user); /* as if the user pressed ^C while the tensor data is written */
    return 0;
}

static void test_outputs(void) {
    char model[1024];
    snprintf(model, sizeof model, "%s", FIX("stories260K.gguf"));
    /* a FIFO (a device is the same S_ISREG check): refused, left as it was */
    CHECK(mkfifo(TMP("fifo.gguf"), 0644) == 0, "mkfifo");
    CHECK_FAILS(loom_quantize(model, TMP("fifo.gguf"), "q8_0", NULL) == 0, "not a regular file", "quantize to a FIFO");
    CHECK_FAILS(loom_convert_hf_to_gguf(FIX("llama-tiny"), TMP("fifo.gguf")) == 0, "a FIFO", "convert to a FIFO");
    struct stat st;
    CHECK(lstat(TMP("fifo.gguf"), &st) == 0 && S_ISFIFO(st.st_mode), "the FIFO is still a FIFO");
    /* (not /dev/null itself: without the fix, a test run as root replaces it with a regular file) */
    CHECK_FAILS(loom_quantize(model, tf_tmp, "q8_0", NULL) == 0, "a directory", "quantize to a folder");

    /* a symlink: its target gets the new file, the link stays */
    tf_write_str(TMP("real.gguf"), "old contents");
    CHECK(symlink("real.gguf", TMP("link.gguf")) == 0, "symlink");
    /* stale temporaries of the target: one abandoned (removed), one held by a live writer (kept) */
    tf_write_str(TMP("real.gguf.tmp-abc123"), "left by a killed run");
    int held = open(TMP("real.gguf.tmp-xyz789"), O_CREAT | O_RDWR, 0644);
    CHECK(held >= 0 && flock(held, LOCK_EX) == 0, "lock a live temporary file");
    CHECK(loom_quantize(model, TMP("link.gguf"), "q8_0", NULL) == 0, "quantize through a symlink: %s", loom_last_error());
    CHECK(lstat(TMP("link.gguf"), &st) == 0 && S_ISLNK(st.st_mode), "the link is still a link");
    CHECK(is_gguf(TMP("real.gguf")), "the target holds the quantised model");
    CHECK(access(TMP("real.gguf.tmp-abc123"), F_OK) != 0, "an abandoned temporary file is removed");
    CHECK(access(TMP("real.gguf.tmp-xyz789"), F_OK) == 0, "a locked temporary file is kept");
    close(held);
    /* a dangling link: the file it names is created */
    CHECK(symlink("made.gguf", TMP("dangling.gguf")) == 0, "symlink");
    CHECK(loom_quantize(model, TMP("dangling.gguf"), "q8_0", NULL) == 0, "quantize through a dangling link: %s",
          loom_last_error());
    CHECK(lstat(TMP("dangling.gguf"), &st) == 0 && S_ISLNK(st.st_mode) && is_gguf(TMP("made.gguf")),
          "a dangling link's target is created");
    CHECK(symlink("loop2.gguf", TMP("loop1.gguf")) == 0 && symlink("loop1.gguf", TMP("loop2.gguf")) == 0, "loop");
    CHECK_FAILS(loom_quantize(model, TMP("loop1.gguf"), "q8_0", NULL) == 0, "symbolic links", "a symlink loop");

    /* SIGINT/SIGTERM while the file is written: the temporary file goes, the signal still ends the
     * process, an older OUT stays */
    int sigs[2] = {SIGINT, SIGTERM};
    for (int k = 0; k < 2; k++) {
        tf_write_str(TMP("sig.gguf"), "older");
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            gguf_writer *w = gguf_writer_new();
            gguf_w_tensor_cb(w, "x", 0, 1, (int64_t[]){1024}, 4096, fill_then_signal, &sigs[k]);
            gguf_writer_save(w, TMP("sig.gguf"));
            _exit(3); /* not reached: the signal ends the child */
        }
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == sigs[k], "signal %d ends the writer (status %#x)", sigs[k],
              status);
        CHECK(count_prefix(tf_tmp, "sig.gguf.tmp-") == 0, "signal %d: no temporary file left", sigs[k]);
        size_t n;
        uint8_t *old = tf_read(TMP("sig.gguf"), &n);
        CHECK(old && n == 5 && !memcmp(old, "older", 5), "signal %d: the older OUT is untouched", sigs[k]);
        free(old);
    }

    /* quantize of a HF directory converts to OUT.hf-tmp.gguf first: SIGTERM while it exists */
    int caught = 0;
    for (int attempt = 0; attempt < 20 && !caught; attempt++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) _exit(loom_quantize(FIX("llama-tiny"), TMP("hf.gguf"), "q8_0", NULL) == 0 ? 0 : 4);
        const char *hf_tmp = TMP("hf.gguf.hf-tmp.gguf");
        struct timespec pause = {0, 20000};
        int status = 0;
        for (;;) {
            if (access(hf_tmp, F_OK) == 0) {
                kill(pid, SIGTERM);
                waitpid(pid, &status, 0);
                caught = WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM;
                break;
            }
            if (waitpid(pid, &status, WNOHANG) == pid) break; /* finished before we saw it: again */
            nanosleep(&pause, NULL);
        }
        unlink(TMP("hf.gguf"));
    }
    CHECK(caught, "SIGTERM during quantize of a HF directory was delivered");
    CHECK(count_prefix(tf_tmp, "hf.gguf") == 0, "SIGTERM: no OUT.hf-tmp.gguf or OUT.tmp-* left");
}

/* ---- 3. a tokenizer.json regex that backtracks catastrophically ---------------------------------- */

static loom_tokenizer *split_tokenizer(const char *name, const char *regex) {
    cJSON *j = loom_json_read(FIX("rel/tokenizer-mini.json"));
    cJSON *pre = cJSON_CreateObject();
    cJSON_AddStringToObject(pre, "type", "Sequence");
    cJSON *list = cJSON_AddArrayToObject(pre, "pretokenizers");
    cJSON *split = cJSON_CreateObject();
    cJSON_AddStringToObject(split, "type", "Split");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(split, "pattern"), "Regex", regex);
    cJSON_AddStringToObject(split, "behavior", "Isolated");
    cJSON_AddBoolToObject(split, "invert", false);
    cJSON_AddItemToArray(list, split);
    cJSON *bl = cJSON_CreateObject();
    cJSON_AddStringToObject(bl, "type", "ByteLevel");
    cJSON_AddBoolToObject(bl, "add_prefix_space", false);
    cJSON_AddBoolToObject(bl, "use_regex", false);
    cJSON_AddItemToArray(list, bl);
    cJSON_ReplaceItemInObject(j, "pre_tokenizer", pre);
    char *txt = cJSON_PrintUnformatted(j);
    tf_write_str(TMP("%s", name), txt);
    free(txt);
    cJSON_Delete(j);
    loom_tokenizer *t = loom_tokenizer_from_json_file(TMP("%s", name));
    CHECK(t != NULL, "%s loads: %s", name, loom_last_error());
    return t;
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* text of n bytes: words of `word` letters separated by spaces, ending in '!' (so $ never matches) */
static char *words(size_t n, int word) {
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++) s[i] = (int)(i % (size_t)(word + 1)) == word ? ' ' : (char)('a' + i % 7);
    s[n - 1] = '!';
    s[n] = 0;
    return s;
}

static void test_regex_budget(void) {
    loom_tokenizer *t = split_tokenizer("nested.json", "(\\p{L}+)+$");
    if (!t) return;
    struct { size_t n; int word; const char *what; } cases[] = {
        {11500, 18, "11.5 KB of 18-letter words (each start cheap, the whole search minutes)"},
        {2000, 40, "a 40-letter word (one start position explodes)"},
    };
    for (int i = 0; i < 2; i++) {
        char *text = words(cases[i].n, cases[i].word);
        int32_t *ids = NULL;
        double t0 = cpu_seconds();
        int n = loom_tokenizer_encode(t, text, strlen(text), 0, &ids);
        double dt = cpu_seconds() - t0;
        CHECK_FAILS(n >= 0, "backtracks catastrophically", cases[i].what);
        CHECK(dt < 5, "%s: stopped after %.2f s of CPU", cases[i].what, dt);
        free(ids);
        free(text);
    }
    /* the same tokenizer on text the regex handles: still encodes */
    int32_t *ids = NULL;
    CHECK(loom_tokenizer_encode(t, "hello world", 11, 0, &ids) > 0, "ordinary text encodes: %s", loom_last_error());
    free(ids);
    loom_tokenizer_free(t);
    /* a Split regex matching in the middle of long gaps: same pieces as one unlimited search */
    t = split_tokenizer("sparse.json", "[0-9]+");
    if (!t) return;
    char text[400];
    memset(text, 'a', sizeof text);
    memcpy(text + 100, "123", 3);
    memcpy(text + 397, "45", 2);
    text[399] = 'b';
    int n = loom_tokenizer_encode(t, text, sizeof text, 0, &ids);
    CHECK(n > 0, "sparse matches encode: %s", loom_last_error());
    size_t len = 0;
    char *back = n > 0 ? loom_tokenizer_decode(t, ids, (size_t)n, 0, &len) : NULL;
    CHECK(back && len == sizeof text && !memcmp(back, text, len), "sparse matches round-trip");
    free(back);
    free(ids);
    loom_tokenizer_free(t);
}


/* ---- 4. integer hyper-parameters out of int range; 5. non-finite ones; BOS/EOS; layer count ------ */

static double cfg_val;
static const char *cfg_key;
static void edit_set(cJSON *c) {
    const char *dot = strchr(cfg_key, '.');
    if (!dot) {
        cJSON_DeleteItemFromObject(c, cfg_key);
        cJSON_AddNumberToObject(c, cfg_key, cfg_val);
        return;
    }
    char outer[64];
    snprintf(outer, sizeof outer, "%.*s", (int)(dot - cfg_key), cfg_key);
    cJSON *o = cJSON_GetObjectItemCaseSensitive(c, outer);
    if (!o) o = cJSON_AddObjectToObject(c, outer);
    cJSON_DeleteItemFromObject(o, dot + 1);
    cJSON_AddNumberToObject(o, dot + 1, cfg_val);
}
static void edit_linear0(cJSON *c) {
    cJSON *rs = cJSON_AddObjectToObject(c, "rope_scaling");
    cJSON_AddStringToObject(rs, "rope_type", "linear");
    cJSON_AddNumberToObject(rs, "factor", 0);
}

static void hf_fails(const char *dir, const char *key, double v, const char *what) {
    cfg_key = key;
    cfg_val = v;
    make_hf(dir, "llama-tiny", edit_set, NULL);
    load_fails(TMP("%s", dir), what, dir);
}

static void test_hparams(void) {
    const double big = 4294967312.0; /* 2^32 + 16: was read as 16 */
    load_fails(gguf_variant("ctx-2e32.gguf", "llama.context_length", 'u', big, NULL, NULL), "llama.context_length",
               "context_length 2^32+16");
    load_fails(gguf_variant("ctx-0.gguf", "llama.context_length", 'U', 0, NULL, NULL), "llama.context_length",
               "context_length 0 (was blamed on --ctx)");
    load_fails(gguf_variant("ctx-neg.gguf", "llama.context_length", 'i', -5, NULL, NULL), "llama.context_length",
               "context_length -5");
    load_fails(gguf_variant("kv-2e32.gguf", "llama.attention.head_count_kv", 'u', 4294967304.0, NULL, NULL),
               "llama.attention.head_count_kv", "head_count_kv 2^32+8");
    load_fails(gguf_variant("kl-2e32.gguf", "llama.attention.key_length", 'u', 4294967304.0, NULL, NULL),
               "llama.attention.key_length", "key_length 2^32+8");
    hf_fails("hf-ctx-2e32", "max_position_embeddings", big, "max_position_embeddings");
    hf_fails("hf-kv-2e32", "num_key_value_heads", 4294967300.0, "num_key_value_heads");

    /* non-finite or impossible floats */
    load_fails(gguf_variant("theta-nan.gguf", "llama.rope.freq_base", 'f', NAN, NULL, NULL), "rope theta", "theta NaN");
    load_fails(gguf_variant("theta-0.gguf", "llama.rope.freq_base", 'f', 0, NULL, NULL), "rope theta", "theta 0");
    load_fails(gguf_variant("theta-neg.gguf", "llama.rope.freq_base", 'f', -10000, NULL, NULL), "rope theta", "theta < 0");
    load_fails(gguf_variant("theta-inf.gguf", "llama.rope.freq_base", 'f', INFINITY, NULL, NULL), "rope theta", "theta inf");
    load_fails(gguf_variant("eps-nan.gguf", "llama.attention.layer_norm_rms_epsilon", 'f', NAN, NULL, NULL),
               "layer_norm_rms_epsilon", "eps NaN");
    load_fails(gguf_variant("eps-neg.gguf", "llama.attention.layer_norm_rms_epsilon", 'f', -1e-5, NULL, NULL),
               "layer_norm_rms_epsilon", "eps < 0");
    make_hf("hf-linear0", "llama-tiny", edit_linear0, NULL);
    load_fails(TMP("hf-linear0"), "rope scaling factor", "linear rope factor 0");
    hf_fails("hf-theta0", "rope_parameters.rope_theta", 0, "rope theta");

    /* BOS/EOS outside the vocabulary (512 tokens) */
    load_fails(gguf_variant("bos-600.gguf", "tokenizer.ggml.bos_token_id", 'U', 600, NULL, NULL),
               "tokenizer.ggml.bos_token_id", "BOS 600");
    load_fails(gguf_variant("eos-2e32.gguf", "tokenizer.ggml.eos_token_id", 'u', 4294967298.0, NULL, NULL),
               "tokenizer.ggml.eos_token_id", "EOS 2^32+2");
    hf_fails("hf-eos-999", "eos_token_id", 999, "eos_token_id");

    /* fewer layers in the config than in the checkpoint */
    hf_fails("hf-1-layer", "num_hidden_layers", 1, "num_hidden_layers");
    load_fails(gguf_variant("block-count-3.gguf", "llama.block_count", 'U', 3, NULL, NULL), "llama.block_count",
               "block_count 3 of 5 layers");

    /* quantize: a tensor named blk.2147483647.* (UBSan: signed overflow counting layers) */
    const char *odd = gguf_variant("blk-intmax.gguf", NULL, 0, 0, "blk.0.attn_norm.weight",
                                   "blk.2147483647.attn_norm.weight");
    CHECK(loom_quantize(odd, TMP("blk-intmax-q.gguf"), "q4_k_m", NULL) == 0, "quantize blk.2147483647: %s",
          loom_last_error());
}

int main(void) {
    tf_init();
    test_zero_row_tensor();
    test_outputs();
    test_regex_budget();
    test_hparams();
    tf_cleanup();
    CHECK_DONE();
}
