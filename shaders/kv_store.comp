#version 450
#extension GL_GOOGLE_include_directive : require
// KV_STORE: cache[pos[s], :] = rows[s, :]. u[0] = S, u[1] = W, u[2] = C (cache rows).
// Positions outside [0, C) are dropped (the session never sends them).
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) buffer D { float cache[]; };
layout(std430, binding = 1) readonly buffer A { float rows[]; };
layout(std430, binding = 2) readonly buffer P { int pos[]; };

void main() {
    uint S = pc.u[0], W = pc.u[1];
    uint i = wg_linear() * 256u + gl_LocalInvocationID.x;
    if (i >= S * W) return;
    uint s = i / W, c = i - s * W;
    int p = pos[OFF_B + s];
    if (p < 0 || uint(p) >= pc.u[2]) return;
    cache[OFF_D + uint(p) * W + c] = rows[OFF_A + i];
}
