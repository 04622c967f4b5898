#version 450
#extension GL_GOOGLE_include_directive : require
// SOFTMAX of each row of a * f[0]. u[0] = rows, u[1] = N. One workgroup per row.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer D { float d[]; };
layout(std430, binding = 1) readonly buffer A { float a[]; };
shared float red[256];

void main() {
    uint row = wg_linear(), N = pc.u[1], t = gl_LocalInvocationID.x;
    if (row >= pc.u[0]) return;
    uint base = row * N;
    float sc = pc.f[0];
    float m = -3.402823e38;
    for (uint i = t; i < N; i += 256u) m = max(m, a[OFF_A + base + i] * sc);
    red[t] = m;
    barrier();
    [[unroll]] for (uint k = 128u; k > 0u; k >>= 1) {
        if (t < k) red[t] = max(red[t], red[t + k]);
        barrier();
    }
    m = red[0];
    barrier();
    float s = 0.0;
    for (uint i = t; i < N; i += 256u) s += exp(a[OFF_A + base + i] * sc - m);
    red[t] = s;
    barrier();
    [[unroll]] for (uint k = 128u; k > 0u; k >>= 1) {
        if (t < k) red[t] += red[t + k];
        barrier();
    }
    float inv = 1.0 / red[0];
    for (uint i = t; i < N; i += 256u) d[OFF_D + base + i] = exp(a[OFF_A + base + i] * sc - m) * inv;
}
