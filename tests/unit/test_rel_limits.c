/* Resource limits: each one a clear error or a documented fallback, never a crash or an OOM kill.
 *   - a KV cache that cannot exist (huge n_ctx) fails at session creation, naming the bytes;
 *   - eval with a token count near INT_MAX is "context full", not an overflow;
 *   - a GGUF whose header claims more tensor data than the file holds is refused at load;
 *   - a full disk (simulated with RLIMIT_FSIZE: writes past the limit fail with EFBIG) makes
 *     gguf_writer_save, loom_synth and loom_convert fail cleanly, leaving no partial or temporary
 *     file and an older file of the same name untouched;
 *   - a tokenizer.json naming one id near 2^24 is refused, not a gigabyte of tables;
 *   - loom_session_ctx_shift (re-evaluating, LOOM_CTX_SHIFT=reeval) keeps the first tokens, drops
 *     half of the rest, and leaves the session exactly where a fresh prefill of the remaining
 *     tokens would be (the re-rotating shift: test_ctx_shift). */
#include "models/convert.h"
#include "formats/gguf.h"
#include "models/session_internal.h"
#include "tests/unit/test_formats_util.h"
#include "tokenizer/tokenizer.h"

#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <sys/resource.h>

/* Files in tf_tmp whose name starts with prefix. */
static int count_files(const char *prefix) {
    DIR *d = opendir(tf_tmp);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    if (d) closedir(d);
    return n;
}

static void test_kv_too_large(const char *model_path) {
    loom_model *m = loom_model_load(model_path);
    CHECK(m, "load %s: %s", model_path, loom_last_error());
    if (!m) return;
    loom_session_opts o = loom_session_default_opts();
    o.device = "cpu";
    o.n_threads = 1;
    o.n_ctx = 2000000000;
    loom_session *s = loom_session_new(m, &o);
    const char *e = loom_last_error();
    CHECK(!s, "a 2e9-token KV cache was accepted");
    CHECK(strstr(e, "KV cache for --ctx 2000000000 needs") && strstr(e, "bytes"), "message: %s", e);
    loom_session_free(s);

    /* a session that fits; then a token count near INT_MAX must not overflow pos + n */
    o.n_ctx = 16;
    s = loom_session_new(m, &o);
    CHECK(s, "ctx 16: %s", loom_last_error());
    if (s) {
        int32_t t[2] = {1, 2};
        CHECK(loom_session_eval(s, t, 2) == 0, "eval: %s", loom_last_error());
        CHECK(loom_session_eval(s, t, INT_MAX) < 0 && strstr(loom_last_error(), "context full"),
              "INT_MAX tokens: %s", loom_last_error());
        CHECK(loom_session_pos(s) == 2, "pos %d after a refused eval", loom_session_pos(s));
    }
    loom_session_free(s);
    loom_model_free(m);
}

/* A model GGUF cut short: the header still claims every tensor's bytes. */
static void test_truncated_model(const char *gguf) {
    size_t n;
    uint8_t *p = tf_read(gguf, &n);
    CHECK(p && n > 4096, "read %s", gguf);
    if (!p) return;
    const char *cut = TMP("truncated.gguf");
    CHECK(tf_write(cut, p, n / 2) == 0, "write %s", cut);
    free(p);
    loom_model *m = loom_model_load(cut);
    const char *e = loom_last_error();
    CHECK(!m, "a truncated GGUF loaded");
    CHECK(strstr(e, "truncated.gguf") && strstr(e, "runs past end of file"), "message: %s", e);
    loom_model_free(m);
}

static int fill_ones(void *user, uint64_t off, void *buf, size_t n) {
    (void)user, (void)off;
    memset(buf, 1, n);
    return 0;
}

/* RLIMIT_FSIZE as a full disk: writes past `bytes` fail with EFBIG (SIGXFSZ ignored). */
static struct rlimit saved_fsize;
static void disk_limit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved_fsize);
    struct rlimit r = {bytes, saved_fsize.rlim_max};
    CHECK(setrlimit(RLIMIT_FSIZE, &r) == 0, "setrlimit");
}
static void disk_unlimit(void) { setrlimit(RLIMIT_FSIZE, &saved_fsize); }

static void test_full_disk(void) {
    signal(SIGXFSZ, SIG_IGN);
    const char *out = TMP("full.gguf");
    const char *old = "an older file that a failed save must not replace\n";
    CHECK(tf_write_str(out, old) == 0, "write %s", out);

    /* referenced and streamed tensors, 1 MiB each: the limit is hit inside the data section */
    static float a[256 * 1024];
    int64_t ne[2] = {512, 512};
    gguf_writer *w = gguf_writer_new();
    CHECK(w && gguf_w_str(w, "general.architecture", "llama") == 0, "writer");
    CHECK(gguf_w_tensor(w, "a", GGML_TYPE_F32, 2, ne, a, sizeof a) == 0, "tensor a");
    CHECK(gguf_w_tensor_cb(w, "b", GGML_TYPE_F32, 2, ne, sizeof a, fill_ones, NULL) == 0, "tensor b");
    rlim_t limits[] = {100, 4096, 1536 * 1024}; /* in the header, in tensor a, in the streamed b */
    for (int i = 0; i < 3; i++) {
        disk_limit(limits[i]);
        int rc = gguf_writer_save(w, out);
        disk_unlimit();
        CHECK(rc < 0, "save with %zu bytes of disk succeeded", (size_t)limits[i]);
        CHECK(strstr(loom_last_error(), "full.gguf") && strstr(loom_last_error(), "write failed"), "message: %s",
              loom_last_error());
        CHECK(count_files("full.gguf.tmp") == 0, "a temporary file was left behind");
        size_t n;
        char *p = (char *)tf_read(out, &n);
        CHECK(p && n == strlen(old) && !memcmp(p, old, n), "the older file was changed");
        free(p);
    }
    /* the same writer succeeds once there is room: the failures left it reusable */
    CHECK(gguf_writer_save(w, out) == 0, "save: %s", loom_last_error());
    gguf_ctx *g = gguf_open(out);
    CHECK(g && gguf_n_tensors(g) == 2, "reopen: %s", loom_last_error());
    gguf_close(g);
    gguf_writer_free(w);

    /* the commands' writers: synth (streamed random weights) and convert (permuted, streamed) */
    remove(out);
    disk_limit(64 * 1024);
    int rc = loom_synth(FIX("llama-tiny/config.json"), LOOM_F32, 7, out);
    disk_unlimit();
    CHECK(rc < 0 && strstr(loom_last_error(), "write failed"), "synth on a full disk: %s", loom_last_error());
    CHECK(access(out, F_OK) != 0 && count_files("full.gguf") == 0, "synth left a file behind");
    disk_limit(64 * 1024);
    rc = loom_convert_hf_to_gguf(FIX("llama-tiny"), out);
    disk_unlimit();
    CHECK(rc < 0 && strstr(loom_last_error(), "write failed"), "convert on a full disk: %s", loom_last_error());
    CHECK(access(out, F_OK) != 0 && count_files("full.gguf") == 0, "convert left a file behind");
    signal(SIGXFSZ, SIG_DFL);
}

/* Tables are sized by the largest id: a sparse id would make a tiny file cost ~1 GB and seconds. */
static void test_sparse_vocab(void) {
    const char *js = TMP("tokenizer.json");
    tf_write_str(js, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 16777215},"
                     " \"merges\": [\"a b\"]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}");
    loom_tokenizer *t = loom_tokenizer_from_json_file(js);
    CHECK(!t && strstr(loom_last_error(), "token ids reach 16777215 but there are only 3 tokens"), "sparse ids: %s",
          t ? "loaded" : loom_last_error());
    loom_tokenizer_free(t);
}

/* The re-evaluating shift (LOOM_CTX_SHIFT=reeval; the re-rotating one is test_ctx_shift's). */
static void test_ctx_shift(const char *model_path) {
    setenv("LOOM_CTX_SHIFT", "reeval", 1);
    loom_model *m = loom_model_load(model_path);
    CHECK(m, "load: %s", loom_last_error());
    if (!m) return;
    int n_vocab = loom_model_get_info(m).n_vocab;
    loom_session_opts o = loom_session_default_opts();
    o.device = "cpu";
    o.n_threads = 1;
    o.n_ctx = 64;
    loom_session *a = loom_session_new(m, &o), *b = loom_session_new(m, &o);
    CHECK(a && b, "sessions: %s", loom_last_error());
    if (a && b) {
        int32_t hist[64], orig[64];
        for (int i = 0; i < 64; i++) orig[i] = hist[i] = i ? 3 + (i * 37) % (n_vocab - 3) : 1;
        CHECK(loom_session_eval(a, hist, 64) == 0, "fill: %s", loom_last_error());
        int n = 64;
        int d = loom_session_ctx_shift(a, hist, &n, 4);
        CHECK(d == 30 && n == 34 && loom_session_pos(a) == 34, "dropped %d, %d left, pos %d", d, n,
              loom_session_pos(a));
        CHECK(!memcmp(hist, orig, 4 * sizeof *hist) && !memcmp(hist + 4, orig + 34, 30 * sizeof *hist),
              "kept the wrong tokens");
        /* one more token on both: a shifted session must equal a fresh prefill of the same tokens */
        int32_t next = 5;
        CHECK(loom_session_eval(a, &next, 1) == 0 && loom_session_eval(b, hist, n) == 0 &&
                  loom_session_eval(b, &next, 1) == 0,
              "eval: %s", loom_last_error());
        const float *la = loom_session_logits(a, NULL), *lb = loom_session_logits(b, NULL);
        double err = la && lb ? check_max_abs(la, lb, (size_t)n_vocab) : INFINITY;
        CHECK(err <= 1e-5, "logits after a shift differ from a fresh prefill by %g", err);
        /* keep everything: nothing can be dropped, a clear error */
        n = loom_session_pos(a);
        CHECK(loom_session_ctx_shift(a, hist, &n, n) < 0 && strstr(loom_last_error(), "nothing to discard"),
              "keep-all shift: %s", loom_last_error());
    }
    CHECK(!a || !loom_session_shift_rotates(a), "LOOM_CTX_SHIFT=reeval still rotates");
    loom_session_free(a);
    loom_session_free(b);
    loom_model_free(m);
    unsetenv("LOOM_CTX_SHIFT");
}

int main(void) {
    tf_init();
    char model[1200];
    snprintf(model, sizeof model, "%s", FIX("stories260K.gguf"));
    test_kv_too_large(model);
    test_truncated_model(model);
    test_full_disk();
    test_ctx_shift(model);
    test_sparse_vocab();
    tf_cleanup();
    CHECK_DONE();
}
