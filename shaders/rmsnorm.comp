#version 450
#extension GL_GOOGLE_include_directive : require
// RMSNORM: one workgroup per row. u[0] = rows, u[1] = N, u[2] = has weight; f[0] = eps.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer D { float d[]; };
layout(std430, binding = 1) readonly buffer A { float a[]; };
layout(std430, binding = 2) readonly buffer W { float w[]; };
shared float red[256];

void main() {
    uint row = wg_linear(), N = pc.u[1], t = gl_LocalInvocationID.x;
    if (row >= pc.u[0]) return;
    uint base = row * N;
    float s = 0.0;
    for (uint i = t; i < N; i += 256u) { float x = a[OFF_A + base + i]; s += x * x; }
    red[t] = s;
    barrier();
    [[unroll]] for (uint k = 128u; k > 0u; k >>= 1) {
        if (t < k) red[t] += red[t + k];
        barrier();
    }
    float r = inversesqrt(red[0] / float(N) + pc.f[0]);
    bool hw = pc.u[2] != 0u;
    for (uint i = t; i < N; i += 256u) {
        float y = a[OFF_A + base + i] * r;
        d[OFF_D + base + i] = hw ? y * w[OFF_B + i] : y;
    }
}
