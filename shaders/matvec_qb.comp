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
const uint R = ((XSPEC >> 2) & 7u) == 4u ? 4u : ((XSPEC >> 2) & 7u) == 2u ? 2u : 1u;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 3) readonly buffer Bi { float bias[]; };
layout(std430, binding = 4) readonly buffer E { float e1[]; };
layout(std430, binding = 4) readonly buffer E4 { vec4 e4[]; };
layout(std430, binding = 5) readonly buffer Rs { float res[]; };

#include "qbunit.glsl"
#if defined(C_TABLE)
shared float kvs[16];
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
                uvec4 c[4];
                vec2 s1[2], m1[2];
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
