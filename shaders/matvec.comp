#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
// MATMUL for few rows (decode): y[M, N] = x[M, K] W[N, K]^T (+ bias), M <= 8.
// One subgroup per weight row: lanes stride along K (8 elements per load when u[6] says the
// data is aligned for it), then one subgroupAdd. Each weight row is read once for all M rows.
// Parameters as matmul.comp; spec constants: 0 = workgroup size, 1 = M, 2 = rows per workgroup.
#include "common.glsl"
#define W_BINDING 2
#include "wload.glsl"
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint NM = 1;
layout(constant_id = 2) const uint NROWS = 8;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 3) readonly buffer Bi { float bias[]; };

void main() {
    uint N = pc.u[1], K = pc.u[2];
    uint lane = gl_SubgroupInvocationID, SG = gl_SubgroupSize;
    bool vec = pc.u[6] != 0u;
    for (uint r = gl_SubgroupID; r < NROWS; r += gl_NumSubgroups) {
        uint n = wg_linear() * NROWS + r;
        if (n >= N) break;
        uint wrow = OFF_B + n * K;
        float acc[NM];
        [[unroll]] for (uint m = 0u; m < NM; m++) acc[m] = 0.0;
        if (vec) {
            uint step = SG * 8u;
            uint k = lane * 8u;
            // two loads in flight per lane before the math
            for (; k + step < K; k += 2u * step) {
                vec4 lo0, hi0, lo1, hi1;
                wload8(wrow + k, lo0, hi0);
                wload8(wrow + k + step, lo1, hi1);
                [[unroll]] for (uint m = 0u; m < NM; m++) {
                    uint xb = (OFF_A + m * K + k) >> 2;
                    uint xc = (OFF_A + m * K + k + step) >> 2;
                    acc[m] += dot(lo0, x4[xb]) + dot(hi0, x4[xb + 1u]) + dot(lo1, x4[xc]) +
                              dot(hi1, x4[xc + 1u]);
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
        } else {
            for (uint k = lane; k < K; k += SG) {
                float w = wload(wrow + k);
                [[unroll]] for (uint m = 0u; m < NM; m++) acc[m] += x[OFF_A + m * K + k] * w;
            }
        }
        float b = pc.u[3] != 0u ? bias[OFF_C + pc.u[4] + n] : 0.0;
        [[unroll]] for (uint m = 0u; m < NM; m++) {
            float s = subgroupAdd(acc[m]);
            if (lane == 0u) y[OFF_D + m * pc.u[5] + pc.u[4] + n] = s + b;
        }
    }
}
