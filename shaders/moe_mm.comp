#version 450
#extension GL_GOOGLE_include_directive : require
// MOE expert products (graph.h), on the routes moe_route.comp wrote (binding 3: per row s, k
// expert ids as float bits, then k weights). W (binding 2) is a stack [E, N, K] of any wload type.
// One workgroup per output row n (x) and y:
//   u[4] = 0, y = slot r = s * k + i:  out[r, n] = W_e[n] . x[s]          (x [S, K], gate and up)
//   u[4] = 1, y = row s:  out[s, n] = sum_i w_i W_e_i[n] . x[s * k + i]   (x [S*k, K], down + sum)
// Invocations stride along K; partial sums meet in shared memory. Each slot reads its expert's
// rows itself: tokens sharing an expert read its weights again (through the cache).
// u[0] = N, u[1] = K, u[2] = k, u[3] = rows of y.
#include "common.glsl"
#define W_BINDING 2
#include "wload.glsl"
layout(local_size_x = 64) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 3) readonly buffer R { float route[]; };
shared float red[64];

void main() {
    uint n = gl_WorkGroupID.x, row = gl_WorkGroupID.y, t = gl_LocalInvocationID.x;
    uint N = pc.u[0], K = pc.u[1], k = pc.u[2];
    bool down = pc.u[4] != 0u;
    uint s = down ? row : row / k;
    float acc = 0.0;
    for (uint i = 0u; i < (down ? k : 1u); i++) {
        uint slot = down ? i : row % k;
        uint e = floatBitsToUint(route[OFF_C + s * 2u * k + slot]);
        float w = down ? route[OFF_C + s * 2u * k + k + slot] : 1.0;
        uint xb = OFF_A + (down ? s * k + i : s) * K, wb = (e * N + n) * K;
        float a = 0.0;
        for (uint c = t; c < K; c += 64u) a += wload(OFF_B + wb + c) * x[xb + c];
        acc += w * a;
    }
    red[t] = acc;
    barrier();
    for (uint h = 32u; h > 0u; h >>= 1) {
        if (t < h) red[t] += red[t + h];
        barrier();
    }
    if (t == 0u) y[OFF_D + row * N + n] = red[0];
}
