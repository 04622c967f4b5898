#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
// Decode GEMV for block-quantised weights, block at a time (LOOM_VK_GEMV_Q=blk, blk1, blk4; the
// default decode GEMV is matvec.comp, which decodes 8 weights per load through wquant.glsl).
// y[M, N] = x[M, K] W[N, K]^T (+ bias) (+ residual), M <= 8, W one of the twelve block types.
//
// The unit of work is 32 consecutive weights of a row (a sub-block): a whole block of the
// 32-element types, or IQ4_XS's sub-block; in Q4_K, Q5_K, Q6_K, Q2_K and Q3_K two sub-blocks whose
// weights share quant bytes (SU = 2). An invocation takes units lt, lt + TPR, ... of R rows at once
// (R = 1, 2 or 4: the knob): per unit and row it reads the quant bytes as whole words (16 or 32 bytes
// per read, shifted into place when the block is not word aligned), decodes the scale(s) and
// minimum once, and turns the weights into byte codes c (4 per word) such that
//   w_i = sc[h] * (c_i - C_OFF) + mn[h]      (h = i / 16: the K types have a scale per 16 weights)
// or, for IQ4_NL / IQ4_XS, w_i = sc * KV[c_i]. The sub-block's x (32 floats, read once for the R
// rows) gives sum_i w_i x_i = sc[0] sum_{i<16} (c_i - C_OFF) x_i + sc[1] sum_{i>=16} ... + mn[0] X0 +
// mn[1] X1, with X0, X1 the sums of x's two halves (only for the types with a minimum): two
// multiplies per 16 weights instead of one per weight.
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

// Codes become floats as uintBitsToFloat(0x4b000000 | c) - (2^23 + C_OFF): exact (c < 2^23) and
// without an int-to-float conversion (a quarter-rate instruction on NVIDIA); C_OFF folds a fixed
// offset of the type's values into it (Q4_0's -8, Q8_0's int8 stored as c = q ^ 0x80, ...), so only
// the types with a real minimum (C_MIN) need the sums of x.
#if defined(W_Q8_0)
#define C_OFF 128.0
#elif defined(W_Q4_0)
#define C_OFF 8.0
#elif defined(W_Q5_0)
#define C_OFF 16.0
#elif defined(W_Q6_K)
#define C_OFF 32.0
#elif defined(W_Q3_K)
#define C_OFF 4.0
#elif defined(W_IQ4_NL) || defined(W_IQ4_XS)
#define C_TABLE 1
shared float kvs[16];
#else
#define C_OFF 0.0
#define C_MIN 1
#endif
// Sub-blocks (32 weights) per unit: the K types that share quant bytes between two sub-blocks read
// them once for both (Q4_K / Q5_K: a byte's two nibbles; Q2_K / Q3_K / Q6_K: a byte's 2-bit fields)
#if defined(W_Q4_K) || defined(W_Q5_K) || defined(W_Q6_K) || defined(W_Q2_K) || defined(W_Q3_K)
const uint SU = 2u;
#else
const uint SU = 1u;
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
#if defined(W_Q4_K) || defined(W_Q5_K)
// 144- / 176-byte blocks: with the binding's byte offset a multiple of 16 (a uniform test), every
// 32-byte run of qs / qh is 16-byte aligned and read as two uvec4
layout(std430, binding = W_BINDING) readonly buffer WQ16 { uvec4 wq4[]; };
#endif
void ld32k(uint a, out uvec4 lo, out uvec4 hi) {
#if defined(W_Q4_K) || defined(W_Q5_K)
    if ((W_OFF & 15u) == 0u) {
        lo = wq4[a >> 4];
        hi = wq4[(a >> 4) + 1u];
        return;
    }
#endif
    ld32(a, lo, hi);
}
uvec2 ld8(uint a) {
    uint i = a >> 2, s = (a & 3u) * 8u;
    uint w0 = wq[i], w1 = wq[i + 1u], w2 = s != 0u ? wq[i + 2u] : 0u;
    return uvec2(fsh(w0, w1, s), fsh(w1, w2, s));
}
uvec3 ld12(uint a) {
    uint i = a >> 2, s = (a & 3u) * 8u;
    uint w0 = wq[i], w1 = wq[i + 1u], w2 = wq[i + 2u], w3 = s != 0u ? wq[i + 3u] : 0u;
    return uvec3(fsh(w0, w1, s), fsh(w1, w2, s), fsh(w2, w3, s));
}
uint bsel(uvec3 w, uint k) { return (w[k >> 2] >> (8u * (k & 3u))) & 0xffu; } // byte k of 12
float i8(uint b) { return float(int(b << 24) >> 24); }
// bits sh..sh+3 of b to bit 0 of bytes 0..3 (one word per lane of sh)
uvec4 spread4v(uint b, uvec4 sh) {
    uvec4 v = (uvec4(b) >> sh) & 15u;
    return (v * 0x00204081u) & 0x01010101u;
}
const uint NIB = 0x0f0f0f0fu, B2 = 0x03030303u, B1 = 0x01010101u;

// Sub-block (0..QK/32-1) of the block that sub-block s of unit p is
uint sub(uint p, uint s) {
#if defined(W_Q6_K)
    return 4u * (p >> 1) + (p & 1u) + 2u * s; // quarters c and c + 2 share their ql bytes
#else
    return SU * p + s;
#endif
}

// Unit p of the block at byte a: for its sub-block s (weights sub(p, s) * 32 + 0..31), the codes
// c[2s] (weights 0..15) and c[2s + 1] (16..31), and the scale and minimum of each half
// (w = sc * (c - C_OFF) + mn, see the top)
void unit(uint a, uint p, out uvec4 c[2 * SU], out vec2 sc[SU], out vec2 mn[SU]) {
#if defined(W_Q8_0)
    float d = qhalf(a);
    ld32(a + 2u, c[0], c[1]);
    c[0] ^= 0x80808080u; // int8 q as q + 128
    c[1] ^= 0x80808080u;
    sc[0] = vec2(d);
    mn[0] = vec2(0.0);
#elif defined(W_Q4_0) || defined(W_IQ4_NL)
    float d = qhalf(a);
    uvec4 q = ld16(a + 2u);
    c[0] = q & NIB;
    c[1] = (q >> 4) & NIB;
    sc[0] = vec2(d);
    mn[0] = vec2(0.0);
#elif defined(W_Q4_1)
    vec2 dm = unpackHalf2x16(ld4(a));
    uvec4 q = ld16(a + 4u);
    c[0] = q & NIB;
    c[1] = (q >> 4) & NIB;
    sc[0] = dm.xx;
    mn[0] = dm.yy;
#elif defined(W_Q5_0) || defined(W_Q5_1)
    // the 5th bit of weight i is bit i of the u32 qh
#if defined(W_Q5_0)
    float d = qhalf(a);
    uint qh = ld4(a + 2u);
    uvec4 q = ld16(a + 6u);
    sc[0] = vec2(d);
    mn[0] = vec2(0.0);
#else
    vec2 dm = unpackHalf2x16(ld4(a));
    uint qh = ld4(a + 4u);
    uvec4 q = ld16(a + 8u);
    sc[0] = dm.xx;
    mn[0] = dm.yy;
#endif
    c[0] = (q & NIB) | (spread4v(qh, uvec4(0u, 4u, 8u, 12u)) << 4);
    c[1] = ((q >> 4) & NIB) | (spread4v(qh, uvec4(16u, 20u, 24u, 28u)) << 4);
#elif defined(W_Q4_K) || defined(W_Q5_K)
    // sub-blocks 2p (low nibbles of qs[32p + l]) and 2p + 1 (high); 6-bit scale and min of each
    // from the 12 bytes at 4; Q5_K: the 5th bit of weight 32j + l is bit j of qh[l]
    vec2 dm = unpackHalf2x16(ld4(a));
    uvec3 sw = ld12(a + 4u);
    uvec4 q0, q1;
#if defined(W_Q4_K)
    ld32k(a + 16u + 32u * p, q0, q1);
#else
    uvec4 h0, h1;
    ld32k(a + 48u + 32u * p, q0, q1);
    ld32k(a + 16u, h0, h1);
#endif
    [[unroll]] for (uint s = 0u; s < 2u; s++) {
        uint j = 2u * p + s, scv, mv;
        if (j < 4u) {
            scv = bsel(sw, j) & 63u;
            mv = bsel(sw, j + 4u) & 63u;
        } else {
            uint b8 = bsel(sw, j + 4u);
            scv = (b8 & 15u) | ((bsel(sw, j - 4u) >> 6) << 4);
            mv = (b8 >> 4) | ((bsel(sw, j) >> 6) << 4);
        }
        sc[s] = vec2(dm.x * float(scv));
        mn[s] = vec2(-dm.y * float(mv));
        c[2u * s] = (q0 >> (4u * s)) & NIB;
        c[2u * s + 1u] = (q1 >> (4u * s)) & NIB;
#if defined(W_Q5_K)
        c[2u * s] |= ((h0 >> j) & B1) << 4;
        c[2u * s + 1u] |= ((h1 >> j) & B1) << 4;
#endif
    }
#elif defined(W_Q6_K)
    // half hf = p / 2, quarters c0 = p % 2 and c0 + 2: low 4 bits from ql[64 hf + 32 c0 + l]
    // (nibble 0 then 1), high 2 bits from qh[32 hf + l] (bits 2c); int8 scale per 16 weights
    uint hf = p >> 1, c0 = p & 1u;
    uvec4 l0, l1, h0, h1;
    ld32(a + 64u * hf + 32u * c0, l0, l1);
    ld32(a + 128u + 32u * hf, h0, h1);
    uvec2 sv = ld8(a + 192u + 8u * hf);
    float d = qhalf(a + 208u);
    [[unroll]] for (uint s = 0u; s < 2u; s++) {
        uint s2 = 2u * c0 + 4u * s;
        c[2u * s] = ((l0 >> (4u * s)) & NIB) | (((h0 >> s2) & B2) << 4);
        c[2u * s + 1u] = ((l1 >> (4u * s)) & NIB) | (((h1 >> s2) & B2) << 4);
        uint w = sv[s] >> (16u * c0); // scale bytes 2c, 2c + 1 of the half: word s, half c0
        sc[s] = d * vec2(i8(w & 0xffu), i8((w >> 8) & 0xffu));
        mn[s] = vec2(0.0);
    }
#elif defined(W_Q2_K) || defined(W_Q3_K)
    // sub-blocks j = 2p, 2p + 1: 2-bit fields of qs[32 hf + l] (hf = p / 2) at shift 2 (j % 4);
    // Q2_K: scale (low nibble) and min (high) bytes per 16 weights; Q3_K: the 3rd bit is bit j of
    // hmask[l] (c = q2 | hbit << 2, w = ds (c - 4)), 6-bit scales biased by 32
    uint hf = p >> 1;
    uvec4 q0, q1;
#if defined(W_Q2_K)
    ld32(a + 16u + 32u * hf, q0, q1);
    uint sb = ld4(a + 4u * p);
    vec2 dm = unpackHalf2x16(ld4(a + 80u));
#else
    uvec4 h0, h1;
    ld32(a + 32u + 32u * hf, q0, q1);
    ld32(a, h0, h1);
    uvec3 sw = ld12(a + 96u);
    float d = qhalf(a + 108u);
#endif
    [[unroll]] for (uint s = 0u; s < 2u; s++) {
        uint j = 2u * p + s, s2 = 2u * (j & 3u);
        c[2u * s] = (q0 >> s2) & B2;
        c[2u * s + 1u] = (q1 >> s2) & B2;
#if defined(W_Q2_K)
        uint b0 = (sb >> (16u * s)) & 0xffu, b1 = (sb >> (16u * s + 8u)) & 0xffu;
        sc[s] = dm.x * vec2(float(b0 & 15u), float(b1 & 15u));
        mn[s] = -dm.y * vec2(float(b0 >> 4), float(b1 >> 4));
#else
        c[2u * s] |= ((h0 >> j) & B1) << 2;
        c[2u * s + 1u] |= ((h1 >> j) & B1) << 2;
        vec2 v;
        [[unroll]] for (uint h = 0u; h < 2u; h++) {
            uint k = 2u * j + h;
            uint x = ((bsel(sw, k & 7u) >> (4u * (k >> 3))) & 15u) | (((bsel(sw, 8u + (k & 3u)) >> (2u * (k >> 2))) & 3u) << 4);
            v[h] = d * float(int(x) - 32);
        }
        sc[s] = v;
        mn[s] = vec2(0.0);
#endif
    }
#elif defined(W_IQ4_XS)
    // 6-bit scale: low nibble scales_l[p / 2] >> 4 (p % 2), high 2 bits scales_h >> 2p; biased by 32
    uint w0 = ld4(a);
    float d = unpackHalf2x16(w0).x;
    uint ls = ((qbyte(a + 4u + (p >> 1)) >> (4u * (p & 1u))) & 15u) | (((w0 >> (16u + 2u * p)) & 3u) << 4);
    uvec4 q = ld16(a + 8u + 16u * p);
    c[0] = q & NIB;
    c[1] = (q >> 4) & NIB;
    sc[0] = vec2(d * float(int(ls) - 32));
    mn[0] = vec2(0.0);
#else
#error "matvec_qb.comp: a block-quantised type"
#endif
}

// the four codes of word c as values (c - C_OFF, or the IQ4 table's)
vec4 cvec(uint c) {
    uvec4 b = (uvec4(c) >> uvec4(0u, 8u, 16u, 24u)) & 0xffu;
#if defined(C_TABLE)
    return vec4(kvs[b.x], kvs[b.y], kvs[b.z], kvs[b.w]);
#else
    return uintBitsToFloat(b | 0x4b000000u) - (8388608.0 + C_OFF);
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
    const uint UB = QK / (32u * SU); // units per block
    uint U = K / (32u * SU), rowb = (K / QK) * QB;
    float acc[R * NM], ss[NM];
    [[unroll]] for (uint i = 0u; i < R * NM; i++) acc[i] = 0.0;
    [[unroll]] for (uint m = 0u; m < NM; m++) ss[m] = 0.0;
    if (n0 < N) {
        for (uint u = lt; u < U; u += TPR) {
            uint blk = u / UB, p = u % UB;
            uvec4 cw[R * 2u * SU];
            vec2 sc[R * SU], mn[R * SU];
            [[unroll]] for (uint r = 0u; r < R; r++) { // rows past N read the last row, written nowhere
                uvec4 c[2 * SU];
                vec2 s1[SU], m1[SU];
                unit(W_OFF + min(n0 + r, N - 1u) * rowb + blk * QB, p, c, s1, m1);
                [[unroll]] for (uint i = 0u; i < 2u * SU; i++) cw[r * 2u * SU + i] = c[i];
                [[unroll]] for (uint i = 0u; i < SU; i++) {
                    sc[r * SU + i] = s1[i];
                    mn[r * SU + i] = m1[i];
                }
            }
            [[unroll]] for (uint m = 0u; m < NM; m++)
                [[unroll]] for (uint s = 0u; s < SU; s++) {
                    uint k0 = blk * QK + 32u * sub(p, s);
                    vec4 xv[8];
                    [[unroll]] for (uint q = 0u; q < 8u; q++) xv[q] = xget4(m, k0 + 4u * q, ss[m]);
#if defined(C_MIN)
                    float x0 = dot(xv[0] + xv[1] + xv[2] + xv[3], vec4(1.0));
                    float x1 = dot(xv[4] + xv[5] + xv[6] + xv[7], vec4(1.0));
#endif
                    [[unroll]] for (uint r = 0u; r < R; r++) {
                        uint i = r * SU + s;
                        float s0 = 0.0, s1 = 0.0;
                        [[unroll]] for (uint q = 0u; q < 4u; q++) {
                            s0 += dot(cvec(cw[2u * i][q]), xv[q]);
                            s1 += dot(cvec(cw[2u * i + 1u][q]), xv[4u + q]);
                        }
                        float v = sc[i].x * s0 + sc[i].y * s1;
#if defined(C_MIN)
                        v += mn[i].x * x0 + mn[i].y * x1;
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
