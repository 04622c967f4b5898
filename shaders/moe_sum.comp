#version 450
#extension GL_GOOGLE_include_directive : require
// MOE (graph.h) prefill: out[s, d] = sum_i w_i dn[s * k + i, d], the k routed slots' down products
// (binding 1, [S*k, D]) weighted by the routes (binding 3, as moe_route.comp wrote them), in slot
// order. One invocation per output element (grid1). u[0] = S * D, u[1] = D, u[2] = k.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float dn[]; };
layout(std430, binding = 3) readonly buffer R { float route[]; };

void main() {
    uint g = wg_linear() * 256u + gl_LocalInvocationID.x;
    if (g >= pc.u[0]) return;
    uint D = pc.u[1], k = pc.u[2], s = g / D, d = g % D;
    float acc = 0.0;
    for (uint i = 0u; i < k; i++) acc += route[OFF_C + s * 2u * k + k + i] * dn[OFF_A + (s * k + i) * D + d];
    y[OFF_D + g] = acc;
}
