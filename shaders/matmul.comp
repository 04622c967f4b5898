#version 450
#extension GL_GOOGLE_include_directive : require
// MATMUL (prefill): y[M, N] = x[M, K] W[N, K]^T (+ bias), tiled through shared memory.
// 64x64 output tile per workgroup, 256 invocations, each a 4x4 block strided by 16 so shared
// reads are broadcasts. u[0] = M, u[1] = N (columns in this dispatch), u[2] = K, u[3] = has bias,
// u[4] = n0 (first output column: the weight binding starts at row n0), u[5] = y row stride.
#include "common.glsl"
#define W_BINDING 2
#include "wload.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 3) readonly buffer Bi { float bias[]; };

#define BM 64
#define BN 64
#define BK 16
shared float As[BK][BM];
shared float Bs[BK][BN];

void main() {
    uint M = pc.u[0], N = pc.u[1], K = pc.u[2];
    uint tid = gl_LocalInvocationID.x, tx = tid % 16u, ty = tid / 16u;
    uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
    float acc[4][4];
    [[unroll]] for (int i = 0; i < 4; i++) [[unroll]] for (int j = 0; j < 4; j++) acc[i][j] = 0.0;

    for (uint kb = 0u; kb < K; kb += BK) {
        [[unroll]] for (uint l = 0u; l < 4u; l++) {
            uint idx = tid + l * 256u, r = idx / BK, c = idx % BK;
            uint gr = row0 + r, gc = col0 + r, gk = kb + c;
            As[c][r] = (gr < M && gk < K) ? x[OFF_A + gr * K + gk] : 0.0;
            Bs[c][r] = (gc < N && gk < K) ? wload(OFF_B + gc * K + gk) : 0.0;
        }
        barrier();
        [[unroll]] for (uint k = 0u; k < BK; k++) {
            float a[4], b[4];
            [[unroll]] for (uint i = 0u; i < 4u; i++) a[i] = As[k][ty + 16u * i];
            [[unroll]] for (uint j = 0u; j < 4u; j++) b[j] = Bs[k][tx + 16u * j];
            [[unroll]] for (uint i = 0u; i < 4u; i++)
                [[unroll]] for (uint j = 0u; j < 4u; j++) acc[i][j] += a[i] * b[j];
        }
        barrier();
    }
    bool hb = pc.u[3] != 0u;
    [[unroll]] for (uint i = 0u; i < 4u; i++) {
        uint r = row0 + ty + 16u * i;
        if (r >= M) continue;
        [[unroll]] for (uint j = 0u; j < 4u; j++) {
            uint c = col0 + tx + 16u * j;
            if (c >= N) continue;
            float v = acc[i][j];
            if (hb) v += bias[OFF_C + pc.u[4] + c];
            y[OFF_D + r * pc.u[5] + pc.u[4] + c] = v;
        }
    }
}
