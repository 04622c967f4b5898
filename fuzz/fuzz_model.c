/* fuzz_model: arbitrary bytes as a model .gguf that, when it loads, is run: a CPU session with a
 * tiny context, a 3-token prefill and one decode step (scalar or SIMD kernels, from the last
 * byte). Whatever loom_model_load accepts must compute without reading outside its buffers. */
#include "fuzz/fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    setenv("LOOM_MLOCK", "0", 1); /* no page locking for throw-away models */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    const char *path = fz_memfd_path(d, n);
    loom_model *m = loom_model_load(path);
    if (!m) {
        fz_failed("loom_model_load");
        return 0;
    }
    loom_model_info info = loom_model_get_info(m);
    /* shapes come from the file, so they are bounded by its size; bound the work anyway */
    if ((double)info.n_layer * info.n_embd * (info.n_ff + info.n_embd) > 5e7 || info.n_vocab > 1 << 16) {
        loom_model_free(m);
        return 0;
    }
    setenv("LOOM_SCALAR", n && (d[n - 1] & 1) ? "1" : "0", 1);
    loom_session_opts o = loom_session_default_opts();
    o.device = "cpu";
    o.n_threads = 1;
    o.n_ctx = 8;
    loom_session *s = loom_session_new(m, &o);
    if (s) {
        int32_t t[3] = {0, info.n_vocab - 1, info.n_vocab / 2};
        if (loom_session_eval(s, t, 3) == 0 && loom_session_eval(s, t + 1, 1) == 0) {
            int rows;
            const float *l = loom_session_logits(s, &rows);
            FZ_ASSERT(l && rows == 1, "no logits after a decode step");
            fz_touch(l, (size_t)info.n_vocab * sizeof *l);
        } else {
            fz_failed("eval");
        }
    } else {
        fz_failed("loom_session_new");
    }
    loom_session_free(s);
    loom_model_free(m);
    return 0;
}
