/* fuzz_gguf: arbitrary bytes as a .gguf file (a memfd): gguf_open and every accessor, the GGUF
 * tokenizer (tokenizer.ggml.*), and loom_model_load (hyper-parameters, weight checks). */
#include "fuzz/fuzz_util.h"

#include <stdbool.h>

static size_t item_size(gguf_type t) {
    switch (t) {
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 1;
    }
}

static void walk(const gguf_ctx *g) {
    for (int i = 0; i < gguf_n_kv(g); i++) {
        fz_touch(gguf_key(g, i), strlen(gguf_key(g, i)));
        FZ_ASSERT(gguf_find_key(g, gguf_key(g, i)) == i, "key %d not found by name", i);
        int64_t iv;
        double fv;
        bool bv;
        size_t len;
        (void)gguf_get_int(g, i, &iv);
        (void)gguf_get_float(g, i, &fv);
        (void)gguf_get_bool(g, i, &bv);
        const char *s = gguf_get_str(g, i, &len);
        if (s) fz_touch(s, len + 1);
        if (gguf_kv_type(g, i) != GGUF_TYPE_ARRAY) continue;
        size_t n = gguf_arr_n(g, i);
        if (gguf_arr_type(g, i) == GGUF_TYPE_STRING) {
            for (size_t j = 0; j < n && j < 64; j++) {
                s = gguf_arr_str(g, i, j, &len);
                if (s) fz_touch(s, len + 1);
            }
            if (n) {
                s = gguf_arr_str(g, i, n - 1, &len);
                if (s) fz_touch(s, len + 1);
            }
        } else {
            const void *p = gguf_arr_data(g, i);
            if (p) fz_touch(p, n * item_size(gguf_arr_type(g, i)));
        }
    }
    for (int i = 0; i < gguf_n_tensors(g); i++) {
        FZ_ASSERT(gguf_find_tensor(g, gguf_tensor_name(g, i)) == i, "tensor %d not found by name", i);
        int64_t ne[4];
        gguf_tensor_shape(g, i, ne);
        size_t nb = gguf_tensor_nbytes(g, i), want;
        FZ_ASSERT(gguf_ggml_nbytes(gguf_tensor_ggml_type(g, i), gguf_tensor_ndim(g, i), ne, &want) && want == nb,
                  "tensor %d: %zu bytes for its shape", i, nb);
        fz_touch(gguf_tensor_data(g, i), nb);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    const char *path = fz_memfd_path(d, n);
    gguf_ctx *g = gguf_open(path);
    if (!g) {
        fz_failed("gguf_open");
    } else {
        walk(g);
        loom_tokenizer *t = loom_tokenizer_from_gguf(g);
        if (t) fz_exercise_tokenizer(t);
        else fz_failed("loom_tokenizer_from_gguf");
        loom_tokenizer_free(t);
        gguf_close(g);
    }
    loom_model *m = loom_model_load(path);
    if (m) (void)loom_model_get_info(m);
    else fz_failed("loom_model_load");
    loom_model_free(m);
    return 0;
}
