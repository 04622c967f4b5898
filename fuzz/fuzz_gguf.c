/* fuzz_gguf: arbitrary bytes as a .gguf file (a memfd): gguf_open and every accessor, the block
 * decoders of every quantised type loom knows (core/qblock.h: the scale check, dequantise, and
 * quantise of what came out finite), the GGUF tokenizer (tokenizer.ggml.*), and loom_model_load
 * (hyper-parameters, weight checks). */
#include "fuzz/fuzz_util.h"

#include "core/qblock.h"

#include <math.h>
#include <stdbool.h>

/* The first rows of a quantised tensor through the block decoders: the scale check on every block,
 * dequantise of at most 4096 elements and, for two tensors of an input (which two turns with the
 * input's length), quantise of at most 256 of those. Quantising is the costly half (the IQ4 and K-quant scale
 * searches: ~80% of an input's time when every tensor of the twelve-type seed was re-quantised, at
 * 270 inputs/s, ~1,000 with this limit); one 256-superblock reaches every branch of each type's
 * encoder, and inputs of different lengths pick different tensors of the twelve-type seed. */
static void blocks(const gguf_ctx *g, int i, bool quantise) {
    loom_dtype t = gguf_dtype_from_ggml(gguf_tensor_ggml_type(g, i));
    if (!loom_dtype_is_quant(t)) return;
    int64_t ne[4];
    gguf_tensor_shape(g, i, ne);
    int nd = gguf_tensor_ndim(g, i), blck = loom_dtype_blck(t);
    int64_t K = ne[nd - 1], nb = (int64_t)(gguf_tensor_nbytes(g, i) / loom_dtype_block_bytes(t));
    FZ_ASSERT(K % blck == 0 && nb >= 0, "tensor %d: %lld elements per row for %d-blocks", i, (long long)K, blck);
    int64_t bad = loom_quant_bad_scale(t, gguf_tensor_data(g, i), nb);
    FZ_ASSERT(bad >= -1 && bad < nb, "tensor %d: bad block %lld of %lld", i, (long long)bad, (long long)nb);
    int64_t n = nb * blck < 4096 ? nb * blck : 4096 / blck * blck;
    static float f[4096];
    static uint8_t q[4096 * 2];
    loom_dequant_row(t, gguf_tensor_data(g, i), f, n);
    bool finite = true;
    for (int64_t k = 0; k < n; k++) finite &= isfinite(f[k]) != 0;
    FZ_ASSERT(finite || bad >= 0, "tensor %d: non-finite values with every scale finite", i);
    if (finite && quantise) loom_quant_row(t, f, q, n < 256 ? n : 256 / blck * blck);
}

static size_t item_size(gguf_type t) {
    switch (t) {
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 1;
    }
}

static void walk(const gguf_ctx *g, size_t input_len) {
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
    int nt = gguf_n_tensors(g);
    for (int i = 0; i < nt; i++) {
        FZ_ASSERT(gguf_find_tensor(g, gguf_tensor_name(g, i)) == i, "tensor %d not found by name", i);
        int64_t ne[4];
        gguf_tensor_shape(g, i, ne);
        size_t nb = gguf_tensor_nbytes(g, i), want;
        FZ_ASSERT(gguf_ggml_nbytes(gguf_tensor_ggml_type(g, i), gguf_tensor_ndim(g, i), ne, &want) && want == nb,
                  "tensor %d: %zu bytes for its shape", i, nb);
        fz_touch(gguf_tensor_data(g, i), nb);
        blocks(g, i, ((size_t)i + input_len) % (size_t)nt < 2);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    const char *path = fz_memfd_path(d, n);
    gguf_ctx *g = gguf_open(path);
    if (!g) {
        fz_failed("gguf_open");
    } else {
        walk(g, n);
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
