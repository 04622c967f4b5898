/* fuzz_safetensors: a HuggingFace folder from one input: config.json SEP model.safetensors
 * [SEP model.safetensors.index.json]. st_open on the safetensors file, loom_source_open on the
 * folder (every tensor, hyper-parameter lookups of each type), and loom_model_load. */
#include "fuzz/fuzz_util.h"
#include "formats/safetensors.h"
#include "formats/source.h"

static void walk_source(const loom_source *s) {
    for (int i = 0; i < loom_source_n_tensors(s); i++) {
        const loom_weight *w = loom_source_tensor(s, i);
        FZ_ASSERT(loom_source_find(s, w->name) == w, "tensor '%s' not found by name", w->name);
        FZ_ASSERT(w->ndim >= 0 && w->ndim <= 4, "'%s' has %d dims", w->name, w->ndim);
        fz_touch(w->data, w->nbytes);
    }
    static const char *keys[] = {"hidden_size", "rope_scaling.factor", "rope_parameters.rope_theta",
                                 "tie_word_embeddings", "model_type", "eos_token_id", "architectures"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        int64_t iv;
        double fv;
        bool bv;
        char buf[64];
        if (loom_source_get_int(s, keys[k], NULL, &iv) < 0) fz_failed("get_int");
        if (loom_source_get_float(s, keys[k], NULL, &fv) < 0) fz_failed("get_float");
        if (loom_source_get_bool(s, keys[k], NULL, &bv) < 0) fz_failed("get_bool");
        if (loom_source_get_str(s, keys[k], NULL, buf, sizeof buf) < 0) fz_failed("get_str");
    }
    const char *const *a = loom_source_hf_architectures(s);
    for (int i = 0; a && a[i]; i++) fz_touch(a[i], strlen(a[i]));
    const char *arch = loom_source_arch(s);
    if (arch) fz_touch(arch, strlen(arch));
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    const uint8_t *part[FZ_MAX_PARTS];
    size_t len[FZ_MAX_PARTS];
    int k = fz_split(d, n, part, len);
    const char *dir = fz_tmpdir();
    fz_file(0, "config.json", part[0], len[0]);
    const char *st = fz_file(1, "model.safetensors", k > 1 ? part[1] : NULL, k > 1 ? len[1] : 0);
    fz_file(2, "model.safetensors.index.json", k > 2 ? part[2] : NULL, k > 2 ? len[2] : 0);

    st_file *f = k > 1 ? st_open(st) : NULL;
    if (f) {
        for (int i = 0; i < st_n_tensors(f); i++) {
            const st_tensor *t = st_tensor_at(f, i);
            FZ_ASSERT(st_find(f, t->name) == t, "'%s' not found by name", t->name);
            FZ_ASSERT(t->nbytes == st_numel(t) * loom_dtype_size(t->dtype), "'%s': %zu bytes", t->name, t->nbytes);
            fz_touch(t->data, t->nbytes);
        }
        const char *fmt = st_metadata(f, "format");
        if (fmt) fz_touch(fmt, strlen(fmt));
        st_close(f);
    } else if (k > 1) {
        fz_failed("st_open");
    }
    loom_source *s = loom_source_open(dir);
    if (s) walk_source(s);
    else fz_failed("loom_source_open");
    loom_source_close(s);
    loom_model *m = loom_model_load(dir);
    if (m) (void)loom_model_get_info(m);
    else fz_failed("loom_model_load");
    loom_model_free(m);
    return 0;
}
