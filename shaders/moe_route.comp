#version 450
#extension GL_GOOGLE_include_directive : require
// MOE routing (graph.h): one invocation per row s of the router logits [S, E] (binding 1).
// Writes k expert ids (as float bits) then their k weights to binding 0 at s * 2k: the k largest
// softmax probabilities, ties to the lower expert, renormalised over the k when u[3] is set.
// u[0] = S, u[1] = E, u[2] = k (<= 32).
#include "common.glsl"
layout(local_size_x = 64) in;
layout(std430, binding = 0) writeonly buffer R { float route[]; };
layout(std430, binding = 1) readonly buffer L { float lg[]; };

void main() {
    uint s = gl_GlobalInvocationID.x, S = pc.u[0], E = pc.u[1], k = pc.u[2];
    if (s >= S) return;
    uint base = OFF_A + s * E;
    float mx = -3.0e38, sum = 0.0, chosen = 0.0;
    for (uint e = 0u; e < E; e++) mx = max(mx, lg[base + e]);
    for (uint e = 0u; e < E; e++) sum += exp(lg[base + e] - mx);
    uint sel[32];
    for (uint i = 0u; i < k; i++) {
        uint best = 0xffffffffu;
        for (uint e = 0u; e < E; e++) {
            bool taken = false;
            for (uint j = 0u; j < i; j++) taken = taken || sel[j] == e;
            if (!taken && (best == 0xffffffffu || lg[base + e] > lg[base + best])) best = e;
        }
        sel[i] = best;
        chosen += exp(lg[base + best] - mx);
    }
    float den = pc.u[3] != 0u ? chosen : sum;
    for (uint i = 0u; i < k; i++) {
        route[OFF_D + s * 2u * k + i] = uintBitsToFloat(sel[i]);
        route[OFF_D + s * 2u * k + k + i] = exp(lg[base + sel[i]] - mx) / den;
    }
}
