/* Block-quantised types: facts, reference quantise/dequantise, reference dot (see quant.h). The
 * quantisers follow ggml's quantize_row_*_ref so files we write read the same in llama.cpp. */
#include "core/qblock.h"

#include "core/util.h"

#include <math.h>
#include <string.h>
#include <strings.h>

_Static_assert(sizeof(loom_block_q8_0) == 34, "block_q8_0 layout");
_Static_assert(sizeof(loom_block_q4_0) == 18, "block_q4_0 layout");
_Static_assert(sizeof(loom_block_q4_k) == 144, "block_q4_K layout");
_Static_assert(sizeof(loom_block_q6_k) == 210, "block_q6_K layout");
_Static_assert(sizeof(loom_block_q4_1) == 20, "block_q4_1 layout");
_Static_assert(sizeof(loom_block_q5_0) == 22, "block_q5_0 layout");
_Static_assert(sizeof(loom_block_q5_1) == 24, "block_q5_1 layout");
_Static_assert(sizeof(loom_block_q2_k) == 84, "block_q2_K layout");
_Static_assert(sizeof(loom_block_q3_k) == 110, "block_q3_K layout");
_Static_assert(sizeof(loom_block_q5_k) == 176, "block_q5_K layout");
_Static_assert(sizeof(loom_block_iq4_nl) == 18, "block_iq4_nl layout");
_Static_assert(sizeof(loom_block_iq4_xs) == 136, "block_iq4_xs layout");
_Static_assert(sizeof(loom_q8x) == 40, "q8x layout");

const int8_t loom_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

bool loom_dtype_is_quant(loom_dtype t) { return t >= LOOM_Q8_0 && t < LOOM_DTYPE_COUNT; }

loom_dtype loom_dtype_from_name(const char *name) {
    for (int t = LOOM_Q8_0; t < LOOM_DTYPE_COUNT; t++)
        if (!strcasecmp(name, loom_dtype_name((loom_dtype)t))) return (loom_dtype)t;
    return LOOM_DTYPE_COUNT;
}

int loom_dtype_blck(loom_dtype t) {
    switch (t) {
    case LOOM_Q8_0:
    case LOOM_Q4_0:
    case LOOM_Q4_1:
    case LOOM_Q5_0:
    case LOOM_Q5_1:
    case LOOM_IQ4_NL: return LOOM_QK;
    case LOOM_Q4_K:
    case LOOM_Q6_K:
    case LOOM_Q2_K:
    case LOOM_Q3_K:
    case LOOM_Q5_K:
    case LOOM_IQ4_XS: return LOOM_QK_K;
    default: return loom_dtype_size(t) ? 1 : 0;
    }
}

size_t loom_dtype_block_bytes(loom_dtype t) {
    switch (t) {
    case LOOM_Q8_0: return sizeof(loom_block_q8_0);
    case LOOM_Q4_0: return sizeof(loom_block_q4_0);
    case LOOM_Q4_K: return sizeof(loom_block_q4_k);
    case LOOM_Q6_K: return sizeof(loom_block_q6_k);
    case LOOM_Q4_1: return sizeof(loom_block_q4_1);
    case LOOM_Q5_0: return sizeof(loom_block_q5_0);
    case LOOM_Q5_1: return sizeof(loom_block_q5_1);
    case LOOM_Q2_K: return sizeof(loom_block_q2_k);
    case LOOM_Q3_K: return sizeof(loom_block_q3_k);
    case LOOM_Q5_K: return sizeof(loom_block_q5_k);
    case LOOM_IQ4_NL: return sizeof(loom_block_iq4_nl);
    case LOOM_IQ4_XS: return sizeof(loom_block_iq4_xs);
    default: return loom_dtype_size(t);
    }
}

size_t loom_dtype_nbytes(loom_dtype t, int64_t n) {
    int b = loom_dtype_blck(t);
    return b ? (size_t)(n / b) * loom_dtype_block_bytes(t) : 0;
}

static inline int nearest_int(float f) { return (int)lrintf(f); }

/* ---- Q8_0 / Q4_0 -------------------------------------------------------------------------------- */
static void quant_q8_0(const float *x, loom_block_q8_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        y[i].d = loom_f32_to_f16(d);
        for (int j = 0; j < 32; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

static void quant_q4_0(const float *x, loom_block_q4_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0, max = 0; /* the value of largest magnitude, with its sign */
        for (int j = 0; j < 32; j++)
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
        float d = max / -8, id = d ? 1.0f / d : 0.0f;
        y[i].d = loom_f32_to_f16(d);
        for (int j = 0; j < 16; j++) {
            int a = (int)(x[j] * id + 8.5f), b = (int)(x[j + 16] * id + 8.5f);
            a = a > 15 ? 15 : a, b = b > 15 ? 15 : b;
            y[i].qs[j] = (uint8_t)(a | (b << 4));
        }
    }
}

/* ---- Q4_K ----------------------------------------------------------------------------------------- */
/* ggml's make_qkx2_quants: scale and min of a sub-block, searching around max-min. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                              uint8_t *Laux, float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale, best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        float diff = scale * L[i] + min - x[i];
        best_error += w[i] * diff * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l, sum_l2 += w[i] * l * l, sum_xl += w[i] * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) this_min = 0, this_scale = sum_xl / sum_l2;
            float err = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                err += w[i] * diff * diff;
            }
            if (err < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = err, scale = this_scale, min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* 8 sub-block scales and minimums (>= 0) to Q4_K/Q5_K's 6-bit codes under f16 d and dmin. */
static void pack_k4_scales(const float *scales, const float *mins, uint8_t *q, uint16_t *d, uint16_t *dmin) {
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63 / max_scale : 0, inv_min = max_min > 0 ? 63 / max_min : 0;
    memset(q, 0, 12);
    for (int j = 0; j < 8; j++) {
        int ls = nearest_int(inv_scale * scales[j]), lm = nearest_int(inv_min * mins[j]);
        ls = ls > 63 ? 63 : ls, lm = lm > 63 ? 63 : lm;
        if (j < 4) {
            q[j] = (uint8_t)ls;
            q[j + 4] = (uint8_t)lm;
        } else {
            q[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            q[j - 4] |= (uint8_t)((ls >> 4) << 6);
            q[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d = loom_f32_to_f16(max_scale / 63);
    *dmin = loom_f32_to_f16(max_min / 63);
}

/* Q4_K (nmax 15) / Q5_K (nmax 31) codes of a super-block: scale/min search per 32 with weights
 * rms + |x| (ggml's make_qkx2_quants parameters per type), 6-bit scales, then the codes again
 * under the rounded scales. L gets 256 codes. */
static void quant_k4_codes(const float *x, int nmax, float rmin, int nstep, uint8_t *q12, uint16_t *d,
                           uint16_t *dmin, uint8_t *L) {
    uint8_t Laux[32];
    float wts[32], mins[8], scales[8];
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) wts[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, wts, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep);
    }
    pack_k4_scales(scales, mins, q12, d, dmin);
    float d0 = loom_f16_to_f32(*d), m0 = loom_f16_to_f32(*dmin);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        loom_k4_scale_min(q12, j, &sc, &m);
        float dd = d0 * sc;
        if (!dd) continue;
        float dm = m0 * m;
        for (int l = 0; l < 32; l++) {
            int v = nearest_int((x[32 * j + l] + dm) / dd);
            L[32 * j + l] = (uint8_t)(v < 0 ? 0 : v > nmax ? nmax : v);
        }
    }
}

static void quant_q4_k(const float *x, loom_block_q4_k *y, int64_t nb) {
    uint8_t L[256];
    for (int64_t i = 0; i < nb; i++, x += 256) {
        quant_k4_codes(x, 15, -1.0f, 20, y[i].scales, &y[i].d, &y[i].dmin, L);
        uint8_t *q = y[i].qs;
        for (int j = 0; j < 256; j += 64, q += 32)
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

static void dequant_q4_k(const loom_block_q4_k *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        float d = loom_f16_to_f32(x[i].d), min = loom_f16_to_f32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int j = 0, is = 0; j < 256; j += 64, q += 32, is += 2) {
            uint8_t sc, m;
            loom_k4_scale_min(x[i].scales, is, &sc, &m);
            float d1 = d * sc, m1 = min * m;
            loom_k4_scale_min(x[i].scales, is + 1, &sc, &m);
            float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

/* ---- Q6_K ----------------------------------------------------------------------------------------- */
/* ggml's make_qx_quants with rmse_type 1 (weights x^2): a signed scale for n values in
 * [-nmax, nmax-1], L holds q + nmax. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    if (amax < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0;
    }
    float iscale = -nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l, suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * l, suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + (l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l));
            }
            scale = sumlx / suml2, best = scale * sumlx;
        }
    }
    return scale;
}

static void quant_q6_k(const float *x, loom_block_q6_k *y, int64_t nb) {
    int8_t L[256];
    float scales[16];
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float max_scale = 0, max_abs = 0;
        for (int ib = 0; ib < 16; ib++) {
            scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            if (fabsf(scales[ib]) > max_abs) max_abs = fabsf(scales[ib]), max_scale = scales[ib];
        }
        if (max_abs < 1e-15f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = -128.0f / max_scale;
        y[i].d = loom_f32_to_f16(1 / iscale);
        for (int ib = 0; ib < 16; ib++) {
            int s = nearest_int(iscale * scales[ib]);
            y[i].scales[ib] = (int8_t)(s > 127 ? 127 : s);
        }
        float d0 = loom_f16_to_f32(y[i].d);
        for (int j = 0; j < 16; j++) {
            float d = d0 * y[i].scales[j];
            if (!d) continue;
            for (int l = 0; l < 16; l++) {
                int q = nearest_int(x[16 * j + l] / d);
                L[16 * j + l] = (int8_t)((q < -32 ? -32 : q > 31 ? 31 : q) + 32);
            }
        }
        uint8_t *ql = y[i].ql, *qh = y[i].qh;
        for (int j = 0; j < 256; j += 128, ql += 64, qh += 32)
            for (int l = 0; l < 32; l++) {
                int q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                  ((L[j + l + 96] >> 4) << 6));
            }
    }
}

/* The 256 6-bit values of a Q6_K block, minus 32. */
static void q6_k_values(const loom_block_q6_k *b, int8_t *q) {
    const uint8_t *ql = b->ql, *qh = b->qh;
    for (int n = 0; n < 256; n += 128, ql += 64, qh += 32, q += 128)
        for (int l = 0; l < 32; l++) {
            q[l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
            q[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
            q[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            q[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
}

static void dequant_q6_k(const loom_block_q6_k *x, float *y, int64_t nb) {
    int8_t q[256];
    for (int64_t i = 0; i < nb; i++, y += 256) {
        float d = loom_f16_to_f32(x[i].d);
        q6_k_values(&x[i], q);
        for (int l = 0; l < 256; l++) y[l] = d * x[i].scales[l / 16] * q[l];
    }
}

/* ---- Q4_1 / Q5_0 / Q5_1 (32-element blocks, Q4_0's nibble order) ----------------------------- */
/* ggml's quantize_row_q4_1/q5_1_ref: d = (max - min) / nmax, m = min, q = (x - min) / d + 0.5
 * truncated (capped at nmax). L gets 32 codes. */
static void quant_affine32(const float *x, int nmax, uint16_t *d, uint16_t *m, uint8_t *L) {
    float min = x[0], max = x[0];
    for (int j = 1; j < 32; j++) min = x[j] < min ? x[j] : min, max = x[j] > max ? x[j] : max;
    float dd = (max - min) / (float)nmax, id = dd ? 1.0f / dd : 0.0f;
    *d = loom_f32_to_f16(dd), *m = loom_f32_to_f16(min);
    for (int j = 0; j < 32; j++) {
        int q = (int)((x[j] - min) * id + 0.5f);
        L[j] = (uint8_t)(q > nmax ? nmax : q < 0 ? 0 : q);
    }
}

/* 32 codes of 4 (and a 5th) bits into qs[16] (+ qh[4] when qh). */
static void pack32(const uint8_t *L, uint8_t *qs, uint8_t *qh) {
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((L[j] & 0xF) | ((L[j + 16] & 0xF) << 4));
        h |= (uint32_t)(L[j] >> 4) << j | (uint32_t)(L[j + 16] >> 4) << (j + 16);
    }
    if (qh) memcpy(qh, &h, 4);
}

static void unpack32(const uint8_t *qs, const uint8_t *qh, uint8_t *L) {
    uint32_t h = 0;
    if (qh) memcpy(&h, qh, 4);
    for (int j = 0; j < 16; j++) {
        L[j] = (uint8_t)((qs[j] & 0xF) | ((h >> j) & 1) << 4);
        L[j + 16] = (uint8_t)((qs[j] >> 4) | ((h >> (j + 16)) & 1) << 4);
    }
}

static void quant_q4_1(const float *x, loom_block_q4_1 *y, int64_t nb) {
    uint8_t L[32];
    for (int64_t i = 0; i < nb; i++, x += 32) {
        quant_affine32(x, 15, &y[i].d, &y[i].m, L);
        pack32(L, y[i].qs, NULL);
    }
}

static void quant_q5_1(const float *x, loom_block_q5_1 *y, int64_t nb) {
    uint8_t L[32];
    for (int64_t i = 0; i < nb; i++, x += 32) {
        quant_affine32(x, 31, &y[i].d, &y[i].m, L);
        pack32(L, y[i].qs, y[i].qh);
    }
}

/* ggml's quantize_row_q5_0_ref: d = (value of largest magnitude) / -16, q = x / d + 16.5 truncated,
 * capped at 31. */
static void quant_q5_0(const float *x, loom_block_q5_0 *y, int64_t nb) {
    uint8_t L[32];
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
        float d = max / -16, id = d ? 1.0f / d : 0.0f;
        y[i].d = loom_f32_to_f16(d);
        for (int j = 0; j < 32; j++) {
            int q = (int)(x[j] * id + 16.5f);
            L[j] = (uint8_t)(q > 31 ? 31 : q < 0 ? 0 : q);
        }
        pack32(L, y[i].qs, y[i].qh);
    }
}

static void dequant32(loom_dtype t, const void *src, float *y, int64_t nb) {
    uint8_t L[32];
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d, m = 0;
        switch (t) {
        case LOOM_Q4_1: {
            const loom_block_q4_1 *b = (const loom_block_q4_1 *)src + i;
            unpack32(b->qs, NULL, L), d = loom_f16_to_f32(b->d), m = loom_f16_to_f32(b->m);
            break;
        }
        case LOOM_Q5_0: {
            const loom_block_q5_0 *b = (const loom_block_q5_0 *)src + i;
            unpack32(b->qs, b->qh, L), d = loom_f16_to_f32(b->d), m = -16 * d;
            break;
        }
        case LOOM_Q5_1: {
            const loom_block_q5_1 *b = (const loom_block_q5_1 *)src + i;
            unpack32(b->qs, b->qh, L), d = loom_f16_to_f32(b->d), m = loom_f16_to_f32(b->m);
            break;
        }
        default: { /* IQ4_NL */
            const loom_block_iq4_nl *b = (const loom_block_iq4_nl *)src + i;
            unpack32(b->qs, NULL, L), d = loom_f16_to_f32(b->d);
            for (int j = 0; j < 32; j++) y[j] = d * loom_iq4nl_values[L[j]];
            continue;
        }
        }
        if (t == LOOM_Q5_0) /* (q - 16) * d exactly as ggml rounds it: one product of integers */
            for (int j = 0; j < 32; j++) y[j] = (float)(L[j] - 16) * d;
        else
            for (int j = 0; j < 32; j++) y[j] = (float)L[j] * d + m;
    }
}

/* ---- IQ4_NL / IQ4_XS ---------------------------------------------------------------------------- */
/* Index of the table value nearest to v (the lower one on a tie): a binary search over the
 * midpoints between neighbours. */
static int iq4_index(float v) {
    static const float mid[15] = {-115.5f, -93.5f, -74, -57, -42, -28.5f, -16, -4.5f, 7, 19, 31.5f, 45.5f, 61, 79, 101};
    int i = 0;
    for (int step = 8; step; step >>= 1)
        if (v > mid[i + step - 1]) i += step;
    return i;
}

/* The IQ4 searches minimise the squared error weighted by |x| (no importance matrix here: the
 * larger weights count more). Measured 2026-12-05 against the unweighted error (docs/quantization.md):
 * mean KL on the trained stories260K 4.81e-2 -> 4.66e-2 (4.57-4.81e-2 over search widths 5-9, the
 * unweighted 4.81-5.03e-2), on the random llama-wide 1% higher; x^2 weights were worse on both. */

/* weighted squared error of 32 values x against d * kvalues[L] */
static double iq4_err(const float *x, const float *w, const uint8_t *L, float d) {
    double err = 0;
    for (int j = 0; j < 32; j++) {
        double e = x[j] - d * loom_iq4nl_values[L[j]];
        err += w[j] * e * e;
    }
    return err;
}

/* the weighted least-squares d for the codes L */
static float iq4_fit(const float *x, const float *w, const uint8_t *L) {
    double sxv = 0, svv = 0;
    for (int j = 0; j < 32; j++) {
        double v = loom_iq4nl_values[L[j]];
        sxv += w[j] * x[j] * v, svv += w[j] * v * v;
    }
    return svv > 0 ? (float)(sxv / svv) : 0;
}

/* A scale d for 32 values with x ~ d * kvalues[L]: the largest magnitude mapped onto the table's
 * ends (-127 or 113) and 14 scales around each, each refined by least squares over its
 * nearest-value codes; the one with the smallest error (both weighted by |x|) wins. */
static float iq4_block(const float *x, uint8_t *L) {
    float amax = 0, max = 0, w[32];
    for (int j = 0; j < 32; j++) {
        w[j] = fabsf(x[j]);
        if (w[j] > amax) amax = w[j], max = x[j];
    }
    if (amax < 1e-30f) {
        memset(L, 8, 32); /* value 1 at scale 0 */
        return 0;
    }
    uint8_t Lt[32];
    float best_d = 0;
    double best_err = INFINITY;
    for (int end = 0; end < 2; end++)
        for (int s = -7; s <= 7; s++) {
            float id = ((end ? 113.0f : -127.0f) + (float)s) / max;
            for (int j = 0; j < 32; j++) Lt[j] = (uint8_t)iq4_index(id * x[j]);
            float d = iq4_fit(x, w, Lt);
            double err = iq4_err(x, w, Lt, d);
            if (err < best_err) best_err = err, best_d = d, memcpy(L, Lt, 32);
        }
    return best_d;
}

static void quant_iq4_nl(const float *x, loom_block_iq4_nl *y, int64_t nb) {
    uint8_t L[32];
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float d = iq4_block(x, L);
        y[i].d = loom_f32_to_f16(d);
        float dr = loom_f16_to_f32(y[i].d);
        if (dr) /* the codes again under the stored scale */
            for (int j = 0; j < 32; j++) L[j] = (uint8_t)iq4_index(x[j] / dr);
        pack32(L, y[i].qs, NULL);
    }
}

/* The codes (nearest values) of 32 values x under the IQ4_XS block scale d * l, and their
 * |x|-weighted error. */
static double iq4xs_try(const float *x, const float *w, float d, int l, uint8_t *L) {
    float s = d * (float)l;
    for (int j = 0; j < 32; j++) L[j] = s ? (uint8_t)iq4_index(x[j] / s) : 8;
    return iq4_err(x, w, L, s);
}

/* IQ4_XS: each 32-block's scale by iq4_block, then the 8 put on 6 bits under an f16 d. Two d are
 * tried (the largest scale onto -32, or onto 31); each block starts from the nearest 6-bit scale
 * and steps it down (or else up) while that lowers its |x|-weighted error, so no neighbouring
 * scale is better (test_qblock checks it); the d with the smaller total wins. (Before 2026-12-05:
 * the first d and the nearest scale only.) */
static void quant_iq4_xs(const float *x, loom_block_iq4_xs *y, int64_t nb) {
    uint8_t L[32], Lb[32];
    float sc[8], w[256];
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float amax = 0, max = 0;
        for (int ib = 0; ib < 8; ib++) {
            sc[ib] = iq4_block(x + 32 * ib, L);
            if (fabsf(sc[ib]) > amax) amax = fabsf(sc[ib]), max = sc[ib];
        }
        for (int j = 0; j < 256; j++) w[j] = fabsf(x[j]);
        double best_err = INFINITY;
        for (int cand = 0; cand < 2; cand++) {
            loom_block_iq4_xs o;
            memset(&o, 0, sizeof o);
            o.d = loom_f32_to_f16(cand ? max / 31 : max / -32);
            float d = loom_f16_to_f32(o.d), id = d ? 1.0f / d : 0.0f;
            double tot = 0;
            for (int ib = 0; ib < 8; ib++) {
                const float *xb = x + 32 * ib, *wb = w + 32 * ib;
                int bl = nearest_int(id * sc[ib]);
                bl = bl < -32 ? -32 : bl > 31 ? 31 : bl;
                double be = iq4xs_try(xb, wb, d, bl, Lb);
                for (int dir = -1; dir <= 1; dir += 2) { /* down while it helps, else up while it helps */
                    bool moved = false;
                    while (bl + dir >= -32 && bl + dir <= 31) {
                        double e = iq4xs_try(xb, wb, d, bl + dir, L);
                        if (!(e < be)) break;
                        be = e, bl += dir, moved = true, memcpy(Lb, L, 32);
                    }
                    if (moved) break;
                }
                tot += be;
                o.scales_l[ib / 2] |= (uint8_t)(((bl + 32) & 0xF) << (4 * (ib % 2)));
                o.scales_h |= (uint16_t)(((bl + 32) >> 4) << (2 * ib));
                pack32(Lb, o.qs + 16 * ib, NULL);
            }
            if (cand == 0 || tot < best_err) best_err = tot, y[i] = o;
        }
    }
}

static void dequant_iq4_xs(const loom_block_iq4_xs *x, float *y, int64_t nb) {
    uint8_t L[32];
    for (int64_t i = 0; i < nb; i++) {
        float d = loom_f16_to_f32(x[i].d);
        for (int ib = 0; ib < 8; ib++, y += 32) {
            float dl = d * (float)loom_iq4xs_scale(x[i].scales_h, x[i].scales_l, ib);
            unpack32(x[i].qs + 16 * ib, NULL, L);
            for (int j = 0; j < 32; j++) y[j] = dl * loom_iq4nl_values[L[j]];
        }
    }
}

/* ---- Q2_K / Q3_K: 2-bit fields, 16 per 16 elements ---------------------------------------------- */
/* 256 codes of 2 bits (L[e] & 3) into qs[64]: element e of each 128 at shift 2*(e/32) of byte e%32. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *p = L + 128 * h + l;
            qs[32 * h + l] = (uint8_t)((p[0] & 3) | (p[32] & 3) << 2 | (p[64] & 3) << 4 | (p[96] & 3) << 6);
        }
}

static inline int bits2(const uint8_t *qs, int e) { return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3; }

/* ggml's quantize_row_q2_K_ref: per 16, a scale and minimum (make_qkx2_quants, weights |x|, codes
 * 0..3), both as 4 bits under f16 d and dmin, then the codes again under the rounded scales. */
static void quant_q2_k(const float *x, loom_block_q2_k *y, int64_t nb) {
    uint8_t L[256], Laux[16];
    float w[16], mins[16], scales[16];
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        float is = max_scale > 0 ? 15 / max_scale : 0, im = max_min > 0 ? 15 / max_min : 0;
        for (int j = 0; j < 16; j++) {
            int ls = nearest_int(is * scales[j]), lm = nearest_int(im * mins[j]);
            y[i].scales[j] = (uint8_t)((ls > 15 ? 15 : ls) | (lm > 15 ? 15 : lm) << 4);
        }
        y[i].d = loom_f32_to_f16(max_scale / 15);
        y[i].dmin = loom_f32_to_f16(max_min / 15);
        float d0 = loom_f16_to_f32(y[i].d), m0 = loom_f16_to_f32(y[i].dmin);
        for (int j = 0; j < 16; j++) {
            float d = d0 * (y[i].scales[j] & 0xF);
            if (!d) continue;
            float dm = m0 * (y[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++) {
                int q = nearest_int((x[16 * j + l] + dm) / d);
                L[16 * j + l] = (uint8_t)(q < 0 ? 0 : q > 3 ? 3 : q);
            }
        }
        pack_2bit(L, y[i].qs);
    }
}

static void dequant_q2_k(const loom_block_q2_k *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 256) {
        float d = loom_f16_to_f32(x[i].d), dmin = loom_f16_to_f32(x[i].dmin);
        for (int e = 0; e < 256; e++) {
            uint8_t sc = x[i].scales[e / 16];
            y[e] = d * (float)(sc & 0xF) * (float)bits2(x[i].qs, e) - dmin * (float)(sc >> 4);
        }
    }
}

/* Q3_K's 16 6-bit scales, minus 32. */
static void q3_k_scales(const uint8_t *s, int *sc) {
    for (int j = 0; j < 16; j++) sc[j] = loom_q3k_scale(s, j);
}

/* Per 16 a signed scale for codes -4..3 (make_qx_quants, weights x^2, as Q6_K), 6-bit signed scales
 * under an f16 d, then the codes again under the rounded scales. */
static void quant_q3_k(const float *x, loom_block_q3_k *y, int64_t nb) {
    int8_t L[256];
    float scales[16];
    for (int64_t i = 0; i < nb; i++, x += 256) {
        memset(&y[i], 0, sizeof y[i]);
        float max_scale = 0, amax = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) amax = fabsf(scales[j]), max_scale = scales[j];
        }
        float iscale = amax > 0 ? -32 / max_scale : 0;
        y[i].d = loom_f32_to_f16(amax > 0 ? 1 / iscale : 0);
        for (int j = 0; j < 16; j++) {
            int l = nearest_int(iscale * scales[j]);
            l = (l < -32 ? -32 : l > 31 ? 31 : l) + 32;
            y[i].scales[j % 8] |= (uint8_t)((l & 0xF) << (4 * (j / 8)));
            y[i].scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
        }
        int sc[16];
        q3_k_scales(y[i].scales, sc);
        float d0 = loom_f16_to_f32(y[i].d);
        uint8_t U[256];
        for (int j = 0; j < 16; j++) {
            float d = d0 * (float)sc[j];
            for (int l = 0; l < 16; l++) {
                int q = d ? nearest_int(x[16 * j + l] / d) : 0;
                U[16 * j + l] = (uint8_t)((q < -4 ? -4 : q > 3 ? 3 : q) + 4);
            }
        }
        for (int e = 0; e < 256; e++)
            if (U[e] & 4) y[i].hmask[e % 32] |= (uint8_t)(1 << (e / 32));
        pack_2bit(U, y[i].qs);
    }
}

static void dequant_q3_k(const loom_block_q3_k *x, float *y, int64_t nb) {
    int sc[16];
    for (int64_t i = 0; i < nb; i++, y += 256) {
        float d = loom_f16_to_f32(x[i].d);
        q3_k_scales(x[i].scales, sc);
        for (int e = 0; e < 256; e++) {
            int q = bits2(x[i].qs, e) - ((x[i].hmask[e % 32] >> (e / 32)) & 1 ? 0 : 4);
            y[e] = d * (float)sc[e / 16] * (float)q;
        }
    }
}

/* ---- Q5_K ----------------------------------------------------------------------------------------- */
static void quant_q5_k(const float *x, loom_block_q5_k *y, int64_t nb) {
    uint8_t L[256];
    for (int64_t i = 0; i < nb; i++, x += 256) {
        quant_k4_codes(x, 31, -0.5f, 15, y[i].scales, &y[i].d, &y[i].dmin, L);
        memset(y[i].qh, 0, 32);
        for (int e = 0; e < 256; e++)
            if (L[e] & 16) y[i].qh[e % 32] |= (uint8_t)(1 << (e / 32));
        uint8_t *q = y[i].qs;
        for (int j = 0; j < 256; j += 64, q += 32)
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)((L[j + l] & 0xF) | (L[j + l + 32] & 0xF) << 4);
    }
}

static void dequant_q5_k(const loom_block_q5_k *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 256) {
        float d = loom_f16_to_f32(x[i].d), dmin = loom_f16_to_f32(x[i].dmin);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            loom_k4_scale_min(x[i].scales, j, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            for (int l = 0; l < 32; l++) {
                int v = ((q[l] >> (4 * (j & 1))) & 0xF) | ((x[i].qh[l] >> j) & 1) << 4;
                y[32 * j + l] = d1 * (float)v - m1;
            }
        }
    }
}


/* ---- the later types as 32-element blocks of int8 codes (loom_qblock32) ------------------------- */
void loom_qblock32(loom_dtype t, const void *row, int64_t b, int8_t *c, float *A, float *B) {
    uint8_t L[32];
    B[0] = B[1] = 0;
    switch (t) {
    case LOOM_Q4_1: {
        const loom_block_q4_1 *x = (const loom_block_q4_1 *)row + b;
        unpack32(x->qs, NULL, L);
        A[0] = A[1] = loom_f16_to_f32(x->d), B[0] = B[1] = loom_f16_to_f32(x->m);
        for (int e = 0; e < 32; e++) c[e] = (int8_t)L[e];
        return;
    }
    case LOOM_Q5_0: {
        const loom_block_q5_0 *x = (const loom_block_q5_0 *)row + b;
        unpack32(x->qs, x->qh, L);
        A[0] = A[1] = loom_f16_to_f32(x->d);
        for (int e = 0; e < 32; e++) c[e] = (int8_t)(L[e] - 16);
        return;
    }
    case LOOM_Q5_1: {
        const loom_block_q5_1 *x = (const loom_block_q5_1 *)row + b;
        unpack32(x->qs, x->qh, L);
        A[0] = A[1] = loom_f16_to_f32(x->d), B[0] = B[1] = loom_f16_to_f32(x->m);
        for (int e = 0; e < 32; e++) c[e] = (int8_t)L[e];
        return;
    }
    case LOOM_IQ4_NL: {
        const loom_block_iq4_nl *x = (const loom_block_iq4_nl *)row + b;
        unpack32(x->qs, NULL, L);
        A[0] = A[1] = loom_f16_to_f32(x->d);
        for (int e = 0; e < 32; e++) c[e] = loom_iq4nl_values[L[e]];
        return;
    }
    default: break;
    }
    int j = (int)(b % 8); /* sub-block of a 256-element super-block */
    switch (t) {
    case LOOM_Q2_K: {
        const loom_block_q2_k *x = (const loom_block_q2_k *)row + b / 8;
        float d = loom_f16_to_f32(x->d), dmin = loom_f16_to_f32(x->dmin);
        for (int h = 0; h < 2; h++)
            A[h] = d * (float)(x->scales[2 * j + h] & 0xF), B[h] = -(dmin * (float)(x->scales[2 * j + h] >> 4));
        for (int l = 0; l < 32; l++) c[l] = (int8_t)bits2(x->qs, 32 * j + l);
        return;
    }
    case LOOM_Q3_K: {
        const loom_block_q3_k *x = (const loom_block_q3_k *)row + b / 8;
        int sc[16];
        q3_k_scales(x->scales, sc);
        float d = loom_f16_to_f32(x->d);
        A[0] = d * (float)sc[2 * j], A[1] = d * (float)sc[2 * j + 1];
        for (int l = 0; l < 32; l++)
            c[l] = (int8_t)(bits2(x->qs, 32 * j + l) - ((x->hmask[l] >> j) & 1 ? 0 : 4));
        return;
    }
    case LOOM_Q5_K: {
        const loom_block_q5_k *x = (const loom_block_q5_k *)row + b / 8;
        uint8_t sc, m;
        loom_k4_scale_min(x->scales, j, &sc, &m);
        A[0] = A[1] = loom_f16_to_f32(x->d) * sc, B[0] = B[1] = -(loom_f16_to_f32(x->dmin) * m);
        const uint8_t *q = x->qs + 32 * (j / 2);
        for (int l = 0; l < 32; l++) c[l] = (int8_t)(((q[l] >> (4 * (j & 1))) & 0xF) | ((x->qh[l] >> j) & 1) << 4);
        return;
    }
    case LOOM_IQ4_XS: {
        const loom_block_iq4_xs *x = (const loom_block_iq4_xs *)row + b / 8;
        A[0] = A[1] = loom_f16_to_f32(x->d) * (float)loom_iq4xs_scale(x->scales_h, x->scales_l, j);
        unpack32(x->qs + 16 * j, NULL, L);
        for (int e = 0; e < 32; e++) c[e] = loom_iq4nl_values[L[e]];
        return;
    }
    default:
        memset(c, 0, 32);
        A[0] = A[1] = 0;
        return;
    }
}

/* ---- rows ------------------------------------------------------------------------------------------ */
void loom_dequant_row(loom_dtype t, const void *src, float *dst, int64_t n) {
    int64_t nb = n / (loom_dtype_blck(t) ? loom_dtype_blck(t) : 1);
    switch (t) {
    case LOOM_Q8_0:
        for (int64_t i = 0; i < nb; i++) {
            const loom_block_q8_0 *b = (const loom_block_q8_0 *)src + i;
            float d = loom_f16_to_f32(b->d);
            for (int j = 0; j < 32; j++) dst[32 * i + j] = b->qs[j] * d;
        }
        break;
    case LOOM_Q4_0:
        for (int64_t i = 0; i < nb; i++) {
            const loom_block_q4_0 *b = (const loom_block_q4_0 *)src + i;
            float d = loom_f16_to_f32(b->d);
            for (int j = 0; j < 16; j++) {
                dst[32 * i + j] = ((b->qs[j] & 0xF) - 8) * d;
                dst[32 * i + j + 16] = ((b->qs[j] >> 4) - 8) * d;
            }
        }
        break;
    case LOOM_Q4_K: dequant_q4_k(src, dst, nb); break;
    case LOOM_Q6_K: dequant_q6_k(src, dst, nb); break;
    case LOOM_Q4_1:
    case LOOM_Q5_0:
    case LOOM_Q5_1:
    case LOOM_IQ4_NL: dequant32(t, src, dst, nb); break;
    case LOOM_Q2_K: dequant_q2_k(src, dst, nb); break;
    case LOOM_Q3_K: dequant_q3_k(src, dst, nb); break;
    case LOOM_Q5_K: dequant_q5_k(src, dst, nb); break;
    case LOOM_IQ4_XS: dequant_iq4_xs(src, dst, nb); break;
    default: loom_to_f32(dst, src, t, (size_t)n); break;
    }
}

void loom_quant_row(loom_dtype t, const float *src, void *dst, int64_t n) {
    int64_t nb = n / (loom_dtype_blck(t) ? loom_dtype_blck(t) : 1);
    switch (t) {
    case LOOM_Q8_0: quant_q8_0(src, dst, nb); break;
    case LOOM_Q4_0: quant_q4_0(src, dst, nb); break;
    case LOOM_Q4_K: quant_q4_k(src, dst, nb); break;
    case LOOM_Q6_K: quant_q6_k(src, dst, nb); break;
    case LOOM_Q4_1: quant_q4_1(src, dst, nb); break;
    case LOOM_Q5_0: quant_q5_0(src, dst, nb); break;
    case LOOM_Q5_1: quant_q5_1(src, dst, nb); break;
    case LOOM_Q2_K: quant_q2_k(src, dst, nb); break;
    case LOOM_Q3_K: quant_q3_k(src, dst, nb); break;
    case LOOM_Q5_K: quant_q5_k(src, dst, nb); break;
    case LOOM_IQ4_NL: quant_iq4_nl(src, dst, nb); break;
    case LOOM_IQ4_XS: quant_iq4_xs(src, dst, nb); break;
    case LOOM_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case LOOM_F16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = loom_f32_to_f16(src[i]);
        break;
    case LOOM_BF16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = loom_f32_to_bf16(src[i]);
        break;
    default: break;
    }
}

static bool f16_finite(uint16_t h) { return (h & 0x7c00) != 0x7c00; }

/* The f16 scales of a block: offsets into it and how many (1 or 2 consecutive). */
static int scale_fields(loom_dtype t, size_t *off) {
    switch (t) {
    case LOOM_Q8_0:
    case LOOM_Q4_0:
    case LOOM_Q5_0:
    case LOOM_IQ4_NL:
    case LOOM_IQ4_XS: *off = 0; return 1;
    case LOOM_Q4_1:
    case LOOM_Q5_1:
    case LOOM_Q4_K:
    case LOOM_Q5_K: *off = 0; return 2;
    case LOOM_Q6_K: *off = offsetof(loom_block_q6_k, d); return 1;
    case LOOM_Q2_K: *off = offsetof(loom_block_q2_k, d); return 2;
    case LOOM_Q3_K: *off = offsetof(loom_block_q3_k, d); return 1;
    default: return 0;
    }
}

int64_t loom_quant_bad_scale(loom_dtype t, const void *data, int64_t nb) {
    size_t off = 0, bs = loom_dtype_block_bytes(t);
    int nf = scale_fields(t, &off);
    for (int64_t i = 0; nf && i < nb; i++)
        for (int f = 0; f < nf; f++) {
            uint16_t h;
            memcpy(&h, (const char *)data + (size_t)i * bs + off + 2 * (size_t)f, 2);
            if (!f16_finite(h)) return i;
        }
    return -1;
}

/* ---- activations and the reference dot ---------------------------------------------------------------- */
void loom_q8x_quant(const float *x, loom_q8x *y, int64_t n) {
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        int s0 = 0, s1 = 0;
        for (int j = 0; j < 32; j++) {
            int q = (int)lrintf(x[j] * id);
            y[i].qs[j] = (int8_t)q;
            if (j < 16) s0 += q; else s1 += q;
        }
        y[i].d = d;
        y[i].s[0] = (int16_t)s0, y[i].s[1] = (int16_t)s1;
    }
}

float loom_quant_dot_ref(loom_dtype t, const void *w, const loom_q8x *x, int64_t n) {
    float sum = 0;
    switch (t) {
    case LOOM_Q8_0:
        for (int64_t i = 0; i < n / 32; i++) {
            const loom_block_q8_0 *b = (const loom_block_q8_0 *)w + i;
            int acc = 0;
            for (int j = 0; j < 32; j++) acc += b->qs[j] * x[i].qs[j];
            sum += loom_f16_to_f32(b->d) * x[i].d * (float)acc;
        }
        break;
    case LOOM_Q4_0:
        for (int64_t i = 0; i < n / 32; i++) {
            const loom_block_q4_0 *b = (const loom_block_q4_0 *)w + i;
            int acc = 0;
            for (int j = 0; j < 16; j++)
                acc += ((b->qs[j] & 0xF) - 8) * x[i].qs[j] + ((b->qs[j] >> 4) - 8) * x[i].qs[j + 16];
            sum += loom_f16_to_f32(b->d) * x[i].d * (float)acc;
        }
        break;
    case LOOM_Q4_K:
        for (int64_t i = 0; i < n / 256; i++) {
            const loom_block_q4_k *b = (const loom_block_q4_k *)w + i;
            float d = loom_f16_to_f32(b->d), dmin = loom_f16_to_f32(b->dmin);
            for (int j = 0; j < 8; j++) {
                const loom_q8x *xb = &x[8 * i + j];
                const uint8_t *q = b->qs + 32 * (j / 2);
                int shift = (j & 1) * 4, acc = 0;
                for (int l = 0; l < 32; l++) acc += ((q[l] >> shift) & 0xF) * xb->qs[l];
                uint8_t sc, m;
                loom_k4_scale_min(b->scales, j, &sc, &m);
                sum += xb->d * (d * sc * (float)acc - dmin * m * (float)(xb->s[0] + xb->s[1]));
            }
        }
        break;
    case LOOM_Q6_K: {
        int8_t q[256];
        for (int64_t i = 0; i < n / 256; i++) {
            const loom_block_q6_k *b = (const loom_block_q6_k *)w + i;
            q6_k_values(b, q);
            float d = loom_f16_to_f32(b->d);
            for (int j = 0; j < 8; j++) {
                const loom_q8x *xb = &x[8 * i + j];
                int a0 = 0, a1 = 0;
                for (int l = 0; l < 16; l++) a0 += q[32 * j + l] * xb->qs[l], a1 += q[32 * j + 16 + l] * xb->qs[16 + l];
                sum += xb->d * d * (float)(b->scales[2 * j] * a0 + b->scales[2 * j + 1] * a1);
            }
        }
        break;
    }
    default:
        if (loom_dtype_is_quant(t)) { /* the later types: affine maps of int8 codes per 16 */
            int8_t c[32];
            float A[2], B[2];
            for (int64_t b = 0; b < n / 32; b++) {
                loom_qblock32(t, w, b, c, A, B);
                int a0 = 0, a1 = 0;
                for (int l = 0; l < 16; l++) a0 += c[l] * x[b].qs[l], a1 += c[16 + l] * x[b].qs[16 + l];
                sum += x[b].d * (A[0] * (float)a0 + A[1] * (float)a1 + B[0] * (float)x[b].s[0] + B[1] * (float)x[b].s[1]);
            }
        }
        break;
    }
    return sum;
}
