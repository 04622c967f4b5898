/* Block-quantised types: facts, reference quantise/dequantise, reference dot (see quant.h). The
 * quantisers follow ggml's quantize_row_*_ref so files we write read the same in llama.cpp. */
#include "core/qblock.h"

#include "core/util.h"

#include <math.h>
#include <string.h>

_Static_assert(sizeof(loom_block_q8_0) == 34, "block_q8_0 layout");
_Static_assert(sizeof(loom_block_q4_0) == 18, "block_q4_0 layout");
_Static_assert(sizeof(loom_block_q4_k) == 144, "block_q4_K layout");
_Static_assert(sizeof(loom_block_q6_k) == 210, "block_q6_K layout");
_Static_assert(sizeof(loom_q8x) == 40, "q8x layout");

bool loom_dtype_is_quant(loom_dtype t) {
    return t == LOOM_Q8_0 || t == LOOM_Q4_0 || t == LOOM_Q4_K || t == LOOM_Q6_K;
}

int loom_dtype_blck(loom_dtype t) {
    switch (t) {
    case LOOM_Q8_0:
    case LOOM_Q4_0: return LOOM_QK;
    case LOOM_Q4_K:
    case LOOM_Q6_K: return LOOM_QK_K;
    default: return loom_dtype_size(t) ? 1 : 0;
    }
}

size_t loom_dtype_block_bytes(loom_dtype t) {
    switch (t) {
    case LOOM_Q8_0: return sizeof(loom_block_q8_0);
    case LOOM_Q4_0: return sizeof(loom_block_q4_0);
    case LOOM_Q4_K: return sizeof(loom_block_q4_k);
    case LOOM_Q6_K: return sizeof(loom_block_q6_k);
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
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63, *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

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

static void quant_q4_k(const float *x, loom_block_q4_k *y, int64_t nb) {
    uint8_t L[256], Laux[32];
    float wts[32], mins[8], scales[8];
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 8; j++) {
            float sum_x2 = 0;
            for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
            float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; l++) wts[l] = av_x + fabsf(x[32 * j + l]);
            scales[j] = make_qkx2_quants(32, 15, x + 32 * j, wts, L + 32 * j, &mins[j], Laux, -1.0f, 0.1f, 20);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        float inv_scale = max_scale > 0 ? 63 / max_scale : 0, inv_min = max_min > 0 ? 63 / max_min : 0;
        memset(y[i].scales, 0, sizeof y[i].scales);
        for (int j = 0; j < 8; j++) {
            int ls = nearest_int(inv_scale * scales[j]), lm = nearest_int(inv_min * mins[j]);
            ls = ls > 63 ? 63 : ls, lm = lm > 63 ? 63 : lm;
            if (j < 4) {
                y[i].scales[j] = (uint8_t)ls;
                y[i].scales[j + 4] = (uint8_t)lm;
            } else {
                y[i].scales[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
                y[i].scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
                y[i].scales[j] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        y[i].d = loom_f32_to_f16(max_scale / 63);
        y[i].dmin = loom_f32_to_f16(max_min / 63);
        float d0 = loom_f16_to_f32(y[i].d), m0 = loom_f16_to_f32(y[i].dmin);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            scale_min_k4(j, y[i].scales, &sc, &m);
            float d = d0 * sc;
            if (!d) continue;
            float dm = m0 * m;
            for (int l = 0; l < 32; l++) {
                int q = nearest_int((x[32 * j + l] + dm) / d);
                L[32 * j + l] = (uint8_t)(q < 0 ? 0 : q > 15 ? 15 : q);
            }
        }
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
            scale_min_k4(is, x[i].scales, &sc, &m);
            float d1 = d * sc, m1 = min * m;
            scale_min_k4(is + 1, x[i].scales, &sc, &m);
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

int64_t loom_quant_bad_scale(loom_dtype t, const void *data, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        bool ok = true;
        switch (t) {
        case LOOM_Q8_0: ok = f16_finite(((const loom_block_q8_0 *)data)[i].d); break;
        case LOOM_Q4_0: ok = f16_finite(((const loom_block_q4_0 *)data)[i].d); break;
        case LOOM_Q4_K: {
            const loom_block_q4_k *b = (const loom_block_q4_k *)data + i;
            ok = f16_finite(b->d) && f16_finite(b->dmin);
            break;
        }
        case LOOM_Q6_K: ok = f16_finite(((const loom_block_q6_k *)data)[i].d); break;
        default: return -1;
        }
        if (!ok) return i;
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
                scale_min_k4(j, b->scales, &sc, &m);
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
    default: break;
    }
    return sum;
}
