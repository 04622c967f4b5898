/* Portable scalar kernels: the reference every SIMD flavour is tested against, and the fallback
 * on machines without AVX2 (or with LOOM_SCALAR=1). Written for clarity first; a few independent
 * accumulators keep them from being needlessly slow. */
#include "backends/cpu/cpu.h"

#include "core/util.h"

#include <math.h>

static inline float w_at(const void *w, loom_dtype t, int64_t i) {
    switch (t) {
    case LOOM_F16: return loom_f16_to_f32(((const uint16_t *)w)[i]);
    case LOOM_BF16: return loom_bf16_to_f32(((const uint16_t *)w)[i]);
    default: return ((const float *)w)[i];
    }
}

static float dot_f32(const float *a, const float *b, int64_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

static void sc_to_f32(float *dst, const void *src, loom_dtype t, int64_t n) {
    loom_to_f32(dst, src, t, (size_t)n);
}

static void sc_gemv(float *y, const float *x, const void *w, loom_dtype wt, int64_t K, int64_t n0,
                    int64_t n1, const float *bias) {
    for (int64_t n = n0; n < n1; n++) {
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int64_t base = n * K, k = 0;
        for (; k + 4 <= K; k += 4) {
            s0 += x[k] * w_at(w, wt, base + k);
            s1 += x[k + 1] * w_at(w, wt, base + k + 1);
            s2 += x[k + 2] * w_at(w, wt, base + k + 2);
            s3 += x[k + 3] * w_at(w, wt, base + k + 3);
        }
        for (; k < K; k++) s0 += x[k] * w_at(w, wt, base + k);
        y[n] = (s0 + s1) + (s2 + s3) + (bias ? bias[n] : 0.0f);
    }
}

/* K is cut into blocks of this many elements so a converted W row stays in L1 across all x rows. */
#define SC_KC 1024

static size_t sc_gemm_scratch(int64_t M, int64_t K) {
    (void)M;
    (void)K;
    return SC_KC;
}

static void sc_gemm(float *y, int64_t ldy, const float *x, const void *w, loom_dtype wt, int64_t M,
                    int64_t K, int64_t n0, int64_t n1, const float *bias, float *scratch) {
    for (int64_t n = n0; n < n1; n++) {
        for (int64_t k0 = 0; k0 < K; k0 += SC_KC) {
            int64_t kc = K - k0 < SC_KC ? K - k0 : SC_KC;
            const float *wr;
            if (wt == LOOM_F32) {
                wr = (const float *)w + n * K + k0;
            } else {
                loom_to_f32(scratch, (const uint16_t *)w + n * K + k0, wt, (size_t)kc);
                wr = scratch;
            }
            for (int64_t m = 0; m < M; m++) {
                float d = dot_f32(x + m * K + k0, wr, kc);
                float *out = y + m * ldy + n;
                *out = k0 == 0 ? d + (bias ? bias[n] : 0.0f) : *out + d;
            }
        }
    }
}

static void sc_add(float *y, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
static void sc_mul(float *y, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i];
}
static void sc_scale(float *y, const float *a, float s, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] * s;
}
static inline float silu1(float x) { return x / (1.0f + expf(-x)); }
static void sc_silu(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = silu1(x[i]);
}
static void sc_swiglu(float *y, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = silu1(g[i]) * u[i];
}

/* gelu_tanh(x) = 0.5 x (1 + tanh(u)) = x sigmoid(2u): no cancellation for x << 0 (graph.h) */
static inline float gelu1(float x) {
    float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return x / (1.0f + expf(-2.0f * u));
}
static void sc_gelu(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = gelu1(x[i]);
}
static void sc_geglu(float *y, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = gelu1(g[i]) * u[i];
}
static void sc_softcap(float *y, const float *x, float cap, int64_t n) {
    float inv = 1.0f / cap;
    for (int64_t i = 0; i < n; i++) y[i] = cap * tanhf(x[i] * inv);
}

static void sc_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / (double)n + eps));
    if (w)
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * r * w[i];
    else
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * r;
}

static void sc_softmax(float *y, const float *x, int64_t n, float scale) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (x[i] * scale > mx) mx = x[i] * scale;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        y[i] = expf(x[i] * scale - mx);
        sum += y[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) y[i] *= inv;
}

static void sc_rope(float *x, const float *cs, const float *sn, int rot, int mode) {
    int half = rot / 2;
    for (int i = 0; i < half; i++) {
        int ia = mode == LOOM_ROPE_NORM ? 2 * i : i;
        int ib = mode == LOOM_ROPE_NORM ? 2 * i + 1 : i + half;
        float a = x[ia], b = x[ib];
        x[ia] = a * cs[i] - b * sn[i];
        x[ib] = a * sn[i] + b * cs[i];
    }
}

/* Online softmax over blocks of keys: scores of one block go to scratch, the running max is
 * updated once per block and the accumulator rescaled when it grows. */
static void sc_attn(float *out, const float *q, const float *k, const float *v, int64_t ld,
                    int64_t n_keys, int hd, float scale, float softcap, float *scratch) {
    float *sc = scratch, *acc = scratch + CPU_ATTN_BLOCK;
    float mx = -INFINITY, l = 0;
    for (int d = 0; d < hd; d++) acc[d] = 0;
    for (int64_t j0 = 0; j0 < n_keys; j0 += CPU_ATTN_BLOCK) {
        int nb = (int)(n_keys - j0 < CPU_ATTN_BLOCK ? n_keys - j0 : CPU_ATTN_BLOCK);
        float bmax = -INFINITY;
        for (int j = 0; j < nb; j++) {
            sc[j] = scale * dot_f32(q, k + (j0 + j) * ld, hd);
            if (softcap > 0) sc[j] = softcap * tanhf(sc[j] / softcap);
            if (sc[j] > bmax) bmax = sc[j];
        }
        if (bmax > mx) {
            float c = expf(mx - bmax); /* 0 on the first block */
            for (int d = 0; d < hd; d++) acc[d] *= c;
            l *= c;
            mx = bmax;
        }
        for (int j = 0; j < nb; j++) {
            float p = expf(sc[j] - mx);
            const float *vj = v + (j0 + j) * ld;
            l += p;
            for (int d = 0; d < hd; d++) acc[d] += p * vj[d];
        }
    }
    float inv = 1.0f / l;
    for (int d = 0; d < hd; d++) out[d] = acc[d] * inv;
}

void cpu_kernels_scalar(cpu_kernels *k) {
    k->name = "scalar";
    k->gemv = sc_gemv;
    k->gemm = sc_gemm;
    k->gemm_scratch = sc_gemm_scratch;
    k->to_f32 = sc_to_f32;
    k->add = sc_add;
    k->mul = sc_mul;
    k->scale = sc_scale;
    k->silu = sc_silu;
    k->swiglu = sc_swiglu;
    k->gelu = sc_gelu;
    k->geglu = sc_geglu;
    k->softcap = sc_softcap;
    k->rmsnorm = sc_rmsnorm;
    k->softmax = sc_softmax;
    k->rope = sc_rope;
    k->attn = sc_attn;
    k->attn_group = NULL; /* the backend calls attn per query */
    k->attn_group_ok = NULL;
    k->attn_group_scratch = NULL;
    k->gemm_bf16_rounds_x = false;
}
