#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
// MATMUL for few rows (decode): y[M, N] = x[M, K] W[N, K]^T (+ bias), M <= 8.
// A workgroup computes NROWS weight rows; each row gets WG / NROWS invocations (whole
// subgroups) striding along K, 8 elements per load when u[6] says the data is aligned for it.
// Each weight row is read once for all M rows of x. Partial sums meet through subgroupAdd and,
// when a row spans several subgroups, shared memory. Few rows per workgroup when N is small,
// so that a 896-row matrix still keeps every SM busy.
// Parameters as matmul.comp; spec constants: 0 = workgroup size, 1 = M, 2 = rows per workgroup.
#include "common.glsl"
#define W_BINDING 2
#include "wload.glsl"
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint NM = 1;
layout(constant_id = 2) const uint NROWS = 4;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 3) readonly buffer Bi { float bias[]; };

shared float red[64][8]; // [subgroup][m]: partial sums of rows that span several subgroups

void main() {
    uint N = pc.u[1], K = pc.u[2];
    const uint TPR = gl_WorkGroupSize.x / NROWS; // invocations per row: a multiple of the subgroup
    uint t = gl_LocalInvocationID.x, r = t / TPR, lt = t % TPR;
    uint n = wg_linear() * NROWS + r;
    bool live = n < N;
    uint wrow = OFF_B + n * K;
    float acc[NM];
    [[unroll]] for (uint m = 0u; m < NM; m++) acc[m] = 0.0;
    if (live && pc.u[6] != 0u) {
        uint step = TPR * 8u, k = lt * 8u;
        for (; k + step < K; k += 2u * step) { // two loads in flight per invocation
            vec4 lo0, hi0, lo1, hi1;
            wload8(wrow + k, lo0, hi0);
            wload8(wrow + k + step, lo1, hi1);
            [[unroll]] for (uint m = 0u; m < NM; m++) {
                uint xb = (OFF_A + m * K + k) >> 2, xc = (OFF_A + m * K + k + step) >> 2;
                acc[m] += dot(lo0, x4[xb]) + dot(hi0, x4[xb + 1u]) + dot(lo1, x4[xc]) + dot(hi1, x4[xc + 1u]);
            }
        }
        if (k < K) {
            vec4 lo, hi;
            wload8(wrow + k, lo, hi);
            [[unroll]] for (uint m = 0u; m < NM; m++) {
                uint xb = (OFF_A + m * K + k) >> 2;
                acc[m] += dot(lo, x4[xb]) + dot(hi, x4[xb + 1u]);
            }
        }
    } else if (live) {
        for (uint k = lt; k < K; k += TPR) {
            float w = wload(wrow + k);
            [[unroll]] for (uint m = 0u; m < NM; m++) acc[m] += x[OFF_A + m * K + k] * w;
        }
    }
    [[unroll]] for (uint m = 0u; m < NM; m++) acc[m] = subgroupAdd(acc[m]);
    uint spr = TPR / gl_SubgroupSize; // subgroups per row
    if (spr > 1u) {
        if (subgroupElect()) [[unroll]] for (uint m = 0u; m < NM; m++) red[gl_SubgroupID][m] = acc[m];
        barrier();
        if (lt == 0u) {
            uint s0 = r * spr;
            [[unroll]] for (uint m = 0u; m < NM; m++) {
                float s = 0.0;
                for (uint i = 0u; i < spr; i++) s += red[s0 + i][m];
                acc[m] = s;
            }
        }
    }
    if (live && lt == 0u) {
        float b = pc.u[3] != 0u ? bias[OFF_C + n] : 0.0;
        [[unroll]] for (uint m = 0u; m < NM; m++) y[OFF_D + m * pc.u[5] + pc.u[4] + n] = acc[m] + b;
    }
}
