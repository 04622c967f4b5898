/* loom quantize (see quantize.h). Tensor data is produced while the file is written, one 4 MiB
 * piece at a time (gguf_w_tensor_cb), so memory stays constant whatever the model size; the rows of
 * a piece are shared out among n_threads threads, each with its own scratch rows. Every row is
 * quantised on its own by the same function, so the file is the same for any thread count. */
#include "formats/quantize.h"

#include "formats/gguf.h"
#include "formats/outfile.h"
#include "core/qblock.h"
#include "core/util.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Progress on the log: tensor i of n and the output rate; on a terminal one line rewritten, else a
 * line per tenth of the tensors. */
typedef struct qprog {
    FILE *log;
    bool tty;
    int n, shown;
    double t0;
    uint64_t bytes; /* output bytes of the tensors started so far */
} qprog;

typedef struct qjob {
    qprog *prog;
    int index;
    const char *name;
    const void *src;
    loom_dtype st, dt; /* source and destination types */
    int64_t K;         /* row length */
    size_t src_row, dst_row;
    uint64_t nbytes; /* of the output tensor */
    int n_threads;
    float **f;  /* per thread: one row in f32 (shared by all tensors: they are written in turn) */
    void **row; /* per thread: one destination row (likewise) */
} qjob;

/* One thread's share of a piece: rows [r0, r1) of the tensor, written where they overlap
 * [off, off + n) of its bytes. */
typedef struct qpart {
    const qjob *j;
    uint64_t off, r0, r1;
    char *buf;
    size_t n;
    int t;
} qpart;

static void *qpart_run(void *arg) {
    const qpart *q = arg;
    const qjob *j = q->j;
    for (uint64_t r = q->r0; r < q->r1; r++) {
        uint64_t a = r * j->dst_row, b = a + j->dst_row; /* the row's bytes */
        uint64_t lo = a > q->off ? a : q->off, hi = b < q->off + q->n ? b : q->off + q->n;
        loom_dequant_row(j->st, (const char *)j->src + r * j->src_row, j->f[q->t], j->K);
        if (lo == a && hi == b) { /* the whole row: straight into the piece */
            loom_quant_row(j->dt, j->f[q->t], q->buf + (a - q->off), j->K);
        } else {
            loom_quant_row(j->dt, j->f[q->t], j->row[q->t], j->K);
            memcpy(q->buf + (lo - q->off), (char *)j->row[q->t] + (lo - a), (size_t)(hi - lo));
        }
    }
    return NULL;
}

/* Bytes [off, off + n) of the destination tensor: quantise each row the range touches. */
static void progress(qjob *j, uint64_t size) {
    qprog *p = j->prog;
    if (!p || !p->log) return;
    p->bytes += size;
    int i = j->index + 1;
    if (!p->tty && i * 10 / p->n == p->shown * 10 / p->n && i != p->n) return;
    double dt = loom_now() - p->t0;
    fprintf(p->log, "%sloom quantize: tensor %d of %d (%s), %.0f MB at %.0f MB/s%s", p->tty ? "\r\033[K" : "", i, p->n,
            j->name, (double)p->bytes / 1e6, dt > 0 ? (double)p->bytes / 1e6 / dt : 0.0, p->tty ? "" : "\n");
    if (p->tty && i == p->n) fputc('\n', p->log);
    fflush(p->log);
    p->shown = i;
}

static int qfill(void *user, uint64_t off, void *buf, size_t n) {
    qjob *j = user;
    if (off == 0) progress(j, j->nbytes);
    if (n == 0) return 0;
    uint64_t r0 = off / j->dst_row, r1 = (off + n - 1) / j->dst_row + 1, rows = r1 - r0;
    int T = j->n_threads;
    if ((uint64_t)T > rows) T = (int)rows;
    qpart parts[LOOM_QUANTIZE_MAX_THREADS];
    pthread_t tid[LOOM_QUANTIZE_MAX_THREADS];
    for (int t = 0; t < T; t++)
        parts[t] = (qpart){.j = j, .off = off, .buf = buf, .n = n, .t = t,
                           .r0 = r0 + rows * (uint64_t)t / (uint64_t)T, .r1 = r0 + rows * (uint64_t)(t + 1) / (uint64_t)T};
    int started = 1; /* parts[1 .. started - 1] run on threads of their own */
    for (; started < T; started++)
        if (pthread_create(&tid[started], NULL, qpart_run, &parts[started]) != 0) break;
    qpart_run(&parts[0]);
    for (int t = started; t < T; t++) qpart_run(&parts[t]); /* the threads that could not start */
    for (int t = 1; t < started; t++) pthread_join(tid[t], NULL);
    return 0;
}

/* ---- presets: llama.cpp's tensor-type mixes (llama_tensor_get_type), for the non-MoE models loom
 * runs ------------------------------------------------------------------------------------------ */
typedef struct qpreset {
    const char *name;
    loom_dtype base; /* LOOM_DTYPE_COUNT: f32 (dequantise everything) */
    int ftype;       /* general.file_type (llama_ftype) */
} qpreset;

static const qpreset presets[] = {
    {"q4_0", LOOM_Q4_0, 2},   {"q4_1", LOOM_Q4_1, 3},     {"q5_0", LOOM_Q5_0, 8},     {"q5_1", LOOM_Q5_1, 9},
    {"q8_0", LOOM_Q8_0, 7},   {"q2_k", LOOM_Q2_K, 10},    {"q3_k_m", LOOM_Q3_K, 12},  {"q4_k_m", LOOM_Q4_K, 15},
    {"q5_k_m", LOOM_Q5_K, 17}, {"q6_k", LOOM_Q6_K, 18},   {"iq4_nl", LOOM_IQ4_NL, 25}, {"iq4_xs", LOOM_IQ4_XS, 30},
    {"f32", LOOM_DTYPE_COUNT, 0},
};
#define N_PRESETS (int)(sizeof presets / sizeof presets[0])

static const qpreset *find_preset(const char *type) {
    for (int i = 0; i < N_PRESETS; i++)
        if (!strcmp(presets[i].name, type)) return &presets[i];
    return NULL;
}

const char *loom_quantize_types(void) {
    return "q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k_m, q4_k_m, q5_k_m, q6_k, iq4_nl, iq4_xs, f32";
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

typedef struct qmodel {
    int n_layer, n_gqa; /* n_gqa: query heads per KV head (1 when unknown) */
    bool tied;          /* no output.weight: token_embd is the head */
    bool pure;          /* every matrix the preset's type (llama-quantize --pure) */
} qmodel;

/* The type a matrix of the preset gets before the shape fallback (llama.cpp's mix rules for the
 * presets above: the head Q6_K (Q8_0 when its rows are not whole blocks of the base type), and
 * more bits for attn_v / ffn_down / attn_output in some layers). */
static loom_dtype pick(const qpreset *p, const qmodel *m, const char *name, int64_t K) {
    loom_dtype b = p->base, t = b;
    if (m->pure) return b;
    bool head = !strcmp(name, "output.weight") || (m->tied && !strcmp(name, "token_embd.weight"));
    if (head) return K % loom_dtype_blck(b) ? LOOM_Q8_0 : b != LOOM_Q8_0 ? LOOM_Q6_K : b;
    int l, n = m->n_layer;
    if ((l = layer_of(name, "attn_v.weight")) >= 0) {
        if (b == LOOM_Q2_K) t = m->n_gqa >= 4 ? LOOM_Q4_K : LOOM_Q3_K;
        else if ((b == LOOM_IQ4_NL || b == LOOM_IQ4_XS) && m->n_gqa >= 4) t = LOOM_Q5_K;
        else if (b == LOOM_Q3_K) t = l < 2 ? LOOM_Q5_K : LOOM_Q4_K;
        else if ((b == LOOM_Q4_K || b == LOOM_Q5_K) && more_bits(l, n)) t = LOOM_Q6_K;
    } else if ((l = layer_of(name, "ffn_down.weight")) >= 0) {
        if (b == LOOM_Q2_K) t = LOOM_Q3_K;
        else if (b == LOOM_Q3_K) t = l < n / 16 ? LOOM_Q5_K : LOOM_Q4_K;
        else if ((b == LOOM_Q4_K || b == LOOM_Q5_K) && more_bits(l, n)) t = LOOM_Q6_K;
        else if ((b == LOOM_IQ4_NL || b == LOOM_IQ4_XS) && l < n / 8) t = LOOM_Q5_K;
    } else if (layer_of(name, "attn_output.weight") >= 0) {
        if (b == LOOM_Q2_K) t = LOOM_Q3_K;
        else if (b == LOOM_Q3_K) t = LOOM_Q4_K;
    } else if (layer_of(name, "attn_qkv.weight") >= 0) {
        if (b == LOOM_Q3_K) t = LOOM_Q4_K;
        else if (b == LOOM_Q4_K) t = LOOM_Q5_K;
        else if (b == LOOM_Q5_K) t = LOOM_Q6_K;
    }
    return t;
}

/* llama.cpp's fallback for rows that are not whole blocks of t, then f16. */
static loom_dtype fallback(loom_dtype t, int64_t K) {
    if (K % loom_dtype_blck(t) == 0) return t;
    switch (t) {
    case LOOM_IQ4_XS: t = LOOM_IQ4_NL; break;
    case LOOM_Q2_K:
    case LOOM_Q3_K: t = LOOM_Q4_0; break;
    case LOOM_Q4_K: t = LOOM_Q5_0; break;
    case LOOM_Q5_K: t = LOOM_Q5_1; break;
    case LOOM_Q6_K: t = LOOM_Q8_0; break;
    default: return LOOM_F16;
    }
    return K % loom_dtype_blck(t) ? LOOM_F16 : t;
}

/* Whether a tensor is quantised at all (llama.cpp: 2-D, name ending in "weight", not a norm). */
static bool quantisable(const char *name, int nd) {
    size_t n = strlen(name);
    return nd >= 2 && n >= 6 && !strcmp(name + n - 6, "weight") && !strstr(name, "_norm.weight");
}

/* An integer key "<arch>.<suffix>", or 0. */
static int64_t arch_int(const gguf_ctx *g, const char *suffix) {
    int ai = gguf_find_key(g, "general.architecture");
    size_t alen = 0;
    const char *a = ai >= 0 ? gguf_get_str(g, ai, &alen) : NULL;
    char key[160];
    snprintf(key, sizeof key, "%.*s.%s", (int)(a && alen < 100 ? alen : 0), a ? a : "", suffix);
    int64_t v = 0;
    int ki = gguf_find_key(g, key);
    return ki >= 0 && gguf_get_int(g, ki, &v) ? v : 0;
}

static int quantize_gguf(const char *in, const char *out, const qpreset *p, bool pure, int n_threads, FILE *log) {
    gguf_ctx *g = gguf_open(in);
    if (!g) return -1;
    int n = gguf_n_tensors(g), rc = -1;
    gguf_writer *w = gguf_writer_new();
    qjob *jobs = loom_calloc((size_t)n + 1, sizeof *jobs);
    float *f[LOOM_QUANTIZE_MAX_THREADS] = {0};
    void *row[LOOM_QUANTIZE_MAX_THREADS] = {0};
    int64_t max_k = 1;
    size_t max_row = 1;
    if (!w || !jobs || gguf_w_copy_kv(w, g)) goto done;
    gguf_w_remove_kv(w, "general.file_type");
    if (gguf_w_u32(w, "general.file_type", (uint32_t)p->ftype)) goto done;
    qmodel m = {.n_gqa = 1, .tied = gguf_find_tensor(g, "output.weight") < 0, .pure = pure};
    for (int i = 0; i < n; i++) {
        int l = layer_of(gguf_tensor_name(g, i), "attn_norm.weight");
        if (l + 1 > m.n_layer) m.n_layer = l + 1;
    }
    int64_t nh = arch_int(g, "attention.head_count"), nkv = arch_int(g, "attention.head_count_kv");
    if (nh > 0 && nkv > 0) m.n_gqa = (int)(nh / nkv);
    int counts[LOOM_DTYPE_COUNT] = {0}, falls[LOOM_DTYPE_COUNT][LOOM_DTYPE_COUNT] = {{0}}, n_fall = 0;
    qprog prog = {.log = log, .tty = log && isatty(fileno(log)), .n = n, .t0 = loom_now()};
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
        j->prog = &prog, j->index = i, j->name = name;
        if (nd == 1 || (p->base != LOOM_DTYPE_COUNT && !quantisable(name, nd))) {
            /* norms and biases: tiny, and precision matters there */
            j->dt = nd > 1 && (j->st == LOOM_F16 || j->st == LOOM_BF16) ? j->st : LOOM_F32;
        } else if (p->base == LOOM_DTYPE_COUNT) {
            j->dt = LOOM_F32;
        } else {
            loom_dtype want = pick(p, &m, name, j->K);
            j->dt = fallback(want, j->K);
            if (j->dt != want) falls[want][j->dt]++, n_fall++;
        }
        counts[j->dt]++;
        j->dst_row = loom_dtype_nbytes(j->dt, j->K);
        j->n_threads = n_threads, j->f = f, j->row = row;
        if (j->K > max_k) max_k = j->K;
        if (j->dst_row > max_row) max_row = j->dst_row;
        size_t rows = j->src_row ? gguf_tensor_nbytes(g, i) / j->src_row : 0;
        j->nbytes = rows * j->dst_row;
        if (gguf_w_tensor_cb(w, name, gguf_ggml_from_dtype(j->dt), nd, ne, j->nbytes, qfill, j)) goto done;
    }
    for (int t = 0; t < n_threads; t++) { /* scratch for the widest tensor, allocated once */
        f[t] = loom_malloc_aligned((size_t)max_k * sizeof(float));
        row[t] = loom_malloc_aligned(max_row);
        if (!f[t] || !row[t]) goto done;
    }
    rc = gguf_writer_save(w, out);
    if (log && rc == 0) { /* one line for the mix, one for the fallbacks */
        fprintf(log, "loom quantize: %s%s:", p->name, pure ? " (pure)" : "");
        for (int t = 0; t < LOOM_DTYPE_COUNT; t++)
            if (counts[t]) fprintf(log, " %d %s", counts[t], loom_dtype_name((loom_dtype)t));
        fprintf(log, "\n");
        if (n_fall) {
            fprintf(log, "loom quantize: %d matrices with rows that are not whole blocks fell back:", n_fall);
            for (int a = 0; a < LOOM_DTYPE_COUNT; a++)
                for (int b = 0; b < LOOM_DTYPE_COUNT; b++)
                    if (falls[a][b])
                        fprintf(log, " %d %s -> %s", falls[a][b], loom_dtype_name((loom_dtype)a),
                                loom_dtype_name((loom_dtype)b));
            fprintf(log, "\n");
        }
    }
done:
    gguf_writer_free(w);
    for (int t = 0; t < n_threads; t++) loom_free_aligned(f[t]), loom_free_aligned(row[t]);
    free(jobs);
    gguf_close(g);
    return rc;
}

int loom_quantize_check(const char *out, const char *type) {
    if (!find_preset(type)) return loom_err("quantize: unknown type '%s' (%s)", type, loom_quantize_types());
    char *target = out_target(out); /* refuse a device or FIFO OUT before any work */
    if (!target) return -1;
    free(target);
    return 0;
}

int loom_quantize_threads(int n_threads) {
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 ? (int)c : 1;
    }
    return n_threads < LOOM_QUANTIZE_MAX_THREADS ? n_threads : LOOM_QUANTIZE_MAX_THREADS;
}

int loom_quantize_gguf(const char *in, const char *out, const char *type, bool pure, int n_threads, FILE *log) {
    if (loom_quantize_check(out, type) < 0) return -1;
    struct stat st;
    if (stat(in, &st) != 0) return loom_err("%s: cannot open", in);
    if (S_ISDIR(st.st_mode)) return loom_err("%s: a directory, not a GGUF file (loom_quantize converts a HF directory first)", in);
    return quantize_gguf(in, out, find_preset(type), pure, loom_quantize_threads(n_threads), log);
}
