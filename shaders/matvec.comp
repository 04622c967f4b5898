#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
// MATMUL for few rows (decode): y[M, N] = x[M, K] W[N, K]^T (+ bias) (+ residual), M <= 8.
// A workgroup computes NROWS weight rows; each row gets WG / NROWS invocations (whole
// subgroups) striding along K, 8 elements per load when u[6] says the data is aligned for it.
// Each weight row is read once for all M rows of x. Partial sums meet through subgroupAdd and,
// when a row spans several subgroups, shared memory. Few rows per workgroup when N is small,
// so that a 896-row matrix still keeps every SM busy.
//
// Fused producers (the recorder skips their own dispatch, saving a barrier each):
//   XMODE 1: x is RMSNORM(x) * w: binding 4 = norm weight (u[7] = has weight, f[0] = eps); the
//            row's 1/rms is computed from the same loads and applied to the finished sum.
//   XMODE 2: x is SWIGLU(gate, up): binding 1 = gate, binding 4 = up.
//   u[8] = 1: a residual ADD follows: binding 5 (same shape as y) is added to the result.
// u[0..5] as matmul.comp; spec constants: 0 = workgroup size, 1 = M, 2 = rows per workgroup,
// 3 = XMODE | (8-element loads in flight per invocation, 2 or 4) << 2.
// MOE (matvec_moe_*: the decode expert GEMV of a MOE node, vk_record.c rec_moe): W is a stack
// [E, N, K] and binding 3 holds the routes moe_route.comp wrote (per row s: k expert ids as float
// bits, then k weights) instead of a bias; M = 1, u[9] = k, gl_WorkGroupID.z picks the row of y:
//   u[10] = 0 (gate, up): z = slot s * k + i, y[z] = W_e[i] x[s]          (x [S, D], y [S*k, N])
//   u[10] = 1 (down):     z = row s, y[s] = sum_i w_i W_e[i] x[s * k + i]  (x [S*k, K], y [S, N])
// with the same inner loop as a dense row; XMODE 2 (x = SWIGLU(gate, up)) folds the SwiGLU.
#include "common.glsl"
#define W_BINDING 2
#include "wload.glsl"
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint NM = 1;
layout(constant_id = 2) const uint NROWS = 4;
layout(constant_id = 3) const uint XSPEC = 0;
const uint XMODE = XSPEC & 3u;
const uint NLD = (XSPEC >> 2) == 4u ? 4u : 2u; // loads in flight; 0 (unset) means 2
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 3) readonly buffer Bi { float bias[]; };
layout(std430, binding = 4) readonly buffer E { float e1[]; };
layout(std430, binding = 4) readonly buffer E4 { vec4 e4[]; };
layout(std430, binding = 5) readonly buffer R { float res[]; };
#ifdef MOE
#define route bias
#endif
uint xbase = 0u; // MOE: the first element of this slot's x row (bindings 1 and 4)

shared float red[64][16]; // [subgroup][m, then sum of squares]: rows spanning several subgroups

float silu(float g) { return g / (1.0 + exp(-g)); }

// element k (a multiple of 4) of the effective x row m; ss gathers x^2 for the norm
vec4 xload4(uint m, uint k, inout float ss) {
    vec4 v = x4[(OFF_A + xbase + m * pc.u[2] + k) >> 2];
    if (XMODE == 1u) {
        ss += dot(v, v);
        if (pc.u[7] != 0u) v *= e4[(OFF_E + k) >> 2];
    } else if (XMODE == 2u) {
        vec4 u = e4[(OFF_E + xbase + m * pc.u[2] + k) >> 2];
        v = vec4(silu(v.x), silu(v.y), silu(v.z), silu(v.w)) * u;
    }
    return v;
}

float xload1(uint m, uint k, inout float ss) {
    float v = x[OFF_A + xbase + m * pc.u[2] + k];
    if (XMODE == 1u) {
        ss += v * v;
        if (pc.u[7] != 0u) v *= e1[OFF_E + k];
    } else if (XMODE == 2u) {
        v = silu(v) * e1[OFF_E + xbase + m * pc.u[2] + k];
    }
    return v;
}

void main() {
    uint N = pc.u[1], K = pc.u[2];
    const uint TPR = gl_WorkGroupSize.x / NROWS; // invocations per row: a multiple of the subgroup
    uint t = gl_LocalInvocationID.x, r = t / TPR, lt = t % TPR;
    uint n = wg_linear() * NROWS + r;
    bool live = n < N;
    float acc[NM], ss[NM];
    [[unroll]] for (uint m = 0u; m < NM; m++) acc[m] = ss[m] = 0.0;
#ifdef MOE
    uint kk = pc.u[9], zrow = gl_WorkGroupID.z;
    bool mdown = pc.u[10] != 0u;
    uint s = mdown ? zrow : zrow / kk, rb = OFF_C + s * 2u * kk;
    for (uint slot = 0u; slot < (mdown ? kk : 1u); slot++) {
        uint i = mdown ? slot : zrow % kk;
        uint wrow = OFF_B + (floatBitsToUint(route[rb + i]) * N + n) * K;
        float rw = mdown ? route[rb + kk + i] : 1.0;
        xbase = (mdown ? s * kk + i : s) * K;
        float part[NM];
        [[unroll]] for (uint m = 0u; m < NM; m++) part[m] = 0.0;
#define acc part
#else
    const uint zrow = 0u;
    uint wrow = OFF_B + n * K;
#endif
    if (live && pc.u[6] != 0u) {
        uint step = TPR * 8u, k = lt * 8u;
        // NLD 8-element loads in flight per invocation: 2 for f16 (four, tried in a26cef9, made
        // decode 15-24% slower on the H100: qwen2-0.5b f16 tg128 624-638 vs 730-733 t/s, llama-1.1b
        // 504-510 vs 628; interleaved rounds, 2026-11-23); 4 for block-quantised weights, whose 8
        // elements are 4-8 bytes, is an A/B knob (LOOM_VK_GEMV_LOADS) not yet measured
        for (; k + (NLD - 1u) * step < K; k += NLD * step) {
            vec4 lo[4], hi[4];
            [[unroll]] for (uint u = 0u; u < NLD; u++) wload8(wrow + k + u * step, lo[u], hi[u]);
            [[unroll]] for (uint m = 0u; m < NM; m++)
                [[unroll]] for (uint u = 0u; u < NLD; u++)
                    acc[m] += dot(lo[u], xload4(m, k + u * step, ss[m])) +
                              dot(hi[u], xload4(m, k + u * step + 4u, ss[m]));
        }
        for (; k < K; k += step) {
            vec4 lo, hi;
            wload8(wrow + k, lo, hi);
            [[unroll]] for (uint m = 0u; m < NM; m++)
                acc[m] += dot(lo, xload4(m, k, ss[m])) + dot(hi, xload4(m, k + 4u, ss[m]));
        }
    } else if (live) {
        for (uint k = lt; k < K; k += TPR) {
            float w = wload(wrow + k);
            [[unroll]] for (uint m = 0u; m < NM; m++) acc[m] += xload1(m, k, ss[m]) * w;
        }
    }
#ifdef MOE
#undef acc
        [[unroll]] for (uint m = 0u; m < NM; m++) acc[m] += rw * part[m];
    }
#endif
    [[unroll]] for (uint m = 0u; m < NM; m++) {
        acc[m] = subgroupAdd(acc[m]);
        if (XMODE == 1u) ss[m] = subgroupAdd(ss[m]);
    }
    uint spr = TPR / gl_SubgroupSize; // subgroups per row
    if (spr > 1u) {
        if (subgroupElect())
            [[unroll]] for (uint m = 0u; m < NM; m++) {
                red[gl_SubgroupID][m] = acc[m];
                red[gl_SubgroupID][8u + m] = ss[m];
            }
        barrier();
        if (lt == 0u) {
            uint s0 = r * spr;
            [[unroll]] for (uint m = 0u; m < NM; m++) {
                float a = 0.0, q = 0.0;
                for (uint i = 0u; i < spr; i++) {
                    a += red[s0 + i][m];
                    q += red[s0 + i][8u + m];
                }
                acc[m] = a;
                ss[m] = q;
            }
        }
    }
    if (live && lt == 0u) {
#ifdef MOE
        float b = 0.0;
#else
        float b = pc.u[3] != 0u ? bias[OFF_C + n] : 0.0;
#endif
        [[unroll]] for (uint m = 0u; m < NM; m++) {
            float v = acc[m];
            if (XMODE == 1u) v *= inversesqrt(ss[m] / float(K) + pc.f[0]);
            v += b;
            uint o = (m + zrow) * pc.u[5] + pc.u[4] + n;
            if (pc.u[8] != 0u) v += res[OFF_S + o];
            y[OFF_D + o] = v;
        }
    }
}
