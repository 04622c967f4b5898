#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
// Decode GEMV for block-quantised weights, block at a time (LOOM_VK_GEMV_Q=blk, blk1, blk4; the
// default decode GEMV is matvec.comp, which decodes 8 weights per load through wquant.glsl).
// y[M, N] = x[M, K] W[N, K]^T (+ bias) (+ residual), M <= 8, W one of the twelve block types.
//
// The unit of work is 32 consecutive weights of a row: a whole block of the 32-element types, one
// sub-block of a 256-element K block. An invocation takes units lt, lt + TPR, ... of R rows at once
// (R = 1, 2 or 4: the knob): per unit and row it reads the unit's quant bytes as whole words (16 or
// 32 bytes per read, shifted into place when the block is not word aligned), decodes its scale(s)
// and minimum once, and turns the weights into byte codes c (4 per word) such that
//   w_i = sc[h] * c_i + mn[h]          (h = i / 16: the K types with one scale per 16 weights)
// or, for IQ4_NL / IQ4_XS, w_i = sc * KV[c_i]. The unit's x (32 floats, read once for the R rows)
// then gives sum_i w_i x_i = sc[0] sum_{i<16} c_i x_i + sc[1] sum_{i>=16} c_i x_i + mn[0] X0 + mn[1] X1
// with X0, X1 the sums of x's two halves: two multiplies per 16 weights instead of one per weight.
// The products c_i x_i are in a different order and factoring from loom_dequant_row's, so results
// are not bit-identical to matvec.comp's: test_vulkan_quant holds both to the same bound.
//
// TPR = WG / NG invocations (whole subgroups) share a group of R rows; partial sums meet through
// subgroupAdd and, when a group spans several subgroups, shared memory. Fused producers (XMODE 1
// RMSNORM, 2 SWIGLU) and the residual ADD (u[8]) as in matvec.comp; push constants as there.
// Spec constants: 0 = workgroup size, 1 = M, 2 = row groups per workgroup (NG),
// 3 = XMODE | R << 2.
#include "common.glsl"
#define W_BINDING 2
#include "wload.glsl"
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint NM = 1;
layout(constant_id = 2) const uint NG = 4;
layout(constant_id = 3) const uint XSPEC = 0;
const uint XMODE = XSPEC & 3u;
const uint R = (XSPEC >> 2) == 4u ? 4u : (XSPEC >> 2) == 2u ? 2u : 1u;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 3) readonly buffer Bi { float bias[]; };
layout(std430, binding = 4) readonly buffer E { float e1[]; };
layout(std430, binding = 4) readonly buffer E4 { vec4 e4[]; };
layout(std430, binding = 5) readonly buffer Rs { float res[]; };

#if defined(W_Q8_0)
#define C_SIGNED 1
#elif defined(W_IQ4_NL) || defined(W_IQ4_XS)
#define C_TABLE 1
shared float kvs[16];
#endif
#if defined(W_Q4_0) || defined(W_Q4_1) || defined(W_Q5_0) || defined(W_Q5_1) || defined(W_Q4_K) || \
    defined(W_Q5_K) || defined(W_Q6_K) || defined(W_Q2_K) || defined(W_Q3_K)
#define C_MIN 1 // mn != 0: the x half sums are needed
#endif

shared float red[64][40]; // [subgroup][r * NM + m, then 32 + m: sum of squares]

float silu(float g) { return g / (1.0 + exp(-g)); }

// elements k..k+3 (k a multiple of 4) of the effective x row m; ss gathers x^2 for the norm.
// Vector loads when u[6] says x (and binding 4) are aligned for them.
vec4 xget4(uint m, uint k, inout float ss) {
    uint o = m * pc.u[2] + k;
    vec4 v, e;
    bool vec = pc.u[6] != 0u;
    if (vec) v = x4[(OFF_A + o) >> 2];
    else v = vec4(x[OFF_A + o], x[OFF_A + o + 1u], x[OFF_A + o + 2u], x[OFF_A + o + 3u]);
    if (XMODE == 1u) {
        ss += dot(v, v);
        if (pc.u[7] != 0u) {
            uint eo = OFF_E + k;
            v *= vec ? e4[eo >> 2] : vec4(e1[eo], e1[eo + 1u], e1[eo + 2u], e1[eo + 3u]);
        }
    } else if (XMODE == 2u) {
        uint eo = OFF_E + o;
        vec4 u = vec ? e4[eo >> 2] : vec4(e1[eo], e1[eo + 1u], e1[eo + 2u], e1[eo + 3u]);
        v = vec4(silu(v.x), silu(v.y), silu(v.z), silu(v.w)) * u;
    }
    return v;
}

// ---- quant bytes as words: byte address a, any alignment; reads only the words holding them ----
uint fsh(uint lo, uint hi, uint s) { return (lo >> s) | ((hi << 1) << (31u - s)); } // s = 0: lo
uint ld4(uint a) {
    uint i = a >> 2, s = (a & 3u) * 8u;
    return fsh(wq[i], s != 0u ? wq[i + 1u] : 0u, s);
}
uvec4 ld16(uint a) {
    uint i = a >> 2, s = (a & 3u) * 8u;
    uint w0 = wq[i], w1 = wq[i + 1u], w2 = wq[i + 2u], w3 = wq[i + 3u], w4 = s != 0u ? wq[i + 4u] : 0u;
    return uvec4(fsh(w0, w1, s), fsh(w1, w2, s), fsh(w2, w3, s), fsh(w3, w4, s));
}
void ld32(uint a, out uvec4 lo, out uvec4 hi) {
    uint i = a >> 2, s = (a & 3u) * 8u;
    uint w[9];
    [[unroll]] for (uint k = 0u; k < 8u; k++) w[k] = wq[i + k];
    w[8] = s != 0u ? wq[i + 8u] : 0u;
    lo = uvec4(fsh(w[0], w[1], s), fsh(w[1], w[2], s), fsh(w[2], w[3], s), fsh(w[3], w[4], s));
    hi = uvec4(fsh(w[4], w[5], s), fsh(w[5], w[6], s), fsh(w[6], w[7], s), fsh(w[7], w[8], s));
}
// bits sh..sh+3 of b to bit 0 of bytes 0..3 (one word per lane of sh)
uvec4 spread4v(uint b, uvec4 sh) {
    uvec4 v = (uvec4(b) >> sh) & 15u;
    return (v * 0x00204081u) & 0x01010101u;
}
const uint NIB = 0x0f0f0f0fu;

// Unit j (32 weights) of the block at byte a: codes c0 (weights 0..15), c1 (16..31), scale and
// minimum of each half (see the top)
void unit(uint a, uint j, out uvec4 c0, out uvec4 c1, out vec2 sc, out vec2 mn) {
#if defined(W_Q8_0)
    float d = qhalf(a);
    ld32(a + 2u, c0, c1);
    sc = vec2(d);
    mn = vec2(0.0);
#elif defined(W_Q4_0) || defined(W_IQ4_NL)
    float d = qhalf(a);
    uvec4 q = ld16(a + 2u);
    c0 = q & NIB;
    c1 = (q >> 4) & NIB;
    sc = vec2(d);
#if defined(W_Q4_0)
    mn = vec2(-8.0 * d);
#else
    mn = vec2(0.0);
#endif
#elif defined(W_Q4_1)
    vec2 dm = unpackHalf2x16(ld4(a));
    uvec4 q = ld16(a + 4u);
    c0 = q & NIB;
    c1 = (q >> 4) & NIB;
    sc = dm.xx;
    mn = dm.yy;
#elif defined(W_Q5_0) || defined(W_Q5_1)
    // the 5th bit of weight i is bit i of the u32 qh
#if defined(W_Q5_0)
    float d = qhalf(a);
    uint qh = ld4(a + 2u);
    uvec4 q = ld16(a + 6u);
    sc = vec2(d);
    mn = vec2(-16.0 * d);
#else
    vec2 dm = unpackHalf2x16(ld4(a));
    uint qh = ld4(a + 4u);
    uvec4 q = ld16(a + 8u);
    sc = dm.xx;
    mn = dm.yy;
#endif
    c0 = (q & NIB) | (spread4v(qh, uvec4(0u, 4u, 8u, 12u)) << 4);
    c1 = ((q >> 4) & NIB) | (spread4v(qh, uvec4(16u, 20u, 24u, 28u)) << 4);
#elif defined(W_Q4_K) || defined(W_Q5_K)
    // 6-bit scale and min of sub-block j; qs[32c + l]: low nibble weight 64c + l, high 64c + 32 + l;
    // Q5_K: the 5th bit of weight 32j + l is bit j of qh[l]
    vec2 dm = unpackHalf2x16(ld4(a));
    uint s, m;
    scale_min_k4(a + 4u, j, s, m);
    sc = vec2(dm.x * float(s));
    mn = vec2(-dm.y * float(m));
    uint sh = 4u * (j & 1u);
#if defined(W_Q4_K)
    ld32(a + 16u + 32u * (j >> 1), c0, c1);
    c0 = (c0 >> sh) & NIB;
    c1 = (c1 >> sh) & NIB;
#else
    uvec4 h0, h1;
    ld32(a + 48u + 32u * (j >> 1), c0, c1);
    ld32(a + 16u, h0, h1);
    c0 = ((c0 >> sh) & NIB) | (((h0 >> j) & 0x01010101u) << 4);
    c1 = ((c1 >> sh) & NIB) | (((h1 >> j) & 0x01010101u) << 4);
#endif
#elif defined(W_Q6_K)
    // half hf = j / 4, quarter c = j % 4: low 4 bits from ql[64 hf + 32 (c & 1) + l] (nibble c / 2),
    // high 2 bits from qh[32 hf + l] (bits 2c); int8 scale per 16 weights
    uint hf = j >> 2, c = j & 3u;
    uvec4 l0, l1, h0, h1;
    ld32(a + 64u * hf + 32u * (c & 1u), l0, l1);
    ld32(a + 128u + 32u * hf, h0, h1);
    uint s4 = 4u * (c >> 1), s2 = 2u * c;
    c0 = ((l0 >> s4) & NIB) | (((h0 >> s2) & 0x03030303u) << 4);
    c1 = ((l1 >> s4) & NIB) | (((h1 >> s2) & 0x03030303u) << 4);
    float d = qhalf(a + 208u);
    uint sa = a + 192u + 8u * hf + 2u * c;
    sc = d * vec2(float(int(qbyte(sa) << 24) >> 24), float(int(qbyte(sa + 1u) << 24) >> 24));
    mn = -32.0 * sc;
#elif defined(W_Q2_K)
    // 2-bit fields of qs[32 hf + l] at shift 2 (j % 4); scale (low nibble) and min (high) bytes
    // per 16 weights
    uint hf = j >> 2, s2 = 2u * (j & 3u);
    ld32(a + 16u + 32u * hf, c0, c1);
    c0 = (c0 >> s2) & 0x03030303u;
    c1 = (c1 >> s2) & 0x03030303u;
    vec2 dm = unpackHalf2x16(ld4(a + 80u));
    uint b0 = qbyte(a + 2u * j), b1 = qbyte(a + 2u * j + 1u);
    sc = dm.x * vec2(float(b0 & 15u), float(b1 & 15u));
    mn = -dm.y * vec2(float(b0 >> 4), float(b1 >> 4));
#elif defined(W_Q3_K)
    // 2 low bits as Q2_K (qs at 32); the 3rd bit is bit j of hmask[l], clear meaning -4:
    // c = q2 | hbit << 2, w = ds (c - 4); 6-bit scales biased by 32, one per 16 weights
    uint hf = j >> 2, s2 = 2u * (j & 3u);
    uvec4 h0, h1;
    ld32(a + 32u + 32u * hf, c0, c1);
    ld32(a, h0, h1);
    c0 = ((c0 >> s2) & 0x03030303u) | (((h0 >> j) & 0x01010101u) << 2);
    c1 = ((c1 >> s2) & 0x03030303u) | (((h1 >> j) & 0x01010101u) << 2);
    float d = qhalf(a + 108u);
    vec2 s;
    [[unroll]] for (uint h = 0u; h < 2u; h++) {
        uint k = 2u * j + h;
        uint v = ((qbyte(a + 96u + (k & 7u)) >> (4u * (k >> 3))) & 15u) |
                 (((qbyte(a + 104u + (k & 3u)) >> (2u * (k >> 2))) & 3u) << 4);
        s[h] = d * float(int(v) - 32);
    }
    sc = s;
    mn = -4.0 * s;
#elif defined(W_IQ4_XS)
    // 6-bit scale: low nibble scales_l[j / 2] >> 4 (j % 2), high 2 bits scales_h >> 2j; biased by 32
    uint w0 = ld4(a);
    float d = unpackHalf2x16(w0).x;
    uint ls = ((qbyte(a + 4u + (j >> 1)) >> (4u * (j & 1u))) & 15u) | (((w0 >> (16u + 2u * j)) & 3u) << 4);
    uvec4 q = ld16(a + 8u + 16u * j);
    c0 = q & NIB;
    c1 = (q >> 4) & NIB;
    sc = vec2(d * float(int(ls) - 32));
    mn = vec2(0.0);
#else
#error "matvec_qb.comp: a block-quantised type"
#endif
}

// the four codes of word c as floats
vec4 cvec(uint c) {
#if defined(C_SIGNED)
    return vec4(ivec4(uvec4(c) << uvec4(24u, 16u, 8u, 0u)) >> 24);
#elif defined(C_TABLE)
    uvec4 b = (uvec4(c) >> uvec4(0u, 8u, 16u, 24u)) & 15u;
    return vec4(kvs[b.x], kvs[b.y], kvs[b.z], kvs[b.w]);
#else
    return vec4((uvec4(c) >> uvec4(0u, 8u, 16u, 24u)) & 0xffu);
#endif
}

void main() {
    uint N = pc.u[1], K = pc.u[2];
    const uint TPR = gl_WorkGroupSize.x / NG; // invocations per row group: a multiple of the subgroup
    uint t = gl_LocalInvocationID.x, g = t / TPR, lt = t % TPR;
#if defined(C_TABLE)
    if (t < 16u) kvs[t] = KV_IQ4[t];
    barrier();
#endif
    uint n0 = (wg_linear() * NG + g) * R;
    const uint UB = QK / 32u;         // units per block
    uint U = K / 32u, rowb = (K / QK) * QB;
    float acc[R * NM], ss[NM];
    [[unroll]] for (uint i = 0u; i < R * NM; i++) acc[i] = 0.0;
    [[unroll]] for (uint m = 0u; m < NM; m++) ss[m] = 0.0;
    if (n0 < N) {
        for (uint u = lt; u < U; u += TPR) {
            uint blk = u / UB, j = u % UB;
            uvec4 c0[R], c1[R];
            vec2 sc[R], mn[R];
            [[unroll]] for (uint r = 0u; r < R; r++) // rows past N read the last row, written nowhere
                unit(W_OFF + min(n0 + r, N - 1u) * rowb + blk * QB, j, c0[r], c1[r], sc[r], mn[r]);
            [[unroll]] for (uint m = 0u; m < NM; m++) {
                vec4 xv[8];
                [[unroll]] for (uint q = 0u; q < 8u; q++) xv[q] = xget4(m, 32u * u + 4u * q, ss[m]);
#if defined(C_MIN)
                float x0 = dot(xv[0] + xv[1] + xv[2] + xv[3], vec4(1.0));
                float x1 = dot(xv[4] + xv[5] + xv[6] + xv[7], vec4(1.0));
#endif
                [[unroll]] for (uint r = 0u; r < R; r++) {
                    float s0 = 0.0, s1 = 0.0;
                    [[unroll]] for (uint q = 0u; q < 4u; q++) {
                        s0 += dot(cvec(c0[r][q]), xv[q]);
                        s1 += dot(cvec(c1[r][q]), xv[4u + q]);
                    }
                    float v = sc[r].x * s0 + sc[r].y * s1;
#if defined(C_MIN)
                    v += mn[r].x * x0 + mn[r].y * x1;
#endif
                    acc[r * NM + m] += v;
                }
            }
        }
    }
    [[unroll]] for (uint i = 0u; i < R * NM; i++) acc[i] = subgroupAdd(acc[i]);
    if (XMODE == 1u)
        [[unroll]] for (uint m = 0u; m < NM; m++) ss[m] = subgroupAdd(ss[m]);
    uint spr = TPR / gl_SubgroupSize; // subgroups per row group
    if (spr > 1u) {
        if (subgroupElect()) {
            [[unroll]] for (uint i = 0u; i < R * NM; i++) red[gl_SubgroupID][i] = acc[i];
            [[unroll]] for (uint m = 0u; m < NM; m++) red[gl_SubgroupID][32u + m] = ss[m];
        }
        barrier();
        if (lt == 0u) {
            uint s0 = g * spr;
            [[unroll]] for (uint i = 0u; i < R * NM; i++) {
                float a = 0.0;
                for (uint k = 0u; k < spr; k++) a += red[s0 + k][i];
                acc[i] = a;
            }
            [[unroll]] for (uint m = 0u; m < NM; m++) {
                float q = 0.0;
                for (uint k = 0u; k < spr; k++) q += red[s0 + k][32u + m];
                ss[m] = q;
            }
        }
    }
    if (lt == 0u) {
        [[unroll]] for (uint r = 0u; r < R; r++) {
            uint n = n0 + r;
            if (n >= N) break;
            float b = pc.u[3] != 0u ? bias[OFF_C + n] : 0.0;
            [[unroll]] for (uint m = 0u; m < NM; m++) {
                float v = acc[r * NM + m];
                if (XMODE == 1u) v *= inversesqrt(ss[m] / float(K) + pc.f[0]);
                v += b;
                uint o = m * pc.u[5] + pc.u[4] + n;
                if (pc.u[8] != 0u) v += res[OFF_S + o];
                y[OFF_D + o] = v;
            }
        }
    }
}
