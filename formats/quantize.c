/* loom quantize (see quantize.h). Tensor data is produced while the file is written, one row at a
 * time, so memory stays constant whatever the model size. */
#include "formats/quantize.h"

#include "models/convert.h"
#include "formats/gguf.h"
#include "formats/outfile.h"
#include "core/qblock.h"
#include "core/util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct qjob {
    const void *src;
    loom_dtype st, dt; /* source and destination types */
    int64_t K;         /* row length */
    size_t src_row, dst_row;
    float *f;          /* one row in f32 */
    void *row;         /* one destination row */
} qjob;

/* Bytes [off, off + n) of the destination tensor: quantise each row the range touches. */
static int qfill(void *user, uint64_t off, void *buf, size_t n) {
    qjob *j = user;
    for (size_t done = 0; done < n;) {
        uint64_t r = (off + done) / j->dst_row, in = (off + done) % j->dst_row;
        size_t take = j->dst_row - in < n - done ? (size_t)(j->dst_row - in) : n - done;
        loom_dequant_row(j->st, (const char *)j->src + r * j->src_row, j->f, j->K);
        loom_quant_row(j->dt, j->f, j->row, j->K);
        memcpy((char *)buf + done, (char *)j->row + in, take);
        done += take;
    }
    return 0;
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers and every third between. */
static bool more_bits(int i, int n) {
    int64_t n8 = n / 8, n78 = 7 * (int64_t)n / 8;
    return i < n8 || i >= n78 || (i - n8) % 3 == 2;
}

/* "blk.N.<suffix>" -> N, else -1; N past 2^24 (no real model) is -1 too, so that the layer count
 * N + 1 cannot overflow (UBSan: a tensor named blk.2147483647.attn_norm.weight) */
static int layer_of(const char *name, const char *suffix) {
    if (strncmp(name, "blk.", 4) || !isdigit((unsigned char)name[4])) return -1;
    char *end;
    long l = strtol(name + 4, &end, 10);
    return *end == '.' && !strcmp(end + 1, suffix) && l <= (1L << 24) ? (int)l : -1;
}

static loom_dtype pick(const char *type, const char *name, bool head, int n_layer) {
    if (!strcmp(type, "f32")) return LOOM_F32; /* dequantise: the exact values a quantised file holds */
    if (!strcmp(type, "q8_0")) return LOOM_Q8_0;
    if (!strcmp(type, "q4_0")) return LOOM_Q4_0;
    if (!strcmp(type, "q6_k")) return LOOM_Q6_K;
    /* q4_k_m, as llama.cpp: the head in Q6_K, attn_v and ffn_down with more bits in some layers */
    if (head) return LOOM_Q6_K;
    int l = layer_of(name, "attn_v.weight");
    if (l < 0) l = layer_of(name, "ffn_down.weight");
    if (l >= 0 && more_bits(l, n_layer)) return LOOM_Q6_K;
    return LOOM_Q4_K;
}

static int file_type(const char *type) {
    return !strcmp(type, "f32") ? 0 : !strcmp(type, "q8_0") ? 7 : !strcmp(type, "q4_0") ? 2 : !strcmp(type, "q4_k_m") ? 15 : 18;
}

static int quantize_gguf(const char *in, const char *out, const char *type, FILE *log) {
    gguf_ctx *g = gguf_open(in);
    if (!g) return -1;
    int n = gguf_n_tensors(g), rc = -1, n_layer = 0;
    gguf_writer *w = gguf_writer_new();
    qjob *jobs = loom_calloc((size_t)n + 1, sizeof *jobs);
    if (!w || !jobs || gguf_w_copy_kv(w, g)) goto done;
    gguf_w_remove_kv(w, "general.file_type");
    if (gguf_w_u32(w, "general.file_type", (uint32_t)file_type(type))) goto done;
    for (int i = 0; i < n; i++) {
        int l = layer_of(gguf_tensor_name(g, i), "attn_norm.weight");
        if (l + 1 > n_layer) n_layer = l + 1;
    }
    bool has_output = gguf_find_tensor(g, "output.weight") >= 0;
    int counts[LOOM_DTYPE_COUNT] = {0};
    for (int i = 0; i < n; i++) {
        const char *name = gguf_tensor_name(g, i);
        int nd = gguf_tensor_ndim(g, i);
        int64_t ne[4];
        gguf_tensor_shape(g, i, ne);
        qjob *j = &jobs[i];
        j->st = gguf_dtype_from_ggml(gguf_tensor_ggml_type(g, i));
        if (j->st != LOOM_F32 && j->st != LOOM_F16 && j->st != LOOM_BF16 && !loom_dtype_is_quant(j->st)) {
            loom_err("%s: tensor '%s' has type %s (quantize reads f32, f16, bf16 and the quantised types)", in,
                     name, gguf_ggml_type_name(gguf_tensor_ggml_type(g, i)));
            goto done;
        }
        j->src = gguf_tensor_data(g, i);
        j->K = ne[nd - 1];
        j->src_row = loom_dtype_nbytes(j->st, j->K);
        if (nd == 1) {
            j->dt = LOOM_F32; /* norms and biases: tiny, and precision matters there */
        } else {
            bool head = !strcmp(name, "output.weight") || (!has_output && !strcmp(name, "token_embd.weight"));
            loom_dtype want = pick(type, name, head, n_layer);
            j->dt = want;
            if (j->K % loom_dtype_blck(j->dt)) j->dt = j->dt == LOOM_Q4_K ? LOOM_Q4_0 : j->dt == LOOM_Q6_K ? LOOM_Q8_0 : j->dt;
            if (j->K % loom_dtype_blck(j->dt)) j->dt = LOOM_F16;
            if (j->dt != want && log)
                fprintf(log, "loom quantize: %s: inner dimension %lld is not a multiple of %d: %s instead of %s\n",
                        name, (long long)j->K, loom_dtype_blck(want), loom_dtype_name(j->dt), loom_dtype_name(want));
        }
        counts[j->dt]++;
        j->dst_row = loom_dtype_nbytes(j->dt, j->K);
        j->f = loom_malloc_aligned((size_t)j->K * sizeof(float));
        j->row = loom_malloc_aligned(j->dst_row);
        if (!j->f || !j->row) goto done;
        size_t rows = j->src_row ? gguf_tensor_nbytes(g, i) / j->src_row : 0;
        if (gguf_w_tensor_cb(w, name, gguf_ggml_from_dtype(j->dt), nd, ne, rows * j->dst_row, qfill, j)) goto done;
    }
    if (log) {
        fprintf(log, "loom quantize: %s:", type);
        for (int t = 0; t < LOOM_DTYPE_COUNT; t++)
            if (counts[t]) fprintf(log, " %d %s", counts[t], loom_dtype_name((loom_dtype)t));
        fprintf(log, "\n");
    }
    rc = gguf_writer_save(w, out);
done:
    gguf_writer_free(w);
    for (int i = 0; jobs && i < n; i++) loom_free_aligned(jobs[i].f), loom_free_aligned(jobs[i].row);
    free(jobs);
    gguf_close(g);
    return rc;
}

int loom_quantize(const char *in, const char *out, const char *type, FILE *log) {
    if (strcmp(type, "q8_0") && strcmp(type, "q4_0") && strcmp(type, "q4_k_m") && strcmp(type, "q6_k") &&
        strcmp(type, "f32"))
        return loom_err("quantize: unknown type '%s' (q8_0, q4_0, q4_k_m, q6_k, f32)", type);
    char *target = out_target(out); /* refuse a device or FIFO OUT before any work */
    if (!target) return -1;
    free(target);
    struct stat st;
    if (stat(in, &st) != 0) return loom_err("%s: cannot open", in);
    if (!S_ISDIR(st.st_mode)) return quantize_gguf(in, out, type, log);
    /* a HF directory: convert (metadata, tokenizer, q/k permutation) to a temporary GGUF first */
    size_t len = strlen(out) + 16;
    char *tmp = loom_malloc(len);
    if (!tmp) return -1;
    snprintf(tmp, len, "%s.hf-tmp.gguf", out);
    unlink(tmp); /* one left by a killed run, or anything else by that name: never written through */
    int slot = out_hold(tmp); /* removed on SIGINT/SIGTERM/SIGHUP */
    int rc = loom_convert_hf_to_gguf(in, tmp);
    if (rc == 0) rc = quantize_gguf(tmp, out, type, log);
    unlink(tmp);
    out_release(slot);
    free(tmp);
    return rc;
}
